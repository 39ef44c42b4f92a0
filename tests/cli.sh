# The atx command: exit codes, one clear line per bad input, list output.
. "$ATX_SRC/tests/lib.sh"

mktest ok.sh "echo fine"
mktest sub/also-ok.sh "exit 0"
mkdir -p "$T/bad"; printf '#!/bin/sh\nexit 2\n' > "$T/bad/fails.sh"; chmod +x "$T/bad/fails.sh"

# usage errors: 2, with a line saying what is wrong
rc=0; "$ATX" 2>/dev/null || rc=$?; expect_eq "no command" "$rc" 2
rc=0; "$ATX" frobnicate 2>"$T/e" || rc=$?; expect_eq "unknown command" "$rc" 2
grep -q "unknown command 'frobnicate'" "$T/e" || fail "no message for an unknown command"
rc=0; "$ATX" run 2>"$T/e" || rc=$?; expect_eq "nothing to run" "$rc" 2
grep -q "nothing to run" "$T/e" || fail "no message for nothing to run"
rc=0; "$ATX" run -j 0 "$T/tests" 2>/dev/null || rc=$?; expect_eq "-j 0" "$rc" 2
rc=0; "$ATX" run --timeout soon "$T/tests" 2>"$T/e" || rc=$?; expect_eq "bad duration" "$rc" 2
grep -q "'soon' is not a duration" "$T/e" || fail "no message for a bad duration"

# all pass: 0, default results folder under ./atx-results
rc=0; "$ATX" run "$T/tests" -q || rc=$?; expect_eq "all pass" "$rc" 0
ls "$T"/atx-results/*/junit.xml >/dev/null || fail "no default results folder"
python3 - "$T"/atx-results/*/results.jsonl <<'PY'
import json, sys
names = sorted(json.loads(l)["test"] for l in open(sys.argv[1]))
assert names == ["/ok.sh", "/sub/also-ok.sh"], names
PY
# a failure: 1
rc=0; "$ATX" run "$T/bad" -o "$T/o2" -q || rc=$?; expect_eq "a failing test" "$rc" 1

# plans: malformed, unknown keys, bad values; each one line naming the place
printf '{"tests": [\n  {"name": "/x", "command": ["true"]},\n  oops\n]}\n' > "$T/broken.json"
rc=0; "$ATX" run --plan "$T/broken.json" -o "$T/o3" 2>"$T/e" || rc=$?
expect_eq "malformed plan" "$rc" 2
expect_eq "malformed plan: one line" "$(wc -l < "$T/e")" 1
grep -q "broken.json: line 3: not valid JSON" "$T/e" || { cat "$T/e"; fail "no line number"; }

echo '{"tests": [], "polcy": {}}' > "$T/typo.json"
rc=0; "$ATX" run --plan "$T/typo.json" -o "$T/o4" 2>"$T/e" || rc=$?
expect_eq "unknown plan key" "$rc" 2
grep -q "unknown key 'polcy'" "$T/e" || { cat "$T/e"; fail "unknown key not named"; }

echo '{"tests": [{"name": "/t", "command": ["true"], "timout": "5s"}]}' > "$T/typo2.json"
rc=0; "$ATX" run --plan "$T/typo2.json" -o "$T/o5" 2>"$T/e" || rc=$?
expect_eq "unknown test key" "$rc" 2
grep -q "unknown key 'timout'" "$T/e" || { cat "$T/e"; fail "unknown test key not named"; }

echo '{"tests": [{"name": "/t", "command": ["true"], "timeout": "5 parsecs"}]}' > "$T/bad-dur.json"
rc=0; "$ATX" run --plan "$T/bad-dur.json" -o "$T/o6" 2>"$T/e" || rc=$?
expect_eq "bad timeout" "$rc" 2
grep -q "test /t: 'timeout'" "$T/e" || { cat "$T/e"; fail "bad timeout not named"; }

echo '{"tests": [{"name": "/t", "command": ["true"]}], "provisioners": [{"plugin": "nope"}]}' > "$T/np.json"
rc=0; "$ATX" run --plan "$T/np.json" -o "$T/o7" 2>"$T/e" || rc=$?
expect_eq "missing plugin" "$rc" 2
grep -q "no provisioner plugin 'nope'" "$T/e" || { cat "$T/e"; fail "missing plugin not named"; }
# fmf selection options apply to a tree given as PATH, never silently to a plan
echo '{"tests": [{"name": "/t", "command": ["true"]}]}' > "$T/one.json"
rc=0; "$ATX" run --plan "$T/one.json" --test /t -o "$T/o8" 2>"$T/e" || rc=$?
expect_eq "--test with only a plan" "$rc" 2
grep -q "are for an fmf tree given as PATH" "$T/e" || { cat "$T/e"; fail "--test with a plan not refused"; }

# list: text and JSON, same tests as a run would have
cat > "$T/plan.json" <<'JSON'
{"tests": [{"name": "/a", "command": ["true"], "requires": {"arch": "x86_64"}},
           {"name": "/b", "command": ["true"], "priority": 3, "duration": "2m"}]}
JSON
out=$("$ATX" list --plan "$T/plan.json")
expect_eq "list text" "$out" "$(printf '/a  requires arch=x86_64\n/b')"
"$ATX" list --plan "$T/plan.json" --format json | python3 -c '
import json, sys
tests = json.load(sys.stdin)
assert [t["name"] for t in tests] == ["/a", "/b"], tests
assert tests[0]["requires"] == {"arch": "x86_64"}
assert tests[1]["priority"] == 3 and tests[1]["duration"] == 120
print("ok: list json")'
