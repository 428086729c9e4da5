/*
 * The persistence frontier (src/core/persistence.c, docs/persistence.md): each member reports
 * what it persisted (dr_core_persisted -> PERSISTED_NUM in its SST row); every member emits
 * DR_ACTION_PERSISTED(v) once the minimum over the shard reached v, never before, never
 * backwards, and again after a view change only beyond what it emitted before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define HB_MS 10u

static harness *cluster(uint32_t n) {
    dr_core_options options;
    h_options(&options, n);
    /* flexible (1..8): a view change that removes a member leaves an adequate layout */
    dr_shard_policy_flexible(&options.layout.types[0].policy, 1, 1, 8, DR_MODE_ORDERED);
    options.window_size = 8;
    options.heartbeat_ms = HB_MS;
    options.suspect_after_missed = 3;
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, n, &options);
    for (uint32_t i = 0; i < n; i++)
        assert_true(h->nodes[i].installed);
    return h;
}

/** Node i multicasts `count` messages; pumps until all are delivered everywhere. */
static void send_some(harness *h, uint32_t i, uint32_t count) {
    for (uint32_t m = 0; m < count; m++) {
        uint8_t payload[4] = {1, 2, 3, (uint8_t)m};
        int rc =
            dr_core_send(h->nodes[i].core, 0, payload, sizeof payload, DR_MODE_ORDERED, h->now_us);
        assert_int_equal(rc, 0);
        h_drain(h, i);
        h_pump(h, (size_t)-1);
    }
}

static void persisted(harness *h, uint32_t i, int64_t version) {
    dr_core_persisted(h->nodes[i].core, 0, version, h->now_us);
    h_drain(h, i);
    h_pump(h, (size_t)-1);
}

static int64_t nth_version(const harness *h, uint32_t node, uint32_t n) {
    assert_true(n < h->nodes[node].num_deliveries);
    return h->nodes[node].deliveries[n].version;
}

static void test_frontier_waits_for_every_member(void **state) {
    (void)state;
    harness *h = cluster(3);
    send_some(h, 0, 5);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(h->nodes[i].num_deliveries, 5);
    int64_t v1 = nth_version(h, 0, 1), v4 = nth_version(h, 0, 4);
    /* two of three persisted everything: no frontier anywhere */
    persisted(h, 0, v4);
    persisted(h, 1, v4);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(h->nodes[i].persisted_events, 0);
        assert_int_equal(dr_core_persisted_frontier(h->nodes[i].core, 0), -1);
    }
    /* the third persisted up to v1: the frontier is v1 (the minimum), at every member */
    persisted(h, 2, v1);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(h->nodes[i].persisted_events, 1);
        assert_int_equal(h->nodes[i].persisted[0], v1);
        assert_int_equal(dr_core_persisted_frontier(h->nodes[i].core, 0), v1);
    }
    /* a stale or repeated report changes nothing */
    persisted(h, 2, v1);
    persisted(h, 0, v1);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(h->nodes[i].persisted_events, 1);
    /* the last one catches up: v4 everywhere */
    persisted(h, 2, v4);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(h->nodes[i].persisted_events, 2);
        assert_int_equal(h->nodes[i].persisted[0], v4);
    }
    h_free(h);
    free(h);
}

static void test_undelivered_or_bad_reports_ignored(void **state) {
    (void)state;
    harness *h = cluster(2);
    send_some(h, 0, 2);
    int64_t v1 = nth_version(h, 0, 1);
    /* beyond what was delivered, a later view, negative, unknown subgroup: all ignored */
    persisted(h, 0, v1 + 5);
    persisted(h, 0, v1 + ((int64_t)1 << 32));
    persisted(h, 0, -1);
    dr_core_persisted(h->nodes[0].core, DR_LAYOUT_MAX_SUBGROUPS, v1, h->now_us);
    persisted(h, 1, v1);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(h->nodes[i].persisted_events, 0);
    persisted(h, 0, v1);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(h->nodes[i].persisted[0], v1);
    h_free(h);
    free(h);
}

static void test_frontier_across_view_change(void **state) {
    (void)state;
    harness *h = cluster(3);
    int32_t vid = h->nodes[0].view.view.vid;
    send_some(h, 0, 3);
    int64_t v2 = nth_version(h, 0, 2), v0 = nth_version(h, 0, 0);
    persisted(h, 0, v2);
    persisted(h, 1, v2);
    persisted(h, 2, v0);
    assert_int_equal(h->nodes[0].persisted[0], v0);
    /* node 2 crashes: the new view's shard is {0, 1}, both re-publish v2 at install */
    h_crash(h, 2);
    h_run(h, 2000, 60);
    for (uint32_t i = 0; i < 2; i++) {
        assert_true(h->nodes[i].view.view.vid > vid);
        assert_int_equal(h->nodes[i].persisted[0], v2);
    }
    /* new deliveries in the new view: the frontier follows the slower survivor */
    uint32_t before = h->nodes[0].num_deliveries;
    send_some(h, 1, 2);
    int64_t w0 = nth_version(h, 0, before), w1 = nth_version(h, 0, before + 1);
    assert_true(w0 > v2);
    persisted(h, 0, w1);
    assert_int_equal(h->nodes[0].persisted[0], v2);
    persisted(h, 1, w0);
    assert_int_equal(h->nodes[0].persisted[0], w0);
    assert_int_equal(h->nodes[1].persisted[0], w0);
    h_free(h);
    free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frontier_waits_for_every_member),
        cmocka_unit_test(test_undelivered_or_bad_reports_ignored),
        cmocka_unit_test(test_frontier_across_view_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
