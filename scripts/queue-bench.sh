#!/usr/bin/env bash
# The same closed-loop load on three brokers, back to back on this machine:
# one node with a classic queue, one node with a quorum queue, and the
# three-node cluster (scripts/cluster.sh) with quorum queues. Each run: one
# gateway, two workers (scripts/up.sh), then scripts/load.sh; prints its
# report and the CPU each process group used per verified request.
#
#   scripts/queue-bench.sh [DURATION] [CLIENTS]     # default 30s 64
#   CONFIGS="quorum cluster" scripts/queue-bench.sh  # a subset
#
# The load generator is not in the CPU figures (it has exited by the second
# snapshot); docs/benchmarks.md gives its share from other runs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
duration=${1:-30s} clients=${2:-64}
cargo build --release --bins --quiet

cpu() { scripts/cpu-snapshot.sh | awk '{printf "%s=%s ", $1, $2}'; }

run() {
  local label=$1; shift
  scripts/up.sh --workers 2 --detach "$@" >/dev/null 2>&1
  local before after report
  before=$(cpu)
  report=$(scripts/load.sh -d "$duration" -c "$clients" 2>/dev/null)
  after=$(cpu)
  scripts/down.sh --quiet || true
  echo "== $label"
  echo "$report" | tail -5
  local verified
  verified=$(echo "$report" | awk '/^verified/ {print $2}')
  awk -v b="$before" -v a="$after" -v n="$verified" 'BEGIN {
    split(b, bs, " "); split(a, as, " "); total = 0; line = "cpu per verified request (us):"
    for (i in as) { split(as[i], x, "="); split(bs[i], y, "="); d = x[2] - y[2]; total += d
      line = line sprintf(" %s %.0f", x[1], d * 1e6 / n) }
    printf "%s; all %.0f\n", line, total * 1e6 / n }'
  local q
  for q in "$REQUEST_QUEUE" "$REQUEST_QUEUE.dead" "$REQUEST_QUEUE.events"; do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
}

for config in ${CONFIGS:-classic quorum cluster}; do
  case $config in
    classic) REQUEST_QUEUE="bench-classic-$$" QUEUE_TYPE=classic run "1 node, classic queue" ;;
    quorum) REQUEST_QUEUE="bench-quorum-$$" QUEUE_TYPE=quorum run "1 node, quorum queue" ;;
    cluster)
      scripts/cluster.sh up >/dev/null
      REQUEST_QUEUE="bench-cluster-$$" QUEUE_TYPE=quorum run "3 nodes, quorum queue" --cluster
      scripts/cluster.sh down
      ;;
  esac
done
