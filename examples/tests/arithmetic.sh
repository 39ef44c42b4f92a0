#!/bin/sh
# A test that checks something and says what went wrong if it fails.
set -e
result=$((6 * 7))
[ "$result" -eq 42 ] || { echo "expected 42, got $result" >&2; exit 1; }
echo "6 * 7 = $result"
