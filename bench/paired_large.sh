#!/usr/bin/env bash
# Large-message bandwidth of two derecho-bench builds, paired: each round runs every case with
# build A, then with build B, then raw loopback TCP (../shared/tools/peers/tcp-ref.sh), so the
# builds see the same minutes; the summary gives per case the median (min-max) MB/s per
# receiver and CPU per message of each build, their ratio, and the ratio to raw TCP.
#
# Usage: bench/paired_large.sh BENCH_A BENCH_B [ROUNDS] > results.txt   (default ROUNDS=5)
#   e.g. bench/paired_large.sh /tmp/bench_before build/bin/derecho-bench 5
# Cases (CASES env, default all): m1n2 m1n3 m1n4 (1 MB x 300, 2/3/4 nodes, one sender) and
#   m100n2 m100n3 (100 MB x 6, window 2, as in bench/compare_peers.sh). Every derecho-bench run
#   checks each delivery; a failed run fails this script.
# Environment: PEERS_DIR (default ../shared/tools/peers beside the repository); EXTRA_A, EXTRA_B:
#   more derecho-bench arguments for one build (e.g. EXTRA_B=--zero-copy with the same binary
#   twice compares dr_group_send with dr_group_send_buffer).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
bench_a=$1 bench_b=$2 rounds=${3:-5}
cases=${CASES:-m1n2 m1n3 m1n4 m100n2 m100n3}
peers=${PEERS_DIR:-$(cd .. && pwd)/shared/tools/peers}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

args_of() {
  case "$1" in
    m1n*) echo "--nodes ${1#m1n} --senders 1 --size 1048576 --count 300" ;;
    m100n*) echo "--nodes ${1#m100n} --senders 1 --size 104857600 --count 6 --window 2" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
  esac
}
# median value of a derecho-bench summary line: field LABEL, unit UNIT
bench_value() { awk -v l="$2" -v u="$3" 'index($0, l) && $0 ~ (" " u " ") {
  for (i = 1; i <= NF; i++) if ($i == "median") { print $(i + 1); exit } }' "$1"; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), rounds=$rounds, $(nproc) CPUs"
echo "# A: $bench_a ${EXTRA_A:-}  B: $bench_b ${EXTRA_B:-}  ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
for ((r = 1; r <= rounds; r++)); do
  for c in $cases; do
    for side in A B; do
      bin=$bench_a extra=${EXTRA_A:-}
      [ "$side" = B ] && bin=$bench_b extra=${EXTRA_B:-}
      # shellcheck disable=SC2046,SC2086
      if ! "$bin" $(args_of "$c") $extra --runs 1 --no-reference >"$work/out" 2>&1; then
        echo "FAILED: round $r case $c build $side" >&2
        grep -v cluster_key_file "$work/out" >&2
        exit 1
      fi
      mbps=$(bench_value "$work/out" "throughput" "MB/s")
      cpu=$(bench_value "$work/out" "CPU per message" "us")
      echo "round=$r case=$c build=$side MBps=$mbps cpu_us=$cpu"
      echo "$mbps" >>"$work/$c.$side.mbps"
      echo "$cpu" >>"$work/$c.$side.cpu"
    done
  done
  if [ -x "$peers/tcp-ref.sh" ]; then
    (cd /tmp && "$peers/tcp-ref.sh") >"$work/tcp" 2>&1 || true
    line=$(grep '^RESULT' "$work/tcp" | tail -n 1 || true)
    t1=$(sed -n 's/.* bw_1MiB_GBps=\([^ ]*\).*/\1/p' <<<"$line")
    t100=$(sed -n 's/.* bw_100MiB_GBps=\([^ ]*\).*/\1/p' <<<"$line")
    echo "round=$r tcp_1MiB_GBps=${t1:-NA} tcp_100MiB_GBps=${t100:-NA}"
    [ -n "$t1" ] && awk -v g="$t1" 'BEGIN {printf "%.0f\n", g * 1000}' >>"$work/tcp1"
    [ -n "$t100" ] && awk -v g="$t100" 'BEGIN {printf "%.0f\n", g * 1000}' >>"$work/tcp100"
  fi
done

spread() { sort -g "$1" | awk '{v[NR] = $1} END {if (NR) printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR]; else printf "NA"}'; }
med() { [ -s "$1" ] && sort -g "$1" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}' || echo NA; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b}'; }

echo
echo "# medians (min-max) over $rounds rounds; end load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| case | A MB/s | B MB/s | B/A | A CPU us/msg | B CPU us/msg | raw TCP MB/s | A/TCP | B/TCP |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in $cases; do
  tcp=$work/tcp1
  case "$c" in m100*) tcp=$work/tcp100 ;; esac
  [ -f "$tcp" ] || : >"$tcp"
  a=$(med "$work/$c.A.mbps") b=$(med "$work/$c.B.mbps") t=$(med "$tcp")
  echo "| $c | $(spread "$work/$c.A.mbps") | $(spread "$work/$c.B.mbps") | $(ratio "$b" "$a") |" \
    "$(spread "$work/$c.A.cpu") | $(spread "$work/$c.B.cpu") | $(spread "$tcp") |" \
    "$(ratio "$a" "$t") | $(ratio "$b" "$t") |"
done
