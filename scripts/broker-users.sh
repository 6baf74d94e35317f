#!/usr/bin/env bash
# Per-role RabbitMQ users: one for the gateways, one for the workers, each
# with only the permissions its role needs (the README's "Broker users").
#
#   scripts/broker-users.sh create
#       On the local broker, with rabbitmqctl: creates (or resets) the users
#       and writes their URLs to run/secrets/amqp.env (mode 600), which
#       scripts/up.sh reads. Passwords are generated once and kept there.
#   scripts/broker-users.sh definitions [DIR]
#       For compose: writes DIR/definitions.json (users with salted SHA-256
#       password hashes, their permissions) and DIR/definitions.conf (the
#       rabbitmq.conf line that loads it). DIR defaults to run/rabbitmq.
#       Passwords come from the environment or from .env, and are generated
#       into .env when missing (compose reads .env by itself).
#
# Environment: SECRETS_DIR (default run/secrets), ENV_FILE (default .env),
# BROKER_HOSTS (create: host:port of each node, default 127.0.0.1:5672;
# rabbitmqctl talks to RABBITMQ_NODENAME, default the local node),
# REQUEST_QUEUE (default verifySignature: the permissions are
# scoped to its queues), BROKER_USER_PREFIX (default sig: users
# <prefix>-gateway, <prefix>-worker, and <prefix>-admin for compose),
# GATEWAY_AMQP_PASSWORD, WORKER_AMQP_PASSWORD, RABBITMQ_ADMIN_PASSWORD.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

queue=${REQUEST_QUEUE:-verifySignature}
prefix=${BROKER_USER_PREFIX:-sig}
gateway_user="$prefix-gateway" worker_user="$prefix-worker" admin_user="$prefix-admin"

# The queue name as a regular expression (RabbitMQ permissions are regexes).
q=$(printf '%s' "$queue" | sed 's/[][\.^$*+?(){}|/]/\\&/g')
# configure: declaring the three queues; write: publishing, which RabbitMQ
# checks on the exchange (the default one, amq.default), not on the queue;
# read: consuming. Workers also declare the fanout exchange <queue>.workers
# (their heartbeats, with the keys each serves), publish to it, and bind and
# consume an exclusive queue <queue>.workers.<uuid> each (binding asks
# write on the queue and read on the exchange).
peers="\\.workers(\\.[0-9a-f-]+)?"
gateway_perms=("^$q(\\.dead|\\.events)?\$" '^amq\.default$' "^$q\\.events\$")
worker_perms=("^$q(\\.dead|\\.events|$peers)?\$" "^(amq\\.default|$q$peers)\$" "^$q($peers)?\$")

new_password() { openssl rand -hex 24; }

# RabbitMQ's rabbit_password_hashing_sha256: base64(salt ++ sha256(salt ++ password)).
password_hash() {
  local tmp
  tmp=$(mktemp -d)
  head -c 4 /dev/urandom > "$tmp/salt"
  { cat "$tmp/salt"; printf '%s' "$1"; } | openssl dgst -sha256 -binary > "$tmp/hash"
  cat "$tmp/salt" "$tmp/hash" | base64 | tr -d '\n'
  rm -rf "$tmp"
}

json_escape() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

# Reads KEY from the environment, else from FILE, else generates it into FILE.
password_from() {
  local key=$1 file=$2 value=${!1:-}
  if [ -z "$value" ] && [ -f "$file" ]; then
    value=$(sed -n "s/^$key=//p" "$file" | tail -1)
  fi
  if [ -z "$value" ]; then
    value=$(new_password)
    printf '%s=%s\n' "$key" "$value" >> "$file"
    chmod 600 "$file"
  fi
  # It goes into URLs and env files unquoted: keep to URL-safe characters.
  if ! [[ $value =~ ^[A-Za-z0-9._~-]+$ ]]; then
    log "$key may only hold letters, digits and . _ ~ - (it is used in URLs)"
    exit 1
  fi
  printf '%s' "$value"
}

case ${1:-} in
  create)
    command -v rabbitmqctl >/dev/null || { log "rabbitmqctl not found: create the users on your broker by hand (see README)"; exit 1; }
    secrets_dir=${SECRETS_DIR:-$RUN_DIR/secrets}
    mkdir -p "$secrets_dir"
    secrets="$secrets_dir/passwords"
    touch "$secrets" && chmod 600 "$secrets"
    gateway_pw=$(password_from GATEWAY_AMQP_PASSWORD "$secrets")
    worker_pw=$(password_from WORKER_AMQP_PASSWORD "$secrets")
    existing=$(rabbitmqctl -q list_users | awk '{print $1}') ||
      { log "rabbitmqctl cannot reach the local broker"; exit 1; }
    for pair in "$gateway_user:$gateway_pw" "$worker_user:$worker_pw"; do
      user=${pair%%:*} pw=${pair#*:}
      if grep -qx "$user" <<<"$existing"; then
        rabbitmqctl -q change_password "$user" "$pw" >/dev/null
      else
        rabbitmqctl -q add_user "$user" "$pw" >/dev/null
      fi
    done
    rabbitmqctl -q set_permissions -p / "$gateway_user" "${gateway_perms[@]}" >/dev/null
    rabbitmqctl -q set_permissions -p / "$worker_user" "${worker_perms[@]}" >/dev/null
    # One URL per node (BROKER_HOSTS: host:port,... for a cluster).
    urls_for() {
      local host out=()
      IFS=, read -ra hosts <<<"${BROKER_HOSTS:-127.0.0.1:5672}"
      for host in "${hosts[@]}"; do out+=("amqp://$1:$2@$host/%2f"); done
      (IFS=,; echo "${out[*]}")
    }
    umask 077
    cat > "$secrets_dir/amqp.env" <<EOF
GATEWAY_AMQP_URL=$(urls_for "$gateway_user" "$gateway_pw")
WORKER_AMQP_URL=$(urls_for "$worker_user" "$worker_pw")
RESULT_PUBLISHERS=$worker_user
EOF
    log "broker users $gateway_user and $worker_user ready (URLs in $secrets_dir/amqp.env)"
    ;;
  definitions)
    dir=${2:-$RUN_DIR/rabbitmq}
    env_file=${ENV_FILE:-$ROOT/.env}
    mkdir -p "$dir"
    touch "$env_file"
    admin_pw=$(password_from RABBITMQ_ADMIN_PASSWORD "$env_file")
    gateway_pw=$(password_from GATEWAY_AMQP_PASSWORD "$env_file")
    worker_pw=$(password_from WORKER_AMQP_PASSWORD "$env_file")
    user_json() {
      printf '    {"name": "%s", "password_hash": "%s", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [%s]}' \
        "$1" "$(password_hash "$2")" "$3"
    }
    perms_json() {
      printf '    {"user": "%s", "vhost": "/", "configure": "%s", "write": "%s", "read": "%s"}' \
        "$1" "$(json_escape "$2")" "$(json_escape "$3")" "$(json_escape "$4")"
    }
    {
      echo '{'
      echo '  "users": ['
      user_json "$admin_user" "$admin_pw" '"administrator"'; echo ','
      user_json "$gateway_user" "$gateway_pw" ''; echo ','
      user_json "$worker_user" "$worker_pw" ''; echo
      echo '  ],'
      echo '  "vhosts": [{"name": "/"}],'
      echo '  "permissions": ['
      perms_json "$admin_user" '.*' '.*' '.*'; echo ','
      perms_json "$gateway_user" "${gateway_perms[@]}"; echo ','
      perms_json "$worker_user" "${worker_perms[@]}"; echo
      echo '  ]'
      echo '}'
    } > "$dir/definitions.json"
    chmod 644 "$dir/definitions.json"
    echo 'load_definitions = /etc/rabbitmq/definitions.json' > "$dir/definitions.conf"
    # For compose.cluster.yaml: the nodes find each other by name, and
    # share one Erlang cookie.
    password_from ERLANG_COOKIE "$env_file" >/dev/null
    cat > "$dir/cluster.conf" <<'EOF'
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = rabbit@rabbitmq1
cluster_formation.classic_config.nodes.2 = rabbit@rabbitmq2
cluster_formation.classic_config.nodes.3 = rabbit@rabbitmq3
EOF
    log "wrote $dir/definitions.json ($admin_user, $gateway_user, $worker_user); passwords in $env_file"
    ;;
  *)
    sed -n '2,24p' "$0" >&2
    exit 2
    ;;
esac
