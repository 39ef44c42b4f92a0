#!/bin/sh
# Tests run in their own folder; scratch files stay there.
set -e
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'one\ntwo\nthree\n' > "$tmp/list"
[ "$(wc -l < "$tmp/list")" -eq 3 ]
echo "wrote and counted $tmp/list"
