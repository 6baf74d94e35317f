# Shared helpers for the scripts (sourced, not run).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/run"

log() { printf '\033[1m==>\033[0m %s %s\n' "$(date +%T)" "$*" >&2; }

# True when something accepts TCP connections on host:port.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits up to $3 seconds for host:port to accept connections.
wait_port() {
  local host=$1 port=$2 timeout=${3:-60} i
  for ((i = 0; i < timeout * 10; i++)); do
    port_open "$host" "$port" && return 0
    sleep 0.1
  done
  return 1
}

# Makes sure a RabbitMQ broker answers on 127.0.0.1:5672: starts the local
# rabbitmq-server, installing Debian's package first if it is missing.
ensure_broker() {
  if port_open 127.0.0.1 5672; then
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    log "installing rabbitmq-server (Debian package)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq rabbitmq-server >/dev/null
  fi
  log "starting rabbitmq-server"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  if ! wait_port 127.0.0.1 5672 120; then
    log "RabbitMQ did not come up on 127.0.0.1:5672"
    return 1
  fi
  # The port opens a moment before the node accepts logins.
  command -v rabbitmqctl >/dev/null && rabbitmqctl await_startup >/dev/null 2>&1 || true
}

# Makes sure headless Chromium is on PATH (the dashboard test drives it):
# installs Debian's `chromium` package if it is missing.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  log "installing chromium (Debian package)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  if ! command -v chromium >/dev/null 2>&1; then
    log "chromium is still not on PATH after installing it"
    return 1
  fi
}

# Makes sure cargo-deny is installed (deny.toml's dependency policy): builds
# it from crates.io if missing, which takes some minutes the first time.
# Its own release profile asks for fat LTO in one codegen unit, minutes of
# a two-core machine for a tool that checks a lock file in two seconds: it is
# built without them, at opt-level 1 (3 min 21 s here against 4 min 35 s,
# 2026-12-07).
ensure_cargo_deny() {
  if cargo deny --version >/dev/null 2>&1; then
    return 0
  fi
  log "installing cargo-deny (cargo install --locked, without LTO)"
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 nice -n 19 cargo install --locked cargo-deny
}

# Exports API_TOKEN (loadgen's token) from run/secrets/api-token, the demo
# token of scripts/up.sh, unless API_TOKEN is already set.
use_demo_token() {
  if [ -z "${API_TOKEN:-}" ] && [ -s "$RUN_DIR/secrets/api-token" ]; then
    API_TOKEN=$(cat "$RUN_DIR/secrets/api-token")
    export API_TOKEN
  fi
}

# The machine's busy and stolen CPU ticks (all CPUs) and its uptime in seconds: on a
# virtual machine the host may take cores away (steal), and a latency measured while it
# does says little about the code. Two readings make a rate.
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; cut -d' ' -f1 /proc/uptime; }
