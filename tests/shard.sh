# Shards (issue 14): atx list/run --shard K/N. A 400-test plan with
# lognormal declared durations split in 4: every test in exactly one shard,
# the same split whatever the plan's order, the largest shard's expected
# total within 5 % of the mean; tests without an estimate dealt evenly; a
# learnt duration beats the declared one; a shard run runs its share and
# keeps "K/N" in its journal; a resumed shard keeps its tests although the
# history changed; bad K/N is one line and exit 2.
. "$ATX_SRC/tests/lib.sh"

PY=/usr/bin/python3

# The plan, twice: as generated and shuffled (the split must not care).
$PY - "$T" <<'PYEOF'
import json, random, sys
random.seed(1414)
tests = [{"name": "/lognormal/%03d" % i, "command": ["true"],
          "duration": "%ds" % max(1, round(random.lognormvariate(3.0, 1.0)))}
         for i in range(400)]
json.dump({"tests": tests}, open(sys.argv[1] + "/plan.json", "w"))
random.shuffle(tests)
json.dump({"tests": tests}, open(sys.argv[1] + "/shuffled.json", "w"))
PYEOF

list_json() {  # list_json OUT ARGS...: atx list --format json ARGS > OUT
  local out=$1 rc=0
  shift
  timeout 60 "$ATX" list --format json "$@" > "$out" 2> "$T/list.err" || rc=$?
  [ "$rc" = 0 ] || { cat "$T/list.err"; fail "atx list $*: exit $rc"; }
}
list_json "$T/all.json" --plan "$T/plan.json"
for k in 1 2 3 4; do
  list_json "$T/s$k.json" --plan "$T/plan.json" --shard $k/4
  list_json "$T/x$k.json" --plan "$T/shuffled.json" --shard $k/4
done
"$ATX" list --plan "$T/plan.json" --shard 3/4 > "$T/s3.txt" 2> "$T/s3.err"
cat "$T/s3.err"
grep -q "^atx: shard 3/4: [0-9]* of 400 tests, expected [0-9.]*s$" "$T/s3.err" ||
  fail "atx list --shard gives no expected total on stderr"

$PY - "$T" <<'PYEOF' || fail "the 400-test split"
import json, sys
T = sys.argv[1]
load = lambda p: json.load(open(p))
every = sorted(t["name"] for t in load(T + "/all.json"))
assert len(every) == 400, len(every)
shards = [load("%s/s%d.json" % (T, k)) for k in range(1, 5)]
names = [t["name"] for s in shards for t in s]
assert sorted(names) == every, "tests missing or doubled over the 4 shards"
for k in range(1, 5):
    a = [t["name"] for t in load("%s/s%d.json" % (T, k))]
    b = [t["name"] for t in load("%s/x%d.json" % (T, k))]
    assert sorted(a) == sorted(b), "shard %d depends on the plan's order" % k
for s in shards:
    for t in s:
        assert t["expected"] == t["duration"], t
totals = [sum(t["expected"] for t in s) for s in shards]
mean = sum(totals) / 4
ratio = max(totals) / mean
print("shard totals %s s, mean %.1f s, largest / mean = %.4f" % (totals, mean, ratio))
assert ratio <= 1.05, ratio
PYEOF
[ "$(sort "$T/s3.txt")" = "$($PY -c 'import json,sys; print("\n".join(sorted(t["name"] for t in json.load(open(sys.argv[1])))))' "$T/s3.json")" ] ||
  fail "the text and JSON listings of shard 3 differ"
pass "400 tests in 4 shards: each once, balanced, independent of the plan's order"

# Tests without an estimate (no duration declared, none learnt) beside a few
# with one: dealt so that the counts differ by one at most.
$PY - "$T/mixed.json" <<'PYEOF'
import json, sys
tests = [{"name": "/unknown/%02d" % i, "command": ["true"]} for i in range(23)]
tests += [{"name": "/known/%d" % i, "command": ["true"], "duration": "%ds" % (10 * i + 5)}
          for i in range(5)]
json.dump({"tests": tests}, open(sys.argv[1], "w"))
PYEOF
for k in 1 2 3 4; do list_json "$T/m$k.json" --plan "$T/mixed.json" --shard $k/4 --no-history; done
$PY - "$T" <<'PYEOF' || fail "tests without an estimate"
import json, sys
shards = [json.load(open("%s/m%d.json" % (sys.argv[1], k))) for k in range(1, 5)]
unknown = [sum(1 for t in s if t["expected"] is None) for s in shards]
print("tests without an estimate per shard: %s" % unknown)
assert sum(unknown) == 23 and max(unknown) - min(unknown) <= 1, unknown
assert sorted(t["name"] for s in shards for t in s) == sorted(
    ["/unknown/%02d" % i for i in range(23)] + ["/known/%d" % i for i in range(5)])
PYEOF
pass "tests without an estimate spread evenly"

# A shard run: its share only, "K/N" in its journal; the history it leaves
# (each test well under its declared 100 s) is what the next split uses.
mkdir -p "$T/gate"
$PY - "$T/small.json" "$T/gate" <<'PYEOF'
import json, sys
gate = sys.argv[2]
tests = [{"name": "/small/%d" % i, "command": ["true"], "duration": "%ds" % (100 + i)}
         for i in range(6)]
# Waits (bounded) for the gate file; declared longest, so LPT puts it first
# in shard 1 of 2.
tests.append({"name": "/small/gated", "duration": "200s", "command":
              ["sh", "-c", "touch %s/started; i=0; while [ ! -e %s/open ]; do "
               "i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.05; done" % (gate, gate)]})
json.dump({"tests": tests, "policy": {"timeout": "2m"}}, open(sys.argv[1], "w"))
PYEOF
list_json "$T/before1.json" --plan "$T/small.json" --shard 1/2
list_json "$T/before2.json" --plan "$T/small.json" --shard 2/2
touch "$T/gate/open"
rc=0
timeout 120 "$ATX" run --plan "$T/small.json" --shard 2/2 -o "$T/run2" -q \
  --provisioner local:2 > "$T/run2.out" 2>&1 || rc=$?
cat "$T/run2.out"
expect_eq "atx run --shard 2/2: exit" "$rc" 0
$PY - "$T" <<'PYEOF' || fail "the shard run"
import json, sqlite3, sys
T = sys.argv[1]
want = sorted(t["name"] for t in json.load(open(T + "/before2.json")))
got = sorted(json.loads(l)["test"] for l in open(T + "/run2/results.jsonl"))
assert got == want, (got, want)
db = sqlite3.connect("file:%s/run2/journal.db?mode=ro" % T, uri=True)
meta = dict(db.execute("SELECT key, value FROM meta"))
assert meta.get("shard") == "2/2", meta.get("shard")
PYEOF
list_json "$T/after.json" --plan "$T/small.json"
$PY - "$T" <<'PYEOF' || fail "learnt durations"
import json, sys
T = sys.argv[1]
ran = set(t["name"] for t in json.load(open(T + "/before2.json")))
for t in json.load(open(T + "/after.json")):
    if t["name"] in ran:
        assert t["expected"] is not None and 0 < t["expected"] < 50, t
    else:
        assert t["expected"] == t["duration"], t
PYEOF
pass "a shard run runs its share, keeps 2/2 in its journal; learnt durations beat declared ones"

# A resumed shard keeps the tests it started with, although the history
# has changed the split since (a whole run in between learns every test).
rm -f "$T/gate/open" "$T/gate/started"
list_json "$T/before1.json" --plan "$T/small.json" --shard 1/2
timeout 120 "$ATX" run --plan "$T/small.json" --shard 1/2 -o "$T/run1" -q \
  --provisioner local:1 > "$T/run1.out" 2>&1 &
pid=$!
wait_for "$T/gate/started" 60
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
cat "$T/run1.out"
[ "$rc" != 0 ] || fail "the cancelled shard run exited 0"
touch "$T/gate/open"
timeout 120 "$ATX" run --plan "$T/small.json" -o "$T/whole" -q > /dev/null 2>&1 ||
  fail "the whole plan"
list_json "$T/now1.json" --plan "$T/small.json" --shard 1/2
names() { $PY -c 'import json,sys; print(sorted(t["name"] for t in json.load(open(sys.argv[1]))))' "$1"; }
echo "shard 1/2 when started: $(names "$T/before1.json")"
echo "shard 1/2 now:          $(names "$T/now1.json")"
[ "$(names "$T/before1.json")" != "$(names "$T/now1.json")" ] ||
  fail "the history did not change the split: the resume below proves nothing"
rc=0
timeout 120 "$ATX" run --resume "$T/run1" -q > "$T/resume.out" 2>&1 || rc=$?
cat "$T/resume.out"
expect_eq "atx run --resume of a shard: exit" "$rc" 0
$PY - "$T" <<'PYEOF' || fail "the resumed shard"
import json, sys
T = sys.argv[1]
want = sorted(t["name"] for t in json.load(open(T + "/before1.json")))
final = {}
for l in open(T + "/run1/results.jsonl"):
    r = json.loads(l)
    if r["subtest"] is None and r["final"]:
        final[r["test"]] = r["status"]
assert sorted(final) == want, (sorted(final), want)
assert final["/small/gated"] == "pass", final
PYEOF
rc=0; "$ATX" run --resume "$T/run1" --shard 2/2 > /dev/null 2> "$T/e" || rc=$?
expect_eq "--resume with another --shard: exit" "$rc" 2
pass "a resumed shard keeps its tests"

# Bad K/N: one line naming the option, exit 2.
for bad in 0/4 5/4 1/0 0/0 a/4 4/b 2/4x " 2/4" +1/4 -1/4 2/ /4 2 1//4 "" 99999999999999999999/4; do
  for cmd in run list; do
    rc=0
    "$ATX" $cmd --plan "$T/plan.json" --shard "$bad" -o "$T/bad" > "$T/o" 2> "$T/e" || rc=$?
    expect_eq "atx $cmd --shard '$bad': exit" "$rc" 2
    head -n 1 "$T/e" | grep -qF -- "--shard takes K/N" || fail "atx $cmd --shard '$bad': $(cat "$T/e")"
    [ ! -s "$T/o" ] || fail "atx $cmd --shard '$bad' wrote to stdout"
  done
done
[ ! -e "$T/bad" ] || fail "a bad --shard made a results folder"
pass "bad K/N refused with one line, exit 2"
