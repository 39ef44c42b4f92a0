# The Debian packages: `make deb` builds libatx1, libatx-dev, atx-plugins and
# atx from the tracked sources (lintian finds no error), apt installs them
# into this machine, the installed atx runs two tests with its installed
# plugins and agent, and the packages are purged again.
. "$ATX_SRC/tests/lib.sh"
if [ -n "${ATX_SANITIZE:-}" ]; then
  echo "skipped: the packages build from source with dpkg-buildpackage, not from this sanitizer build (the plain build's run of this test checks them)"
  exit 0
fi
[ "$(id -u)" = 0 ] || fail "installing packages needs root (tests run as root here)"
if dpkg-query -W -f='${Status}' atx 2>/dev/null | grep -q "ok installed"; then
  fail "an atx package is installed already: this test would replace it"
fi
trap 'apt-get purge -y -qq atx atx-plugins libatx-dev libatx1 > /dev/null 2>&1 || true; cleanup' EXIT
timeout 900 make -C "$ATX_SRC" deb DEB_BUILD="$T/deb" JOBS=2 > deb.log 2>&1 || { tail -40 deb.log; fail "make deb"; }
for p in libatx1 libatx-dev atx-plugins atx; do
  ls "$T/deb/${p}_"*.deb > /dev/null 2>&1 || fail "no $p package"
done
pass "make deb: four packages, lintian without errors"

debs=$(ls "$T"/deb/*.deb | grep -v dbgsym)
DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends $debs \
  > apt.log 2>&1 || { cat apt.log; fail "apt-get install"; }
[ "$(command -v atx)" = /usr/bin/atx ] || fail "atx is $(command -v atx), not /usr/bin/atx"
/usr/bin/atx --version | grep -q "^atx " || fail "atx --version"
env -u ATX_PLUGIN_PATH -u ATX_PLUGIN_DIR /usr/bin/atx plugins > plugins.out
for p in local exec junit jsonl html fmf; do
  grep -q "^$p " plugins.out || fail "the installed atx does not find its $p plugin: $(cat plugins.out)"
done
! grep -q "$ATX_BUILD" plugins.out || fail "the installed atx loads plugins from the build tree"
mkdir t
printf '#!/bin/sh\nexit 0\n' > t/one.sh
printf '#!/bin/sh\nexit 1\n' > t/two.sh
chmod +x t/*.sh
rc=0
env -u ATX_PLUGIN_PATH -u ATX_PLUGIN_DIR /usr/bin/atx run t -o out -q > run.out 2>&1 || rc=$?
expect_eq "a two-test run from the installed files: exit (one fails)" "$rc" 1
[ -s out/junit.xml ] && [ -s out/report.html ] || fail "no reports: $(ls out)"
pkg-config --exists atx || fail "pkg-config finds no atx"
man -w atx > /dev/null || fail "man finds no atx(1)"
apt-get purge -y -qq atx atx-plugins libatx-dev libatx1 > /dev/null 2>&1 || fail "apt-get purge"
[ ! -e /usr/bin/atx ] || fail "/usr/bin/atx is still there after the purge"
pass "installed by apt: atx --version, atx plugins and a two-test run work; purged clean"
