# Reboots in the middle of a test (tmt-reboot, ATEX's `disconnect`) over the
# ssh provisioner, against private sshd whose "power switch" drops every
# connection and brings the sshd back after a pause (tests/ssh/peers.sh);
# a host that never comes back; and local slots, which cannot reboot.
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/ssh/peers.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
trap 'peers_stop; cleanup' EXIT

peers_init "$T/peers"
for h in rb good never; do
  peer_start $h
  peer_trust $h
done
# rb: back after 1 s with its TMPDIR emptied (the work folder goes, as /tmp
# does on a real reboot); good: back after 1 s; never: stays down.
peer_power rb 1 wipe
peer_power good 1
peer_power never never
host() { # NAME [REBOOT_COMMAND]
  printf '{"name": "%s", "address": "127.0.0.1", "port": %s, "user": "root", "identity": "%s"%s}' \
    "$1" "$(cat "$T/peers/$1/port")" "$T/peers/client_key" \
    "${2:+, \"reboot_command\": \"$2\"}"
}
pool() { # FILE HOST...
  local f=$1 sep=
  shift
  { printf '{"known_hosts": "%s", "hosts": [' "$T/peers/known_hosts"
    for h in "$@"; do printf '%s%s' "$sep" "$h"; sep=,; done
    printf ']}\n'; } > "$f"
}
results() { # DIR: test, status, attempt, final, note of every test's own results
  jsonl "$1/results.jsonl" \
    "sorted((r['test'], r['status'], r['attempt'], r['final'], r.get('note') or '') for r in rows if r['subtest'] is None)"
}

# ---- 1. tmt-reboot and `disconnect` over ssh: both phases in one attempt ----
tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 2m
/tmt-reboot:
    test: |
        echo "phase $TMT_REBOOT_COUNT restart $TMT_TEST_RESTART_COUNT rstrnt $RSTRNT_REBOOTCOUNT"
        r="{\"name\": \"phase-$TMT_REBOOT_COUNT\", \"status\": \"pass\"}"
        printf 'result %s\n%s' "${#r}" "$r" >&$ATEX_TEST_CONTROL
        if [ "$TMT_REBOOT_COUNT" = 0 ]; then
            tmt-reboot
            echo "not reached"
            exit 1
        fi
        # The reboot emptied /tmp: the tree is here again.
        test -e main.fmf || { echo "the tree was not put back"; exit 1; }
/rstrnt-reboot-c:
    test: |
        echo "phase $TMT_REBOOT_COUNT"
        if [ "$TMT_REBOOT_COUNT" = 0 ]; then
            rstrnt-reboot -t 60 -c 'echo custom > "$ATX_PEER_POWER"'
            exit 1
        fi
/disconnect:
    test: |
        echo "phase $TMT_REBOOT_COUNT restart $TMT_TEST_RESTART_COUNT"
        r="{\"name\": \"phase-$TMT_REBOOT_COUNT\", \"status\": \"pass\"}"
        printf 'result %s\n%s' "${#r}" "$r" >&$ATEX_TEST_CONTROL
        if [ "$TMT_REBOOT_COUNT" = 0 ]; then
            echo disconnect >&$ATEX_TEST_CONTROL
            # ATEX's way: write until the channel is closed, then reboot.
            i=0
            while (echo noop >&$ATEX_TEST_CONTROL) 2>/dev/null; do
                i=$((i + 1)); [ $i -lt 600 ] || exit 3; sleep 0.1
            done
            echo "the channel is closed: rebooting"
            [ -n "${ATX_PEER_POWER:-}" ] || exit 0 # a slot here: nothing to switch off
            echo test > "$ATX_PEER_POWER"
            sleep 60
            exit 1
        fi
/restart-with-reboot:
    restart-on-exit-code: 79
    restart-with-reboot: true
    test: |
        echo "run $TMT_TEST_RESTART_COUNT reboots $TMT_REBOOT_COUNT"
        [ "$TMT_TEST_RESTART_COUNT" != 0 ] || exit 79
/panic:
    restart-on-exit-code: 255
    test: |
        echo "run $TMT_TEST_RESTART_COUNT reboots $TMT_REBOOT_COUNT"
        if [ "$TMT_TEST_RESTART_COUNT" = 0 ] && [ -n "${ATX_PEER_POWER:-}" ]; then
            # The system goes away under the test (a kernel panic that
            # reboots it): the connection breaks, which counts as exit 255.
            echo panic > "$ATX_PEER_POWER"
            sleep 60
        fi
/plain:
    test: echo plain
FMF
pool "$T/rb-pool.json" "$(host rb "echo host > $T/peers/rb/power")"
start=$(date +%s)
rc=0; "$ATX" run "$tree" --provisioner "ssh:$T/rb-pool.json" -o "$T/r1" > "$T/r1.log" 2>&1 || rc=$?
cat "$T/r1.log"
cat "$T/peers/rb/power.log"
expect_eq "run exit" "$rc" 0
expect_eq "results" "$(results "$T/r1")" \
  "[('/disconnect', 'pass', 1, True, ''), ('/panic', 'pass', 1, True, ''), ('/plain', 'pass', 1, True, ''), ('/restart-with-reboot', 'pass', 1, True, ''), ('/rstrnt-reboot-c', 'pass', 1, True, ''), ('/tmt-reboot', 'pass', 1, True, '')]"
expect_eq "reboots of rb" "$(grep -c ': off' "$T/peers/rb/power.log")" 5
expect_eq "rb's own reboot command (twice), -c's, the test's and a panic" \
  "$(grep -o 'off ([a-z]*)' "$T/peers/rb/power.log" | sort | tr '\n' ' ')" \
  "off (custom) off (host) off (host) off (panic) off (test) "
expect_eq "restart-with-reboot: two runs, one reboot" \
  "$(tr '\n' ' ' < "$T/r1/tests/restart-with-reboot/attempt-1/files/output.txt")" \
  "run 0 reboots 0 run 1 reboots 1 "
expect_eq "a lost system counts as exit 255: back, and the test restarted" \
  "$(tr '\n' ' ' < "$T/r1/tests/panic/attempt-1/files/output.txt")" \
  "run 0 reboots 0 run 1 reboots 0 "
for t in tmt-reboot disconnect; do
  a="$T/r1/tests/$t/attempt-1"
  expect_eq "$t: both phases' results in its attempt folder" \
    "$(python3 -c 'import json,sys; print([(r.get("name"), r["status"]) for r in map(json.loads, open(sys.argv[1]))])' "$a/results")" \
    "[('phase-0', 'pass'), ('phase-1', 'pass'), (None, 'pass')]"
  grep -q "^phase 0" "$a/files/output.txt" && grep -q "^phase 1" "$a/files/output.txt" \
    || fail "$t: the output of both phases is not in $a/files/output.txt"
done
grep -q "^phase 1 restart 1 rstrnt 1$" "$T/r1/tests/tmt-reboot/attempt-1/files/output.txt" \
  || fail "TMT_REBOOT_COUNT, TMT_TEST_RESTART_COUNT, RSTRNT_REBOOTCOUNT after a reboot"
grep -q "the channel is closed: rebooting" "$T/r1/tests/disconnect/attempt-1/files/output.txt" \
  || fail "disconnect did not close the control channel"
if grep -q "not reached" "$T/r1/tests/tmt-reboot/attempt-1/files/output.txt"; then
  fail "the test went on after tmt-reboot"
fi
dur=$(jsonl "$T/r1/results.jsonl" "[r['duration'] for r in rows if r['test'] == '/tmt-reboot' and r['subtest'] is None][0]")
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1.0 else 1)" "$dur" \
  || fail "the duration of /tmt-reboot ($dur s) does not count its reboot (1 s down)"
pass "/tmt-reboot took ${dur}s, its reboot included"
if grep -q "released and not used again" "$T/r1.log"; then
  fail "a reboot was taken for a lost system"
fi

# ---- 2. a host that never comes back: infra with the reason, the run goes on ----
# Every test reboots when it runs on "never" (and only there); on "good" it
# waits until "never" went down, so "never" is sure to get one.
tree2="$T/tree2"
mkdir -p "$tree2/.fmf"
echo 1 > "$tree2/.fmf/version"
cat > "$tree2/main.fmf" <<FMF
duration: 2m
test: |
    case \$ATX_PEER_POWER in
    */never/*) tmt-reboot -t 2; exit 1 ;;
    esac
    i=0
    until grep -q off "$T/peers/never/power.log" 2>/dev/null; do
        i=\$((i + 1)); [ \$i -lt 600 ] || exit 3; sleep 0.1
    done
/a:
/b:
/c:
FMF
pool "$T/never-pool.json" "$(host never "echo host > $T/peers/never/power")" \
  "$(host good "echo host > $T/peers/good/power")"
rc=0; "$ATX" run "$tree2" --provisioner "ssh:$T/never-pool.json" -o "$T/r2" > "$T/r2.log" 2>&1 || rc=$?
cat "$T/r2.log"
expect_eq "run with a host that never comes back: exit" "$rc" 0
expect_eq "every test passes in the end" \
  "$(jsonl "$T/r2/results.jsonl" "sorted((r['test'], r['status']) for r in rows if r['final'] and r['subtest'] is None)")" \
  "[('/a', 'pass'), ('/b', 'pass'), ('/c', 'pass')]"
lost=$(jsonl "$T/r2/results.jsonl" "[(r['status'], r['error_type'], r['final'], r['system']['id']) for r in rows if not r['final'] and r['subtest'] is None]")
expect_eq "the attempt on never" "$lost" "[('infra', 'lost', False, 'never-1')]"
note=$(jsonl "$T/r2/results.jsonl" "[r['note'] for r in rows if not r['final'] and r['subtest'] is None][0]")
case $note in
*"never-1 did not come back from its reboot"*"in time"*) pass "its note: $note" ;;
*) fail "the note of the lost attempt does not say why: $note" ;;
esac
grep -q "system never-1 did not come back from its reboot.*released and not used again" "$T/r2.log" \
  || fail "no warning that never-1 was let go"

# ---- 3. local slots cannot reboot: infra with the reason, the rest runs ----
rc=0; "$ATX" run "$tree" -j 2 -o "$T/r3" > "$T/r3.log" 2>&1 || rc=$?
cat "$T/r3.log"
expect_eq "local run exit" "$rc" 1
why="the test asked for a reboot: system local-1 cannot be rebooted: provisioner 'local' does not reboot its systems"
why2="restart-with-reboot after its exit code: system local-1 cannot be rebooted: provisioner 'local' does not reboot its systems"
expect_eq "local results" \
  "$(results "$T/r3" | sed 's/local-2/local-1/g')" \
  "[('/disconnect', 'infra', 1, True, \"$why\"), ('/panic', 'pass', 1, True, ''), ('/plain', 'pass', 1, True, ''), ('/restart-with-reboot', 'infra', 1, True, \"$why2\"), ('/rstrnt-reboot-c', 'infra', 1, True, \"$why\"), ('/tmt-reboot', 'infra', 1, True, \"$why\")]"
