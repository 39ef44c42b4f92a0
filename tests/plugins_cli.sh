# `atx plugins`: lists the built plugins with versions, and reports each
# refused file on stderr in one line naming the file and the reason, while
# the good plugins still list.
. "$ATX_SRC/tests/lib.sh"
FAKE=$ATX_BUILD/tests/fake-plugins

# plugins ARGS...: run `atx plugins` (bounded), stdout in out, stderr in err
plugins() {
    rc=0
    timeout 60 "$ATX" plugins "$@" >out 2>err || rc=$?
}

# listed NAME KIND: NAME is a line of out with kind KIND and a version
listed() {
    grep -Eq "^$1 +$2 +[0-9A-Za-z][0-9A-Za-z.+~-]* +[^ ]" out \
        || fail "$1 ($2) not listed with a version and description:$(printf '\n'; cat out err)"
    pass "$1 listed as $2 with a version"
}

# refused FILE WORD: exactly one line of err names FILE and says WORD
refused() {
    local n
    n=$(grep -cF -- "$1" err || true)
    [ "$n" = 1 ] || fail "$1: $n lines name it on stderr, want 1:$(printf '\n'; cat err)"
    grep -F -- "$1" err > line
    grep -qF -- "$2" line || fail "$1: its line does not say '$2': $(cat line)"
    pass "$1 refused: $2"
}

# --- the built plugins, nothing else in the path ---
plugins
expect_eq "exit code" "$rc" 0
listed local provisioner
listed exec executor
listed junit aggregator
listed jsonl aggregator
listed fmf executor
listed podman provisioner
listed ssh provisioner
listed slurm provisioner
listed bud aggregator
listed tap executor
listed junitxml executor
listed html aggregator
listed ctrf aggregator
listed status aggregator
expect_eq "lines listed" "$(wc -l < out)" 14
expect_eq "stderr" "$(cat err)" ""

# --- every bad fake on --plugin-path, plus the good one ---
bad=(
    "abi-major/abimajor.so:ABI"
    "abi-minor/abiminor.so:newer"
    "name/misnamed.so:othername"
    "name-newline/newlinename.so:but its file is named"
    "no-entry/noentry.so:atx_plugin_entry"
    "not-so/notso.so:shared object"
    "not-regular/notregular.so:regular file"
    "null-descriptor/nulldesc.so:no descriptor"
    "struct-size/smallstruct.so:bytes"
    "no-version/noversion.so:name, version or vtable"
    "unknown-kind/unknownkind.so:unknown plugin kind"
    "vtable-version/vtable0.so:no version"
    "no-method/nomethod.so:required method"
    "no-method-executor/norun.so:required method"
    "no-method-provisioner/norelease.so:required method"
)
args=(--plugin-path "$FAKE/good")
for b in "${bad[@]}"; do
    f=${b%%:*}
    [ -e "$FAKE/$f" ] || fail "fake plugin $FAKE/$f was not built"
    args+=(--plugin-path "$FAKE/$(dirname "$f")")
done
plugins "${args[@]}"
expect_eq "exit code with refusals" "$rc" 0
for b in "${bad[@]}"; do
    refused "$FAKE/${b%%:*}" "${b#*:}"
done
expect_eq "stderr lines" "$(wc -l < err)" "${#bad[@]}"
listed local provisioner
listed exec executor
listed junit aggregator
listed jsonl aggregator
listed fmf executor
listed podman provisioner
listed ssh provisioner
listed slurm provisioner
listed bud aggregator
listed tap executor
listed junitxml executor
listed html aggregator
listed ctrf aggregator
listed status aggregator
listed fakeagg aggregator
expect_eq "lines listed" "$(wc -l < out)" 15
# Refused files are not listed as plugins.
for b in "${bad[@]}"; do
    n=$(basename "${b%%:*}" .so)
    ! grep -q "^$n " out || fail "refused $n listed on stdout"
done
pass "refused files not listed"

# --- ATX_PLUGIN_PATH is searched too ---
ATX_PLUGIN_PATH="$FAKE/abi-major:$FAKE/good" plugins
expect_eq "exit code (ATX_PLUGIN_PATH)" "$rc" 0
refused "$FAKE/abi-major/abimajor.so" "ABI"
listed fakeagg aggregator
listed exec executor
expect_eq "stderr lines (ATX_PLUGIN_PATH)" "$(wc -l < err)" 1

# --- --plugin-path wins over the built plugins: a refused exec.so shadows it ---
mkdir shadow
cp "$FAKE/not-so/notso.so" shadow/exec.so
plugins --plugin-path "$T/shadow"
refused "$T/shadow/exec.so" "shared object"
! grep -q '^exec ' out || fail "exec listed although the first exec.so in the path is refused"
pass "first exec.so in the path decides"
listed local provisioner
