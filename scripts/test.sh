#!/usr/bin/env bash
# The test command: formatting, lints, the dependency policy (deny.toml:
# licenses, bans, sources; advisories need GitHub, see there), then every
# test of the workspace (unit, known-answer vectors, property tests, and the
# integration tests that run the real gateway and worker binaries against a
# real RabbitMQ on 127.0.0.1:5672; the dashboard test also drives headless
# Chromium, installed here if missing).
#
#   scripts/test.sh            everything
#   scripts/test.sh -- ARGS    extra arguments for cargo test (e.g. a filter)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_broker
ensure_chromium
ensure_cargo_deny
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Errors only: the duplicate-version warnings are many and never fail it
# (run `cargo deny check bans` to read them).
log "cargo deny check licenses bans sources"
cargo deny --log-level error check licenses bans sources
# The integration tests start the binaries from target/debug. Built with
# the tests in one command, so the binaries and the tests share one feature
# resolution (dev-dependencies turn on more features of shared crates):
# `--bins` alone would leave `cargo test` building much of the graph again.
log "building binaries and tests"
cargo build --workspace --bins --tests --quiet
log "cargo test"
[ "${1:-}" = -- ] && shift
cargo test --workspace --no-fail-fast "$@"
