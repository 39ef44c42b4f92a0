# The system-side agent and libatx's connection to it, over a pipe on this host.
atx_unit_test(agent)
target_compile_definitions(test_agent PRIVATE ATX_TEST_AGENT="$<TARGET_FILE:atx-agent>")
add_dependencies(test_agent atx-agent)
