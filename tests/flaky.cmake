# Flaky tests and what changed, in every report (tests/flaky.sh): flake
# rates and recent outcomes from the outcome history, the HTML changes section.
atx_script_test(flaky)
# The same through the API: quarantine marked in every report, a changes
# section against a results folder (tests/test_reports.c).
atx_unit_test(reports)
