# Hostile tests on a local slot, one case per way a test attacks what atx
# writes: secrets (hidden from its environment, masked wherever its data is
# written), terminal escapes, names that would share a folder, durations and
# times past any clock.
. "$ATX_SRC/tests/lib.sh"

# ---- secrets ----
tok="tok-$RANDOM$RANDOM-bud" pw="pw-$RANDOM$RANDOM-login" rtok="rt-$RANDOM$RANDOM"
key="key-$RANDOM$RANDOM" mine="mine-$RANDOM$RANDOM" flag="flag-$RANDOM$RANDOM"
export BUD_TOKEN=$tok BUD_PASSWORD=$pw BUD_RUNNER_TOKEN=$rtok RUNNER_API_KEY=$key MY_SECRET=$mine
# A test that reads them where they are not hidden (a file it can reach).
printf '%s %s %s %s %s %s\n' "$tok" "$pw" "$rtok" "$key" "$mine" "$flag" > "$T/vault"
mktest env.sh 'env; echo "token=$BUD_TOKEN password=$BUD_PASSWORD mine=$MY_SECRET"
case "$(env)" in *tok-*|*pw-*|*rt-*|*key-*|*mine-*) echo "a secret reached me"; exit 1;; esac'
mktest leak.sh "v=\$(cat '$T/vault'); echo \"out: \$v\"; echo \"err: \$v\" >&2
printf '<testsuite><testcase name=\"c %s\"><failure message=\"%s\">%s</failure></testcase></testsuite>' \"\$v\" \"\$v\" \"\$v\" > report.xml"
mktest tap.sh "v=\$(cat '$T/vault'); echo 1..2; echo \"ok 1 - named \$v\"; echo \"Bail out! \$v\""
python3 - "$T" <<'PY' > "$T/secrets.json"
import json, sys
t = sys.argv[1]
print(json.dumps({
  "provisioners": [{"plugin": "local", "slots": 2}],
  "policy": {"mask_env": ["MY_SECRET"]},
  "tests": [{"name": "/env", "command": [t + "/tests/env.sh"]},
            {"name": "/leak", "executor": "junitxml", "command": [t + "/tests/leak.sh"],
             "cwd": t, "report": "report.xml"},
            {"name": "/tap", "executor": "tap", "command": [t + "/tests/tap.sh"]}],
  "aggregators": [{"plugin": "jsonl", "path": "results.jsonl", "output": True},
                  {"plugin": "junit", "path": "junit.xml"},
                  {"plugin": "html", "path": "report.html"}]}))
PY
printf '%s\n' "$flag" > "$T/flag-file"
rc=0
# The flag goes in as --password (an abbreviation is ambiguous beside
# --password-file: refused).
if "$ATX" run --plan "$T/secrets.json" -o "$T/out-abbrev" --pass="$flag" > "$T/abbrev.out" 2>&1; then
  fail "an abbreviated --password was taken"
fi
! grep -qF -- "$flag" "$T/abbrev.out" || fail "the refusal shows the password: $(cat "$T/abbrev.out")"
"$ATX" run --plan "$T/secrets.json" -o "$T/out-secrets" -v --password="$flag" > "$T/secrets.out" 2>&1 || rc=$?
# A password file: its first line, at most 1024 bytes; others reading it is
# said.
head -c 2000 /dev/zero | tr '\0' x > "$T/long-pw"
if "$ATX" run --plan "$T/secrets.json" -o "$T/out-long" --password-file "$T/long-pw" > "$T/long.out" 2>&1; then
  fail "a 2000-byte password line was taken"
fi
grep -q "longer than 1024 bytes" "$T/long.out" || fail "no clear line: $(cat "$T/long.out")"
expect_eq "secrets: exit code (leak and tap fail)" "$rc" 1
for s in "$tok" "$pw" "$rtok" "$key" "$mine" "$flag"; do
  ! grep -rqF -- "$s" "$T/out-secrets" || fail "secret $s in $(grep -rlF -- "$s" "$T/out-secrets")"
  ! grep -qF -- "$s" "$T/secrets.out" || fail "secret $s on the terminal"
done
python3 - "$T/out-secrets/results.jsonl" <<'PY' || fail "secrets: the results are not as expected"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
own = {r["test"]: r for r in rows if not r.get("subtest")}
assert own["/env"]["status"] == "pass", own["/env"]
assert "[MASKED]" in own["/leak"]["stdout"] and "[MASKED]" in own["/leak"]["stderr"], own["/leak"]
subs = [r["subtest"] for r in rows if r.get("subtest")]
assert any("[MASKED]" in s for s in subs), subs
assert "[MASKED]" in own["/tap"]["note"], own["/tap"]
PY
grep -q "MASKED" "$T/secrets.out" || fail "nothing masked on the terminal"
argv=$(sqlite3 "$T/out-secrets/journal.db" "select value from meta where key='argv'" 2>/dev/null || true)
echo "journal's command line: $argv"
case "$argv" in *--pass*) fail "the journal keeps a password option: $argv";; esac
pass "secrets: hidden from tests, masked in results, reports, journal and terminal"

# ---- terminal escapes ----
mktest esc.sh 'printf "1..1\nnot ok 1 - \033]0;title\007\033[2J sub\n# \033[31mred\n"; exit 1'
python3 - "$T" <<'PY' > "$T/esc.json"
import json, sys
t = sys.argv[1]
print(json.dumps({
  "provisioners": [{"plugin": "local", "slots": 1}],
  "tests": [{"name": "/esc\u001b[31m\u001b]0;x\u0007name", "executor": "tap",
             "command": [t + "/tests/esc.sh"]},
            {"name": "/note", "command": ["sh", "-c", "exit 3"], "timeout": "5s"}],
  "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}))
PY
rc=0
"$ATX" run --plan "$T/esc.json" -o "$T/out-esc" -v > "$T/esc.out" 2>&1 || rc=$?
expect_eq "escapes: exit code" "$rc" 1
! grep -q "$(printf '\033')" "$T/esc.out" || fail "a raw ESC reached the terminal: $(cat -v "$T/esc.out")"
! grep -q "$(printf '\007')" "$T/esc.out" || fail "a raw BEL reached the terminal"
grep -qF '^[[31m' "$T/esc.out" || fail "the escape is not shown: $(cat -v "$T/esc.out")"
"$ATX" list "$T/tests" > "$T/list.out" 2>&1 || true
pass "escapes: shown as ^[, never sent"

# ---- names that map to one folder ----
python3 - "$T" <<'PY' > "$T/names.json"
import json, sys
names = ["/a_b", "/a\\b", "/c/./d", "/c/d", "/x\u0001", "/x\u0002", "/x_", "/p%5Cq", "/p\\q"]
tests = [{"name": n, "executor": "junitxml", "cwd": sys.argv[1],
          "command": ["sh", "-c", "printf '<testsuite><testcase name=\"%s\"/></testsuite>' \"$1\" > r%s.xml" % ("%s", i), "sh", "t%d" % i],
          "report": "r%d.xml" % i} for i, n in enumerate(names)]
print(json.dumps({"provisioners": [{"plugin": "local", "slots": 1}], "tests": tests,
                  "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}))
PY
rc=0
"$ATX" run --plan "$T/names.json" -o "$T/out-names" -q > "$T/names.out" 2>&1 || rc=$?
cat "$T/names.out"
expect_eq "names: exit code" "$rc" 0
python3 - "$T/out-names" <<'PY' || fail "names: folders are shared"
import json, os, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(out + "/results.jsonl") if not json.loads(l).get("subtest")]
assert len(rows) == 9, len(rows)
folders = {}
for r in rows:
    (f,) = r["files"]
    folders.setdefault(os.path.dirname(f), []).append(r["test"])
    body = open(os.path.join(out, f)).read()
    i = [json.loads(l) for l in open(out + "/../names.json")] if False else None
assert len(folders) == 9, folders
print(sorted(folders))
PY
pass "names: nine names, nine folders"

# ---- durations and times past any clock ----
mktest big.sh "printf '<testsuite time=\"1e400\"><testcase name=\"nan\" time=\"nan\"/><testcase name=\"huge\" time=\"1e400\"/><testcase name=\"neg\" time=\"-5\"/></testsuite>' > big.xml"
cat > "$T/big.json" <<EOF2
{"provisioners": [{"plugin": "local", "slots": 1, "ready_timeout": 1e300}],
 "policy": {"timeout": "106751d", "deadline": 1e300, "kill_grace": "106751d 23h",
            "reruns": 2147483647, "liveness_timeout": 1e19},
 "tests": [{"name": "/big", "executor": "junitxml", "command": ["$T/tests/big.sh"], "cwd": "$T",
            "report": "big.xml", "timeout": 9.3e18}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}, {"plugin": "junit", "path": "junit.xml"}]}
EOF2
rc=0
"$ATX" run --plan "$T/big.json" -o "$T/out-big" -q > "$T/big.out" 2>&1 || rc=$?
cat "$T/big.out"
expect_eq "times: exit code" "$rc" 0
python3 - "$T/out-big/results.jsonl" <<'PY' || fail "times: the results are not as expected"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    assert 0 <= r["duration"] < 1e10, r
print(len(rows), "results, durations", sorted(r["duration"] for r in rows))
PY
xmllint --noout "$T/out-big/junit.xml"
pass "times: NaN, 1e400 and 106751d saturate or are refused, nothing overflows"

# A retry count past any sense is refused with one line, not shifted into
# undefined behaviour.
cat > "$T/retries.json" <<EOF2
{"tests": [{"name": "/a", "command": ["true"]}],
 "aggregators": [{"plugin": "bud", "max_retries": 99999999999, "backend": "http://127.0.0.1:9"}]}
EOF2
rc=0
HOME="$T/home" "$ATX" run --plan "$T/retries.json" -o "$T/out-retries" -q > "$T/retries.out" 2>&1 || rc=$?
expect_eq "a huge retry count: exit code" "$rc" 2
grep -q "max_retries 0 to 1000" "$T/retries.out" || fail "no clear line: $(cat "$T/retries.out")"

# fmf: a test that moves its limit past any clock, both ways, and one that
# moves it back into the past (a timeout, at once).
tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 30s
/far:
    test: |
        for i in 1 2 3; do echo 'duration +106751d' >&$ATEX_TEST_CONTROL; done
        echo 'duration 106751d' >&$ATEX_TEST_CONTROL
        echo 'duration +106751d' >&$ATEX_TEST_CONTROL
        true
/past:
    test: |
        for i in 1 2 3; do echo 'duration -106751d' >&$ATEX_TEST_CONTROL; done
        sleep 20
FMF
rc=0
start=$(date +%s)
"$ATX" run "$tree" -o "$T/out-fmf" -q > "$T/fmf.out" 2>&1 || rc=$?
cat "$T/fmf.out"
expect_eq "fmf durations: exit code (/past times out)" "$rc" 1
[ $(( $(date +%s) - start )) -lt 15 ] || fail "a limit in the past did not end its test"
python3 - "$T/out-fmf/results.jsonl" <<'PY' || fail "fmf durations: the results are not as expected"
import json, sys
own = {r["test"]: r for r in map(json.loads, open(sys.argv[1])) if not r.get("subtest")}
assert own["/far"]["status"] == "pass", own["/far"]
assert (own["/past"]["status"], own["/past"]["error_type"]) == ("infra", "timeout"), own["/past"]
PY
pass "fmf durations: +106751d four times passes, -106751d times out at once"

# Output kept on disk, capped as the plan's executors section says.
cat > "$tree/main.fmf" <<'FMF'
/loud:
    test: seq 1 200000
FMF
cat > "$T/loud.json" <<EOF2
{"executors": [{"plugin": "fmf", "output_head": 1000, "output_tail": 1000}],
 "tests": [{"executor": "fmf", "tree": "$tree"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF2
rc=0
"$ATX" run --plan "$T/loud.json" -o "$T/out-loud" -q > "$T/loud.out" 2>&1 || rc=$?
cat "$T/loud.out"
expect_eq "output caps from the plan: exit code" "$rc" 0
kept="$T/out-loud/tests/loud/attempt-1/files/output.txt"
size=$(stat -c %s "$kept")
[ "$size" -lt 2100 ] || fail "output.txt keeps $size bytes, not 1000 + 1000 and a marker"
head -c 8 "$kept" | grep -q '^1$' || fail "the head is not kept"
tail -n 1 "$kept" | grep -qx 200000 || fail "the tail is not kept"
grep -q 'bytes omitted' "$kept" || fail "no omission marker"
pass "output caps from the plan: $size bytes kept of $(seq 1 200000 | wc -c)"
