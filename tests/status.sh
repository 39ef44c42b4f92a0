#!/usr/bin/env bash
# The status aggregator: every result is POSTed to each endpoint as it
# arrives. Two live servers must receive all results (final, right names,
# the configured header); a server that accepts and never answers, a port
# with nothing listening and a server too slow to keep up (0.1 s a request)
# must not slow the run by more than one timeout (measured against the same
# run without them), and each is named in one warning with the number of
# results it missed. With no live endpoint
# at all, the aggregator fails the run (exit 3) in one error line.
. "$ATX_SRC/tests/lib.sh"
SERVER="$ATX_SRC/tests/status/server.py"
N=50
TIMEOUT_S=1
MARGIN_MS=2000

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; cleanup' EXIT
python3 "$SERVER" --port-file live1.port --record live1.jsonl --header X-Status-Token &
pids+=($!)
python3 "$SERVER" --port-file live2.port --record live2.jsonl &
pids+=($!)
python3 "$SERVER" --port-file hang.port --hang &
pids+=($!)
python3 "$SERVER" --port-file slow.port --record slow.jsonl --delay 0.1 &
pids+=($!)
wait_for live1.port 20
wait_for live2.port 20
wait_for hang.port 20
wait_for slow.port 20
LIVE1="http://127.0.0.1:$(cat live1.port)/results"
LIVE2="http://127.0.0.1:$(cat live2.port)/results"
HANG="http://127.0.0.1:$(cat hang.port)/results"
SLOW="http://127.0.0.1:$(cat slow.port)/results"
# A port nothing listens on: bound once, then closed.
REFUSED="http://127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')/results"

# plan FILE ENDPOINT...: N quick passing tests, the status aggregator posting to the endpoints.
plan() {
    local file=$1
    shift
    python3 - "$file" "$N" "$TIMEOUT_S" "$@" <<'PY'
import json, sys
file, n, timeout, eps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
json.dump({"provisioners": [{"plugin": "local", "slots": 4}],
           "tests": [{"name": "/status/t%03d" % i, "command": ["true"]} for i in range(n)],
           "aggregators": [{"plugin": "status", "endpoints": eps, "timeout": timeout + "s",
                            "retries": 2, "headers": {"X-Status-Token": "token-123"}}]},
          open(file, "w"))
PY
}

# run NAME ENDPOINT...: atx run of the plan, wall time in ms to NAME.ms, exit code in rc
run() {
    local name=$1
    shift
    plan "$name.json" "$@"
    local t0 t1
    rc=0
    t0=$(date +%s%N)
    timeout 120 "$ATX" run --plan "$name.json" -o "$name" --no-history > "$name.out" 2>&1 || rc=$?
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 )) > "$name.ms"
    echo "--- $name: exit $rc in $(cat "$name.ms") ms"
    grep -i status "$name.out" || true
}

# received FILE RUNDIR: FILE holds exactly the N final results of one run (RUNDIR)
received() {
    python3 - "$1" "$2" "$N" <<'PY' || fail "$1 did not receive the results of $2"
import json, os, sys
path, rundir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(path)]
assert len({r["run"] for r in rows}) == 1, "results of several runs"
names = sorted(r["test"] for r in rows)
assert names == ["/status/t%03d" % i for i in range(n)], "got %d rows: %r" % (len(names), names[:5])
for r in rows:
    assert r["final"] is True and r["status"] == "pass" and r["attempt"] == 1, r
    assert r["subtest"] is None and r["system"]["id"] and r["started"].endswith("Z"), r
    assert isinstance(r["duration"], float) and r["exit_code"] == 0, r
assert sorted(r["seq"] for r in rows) == list(range(1, n + 1)), "seq numbers"
print("ok: %s holds the %d final results of run %s" % (os.path.basename(path), n, rows[0]["run"]))
PY
}

# --- baseline: two live endpoints ---
run base "$LIVE1" "$LIVE2"
expect_eq "baseline exit code" "$rc" 0
received live1.jsonl base
received live2.jsonl base
python3 -c "
import json
rows = [json.loads(l) for l in open('live1.jsonl')]
assert all(r['_header'] == 'token-123' for r in rows), rows[0]"
pass "the configured header reaches the server"
grep -q "warning" base.out && fail "warnings in the baseline run: $(cat base.out)"
base_ms=$(cat base.ms)

# --- the same with a hanging, a refusing and a slow endpoint ---
: > live1.jsonl
: > live2.jsonl
run dead "$LIVE1" "$HANG" "$REFUSED" "$SLOW" "$LIVE2"
expect_eq "exit code with dead endpoints" "$rc" 0
received live1.jsonl dead
received live2.jsonl dead
dead_ms=$(cat dead.ms)
limit=$(( base_ms + TIMEOUT_S * 1000 + MARGIN_MS ))
echo "baseline ${base_ms} ms, with dead endpoints ${dead_ms} ms, limit ${limit} ms"
[ "$dead_ms" -le "$limit" ] || fail "dead endpoints slowed the run: ${dead_ms} ms > ${limit} ms"
pass "dead endpoints cost $(( dead_ms - base_ms )) ms (timeout ${TIMEOUT_S}s)"
for ep in "$HANG" "$REFUSED"; do
    expect_eq "warning lines naming $ep" "$(grep -cF "$ep" dead.out)" 1
    grep -F "$ep" dead.out | grep -Eq "of $N results dropped" ||
        fail "the warning does not count drops: $(grep -F "$ep" dead.out)"
done
grep -F "$HANG" dead.out | grep -q "no answer within 1.000s" || fail "$(grep -F "$HANG" dead.out)"
grep -F "$REFUSED" dead.out | grep -qi "connect" || fail "$(grep -F "$REFUSED" dead.out)"
grep -qF "$LIVE1" dead.out && fail "a live endpoint was warned about: $(cat dead.out)"
pass "each dead endpoint named once, with its drop count"
# The slow one got what it could take in about one timeout; the warning
# counts the rest.
wait_grep slow.jsonl '"test"' 5
got=$(wc -l < slow.jsonl)
expect_eq "warning lines naming the slow endpoint" "$(grep -cF "$SLOW" dead.out)" 1
dropped=$(grep -F "$SLOW" dead.out | sed -n 's/.*: \([0-9]*\) of '"$N"' results dropped.*/\1/p')
grep -F "$SLOW" dead.out | grep -q "not drained within 1.000s" || fail "$(grep -F "$SLOW" dead.out)"
[ "$got" -gt 0 ] && [ "$got" -lt "$N" ] || fail "the slow endpoint received $got of $N"
# The request in flight when end gave up may have reached the server.
[ $(( got + dropped )) -ge "$N" ] && [ $(( got + dropped )) -le $(( N + 1 )) ] ||
    fail "slow endpoint: $got received + $dropped dropped, want $N"
pass "the slow endpoint received $got results, $dropped counted as dropped"

# --- nothing alive: the aggregator fails the run in one line ---
run none "$HANG" "$REFUSED"
expect_eq "exit code with no live endpoint" "$rc" 3
none_ms=$(cat none.ms)
[ "$none_ms" -le "$limit" ] || fail "no live endpoint: ${none_ms} ms > ${limit} ms"
expect_eq "error lines" "$(grep -c "no endpoint received any of the $N results" none.out)" 1
pass "no live endpoint: exit 3 in ${none_ms} ms, one error line"
