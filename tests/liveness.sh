# Systems that stop answering without closing their connection: an agent
# frozen with SIGSTOP (over SSH, and in a slot here whose lease runs an
# agent) and a container frozen with `podman pause`, under a running test.
# With a liveness timeout of 5 s the attempt ends `infra` within 5 s + 2 s,
# the test passes on another system and the run exits 0. With a long
# liveness timeout, a first SIGINT ends the run within the grace plus the
# liveness timeout and a second one within 2 s; the reports are whole and
# nothing of the run is left on this host.
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/ssh/peers.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
trap 'kill -CONT $(cat "$T"/agent-pid* 2>/dev/null) 2>/dev/null || true; peers_stop; cleanup' EXIT

peers_init "$T/peers"
for h in lab1 lab2 lab3; do
  peer_start $h
  peer_trust $h
done
cat > "$T/pool.json" <<EOF
{"known_hosts": "$T/peers/known_hosts",
 "hosts": [
  {"name": "lab1", "address": "127.0.0.1", "port": $PORT_lab1, "user": "root", "identity": "$T/peers/client_key"},
  {"name": "lab2", "address": "127.0.0.1", "port": $PORT_lab2, "user": "root", "identity": "$T/peers/client_key"},
  {"name": "lab3", "address": "127.0.0.1", "port": $PORT_lab3, "user": "root", "identity": "$T/peers/client_key"}]}
EOF

marker="atx-live-$$-$RANDOM"
cp "$(command -v sleep)" "$T/$marker"
# The first attempt says where its agent is (its parent), then waits; a
# later attempt passes at once.
mktest frozen.sh "if [ \"\$ATX_TEST_ATTEMPT\" = 1 ]; then
  echo \$PPID > '$T/agent-pid.tmp'; mv '$T/agent-pid.tmp' '$T/agent-pid'
  '$T/$marker' 300 & exec '$T/$marker' 301
fi
echo passed on the attempt \$ATX_TEST_ATTEMPT"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_row FILE PYTHON-CONDITION SECONDS: until a JSONL row of FILE matches
wait_row() {
  local f=$1 cond=$2 n=$(( $3 * 20 ))
  while [ $n -gt 0 ]; do
    /usr/bin/python3 - "$f" "$cond" <<'PY' 2>/dev/null && return 0
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if any(eval(sys.argv[2]) for r in rows) else 1)
PY
    sleep 0.05; n=$((n - 1))
  done
  fail "timed out waiting for a row of $f where $cond"
}

plan() {  # plan PROVISIONER-JSON LIVENESS-TIMEOUT
  cat <<EOF
{"provisioners": [$1],
 "tests": [{"name": "/frozen", "command": ["$T/tests/frozen.sh"], "timeout": "120s"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"},
                 {"plugin": "junit", "path": "junit.xml"}],
 "policy": {"liveness_timeout": "$2", "liveness_interval": "1s"}}
EOF
}

left_of_run() {  # processes of the run still on this host
  pgrep -f -- "$marker" || true
  pgrep -f -- "$T/.*atx-agent" || true
}

# ---- 1. frozen under a test: infra within 5 s + 2 s, passes elsewhere ----
frozen_case() {  # frozen_case NAME PROVISIONER-JSON FREEZE-COMMAND
  local name=$1 out="$T/out-$1" t0 t1 rc=0
  rm -f "$T/agent-pid"
  plan "$2" 5s > "$T/plan-$name.json"
  "$ATX" run --plan "$T/plan-$name.json" -o "$out" > "$T/$name.log" 2>&1 &
  local pid=$!
  wait_for "$T/agent-pid" 60
  wait_for "$out/results.jsonl" 10
  t0=$(now_ms)
  eval "$3" || fail "$name: cannot freeze the system"
  wait_row "$out/results.jsonl" "r['attempt'] == 1 and r['status'] == 'infra'" 20
  t1=$(now_ms)
  wait $pid || rc=$?
  cat "$T/$name.log"
  expect_eq "$name: exit code" "$rc" 0
  [ $((t1 - t0)) -le 7000 ] || fail "$name: the frozen attempt ended $((t1 - t0)) ms after the freeze"
  pass "$name: the frozen attempt ended infra $((t1 - t0)) ms after the freeze"
  /usr/bin/python3 - "$out/results.jsonl" <<'PY' || fail "$name: the results are not as expected"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
first, second = rows[0], rows[-1]
assert first["status"] == "infra" and not first["final"], first
assert "stopped answering" in first["note"], first["note"]
assert second["status"] == "pass" and second["final"] and second["attempt"] == 2, second
assert second["system"]["id"] != first["system"]["id"], (first["system"], second["system"])
print("attempt 1:", first["system"]["id"], "-", first["note"])
print("attempt 2:", second["system"]["id"], second["status"])
PY
}

# The SSH session keeps itself alive (TCP keepalives under the SSH ones):
# the kernel shows a keepalive timer on the connection while the test runs.
keepalive_check() {
  # (a timer shows only while no retransmission is pending: a bounded poll)
  local n=40
  while [ $n -gt 0 ]; do
    ss -tno state established \
      "( dport = :$PORT_lab1 or dport = :$PORT_lab2 or dport = :$PORT_lab3 )" > "$T/ss.txt" 2>&1
    grep -q "keepalive" "$T/ss.txt" && break
    sleep 0.05; n=$((n - 1))
  done
  grep -q "keepalive" "$T/ss.txt" || fail "no keepalive on the SSH connections: $(cat "$T/ss.txt")"
  pass "the SSH connections have keepalives"
  kill -STOP "$(cat "$T/agent-pid")"
}
frozen_case ssh '{"plugin": "ssh", "pool": "'"$T/pool.json"'"}' keepalive_check
left=$(left_of_run)
[ -z "$left" ] || fail "ssh: processes of the run left behind: $left"
pass "ssh: the frozen agent and its test were reaped"

frozen_case local '{"plugin": "local", "slots": 2, "containment": "agent"}' \
  'kill -STOP $(cat "$T/agent-pid")'
left=$(left_of_run)
[ -z "$left" ] || fail "local: processes of the run left behind: $left"
pass "local (an agent per slot): the frozen agent and its test were reaped"

. "$ATX_SRC/tests/podman/image.sh"
mkdir -p "$T/shared"
mktest paused.sh "if [ \"\$ATX_TEST_ATTEMPT\" = 1 ]; then
  cat /proc/sys/kernel/hostname > /shared/host.tmp; mv /shared/host.tmp /shared/host
  exec sleep 300
fi
echo passed on the attempt \$ATX_TEST_ATTEMPT"
cp "$T/tests/paused.sh" "$T/shared/paused.sh"
podman_plan() {
  cat <<EOF
{"provisioners": [{"plugin": "podman", "image": "$IMG", "slots": 2,
                   "run_options": ["-v", "$T/shared:/shared"]}],
 "tests": [{"name": "/paused", "command": ["/shared/paused.sh"], "timeout": "120s"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}],
 "policy": {"liveness_timeout": "5s", "liveness_interval": "1s"}}
EOF
}
podman_plan > "$T/plan-podman.json"
"$ATX" run --plan "$T/plan-podman.json" -o "$T/out-podman" > "$T/podman.log" 2>&1 &
pid=$!
wait_for "$T/shared/host" 120
t0=$(now_ms)
podman pause "$(cat "$T/shared/host")" > /dev/null || fail "podman pause failed"
wait_row "$T/out-podman/results.jsonl" "r['attempt'] == 1 and r['status'] == 'infra'" 20
t1=$(now_ms)
rc=0
wait $pid || rc=$?
cat "$T/podman.log"
expect_eq "podman: exit code" "$rc" 0
[ $((t1 - t0)) -le 7000 ] || fail "podman: the paused attempt ended $((t1 - t0)) ms after the pause"
pass "podman: the paused attempt ended infra $((t1 - t0)) ms after the pause"
/usr/bin/python3 - "$T/out-podman/results.jsonl" <<'PY' || fail "podman: the results are not as expected"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows[0]["status"] == "infra" and "stopped answering" in rows[0]["note"], rows[0]
assert rows[-1]["status"] == "pass" and rows[-1]["attempt"] == 2, rows[-1]
assert rows[-1]["system"]["id"] != rows[0]["system"]["id"]
print("attempt 1:", rows[0]["system"]["id"], "-", rows[0]["note"])
PY
[ -z "$(podman ps -a -q --filter label=atx.pid=$pid)" ] || fail "podman: containers left behind"
pass "podman: no container left"

# ---- 2. SIGINT with a frozen system and a long liveness timeout ----
interrupted_case() {  # interrupted_case NAME SIGNALS BOUND-MS
  local name=$1 out="$T/out-$1" t0 t1 rc=0
  rm -f "$T/agent-pid"
  plan '{"plugin": "ssh", "pool": "'"$T/pool.json"'"}' 10s > "$T/plan-$name.json"
  "$ATX" run --plan "$T/plan-$name.json" -o "$out" > "$T/$name.log" 2>&1 &
  local pid=$!
  wait_for "$T/agent-pid" 60
  kill -STOP "$(cat "$T/agent-pid")"
  kill -INT $pid
  t0=$(now_ms)
  if [ "$2" = 2 ]; then
    wait_grep "$T/$name.log" "cancelled: stopping" 20
    kill -INT $pid
    t0=$(now_ms)
  fi
  wait $pid || rc=$?
  t1=$(now_ms)
  cat "$T/$name.log"
  expect_eq "$name: exit code" "$rc" 1
  [ $((t1 - t0)) -le "$3" ] || fail "$name: the run took $((t1 - t0)) ms to end (at most $3)"
  pass "$name: the run ended $((t1 - t0)) ms after the last SIGINT"
  xmllint --noout "$out/junit.xml" || fail "$name: junit.xml is not well-formed"
  /usr/bin/python3 - "$out/results.jsonl" <<'PY' || fail "$name: results.jsonl is not whole"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert rows and all(r["final"] for r in rows), rows
r = rows[-1]
assert r["test"] == "/frozen" and r["status"] in ("error", "infra"), r
print("the frozen test:", r["status"], r.get("error_type"), "-", r["note"])
PY
  local left
  left=$(left_of_run)
  [ -z "$left" ] || fail "$name: processes of the run left behind: $left"
  pass "$name: nothing of the run left on this host"
}
# The grace (1 s) plus the liveness timeout (10 s), and a little for the rest.
interrupted_case sigint 1 12500
interrupted_case sigint-twice 2 2000
