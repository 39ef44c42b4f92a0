# Runnables (atx runnable-run, runnable-run-recipe, capabilities): the status
# lines of each kind, task ids, recipes and their errors.
. "$ATX_SRC/tests/lib.sh"

# check FILE 'python body': the body sees `lines` (every status line, parsed)
# and `fin` (the last one); each line must be JSON of its own.
check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert lines, "no status lines"
fin = lines[-1]
ids = {l["id"] for l in lines}
assert len(ids) == 1, "one task, one id: %r" % ids
assert [l["status"] for l in lines][0] == "started", lines[0]
assert all(l["status"] == "running" for l in lines[1:-1]), lines
assert len(lines) >= 3 and lines[1]["status"] == "running", "no running line: %r" % lines
assert fin["status"] == "finished", fin
assert all(isinstance(l["time"], float) for l in lines)
exec(sys.argv[2])
PY
}

# capabilities: JSON with the four kinds and the three commands
"$ATX" capabilities > "$T/caps"
python3 - "$T/caps" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
assert sorted(c["runnables"]) == sorted(["noop", "exec", "exec-test", "python-unittest"]), c
assert sorted(c["commands"]) == ["capabilities", "runnable-run", "runnable-run-recipe"], c
PY
pass "capabilities"

# noop: finishes at once with no result
"$ATX" runnable-run -k noop > "$T/noop"
check "$T/noop" 'assert "result" not in fin and "returncode" not in fin, fin'
pass "noop"

# exec: returncode and both streams, no verdict; exit 0 because it ran
rc=0
"$ATX" runnable-run -k exec -u sh -a -c -a 'echo out; echo err >&2; exit 3' > "$T/exec" || rc=$?
expect_eq "exec exit code" "$rc" 0
check "$T/exec" '
assert fin["returncode"] == 3, fin
assert fin["stdout"] == "out\n" and fin["stderr"] == "err\n", fin
assert "result" not in fin, fin'
pass "exec"

# kwargs are the environment; bytes that are not UTF-8 come out as U+FFFD
"$ATX" runnable-run -k exec -u sh -a -c -a 'printf "%s\377\n" "$GREETING"' \
  -w GREETING=hello > "$T/env"
check "$T/env" 'assert fin["stdout"] == "hello\ufffd\n", fin'
pass "exec kwargs and text cleaning"

# output past the cap: the head and the tail kept, a note of what was dropped
"$ATX" runnable-run -k exec -u sh -a -c -a 'head -c 3000000 /dev/zero | tr "\0" a; echo END' \
  > "$T/big"
check "$T/big" '
out = fin["stdout"]
assert len(out) < 1100000 and out.startswith("aaa") and out.endswith("END\n"), len(out)
assert "bytes omitted" in out, "no note of the dropped middle"'
pass "output cap"

# exec-test: pass on 0, fail otherwise
"$ATX" runnable-run -k exec-test -u true > "$T/pass"
check "$T/pass" 'assert fin["result"] == "pass" and fin["returncode"] == 0, fin'
rc=0; "$ATX" runnable-run -k exec-test -u sh -a -c -a 'exit 1' > "$T/fail" || rc=$?
expect_eq "exec-test fail: exit code" "$rc" 0
check "$T/fail" 'assert fin["result"] == "fail" and fin["returncode"] == 1, fin'
pass "exec-test pass and fail"

# a program that cannot run: finished with result error and a message, exit 1
rc=0; "$ATX" runnable-run -k exec-test -u "$T/no-such-program" > "$T/nope" || rc=$?
expect_eq "spawn failure exit code" "$rc" 1
python3 - "$T/nope" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines[0]["status"] == "started" and lines[-1]["status"] == "finished", lines
assert lines[-1]["result"] == "error" and "no-such-program" in lines[-1]["message"], lines
PY
pass "spawn failure"

# python-unittest: a passing, a failing, an erroring and a skipped test id
mkdir -p "$T/py"
cat > "$T/py/sample.py" <<'PY'
import unittest

class Sample(unittest.TestCase):
    def test_pass(self):
        self.assertEqual(2 + 2, 4)

    def test_fail(self):
        self.assertEqual(2 + 2, 5)

    def test_error(self):
        raise RuntimeError("boom")

    @unittest.skip("not here")
    def test_skip(self):
        pass
PY
for t in pass fail error skip; do
  rc=0
  "$ATX" runnable-run -k python-unittest -u sample.Sample.test_$t -w cwd="$T/py" \
    > "$T/py-$t" || rc=$?
  expect_eq "python-unittest $t: exit code" "$rc" 0
  check "$T/py-$t" "assert fin['result'] == '$t', fin
assert 'test_$t' in fin['stderr'], fin"
  pass "python-unittest $t"
done
# path: import from there without changing folder
"$ATX" runnable-run -k python-unittest -u sample.Sample.test_pass -w path="$T/py" > "$T/py-path"
check "$T/py-path" 'assert fin["result"] == "pass", fin'
pass "python-unittest path"

# a command of about 2 s says running more than once, each line flushed: the
# first running line is there while the command still runs
"$ATX" runnable-run -k exec -u sh -a -c -a "sleep 2; : > '$T/slow.done'" > "$T/slow" &
slow=$!
wait_grep "$T/slow" '"running"' 10
[ ! -e "$T/slow.done" ] || fail "the running line came only after the command ended"
wait "$slow"
check "$T/slow" 'assert sum(l["status"] == "running" for l in lines) >= 2, lines'
pass "running lines while it runs"

# ids differ between runs
"$ATX" runnable-run -k noop > "$T/noop2"
python3 - "$T/noop" "$T/noop2" <<'PY'
import json, sys
a, b = (json.loads(open(f).readline())["id"] for f in sys.argv[1:3])
assert a != b and len(a) >= 32, (a, b)
PY
pass "ids differ"

# SIGTERM kills the process group and says so
"$ATX" runnable-run -k exec-test -u sh -a -c -a "sleep 120 & echo \$! > '$T/bg.pid'; sleep 121" \
  > "$T/term" &
term=$!
wait_grep "$T/term" '"running"' 10
wait_for "$T/bg.pid" 10
kill -TERM "$term"
rc=0; wait "$term" || rc=$?
expect_eq "SIGTERM exit code" "$rc" 143
check "$T/term" 'assert fin["result"] == "interrupted", fin'
bg=$(cat "$T/bg.pid")
n=100; while kill -0 "$bg" 2>/dev/null && [ $n -gt 0 ]; do sleep 0.05; n=$((n-1)); done
! kill -0 "$bg" 2>/dev/null || fail "the background child outlived SIGTERM"
pass "SIGTERM kills the group"

# a recipe runs the same
cat > "$T/recipe.json" <<'JSON'
{"kind": "exec-test", "uri": "sh", "args": ["-c", "echo $WHO; exit 4"],
 "kwargs": {"WHO": "recipe"}}
JSON
"$ATX" runnable-run-recipe "$T/recipe.json" > "$T/rec"
check "$T/rec" '
assert fin["result"] == "fail" and fin["returncode"] == 4, fin
assert fin["stdout"] == "recipe\n", fin'
pass "recipe"

# malformed recipes: one line naming the file and the problem, exit 2
printf '{"kind": "exec",\n "uri": "true",\n oops}\n' > "$T/broken.json"
rc=0; "$ATX" runnable-run-recipe "$T/broken.json" > "$T/out" 2> "$T/e" || rc=$?
expect_eq "malformed recipe" "$rc" 2
expect_eq "malformed recipe: one line" "$(wc -l < "$T/e")" 1
grep -q "broken.json: line 3: not valid JSON" "$T/e" || { cat "$T/e"; fail "no line number"; }
[ ! -s "$T/out" ] || fail "a malformed recipe started a task"

echo '{"kind": "exec-test", "uri": "true", "argz": []}' > "$T/typo.json"
rc=0; "$ATX" runnable-run-recipe "$T/typo.json" 2> "$T/e" || rc=$?
expect_eq "recipe with an unknown key" "$rc" 2
expect_eq "unknown key: one line" "$(wc -l < "$T/e")" 1
grep -q "typo.json: unknown key 'argz'" "$T/e" || { cat "$T/e"; fail "unknown key not named"; }

echo '{"kind": "teleport", "uri": "x"}' > "$T/kind.json"
rc=0; "$ATX" runnable-run-recipe "$T/kind.json" 2> "$T/e" || rc=$?
expect_eq "recipe with an unknown kind" "$rc" 2
grep -q "kind.json: unknown kind 'teleport'" "$T/e" || { cat "$T/e"; fail "kind not named"; }
pass "recipe errors"

# usage errors: exit 2, one line
rc=0; "$ATX" runnable-run -k exec 2> "$T/e" || rc=$?
expect_eq "exec without a URI" "$rc" 2
grep -q "needs -u URI" "$T/e" || { cat "$T/e"; fail "missing URI not said"; }
rc=0; "$ATX" runnable-run -k frobnicate 2> "$T/e" || rc=$?
expect_eq "unknown kind" "$rc" 2
rc=0; "$ATX" runnable-run -k exec -u true -w novalue 2> "$T/e" || rc=$?
expect_eq "bad kwarg" "$rc" 2
rc=0; "$ATX" capabilities extra 2> /dev/null || rc=$?
expect_eq "capabilities with an argument" "$rc" 2
pass "usage errors"
