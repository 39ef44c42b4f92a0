# Hostile fmf tests, run for real through `atx run` (DESIGN.md §10): a test
# that abuses the control channel costs atx bounded memory and makes no file
# it was refused; a test that prints hundreds of megabytes leaves its head, a
# marker and its tail on disk, no more.
. "$ATX_SRC/tests/lib.sh"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
# A partial result of exactly 16 MiB of JSON: a list of small objects, which
# json-c would hold in about 4 GB.
cat > "$tree/partial.sh" <<'SH'
k=5592397   # 21 + 3k + 4 = 16777216
for i in 1 2 3 4; do
    {
        printf 'result 16777216\n{"partial":true,"x":['
        yes '{},' | head -n $k | tr -d '\n'
        printf '{}]}'
    } >&$ATEX_TEST_CONTROL
done
SH
cat > "$tree/main.fmf" <<'FMF'
duration: 2m
/partials:
    test: |
        j='{"name": "kept", "status": "pass"}'
        printf 'result %d\n%s' ${#j} "$j" >&$ATEX_TEST_CONTROL
        bash ./partial.sh
        sleep 60
/deep:
    test: |
        { printf 'result 200000\n'; head -c 200000 /dev/zero | tr '\0' '['; } >&$ATEX_TEST_CONTROL
        sleep 60
/huge-file:
    test: |
        j='{"files": [{"name": "a", "length": 1}, {"name": "b", "length": 9223372036854775807}]}'
        printf 'result %d\n%s' ${#j} "$j" >&$ATEX_TEST_CONTROL
        sleep 60
/many-files:
    test: |
        j='{"name": "first", "files": [{"name": "log", "length": 3}]}'
        printf 'result %d\n%sabc' ${#j} "$j" >&$ATEX_TEST_CONTROL
        j=$(printf '{"files": ['; seq -f '{"name": "f%g", "length": 0},' 1 20000 | tr -d '\n';
            printf '{"name": "last", "length": 0}]}')
        printf 'result %d\n%s' ${#j} "$j" >&$ATEX_TEST_CONTROL
        sleep 60
/loud:
    test: seq 1 35000000
/fine:
    test: echo fine
FMF

# Peak RSS of atx (the largest process it waited for, the tests included).
start=$(date +%s)
python3 - "$ATX" "$tree" "$T/out" > "$T/rss" <<'PY'
import resource, subprocess, sys
rc = subprocess.run([sys.argv[1], "run", sys.argv[2], "-j", "2", "-o", sys.argv[3], "-q"]).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
read -r rc rss < "$T/rss"
took=$(( $(date +%s) - start ))
expect_eq "exit code" "$rc" 1
echo "atx run: peak RSS $((rss / 1024)) MiB, ${took}s"
[ "$rss" -lt $((300 * 1024)) ] || fail "peak RSS ${rss} KiB, over 300 MB"
[ "$took" -lt 60 ] || fail "refused tests were not stopped (${took}s)"

python3 - "$T/out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = {}
for r in map(json.loads, open(os.path.join(out, "results.jsonl"))):
    rows[(r["test"], r["subtest"])] = r

def files(test):
    d = os.path.join(out, "tests", test.lstrip("/"), "attempt-1", "files")
    return sorted(os.path.relpath(os.path.join(root, n), d)
                  for root, dirs, names in os.walk(d) for n in names + dirs)

def refused(test, words, want_files):
    r = rows[(test, None)]
    assert r["status"] == "infra", r
    for w in words:
        assert w in r["note"], (test, w, r["note"])
    got = files(test)
    assert got == want_files, (test, got, want_files)
    print("ok:", test, "->", r["note"])

refused("/partials", ["16777216 bytes of JSON would take about", "MiB parsed"], ["output.txt"])
assert rows[("/partials", "kept")]["status"] == "pass"
refused("/deep", ["nested deeper than 64"], ["output.txt"])
refused("/huge-file", ["declares 9223372036854775807 bytes"], ["output.txt"])
refused("/many-files", ["more than 10000 files and folders"], ["first", "first/log", "output.txt"])
with open(os.path.join(out, "tests/many-files/attempt-1/files/first/log")) as f:
    assert f.read() == "abc"
assert rows[("/fine", None)]["status"] == "pass"
print("ok: what was recorded before a refusal is kept")
PY

# The loud test's output: head, marker, tail; little on disk.
python3 - "$T/out/tests/loud/attempt-1/files/output.txt" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read()
total = sum(len(str(i)) + 1 for i in range(1, 35000001))
m = re.search(rb"\n\[\.\.\. (\d+) bytes omitted \.\.\.\]\n", data)
assert m, "no marker"
head, tail = data[:m.start()], data[m.end():]
assert len(head) == len(tail) == 8 << 20, (len(head), len(tail))
assert int(m.group(1)) + len(head) + len(tail) == total, (m.group(1), total)
# The head from 1 on, the tail in order up to the last number.
h = head.split(b"\n")
assert h[:-1] == [str(i).encode() for i in range(1, len(h))], "head out of order"
t = tail.split(b"\n")
assert t[-1] == b"" and t[-2] == b"35000000", t[-3:]
first = 35000000 - len(t) + 3
assert t[1:-1] == [str(i).encode() for i in range(first, 35000001)], "tail out of order"
print("ok: output.txt is head, marker and tail:", len(data), "bytes,", m.group(1), "omitted")
PY
du=$(du -sk "$T/out" "$XDG_STATE_HOME" 2>/dev/null | awk '{s += $1} END {print s}')
echo "on disk after the run: ${du} KiB"
[ "$du" -lt $((40 * 1000)) ] || fail "the run keeps ${du} KiB, over 40 MB"
pass "300 MB of output keep ${du} KiB on disk"
