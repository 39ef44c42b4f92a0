# libFuzzer targets for the parsers, run for a bounded time each. Built only
# with -DATX_FUZZ=ON (clang); `make check` runs them in their own build.
if(ATX_FUZZ)
  set(ATX_FUZZ_SECONDS 30 CACHE STRING "How long each fuzz target runs in ctest")
  foreach(target fmf control)
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
  target_link_libraries(fuzz_fmf PRIVATE atx-fmf)
  target_link_libraries(fuzz_control PRIVATE atx-fmf-control)
endif()
