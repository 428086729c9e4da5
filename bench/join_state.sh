#!/usr/bin/env bash
# Time for a node to join a running group and receive its replicated state (state transfer),
# on 127.0.0.1 with real kv_node processes (docs/perf/view-change.md). For each state size and
# heartbeat period: two members of one ordered KV shard fill the map with SIZE bytes of 512 KiB
# values (ordered puts, acknowledged by both), then a third node starts with --join; it prints
# the time from its start (before dr_rpc_node_create) to the end of its restore callback: the
# join request, the view change that adds it, the source's serialize, the transfer and the
# restore. The raw loopback TCP bandwidth of the same machine, measured in the same run
# (tcp-ref-bench --raw-only), is printed alongside as the reference for the copy itself.
# Usage: bench/join_state.sh BUILD_DIR [REPEATS] [SIZES_BYTES...]   (HEARTBEATS env: "100")
set -u
build=${1:-build}
repeats=${2:-5}
shift 2 2>/dev/null
sizes=${*:-1048576 104857600}
heartbeats=${HEARTBEATS:-100}
node=$build/bin/tests/kv_node
dir=$(mktemp -d /tmp/dr_join_bench_XXXXXX)
port=46600
trap 'pkill -f "kv_node $dir" 2>/dev/null; rm -rf "$dir"' EXIT

write_config() { # id heartbeat
    printf "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n\
local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = %d\n\
max_p2p_request_payload_size = 10240\nmax_p2p_reply_payload_size = 10240\n\
[SUBGROUP/DEFAULT]\nmax_payload_size = 1048576\nmax_smc_payload_size = 10240\n\
max_reply_payload_size = 4096\nblock_size = 1048576\nwindow_size = 16\n\
[SUBGROUP/KV]\nnum_shards = 1\nmin_nodes = 2\nmax_nodes = 3\n\
[LOGGER]\ndefault_log_level = warn\n" $port "$1" $((port + $1)) "$2" >"$dir/n$1.cfg"
}

wait_for() { # file pattern seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

run_once() { # size heartbeat -> prints the joiner's milliseconds, or "fail"
    local size=$1 hb=$2 i
    port=$((port + 10))
    for i in 0 1 2; do write_config $i "$hb"; done
    for i in 0 1; do
        (sleep 6061 | "$node" "$dir/n$i.cfg" --puts 0 --start-members 2 --fill "$size" \
            >"$dir/out$i" 2>"$dir/err$i") &
        sleep 0.2
    done
    if ! wait_for "$dir/out0" DONE 300 || ! wait_for "$dir/out1" DONE 60; then
        echo fail
    else
        "$node" "$dir/n2.cfg" --join --puts 0 </dev/null >"$dir/out2" 2>"$dir/err2" &
        if wait_for "$dir/out2" JOINED 120 && grep -q "equal=1" "$dir/out2"; then
            sed -n 's/.* ms=\([0-9.]*\) .*/\1/p' "$dir/out2"
        else
            echo fail
        fi
    fi
    pkill -f "kv_node $dir" 2>/dev/null
    pkill -f "sleep 6061" 2>/dev/null # the members' stdin holders
    wait 2>/dev/null
}

echo "# raw loopback TCP reference (same machine, same run)"
"$build/bin/tcp-ref-bench" --raw-only --runs 5 --filter "tcp bw" 2>/dev/null || true
for hb in $heartbeats; do
    for size in $sizes; do
        runs=()
        for ((r = 0; r < repeats; r++)); do runs+=("$(run_once "$size" "$hb")"); done
        sorted=$(printf "%s\n" "${runs[@]}" | sort -g | tr '\n' ' ')
        echo "heartbeat_ms=$hb state_bytes=$size runs_ms: $sorted"
    done
done
