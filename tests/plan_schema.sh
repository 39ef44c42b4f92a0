# share/plan.schema.json: every plan in examples/ and in the docs (the JSON
# blocks of the READMEs and docs/ that have "tests") validates; plans with
# an unknown key, a bad duration or a test without a name or tree do not;
# and atx itself takes each plan the schema takes.
. "$ATX_SRC/tests/lib.sh"
python3 - "$ATX_SRC" <<'PY' || fail "the schema and the plans disagree"
import glob, json, os, re, sys
import jsonschema
src = sys.argv[1]
schema = json.load(open(os.path.join(src, "share/plan.schema.json")))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema)
plans = []
for f in glob.glob(os.path.join(src, "examples/**/*.json"), recursive=True):
    d = json.load(open(f))
    if isinstance(d, dict) and "tests" in d:
        plans.append((f, d))
docs = glob.glob(os.path.join(src, "docs/*.md")) + [os.path.join(src, "README.md")] + \
       glob.glob(os.path.join(src, "*/*/README.md"))
for f in docs:
    for i, block in enumerate(re.findall(r"```json\n(.*?)```", open(f).read(), re.S)):
        try:
            d = json.loads(block)
        except ValueError:
            continue  # a fragment (one JSONL line, "...")
        if isinstance(d, dict) and "tests" in d:
            plans.append(("%s#%d" % (f, i), d))
assert len(plans) >= 4, [p for p, _ in plans]
for name, d in plans:
    errors = list(v.iter_errors(d))
    assert not errors, (name, [e.message for e in errors])
print("%d plans validate" % len(plans))
good = {"tests": [{"name": "/a", "command": ["true"]}]}
assert not list(v.iter_errors(good))
for bad in ({"tests": [], "provisioner": []},
            {"tests": [{"name": "/a", "command": ["true"], "timeout": "5 minutes"}]},
            {"tests": [{"command": ["true"]}]},
            {"tests": [], "policy": {"retries": 1}},
            {"tests": [], "aggregators": [{"path": "x"}]}):
    assert list(v.iter_errors(bad)), bad
print("5 bad plans fail")
PY
pass "every plan in examples/ and the docs validates; plans with unknown keys fail"
# atx refuses what the schema refuses (the unknown key), with one line.
printf '{"tests": [], "provisioner": []}' > bad.json
rc=0; "$ATX" run --plan bad.json -o out -q > bad.out 2>&1 || rc=$?
expect_eq "atx run of a plan with an unknown key: exit" "$rc" 2
grep -q "unknown key 'provisioner'" bad.out || fail "$(cat bad.out)"
pass "atx and the schema agree on an unknown key"
