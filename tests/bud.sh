#!/usr/bin/env bash
# Bud TMP: `atx run --bud`, the bud aggregator, `atx bud register/status/
# add-test-run/daemon`, against the project's own Bud server on loopback
# (tests/bud/server.py, following ../shared/BUD_API.md, with injected faults).
# Every check reads what the server received.
. "$ATX_SRC/tests/lib.sh"
SERVER="$ATX_SRC/tests/bud/server.py"
CTL="$ATX_SRC/tests/bud/ctl.py"
export HOME="$T/home"
mkdir -p "$HOME"
unset BUD_TOKEN BUD_RUNNER_TOKEN BUD_RUNNER_ACCOUNT BUD_BACKEND_URL RUNNER_API_KEY BUD_PASSWORD

python3 "$SERVER" --port-file "$T/port" 2>"$T/server.err" &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; cleanup' EXIT
wait_for "$T/port" 20
P=$(cat "$T/port")
export BUD_BACKEND_URL="http://127.0.0.1:$P"
API_KEY=test-api-key
ADMIN=admin@example.com
ADMIN_PW=admin-password-123

st() { python3 "$CTL" state "$P" "$1"; }
fault() { python3 "$CTL" fault "$P" "$1" "$2" "${3:-POST}" >/dev/null; }
curl_reset() { python3 -c "
import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$P/_control/reset', data=b'{}', method='POST'), timeout=5)"; }
# How many requests the server saw for METHOD PATH so far.
nreq() { st "len([r for r in s['requests'] if r['method'] == '$1' and r['path'] == '$2'])"; }
nuploads() { st "len(s['uploads'])"; }

# --- register: the vault, 0600; the password printed once; secrets nowhere else ---
rc=0
RUNNER_API_KEY=$API_KEY "$ATX" bud register --username runner-1 > reg.out 2> reg.err || rc=$?
expect_eq "register exit" "$rc" 0
expect_eq "vault mode" "$(stat -c %a "$HOME/.bud/config.json")" 600
expect_eq "vault folder mode" "$(stat -c %a "$HOME/.bud")" 700
TOKEN1=$(python3 -c "import json; print(json.load(open('$HOME/.bud/config.json'))['runner-1']['token'])")
PW1=$(sed -n 's/^password: //p' reg.out)
[ ${#PW1} -ge 12 ] || fail "no generated password printed: $(cat reg.out)"
expect_eq "the server has runner-1's token" "$(st "s['runners']['runner-1']['token']")" "$TOKEN1"
grep -qF "$TOKEN1" reg.out reg.err && fail "register printed the token"
pass "register: token only in the vault (0600), the generated password printed once"
# Same password again: a fresh token; another password: refused with a hint.
RUNNER_API_KEY=$API_KEY "$ATX" bud register --username runner-1 --password "$PW1" --re-register > rereg.out
TOKEN1B=$(python3 -c "import json; print(json.load(open('$HOME/.bud/config.json'))['runner-1']['token'])")
[ "$TOKEN1B" != "$TOKEN1" ] || fail "re-register kept the old token"
grep -q "^password:" rereg.out && fail "re-register printed a password"
TOKEN1=$TOKEN1B
# The password from a file (ps shows no password).
printf '%s\n' "$PW1" > pw-file
RUNNER_API_KEY=$API_KEY "$ATX" bud register --username runner-1 --password-file pw-file --re-register > rereg.out
TOKEN1B=$(python3 -c "import json; print(json.load(open('$HOME/.bud/config.json'))['runner-1']['token'])")
rm -f pw-file
[ "$TOKEN1B" != "$TOKEN1" ] || fail "re-register with --password-file kept the old token"
TOKEN1=$TOKEN1B
rc=0
RUNNER_API_KEY=$API_KEY "$ATX" bud register --username runner-1 --password other-password-1 > bad.out 2>&1 || rc=$?
expect_eq "register with another password: exit" "$rc" 2
grep -q "re-register" bad.out || fail "no hint: $(cat bad.out)"
rc=0
RUNNER_API_KEY=wrong "$ATX" bud register --username runner-x > bad.out 2>&1 || rc=$?
expect_eq "register with a wrong API key: exit" "$rc" 2
grep -q "refused the runner API key" bad.out || fail "$(cat bad.out)"
rc=0
"$ATX" bud register --username runner-x > bad.out 2>&1 || rc=$?
expect_eq "register without an API key: exit" "$rc" 2
pass "re-register refreshes the token; a wrong password or key is refused in one line"

# --- identity: a vault others can read, a secret in app.properties ---
chmod 644 "$HOME/.bud/config.json"
rc=0; "$ATX" bud status --runner-account runner-1 > bad.out 2>&1 || rc=$?
expect_eq "group/world-readable vault: exit" "$rc" 2
grep -q "can be read by others" bad.out || fail "$(cat bad.out)"
chmod 600 "$HOME/.bud/config.json"
mkdir -p proj/sub
printf 'budBackend=http://127.0.0.1:%s\nbudToken=abc\n' "$P" > proj/app.properties
rc=0; (cd proj/sub && "$ATX" bud status > "$T/bad.out" 2>&1) || rc=$?
expect_eq "app.properties with a secret: exit" "$rc" 2
grep -q "secret key 'budToken'" bad.out || fail "$(cat bad.out)"
printf 'budBackend=http://127.0.0.1:%s\nbudRunnerAccount=runner-1\n' "$P" > proj/app.properties
rc=0; (cd proj/sub && env -u BUD_BACKEND_URL "$ATX" bud status --output-format json > "$T/status.json") || rc=$?
expect_eq "status from app.properties upward: exit" "$rc" 0
python3 - "$P" <<'PY' || fail "status: $(cat status.json)"
import json, sys
s = json.load(open("status.json"))
assert s["backend"] == "http://127.0.0.1:" + sys.argv[1] and s["healthy"] and s["version"]
assert s["token"] is True and s["runner_account"] == "runner-1" and s["socket_port"] == 53035
assert s["runner"]["account"] == "runner-1", s
PY
# A project pointing at another server gets no token from the vault.
printf 'budBackend=http://127.0.0.1:9\nbudRunnerAccount=runner-1\n' > proj/app.properties
(cd proj/sub && env -u BUD_BACKEND_URL "$ATX" bud status --output-format json > "$T/other.json" || true)
expect_eq "token offered to another backend" \
  "$(python3 -c "import json; print(json.load(open('other.json'))['token'])")" False
pass "vault and app.properties: refused when unsafe; status reads backend and account upward"

# The tests the runs below run.
mkdir tests
printf '#!/bin/sh\necho hello\n' > tests/ok1; printf '#!/bin/sh\nexit 0\n' > tests/ok2
printf '#!/bin/sh\necho broken >&2; exit 1\n' > tests/bad; chmod +x tests/*
RUN=$(BUD_TOKEN=$TOKEN1 "$ATX" bud add-test-run --test-suite-name faults)
[ "$RUN" -ge 1 ] || fail "add-test-run printed '$RUN'"
# bud_run NAME [ARGS...]: atx run --bud into results NAME, exit code in rc
bud_run() {
  local d=$1; shift
  rc=0
  "$ATX" run tests -j 2 -o "$d" --no-history --bud --runner-account runner-1 "$@" \
    > "$d.out" 2> "$d.err" || rc=$?
}

# --- 503 twice, then 201: retried, one stored copy, one key ---
before=$(nuploads)
fault /api/results '[{"status": 503}, {"status": 503}]'
bud_run r503 --test-run-id "$RUN"
expect_eq "503 twice: exit (a test fails)" "$rc" 1
expect_eq "503 twice: copies stored" "$(( $(nuploads) - before ))" 1
keys=$(st "sorted(set(r['headers'].get('idempotency-key') for r in s['requests'][-8:] if r['path'] == '/api/results'))")
n=$(st "len([r for r in s['requests'] if r['path'] == '/api/results' and r['headers'].get('idempotency-key') == s['uploads'][-1]['idempotency_key']])")
expect_eq "503 twice: requests with that Idempotency-Key" "$n" 3
pass "503, 503, 201: three tries with one key, one copy stored"

# --- 429 with Retry-After: 2 is honoured ---
fault /api/results '[{"status": 429, "retry_after": 2}]'
bud_run r429 --test-run-id "$RUN"
gap=$(st "(lambda r: round(r[-1]['time'] - r[-2]['time'], 2))([x for x in s['requests'] if x['path'] == '/api/results'])")
python3 -c "import sys; sys.exit(0 if $gap >= 1.9 else 1)" || fail "429 Retry-After 2: resent after ${gap}s"
pass "429 with Retry-After: 2: resent after ${gap} s"

# --- a dropped connection is retried ---
before=$(nuploads)
fault /api/results '[{"drop": "partial"}]'
bud_run rdrop --test-run-id "$RUN"
expect_eq "dropped connection: copies stored" "$(( $(nuploads) - before ))" 1
expect_eq "dropped connection: the dropped request is logged" \
  "$(st "[r['status'] for r in s['requests'] if r['path'] == '/api/results'][-2:]")" "[0, 201]"
pass "a dropped connection: retried, stored once"

# --- 401 with credentials: one login, one resend with the same key ---
logins=$(st "s['logins']")
fault /api/results '[{"status": 401}]'
bud_run r401 --test-run-id "$RUN" --username "$ADMIN" --password "$ADMIN_PW"
expect_eq "401 with credentials: exit" "$rc" 1
expect_eq "401 with credentials: logins" "$(( $(st "s['logins']") - logins ))" 1
expect_eq "401 with credentials: the last two results requests" \
  "$(st "(lambda r: [r[-2]['status'], r[-1]['status'], r[-2]['headers']['idempotency-key'] == r[-1]['headers']['idempotency-key'], r[-2]['headers']['authorization'] != r[-1]['headers']['authorization']])([x for x in s['requests'] if x['path'] == '/api/results'])")" \
  "[401, 201, true, true]"
python3 -c "import json; assert json.load(open('$HOME/.bud/config.json'))['_users']['$ADMIN']['token']" ||
  fail "the new user token is not in the vault"
pass "401 with credentials: one login, the same payload resent once with the same key, token kept"

# --- 401 without credentials: spooled byte for byte, exit 3 ---
SPOOL="$HOME/.bud/spool/results"
fault /api/results '[{"status": 401}]'
bud_run rspool --test-run-id "$RUN"
expect_eq "401 without credentials: exit" "$rc" 3
grep -q "spooled in $SPOOL" rspool.err || fail "no spool line: $(cat rspool.err)"
files=("$SPOOL"/*.json)
expect_eq "spool files" "${#files[@]}" 1
sha=$(sha256sum "${files[0]}" | cut -d' ' -f1)
expect_eq "spool file = the refused request's body" "$sha" \
  "$(st "[r['body_sha256'] for r in s['requests'] if r['path'] == '/api/results'][-1]")"
key1=$(basename "${files[0]}" .json); key1=${key1#*-}
expect_eq "spool file named by its Idempotency-Key" "$key1" \
  "$(st "[r['headers']['idempotency-key'] for r in s['requests'] if r['path'] == '/api/results'][-1]")"
expect_eq "spool file mode" "$(stat -c %a "${files[0]}")" 600
# A second spooled payload, later: the run tries the spool first (refused,
# so the spool stays), then its own results (refused: spooled too).
fault /api/results '[{"status": 401}, {"status": 401}]'
sleep 1.1 # spool names carry the second: the two must be told apart by age
bud_run rspool2 --test-run-id "$RUN"
files=("$SPOOL"/*.json)
expect_eq "spool files after a second refusal" "${#files[@]}" 2
key2=$(basename "${files[1]}" .json); key2=${key2#*-}
pass "401 without credentials: spooled byte-identical (sha256 $sha), exit 3"

# --- the next run replays the spool first, oldest first, then its own ---
n0=$(st "len(s['uploads'])")
bud_run rreplay --test-run-id "$RUN"
expect_eq "replaying run: exit" "$rc" 1
expect_eq "replaying run: upload keys in order" \
  "$(st "[u['idempotency_key'] for u in s['uploads'][$n0:]][:2]")" "[\"$key1\", \"$key2\"]"
expect_eq "replaying run: uploads" "$(( $(nuploads) - n0 ))" 3
expect_eq "spool empty after the replay" "$(ls "$SPOOL" | grep -c json || true)" 0
pass "the spool is replayed oldest first, then the run's own results"

# --- 422 is not retried; the payload is kept in dead/ ---
fault /api/results '[{"status": 422}]'
n0=$(nreq POST /api/results)
bud_run r422 --test-run-id "$RUN"
expect_eq "422: exit" "$rc" 3
expect_eq "422: results requests" "$(( $(nreq POST /api/results) - n0 ))" 1
expect_eq "422: kept in dead/" "$(ls "$SPOOL/dead" | wc -l)" 1
pass "422: sent once, never retried, kept in dead/"

# --- a replayed payload answered 404 goes to dead/ ---
python3 - "${SPOOL}" <<'PY'
import glob, json, os, sys
src = sorted(glob.glob(sys.argv[1] + "/dead/*.json"))[0]
body = json.load(open(src))
body["test_run_id"] = 99999
open(sys.argv[1] + "/1000000000-0123456789abcdef0123456789abcdef.json", "w").write(json.dumps(body))
PY
bud_run r404 --test-run-id "$RUN"
expect_eq "404 on replay: exit (only a test fails)" "$rc" 1
[ -e "$SPOOL/dead/1000000000-0123456789abcdef0123456789abcdef.json" ] || fail "404 payload not in dead/"
expect_eq "404 on replay: spool empty" "$(ls "$SPOOL" | grep -c json || true)" 0
pass "a replayed payload answered 404 is moved to dead/"
rm -rf "$SPOOL/dead"

# --- SIGKILL while spooling leaves no partial spool file ---
cat > spool-plan.json <<JSON
{"tests": [], "aggregators": [{"plugin": "bud", "runner_account": "runner-1", "test_run_id": $RUN,
   "batch_size": 10, "batch_interval": "50ms", "spool": "$T/kspool"},
   {"plugin": "jsonl", "path": "results.jsonl"}]}
JSON
python3 - <<'PY'
import json
p = json.load(open("spool-plan.json"))
p["tests"] = [{"name": "/t%d" % i, "command": ["sleep", "0.01"]} for i in range(1, 401)]
json.dump(p, open("spool-plan.json", "w"))
PY
for k in 1 2 3 4 5 6; do
  fault /api/results "$(python3 -c 'import json; print(json.dumps([{"status": 401}] * 60))')"
  "$ATX" run --plan spool-plan.json -j 2 -o "kill$k" -q --no-history >/dev/null 2>&1 &
  pid=$!
  wait_grep "kill$k/results.jsonl" . 20
  sleep 0.$((RANDOM % 5 + 1)) # a random moment of the run: not synchronisation
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  curl_reset
done
python3 - <<'PY' || fail "a partial spool file was left"
import glob, json, os
names = os.listdir("kspool")
bad = [n for n in names if not n.endswith(".json") and n != "dead"]
assert not bad, "stray files: %s" % bad
for n in names:
    if n.endswith(".json"):
        json.load(open("kspool/" + n))["results"]
print("spool files, all whole:", len([n for n in names if n.endswith(".json")]))
PY
[ "$(ls kspool | wc -l)" -ge 1 ] || fail "nothing was spooled: the kills tested nothing"
pass "6 SIGKILLs while spooling: every spool file whole, no temporary file left"
rm -rf kspool

# --- artifacts: the JUnit file, and the files tests leave, with their test ---
mkdir -p ftree/.fmf
echo 1 > ftree/.fmf/version
printf '/withfile:\n  test: echo some output\n' > ftree/main.fmf
a0=$(st "len(s['artifacts'])")
rc=0
"$ATX" run ftree -o ftree-out -q --no-history --bud --runner-account runner-1 --test-run-id "$RUN" \
  > ftree.out 2>&1 || rc=$?
expect_eq "fmf run with --bud: exit" "$rc" 0
expect_eq "artifacts uploaded" \
  "$(st "sorted([a['filename'], a['test_case'], a['run_id']] for a in s['artifacts'][$a0:])")" \
  "[[\"junit.xml\", null, $RUN], [\"output.txt\", \"/withfile\", $RUN]]"
pass "the JUnit report and a test's output file were uploaded to run $RUN"

# --- a --bud run killed and resumed: every test's row exactly once ---
RUN2=$(BUD_TOKEN=$TOKEN1 "$ATX" bud add-test-run --test-suite-name resume)
python3 - "$RUN2" <<'PY'
import json, sys
json.dump({"tests": [{"name": "/r/t%03d" % i, "command": ["sleep", "0.01"]} for i in range(150)],
           "aggregators": [{"plugin": "bud", "runner_account": "runner-1",
                            "test_run_id": int(sys.argv[1]), "batch_size": 10,
                            "batch_interval": "50ms"},
                           {"plugin": "jsonl", "path": "results.jsonl"}]},
          open("resume-plan.json", "w"))
PY
"$ATX" run --plan resume-plan.json -j 2 -o resumed -q --no-history >/dev/null 2>&1 &
pid=$!
n=400
while [ "$(wc -l 2>/dev/null < resumed/results.jsonl || echo 0)" -lt 60 ] && [ $n -gt 0 ]; do sleep 0.01; n=$((n-1)); done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
before=$(st "len(s['runs']['$RUN2']['rows'])")
rc=0; "$ATX" run --resume resumed -q > resumed.out 2>&1 || rc=$?
expect_eq "resumed --bud run: exit" "$rc" 0
python3 - "$P" "$RUN2" <<'PY' || fail "rows after the resume are wrong"
import json, sys, urllib.request
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/_control/state" % sys.argv[1]))
names = [r["test_method"] for r in s["runs"][sys.argv[2]]["rows"]]
assert len(names) == 150 and len(set(names)) == 150, (len(names), len(set(names)))
PY
[ "$before" -gt 0 ] || fail "nothing was uploaded before the kill: the resume tested little"
pass "a --bud run killed after $before rows were uploaded: the resume sent the other $((150 - before)), none twice"

# --- killed after the server stored a batch, before its answer came ---
# The resumed run sends that batch again under the same Idempotency-Key (the
# server, de-duplicating, stores it once), then the rest.
RUN3=$(BUD_TOKEN=$TOKEN1 "$ATX" bud add-test-run --test-suite-name inflight)
python3 - "$RUN3" <<'PY'
import json, sys
json.dump({"tests": [{"name": "/f/t%02d" % i, "command": ["true"]} for i in range(40)],
           "aggregators": [{"plugin": "bud", "runner_account": "runner-1",
                            "test_run_id": int(sys.argv[1]), "batch_size": 10,
                            "batch_interval": "1h"}]},
          open("inflight-plan.json", "w"))
PY
mkfifo gate
bash -c 'read -r _ < gate; exec "$0" "$@"' "$ATX" run --plan inflight-plan.json -j 2 \
  -o inflight -q --no-history >/dev/null 2>&1 &
pid=$!
fault /api/results "[{\"delay\": 0}, {\"kill\": $pid}]"
echo go > gate
rc=0; wait "$pid" || rc=$?
expect_eq "killed between the server's work and its answer: exit" "$rc" 137
expect_eq "batches stored before the resume" "$(st "len(s['runs']['$RUN3']['rows'])")" 20
rc=0; "$ATX" run --resume inflight -q > inflight.out 2>&1 || rc=$?
expect_eq "resumed after the kill: exit" "$rc" 0
expect_eq "rows after the resume (all, distinct)" \
  "$(st "(lambda n: [len(n), len(set(n))])([r['test_method'] for r in s['runs']['$RUN3']['rows']])")" "[40, 40]"
expect_eq "the batch in flight sent again under its key" \
  "$(st "[u.get('repeats', 0) for u in s['uploads'] if u['run_id'] == $RUN3]")" "[0, 1, 0, 0]"
pass "killed after the server stored a batch: the resume resent it under its key, 40 rows once each"

# --- 10,000 tests: at most 25 results requests; results arrive while the run goes ---
python3 - "$RUN" <<'PY'
import json, sys
tests = [{"name": "/big/t%05d" % i, "command": ["true"]} for i in range(10000)]
json.dump({"tests": tests}, open("big.json", "w"))
PY
n0=$(nreq POST /api/results)
u0=$(nuploads)
rc=0
"$ATX" run --plan big.json -j 2 -o big -q --no-history --bud --runner-account runner-1 \
  --test-run-id "$RUN" > big.out 2>&1 || rc=$?
expect_eq "10,000 tests: exit" "$rc" 0
reqs=$(( $(nreq POST /api/results) - n0 ))
[ "$reqs" -le 25 ] || fail "10,000 tests took $reqs results requests"
expect_eq "10,000 tests: rows stored" "$(st "sum(u['count'] for u in s['uploads'][$u0:])")" 10000
first=$(st "s['uploads'][$u0]['time']")
last_end=$(python3 -c "
import json, datetime
end = 0
for l in open('big/results.jsonl'):
    r = json.loads(l)
    t = datetime.datetime.fromisoformat(r['started'].replace('Z', '+00:00')).timestamp() + r['duration']
    end = max(end, t)
print(end)")
python3 -c "import sys; sys.exit(0 if $first < $last_end - 0.5 else 1)" ||
  fail "the first results arrived at $first, the last test ended at $last_end"
pass "10,000 tests: $reqs results requests; the first arrived $(python3 -c "print(round($last_end - $first, 1))") s before the last test ended"

# --- the daemon: token, loopback, status, ping, run, heartbeats, SIGTERM ---
DP=$(( 20000 + RANDOM % 20000 ))
"$ATX" bud daemon --runner-account runner-1 --interval 1 --port "$DP" --plan-dir "$T" 2> daemon.err &
dpid=$!
wait_grep "$HOME/.bud/daemons/runner-1.log" '"started' 20
# Clients use the daemon's own control token (tests/hostile_bud.sh checks it).
CT1=$(cat "$HOME/.bud/daemons/runner-1.token")
d() { python3 "$CTL" daemon "$DP" "$@"; }
expect_eq "no token" "$(d '{"command": "ping"}')" '{"ok":false,"error":"refused: a valid token is required"}'
expect_eq "wrong token" "$(d '{"command": "ping", "token": "nope"}')" '{"ok":false,"error":"refused: a valid token is required"}'
# From this machine's own non-loopback address to 127.0.0.1: refused.
OWN=$(hostname -I | tr ' ' '\n' | grep -v : | grep -v '^127\.' | head -1)
[ -n "$OWN" ] || fail "this machine has no non-loopback IPv4 address to test from"
expect_eq "not loopback" "$(d "{\"command\": \"ping\", \"token\": \"$CT1\"}" "$OWN" 2>&1 || true)" \
  '{"ok":false,"error":"refused: only loopback clients"}'
expect_eq "ping" "$(d "{\"command\": \"ping\", \"token\": \"$CT1\"}")" '{"ok":true,"pong":true}'
d "{\"command\": \"status\", \"token\": \"$CT1\"}" > dstatus.json
python3 -c "
import json; s = json.load(open('dstatus.json'))
assert s['ok'] and s['runner_account'] == 'runner-1' and s['port'] == $DP and s['pid'] == $dpid, s" ||
  fail "status: $(cat dstatus.json)"
u0=$(nuploads)
printf '{"tests": [{"name": "/d/one", "command": ["true"]}, {"name": "/d/two", "command": ["true"]}]}\n' > dplan.json
d "{\"command\": \"run\", \"token\": \"$CT1\", \"plan\": \"$T/dplan.json\"}" > drun.json
grep -q '"ok":true' drun.json || fail "run: $(cat drun.json)"
n=100
while [ "$(nuploads)" = "$u0" ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n-1)); done
expect_eq "the daemon's run reached the server" \
  "$(st "sorted(r['test_method'] for u in s['uploads'][$u0:] for r in u['rows'])")" '["/d/one", "/d/two"]'
# A second runner with its own account and port, at the same time.
RUNNER_API_KEY=$API_KEY "$ATX" bud register --username runner-2 --port $((DP + 1)) > reg2.out
"$ATX" bud daemon --runner-account runner-2 --interval 1 2> daemon2.err &
dpid2=$!
wait_grep "$HOME/.bud/daemons/runner-2.log" '"started' 20
TOKEN2=$(python3 -c "import json; print(json.load(open('$HOME/.bud/config.json'))['runner-2']['token'])")
CT2=$(cat "$HOME/.bud/daemons/runner-2.token")
expect_eq "runner-2's daemon on its port" "$(python3 "$CTL" daemon $((DP + 1)) "{\"command\": \"ping\", \"token\": \"$CT2\"}")" '{"ok":true,"pong":true}'
expect_eq "runner-1's control token is not runner-2's" "$(python3 "$CTL" daemon $((DP + 1)) "{\"command\": \"ping\", \"token\": \"$CT1\"}")" '{"ok":false,"error":"refused: a valid token is required"}'
# Heartbeats: one a second.
h0=$(st "len([h for h in s['heartbeats'] if h['account'] == 'runner-1'])")
n=100
while [ "$(st "len([h for h in s['heartbeats'] if h['account'] == 'runner-1'])")" -lt $((h0 + 3)) ] && [ $n -gt 0 ]; do sleep 0.1; n=$((n-1)); done
gaps=$(st "(lambda t: [round(b - a, 1) for a, b in zip(t, t[1:])][-3:])([h['time'] for h in s['heartbeats'] if h['account'] == 'runner-1'])")
python3 -c "import sys; g = $gaps; sys.exit(0 if len(g) == 3 and all(0.5 <= x <= 2.5 for x in g) and sum(g) / 3 <= 1.8 else 1)" ||
  fail "heartbeat gaps $gaps, want ~1 s"
pass "daemon: refuses no/wrong token and non-loopback; ping, status, run answer; heartbeats ${gaps} s apart; two runners side by side"
expect_eq "stop" "$(python3 "$CTL" daemon $((DP + 1)) "{\"command\": \"stop\", \"token\": \"$CT2\"}")" '{"ok":true,"stopping":true}'
rc=0; wait "$dpid2" || rc=$?
expect_eq "daemon exit after stop" "$rc" 0
kill -TERM "$dpid"
rc=0; wait "$dpid" || rc=$?
expect_eq "daemon exit on SIGTERM" "$rc" 0
[ ! -e "$HOME/.bud/daemons/runner-1.pid" ] || fail "pid file left"
tail -1 "$HOME/.bud/daemons/runner-1.log" | python3 -c "
import json, sys; l = json.loads(sys.stdin.read())
assert set(l) == {'timestamp', 'level', 'logger', 'message'} and l['message'] == 'stopped', l" ||
  fail "log: $(tail -1 "$HOME/.bud/daemons/runner-1.log")"
pass "daemon: SIGTERM stops it cleanly (exit 0, pid file removed, JSON log ends 'stopped')"

# --- secrets: nowhere but the vault ---
TOKEN_ADMIN=$(python3 -c "import json; print(json.load(open('$HOME/.bud/config.json'))['_users']['$ADMIN']['token'])")
for secret in "$TOKEN1" "$TOKEN2" "$TOKEN_ADMIN" "$PW1" "$ADMIN_PW" "$API_KEY"; do
  hits=$(grep -rlF -- "$secret" "$T" --exclude=config.json --exclude=server.err \
           --exclude=dstatus.json 2>/dev/null | grep -v "^$T/home/.bud/config.json$" || true)
  # The password printed once by register is expected in reg.out only.
  hits=$(printf '%s\n' "$hits" | grep -v "^$T/reg.out$" | grep -v '^$' || true)
  [ -z "$hits" ] || fail "a secret was written to: $hits"
done
pass "no token, password or API key in any report, journal, log or output (register's one-time password aside)"
