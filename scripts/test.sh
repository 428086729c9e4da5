#!/usr/bin/env bash
# The README's test command: installs dependencies, configures, builds and runs the whole
# suite with CTest. Exits non-zero on any failure.
#   scripts/test.sh              normal build in build/
#   DR_SANITIZE=address scripts/test.sh   ASan+UBSan build in build-asan/
#   DR_SANITIZE=thread  scripts/test.sh   TSan build in build-tsan/
# Extra arguments are passed to ctest (e.g. -R conf, -L sim).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

sanitize=${DR_SANITIZE:-}
case "$sanitize" in
  "") build=build ;;
  address) build=build-asan ;;
  thread) build=build-tsan ;;
  *) echo "DR_SANITIZE must be empty, address or thread" >&2; exit 2 ;;
esac

cmake -S . -B "$build" -DDR_SANITIZE="$sanitize" >/dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
# ctest-junit.xml: which tests ran, passed or skipped (scripts/check-skips.sh reads it).
ctest --output-on-failure --output-junit ctest-junit.xml -j "${DR_TEST_JOBS:-2}" "$@"
