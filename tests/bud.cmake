atx_script_test(bud)
