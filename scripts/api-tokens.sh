#!/usr/bin/env bash
# The demo API token: makes sure run/secrets/api-token (the token in clear,
# mode 600, for curl and scripts/load.sh) and run/secrets/api-tokens (the
# gateways' API_TOKENS_FILE: the line `demo:sha256:<digest>`, no secret in
# it) exist, and prints the path of the token file.
#
#   scripts/api-tokens.sh            # creates them once, keeps them after
#   scripts/api-tokens.sh add NAME   # one more tenant: prints its token once
#
# Environment: SECRETS_DIR (default run/secrets).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

dir=${SECRETS_DIR:-$RUN_DIR/secrets}
tokens="$dir/api-tokens"
mkdir -p "$dir"
chmod 700 "$dir"

new_token() { openssl rand -hex 24; }
digest() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

add() {
  local name=$1 token=$2
  if grep -q "^$name:" "$tokens" 2>/dev/null; then
    echo "a token named $name is already in $tokens" >&2
    exit 1
  fi
  printf '%s:sha256:%s\n' "$name" "$(digest "$token")" >> "$tokens"
}

case ${1:-demo} in
  demo)
    if [ ! -s "$dir/api-token" ]; then
      token=$(new_token)
      (umask 077 && printf '%s\n' "$token" > "$dir/api-token")
      [ -f "$tokens" ] || printf '# name:sha256:<SHA-256 of the token>; gateways read this at start\n' > "$tokens"
      sed -i '/^demo:/d' "$tokens"
      add demo "$token"
    fi
    echo "$dir/api-token"
    ;;
  add)
    name=${2:?a tenant name}
    token=$(new_token)
    add "$name" "$token"
    echo "$token"
    log "restart the gateways to load it"
    ;;
  *) echo "usage: $0 [demo | add NAME]" >&2; exit 2 ;;
esac
