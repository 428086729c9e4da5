#!/usr/bin/env bash
# The cost of the group port's security (docs/perf/security.md): the same derecho-bench runs
# with an open port, an authenticated one (--keys: the handshake only) and a sealed one
# (--encrypt: AES-256-GCM on every frame), paired: each round runs the three modes back to back,
# rounds alternate the order, so drift in the machine's load hits all three alike.
#   bench/run_security.sh [ROUNDS] > results.txt    (default 5 rounds)
# Prints each measurement's median, min and max per mode and the ratio of the medians to the
# open port. derecho-bench checks every delivery; a failed run fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bench=build/bin/derecho-bench
[ -x "$bench" ] || { echo "run_security.sh: build first ($bench missing)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), rounds=$rounds"

# name | derecho-bench arguments | the output line to keep
cases=(
  "1KB latency p50|--nodes 3 --senders 1 --latency --size 1024 --count 2000|send-to-delivery p50"
  "1KB 3 senders msg/s|--nodes 3 --senders 3 --size 1024 --count 5000|throughput \\(slowest node\\).*msg/s"
  "1MB 1 sender MB/s|--nodes 3 --senders 1 --size 1048576 --count 300|throughput \\(slowest node\\).*MB/s"
  "100MB 1 sender MB/s|--nodes 3 --senders 1 --size 104857600 --count 6 --window 2|throughput \\(slowest node\\).*MB/s"
)
modes=(open keys encrypt)
run=0
for ((r = 0; r < rounds; r++)); do
  order=("${modes[@]}")
  if ((r % 2)); then order=(encrypt keys open); fi
  for c in "${cases[@]}"; do
    IFS='|' read -r name args pattern <<<"$c"
    for mode in "${order[@]}"; do
      flag=""
      [ "$mode" = keys ] && flag="--keys"
      [ "$mode" = encrypt ] && flag="--encrypt"
      # shellcheck disable=SC2086
      port=$((22500 + 10 * (run % 20))) # a fresh port range per run: the last run's may linger
      run=$((run + 1))
      out=$("$bench" $args --runs 1 --no-reference --port-base "$port" $flag 2>"$work/stderr") || {
        tail -n 20 "$work/stderr" >&2
        echo "run_security.sh: derecho-bench failed: $args $flag" >&2
        exit 1
      }
      value=$(grep -E "$pattern" <<<"$out" | head -n 1 | awk '{for (i = 1; i <= NF; i++) if ($i == "median") {print $(i + 1); exit}}')
      [ -n "$value" ] || { echo "run_security.sh: no '$pattern' in: $out" >&2; exit 1; }
      echo "$name|$mode|$value" >>"$work/values"
    done
  done
done

python3 - "$work/values" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, mode, value = line.strip().split("|")
    rows.setdefault(name, {}).setdefault(mode, []).append(float(value))
print("| measurement | open: median (min–max) | keys | ratio | encrypt | ratio |")
print("|---|---|---|---|---|---|")
for name, modes in rows.items():
    base = statistics.median(modes["open"])
    cells = []
    for mode in ("open", "keys", "encrypt"):
        v = modes[mode]
        cells.append(f"{statistics.median(v):.1f} ({min(v):.1f}–{max(v):.1f})")
        if mode != "open":
            cells.append(f"{statistics.median(v) / base:.2f}")
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
echo "# end load: $(cut -d' ' -f1-3 /proc/loadavg)"
