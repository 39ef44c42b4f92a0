atx_unit_test(agent)
target_link_libraries(test_agent PRIVATE atx-agent-client)
target_compile_definitions(test_agent PRIVATE
  ATX_TEST_AGENT="$<TARGET_FILE:atx-agent>")
add_dependencies(test_agent atx-agent)
