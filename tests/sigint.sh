# SIGINT in the middle of a run: running tests are killed and recorded as
# interrupted, the rest as not run, the reports are written, the exit code
# is non-zero and no child process remains. A second SIGINT hurries: tests
# that ignore SIGTERM are killed at once.
. "$ATX_SRC/tests/lib.sh"

marker="atx-int-$$-$RANDOM"
cp "$(command -v sleep)" "$T/$marker"
for t in a b c d; do
  mktest "$t.sh" "touch '$T/started-$t'; '$T/$marker' 1000 & '$T/$marker' 1000"
done

"$ATX" run "$T/tests" -j 2 -o "$T/out" -q &
pid=$!
wait_for "$T/started-a" 20
wait_for "$T/started-b" 20
kill -INT $pid
rc=0
wait $pid || rc=$?
expect_eq "exit code after SIGINT" "$rc" 1
[ -e "$T/started-c" ] && fail "a test started after the cancel"

xmllint --noout "$T/out/junit.xml" || fail "junit.xml is not well-formed"
python3 - "$T/out/results.jsonl" <<'PY'
import json, sys
rows = {json.loads(l)["test"]: json.loads(l) for l in open(sys.argv[1])}
assert sorted(rows) == ["/a.sh", "/b.sh", "/c.sh", "/d.sh"], rows
for t in ("/a.sh", "/b.sh"):
    assert rows[t]["status"] == "error" and rows[t]["error_type"] == "interrupted", rows[t]
for t in ("/c.sh", "/d.sh"):
    assert rows[t]["status"] == "skip" and rows[t]["error_type"] == "not-run", rows[t]
print("interrupted: a b; not run: c d")
PY
grep -q 'type="interrupted"' "$T/out/junit.xml" || fail "junit.xml lacks the interrupted errors"
left=$(left_behind "$marker")
[ -z "$left" ] || fail "processes left behind: $left"
pass "no process left behind after SIGINT"

# Twice: the second signal skips the grace period.
rm -rf "$T/tests" "$T"/started-*
mktest stubborn.sh "trap '' TERM; touch '$T/started-s'; '$T/$marker' 1000 & '$T/$marker' 1000"
"$ATX" run "$T/tests" -j 1 -o "$T/out2" 2> "$T/err2" &
pid=$!
wait_for "$T/started-s" 20
kill -INT $pid
# Signals sent back to back merge into one: wait until atx saw the first.
wait_grep "$T/err2" "cancelled: stopping" 20
start=$(date +%s%N)
kill -INT $pid
rc=0
wait $pid || rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "exit code after two SIGINTs" "$rc" 1
[ "$ms" -lt 800 ] || fail "a hurried cancel took ${ms} ms (the grace is 1000 ms)"
grep -q '"error_type":"interrupted"' "$T/out2/results.jsonl" || fail "no interrupted result"
left=$(left_behind "$marker")
[ -z "$left" ] || fail "processes left behind after a hurried cancel: $left"
pass "hurried cancel in ${ms} ms"
