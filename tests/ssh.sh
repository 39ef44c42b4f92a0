# The ssh provisioner against three private sshd on loopback ports ("lab1",
# "lab2", "lab3" with labels rack=a, b, c): the system operations case by
# case, runs over the pool matching local runs, a host lost in the middle of
# a test, a host that hangs, hosts whose key is unknown or changed, and a
# bad pool file.
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/ssh/peers.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
trap 'peers_stop; cleanup' EXIT

peers_init "$T/peers"
for h in lab1 lab2 lab3; do
  peer_start $h
  peer_trust $h
done
mkdir -p "$T/lab"
cp "$T/peers/known_hosts" "$T/lab/known_hosts"
# One slot each; relative paths in a pool file are relative to its folder.
cat > "$T/lab/pool.json" <<EOF
{"known_hosts": "known_hosts",
 "hosts": [
  {"name": "lab1", "address": "127.0.0.1", "port": $PORT_lab1, "user": "root",
   "identity": "../peers/client_key", "labels": {"rack": "a"}},
  {"name": "lab2", "address": "127.0.0.1", "port": $PORT_lab2, "user": "root",
   "identity": "../peers/client_key", "labels": {"rack": "b"}, "slots": 1},
  {"name": "lab3", "address": "127.0.0.1", "port": $PORT_lab3, "user": "root",
   "identity": "../peers/client_key", "labels": {"rack": "c"}}]}
EOF

# jsonl FILE 'python expression over rows': rows are the parsed lines
# ---- 0. the system operations, case by case (tests/test_ssh.c) ----
mkdir -p "$T/scratch"
ATX_SSH_POOL="$T/lab/pool.json" ATX_SSH_SCRATCH="$T/scratch" "$ATX_BUILD/tests/test_ssh" \
  || fail "test_ssh failed"
pass "system operations"

# ---- 1. labels over three hosts; the same results as a local run ----
ex="$ATX_SRC/examples/tests"
mktest where.sh 'echo "rack $1 via $SSH_CONNECTION"'
mktest args.sh 'printf "[%s]" "$@"'
tests_json() {
  cat <<EOF
  {"name": "/ex/hello", "command": ["$ex/hello.sh"]},
  {"name": "/ex/arithmetic", "command": ["$ex/arithmetic.sh"]},
  {"name": "/ex/files", "command": ["$ex/files.sh"]},
  {"name": "/ex/flaky", "command": ["$ex/flaky.sh"], "reruns": 1},
  {"name": "/ex/needs-tool", "command": ["$ex/needs-tool.sh"], "skip_exit_code": 77},
  {"name": "/ex/on-linux", "command": ["uname", "-sm"], "requires": {"os": "linux"}},
  {"name": "/rack/a", "command": ["$T/tests/where.sh", "a"], "requires": {"rack": "a"}},
  {"name": "/rack/b", "command": ["$T/tests/where.sh", "b"], "requires": {"rack": "b"}},
  {"name": "/rack/c", "command": ["$T/tests/where.sh", "c"], "requires": {"rack": "c"}},
  {"name": "/args", "command": ["$T/tests/args.sh", "it's", "\$HOME", "a b", ";", "\`id\`"]},
  {"name": "/fails", "command": ["sh", "-c", "echo no >&2; exit 3"]}
EOF
}
cat > "$T/ssh-plan.json" <<EOF
{"provisioners": [{"plugin": "ssh", "pool": "lab/pool.json"}],
 "tests": [$(tests_json)],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"},
                 {"plugin": "junit", "path": "junit.xml"}]}
EOF
cat > "$T/local-plan.json" <<EOF
{"provisioners": [{"plugin": "local", "slots": 1, "labels": {"rack": "a"}},
                  {"plugin": "local", "slots": 1, "labels": {"rack": "b"}},
                  {"plugin": "local", "slots": 1, "labels": {"rack": "c"}}],
 "tests": [$(tests_json)],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
workdirs() { (cd "$T/peers" && ls -d lab*/tmp/atx-* 2>/dev/null || true); }
before=$(workdirs)
rc=0; "$ATX" run --plan "$T/ssh-plan.json" -o "$T/r1" > "$T/r1.log" 2>&1 || rc=$?
cat "$T/r1.log"
expect_eq "pool run exit (one test fails)" "$rc" 1
rc=0; "$ATX" run --plan "$T/local-plan.json" -o "$T/l1" > "$T/l1.log" 2>&1 || rc=$?
expect_eq "local run exit" "$rc" 1
q='sorted((r["test"], r["status"], r["attempt"], r["final"], r["exit_code"]) for r in rows)'
expect_eq "pool results = local results" "$(jsonl "$T/r1/results.jsonl" "$q")" \
  "$(jsonl "$T/l1/results.jsonl" "$q")"
for r in a:lab1:$PORT_lab1 b:lab2:$PORT_lab2 c:lab3:$PORT_lab3; do
  IFS=: read -r rack host port <<< "$r"
  got=$(jsonl "$T/r1/results.jsonl" \
    "[(r['system']['id'].split('-')[0], r['system']['labels']['rack'], r['system']['labels']['provider']) for r in rows if r['test'] == '/rack/$rack']")
  expect_eq "/rack/$rack ran on" "$got" "[('$host', '$rack', 'ssh')]"
  grep -q "rack $rack via 127.0.0.1 [0-9]* 127.0.0.1 $port" "$T/r1/junit.xml" \
    || fail "/rack/$rack did not run through $host's sshd"
done
expect_eq "facts in the labels" \
  "$(jsonl "$T/r1/results.jsonl" "sorted({(r['system']['labels']['arch'], r['system']['labels']['os'], r['system']['labels']['host'] in ('lab1','lab2','lab3')) for r in rows})")" \
  "[('$(uname -m)', 'linux', True)]"
grep -q "\[it's\]\[\$HOME\]\[a b\]\[;\]\[\`id\`\]" "$T/r1/junit.xml" || fail "arguments were not passed as they are"
expect_eq "work folders left on the hosts" "$(workdirs)" "$before"

# The example tests by path, with the pool from the command line.
rc=0; (cd "$T" && "$ATX" run --provisioner ssh:lab/pool.json "$ex" -o "$T/r1b" > "$T/r1b.log" 2>&1) \
  || rc=$?
cat "$T/r1b.log"
rc2=0; "$ATX" run -j 3 "$ex" -o "$T/l1b" > "$T/l1b.log" 2>&1 || rc2=$?
expect_eq "--provisioner ssh:POOL exit = local exit" "$rc" "$rc2"
q='sorted((r["test"], r["status"], r["attempt"], r["exit_code"]) for r in rows)'
expect_eq "examples over the pool = examples here" "$(jsonl "$T/r1b/results.jsonl" "$q")" \
  "$(jsonl "$T/l1b/results.jsonl" "$q")"
expect_eq "examples ran on" \
  "$(jsonl "$T/r1b/results.jsonl" "sorted({r['system']['labels']['provider'] for r in rows})")" "['ssh']"

# ---- 2. a host lost in the middle of a test ----
cat > "$T/tests/victim.sh" <<EOF
#!/bin/sh
if [ "\$ATX_TEST_ATTEMPT" = 1 ]; then
  echo "\$SSH_CONNECTION" > "$T/victim.where.tmp" && mv "$T/victim.where.tmp" "$T/victim.where"
  # Until the host is killed under it (bounded).
  i=0; while [ \$i -lt 600 ]; do sleep 0.1; i=\$((i + 1)); done
  exit 1
fi
echo "attempt \$ATX_TEST_ATTEMPT passes"
EOF
chmod +x "$T/tests/victim.sh"
cat > "$T/kill-plan.json" <<EOF
{"provisioners": [{"plugin": "ssh", "pool": "lab/pool.json"}],
 "tests": [{"name": "/victim", "command": ["$T/tests/victim.sh"], "duration": "1h"},
           {"name": "/short/1", "command": ["true"]},
           {"name": "/short/2", "command": ["true"]},
           {"name": "/short/3", "command": ["true"]}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
"$ATX" run --plan "$T/kill-plan.json" -o "$T/r2" > "$T/r2.log" 2>&1 &
runner=$!
wait_for "$T/victim.where" 60
port=$(awk '{print $4}' "$T/victim.where")
victim=
for h in lab1 lab2 lab3; do [ "$(cat "$T/peers/$h/port")" = "$port" ] && victim=$h; done
[ -n "$victim" ] || fail "the victim ran on no known host ($port)"
peer_kill "$victim"
pass "killed $victim (its sshd and its sessions) under /victim"
rc=0; wait $runner || rc=$?
cat "$T/r2.log"
expect_eq "run with a lost host exit" "$rc" 0
expect_eq "the lost attempt" \
  "$(jsonl "$T/r2/results.jsonl" "[(r['status'], r['final'], r['system']['id'].split('-')[0]) for r in rows if r['test'] == '/victim' and r['attempt'] == 1]")" \
  "[('infra', False, '$victim')]"
other=$(jsonl "$T/r2/results.jsonl" "[(r['status'], r['final'], r['system']['id'].split('-')[0] != '$victim') for r in rows if r['test'] == '/victim' and r['attempt'] == 2]")
expect_eq "the rerun elsewhere" "$other" "[('pass', True, True)]"
grep -q "ssh: host $victim quarantined for [0-9]*s: the connection of $victim-1 broke" "$T/r2.log" \
  || fail "no quarantine line for $victim"
expect_eq "every test has a final result" \
  "$(jsonl "$T/r2/results.jsonl" "sorted((r['test'], r['status']) for r in rows if r['final'])")" \
  "[('/short/1', 'pass'), ('/short/2', 'pass'), ('/short/3', 'pass'), ('/victim', 'pass')]"
peer_up "$victim"

# ---- 2b. a host that hangs: the others do not wait for it ----
silent_start ghost
cat > "$T/lab/ghost-pool.json" <<EOF
{"known_hosts": "known_hosts",
 "hosts": [
  {"name": "lab1", "address": "127.0.0.1", "port": $PORT_lab1, "identity": "../peers/client_key",
   "labels": {"rack": "a"}},
  {"name": "ghost", "address": "127.0.0.1", "port": $PORT_ghost, "identity": "../peers/client_key",
   "labels": {"rack": "g"}},
  {"name": "lab2", "address": "127.0.0.1", "port": $PORT_lab2, "identity": "../peers/client_key",
   "labels": {"rack": "b"}}]}
EOF
cat > "$T/ghost-plan.json" <<EOF
{"provisioners": [{"plugin": "ssh", "pool": "lab/ghost-pool.json", "connect_timeout": "1s",
                   "backoff": "500ms"}],
 "tests": [{"name": "/on/a", "command": ["true"], "requires": {"rack": "a"}},
           {"name": "/on/b", "command": ["true"], "requires": {"rack": "b"}},
           {"name": "/any/1", "command": ["true"]}, {"name": "/any/2", "command": ["true"]},
           {"name": "/any/3", "command": ["true"]},
           {"name": "/on/g", "command": ["true"], "requires": {"rack": "g"}}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
rc=0; "$ATX" run --plan "$T/ghost-plan.json" -o "$T/rg" > "$T/rg.log" 2>&1 || rc=$?
cat "$T/rg.log"
expect_eq "run with a hanging host exit (its test could not run)" "$rc" 3
expect_eq "results with a hanging host" \
  "$(jsonl "$T/rg/results.jsonl" "sorted((r['test'], r['status'], (r['system']['id'] or '-').split('-')[0] in ('lab1', 'lab2')) for r in rows)")" \
  "[('/any/1', 'pass', True), ('/any/2', 'pass', True), ('/any/3', 'pass', True), ('/on/a', 'pass', True), ('/on/b', 'pass', True), ('/on/g', 'infra', False)]"
grep -q "ssh: host ghost quarantined for 0.5s: cannot connect to host ghost (127.0.0.1:$PORT_ghost)" "$T/rg.log" \
  || fail "no quarantine line for the hanging host"
jsonl "$T/rg/results.jsonl" "[r['note'] for r in rows if r['test'] == '/on/g'][0]" \
  | grep -Eq "host ghost .*(Timeout|did not answer)" || fail "the note of /on/g does not say why"

# ---- 3. hosts with an unknown or a changed key are refused ----
cat > "$T/key-plan.json" <<EOF
{"provisioners": [{"plugin": "ssh", "pool": "lab/pool.json"}],
 "tests": [{"name": "/on/a", "command": ["true"], "requires": {"rack": "a"}},
           {"name": "/on/b", "command": ["true"], "requires": {"rack": "b"}},
           {"name": "/on/c", "command": ["true"], "requires": {"rack": "c"}}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
key_refused() {  # key_refused WHAT OUT: lab3 refused with one line naming it and its key
  local what=$1 out=$2 fp logins
  fp=$(peer_fingerprint lab3)
  logins=$(grep -c "Accepted publickey" "$T/peers/lab3/log" || true)
  rc=0; "$ATX" run --plan "$T/key-plan.json" -o "$T/$out" > "$T/$out.log" 2>&1 || rc=$?
  cat "$T/$out.log"
  expect_eq "$what: exit (lab3's test could not run)" "$rc" 3
  expect_eq "$what: one line from the plugin" \
    "$(grep -c "^atx: error: ssh: host lab3 (127.0.0.1:$PORT_lab3) presents an* $what ssh-ed25519 host key $fp" "$T/$out.log")" 1
  expect_eq "$what: results" \
    "$(jsonl "$T/$out/results.jsonl" "sorted((r['test'], r['status'], (r['system']['id'] or '-').split('-')[0]) for r in rows)")" \
    "[('/on/a', 'pass', 'lab1'), ('/on/b', 'pass', 'lab2'), ('/on/c', 'infra', '')]"
  jsonl "$T/$out/results.jsonl" "[r['note'] for r in rows if r['test'] == '/on/c'][0]" \
    | grep -q "host lab3 .*$what .*$fp" || fail "$what: the note of /on/c does not name lab3 and $fp"
  expect_eq "$what: logins on lab3" "$(grep -c "Accepted publickey" "$T/peers/lab3/log" || true)" "$logins"
}
grep -v ":$PORT_lab3 " "$T/peers/known_hosts" > "$T/lab/known_hosts"
key_refused unknown r3
cp "$T/peers/known_hosts" "$T/lab/known_hosts"
peer_rekey lab3
key_refused changed r4

# Skipping the check takes an explicit option, and says so.
cat > "$T/insecure-plan.json" <<EOF
{"provisioners": [{"plugin": "ssh", "pool": "lab/pool.json", "insecure_skip_host_key_check": true}],
 "tests": [{"name": "/on/c", "command": ["true"], "requires": {"rack": "c"}}],
 "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"}]}
EOF
rc=0; "$ATX" run --plan "$T/insecure-plan.json" -o "$T/r5" > "$T/r5.log" 2>&1 || rc=$?
expect_eq "insecure run exit" "$rc" 0
grep -q "warning: ssh: the host keys of lab1, lab2, lab3 are not verified" "$T/r5.log" \
  || fail "no warning for skipped host key checks: $(cat "$T/r5.log")"

# ---- bad pool files: one line naming the file and the key ----
printf '{"hosts": [{"name": "x", "address": "127.0.0.1", "slot": 2}]}\n' > "$T/lab/bad.json"
printf '{"provisioners": [{"plugin": "ssh", "pool": "lab/bad.json"}], "tests": [{"name": "/t", "command": ["true"]}]}\n' \
  > "$T/bad-plan.json"
rc=0; "$ATX" run --plan "$T/bad-plan.json" -o "$T/r6" > "$T/r6.log" 2>&1 || rc=$?
expect_eq "bad pool exit" "$rc" 2
grep -q "pool file $T/lab/bad.json: hosts\[0\]: unknown key 'slot'" "$T/r6.log" \
  || fail "no line naming the bad key: $(cat "$T/r6.log")"
pass "ssh provisioner"
