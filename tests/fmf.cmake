# The fmf metadata reader (executors/fmf/fmf.c): cmocka tests against the
# fixture trees in tests/data/fmf/. The fuzz target tests/fuzz/fuzz_fmf.c is
# built separately.
if(NOT TARGET atx-fmf)
  pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
  add_library(atx-fmf STATIC ${PROJECT_SOURCE_DIR}/executors/fmf/fmf.c)
  target_include_directories(atx-fmf PUBLIC ${PROJECT_SOURCE_DIR}/executors/fmf)
  target_link_libraries(atx-fmf PUBLIC PkgConfig::YAML PkgConfig::JSONC)
  set_target_properties(atx-fmf PROPERTIES POSITION_INDEPENDENT_CODE ON)
endif()

atx_unit_test(fmf)
target_link_libraries(test_fmf PRIVATE atx-fmf)
target_compile_definitions(test_fmf PRIVATE FMF_DATA="${PROJECT_SOURCE_DIR}/tests/data/fmf")
