# What changed since the last run (issue 16), end to end with a private
# history. Acceptance 1: a folder of tests run three times, run 3 with a new
# failure, a fix, a still failing test, an alternating test fixed again, a
# test that passes only on its rerun, one 5x slower, one added and one
# removed; the summary, atx report --compare (text and JSON) and atx run
# --compare name exactly those tests in each kind. Acceptance 3: quarantine
# files (--quarantine and the plan's "quarantine") and --fail-on new|any
# decide the exit code; a bad quarantine file is one line and exit 2. Also:
# the plan key (a plan file however named, a resumed run) and bad uses.
. "$ATX_SRC/tests/lib.sh"

H="$T/hist.db"
# The run number the tests read: their behaviour changes from run to run.
setrun() { echo "$1" > "$T/n"; }
N='n=$(cat "'"$T"'/n")'
mktest stable 'exit 0'
mktest broken 'exit 1'
mktest newfail "$N"'; [ "$n" -lt 3 ]'
mktest fixed "$N"'; [ "$n" -ge 3 ]'
mktest flip "$N"'; [ $((n % 2)) = 1 ]'
mktest late "$N"'; [ "$n" -lt 5 ]'
# Run 3: fails its first attempt, passes its rerun.
mktest rerun "$N"'; [ "$n" != 3 ] || [ "$ATX_TEST_ATTEMPT" -gt 1 ]'
# The payload takes 0.3 s, in run 3 1.5 s (slower: >= 2x and >= 0.5 s more).
mktest slow "$N"'; if [ "$n" = 3 ]; then sleep 1.5; else sleep 0.3; fi'
mktest removed 'exit 0'

# run N OUT [ARGS...]: atx run of the tests folder as run N into $T/OUT
# (stderr in OUT.err); its exit code in $rc.
run() {
  local n=$1 out=$2
  shift 2
  setrun "$n"
  rc=0
  timeout 120 "$ATX" run "$T/tests" -j 4 --reruns 1 -o "$T/$out" --no-reports \
    --jsonl "$T/$out/results.jsonl" --html "$T/$out/report.html" "$@" > "$T/$out.out" \
    2> "$T/$out.err" || rc=$?
}

# kinds FILE: the comparison in FILE (atx's text, with or without "atx: "
# before each line) as "kind: names" lines, each kind's names sorted; the
# counts line must agree with the names.
kinds() {
  python3 - "$1" <<'PY'
import re, sys
kinds = ["new failures", "fixed", "still failing", "new tests", "removed", "newly flaky",
         "slower"]
lines = [l[5:] if l.startswith("atx: ") else l for l in open(sys.argv[1]).read().split("\n")]
counts = [l for l in lines if l.startswith("changes since ")]
assert len(counts) == 1, "no counts line, or several: %r" % counts
named = {}
for l in lines:
    for k in kinds:
        if l.startswith(k + ": "):
            named[k] = sorted(re.findall(r"(?:^| )(/[^ ]+)", l[len(k) + 2:]))
for k in kinds:
    m = re.search(r"\b%s (\d+)\b" % k, counts[0])
    assert m, (k, counts[0])
    assert int(m.group(1)) == len(named.get(k, [])), (k, counts[0], named.get(k))
    print("%s: %s" % (k, " ".join(named.get(k, []))))
PY
}

want3="new failures: /newfail
fixed: /fixed /flip
still failing: /broken
new tests: /added
removed: /removed
newly flaky: /rerun
slower: /slow"

run 1 r1 --history "$H"
expect_eq "run 1: exit" "$rc" 1
grep -q "changes since" "$T/r1.err" && fail "run 1 has nothing to compare with: $(cat "$T/r1.err")"
run 2 r2 --history "$H"
expect_eq "run 2: exit" "$rc" 1
expect_eq "run 2: what changed since run 1" "$(kinds "$T/r2.err")" "new failures: /flip
fixed: 
still failing: /broken /fixed
new tests: 
removed: 
newly flaky: 
slower: "
rm "$T/tests/removed"
mktest added 'exit 0'
run 3 r3 --history "$H"
cat "$T/r3.err"
expect_eq "run 3: exit" "$rc" 1
grep -q "^atx: changes since the previous run of this plan (.*): new failures 1, fixed 2, " \
  "$T/r3.err" || fail "run 3: no counts line"
expect_eq "run 3: the summary's changes" "$(kinds "$T/r3.err")" "$want3"
# The HTML page's changes section names the same tests, kind by kind.
python3 - "$T/r3/report.html" <<'PY' > "$T/r3.page" || fail "run 3: the page's changes section"
import html, re, sys
page = open(sys.argv[1]).read()
section = re.search(r'<section class="changes".*?</section>', page, re.S).group(0)
words = {"new_failures": "new failures", "fixed": "fixed", "still_failing": "still failing",
         "new_tests": "new tests", "removed": "removed", "newly_flaky": "newly flaky",
         "slower": "slower"}
for kind, word in words.items():
    m = re.search(r'<div class="chg-kind" data-kind="%s">(.*?)</div>' % kind, section, re.S)
    names = sorted(html.unescape(n) for n in
                   re.findall(r'class="chg-test"[^>]*>([^<]*)<', m.group(1))) if m else []
    print("%s: %s" % (word, " ".join(names)))
PY
expect_eq "run 3: the page's changes" "$(cat "$T/r3.page")" "$want3"
# The counts line and the names come after the usual summary lines.
tail -n 8 "$T/r3.err" | head -n 1 | grep -q "^atx: changes since" ||
  fail "run 3: the changes are not the summary's last lines"

# The same from the two results folders: "usual" is run 2's duration there.
rc=0
"$ATX" report --compare "$T/r2" "$T/r3" > cmp.txt 2> cmp.err || rc=$?
expect_eq "atx report --compare: exit" "$rc" 0
[ ! -s cmp.err ] || fail "atx report --compare wrote to stderr: $(cat cmp.err)"
head -n 1 cmp.txt | grep -q "^changes since $T/r2: new failures 1" || fail "$(cat cmp.txt)"
expect_eq "atx report --compare r2 r3" "$(kinds cmp.txt)" "$want3"
"$ATX" report --compare "$T/r2" "$T/r3" --format json > cmp.json || fail "--format json"
python3 - cmp.json "$T/r2" <<'PY' || fail "atx report --compare --format json: $(cat cmp.json)"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["baseline"] == sys.argv[2], c["baseline"]
want = {"new_failures": ["/newfail"], "fixed": ["/fixed", "/flip"],
        "still_failing": ["/broken"], "new_tests": ["/added"], "removed": ["/removed"],
        "newly_flaky": ["/rerun"]}
for k, v in want.items():
    assert sorted(c[k]) == v, (k, c[k])
assert [s["test"] for s in c["slower"]] == ["/slow"], c["slower"]
s = c["slower"][0]
assert s["duration"] >= 1.4 and 0.25 <= s["usual"] < 1.0, s
assert set(c) == set(want) | {"baseline", "slower"}, sorted(c)
print("JSON: %s" % s)
PY
pass "atx report --compare r2 r3 --format json names the same tests"

# copy_history DB: a throwaway copy of the history, so what a run writes
# into it does not change what the next runs compare with.
copy_history() {
  cp "$H" "$1"
  [ ! -e "$H-wal" ] || cp "$H-wal" "$1-wal"
}

# atx run --compare DIR: with run 1's folder instead of the previous run
# (/flip passed in both, so it is not fixed); -q keeps the counts line only.
copy_history "$T/scratch.db"
run 3 r3b --history "$T/scratch.db" --compare "$T/r1"
expect_eq "run --compare r1: exit" "$rc" 1
grep -q "^atx: changes since $T/r1: new failures 1, fixed 1, " "$T/r3b.err" ||
  fail "run --compare r1: $(cat "$T/r3b.err")"
expect_eq "run --compare r1: the changes" "$(kinds "$T/r3b.err")" "new failures: /newfail
fixed: /fixed
still failing: /broken
new tests: /added
removed: /removed
newly flaky: /rerun
slower: /slow"
run 3 r3q --history "$T/scratch.db" --compare "$T/r1" -q
grep -q "^atx: changes since $T/r1: " "$T/r3q.err" || fail "-q: no counts line"
grep -Eq "^atx: (new failures|fixed|still failing|new tests|removed|slower):" "$T/r3q.err" &&
  fail "-q: more than the counts line: $(cat "$T/r3q.err")"
pass "atx run --compare DIR compares with that folder; -q gives the counts line only"

# Acceptance 3: /flip quarantined (a pattern and a comment). Run 4 fails
# /broken and /newfail (known: failing in run 3) and /flip (new: it passed
# in run 3).
printf '# alternates, see issue 16\n^/fl(i|o)p$\n\n' > q.txt
copy_history "$T/scratch4.db"
run 4 r4a --history "$T/scratch4.db" --fail-on new
expect_eq "run 4, --fail-on new without quarantine: exit (/flip is new)" "$rc" 1
grep -q "^atx: new failures: /flip$" "$T/r4a.err" || fail "$(cat "$T/r4a.err")"
copy_history "$T/scratch4.db"
run 4 r4b --history "$T/scratch4.db" --quarantine q.txt
expect_eq "run 4, --fail-on any, /flip quarantined: exit (known failures fail)" "$rc" 1
run 4 r4 --history "$H" --quarantine q.txt --fail-on new
expect_eq "run 4, --fail-on new, /flip quarantined, the others known: exit" "$rc" 0
expect_eq "run 4: the changes" "$(kinds "$T/r4.err")" "new failures: /flip
fixed: 
still failing: /broken /newfail
new tests: 
removed: 
newly flaky: 
slower: "
grep -q "^atx: 9 tests: 6 passed, 3 failed" "$T/r4.err" || fail "$(cat "$T/r4.err")"
run 5 r5 --history "$H" --quarantine q.txt --fail-on new
expect_eq "run 5, --fail-on new: exit (/late is a new failure)" "$rc" 1
grep -q "^atx: new failures: /late$" "$T/r5.err" || fail "$(cat "$T/r5.err")"
pass "quarantine and --fail-on decide the exit code"

# A resumed run (of a run that ended, here) has its plan's key, from
# another folder, and is one run: compared with the run before it (run 4,
# not its own earlier part), and kept once in the history.
rc=0
(cd / && timeout 60 "$ATX" run --resume "$T/r5" --history "$H") > res.out 2> res.err || rc=$?
expect_eq "resume of run 5: exit (--fail-on new from its journal; /late is new)" "$rc" 1
grep -q "^atx: changes since the previous run of this plan (.*): new failures 1, fixed 1, still failing 2, new tests 0, removed 0" res.err ||
  fail "the resumed run is not compared with its plan's previous run: $(cat res.err)"
expect_eq "runs of the history in $T/r5" \
  "$(sqlite3 "$H" "SELECT count(*) FROM runs WHERE dir = '$T/r5'")" 1

# Bad quarantine files: one line naming the file and the line, exit 2.
printf '# fine\n/stable\n/x(\n' > bad.txt
rc=0
"$ATX" run "$T/tests" --history "$H" --quarantine bad.txt -o "$T/rbad" > bad.out 2> bad.err || rc=$?
expect_eq "--quarantine with a bad pattern: exit" "$rc" 2
expect_eq "--quarantine with a bad pattern: lines on stderr" "$(wc -l < bad.err)" 1
grep -q "bad.txt:3: '/x(' is not a regular expression" bad.err || fail "$(cat bad.err)"
rc=0
"$ATX" run "$T/tests" --history "$H" --quarantine nowhere.txt -o "$T/rbad" > bad.out 2> bad.err ||
  rc=$?
expect_eq "--quarantine with a missing file: exit" "$rc" 2
expect_eq "--quarantine with a missing file: lines" "$(wc -l < bad.err)" 1
grep -q "nowhere.txt" bad.err || fail "$(cat bad.err)"
pass "a bad quarantine file is one line and exit 2"

# A plan file: its "quarantine" is relative to its folder, and it is the
# same plan (key: its real path) however it is named on the command line.
mkdir plans
printf '# known\n^/plan/fl\n' > plans/q.txt
cat > plans/plan.json <<'EOF'
{"quarantine": "q.txt",
 "tests": [{"name": "/plan/flaky", "command": ["false"]},
           {"name": "/plan/ok", "command": ["true"]}]}
EOF
rc=0
"$ATX" run --plan plans/plan.json --history "$H" -o "$T/p1" > p1.out 2> p1.err || rc=$?
expect_eq "plan with a quarantine: exit (its only failure quarantined)" "$rc" 0
grep -q "changes since" p1.err && fail "a new plan is compared with another: $(cat p1.err)"
rc=0
(cd plans && "$ATX" run --plan ./plan.json --history "$H" -o "$T/p2") > p2.out 2> p2.err ||
  rc=$?
expect_eq "the plan again, named from its folder: exit" "$rc" 0
grep -q "^atx: changes since the previous run of this plan (.*): new failures 0, fixed 0, still failing 1, new tests 0, removed 0" p2.err ||
  fail "the plan named another way is another plan: $(cat p2.err)"
rc=0
"$ATX" run --plan plans/plan.json --history "$H" --quarantine /dev/null -o "$T/p3" > p3.out \
  2> p3.err || rc=$?
expect_eq "--quarantine replaces the plan's: exit" "$rc" 1
printf '/x(\n' > plans/badq.txt
printf '{"quarantine": "badq.txt", "tests": []}' > plans/bad.json
rc=0
"$ATX" run --plan plans/bad.json --history "$H" -o "$T/p4" > p4.out 2> p4.err || rc=$?
expect_eq "a plan's bad quarantine file: exit" "$rc" 2
expect_eq "a plan's bad quarantine file: lines" "$(wc -l < p4.err)" 1
grep -q "plans/badq.txt:1: '/x(' is not a regular expression" p4.err || fail "$(cat p4.err)"
pass "a plan's quarantine file, relative to the plan; the plan's key is its real path"

# Bad uses: one line (and the pointer to --help), exit 2.
bad_use() {  # bad_use WHAT WORD ARGS...: exit 2, stderr names WORD
  local what=$1 word=$2 rc=0
  shift 2
  "$ATX" "$@" > use.out 2> use.err || rc=$?
  expect_eq "$what: exit" "$rc" 2
  grep -q -- "$word" use.err || fail "$what: $(cat use.err)"
}
bad_use "--fail-on sometimes" "--fail-on is any" run "$T/tests" --fail-on sometimes
bad_use "atx report --compare without results.jsonl" "results.jsonl" report --compare "$T/r2" "$T/plans"
expect_eq "... in one line" "$(wc -l < use.err)" 1
bad_use "atx report --compare with one folder" "two results folders" report --compare "$T/r2"
bad_use "atx run --compare a folder without results" "results.jsonl" run "$T/tests" --compare "$T/plans"
bad_use "atx list --quarantine" "for atx run" list "$T/tests" --quarantine q.txt
pass "bad uses are refused"
