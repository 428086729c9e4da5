#!/usr/bin/env bash
# Builds the libFuzzer variant (build-fuzz/: clang, -DDR_FUZZ=ON, every target with
# -fsanitize=fuzzer,address,undefined), replays the checked-in corpora (ctest -L fuzz), then
# fuzzes each target in turn for SECONDS (one at a time, nice -n 10).
#   fuzz/run.sh [-t SECONDS] [TARGET...]     (default: 20 s each, every target)
# Each target fuzzes a working corpus build-fuzz/fuzz-corpus/<target>/ (seeded from
# fuzz/corpus/<target>/, kept between runs, never written back into the repository); its log
# is build-fuzz/fuzz-logs/<target>.log and a crashing input is saved as
# build-fuzz/fuzz-artifacts/<target>-crash-<sha1>. Prints one line per target (runs,
# coverage, features, corpus size) and exits 1 if any target crashed, leaked, timed out or ran
# out of memory. CI (.ci/run) runs it with the default 20 s.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
if [[ "${1:-}" == "-t" ]]; then
  seconds=$2
  shift 2
fi
all="fuzz_net_frame fuzz_core_frames fuzz_rpc_wire fuzz_mxnet fuzz_onnx fuzz_photo
  fuzz_upload fuzz_http_api fuzz_categorizer fuzz_config fuzz_persist_plog"
targets=${*:-$all}
build="build-fuzz"
CC=clang cmake -S . -B "$build" -DDR_FUZZ=ON >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $targets
# shellcheck disable=SC2086 # one line of names
regex="^($(echo $targets | tr ' ' '|'))_corpus\$"
(cd "$build" && ctest -L fuzz -R "$regex" --output-on-failure)
mkdir -p "$build/fuzz-logs" "$build/fuzz-artifacts"
# Inputs larger than the defaults where the targets need room (models, multipart bodies).
max_len() {
  case "$1" in
    fuzz_mxnet | fuzz_onnx | fuzz_photo) echo 65536 ;;
    fuzz_http_api | fuzz_categorizer | fuzz_upload) echo 16384 ;;
    *) echo 4096 ;;
  esac
}
failed=0
for t in $targets; do
  work="$build/fuzz-corpus/$t"
  mkdir -p "$work"
  cp -n "fuzz/corpus/$t"/* "$work"/ 2>/dev/null || true
  log="$build/fuzz-logs/$t.log"
  if nice -n 10 "$build/bin/fuzz/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
      -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
      -artifact_prefix="$build/fuzz-artifacts/$t-" "$work" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed=1
  fi
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  echo "$t: $status, ${runs:-?} runs in at most ${seconds}s; last: ${last:-none}"
  if [[ $status != ok ]]; then
    # the target's own diagnostics (lines starting with its name) say why a check failed
    grep -E "ERROR|SUMMARY|fuzz check failed|Test unit written|^$t: " "$log" | head -8 || true
  fi
done
exit $failed
