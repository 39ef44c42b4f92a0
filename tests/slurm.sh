# The slurm provisioner against a real Slurm cluster started here
# (tests/slurm/cluster.sh: munged, slurmctld, and two slurmd nodes in
# network namespaces of their own, n2 with the feature bigmem). A daemon
# that does not start fails the test with its log; it never skips.
. "$ATX_SRC/tests/lib.sh"
. "$ATX_SRC/tests/slurm/cluster.sh"

slurm_cluster_start "$T/cluster" n1:3:base n2:3:base,bigmem:1
# A failing check must not leave atx runs or the cluster behind: the runs
# go first (KILL: no release waits on a cluster that is going away).
trap 'kill -KILL $(jobs -p) 2>/dev/null || true; slurm_cluster_stop; wait; cleanup' EXIT

# our_jobs: the jobs atx holds now (any run of this host; not those whose
# processes Slurm is still ending, which scancel leaves COMPLETING a moment)
our_jobs() {
  squeue --noheader --states=PENDING,CONFIGURING,RUNNING,SUSPENDED --format='%i %j' |
    awk '$2 ~ /^atx-/ {print $1}'
}
notes() { jsonl "$1" '"; ".join("%s %s #%s: %s" % (r["test"], r["status"], r["attempt"], r["note"]) for r in rows)'; }
q='sorted((r["test"], r["status"], r["attempt"], -1 if r["exit_code"] is None else r["exit_code"]) for r in rows)'
mkdir -p "$T/nodes"

# ---- 1. the example tests and the fmf tree: the same results as here ----
ex="$ATX_SRC/examples/tests"
rc=0; "$ATX" run --provisioner slurm:main:4 "$ex" -o "$T/s1" -q 2> "$T/s1.err" || rc=$?
rc2=0; "$ATX" run -j 3 "$ex" -o "$T/l1" -q 2> "$T/l1.err" || rc2=$?
expect_eq "--provisioner slurm:main exit = local exit" "$rc" "$rc2"
expect_eq "examples over Slurm = examples here" "$(jsonl "$T/s1/results.jsonl" "$q")" \
  "$(jsonl "$T/l1/results.jsonl" "$q")"
expect_eq "examples ran on" \
  "$(jsonl "$T/s1/results.jsonl" "sorted({r['system']['labels']['provider'] for r in rows})")" "['slurm']"
expect_eq "allocations left by the examples" "$(our_jobs)" ""

cat > "$T/fmf.json" <<JSON
{"provisioners": [{"plugin": "slurm", "partition": "main", "slots": 4, "time_limit": "30m",
                   "salloc_options": ["--quiet"], "srun_options": ["--kill-on-bad-exit=1"],
                   "workdir": "$T/nodes", "labels": {"lab": "hpc"}}],
 "tests": [{"executor": "fmf", "tree": "$ATX_SRC/examples/fmf", "context": {"distro": "debian-12"}}]}
JSON
rc=0; "$ATX" run --plan "$T/fmf.json" -o "$T/s2" -q 2> "$T/s2.err" || rc=$?
rc2=0; "$ATX" run "$ATX_SRC/examples/fmf" -j 2 -c distro=debian-12 -o "$T/l2" -q 2> "$T/l2.err" || rc2=$?
expect_eq "fmf tree over a plan's slurm entry: exit = local exit" "$rc" "$rc2"
expect_eq "fmf tree over Slurm = fmf tree here" "$(jsonl "$T/s2/results.jsonl" "$q")" \
  "$(jsonl "$T/l2/results.jsonl" "$q")"
expect_eq "the lab label of the plan entry" \
  "$(jsonl "$T/s2/results.jsonl" "sorted({r['system']['labels'].get('lab') for r in rows if r['system']})")" "['hpc']"
rc=0; "$ATX" run --provisioner slurm:main:4 "$ATX_SRC/examples/fmf" -c distro=debian-12 -o "$T/s2b" -q \
  2> "$T/s2b.err" || rc=$?
expect_eq "fmf tree over --provisioner slurm: exit = local exit" "$rc" "$rc2"
expect_eq "fmf tree over --provisioner slurm = fmf tree here" "$(jsonl "$T/s2b/results.jsonl" "$q")" \
  "$(jsonl "$T/l2/results.jsonl" "$q")"
expect_eq "work folders left on the nodes" "$(ls -A "$T/nodes")" ""
expect_eq "allocations left by the fmf run" "$(our_jobs)" ""

# ---- 2. labels, and a feature chooses the node ----
cat > "$T/feat.json" <<JSON
{"provisioners": [{"plugin": "slurm", "slots": 4, "workdir": "$T/nodes"}],
 "tests": [
   {"name": "/big/1", "command": ["hostname"], "requires": {"feature.bigmem": "yes"}},
   {"name": "/big/2", "command": ["hostname"], "requires": {"feature.bigmem": "yes"}},
   {"name": "/big/3", "command": ["hostname"], "requires": {"feature.bigmem": "yes", "partition": "main"}},
   {"name": "/any/1", "command": ["hostname"]},
   {"name": "/any/2", "command": ["hostname"], "requires": {"feature.base": "yes"}},
   {"name": "/gpu", "command": ["true"], "requires": {"feature.gpu": "yes"}},
   {"name": "/fpga/1", "command": ["$T/tests/fpga.sh"], "requires": {"gres.fpga": "1"}},
   {"name": "/fpga/2", "command": ["$T/tests/fpga.sh"], "requires": {"gres.fpga": "1"}}]}
JSON
# n2's one fpga: an allocation holds it, so two tests needing it never overlap.
mktest fpga.sh "mkdir '$T/fpga.lock' || exit 1; sleep 0.5; rmdir '$T/fpga.lock'"
rc=0; "$ATX" run --plan "$T/feat.json" -o "$T/s3" -q 2> "$T/s3.err" || rc=$?
expect_eq "exit code (one test requires a feature no node has)" "$rc" 1
expect_eq "the tests requiring the fpga (one at a time)" \
  "$(jsonl "$T/s3/results.jsonl" "sorted({(r['status'], r['system']['labels']['node'], r['system']['labels']['gres.fpga']) for r in rows if r['test'].startswith('/fpga/')})")" \
  "[('pass', 'n2', '1')]"
expect_eq "nodes of the tests requiring bigmem" \
  "$(jsonl "$T/s3/results.jsonl" "sorted({(r['status'], r['system']['labels']['node']) for r in rows if r['test'].startswith('/big/')})")" \
  "[('pass', 'n2')]"
grep -q '"node":"n2"' "$T/s3/results.jsonl" || fail "no node label"
jsonl "$T/s3/results.jsonl" '[r for r in rows if r["test"] == "/gpu"][0]["note"]' | grep -q "feature.gpu" ||
  fail "/gpu: $(notes "$T/s3/results.jsonl")"
/usr/bin/python3 - "$T/s3/results.jsonl" "$(uname -m)" <<'PY' || fail "system labels in results.jsonl are wrong"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["test"] == "/big/1":
        l = r["system"]["labels"]
        want = {"provider": "slurm", "partition": "main", "features": "base,bigmem",
                "feature.base": "yes", "feature.bigmem": "yes", "node": "n2", "hostname": "n2",
                "arch": sys.argv[2], "os": "linux"}
        bad = {k: l.get(k) for k in want if l.get(k) != want[k]}
        assert not bad, bad
        assert l.get("distro") and l.get("slurm_job"), l
PY
pass "labels: Slurm's (partition, features, node, job) and the probe's (arch, distro)"

# ---- 3. the job cancelled under a running test: infra, then a pass elsewhere ----
mktest victim.sh "[ -e '$T/started' ] && exit 0
echo \"\$SLURM_JOB_ID\" > '$T/started.tmp' && mv '$T/started.tmp' '$T/started'
sleep 60"
cat > "$T/cancel.json" <<JSON
{"provisioners": [{"plugin": "slurm", "slots": 1, "workdir": "$T/nodes"}],
 "tests": [{"name": "/victim", "command": ["$T/tests/victim.sh"]}]}
JSON
rc=0
timeout 300 "$ATX" run --plan "$T/cancel.json" -o "$T/s4" -q 2> "$T/s4.err" & pid=$!
wait_for "$T/started" 60
job=$(cat "$T/started")
[ -n "$job" ] || fail "the test did not see its job id"
scancel "$job"
wait $pid || rc=$?
expect_eq "exit code after the job was cancelled" "$rc" 0
expect_eq "attempts (the second on another allocation)" \
  "$(jsonl "$T/s4/results.jsonl" '[(r["attempt"], r["status"], r["final"], r["system"]["labels"]["slurm_job"] != "'"$job"'") for r in rows]')" \
  "[(1, 'infra', False, False), (2, 'pass', True, True)]"
jsonl "$T/s4/results.jsonl" 'rows[0]["note"]' | grep -qi "agent\|lost\|connection" ||
  fail "the infra attempt says why: $(notes "$T/s4/results.jsonl")"
expect_eq "allocations left after the cancel" "$(our_jobs)" ""
expect_eq "processes left on the nodes" "$(left_behind "$T/tests/victim.sh")" ""

# ---- 4. a node set down under a running test: the same ----
rm -f "$T/started"
mktest victim.sh "[ -e '$T/started' ] && exit 0
hostname > '$T/started.tmp' && mv '$T/started.tmp' '$T/started'
sleep 60"
rc=0
timeout 300 "$ATX" run --plan "$T/cancel.json" -o "$T/s5" -q 2> "$T/s5.err" & pid=$!
wait_for "$T/started" 60
node=$(cat "$T/started")
case $node in n1|n2) ;; *) fail "the test ran on '$node', not a node" ;; esac
scontrol update NodeName="$node" State=DOWN Reason=atx-test
wait $pid || rc=$?
scontrol update NodeName="$node" State=RESUME
expect_eq "exit code after the node went down" "$rc" 0
expect_eq "attempts (the second on the other node)" \
  "$(jsonl "$T/s5/results.jsonl" '[(r["attempt"], r["status"], r["system"]["labels"]["node"] != "'"$node"'") for r in rows]')" \
  "[(1, 'infra', False), (2, 'pass', True)]"
expect_eq "allocations left after the node went down" "$(our_jobs)" ""
# Only the folders of the two lost leases may be left (no job reaches them
# once theirs ended); every other lease removed its own.
[ "$(ls -A "$T/nodes" | wc -l)" -le 2 ] || fail "work folders left: $(ls -A "$T/nodes")"

# ---- 5. a run killed outright: the next start cancels its allocation ----
rm -f "$T/started"
"$ATX" run --plan "$T/cancel.json" -o "$T/s6" -q 2> "$T/s6.err" & pid=$!
wait_for "$T/started" 60
kill -KILL $pid; wait $pid 2>/dev/null || true
[ -n "$(our_jobs)" ] || fail "the killed run held no allocation"
"$ATX" run --plan "$T/cancel.json" -o "$T/s7" -q 2> "$T/s7.err" || fail "the run after a killed one failed: $(cat "$T/s7.err")"
expect_eq "allocations left by a killed run, after the next run" "$(our_jobs)" ""

# ---- 6. bad configurations: one line each ----
bad() {  # bad WHAT WANT-PATTERN [VAR=VALUE] ATX-ARGS...: not exit 0, one line naming it
  local what=$1 want=$2 rc=0; shift 2
  env ${BAD_ENV:-} "$ATX" run "$@" -o "$T/bad" -q > /dev/null 2> "$T/bad.err" || rc=$?
  [ "$rc" != 0 ] || fail "$what: exit 0"
  grep -q -- "$want" "$T/bad.err" || fail "$what: no '$want' in: $(cat "$T/bad.err")"
  pass "$what: exit $rc, $(grep -m1 -- "$want" "$T/bad.err")"
  rm -rf "$T/bad"
}
bad "an unknown partition" "no node of partition nosuch" --provisioner slurm:nosuch "$ex"
bad "a bad slot count" "slurm:PARTITION:N takes N" --provisioner slurm:main:0 "$ex"
BAD_ENV=PATH=/nonexistent bad "no Slurm commands" "cannot run sinfo" --provisioner slurm "$ex"
