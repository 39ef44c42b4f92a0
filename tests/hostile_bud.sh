#!/usr/bin/env bash
# Hostile tests against Bud (issue 12): a result file or artifact that is a
# link (or a hard link, a FIFO) to a secret is not uploaded. Every check
# reads what the servers (tests/bud/server.py, two of them) received.
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
