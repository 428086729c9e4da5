#!/usr/bin/env bash
# CI's durable-mode simulator run (issue 14): COUNT seeds from a fresh random base seed (printed,
# so a failure replays) in each of the two durable modes: power cuts of the whole group followed
# by a total restart (--total-restart), and the same with only some nodes coming back at first
# (--partial-restarts). Every failure is a failure here, liveness included: both modes passed
# 10,000 consecutive seeds on the core of this commit (docs/persistence.md). Then every seed of
# the regression list (seeds that once failed).
#   restart_seeds.sh SIM COUNT REGRESSION_LIST
# DR_SIM_BASE_SEED=N fixes the base (to rerun a CI run exactly).
set -euo pipefail
sim=$1 count=$2 list=$3
base=${DR_SIM_BASE_SEED:-$(((RANDOM << 30 | RANDOM << 15 | RANDOM) * 1000))}
last=$((base + count - 1))
status=0
out=$(mktemp /tmp/dr-sim-restart.XXXXXX)
for mode in "--total-restart" "--total-restart --partial-restarts"; do
    echo "durable seeds $base..$last ($count, $mode; rerun with DR_SIM_BASE_SEED=$base)"
    # shellcheck disable=SC2086 # $mode is one or two flags
    "$sim" $mode --seeds "$base..$last" --time-budget-s 1000000000 | tee "$out" || true
    if grep -qE 'FAILED|CRASHED' "$out"; then
        status=1
    fi
    if ! grep -q '^derecho-sim: .* 0 failed' "$out"; then
        status=1 # the simulator did not finish, or counted a failure
    fi
done
mapfile -t regressions < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")
failed=0
for line in "${regressions[@]}"; do
    read -r seed kind <<< "$line"
    mode=--total-restart
    [ "${kind:-}" = partial ] && mode="--total-restart --partial-restarts"
    for links in --fifo-links ""; do # the link model it was recorded with, and today's
        # shellcheck disable=SC2086 # $mode is one or two flags, $links one or none
        if ! "$sim" $mode $links --seed "$seed" > "$out" 2>&1; then
            cat "$out"
            failed=$((failed + 1))
        fi
    done
done
rm -f "$out"
echo "regression seeds: ${#regressions[@]} run twice (--fifo-links, today's links), $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
