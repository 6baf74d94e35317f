#!/usr/bin/env bash
# Sweeps the number of workers (1..N) and the client concurrency, running the
# load generator against each setup, and writes docs/scale.csv and a chart
# docs/scale.svg of throughput and end-to-end p99 against workers.
#
#   scripts/scale.sh [--max-workers N] [--concurrency "16 64 128"] [--duration 10s]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
max_workers=4 concurrency="16 64 128" duration=10s out="$ROOT/docs"
while [ $# -gt 0 ]; do
  case $1 in
    --max-workers) max_workers=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$ROOT"
cargo build --release --bins --quiet
mkdir -p "$out"
csv="$out/scale.csv"
echo "workers,concurrency,throughput,p99_ms,errors" > "$csv"
trap '"$ROOT/scripts/down.sh" --quiet' EXIT
for ((w = 1; w <= max_workers; w++)); do
  "$ROOT/scripts/up.sh" --workers "$w" --detach >/dev/null 2>&1
  use_demo_token
  for c in $concurrency; do
    json=$(target/release/loadgen run --json -c "$c" -d "$duration" || true)
    row=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f,%.2f,%d" % (r["throughput_per_s"], r["end_to_end_ms"]["p99"], r["errors"]))' <<<"$json")
    echo "$w,$c,$row" | tee -a "$csv"
  done
done
target/release/loadgen chart --csv "$csv" --out "$out/scale.svg"
