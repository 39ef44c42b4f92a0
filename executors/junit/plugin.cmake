# junitxml: the exec executor's code, importing the JUnit XML file the
# command writes ("junit" is the name of the JUnit report aggregator).
atx_add_plugin(junitxml executors/exec/exec.c executors/junit/junit_import.c)
target_compile_definitions(atx-plugin-junitxml PRIVATE EXEC_FLAVOUR=2)
target_include_directories(atx-plugin-junitxml PRIVATE ${PROJECT_SOURCE_DIR}/executors/junit)
target_link_libraries(atx-plugin-junitxml PRIVATE PkgConfig::LIBXML2)
