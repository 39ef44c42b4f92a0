# The front door: --help and -h on every command and subcommand (usage on
# stdout, exit 0), atx help CMD, suggestions for misspelt commands and
# options (exit 2); atx run's default reports (junit.xml, results.jsonl,
# report.html, drawn by headless Chromium), --html, --ctrf and --report.
. "$ATX_SRC/tests/lib.sh"

help_ok() {  # help_ok ARGS...: usage on stdout, exit 0
  local rc=0
  "$ATX" "$@" > "$T/help.out" 2> "$T/help.err" || rc=$?
  [ "$rc" = 0 ] || fail "atx $*: exit $rc: $(cat "$T/help.err")"
  head -n 1 "$T/help.out" | grep -q '^usage: ' || fail "atx $*: no usage on stdout: $(head -c 200 "$T/help.out")"
  [ ! -s "$T/help.err" ] || fail "atx $*: wrote to stderr: $(cat "$T/help.err")"
}
for cmd in run list report plugins bud runnable-run runnable-run-recipe capabilities; do
  help_ok "$cmd" --help
  help_ok "$cmd" -h
  help_ok help "$cmd"
done
for sub in register status add-test-run daemon; do
  help_ok bud "$sub" --help
  help_ok bud "$sub" -h
done
help_ok --help
help_ok help
grep -q "^  --timeout DURATION" <("$ATX" run --help) || fail "atx run --help lists no --timeout"
grep -q "^example:" <("$ATX" list --help) || fail "atx list --help has no example"
pass "--help, -h and atx help on every command and subcommand: usage on stdout, exit 0"

suggest() {  # suggest WANT ARGS...: exit 2 and a line naming WANT
  local want=$1 rc=0
  shift
  "$ATX" "$@" > "$T/s.out" 2>&1 || rc=$?
  expect_eq "atx $*: exit" "$rc" 2
  grep -qF -- "did you mean $want?" "$T/s.out" || fail "atx $*: no suggestion of $want: $(cat "$T/s.out")"
}
suggest "--timeout" run --timout 5s
suggest "--jobs" run --jbos 2
suggest "--format" list --fromat json
suggest "'run'" rnu
suggest "'list'" lsit
suggest "'report'" help reprot
rc=0; "$ATX" run --frobnicate > "$T/s.out" 2>&1 || rc=$?
expect_eq "an option nothing is near: exit" "$rc" 2
! grep -q "did you mean" "$T/s.out" || fail "a suggestion for nothing: $(cat "$T/s.out")"
pass "misspelt commands and options: exit 2 with what was meant"

# ---- reports ----
rc=0
(cd "$T" && "$ATX" run "$ATX_SRC/examples/tests" -o "$T/out") > "$T/run.out" 2>&1 || rc=$?
cat "$T/run.out"
expect_eq "atx run examples/tests: exit (one example fails on purpose)" "$rc" 1
for f in junit.xml results.jsonl report.html; do
  [ -s "$T/out/$f" ] || fail "no $f by default"
  grep -qF "atx: report $T/out/$f" "$T/run.out" || fail "the summary does not name $f"
done
xmllint --noout "$T/out/junit.xml"
command -v chromium >/dev/null || fail "chromium is needed"
timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" \
  --no-first-run --disable-dev-shm-usage --screenshot="$T/shot.png" --window-size=1200,1600 \
  "file://$T/out/report.html" > /dev/null 2> "$T/chrome.err" || { cat "$T/chrome.err"; fail "chromium"; }
png=$(stat -c %s "$T/shot.png")
[ "$png" -gt 10240 ] || fail "the screenshot is $png bytes"
pass "default reports: junit.xml, results.jsonl and report.html (screenshot of $png bytes)"

rc=0
(cd "$T" && "$ATX" run "$ATX_SRC/examples/tests" -o "$T/out2" --html page.html --ctrf ctrf.json \
   --report "junit:path=nightly.xml,suite=nightly" --report jsonl:path=all.jsonl) > "$T/run2.out" 2>&1 || rc=$?
expect_eq "with --html, --ctrf and --report: exit" "$rc" 1
[ -s "$T/page.html" ] && [ -s "$T/ctrf.json" ] && [ -s "$T/nightly.xml" ] && [ -s "$T/all.jsonl" ] ||
  fail "a report is missing: $(ls "$T")"
grep -q 'name="nightly"' "$T/nightly.xml" || fail "--report's suite=nightly did not reach the report"
python3 -c "import json; d = json.load(open('$T/ctrf.json')); assert d['results']['summary']['tests'] == 6, d['results']['summary']"
for f in "$T/page.html" "$T/ctrf.json" "$T/nightly.xml" "$T/all.jsonl" "$T/out2/junit.xml"; do
  grep -qF "atx: report $f" "$T/run2.out" || fail "the summary does not name $f: $(cat "$T/run2.out")"
done
rc=0; "$ATX" run "$ATX_SRC/examples/tests" -o "$T/out3" -q --report "junit:nokey" > "$T/s.out" 2>&1 || rc=$?
expect_eq "--report with a bad pair: exit" "$rc" 2
grep -q "is not KEY=VALUE" "$T/s.out" || fail "$(cat "$T/s.out")"
# atx report rebuilds any of them from the journal.
rc=0; "$ATX" report "$T/out" --html "$T/again.html" -q > "$T/rep.out" 2>&1 || rc=$?
[ -s "$T/again.html" ] || fail "atx report --html wrote nothing: $(cat "$T/rep.out")"
pass "--html, --ctrf, --report PLUGIN:KEY=VALUE,... (and atx report --html) write what they name"

# Colour: none when piped, --color=always forces it, a bad value is refused.
"$ATX" run "$ATX_SRC/examples/tests" -o "$T/c1" > "$T/c1.out" 2>/dev/null || true
! grep -q "$(printf '\033')" "$T/c1.out" || fail "colour when piped"
"$ATX" run "$ATX_SRC/examples/tests" -o "$T/c2" --color=always > "$T/c2.out" 2>/dev/null || true
grep -q "$(printf '\033')\[32mPASS" "$T/c2.out" || fail "no colour with --color=always: $(cat -v "$T/c2.out")"
rc=0; "$ATX" run "$ATX_SRC/examples/tests" --color=sometimes > "$T/s.out" 2>&1 || rc=$?
expect_eq "--color=sometimes: exit" "$rc" 2
pass "colour: none when piped, with --color=always"
