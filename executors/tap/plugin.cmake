# tap: the exec executor's code, reading the command's stdout as TAP 13.
atx_add_plugin(tap executors/exec/exec.c executors/tap/tap.c)
target_compile_definitions(atx-plugin-tap PRIVATE EXEC_FLAVOUR=1)
target_include_directories(atx-plugin-tap PRIVATE ${PROJECT_SOURCE_DIR}/executors/tap)
