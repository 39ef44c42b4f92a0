# The system lifecycle every provisioner has: setup commands, a ready probe
# retried until it passes (or the system is replaced, within a budget), and
# cleanup commands that always run, also after SIGINT.
. "$ATX_SRC/tests/lib.sh"

mktest sees-setup.sh "test \"\$ATX_TEST_SYSTEM\" = 1 && test -e '$T/setup-done'"
mktest second.sh "exit 0"
cat > "$T/plan.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 1,
   "setup": ["echo \$ATX_TEST_SYSTEM > $T/setup-done"],
   "ready": "n=\$(cat $T/probes 2>/dev/null || echo 0); echo \$((n+1)) > $T/probes; [ \$n -ge 2 ]",
   "ready_timeout": "30s",
   "cleanup": "echo cleaned >> $T/cleanups"}],
 "tests": [{"name": "/sees-setup", "command": ["$T/tests/sees-setup.sh"]},
           {"name": "/second", "command": ["$T/tests/second.sh"]}]}
JSON
rc=0
"$ATX" run --plan "$T/plan.json" -o "$T/out" -q || rc=$?
expect_eq "exit code" "$rc" 0
expect_eq "setup saw ATX_TEST_SYSTEM" "$(cat "$T/setup-done")" 1
expect_eq "ready probes until it passed" "$(cat "$T/probes")" 3
expect_eq "cleanup ran once" "$(cat "$T/cleanups")" cleaned

# A system that never becomes ready is replaced; after three, the
# provisioner has failed and the tests are infra (exit 3).
cat > "$T/never.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 1, "ready": "echo not yet; exit 1",
                   "ready_timeout": "1s", "cleanup": "echo c >> $T/never-cleanups"}],
 "tests": [{"name": "/t", "command": ["true"]}]}
JSON
rc=0
t0=$(date +%s%N)
"$ATX" run --plan "$T/never.json" -o "$T/out2" 2>"$T/err" >/dev/null || rc=$?
took=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$took" -ge 3000 ] || fail "three unusable systems in ${took} ms: no backoff between them"
expect_eq "exit code when no system becomes ready" "$rc" 3
grep -q "not yet" "$T/out2/results.jsonl" || fail "the probe's message is not in the result"
expect_eq "cleanup after each failed system" "$(wc -l < "$T/never-cleanups")" 3
# Each replacement waits longer: 1 s, then 2 s.
grep -q "(the next one in 1 s)" "$T/err" || fail "no backoff of 1 s: $(cat "$T/err")"
grep -q "(the next one in 2 s)" "$T/err" || fail "no backoff of 2 s: $(cat "$T/err")"
grep -q "gives up after 3" "$T/err" || fail "no final line: $(cat "$T/err")"

# Cleanup also runs when the run is cancelled.
mktest long.sh "touch '$T/long-started'; exec sleep 100"
cat > "$T/cancel.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 1, "cleanup": "echo c >> $T/cancel-cleanups"}],
 "tests": [{"name": "/long", "command": ["$T/tests/long.sh"]}]}
JSON
"$ATX" run --plan "$T/cancel.json" -o "$T/out3" -q &
pid=$!
wait_for "$T/long-started" 20
kill -INT $pid
rc=0
wait $pid || rc=$?
expect_eq "exit code after SIGINT" "$rc" 1
expect_eq "cleanup ran after SIGINT" "$(cat "$T/cancel-cleanups")" c

# The run deadline: nothing starts after it, the running test is cancelled.
mktest waits.sh "while :; do sleep 0.05; done"
cat > "$T/deadline.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 1}],
 "tests": [{"name": "/w1", "command": ["$T/tests/waits.sh"]},
           {"name": "/w2", "command": ["$T/tests/waits.sh"]},
           {"name": "/w3", "command": ["$T/tests/waits.sh"]}],
 "policy": {"deadline": "1s", "timeout": "1m"}}
JSON
t0=$(date +%s%N)
rc=0
"$ATX" run --plan "$T/deadline.json" -o "$T/out4" -q 2>/dev/null || rc=$?
took=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "exit code past the deadline" "$rc" 1
[ "$took" -lt 5000 ] || fail "a 1 s deadline took ${took} ms"
python3 - "$T/out4/results.jsonl" <<'PY' || fail "deadline results are wrong"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
kinds = sorted(r.get("error_type") for r in rows if r["final"])
assert kinds == ["interrupted", "not-run", "not-run"], kinds
assert all("deadline" in r["note"] for r in rows if r.get("error_type") == "not-run")
PY
pass "past the deadline: the running test interrupted, the rest not run, in ${took} ms"

# The release timeout bounds cleanup commands.
cat > "$T/release.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 1, "cleanup": "exec sleep 30"}],
 "tests": [{"name": "/t", "command": ["true"]}],
 "policy": {"release_timeout": "1s"}}
JSON
t0=$(date +%s%N)
rc=0
"$ATX" run --plan "$T/release.json" -o "$T/out5" >/dev/null 2>"$T/err5" || rc=$?
took=$(( ($(date +%s%N) - t0) / 1000000 ))
expect_eq "exit code with a hanging cleanup" "$rc" 0
[ "$took" -lt 6000 ] || fail "a 1 s release timeout took ${took} ms"
grep -q "cleanup on local-1: 'exec sleep 30' timed out" "$T/err5" || fail "no timeout line: $(cat "$T/err5")"
pass "a hanging cleanup is stopped at the release timeout (${took} ms)"
