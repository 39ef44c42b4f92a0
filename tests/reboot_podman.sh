# Reboots in the middle of a test in podman containers: tmt-reboot restarts
# the container (PID 1 sleep, or the image's init); a test that reboots
# through ATEX's `disconnect` ends the image's init itself, and the
# container is started again. Both phases' results stay in one attempt.
. "$ATX_SRC/tests/lib.sh"
trap 'kill $(jobs -p) 2>/dev/null || true; wait; cleanup' EXIT
. "$ATX_SRC/tests/podman/image.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 2m
/tmt-reboot:
    test: |
        echo "phase $TMT_REBOOT_COUNT pid1 $(cat /proc/1/cmdline | tr '\0' ' ')"
        r="{\"name\": \"phase-$TMT_REBOOT_COUNT\", \"status\": \"pass\"}"
        printf 'result %s\n%s' "${#r}" "$r" >&$ATEX_TEST_CONTROL
        if [ "$TMT_REBOOT_COUNT" = 0 ]; then
            # Files outside tmpfs stay over a reboot.
            echo before > /var/tmp/atx-reboot-marker
            tmt-reboot
            exit 1
        fi
        test "$(cat /var/tmp/atx-reboot-marker)" = before
/disconnect:
    test: |
        echo "phase $TMT_REBOOT_COUNT"
        r="{\"name\": \"phase-$TMT_REBOOT_COUNT\", \"status\": \"pass\"}"
        printf 'result %s\n%s' "${#r}" "$r" >&$ATEX_TEST_CONTROL
        if [ "$TMT_REBOOT_COUNT" = 0 ]; then
            echo disconnect >&$ATEX_TEST_CONTROL
            i=0
            while (echo noop >&$ATEX_TEST_CONTROL) 2>/dev/null; do
                i=$((i + 1)); [ $i -lt 600 ] || exit 3; sleep 0.1
            done
            echo "the channel is closed: rebooting"
            reboot
            sleep 60
            exit 1
        fi
/plain:
    test: echo plain
FMF

check() { # DIR TEST...
  local d=$1 t a
  shift
  for t in "$@"; do
    a="$d/tests/$t/attempt-1"
    expect_eq "$t: both phases' results in its attempt folder" \
      "$(python3 -c 'import json,sys; print([(r.get("name"), r["status"]) for r in map(json.loads, open(sys.argv[1]))])' "$a/results")" \
      "[('phase-0', 'pass'), ('phase-1', 'pass'), (None, 'pass')]"
  done
}
results() {
  jsonl "$1/results.jsonl" \
    "sorted((r['test'], r['status'], r['attempt'], r['final']) for r in rows if r['subtest'] is None)"
}

# ---- 1. PID 1 is sleep: tmt-reboot restarts the container ----
# (A reboot the test makes itself cannot end a PID 1 that ignores SIGTERM.)
cat > "$T/plain.json" <<EOF
{"provisioners": [{"plugin": "podman", "image": "$IMG"}],
 "tests": [{"executor": "fmf", "tree": "$tree", "exclude": ["/disconnect"]}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
rc=0; "$ATX" run --plan "$T/plain.json" -o "$T/r1" > "$T/r1.log" 2>&1 || rc=$?
cat "$T/r1.log"
expect_eq "run exit" "$rc" 0
expect_eq "results" "$(results "$T/r1")" "[('/plain', 'pass', 1, True), ('/tmt-reboot', 'pass', 1, True)]"
check "$T/r1" tmt-reboot
grep -q "^phase 1 pid1 sleep infinity" "$T/r1/tests/tmt-reboot/attempt-1/files/output.txt" \
  || fail "phase 1 did not run in the restarted container"

# ---- 2. the image's init: tmt-reboot, and a reboot the test makes itself ----
cat > "$T/init.json" <<EOF
{"provisioners": [{"plugin": "podman", "image": "$IMG", "init": true}],
 "tests": [{"executor": "fmf", "tree": "$tree"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
rc=0; "$ATX" run --plan "$T/init.json" -v -o "$T/r2" > "$T/r2.log" 2>&1 & apid=$!
wait $apid || rc=$?
cat "$T/r2.log"
expect_eq "run with the image's init: exit" "$rc" 0
expect_eq "results with the image's init" "$(results "$T/r2")" \
  "[('/disconnect', 'pass', 1, True), ('/plain', 'pass', 1, True), ('/tmt-reboot', 'pass', 1, True)]"
check "$T/r2" tmt-reboot disconnect
grep -q "^phase 1 pid1 /bin/sh /sbin/atx-init" "$T/r2/tests/tmt-reboot/attempt-1/files/output.txt" \
  || fail "phase 1 did not run under the image's init"
grep -q "the channel is closed: rebooting" "$T/r2/tests/disconnect/attempt-1/files/output.txt" \
  || fail "disconnect did not close the control channel"
grep -q "podman-1 is container atx-$apid-" "$T/r2.log" || fail "no container of atx $apid named"
expect_eq "containers left" "$(podman ps -a -q --filter label=atx.owner=atx --filter "label=atx.pid=$apid" | wc -l)" 0
