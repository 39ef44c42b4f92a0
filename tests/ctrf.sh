#!/usr/bin/env bash
# The CTRF report: passing, failing, skipped, flaky, always-failing, timed-out
# tests, a test with 20 MB of output, TAP subtests and fmf tests reporting
# warn and a custom word. The report must validate against our schema
# (tests/ctrf/ctrf.schema.json, python3-jsonschema), which must itself refuse
# broken reports; each entry's status, rawStatus, retries and flaky must be
# right, and the summary must count the entries.
. "$ATX_SRC/tests/lib.sh"
SCHEMA="$ATX_SRC/tests/ctrf/ctrf.schema.json"
PY=/usr/bin/python3
$PY -c 'import jsonschema' || fail "python3-jsonschema is needed"

cat > tap.sh <<'SH'
#!/bin/sh
printf '1..3\nok 1 - a\nnot ok 2 - b # TODO not written yet\nok 3 - c # SKIP not here\n'
SH
chmod +x tap.sh

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 30s
/warn:
    test: |
        printf 'result 18\n{"status": "warn"}' >&$ATEX_TEST_CONTROL
/custom:
    test: |
        printf 'result 20\n{"status": "wobbly"}' >&$ATEX_TEST_CONTROL
FMF

cat > plan.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 2}],
 "tests": [
  {"name": "/pass", "command": ["true"]},
  {"name": "/deep/dir/pass", "command": ["true"]},
  {"name": "/fail", "command": ["sh", "-c", "echo failing-out; echo failing-err >&2; exit 1"]},
  {"name": "/skip", "command": ["sh", "-c", "echo skip-reason; exit 77"], "skip_exit_code": 77},
  {"name": "/flaky", "reruns": 1,
   "command": ["sh", "-c", "echo attempt=\$ATX_TEST_ATTEMPT; [ \$ATX_TEST_ATTEMPT -gt 1 ]"]},
  {"name": "/always", "reruns": 1, "command": ["sh", "-c", "echo attempt=\$ATX_TEST_ATTEMPT; exit 3"]},
  {"name": "/hang", "command": ["sh", "-c", "exec tail -f /dev/null"], "timeout": "1s"},
  {"name": "/big", "command": ["sh", "-c",
   "echo BIG-HEAD; head -c 20000000 /dev/zero | tr '\\\\0' x; echo; echo BIG-TAIL; exit 1"]},
  {"name": "/tap", "executor": "tap", "command": ["$T/tap.sh"]},
  {"executor": "fmf", "tree": "$tree"}],
 "aggregators": [{"plugin": "ctrf", "path": "ctrf.json"},
                 {"plugin": "jsonl", "path": "results.jsonl"}],
 "policy": {"timeout": "60s"}}
JSON

rc=0
"$ATX" run --plan plan.json -o out -q --no-history > run.out 2>&1 || rc=$?
cat run.out
expect_eq "atx exit code" "$rc" 1
[ -s out/ctrf.json ] || fail "no out/ctrf.json"
leftover=$(ls out | grep -E 'ctrf\.json\.(tmp|spool)' || true)
[ -z "$leftover" ] || fail "temporary files left: $leftover"
pass "ctrf.json written, no temporary file left"

$PY - "$SCHEMA" out/ctrf.json <<'PY' || fail "ctrf.json checks"
import copy, json, sys
import jsonschema

schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
raw = open(sys.argv[2], "rb").read()
report = json.loads(raw.decode("utf-8"))
errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
for e in errors:
    print("schema:", list(e.path), e.message[:300])
assert not errors, "ctrf.json does not validate"
print("ok: ctrf.json validates against ctrf.schema.json")

# The schema must refuse what the format forbids, or it checks nothing.
def refused(what, mutate):
    bad = copy.deepcopy(report)
    mutate(bad)
    assert not validator.is_valid(bad), "the schema accepts " + what
    print("ok: the schema refuses", what)
tests = report["results"]["tests"]
refused("a status outside the five", lambda r: r["results"]["tests"][0].update(status="error"))
refused("an entry without duration", lambda r: r["results"]["tests"][0].pop("duration"))
refused("an unknown key in an entry", lambda r: r["results"]["tests"][0].update(errorType="x"))
refused("a summary without 'other'", lambda r: r["results"]["summary"].pop("other"))
refused("a tool without a name", lambda r: r["results"]["tool"].pop("name"))
refused("another reportFormat", lambda r: r.update(reportFormat="JUnit"))
refused("a fractional duration", lambda r: r["results"]["tests"][0].update(duration=1.5))

assert report["results"]["tool"]["name"] == "atx"
by = {t["name"]: t for t in tests}
assert len(by) == len(tests), "entry names repeat: %r" % [t["name"] for t in tests]

def check(name, status, raw, retries=0, flaky=None):
    t = by.get(name)
    assert t is not None, "no entry %s in %r" % (name, sorted(by))
    got = (t["status"], t["rawStatus"], t["retries"], t.get("flaky"))
    assert got == (status, raw, retries, flaky), "%s: %r, want %r" % (name, got, (status, raw, retries, flaky))
    assert t["extra"]["attempt"] == retries + 1, (name, t["extra"])
    if "start" in t:
        assert t["start"] <= t["stop"] and t["stop"] - t["start"] in (t["duration"], t["duration"] + 1), t
    print("ok: %-18s %-8s rawStatus=%-7s retries=%d flaky=%s" % (name, status, raw, retries, flaky))
    return t

t = check("/pass", "passed", "pass", flaky=False)
assert "trace" not in t and "retryAttempts" not in t, t
assert t["extra"]["system"], t
t = check("/deep/dir/pass", "passed", "pass", flaky=False)
assert t["suite"] == ["deep", "dir"], t
t = check("/fail", "failed", "fail", flaky=False)
assert t["message"] and "failing-out" in t["trace"] and "failing-err" in t["trace"], t
assert t["extra"]["exitCode"] == 1, t
t = check("/skip", "skipped", "skip", flaky=False)
t = check("/flaky", "passed", "pass", retries=1, flaky=True)
[a] = t["retryAttempts"]
assert a["attempt"] == 1 and a["status"] == "failed" and a["extra"]["rawStatus"] == "fail", a
assert "attempt=1" in a["trace"], a
t = check("/always", "failed", "fail", retries=1, flaky=False)
assert [a["attempt"] for a in t["retryAttempts"]] == [1], t["retryAttempts"]
assert "attempt=2" in t["trace"] and "attempt=1" in t["retryAttempts"][0]["trace"], t
t = check("/hang", "failed", "error", flaky=False)
assert t["extra"]["errorType"] == "timeout" and 900 <= t["duration"] < 10000, t
t = check("/big", "failed", "fail", flaky=False)
assert t["trace"].endswith("BIG-TAIL\n") and "bytes omitted" in t["trace"], t["trace"][-200:]
assert len(t["trace"]) < 20000, len(t["trace"])
print("ok: 20 MB of output became a trace of %d characters" % len(t["trace"]))
check("/tap", "passed", "pass", flaky=False)
for name, status, raw in (("/tap/a", "passed", "pass"), ("/tap/b", "passed", "info"),
                          ("/tap/c", "skipped", "skip")):
    t = check(name, status, raw)
    assert t["extra"]["test"] == "/tap" and t["suite"] == ["tap"] and "flaky" not in t, t
fmf = sorted(n for n in by if n.endswith("/warn") or n.endswith("/custom"))
assert len(fmf) == 2, sorted(by)
check(fmf[1], "passed", "warn", flaky=False)
check(fmf[0], "other", "wobbly", flaky=False)

s = report["results"]["summary"]
want = {k: sum(1 for t in tests if t["status"] == k)
        for k in ("passed", "failed", "skipped", "pending", "other")}
want["tests"] = len(tests)
want["flaky"] = sum(1 for t in tests if t.get("flaky"))
got = {k: s[k] for k in want}
assert got == want, "summary %r, entries say %r" % (got, want)
assert want == dict(tests=14, passed=7, failed=4, skipped=2, pending=0, other=1, flaky=1), want
assert s["start"] <= s["stop"] and s["extra"]["tests"] == 11 and s["extra"]["flaky"] == 1, s
print("ok: summary", want)
PY
