# What changed between two runs: comparisons and quarantine (atx/changes.h).
atx_unit_test(changes_api)
