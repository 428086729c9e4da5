#!/usr/bin/env bash
# Runs the multicast measurements of docs/perf/multicast.md: 3-member shard on loopback,
# 1 KB latency and throughput, 1 MB and 100 MB bandwidth, each beside raw loopback TCP measured
# in the same run by derecho-bench. Usage: bench/run_multicast.sh [RUNS] > results.txt
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bench=build/bin/derecho-bench
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), runs=$runs"
set -x
$bench --nodes 3 --latency --size 1024 --count 2000 --runs "$runs"
$bench --nodes 3 --senders 1 --latency --size 64 --count 2000 --runs "$runs" --no-reference
$bench --nodes 3 --senders 3 --size 1024 --count 5000 --runs "$runs"
$bench --nodes 3 --senders 1 --size 1048576 --count 300 --runs "$runs"
$bench --nodes 3 --senders 1 --size 104857600 --count 6 --window 2 --runs "$runs"
set +x
echo "# end load: $(cut -d' ' -f1-3 /proc/loadavg)"
