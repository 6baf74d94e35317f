#!/usr/bin/env bash
# Load against a running service (scripts/up.sh): builds the load generator
# and passes every argument to `loadgen run` (see `--help`). Defaults: 64
# closed-loop clients, long-poll, 10,000 requests, 2,900-byte documents,
# 10% tampered, signed with run/demo/private.pem, against 127.0.0.1:8080.
#
#   scripts/load.sh -d 30s -c 64
#   scripts/load.sh --rate 2000 -d 30s      # open loop, fixed arrival rate
#   scripts/load.sh --poll plain --json
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
cargo build --release -p loadgen --quiet
use_demo_token
exec target/release/loadgen run "$@"
