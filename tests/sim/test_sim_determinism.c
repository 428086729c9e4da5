/*
 * The simulator replays exactly: the same seed gives the same trace, byte for byte, and the same
 * failure; a broken delivery rule is reported as a total-order violation (src/sim/sim.c). The
 * durable mode (power cuts, total and partial restarts) replays exactly too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "derecho/log.h"
#include "sim/sim.h"

/** Runs `config` with a trace into memory; returns the trace (caller frees). */
static char *traced_run_config(sim_config config, sim_result *result) {
    char *text = NULL;
    size_t len = 0;
    FILE *trace = open_memstream(&text, &len);
    assert_non_null(trace);
    config.trace = trace;
    config.max_virtual_us = 30000000;
    assert_int_equal(sim_run(&config, result), 0);
    fclose(trace);
    return text;
}

/** Runs one seed of the failure-free mode with a trace into memory (caller frees it). */
static char *traced_run(uint64_t seed, bool broken, sim_result *result) {
    return traced_run_config((sim_config){.seed = seed, .broken_delivery = broken}, result);
}

static void test_same_seed_same_trace(void **state) {
    (void)state;
    for (uint64_t seed = 0; seed < 20; seed++) {
        sim_result a, b;
        char *first = traced_run(seed, false, &a);
        char *second = traced_run(seed, false, &b);
        assert_true(a.passed);
        assert_string_equal(first, second);
        assert_int_equal(a.deliveries, b.deliveries);
        assert_int_equal(a.virtual_us, b.virtual_us);
        assert_non_null(strstr(first, "view 0 installed"));
        free(first);
        free(second);
    }
}

static void test_broken_rule_caught_and_replayed(void **state) {
    (void)state;
    uint32_t caught = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        sim_result a, b;
        char *first = traced_run(seed, true, &a);
        char *second = traced_run(seed, true, &b);
        assert_string_equal(first, second);
        assert_string_equal(a.failure, b.failure);
        if (!a.passed) {
            caught++;
            /* out-of-order delivery shows as a total-order or a version-order violation */
            assert_true(strstr(a.failure, "total order") || strstr(a.failure, "versions"));
            assert_non_null(strstr(first, "INVARIANT VIOLATION"));
        }
        free(first);
        free(second);
    }
    assert_true(caught >= 10);
}

/* Durable mode: the simulated logs, sync delays, power cuts and restarts draw from the seed too. */
static void test_durable_mode_replays(void **state) {
    (void)state;
    uint32_t cuts = 0, restart_views = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        sim_config config = {.seed = seed, .total_restart = true, .partial_restarts = seed % 2};
        sim_result a, b;
        char *first = traced_run_config(config, &a);
        char *second = traced_run_config(config, &b);
        assert_true(a.passed);
        assert_string_equal(first, second);
        assert_int_equal(a.deliveries, b.deliveries);
        assert_int_equal(a.power_cuts, b.power_cuts);
        assert_int_equal(a.restart_views, b.restart_views);
        assert_true(a.power_cuts >= 1);
        cuts += a.power_cuts;
        restart_views += a.restart_views;
        free(first);
        free(second);
    }
    assert_true(restart_views >= cuts / 2); /* most cuts end in a restart view */
}

int main(void) {
    dr_log_set_all_levels(DR_LOG_OFF);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_trace),
        cmocka_unit_test(test_broken_rule_caught_and_replayed),
        cmocka_unit_test(test_durable_mode_replays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
