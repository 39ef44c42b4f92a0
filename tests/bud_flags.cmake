# bud_runner's flag spellings against the test Bud server (issue 13).
atx_script_test(bud_flags)
