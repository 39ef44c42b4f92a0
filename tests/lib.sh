# Shared helpers for the end-to-end tests. Source it: . "$ATX_SRC/tests/lib.sh"
# Each test works in its own temporary folder, removed on exit.
set -euo pipefail
: "${ATX:?run through ctest}"
T=$(mktemp -d "${TMPDIR:-/tmp}/atx-test.XXXXXX")
cleanup() { rm -rf "$T"; }
trap cleanup EXIT
cd "$T"
# Each test keeps its own duration history, not the user's.
export XDG_STATE_HOME="$T/state"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; pass "$1 = $3"; }

# mktest NAME 'shell body': an executable test script in $T/tests
mktest() {
  mkdir -p "$T/tests/$(dirname "$1")"
  printf '#!/bin/sh\n%s\n' "$2" > "$T/tests/$1"
  chmod +x "$T/tests/$1"
}

# wait_for FILE SECONDS: until FILE exists (a bounded poll, not a sleep as sync)
wait_for() {
  local f=$1 n=$(( $2 * 20 ))
  while [ ! -e "$f" ] && [ $n -gt 0 ]; do sleep 0.05; n=$((n-1)); done
  [ -e "$f" ] || fail "timed out waiting for $f"
}

# jq-free JSON reading with the system python (stdlib only)
pyjson() { python3 -c "$1"; }

# jsonl FILE EXPR: print EXPR over rows, the JSON lines of FILE (a list)
jsonl() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(eval(sys.argv[2]))
PY
}

# free_port [ADDR]: a TCP port nothing listens on at ADDR (default
# 127.0.0.1; bound and released: good enough here)
free_port() {
  python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' \
    "${1:-127.0.0.1}"
}

# wait_grep FILE PATTERN SECONDS: until FILE holds a line matching PATTERN
wait_grep() {
  local f=$1 p=$2 n=$(( $3 * 20 ))
  while ! grep -q -- "$p" "$f" 2>/dev/null && [ $n -gt 0 ]; do sleep 0.05; n=$((n-1)); done
  grep -q -- "$p" "$f" 2>/dev/null || fail "timed out waiting for '$p' in $f"
}

# left_behind PATTERN: processes matching PATTERN still there after up to
# 5 s (a bounded poll: a killed process group takes a moment to go, longer
# on a loaded machine); prints their pids, nothing when all are gone.
left_behind() {
  local n=100 left
  while left=$(pgrep -f -- "$1") && [ $n -gt 0 ]; do sleep 0.05; n=$((n-1)); done
  printf '%s' "$left"
}
