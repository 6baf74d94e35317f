#!/usr/bin/env bash
# Starts or stops a private RabbitMQ node beside the shared one, with its own
# name, ports and data directory (tests that restart a broker, benchmarks
# that tune one). Never touches the node on 5672.
#
#   scripts/rabbit-node.sh start NAME PORT [ERL_ARGS]   # data in run/rabbit-NAME
#   scripts/rabbit-node.sh stop NAME
#
# RABBIT_EXTRA_CONF: lines appended to the node's rabbitmq.conf (e.g.
# "max_message_size = 65536").
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cmd=${1:?start|stop} name=${2:?node name}
base="${RABBIT_NODE_DIR:-$RUN_DIR/rabbit-$name}"
export RABBITMQ_NODENAME="$name@localhost"
export RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log"
export RABBITMQ_PID_FILE="$base/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
export RABBITMQ_CONFIG_FILE="$base/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config"
case $cmd in
  start)
    port=${3:?port}
    command -v rabbitmq-server >/dev/null || ensure_broker
    mkdir -p "$base/mnesia" "$base/log"
    echo '[].' > "$base/enabled_plugins"
    printf 'listeners.tcp.default = 127.0.0.1:%s\n' "$port" > "$base/rabbitmq.conf"
    [ -n "${RABBIT_EXTRA_CONF:-}" ] && printf '%s\n' "$RABBIT_EXTRA_CONF" >> "$base/rabbitmq.conf"
    echo '[].' > "$base/advanced.config"
    # Debian's rabbitmq-server drops root privileges to the rabbitmq user.
    if [ "$(id -u)" -eq 0 ] && id rabbitmq >/dev/null 2>&1; then
      chown -R rabbitmq:rabbitmq "$base"
    fi
    export RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="${RABBIT_DIST_PORT:-$((port + 20000))}"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${4:-}"
    rabbitmq-server -detached >/dev/null 2>&1
    wait_port 127.0.0.1 "$port" 120 || { echo "node $name did not open port $port" >&2; exit 1; }
    rabbitmqctl -n "$RABBITMQ_NODENAME" await_startup >/dev/null
    ;;
  stop)
    rabbitmqctl -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop NAME [PORT] [ERL_ARGS]" >&2; exit 2 ;;
esac
