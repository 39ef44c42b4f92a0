# The podman provisioner against real containers: a busybox image built here
# from busybox-static, rootful podman with runc and cgroupfs (see
# ENVIRONMENT.md). If podman cannot run a container, the test fails with the
# reason; it never skips.
. "$ATX_SRC/tests/lib.sh"
# A failing check must not leave atx runs behind (SIGTERM: they clean up).
trap 'kill $(jobs -p) 2>/dev/null || true; wait; cleanup' EXIT

: "${PODMAN_DRIVER:?run through ctest}"
. "$ATX_SRC/tests/podman/image.sh"

ARCH=$(uname -m)
HOST=$(cat /proc/sys/kernel/hostname)

# containers PID: what atx process PID has in podman now (any state)
containers() { podman ps -a -q --filter "label=atx.owner=atx" --filter "label=atx.pid=$1"; }

# jsonl_rows FILE: test attempt status final system-id, one line per result
jsonl_rows() {
    /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["test"], r["attempt"], r["status"], str(r["final"]).lower(), (r.get("system") or {}).get("id") or "-")
' "$1"
}

# notes FILE: each result's test, status and note (for failure messages)
notes() {
    /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["test"], r["status"], r["note"])
' "$1"
}

# ---- 1. the system operations, driven directly (spawn, copy, agent, alive) ----
rc=0
"$PODMAN_DRIVER" "$T/direct" "$IMG" direct > "$T/direct.out" 2> "$T/direct.err" & pid=$!
wait $pid || rc=$?
cat "$T/direct.out"
expect_eq "driver exit code (one test requires a label nobody has)" "$rc" 1
for t in /spawn /copy /agent /provider; do
    grep -q "^result $t pass podman-" "$T/direct.out" ||
        fail "$t did not pass in a container: $(grep "^result $t " "$T/direct.out" || cat "$T/direct.err")"
done
grep -q "^result /nolabel error - .*requires os_id=no-such-os" "$T/direct.out" ||
    fail "a test requiring a missing label was not refused at once"
expect_eq "two containers served the tests" \
    "$(grep -o ' podman-[0-9]* ' "$T/direct.out" | sort -u | wc -l)" 2
expect_eq "containers left by the direct run" "$(containers $pid)" ""

# ---- 2. atx run: exec tests in containers, labels, destructive tests ----
cat > "$T/plan.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slots": 2, "labels": {"lab": "ci"},
                   "run_options": ["--volume", "$T/shared:/shared"],
                   "setup": ["test \"\$ATX_TEST_SYSTEM\" = 1 && hostname >> /shared/setups"],
                   "cleanup": "hostname >> /shared/cleanups"}],
 "tests": [
   {"name": "/os-release", "command": ["cat", "/etc/os-release"]},
   {"name": "/uname", "command": ["uname", "-m"], "requires": {"arch": "$ARCH"}},
   {"name": "/inside", "command": ["sh", "-c",
      "test \"\$(cat /proc/sys/kernel/hostname)\" != '$HOST' && test ! -e '$T/plan.json' && test \"\$(pwd)\" = /var/tmp/atx && test \"\$K\" = 'v w' && test \"\$ATX_TEST_SYSTEM\" = 1 && grep -qx \"\$(hostname)\" /shared/setups"],
    "environment": {"K": "v w"}, "requires": {"distro": "busybox-1", "provider": "podman", "lab": "ci"}},
   {"name": "/missing-label", "command": ["true"], "requires": {"os_id": "fedora"}}]}
JSON
mkdir "$T/shared"
rc=0
"$ATX" run --plan "$T/plan.json" -o "$T/run" -q 2> "$T/run.err" & pid=$!
wait $pid || rc=$?
expect_eq "exit code (one test requires a missing label)" "$rc" 1
jsonl_rows "$T/run/results.jsonl" | sort > "$T/run.rows"
grep -q "^/os-release 1 pass true podman-" "$T/run.rows" || fail "/os-release: $(notes "$T/run/results.jsonl")"
grep -q "^/uname 1 pass true podman-" "$T/run.rows" || fail "/uname: $(notes "$T/run/results.jsonl")"
grep -q "^/inside 1 pass true podman-" "$T/run.rows" || fail "/inside did not see a container: $(notes "$T/run/results.jsonl")"
grep -q "^/missing-label 1 error true -" "$T/run.rows" || fail "/missing-label: $(cat "$T/run.rows")"
grep -q 'ID=busybox' "$T/run/junit.xml" || fail "the os-release read in the container is not in the report"
grep -q "<system-out>$ARCH" "$T/run/junit.xml" || fail "uname -m output is not in the report"
/usr/bin/python3 - "$T/run/results.jsonl" "$ARCH" <<'PY' || fail "system labels in results.jsonl are wrong"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["test"] == "/os-release":
        l = r["system"]["labels"]
        want = {"arch": sys.argv[2], "os": "linux", "os_id": "busybox", "os_version_id": "1",
                "distro": "busybox-1", "provider": "podman", "lab": "ci"}
        bad = {k: l.get(k) for k in want if l.get(k) != want[k]}
        assert not bad, bad
        assert l["image"].startswith("localhost/atx-test-busybox"), l
        assert l.get("hostname"), l
PY
pass "labels from the image's os-release and arch"
# setup and cleanup ran in each container (they write to a run_options volume)
[ -s "$T/shared/setups" ] || fail "no setup ran"
expect_eq "containers cleaned up" "$(sort "$T/shared/cleanups" | tr '\n' ' ')" \
    "$(sort "$T/shared/setups" | tr '\n' ' ')"
expect_eq "containers left by the run" "$(containers $pid)" ""

# A destructive test retires its container: the next test gets a fresh one.
cat > "$T/dirty.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slots": 1}],
 "tests": [{"name": "/dirty", "command": ["touch", "/var/tmp/dirty"], "destructive": true, "priority": 10},
           {"name": "/clean", "command": ["sh", "-c", "test ! -e /var/tmp/dirty"]}]}
JSON
rc=0
"$ATX" run --plan "$T/dirty.json" -o "$T/dirty" -q 2> "$T/dirty.err" & pid=$!
wait $pid || rc=$?
expect_eq "exit code after a destructive test" "$rc" 0
jsonl_rows "$T/dirty/results.jsonl" | sort > "$T/dirty.rows"
expect_eq "systems of the destructive and the next test" \
    "$(awk '{print $5}' "$T/dirty.rows" | sort -u | wc -l)" 2
expect_eq "containers left by the destructive run" "$(containers $pid)" ""

# ---- 3. a container removed under a running test: re-queued, passes ----
# started_in PID: the first container of PID whose test has started
started_in() {
    local c
    for c in $(podman ps -q --filter "label=atx.owner=atx" --filter "label=atx.pid=$1"); do
        podman exec "$c" test -e /tmp/started 2>/dev/null && { echo "$c"; return 0; }
    done
    return 1
}
cat > "$T/lost.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slots": 1}],
 "tests": [{"name": "/long", "command": ["sh", "-c", "touch /tmp/started; sleep 5"]}]}
JSON
rc=0
"$ATX" run --plan "$T/lost.json" -o "$T/lost" -q 2> "$T/lost.err" & pid=$!
victim=
for _ in $(seq 200); do victim=$(started_in $pid) && break; sleep 0.1; done
[ -n "$victim" ] || fail "the test never started in a container: $(cat "$T/lost.err")"
podman rm -f -t 0 "$victim" >/dev/null
wait $pid || rc=$?
expect_eq "exit code after losing a container" "$rc" 0
jsonl_rows "$T/lost/results.jsonl" > "$T/lost.rows"
grep -q "^/long 1 infra false podman-1$" "$T/lost.rows" || fail "the lost attempt: $(notes "$T/lost/results.jsonl")"
grep -q "^/long 2 pass true podman-2$" "$T/lost.rows" || fail "the re-queued attempt: $(notes "$T/lost/results.jsonl")"
expect_eq "containers left after the loss" "$(containers $pid)" ""

# ---- 4. kill -9 of atx: its containers stay; the next run removes them ----
cat > "$T/hang.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slots": 1}],
 "tests": [{"name": "/hang", "command": ["sh", "-c", "touch /tmp/started; sleep 600"]}]}
JSON
"$ATX" run --plan "$T/hang.json" -o "$T/hang" -q 2> "$T/hang.err" & killed=$!
started=
for _ in $(seq 200); do started=$(started_in $killed) && break; sleep 0.1; done
[ -n "$started" ] || fail "the hanging test never started: $(cat "$T/hang.err")"
kill -9 $killed
wait $killed 2>/dev/null || true
[ -n "$(containers $killed)" ] || fail "kill -9 left no container (the next check would prove nothing)"
pass "kill -9 left container $started"
cat > "$T/after.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slots": 1}],
 "tests": [{"name": "/after", "command": ["true"]}]}
JSON
rc=0
"$ATX" run --plan "$T/after.json" -o "$T/after" -q 2> "$T/after.err" & pid=$!
wait $pid || rc=$?
expect_eq "exit code of the run after kill -9" "$rc" 0
expect_eq "containers of the killed run after the next run" "$(containers $killed)" ""
expect_eq "containers of the next run" "$(containers $pid)" ""

# ---- 5. the plugin's own errors: one sentence naming the image ----
cat > "$T/noimage.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "localhost/atx-no-such-image:0"}],
 "tests": [{"name": "/t", "command": ["true"]}]}
JSON
rc=0
"$ATX" run --plan "$T/noimage.json" -o "$T/noimage" -q > "$T/noimage.out" 2>&1 || rc=$?
expect_eq "exit code with an image that does not exist" "$rc" 3
grep -q "cannot run image localhost/atx-no-such-image:0: " "$T/noimage.out" ||
    fail "the error does not name the image: $(cat "$T/noimage.out")"
cat > "$T/badkey.json" <<JSON
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slot": 2}],
 "tests": [{"name": "/t", "command": ["true"]}]}
JSON
rc=0
"$ATX" run --plan "$T/badkey.json" -o "$T/badkey" -q > "$T/badkey.out" 2>&1 || rc=$?
expect_eq "exit code with an unknown key" "$rc" 2
grep -q "slot" "$T/badkey.out" || fail "the unknown key is not named: $(cat "$T/badkey.out")"
