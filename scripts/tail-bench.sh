#!/usr/bin/env bash
# The project's half of ../shared/bench/compare.sh, with CPU accounting:
# one gateway and two workers on their defaults, on a fresh request queue of
# the local RabbitMQ, driven by compare.sh's own load driver (loadcheck):
# a closed loop (64 clients, long-poll), then an open loop at a share of the
# throughput the closed loop reached (or at a fixed --rate). For each phase
# it prints loadcheck's JSON line and the CPU each process used per verified
# request (broker, gateway, workers, the driver itself), from /proc, and the
# broker messages the gateway and the workers published per verified request
# (their /metrics `batch_size` counts; the workers serve /metrics on 18481-2),
# and how busy the machine was and how much of it the host took (steal).
# Each process's /metrics after each phase stays in the run directory.
#
#   scripts/tail-bench.sh [--bin DIR] [--duration S] [--open-pct P[,P...]]
#                         [--open-duration S] [--rate R]
#                         [--gateway-env "K=V ..."] [--worker-env "K=V ..."]
#                         [--driver-args "..."] [--driver PATH]
#                         [--seed-results N] [--clients N]
#
# --bin: the release binaries to run (default target/release, built first);
# point it at another build's target/release to compare builds in one sitting.
# --gateway-env / --worker-env: extra environment for those processes (e.g.
# TOKIO_WORKER_THREADS=1), to compare settings in one sitting.
# --driver-args: extra loadcheck options for every phase (e.g. "--doc-bytes 700").
# --driver: another loadcheck binary (e.g. one built with a per-request dump).
# --seed-results: N finished requests appended to the run's events stream
# before the gateway starts, which replays them: its store then holds what a
# gateway holds after N requests (15 minutes of them is the steady state of
# the default RESULT_RETENTION), not an empty store's few.
# --clients: closed-loop clients (default 64, compare.sh's): with many more,
# the closed loop is bound by the cores instead of by its clients' latency,
# and measures what the service can serve on this machine.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
B=$ROOT/../shared/bench
BIN="" DUR=20 PCTS=60 ODUR=60 RATE="" GENV="" WENV="" DARGS="" DRIVER="" SEED=0 CLIENTS=64
while [[ $# -gt 0 ]]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --open-pct) PCTS=$2; shift 2 ;;
    --open-duration) ODUR=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --gateway-env) GENV=$2; shift 2 ;;
    --worker-env) WENV=$2; shift 2 ;;
    --driver-args) DARGS=$2; shift 2 ;;
    --driver) DRIVER=$2; shift 2 ;;
    --seed-results) SEED=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "tail-bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ensure_broker
if [[ -z ${AMQP_URL:-} ]] && ! "$ROOT/scripts/broker-tune.sh" --check >/dev/null 2>&1; then
  echo "tail-bench.sh: note: this broker starts an Erlang VM every minute (a stall of up to 200 ms on two cores); scripts/broker-tune.sh stops it" >&2
fi
if [[ -z $BIN ]]; then
  cargo build --release --bins --quiet
  BIN=$ROOT/target/release
fi
LC_TARGET=${LOADCHECK_TARGET_DIR:-${TMPDIR:-/tmp}/bench-loadcheck-target}
cargo build -q --release --manifest-path "$B/loadcheck/Cargo.toml" --target-dir "$LC_TARGET"
LC=${DRIVER:-$LC_TARGET/release/loadcheck}
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/tail-bench-XXXX")
pids=()
Q=tailbench.$$
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done; }
# The queue and its dead-letter queue and stream go with the run.
cleanup() { stop; for q in "$Q" "$Q.dead" "$Q.events"; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

if ((SEED > 0)); then
  seeder=$BIN/loadgen
  [[ -x $seeder ]] || { cargo build --release -p loadgen --quiet; seeder=$ROOT/target/release/loadgen; }
  "$seeder" seed-events --queue "$Q" --events $((2 * SEED)) --batch 50 >"$run_dir/seed.log" 2>&1
  sync  # the stream's pages on disk now, not in a write-back burst during the run
fi
GATEWAY_ADDR=127.0.0.1:18480 REQUEST_QUEUE=$Q env $GENV "$BIN/gateway" >"$run_dir/gateway.log" 2>&1 & gw=$!; pids+=($gw)
workers=()
for w in 1 2; do
  VERIFIER_KEYS_DIR=$B/keys REQUEST_QUEUE=$Q WORKER_HTTP_ADDR=127.0.0.1:1848$w env $WENV "$BIN/verifier-worker" >"$run_dir/worker$w.log" 2>&1 & workers+=($!); pids+=($!)
done
for _ in $(seq 240); do curl -sf http://127.0.0.1:18480/readyz >/dev/null && break; sleep 0.5; done
((SEED > 0)) && echo "seeded: $(curl -sf http://127.0.0.1:18480/metrics | grep -E '^gateway_(store_entries|replay_seconds)' | tr '\n' ' ')"
tck=$(getconf CLK_TCK)
ticks() { local t=0; for p in "$@"; do read -r -a f < "/proc/$p/stat"; t=$((t + f[13] + f[14])); done; echo "$t"; }
# The machine's busy and stolen ticks and its uptime (lib.sh) come last.
snapshot() { echo "$(ticks $(pgrep -x beam.smp)) $(ticks "$gw") $(ticks "${workers[@]}")" $(machine); }
# Messages each process published so far, by kind: the batch_size counts.
published() {
  for port in 18480 18481 18482; do curl -sf "http://127.0.0.1:$port/metrics" || true; done |
    python3 -c '
import re, sys, collections
c = collections.Counter()
for line in sys.stdin:
    m = re.match(r"batch_size_count\{kind=\"([^\"]+)\"\} (\S+)", line)
    if m: c[m.group(1)] += float(m.group(2))
print(" ".join(f"{k}={int(v)}" for k, v in sorted(c.items())) or "-")'
}

# One loadcheck run: its JSON line, then the CPU per verified request.
phase() {
  local label=$1; shift
  local before after json driver
  before=$(snapshot)
  local sent_before sent_after
  sent_before=$(published)
  # `times` in a subshell: its children's CPU, the driver's own. A run with
  # errors (the driver exits 1) is a result too: its figures are printed.
  ( "$LC" --url http://127.0.0.1:18480 --warmup-s 3 --wait-param --keys "$B/keys" $DARGS "$@" \
      2>"$run_dir/lc-$label.log" | tail -n 1 >"$run_dir/$label.json" || true; times >"$run_dir/$label.times" )
  after=$(snapshot)
  sent_after=$(published)
  for port in 18480 18481 18482; do curl -sf "http://127.0.0.1:$port/metrics" >"$run_dir/$label.metrics.$port" || true; done
  json=$(cat "$run_dir/$label.json")
  driver=$(tail -n 1 "$run_dir/$label.times")
  python3 - "$label" "$json" "$before" "$after" "$driver" "$tck" "$sent_before" "$sent_after" <<'PY'
import json, re, sys
label, j, before, after, driver, tck, sent_before, sent_after = sys.argv[1:]
r = json.loads(j)
tck = int(tck)
b = list(map(float, before.split())); a = list(map(float, after.split()))
def secs(t):
    m = re.match(r"(\d+)m([\d.]+)s", t)
    return int(m.group(1)) * 60 + float(m.group(2))
u, s = driver.split()
# The whole run (warm-up included) is in the CPU figures: divide by every verified request.
done = r["requests"] - r["errors"]
warm = r["throughput_rps"] * 3
n = max(1, done + warm)
cpu = {"broker": (a[0] - b[0]) / tck, "gateway": (a[1] - b[1]) / tck, "workers": (a[2] - b[2]) / tck,
       "driver": secs(u) + secs(s)}
per = {k: round(v / n * 1e6) for k, v in cpu.items()}
per["all"] = sum(per.values())
print(f"{label:12} {r['throughput_rps']:7.0f}/s  p50 {r['e2e_p50_ms']:6.1f}  p90 {r['e2e_p90_ms']:6.1f}  "
      f"p99 {r['e2e_p99_ms']:6.1f}  max {r['e2e_max_ms']:6.1f} ms  errors {r['errors']}  "
      f"CPU/request us: " + " ".join(f"{k} {v}" for k, v in per.items()))
def kinds(t):
    return {k: int(v) for k, v in (x.split("=") for x in t.split() if "=" in x)}
sb, sa = kinds(sent_before), kinds(sent_after)
msgs = {k: round((sa[k] - sb.get(k, 0)) / n, 3) for k in sa}
print(f"{'':12} messages published per verified request: " + " ".join(f"{k} {v}" for k, v in sorted(msgs.items())))
wall = a[5] - b[5]
machine = {"busy_cores": round((a[3] - b[3]) / tck / wall, 2), "stolen_cores": round((a[4] - b[4]) / tck / wall, 2)}
print(f"{'':12} machine: {machine['busy_cores']} cores busy, {machine['stolen_cores']} taken by the host (steal)")
print(json.dumps({"phase": label, "result": r, "cpu_us_per_request": per, "messages_per_request": msgs,
                  "machine": machine}))
PY
}

phase closed --duration "$DUR" --concurrency "$CLIENTS"
capacity=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$run_dir/closed.json")
if [[ -n $RATE ]]; then
  phase "open-$RATE" --duration "$ODUR" --rate "$RATE" --concurrency 20000
else
  for pct in ${PCTS//,/ }; do
    rate=$(python3 -c "print(max(1, round($capacity * $pct / 100)))")
    phase "open-$pct%" --duration "$ODUR" --rate "$rate" --concurrency 20000
  done
fi
echo "logs: $run_dir"
