# The JUnit report against JUNIT.md: tests whose output holds ANSI escapes,
# control bytes, invalid UTF-8, "]]>" and 50 MB of text, plus pass, fail,
# error, timeout, skip, flaky and always-failing tests. The report must pass
# our strict schema (tests/junit.xsd), read back with junitparser with the
# right counts, stay valid UTF-8 without forbidden characters, and stay far
# below 30 MB. A second run checks the report's output budget.
. "$ATX_SRC/tests/lib.sh"

XSD="$ATX_SRC/tests/junit.xsd"
PY=/usr/bin/python3
command -v xmllint >/dev/null || fail "xmllint (libxml2-utils) is needed"
$PY -c 'import junitparser' || fail "python3-junitparser is needed"

# Odd output is written once by bash (whose printf knows \x) and cat by tests.
mkdir -p "$T/data" "$T/marks"
printf '\033[1;31mRED-START\033[0m \033]0;window-title\007osc-gone\n' > "$T/data/ansi"
printf 'nul<\000>bel<\007>vt<\013>del<\177>c1<\302\233>tab<\t>cr<\r>end\n' > "$T/data/control"
printf 'ok-\303\251 bad<\377> trunc<\342\202> overlong<\300\257> surrogate<\355\240\200> end\n' \
    > "$T/data/utf8"
printf 'cdata<]]>> amp<&> quote<"> lt<<>\n' > "$T/data/cdata"

mktest pass 'echo passing-out; echo passing-err >&2'
mktest fail 'echo failing-out attempt=$ATX_TEST_ATTEMPT; exit 1'
mktest ansi "cat '$T/data/ansi'"
mktest control "cat '$T/data/control'"
mktest utf8 "cat '$T/data/utf8'"
mktest cdata "cat '$T/data/cdata'"
mktest big "echo BIG-HEAD-MARKER; head -c 52428800 /dev/zero | tr '\\0' x; echo; echo BIG-TAIL-MARKER"
# Fails on its first attempt, passes on the second: the marker file lives
# outside the test's own folder, which is its working directory.
mktest flaky "if [ -e '$T/marks/flaky' ]; then echo second-attempt attempt=\$ATX_TEST_ATTEMPT; exit 0; fi
: > '$T/marks/flaky'; echo first-attempt attempt=\$ATX_TEST_ATTEMPT; exit 1"
# Both map to classname /dir_with_dots and name case: the pair must be made unique.
mktest dir.with.dots/case 'exit 0'
mktest dir_with_dots/case 'exit 0'

cat > "$T/plan.json" <<'EOF'
{"tests": [
  {"name": "/skip", "command": ["sh", "-c", "echo skip-reason; exit 77"], "skip_exit_code": 77},
  {"name": "/noexec", "command": ["/nonexistent/atx-no-such-command"], "reruns": 0},
  {"name": "/hang", "command": ["sh", "-c", "exec tail -f /dev/null"], "timeout": "1s",
   "reruns": 0}
]}
EOF

rc=0
"$ATX" run "$T/tests" --plan "$T/plan.json" -o "$T/res" -j 2 --reruns 1 --timeout 60s -q \
    > "$T/atx.out" 2>&1 || rc=$?
cat "$T/atx.out"
expect_eq "atx exit code" "$rc" 1
J="$T/res/junit.xml"
[ -s "$J" ] || fail "no $J"

# The schema itself, then the report against it.
xmllint --noout "$XSD" || fail "junit.xsd is not well-formed"
xmllint --noout --schema "$XSD" "$J" || fail "junit.xml does not match junit.xsd"
pass "junit.xml matches junit.xsd"

# The schema must reject what the profile forbids (else it checks nothing).
reject() {
    sed "$2" "$J" > "$T/mutant.xml"
    cmp -s "$J" "$T/mutant.xml" && fail "schema check '$1': the mutation changed nothing"
    if xmllint --noout --schema "$XSD" "$T/mutant.xml" 2>/dev/null; then
        fail "junit.xsd accepts $1"
    fi
    pass "junit.xsd rejects $1"
}
reject "a time without three decimals" '0,/ time="\([0-9]*\)\.[0-9]*"/s// time="\1.5"/'
reject "a package attribute" 's/<testsuite name=/<testsuite package="p" name=/'
reject "a skipped count on the root" 's/<testsuites name=/<testsuites skipped="0" name=/'
reject "a timestamp with a zone" 's/timestamp="\([0-9T:-]*\)"/timestamp="\1Z"/'
reject "a dot in a classname" '0,/classname="\/"/s//classname="a.b"/'
reject "a duplicate classname/name pair" 's/name="case (2)"/name="case"/'
reject "two results in a testcase" 's#<skipped message="\([^"]*\)"/>#<skipped message="\1"/><failure message="m" type="t"/>#'
reject "output before the result" 's#<skipped message="\([^"]*\)"/>#<system-out/>&#'
reject "a flakyFailure without a type" 's#<flakyFailure message="\([^"]*\)" type="[^"]*"#<flakyFailure message="\1"#'
reject "a multi-line message" '0,/<failure message="/s//&line\&#10;/'
reject "properties after a testcase" 's#</testsuite>#<properties/></testsuite>#'

# Bytes: valid UTF-8, no character XML 1.0 forbids, not even as a reference;
# "]]>" only escaped; far below 30 MB.
$PY - "$J" <<'EOF' || fail "raw junit.xml checks"
import re, sys
raw = open(sys.argv[1], "rb").read()
text = raw.decode("utf-8")          # raises on invalid UTF-8
assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), raw[:60]
bad = re.findall(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]", text)
assert not bad, "forbidden characters: %r" % sorted(set(bad))
for ref in re.findall(r"&#(x[0-9a-fA-F]+|[0-9]+);", text):
    cp = int(ref[1:], 16) if ref[0] == "x" else int(ref)
    assert cp in (9, 10, 13) or (0x20 <= cp < 0x7f) or cp >= 0xa0, "reference &#%s;" % ref
assert b"]]>" not in raw, "an unescaped ]]>"
assert b"]]&gt;" in raw, "the escaped ]]> is missing"
assert b"window-title" not in raw, "an OSC sequence survived"
assert len(raw) < 2 * 1024 * 1024, "junit.xml is %d bytes" % len(raw)
print("ok: raw junit.xml is clean UTF-8 of %d bytes" % len(raw))
EOF

# Read back with junitparser: counts, results, outputs.
$PY - "$J" <<'EOF' || fail "junitparser checks"
import re, sys
from junitparser import JUnitXml, Attr, Element, Error, Failure, Skipped

# Elements junitparser 2.8 has no class for.
class Node(Element):
    message = Attr()
    type = Attr()

    @property
    def text(self):
        return self._elem.text

class FlakyFailure(Node):
    _tag = "flakyFailure"

class RerunFailure(Node):
    _tag = "rerunFailure"

class StackTrace(Node):
    _tag = "stackTrace"

class SystemOut(Node):
    _tag = "system-out"

xml = JUnitXml.fromfile(sys.argv[1])
cases = {}
totals = dict(tests=0, failures=0, errors=0, skipped=0)
for suite in xml:
    n = dict(tests=0, failures=0, errors=0, skipped=0)
    for case in suite:
        key = (case.classname, case.name)
        assert key not in cases, "testcase %r twice" % (key,)
        assert "." not in case.classname, "a dot in classname %r" % case.classname
        cases[key] = case
        res = case.result
        assert len(res) <= 1, "%r has %d results" % (key, len(res))
        n["tests"] += 1
        for r in res:
            n[{Failure: "failures", Error: "errors", Skipped: "skipped"}[type(r)]] += 1
    for k, v in n.items():
        assert getattr(suite, k) == v, "suite %s=%s, children say %d" % (k, getattr(suite, k), v)
        totals[k] += v
for k in ("tests", "failures", "errors"):
    assert int(xml._elem.get(k)) == totals[k], "root %s=%s, want %d" % (k, xml._elem.get(k), totals[k])
want = dict(tests=13, failures=1, errors=2, skipped=1)
assert totals == want, "counts %r, want %r" % (totals, want)
print("ok: counts", totals)

def case(name, cls="/"):
    c = cases.get((cls, name))
    assert c is not None, "no testcase %s %s in %r" % (cls, name, sorted(cases))
    return c

c = case("pass")
assert c.is_passed and c.system_out == "passing-out\n" and c.system_err == "passing-err\n", \
    (c.result, c.system_out, c.system_err)

c = case("fail")
assert isinstance(c.result[0], Failure) and c.result[0].type and c.result[0].message
reruns = list(c.iterchildren(RerunFailure))
assert len(reruns) == 1, "fail: %d rerunFailure" % len(reruns)
assert "attempt=1" in reruns[0].child(SystemOut).text and "attempt=2" in c.system_out

c = case("skip")
assert c.is_skipped and "77" in c.result[0].message, c.result
c = case("noexec")
assert isinstance(c.result[0], Error) and c.result[0].type, c.result
c = case("hang")
assert isinstance(c.result[0], Error) and c.result[0].type == "timeout", c.result[0].type

c = case("flaky")
assert c.is_passed, c.result
flaky = list(c.iterchildren(FlakyFailure))
assert len(flaky) == 1, "flaky: %d flakyFailure" % len(flaky)
f = flaky[0]
assert f.type and f.message and f.child(StackTrace) is not None, (f.type, f.message)
assert f.child(SystemOut).text == "first-attempt attempt=1\n", f.child(SystemOut).text
assert c.system_out == "second-attempt attempt=2\n", c.system_out
print("ok: the flaky test appears once, with one flakyFailure")

assert case("ansi").system_out == "RED-START osc-gone\n", repr(case("ansi").system_out)
want = "nul<\ufffd>bel<\ufffd>vt<\ufffd>del<\ufffd>c1<\ufffd>tab<\t>cr<\r>end\n"
assert case("control").system_out == want, repr(case("control").system_out)
out = case("utf8").system_out
assert re.fullmatch("ok-\u00e9 bad<\ufffd+> trunc<\ufffd+> overlong<\ufffd+> "
                    "surrogate<\ufffd+> end\n", out), repr(out)
assert case("cdata").system_out == 'cdata<]]>> amp<&> quote<"> lt<<>\n', \
    repr(case("cdata").system_out)
print("ok: ANSI stripped, control bytes and invalid UTF-8 replaced, ]]> kept")

out = case("big").system_out
assert out.startswith("BIG-HEAD-MARKER\n"), repr(out[:40])
assert out.endswith("BIG-TAIL-MARKER\n"), repr(out[-40:])
m = re.search(r"\[\.\.\. ([0-9]+) bytes omitted", out)
assert m and int(m.group(1)) > 50000000, "omission marker: %r" % (m and m.group(0))
assert len(out) < 1024 * 1024, "big: %d characters kept" % len(out)
print("ok: 50 MB of output kept as head, marker and tail (%d characters)" % len(out))

names = sorted(n for (cl, n) in cases if cl == "/dir_with_dots")
assert names == ["case", "case (2)"], names
EOF

# Output budget: 150 always-failing tests with 200 kB on stdout and stderr
# and a rerun each. All attempts' output shares the report's ~20 MB.
$PY - "$T/budget.json" <<'EOF'
import json, sys
cmd = "head -c 200000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2; exit 1"
json.dump({"tests": [{"name": "/b%03d" % i, "command": ["sh", "-c", cmd], "reruns": 1}
                     for i in range(150)]}, open(sys.argv[1], "w"))
EOF
rc=0
"$ATX" run --plan "$T/budget.json" -o "$T/budget" -j 2 --timeout 60s -q > "$T/atx.out" 2>&1 ||
    rc=$?
cat "$T/atx.out"
expect_eq "atx exit code (budget run)" "$rc" 1
J="$T/budget/junit.xml"
xmllint --noout --schema "$XSD" "$J" || fail "the budget run's junit.xml does not match"
size=$(stat -c %s "$J")
[ "$size" -lt $((24 * 1024 * 1024)) ] || fail "junit.xml of the budget run is $size bytes"
pass "junit.xml of 150 tests x 2 attempts x 400 kB is $size bytes"
grep -q 'omitted in this report' "$J" || fail "no omission marker in the budget run"
expect_eq "rerunFailure elements" "$(grep -o '<rerunFailure ' "$J" | wc -l)" 150
