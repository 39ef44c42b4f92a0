# The example fmf tree: every test's per-attempt `results` lines and files/
# are what TEST_CONTROL.md implies, compared as JSON objects line by line.
. "$ATX_SRC/tests/lib.sh"

# Twice: on slots that share this host's files, and on slots treated as
# remote systems (the agent and the tree are uploaded into them).
cat > "$T/remote.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 2, "share_host_files": false}],
 "tests": [{"executor": "fmf", "tree": "$ATX_SRC/examples/fmf", "context": {"distro": "debian-12"}}]}
JSON
for mode in host remote; do
rc=0
if [ $mode = host ]; then
    "$ATX" run "$ATX_SRC/examples/fmf" -j 2 -o "$T/out" -q -c distro=debian-12 || rc=$?
else
    rm -rf "$T/out"
    "$ATX" run --plan "$T/remote.json" -o "$T/out" -q || rc=$?
fi
expect_eq "$mode: exit code (one failing, one timing out)" "$rc" 1

python3 - "$T/out" <<'PY'
import json, os, sys
out = sys.argv[1]

def results(test):
    d = os.path.join(out, "tests", test.lstrip("/"), "attempt-1")
    assert sorted(os.listdir(d)) == ["files", "results"], (test, os.listdir(d))
    with open(os.path.join(d, "results"), "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), (test, data)
    return [json.loads(l) for l in data.decode().splitlines()], d

def files(d):
    found = {}
    for root, _, names in os.walk(os.path.join(d, "files")):
        for n in names:
            p = os.path.join(root, n)
            found[os.path.relpath(p, os.path.join(d, "files"))] = open(p, "rb").read()
    return found

def check(test, want_lines, want_files):
    lines, d = results(test)
    assert lines == want_lines, f"{test}: results\n got  {lines}\n want {want_lines}"
    got = files(d)
    assert got == want_files, f"{test}: files\n got  {got}\n want {want_files}"
    print("ok:", test)

fallback = lambda status, out, **kw: ([dict(status=status, files=["output.txt"], **kw)],
                                      {"output.txt": out})

check("/basic", *fallback("pass", b"hello from /basic\n"))
check("/inherit/child", *fallback("pass", b""))
lines, d = results("/required")
assert lines == [{"status": "pass", "files": ["output.txt"]}], lines
assert files(d)["output.txt"].startswith(b"GNU bash"), files(d)
print("ok: /required")
check("/failing", *fallback("fail", b"about to fail\n"))
check("/subtests", [
    {"name": "first", "status": "pass"},
    {"name": "second/nested", "status": "fail", "note": "the second one failed"},
    {"status": "pass", "note": "two subtests reported"},
], {})
check("/partial", [
    {"status": "warn", "tags": ["a", "b"], "extra": {"y": 2}, "note": "merged"},
], {})
check("/upload", [
    {"name": "logs", "status": "pass", "files": ["build.log"]},
    {"status": "pass", "files": ["data.bin"]},
], {"logs/build.log": b"log line 1\nlog line 2\n", "data.bin": b"\0binary\xff"})
check("/testout", [{"status": "pass", "files": ["console.log"]}],
      {"console.log": b"before the report\nafter the report\n"})

lines, d = results("/timeout")
assert len(lines) == 1 and lines[0]["status"] == "infra", lines
assert "timed out after 2.000s" in lines[0]["note"], lines
assert lines[0]["files"] == ["output.txt"], lines
print("ok: /timeout")

# The same results reach JSONL: subtests by name, files relative to the results folder.
rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl"))]
sub = [r for r in rows if r["test"] == "/subtests"]
assert sorted((r["subtest"] or "", r["status"]) for r in sub) == \
    [("", "pass"), ("first", "pass"), ("second/nested", "fail")], sub
up = [r for r in rows if r["test"] == "/upload" and r["subtest"] is None][0]
assert up["files"] == ["tests/upload/attempt-1/files/data.bin"], up
assert os.path.exists(os.path.join(out, up["files"][0]))
to = [r for r in rows if r["test"] == "/timeout"][0]
assert to["status"] == "infra" and to["error_type"] == "timeout", to
print("ok: jsonl")
PY
left=$(pgrep -f '[s]leep 300' || true)
[ -z "$left" ] || fail "the timed-out test left processes: $left"
done
