#!/usr/bin/env bash
# The whole photo-identification story on this machine:
#   1. install dependencies (scripts/install-deps.sh) and build;
#   2. start a local 4-node cluster (test-4-nodes: nodes 0-1 function tier, 2-3 categorizer)
#      in the background with scripts/cluster.sh;
#      Its credentials (TLS certificate, CA, admin token: test-4-nodes/tls, secrets) are made on
#      first start by scripts/gen-cluster.sh; gRPC and HTTP use TLS and install needs the token;
#   3. install the bundled demo model (models/demo-shapes) under tag 1 with the client (run
#      from test-4-nodes/client, whose derecho.cfg names the CA and the token);
#   4. classify the sample photos with the client and over HTTP, and print the answers;
#   5. print the web page address and keep serving until Ctrl-C (then stop the cluster).
# It never touches a cluster it did not start: if test-4-nodes already runs, or its ports
# (gRPC 28000-28001, HTTP 18000-18001, gms 23580-23583) are taken, it says so and exits 1.
#
#   scripts/demo.sh          the story, then serve until Ctrl-C
#   scripts/demo.sh --once   the story, then stop the cluster and exit (non-zero on failure)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

once=0
case "${1:-}" in
  --once) once=1 ;;
  "") ;;
  *) sed -n '2,/^set/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac

# True when something listens on 127.0.0.1:port.
port_taken() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

run_dir=${SOSPDEMO_RUN_DIR:-$repo/build/run/test-4-nodes}
for ((i = 0; i < 4; i++)); do
  # (a zombie, killed and not yet reaped, does not run: ps shows its state Z)
  if [ -f "$run_dir/n$i.pid" ] && kill -0 "$(cat "$run_dir/n$i.pid")" 2>/dev/null &&
    [[ "$(ps -o stat= -p "$(cat "$run_dir/n$i.pid")" 2>/dev/null)" != Z* ]]; then
    echo "demo: test-4-nodes already runs (node $i, pid $(cat "$run_dir/n$i.pid")); the demo" \
      "leaves it alone. Stop it first (scripts/cluster.sh stop 4) or use it by hand." >&2
    exit 1
  fi
done
for port in 28000 28001 18000 18001 23580 23581 23582 23583; do
  if port_taken "$port"; then
    echo "demo: port $port on 127.0.0.1 is in use (another cluster or program?); the demo" \
      "needs it and leaves whatever holds it alone" >&2
    exit 1
  fi
done

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sospdemo >/dev/null

bin=$repo/build/bin/sospdemo
model=$repo/models/demo-shapes
node=127.0.0.1:28000
http=https://127.0.0.1:18000
cluster=$repo/test-4-nodes
curl_tls=(--cacert "$cluster/tls/ca.pem")

started=0
cleanup() {
  [ "$started" -eq 1 ] || return 0
  echo
  echo "== stopping the cluster the demo started"
  scripts/cluster.sh stop 4 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting a 4-node cluster (test-4-nodes)"
started=1 # from here on the cluster's nodes are the demo's (start stops them itself on failure)
scripts/cluster.sh start 4

echo
if curl -sS "${curl_tls[@]}" "$http/v1/models" | grep -q '"tag":1,'; then
  # the categorizer tier is durable: a model installed by an earlier run came back from the
  # logs when the cluster started (docs/persistence.md "Replay")
  echo "== tag 1 is back from the last run (the categorizer tier is durable); removing it"
  (cd test-4-nodes/client && "$bin" client "$node" removemodel 1)
  echo
fi
echo "== installing the demo model under tag 1"
(cd test-4-nodes/client &&
  "$bin" client "$node" installmodel 1 "$model/synset.txt" "$model/shapes-symbol.json" \
    "$model/shapes-0000.params")

echo
echo "== classifying the sample photos with the client (expected answer after '->')"
failures=0
while IFS=$'\t' read -r photo expected; do
  case "$photo" in "#"* | "") continue ;; esac
  answer=$(cd test-4-nodes/client && "$bin" client "$node" inference 1 "$model/photos/$photo" |
    sed -n 's/^photo description://p' || true) # an error answer exits 1: counted below
  mark=ok
  [ "$answer" = "$expected" ] || { mark=MISMATCH; failures=$((failures + 1)); }
  printf '%-20s %-28s -> %-28s %s\n' "$photo" "$answer" "$expected" "$mark"
done <"$model/photos/expected.txt"

echo
echo "== the same over HTTP (POST $http/v1/whatsthis?tags=1)"
for photo in red-circle.jpg green-star.png yellow-square.png; do
  printf '%-20s ' "$photo"
  curl -sS "${curl_tls[@]}" -F "photo=@$model/photos/$photo" "$http/v1/whatsthis?tags=1"
  echo
done

echo
echo "== models installed (GET $http/v1/models)"
curl -sS "${curl_tls[@]}" "$http/v1/models"
echo

echo
echo "== install without the admin token is refused (PUT $http/v1/models/2)"
status=$(curl -sS "${curl_tls[@]}" -o /dev/null -w '%{http_code}' -X PUT \
  -F "synset=@$model/synset.txt" -F "symbol=@$model/shapes-symbol.json" \
  -F "params=@$model/shapes-0000.params" "$http/v1/models/2")
echo "HTTP $status (expected 401)"
if [ "$status" != 401 ]; then
  echo "demo: an install without the token was not refused" >&2
  exit 1
fi

if [ "$failures" -ne 0 ]; then
  echo "demo: $failures photo(s) got an unexpected answer" >&2
  exit 1
fi

if [ "$once" -eq 1 ]; then
  echo
  echo "demo: done (--once)"
  exit 0
fi

echo
echo "The service is running. Web page: $http/  (also https://127.0.0.1:18001/; the browser"
echo "  must trust the cluster CA $cluster/tls/ca.pem, or accept the certificate once)"
echo "Client (from $cluster/client): $bin client $node inference 1 <photo>"
echo "curl: curl --cacert $cluster/tls/ca.pem -H \"Authorization: Bearer \$(cat $cluster/secrets/admin.token)\" ..."
echo "Try a crash: kill -9 \$(cat $run_dir/n3.pid), keep classifying, and watch"
echo "  $http/v1/cluster (the view without node 3); scripts/cluster.sh restart 3 brings it back."
echo "Press Ctrl-C to stop."
while true; do sleep 3600; done
