#!/usr/bin/env bash
# The test command: formatting, lints, then every test of the workspace
# (unit, known-answer vectors, and the integration tests that run the real
# gateway and worker binaries against a real RabbitMQ on 127.0.0.1:5672; the
# dashboard test also drives headless Chromium, installed here if missing).
#
#   scripts/test.sh            everything
#   scripts/test.sh -- ARGS    extra arguments for cargo test (e.g. a filter)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_broker
ensure_chromium
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The integration tests start the binaries from target/debug.
log "building binaries"
cargo build --workspace --bins --quiet
log "cargo test"
[ "${1:-}" = -- ] && shift
cargo test --workspace --no-fail-fast "$@"
