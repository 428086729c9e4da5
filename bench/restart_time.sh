#!/usr/bin/env bash
# Total-restart time with large logs (issue 14; docs/perf/durable.md "Total restart"): three
# durable_node processes on 127.0.0.1 fill one durable shard with 10 KiB messages until its log
# holds about MB MiB on every node, all three are killed with SIGKILL while still sending, then
# they are started again RUNS times (SIGKILL after each restart). Each time is taken from the
# start of the three processes to the last "RESTARTED" line: process start, opening the log
# (recovery scans and checksums the whole file), the restart protocol (reports, proposal, commit,
# truncation), the replay of every record into the application (on_replay) and the restart
# view's upcall. Reference from the same run: reading one log file sequentially (cat, page
# cache warm, as for the restarts: the machine keeps the logs cached).
#   bench/restart_time.sh [BUILD_DIR] [RUNS] [MB]      (defaults: build 5 1024)
# Prints RESULT lines; fails if a restart does not happen or replays fewer records than were
# acknowledged. BREAKDOWN=1: the nodes log at info level, and each restart is split, from the
# nodes' own log times, into opening the log (recovery scan), the restart protocol (to the
# install of the restart view) and the rest (replay into the application, the view upcall);
# the slowest node of each phase counts.
set -euo pipefail
build=${1:-build}
runs=${2:-5}
mb=${3:-1024}
node_bin=$build/bin/tests/durable_node
[ -x "$node_bin" ] || { echo "no $node_bin: build first (cmake --build $build)"; exit 2; }
dir=$(mktemp -d /var/tmp/dr-restart-time.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
port=29400 # below the ephemeral range
size=10240
per_node=$((mb * 1024 * 1024 / size / 3))
level=warn
[ "${BREAKDOWN:-0}" = 1 ] && level=info

for i in 0 1 2; do
    cat >"$dir/node$i.cfg" <<EOF
[DERECHO]
contact_ip = 127.0.0.1
contact_port = $port
local_id = $i
local_ip = 127.0.0.1
gms_port = $((port + i))
heartbeat_ms = 1000
suspicion_missed_heartbeats = 30
restart_leaders = 127.0.0.1
restart_leader_ports = $port
restart_timeout_ms = 30000
[SUBGROUP/DEFAULT]
max_payload_size = $size
max_smc_payload_size = $size
window_size = 64
[SUBGROUP/TEST]
num_shards = 1
min_nodes = 3
max_nodes = 3
durable = true
[PERS]
file_path = $dir/log$i
max_data_size = $((4 * mb * 1024 * 1024))
[LOGGER]
default_log_level = $level
EOF
done

# The nodes' standard input: a FIFO this script holds open (they leave when it closes).
mkfifo "$dir/hold"
exec 9<>"$dir/hold"

# start_nodes ARGS...: the three processes, output in $dir/out$i.
start_nodes() {
    pids=()
    for i in 2 1 0; do # the contact (and restart leader) last: the others wait for it
        "$node_bin" "$dir/node$i.cfg" "$@" <"$dir/hold" >"$dir/out$i" 2>&1 &
        pids+=($!)
    done
}

# wait_lines WORD SECONDS: until every out file has a line starting with WORD.
wait_lines() {
    local word=$1 deadline=$((SECONDS + $2))
    for i in 0 1 2; do
        until grep -q "^$word" "$dir/out$i"; do
            if grep -q "^FAIL" "$dir/out$i" || [ $SECONDS -ge $deadline ]; then
                echo "node $i did not print $word:"
                tail -5 "$dir/out$i"
                exit 1
            fi
            sleep 0.01
        done
    done
}

kill_nodes() {
    {
        for p in "${pids[@]}"; do kill -9 "$p" || true; done
        wait "${pids[@]}" || true
    } 2>/dev/null
}

echo "# filling: $per_node messages of $size bytes from each of 3 nodes (~$mb MiB per log)"
fill_start=$SECONDS
start_nodes --messages "$per_node" --size "$size" --expect-senders 3 --start-members 3 --crash-run
wait_lines ACKED 3600
acked=$(sed -n 's/^ACKED node=[0-9]* version=\([0-9]*\).*/\1/p' "$dir/out0")
kill_nodes
echo "# filled in $((SECONDS - fill_start)) s; acknowledged (globally persisted) up to $acked"
log_bytes=$(stat -c %s "$dir"/log0/*.plog)
ref=()
for r in $(seq 1 "$runs"); do
    t0=$(date +%s%N)
    cat "$dir"/log0/*.plog >/dev/null
    ref+=($((($(date +%s%N) - t0) / 1000000)))
done
# ms_after T0_NS WORDS FILE: ms from T0_NS (date +%s%N) to the first log line of FILE with WORDS
ms_after() {
    local line t
    line=$(grep -m1 -- "$2" "$3" || true)
    [ -n "$line" ] || { echo "-"; return; }
    t=$(sed 's/^\[\([0-9:.]*\)\].*/\1/' <<<"$line")
    awk -v t="$t" -v t0="$1" 'BEGIN { split(t, p, ":"); s = p[1] * 3600 + p[2] * 60 + p[3];
        day = int(t0 / 1e9 / 86400) * 86400; printf "%.0f", (day + s) * 1000 - t0 / 1e6 }'
}
# slowest A B C: the largest of the numbers
slowest() { printf '%s\n' "$@" | sort -n | tail -1; }
times=() open_ms=() protocol_ms=() rest_ms=()
for r in $(seq 1 "$runs"); do
    t0=$(date +%s%N)
    start_nodes --restarted
    wait_lines RESTARTED 600
    t1=$(date +%s%N)
    kill_nodes
    replayed=$(sed -n 's/^RESTARTED .* replayed=\([0-9]*\).*/\1/p' "$dir/out0")
    last=$(sed -n 's/^RESTARTED .* replay_last=\([0-9-]*\).*/\1/p' "$dir/out0")
    ok=$(sed -n 's/^RESTARTED .* replay_ok=\([01]\).*/\1/p' "$dir/out0")
    if [ "$ok" != 1 ] || [ "$last" -lt "$acked" ]; then
        echo "run $r: replay not ok (replay_ok=$ok, last $last < acknowledged $acked)"
        cat "$dir/out0"
        exit 1
    fi
    ms=$(((t1 - t0) / 1000000))
    times+=("$ms")
    echo "# restart $r: $ms ms, $replayed records replayed (last $last)"
    if [ "${BREAKDOWN:-0}" = 1 ]; then
        opened=() installed=()
        for i in 0 1 2; do
            opened+=("$(ms_after "$t0" ".plog open:" "$dir/out$i")")
            installed+=("$(ms_after "$t0" "total restart installs view" "$dir/out$i")")
        done
        o=$(slowest "${opened[@]}") n=$(slowest "${installed[@]}")
        open_ms+=("$o") protocol_ms+=($((n - o))) rest_ms+=($((ms - n)))
        echo "# restart $r: logs open at ${opened[*]} ms (nodes 0 1 2), restart view installed" \
            "at ${installed[*]} ms; slowest: open $o, protocol $((n - o)), replay and upcall $((ms - n))"
    fi
done
stats() { # median min max of the arguments
    printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[1], a[NR]}'
}
read -r med min max <<<"$(stats "${times[@]}")"
read -r rmed rmin rmax <<<"$(stats "${ref[@]}")"
echo "RESULT bench=restart log_mib=$((log_bytes / 1048576)) records=$replayed runs=$runs" \
    "restart_ms_median=$med min=$min max=$max"
echo "RESULT bench=read-log-ref log_mib=$((log_bytes / 1048576)) read_ms_median=$rmed" \
    "min=$rmin max=$rmax"
if [ "${BREAKDOWN:-0}" = 1 ]; then
    read -r omed omin omax <<<"$(stats "${open_ms[@]}")"
    read -r pmed pmin pmax <<<"$(stats "${protocol_ms[@]}")"
    read -r xmed xmin xmax <<<"$(stats "${rest_ms[@]}")"
    echo "RESULT bench=restart-breakdown open_ms_median=$omed min=$omin max=$omax" \
        "protocol_ms_median=$pmed min=$pmin max=$pmax replay_upcall_ms_median=$xmed" \
        "min=$xmin max=$xmax"
fi
echo "RESULT ratio restart/read=$(awk -v a="$med" -v b="$rmed" 'BEGIN {printf "%.1f", a / (b > 0 ? b : 1)}')"
