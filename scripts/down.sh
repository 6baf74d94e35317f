#!/usr/bin/env bash
# Stops what scripts/up.sh started (SIGTERM: gateways answer their
# long-polls, workers finish what they hold). The broker keeps running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
quiet=0; [ "${1:-}" = --quiet ] && quiet=1
[ -f "$RUN_DIR/pids" ] || exit 0
pids=$(cat "$RUN_DIR/pids")
for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in $pids; do
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
rm -f "$RUN_DIR/pids"
[ "$quiet" = 1 ] || log "stopped"
