#!/usr/bin/env python3
"""When an open-loop run was slow, and what the machine did then.

  timeline.py sample OUT            # every 20 ms until killed: disk, dirty pages, CPU;
                                    # every 100 ms each process's CPU (broker, gateway,
                                    # workers, driver)
  timeline.py report DUMP SAMPLES   # DUMP: the per-request lines of loadcheck's
                                    # LOADCHECK_DUMP (see scripts/tail-timeline.sh)

The report prints the run's percentiles, every 100 ms of scheduled starts in which a
request took over 40 ms, the moments the kernel wrote out more than 5 MB of dirty pages
at once, the broker's quorum-queue log files (.wal) created during the run, and how many
cores each process used on average.
"""
import collections
import glob
import os
import subprocess
import sys
import time

PROCS = {"beam.smp": "broker", "gateway": "gateway", "verifier-worker": "workers", "loadcheck": "driver"}
WALS = "/var/lib/rabbitmq/mnesia/*/quorum/*/*.wal"


def disk_device():
    root = os.stat("/var/lib/rabbitmq" if os.path.isdir("/var/lib/rabbitmq") else "/").st_dev
    major, minor = os.major(root), os.minor(root)
    for line in open("/proc/diskstats"):
        p = line.split()
        if int(p[0]) == major and int(p[1]) == minor:
            return p[2]
    return None


def sample(out_path):
    dev = disk_device()
    out = open(out_path, "w")
    pids, i = {}, 0
    while True:
        if i % 50 == 0:
            pids = {}
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        comm = open(f"/proc/{p}/comm").read().strip()
                    except OSError:
                        continue
                    if comm in PROCS:
                        pids.setdefault(PROCS[comm], []).append(p)
        disk = next((l.split()[3:14] for l in open("/proc/diskstats") if l.split()[2] == dev), ["0"] * 11)
        mem = {l.split(":")[0]: l.split()[1] for l in open("/proc/meminfo")}
        cpu = open("/proc/stat").readline().split()[1:9]
        procs = ""
        if i % 5 == 0:
            def ticks(ps):
                t = 0
                for p in ps:
                    try:
                        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                        t += int(f[11]) + int(f[12])
                    except OSError:
                        pass
                return t
            procs = " ".join(f"{k}={ticks(v)}" for k, v in sorted(pids.items()))
        out.write(f"{time.time():.3f}|{' '.join(disk)}|{mem['Dirty']}|{' '.join(cpu)}|{procs}\n")
        out.flush()
        i += 1
        time.sleep(0.02)


def report(dump_path, samples_path):
    lines = open(dump_path).read().split("\n")
    start = int(lines[0].split()[2]) / 1e6
    recs = [tuple(map(int, l.split())) for l in lines[1:] if l]
    if not recs:
        sys.exit("timeline.py: no requests in the dump")
    e2e = sorted(r[2] for r in recs)
    n = len(e2e)
    q = lambda f: e2e[min(n - 1, int(n * f))] / 1000
    print(f"{n} requests: p50 {q(.5):.1f}  p99 {q(.99):.1f}  p99.9 {q(.999):.1f}  max {e2e[-1] / 1000:.1f} ms")
    buckets = collections.defaultdict(list)
    for sched, _accept, e in recs:
        buckets[sched // 100_000].append(e)
    slow = [(k / 10, max(v) / 1000, sum(1 for x in v if x > 25_000), len(v))
            for k, v in sorted(buckets.items()) if max(v) > 40_000]
    print("100 ms of starts with a request over 40 ms (s from the driver's start: max ms, requests over 25 ms of all):")
    for t, worst, over, all_ in slow:
        print(f"  {t:6.1f} s: {worst:6.1f} ms, {over}/{all_}")
    rows = []
    for line in open(samples_path):
        t, disk, dirty, cpu, procs = line.rstrip("\n").split("|")
        rows.append((float(t) - start, int(dirty), procs))
    end = rows[-1][0] if rows else 0
    print("dirty pages written out at once (kernel write-back), over 5 MB:")
    for a, b in zip(rows, rows[1:]):
        if a[1] - b[1] > 5 * 1024:
            print(f"  {b[0]:6.1f} s: {a[1] // 1024} MB -> {b[1] // 1024} MB")
    print("quorum-queue log files (.wal) created in the run:")
    for wal in glob.glob(WALS):
        # Its birth time (`stat %W`, 0 where the file system does not keep it).
        born = float(subprocess.run(["stat", "-c", "%W", wal], capture_output=True, text=True).stdout or 0)
        if start <= born <= start + end:
            print(f"  {born - start:6.1f} s: {os.path.basename(wal)}")
    with_procs = [(t, dict(kv.split("=") for kv in p.split())) for t, _, p in rows if p]
    with_procs = [(t, p) for t, p in with_procs if t >= 5]
    if len(with_procs) > 1:
        (t0, a), (t1, b) = with_procs[0], with_procs[-1]
        hz = os.sysconf("SC_CLK_TCK")
        cores = {k: (int(b.get(k, 0)) - int(a.get(k, 0))) / hz / (t1 - t0) for k in sorted(b)}
        print("cores used from 5 s on: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sample":
        sample(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
