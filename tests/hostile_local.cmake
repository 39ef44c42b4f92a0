# Hostile tests on a local slot (issue 12): secrets, terminal escapes,
# colliding names, durations past any clock.
atx_script_test(hostile_local)
