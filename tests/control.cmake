# Test control of the fmf executor: the control-stream parser and the
# per-attempt results writer (executors/fmf/control.c).
if(NOT TARGET atx-fmf-control)
  add_library(atx-fmf-control STATIC ${PROJECT_SOURCE_DIR}/executors/fmf/control.c)
  target_link_libraries(atx-fmf-control PUBLIC atx PkgConfig::JSONC)
  set_target_properties(atx-fmf-control PROPERTIES POSITION_INDEPENDENT_CODE ON)
endif()
atx_unit_test(control)
target_link_libraries(test_control PRIVATE atx-fmf-control)
