atx_script_test(subresults)
