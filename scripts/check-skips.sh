#!/usr/bin/env bash
# Fails when a test that needs ../shared/testdata (CTest label `testdata`) was skipped although
# ../shared/testdata exists: such a skip would hide a broken check behind a green run.
# Reads the JUnit report of the last `scripts/test.sh` run (BUILD/ctest-junit.xml), where CTest
# marks a test that exited with its SKIP_RETURN_CODE (77, tests/common/skip.h) as skipped.
# Lists every skipped test of that run as well.
#   scripts/check-skips.sh [BUILD]     (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
report="$build/ctest-junit.xml"
testdata=../shared/testdata
if [ ! -f "$report" ]; then
  echo "check-skips: $report missing (run scripts/test.sh first)" >&2
  exit 2
fi

needs_data=$(cd "$build" && ctest -N -L testdata | sed -n 's/^ *Test *#[0-9]*: //p')
skipped=$(python3 - "$report" <<'PY'
import sys
import xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    if case.find("skipped") is not None:
        print(case.get("name"))
PY
)

bad=0
for name in $skipped; do
  if printf '%s\n' "$needs_data" | grep -qx "$name" && [ -d "$testdata" ]; then
    echo "check-skips: FAIL $name skipped although $testdata exists" >&2
    bad=1
  else
    echo "check-skips: $name skipped"
  fi
done
[ -d "$testdata" ] || echo "check-skips: no $testdata here; tests labelled testdata may skip"
if [ "$bad" -ne 0 ]; then
  exit 1
fi
echo "check-skips: ok ($(printf '%s\n' "$needs_data" | grep -c . || true) tests need $testdata)"
