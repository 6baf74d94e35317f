#!/usr/bin/env bash
# The least a request can take on this machine, before any load:
#  1. the broker alone: `loadgen confirm-floor`, one persistent message at a
#     time to a fresh quorum queue and a fresh stream, publish to confirm
#     (every 202 waits for the first, every verdict for the second);
#  2. the whole service nearly idle: one gateway and two workers on a fresh
#     request queue of the local RabbitMQ, `loadgen run` at a fixed low rate
#     (POST, long-poll GET, every verdict checked), latency from each
#     request's scheduled start.
# For each part it prints how busy the machine was and how much of it the
# host took (steal): a floor measured while the host takes cores is not the
# code's.
#
#   scripts/latency-floor.sh [--rate R] [--duration S] [--count N]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
RATE=100 DUR=20 COUNT=1000
while [[ $# -gt 0 ]]; do
  case $1 in
    --rate) RATE=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "latency-floor.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ensure_broker
cargo build --release --bins --quiet
BIN=$ROOT/target/release
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/latency-floor-XXXX")
pids=()
Q=latencyfloor.$$
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for q in "$Q" "$Q.dead" "$Q.events"; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

tck=$(getconf CLK_TCK)
report_machine() {
  python3 -c '
import sys
b = list(map(float, sys.argv[1].split())); a = list(map(float, sys.argv[2].split())); tck = int(sys.argv[3])
wall = a[2] - b[2]
print(f"  machine: {(a[0] - b[0]) / tck / wall:.2f} cores busy, {(a[1] - b[1]) / tck / wall:.2f} taken by the host (steal)")' "$1" "$2" "$tck"
}

log "the broker alone: $COUNT confirmed messages one at a time, per queue type"
before=$(machine)
"$BIN/loadgen" confirm-floor --queue-types quorum,stream --count "$COUNT"
report_machine "$before" "$(machine)"

# A key of this run's own, so nothing outside the checkout is needed.
mkdir -p "$run_dir/keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$run_dir/private.pem" 2>/dev/null
openssl pkey -in "$run_dir/private.pem" -pubout -out "$run_dir/keys/default.pem"
GATEWAY_ADDR=127.0.0.1:18680 REQUEST_QUEUE=$Q "$BIN/gateway" >"$run_dir/gateway.log" 2>&1 & pids+=($!)
for w in 1 2; do
  VERIFIER_KEYS_DIR=$run_dir/keys REQUEST_QUEUE=$Q WORKER_HTTP_ADDR=127.0.0.1:1868$w \
    "$BIN/verifier-worker" >"$run_dir/worker$w.log" 2>&1 & pids+=($!)
done
ready=""
for _ in $(seq 120); do curl -sf http://127.0.0.1:18680/readyz >/dev/null && { ready=1; break; }; sleep 0.5; done
[[ -n $ready ]] || { echo "latency-floor.sh: the gateway is not ready (logs in $run_dir)" >&2; exit 1; }

log "the service nearly idle: $RATE requests/s for ${DUR}s (1 gateway, 2 workers)"
before=$(machine)
"$BIN/loadgen" run --url http://127.0.0.1:18680 --rate "$RATE" --duration "${DUR}s" \
  --key "$run_dir/private.pem" --quiet
report_machine "$before" "$(machine)"
echo "logs: $run_dir"
