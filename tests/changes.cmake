# What changed since the last run (issue 16): outcome history, --compare,
# atx report --compare, quarantine and --fail-on, end to end.
atx_script_test(changes)
