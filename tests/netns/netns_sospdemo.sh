#!/usr/bin/env bash
# netns_sospdemo: the sospdemo story on a cluster across hosts (issue 16), with real processes.
#
#   tests/netns/netns_sospdemo.sh BIN_DIR [mixed]
#   tests/netns/netns_sospdemo.sh BIN_DIR bench [derecho-bench options]
#
# Four "hosts": network namespaces drs<pid>-h0..h3, each with its own address 10.214.0.10+i/24 on
# eth0, a veth to a Linux bridge in a hub namespace; a fifth namespace, the "client machine"
# (10.214.0.100), runs scripts/cluster.sh and the client. The cluster folder comes from
# `scripts/gen-cluster.sh DIR 4 --hosts 10.214.0.10,...,13` (nodes 0-1 function tier, 2-3 one
# categorizer shard of two replicas). scripts/cluster.sh starts, checks and stops the nodes over
# "ssh": SOSPDEMO_SSH is a small script that runs the command inside the host's namespace (what
# ssh would do on a real host), so the path for remote hosts is the one tested. Checks:
#   - every node's derecho.cfg has its host's local_ip and node 0's address as the contact; the
#     server certificate names every host (IP SANs); cluster.sh --print prints one command per
#     node and host; start without SOSPDEMO_SSH refuses with a message;
#   - the nodes take their roles (status), the demo model installs with the admin token from the
#     cluster folder, every sample photo is classified correctly through both function nodes
#     (gRPC) and over HTTPS at node 1's host address (the CA from the cluster folder);
#   - kill -9 of categorizer replica node 3: every photo again correct through both function
#     nodes; no call takes longer than MAX_CALL_S (5) seconds.
# `tc netem` (1 ms delay, 0.1% loss per link) is added where the kernel has it; where it does
# not, the test says so and runs without it.
#
# bench: on the same four hosts, derecho-bench --node-config in each namespace (one node each, a
# 1-shard group of the four, all four sending unless --senders says otherwise; options as
# derecho-bench's, e.g. --size 10240 --count 20000, or
# --latency --count 2000, or --rpc p2p|ordered|client --count 2000); prints every node's RESULT
# line ("seconds delivered p50 p90 p99", latencies in us) and checks the counts: throughput,
# every node delivered count x senders messages; latency, count; rpc, node 0 made count calls.
# Fails when a node gives no RESULT within 300 s or exits non-zero (derecho-bench checks every
# delivery and ends with a clean leave, highest rank first: hence min_nodes = 1 below; the nodes
# wait for a view of all --nodes members before they send).
#
# mixed: the same story with scripts/cluster.sh and the client run on host 0 (no client
# namespace): node 0 is local to cluster.sh (started directly), nodes 1-3 over the stand-in.
#
# Needs root and `ip netns` (iproute2): otherwise prints why and exits 77 (CTest: Skipped).
# Everything it creates (namespaces, bridge, veths, processes, the folder /tmp/dr_sospns_<pid>_*)
# is removed by the EXIT trap, also on failure; namespaces and folders of an earlier run that was
# killed (its pid gone) are removed at the start.
set -uo pipefail

bin=$(realpath "${1:?usage: netns_sospdemo.sh BIN_DIR [mixed | bench [derecho-bench options]]}")
mode=${2:-story}
case "$mode" in
  story | mixed) ;;
  bench) shift 2 ;;
  *) echo "usage: netns_sospdemo.sh BIN_DIR [mixed | bench [derecho-bench options]]" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/../.." && pwd)
prefix=drs$$
nodes=4
subnet=10.214.0
max_call_s=5
run_dir=
namespaces=()

log() { echo "netns_sospdemo: $*"; }

skip() {
  echo "SKIP: $*"
  exit 77
}

ns_of() { echo "$prefix-h$1"; }
ip_of() { echo "$subnet.$((10 + $1))"; }
client_ns=$prefix-client
[ "$mode" = mixed ] && client_ns=$prefix-h0

# ---- cleanup -------------------------------------------------------------------------------

# Kills every process inside namespace $1 (the nodes run there, started over "ssh").
kill_in() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
}

cleanup() {
  local ns
  for ns in "${namespaces[@]}"; do kill_in "$ns"; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [ -n "$run_dir" ] && rm -rf "$run_dir"
}

remove_stale_runs() {
  local ns pid dir
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^drs[0-9]+-' || true); do
    pid=${ns#drs}
    pid=${pid%%-*}
    if [ ! -d "/proc/$pid" ]; then
      kill_in "$ns"
      ip netns del "$ns" 2>/dev/null
    fi
  done
  for dir in /tmp/dr_sospns_[0-9]*_*; do
    [ -d "$dir" ] || continue
    pid=${dir#/tmp/dr_sospns_}
    pid=${pid%%_*}
    [ -d "/proc/$pid" ] || rm -rf "$dir"
  done
}

fail() {
  local f
  echo "netns_sospdemo: FAIL: $*"
  for f in "$run_dir"/run/n*.log "$run_dir"/bench*.out "$run_dir"/bench*.err; do
    [ -s "$f" ] || continue
    echo "--- $f (last 15 lines)"
    tail -15 "$f"
  done
  exit 1
}

# ---- preconditions and network -------------------------------------------------------------

check_preconditions() {
  [ "$(id -u)" -eq 0 ] || skip "network namespaces need root (uid $(id -u))"
  command -v ip >/dev/null || skip "ip (iproute2) is not installed"
  local probe=$prefix-probe why
  why=$(ip netns add "$probe" 2>&1) || skip "ip netns add fails here: $why"
  namespaces+=("$probe")
  why=$(ip -n "$probe" link add br0 type bridge 2>&1) || skip "no Linux bridge here: $why"
  why=$(ip -n "$probe" link add v0 type veth peer name v1 2>&1) || skip "no veth here: $why"
  ip netns del "$probe"
  namespaces=()
  if [ "$mode" = bench ]; then
    [ -x "$bin/derecho-bench" ] || fail "no $bin/derecho-bench (build it first)"
    return
  fi
  [ -x "$bin/sospdemo" ] || fail "no $bin/sospdemo (build it first)"
  command -v openssl >/dev/null || fail "openssl is not installed (scripts/install-deps.sh)"
  command -v curl >/dev/null || fail "curl is not installed (scripts/install-deps.sh)"
}

add_namespace() {
  ip netns add "$1" || fail "ip netns add $1"
  namespaces+=("$1")
  ip -n "$1" link set lo up || fail "lo up in $1"
}

# Namespace $1 on the bridge as veth v$2 with address $3.
attach() {
  local hub=$prefix-hub
  ip -n "$hub" link add "v$2" type veth peer name eth0 netns "$1" || fail "veth for $1"
  ip -n "$hub" link set "v$2" master br0 up || fail "veth of $1 on the bridge"
  ip -n "$1" addr add "$3/24" dev eth0 || fail "address of $1"
  ip -n "$1" link set eth0 up || fail "eth0 up in $1"
}

make_network() {
  local hub=$prefix-hub i ns why netem=1
  add_namespace "$hub"
  ip -n "$hub" link add br0 type bridge || fail "bridge"
  ip -n "$hub" link set br0 up || fail "bridge up"
  for ((i = 0; i < nodes; i++)); do
    ns=$(ns_of "$i")
    add_namespace "$ns"
    attach "$ns" "$i" "$(ip_of "$i")"
    if [ "$netem" -eq 1 ] &&
      ! why=$(tc -n "$ns" qdisc add dev eth0 root netem delay 1ms loss 0.1% 2>&1); then
      netem=0
    fi
  done
  if [ "$mode" != mixed ]; then
    add_namespace "$client_ns"
    attach "$client_ns" 99 "$subnet.100"
  fi
  if [ "$netem" -eq 1 ]; then
    log "network: $nodes hosts on bridge br0 ($subnet.0/24), netem 1 ms delay and 0.1% loss"
  else
    log "network: $nodes hosts on bridge br0 ($subnet.0/24); NOTE: tc netem is not available" \
      "in this kernel ($why): the 1 ms delay / 0.1% loss part is skipped, links run without it"
  fi
}

# ---- helpers -------------------------------------------------------------------------------

# Runs a command in the client namespace with the cluster.sh settings.
in_client() {
  ip netns exec "$client_ns" env SOSPDEMO_SSH="$run_dir/ssh" SOSPDEMO_BIN="$bin/sospdemo" \
    SOSPDEMO_RUN_DIR="$run_dir/run" SOSPDEMO_START_TIMEOUT=60 "$@"
}

# Writes the "ssh" that runs its command in the namespace of the host address $1.
write_ssh() {
  {
    echo '#!/usr/bin/env bash'
    echo '# ssh stand-in for netns_sospdemo.sh: runs "$2..." in the namespace of host $1'
    echo 'host=$1; shift'
    echo 'case $host in'
    for ((i = 0; i < nodes; i++)); do echo "  $(ip_of "$i")) ns=$(ns_of "$i") ;;"; done
    echo '  *) echo "ssh: no host $host" >&2; exit 255 ;;'
    echo 'esac'
    echo 'exec ip netns exec "$ns" bash -c "$*"'
  } >"$run_dir/ssh"
  chmod +x "$run_dir/ssh"
}

# Classifies every sample photo through function node $1 (gRPC); fails on a wrong answer or a
# call slower than max_call_s.
classify_all() {
  local node=$1 address photo expected answer t0 ms count=0
  address="$(ip_of "$node"):$((28000 + node))"
  while IFS=$'\t' read -r photo expected; do
    case "$photo" in "#"* | "") continue ;; esac
    t0=$(date +%s%N)
    answer=$(cd "$run_dir/cluster/client" && in_client timeout 30 "$bin/sospdemo" client \
      "$address" inference 1 "$repo/models/demo-shapes/photos/$photo" 2>&1)
    ms=$((($(date +%s%N) - t0) / 1000000))
    [[ "$answer" == *"photo description:$expected"* ]] ||
      fail "$photo through node $node ($address): got '$answer', expected '$expected'"
    [ "$ms" -le $((max_call_s * 1000)) ] ||
      fail "$photo through node $node took $ms ms (more than $max_call_s s)"
    count=$((count + 1))
    slowest=$((ms > slowest ? ms : slowest))
  done <"$repo/models/demo-shapes/photos/expected.txt"
  [ "$count" -ge 8 ] || fail "only $count photos in expected.txt"
  log "node $node ($address): $count photos correct"
}

# ---- the story -----------------------------------------------------------------------------

check_generated() {
  local i cfg sans
  for ((i = 0; i < nodes; i++)); do
    cfg=$run_dir/cluster/n$i/derecho.cfg
    grep -qx "local_ip = $(ip_of "$i")" "$cfg" || fail "n$i/derecho.cfg: local_ip is not $(ip_of "$i")"
    grep -qx "leader_ip = $(ip_of 0)" "$cfg" || fail "n$i/derecho.cfg: leader_ip is not $(ip_of 0)"
  done
  sans=$(openssl x509 -in "$run_dir/cluster/tls/server.pem" -noout -ext subjectAltName)
  for ((i = 0; i < nodes; i++)); do
    [[ "$sans" == *"IP Address:$(ip_of "$i")"* ]] || fail "server.pem lacks $(ip_of "$i"): $sans"
  done
  [[ "$sans" == *"IP Address:127.0.0.1"* ]] || fail "server.pem lacks 127.0.0.1: $sans"
  log "gen-cluster.sh --hosts: local_ip per host, contact $(ip_of 0), certificate SANs ok"
}

check_print() {
  local out lines
  out=$(ip netns exec "$client_ns" "$repo/scripts/cluster.sh" start --print --dir \
    "$run_dir/cluster" 2>&1) || fail "cluster.sh start --print failed: $out"
  lines=$(grep -c "^\[$subnet\.1[0-3]\] cd .* scripts/cluster.sh node start [0-3] 4 --dir" <<<"$out")
  [ "$lines" -eq "$nodes" ] || fail "cluster.sh start --print: $lines node lines, not $nodes: $out"
  out=$(ip netns exec "$client_ns" env -u SOSPDEMO_SSH SOSPDEMO_BIN="$bin/sospdemo" \
    SOSPDEMO_RUN_DIR="$run_dir/run" "$repo/scripts/cluster.sh" start --dir "$run_dir/cluster" 2>&1) &&
    fail "cluster.sh start without SOSPDEMO_SSH started remote nodes: $out"
  [[ "$out" == *"set SOSPDEMO_SSH"* ]] || fail "cluster.sh start without ssh said: $out"
  log "cluster.sh --print prints a command per node and host; without SOSPDEMO_SSH it refuses"
}

# derecho-bench --node-config in each host's namespace with options "$@".
run_bench() {
  local i pids=() count=10000 senders="" latency=0 arg prev="" line delivered status rpc=0 want
  for arg in "$@"; do
    case "$prev" in --count) count=$arg ;; --senders) senders=$arg ;; esac
    [ "$arg" = --latency ] && latency=1
    [ "$arg" = --rpc ] && rpc=1
    prev=$arg
  done
  # derecho-bench's default senders is its --nodes default (3), not the cluster's size, and it
  # checks --senders against --nodes
  set -- --nodes "$nodes" "$@"
  [ -n "$senders" ] || senders=$nodes
  for ((i = 0; i < nodes; i++)); do
    cat >"$run_dir/bench$i.cfg" <<CFG
[DERECHO]
contact_ip = $(ip_of 0)
contact_port = 22200
local_id = $i
local_ip = $(ip_of "$i")
gms_port = 22200
heartbeat_ms = 1000
[SUBGROUP/DEFAULT]
max_payload_size = 10485760
max_smc_payload_size = 10240
block_size = 1048576
window_size = 16
[SUBGROUP/BENCH]
num_shards = 1
min_nodes = 1
max_nodes = $nodes
[LOGGER]
default_log_level = warn
CFG
    ip netns exec "$(ns_of "$i")" timeout 300 "$bin/derecho-bench" --node-config \
      "$run_dir/bench$i.cfg" "$@" >"$run_dir/bench$i.out" 2>"$run_dir/bench$i.err" </dev/null &
    pids+=($!)
    [ "$i" -eq 0 ] && sleep 0.2 # node 0 (the contact) listens first
  done
  for ((i = 0; i < nodes; i++)); do
    status=0
    wait "${pids[i]}" || status=$?
    [ "$status" -eq 0 ] || fail "derecho-bench on host $(ip_of "$i") exited with status $status"
    line=$(grep -m1 '^RESULT ' "$run_dir/bench$i.out") || fail "node $i gave no RESULT"
    log "node $i ($(ip_of "$i")): $line"
    delivered=$(awk '{print $3}' <<<"$line")
    # throughput: every node delivers count x senders; latency: count (node 0's messages);
    # rpc: node 0 (the caller, first to join) times count calls, the others none
    want=$((count * senders))
    [ "$latency" -eq 0 ] || want=$count
    if [ "$rpc" -eq 1 ]; then
      want=0
      [ "$i" -eq 0 ] && want=$count
    fi
    [ "$delivered" -eq "$want" ] || fail "node $i counted $delivered messages or calls, not $want"
  done
  log "derecho-bench across $nodes namespaces: every node gave a RESULT (seconds delivered" \
    "p50_us p90_us p99_us); options: $*"
}

trap cleanup EXIT
trap "exit 143" TERM
trap "exit 130" INT
check_preconditions
remove_stale_runs
run_dir=$(mktemp -d "/tmp/dr_sospns_$$_XXXXXX")
make_network
if [ "$mode" = bench ]; then
  run_bench "$@"
  log "PASS"
  exit 0
fi
write_ssh
hosts=$(for ((i = 0; i < nodes; i++)); do ip_of "$i"; done | paste -sd,)
"$repo/scripts/gen-cluster.sh" "$run_dir/cluster" "$nodes" --hosts "$hosts" \
  --launch-binary "$bin/sospdemo" >/dev/null || fail "gen-cluster.sh --hosts $hosts"
check_generated
check_print

out=$(in_client "$repo/scripts/cluster.sh" start "$nodes" --dir "$run_dir/cluster" 2>&1) ||
  fail "cluster.sh start: $out"
log "$(tail -n 1 <<<"$out") (cluster.sh run in $client_ns)"
status=$(in_client "$repo/scripts/cluster.sh" status "$nodes" --dir "$run_dir/cluster" 2>&1) ||
  fail "cluster.sh status: $status"
for i in 0 1; do
  grep -q "^node $i: running .*function tier" <<<"$status" || fail "node $i not in the function tier: $status"
done
for i in 2 3; do
  grep -q "^node $i: running .*categorizer tier" <<<"$status" || fail "node $i not a categorizer: $status"
done
grep -q "answering" <<<"$status" || fail "status: function tier not answering: $status"
log "status: nodes 0-1 function tier, 2-3 categorizer replicas, function tier answering"

model=$repo/models/demo-shapes
out=$(cd "$run_dir/cluster/client" && in_client timeout 60 "$bin/sospdemo" client \
  "$(ip_of 0):28000" installmodel 1 "$model/synset.txt" "$model/shapes-symbol.json" \
  "$model/shapes-0000.params" 2>&1) || fail "installmodel: $out"
log "model installed under tag 1 (admin token from the cluster folder)"

slowest=0
classify_all 0
classify_all 1
answer=$(ip netns exec "$client_ns" curl -sS --max-time 10 --cacert "$run_dir/cluster/tls/ca.pem" \
  -F "photo=@$model/photos/green-star.png" "https://$(ip_of 1):18001/v1/whatsthis?tags=1" 2>&1)
[[ "$answer" == *"green star"* ]] || fail "HTTPS at https://$(ip_of 1):18001: $answer"
log "HTTPS at node 1's host address (certificate verified with the cluster CA): green star"

victim_pid=$(cat "$run_dir/run/n3.pid") || fail "no pid file for node 3"
kill -KILL "$victim_pid" || fail "node 3 (pid $victim_pid) was not running"
log "killed categorizer replica node 3 (pid $victim_pid) with SIGKILL"
classify_all 0
classify_all 1
log "slowest call: $slowest ms (limit $max_call_s s)"
status=$(in_client "$repo/scripts/cluster.sh" status "$nodes" --dir "$run_dir/cluster" 2>&1) &&
  fail "cluster.sh status exits 0 with node 3 killed: $status"
grep -q "^node 3: not running" <<<"$status" || fail "status does not show node 3 down: $status"
grep -q "answering" <<<"$status" || fail "status: function tier not answering: $status"
log "status after the kill: node 3 not running (exit 1), the function tier answering"

out=$(in_client "$repo/scripts/cluster.sh" stop "$nodes" --dir "$run_dir/cluster" 2>&1) ||
  fail "cluster.sh stop: $out"
log "cluster.sh stop: $(paste -sd';' <<<"$out")"
for i in 0 1 2; do
  pid=$(cat "$run_dir/run/n$i.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null &&
    fail "node $i still runs after cluster.sh stop"
done
log "cluster.sh stop stopped the nodes over ssh"
log "PASS"
