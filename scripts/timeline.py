#!/usr/bin/env python3
"""When an open-loop run was slow, and what the machine did then.

  timeline.py sample OUT            # every 20 ms until killed: disk, dirty pages, CPU,
                                    # TCP connections accepted;
                                    # every 100 ms each process's CPU (broker, gateway,
                                    # workers, driver) and each gateway thread's, and
                                    # the gateway's counters (its /metrics: 202s sent,
                                    # POSTs awaiting the broker's confirm, request
                                    # batches confirmed and how long that took,
                                    # verdicts applied)
  timeline.py report DUMP SAMPLES   # DUMP: the per-request lines of loadcheck's
                                    # LOADCHECK_DUMP (see scripts/tail-timeline.sh)

The report prints the run's percentiles, every 100 ms of scheduled starts in which a
request took over 40 ms (with the machine's CPU, disk and connections accepted then),
the moments the kernel wrote out more than 5 MB of dirty pages at once, bursts of new
processes or threads (a program starting), the broker's quorum-queue log files (.wal)
created during the run, and how many cores each process used on average.
"""
import collections
import glob
import http.client
import os
import subprocess
import sys
import time

PROCS = {"beam.smp": "broker", "gateway": "gateway", "verifier-worker": "workers", "loadcheck": "driver"}
WALS = "/var/lib/rabbitmq/mnesia/*/quorum/*/*.wal"
# Tasks started within 100 ms that mark a program starting (an Erlang VM: 27-33 here).
BURST = 25


def disk_device():
    root = os.stat("/var/lib/rabbitmq" if os.path.isdir("/var/lib/rabbitmq") else "/").st_dev
    major, minor = os.major(root), os.minor(root)
    for line in open("/proc/diskstats"):
        p = line.split()
        if int(p[0]) == major and int(p[1]) == minor:
            return p[2]
    return None


# The gateway's own counters (its /metrics), where a request is: answered 202, still
# awaiting the broker's confirm ("submitting"), its verdict applied.
GATEWAY_METRICS = os.environ.get("TIMELINE_GATEWAY", "127.0.0.1:18480")
GATEWAY_SERIES = {
    'gateway_http_requests_total{route="/api/signature",status="202"}': "accepted",
    "gateway_submitting": "submitting",
    'broker_confirm_seconds_count{kind="verify-requests"}': "confirms",
    'broker_confirm_seconds_sum{kind="verify-requests"}': "confirm_s",
    'gateway_results_total{outcome="valid"}': "valid",
    'gateway_results_total{outcome="invalid"}': "invalid",
}
# One kept-alive connection, so that sampling adds none to the connections counted.
_gateway = None


def gateway_figures():
    """`name=value,...` of GATEWAY_SERIES, or "" when the gateway does not answer."""
    global _gateway
    try:
        if _gateway is None:
            _gateway = http.client.HTTPConnection(GATEWAY_METRICS, timeout=0.05)
        _gateway.request("GET", "/metrics")
        text = _gateway.getresponse().read().decode()
    except (OSError, http.client.HTTPException, ValueError):
        if _gateway is not None:
            _gateway.close()
        _gateway = None
        return ""
    got = {}
    for line in text.split("\n"):
        series, _, value = line.rpartition(" ")
        if series in GATEWAY_SERIES:
            got[GATEWAY_SERIES[series]] = value
    return ",".join(f"{k}={v}" for k, v in got.items())


def sample(out_path):
    dev = disk_device()
    out = open(out_path, "w")
    pids, i, prev_pid = {}, 0, None
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
        stat = open("/proc/stat").read().split("\n")
        cpu = stat[0].split()[1:9]
        # Tasks (processes and threads) created since boot: a burst of them is
        # a program starting, such as the Erlang VM RabbitMQ before 3.12.13 starts
        # every minute to check on epmd (scripts/broker-tune.sh).
        forks = next((l.split()[1] for l in stat if l.startswith("processes ")), "0")
        # Who they are: the tasks whose ids were handed out since the last sample
        # (ids grow until they wrap), named while they still exist.
        last_pid = int(open("/proc/loadavg").read().split()[4])
        names = collections.Counter()
        if prev_pid is not None and 5 <= last_pid - prev_pid < 5000:
            for pid in range(prev_pid + 1, last_pid + 1):
                try:
                    names[open(f"/proc/{pid}/comm").read().strip()] += 1
                except OSError:
                    pass
        prev_pid = last_pid
        procs, gw = "", ""
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
            # The gateway's threads one by one (its runtime's, lapin's I/O loops).
            for p in pids.get("gateway", []):
                try:
                    tasks = os.listdir(f"/proc/{p}/task")
                except OSError:
                    continue
                for tid in tasks:
                    try:
                        comm = open(f"/proc/{p}/task/{tid}/comm").read().strip()
                    except OSError:
                        continue
                    procs += f" gateway.{comm}.{tid}={ticks([f'{p}/task/{tid}'])}"
            gw = gateway_figures()
        named = ",".join(f"{k.replace(',', ' ').replace('|', ' ')}*{v}" for k, v in names.most_common())
        # TCP connections accepted since boot (every one here is on the
        # loopback: the driver's to the gateway, the service's to the broker).
        tcp = [l.split() for l in open("/proc/net/snmp") if l.startswith("Tcp:")]
        opens = tcp[1][tcp[0].index("PassiveOpens")] if len(tcp) == 2 else "0"
        out.write(f"{time.time():.3f}|{' '.join(disk)}|{mem['Dirty']}|{' '.join(cpu)}|{procs}|{forks}|{named}|{opens}|{gw}\n")
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
    end = max(r[0] for r in recs) / 1e6 + 1
    rows = []
    for line in open(samples_path):
        t, disk, dirty, cpu, procs, forks, named, opens, gw = (line.rstrip("\n").split("|") + ["0", "", "0", ""])[:9]
        gw = {k: float(v) for k, v in (kv.split("=") for kv in gw.split(",") if kv)}
        disk = list(map(int, disk.split()))
        cpu = list(map(int, cpu.split()))
        procs = {k: int(v) for k, v in (kv.split("=") for kv in procs.split())}
        named = collections.Counter({k: int(v) for k, v in (x.rsplit("*", 1) for x in named.split(",") if x)})
        rows.append((float(t) - start, disk, int(dirty), cpu, procs, int(forks), named, int(opens or 0), gw))

    def machine(t0, t1):
        """Cores busy and ms the disk spent writing (per 100 ms) from t0 to t1."""
        span = [r for r in rows if t0 <= r[0] <= t1]
        if len(span) < 2:
            return ""
        a, b = span[0], span[-1]
        cpu = [y - x for x, y in zip(a[3], b[3])]
        busy = (sum(cpu) - cpu[3] - cpu[4]) / max(1, sum(cpu)) * 2
        writing = (b[1][7] - a[1][7]) / (b[0] - a[0]) / 10
        started = b[5] - a[5]
        return (f"cores busy {busy:.2f}, disk writing {writing:.0f} ms per 100 ms, {b[7] - a[7]} connections accepted"
                f"{f', {started} tasks started' if started >= BURST and t1 - t0 < 1 else ''}{processes(t0, t1)}"
                f"{gateway(t0, t1)}")

    def gateway(t0, t1):
        """What the gateway did with requests from t0 to t1 (its /metrics)."""
        # A series the gateway has not counted yet (no 202 so far) is 0.
        seen = [r for r in rows if t0 <= r[0] <= t1 and r[8]]
        if len(seen) < 2:
            return ""
        a, b = seen[0][8], seen[-1][8]
        per_s = lambda k: (b.get(k, 0) - a.get(k, 0)) / (seen[-1][0] - seen[0][0])
        confirms = b.get("confirms", 0) - a.get("confirms", 0)
        took = (b.get("confirm_s", 0) - a.get("confirm_s", 0)) / confirms * 1000 if confirms else 0
        return (f"; gateway: {per_s('accepted'):.0f} 202s/s, {b.get('submitting', 0):.0f} awaiting a confirm at the end,"
                f" {confirms:.0f} request batches confirmed{f' in {took:.1f} ms on average' if confirms else ''},"
                f" {per_s('valid') + per_s('invalid'):.0f} verdicts/s")

    def thread(key):
        """A gateway thread's label: `gateway.<name>.<tid>` is "gateway's <name> thread",
        its main thread (named after the binary) "gateway's main thread"."""
        name = key.split(".")[1]
        return f"gateway's {'main' if name == 'gateway' else name} thread"

    def processes(t0, t1):
        """Cores each process (and each busy gateway thread) used from t0 to t1."""
        seen = [r for r in rows if t0 <= r[0] <= t1 and r[4]]
        if len(seen) < 2:
            return ""
        a, b = seen[0], seen[-1]
        used = {k: (b[4][k] - a[4][k]) / hz / (b[0] - a[0]) for k in b[4] if k in a[4]}
        shown = [f"{k if k.count('.') < 2 else thread(k)} {v:.2f}"
                 for k, v in sorted(used.items()) if k.count(".") < 2 or v >= 0.05]
        return "; " + ", ".join(shown)

    hz = os.sysconf("SC_CLK_TCK")
    print("100 ms of starts with a request over 40 ms (s from the driver's start: max ms, requests over 25 ms"
          " of all; the machine in the 300 ms from the span's start):")
    for t, worst, over, all_ in slow:
        print(f"  {t:6.1f} s: {worst:6.1f} ms, {over}/{all_}; {machine(t, t + 0.3)}")
    # From 5 s to the last start, as the last line: the processes are stopped
    # right after the run, and a stopped one's ticks would count as negative.
    print(f"the whole run (from 5 s to the last start): {machine(5, end - 1)}")
    print("dirty pages written out at once (kernel write-back), over 5 MB:")
    for a, b in zip(rows, rows[1:]):
        if 0 <= b[0] <= end and a[2] - b[2] > 5 * 1024:
            print(f"  {b[0]:6.1f} s: {a[2] // 1024} MB -> {b[2] // 1024} MB")
    print(f"bursts of new tasks ({BURST} or more processes or threads started in 100 ms: a program starting,"
          " e.g. an Erlang VM; scripts/broker-tune.sh):")
    last = None
    for i, a in enumerate(rows):
        if 0 <= a[0] <= end and (last is None or a[0] > last + 0.5):
            b = next((r for r in rows[i:] if r[0] >= a[0] + 0.1), None)
            if b and b[5] - a[5] >= BURST:
                # From the first sample the burst shows in.
                first = next(r for r in rows[i + 1:] if r[5] > a[5])
                seen = sum((r[6] for r in rows[i + 1:] if r[0] <= b[0]), collections.Counter())
                who = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in seen.most_common(8))
                print(f"  {first[0]:6.1f} s: {b[5] - a[5]} tasks{': ' + who if who else ''}")
                last = a[0]
    print("quorum-queue log files (.wal) created in the run:")
    for wal in glob.glob(WALS):
        # Its birth time (`stat %W`, 0 where the file system does not keep it).
        born = float(subprocess.run(["stat", "-c", "%W", wal], capture_output=True, text=True).stdout or 0)
        if start <= born <= start + end:
            print(f"  {born - start:6.1f} s: {os.path.basename(wal)}")
    used = []
    for name in sorted({k for r in rows for k in r[4]}):
        # Up to the last start: the processes are stopped right after the run.
        seen = [(r[0], r[4][name]) for r in rows if name in r[4] and 5 <= r[0] <= end - 1]
        if len(seen) > 1:
            (t0, a), (t1, b) = seen[0], seen[-1]
            cores = (b - a) / hz / (t1 - t0)
            if name.count(".") < 2 or cores >= 0.02:
                used.append(f"{name} {cores:.2f}")
    print("cores used from 5 s to the last start: " + ", ".join(used))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sample":
        sample(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
