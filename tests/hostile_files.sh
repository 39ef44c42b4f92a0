# Files taken from a system are regular files only: a test whose JUnit
# report is a link to a secret gets neither the link nor the secret into its
# results, and a report made setuid comes back 0755 without the bit. On a
# local slot (cgroups: copied on this host; an agent), over SSH and in a
# podman container.
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/ssh/peers.sh"
export ATX_PLUGIN_PATH="$ATX_PLUGIN_DIR"
trap 'peers_stop; cleanup' EXIT

peers_init "$T/peers"
peer_start lab1
peer_trust lab1
cat > "$T/pool.json" <<EOF2
{"known_hosts": "$T/peers/known_hosts",
 "hosts": [{"name": "lab1", "address": "127.0.0.1", "port": $PORT_lab1, "user": "root",
            "identity": "$T/peers/client_key"}]}
EOF2

secret="atx-secret-$$-$RANDOM"
max_ms=5000
[ -z "${ATX_SANITIZE:-}" ] || max_ms=30000
report='<testsuite name="s"><testcase name="ok"/></testsuite>'
# Each system has a secret of its own; the link points at it.
link_cmd="echo $secret > /tmp/$secret && ln -sf /tmp/$secret report.xml; ln -sf /tmp/$secret other.xml"
suid_cmd="printf '%s' '$report' > suid.xml && chmod 6755 suid.xml"

plan() {
  python3 - "$1" "$link_cmd" "$suid_cmd" <<'PY'
import json, sys
print(json.dumps({
    "provisioners": [json.loads(sys.argv[1])],
    "tests": [{"name": "/link", "executor": "junitxml", "command": ["sh", "-c", sys.argv[2]],
               "report": "report.xml"},
              {"name": "/suid", "executor": "junitxml", "command": ["sh", "-c", sys.argv[3]],
               "report": "suid.xml"},
              {"name": "/sparse", "executor": "junitxml",
               "command": ["sh", "-c", "truncate -s 200G big.xml 2>/dev/null || dd if=/dev/null of=big.xml bs=1 seek=200G 2>/dev/null"],
               "report": "big.xml"},
              {"name": "/same", "executor": "tap",
               "command": ["sh", "-c", "echo 1..20000; seq 20000 | sed 's/.*/ok & - same/'"]}],
    "aggregators": [{"plugin": "jsonl", "path": "results.jsonl"},
                    {"plugin": "junit", "path": "junit.xml"}]}))
PY
}

taken() {  # taken NAME PROVISIONER-JSON
  local name=$1 rc=0 out="$T/out-$1"
  plan "$2" > "$T/plan-$name.json"
  local t0=$(date +%s%N)
  "$ATX" run --plan "$T/plan-$name.json" -o "$out" -q > "$T/$name.log" 2>&1 || rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  # The whole run, 20,000 points named alike included (quadratic naming
  # took 17 s for 3,000); a sanitizer build is several times slower.
  echo "$name: the whole run took $ms ms"
  [ "$ms" -lt "${max_ms:-5000}" ] || fail "$name: the run took $ms ms"
  cat "$T/$name.log"
  expect_eq "$name: exit code (the linked and the sparse reports are errors)" "$rc" 1
  python3 - "$out/results.jsonl" <<'PY' || fail "$name: the results are not as expected"
import json, sys
rows = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if not r.get("subtest"):
        rows[r["test"]] = r
link, suid, same = rows["/link"], rows["/suid"], rows["/same"]
assert (link["status"], link["error_type"]) == ("error", "junit-report"), link
assert "report.xml" in link["note"] and "symbolic link" in link["note"], link["note"]
assert suid["status"] == "pass", suid
sparse = rows["/sparse"]
assert (sparse["status"], sparse["error_type"]) == ("error", "junit-report"), sparse
assert "longer than 64 MiB" in sparse["note"], sparse["note"]
names = [json.loads(l)["subtest"] for l in open(sys.argv[1]) if json.loads(l)["test"] == "/same"]
names = [n for n in names if n]
assert len(names) == 20000 and len(set(names)) == 20000, (len(names), len(set(names)))
assert same["status"] == "pass" and same["duration"] < 2.0, same
print("link:", link["note"])
print("20,000 TAP points named alike: unique, the attempt took %.3f s" % same["duration"])
PY
  [ -z "$(find "$out" -type l)" ] || fail "$name: a link in the results: $(find "$out" -type l)"
  [ -z "$(find "$out" -size +64M)" ] || fail "$name: a huge file in the results: $(find "$out" -size +64M)"
  [ -z "$(find "$out" -perm /7000)" ] || fail "$name: setuid/setgid/sticky: $(find "$out" -perm /7000)"
  ! grep -rq "$secret" "$out" || fail "$name: the secret reached the results: $(grep -rl "$secret" "$out")"
  local kept
  kept=$(find "$out" -name junit-report.xml -perm 0755 | wc -l)
  expect_eq "$name: the setuid report kept as 0755" "$kept" 1
  pass "$name: no link, no setuid bit, no secret in the results"
}

taken local-cgroup '{"plugin": "local", "slots": 1, "containment": "cgroup"}'
taken local-agent '{"plugin": "local", "slots": 1, "containment": "agent"}'
taken ssh '{"plugin": "ssh", "pool": "'"$T/pool.json"'"}'
. "$ATX_SRC/tests/podman/image.sh"
taken podman '{"plugin": "podman", "image": "'"$IMG"'", "slots": 1}'
rm -f "/tmp/$secret"
