# Merged reports (issue 14): atx report --merge OUT DIR... A 16-test plan
# (pass, fail, error, skip) run whole and as 4 shards on 2 local systems
# each; the merge of the 4 shards holds in JUnit and JSONL exactly the
# tests and statuses of the whole run; its HTML page, drawn by headless
# Chromium, has a timeline row for each system of every shard. A test in
# two runs, one shard twice, shards of different N and a shard beside a
# whole run are refused with one line and nothing written; a missing shard
# is named (exit 3) after the others' reports are written.
. "$ATX_SRC/tests/lib.sh"

PY=/usr/bin/python3
command -v chromium >/dev/null || fail "chromium is needed"

$PY - "$T/plan.json" <<'PYEOF'
import json, sys
cmds = {"pass": ["true"], "fail": ["false"], "error": ["/nonexistent/atx-merge-test"],
        "skip": ["sh", "-c", "exit 77"]}
tests = []
for i in range(16):
    kind = ["pass", "fail", "error", "skip"][i % 4]
    t = {"name": "/merge/%s/%02d" % (kind, i), "command": cmds[kind],
         "duration": "%ds" % (i % 5 + 1)}
    if kind == "skip":
        t["skip_exit_code"] = 77
    tests.append(t)
json.dump({"tests": tests, "policy": {"timeout": "1m"}}, open(sys.argv[1], "w"))
PYEOF

run() {  # run DIR ARGS...: atx run of the plan into DIR on local:2 (exit 1: tests fail)
  local dir=$1 rc=0
  shift
  timeout 120 "$ATX" run --plan "$T/plan.json" -o "$T/$dir" -q --no-history \
    --provisioner local:2 "$@" > "$T/$dir.out" 2>&1 || rc=$?
  cat "$T/$dir.out"
  expect_eq "atx run $* into $dir: exit" "$rc" 1
}
run whole
for k in 1 2 3 4; do run shard-$k --shard $k/4; done

rc=0
timeout 120 "$ATX" report --merge "$T/merged" "$T/shard-3" "$T/shard-1" "$T/shard-4" \
  "$T/shard-2" > "$T/merge.out" 2>&1 || rc=$?
cat "$T/merge.out"
expect_eq "atx report --merge of 4 shards: exit (tests fail)" "$rc" 1
for f in junit.xml results.jsonl report.html; do [ -s "$T/merged/$f" ] || fail "no merged $f"; done
xmllint --noout "$T/merged/junit.xml"

$PY - "$T" <<'PYEOF' || fail "merged reports against the whole run"
import json, sys
import xml.etree.ElementTree as ET
T = sys.argv[1]

def jsonl(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        if r["subtest"] is None and r["final"]:
            out.append((r["test"], r["status"]))
    return sorted(out)

def junit(path):
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "fail", "error": "error", "skipped": "skip"}[child.tag]
        out.append((case.get("name"), status))
    return sorted(out)

whole_j, merged_j = jsonl(T + "/whole/results.jsonl"), jsonl(T + "/merged/results.jsonl")
assert len(whole_j) == 16, whole_j
assert merged_j == whole_j, (merged_j, whole_j)
assert sorted(set(s for _, s in whole_j)) == ["error", "fail", "pass", "skip"], whole_j
whole_x, merged_x = junit(T + "/whole/junit.xml"), junit(T + "/merged/junit.xml")
assert len(whole_x) == 16 and merged_x == whole_x, (merged_x, whole_x)
systems = sorted(set(json.loads(l)["system"]["id"] for l in open(T + "/merged/results.jsonl")))
print("systems in the merged JSONL: %s" % systems)
assert all(s.endswith("/4)") for s in systems), systems
PYEOF
pass "the merge of 4 shards holds the whole run's tests and statuses (JUnit, JSONL)"

# The page, drawn by headless Chromium: one timeline row per system of
# every shard (each shard numbers its systems from local-1).
timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" \
  --no-first-run --disable-dev-shm-usage --dump-dom "file://$T/merged/report.html" \
  > "$T/dom.html" 2> "$T/chrome.err" || { cat "$T/chrome.err"; fail "chromium --dump-dom"; }
$PY - "$T" <<'PYEOF' || fail "the merged page"
import json, sys
from html.parser import HTMLParser
T = sys.argv[1]

class Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.systems, self.tests = [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if "tl-row" in cls:
            self.systems.append(a.get("data-system"))
        if tag == "tr" and "test-row" in cls:
            self.tests.append((a.get("data-test"), a.get("data-status")))

p = Rows()
p.feed(open(T + "/dom.html", encoding="utf-8").read())
want = set()
for k in range(1, 5):
    for l in open("%s/shard-%d/results.jsonl" % (T, k)):
        want.add("%s (shard %d/4)" % (json.loads(l)["system"]["id"], k))
print("timeline rows: %s" % sorted(p.systems))
assert sorted(p.systems) == sorted(want), (sorted(p.systems), sorted(want))
assert len(want) > 4, want
assert len(p.tests) == 16, p.tests
PYEOF
pass "the merged page draws a timeline row for every system of every shard"

refused() {  # refused WHAT PATTERN ARGS...: exit 2, one line matching PATTERN, no OUT
  local what=$1 pat=$2 rc=0
  shift 2
  rm -rf "$T/refused"
  "$ATX" report --merge "$T/refused" "$@" > "$T/r.out" 2> "$T/r.err" || rc=$?
  expect_eq "$what: exit" "$rc" 2
  expect_eq "$what: lines on stderr" "$(wc -l < "$T/r.err")" 1
  grep -qE -- "$pat" "$T/r.err" || fail "$what: $(cat "$T/r.err")"
  [ ! -e "$T/refused" ] || fail "$what: $T/refused was made"
}
run whole-again
refused "a test in two runs" "test /merge/[a-z]+/[0-9]+ is in two of the runs merged" \
  "$T/whole" "$T/whole-again"
refused "one shard twice" "shard 2/4 is given twice" "$T/shard-2" "$T/shard-1" "$T/shard-2"
run other-n --shard 1/3
refused "shards of different N" "shard 1/4 but .*is shard 1/3" "$T/shard-1" "$T/other-n"
refused "a shard beside a whole run" "ran the whole plan, not a shard" "$T/shard-1" "$T/whole"
refused "a folder without a journal" "holds no atx journal" "$T/shard-1" "$T/nowhere"
pass "bad merges refused with one line, nothing written"

rc=0
"$ATX" report --merge "$T/partial" "$T/shard-1" "$T/shard-2" "$T/shard-4" \
  > "$T/p.out" 2> "$T/p.err" || rc=$?
cat "$T/p.err"
expect_eq "a missing shard: exit" "$rc" 3
grep -qx "atx: error: missing shard 3/4: the merged reports hold 3 of the 4 shards" "$T/p.err" ||
  fail "the missing shard is not named"
$PY - "$T" <<'PYEOF' || fail "the partial merge"
import json, sys
T = sys.argv[1]
got = sorted(json.loads(l)["test"] for l in open(T + "/partial/results.jsonl"))
want = sorted(json.loads(l)["test"] for k in (1, 2, 4)
              for l in open("%s/shard-%d/results.jsonl" % (T, k)))
assert got == want and len(got) < 16, (got, want)
PYEOF
pass "a missing shard is named, exit 3, the others' reports written"
