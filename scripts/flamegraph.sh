#!/usr/bin/env bash
# Flame graphs of the gateway and one worker under the closed-loop load of
# the performance figures (scripts/up.sh --open --workers 2; loadgen, 64
# clients, long-poll, 2,900-byte documents): perf samples each process at
# 99 Hz with DWARF call graphs for 15 s after a 10 s warm-up, and inferno
# draws them.
#
#   scripts/flamegraph.sh [OUT_DIR]     # default docs/flame: gateway.svg, worker.svg, load.txt
#
# The folded stacks stay in run/flame/ (for grep, or inferno-diff-folded
# against another build's).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
out=${1:-$ROOT/docs/flame}
command -v perf >/dev/null || { log "perf is missing (Debian: apt-get install linux-perf)"; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install --locked inferno
cd "$ROOT"
cargo build --release --bins --quiet
mkdir -p "$out"
tmp=$(mktemp -d)
trap '"$ROOT/scripts/down.sh" --quiet; rm -rf "$tmp"' EXIT
scripts/up.sh --open --workers 2 --detach >/dev/null
target/release/loadgen run --quiet -c 64 -d 40s > "$out/load.txt" &
load=$!
# Warm-up: the first seconds (connections, allocator, JIT-free but cold
# caches) are not what a steady load looks like.
sleep 10
gateway=$(pgrep -x gateway | head -1) worker=$(pgrep -x verifier-worker | head -1)
perf record -q -F 99 --call-graph dwarf,32768 -p "$gateway" -o "$tmp/gateway.data" -- sleep 15 &
sampling_gateway=$!
perf record -q -F 99 --call-graph dwarf,32768 -p "$worker" -o "$tmp/worker.data" -- sleep 15 &
sampling_worker=$!
wait "$sampling_gateway" "$sampling_worker"
wait "$load"
for name in gateway worker; do
  perf script -i "$tmp/$name.data" 2>/dev/null | inferno-collapse-perf > "$tmp/$name.folded"
  # Frames under half a pixel are left out: the drawing stays readable and small.
  inferno-flamegraph --minwidth 0.5 --title "$name under 64 closed-loop clients ($(date -u +%F))" \
    < "$tmp/$name.folded" > "$out/$name.svg"
  mkdir -p "$RUN_DIR/flame"
  cp "$tmp/$name.folded" "$RUN_DIR/flame/$name.folded"
  log "$name: $(wc -l < "$tmp/$name.folded") stacks -> ${out#"$ROOT/"}/$name.svg"
done
cat "$out/load.txt"
