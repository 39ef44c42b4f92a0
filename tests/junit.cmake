# The JUnit report (tests/junit.sh against tests/junit.xsd) and the text,
# duration and capture helpers it is built on.
atx_script_test(junit)
atx_unit_test(text)
