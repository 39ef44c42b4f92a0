# Hostile tests on a local slot (issue 12): secrets, terminal escapes,
# colliding names, durations past any clock.
atx_script_test(hostile_local)
# The masking itself, with the library's internals built in.
atx_unit_test(secret ${PROJECT_SOURCE_DIR}/framework/src/secret.c
              ${PROJECT_SOURCE_DIR}/framework/src/common.c
              ${PROJECT_SOURCE_DIR}/framework/src/error.c)
target_link_libraries(test_secret PRIVATE PkgConfig::LIBXML2)
