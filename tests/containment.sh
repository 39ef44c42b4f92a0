# Nothing a test starts outlives it: tests that pass, fail and time out
# leave `setsid sleep &` and a double-forked daemon behind; afterwards none
# of those processes exist, on a local slot (cgroups, and an agent without
# them), over SSH and in a podman container. Each system's own process table
# is checked by a last test on it; this host's (where the local slots and the
# SSH peers are) after each run too. A system serving exec and fmf tests runs
# one agent.
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/ssh/peers.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
trap 'peers_stop; cleanup' EXIT

peers_init "$T/peers"
peer_start lab1
peer_trust lab1
cat > "$T/pool.json" <<EOF
{"known_hosts": "$T/peers/known_hosts",
 "hosts": [{"name": "lab1", "address": "127.0.0.1", "port": $PORT_lab1, "user": "root",
            "identity": "$T/peers/client_key"}]}
EOF

# Durations nobody else uses mark the leftovers: ps shows them everywhere
# (busybox in the container included).
tag=$(( 60000 + RANDOM % 9000 ))
leak="setsid sleep ${tag}1 </dev/null >/dev/null 2>&1 &
sh -c '(setsid sleep ${tag}2 </dev/null >/dev/null 2>&1 &)'
nohup sleep ${tag}3 </dev/null >/dev/null 2>&1 &"
mkdir -p "$T/shared"
cat > "$T/shared/pass.sh" <<EOF
#!/bin/sh
$leak
exit 0
EOF
cat > "$T/shared/fail.sh" <<EOF
#!/bin/sh
$leak
exit 1
EOF
cat > "$T/shared/timeout.sh" <<EOF
#!/bin/sh
$leak
exec sleep ${tag}4
EOF
# The last test on the system: none of them may be in its process table.
cat > "$T/shared/check.sh" <<EOF
#!/bin/sh
if ps -o pid,args 2>/dev/null | grep -v grep | grep "sleep ${tag}"; then
  echo "left behind on \$(cat /proc/sys/kernel/hostname)"; exit 1
fi
ps -ef 2>/dev/null | grep -v grep | grep "sleep ${tag}" && exit 1
echo "none left on \$(cat /proc/sys/kernel/hostname)"
EOF
chmod +x "$T"/shared/*.sh

plan() {  # plan PROVISIONER-JSON SCRIPTS-FOLDER
  cat <<EOF
{"provisioners": [$1],
 "tests": [{"name": "/pass", "command": ["$2/pass.sh"], "priority": 4},
           {"name": "/fail", "command": ["$2/fail.sh"], "priority": 3},
           {"name": "/timeout", "command": ["$2/timeout.sh"], "timeout": "2s", "priority": 2},
           {"name": "/check", "command": ["$2/check.sh"], "priority": 1}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl", "output": true}]}
EOF
}

contained() {  # contained NAME PROVISIONER-JSON SCRIPTS-FOLDER
  local name=$1 rc=0
  plan "$2" "$3" > "$T/plan-$name.json"
  "$ATX" run --plan "$T/plan-$name.json" -o "$T/out-$name" -q > "$T/$name.log" 2>&1 || rc=$?
  cat "$T/$name.log"
  expect_eq "$name: exit code (one test fails, one times out)" "$rc" 1
  /usr/bin/python3 - "$T/out-$name/results.jsonl" <<'PY' || fail "$name: the results are not as expected"
import json, sys
rows = {json.loads(l)["test"]: json.loads(l) for l in open(sys.argv[1])}
want = {"/pass": "pass", "/fail": "fail", "/timeout": "error", "/check": "pass"}
got = {t: rows[t]["status"] for t in want}
assert got == want, (got, rows["/check"].get("stdout"))
assert rows["/timeout"]["error_type"] == "timeout", rows["/timeout"]
systems = {rows[t]["system"]["id"] for t in want}
assert len(systems) == 1, systems
print("one system:", systems.pop(), "-", (rows["/check"].get("stdout") or "").strip())
PY
  local left
  left=$(left_behind "sleep ${tag}")
  [ -z "$left" ] || fail "$name: left behind on this host: $left"
  pass "$name: nothing the tests started outlived them"
}

contained local-cgroup '{"plugin": "local", "slots": 1, "containment": "cgroup"}' "$T/shared"
contained local-agent '{"plugin": "local", "slots": 1, "containment": "agent"}' "$T/shared"
ATX_AGENT_NO_CGROUP=1 contained local-agent-subreaper \
  '{"plugin": "local", "slots": 1, "containment": "agent"}' "$T/shared"
contained ssh '{"plugin": "ssh", "pool": "'"$T/pool.json"'"}' "$T/shared"

. "$ATX_SRC/tests/podman/image.sh"
contained podman '{"plugin": "podman", "image": "'"$IMG"'", "slots": 1,
                   "run_options": ["-v", "'"$T/shared"':/shared"]}' /shared

# ---- one agent per system, for every executor ----
mkdir -p "$T/tree/.fmf"
echo 1 > "$T/tree/.fmf/version"
cat > "$T/tree/main.fmf" <<EOF
/agent:
    test: echo \$PPID > '$T/agent-fmf'
EOF
cat > "$T/one-agent.json" <<EOF
{"provisioners": [{"plugin": "ssh", "pool": "$T/pool.json"}],
 "tests": [{"name": "/exec", "command": ["sh", "-c", "echo \$PPID > '$T/agent-exec'; ls \"\$PWD\""],
            "priority": 1},
           {"executor": "fmf", "tree": "$T/tree"}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl", "output": true}]}
EOF
rc=0
"$ATX" run --plan "$T/one-agent.json" -o "$T/out-one" -q > "$T/one.log" 2>&1 || rc=$?
cat "$T/one.log"
expect_eq "exec and fmf on one system: exit code" "$rc" 0
a=$(cat "$T/agent-exec") f=$(cat "$T/agent-fmf")
[ -n "$a" ] && [ "$a" = "$f" ] || fail "the exec test's agent is $a, the fmf test's $f"
agents=$(/usr/bin/python3 - "$T/out-one/results.jsonl" <<'PY'
import json, sys
rows = {json.loads(l)["test"]: json.loads(l) for l in open(sys.argv[1])}
print(sum(1 for l in rows["/exec"]["stdout"].split() if l.startswith("atx-agent")))
PY
)
expect_eq "agent programs in the system's work folder" "$agents" 1
pass "exec and fmf tests on one system share its one agent (pid $a)"
