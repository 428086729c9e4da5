#!/usr/bin/env bash
# Regenerates the seed inputs of fuzz/corpus/<target>/: each target's LLVMFuzzerInitialize
# writes its seeds to $DR_FUZZ_SEED_DIR (valid inputs built with the project's own encoders and
# the unit tests' tiny models, and near-valid ones that break one rule each); the config
# target also gets the repository's derecho.cfg samples. Inputs found by fuzzing (added by
# hand, named crash-*/found-*) are kept. Then every target replays its corpus once.
#   fuzz/make-corpus.sh [BUILD_DIR]     (default build/; a normal or a -DDR_FUZZ=ON build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
targets="fuzz_net_frame fuzz_core_frames fuzz_rpc_wire fuzz_mxnet fuzz_onnx fuzz_photo
  fuzz_upload fuzz_http_api fuzz_categorizer fuzz_config"
# shellcheck disable=SC2086
cmake --build "$build" -j2 --target $targets
for t in $targets; do
  mkdir -p "fuzz/corpus/$t"
  if [[ -x "$build/bin/fuzz/$t" ]]; then
    if "$build/bin/fuzz/$t" -help=1 >/dev/null 2>&1; then
      # libFuzzer: Initialize writes the seeds, -runs=0 replays them
      DR_FUZZ_SEED_DIR="fuzz/corpus/$t" "$build/bin/fuzz/$t" -runs=0 "fuzz/corpus/$t" 2>&1 | tail -1
    else
      DR_FUZZ_SEED_DIR="fuzz/corpus/$t" "$build/bin/fuzz/$t" "fuzz/corpus/$t" 2>&1 | tail -1
    fi
  fi
done
for cfg in test-2-nodes/n0 test-4-nodes/n1 test-6-nodes/n3; do
  cp "$cfg/derecho.cfg" "fuzz/corpus/fuzz_config/repo_$(echo "$cfg" | tr / _).cfg"
done
