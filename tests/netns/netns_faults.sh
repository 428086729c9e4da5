#!/usr/bin/env bash
# netns_faults: real-process fault tests of the group over a real (virtual) network (issue 11).
#
#   tests/netns/netns_faults.sh BIN_DIR SCENARIO     SCENARIO: bridge | one-way | leader-kill | kv
#
# Five nodes 0..4, each a process (tests/runtime/group_node or tests/rpc/kv_node) in its own
# network namespace, 10.213.0.10+i/24 on eth0, a veth pair to a Linux bridge in a sixth "hub"
# namespace; node 0 is the contact (and first leader); every node listens on port 22100 (inside
# its own namespace: no clash with any other test). `tc netem` adds 1 ms of delay per hop where
# the kernel has it (it is skipped with a note where it does not). Links are cut inside the
# namespaces with blackhole routes: a node with `blackhole <peer>/32` drops every frame it sends
# to that peer (the TCP connection stays open; nothing is reset), so a cut on one end is a
# one-way link and a cut on both ends a partition.
#
# Every node prints one line per installed view ("VIEW node= vid= members=a,b,..."); every
# scenario checks across all nodes' output, the killed ones included, that no view id names two
# memberships and that each view keeps more than half of the members of the view before it (a
# commit needs a majority of the old view, and a leader suspecting half of it stops).
#
#   bridge       {0,1} | {2,4} cut both ways while 3 reaches all, mid-stream: besides the view
#                checks, no node installs a view of one side alone, and the nodes that keep
#                running end in one view whose members all delivered the same sequence.
#   one-way      node 1 drops every frame it sends to node 3: the group loses at most one of the
#                two ends, and the others end in one view and deliver identical sequences
#                (checked once every node reacted: it stopped, or installed a later view).
#   leader-kill  kill -9 of node 4 (a view change starts), 3 ms later kill -9 of the leader:
#                the survivors 1,2,3 install one common view and deliver identical sequences.
#   kv           replicated map (kv_node --history): kill -9 of node 2 while the five put;
#                afterwards every acknowledged put (of any node, the killed one included) is in
#                every survivor's map, and the survivors' maps are identical.
#
# Needs root and `ip netns` (iproute2): otherwise prints why and exits 77 (CTest: Skipped).
# Everything it creates (namespaces, bridge, veths, qdiscs, processes) lives in its own
# namespaces, named drn<pid>-*, and is removed by the EXIT trap, also on failure; namespaces
# and folders left by an earlier run that was killed (its pid gone) are removed at the start. Processes are
# started with a parent-death signal, so they die with this script. Every wait has a deadline
# and waits for a line of output (tail -f follows the log with inotify), never for a fixed time.
set -uo pipefail

bin=${1:?usage: netns_faults.sh BIN_DIR SCENARIO}
scenario=${2:?usage: netns_faults.sh BIN_DIR SCENARIO}
prefix=drn$$
nodes=5
port=22100
subnet=10.213.0
messages=3000
run_dir=
namespaces=()
pids=()

log() { echo "netns_faults[$scenario]: $*"; }

skip() {
  echo "SKIP: $*"
  exit 77
}

# ---- cleanup -------------------------------------------------------------------------------

cleanup() {
  local pid ns
  for pid in "${pids[@]}"; do [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [ -n "$run_dir" ] && rm -rf "$run_dir"
}

# Removes the namespaces and run folders of earlier runs of this test whose script is gone
# (killed, e.g. by a CTest timeout, before its trap ran).
remove_stale_runs() {
  local ns pid dir
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^drn[0-9]+-' || true); do
    pid=${ns#drn}
    pid=${pid%%-*}
    [ -d "/proc/$pid" ] || ip netns del "$ns" 2>/dev/null
  done
  for dir in /tmp/dr_netns_[0-9]*_*; do
    [ -d "$dir" ] || continue
    pid=${dir#/tmp/dr_netns_}
    pid=${pid%%_*}
    [ -d "/proc/$pid" ] || rm -rf "$dir"
  done
}

fail() {
  local f
  echo "netns_faults[$scenario]: FAIL: $*"
  for f in "$run_dir"/node*.out "$run_dir"/node*.err; do
    [ -s "$f" ] || continue
    echo "--- $f (last 15 lines)"
    grep -v '^ACK ' "$f" | tail -15
  done
  exit 1
}

# ---- preconditions -------------------------------------------------------------------------

check_preconditions() {
  [ "$(id -u)" -eq 0 ] || skip "network namespaces need root (uid $(id -u))"
  command -v ip >/dev/null || skip "ip (iproute2) is not installed"
  command -v setpriv >/dev/null || skip "setpriv (util-linux) is not installed"
  local probe=$prefix-probe why
  why=$(ip netns add "$probe" 2>&1) || skip "ip netns add fails here: $why"
  namespaces+=("$probe")
  why=$(ip -n "$probe" link add br0 type bridge 2>&1) || skip "no Linux bridge here: $why"
  why=$(ip -n "$probe" link add v0 type veth peer name v1 2>&1) || skip "no veth here: $why"
  ip netns del "$probe"
  namespaces=()
  [ -x "$bin/tests/group_node" ] || fail "no $bin/tests/group_node (build it first)"
  [ -x "$bin/tests/kv_node" ] || fail "no $bin/tests/kv_node (build it first)"
}

# ---- topology ------------------------------------------------------------------------------

ns_of() { echo "$prefix-n$1"; }
ip_of() { echo "$subnet.$((10 + $1))"; }

add_namespace() {
  ip netns add "$1" || fail "ip netns add $1"
  namespaces+=("$1")
  ip -n "$1" link set lo up || fail "lo up in $1"
}

# The hub namespace with bridge br0, and per node a namespace whose eth0 is a veth to br0.
make_network() {
  local hub=$prefix-hub i ns delay_note=""
  add_namespace "$hub"
  ip -n "$hub" link add br0 type bridge || fail "bridge"
  ip -n "$hub" link set br0 up || fail "bridge up"
  for ((i = 0; i < nodes; i++)); do
    ns=$(ns_of "$i")
    add_namespace "$ns"
    ip -n "$hub" link add "v$i" type veth peer name eth0 netns "$ns" || fail "veth $i"
    ip -n "$hub" link set "v$i" master br0 up || fail "veth $i on the bridge"
    ip -n "$ns" addr add "$(ip_of "$i")/24" dev eth0 || fail "address of node $i"
    ip -n "$ns" link set eth0 up || fail "eth0 up in $ns"
    if ! delay_note=$(tc -n "$ns" qdisc add dev eth0 root netem delay 1ms 2>&1); then
      delay_note="netem unavailable here ($delay_note): links without added delay"
    fi
  done
  log "network: $nodes namespaces on bridge br0 ($subnet.0/24)${delay_note:+; $delay_note}"
}

# Node $1 drops every frame it sends to node $2 from now on.
cut_one_way() {
  ip -n "$(ns_of "$1")" route add blackhole "$(ip_of "$2")/32" || fail "blackhole $1 -> $2"
}

# ---- processes -----------------------------------------------------------------------------

write_config() {
  local i=$1 profile=$2
  cat >"$run_dir/node$i.cfg" <<EOF
[DERECHO]
contact_ip = $(ip_of 0)
contact_port = $port
local_id = $i
local_ip = $(ip_of "$i")
gms_port = $port
heartbeat_ms = 100
suspicion_missed_heartbeats = 5
p2p_window_size = 4
max_p2p_request_payload_size = 10240
max_p2p_reply_payload_size = 10240
[SUBGROUP/DEFAULT]
max_payload_size = 10240
max_smc_payload_size = 10240
max_reply_payload_size = 4096
block_size = 1048576
window_size = 16
[SUBGROUP/$profile]
num_shards = 1
min_nodes = 1
max_nodes = $nodes
[LOGGER]
default_log_level = warn
EOF
}

# Starts node $1 in its namespace: program $2, arguments after (@node@ in them becomes $1).
# stdin is the shared barrier fifo (EOF releases every node), stdout node$1.out, stderr
# node$1.err.
start_node() {
  local i=$1 program=$2
  shift 2
  setpriv --pdeathsig KILL -- ip netns exec "$(ns_of "$i")" \
    "$bin/tests/$program" "$run_dir/node$i.cfg" "${@//@node@/$i}" \
    <"$run_dir/barrier" >"$run_dir/node$i.out" 2>"$run_dir/node$i.err" 9>&- &
  pids[i]=$!
}

# kill -9 of node $1. The shell forgets it first (no "Killed" notice; it reaps it itself).
kill_node() {
  disown "${pids[$1]}" 2>/dev/null
  kill -KILL "${pids[$1]}" || fail "node $1 was already gone"
  pids[$1]=""
}

# Waits up to $3 seconds until file $1 has a line matching the ERE $2 (0), else 1.
wait_line() {
  local file=$1 pattern=$2 seconds=$3 follower status fd
  # opened by exec in this shell, so that $! is the follower (not a node)
  exec {fd}< <(exec timeout "$seconds" tail -n +1 -F "$file" 2>/dev/null)
  follower=$!
  grep -E -q -m1 -- "$pattern" <&"$fd"
  status=$?
  exec {fd}<&-
  kill "$follower" 2>/dev/null
  wait "$follower" 2>/dev/null
  return $status
}

# Seconds left until the epoch second $1 (at least 1).
left() {
  local s=$(($1 - $(date +%s)))
  echo $((s > 0 ? s : 1))
}

# Starts nodes 0..4 with the same program and arguments, each once the one before it has its
# first view, so that ranks are ids (node 0 leads; a lower id is a lower rank).
start_group() {
  local program=$1 profile=$2 i
  shift 2
  for ((i = 0; i < nodes; i++)); do
    write_config "$i" "$profile"
    start_node "$i" "$program" "$@"
    wait_line "$run_dir/node$i.out" "^VIEW node=$i vid=$i " 20 || fail "node $i did not join"
  done
}

# Waits until every node in $2... printed a line matching $1 (deadline 60 s in all).
wait_all() {
  local pattern=$1 deadline=$(($(date +%s) + 60)) i
  shift
  for i in "$@"; do
    wait_line "$run_dir/node$i.out" "$pattern" "$(left $deadline)" ||
      fail "node $i printed no line matching '$pattern'"
  done
}

# Closes the barrier (every node may leave) and reaps the nodes in $@: fails if one of them
# does not exit 0 within 20 s.
release_and_reap() {
  local i deadline=$(($(date +%s) + 20)) status
  exec 9>&-
  for i in "$@"; do
    status=0
    timeout "$(left $deadline)" tail -s 0.2 --pid="${pids[i]}" -f /dev/null || fail "node $i did not exit"
    wait "${pids[i]}" || status=$?
    [ "$status" -eq 0 ] || fail "node $i exited with status $status"
  done
}

# ---- checks over the logs ------------------------------------------------------------------

# Every VIEW line of every node: no vid with two memberships; each view keeps a majority of the
# one before it. Prints the views (vid: members).
check_views() {
  cat "$run_dir"/node*.out | awk '
    /^VIEW / {
      vid = $3; sub("vid=", "", vid); members = $4; sub("members=", "", members)
      if (vid in seen && seen[vid] != members) {
        printf "view %s has two memberships: %s and %s\n", vid, seen[vid], members; bad = 1
      }
      seen[vid] = members; if (vid + 0 > max) max = vid + 0
    }
    END {
      for (v = 1; v <= max; v++) {
        if (!(v in seen) || !((v - 1) in seen)) continue
        n_old = split(seen[v - 1], old, ","); n_new = split(seen[v], new, ",")
        kept = 0
        for (i = 1; i <= n_new; i++) for (j = 1; j <= n_old; j++) if (new[i] == old[j]) kept++
        if (2 * kept <= n_old) {
          printf "view %d (%s) keeps only %d of view %d (%s)\n", v, seen[v], kept, v - 1, seen[v - 1]
          bad = 1
        }
      }
      for (v = 0; v <= max; v++) if (v in seen) printf "  view %d: %s\n", v, seen[v]
      exit bad
    }' || fail "view check"
}

# The last VIEW line of node $1 ("vid members").
last_view() {
  awk '/^VIEW / { v = $3 " " $4 } END { print v }' "$run_dir/node$1.out"
}

# The id of the last view node $1 printed (0 if none).
last_vid() {
  awk '/^VIEW / { v = $3; sub("vid=", "", v) } END { print v + 0 }' "$run_dir/node$1.out"
}

# The members of view line $1 ("vid=N members=a,b,...") as a sorted list "a,b,...".
member_set() {
  echo "${1#*members=}" | tr ',' '\n' | sort -n | paste -sd, -
}

# Nodes in $@ printed DONE with the same delivered count, hash and vid, and bad=0.
check_same_sequence() {
  local i line first="" rest
  for i in "$@"; do
    line=$(grep -m1 '^DONE ' "$run_dir/node$i.out") || fail "node $i has no DONE line"
    [[ $line == *" bad=0 "* ]] || fail "node $i delivered corrupt messages: $line"
    rest=${line#DONE node="$i" }
    rest=${rest/bad=0 /}
    log "node $i: $rest"
    [ -z "$first" ] && first=$rest
    [ "$rest" = "$first" ] || fail "node $i delivered another sequence: '$rest' vs '$first'"
  done
}

# ---- scenarios -----------------------------------------------------------------------------

# Group of five group_node streaming $messages x 1 KB each; $@: more group_node arguments.
start_stream() {
  start_group group_node TEST --messages "$messages" --size 1000 --start-members "$nodes" \
    --say-sending --print-views "$@"
  wait_all '^SENDING' 0 1 2 3 4
}

# The nodes in $@ whose group stopped: a STOPPED line (printed on a line of their own), or, for
# a node that had already printed DONE, the runtime's "group stopped" log line.
stopped_nodes() {
  local i
  for i in "$@"; do
    grep -q '^STOPPED' "$run_dir/node$i.out" || grep -q 'group stopped' "$run_dir/node$i.err" &&
      echo "$i"
  done
}

# The highest view id any node printed.
highest_vid() {
  cat "$run_dir"/node*.out | awk '/^VIEW / { v = $3; sub("vid=", "", v); if (v + 0 > max) max = v + 0 }
    END { print max + 0 }'
}

# Waits until each node in $@ reacted to a fault struck in view $1: its group stopped or it
# installed a later view, up to 60 s (a fast stream may print DONE before the fault lands).
wait_reaction() {
  local full=$1 deadline=$(($(date +%s) + 60)) i
  shift
  for i in "$@"; do
    until [ -n "$(stopped_nodes "$i")" ] || [ "$(last_vid "$i")" -gt "$full" ]; do
      [ "$(date +%s)" -lt "$deadline" ] || fail "node $i neither stopped nor left view $full"
      sleep 0.1
    done
  done
}

# Waits until each node in $@ printed DONE or STOPPED, up to 60 s.
wait_outcome() {
  wait_all '^(DONE|STOPPED)' "$@"
}

# After a fault among the nodes $2...: waits until each finished or stopped and reacted to the
# fault (a view after $1, or a stop), checks the views, and sets STOPPED (space-separated ids)
# and RUNNING (an array of the others).
settle_after_fault() {
  local before=$1 i
  shift
  wait_outcome "$@"
  # a fast stream may end before the suspicion (5 heartbeats) lands: wait until every node
  # reacted (one end removed, so the others install a later view and that end stops)
  wait_reaction "$before" "$@"
  check_views
  STOPPED=$(stopped_nodes "$@" | tr '\n' ' ')
  RUNNING=()
  for i in "$@"; do [[ " $STOPPED " == *" $i "* ]] || RUNNING+=("$i"); done
  log "stopped: ${STOPPED:-none}; running: ${RUNNING[*]}"
}

# The nodes $@ end in one view whose members are exactly them, having delivered one sequence;
# then they are released and reaped.
check_end_in_one_view() {
  local views want i
  views=$(for i in "$@"; do last_view "$i"; done | sort -u)
  [ "$(echo "$views" | wc -l)" -eq 1 ] || fail "nodes $* end in different views: $views"
  want=$(IFS=, && echo "$*")
  [ "$(member_set "$views")" = "$want" ] || fail "the final view ($views) is not the nodes $*"
  log "nodes $* end in view $views"
  check_same_sequence "$@"
  release_and_reap "$@"
}

scenario_bridge() {
  local before messages=$((messages * 4)) # a longer stream: the cut lands while it flows
  start_stream --wait-from members --expect-members 0
  before=$(highest_vid)
  # strike mid-stream: the timing of the fault, not a synchronisation
  sleep 0.3
  cut_one_way 0 2 && cut_one_way 0 4 && cut_one_way 1 2 && cut_one_way 1 4
  cut_one_way 2 0 && cut_one_way 2 1 && cut_one_way 4 0 && cut_one_way 4 1
  log "cut {0,1} | {2,4}; 3 reaches both"
  settle_after_fault "$before" 0 1 2 3 4
  # after the cut, no view of one side alone ({0,1} or {2,4} or a part of them)
  local full minority
  full=$(awk '/^VIEW / && split($4, m, ",") == 5 { sub("vid=", "", $3); print $3; exit }' \
    "$run_dir/node0.out")
  minority=$(grep -hE '^VIEW node=[0-9]+ vid=[0-9]+ members=(0|1|0,1|1,0|2|4|2,4|4,2)$' \
    "$run_dir"/node*.out | awk -v full="$full" '{ v = $3; sub("vid=", "", v) } v + 0 > full')
  [ -z "$minority" ] || fail "a side without a majority of view $full installed a view: $minority"
  log "no view of {0,1} or {2,4} alone after view $full"
  if [ "${#RUNNING[@]}" -eq 0 ]; then
    log "every node stopped (safe, not live: docs/protocol.md, bridge partitions)"
    return
  fi
  check_end_in_one_view "${RUNNING[@]}"
}

scenario_one_way() {
  local before messages=$((messages * 4)) # a longer stream: the cut lands while it flows
  start_stream --wait-from members --expect-members 0
  before=$(highest_vid)
  sleep 0.3 # strike mid-stream
  cut_one_way 1 3
  log "node 1 drops every frame it sends to node 3"
  settle_after_fault "$before" 0 1 2 3 4
  local i
  for i in 0 2 4; do
    [[ " $STOPPED " != *" $i "* ]] || fail "node $i (not an end of the broken link) stopped"
  done
  [ "${#RUNNING[@]}" -ge 4 ] || fail "the group lost both ends of one link"
  check_end_in_one_view "${RUNNING[@]}"
}

scenario_leader_kill() {
  local leader_kill_delay=${DR_NETNS_LEADER_KILL_DELAY:-0.002}
  start_stream --wait-from 1,2,3 --expect-members 3
  sleep 0.3 # strike mid-stream
  kill_node 4
  # a few ms into the view change that node 4's death starts: a read with a timeout on the
  # barrier (nobody writes it), a builtin, where forking `sleep` can take 100 ms on a busy host
  read -r -t "$leader_kill_delay" -u 9
  kill_node 0
  log "killed node 4, then ${leader_kill_delay} s later the leader (node 0)"
  wait_outcome 1 2 3
  check_views
  [ -z "$(stopped_nodes 1 2 3)" ] || fail "a survivor stopped"
  local sets
  sets=$(grep -hE '^VIEW node=[123] ' "$run_dir"/node*.out | while read -r line; do
    member_set "$line"
  done)
  if grep -qx 0,1,2,3 <<<"$sets"; then
    log "the survivors installed {0,1,2,3} first (the leader's proposal, committed by it or" \
      "adopted by its successor), then {1,2,3}"
  else
    log "the survivors went from the 5-member view straight to {1,2,3}"
  fi
  check_end_in_one_view 1 2 3
}

scenario_kv() {
  local puts=400 victim=2 i survivors=(0 1 3 4) line first="" acked
  start_group kv_node KV --history --puts "$puts" --start-members "$nodes" \
    --dump "$run_dir/state@node@"
  wait_all '^PUTTING' 0 1 2 3 4
  wait_line "$run_dir/node$victim.out" "^ACK h$victim-100\$" 30 ||
    fail "node $victim acknowledged no 100 puts"
  kill_node "$victim"
  log "killed node $victim after its 100th acknowledged put"
  wait_all '^PUTS ' "${survivors[@]}"
  for i in "${survivors[@]}"; do
    ! grep -q '^STOPPED' "$run_dir/node$i.out" || fail "survivor $i stopped"
    line=$(grep -m1 '^PUTS ' "$run_dir/node$i.out")
    log "node $i: $line"
    [[ $line == *" failed=0" ]] || fail "survivor $i had puts fail: $line"
  done
  check_views
  release_and_reap "${survivors[@]}" # each writes its map, prints DUMPED, exits
  for i in "${survivors[@]}"; do
    line=$(grep -m1 '^DUMPED ' "$run_dir/node$i.out") || fail "node $i did not dump its map"
    line=${line#DUMPED node="$i" }
    line=${line% vid=*} # dumped while the others leave: the view may already have moved on
    [ -z "$first" ] && first=$line
    [ "$line" = "$first" ] || fail "node $i ends with another map: '$line' vs '$first'"
    sort "$run_dir/state$i" >"$run_dir/sorted$i"
    cmp -s "$run_dir/sorted$i" "$run_dir/sorted${survivors[0]}" ||
      fail "the maps of nodes $i and ${survivors[0]} differ"
  done
  log "survivors' maps: $first"
  # every acknowledged put, by any node (the killed one too), is in the (common) map
  awk '/^ACK / { print $2 " v-" $2 }' "$run_dir"/node*.out | sort >"$run_dir/acked"
  acked=$(wc -l <"$run_dir/acked")
  [ "$acked" -gt 0 ] || fail "no put was acknowledged"
  if [ -n "$(comm -23 "$run_dir/acked" "$run_dir/sorted${survivors[0]}" | head -5)" ]; then
    fail "acknowledged puts missing from the maps: $(comm -23 "$run_dir/acked" \
      "$run_dir/sorted${survivors[0]}" | head -5 | tr '\n' ' ')"
  fi
  log "all $acked acknowledged puts ($(grep -c '^ACK ' "$run_dir/node$victim.out") by the" \
    "killed node) are in every survivor's map"
}

# ---- main ----------------------------------------------------------------------------------

trap cleanup EXIT
trap "exit 143" TERM
trap "exit 130" INT
check_preconditions
remove_stale_runs
run_dir=$(mktemp -d "/tmp/dr_netns_$$_XXXXXX")
mkfifo "$run_dir/barrier"
exec 9<>"$run_dir/barrier" # held open (read-write: no blocking) until release_and_reap
make_network
case $scenario in
bridge) scenario_bridge ;;
one-way) scenario_one_way ;;
leader-kill) scenario_leader_kill ;;
kv) scenario_kv ;;
*) fail "unknown scenario $scenario" ;;
esac
log "PASS"
