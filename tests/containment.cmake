# Nothing a test starts outlives it, on every kind of system; one agent per system.
atx_script_test(containment)
set_tests_properties(containment PROPERTIES TIMEOUT 600)
