#!/usr/bin/env bash
# Subresults from other frameworks: the tap executor reads a command's TAP 13
# stream, the junitxml executor imports the JUnit XML file a command writes
# (a pytest suite here). Each test point or testcase becomes a subresult in
# JUnit, JSONL and the HTML report.
. "$ATX_SRC/tests/lib.sh"
PY=/usr/bin/python3   # Debian's, with python3-pytest

# 5 ok, 1 not ok (with YAML diagnostics), 1 skip, and a plan of 8.
cat > tap-wrong-plan.sh <<'SH'
#!/bin/sh
echo "TAP version 13"
echo "1..8"
echo "ok 1 - first"
echo "ok 2 - second"
echo "not ok 3 - third fails"
echo "  ---"
echo "  message: expected 1, got 2"
echo "  ..."
echo "ok 4 - fourth # SKIP no network here"
echo "ok 5 - fifth"
echo "this line is not TAP and is passed over"
echo "ok 6 - sixth"
echo "ok 7 - seventh"
SH
cat > tap-good.sh <<'SH'
#!/bin/sh
printf '1..3\nok 1 - a\nnot ok 2 - b # TODO not written yet\nok - c\n'
SH
cat > tap-bail.sh <<'SH'
#!/bin/sh
printf '1..3\nok 1 - a\nBail out! the database is gone\nok 2 - never read\n'
SH
chmod +x tap-*.sh
mkdir suite
cat > suite/test_sample.py <<'PY'
import pytest

def test_adds():
    assert 1 + 1 == 2

def test_fails():
    assert 1 + 1 == 3, "arithmetic is broken"

@pytest.mark.skip(reason="not on this system")
def test_skipped():
    pass
PY
printf '<testsuites><testsuite name="x"><testcase name="t"' > broken.xml

cat > plan.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 2}],
 "tests": [
  {"name": "/tap/wrong-plan", "executor": "tap", "command": ["$T/tap-wrong-plan.sh"]},
  {"name": "/tap/good", "executor": "tap", "command": ["$T/tap-good.sh"]},
  {"name": "/tap/bail", "executor": "tap", "command": ["$T/tap-bail.sh"]},
  {"name": "/py/suite", "executor": "junitxml", "cwd": "$T",
   "command": ["$PY", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=out.xml", "suite"],
   "report": "out.xml"},
  {"name": "/py/missing", "executor": "junitxml", "command": ["true"], "report": "nothing.xml"},
  {"name": "/py/broken", "executor": "junitxml", "cwd": "$T", "command": ["true"],
   "report": "broken.xml"}],
 "aggregators": [{"plugin": "junit", "path": "junit.xml"},
                 {"plugin": "jsonl", "path": "results.jsonl"},
                 {"plugin": "html", "path": "report.html"}]}
JSON
rc=0
"$ATX" run --plan plan.json -o out -q --no-history > run.out 2>&1 || rc=$?
expect_eq "exit code" "$rc" 1

python3 - <<'PY' || fail "subresults in JSONL are wrong"
import json
rows = [json.loads(l) for l in open("out/results.jsonl")]
def subs(test):
    return [(r["subtest"], r["status"]) for r in rows if r["test"] == test and r["subtest"]]
def own(test):
    r = [r for r in rows if r["test"] == test and not r["subtest"]][-1]
    return r["status"], r.get("error_type"), r["note"]
assert subs("/tap/wrong-plan") == [("first", "pass"), ("second", "pass"), ("third fails", "fail"),
    ("fourth", "skip"), ("fifth", "pass"), ("sixth", "pass"), ("seventh", "pass")], subs("/tap/wrong-plan")
third = [r for r in rows if r["subtest"] == "third fails"][0]
assert third["stdout"] if "stdout" in third else True
assert own("/tap/wrong-plan") == ("error", "tap-plan", "planned 8 tests (1..8), 7 ran"), own("/tap/wrong-plan")
assert subs("/tap/good") == [("a", "pass"), ("b", "info"), ("c", "pass")], subs("/tap/good")
assert own("/tap/good")[0] == "pass", own("/tap/good")
assert subs("/tap/bail") == [("a", "pass")], subs("/tap/bail")
assert own("/tap/bail")[:2] == ("error", "bail-out") and "the database is gone" in own("/tap/bail")[2]
s = dict(subs("/py/suite"))
assert s == {"suite.test_sample.test_adds": "pass", "suite.test_sample.test_fails": "fail",
             "suite.test_sample.test_skipped": "skip"}, s
fails = [r for r in rows if r["subtest"] == "suite.test_sample.test_fails"][0]
assert "arithmetic is broken" in fails["note"], fails["note"]
assert own("/py/suite")[:2] == ("fail", "subtests"), own("/py/suite")
assert own("/py/missing") == ("error", "junit-report", "the JUnit report nothing.xml was not written"), own("/py/missing")
st, ty, note = own("/py/broken")
assert (st, ty) == ("error", "junit-report") and "broken.xml is not XML" in note, own("/py/broken")
PY
pass "JSONL: TAP points and pytest testcases are subresults; plan mismatch, bail out, missing and broken reports are errors naming the file"

python3 - <<'PY' || fail "subresults in JUnit are wrong"
import xml.etree.ElementTree as ET
cases = {c.get("name"): c for c in ET.parse("out/junit.xml").iter("testcase")}
want = ["wrong-plan/first", "wrong-plan/third fails", "wrong-plan/fourth", "wrong-plan",
        "suite/suite.test_sample.test_fails", "suite/suite.test_sample.test_skipped", "suite"]
missing = [w for w in want if w not in cases]
assert not missing, (missing, sorted(cases))
assert cases["wrong-plan/third fails"].find("failure") is not None
assert cases["wrong-plan/fourth"].find("skipped") is not None
assert cases["suite/suite.test_sample.test_fails"].find("failure") is not None
assert cases["suite/suite.test_sample.test_skipped"].find("skipped") is not None
assert cases["wrong-plan"].find("error") is not None
PY
xmllint --noout --schema "$ATX_SRC/tests/junit.xsd" out/junit.xml || fail "JUnit does not validate"
pass "JUnit: the same subresults as testcases, valid against the strict schema"

python3 - <<'PY' || fail "subresults in the HTML report are wrong"
import json, re
page = open("out/report.html", encoding="utf-8").read()
data = json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S).group(1))
tests = {t["name"]: t for t in data["tests"]}
def subs(name):
    return {r["subtest"]: r["status"] for r in tests[name]["results"] if r.get("subtest")}
assert subs("/tap/wrong-plan") == {"first": "pass", "second": "pass", "third fails": "fail",
    "fourth": "skip", "fifth": "pass", "sixth": "pass", "seventh": "pass"}, subs("/tap/wrong-plan")
assert subs("/py/suite") == {"suite.test_sample.test_adds": "pass",
    "suite.test_sample.test_fails": "fail", "suite.test_sample.test_skipped": "skip"}, subs("/py/suite")
own = [r for r in tests["/tap/wrong-plan"]["results"] if not r.get("subtest")][0]
assert own["status"] == "error" and own["note"] == "planned 8 tests (1..8), 7 ran", own
PY
pass "HTML: the same subresults in the report's data"
