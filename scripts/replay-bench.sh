#!/usr/bin/env bash
# Measures how long a starting gateway takes to replay the events stream:
# appends N events (default 1,000,000) to a fresh stream, starts a gateway on
# it and times it until /readyz answers 200 (it reads its own checkpoint);
# then prints its store's size and its resident memory.
#
#   scripts/replay-bench.sh [EVENTS] [BATCH]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
events=${1:-1000000} batch=${2:-10}
cd "$ROOT"
cargo build --release --bins --quiet
ensure_broker
queue="replay-bench-$$"
port=18080
trap 'kill $gw 2>/dev/null || true; rabbitmqctl delete_queue "$queue.events" >/dev/null 2>&1 || true; rabbitmqctl delete_queue "$queue" >/dev/null 2>&1 || true; rabbitmqctl delete_queue "$queue.dead" >/dev/null 2>&1 || true' EXIT
target/release/loadgen seed-events --queue "$queue" --events "$events" --batch "$batch"
start=$(date +%s.%N)
REQUEST_QUEUE=$queue GATEWAY_ADDR=127.0.0.1:$port target/release/gateway > "/tmp/$queue.log" 2>&1 &
gw=$!
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.05; done
end=$(date +%s.%N)
printf 'gateway ready after %.2f s (replayed %s events in batches of %s)\n' "$(echo "$end - $start" | bc)" "$events" "$batch"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^gateway_(replay_seconds|store_entries)'
grep -o 'events stream caught up.*' "/tmp/$queue.log" | sed 's/\x1b\[[0-9;]*m//g'
# The gateway's resident memory holding what it replayed.
grep VmRSS "/proc/$gw/status"
