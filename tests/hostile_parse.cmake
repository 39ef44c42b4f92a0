# Hostile test output: entity bombs and external entities in JUnit reports,
# a TAP stream of one name repeated, through `atx run` (tests/hostile_parse.sh).
atx_script_test(hostile_parse)
