# tmt's restart-on-exit-code, restart-max-count and restart-with-reboot on
# local slots: the test runs again in the same attempt with
# TMT_TEST_RESTART_COUNT one higher; a slot cannot reboot (infra, with why,
# also when the test reported a result of its own before);
# a bad key is the test's error naming its file and line, and atx list warns
# of it. (Over ssh, with reboots: tests/reboot.sh.)
. "$ATX_SRC/tests/lib.sh"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
duration: 1m
/once:
    restart-on-exit-code: 79
    test: |
        echo "run $TMT_TEST_RESTART_COUNT reboots $TMT_REBOOT_COUNT"
        [ "$TMT_TEST_RESTART_COUNT" != 0 ] || exit 79
/max:
    restart-on-exit-code: [3, 79]
    restart-max-count: 2
    test: |
        echo "run $TMT_TEST_RESTART_COUNT"
        exit 79
/other-code:
    restart-on-exit-code: 79
    test: |
        echo "run $TMT_TEST_RESTART_COUNT"
        exit 3
/text-code:
    restart-on-exit-code: ["5"]
    test: |
        echo "run $TMT_TEST_RESTART_COUNT"
        [ "$TMT_TEST_RESTART_COUNT" = 1 ] || exit 5
/with-reboot:
    restart-on-exit-code: 79
    restart-with-reboot: true
    test: exit 79
/report-then-reboot:
    test: |
        printf 'result 18\n{"status": "pass"}' >&$ATEX_TEST_CONTROL
        tmt-reboot
/bad-max:
    restart-on-exit-code: 79
    restart-max-count: 11
    test: "true"
/bad-code:
    restart-on-exit-code: [79, nope]
    test: "true"
FMF

rc=0; "$ATX" run "$tree" -j 2 -o "$T/out" > "$T/log" 2>&1 || rc=$?
cat "$T/log"
expect_eq "exit code" "$rc" 1
expect_eq "results" \
  "$(jsonl "$T/out/results.jsonl" "sorted((r['test'], r['status'], r['attempt'], r['exit_code'], r.get('note') or '') for r in rows if r['subtest'] is None)" | sed "s/local-2/local-1/g; s|$tree/|TREE/|g")" \
  "[('/bad-code', 'error', 1, None, \"TREE/main.fmf:36: /bad-code: 'restart-on-exit-code' must be an exit code (0 to 255) or a list of at most 256\"), ('/bad-max', 'error', 1, None, \"TREE/main.fmf:33: /bad-max: 'restart-max-count' must be 1 to 10\"), ('/max', 'fail', 1, 79, ''), ('/once', 'pass', 1, 0, ''), ('/other-code', 'fail', 1, 3, ''), ('/report-then-reboot', 'infra', 1, None, \"the test asked for a reboot: system local-1 cannot be rebooted: provisioner 'local' does not reboot its systems\"), ('/text-code', 'pass', 1, 0, ''), ('/with-reboot', 'infra', 1, 79, \"restart-with-reboot after its exit code: system local-1 cannot be rebooted: provisioner 'local' does not reboot its systems\")]"
out() { tr '\n' ' ' < "$T/out/tests/$1/attempt-1/files/output.txt"; }
expect_eq "/once ran twice" "$(out once)" "run 0 reboots 0 run 1 reboots 0 "
expect_eq "/max ran 1 + 2 times" "$(out max)" "run 0 run 1 run 2 "
expect_eq "/other-code ran once" "$(out other-code)" "run 0 "
expect_eq "/text-code ran twice" "$(out text-code)" "run 0 run 1 "
expect_eq "a reboot that cannot be: its own result says so, whatever the test said before" \
  "$(python3 -c 'import json,sys; print([r["status"] for r in map(json.loads, open(sys.argv[1]))])' \
     "$T/out/tests/report-then-reboot/attempt-1/results")" "['infra']"
rc=0; "$ATX" list "$tree" > "$T/list" 2> "$T/e" || rc=$?
expect_eq "atx list exit" "$rc" 0
expect_eq "atx list warns of the bad keys" "$(sed "s|$tree/|TREE/|g" "$T/e" | sort)" \
  "atx: warning: fmf: TREE/main.fmf:33: /bad-max: 'restart-max-count' must be 1 to 10
atx: warning: fmf: TREE/main.fmf:36: /bad-code: 'restart-on-exit-code' must be an exit code (0 to 255) or a list of at most 256"
# A results folder whose name holds ':' cannot be on PATH: the helpers are
# found all the same.
rc=0; "$ATX" run "$tree" --test '^/report-then-reboot$' -o "$T/out:colon" > "$T/log2" 2>&1 || rc=$?
expect_eq "tmt-reboot found with ':' in the results folder's name" \
  "$(jsonl "$T/out:colon/results.jsonl" "[r['note'].split(':')[0] for r in rows]")" "['the test asked for a reboot']"
