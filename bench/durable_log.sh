#!/usr/bin/env bash
# The durable log beside the fsync floor, in one run on one directory: fsync-ref.sh
# (../shared/tools/peers: 4 KiB appends + fdatasync, single and group of 100) and plog-bench
# (10 KB records through src/persist/plog.c: a flush per record, then group commit of 100).
# Prints both tools' RESULT lines. Record numbers only on a quiet machine (docs/persistence.md).
# Usage: bench/durable_log.sh [BUILD_DIR] [DIR] [COUNT]
#   DIR: parent of the scratch directories (default /tmp; not tmpfs), COUNT: records (20000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
dir=${2:-/tmp}
count=${3:-20000}
peers=${DR_PEERS_DIR:-$here/../../shared/tools/peers}
[ -x "$build/bin/plog-bench" ] || { echo "build plog-bench first: cmake --build $build --target plog-bench" >&2; exit 2; }
if [ -x "$peers/fsync-ref.sh" ]; then
    single=$((count / 10 < 100 ? 100 : count / 10))
    group=$((count < 10000 ? 10000 : count)) # fsync-ref needs >= 100 commits of 100
    "$peers/fsync-ref.sh" --dir "$dir" --count "$single" --group-count "$group" | tail -1
else
    echo "durable_log.sh: $peers/fsync-ref.sh not found: fsync floor not measured" >&2
fi
"$build/bin/plog-bench" --dir "$dir" --count $((count / 10)) --group 1
"$build/bin/plog-bench" --dir "$dir" --count "$count" --group 100
