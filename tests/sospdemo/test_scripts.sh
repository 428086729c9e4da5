#!/usr/bin/env bash
# scripts/cluster.sh and scripts/demo.sh as a user meets them (issue 18 item 5):
#   - cluster.sh refuses a node count without a folder, a bad argument and a node id out of range,
#     saying what was wrong;
#   - on a generated 4-node cluster (ports 26600..): `status` prints every node's role and the
#     function tier's gRPC and web addresses; `restart 3` after a kill -9 brings node 3 back as a
#     categorizer; `stop` stops them all; nodes started out of id order warn about their roles
#     (in their logs and in `status`); a second process with node 3's id is refused at once and
#     node 3 keeps running; a model installed before `stop` of the whole cluster answers after
#     the next `start` (durable categorizer tier, replayed from the logs); after it is removed
#     and another model installed on its tag, GET /v1/models/7?version= / ?time= read either
#     back from the log (digests), 404 between them and before, 400 for malformed queries;
#   - demo.sh leaves a cluster it did not start alone: with test-4-nodes "running" (a pid file
#     of a live process) it says so, exits 1, and the process still runs.
# Needs DR_SOURCE_DIR and DR_BIN_DIR (ctest sets them).
set -euo pipefail
src=${DR_SOURCE_DIR:?}
bin=${DR_BIN_DIR:?}
work=$(mktemp -d)
export SOSPDEMO_BIN=$bin/sospdemo SOSPDEMO_RUN_DIR=$work/run
holder=""
cleanup() {
  "$src/scripts/cluster.sh" stop --dir "$work/cluster" >/dev/null 2>&1 || true
  [ -n "$holder" ] && kill "$holder" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect_refusal() { # expected-text command...
  local expected=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 2 ] || fail "$* exited $rc, not 2: $out"
  [[ "$out" == *"$expected"* ]] || fail "$*: no '$expected' in: $out"
}

cd "$src"
expect_refusal "no cluster folder" scripts/cluster.sh start 5
expect_refusal "unknown argument 'x'" scripts/cluster.sh start x
expect_refusal "restart needs a node id" scripts/cluster.sh restart
scripts/gen-cluster.sh "$work/cluster" 4 --port-base 26600 >/dev/null
expect_refusal "node 7 is not in" scripts/cluster.sh restart 7 --dir "$work/cluster"
expect_refusal "holds 4 node folder(s), not 3" scripts/cluster.sh status 3 --dir "$work/cluster"

scripts/cluster.sh start --dir "$work/cluster"
status=$(scripts/cluster.sh status --dir "$work/cluster")
echo "$status"
[[ "$status" == *"node 0: running"*"function tier  gRPC 127.0.0.1:26680  web https://127.0.0.1:26690/"* ]] ||
  fail "status: no role or addresses for node 0"
[[ "$status" == *"node 3: running"*"categorizer tier, shard 0"* ]] || fail "status: node 3's role"
[[ "$status" != *warning* ]] || fail "status warns about roles in id order"

kill -9 "$(cat "$work/run/n3.pid")"
for ((t = 0; t < 100; t++)); do # until it is reaped, with a deadline
  rc=0
  scripts/cluster.sh status --dir "$work/cluster" >"$work/status" || rc=$?
  [ "$rc" -ne 0 ] && break
  sleep 0.1
done
[ "$rc" -ne 0 ] || fail "status exits 0 with node 3 down"
grep -q "node 3: not running" "$work/status" || fail "status does not say node 3 is down"
scripts/cluster.sh restart 3 --dir "$work/cluster"
for ((t = 0; t < 100; t++)); do # wait for its role line, with a deadline
  status=$(scripts/cluster.sh status --dir "$work/cluster" || true)
  [[ "$status" == *"node 3: running"*"categorizer tier, shard 0"* ]] && break
  sleep 0.2
done
[[ "$status" == *"node 3: running"*"categorizer tier, shard 0"* ]] || fail "restart: $status"
# a second process with node 3's id on another port (issue 18 item 2: it used to cut node 3 off
# and stop the group): refused at once with a clear message, node 3 keeps running
rc=0
(cd "$work/cluster/n3" && exec timeout 30 "$bin/sospdemo" server --DERECHO/gms_port=26609 \
  </dev/null >"$work/run/twin.log" 2>&1) || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a second node 3 exited $rc (124: it hung)"
grep -q "in use by a running member" "$work/run/twin.log" ||
  fail "the second node 3 did not say why: $(tail -n 3 "$work/run/twin.log")"
sleep 2 # an eviction of node 3 would show by now (heartbeat 500 ms)
status=$(scripts/cluster.sh status --dir "$work/cluster" || true)
[[ "$status" == *"node 3: running"*"categorizer tier, shard 0"* ]] || fail "after the twin: $status"

# the categorizer tier is durable (gen-cluster.sh's default): a model installed before a stop of
# the whole cluster is there after the next start (total restart, the log replayed)
m=$src/models/demo-shapes
client() { (cd "$work/cluster/client" && "$bin/sospdemo" client 127.0.0.1:26680 "$@" 2>&1); }
out=$(client installmodel 7 "$m/synset.txt" "$m/shapes-symbol.json" "$m/shapes-0000.params") ||
  fail "installmodel: $out"
out=$(client inference 7 "$m/photos/red-circle.jpg") || fail "inference before the stop: $out"
[[ "$out" == *"red circle"* ]] || fail "inference before the stop: $out"
scripts/cluster.sh stop --dir "$work/cluster"
scripts/cluster.sh start --dir "$work/cluster"
out=$(client inference 7 "$m/photos/red-circle.jpg") || fail "inference after the restart: $out"
[[ "$out" == *"red circle"* ]] || fail "inference after the restart: $out"
# a categorizer of the last view rebuilt it from its log (a node that left earlier during the
# stop's clean leaves is not in that view: docs/persistence.md "Replay", known gaps)
grep -q "replayed the install of model tag 7" "$work/run/n2.log" "$work/run/n3.log" ||
  fail "no categorizer replayed the install: $(tail -n 5 "$work/run/n2.log")"
echo "the model installed before 'cluster.sh stop' answers after 'cluster.sh start'"

# read-back from the durable log (issue 14): GET /v1/models/7?version=V | ?time=T is the model of
# tag 7 as the shard's state was then. Model A (installed above, before the restart) is removed
# and model B (other labels, so another digest) installed on the same tag.
get() { # path: sets $code and $body (over HTTPS with the cluster's CA; GET needs no token)
  code=$(curl -sS --cacert "$work/cluster/tls/ca.pem" -o "$work/body" -w '%{http_code}' \
    "https://127.0.0.1:26690$1") || fail "curl $1"
  body=$(cat "$work/body")
}
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([0-9a-f]*\)\"\{0,1\}.*/\1/p" <<<"$body"; }
expect() { # status path [text in the body]
  get "$2"
  [ "$code" = "$1" ] || fail "GET $2: $code, not $1: $body"
  [ -z "${3:-}" ] || [[ "$body" == *"$3"* ]] || fail "GET $2: no '$3' in: $body"
}
expect 200 /v1/models/7
digest_a=$(field digest) version_a=$(field version)
[ -n "$digest_a" ] && [ -n "$version_a" ] || fail "no digest or version of model A: $body"
time_a=$(date +%s%6N) # after A's install, before its removal (the log stamps the callers' clock)
sleep 0.2
out=$(client removemodel 7) || fail "removemodel: $out"
sed 's/red circle/crimson circle/' "$m/synset.txt" >"$work/synset-b.txt"
out=$(client installmodel 7 "$work/synset-b.txt" "$m/shapes-symbol.json" "$m/shapes-0000.params") ||
  fail "installmodel of model B: $out"
expect 200 /v1/models/7
digest_b=$(field digest) version_b=$(field version)
[ "$digest_b" != "$digest_a" ] || fail "models A and B have one digest: $body"
expect 200 "/v1/models/7?version=$version_a" "\"digest\":\"$digest_a\""
[ "$(field version)" = "$version_a" ] || fail "as of A's version: not A's install: $body"
expect 404 "/v1/models/7?version=$((version_a - 1))" "none installed by then"
expect 404 "/v1/models/7?version=$((version_b - 1))" "removed at version"
expect 200 "/v1/models/7?version=$version_b" "\"digest\":\"$digest_b\""
expect 200 "/v1/models/7?version=9223372036854775807" "\"digest\":\"$digest_b\""
expect 200 "/v1/models/7?time=$time_a" "\"digest\":\"$digest_a\""
iso_a=$(date -u -d "@${time_a:0:-6}" +%Y-%m-%dT%H:%M:%S).${time_a: -6}Z
expect 200 "/v1/models/7?time=$iso_a" "\"digest\":\"$digest_a\""
expect 200 "/v1/models/7?time=$(date +%s%6N)" "\"digest\":\"$digest_b\""
expect 404 "/v1/models/7?time=0" "none installed by then"
expect 404 "/v1/models/5?version=$version_b" "no model under tag 5"
for bad in "version=abc" "version=-1" "version=" "version" "version=1&time=2" "time=yesterday" \
  "time=2026-13-01T00:00:00Z" "version=99999999999999999999" "version=1&version=2"; do
  expect 400 "/v1/models/7?$bad"
done
echo "models read back as of a version and a time: A ($digest_a) then B ($digest_b)"
scripts/cluster.sh stop --dir "$work/cluster"
rm -rf "$work"/cluster/n*/.plog # what follows starts a fresh cluster

# nodes started out of id order (0, 2, 1, 3): node 2 joins second and lands in the function
# tier; it and node 1 say so, and status warns
wait_log() { # file text
  for ((t = 0; t < 150; t++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "no '$2' in $1"
}
for i in 0 2 1 3; do
  (cd "$work/cluster/n$i" && exec "$bin/sospdemo" server </dev/null >"$work/run/n$i.log" 2>&1) &
  echo $! >"$work/run/n$i.pid"
  if [ "$i" -eq 0 ]; then wait_log "$work/run/n0.log" "contact "; else wait_log "$work/run/n0.log" "peer $i up"; fi
done
wait_log "$work/run/n2.log" "warning: node 2 is in the function tier although ids 0..1"
wait_log "$work/run/n1.log" "warning: node 1 is a categorizer"
status=$(scripts/cluster.sh status --dir "$work/cluster" || true)
[[ "$status" == *"warning: node 2 is in the function tier"* ]] || fail "status: no warning: $status"
scripts/cluster.sh stop --dir "$work/cluster"

# demo.sh and a cluster it did not start
mkdir -p "$work/demo-run"
sleep 600 &
holder=$!
echo "$holder" >"$work/demo-run/n0.pid"
rc=0
out=$(SOSPDEMO_RUN_DIR=$work/demo-run scripts/demo.sh --once 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "demo.sh with a running cluster exited $rc: $out"
[[ "$out" == *"test-4-nodes already runs"* ]] || fail "demo.sh did not say why: $out"
kill -0 "$holder" || fail "demo.sh stopped a process it did not start"
echo "PASS"
