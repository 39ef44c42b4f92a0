# Bash completion (issue 13).
atx_script_test(completion)
