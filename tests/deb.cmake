# Debian packages (issue 13): built, installed, used and purged.
atx_script_test(deb)
set_tests_properties(deb PROPERTIES TIMEOUT 1200 RUN_SERIAL TRUE)
