# The CTRF report (tests/ctrf.sh against tests/ctrf/ctrf.schema.json).
atx_script_test(ctrf)
