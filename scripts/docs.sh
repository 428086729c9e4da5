#!/usr/bin/env bash
# The API reference of include/derecho/ with doxygen (docs/Doxyfile): configures build/ if
# needed and builds the `docs` target, which fails on any doxygen warning. Output:
# build/docs/html/index.html. Builds nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -f build/CMakeCache.txt ] || cmake -S . -B build >/dev/null
cmake --build build --target docs
echo "docs: build/docs/html/index.html"
