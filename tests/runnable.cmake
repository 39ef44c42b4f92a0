atx_script_test(runnable)
