# TMT_TEST_DATA comes back bounded like everything a test makes: at most the
# control channel's 10,000 files and folders (and 1 GiB, 256 MiB a file);
# past a bound the rest is left out, what fits is kept, and atx says so. On a
# slot sharing this host's files (read in place) and on one that does not
# (copied through the agent).
. "$ATX_SRC/tests/lib.sh"

tree="$T/tree"
mkdir -p "$tree/.fmf"
echo 1 > "$tree/.fmf/version"
cat > "$tree/main.fmf" <<'FMF'
/many:
    test: |
        mkdir -p "$TMT_TEST_DATA/many"
        cd "$TMT_TEST_DATA/many"
        i=0
        while [ $i -lt 10010 ]; do : > "f$i"; i=$((i + 1)); done
        echo small > "$TMT_TEST_DATA/note.txt"
FMF
cat > "$T/remote.json" <<JSON
{"provisioners": [{"plugin": "local", "slots": 1, "share_host_files": false}],
 "tests": [{"executor": "fmf", "tree": "$tree"}]}
JSON
for how in here remote; do
  rc=0
  if [ $how = here ]; then
    "$ATX" run "$tree" -j 1 -o "$T/$how" > "$T/$how.log" 2>&1 || rc=$?
  else
    "$ATX" run --plan "$T/remote.json" -o "$T/$how" > "$T/$how.log" 2>&1 || rc=$?
  fi
  expect_eq "$how: exit" "$rc" 0
  d="$T/$how/tests/many/attempt-1/files/data"
  expect_eq "$how: files and folders kept" "$(find "$d" -mindepth 1 | wc -l)" 10000
  grep -q "TMT_TEST_DATA: .*more than 10000 files and folders: left out (what fits is kept)" \
    "$T/$how.log" || { cat "$T/$how.log"; fail "$how: no warning that data was left out"; }
done
