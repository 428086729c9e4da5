#!/usr/bin/env bash
# The README's main-job command. Today: build, then print the effective configuration of
# each node of the bundled 4-node sample cluster (test-4-nodes/). Later issues make it start
# the service, install a model and classify photos.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)" >/dev/null

for node in test-4-nodes/n*; do
  echo "===== $node/derecho.cfg (effective) ====="
  (cd "$node" && ../../build/bin/sospdemo config)
done
