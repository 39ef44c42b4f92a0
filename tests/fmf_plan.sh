# tmt plans: prepare writes a file and environment sets a variable that the
# tests see; two named discover sections prefix the test names; finish runs
# even though a test fails.
. "$ATX_SRC/tests/lib.sh"

tree="$T/tree"
mkdir -p "$tree/.fmf" "$tree/tests"
echo 1 > "$tree/.fmf/version"
cat > "$tree/tests/main.fmf" <<FMF
/sees-prepare:
    test: test "\$(cat $T/prepared)" = ready && test "\$PLAN_VAR" = from-plan && test "\$SEEN" = by-prepare
/fails:
    test: exit 1
    tag: [other]
FMF
cat > "$tree/plans.fmf" <<FMF
/ci:
    discover:
      - name: first
        how: fmf
        test: sees-prepare
      - name: second
        how: fmf
        filter: "tag: other"
    environment:
        PLAN_VAR: from-plan
    prepare:
      - how: shell
        script:
          - echo ready > $T/prepared
          - echo SEEN=by-prepare >> "\$TMT_PLAN_ENVIRONMENT_FILE"
    finish:
      - how: shell
        script: echo done >> $T/finished
FMF

out=$("$ATX" list "$tree" --fmf-plan /plans/ci)
expect_eq "listed names" "$out" "$(printf '/first/tests/sees-prepare\n/second/tests/fails')"

rc=0
"$ATX" run "$tree" --fmf-plan /plans/ci -j 1 -o "$T/out" -q || rc=$?
expect_eq "exit code (one test fails)" "$rc" 1
python3 - "$T/out" <<'PY'
import json, os, sys
rows = {r["test"]: r["status"] for r in map(json.loads, open(os.path.join(sys.argv[1], "results.jsonl")))}
assert rows == {"/first/tests/sees-prepare": "pass", "/second/tests/fails": "fail"}, rows
print("ok:", rows)
PY
expect_eq "finish ran once" "$(cat "$T/finished")" "done"
