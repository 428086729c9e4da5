#!/usr/bin/env bash
# Time from a failure to the next installed view, on 127.0.0.1 with real group_node processes
# (docs/perf/view-change.md). For each heartbeat period and failure kind, starts 4 nodes
# streaming ordered multicasts, injects the failure into node 2, and reports the time from the
# injection to the moment the last survivor logged "installed view" of the 3-member view.
#   kill: SIGKILL (the connection breaks: suspicion is immediate)
#   stop: SIGSTOP (silent: suspicion after heartbeat_ms x suspicion_missed_heartbeats)
# A run without a 3-member view after the injection prints "none", one whose 3-member view came
# before it (a member excluded while streaming) "invalid"; either makes the script exit 1.
# Usage: bench/view_change.sh BUILD_DIR [REPEATS] [HEARTBEATS...]
# Environment: KINDS="kill stop" (which failures), WINDOW_BYTES=N (the subgroup's window_bytes;
# unset: the default, 4 MiB), EXTRA_CONF="key = value\n..." (more [DERECHO] lines; it goes into a
# printf format, so no % in it).
set -u
build=${1:-build}
repeats=${2:-5}
shift 2 2>/dev/null
heartbeats=${*:-20 50 100}
node=$build/bin/tests/group_node
missed=5
kinds=${KINDS:-kill stop}
window_bytes_line=""
[ -n "${WINDOW_BYTES:-}" ] && window_bytes_line="window_bytes = $WINDOW_BYTES\n"
dir=$(mktemp -d /tmp/dr_vc_bench_XXXXXX)
port=45600
seconds_of_day() { # HH:MM:SS.frac -> seconds
    awk -F: '{ printf "%.6f\n", $1 * 3600 + $2 * 60 + $3 }' <<<"$1"
}
run_once() { # heartbeat kind -> prints milliseconds
    local hb=$1 kind=$2 pids=() i
    port=$((port + 10))
    for i in 0 1 2 3; do
        printf "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n\
local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = %d\nsuspicion_missed_heartbeats = %d\n${EXTRA_CONF:-}\
[SUBGROUP/DEFAULT]\nmax_payload_size = 10240\nmax_smc_payload_size = 10240\n\
block_size = 1048576\nwindow_size = 16\n${window_bytes_line}[SUBGROUP/TEST]\nnum_shards = 1\nmin_nodes = 1\n\
max_nodes = 4\n[LOGGER]\ndefault_log_level = info\n" $port $i $((port + i)) "$hb" $missed \
            >"$dir/n$i.cfg"
        (sleep 8 | "$node" "$dir/n$i.cfg" --messages 100000 --size 1000 --wait-from 0,1,3 \
            --expect-members 3 --start-members 4 >/dev/null 2>"$dir/err$i.txt") &
        pids+=($!)
        sleep 0.1
    done
    sleep 1
    local victim
    victim=$(pgrep -f "group_node $dir/n2.cfg" | head -1)
    local t0
    t0=$(date +%H:%M:%S.%N)
    if [ "$kind" = kill ]; then kill -9 "$victim"; else kill -STOP "$victim"; fi
    sleep $(awk -v hb="$hb" -v m=$missed 'BEGIN { print hb * m * 3 / 1000 + 0.5 }')
    local last=0 i line t
    for i in 0 1 3; do
        line=$(grep "installed view .* with 3 members" "$dir/err$i.txt" | tail -1)
        t=$(sed 's/^\[\([0-9:.]*\)\].*/\1/' <<<"$line")
        [ -n "$t" ] && last=$(awk -v a="$last" -v b="$(seconds_of_day "$t")" 'BEGIN { print (b > a) ? b : a }')
    done
    [ "$kind" = stop ] && kill -9 "$victim" 2>/dev/null
    for i in 0 1 3; do
        p=$(pgrep -f "group_node $dir/n$i.cfg" | head -1)
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
    sleep 0.2
    # no 3-member view, or one installed before the injection (a member excluded while the group
    # streamed: a false suspicion), is not a measurement: the run fails at the end
    if [ "$last" = 0 ]; then echo "none"; else
        awk -v a="$(seconds_of_day "$t0")" -v b="$last" \
            'BEGIN { d = (b - a) * 1000; if (d <= 0) print "invalid"; else printf "%.1f\n", d }'
    fi
}
bad=0
for hb in $heartbeats; do
    for kind in $kinds; do
        results=()
        for r in $(seq 1 "$repeats"); do results+=("$(run_once "$hb" "$kind")"); done
        sorted=$(printf "%s\n" "${results[@]}" | sort -n | tr '\n' ' ')
        echo "heartbeat_ms=$hb missed=$missed $kind: ms to the next view: $sorted"
        case " $sorted " in *" none "* | *" invalid "*) bad=1 ;; esac
    done
done
rm -rf "$dir"
if [ "$bad" = 1 ]; then
    echo "view_change.sh: some runs had no 3-member view after the failure, or one before it" >&2
    exit 1
fi
