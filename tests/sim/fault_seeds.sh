#!/usr/bin/env bash
# CI's fault-mode simulator run (issue 11): COUNT seeds from a fresh random base seed, printed so
# a failure replays, then every seed in the regression list (seeds that once failed). A count,
# not a time budget, so every CI run explores new schedules.
#   fault_seeds.sh SIM COUNT REGRESSION_LIST
# DR_SIM_BASE_SEED=N fixes the base (to rerun a CI run exactly).
set -euo pipefail
sim=$1 count=$2 list=$3
base=${DR_SIM_BASE_SEED:-$(((RANDOM << 30 | RANDOM << 15 | RANDOM) * 1000))}
last=$((base + count - 1))
echo "fault seeds $base..$last ($count, fresh base; rerun with DR_SIM_BASE_SEED=$base)"
status=0
out=$(mktemp /tmp/dr-sim-fresh.XXXXXX)
"$sim" --faults --seeds "$base..$last" --time-budget-s 1000000000 | tee "$out" || true
# Fresh seeds: every safety violation (views, order, stability, creation, duplication, FIFO,
# minority, leave flush, crashes) fails the run. A liveness-only failure (a correct node
# excluded, or not settled in time) is reported with its replay command but does not fail CI:
# a known weakness at about 1 in 90,000 seeds (docs/protocol.md); add such a seed to the
# regression list once it is fixed. Regression seeds are strict.
if grep -E 'FAILED|CRASHED' "$out" | grep -vqE 'FAILED \([0-9]+ nodes\): (node [0-9]+ stopped|liveness)'; then
    status=1
elif grep -q 'FAILED' "$out"; then
    echo "LIVENESS WARNING: fresh seeds above failed a liveness check only (not a CI failure)"
fi
if ! grep -q '^derecho-sim: ' "$out"; then
    status=1 # the simulator did not finish
fi
rm -f "$out"
# A line is "SEED" (recorded before raw subgroups were part of the fault layouts: replayed with
# --no-raw, as it failed then) or "SEED raw" (the layouts of today). Each seed runs twice: with
# --fifo-links, the link model the seeds before the urgent lane (issue 11) were recorded with,
# so their schedule replays as it failed, and with today's links (control may overtake data).
mapfile -t regressions < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")
failed=0
for line in "${regressions[@]}"; do
    read -r seed kind <<< "$line"
    layouts=--no-raw
    [ "${kind:-}" = raw ] && layouts=
    for links in --fifo-links ""; do
        # shellcheck disable=SC2086 # $layouts and $links are one flag or none
        if ! "$sim" --faults $layouts $links --seed "$seed" > /tmp/dr-sim-regression.$$ 2>&1; then
            cat /tmp/dr-sim-regression.$$
            failed=$((failed + 1))
        fi
    done
done
rm -f /tmp/dr-sim-regression.$$
echo "regression seeds: ${#regressions[@]} run twice (--fifo-links, today's links), $failed failed"
[ "$failed" -eq 0 ] || status=1
exit $status
