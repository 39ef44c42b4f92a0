# The install tree: `cmake --install` into a temporary prefix, then check the
# library (soname, exported symbols), every public header alone, atx.pc and
# the CMake package (each builds and runs tests/install/driver.c against the
# installed files), and that the installed `atx` finds the installed plugins.
. "$ATX_SRC/tests/lib.sh"
P=$T/prefix

cache() { sed -n "s/^$1:[A-Z]*=//p" "$ATX_BUILD/CMakeCache.txt"; }
CC=$(cache CMAKE_C_COMPILER)
LIBDIR=$(cache CMAKE_INSTALL_LIBDIR)
INCLUDEDIR=$(cache CMAKE_INSTALL_INCLUDEDIR)
# GNUInstallDirs leaves MANDIR empty in the cache when it derives from DATAROOTDIR.
MANDIR=$(cache CMAKE_INSTALL_MANDIR)
MANDIR=${MANDIR:-$(cache CMAKE_INSTALL_DATAROOTDIR)/man}
[ -x "$CC" ] || fail "no C compiler in $ATX_BUILD/CMakeCache.txt"
# A sanitized libatx needs the sanitizer runtime in the programs that use it.
SAN=()
[ -z "${ATX_SANITIZE:-}" ] || SAN=("-fsanitize=$ATX_SANITIZE")
ABI_MAJOR=$(sed -n 's/^#define ATX_ABI_MAJOR \([0-9]*\)$/\1/p' \
    "$ATX_SRC/plugins/include/atx/plugin/abi.h")
[ -n "$ABI_MAJOR" ] || fail "no ATX_ABI_MAJOR in abi.h"

timeout 120 cmake --install "$ATX_BUILD" --prefix "$P" > install.log 2>&1 \
    || { cat install.log; fail "cmake --install"; }
pass "installed into $P"
L=$P/$LIBDIR
PLUGINS=$L/atx/plugins

# --- the files ---
for f in "bin/atx" "$LIBDIR/libatx.so.$ABI_MAJOR" "$LIBDIR/libatx.so" \
         "$LIBDIR/pkgconfig/atx.pc" "$LIBDIR/cmake/atx/atxConfig.cmake" \
         "$LIBDIR/cmake/atx/atxConfigVersion.cmake" "$LIBDIR/cmake/atx/atxTargets.cmake" \
         "$MANDIR/man1/atx.1" "$MANDIR/man5/atx-plan.5" "$MANDIR/man7/atx-plugin.7" \
         "$MANDIR/man3/libatx.3" "share/atx/plan.schema.json" \
         "share/bash-completion/completions/atx" \
         "$LIBDIR/atx/plugins/local.so" "$LIBDIR/atx/plugins/exec.so" \
         "$LIBDIR/atx/plugins/junit.so" "$LIBDIR/atx/plugins/jsonl.so"; do
    [ -e "$P/$f" ] || fail "not installed: $f"
done
pass "library, CLI, plugins, atx.pc, CMake package, man pages, schema and completion installed"

# Installed programs and modules must not point back into the build tree.
for f in "$P/bin/atx" "$L/libatx.so.$ABI_MAJOR" "$PLUGINS"/*.so; do
    readelf -d "$f" > dynamic.txt || fail "readelf -d $f"
    if grep -E 'RPATH|RUNPATH' dynamic.txt | grep -F "$ATX_BUILD" > /dev/null; then
        fail "$f keeps a run path into the build tree: $(grep -E 'RPATH|RUNPATH' dynamic.txt)"
    fi
done
pass "no run path into the build tree"

# --- soname = ABI major ---
soname=$(readelf -d "$L/libatx.so.$ABI_MAJOR" | sed -n 's/.*Library soname: \[\(.*\)\]$/\1/p')
expect_eq "soname" "$soname" "libatx.so.$ABI_MAJOR"

# --- exported symbols: atx_* only ---
# nm -D prints "VALUE TYPE NAME[@@VERSION]"; the version script's node itself
# (ATX_1) shows as an absolute symbol.
nm -D --defined-only "$L/libatx.so.$ABI_MAJOR" > nm.txt || fail "nm -D"
awk '{ n = $NF; sub(/@.*/, "", n); print $(NF-1), n }' nm.txt > exported.txt
others=$(awk '$2 !~ /^atx_/ && !($1 == "A" && $2 ~ /^ATX_[0-9]+$/) &&
              $2 != "_init" && $2 != "_fini"' exported.txt)
[ -z "$others" ] || fail "libatx exports symbols other than atx_*:"$'\n'"$others"
awk '$2 ~ /^atx_/ { print $2 }' exported.txt | sort -u > exported-api.txt
n=$(wc -l < exported-api.txt)
[ "$n" -gt 50 ] || fail "only $n atx_* symbols exported"
pass "libatx exports $n atx_* symbols and nothing else ($(awk '$2 !~ /^atx_/ { printf "%s ", $2 }' exported.txt))"

# Every function a public header declares (ATX_API) is exported, and every
# exported function is declared in a public header.
grep -rhoE 'ATX_API[^(;]*\(' "$P/$INCLUDEDIR" | grep -oE 'atx_[A-Za-z0-9_]+ *\($' \
    | tr -d ' (' | sort -u > declared.txt
[ -s declared.txt ] || fail "no ATX_API declarations found in the installed headers"
missing=$(comm -23 declared.txt exported-api.txt)
[ -z "$missing" ] || fail "declared in public headers but not exported:"$'\n'"$missing"
undeclared=$(comm -13 declared.txt exported-api.txt)
[ -z "$undeclared" ] || fail "exported but in no public header:"$'\n'"$undeclared"
pass "the $(wc -l < declared.txt) ATX_API functions are exactly the exported ones"

# --- every public header compiles alone as C99 ---
headers=()
for h in "$ATX_SRC"/framework/include/atx.h "$ATX_SRC"/framework/include/atx/*.h \
         "$ATX_SRC"/plugins/include/atx/plugin/*.h; do
    rel=${h#"$ATX_SRC"/framework/include/}
    rel=${rel#"$ATX_SRC"/plugins/include/}
    headers+=("$rel")
done
[ "${#headers[@]}" -gt 10 ] || fail "found only ${#headers[@]} public headers"
mkdir hdr
for rel in "${headers[@]}"; do
    [ -f "$P/$INCLUDEDIR/$rel" ] || fail "header not installed: $rel"
    src="hdr/$(echo "$rel" | tr / _).c"
    printf '#include <%s>\n' "$rel" > "$src"
    timeout 60 "$CC" -std=c99 -pedantic -Werror -Wall -Wextra -fsyntax-only \
        -I"$P/$INCLUDEDIR" "$src" 2> hdr.err \
        || { cat hdr.err; fail "$rel does not compile alone with -std=c99 -pedantic"; }
done
pass "${#headers[@]} public headers each compile alone (-std=c99 -pedantic -Werror)"

# check_driver NAME BINARY: the driver ran its test on the installed plugins
check_driver() {
    local name=$1 bin=$2 rc=0
    LD_LIBRARY_PATH=$L ldd "$bin" > "$name.ldd" 2>&1 || true
    grep -q "libatx.so.$ABI_MAJOR => $L/libatx.so.$ABI_MAJOR " "$name.ldd" \
        || fail "$name does not use the installed libatx:"$'\n'"$(cat "$name.ldd")"
    LD_LIBRARY_PATH=$L ATX_PLUGIN_PATH=$PLUGINS timeout 60 "$bin" "$T/$name-results" \
        > "$name.out" 2> "$name.err" || rc=$?
    [ "$rc" = 0 ] || fail "$name exited $rc:"$'\n'"$(cat "$name.out" "$name.err")"
    grep -qx "atx [0-9.]*: tests=1 passed=1 failed=0 errors=0 infra=0 not_run=0" "$name.out" \
        || fail "$name summary:"$'\n'"$(cat "$name.out" "$name.err")"
    for p in local exec jsonl; do
        grep -qE "^plugin $p [0-9][^ ]* $PLUGINS/$p\.so$" "$name.out" \
            || fail "$name did not use the installed $p plugin:"$'\n'"$(cat "$name.out")"
    done
    grep -q '"/install/true"' "$T/$name-results/results.jsonl" \
        || fail "$name: no result in $T/$name-results/results.jsonl"
    pass "$name ran /install/true on the installed library and plugins"
}

# --- atx.pc ---
export PKG_CONFIG_PATH=$L/pkgconfig
flags=$(pkg-config --cflags --libs atx) || fail "pkg-config --cflags --libs atx"
# has_flag FLAG DIR: pkg-config gave FLAG with a directory that resolves to DIR
has_flag() {
    local f
    for f in $flags; do
        case $f in "$1"*) [ "$(realpath -m "${f#"$1"}")" = "$DIR" ] && return 0 ;; esac
    done
    return 1
}
DIR=$P/$INCLUDEDIR has_flag -I || fail "pkg-config --cflags does not point at $P/$INCLUDEDIR: $flags"
DIR=$L has_flag -L || fail "pkg-config --libs does not point at $L: $flags"
pass "pkg-config points at the prefix ($flags)"
expect_eq "pkg-config plugindir" "$(realpath -m "$(pkg-config --variable=plugindir atx)")" "$PLUGINS"
# shellcheck disable=SC2086 # pkg-config output is a list of flags
timeout 120 "$CC" "${SAN[@]}" -std=c99 -Wall -Wextra -Werror -o driver-pc \
    "$ATX_SRC/tests/install/driver.c" $flags 2> cc.err \
    || { cat cc.err; fail "driver.c does not build with pkg-config's flags ($flags)"; }
check_driver driver-pc "$T/driver-pc"

# --- the CMake package ---
unset PKG_CONFIG_PATH
timeout 120 cmake -S "$ATX_SRC/tests/install" -B "$T/consumer" \
    -DCMAKE_PREFIX_PATH="$P" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="${SAN[*]}" > consumer.log 2>&1 \
    || { cat consumer.log; fail "configuring tests/install with find_package(atx)"; }
expect_eq "atx_DIR" "$(sed -n 's/^atx_DIR:[A-Z]*=//p' "$T/consumer/CMakeCache.txt")" \
    "$L/cmake/atx"
timeout 120 cmake --build "$T/consumer" > consumer-build.log 2>&1 \
    || { cat consumer-build.log; fail "building tests/install against the CMake package"; }
check_driver driver-cmake "$T/consumer/driver"

# --- the installed atx finds the installed plugins ---
export LD_LIBRARY_PATH=$L
ldd "$P/bin/atx" > atx.ldd 2>&1 || true
grep -q "libatx.so.$ABI_MAJOR => $L/libatx.so.$ABI_MAJOR " atx.ldd \
    || fail "the installed atx does not use the installed libatx:"$'\n'"$(cat atx.ldd)"
rc=0
ATX_PLUGIN_PATH= timeout 60 "$P/bin/atx" plugins > plugins.out 2> plugins.err || rc=$?
expect_eq "installed atx plugins exit code" "$rc" 0
expect_eq "installed atx plugins stderr" "$(cat plugins.err)" ""
for p in local exec junit jsonl; do
    grep -qE "^$p +[a-z]+ +[0-9]" plugins.out || fail "installed atx does not list $p:"$'\n'"$(cat plugins.out)"
done
pass "installed atx lists local, exec, junit, jsonl"
# Its search reaches exactly that directory: a plugin dropped there lists too.
cp "$ATX_BUILD/tests/fake-plugins/good/fakeagg.so" "$PLUGINS/"
ATX_PLUGIN_PATH= timeout 60 "$P/bin/atx" plugins > plugins2.out 2>&1 || fail "atx plugins"
grep -qE '^fakeagg +aggregator ' plugins2.out \
    || fail "a plugin put into $PLUGINS is not found:"$'\n'"$(cat plugins2.out)"
rm "$PLUGINS/fakeagg.so"
pass "installed atx searches $PLUGINS"
# And it runs a test with them.
mktest smoke/true 'exit 0'
rc=0
ATX_PLUGIN_PATH= timeout 120 "$P/bin/atx" run -q -o "$T/cli-results" "$T/tests" \
    > run.out 2>&1 || rc=$?
expect_eq "installed atx run exit code" "$rc" 0
[ -s "$T/cli-results/junit.xml" ] || fail "installed atx run wrote no junit.xml:"$'\n'"$(cat run.out)"
pass "installed atx ran a test and wrote its reports"
# The installed fmf plugin finds the installed agent and runs a tree.
[ -x "$L/atx/atx-agent" ] || fail "atx-agent is not installed in $L/atx"
mkdir -p "$T/fmftree/.fmf"
echo 1 > "$T/fmftree/.fmf/version"
printf 'test: echo from-fmf\n' > "$T/fmftree/main.fmf"
rc=0
ATX_PLUGIN_PATH= timeout 120 "$P/bin/atx" run -q -o "$T/fmf-results" "$T/fmftree" \
    > fmf.out 2>&1 || rc=$?
expect_eq "installed atx fmf run exit code" "$rc" 0
grep -q from-fmf "$T/fmf-results/tests/attempt-1/files/output.txt" 2>/dev/null \
    || grep -rq from-fmf "$T/fmf-results/tests" || fail "no fmf output:"$'\n'"$(cat fmf.out)"
pass "installed atx ran an fmf tree through the installed agent"
