#!/usr/bin/env bash
# Stops a RabbitMQ node older than 3.12.13 from starting an Erlang VM every minute.
#
# Such a node checks every 60 s that epmd still knows it (rabbit_epmd_monitor),
# and every check starts a whole Erlang VM (`erl -sname epmd-starter-N -s
# erlang halt`: about 0.15 s of CPU on a dozen threads) just to make sure epmd
# runs. On two cores already busy that can hold up every request in flight for
# up to 200 ms, once a minute (docs/benchmarks.md, "The once-a-minute episode").
# Upstream asks epmd first instead since early 2024 (rabbitmq-server pull
# request 10457; 3.12.13's notes list it as "CLI tool startup time was reduced").
# This script suspends the monitor (sys:suspend): the node then no longer
# re-registers with an epmd that was killed under it, which is all the monitor
# is for. A broker restart, or --undo, brings it back. Nodes of 3.12.13 and
# later are left as they are.
#
#   scripts/broker-tune.sh [--undo | --check] [--node NAME@HOST]    (default: the local node)
#
# Prints the monitor's state afterwards: `suspended` or `running`. --check
# changes nothing: it prints the state and exits 1 if the node starts a VM
# every minute (older than 3.12.13, monitor running), 0 otherwise.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
undo=0 check=0 node=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --undo) undo=1; shift ;;
    --check) check=1; shift ;;
    --node) node=(-n "$2"); shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "broker-tune.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
((${#node[@]})) || ensure_broker
ctl() { rabbitmqctl "${node[@]}" -q "$@"; }
version=$(ctl eval 'rabbit_misc:version().' | tr -d '"')
state() { ctl eval 'lists:nth(2, element(4, sys:get_status(rabbit_epmd_monitor))).'; }
if ((undo)); then
  ctl eval 'sys:resume(rabbit_epmd_monitor).' >/dev/null 2>&1 || true   # running already: nothing to resume
  state
  exit 0
fi
IFS=. read -r major minor patch <<<"$version"
patch=${patch%%[!0-9]*}
fixed=0
((major > 3 || (major == 3 && (minor > 12 || (minor == 12 && ${patch:-0} >= 13))))) && fixed=1
if ((check)); then
  now=$(state)
  echo "$now"
  [[ $fixed == 1 || $now == suspended ]]
  exit
fi
if ((fixed)); then
  log "RabbitMQ $version asks epmd before starting a VM: left as it is"
  state
  exit 0
fi
if [[ $(state) != suspended ]]; then
  ctl eval 'sys:suspend(rabbit_epmd_monitor).' >/dev/null
fi
log "RabbitMQ $version: rabbit_epmd_monitor suspended (undo: $0 --undo, or restart the broker)"
state
