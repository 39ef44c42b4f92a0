# The plan's JSON Schema against every plan in examples/ and the docs.
atx_script_test(plan_schema)
