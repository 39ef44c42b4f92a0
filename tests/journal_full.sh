#!/usr/bin/env bash
# A full disk under the journal: one clear error line, the run goes on, and
# its reports (on another disk) lose nothing. The results folder is a 1 MB
# tmpfs (tests run as root, as ENVIRONMENT.md says; a missing mount fails
# the test with its reason); 40 tests each print 100 KB, which the journal
# keeps in full.
. "$ATX_SRC/tests/lib.sh"
[ "$(id -u)" = 0 ] || fail "this test mounts a small tmpfs and needs root"
mkdir small
mount -t tmpfs -o size=1m atx-test-full small || fail "cannot mount a tmpfs"
trap 'umount "$T/small" 2>/dev/null; cleanup' EXIT

mkdir tests
for i in $(seq -w 1 40); do
  printf '#!/bin/sh\nhead -c 100000 /dev/zero | tr "\\\\0" x\n' > tests/t$i
  chmod +x tests/t$i
done
rc=0
"$ATX" run tests -j 2 -o small/run --junit junit.xml --jsonl results.jsonl --html report.html \
  --no-history \
  > out 2> err || rc=$?
expect_eq "exit code (every test passed)" "$rc" 0
expect_eq "journal error lines" "$(grep -c journal err)" 1
grep -q "journal .*journal.db: cannot write: database or disk is full; the run goes on, but can no longer be resumed" err ||
  fail "unclear error: $(cat err)"
python3 - <<'PY' || fail "the reports lost results"
import json, xml.etree.ElementTree as ET
rows = [json.loads(l) for l in open("results.jsonl")]
assert len([r for r in rows if r["final"] and r["status"] == "pass"]) == 40, len(rows)
assert len(list(ET.parse("junit.xml").iter("testcase"))) == 40
PY
pass "the journal failed once, loudly; JUnit and JSONL hold all 40 tests"
