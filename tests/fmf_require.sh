# A require of a package that does not exist: infra with the package
# manager's message; a second test with the same require on the same system
# does not try the install again.
. "$ATX_SRC/tests/lib.sh"
command -v apt-get >/dev/null || command -v dnf >/dev/null || fail "no apt-get or dnf here"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
pkg="atx-no-such-package-$$"
cat > "$tree/main.fmf" <<FMF
require: [$pkg]
test: "true"
/a:
    priority: 1
/b:
    summary: same require, later
/c:
    require: [bash]
FMF

rc=0
"$ATX" run "$tree" -j 1 -o "$T/out" -q || rc=$?
expect_eq "exit code" "$rc" 1
python3 - "$T/out" "$pkg" <<'PY'
import json, os, sys
out, pkg = sys.argv[1], sys.argv[2]
rows = {r["test"]: r for r in map(json.loads, open(os.path.join(out, "results.jsonl")))}
a, b, c = rows["/a"], rows["/b"], rows["/c"]
assert a["status"] == "infra" and pkg in a["note"], a
# apt: "Unable to locate package"; dnf: "No match for argument"
assert any(w in a["note"] for w in ("Unable to locate", "No match", "not found")), a["note"]
assert b["status"] == "infra" and "remembered" in b["note"] and pkg in b["note"], b
assert a["system"]["id"] == b["system"]["id"], (a["system"], b["system"])
assert c["status"] == "pass", c
print("ok:", a["note"], "|", b["note"])
PY
