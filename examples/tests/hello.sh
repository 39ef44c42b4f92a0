#!/bin/sh
# The smallest test: exit 0 is a pass.
echo "hello from $(uname -n), test $ATX_TEST_NAME"
