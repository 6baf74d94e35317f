#!/usr/bin/env bash
# An open-loop run of scripts/tail-bench.sh, seen in time: which moments were
# slow and what the machine did then. It builds compare.sh's load driver
# (../shared/bench/loadcheck) with one addition, a dump of every request's
# scheduled start and latency (LOADCHECK_DUMP), samples the disk, the dirty
# page cache, the CPU, the TCP connections accepted and each process's CPU
# beside the run (scripts/timeline.py), and prints tail-bench's figures, then the slow 100 ms
# spans beside the kernel's write-back bursts and the quorum-queue log's
# rollovers.
#
#   scripts/tail-timeline.sh [tail-bench.sh options]    (e.g. --duration 10 --open-pct 60)
#
# The dump driver is built in a copy of loadcheck's source: the shared one is
# never changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
B=$ROOT/../shared/bench
work=$(mktemp -d "${TMPDIR:-/tmp}/tail-timeline-XXXX")
cp -r "$B/loadcheck" "$work/loadcheck"
python3 - "$work/loadcheck/src/main.rs" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
edits = [
    ("    let (mut n_ok, mut n_err) = (0u64, overload_in_window);\n",
     "    let (mut n_ok, mut n_err) = (0u64, overload_in_window);\n"
     "    let mut dump: Vec<(u64, u64, u64)> = Vec::new();\n"),
    ("sched >= measure_from => {\n                    let _ = acc.record(accept_us.max(1));\n",
     "sched >= measure_from => {\n                    let _ = acc.record(accept_us.max(1));\n"
     "                    dump.push((sched.duration_since(start).as_micros() as u64, accept_us, e2e_us));\n"),
    ("    let seconds = until.saturating_duration_since(measure_from)",
     "    if let Ok(path) = std::env::var(\"LOADCHECK_DUMP\") {\n"
     "        use std::io::Write;\n"
     "        dump.sort();\n"
     "        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() - start.elapsed();\n"
     "        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);\n"
     "        writeln!(f, \"# start_epoch_us {}\", epoch.as_micros())?;\n"
     "        for (s, a, e) in &dump { writeln!(f, \"{s} {a} {e}\")?; }\n"
     "    }\n"
     "    let seconds = until.saturating_duration_since(measure_from)"),
]
for old, new in edits:
    if s.count(old) != 1:
        sys.exit("tail-timeline.sh: loadcheck's open loop is not as this script knows it; update the patch")
    s = s.replace(old, new)
open(p, "w").write(s)
PY
cargo build -q --release --manifest-path "$work/loadcheck/Cargo.toml" --target-dir "${TMPDIR:-/tmp}/tail-timeline-target"
python3 scripts/timeline.py sample "$work/samples" & sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
LOADCHECK_DUMP=$work/dump scripts/tail-bench.sh --driver "${TMPDIR:-/tmp}/tail-timeline-target/release/loadcheck" "$@" | grep -v '^{'
kill $sampler 2>/dev/null || true
# tail-bench runs one open phase per share: the dump is the last one's.
python3 scripts/timeline.py report "$work/dump" "$work/samples"
echo "dump and samples: $work"
