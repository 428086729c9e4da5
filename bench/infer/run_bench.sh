#!/bin/sh
# Inference benchmark: derecho-infer vs ONNX Runtime on SqueezeNet 1.1 and ResNet-50 V2, batch
# 1 and 8, 1 and 2 threads, fp32 and (where the CPU has it) bf16, plus the SGEMM reference, all
# in one run. Results are printed; the
# numbers in docs/perf/inference.md come from this script.
# Usage (from the repository root, after building into build/):
#   bench/infer/run_bench.sh [RUNS] [REPEATS]
# Needs ../shared/testdata (SqueezeNet), ../shared/tools/make_resnet50_v2.py with Debian's
# python3-numpy/python3-onnx (ResNet-50 V2), and onnxruntime-node in bench/infer/ortnode:
#   mkdir -p bench/infer/ortnode && cd bench/infer/ortnode && \
#     echo '{"private":true}' > package.json && npm install onnxruntime-node --ignore-scripts
set -eu
RUNS=${1:-10}
REPEATS=${2:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/build/bin
OUT=$ROOT/bench/infer/out
DATA=$ROOT/../shared/testdata
mkdir -p "$OUT"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ ! -f "$OUT/resnet50_v2.onnx" ]; then
  "$PY" "$ROOT/../shared/tools/make_resnet50_v2.py" --format both --synset --out-dir "$OUT"
fi
SQZ=$DATA/onnx/squeezenet1.1/squeezenet1.1.onnx
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg)"
lscpu | grep -E 'Model name' || true
for rep in $(seq 1 "$REPEATS"); do
  echo "## repeat $rep"
  "$BIN/sgemm-bench" 1 1024 1024 1024 5
  "$BIN/sgemm-bench" 2 1024 1024 1024 5
  for model in "$SQZ" "$OUT/resnet50_v2.onnx"; do
    echo "### $(basename "$model")"
    "$BIN/derecho-infer" bench --model "$model" --runs "$RUNS" --threads 1,2 2>/dev/null
    for th in 1 2; do
      for b in 1 8; do
        node "$ROOT/bench/infer/ort_bench.js" "$model" "$th" "$b" "$RUNS"
        node "$ROOT/bench/infer/ort_bench.js" "$model" "$th" "$b" "$RUNS" nospin
      done
    done
  done
  echo "### resnet50_v2 (MXNet loader)"
  "$BIN/derecho-infer" bench --model "$OUT/resnet50_v2" --format mxnet --runs "$RUNS" \
    --threads 1,2 2>/dev/null
  # bf16 rows where the CPU has native bf16 (derecho-infer refuses --precision bf16 otherwise)
  if grep -q avx512_bf16 /proc/cpuinfo; then
    for model in "$SQZ" "$OUT/resnet50_v2.onnx"; do
      echo "### $(basename "$model") (bf16)"
      "$BIN/derecho-infer" bench --model "$model" --runs "$RUNS" --threads 1,2 \
        --precision bf16 2>/dev/null
    done
    echo "### resnet50_v2 (MXNet loader, bf16)"
    "$BIN/derecho-infer" bench --model "$OUT/resnet50_v2" --format mxnet --runs "$RUNS" \
      --threads 1,2 --precision bf16 2>/dev/null
  fi
done
echo "# end $(date -u +%FT%TZ), load: $(cut -d' ' -f1-3 /proc/loadavg)"
