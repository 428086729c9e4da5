#!/usr/bin/env bash
# Runs a local sospdemo cluster in the background.
#
#   scripts/cluster.sh start  [N] [--dir DIR]   start nodes 0..N-1 of test-N-nodes (default 4)
#   scripts/cluster.sh status [N] [--dir DIR]   each node: running, its role, its gRPC and HTTP
#                                               addresses; does the function tier answer
#   scripts/cluster.sh restart I [N] [--dir DIR]  stop node I if it runs, start it again
#   scripts/cluster.sh stop   [N] [--dir DIR]   SIGTERM every node (clean leave), then wait
#
# --dir DIR uses another cluster folder (DIR/nI/derecho.cfg, e.g. from scripts/gen-cluster.sh).
# A folder whose configuration names TLS files that are missing (the shipped folders: credentials
# are not in git) gets them from scripts/gen-cluster.sh --credentials-only on start / restart.
# Each node runs `sospdemo server` in its folder with stdin from /dev/null; its output goes to
# RUN/nI.log and its pid to RUN/nI.pid, where RUN is $SOSPDEMO_RUN_DIR or build/run/<folder>.
# `start` starts node 0 (the leader) first, then the others one by one in id order (roles
# follow join order), and waits (up to
# $SOSPDEMO_START_TIMEOUT seconds, default 90) until node 0's function tier answers a
# Whatsthis call through the categorizer tier. The binary is $SOSPDEMO_BIN or build/bin/sospdemo.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-}
[ -n "$action" ] && shift
nodes=4
dir=""
restart_node=""
if [ "$action" = restart ]; then
  case "${1:-}" in
    [0-9]*) restart_node=$1; shift ;;
    *) echo "cluster.sh: restart needs a node id (cluster.sh restart I [N])" >&2; exit 2 ;;
  esac
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --dir)
      [ $# -ge 2 ] || { echo "cluster.sh: --dir needs a folder" >&2; exit 2; }
      dir=$2; shift 2 ;;
    *)
      if [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
        nodes=$1; shift
      else
        echo "cluster.sh: unknown argument '$1' (N is a number of nodes, like 4)" >&2; exit 2
      fi ;;
  esac
done
[ -n "$dir" ] || dir="$repo/test-$nodes-nodes"
if [ ! -d "$dir" ]; then
  echo "cluster.sh: no cluster folder $dir for $nodes nodes; the shipped ones are" \
    "$(cd "$repo" && ls -d test-*-nodes | tr '\n' ' ')(scripts/gen-cluster.sh DIR N makes" \
    "another; use it with --dir DIR)" >&2
  exit 2
fi
dir=$(cd "$dir" && pwd)
if [ ! -f "$dir/n$((nodes - 1))/derecho.cfg" ] || [ -d "$dir/n$nodes" ]; then
  have=$(ls -d "$dir"/n[0-9]* 2>/dev/null | wc -l)
  echo "cluster.sh: $dir holds $have node folder(s), not $nodes; give N = $have" >&2
  exit 2
fi
if [ -n "$restart_node" ] && [ "$restart_node" -ge "$nodes" ]; then
  echo "cluster.sh: node $restart_node is not in $dir (nodes 0..$((nodes - 1)))" >&2
  exit 2
fi
bin=${SOSPDEMO_BIN:-$repo/build/bin/sospdemo}
run=${SOSPDEMO_RUN_DIR:-$repo/build/run/$(basename "$dir")}
photo="$repo/models/demo-shapes/photos/red-circle.jpg"

# The function tier address of node 0 (from its effective configuration).
function_tier_address() {
  local base ip
  base=$(cd "$dir/n0" && "$bin" config | awk -F' = ' '/^function_tier_base_port/ {print $2}')
  ip=$(cd "$dir/n0" && "$bin" config | awk -F' = ' '/^local_ip/ {print $2}')
  echo "$ip:$((base + 0))"
}

node_pid() {
  local pid_file="$run/n$1.pid"
  [ -f "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

answers() {
  # tag 0 has no model: "Cannot find model for photo tag." (exit 1) is an answer; the client
  # runs in the cluster's client/ folder, whose derecho.cfg gives it the CA and token
  local out client_dir=$dir
  [ -f "$dir/client/derecho.cfg" ] && client_dir=$dir/client
  out=$(cd "$client_dir" && "$bin" client "$1" inference 0 "$photo" 2>/dev/null || true)
  [[ "$out" == *"photo description:"* ]]
}

# A folder whose nodes name credentials gets them made on first use (they are not in git).
ensure_credentials() {
  if grep -q '^tls_cert_file' "$dir/n0/derecho.cfg" && [ ! -f "$dir/tls/server.pem" ]; then
    echo "cluster.sh: making the cluster's credentials in $dir/tls and $dir/secrets"
    "$repo/scripts/gen-cluster.sh" --credentials-only "$dir"
  fi
}

start() {
  [ -x "$bin" ] || { echo "cluster.sh: $bin not built (cmake --build build)" >&2; exit 1; }
  mkdir -p "$run"
  ensure_credentials
  for ((i = 0; i < nodes; i++)); do
    if pid=$(node_pid "$i"); then
      echo "cluster.sh: node $i already runs (pid $pid); stop it first" >&2
      exit 1
    fi
  done
  for ((i = 0; i < nodes; i++)); do
    [ -f "$dir/n$i/derecho.cfg" ] || { echo "cluster.sh: no $dir/n$i/derecho.cfg" >&2; exit 1; }
    (cd "$dir/n$i" && exec "$bin" server </dev/null >"$run/n$i.log" 2>&1) &
    echo $! >"$run/n$i.pid"
    # Shards take members in join order (the seed's rule): start the next node only once this
    # one reached the leader, so nodes 0..N/2-1 form the function tier as the folders say.
    local pattern="peer $i up"
    [ "$i" -eq 0 ] && pattern="contact "
    for ((t = 0; t < 100; t++)); do
      grep -q "$pattern" "$run/n0.log" 2>/dev/null && break
      sleep 0.05
    done
    sleep 0.05
  done
  local address
  address=$(function_tier_address)
  local deadline=$((SECONDS + ${SOSPDEMO_START_TIMEOUT:-90}))
  until answers "$address"; do
    for ((i = 0; i < nodes; i++)); do
      if ! node_pid "$i" >/dev/null; then
        echo "cluster.sh: node $i exited; its log ($run/n$i.log):" >&2
        tail -n 20 "$run/n$i.log" >&2
        stop
        exit 1
      fi
    done
    if [ $SECONDS -ge $deadline ]; then
      echo "cluster.sh: the function tier at $address did not answer in time" >&2
      stop
      exit 1
    fi
    sleep 0.5
  done
  echo "cluster of $nodes nodes from $dir is up; function tier at $address; logs in $run"
}

# A [SECTION] key of node i's effective configuration.
config_value() {
  (cd "$dir/n$1" && "$bin" config) | awk -v section="[$2]" -v key="$3" '
    /^\[/ { in_section = ($0 == section) }
    in_section && $1 == key { print $3; exit }'
}

# The role node i printed after its first view (from its log), or "unknown".
node_role() {
  local line
  line=$(grep -E '^This node (is|joined)' "$run/n$1.log" 2>/dev/null | tail -n 1 || true)
  if [[ "$line" == "This node joined the function tier"* ]]; then
    echo "function tier (took a failed node's place)"
  elif [ -n "$line" ]; then
    line=${line#This node is in the }
    line=${line#This node is }
    echo "${line%.}"
  else
    echo "unknown (no role printed yet)"
  fi
}

status() {
  local running=0 function_nodes ip grpc_base http_base
  function_nodes=$(config_value 0 SUBGROUP/FUNCTION_TIER max_nodes)
  ip=$(config_value 0 DERECHO local_ip)
  grpc_base=$(config_value 0 SOSPDEMO function_tier_base_port)
  http_base=$(config_value 0 SOSPDEMO http_base_port)
  local scheme=http
  [ -n "$(config_value 0 SOSPDEMO tls_cert_file)" ] && scheme=https
  for ((i = 0; i < nodes; i++)); do
    if pid=$(node_pid "$i"); then
      local role
      role=$(node_role "$i")
      local where=""
      if [[ "$role" == function* ]]; then
        where="  gRPC $ip:$((grpc_base + i))"
        [ "${http_base:-0}" -ne 0 ] && where="$where  web $scheme://$ip:$((http_base + i))/"
      fi
      echo "node $i: running (pid $pid), $role$where"
      if [[ "$role" == function* ]] && [ "$i" -ge "${function_nodes:-0}" ]; then
        echo "  warning: node $i is in the function tier, but the folder meant nodes" \
          "0..$((function_nodes - 1)) for it: the nodes joined out of id order (roles follow join order)"
      elif [[ "$role" == categorizer* ]] && [ "$i" -lt "${function_nodes:-0}" ]; then
        echo "  warning: node $i is a categorizer, but the folder meant it for the function tier:" \
          "the nodes joined out of id order (roles follow join order)"
      fi
      running=$((running + 1))
    else
      echo "node $i: not running (log: $run/n$i.log)"
    fi
  done
  local address
  address=$(function_tier_address)
  if answers "$address"; then
    echo "function tier at $address: answering"
  else
    echo "function tier at $address: not answering"
  fi
  [ "$running" -eq "$nodes" ]
}

# Stops node I if it runs (SIGTERM, then SIGKILL after 20 s) and starts it again; its log goes on
# in the same file.
restart() {
  local i=$restart_node pid
  [ -x "$bin" ] || { echo "cluster.sh: $bin not built (cmake --build build)" >&2; exit 1; }
  mkdir -p "$run"
  ensure_credentials
  if pid=$(node_pid "$i"); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    echo "stopped node $i (pid $pid)"
  fi
  echo "--- restarted by cluster.sh $(date '+%F %T')" >>"$run/n$i.log"
  (cd "$dir/n$i" && exec "$bin" server </dev/null >>"$run/n$i.log" 2>&1) &
  echo $! >"$run/n$i.pid"
  echo "started node $i (pid $!), log $run/n$i.log; it rejoins as a new member" \
    "(cluster.sh status $nodes shows its role)"
}

stop() {
  local pids=()
  for ((i = nodes - 1; i >= 0; i--)); do
    if pid=$(node_pid "$i"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 20))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
      sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: pid $pid did not stop in time; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$run"/n*.pid
  echo "stopped ${#pids[@]} node(s)"
}

case "$action" in
  start) start ;;
  status) status ;;
  restart) restart ;;
  stop) stop ;;
  *) sed -n '2,/^set/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
