#!/usr/bin/env bash
# Peak memory of the gateway and the workers under a load of large
# documents: starts the service (scripts/up.sh --open --workers 2), sends
# N requests of DOC-byte documents from C closed-loop clients, and prints
# each process's resident memory at rest and its peak (VmHWM) after the
# load, with the load's own figures.
#
#   scripts/memory-bench.sh [-c CLIENTS] [-n REQUESTS] [--doc-size BYTES]
#
# Defaults: 16 clients, 160 requests, 16,000,000-byte documents (the
# largest whose request body fits the default 16 MiB BODY_LIMIT_BYTES).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
clients=16 requests=160 doc=16000000
while [ $# -gt 0 ]; do
  case $1 in
    -c) clients=$2; shift 2 ;;
    -n) requests=$2; shift 2 ;;
    --doc-size) doc=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$ROOT"
cargo build --release --bins --quiet
trap '"$ROOT/scripts/down.sh" --quiet' EXIT
scripts/up.sh --open --workers 2 --detach >/dev/null
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { echo "scale=0; $1 / 1024" | bc; }
declare -A rest
for pid in $(pgrep -x gateway) $(pgrep -x verifier-worker); do
  rest[$pid]=$(kib "$pid" VmRSS)
done
report=$(target/release/loadgen run --quiet --json -c "$clients" -n "$requests" \
  --doc-size "$doc" --pool 4 --tampered 0)
python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("documents %s bytes, %s clients: %d verified, %d errors, %.1f requests/s, p99 %.0f ms"
      % (sys.argv[2], sys.argv[3], r["verified"], r["errors"], r["throughput_per_s"], r["end_to_end_ms"]["p99"]))
' "$report" "$doc" "$clients"
for name in gateway verifier-worker; do
  for pid in $(pgrep -x "$name"); do
    echo "$name (pid $pid): at rest $(mib "${rest[$pid]}") MiB, peak $(mib "$(kib "$pid" VmHWM)") MiB"
  done
done
