#!/usr/bin/env bash
# Line coverage of the whole suite: a --coverage build in build-coverage/ (-O1), every test run
# with CTest, then gcovr (Debian package gcovr) summarised per source folder.
#   scripts/coverage.sh              build, test, report (fails only if the build fails)
#   scripts/coverage.sh --report     report on the last run only
# Prints one line per folder (lines covered / lines, percent) and writes
# build-coverage/coverage.json (gcovr's per-file summary) and coverage-folders.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-coverage
if [ "${1:-}" != "--report" ]; then
  scripts/install-deps.sh
  # DR_INSTALL=OFF: the installable libraries would export gcov's runtime symbols, which the
  # install test (rightly) refuses; the normal build tests the installed package.
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Coverage -DDR_INSTALL=OFF \
    -DCMAKE_C_FLAGS_COVERAGE="-O1 -g --coverage -fprofile-update=atomic" \
    -DCMAKE_EXE_LINKER_FLAGS_COVERAGE="--coverage" \
    -DCMAKE_SHARED_LINKER_FLAGS_COVERAGE="--coverage" >/dev/null
  cmake --build "$build" -j "$(nproc)"
  find "$build" -name '*.gcda' -delete
  # Failures are reported by the normal runs; here only the coverage they reach matters.
  (cd "$build" && ctest -j "${DR_TEST_JOBS:-2}" --output-junit ctest-junit.xml >ctest.log 2>&1) ||
    echo "coverage: some tests failed in the coverage build (see $build/ctest.log)"
fi

# Informational: a report that cannot be made (gcov data of a killed process, counters of
# threads racing) is said, never fatal. Atomic counters (above) avoid negative counts.
if ! gcovr --root . --object-directory "$build" --filter 'src/' --filter 'apps/' \
  --exclude "$build/" --gcov-ignore-parse-errors --json-summary "$build/coverage.json" \
  >/dev/null; then
  echo "coverage: gcovr could not make the report"
  exit 0
fi
python3 - "$build/coverage.json" <<'PY' | tee "$build/coverage-folders.txt"
import json, sys
files = json.load(open(sys.argv[1]))["files"]
folders = {}
for f in files:
    parts = f["filename"].split("/")
    folder = "/".join(parts[:2])  # src/<layer> or apps/<app>
    covered, total = folders.get(folder, (0, 0))
    folders[folder] = (covered + f["line_covered"], total + f["line_total"])
all_covered = sum(c for c, _ in folders.values())
all_total = sum(t for _, t in folders.values())
print(f"{'folder':<16} {'lines':>13} {'cover':>6}")
for folder in sorted(folders):
    covered, total = folders[folder]
    print(f"{folder:<16} {covered:>6}/{total:<6} {100.0 * covered / max(total, 1):5.1f}%")
print(f"{'total':<16} {all_covered:>6}/{all_total:<6} {100.0 * all_covered / max(all_total, 1):5.1f}%")
PY
