#!/usr/bin/env python3
"""Run commands side by side: interleaved rounds, one of each per round.

On a machine whose speed drifts (a VM with neighbours), back-to-back runs
of one command and then of another measure the drift as much as the
commands; a round of each, repeated, lets every command see the same
machine. Each round's ratio to the baseline is its own measurement, so the
table gives the mean wall time with its spread and the median of the
per-round ratios.

usage: sidebyside.py ROUNDS PER-TEST-DIVISOR TITLE BASELINE NAME=COMMAND...
"""
import statistics
import subprocess
import sys
import time


def main():
    rounds, n, title, base = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cmds = [a.split("=", 1) for a in sys.argv[5:]]
    times = {name: [] for name, _ in cmds}
    for r in range(rounds + 1):  # the first round warms caches and is dropped
        for name, cmd in cmds:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            dt = time.perf_counter() - t0
            if p.returncode not in (0,):
                sys.stderr.write(f"{name} failed ({p.returncode}): {p.stderr.decode()[-500:]}\n")
                sys.exit(1)
            if r:
                times[name].append(dt)
    b = times[base]
    print(f"| {title} | wall time (s) | per test (ms) | ratio to {base} (median of {rounds} rounds) |")
    print("|---|---|---|---|")
    for name, _ in cmds:
        t = times[name]
        ratios = [x / y for x, y in zip(t, b)]
        sd = statistics.stdev(t) if len(t) > 1 else 0.0
        print(f"| {name} | {statistics.mean(t):.3f} ± {sd:.3f} | {1000 * statistics.mean(t) / n:.2f} "
              f"| {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
