# fmf trees end to end through the atx command.
atx_script_test(fmf_example)
atx_script_test(fmf_protocol)
atx_script_test(fmf_plan)
atx_script_test(fmf_require)
atx_script_test(fmf_errors)
atx_script_test(fmf_restart)
atx_script_test(fmf_metadata)
atx_script_test(fmf_result)
