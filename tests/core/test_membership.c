/*
 * Unit tests of the initial membership (src/core/membership.c): view 0 only once the layout is
 * adequate, duplicate ids refused, redirects to the leader, idempotent retries, and garbage
 * frames rejected by dr_core_on_message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/wire.h"
#include "derecho/log.h"
#include "harness.h"

static harness *new_harness(void) {
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    return h;
}

static void test_view0_installed_only_when_adequate(void **state) {
    (void)state;
    harness *h = new_harness();
    dr_core_options options;
    h_options(&options, 3);
    h_add(h, 7, &options, "n0");
    assert_int_equal(dr_core_view_id(h->nodes[0].core), -1);
    h_add(h, 3, &options, "n0");
    h_pump(h, (size_t)-1);
    assert_false(h->nodes[0].installed); /* 2 of 3: inadequate, keep waiting */
    assert_false(h->nodes[1].installed);
    h_add(h, 5, &options, "n0");
    h_pump(h, (size_t)-1);
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(h->nodes[i].installed);
        assert_int_equal(h->nodes[i].view.view.vid, 0);
        assert_int_equal(h->nodes[i].view.view.num_members, 3);
        assert_int_equal(h->nodes[i].view.view.member_ids[0], 7); /* leader first */
        assert_int_equal(h->nodes[i].view.view.member_ids[1], 3); /* then arrival order */
        assert_int_equal(h->nodes[i].view.view.member_ids[2], 5);
        assert_int_equal(h->nodes[i].view.my_rank, i);
        assert_int_equal(dr_core_view_id(h->nodes[i].core), 0);
    }
    assert_string_equal(h->nodes[0].view.view.addresses[2], "n2");
    assert_int_equal(h->rejected, 0);
    h_free(h);
    free(h);
}

static void test_single_node_group_installs_at_once(void **state) {
    (void)state;
    harness *h = new_harness();
    dr_core_options options;
    h_options(&options, 1);
    h_add(h, 1, &options, "n0");
    assert_true(h->nodes[0].installed);
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "hi", 2, DR_MODE_ORDERED, 5), 0);
    h_drain(h, 0);
    assert_int_equal(h->nodes[0].num_deliveries, 1);
    assert_int_equal(h->nodes[0].deliveries[0].version, 0);
    h_free(h);
    free(h);
}

static void test_duplicate_id_refused(void **state) {
    (void)state;
    harness *h = new_harness();
    dr_core_options options;
    h_options(&options, 3);
    h_add(h, 1, &options, "n0");
    h_add(h, 2, &options, "n0");
    h_pump(h, (size_t)-1);
    h_add(h, 2, &options, "n0"); /* same id as the joiner, another address */
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[2].join_failed);
    assert_int_equal(h->nodes[2].join_error, DR_EEXIST);
    h_add(h, 1, &options, "n0"); /* the leader's own id */
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[3].join_failed);
    assert_false(h->nodes[0].installed); /* refused nodes do not count */
    h_add(h, 9, &options, "n0");
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[0].installed);
    assert_int_equal(h->nodes[0].view.view.num_members, 3);
    assert_int_equal(h->nodes[0].view.view.member_ids[2], 9);
    assert_false(h->nodes[2].installed);
    h_free(h);
    free(h);
}

static void test_non_leader_redirects_to_leader(void **state) {
    (void)state;
    harness *h = new_harness();
    dr_core_options options;
    h_options(&options, 3);
    h_add(h, 1, &options, "n0");
    h_add(h, 2, &options, "n0");
    h_pump(h, (size_t)-1);
    h_add(h, 3, &options, "n1"); /* asks a joiner, which sends it to the leader */
    h_pump(h, (size_t)-1);
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(h->nodes[i].installed);
        assert_int_equal(h->nodes[i].view.view.num_members, 3);
    }
    /* after view 0 a member redirects to the view's leader too */
    h_add(h, 4, &options, "n2");
    h_pump(h, (size_t)-1);
    assert_false(h->nodes[3].join_failed); /* queued by the leader, added by a view change */
    for (uint32_t i = 0; i < 4; i++) {
        assert_true(h->nodes[i].installed);
        assert_int_equal(h->nodes[i].view.view.vid, 1);
        assert_int_equal(h->nodes[i].view.view.num_members, 4);
        assert_int_equal(h->nodes[i].view.view.member_ids[3], 4);
    }
    assert_int_equal(h->rejected, 0);
    h_free(h);
    free(h);
}

static void test_retries_are_idempotent(void **state) {
    (void)state;
    harness *h = new_harness();
    dr_core_options options;
    h_options(&options, 2);
    options.join_retry_us = 100;
    h_add(h, 1, &options, "n0");
    h_add(h, 2, &options, "n0");
    /* the joiner retries before anything was delivered: two requests in flight */
    h->now_us = 1000;
    dr_core_on_tick(h->nodes[1].core, h->now_us);
    h_drain(h, 1);
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[0].installed);
    assert_true(h->nodes[1].installed);
    assert_int_equal(h->nodes[0].view.view.num_members, 2);
    assert_int_equal(h->nodes[1].views_installed, 1);
    h->now_us = 5000;
    dr_core_on_tick(h->nodes[1].core, h->now_us); /* in a view: no more requests */
    h_drain(h, 1);
    assert_int_equal(h->len, 0);
    /* a retry that crossed the view arrives late: the leader resends the view to the member */
    dr_buf buf;
    dr_buf_init(&buf, 0);
    assert_int_equal(
        dr_wire_encode_join_request(&buf, 2, "n1", dr_core_incarnation(h->nodes[1].core)), 0);
    assert_int_equal(dr_core_on_message(h->nodes[0].core, 2, buf.data, buf.len, h->now_us), 0);
    dr_buf_free(&buf);
    h_drain(h, 0);
    assert_int_equal(h->len, 1);
    h_frame *resent = &h->queue[h->head];
    assert_int_equal(resent->from, 0);
    assert_int_equal(resent->to, 1);
    dr_wire_header header;
    assert_int_equal(dr_wire_decode_header(resent->bytes, resent->len, &header, NULL), 0);
    assert_int_equal(header.type, DR_MSG_VIEW);
    assert_int_equal(header.vid, 0);
    /* ... and the member ignores the copy */
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[1].views_installed, 1);
    assert_int_equal(h->nodes[1].view.view.vid, 0);
    assert_int_equal(h->rejected, 0);
    h_free(h);
    free(h);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void test_garbage_frames_rejected_without_harm(void **state) {
    (void)state;
    harness *h = new_harness();
    dr_core_options options;
    h_options(&options, 2);
    h_cluster(h, 2, &options);
    dr_core *core = h->nodes[1].core;
    uint8_t frame[256];
    for (int round = 0; round < 5000; round++) {
        size_t len = next_random() % sizeof frame;
        for (size_t i = 0; i < len; i++)
            frame[i] = (uint8_t)next_random();
        if (round % 2 && len >= DR_WIRE_HEADER_BYTES) { /* a plausible header, random body */
            dr_store_u32le(frame, DR_WIRE_MAGIC);
            frame[4] = DR_WIRE_VERSION;
            frame[5] = (uint8_t)(1 + next_random() % DR_MSG_TYPE_MAX);
            dr_store_u32le(frame + 8, 10);
            dr_store_u32le(frame + 12, 0);
            dr_store_u32le(frame + 16, (uint32_t)(len - DR_WIRE_HEADER_BYTES));
        }
        (void)dr_core_on_message(core, 10, frame, len, 100);
        dr_action a;
        while (dr_core_next_action(core, &a))
            dr_action_free(&a);
    }
    dr_core_stats stats;
    dr_core_get_stats(core, &stats);
    assert_true(stats.frames_rejected > 2500);
    assert_int_equal(dr_core_on_message(core, 10, NULL, 0, 100), DR_EPROTO);
    /* a frame whose header names another sender than the connection's node */
    dr_buf buf;
    dr_buf_init(&buf, 0);
    dr_wire_encode_join_accepted(&buf, 99);
    assert_int_equal(dr_core_on_message(core, 10, buf.data, buf.len, 100), DR_EPROTO);
    dr_buf_free(&buf);
    /* without harm: the group still multicasts in total order, in the same view */
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "a", 1, DR_MODE_ORDERED, h->now_us), 0);
    h_drain(h, 0);
    assert_int_equal(dr_core_send(core, 0, "b", 1, DR_MODE_ORDERED, h->now_us), 0);
    h_drain(h, 1);
    h_pump(h, (size_t)-1);
    for (uint32_t n = 0; n < 2; n++) {
        assert_int_equal(h->nodes[n].num_deliveries, 2);
        assert_int_equal(h->nodes[n].deliveries[0].bytes[0], 'a');
        assert_int_equal(h->nodes[n].deliveries[1].bytes[0], 'b');
        assert_int_equal(h->nodes[n].views_installed, 1);
        assert_int_equal(dr_core_view_id(h->nodes[n].core), 0);
    }
    assert_int_equal(h->rejected, 0);
    h_free(h);
    free(h);
}

int main(void) {
    dr_log_set_all_levels(DR_LOG_OFF); /* the garbage test logs thousands of rejections */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view0_installed_only_when_adequate),
        cmocka_unit_test(test_single_node_group_installs_at_once),
        cmocka_unit_test(test_duplicate_id_refused),
        cmocka_unit_test(test_non_leader_redirects_to_leader),
        cmocka_unit_test(test_retries_are_idempotent),
        cmocka_unit_test(test_garbage_frames_rejected_without_harm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
