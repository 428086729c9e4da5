#!/usr/bin/env bash
# Checks that derecho-bench checks its results and ends cleanly (issue 13): a short ordered run
# of 3 local nodes passes with no suspicion or partitioning-safety message at teardown (the
# nodes leave one at a time), and the same run with one corrupted message fails with exit 1
# and names the wrong message; also with --zero-copy (dr_group_send_buffer: 5 MB messages, two
# senders). Usage: test_derecho_bench.sh BIN_DIR PORT_BASE
set -euo pipefail
bin=${1:?usage: test_derecho_bench.sh BIN_DIR PORT_BASE}
port=${2:?usage: test_derecho_bench.sh BIN_DIR PORT_BASE}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; sed 's/^/  | /' "$out"/*.txt; exit 1; }

run() { # name expected-exit args...
  local name=$1 want=$2 rc=0
  shift 2
  timeout 120 "$bin/derecho-bench" --nodes 3 --no-reference --port-base "$port" "$@" \
    >"$out/$name.txt" 2>&1 || rc=$?
  port=$((port + 40))
  [ "$rc" -eq "$want" ] || fail "$name: exit $rc, expected $want"
}

run ordered 0 --count 300
grep -q "1/1 runs ok" "$out/ordered.txt" || fail "ordered: no run ok"
! grep -Eq "suspecting|partitioning safety|no clean leave|FAILED" "$out/ordered.txt" ||
  fail "ordered: teardown was not clean"
run latency 0 --latency --count 100
! grep -Eq "suspecting|partitioning safety|FAILED" "$out/latency.txt" || fail "latency: not clean"
run large 0 --senders 1 --size 300000 --count 8
! grep -Eq "suspecting|partitioning safety|FAILED" "$out/large.txt" || fail "large: not clean"

run zero_copy 0 --senders 2 --size 5000000 --count 6 --zero-copy
grep -q "1/1 runs ok" "$out/zero_copy.txt" || fail "zero_copy: no run ok"

DR_BENCH_TEST_CORRUPT=7 run corrupt 1 --count 50
grep -q "WRONG message" "$out/corrupt.txt" || fail "corrupt: the wrong message was not named"
grep -q "0/1 runs ok" "$out/corrupt.txt" || fail "corrupt: the run was not failed"
DR_BENCH_TEST_CORRUPT=3 run corrupt_large 1 --senders 1 --size 300000 --count 6
grep -q "WRONG message" "$out/corrupt_large.txt" || fail "corrupt_large: not detected"
DR_BENCH_TEST_CORRUPT=2 run corrupt_zero_copy 1 --senders 1 --size 5000000 --count 4 --zero-copy
grep -q "WRONG message" "$out/corrupt_zero_copy.txt" || fail "corrupt_zero_copy: not detected"
echo "PASS: derecho-bench checks deliveries and leaves cleanly"
