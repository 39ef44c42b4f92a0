# tmt's `result` test key: how each value settles the test's own result
# (JSONL and the attempt's `results` file agree), the helper programs on the
# test's PATH (tmt-report-result and its restraint/RHTS names), custom
# results from $TMT_TEST_DATA (good, malformed, a link), a timeout that xfail
# leaves alone; then the same on slots that do not share this host's files.
. "$ATX_SRC/tests/lib.sh"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 30s
/respect:
    test: "true"
/respect-fail:
    test: exit 1
/respect-reports:
    summary: reports decide, the exit code does not count
    test: |
        echo details > log.txt
        tmt-report-result /setup PASS
        rstrnt-report-result -o log.txt --message "it shows" check WARN 7
        rhts-report-result /cleanup skip log.txt
        exit 5
/xfail-fails:
    result: xfail
    test: exit 1
/xfail-passes:
    result: xfail
    test: "true"
/xfail-timeout:
    result: xfail
    duration: 2s
    test: sleep 60
/xfail-reports:
    result: xfail
    test: tmt-report-result /a FAIL
/pass:
    result: pass
    test: exit 1
/info:
    result: info
    test: "true"
/warn:
    result: warn
    test: exit 1
/error:
    result: error
    test: "true"
/fail:
    result: fail
    test: exit 1
/restraint:
    result: restraint
    test: |
        tmt-report-result /first PASS
        tmt-report-result second FAIL
        tmt-report-result /third PASS
/restraint-none:
    result: restraint
    test: "true"
/bogus:
    result: sometimes
    test: "true"
/custom:
    result: custom
    test: |
        echo "the log" > "$TMT_TEST_DATA/sub.log"
        cat > "$TMT_TEST_DATA/results.yaml" <<'YAML'
        ---
        - name: /
          result: pass
          note: all there
        - name: /sub/one
          result: fail
          note:
            - first
            - second
          log:
            - sub.log
            - ../../etc/passwd
        - name: two
          result: info
        YAML
        exit 3
/custom-json:
    result: custom
    test: |
        printf '[{"name": "/a", "result": "warn"}, {"name": "/b", "result": "pass"}]' \
            > "$TMT_TEST_DATA/results.json"
/custom-malformed:
    result: custom
    test: |
        printf -- '- name: /\n  result: [pass\n' > "$TMT_TEST_DATA/results.yaml"
/custom-unknown:
    result: custom
    test: |
        printf -- '- name: /x\n  result: "pass\\ned"\n' > "$TMT_TEST_DATA/results.yaml"
/custom-alias:
    result: custom
    test: |
        printf -- '- &r {name: /x, result: pass}\n- *r\n' > "$TMT_TEST_DATA/results.yaml"
/custom-link:
    result: custom
    test: |
        echo '- {name: /, result: pass}' > "$T_OUTSIDE"
        ln -s "$T_OUTSIDE" "$TMT_TEST_DATA/results.yaml"
/custom-missing:
    result: custom
    test: "true"
/custom-huge:
    result: custom
    test: |
        { echo "- name: /"; echo "  result: pass"; echo "  note: >-"
          head -c 9000000 /dev/zero | tr '\0' a; echo; } > "$TMT_TEST_DATA/results.yaml"
/custom-deep:
    result: custom
    test: |
        printf '%0.s[' $(seq 100) > "$TMT_TEST_DATA/results.json"
/data:
    summary: TMT_TEST_DATA is kept in files/data (no links), and empty for each test
    test: |
        test -d "$TMT_TEST_DATA"
        test -z "$(ls -A "$TMT_TEST_DATA")"
        echo kept > "$TMT_TEST_DATA/artifact.txt"
        ln -s /etc/passwd "$TMT_TEST_DATA/link"
FMF
# Two of them on one slot: the second finds the folder empty.
cp -r "$tree" "$T/data-tree"
cat >> "$T/data-tree/main.fmf" <<'FMF'
/data-again:
    test: |
        test -z "$(ls -A "$TMT_TEST_DATA")"
        echo again > "$TMT_TEST_DATA/artifact.txt"
FMF

export T_OUTSIDE="$T/outside.yaml"
rc=0
"$ATX" run "$tree" -j 2 -o "$T/out" -q --no-history > "$T/run.out" 2>&1 || rc=$?
expect_eq "exit code" "$rc" 1

check() { # OUT: assert statuses and notes in JSONL and in the attempts' results files
python3 - "$1" "$tree" <<'PY'
import json, os, sys
out, tree = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl"))]
def own(test):
    r = [r for r in rows if r["test"] == test and r["subtest"] is None and r["final"]]
    assert len(r) == 1, (test, r)
    return r[0]
def subs(test):
    return [(r["subtest"], r["status"], r["note"]) for r in rows
            if r["test"] == test and r["subtest"] is not None]
def lines(test):
    return [json.loads(l) for l in open(os.path.join(out, "tests", test.strip("/"), "attempt-1", "results"))]
def expect(test, status, note=None, sub=None):
    r = own(test)
    assert r["status"] == status, (test, r["status"], r["note"])
    assert r["note"] == note, (test, r["note"], note)
    got = [l for l in lines(test) if "name" not in l]
    assert len(got) == 1 and got[0]["status"] == status and got[0].get("note") == note, (test, got)
    if sub is not None:
        assert subs(test) == sub, (test, subs(test))
    print("ok:", test, status, "-", note)

expect("/respect", "pass")
expect("/respect-fail", "fail")
expect("/respect-reports", "warn", sub=[("setup", "pass", None), ("check", "warn", "it shows"),
                                       ("cleanup", "skip", None)])
reports = {l["name"]: l for l in lines("/respect-reports") if "name" in l}
assert reports["check"] == {"name": "check", "status": "warn", "via": "rstrnt-report-result",
                            "note": "it shows", "score": "7", "files": ["log.txt"]}, reports
assert reports["cleanup"]["via"] == "rhts-report-result" and reports["cleanup"]["files"] == ["log.txt"]
for n in ("check", "cleanup"):
    assert open(os.path.join(out, "tests/respect-reports/attempt-1/files", n, "log.txt")).read() == "details\n"
assert own("/respect-reports")["exit_code"] == 5
expect("/xfail-fails", "pass", "test failed as expected, original test result: fail")
expect("/xfail-passes", "fail", "test was expected to fail, original test result: pass")
t = own("/xfail-timeout")
assert t["status"] == "infra" and t["error_type"] == "timeout" and "timed out" in t["note"], t
print("ok: /xfail-timeout stays", t["status"], "-", t["note"])
expect("/xfail-reports", "pass", "test failed as expected, original test result: fail",
       sub=[("a", "fail", None)])
expect("/pass", "pass", "test result overridden: pass, original test result: fail")
expect("/info", "info", "test result overridden: info, original test result: pass")
expect("/warn", "warn", "test result overridden: warn, original test result: fail")
expect("/error", "error", "test result overridden: error, original test result: pass")
expect("/fail", "fail", "test result overridden: fail")
expect("/restraint", "fail", "the worst of 3 reported results",
       sub=[("first", "pass", None), ("second", "fail", None), ("third", "pass", None)])
expect("/restraint-none", "pass", sub=[])
expect("/bogus", "error", tree + "/main.fmf:52: /bogus: 'result: sometimes' is not one of "
       "respect, xfail, pass, info, warn, error, fail, custom, restraint")
assert own("/bogus")["error_type"] == "metadata"
expect("/custom", "pass", "all there",
       sub=[("sub/one", "fail", "first, second, log ../../etc/passwd is not a file in TMT_TEST_DATA"),
            ("two", "info", "the name does not start with '/'")])
one = [r for r in rows if r["test"] == "/custom" and r["subtest"] == "sub/one"][0]
assert one["files"] == ["tests/custom/attempt-1/files/sub/one/sub.log"], one["files"]
assert open(os.path.join(out, one["files"][0])).read() == "the log\n"
assert lines("/custom")[-1] == {"status": "pass", "note": "all there", "files": ["output.txt"]}, lines("/custom")
expect("/custom-json", "warn", "the worst of the 2 results in results.json (none is named '/')",
       sub=[("a", "warn", None), ("b", "pass", None)])
expect("/custom-malformed", "error", "results.yaml: line 3: not YAML: did not find expected ',' or ']'")
expect("/custom-unknown", "error", "results.yaml: result 1 (/x): 'pass?ed' is not a result "
       "(pass, fail, info, warn, error, skip)", sub=[])
expect("/custom-alias", "error", "results.yaml: line 2: aliases are not supported", sub=[])
expect("/custom-link", "error", "results.yaml in TMT_TEST_DATA is a symbolic link: not followed", sub=[])
expect("/custom-missing", "error", "no results.yaml or results.json in TMT_TEST_DATA")
expect("/custom-huge", "error", "results.yaml: 9000037 bytes, more than the 8 MiB read")
expect("/custom-deep", "error", "results.json: not JSON: nesting too deep at byte 32")
expect("/data", "pass")
data = os.path.join(out, "tests/data/attempt-1/files/data")
assert sorted(os.listdir(data)) == ["artifact.txt"], os.listdir(data)
assert open(os.path.join(data, "artifact.txt")).read() == "kept\n"
PY
}
check "$T/out" || fail "results of the result key are wrong (above)"
pass "every result value settles the test's own result as tmt does"
[ ! -e "$T/out/.atx-fmf-bin" ] || fail "the helper programs were left in the results folder"

# Slots that do not share this host's files: the helpers are uploaded, the
# data folder is copied back from the system.
cat > "$T/plan.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 2, "share_host_files": false}],
 "tests": [{"executor": "fmf", "tree": "$tree"}]}
JSON
rc=0
"$ATX" run --plan "$T/plan.json" -o "$T/remote" -q --no-history > "$T/remote.out" 2>&1 || rc=$?
expect_eq "exit code (elsewhere)" "$rc" 1
check "$T/remote" || fail "results of the result key elsewhere are wrong (above)"
pass "the same on systems that do not share this host's files"

rc=0
"$ATX" run "$T/data-tree" --test '^/data' -j 1 -o "$T/data" -q --no-history > "$T/data.out" 2>&1 || rc=$?
expect_eq "exit code (data)" "$rc" 0
expect_eq "the second test's data" "$(cat "$T/data/tests/data-again/attempt-1/files/data/artifact.txt")" again
