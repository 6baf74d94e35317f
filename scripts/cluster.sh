#!/usr/bin/env bash
# A three-node RabbitMQ cluster of private nodes on this machine, beside the
# shared broker (which it never touches): own node names, AMQP and
# distribution ports and data directories, the one cookie of the user the
# nodes run as.
#
#   scripts/cluster.sh up        start the nodes, join them, print AMQP_URL
#   scripts/cluster.sh down      stop them (data kept in run/cluster)
#   scripts/cluster.sh status    cluster_status of the first node
#   scripts/cluster.sh url       the AMQP_URL (every node, comma-separated)
#   scripts/cluster.sh kill N    SIGKILL node N (1-3): a machine dying
#   scripts/cluster.sh start N   start node N again (it rejoins by itself)
#   scripts/cluster.sh leader Q  the node (1-3) that leads quorum queue Q
#   scripts/cluster.sh wait      until all three nodes run in the cluster
#
# Environment: CLUSTER_NAME (default sigc: nodes sigc1..3@localhost),
# CLUSTER_PORT (default 5701: AMQP ports 5701..5703, distribution ports
# 25701..25703), CLUSTER_DIR (default run/cluster), CLUSTER_USER and
# CLUSTER_PASSWORD (default guest/guest; guest may log in over loopback).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

name=${CLUSTER_NAME:-sigc}
base_port=${CLUSTER_PORT:-5701}
dir=${CLUSTER_DIR:-$RUN_DIR/cluster}
user=${CLUSTER_USER:-guest} password=${CLUSTER_PASSWORD:-guest}

node() { echo "$name$1@localhost"; }
port() { echo $((base_port + $1 - 1)); }
ctl() { local n=$1; shift; rabbitmqctl -n "$(node "$n")" "$@"; }

start_node() {
  local n=$1
  RABBIT_NODE_DIR="$dir/$name$n" RABBIT_DIST_PORT=$(($(port "$n") + 20000)) \
    "$ROOT/scripts/rabbit-node.sh" start "$name$n" "$(port "$n")"
}

url() {
  local n urls=()
  for n in 1 2 3; do urls+=("amqp://$user:$password@127.0.0.1:$(port "$n")/%2f"); done
  (IFS=,; echo "${urls[*]}")
}

case ${1:-} in
  up)
    command -v rabbitmq-server >/dev/null || ensure_broker
    # In parallel: a node that was a cluster member waits for its peers'
    # tables before it opens its port.
    pids=()
    for n in 1 2 3; do
      if port_open 127.0.0.1 "$(port "$n")"; then continue; fi
      log "starting node $(node "$n") on port $(port "$n")"
      start_node "$n" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    for n in 2 3; do
      if ctl 1 cluster_status 2>/dev/null | grep -q "$(node "$n")"; then continue; fi
      log "joining $(node "$n") to $(node 1)"
      ctl "$n" stop_app >/dev/null
      ctl "$n" join_cluster "$(node 1)" >/dev/null
      ctl "$n" start_app >/dev/null
    done
    ctl 1 await_online_nodes 3 >/dev/null
    log "cluster of 3 nodes up"
    url
    ;;
  down)
    for n in 1 2 3; do rabbitmqctl -n "$(node "$n")" stop >/dev/null 2>&1 || true; done
    ;;
  status) ctl 1 cluster_status ;;
  wait)
    for n in 1 2 3; do
      port_open 127.0.0.1 "$(port "$n")" || continue
      ctl "$n" await_online_nodes 3 --timeout 60 >/dev/null && exit 0
    done
    exit 1
    ;;
  url) url ;;
  kill)
    n=${2:?node number}
    pid=$(cat "$dir/$name$n/pid" 2>/dev/null || true)
    [ -n "$pid" ] || { echo "no pid file for $(node "$n")" >&2; exit 1; }
    kill -9 "$pid"
    # Gone once its port is closed.
    for _ in $(seq 1 100); do port_open 127.0.0.1 "$(port "$n")" || exit 0; sleep 0.1; done
    echo "$(node "$n") still answers" >&2; exit 1
    ;;
  start)
    n=${2:?node number}
    start_node "$n"
    ;;
  leader)
    q=${2:?queue name}
    for n in 1 2 3; do
      port_open 127.0.0.1 "$(port "$n")" || continue
      leader=$(ctl "$n" -q list_queues name leader 2>/dev/null | awk -v q="$q" '$1 == q {print $2}')
      [ -n "$leader" ] || continue
      for m in 1 2 3; do [ "$leader" = "$(node "$m")" ] && { echo "$m"; exit 0; }; done
    done
    echo "no leader found for $q" >&2; exit 1
    ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
