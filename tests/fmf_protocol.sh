# Protocol errors on the control channel: the attempt ends with an infra
# result whose note names the problem; other tests are unaffected.
. "$ATX_SRC/tests/lib.sh"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 30s
/unknown-word:
    test: |
        echo 'frobnicate now' >&$ATEX_TEST_CONTROL; sleep 30
/bad-json:
    test: |
        printf 'result 10\n{"status"}' >&$ATEX_TEST_CONTROL; sleep 30
/short-payload:
    test: |
        printf 'result 100\n{"status": "pass"}' >&$ATEX_TEST_CONTROL
/fine:
    test: |
        printf 'result 18\n{"status": "pass"}' >&$ATEX_TEST_CONTROL
FMF

start=$(date +%s)
rc=0
"$ATX" run "$tree" -j 2 -o "$T/out" -q || rc=$?
expect_eq "exit code" "$rc" 1
[ $(( $(date +%s) - start )) -lt 20 ] || fail "protocol errors did not end their tests"

python3 - "$T/out" <<'PY'
import json, os, sys
rows = {r["test"]: r for r in map(json.loads, open(os.path.join(sys.argv[1], "results.jsonl")))
        if r["subtest"] is None}
def infra(test, words):
    r = rows[test]
    assert r["status"] == "infra", r
    for w in words:
        assert w in r["note"], (test, w, r["note"])
    print("ok:", test, "->", r["note"])
infra("/unknown-word", ["frobnicate"])
infra("/bad-json", ["JSON"])
infra("/short-payload", ["100"])
assert rows["/fine"]["status"] == "pass", rows["/fine"]
print("ok: /fine passed")
PY
