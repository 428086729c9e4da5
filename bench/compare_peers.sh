#!/usr/bin/env bash
# Issue 13's comparison in one run: derecho-bench (3 local node processes, ordered), corosync CPG
# (../shared/tools/peers/cpg-bench.sh, 3 corosyncs in network namespaces) and raw loopback TCP
# (../shared/tools/peers/tcp-ref.sh), each RUNS times in turn (ours, CPG, TCP, ours, ...), then
# the medians (min-max) and the ratios of the issue's table, with CPU time per delivered message
# beside CPG's.
#
# Usage: bench/compare_peers.sh [RUNS] > results.txt       (default RUNS=1; the lead uses >= 5)
# Environment: PEERS_DIR (default ../shared/tools/peers beside the repository), BUILD_DIR
#   (default build), COUNT_1K (messages per sender for 1 KB throughput, default 5000).
# Needs: a built derecho-bench; for CPG root, corosync and libcpg-dev (scripts/install-deps.sh);
#   without them the CPG rows print NA and say why. Every derecho-bench run checks each
#   delivered message and fails on a wrong one (then this script fails too).
#
# CPU per delivered message: ours = user + system time of the 3 node processes from the full
#   view to the last delivery, / messages multicast (1 KB, 3 senders). CPG's = (corosyncs +
#   clients) CPU over cpg-bench's whole measured part (its round-trip, one-sender and
#   all-sender phases together), / all messages it multicast in them: an average over phases,
#   not the all-senders phase alone.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
case "$runs" in '' | *[!0-9]*) echo "usage: $0 [RUNS]" >&2; exit 2 ;; esac
peers=${PEERS_DIR:-$(cd .. && pwd)/shared/tools/peers}
bench=${BUILD_DIR:-build}/bin/derecho-bench
count_1k=${COUNT_1K:-5000}
cpg_count=50000 cpg_lat=2000
[ -x "$bench" ] || { echo "no $bench: build first (cmake --build build --target derecho-bench)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpg_why=""
if [ ! -x "$peers/cpg-bench.sh" ]; then cpg_why="no $peers/cpg-bench.sh"
elif [ "$(id -u)" != 0 ]; then cpg_why="cpg-bench.sh needs root (network namespaces)"
elif ! command -v corosync >/dev/null || [ ! -f /usr/include/corosync/cpg.h ]; then
  cpg_why="corosync or libcpg-dev missing (scripts/install-deps.sh)"
fi
tcp_why=""
[ -x "$peers/tcp-ref.sh" ] || tcp_why="no $peers/tcp-ref.sh"

# median value of a derecho-bench summary line: field LABEL, unit UNIT
bench_value() { awk -v l="$2" -v u="$3" 'index($0, l) && $0 ~ (" " u " ") {
  for (i = 1; i <= NF; i++) if ($i == "median") { print $(i + 1); exit } }' "$1"; }
# key=value from a RESULT line
kv() { sed -n 's/^RESULT .*[ ]'"$2"'=\([^ ]*\).*/\1/p' "$1" | tail -n 1; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), runs=$runs, $(nproc) CPUs"
echo "# derecho-bench: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (modified)')"
for ((r = 1; r <= runs; r++)); do
  echo "## round $r"
  set -x
  "$bench" --nodes 3 --senders 3 --size 1024 --count "$count_1k" --no-reference >"$work/t1k.$r" 2>&1
  "$bench" --nodes 3 --latency --size 1024 --count 2000 --no-reference >"$work/lat.$r" 2>&1
  "$bench" --nodes 3 --senders 1 --size 1048576 --count 300 --no-reference >"$work/m1.$r" 2>&1
  "$bench" --nodes 3 --senders 1 --size 104857600 --count 6 --window 2 --no-reference \
    >"$work/m100.$r" 2>&1
  { set +x; } 2>/dev/null
  grep -h -v "cluster_key_file" "$work/t1k.$r" "$work/lat.$r" "$work/m1.$r" "$work/m100.$r"
  echo "ours_1k_msgs=$(bench_value "$work/t1k.$r" "throughput" "msg/s")" \
    "ours_1k_cpu_us=$(bench_value "$work/t1k.$r" "CPU per message" "us")" \
    "ours_lat_p50=$(bench_value "$work/lat.$r" "send-to-delivery p50" "us")" \
    "ours_1m_MBps=$(bench_value "$work/m1.$r" "throughput" "MB/s")" \
    "ours_100m_MBps=$(bench_value "$work/m100.$r" "throughput" "MB/s")" >"$work/ours.$r"
  if [ -z "$cpg_why" ]; then
    (cd /tmp && "$peers/cpg-bench.sh" --nodes 3 --msg-bytes 1024 --count "$cpg_count" \
      --lat-count "$cpg_lat") >"$work/cpg.$r" 2>&1 || echo "# cpg-bench.sh failed" >>"$work/cpg.$r"
    grep -E "^RESULT|CPU during|^# WARNING" "$work/cpg.$r" || true
  fi
  if [ -z "$tcp_why" ]; then
    (cd /tmp && "$peers/tcp-ref.sh") >"$work/tcp.$r" 2>&1 || echo "# tcp-ref.sh failed" >>"$work/tcp.$r"
    grep -E "^RESULT" "$work/tcp.$r" || true
  fi
done

# collect one value per round; print "median (min-max)" or NA
collect() { # name command-printing-one-value-per-round
  local r v
  : >"$work/vals.$1"
  for ((r = 1; r <= runs; r++)); do
    v=$($2 "$r" 2>/dev/null || true)
    [ -n "$v" ] && [ "$v" != NA ] && echo "$v" >>"$work/vals.$1"
  done
  sort -g "$work/vals.$1" -o "$work/vals.$1"
}
med() { awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print "NA"}' "$work/vals.$1"; }
spread() { awk '{v[NR] = $1} END {if (NR) printf "%s (%s-%s, n=%d)", v[int((NR + 1) / 2)], v[1], v[NR], NR; else print "NA"}' "$work/vals.$1"; }
ours() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" "$work/ours.$1"; }
o_1k() { ours "$1" ours_1k_msgs; }
o_cpu() { ours "$1" ours_1k_cpu_us; }
o_lat() { ours "$1" ours_lat_p50; }
o_1m() { ours "$1" ours_1m_MBps; }
o_100m() { ours "$1" ours_100m_MBps; }
c_all() { kv "$work/cpg.$1" all_rx_msgs_s; }
c_rtt() { kv "$work/cpg.$1" rtt_p50_us; }
c_cpu() { # (corosync + client) CPU over the measured part / messages multicast in it, in us
  local f=$work/cpg.$1
  awk -v c="$(kv "$f" corosync_cpu_pct)" -v k="$(kv "$f" client_cpu_pct)" -v w="$(kv "$f" wall_s)" \
    -v n=$((cpg_lat + cpg_lat / 10 + cpg_count + 3 * cpg_count)) \
    'BEGIN {if (c == "" || w == "") exit; printf "%.1f\n", (c + k) / 100 * w * 1e6 / n}'
}
c_other() { kv "$work/cpg.$1" other_cpu_pct; }
t_1m() { awk -v g="$(kv "$work/tcp.$1" bw_1MiB_GBps)" 'BEGIN {if (g != "") printf "%.0f\n", g * 1000}'; }
t_100m() { awk -v g="$(kv "$work/tcp.$1" bw_100MiB_GBps)" 'BEGIN {if (g != "") printf "%.0f\n", g * 1000}'; }
for f in o_1k o_cpu o_lat o_1m o_100m c_all c_rtt c_cpu c_other t_1m t_100m; do collect "$f" "$f"; done
ratio() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN {if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b}'; }

echo
echo "# medians (min-max) over $runs round(s); end load: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -z "$cpg_why" ] || echo "# CPG: NA ($cpg_why)"
[ -z "$tcp_why" ] || echo "# raw TCP: NA ($tcp_why)"
echo "# CPG runs' other_cpu_pct (not ours, % of one core; > 10 = contaminated): $(spread c_other)"
printf '| %s | %s | %s | %s | %s |\n' "measurement" "ours" "reference, same run" "ratio" "goal"
printf '|---|---|---|---|---|\n'
printf '| 1 KB ordered, 3 senders, msgs/s | %s | CPG all senders %s | %s | >= 2 |\n' \
  "$(spread o_1k)" "$(spread c_all)" "$(ratio o_1k c_all)"
printf '| 1 KB ordered, latency mode p50 (us) | %s | CPG round trip p50 %s | %s | <= 0.25 |\n' \
  "$(spread o_lat)" "$(spread c_rtt)" "$(ratio o_lat c_rtt)"
printf '| 1 MB, 1 sender, MB/s per receiver | %s | raw TCP 1 MiB %s | %s | >= 0.5 |\n' \
  "$(spread o_1m)" "$(spread t_1m)" "$(ratio o_1m t_1m)"
printf '| 100 MB, 1 sender, MB/s | %s | raw TCP 100 MiB (cold) %s | %s | >= 0.5 |\n' \
  "$(spread o_100m)" "$(spread t_100m)" "$(ratio o_100m t_100m)"
printf '| CPU per delivered 1 KB message (us, all processes) | %s | CPG %s | %s | - |\n' \
  "$(spread o_cpu)" "$(spread c_cpu)" "$(ratio o_cpu c_cpu)"
