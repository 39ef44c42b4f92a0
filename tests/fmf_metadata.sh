# tmt's test metadata end to end: duration arithmetic (the timeouts atx
# applies).
. "$ATX_SRC/tests/lib.sh"

# ---- durations: each form, and the timeout a run applies ----
mkdir -p "$T/dur/.fmf"
echo 1 > "$T/dur/.fmf/version"
cat > "$T/dur/main.fmf" <<'EOF'
test: "true"
/default: {}
/seconds:
    duration: 90
/hours:
    duration: 1h
/days:
    duration: 2d
/product:
    duration: 1m*2.5
/sum:
    duration: 5m 5m
/glued:
    duration: 1h30m
/factor:
    duration: "*2"
/merged:
    duration: 5m
    duration+: 5m
/adjusted:
    duration: 5m
    adjust:
        when: arch == aarch64
        duration+: "*2"
EOF
durations() {
    python3 -c 'import json, sys
print(" ".join("%s=%g" % (t["name"], t["duration"]) for t in json.load(sys.stdin)))'
}
got=$("$ATX" list --format json "$T/dur" | durations)
expect_eq "durations" "$got" "/adjusted=300 /days=172800 /default=300 /factor=600 /glued=5400 /hours=3600 /merged=600 /product=150 /seconds=90 /sum=600"
got=$("$ATX" list --format json -c arch=aarch64 "$T/dur" | durations)
expect_eq "durations on aarch64" "$got" "/adjusted=600 /days=172800 /default=300 /factor=600 /glued=5400 /hours=3600 /merged=600 /product=150 /seconds=90 /sum=600"

# The timeout is the evaluated duration: 1s * 1.5, rounded up to 2 s.
mkdir -p "$T/slow/.fmf"
echo 1 > "$T/slow/.fmf/version"
printf 'test: exec sleep 60\nduration: 1s *1.5\n' > "$T/slow/main.fmf"
rc=0
"$ATX" run "$T/slow" -o "$T/slow-out" -q || rc=$?
expect_eq "exit code of a test past its duration" "$rc" 1
expect_eq "killed at its timeout (infra, as ATEX reports it)" "$(jsonl "$T/slow-out/results.jsonl" \
    '[(r["status"], r["error_type"], r["note"].startswith("timed out after 2.000s"), 1.9 < r["duration"] < 30) for r in rows]')" \
    "[('infra', 'timeout', True, True)]"
