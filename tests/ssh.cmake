# The ssh provisioner against real sshd on loopback ports (started by the test).

# The system operations, case by case; tests/ssh.sh runs it against its peers.
add_executable(test_ssh test_ssh.c)
target_link_libraries(test_ssh PRIVATE atx PkgConfig::CMOCKA PkgConfig::JSONC Threads::Threads)
set_target_properties(test_ssh PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
add_dependencies(test_ssh atx-plugin-ssh)

atx_script_test(ssh)
set_tests_properties(ssh PROPERTIES TIMEOUT 600)
