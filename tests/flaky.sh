# Flaky tests in the reports, from the outcome history. A test that fails
# its first attempt and passes its rerun in runs 1 and 3 (at once in run 2)
# has, after run 3, the flake rate 2/3 and the recent outcomes "+P+" in the
# JSON lines, the JUnit report (a suite property in the strict profile, valid
# against tests/junit.xsd; a testcase property in the extended one), the CTRF
# report (flaky, extra.flake_rate) and the HTML page (its column); `atx
# report` rebuilds them from the journal. A plan run twice, one of its tests
# failing the second time, gets a page whose changes section names it.
. "$ATX_SRC/tests/lib.sh"

PY=/usr/bin/python3
XSD="$ATX_SRC/tests/junit.xsd"
SCHEMA="$ATX_SRC/tests/ctrf/ctrf.schema.json"
command -v xmllint >/dev/null || fail "xmllint (libxml2-utils) is needed"
$PY -c 'import jsonschema' || fail "python3-jsonschema is needed"

# /flaky fails its first attempt when a token is there (taken as it fails):
# one token before a run makes it pass only on its rerun in that run.
mkdir -p "$T/marks"
mktest flaky "if [ -e '$T/marks/fail-first' ]; then rm -f '$T/marks/fail-first'
echo failing-first attempt=\$ATX_TEST_ATTEMPT; exit 1; fi; echo passing attempt=\$ATX_TEST_ATTEMPT"
mktest steady 'exit 0'

run() { # run N: run N of the tests, reports in $T/runN
    local rc=0
    "$ATX" run "$T/tests" -j 2 --reruns 1 --timeout 60s --history "$T/hist.db" -o "$T/run$1" \
        --ctrf "$T/run$1/ctrf.json" --report "junit:path=$T/run$1/junit-ext.xml,profile=extended" -q \
        > "$T/run$1.out" 2>&1 || rc=$?
    cat "$T/run$1.out"
    expect_eq "atx exit code (run $1)" "$rc" 0
}
: > "$T/marks/fail-first"; run 1
run 2
: > "$T/marks/fail-first"; run 3
[ ! -e "$T/marks/fail-first" ] || fail "run 3 never failed /flaky's first attempt"
R="$T/run3"

# JSON lines: every line has the three fields; the rate and the outcomes
# only on a test's final own result.
expect_eq "JSONL /flaky attempts (run 3)" \
    "$(jsonl "$R/results.jsonl" '[(r["attempt"], r["status"], r["final"]) for r in rows if r["test"] == "/flaky"]')" \
    "[(1, 'fail', False), (2, 'pass', True)]"
expect_eq "JSONL fields on every line" \
    "$(jsonl "$R/results.jsonl" 'all("flake_rate" in r and "recent" in r and r["quarantined"] is False for r in rows)')" \
    "True"
expect_eq "JSONL /flaky final: flake_rate, recent" \
    "$(jsonl "$R/results.jsonl" '[(r["flake_rate"], r["recent"]) for r in rows if r["test"] == "/flaky" and r["final"]]')" \
    "[(0.667, '+P+')]"
expect_eq "JSONL /flaky superseded attempt: flake_rate, recent" \
    "$(jsonl "$R/results.jsonl" '[(r["flake_rate"], r["recent"]) for r in rows if r["test"] == "/flaky" and not r["final"]]')" \
    "[(None, None)]"
expect_eq "JSONL /steady: flake_rate, recent" \
    "$(jsonl "$R/results.jsonl" '[(r["flake_rate"], r["recent"]) for r in rows if r["test"] == "/steady"]')" \
    "[(0, 'PPP')]"
expect_eq "JSONL /flaky after run 1: flake_rate, recent" \
    "$(jsonl "$T/run1/results.jsonl" '[(r["flake_rate"], r["recent"]) for r in rows if r["test"] == "/flaky" and r["final"]]')" \
    "[(1, '+')]"
# The raw text: three decimals at most, no float noise.
grep -q '"flake_rate":0.667,"recent":"+P+","quarantined":false' "$R/results.jsonl" ||
    fail "results.jsonl: $(grep '"final":true' "$R/results.jsonl" | grep flaky)"
pass "results.jsonl writes the rate as 0.667"

# JUnit, strict: valid against our schema, the rate a suite property; the
# steady test (rate 0) has none.
xmllint --noout --schema "$XSD" "$R/junit.xml" || fail "junit.xml does not match junit.xsd"
pass "junit.xml matches junit.xsd"
$PY - "$R/junit.xml" "$R/junit-ext.xml" <<'EOF' || fail "JUnit checks"
import sys
import xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
props = {p.get("name"): p.get("value") for p in suite.find("properties")}
assert props.get("atx.flake_rate:/flaky") == "0.667", props
assert not any(k.startswith("atx.flake_rate:/steady") for k in props), props
assert not any(k.startswith("atx.quarantined:") for k in props), props
for case in suite.iter("testcase"):
    assert case.find("properties") is None, "strict: properties in testcase %s" % case.get("name")
print("ok: strict junit.xml: suite property atx.flake_rate:/flaky = 0.667")
cases = {c.get("name"): c for c in ET.parse(sys.argv[2]).getroot().iter("testcase")}
def props_of(name):
    c = cases[name]
    assert list(c)[0].tag == "properties", [e.tag for e in c]
    return {p.get("name"): p.get("value") for p in c.find("properties")}
assert props_of("flaky") == {"flake_rate": "0.667"}, props_of("flaky")
assert props_of("steady") == {"flake_rate": "0"}, props_of("steady")
assert [e.tag for e in cases["flaky"]][1:2] == ["flakyFailure"], [e.tag for e in cases["flaky"]]
print("ok: extended junit: testcase properties flake_rate first in the testcase")
EOF
# The extended profile is what the strict schema refuses, and only that.
if xmllint --noout --schema "$XSD" "$R/junit-ext.xml" 2>/dev/null; then
    fail "junit.xsd accepts testcase properties"
fi
sed 's#<properties><property name="flake_rate" value="[0-9.]*"/></properties>##g' \
    "$R/junit-ext.xml" > "$T/ext-stripped.xml"
xmllint --noout --schema "$XSD" "$T/ext-stripped.xml" ||
    fail "the extended junit without its testcase properties does not match junit.xsd"
pass "the extended profile differs from the strict one only by testcase properties"

# CTRF: valid, /flaky flaky with its rate; /steady neither.
$PY - "$SCHEMA" "$R/ctrf.json" "$T/run2/ctrf.json" <<'EOF' || fail "CTRF checks"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
for path in sys.argv[2:]:
    jsonschema.Draft7Validator(schema).validate(json.load(open(path)))
tests = {t["name"]: t for t in json.load(open(sys.argv[2]))["results"]["tests"]}
f, s = tests["/flaky"], tests["/steady"]
assert f["flaky"] is True and f["extra"]["flake_rate"] == 0.667, f
assert f["extra"]["quarantined"] is False, f["extra"]
assert s["flaky"] is False and s["extra"]["flake_rate"] == 0, s
# Run 2: /flaky passed at once, yet it flaked before: flaky by its rate.
r2 = json.load(open(sys.argv[3]))["results"]
f2 = [t for t in r2["tests"] if t["name"] == "/flaky"][0]
assert f2["retries"] == 0 and f2["flaky"] is True and f2["extra"]["flake_rate"] == 0.5, f2
assert r2["summary"]["flaky"] == 1, r2["summary"]
print("ok: ctrf.json: /flaky flaky with extra.flake_rate 0.667 (run 2: 0.5, no retry)")
EOF

# HTML: the data carries the rate and the outcomes; drawn, the row shows them.
$PY - "$R/report.html" <<'EOF' || fail "report.html data"
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<script type="application/json" id="atx-data">(.*?)</script>', text, re.S)
D = json.loads(m.group(1))
t = [t for t in D["tests"] if t["name"] == "/flaky"][0]
final = [r for r in t["results"] if r["final"] and r["subtest"] is None][0]
assert final["flake_rate"] == 0.667 and final["recent"] == "+P+", final
assert '"flake_rate":0.667' in m.group(1)
assert 'id="changes"' in text, "no changes section after three runs"
assert "<th>flake rate</th>" in text
print("ok: report.html: /flaky has flake_rate 0.667 and recent +P+")
EOF
chrome() {
    timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" \
        --no-first-run --disable-dev-shm-usage "$@" 2> "$T/chrome.err"
}
if command -v chromium >/dev/null; then
    chrome --dump-dom "file://$R/report.html" > "$T/dom.html" ||
        { cat "$T/chrome.err"; fail "chromium --dump-dom"; }
    $PY - "$T/dom.html" <<'EOF' || fail "report.html as drawn"
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
row = re.search(r'<tr class="test-row[^"]*" data-test="/flaky".*?</tr>', dom, re.S)
assert row, "no row for /flaky"
row = row.group(0)
cell = re.search(r'<td class="rate" data-flake-rate="([^"]*)"[^>]*>([^<]*)</td>', row)
assert cell and cell.groups() == ("0.667", "67%"), cell and cell.groups()
assert 'data-recent="+P+"' in row and "<svg" in row and row.count("<rect") == 3, row
print("ok: the /flaky row shows 67% and a sparkline of 3 runs")
EOF
else
    echo "note: no chromium, the page is not drawn"
fi

# atx report rebuilds the reports from the journal, the history's word kept.
mv "$R/results.jsonl" "$T/run3.jsonl"
rc=0; "$ATX" report "$R" -q > "$T/report.out" 2>&1 || rc=$?
cat "$T/report.out"
expect_eq "atx report exit code" "$rc" 0
cmp -s "$R/results.jsonl" "$T/run3.jsonl" || {
    diff "$T/run3.jsonl" "$R/results.jsonl" || true
    fail "atx report: results.jsonl differs from the run's"
}
pass "atx report rebuilt results.jsonl with the flake rates"

# Without a history nothing is known: null, null, false.
rc=0
"$ATX" run "$T/tests" -j 2 --no-history -o "$T/nohist" -q > "$T/nohist.out" 2>&1 || rc=$?
expect_eq "atx exit code (no history)" "$rc" 0
expect_eq "JSONL without a history" \
    "$(jsonl "$T/nohist/results.jsonl" 'sorted(set((r["flake_rate"], r["recent"], r["quarantined"]) for r in rows))')" \
    "[(None, None, False)]"
grep -q 'id="changes"' "$T/nohist/report.html" && fail "a changes section without a history"
pass "no changes section without a history"

# The changes section: /breaks passes in run A and fails in run B; /gone is
# in A's plan only (removed: named, but no row to link to).
mkdir -p "$T/plan"
plan() { # plan TESTS...: the plan file, its tests among /ok, /breaks, /gone
    local sep="" t
    { echo '{"tests": ['
      for t in "$@"; do
          case $t in
          breaks) printf '%s{"name": "/breaks", "command": ["sh", "-c", "[ ! -e %s ]"]}\n' \
                      "$sep" "'$T/marks/broken'" ;;
          *) printf '%s{"name": "/%s", "command": ["true"]}\n' "$sep" "$t" ;;
          esac
          sep=","
      done
      echo ']}'; } > "$T/plan/plan.json"
}
plan ok breaks gone
rc=0
"$ATX" run --plan "$T/plan/plan.json" --history "$T/hist2.db" -o "$T/A" -q > "$T/A.out" 2>&1 || rc=$?
cat "$T/A.out"
expect_eq "atx exit code (run A)" "$rc" 0
plan ok breaks
: > "$T/marks/broken"
rc=0
"$ATX" run --plan "$T/plan/plan.json" --history "$T/hist2.db" -o "$T/B" -q > "$T/B.out" 2>&1 || rc=$?
cat "$T/B.out"
expect_eq "atx exit code (run B)" "$rc" 1
$PY - "$T/B/report.html" "$T/A/report.html" <<'EOF' || fail "the changes section"
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<section class="changes" id="changes">(.*?)</section>', text, re.S)
assert m, "no changes section"
sec = m.group(1)
assert text.index('id="changes"') < text.index('id="timeline"'), "the section is not at the top"
assert "Changes since the previous run of this plan (" in sec, sec
kind = re.search(r'<div class="chg-kind" data-kind="new_failures">(.*?)</div>', sec, re.S)
assert kind, sec
assert '<a class="chg-test" href="#test=%2Fbreaks">/breaks</a>' in kind.group(1), kind.group(1)
assert "/ok" not in kind.group(1), kind.group(1)
assert '<span class="chg-count bad" data-kind="new_failures"><b>1</b>' in sec, sec
kinds = re.findall(r'<div class="chg-kind" data-kind="([a-z_]+)"', sec)
assert kinds == ["new_failures", "removed"], kinds
assert '<span class="chg-test">/gone</span>' in sec, sec
assert 'id="changes"' not in open(sys.argv[2], encoding="utf-8").read(), "run A had nothing to compare"
print("ok: the changes section names /breaks among the new failures, linked to its row")
EOF
if command -v chromium >/dev/null; then
    chrome --dump-dom "file://$T/B/report.html#test=%2Fbreaks" > "$T/domB.html" ||
        { cat "$T/chrome.err"; fail "chromium --dump-dom"; }
    $PY - "$T/domB.html" <<'EOF' || fail "run B's page as drawn"
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
rows = re.findall(r'<tr class="test-row[^"]*" data-test="([^"]*)" data-status="([^"]*)"', dom)
assert rows and rows[0] == ("/breaks", "fail"), rows
assert re.search(r'<tr class="test-row open" data-test="/breaks"', dom), "the link does not open the row"
print("ok: failures first (%s), #test=%%2Fbreaks opens its row" % rows)
EOF
fi
