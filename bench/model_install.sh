#!/usr/bin/env bash
# Installing a large model on a 3-replica categorizer shard, two builds paired (issue 13's
# "100 MB model install" row): a 4-node cluster (one function-tier node, one shard of three
# categorizer replicas) per build, the seed's ResNet-50 V2 in MXNet format (102 MB of params,
# ../shared/tools/make_resnet50_v2.py, generated into bench/infer/out as bench/infer/run_bench.sh
# does), installed with `sospdemo client ... installmodel` and removed again, ROUNDS times per
# build, the builds alternating round by round so they see the same minutes. Every install must
# answer "return code:0" and every replica must then list the model with one digest, else the
# run fails. The time is the client process's wall time (read the files, stream them over gRPC,
# the p2p request to a replica, its validation load of the model, the ordered multicast to the
# three replicas, their replies). References printed beside it, from the same run: the engine's
# own load of the model (`derecho-infer bench --runs 1` prints its load time: the validation
# the receiving replica does) and one raw loopback TCP copy of the same bytes
# (../shared/tools/peers/tcp-ref.sh).
#
# Usage: bench/model_install.sh BUILD_A BUILD_B [ROUNDS] > results.txt   (default ROUNDS=5)
#   e.g. bench/model_install.sh /work/perf/old/build build 5
# Environment: PORT_BASE (default 46700; build B uses PORT_BASE + 100), MODEL_DIR (default
#   bench/infer/out), PEERS_DIR (default ../shared/tools/peers), CLUSTER_A / CLUSTER_B: more
#   scripts/gen-cluster.sh options for one side (e.g. the same build twice with
#   CLUSTER_B=--volatile compares a durable shard, the default, with a volatile one).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
build_a=$1 build_b=$2 rounds=${3:-5}
port_base=${PORT_BASE:-46700}
model_dir=${MODEL_DIR:-bench/infer/out}
peers=${PEERS_DIR:-$(cd .. && pwd)/shared/tools/peers}
if [ ! -f "$model_dir/resnet50_v2-0000.params" ]; then
  mkdir -p "$model_dir"
  /usr/bin/python3 ../shared/tools/make_resnet50_v2.py --format mxnet --synset --out-dir "$model_dir" >&2
fi
synset=$model_dir/synset.txt symbol=$model_dir/resnet50_v2-symbol.json
params=$model_dir/resnet50_v2-0000.params
bytes=$(($(stat -c %s "$synset") + $(stat -c %s "$symbol") + $(stat -c %s "$params")))
work=$(mktemp -d)
stop_all() {
  for side in A B; do
    SOSPDEMO_RUN_DIR=$work/run$side scripts/cluster.sh stop 4 --dir "$work/cluster$side" \
      >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap stop_all EXIT

build_of() { if [ "$1" = A ]; then echo "$build_a"; else echo "$build_b"; fi; }
port_of() { if [ "$1" = A ]; then echo "$port_base"; else echo $((port_base + 100)); fi; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), rounds=$rounds, $(nproc) CPUs"
echo "# A: $build_a ${CLUSTER_A:-}  B: $build_b ${CLUSTER_B:-}  ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), model $bytes bytes"
for side in A B; do
  build=$(build_of $side) port=$(port_of $side)
  [ -x "$build/bin/sospdemo" ] || { echo "no $build/bin/sospdemo" >&2; exit 1; }
  extra=${CLUSTER_A:-}
  [ "$side" = B ] && extra=${CLUSTER_B:-}
  # shellcheck disable=SC2086
  scripts/gen-cluster.sh "$work/cluster$side" 4 --function-nodes 1 --port-base "$port" --insecure \
    --launch-binary "$(realpath "$build/bin/sospdemo")" $extra >/dev/null
  SOSPDEMO_RUN_DIR=$work/run$side scripts/cluster.sh start 4 --dir "$work/cluster$side" >/dev/null
done

now_ns() { date +%s%N; }
for ((r = 1; r <= rounds; r++)); do
  for side in A B; do
    build=$(build_of $side) address=127.0.0.1:$(($(port_of $side) + 80))
    tag=$((100 + r))
    start=$(now_ns)
    out=$("$build/bin/sospdemo" client "$address" installmodel "$tag" "$synset" "$symbol" "$params" 2>&1)
    end=$(now_ns)
    grep -q "return code:0" <<<"$out" || { echo "FAILED install: round $r build $side: $out" >&2; exit 1; }
    # the function tier lists the model on all three replicas, consistent (one digest, one version)
    listed=$(curl -s "http://127.0.0.1:$(($(port_of $side) + 90))/v1/models" | /usr/bin/python3 -c "
import json, sys
m = [m for m in json.load(sys.stdin) if m['tag'] == $tag]
print(len(m[0]['replicas']) if m and m[0]['consistent'] else 0)")
    [ "$listed" = 3 ] || { echo "FAILED: round $r build $side: tag $tag on $listed consistent replicas" >&2; exit 1; }
    "$build/bin/sospdemo" client "$address" removemodel "$tag" | grep -q "return code:0" ||
      { echo "FAILED remove: round $r build $side" >&2; exit 1; }
    echo "round=$r build=$side install_ms=$(((end - start) / 1000000))" | tee -a "$work/results"
  done
  start=$(now_ns)
  "$build_b/bin/derecho-infer" classify --model "$model_dir/resnet50_v2" --format mxnet \
    --labels "$synset" ../shared/testdata/photos/cat.jpg >/dev/null 2>&1 || true
  end=$(now_ns)
  echo "round=$r engine_load_and_classify_ms=$(((end - start) / 1000000))" | tee -a "$work/results"
done

echo
echo "# raw loopback TCP (same run): one copy of $bytes bytes"
"$peers/tcp-ref.sh" 2>&1 | grep -E "^one-way 100 MiB" || true
med() { sort -g | awk '{v[NR] = $1} END {printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]}'; }
echo
echo "# medians (min-max) over $rounds rounds; end load: $(cut -d' ' -f1-3 /proc/loadavg)"
for side in A B; do
  echo "build $side install ms: $(sed -n "s/^round=.* build=$side install_ms=//p" "$work/results" | med)"
done
echo "engine load + one classification ms: $(sed -n 's/^round=.* engine_load_and_classify_ms=//p' "$work/results" | med)"
