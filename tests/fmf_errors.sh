# Malformed YAML and a broken .fmf/version: one line naming the file and line.
. "$ATX_SRC/tests/lib.sh"

mkdir -p "$T/bad/.fmf" "$T/bad/sub"
echo 1 > "$T/bad/.fmf/version"
printf 'test: true\n' > "$T/bad/main.fmf"
printf 'summary: fine\ntest: [unclosed\nother: 1\n' > "$T/bad/sub/main.fmf"
rc=0
"$ATX" list "$T/bad" 2>"$T/e" || rc=$?
expect_eq "exit code for malformed YAML" "$rc" 2
expect_eq "one line" "$(wc -l < "$T/e")" 1
grep -Eq "bad/sub/main.fmf:[34]:" "$T/e" || { cat "$T/e"; fail "file and line not named"; }

mkdir -p "$T/ver/.fmf"
echo "one" > "$T/ver/.fmf/version"
rc=0
"$ATX" run "$T/ver" -o "$T/o" 2>"$T/e" || rc=$?
expect_eq "exit code for a broken version" "$rc" 2
expect_eq "one line" "$(wc -l < "$T/e")" 1
grep -q "ver/.fmf/version:1:" "$T/e" || { cat "$T/e"; fail "version file not named"; }
