# libFuzzer targets for the parsers of what tests and systems hand atx, run
# for a bounded time each. Built only with -DATX_FUZZ=ON (clang); `make
# check` runs them in their own build.
if(ATX_FUZZ)
  set(ATX_FUZZ_SECONDS 10 CACHE STRING "How long each fuzz target runs in ctest")
  set(ATX_FUZZ_TARGETS fmf control tap junit plan pool frames)
  foreach(target ${ATX_FUZZ_TARGETS})
    add_executable(fuzz_${target} fuzz/fuzz_${target}.c)
    target_compile_options(fuzz_${target} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${target} PRIVATE -fsanitize=fuzzer)
    set_target_properties(fuzz_${target} PROPERTIES
      RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
    set(_dict "")
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${target}.dict)
      set(_dict "-dict=${CMAKE_CURRENT_SOURCE_DIR}/fuzz/${target}.dict")
    endif()
    # A scratch copy of the seed corpus: the fuzzer adds what it finds.
    add_test(NAME fuzz_${target}
      COMMAND sh -c "rm -rf corpus-${target} && cp -r ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${target} corpus-${target} && ./fuzz_${target} -max_total_time=${ATX_FUZZ_SECONDS} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 ${_dict} corpus-${target}"
      WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(fuzz_${target} PROPERTIES TIMEOUT 600)
  endforeach()
  # All of them, for `cmake --build --target fuzz`.
  list(TRANSFORM ATX_FUZZ_TARGETS PREPEND fuzz_ OUTPUT_VARIABLE _fuzzers)
  add_custom_target(fuzz DEPENDS ${_fuzzers})
  target_link_libraries(fuzz_fmf PRIVATE atx-fmf)
  target_link_libraries(fuzz_control PRIVATE atx-fmf-control)
  target_sources(fuzz_tap PRIVATE ${PROJECT_SOURCE_DIR}/executors/tap/tap.c)
  target_sources(fuzz_junit PRIVATE ${PROJECT_SOURCE_DIR}/executors/junit/junit_import.c)
  target_link_libraries(fuzz_junit PRIVATE PkgConfig::LIBXML2)
  # The plan reader is libatx's; the fuzzer registers stand-in plugins.
  target_link_libraries(fuzz_plan PRIVATE atx PkgConfig::JSONC)
  # The pool file is read by the ssh provisioner's create: its sources are
  # built in, used through a run like any plugin.
  target_sources(fuzz_pool PRIVATE ${PROJECT_SOURCE_DIR}/provisioners/ssh/ssh.c
    ${PROJECT_SOURCE_DIR}/provisioners/ssh/session.c ${PROJECT_SOURCE_DIR}/provisioners/ssh/proc.c
    ${PROJECT_SOURCE_DIR}/provisioners/ssh/copy.c ${PROJECT_SOURCE_DIR}/provisioners/common/command.c)
  target_include_directories(fuzz_pool PRIVATE ${PROJECT_SOURCE_DIR}/provisioners/common)
  target_link_libraries(fuzz_pool PRIVATE atx PkgConfig::JSONC PkgConfig::LIBSSH Threads::Threads)
  target_include_directories(fuzz_frames PRIVATE ${PROJECT_SOURCE_DIR}/executors/agent)
endif()
