#!/usr/bin/env bash
# Runs a sospdemo cluster in the background: on this machine, or across hosts.
#
#   scripts/cluster.sh start  [N] [--dir DIR] [--print]   start nodes 0..N-1 of test-N-nodes
#                                                        (default 4)
#   scripts/cluster.sh status [N] [--dir DIR] [--print]   each node: running, its role, its gRPC
#                                                        and HTTP addresses; does the function
#                                                        tier answer
#   scripts/cluster.sh restart I [N] [--dir DIR]  stop node I if it runs, start it again (with
#                                                 [PERS] reset: it rejoins the running cluster
#                                                 as a new member and gets the models by state
#                                                 transfer)
#   scripts/cluster.sh stop   [N] [--dir DIR] [--print]   SIGTERM every node (clean leave), then
#                                                        wait. A durable categorizer tier (the
#                                                        default of gen-cluster.sh) keeps its
#                                                        models: the next `start` restarts the
#                                                        cluster from the nodes' logs
#                                                        (docs/persistence.md "Replay")
#   scripts/cluster.sh node start|stop|status I [N] [--dir DIR]
#                                           node I alone, on this machine (what start, stop and
#                                           status run on a node's host over ssh)
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
#
# Across hosts (a folder from gen-cluster.sh --hosts): node I runs on the host of its local_ip.
# A node whose local_ip is 127.x.y.z or an address of this machine runs here; any other node runs
# on its host through $SOSPDEMO_SSH (the ssh command, e.g. "ssh" or "ssh -l demo -i key"; it is
# called as `$SOSPDEMO_SSH ADDRESS 'cd REPO && scripts/cluster.sh node ACTION I N --dir DIR'`),
# so every host needs this checkout, built, at the same path, and the cluster folder (with its
# tls/ and secrets/) at the same path; SOSPDEMO_BIN and SOSPDEMO_RUN_DIR, when set, are passed
# on. Without $SOSPDEMO_SSH such a node is an error, and --print prints, per node and its host,
# the commands to run there instead of running anything. The function tier check (and the
# status check) calls node 0's function tier from this machine.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
action=${1:-}
[ -n "$action" ] && shift
nodes=4
dir=""
restart_node=""
node_action=""
print=0
if [ "$action" = node ]; then
  node_action=${1:-}
  case "$node_action" in
    start | stop | status) shift ;;
    *) echo "cluster.sh: node needs start, stop or status (cluster.sh node start I [N])" >&2
       exit 2 ;;
  esac
fi
if [ "$action" = restart ] || [ "$action" = node ]; then
  case "${1:-}" in
    [0-9]*) restart_node=$1; shift ;;
    *) echo "cluster.sh: $action needs a node id (cluster.sh $action ${node_action:+$node_action }I [N])" >&2
       exit 2 ;;
  esac
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --print) print=1; shift ;;
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
bin=$(realpath -m "${SOSPDEMO_BIN:-$repo/build/bin/sospdemo}")
run=$(realpath -m "${SOSPDEMO_RUN_DIR:-$repo/build/run/$(basename "$dir")}")
photo="$repo/models/demo-shapes/photos/red-circle.jpg"

# ---- hosts ---------------------------------------------------------------------------------

# Node i's local_ip as its derecho.cfg writes it (no binary needed: --print works anywhere).
node_ip() {
  awk -F'=' '/^[[:space:]]*local_ip[[:space:]]*=/ { gsub(/[[:space:]]/, "", $2); print $2; exit }' \
    "$dir/n$1/derecho.cfg"
}

# True when address $1 is this machine's (127.x.y.z or one of its interfaces' addresses).
local_addresses=""
is_local_address() {
  [[ "$1" == 127.* ]] && return 0
  [ -n "$local_addresses" ] ||
    local_addresses=" $(ip -o addr show 2>/dev/null | awk '{ sub("/.*", "", $4); print $4 }' |
      tr '\n' ' ') $(hostname -I 2>/dev/null || true) "
  [[ "$local_addresses" == *" $1 "* ]]
}

# True when node i runs on another host.
is_remote() {
  ! is_local_address "$(node_ip "$1")"
}

# The command that runs `cluster.sh node ACTION I` for node $2 on its host (one shell line).
node_command() {
  local envs=""
  [ -n "${SOSPDEMO_BIN:-}" ] && envs="SOSPDEMO_BIN=$(printf %q "$SOSPDEMO_BIN") "
  [ -n "${SOSPDEMO_RUN_DIR:-}" ] && envs="${envs}SOSPDEMO_RUN_DIR=$(printf %q "$SOSPDEMO_RUN_DIR") "
  echo "cd $(printf %q "$repo") && ${envs}scripts/cluster.sh node $1 $2 $nodes --dir $(printf %q "$dir")"
}

# Runs `cluster.sh node ACTION I` for remote node $2 over $SOSPDEMO_SSH.
remote() {
  local ip ssh_cmd
  ip=$(node_ip "$2")
  if [ -z "${SOSPDEMO_SSH:-}" ]; then
    echo "cluster.sh: node $2 runs on $ip, not this machine: set SOSPDEMO_SSH (e.g. ssh) or" \
      "run the commands that \`cluster.sh $action --print --dir $dir\` prints on each host" >&2
    exit 1
  fi
  read -r -a ssh_cmd <<<"$SOSPDEMO_SSH"
  "${ssh_cmd[@]}" "$ip" "$(node_command "$1" "$2")" </dev/null
}

# Fails before anything runs when a node is on another host and $SOSPDEMO_SSH is not set.
check_ssh() {
  local i
  [ -z "${SOSPDEMO_SSH:-}" ] || return 0
  for ((i = 0; i < nodes; i++)); do
    if is_remote "$i"; then
      echo "cluster.sh: node $i runs on $(node_ip "$i"), not this machine: set SOSPDEMO_SSH" \
        "(e.g. ssh) or run the commands that \`cluster.sh $action --print --dir $dir\` prints" \
        "on each host" >&2
      exit 1
    fi
  done
}

# --print: the commands per node and host, in order, for start, stop or status.
print_commands() {
  local i ip
  echo "# $action of the cluster in $dir ($nodes nodes): run on each node's host, in this order"
  echo "# (this checkout, built, and the cluster folder must be at the same paths there)"
  for ((i = 0; i < nodes; i++)); do
    ip=$(node_ip "$i")
    [ "$action" = start ] && [ "$i" -eq 0 ] &&
      echo "# node 0 first; start node 1 once node 0's command has returned, and so on"
    echo "[$ip] $(node_command "$action" "$i")"
  done
  if [ "$action" = start ]; then
    echo "# then the client (from $dir/client):" \
      "$bin client $(function_tier_address) inference 0 $photo"
  fi
}

# ---- the function tier ---------------------------------------------------------------------

# The function tier address of node 0 (from its effective configuration).
function_tier_address() {
  local base ip
  if [ -x "$bin" ]; then
    base=$(cd "$dir/n0" && "$bin" config | awk -F' = ' '/^function_tier_base_port/ {print $2}')
    ip=$(cd "$dir/n0" && "$bin" config | awk -F' = ' '/^local_ip/ {print $2}')
  else
    base=$(awk -F'=' '/^function_tier_base_port/ { gsub(/ /, "", $2); print $2 }' \
      "$dir/n0/derecho.cfg")
    ip=$(node_ip 0)
  fi
  echo "$ip:$((${base:-28000} + 0))"
}

# True while process $1 runs. kill -0 alone is not enough: a node that was killed or stopped
# stays a zombie until it is reaped (by init once the cluster.sh that started it has exited),
# and a zombie is not running.
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ "$state" != Z* ]]
}

node_pid() {
  local pid_file="$run/n$1.pid"
  [ -f "$pid_file" ] || return 1
  local pid
  pid=$(cat "$pid_file")
  pid_alive "$pid" || return 1
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
    if [ -f "$dir/hosts" ]; then
      # made here, they would differ from the other hosts' (another CA, other keys)
      echo "cluster.sh: $dir/tls/server.pem is missing: copy the whole cluster folder" \
        "(tls/ and secrets/ included) from where gen-cluster.sh --hosts made it" >&2
      exit 1
    fi
    echo "cluster.sh: making the cluster's credentials in $dir/tls and $dir/secrets"
    "$repo/scripts/gen-cluster.sh" --credentials-only "$dir"
  fi
}

# Starts node i here in the background (its log appended with $2 = append).
launch() {
  local i=$1
  [ -f "$dir/n$i/derecho.cfg" ] || { echo "cluster.sh: no $dir/n$i/derecho.cfg" >&2; exit 1; }
  if [ "${2:-}" = append ]; then
    # alone into a running cluster: as a new member (state transfer). [PERS] reset drops its
    # saved view and log (a durable categorizer), which would make it wait for a total restart
    (cd "$dir/n$i" && exec "$bin" server --PERS/reset=true </dev/null >>"$run/n$i.log" 2>&1) &
  else
    (cd "$dir/n$i" && exec "$bin" server </dev/null >"$run/n$i.log" 2>&1) &
  fi
  echo $! >"$run/n$i.pid"
}

# Waits (up to 5 s) until log $1 has a line with the fixed string $2.
wait_log() {
  for ((t = 0; t < 100; t++)); do
    grep -qF "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# `node start I`: starts node I here and returns once it reached the contact (node 0: once it
# is the contact), so that the caller may start the next node (roles follow join order).
node_start() {
  local i=$restart_node pid
  [ -x "$bin" ] || { echo "cluster.sh: $bin not built (cmake --build build)" >&2; exit 1; }
  mkdir -p "$run"
  ensure_credentials
  if pid=$(node_pid "$i"); then
    echo "cluster.sh: node $i already runs (pid $pid); stop it first" >&2
    exit 1
  fi
  launch "$i"
  local pattern="peer 0 up"
  [ "$i" -eq 0 ] && pattern="contact "
  wait_log "$run/n$i.log" "$pattern" || true
  sleep 0.05
  if ! node_pid "$i" >/dev/null; then
    echo "cluster.sh: node $i exited; its log ($run/n$i.log):" >&2
    tail -n 20 "$run/n$i.log" >&2
    exit 1
  fi
  echo "node $i started (pid $(cat "$run/n$i.pid")), log $run/n$i.log"
}

start() {
  local any_local=0 i
  for ((i = 0; i < nodes; i++)); do is_remote "$i" || any_local=1; done
  if [ "$any_local" -eq 1 ]; then
    [ -x "$bin" ] || { echo "cluster.sh: $bin not built (cmake --build build)" >&2; exit 1; }
    mkdir -p "$run"
    ensure_credentials
  fi
  for ((i = 0; i < nodes; i++)); do
    if ! is_remote "$i" && pid=$(node_pid "$i"); then
      echo "cluster.sh: node $i already runs (pid $pid); stop it first" >&2
      exit 1
    fi
  done
  for ((i = 0; i < nodes; i++)); do
    if is_remote "$i"; then
      # returns once node i reached the contact (or failed: then stop what started)
      remote start "$i" || { echo "cluster.sh: node $i did not start on $(node_ip "$i")" >&2
        stop; exit 1; }
      continue
    fi
    launch "$i"
    # Shards take members in join order (the seed's rule): start the next node only once this
    # one reached the leader, so nodes 0..N/2-1 form the function tier as the folders say.
    if is_remote 0; then
      local pattern="peer 0 up"
      [ "$i" -eq 0 ] && pattern="contact "
      wait_log "$run/n$i.log" "$pattern" || true
    else
      local pattern="peer $i up"
      [ "$i" -eq 0 ] && pattern="contact "
      wait_log "$run/n0.log" "$pattern" || true
    fi
    sleep 0.05
  done
  local address
  address=$(function_tier_address)
  local deadline=$((SECONDS + ${SOSPDEMO_START_TIMEOUT:-90}))
  until answers "$address"; do
    for ((i = 0; i < nodes; i++)); do
      if ! node_running "$i"; then
        echo "cluster.sh: node $i exited; its log ($run/n$i.log on $(node_ip "$i")):" >&2
        is_remote "$i" || tail -n 20 "$run/n$i.log" >&2
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

# True when node i runs (here: its pid file's process lives; remote: over ssh).
node_running() {
  if is_remote "$1"; then
    remote status "$1" >/dev/null 2>&1
  else
    node_pid "$1" >/dev/null
  fi
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

# `node status I`: one line on node I here; true when it runs.
node_status() {
  local i=$1 pid role where="" function_nodes ip grpc_base http_base scheme=http
  if ! pid=$(node_pid "$i"); then
    echo "node $i: not running (log: $run/n$i.log)"
    return 1
  fi
  function_nodes=$(config_value "$i" SUBGROUP/FUNCTION_TIER max_nodes)
  ip=$(config_value "$i" DERECHO local_ip)
  grpc_base=$(config_value "$i" SOSPDEMO function_tier_base_port)
  http_base=$(config_value "$i" SOSPDEMO http_base_port)
  [ -n "$(config_value "$i" SOSPDEMO tls_cert_file)" ] && scheme=https
  role=$(node_role "$i")
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
}

status() {
  local running=0 i
  for ((i = 0; i < nodes; i++)); do
    if is_remote "$i"; then
      if remote status "$i"; then running=$((running + 1)); fi
    elif [ -x "$bin" ]; then
      if node_status "$i"; then running=$((running + 1)); fi
    else
      echo "cluster.sh: $bin not built (cmake --build build)" >&2
      exit 1
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
  if is_remote "$i"; then
    remote stop "$i"
    remote start "$i"
    return
  fi
  [ -x "$bin" ] || { echo "cluster.sh: $bin not built (cmake --build build)" >&2; exit 1; }
  mkdir -p "$run"
  ensure_credentials
  if pid=$(node_pid "$i"); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while pid_alive "$pid" && [ $SECONDS -lt $deadline ]; do
      sleep 0.2
    done
    pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    echo "stopped node $i (pid $pid)"
  fi
  echo "--- restarted by cluster.sh $(date '+%F %T')" >>"$run/n$i.log"
  launch "$i" append
  echo "started node $i (pid $(cat "$run/n$i.pid")), log $run/n$i.log; it rejoins as a new member" \
    "(cluster.sh status $nodes shows its role)"
}

# Stops the local nodes among $@ (SIGTERM, SIGKILL after 20 s); prints how many it stopped.
stop_local() {
  local pids=() i pid
  for i in "$@"; do
    if pid=$(node_pid "$i"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 20))
  for pid in "${pids[@]}"; do
    while pid_alive "$pid" && [ $SECONDS -lt $deadline ]; do
      sleep 0.2
    done
    if pid_alive "$pid"; then
      echo "cluster.sh: pid $pid did not stop in time; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for i in "$@"; do rm -f "$run/n$i.pid"; done
  echo "stopped ${#pids[@]} node(s)"
}

# Every node is sent SIGTERM at once (remote ones over ssh in parallel): stopped one after the
# other, the last members would find themselves a minority and stop on their own.
stop() {
  local locals=() waits=() i
  for ((i = nodes - 1; i >= 0; i--)); do
    if is_remote "$i"; then
      (remote stop "$i" || echo "cluster.sh: could not stop node $i on $(node_ip "$i")" >&2) &
      waits+=($!)
    else
      locals+=("$i")
    fi
  done
  [ "${#locals[@]}" -eq 0 ] || stop_local "${locals[@]}"
  for i in "${waits[@]}"; do wait "$i" || true; done
}

if [ "$print" -eq 1 ]; then
  case "$action" in
    start | stop | status) print_commands; exit 0 ;;
    *) echo "cluster.sh: --print goes with start, stop or status" >&2; exit 2 ;;
  esac
fi
case "$action" in
  start | status | stop) check_ssh ;;
esac
case "$action" in
  node)
    case "$node_action" in
      start) node_start ;;
      status) node_status "$restart_node" ;;
      stop) stop_local "$restart_node" |
          sed "s/^stopped 1 node(s)/node $restart_node: stopped/; s/^stopped 0 node(s)/node $restart_node: was not running/" ;;
    esac ;;
  start) start ;;
  status) status ;;
  restart) restart ;;
  stop) stop ;;
  *) sed -n '2,/^set/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
