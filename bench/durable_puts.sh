#!/usr/bin/env bash
# Durable 10 KB ordered puts on a 3-member shard, acknowledged after global persistence
# (durable-bench, one process per member on 127.0.0.1), beside etcd's puts (3 members, same
# machine: ../shared/tools/peers/etcd-bench.sh) and the fsync floor (fsync-ref.sh), in one run.
# For each client count it alternates ours and etcd's, --repeat times, and prints every RESULT
# line, then medians with [min..max] and our/etcd ratios. Any failed or wrong put fails the run.
# Record figures only on a quiet machine (load < 0.5 at the start; nothing else running).
#
# Usage: bench/durable_puts.sh [--build DIR] [--clients "1 64"] [--repeat 3] [--seconds 10]
#                              [--value-bytes 10240] [--dir /tmp] [--no-etcd] [--no-fsync]
# example: bench/durable_puts.sh --clients "1 16 64" --repeat 5
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$here/../build
clients_list="1 64"
repeat=3
seconds=10
value=10240
dir=/tmp
etcd=1
fsync=1
peers=${DR_PEERS_DIR:-$here/../../shared/tools/peers}
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --clients) clients_list=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --value-bytes) value=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --no-etcd) etcd=0; shift ;;
    --no-fsync) fsync=0; shift ;;
    --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "durable_puts.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
bench=$build/bin/durable-bench
[ -x "$bench" ] || { echo "build durable-bench first: cmake --build $build --target durable-bench" >&2; exit 2; }
work=$(mktemp -d "$dir/durable-puts.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    exec 3>&- 4>&- 5>&- 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
echo "durable_puts.sh: load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
results=$work/results.txt
: > "$results"

# One run of ours: 3 members, `total` clients spread over them. Prints the merged RESULT line.
run_ours() {
    local total=$1 run=$2 port=$((26100 + (run % 20) * 10))
    local rdir=$work/run$run
    mkdir -p "$rdir"
    for i in 0 1 2; do
        cat > "$rdir/node$i.cfg" <<EOF
[DERECHO]
contact_ip = 127.0.0.1
contact_port = $port
local_id = $i
local_ip = 127.0.0.1
gms_port = $((port + i))
heartbeat_ms = 500
suspicion_missed_heartbeats = 10
[SUBGROUP/DEFAULT]
max_payload_size = $((value + 1024))
max_smc_payload_size = $((value + 1024))
window_size = 64
[SUBGROUP/KV]
num_shards = 1
min_nodes = 3
max_nodes = 3
durable = true
[PERS]
file_path = $rdir/log$i
reset = true
[LOGGER]
default_log_level = warn
EOF
        mkfifo "$rdir/stdin$i"
    done
    pids=()
    for i in 0 1 2; do
        local mine=$(((total + 2 - i) / 3)) # node 0 gets the first client, and so on
        "$bench" "$rdir/node$i.cfg" --members 3 --clients "$mine" --value-bytes "$value" \
            --seconds "$seconds" --warmup 2 --latency-file "$rdir/lat$i" \
            < "$rdir/stdin$i" > "$rdir/out$i" 2> "$rdir/err$i" &
        pids+=($!)
        [ "$i" = 0 ] && sleep 0.3 # the leader listens first (joiners retry anyway)
    done
    exec 3> "$rdir/stdin0" 4> "$rdir/stdin1" 5> "$rdir/stdin2"
    local deadline=$((SECONDS + seconds + 90))
    while [ $SECONDS -lt $deadline ]; do
        local done_count=0
        for i in 0 1 2; do grep -qE '^(RESULT|FAIL)' "$rdir/out$i" 2>/dev/null && done_count=$((done_count + 1)); done
        [ $done_count = 3 ] && break
        sleep 0.5
    done
    exec 3>&- 4>&- 5>&-
    local rc=0
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    pids=()
    cat "$rdir"/out? >> "$results"
    if [ $rc != 0 ] || grep -q '^FAIL' "$rdir"/out? || [ "$(cat "$rdir"/out? | grep -c '^RESULT')" != 3 ]; then
        echo "durable_puts.sh: run $run failed:" >&2
        cat "$rdir"/out? "$rdir"/err? >&2
        exit 1
    fi
    python3 - "$rdir" "$total" "$seconds" <<'PY'
import sys, glob, re
rdir, total, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
lat = sorted(int(x) for f in glob.glob(rdir + "/lat?") for x in open(f) if x.strip())
puts, cpu, wall = 0, 0.0, []
for f in glob.glob(rdir + "/out?"):
    for line in open(f):
        if line.startswith("RESULT"):
            kv = dict(p.split("=", 1) for p in line.split()[1:])
            puts += int(kv["puts"]); cpu += float(kv["cpu_s"]); wall.append(float(kv["wall_s"]))
w = max(wall)
print("RESULT bench=durable-3 clients=%d puts_per_s=%.0f p50_ms=%.3f p99_ms=%.3f cpu_us_per_put=%.0f"
      % (total, puts / w, lat[len(lat) // 2] / 1000, lat[len(lat) * 99 // 100] / 1000, cpu * 1e6 / max(puts, 1)))
PY
}

summary=$work/summary.txt
: > "$summary"
if [ $fsync = 1 ] && [ -x "$peers/fsync-ref.sh" ]; then
    "$peers/fsync-ref.sh" --dir "$dir" | tail -1 | tee -a "$summary"
fi
run=0
for c in $clients_list; do
    for r in $(seq 1 "$repeat"); do
        run=$((run + 1))
        run_ours "$c" "$run" | tee -a "$summary"
        if [ $etcd = 1 ] && [ -x "$peers/etcd-bench.sh" ]; then
            "$peers/etcd-bench.sh" --clients "$c" --value-bytes "$value" --seconds "$seconds" | grep '^RESULT' | tail -1 |
                sed "s/^RESULT /RESULT clients_run=$c /" | tee -a "$summary"
        fi
    done
done
python3 - "$summary" <<'PY'
import sys, statistics as st
rows = [dict(p.split("=", 1) for p in l.split()[1:]) for l in open(sys.argv[1]) if l.startswith("RESULT")]
def med(xs): return "%.0f [%.0f..%.0f]" % (st.median(xs), min(xs), max(xs))
def medf(xs): return "%.2f [%.2f..%.2f]" % (st.median(xs), min(xs), max(xs))
print("\nclients | ours puts/s | etcd puts/s | ratio | ours p50 ms | etcd p50 ms")
for c in sorted({int(r["clients"]) for r in rows if r.get("bench") == "durable-3"}):
    ours = [r for r in rows if r.get("bench") == "durable-3" and int(r["clients"]) == c]
    etcd = [r for r in rows if r.get("clients_run") == str(c)]
    op = [float(r["puts_per_s"]) for r in ours]; o50 = [float(r["p50_ms"]) for r in ours]
    if etcd:
        ep = [float(r["puts_per_s"]) for r in etcd]; e50 = [float(r["p50_ms"]) for r in etcd]
        print("%d | %s | %s | %.2fx | %s | %s" % (c, med(op), med(ep), st.median(op) / st.median(ep), medf(o50), medf(e50)))
    else:
        print("%d | %s | - | - | %s | -" % (c, med(op), medf(o50)))
PY
