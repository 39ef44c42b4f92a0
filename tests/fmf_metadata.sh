# tmt's test metadata end to end: duration arithmetic (the timeouts atx
# applies), a malformed node among good ones (warned of once with its file
# and line, run as one error result while the others pass), and a tree that
# does not parse (still refused with one line).
. "$ATX_SRC/tests/lib.sh"

# ---- durations: each form, and the timeout a run applies ----
mkdir -p "$T/dur/.fmf"
echo 1 > "$T/dur/.fmf/version"
cat > "$T/dur/main.fmf" <<'EOF'
test: "true"
/default: {}
/seconds:
    duration: 90
/hours:
    duration: 1h
/days:
    duration: 2d
/product:
    duration: 1m*2.5
/sum:
    duration: 5m 5m
/plus:
    duration: 5m +5m
/glued:
    duration: 1h30m
/factor:
    duration: "*2"
/merged:
    duration: 5m
    duration+: 5m
/adjusted:
    duration: 5m
    adjust:
        when: arch == aarch64
        duration+: "*2"
EOF
durations() {
    python3 -c 'import json, sys
print(" ".join("%s=%g" % (t["name"], t["duration"]) for t in json.load(sys.stdin)))'
}
got=$("$ATX" list --format json "$T/dur" | durations)
expect_eq "durations" "$got" "/adjusted=300 /days=172800 /default=300 /factor=600 /glued=5400 /hours=3600 /merged=600 /plus=600 /product=150 /seconds=90 /sum=600"
got=$("$ATX" list --format json -c arch=aarch64 "$T/dur" | durations)
expect_eq "durations on aarch64" "$got" "/adjusted=600 /days=172800 /default=300 /factor=600 /glued=5400 /hours=3600 /merged=600 /plus=600 /product=150 /seconds=90 /sum=600"

# The timeout is the evaluated duration: 1s * 1.5, rounded up to 2 s.
mkdir -p "$T/slow/.fmf"
echo 1 > "$T/slow/.fmf/version"
printf 'test: exec sleep 60\nduration: 1s *1.5\n' > "$T/slow/main.fmf"
rc=0
"$ATX" run "$T/slow" -o "$T/slow-out" -q || rc=$?
expect_eq "exit code of a test past its duration" "$rc" 1
expect_eq "killed at its timeout (infra, as ATEX reports it)" "$(jsonl "$T/slow-out/results.jsonl" \
    '[(r["status"], r["error_type"], r["note"].startswith("timed out after 2.000s"), 1.9 < r["duration"] < 30) for r in rows]')" \
    "[('infra', 'timeout', True, True)]"

# ---- one malformed node among good ones ----
mkdir -p "$T/tree/.fmf" "$T/tree/tests/good" "$T/tree/tests/list" "$T/tree/tests/dict" \
    "$T/tree/tests/slow" "$T/tree/tests/branch/one" "$T/tree/tests/branch/two"
echo 1 > "$T/tree/.fmf/version"
printf 'test: "true"\n' > "$T/tree/tests/good/main.fmf"
printf 'summary: a list\ntest:\n  - not\n  - a string\n' > "$T/tree/tests/list/main.fmf"
printf 'test: {a: 1}\n' > "$T/tree/tests/dict/main.fmf"
printf 'test: "true"\nduration: 5m -5m\n' > "$T/tree/tests/slow/main.fmf"
# A key that does not merge: both tests below share the branch's error.
printf 'tag: [a]\ntag+: oops\ntest: "true"\n' > "$T/tree/tests/branch/main.fmf"
printf 'summary: one\n' > "$T/tree/tests/branch/one/main.fmf"
printf 'summary: two\n' > "$T/tree/tests/branch/two/main.fmf"

rc=0
"$ATX" list "$T/tree" >"$T/list" 2>"$T/e" || rc=$?
expect_eq "atx list exit code" "$rc" 0
cat "$T/e"
expect_eq "one warning per bad node" "$(wc -l < "$T/e")" 4
grep -q "^atx: warning: fmf: $T/tree/tests/list/main.fmf:2: /tests/list: 'test' must be a string$" \
    "$T/e" || fail "no warning naming tests/list/main.fmf:2"
grep -q "tests/dict/main.fmf:1: /tests/dict: 'test' must be a string" "$T/e" \
    || fail "no warning naming tests/dict/main.fmf:1"
grep -q "tests/slow/main.fmf:2: /tests/slow: invalid duration '5m -5m'" "$T/e" \
    || fail "no warning naming tests/slow/main.fmf:2"
grep -q "tests/branch/main.fmf:2: /tests/branch: cannot merge key 'tag+'" "$T/e" \
    || fail "no warning naming tests/branch/main.fmf:2"
expect_eq "every test listed" "$(tr '\n' ' ' < "$T/list")" \
    "/tests/branch/one /tests/branch/two /tests/dict /tests/good /tests/list /tests/slow "

rc=0
"$ATX" run "$T/tree" -o "$T/out" -q --reruns 2 2>"$T/e" || rc=$?
expect_eq "atx run exit code (errors)" "$rc" 1
expect_eq "results: one each, the good one passed, no reruns" \
    "$(jsonl "$T/out/results.jsonl" 'sorted((r["test"], r["status"], r["attempt"]) for r in rows)')" \
    "[('/tests/branch/one', 'error', 1), ('/tests/branch/two', 'error', 1), ('/tests/dict', 'error', 1), ('/tests/good', 'pass', 1), ('/tests/list', 'error', 1), ('/tests/slow', 'error', 1)]"
expect_eq "the note names the file and line" \
    "$(jsonl "$T/out/results.jsonl" '[r["note"] for r in rows if r["test"] == "/tests/list"][0]')" \
    "$T/tree/tests/list/main.fmf:2: /tests/list: 'test' must be a string"
expect_eq "its error type" \
    "$(jsonl "$T/out/results.jsonl" '[r["error_type"] for r in rows if r["test"] == "/tests/list"][0]')" \
    "metadata"
expect_eq "the shared error names the branch" \
    "$(jsonl "$T/out/results.jsonl" '[r["note"].split(": ")[0] for r in rows if r["test"].startswith("/tests/branch/")]')" \
    "['$T/tree/tests/branch/main.fmf:2', '$T/tree/tests/branch/main.fmf:2']"
grep -q "tests/list/main.fmf:2" "$T/out/junit.xml" || fail "the junit report does not name the problem"

# ---- a tree that does not parse is still refused whole ----
printf 'test: [unclosed\n' > "$T/tree/tests/good/main.fmf"
rc=0
"$ATX" list "$T/tree" >/dev/null 2>"$T/e" || rc=$?
expect_eq "exit code for malformed YAML" "$rc" 2
expect_eq "one line" "$(wc -l < "$T/e")" 1
grep -q "tests/good/main.fmf:2:" "$T/e" || { cat "$T/e"; fail "file and line not named"; }
