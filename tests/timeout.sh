# A test that starts background children and outlives its timeout is killed
# with its whole process tree and reported as error/timeout within
# timeout + 2 s; no process is left behind. One test ignores SIGTERM, so the
# KILL after the grace period is exercised too.
. "$ATX_SRC/tests/lib.sh"

marker="atx-hang-$$-$RANDOM"
cp "$(command -v sleep)" "$T/$marker"
mktest hang.sh "'$T/$marker' 1000 & '$T/$marker' 1000 & ( '$T/$marker' 1000 & ) ; '$T/$marker' 1000"
mktest stubborn.sh "trap '' TERM; '$T/$marker' 1000 & '$T/$marker' 1000"

start=$(date +%s%N)
rc=0
"$ATX" run "$T/tests" -j 2 --timeout 2s -o "$T/out" -q || rc=$?
end=$(date +%s%N)
expect_eq "exit code" "$rc" 1

elapsed_ms=$(( (end - start) / 1000000 ))
echo "elapsed ${elapsed_ms} ms"
[ "$elapsed_ms" -lt 4500 ] || fail "run took ${elapsed_ms} ms, more than timeout + 2 s"

python3 - "$T/out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2, rows
for r in rows:
    assert r["status"] == "error", r
    assert r["error_type"] == "timeout", r
    assert "timed out after 2.000s" in r["note"], r
    assert r["duration"] < 4.0, r
print("both tests: error/timeout, durations", [r["duration"] for r in rows])
PY

left=$(left_behind "$marker")
[ -z "$left" ] || { ps -o pid,pgid,sid,args -p $left >&2; fail "processes left behind: $left"; }
pass "no process left behind"
