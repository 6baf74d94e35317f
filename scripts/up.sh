#!/usr/bin/env bash
# Runs the whole service locally with plain processes, the same topology as
# compose.yaml: a RabbitMQ broker, M gateways and N verifier-workers.
#
#   scripts/up.sh [--workers N] [--gateways M] [--port P] [--cluster] [--open] [--detach]
#
# --cluster: on a three-node RabbitMQ cluster of private nodes
# (scripts/cluster.sh up; ports 5701-5703), every process given all three
# URLs, quorum queues replicated over the nodes.
#
# Builds release binaries, makes sure a broker is reachable (installing and
# starting Debian's rabbitmq-server if needed), creates a demo key pair in
# run/demo if there is none, and starts gateway i on port P+i (default 8080).
# On the local broker it creates the per-role users (scripts/broker-users.sh):
# gateways log in as sig-gateway, workers as sig-worker, and gateways believe
# verdicts from sig-worker only. With AMQP_URL set, every process uses that
# URL (one user, trusted for verdicts).
# Gateways require an API token (scripts/api-tokens.sh: the demo token is in
# run/secrets/api-token; curl -H "Authorization: Bearer $(cat run/secrets/api-token)");
# --open runs them without tokens.
# In the foreground Ctrl-C stops everything; with --detach it returns and
# scripts/down.sh stops it. Logs: run/logs/.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

workers=2 gateways=1 port=8080 detach=0 cluster=0 open=0
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --gateways) gateways=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --detach) detach=1; shift ;;
    --cluster) cluster=1; shift ;;
    --open) open=1; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cd "$ROOT"
log "building release binaries"
cargo build --release --bins --quiet
ensure_broker
if [ "$cluster" = 1 ]; then
  "$ROOT/scripts/cluster.sh" up >/dev/null
  cluster_name=${CLUSTER_NAME:-sigc} cluster_port=${CLUSTER_PORT:-5701}
  export RABBITMQ_NODENAME="${cluster_name}1@localhost"
  export BROKER_HOSTS="127.0.0.1:$cluster_port,127.0.0.1:$((cluster_port + 1)),127.0.0.1:$((cluster_port + 2))"
fi

mkdir -p "$RUN_DIR/keys" "$RUN_DIR/docs" "$RUN_DIR/demo" "$RUN_DIR/logs"
if [ ! -f "$RUN_DIR/demo/private.pem" ]; then
  log "creating a demo RSA-2048 key pair in run/demo (public key: run/keys/default.pem)"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RUN_DIR/demo/private.pem" 2>/dev/null
  openssl pkey -in "$RUN_DIR/demo/private.pem" -pubout -out "$RUN_DIR/keys/default.pem"
  printf 'Hello from the signature service.\n' > "$RUN_DIR/docs/hello.txt"
fi

"$ROOT/scripts/down.sh" --quiet || true
: > "$RUN_DIR/pids"
if [ -z "${AMQP_URL:-}" ] && command -v rabbitmqctl >/dev/null 2>&1; then
  "$ROOT/scripts/broker-users.sh" create
  # shellcheck disable=SC1091
  source "$RUN_DIR/secrets/amqp.env"
  gateway_url=$GATEWAY_AMQP_URL worker_url=$WORKER_AMQP_URL
  export RESULT_PUBLISHERS
else
  gateway_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f} worker_url=$gateway_url
fi
if [ "$open" = 0 ]; then
  token_file=$("$ROOT/scripts/api-tokens.sh")
  export API_TOKENS_FILE=${API_TOKENS_FILE:-$RUN_DIR/secrets/api-tokens}
fi
export VERIFIER_KEYS_DIR=${VERIFIER_KEYS_DIR:-$RUN_DIR/keys}
export DOCS_DIR=${DOCS_DIR:-$RUN_DIR/docs}
for ((i = 0; i < workers; i++)); do
  AMQP_URL=$worker_url WORKER_HTTP_ADDR=127.0.0.1:$((9100 + i)) \
    nohup "$ROOT/target/release/verifier-worker" >"$RUN_DIR/logs/worker-$i.log" 2>&1 &
  echo $! >> "$RUN_DIR/pids"
done
for ((i = 0; i < gateways; i++)); do
  AMQP_URL=$gateway_url GATEWAY_ADDR=0.0.0.0:$((port + i)) \
    nohup "$ROOT/target/release/gateway" >"$RUN_DIR/logs/gateway-$i.log" 2>&1 &
  echo $! >> "$RUN_DIR/pids"
done

for ((i = 0; i < gateways; i++)); do
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$((port + i))/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$((port + i))/readyz" >/dev/null ||
    { log "gateway $i is not ready; see run/logs/gateway-$i.log"; exit 1; }
done
log "ready: $gateways gateway(s), $workers worker(s)"
if [ "$open" = 0 ]; then
  log "API token: ${token_file#"$ROOT/"} (scripts/load.sh sends it; --open runs without)"
fi
for ((i = 0; i < gateways; i++)); do echo "http://127.0.0.1:$((port + i))"; done

if [ "$detach" = 1 ]; then
  log "running in the background; stop with scripts/down.sh"
  exit 0
fi
trap '"$ROOT/scripts/down.sh"; exit 0' INT TERM
log "Ctrl-C stops everything"
wait
