#!/usr/bin/env bash
# Issue 15's dynamic-batching rows, like for like: Whatsthis through a 2-node cluster (one
# function-tier node, one categorizer; [SOSPDEMO] max_batch_size 8, the default) with 8
# concurrent clients, against the engine's own best rate for the same work — whole photos
# (decode + preprocess + classify, dr_model_classify_batch) at batch 1 and 8 with 1 and 2
# threads (`derecho-infer bench ... PHOTO`) — in the same run, on the same machine.
#
# Usage: bench/service_batching.sh [RUNS] > results.txt     (default RUNS=3)
# Environment: BUILD_DIR (default build), TESTDATA (default ../shared/testdata: SqueezeNet 1.1
#   MXNet files and photos/dog_winml.jpg; without them the script says so and exits 77),
#   PORT_BASE (default 46900), CALLS (per bench_service run, default 400).
# Every answer is checked (bench_service: the engine's top class, else the run fails).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
build=${BUILD_DIR:-build}
data=${TESTDATA:-$(cd .. && pwd)/shared/testdata}
port=${PORT_BASE:-46900}
calls=${CALLS:-400}
model=$data/mxnet/squeezenet1.1
photo=$data/photos/dog_winml.jpg
[ -f "$model/squeezenet1.1-0000.params" ] && [ -f "$photo" ] ||
  { echo "SKIP: no $model or $photo"; exit 77; }
for b in sospdemo bench_service derecho-infer; do
  [ -x "$build/bin/$b" ] || { echo "no $build/bin/$b: build first" >&2; exit 1; }
done
work=$(mktemp -d)
export SOSPDEMO_RUN_DIR=$work/run
stop() { scripts/cluster.sh stop 2 --dir "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap stop EXIT

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs," \
  "$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
scripts/gen-cluster.sh "$work/cluster" 2 --function-nodes 1 --port-base "$port" --insecure \
  --launch-binary "$(pwd)/$build/bin/sospdemo" >/dev/null
scripts/cluster.sh start 2 --dir "$work/cluster" >/dev/null
address=127.0.0.1:$((port + 80))
"$build/bin/sospdemo" client "$address" installmodel 1 "$model/synset.txt" \
  "$model/squeezenet1.1-symbol.json" "$model/squeezenet1.1-0000.params" | grep -q "return code:0" ||
  { echo "the model did not install" >&2; exit 1; }

for ((r = 1; r <= runs; r++)); do
  echo "## round $r"
  "$build/bin/bench_service" "$address" 1 "$photo" "$model/synset.txt" \
    "$model/squeezenet1.1-symbol.json" "$model/squeezenet1.1-0000.params" "$calls" 8 |
    tee "$work/service.$r"
  "$build/bin/derecho-infer" bench --model "$model/squeezenet1.1" --format mxnet --runs 20 \
    --threads 1,2 "$photo" | grep '^photo ' | tee "$work/engine.$r"
done

# per round: the service's 8-client calls/s, its 1-client p50, the engine's best photos/s
for ((r = 1; r <= runs; r++)); do
  sed -n 's/.* 8 clients: \([0-9.]*\) calls\/s.*/\1/p' "$work/service.$r" >>"$work/svc8"
  sed -n 's/^  service .* p50 \([0-9.]*\) ms.*/\1/p' "$work/service.$r" >>"$work/svc1"
  sed -n 's/^  engine .* p50 \([0-9.]*\) ms.*/\1/p' "$work/service.$r" >>"$work/eng1"
  sed -n 's/.*, \([0-9.]*\) photos\/s.*/\1/p' "$work/engine.$r" | sort -g | tail -n 1 >>"$work/best"
done
spread() { sort -g "$1" | awk '{v[NR] = $1} END {printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
med() { sort -g "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo
echo "# medians (min-max) over $runs rounds; end load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| service, 8 clients, calls/s | engine best, whole photos/s | ratio | service 1 client p50 ms | engine 1 photo p50 ms |"
echo "|---|---|---|---|---|"
echo "| $(spread "$work/svc8") | $(spread "$work/best") |" \
  "$(awk -v a="$(med "$work/svc8")" -v b="$(med "$work/best")" 'BEGIN {printf "%.2f", a / b}') |" \
  "$(spread "$work/svc1") | $(spread "$work/eng1") |"
