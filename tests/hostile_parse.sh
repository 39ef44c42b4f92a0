#!/usr/bin/env bash
# What a test writes is hostile input. Real misbehaving tests through
# `atx run`: a JUnit report that is a "billion laughs" entity bomb is refused
# at once in little memory; external entities (general, parameter, an
# external DTD) are never loaded; a report past the size cap is refused; a
# TAP stream and a JUnit report of 20,000 points with one name become 20,000
# subresults with unique names, read in linear time.
. "$ATX_SRC/tests/lib.sh"

# Sanitizer builds (Debug, ASan) are several times slower and bigger; the
# limits still tell linear from quadratic (3,000 repeats took 17 s before).
max_ms=2000 max_kb=102400
[ -z "${ATX_SANITIZE:-}" ] || { max_ms=20000 max_kb=307200; }

# run_timed NAME PLAN: `atx run` of PLAN into out-NAME, its wall time in ms
# in $ms and its peak RSS in kB in $rss.
run_timed() {
  local start end rc=0
  start=$(date +%s%N)
  /usr/bin/time -f %M -o "rss-$1" "$ATX" run --plan "$2" -o "out-$1" -q --no-history \
    > "run-$1.out" 2>&1 || rc=$?
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  rss=$(tail -n 1 "rss-$1")
  [ "$rc" -le 1 ] || { cat "run-$1.out" >&2; fail "$1: atx run exited $rc"; }
}

# ~700 bytes: ten entities, each ten of the one before (10^9 "lol"s).
python3 - <<'PY'
lines = ['<?xml version="1.0"?>', '<!DOCTYPE testsuites [', ' <!ENTITY l0 "lol">']
for i in range(1, 10):
    lines.append(' <!ENTITY l%d "%s">' % (i, ("&l%d;" % (i - 1)) * 10))
lines += [']>', '<testsuites><testsuite name="s"><testcase name="&l9;" classname="&l9;">',
          '<failure message="&l9;">&l9;</failure><system-out>&l9;</system-out>',
          '</testcase></testsuite></testsuites>']
open("bomb.xml", "w").write("\n".join(lines) + "\n")
PY
size=$(stat -c %s bomb.xml)
echo "bomb.xml: $size bytes"
[ "$size" -lt 1000 ] || fail "the bomb is $size bytes"

cat > bomb.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 1}],
 "tests": [{"name": "/junit/bomb", "executor": "junitxml", "command": ["true"],
            "report": "$T/bomb.xml", "timeout": "60s"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
JSON
run_timed bomb bomb.json
echo "entity bomb: ${ms} ms, peak RSS ${rss} kB"
[ "$ms" -lt "$max_ms" ] || fail "the entity bomb took ${ms} ms (more than $max_ms ms)"
[ "$rss" -lt "$max_kb" ] || fail "the entity bomb took ${rss} kB (more than $max_kb kB)"
python3 - <<'PY' || fail "the entity bomb is not refused"
import json
rows = [json.loads(l) for l in open("out-bomb/results.jsonl")]
assert len(rows) == 1, rows
r = rows[0]
assert (r["status"], r["error_type"]) == ("error", "junit-report"), r
assert "declares entities" in r["note"] and "bomb.xml" in r["note"], r["note"]
print("refused:", r["note"])
PY
pass "an entity bomb is refused within $max_ms ms and $max_kb kB"

# External entities: a general one, a parameter one, an external DTD (with
# its entity used), and the same report with no DTD as the control.
cat > xxe.xml <<'XML'
<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<testsuite name="x"><testcase name="c"><system-out>&xxe;</system-out></testcase></testsuite>
XML
cat > pe.xml <<'XML'
<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<testsuite name="x"><testcase name="c"/></testsuite>
XML
printf '<!ENTITY ext SYSTEM "file:///etc/passwd">\n' > ext.dtd
cat > dtd.xml <<XML
<?xml version="1.0"?>
<!DOCTYPE testsuite SYSTEM "file://$T/ext.dtd">
<testsuite name="x"><testcase name="c" classname="k"><system-out>out</system-out></testcase></testsuite>
XML
cat > dtd-use.xml <<XML
<?xml version="1.0"?>
<!DOCTYPE testsuite SYSTEM "file://$T/ext.dtd">
<testsuite name="x"><testcase name="c"><system-out>&ext;</system-out></testcase></testsuite>
XML
# One byte past the cap (64 MiB): refused, not parsed.
python3 -c '
import sys
with open("big.xml", "w") as f:
    f.write("<testsuite>")
    f.write(" " * (64 * 1024 * 1024 - len("<testsuite></testsuite>") + 1))
    f.write("</testsuite>")
'
cat > xxe.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 2}],
 "tests": [
  {"name": "/junit/xxe", "executor": "junitxml", "command": ["true"], "report": "$T/xxe.xml"},
  {"name": "/junit/pe", "executor": "junitxml", "command": ["true"], "report": "$T/pe.xml"},
  {"name": "/junit/dtd", "executor": "junitxml", "command": ["true"], "report": "$T/dtd.xml"},
  {"name": "/junit/dtd-use", "executor": "junitxml", "command": ["true"],
   "report": "$T/dtd-use.xml"},
  {"name": "/junit/big", "executor": "junitxml", "command": ["true"], "report": "$T/big.xml"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"},
                 {"plugin": "junit", "path": "junit.xml"}]}
JSON
run_timed xxe xxe.json
echo "external entities and the big report: ${ms} ms, peak RSS ${rss} kB"
python3 - <<'PY' || fail "external entities are not handled"
import json
rows = [json.loads(l) for l in open("out-xxe/results.jsonl")]
def own(test):
    return [r for r in rows if r["test"] == test and not r["subtest"]][-1]
def subs(test):
    return {r["subtest"]: r for r in rows if r["test"] == test and r["subtest"]}
for t in ("/junit/xxe", "/junit/pe"):
    r = own(t)
    assert (r["status"], r["error_type"]) == ("error", "junit-report"), r
    assert "declares entities" in r["note"], r["note"]
    assert not subs(t), subs(t)
# An external DTD is not loaded: the report reads as if it had none.
assert own("/junit/dtd")["status"] == "pass", own("/junit/dtd")
assert list(subs("/junit/dtd")) == ["k.c"], subs("/junit/dtd")
# Its entity is then unknown: a reference to nothing, not the file.
assert own("/junit/dtd-use")["status"] == "pass", own("/junit/dtd-use")
assert not subs("/junit/dtd-use")["c"].get("stdout"), subs("/junit/dtd-use")
r = own("/junit/big")
assert (r["status"], r["error_type"]) == ("error", "junit-report"), r
assert r["note"] == "the JUnit report %s/big.xml is longer than 64 MiB: not read" % __import__("os").getcwd(), r["note"]
print("\n".join(own(t)["note"] for t in ("/junit/xxe", "/junit/pe", "/junit/big")))
PY
! grep -rqs "root:x:0:" out-xxe || fail "the content of /etc/passwd reached the results"
pass "external entities are never loaded; a report past 64 MiB is refused"

# 20,000 test points and testcases named alike.
python3 - <<'PY'
with open("same.xml", "w") as f:
    f.write("<testsuite name='s'>")
    f.write("<testcase name='same'/>" * 20000)
    f.write("</testsuite>")
PY
cat > same.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 2}],
 "tests": [
  {"name": "/tap/same", "executor": "tap",
   "command": ["sh", "-c", "seq 20000 | sed 's/.*/ok & - same/'; echo 1..20000"]},
  {"name": "/junit/same", "executor": "junitxml", "command": ["true"],
   "report": "$T/same.xml"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
JSON
run_timed same same.json
echo "20,000 alike twice: ${ms} ms, peak RSS ${rss} kB"
[ "$ms" -lt "$max_ms" ] || fail "20,000 points named alike took ${ms} ms (more than $max_ms ms)"
python3 - <<'PY' || fail "the subresults named alike are wrong"
import json
rows = [json.loads(l) for l in open("out-same/results.jsonl")]
for t in ("/tap/same", "/junit/same"):
    names = [r["subtest"] for r in rows if r["test"] == t and r["subtest"]]
    assert len(names) == 20000, (t, len(names))
    assert len(set(names)) == 20000, (t, len(set(names)))
    assert names[0] == "same" and names[1] == "same (2)" and names[-1] == "same (20000)", names[-3:]
    own = [r for r in rows if r["test"] == t and not r["subtest"]][-1]
    assert own["status"] == "pass", own
print("20,000 unique names in each")
PY
pass "20,000 TAP points and testcases named alike: unique names within $max_ms ms"

# A stream of millions of points would cost every report its memory: past
# 100,000 an attempt's points are counted in its own result, not kept.
cat > flood.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 1}],
 "tests": [{"name": "/tap/flood", "executor": "tap",
            "command": ["sh", "-c", "echo 1..150001; seq 150000 | sed 's/.*/ok & - same/'; echo 'not ok 150001 - late'"]}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}, {"plugin": "junit", "path": "junit.xml"}]}
JSON
run_timed flood flood.json || true
echo "150,001 points: ${ms} ms, peak RSS ${rss} kB"
flood_kb=307200
[ -z "${ATX_SANITIZE:-}" ] || flood_kb=2097152  # ASan's shadow and quarantine
[ "$rss" -lt "$flood_kb" ] || fail "150,001 points took ${rss} kB"
python3 - <<'PY' || fail "the flood's results are wrong"
import json
rows = [json.loads(l) for l in open("out-flood/results.jsonl")]
subs = [r for r in rows if r["subtest"]]
own = [r for r in rows if not r["subtest"]][-1]
assert len(subs) == 100000, len(subs)
assert own["status"] == "fail", own
assert "1 of 150001 test points failed" in own["note"] and "not kept" in own["note"], own["note"]
print(own["note"])
PY
pass "150,001 points: 100,000 kept, all counted"

# A report of nothing but nodes, within the size cap: libxml2's tree would
# be 30 times its text; past 1,000,000 nodes it is refused.
python3 -c "open('nodes.xml', 'w').write('<testsuite>' + '<a/>' * (15 << 20) + '</testsuite>')"
cat > nodes.json <<JSON
{"provisioners": [{"plugin": "local", "slots": 1}],
 "tests": [{"name": "/nodes", "executor": "junitxml", "command": ["true"], "report": "$T/nodes.xml"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
JSON
run_timed nodes nodes.json
echo "15 M nodes: ${ms} ms, peak RSS ${rss} kB"
[ "$rss" -lt "$flood_kb" ] || fail "a report of 15 M nodes took ${rss} kB"
grep -q "more than 1000000 elements" out-nodes/results.jsonl || fail "not refused: $(cat out-nodes/results.jsonl)"
rm -f nodes.xml
pass "a report of 15 M nodes is refused within $flood_kb kB"
