#!/usr/bin/env bash
# Hostile tests against Bud (issue 12): a result file or artifact that is a
# link (or a hard link, a FIFO) to a secret is not uploaded; an
# app.properties someone else can write, or one above the repository or
# $HOME, is not used, and credentials from the environment or flags never
# reach a backend only app.properties names; the daemon has its own control
# token, runs only plans below its --plan-dir folders and none in a folder
# everyone can write, refuses account names that are paths, and a silent
# client does not hold up another. Every check reads what the servers
# (tests/bud/server.py, two of them) received.
. "$ATX_SRC/tests/lib.sh"
SERVER="$ATX_SRC/tests/bud/server.py"
CTL="$ATX_SRC/tests/bud/ctl.py"
export HOME="$T/home"
mkdir -p "$HOME"
unset BUD_TOKEN BUD_RUNNER_TOKEN BUD_RUNNER_ACCOUNT BUD_BACKEND_URL RUNNER_API_KEY BUD_PASSWORD \
  BUD_USERNAME BUD_TRUST_APP_PROPERTIES

# Server A: where results belong. Server B: the one a hostile project names.
python3 "$SERVER" --port-file "$T/portA" 2>"$T/serverA.err" &
srvA=$!
python3 "$SERVER" --port-file "$T/portB" 2>"$T/serverB.err" &
srvB=$!
dpid=
trap 'kill $srvA $srvB $dpid 2>/dev/null; wait $srvA $srvB 2>/dev/null; cleanup' EXIT
wait_for "$T/portA" 20
wait_for "$T/portB" 20
PA=$(cat "$T/portA")
PB=$(cat "$T/portB")
A="http://127.0.0.1:$PA"
B="http://127.0.0.1:$PB"
stA() { python3 "$CTL" state "$PA" "$1"; }
stB() { python3 "$CTL" state "$PB" "$1"; }
ADMIN=admin@example.com
ADMIN_PW=admin-password-123

RUNNER_API_KEY=test-api-key BUD_BACKEND_URL=$A "$ATX" bud register --username runner-1 > reg.out
TOKEN1=$(python3 -c "import json; print(json.load(open('$HOME/.bud/config.json'))['runner-1']['token'])")
# The secrets a hostile test points at: the vault itself, and a file with
# a marker. Each server counts the requests whose body holds them.
SECRET="secret-marker-$RANDOM$RANDOM$RANDOM"
mkdir -p "$HOME/private"
echo "$SECRET" > "$HOME/private/secret.txt"
for p in "$PA" "$PB"; do
  python3 "$CTL" watch "$p" "$SECRET" >/dev/null
  python3 "$CTL" watch "$p" "$TOKEN1" >/dev/null
done
leaked() { stA "s['watch']['$SECRET'] + s['watch']['$TOKEN1']"; }
# The count works: a request that holds a watched text is counted.
python3 "$CTL" watch "$PA" canary-text >/dev/null
python3 -c "
import urllib.request
urllib.request.urlopen(urllib.request.Request('$A/api/health', data=b'{\"x\": \"canary-text\"}'), timeout=5)" \
  2>/dev/null || true
expect_eq "requests holding a watched text" "$(stA "s['watch']['canary-text']")" 1

# --- (1) a junitxml test whose report is a link to the vault ---
mkdir work
cat > links-plan.json <<JSON
{"tests": [
  {"name": "/evil", "executor": "junitxml", "cwd": "$T/work",
   "command": ["ln", "-sf", "$HOME/.bud/config.json", "evil.xml"], "report": "evil.xml"},
  {"name": "/good", "executor": "junitxml", "cwd": "$T/work",
   "command": ["sh", "-c", "echo '<testsuite name=\"s\"><testcase name=\"c\"/></testsuite>' > good.xml"],
   "report": "good.xml"}]}
JSON
a0=$(stA "len(s['artifacts'])")
rc=0
BUD_BACKEND_URL=$A "$ATX" run --plan links-plan.json -o res1 --no-history --bud \
  --runner-account runner-1 > res1.out 2> res1.err || rc=$?
expect_eq "a run with a test whose report is a link: exit (its test errs)" "$rc" 1
if [ -L res1/tests/evil/attempt-1/junit-report.xml ]; then
  pass "the copied-out report in the results folder is a link (the case the upload must refuse)"
else
  pass "the copied-out report is not a link (copy-out no longer makes one): checked anyway"
fi
expect_eq "artifacts uploaded" \
  "$(stA "sorted([a['filename'], a['test_case']] for a in s['artifacts'][$a0:])")" \
  '[["junit-report.xml", "/good"], ["junit.xml", null]]'
expect_eq "requests holding the vault's token or the secret" "$(leaked)" 0
pass "a report that is a link to the vault is not uploaded; a plain one is"

# --- the vault is a file a test on this host can read: what it prints of
# it is masked (the token atx holds), in the results and on the terminal ---
cat > vault-plan.json <<JSON
{"tests": [{"name": "/reader", "command": ["cat", "$HOME/.bud/config.json"]}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl", "output": true}]}
JSON
rc=0
BUD_BACKEND_URL=$A "$ATX" run --plan vault-plan.json -o res-vault --no-history --bud \
  --runner-account runner-1 -v > vault.out 2>&1 || rc=$?
expect_eq "a test that prints the vault: exit" "$rc" 0
! grep -rqF -- "$TOKEN1" res-vault vault.out || fail "the vault's token reached $(grep -rlF -- "$TOKEN1" res-vault vault.out)"
grep -q 'MASKED' res-vault/results.jsonl || fail "nothing masked in the results"
expect_eq "requests holding the vault's token or the secret" "$(leaked)" 0
pass "the vault's token a test printed is masked in the results, the terminal and the upload"

# --- (1) links, a hard link and a FIFO planted in the results folder ---
# The test writes into the results folder itself (it knows where it is)
# and the plan names its files as artifacts.
mkdir -p "$HOME/private/dir"
echo "$SECRET" > "$HOME/private/dir/inner.txt"
R2="$T/res2"
cat > plant.sh <<SH
#!/bin/sh
set -e
ln -s "$HOME/private/secret.txt" "$R2/planted.txt"
ln -s "$HOME/private/dir" "$R2/sub"
ln "$HOME/private/secret.txt" "$R2/hard.txt"
mkfifo "$R2/fifo"
mkdir "$R2/real"
ln -s ../planted.txt "$R2/real/relative.txt"
echo fine > "$R2/ok.txt"
SH
chmod +x plant.sh
cat > plant-plan.json <<JSON
{"tests": [{"name": "/plant", "command": ["$T/plant.sh"]}],
 "aggregators": [{"plugin": "bud", "runner_account": "runner-1", "backend": "$A",
   "artifacts": ["planted.txt", "sub/inner.txt", "hard.txt", "fifo", "real/relative.txt",
                 "../home/private/secret.txt", "$HOME/private/secret.txt", "ok.txt"]}]}
JSON
a0=$(stA "len(s['artifacts'])")
start=$(date +%s%N)
rc=0
"$ATX" run --plan plant-plan.json -o "$R2" --no-history > res2.out 2> res2.err || rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect_eq "planted links: exit" "$rc" 0
expect_eq "artifacts uploaded" "$(stA "[a['filename'] for a in s['artifacts'][$a0:]]")" '["ok.txt"]'
expect_eq "requests holding the secret" "$(leaked)" 0
for f in planted.txt sub/inner.txt hard.txt fifo real/relative.txt ../home/private/secret.txt \
         "$HOME/private/secret.txt"; do
  grep -qF "artifact $f not uploaded" res2.err || fail "no warning for $f: $(cat res2.err)"
done
pass "links (at the end, in the middle, relative), a hard link, a FIFO, '..' and a path outside: none uploaded, each warned once (run took $ms ms)"

# --- (5) app.properties ---
# bud status as runner-1 (whose vault entry names A) with BUD_TOKEN in the
# environment, from FOLDER: A unless an app.properties is used.
status_from() { (cd "$1" && BUD_TOKEN=$TOKEN1 "$ATX" bud status --runner-account runner-1 \
                   --output-format json > "$T/st.out" 2> "$T/st.err") || true; }
backend() { python3 -c "import json; print(json.load(open('$T/st.out'))['backend'])"; }
nB() { stB "len(s['requests'])"; }
mkdir -p up/proj
printf 'budBackend=%s\n' "$B" > up/app.properties
chmod 664 up/app.properties
status_from up/proj
expect_eq "group-writable app.properties: warning lines" \
  "$(grep -c "ignored $T/up/app.properties: others can write it (mode 0664)" st.err)" 1
expect_eq "group-writable app.properties: requests to the server it names" "$(nB)" 0
expect_eq "group-writable app.properties: backend" "$(backend)" "$A"
chmod 646 up/app.properties
status_from up/proj
grep -q "others can write it (mode 0646)" st.err || fail "world-writable: $(cat st.err)"
expect_eq "world-writable app.properties: requests to the server it names" "$(nB)" 0
chmod 644 up/app.properties
# A link (whoever placed it, its target is the user's) and a folder others
# can write (they could replace it) are not trusted either.
mkdir -p linked/proj
ln -s "$T/up/app.properties" linked/app.properties
status_from linked/proj
grep -q "ignored $T/linked/app.properties: it is a symbolic link" st.err || fail "link: $(cat st.err)"
expect_eq "a linked app.properties: requests to the server it names" "$(nB)" 0
mkdir -p open/proj
cp up/app.properties open/app.properties
chmod 777 open
status_from open/proj
grep -q "ignored $T/open/app.properties: others can replace it" st.err || fail "open folder: $(cat st.err)"
expect_eq "an app.properties in a folder all can write: requests to the server it names" "$(nB)" 0
if [ "$(id -u)" = 0 ]; then
  chown 65534 up/app.properties
  status_from up/proj
  grep -q "ignored $T/up/app.properties: it belongs to uid 65534, not to you" st.err ||
    fail "foreign owner: $(cat st.err)"
  expect_eq "someone else's app.properties: requests to the server it names" "$(nB)" 0
  chown 0 up/app.properties
  pass "an app.properties that others can write or that is someone else's is ignored, said once"
else
  pass "an app.properties that others can write is ignored, said once (not root: no foreign owner test)"
fi
# The user's own: its backend gets no credential from the environment or flags.
status_from up/proj
grep -q "the credentials from BUD_TOKEN are not sent there" st.err || fail "$(cat st.err)"
expect_eq "own app.properties, BUD_TOKEN: requests to the server it names" "$(nB)" 0
rc=0
(cd up/proj && "$ATX" bud add-test-run --test-suite-name x --email "$ADMIN" --password "$ADMIN_PW" \
   > "$T/st.out" 2> "$T/st.err") || rc=$?
expect_eq "own app.properties, --password: exit" "$rc" 2
grep -q "the credentials from --password are not sent there" st.err || fail "$(cat st.err)"
rc=0
(cd up/proj && BUD_PASSWORD=$ADMIN_PW "$ATX" run "$T/work" --no-history -o "$T/res3" --bud \
   --username "$ADMIN" > "$T/st.out" 2> "$T/st.err") || rc=$?
[ "$rc" -ne 0 ] || fail "atx run --bud with BUD_PASSWORD and a project's backend ran"
grep -q "the credentials from BUD_PASSWORD are not sent there" st.err || fail "$(cat st.err)"
expect_eq "own app.properties, BUD_PASSWORD: requests to the server it names" "$(nB)" 0
pass "credentials from the environment or flags do not go to a backend only app.properties names"
# The user says otherwise: then they do.
(cd up/proj && BUD_TRUST_APP_PROPERTIES=1 BUD_TOKEN=$TOKEN1 "$ATX" bud status \
   --output-format json > "$T/st.out" 2> "$T/st.err") || true
expect_eq "BUD_TRUST_APP_PROPERTIES=1: B saw the token" \
  "$(stB "len([r for r in s['requests'] if r['headers'].get('authorization') == 'Bearer $TOKEN1'])")" 1
(cd up/proj && BUD_TOKEN=$TOKEN1 "$ATX" bud status --trust-app-properties --output-format json \
   > "$T/st.out" 2> "$T/st.err") || true
expect_eq "--trust-app-properties: B saw the token" \
  "$(stB "len([r for r in s['requests'] if r['headers'].get('authorization') == 'Bearer $TOKEN1'])")" 2
pass "BUD_TRUST_APP_PROPERTIES=1 and --trust-app-properties let them go there"
n0=$(nB)
# Above the repository's root and above $HOME: not searched.
mkdir -p up/repo/.git up/repo/sub
status_from up/repo/sub
expect_eq "app.properties above the repository: backend" "$(backend)" "$A"
printf 'budBackend=%s\n' "$B" > "$T/app.properties"
mkdir -p "$HOME/proj"
status_from "$HOME/proj"
expect_eq "app.properties above \$HOME: backend" "$(backend)" "$A"
expect_eq "requests to B from folders below the repository and \$HOME" "$(( $(nB) - n0 ))" 0
rm "$T/app.properties"
pass "the upward search stops at the repository's root and at \$HOME"

# --- (11) the daemon ---
rc=0
BUD_BACKEND_URL=$A "$ATX" bud daemon --runner-account ../x --port 1024 > bad.out 2>&1 || rc=$?
expect_eq "--runner-account ../x: exit" "$rc" 2
grep -q "is not a name" bad.out || fail "$(cat bad.out)"
[ ! -e "$HOME/.bud/x.pid" ] && [ ! -e "$HOME/.bud/x.log" ] && [ ! -e "$HOME/.bud/x.token" ] ||
  fail "--runner-account ../x wrote outside ~/.bud/daemons"
rc=0
BUD_BACKEND_URL=$A BUD_RUNNER_ACCOUNT=.hidden "$ATX" bud daemon --port 1024 > bad.out 2>&1 || rc=$?
expect_eq "BUD_RUNNER_ACCOUNT=.hidden: exit" "$rc" 2
pass "account names that are paths are refused"
mkdir -p plans/ww plans/sub elsewhere
chmod 777 plans/ww
rc=0
BUD_BACKEND_URL=$A "$ATX" bud daemon --runner-account runner-1 --plan-dir plans/ww --port 1024 \
  > bad.out 2>&1 || rc=$?
expect_eq "--plan-dir everyone can write: exit" "$rc" 2
DP=$(( 20000 + RANDOM % 20000 ))
BUD_BACKEND_URL=$A "$ATX" bud daemon --runner-account runner-1 --interval 60 --port "$DP" \
  --plan-dir "$T/plans" 2> daemon.err &
dpid=$!
wait_grep "$HOME/.bud/daemons/runner-1.log" '"started' 20
CT=$(cat "$HOME/.bud/daemons/runner-1.token")
expect_eq "control token file mode" "$(stat -c %a "$HOME/.bud/daemons/runner-1.token")" 600
[ ${#CT} -eq 64 ] && [ "$CT" != "$TOKEN1" ] || fail "control token '$CT'"
d() { python3 "$CTL" daemon "$DP" "$1"; }
req() { printf '{"command": "%s", "token": "%s"%s}' "$1" "$2" "${3:+, \"plan\": \"$3\"}"; }
REFUSED='{"ok":false,"error":"refused: a valid token is required"}'
expect_eq "the runner's bearer token as control token" "$(d "$(req ping "$TOKEN1")")" "$REFUSED"
expect_eq "the control token" "$(d "$(req ping "$CT")")" '{"ok":true,"pong":true}'
plan='{"tests": [{"name": "/d/one", "command": ["true"]}]}'
for f in plans/ok.json plans/ww/plan.json plans/sub/open.json elsewhere/plan.json; do
  echo "$plan" > "$f"
done
chmod 666 plans/sub/open.json
ln -s "$T/elsewhere/plan.json" plans/link.json
expect_eq "a plan in a folder everyone can write" "$(d "$(req run "$CT" "$T/plans/ww/plan.json")")" \
  "{\"ok\":false,\"error\":\"refused: the plan is in $T/plans/ww, which everyone can write\"}"
expect_eq "a plan everyone can write" "$(d "$(req run "$CT" "$T/plans/sub/open.json")")" \
  '{"ok":false,"error":"refused: the plan is writable by everyone"}'
OUT='{"ok":false,"error":"refused: the plan is not below a folder the daemon'"'"'s --plan-dir allows"}'
expect_eq "a plan elsewhere" "$(d "$(req run "$CT" "$T/elsewhere/plan.json")")" "$OUT"
expect_eq "a plan through .." "$(d "$(req run "$CT" "$T/plans/../elsewhere/plan.json")")" "$OUT"
expect_eq "a plan through a link" "$(d "$(req run "$CT" "$T/plans/link.json")")" "$OUT"
expect_eq "a plan with the bearer token" "$(d "$(req run "$TOKEN1" "$T/plans/ok.json")")" "$REFUSED"
d "$(req run "$CT" "$T/plans/ok.json")" > drun.json
grep -q '"ok":true' drun.json || fail "run of an allowed plan: $(cat drun.json)"
pass "runs: only plans below --plan-dir, none in or writable by everyone, none by the bearer token"

# A silent client (and a slow one, mid-line) must not hold up another.
python3 - "$DP" "$CT" > silent.out <<'PY' || fail "silent clients: $(cat silent.out)"
import json, socket, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
def status():
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(json.dumps({"command": "status", "token": token}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
    assert json.loads(data)["ok"], data
    return (time.monotonic() - t) * 1000
base = min(status() for _ in range(3))
silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
slow = socket.create_connection(("127.0.0.1", port), timeout=5)
slow.sendall(b'{"command": "sta')
worst = max(status() for _ in range(5))
for s in silent + [slow]:
    s.close()
print("status alone %.1f ms; with 5 silent and 1 slow clients, worst of 5: %.1f ms" % (base, worst))
assert worst < 200, worst
PY
pass "$(cat silent.out)"
expect_eq "stop" "$(d "$(req stop "$CT")")" '{"ok":true,"stopping":true}'
rc=0; wait "$dpid" || rc=$?
dpid=
expect_eq "daemon exit after stop" "$rc" 0
[ ! -e "$HOME/.bud/daemons/runner-1.token" ] || fail "control token file left"
pass "daemon: its own control token (0600, gone when it stops)"
