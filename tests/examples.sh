# The example driver programs build and do what their comments say.
. "$ATX_SRC/tests/lib.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
ex="$ATX_BUILD/examples"

"$ex/atx-example-fitness" "$T/fit" > "$T/fit.out"
grep -q "6 tests, 6 passed" "$T/fit.out" || fail "fitness example: $(cat "$T/fit.out")"

rc=0; "$ex/atx-example-aggregator" "$ATX_SRC/examples/tests" "$T/agg" > "$T/agg.out" || rc=$?
cat "$T/agg.out"
expect_eq "aggregator example exit" "$rc" 0
grep -Eq '^pass +6$' "$T/agg.out" || fail "expected 6 passes in the table"
grep -Eq '^\(reruns\) +1$' "$T/agg.out" || fail "expected the flaky test's rerun counted"
