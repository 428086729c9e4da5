#!/usr/bin/env bash
# Screenshots of the web page before and after a categorizer replica is killed (issue 18's
# walkthrough "kill a replica and watch the page"), with headless Chromium:
#   scripts/screenshot-kill.sh [OUT_DIR]    (default docs/)
# Generates a 4-node cluster on ports 46700.. in build/screenshot-cluster, installs the demo
# model, classifies a sample, shoots the page, kills node 3 with kill -9, waits for the view
# without it, shoots again, and stops the cluster. Needs /usr/bin/chromium and a built sospdemo.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${1:-$repo/docs}
dir=$repo/build/screenshot-cluster
export SOSPDEMO_RUN_DIR=$repo/build/run/screenshot-cluster
bin=$repo/build/bin/sospdemo
model=$repo/models/demo-shapes
page=http://127.0.0.1:46790/
rm -rf "$dir"
# --insecure: headless Chromium would need the cluster CA; the screenshots show the page only
scripts/gen-cluster.sh "$dir" 4 --port-base 46700 --insecure >/dev/null
trap 'scripts/cluster.sh stop --dir "$dir" >/dev/null' EXIT
scripts/cluster.sh start --dir "$dir"
"$bin" client 127.0.0.1:46780 installmodel 1 "$model/synset.txt" "$model/shapes-symbol.json" \
  "$model/shapes-0000.params" >/dev/null
"$bin" client 127.0.0.1:46780 inference 1 "$model/photos/red-circle.jpg"
shoot() {
  /usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --virtual-time-budget=4000 --window-size=1100,1250 --screenshot="$1" "$page" >/dev/null 2>&1
  echo "wrote $1"
}
shoot "$out/sospdemo-page-before-kill.png"
kill -9 "$(cat "$SOSPDEMO_RUN_DIR/n3.pid")"
for ((t = 0; t < 100; t++)); do # the view without node 3, with a deadline
  curl -s "${page}v1/cluster" | grep -q '"id":3,' || break
  sleep 0.2
done
"$bin" client 127.0.0.1:46780 inference 1 "$model/photos/green-star.png"
shoot "$out/sospdemo-page-after-kill.png"
