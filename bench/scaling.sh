#!/usr/bin/env bash
# bench/scaling.sh: how far one `atx run` goes on this host, in local slots.
#
# For each slot count N of the sweep, a plan of ROUNDS*N tests `sleep SLEEP`
# (declared duration SLEEP) runs on one local provisioner of N slots, as a
# user would run it: `atx run --plan`, JUnit, JSONL and HTML reports, the
# journal, a duration history of its own. While it runs, the atx process is
# sampled every 50 ms from /proc (threads, open fds, RSS); when it exits it
# is waited for without being reaped first, so its own CPU time (user+sys,
# without the tests' processes) is read exactly from /proc/PID/stat; then it
# is reaped with wait4, whose ru_maxrss is the peak RSS (what /usr/bin/time
# -v prints as "Maximum resident set size"). The journal gives each test's
# start and duration (ns), from which come:
#   - until all busy: from the first test's start to the first instant at
#     which N tests run at once ("-" if that never happens);
#   - steady results/s: tests started after that instant up to the last
#     start, over that time (while all are busy, a test starts only on a
#     slot a result just freed); ideal is N / SLEEP;
#   - results/s first start to last end: all tests over that span, ramp-up
#     and tail included;
#   - gap: on one system, from a test's end to the next test's start
#     (reaping, result, journal, picking, spawning), median and p95.
# Each row is the run with the median atx CPU of RUNS runs.
#
#   bench/scaling.sh [BUILD_DIR] [SLOTS...]   (defaults: build, 10 100 1000 2000)
#   RUNS=3 ROUNDS=3 SLEEP=4 BENCH_TMP=/tmp     (defaults)
#   PROVISIONER='{"plugin": "slurm"}'           (another provisioner entry:
#                                               its "slots" is set to N;
#                                               bench/slurm.sh does this)
#
# Raises the open-files limit (ulimit -n) and the process limit (ulimit -u)
# to their hard limits, and says whether they are enough: every running
# test holds a few fds in atx, every slot a thread.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
slots=${*:-10 100 1000 2000}
atx="$PWD/$build/bin/atx"
[ -x "$atx" ] || { echo "bench: build atx first (make build, or give the build folder)" >&2; exit 2; }

max=0
for n in $slots; do [ "$n" -gt "$max" ] && max=$n; done
# Measured: about 5.5 fds per running test (pipes, pidfd, cgroup); ask for 8.
need_fds=$((max * 8 + 256))
ulimit -n "$(ulimit -Hn)"
ulimit -u "$(ulimit -Hu)"
echo "limits: open files $(ulimit -n) (want >= $need_fds), processes $(ulimit -u)," \
     "kernel.pid_max $(cat /proc/sys/kernel/pid_max), kernel.threads-max $(cat /proc/sys/kernel/threads-max)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
  echo "bench: the open-files hard limit is below $need_fds; raise it (limits.conf, LimitNOFILE=)" >&2
fi

work=$(mktemp -d "${BENCH_TMP:-/tmp}/atx-scaling.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "source HEAD $(git rev-parse --short HEAD 2>/dev/null || echo "?"), $(nproc) cores," \
     "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)," \
     "results in $work, $(date -u +%Y-%m-%dT%H:%MZ)"

python3 - "$atx" "$work" "${RUNS:-3}" "${ROUNDS:-3}" "${SLEEP:-4}" $slots <<'PY'
import json, os, sqlite3, subprocess, sys, threading, time

atx, work, runs, rounds, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
sweep = [int(s) for s in sys.argv[6:]]
tick = os.sysconf("SC_CLK_TCK")

def busy():
    """Share of this host's CPU busy over the second before a run (others'
    work: the load average would still count the previous run)."""
    def jiffies():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = jiffies()
    time.sleep(1)
    t1, i1 = jiffies()
    return "%.0f %%" % (100 * (1 - (i1 - i0) / max(1, t1 - t0)))

def sample(pid, peak, stop):
    """Peak threads, fds and RSS of pid until stop is set."""
    while not stop.is_set():
        try:
            for line in open("/proc/%d/status" % pid):
                k, _, v = line.partition(":")
                if k == "Threads":
                    peak["threads"] = max(peak["threads"], int(v))
                elif k == "VmRSS":
                    peak["rss_kb"] = max(peak["rss_kb"], int(v.split()[0]))
            peak["fds"] = max(peak["fds"], len(os.listdir("/proc/%d/fd" % pid)))
        except (OSError, ValueError):
            pass
        stop.wait(0.05)

def one(n, k):
    d = os.path.join(work, "n%d-%d" % (n, k))
    os.mkdir(d)
    prov = dict(json.loads(os.environ.get("PROVISIONER") or '{"plugin": "local"}'), slots=n)
    plan = {"provisioners": [prov],
            "tests": [{"name": "/s/%06d" % i, "command": ["sleep", "%g" % sleep],
                       "duration": "%dms" % int(sleep * 1000)} for i in range(rounds * n)]}
    json.dump(plan, open(os.path.join(d, "plan.json"), "w"))
    la = busy()
    launched = time.time_ns()
    t0 = time.monotonic()
    p = subprocess.Popen([atx, "run", "--plan", os.path.join(d, "plan.json"), "-q",
                          "-o", os.path.join(d, "out"), "--history", os.path.join(d, "history.db")],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr"), "w"))
    peak, stop = {"threads": 0, "fds": 0, "rss_kb": 0}, threading.Event()
    th = threading.Thread(target=sample, args=(p.pid, peak, stop))
    th.start()
    # Exited but not reaped: its stat still holds its own and its
    # children's final CPU times.
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    wall = time.monotonic() - t0
    stop.set()
    th.join()
    f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
    self_cpu = (int(f[11]) + int(f[12])) / tick
    kids_cpu = (int(f[13]) + int(f[14])) / tick
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit("bench: atx exited %d with %d slots (see %s/stderr)" % (p.returncode, n, d))

    db = sqlite3.connect(os.path.join(d, "out", "journal.db"))
    rows = db.execute("SELECT started_ns, duration_ns, system FROM results "
                      "WHERE subtest IS NULL").fetchall()
    db.close()
    assert len(rows) == rounds * n, (len(rows), rounds * n)
    first = min(r[0] for r in rows)
    last_start = max(r[0] for r in rows)
    ev = sorted([(r[0], 1) for r in rows] + [(r[0] + r[1], -1) for r in rows],
                key=lambda e: (e[0], e[1]))
    running, full_at, most = 0, None, 0
    for t, dlt in ev:
        running += dlt
        most = max(most, running)
        if running >= n and full_at is None:
            full_at = t
    # Once all are busy, each start takes the slot a result just freed:
    # starts after that instant, up to the last, over that time.
    if full_at is not None and last_start > full_at:
        steady = sum(1 for r in rows if r[0] > full_at) / ((last_start - full_at) / 1e9)
    else:
        steady = None
    last_end = max(r[0] + r[1] for r in rows)
    gaps, by_sys = [], {}
    for r in rows:
        by_sys.setdefault(r[2], []).append(r)
    for rs in by_sys.values():
        rs.sort()
        gaps += [(b[0] - a[0] - a[1]) / 1e6 for a, b in zip(rs, rs[1:])]
    gaps.sort()
    durs = sorted(r[1] / 1e9 for r in rows)
    return {"n": n, "tests": len(rows), "wall": wall, "start": (first - launched) / 1e9,
            "full": None if full_at is None else (full_at - first) / 1e9, "most": most,
            "steady": steady, "mean": len(rows) / ((last_end - first) / 1e9),
            "gap50": gaps[len(gaps) // 2] if gaps else 0,
            "dur50": durs[len(durs) // 2], "dur95": durs[int(len(durs) * 0.95)],
            "gap95": gaps[int(len(gaps) * 0.95)] if gaps else 0,
            "threads": peak["threads"], "fds": peak["fds"],
            "rss": max(ru.ru_maxrss, peak["rss_kb"]) / 1024, "cpu": self_cpu,
            "kids": kids_cpu, "load": la}

def xargs(n):
    """The same commands by xargs -P N: wall time, and the CPU of the sleeps."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(["xargs", "-P", str(n), "-n", "1", "sleep"], check=True,
                   input=("%g\n" % sleep * (rounds * n)).encode())
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)

rows = []
for n in sweep:
    res = sorted((one(n, k) for k in range(runs)), key=lambda r: r["cpu"])
    for r in res:
        print("#   %d slots: wall %.2f s, all busy after %s s, atx CPU %.2f s, peak RSS %.1f MB, "
              "CPU busy before %s" % (n, r["wall"], "-" if r["full"] is None else "%.2f" % r["full"],
                           r["cpu"], r["rss"], r["load"]), file=sys.stderr, flush=True)
    r = res[len(res) // 2]
    r["xargs_wall"], r["xargs_cpu"] = xargs(n)
    rows.append(r)

print()
print("Time (%d tests of sleep %g per slot; each row the run of median atx CPU of %d):"
      % (rounds, sleep, runs))
print()
print("| slots | tests | wall (s) | xargs -P N wall (s) | first test after (s) "
      "| until all busy (s) | steady results/s (ideal) | results/s, first start to last end "
      "| test duration median / p95 (s) | gap median / p95 (ms) | CPU busy before |")
print("|" + "---|" * 11)
for r in rows:
    print("| %d | %d | %.2f | %.2f | %.3f | %s | %s (%.0f) | %.0f | %.3f / %.3f | %.1f / %.1f "
          "| %s |" % (
        r["n"], r["tests"], r["wall"], r["xargs_wall"], r["start"],
        "-" if r["full"] is None else "%.2f" % r["full"],
        "-" if r["steady"] is None else "%.0f" % r["steady"], r["n"] / sleep, r["mean"], r["dur50"], r["dur95"],
        r["gap50"], r["gap95"], r["load"]))
print()
print("Resources of the atx process (its CPU without the tests' processes):")
print()
print("| slots | peak threads | peak fds | peak RSS (MB) | atx CPU user+sys (s) "
      "| CPU per system (ms) | CPU per test (ms) | tests' processes CPU (s) "
      "| xargs -P N: the sleeps' CPU (s) |")
print("|" + "---|" * 9)
for r in rows:
    print("| %d | %d | %d | %.1f | %.2f | %.2f | %.3f | %.2f | %.2f |" % (
        r["n"], r["threads"], r["fds"], r["rss"], r["cpu"], 1000 * r["cpu"] / r["n"],
        1000 * r["cpu"] / r["tests"], r["kids"], r["xargs_cpu"]))
PY
