# Man pages (issue 13).
atx_script_test(man)
