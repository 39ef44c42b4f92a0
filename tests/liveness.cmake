# Systems that stop answering: frozen agents and paused containers, SIGINT with one.
atx_script_test(liveness)
set_tests_properties(liveness PROPERTIES TIMEOUT 600)
