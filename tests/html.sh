# The HTML report: 500 quick tests (pass, fail, skip, a rerun, hostile
# output, two fmf tests with tags, subtests and files) on 4 local systems.
# The page must be one offline file whose data element survives the hostile
# output; headless Chromium must draw it (a screenshot) and build one
# timeline row per system and one row per test (its DOM, counted).
. "$ATX_SRC/tests/lib.sh"

PY=/usr/bin/python3
command -v chromium >/dev/null || fail "chromium is needed"

# Hostile output, written once by bash's printf and cat by the test.
mkdir -p "$T/data"
printf 'head</script><script>alert(1)</script><!--<script>\n' > "$T/data/hostile"
printf 'nul<\000> ansi<\033[1;31mRED\033[0m> bad<\377\376> trunc<\342\202>\n' >> "$T/data/hostile"
printf '</SCRIPT >end-of-hostile\n' >> "$T/data/hostile"

$PY - "$T/plan.json" "$T/data/hostile" "$ATX_SRC/examples/fmf" <<'PYEOF'
import json, sys
plan_path, hostile, tree = sys.argv[1:]
tests = []
for i in range(470):
    tests.append({"name": "/pass/%03d" % i, "command": ["true"]})
for i in range(20):
    tests.append({"name": "/fail/%03d" % i, "command": ["false"]})
for i in range(6):
    tests.append({"name": "/skip/%03d" % i, "command": ["sh", "-c", "exit 77"],
                  "skip_exit_code": 77})
tests.append({"name": "/rerun/always-fails", "command": ["sh", "-c", "echo try; exit 1"],
              "reruns": 1})
tests.append({"name": "/hostile", "command": ["sh", "-c", "cat '%s'; cat '%s' >&2; exit 1"
                                              % (hostile, hostile)]})
# Two fmf tests: tags (from the tree), subtests and in-band files.
tests.append({"executor": "fmf", "tree": tree, "test": ["^/subtests$", "^/upload$"]})
plan = {"provisioners": [{"plugin": "local", "slots": 4}],
        "tests": tests,
        "aggregators": [{"plugin": "html", "path": "report.html"},
                        {"plugin": "jsonl", "path": "results.jsonl"}],
        "policy": {"timeout": "1m"}}
json.dump(plan, open(plan_path, "w"), indent=1)
PYEOF

rc=0
t0=$(date +%s%N)
timeout 240 "$ATX" run --plan "$T/plan.json" -o "$T/out" -q --no-history \
    > "$T/atx.out" 2>&1 || rc=$?
t1=$(date +%s%N)
cat "$T/atx.out"
expect_eq "atx exit code" "$rc" 1
echo "run time: $(( (t1 - t0) / 1000000 )) ms"
R="$T/out/report.html"
[ -s "$R" ] || fail "no $R"
leftover=$(find "$T/out" -maxdepth 1 -name 'report.html.*' | wc -l)
expect_eq "temporary and spool files left in the results folder" "$leftover" 0
echo "report.html: $(wc -c < "$R") bytes"

# The file itself: valid UTF-8, one data element that ends where it should
# and parses, the hostile output kept escaped, nothing fetched from a network.
$PY - "$R" "$T/out/results.jsonl" <<'PYEOF' || fail "report.html checks"
import json, re, sys
raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-8")            # raises on invalid UTF-8
assert b"\x00" not in raw, "a NUL byte in the page"
m = re.search(r'<script type="application/json" id="atx-data">(.*?)</script>', text, re.S)
assert m, "no data element"
blob = m.group(1)
assert "<" not in blob, "a raw '<' in the data element"
D = json.loads(blob)
tests = {t["name"]: t for t in D["tests"]}
assert len(tests) == 500, "%d tests in the data" % len(tests)
# Totals agree with the JSON lines of the same run.
finals = [json.loads(l) for l in open(sys.argv[2])]
finals = [r for r in finals if r["final"] and r["subtest"] is None]
assert D["totals"]["tests"] == 500, D["totals"]
want = {"passed": sum(r["status"] == "pass" for r in finals),
        "failed": sum(r["status"] == "fail" for r in finals),
        "skipped": sum(r["status"] == "skip" for r in finals)}
for k, v in want.items():
    assert D["totals"][k] == v, "totals %s=%s, jsonl says %d" % (k, D["totals"][k], v)
assert want["failed"] == 22 and want["skipped"] == 6, want
# The hostile test: its output decoded back, cleaned, nothing lost around it.
h = tests["/hostile"]["results"][0]
for key in ("stdout", "stderr"):
    out = h[key]
    assert "head</script><script>alert(1)</script><!--<script>" in out, repr(out)
    assert "nul<\ufffd>" in out and "ansi<RED>" in out and "\x1b" not in out, repr(out)
    assert "bad<\ufffd\ufffd>" in out and "</SCRIPT >end-of-hostile" in out, repr(out)
# Every attempt is kept: the rerun's first attempt is superseded.
rr = tests["/rerun/always-fails"]["results"]
assert [(r["attempt"], r["final"]) for r in rr] == [(1, False), (2, True)], rr
# fmf: tags, subtests and files as relative links.
assert "example" in D["tags"], D["tags"]
sub = [t for n, t in tests.items() if n.endswith("/subtests")][0]
assert [D["tags"][k] for k in sub["tags"]] == ["example"], sub["tags"]
subs = sorted((r["subtest"], r["status"]) for r in sub["results"] if r["subtest"])
assert subs == [("first", "pass"), ("second/nested", "fail")], subs
up = [t for n, t in tests.items() if n.endswith("/upload")][0]
files = [f for r in up["results"] for f in r.get("files", [])]
assert files and all(not f.startswith("/") for f in files), files
assert D["files_base"] == "", D["files_base"]
# No network: nothing outside the data names an http(s) URL, no src/href
# to another host, no @import or url().
page = text[:m.start(1)] + text[m.end(1):]
assert not re.search(r"https?:", page, re.I), re.search(r".{40}https?:.{40}", page, re.I)
assert not re.search(r"""(src|href)\s*=\s*["']?\s*//""", page, re.I)
assert not re.search(r"@import|url\(", page, re.I)
print("ok: data element of %d bytes parses: %d tests, %d results, totals %r"
      % (len(blob), len(tests), sum(len(t["results"]) for t in D["tests"]), D["totals"]))
PYEOF

# Headless Chromium, each call bounded; its profile lives in $T.
chrome() {
    timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" \
        --no-first-run --disable-dev-shm-usage "$@" 2> "$T/chrome.err"
}
chrome --screenshot="$T/out/shot.png" --window-size=1400,2000 "file://$R" > /dev/null ||
    { cat "$T/chrome.err"; fail "chromium --screenshot"; }
[ -f "$T/out/shot.png" ] || fail "no screenshot"
png=$(stat -c %s "$T/out/shot.png")
[ "$png" -gt 10240 ] || fail "the screenshot is $png bytes"
pass "screenshot of $png bytes"

chrome --dump-dom "file://$R" > "$T/dom.html" || { cat "$T/chrome.err"; fail "chromium --dump-dom"; }
# A second view opens the hostile test from the address (#test=NAME).
chrome --dump-dom "file://$R#test=%2Fhostile" > "$T/dom-hostile.html" ||
    { cat "$T/chrome.err"; fail "chromium --dump-dom #test="; }

$PY - "$T/dom.html" "$T/dom-hostile.html" <<'PYEOF' || fail "DOM checks"
import sys
from html.parser import HTMLParser

class Count(HTMLParser):
    def __init__(self):
        super().__init__()
        self.systems, self.tests, self.pre, self.scripts = [], [], [], 0
        self.in_pre = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if "tl-row" in cls:
            self.systems.append(a.get("data-system"))
        if tag == "tr" and "test-row" in cls:
            self.tests.append((a.get("data-test"), a.get("data-status")))
        if tag == "pre" and "out" in cls:
            self.in_pre += 1
            self.pre.append("")
        if tag == "script":
            self.scripts += 1
    def handle_endtag(self, tag):
        if tag == "pre" and self.in_pre:
            self.in_pre -= 1
    def handle_data(self, data):
        if self.in_pre:
            self.pre[-1] += data

def parse(path):
    p = Count()
    p.feed(open(path, encoding="utf-8").read())
    return p

d = parse(sys.argv[1])
print("timeline rows: %d %s" % (len(d.systems), sorted(d.systems)))
print("test rows: %d" % len(d.tests))
assert len(d.systems) == 4, d.systems
assert len(d.tests) == 500, len(d.tests)
assert len(set(n for n, _ in d.tests)) == 500
assert ("/hostile", "fail") in d.tests
assert d.scripts == 2, "%d script elements: the data element was broken" % d.scripts

h = parse(sys.argv[2])
assert len(h.tests) == 500, len(h.tests)
outs = [p for p in h.pre if "end-of-hostile" in p]
assert len(outs) == 2, h.pre
assert all("</script><script>alert(1)</script>" in p for p in outs), outs
print("ok: the hostile test opens from #test=, its output shown as text")
PYEOF

# Unknown configuration keys are refused by name, before anything runs.
cat > "$T/bad.json" <<'EOF'
{"tests": [{"name": "/t", "command": ["true"]}],
 "aggregators": [{"plugin": "html", "colour": "blue"}]}
EOF
rc=0
timeout 60 "$ATX" run --plan "$T/bad.json" -o "$T/bad" -q --no-history > "$T/bad.out" 2>&1 || rc=$?
cat "$T/bad.out"
expect_eq "exit code for an unknown html key" "$rc" 2
grep -q "colour" "$T/bad.out" || fail "the error does not name the key"
pass "unknown key refused by name"
