# bud_runner's spellings of atx's Bud flags send the same requests as atx's
# own: each command runs twice against the test Bud server, once per
# spelling, and the requests (method, path, body) are compared.
. "$ATX_SRC/tests/lib.sh"
SERVER="$ATX_SRC/tests/bud/server.py"
CTL="$ATX_SRC/tests/bud/ctl.py"
export HOME="$T/home"
mkdir -p "$HOME"
unset BUD_TOKEN BUD_RUNNER_TOKEN BUD_RUNNER_ACCOUNT BUD_BACKEND_URL RUNNER_API_KEY BUD_PASSWORD \
  BUD_USERNAME BUD_TRUST_APP_PROPERTIES
python3 "$SERVER" --port-file "$T/port" 2>"$T/server.err" &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; cleanup' EXIT
wait_for "$T/port" 20
P=$(cat "$T/port")
U="http://127.0.0.1:$P"
export RUNNER_API_KEY=test-api-key
st() { python3 "$CTL" state "$P" "$1"; }
reset() { python3 -c "
import urllib.request; urllib.request.urlopen(urllib.request.Request('$U/_control/reset', data=b'{}', method='POST'), timeout=5)"
  rm -rf "$HOME/.bud"; }
# The requests since the Nth, as (method, path, body) digests (a reset
# forgets runners and runs, not the requests).
seen() { st "[(r['method'], r['path'], r['body_sha256']) for r in s['requests'][$1:]]"; }
count() { st "len(s['requests'])"; }
printf 'runner-password-1\n' > "$T/pw"
chmod 600 "$T/pw"

same() {  # same WHAT LONG-ARGS -- SHORT-ARGS: the same requests and output
  local what=$1 a b oa ob n
  shift
  local -a long=() short=()
  while [ "$1" != -- ]; do long+=("$1"); shift; done
  shift
  short=("$@")
  reset
  n=$(count)
  "$ATX" bud "${long[@]}" > "$T/a.out"
  a=$(seen "$n")
  reset
  n=$(count)
  "$ATX" bud "${short[@]}" > "$T/b.out"
  b=$(seen "$n")
  [ -n "$a" ] && [ "$a" != "[]" ] || fail "$what: no request"
  expect_eq "$what: the requests of both spellings" "$b" "$a"
  cmp -s "$T/a.out" "$T/b.out" || fail "$what: outputs differ: $(cat "$T/a.out") / $(cat "$T/b.out")"
}

same "register" register --username runner-1 --backend-url "$U" --port 7001 --password-file "$T/pw" \
  --output-format json -- register -u runner-1 -b "$U" --socket-port 7001 --password-file "$T/pw" \
  --output-format json
python3 -c "import json; d = json.load(open('$T/a.out')); assert d['runner'] == 'runner-1', d"

# add-test-run, after one registration (its token in the vault).
reset
"$ATX" bud register -u runner-1 -b "$U" --password-file "$T/pw" > /dev/null
n=$(count)
"$ATX" bud add-test-run --backend-url "$U" --runner-account runner-1 --test-suite-name nightly \
  --test-case-list "a,b" --output-format json > "$T/a.out"
a=$(st "[(r['method'], r['path']) for r in s['requests'][$n:]]")
n=$(count)
"$ATX" bud add-test-run -b "$U" --runner-account runner-1 -n nightly -t "a,b" --output-format json > "$T/b.out"
b=$(st "[(r['method'], r['path']) for r in s['requests'][$n:]]")
expect_eq "add-test-run: the requests of both spellings" "$b" "$a"
python3 -c "import json; assert json.load(open('$T/a.out'))['id'] >= 1; assert json.load(open('$T/b.out'))['id'] >= 1"

# atx run --bud with -u, -b and -n.
mkdir -p "$T/tests"
printf '#!/bin/sh\nexit 0\n' > "$T/tests/ok.sh"
chmod +x "$T/tests/ok.sh"
n=$(count)
"$ATX" run "$T/tests" -o "$T/runner-1" -q --no-history --bud --backend-url "$U" --runner-account runner-1 \
  --test-suite-name nightly > /dev/null 2>&1
a=$(st "[(r['method'], __import__('re').sub(r'[0-9]+', 'N', r['path']), '') for r in s['requests'][$n:]]")
n=$(count)
"$ATX" run "$T/tests" -o "$T/r2" -q --no-history --bud -b "$U" --runner-account runner-1 \
  -n nightly > /dev/null 2>&1
b=$(st "[(r['method'], __import__('re').sub(r'[0-9]+', 'N', r['path']), '') for r in s['requests'][$n:]]")
[ "$a" != "[]" ] || fail "atx run --bud sent nothing"
expect_eq "atx run --bud: the requests of both spellings" "$b" "$a"
# Both runs' test runs carry the suite name either spelling gave.
expect_eq "the last two test runs' suites" \
  "$(st "[r['test_suite_name'] for r in list(s['runs'].values())[-2:]]")" '["nightly", "nightly"]'
expect_eq "atx bud version" "$("$ATX" bud version)" "$("$ATX" --version)"
"$ATX" bud version --output-format json | python3 -c "import json, sys; assert json.load(sys.stdin)['version']"
pass "bud_runner's spellings (-u, -b, -n, -t, --socket-port) send what atx's own send"
