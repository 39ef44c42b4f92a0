#!/usr/bin/env bash
# Journal and resume: a 300-test run is killed with SIGKILL at 20 random
# moments (a random count of results already reported, so the kills spread
# over the whole run); after each, `atx run --resume` completes it, and the
# journal, JSONL and JUnit hold exactly one final result for every test, none
# lost and none doubled. Some resumes are themselves killed and resumed.
# Also: `atx report DIR` rebuilds the JUnit file the run wrote, byte for byte;
# a resumed run keeps its rerun budgets; and bad uses get one clear line.
. "$ATX_SRC/tests/lib.sh"

N=300
SEED=${ATX_RESUME_SEED:-20261122}
RANDOM=$SEED
echo "seed $SEED (set ATX_RESUME_SEED to repeat another)"

# Tests t001..t300: a few milliseconds each; t001-t010 fail their first
# attempt (flaky with --reruns 1), t011-t013 always fail.
mkdir tests
for i in $(seq 1 $N); do
  n=$(printf %03d "$i")
  body="sleep 0.00$((i % 10))"
  [ "$i" -le 10 ] && body="$body; [ \"\$ATX_TEST_ATTEMPT\" -gt 1 ] || exit 1"
  [ "$i" -gt 10 ] && [ "$i" -le 13 ] && body="$body; exit 1"
  printf '#!/bin/sh\n%s\n' "$body" > "tests/t$n"
  chmod +x "tests/t$n"
done

# lines FILE: how many lines it has (0 when missing)
lines() { [ -e "$1" ] && wc -l < "$1" || echo 0; }

# kill_after DIR K PID: SIGKILL PID once DIR/results.jsonl has K lines (the
# results of those are committed to the journal before they are reported).
# Prints "hit" when the kill interrupted the run, "missed" when it had ended.
kill_after() {
  local n=600
  while [ "$(lines "$1/results.jsonl")" -lt "$2" ] && kill -0 "$3" 2>/dev/null && [ $n -gt 0 ]; do
    sleep 0.005; n=$((n-1))
  done
  if kill -9 "$3" 2>/dev/null; then echo hit; else echo missed; fi
}

# check DIR: one final result per test in the journal, JSONL and JUnit.
check() {
  local d=$1
  local jr
  jr=$(sqlite3 "$d/journal.db" "SELECT count(*) || ' ' || count(DISTINCT test) FROM results
                                WHERE final = 1 AND subtest IS NULL")
  [ "$jr" = "$N $N" ] || fail "$d: journal final results (all, distinct): $jr, want $N $N"
  python3 - "$d" "$N" <<'PY' || fail "$d: reports are not whole"
import json, sys, xml.etree.ElementTree as ET
d, n = sys.argv[1], int(sys.argv[2])
want = {"/t%03d" % i for i in range(1, n + 1)}
rows = [json.loads(l) for l in open(d + "/results.jsonl")]
final = [r["test"] for r in rows if r["final"] and not r.get("subtest")]
keys = [(r["test"], r["attempt"], r.get("subtest")) for r in rows]
assert len(keys) == len(set(keys)), "JSONL: an attempt reported twice"
assert len(final) == n and set(final) == want, "JSONL: %d final results, %d tests" % (
    len(final), len(set(final)))
status = {r["test"]: r["status"] for r in rows if r["final"] and not r.get("subtest")}
assert all(status["/t%03d" % i] == "pass" for i in range(1, 11)), "flaky tests must pass"
assert all(status["/t%03d" % i] == "fail" for i in range(11, 14)), "failing tests must fail"
cases = [c.get("classname").rstrip("/") + "/" + c.get("name")
         for c in ET.parse(d + "/junit.xml").iter("testcase")]
assert len(cases) == n and set(cases) == want, "JUnit: %d testcases, %d names" % (
    len(cases), len(set(cases)))
PY
}

hits=0
for trial in $(seq 1 20); do
  d="run$trial"
  k=$(( RANDOM % N + 1 ))
  "$ATX" run tests -j 4 --reruns 1 -o "$d" -q >/dev/null 2>&1 &
  pid=$!
  what=$(kill_after "$d" "$k" "$pid")
  wait "$pid" 2>/dev/null || true
  [ "$what" = hit ] && hits=$((hits + 1))
  # Every third trial kills the resume too, once.
  if [ $((trial % 3)) = 0 ] && [ "$what" = hit ]; then
    k2=$(( $(lines "$d/results.jsonl") + RANDOM % 40 + 1 ))
    "$ATX" run --resume "$d" -q >/dev/null 2>&1 &
    pid=$!
    kill_after "$d" "$k2" "$pid" >/dev/null
    wait "$pid" 2>/dev/null || true
  fi
  rc=0
  "$ATX" run --resume "$d" -q > "$d.out" 2>&1 || rc=$?
  [ "$rc" = 1 ] || { cat "$d.out" >&2; fail "trial $trial (kill after $k results): resume exit $rc, want 1"; }
  check "$d"
  echo "trial $trial: killed after $k results ($what); resumed; $N tests, one final result each"
  rm -rf "$d"
done
# Most kills must land in the middle of a run, or this tested little.
[ "$hits" -ge 15 ] || fail "only $hits of 20 kills interrupted a run"
pass "$hits of 20 kills interrupted the run; every resume completed it"

# A resumed run keeps rerun budgets: t001 failed once before the kill.
"$ATX" run tests -j 2 --reruns 1 -o budget -q >/dev/null 2>&1 &
pid=$!
kill_after budget 40 "$pid" >/dev/null
wait "$pid" 2>/dev/null || true
"$ATX" run --resume budget -q >/dev/null 2>&1 || true
att=$(sqlite3 budget/journal.db "SELECT count(*) FROM results a JOIN tests t ON t.id = a.test
                                 WHERE t.name = '/t011' AND a.outcome IN ('final', 'rerun') AND a.subtest IS NULL")
expect_eq "attempts of an always-failing test with --reruns 1, across a resume" "$att" 2

# atx report rebuilds the JUnit file a finished run wrote, byte for byte,
# and the JSONL.
"$ATX" run tests -j 4 --reruns 1 -o whole -q >/dev/null 2>&1 || true
cp whole/junit.xml junit.orig
cp whole/results.jsonl jsonl.orig
rm whole/junit.xml whole/results.jsonl
rc=0
"$ATX" report whole -q > report.out 2>&1 || rc=$?
expect_eq "atx report exit code (3 tests fail)" "$rc" 1
cmp -s whole/junit.xml junit.orig || fail "atx report: JUnit differs from the run's"
pass "atx report rebuilt junit.xml identical to the run's"
python3 - <<'PY' || fail "atx report: JSONL differs"
import json
a = [json.loads(l) for l in open("jsonl.orig")]
b = [json.loads(l) for l in open("whole/results.jsonl")]
assert a == b, "%d vs %d lines" % (len(a), len(b))
PY
pass "atx report rebuilt results.jsonl equal to the run's"
# ... and to another file when asked.
"$ATX" report whole --junit other.xml -q >/dev/null 2>&1 || true
cmp -s other.xml junit.orig || fail "atx report --junit: differs from the run's"
pass "atx report --junit FILE writes the same report elsewhere"

# Bad uses: one line each, exit 2.
rc=0; "$ATX" run --resume nowhere > bad.out 2>&1 || rc=$?
expect_eq "resume of a folder without a journal: exit" "$rc" 2
expect_eq "... lines" "$(wc -l < bad.out)" 1
grep -q "holds no atx journal" bad.out || fail "resume without journal: $(cat bad.out)"
rc=0; "$ATX" run --resume whole -j 3 > bad.out 2>&1 || rc=$?
expect_eq "resume with other options: exit" "$rc" 2
rc=0; "$ATX" report nowhere > bad.out 2>&1 || rc=$?
expect_eq "report of a folder without a journal: exit" "$rc" 2
echo "not a database, but long enough to be read as one..................................." > notdb
mkdir junk && cp notdb junk/journal.db
rc=0; "$ATX" report junk > bad.out 2>&1 || rc=$?
expect_eq "report of a broken journal: exit" "$rc" 2
expect_eq "... lines" "$(wc -l < bad.out)" 1
grep -q "is not an atx journal" bad.out || fail "broken journal: $(cat bad.out)"
# A journal in use by a running atx is not resumed twice.
mktest slow/wait 'while [ ! -e "$GO" ]; do sleep 0.05; done'
GO="$T/go" "$ATX" run "$T/tests/slow" -o busy -q >/dev/null 2>&1 &
pid=$!
wait_for busy/journal.db 10
rc=0; "$ATX" run --resume busy > bad.out 2>&1 || rc=$?
touch "$T/go"; wait "$pid" || true
expect_eq "resume of a run still going: exit" "$rc" 2
grep -q "in use by another atx" bad.out || fail "busy journal: $(cat bad.out)"
pass "resume and report refuse bad folders with one line"

# A run cancelled with SIGINT: its interrupted and not-run tests run on resume.
for x in a b c d; do mktest int/$x 'touch "$STARTED"; while [ ! -e "$GO" ]; do sleep 0.05; done'; done
rm -f "$T/go"
STARTED="$T/started" GO="$T/go" "$ATX" run "$T/tests/int" -j 1 -o cancelled -q >/dev/null 2>&1 &
pid=$!
wait_for "$T/started" 10
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
expect_eq "cancelled run: exit" "$rc" 1
touch "$T/go"
rc=0; STARTED="$T/started" GO="$T/go" "$ATX" run --resume cancelled -q >/dev/null 2>&1 || rc=$?
expect_eq "resume of a cancelled run: exit" "$rc" 0
python3 - <<'PY' || fail "resume of a cancelled run: results are wrong"
import json
rows = [json.loads(l) for l in open("cancelled/results.jsonl")]
final = {r["test"]: r["status"] for r in rows if r["final"]}
assert sorted(final) == ["/a", "/b", "/c", "/d"] and set(final.values()) == {"pass"}, final
assert len([r for r in rows if r["final"]]) == 4
inter = [r for r in rows if r.get("error_type") == "interrupted"]
assert len(inter) == 1 and not inter[0]["final"], inter
assert not [r for r in rows if r.get("error_type") == "not-run"], "not-run results stay"
PY
pass "resume runs the interrupted test and those not run; the interruption stays as a superseded attempt"
