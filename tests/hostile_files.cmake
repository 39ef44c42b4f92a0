# Hostile tests (issue 12): what a test leaves for atx to take is hostile.
atx_script_test(hostile_files)
set_tests_properties(hostile_files PROPERTIES TIMEOUT 600)
