# Hostile fmf tests through the atx command: control-channel abuse and
# huge output, with memory and disk bounds.
atx_script_test(hostile_fmf)
