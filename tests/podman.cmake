# The podman provisioner against real containers of a busybox image the
# test builds itself (tests/podman.sh).
# A driver that drives podman systems directly (spawn, copy, the agent,
# liveness) through a test executor compiled into it.
add_executable(podman_driver podman/driver.c)
target_link_libraries(podman_driver PRIVATE atx PkgConfig::JSONC Threads::Threads)
set_target_properties(podman_driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
add_dependencies(podman_driver atx-agent atx-plugin-podman)

atx_script_test(podman)
set_property(TEST podman APPEND PROPERTY ENVIRONMENT
  "PODMAN_DRIVER=$<TARGET_FILE:podman_driver>")
set_tests_properties(podman PROPERTIES TIMEOUT 600)
