#!/usr/bin/env bash
# bench/history.sh: the outcome history stays bounded and cheap to read.
#
# A plan of TESTS tests (`true`, a few failing or flaky so the outcomes vary)
# runs RUNS times with one history file, as a nightly job would. Then:
#   - the size of the history (the SQLite file and its WAL) after RUNS runs,
#     against the bound of 50 MB;
#   - the time `atx run -v` reports for reading it at the start of a run
#     (durations, and the plan's last 50 runs of outcomes), the median of 5
#     runs, against the bound of 0.1 s; and a run's wall time with the full
#     history beside one with --no-history, the same plan, side by side.
#
#   bench/history.sh [BUILD_DIR]        (default: build)
#   TESTS=1000 RUNS=200 BENCH_TMP=/tmp  (defaults)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
atx="$build/bin/atx"
tests=${TESTS:-1000}
runs=${RUNS:-200}
work=$(mktemp -d "${BENCH_TMP:-/tmp}/atx-bench-history.XXXXXX")
trap 'rm -rf "$work"' EXIT
export ATX_PLUGIN_PATH="$build/lib/atx/plugins"

# Test i fails when i % 97 == 0, and fails in odd runs when i % 89 == 0.
python3 - "$work/plan.json" "$tests" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
tests = []
for i in range(n):
    if i % 97 == 0:
        cmd = ["false"]
    elif i % 89 == 0:
        cmd = ["sh", "-c", 'test $(( $(cat "$0") % 2 )) = 0', sys.argv[1] + ".night"]
    else:
        cmd = ["true"]
    tests.append({"name": "/bench/t%04d" % i, "command": cmd})
json.dump({"tests": tests, "aggregators": []}, open(path, "w"))
PY

hist="$work/history.db"
start=$(date +%s)
for ((night = 1; night <= runs; night++)); do
  echo "$night" > "$work/plan.json.night"
  "$atx" run --plan "$work/plan.json" --history "$hist" --no-reports -q \
    -o "$work/run" > /dev/null 2>&1 || true
  rm -rf "$work/run"
done
took=$(( $(date +%s) - start ))
size=$(du -cb "$hist"* | tail -n 1 | cut -f1)

read_ms() {
  "$atx" run --plan "$work/plan.json" --history "$hist" --no-reports -v -o "$work/run" 2>&1 \
    | sed -n 's/.*history .* read in \([0-9.]*\) ms.*/\1/p'
  rm -rf "$work/run"
}
reads=$(for i in 1 2 3 4 5; do read_ms; done | sort -n | tr '\n' ' ')
median_read=$(echo "$reads" | awk '{print $3}')

wall() { # ARGS...: wall seconds of one run
  local t0 t1
  t0=$(date +%s.%N)
  "$atx" run --plan "$work/plan.json" --no-reports -q -o "$work/run" "$@" > /dev/null 2>&1 || true
  t1=$(date +%s.%N)
  rm -rf "$work/run"
  python3 -c "print($t1 - $t0)"
}
with=() without=()
for i in 1 2 3 4 5; do
  with+=("$(wall --history "$hist")")
  without+=("$(wall --no-history)")
done
med() { printf '%s\n' "$@" | sort -n | sed -n 3p; }

echo "plan: $tests tests, $runs runs of it with one history ($took s)"
printf 'history size after %d runs: %.1f MB (bound 50 MB)\n' "$runs" \
  "$(python3 -c "print($size / 1e6)")"
echo "reading it at a run's start: median ${median_read} ms of: $reads(bound 100 ms)"
printf 'a whole run, median of 5: %.3f s with the history, %.3f s with --no-history\n' \
  "$(med "${with[@]}")" "$(med "${without[@]}")"
