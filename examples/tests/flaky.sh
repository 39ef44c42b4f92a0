#!/bin/sh
# Fails on its first attempt, passes on the next: with "reruns": 1 the
# report shows it passed, with a flakyFailure for the first attempt.
if [ "${ATX_TEST_ATTEMPT:-1}" -eq 1 ]; then
  echo "first attempt: failing on purpose" >&2
  exit 1
fi
echo "attempt $ATX_TEST_ATTEMPT: passing"
