/*
 * View changes in the core (PROTOCOL.md §5): a member or the leader crashes in the middle of a
 * stream of ordered multicasts; the survivors suspect it by missed heartbeats, wedge, agree on
 * the next view, deliver exactly the same messages of the old view (ragged trim), re-send their
 * own undelivered messages, and continue. Also: partitioning safety, clean leave, suspicion on
 * a broken connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define HB_MS 10u

static void trace_fn(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

/** A group of n formed with `options` (this file's heartbeat settings applied). */
static harness *cluster_with(dr_core_options *options, uint32_t n) {
    options->heartbeat_ms = HB_MS;
    options->suspect_after_missed = 3;
    if (getenv("VC_TRACE"))
        options->trace = trace_fn;
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, n, options);
    for (uint32_t i = 0; i < n; i++)
        assert_true(h->nodes[i].installed);
    return h;
}

/** A group of n in one flexible shard (1..8 members), sending window `window`. */
static harness *cluster(uint32_t n, uint32_t window) {
    dr_core_options options;
    h_options(&options, n);
    /* the flexible policy installs view 0 with the first node alone, then lets the others in */
    dr_shard_policy_flexible(&options.layout.types[0].policy, 1, 1, 8, DR_MODE_ORDERED);
    options.window_size = window;
    return cluster_with(&options, n);
}

static void done(harness *h) {
    h_free(h);
    free(h);
}

/** Sends message number m (payload: sender id, m) from node i; returns the core's code. */
static int send_msg(harness *h, uint32_t i, uint32_t m) {
    uint8_t payload[8];
    memcpy(payload, &h->nodes[i].id, 4);
    memcpy(payload + 4, &m, 4);
    int rc = dr_core_send(h->nodes[i].core, 0, payload, sizeof payload, DR_MODE_ORDERED, h->now_us);
    h_drain(h, i);
    return rc;
}

/** Keeps sending msgs[i]..total from every live sender as windows allow, pumping in between. */
static void stream(harness *h, uint32_t *next, uint32_t total, uint32_t rounds) {
    for (uint32_t r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < h->num_nodes; i++) {
            if (h->nodes[i].crashed || h->nodes[i].stopped || next[i] >= total)
                continue;
            if (send_msg(h, i, next[i]) == 0)
                next[i]++;
        }
        h_pump(h, 20);
    }
}

static bool same_delivery(const h_delivery *a, const h_delivery *b) {
    return a->sender_id == b->sender_id && a->version == b->version && a->len == b->len &&
           memcmp(a->bytes, b->bytes, a->len) == 0;
}

/** Node b's deliveries start with all of node a's (equal if a and b are both survivors). */
static void assert_prefix(const h_node *a, const h_node *b) {
    assert_true(a->num_deliveries <= b->num_deliveries);
    for (uint32_t d = 0; d < a->num_deliveries; d++)
        assert_true(same_delivery(&a->deliveries[d], &b->deliveries[d]));
}

/** Every message 0..total-1 of `sender` delivered exactly once, in order, at node `at`. */
static void assert_all_from(const h_node *at, uint32_t sender, uint32_t total) {
    uint32_t expect = 0;
    for (uint32_t d = 0; d < at->num_deliveries; d++) {
        uint32_t id, m;
        memcpy(&id, at->deliveries[d].bytes, 4);
        memcpy(&m, at->deliveries[d].bytes + 4, 4);
        if (id != sender)
            continue;
        assert_int_equal(m, expect);
        expect++;
    }
    assert_int_equal(expect, total);
}

static void crash_in_stream(uint32_t victim) {
    harness *h = cluster(4, 3);
    int32_t vid = h->nodes[0].view.view.vid + 1; /* joins made views 1..3 */
    uint32_t next[4] = {0};
    stream(h, next, 30, 20);
    h_crash(h, victim);
    stream(h, next, 30, 10); /* blocked by the window or by the wedge */
    h_run(h, 2000, 60);      /* heartbeats, suspicion, view change */
    stream(h, next, 60, 2000);
    h_run(h, 2000, 10);
    uint32_t survivor = victim == 0 ? 1 : 0;
    if (getenv("VC_DEBUG"))
        for (uint32_t i = 0; i < 4; i++) {
            dr_core_stats st = {0};
            if (h->nodes[i].core)
                dr_core_get_stats(h->nodes[i].core, &st);
            if (h->nodes[i].core)
                print_message("send rc %d\n", send_msg(h, i, 99));
            print_message("node %u next %u deliveries %u vid %d sent %lu resent %lu views %lu\n", i,
                          next[i], h->nodes[i].num_deliveries, h->nodes[i].view.view.vid,
                          (unsigned long)st.messages_sent, (unsigned long)st.resent,
                          (unsigned long)st.view_changes);
        }
    for (uint32_t i = 0; i < 4; i++) {
        if (i == victim)
            continue;
        assert_false(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].view.view.vid, vid);
        assert_int_equal(h->nodes[i].view.view.num_members, 3);
        assert_int_equal(next[i], 60);
        assert_prefix(&h->nodes[survivor], &h->nodes[i]);
        assert_prefix(&h->nodes[i], &h->nodes[survivor]);
        for (uint32_t j = 0; j < 4; j++)
            if (j != victim)
                assert_all_from(&h->nodes[i], h->nodes[j].id, 60);
    }
    /* what the victim delivered, the survivors delivered too, in the same order */
    h_node *dead = &h->nodes[victim];
    assert_true(dead->num_deliveries <= h->nodes[survivor].num_deliveries);
    for (uint32_t d = 0; d < dead->num_deliveries; d++)
        assert_true(same_delivery(&dead->deliveries[d], &h->nodes[survivor].deliveries[d]));
    done(h);
}

static void test_member_crash(void **state) {
    (void)state;
    crash_in_stream(2);
}

static void test_leader_crash(void **state) {
    (void)state;
    crash_in_stream(0);
}

static void test_partition_safety_stops_minority(void **state) {
    (void)state;
    harness *h = cluster(3, 4);
    h_crash(h, 1);
    h_crash(h, 2);
    h_run(h, 2000, 60);
    assert_true(h->nodes[0].stopped);
    assert_int_equal(h->nodes[0].stop_error, DR_ECLOSED);
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "x", 1, DR_MODE_ORDERED, h->now_us),
                     DR_ECLOSED);
    done(h);
}

static void test_clean_leave(void **state) {
    (void)state;
    harness *h = cluster(3, 4);
    int32_t vid = h->nodes[0].view.view.vid + 1;
    uint32_t next[3] = {0};
    stream(h, next, 10, 30);
    assert_int_equal(dr_core_leave(h->nodes[2].core, h->now_us), 0);
    h_drain(h, 2);
    h_run(h, 1000, 20);
    assert_true(h->nodes[2].stopped);
    assert_int_equal(h->nodes[2].stop_error, 0);
    for (uint32_t i = 0; i < 2; i++) {
        assert_false(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].view.view.vid, vid);
        assert_int_equal(h->nodes[i].view.view.num_members, 2);
    }
    assert_prefix(&h->nodes[2], &h->nodes[0]);
    next[2] = 10;
    stream(h, next, 20, 200);
    h_run(h, 1000, 5);
    assert_prefix(&h->nodes[0], &h->nodes[1]);
    assert_prefix(&h->nodes[1], &h->nodes[0]);
    assert_all_from(&h->nodes[1], h->nodes[0].id, 20);
    done(h);
}

/* Two of three members leave at the same moment (every program ending its run): the one that
 * stays is not in a minority (leavers are not suspects), installs a view of its own and then
 * leaves too: the last member of a group that leaves ends the group and stops cleanly. */
static void test_members_leave_together_then_the_last_one(void **state) {
    (void)state;
    harness *h = cluster(3, 4);
    int32_t vid = h->nodes[0].view.view.vid + 1;
    uint32_t next[3] = {0};
    stream(h, next, 10, 30);
    assert_int_equal(dr_core_leave(h->nodes[1].core, h->now_us), 0);
    assert_int_equal(dr_core_leave(h->nodes[2].core, h->now_us), 0);
    h_drain(h, 1);
    h_drain(h, 2);
    h_run(h, 1000, 20);
    for (uint32_t i = 1; i < 3; i++) {
        assert_true(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].stop_error, 0);
        assert_prefix(&h->nodes[i], &h->nodes[0]);
    }
    assert_false(h->nodes[0].stopped);
    assert_int_equal(h->nodes[0].view.view.vid, vid);
    assert_int_equal(h->nodes[0].view.view.num_members, 1);
    assert_int_equal(dr_core_leave(h->nodes[0].core, h->now_us), 0);
    h_drain(h, 0);
    h_run(h, 1000, 20);
    assert_true(h->nodes[0].stopped);
    assert_int_equal(h->nodes[0].stop_error, 0);
    done(h);
}

/* Three members stream 10 messages each, then all leave at once: every member stops cleanly
 * (error 0) having delivered every message, and nobody installed the one-member view that
 * ended the group (the leaders' proposal, applied by everyone as a leaver). */
static void assert_all_leave_at_once(harness *h) {
    uint32_t next[3] = {0};
    stream(h, next, 10, 30);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(dr_core_leave(h->nodes[i].core, h->now_us), 0);
    for (uint32_t i = 0; i < 3; i++)
        h_drain(h, i);
    h_run(h, 1000, 20);
    for (uint32_t i = 0; i < 3; i++) {
        assert_true(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].stop_error, 0);
        assert_prefix(&h->nodes[i], &h->nodes[(i + 1) % 3]);
        for (uint32_t sender = 0; sender < 3; sender++)
            assert_all_from(&h->nodes[i], h->nodes[sender].id, 10);
        assert_int_equal(h->nodes[i].view.view.num_members, 3);
    }
}

/* Every member leaves at once: the group ends (nobody is left to be suspected by). */
static void test_every_member_leaves_at_once(void **state) {
    (void)state;
    harness *h = cluster(3, 4);
    assert_all_leave_at_once(h);
    done(h);
}

/* The same with a shard of exactly three (min_nodes 3): the one-member view that ends the
 * group is inadequate, and it must not matter, since nobody installs it. */
static void test_every_member_of_a_fixed_shard_leaves(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 3); /* fixed policy: three members, no fewer */
    harness *h = cluster_with(&options, 3);
    assert_all_leave_at_once(h);
    done(h);
}

static void test_disconnect_suspects_at_once(void **state) {
    (void)state;
    harness *h = cluster(3, 4);
    int32_t vid = h->nodes[0].view.view.vid + 1;
    h_crash(h, 2);
    dr_core_on_disconnect(h->nodes[1].core, h->nodes[2].id, 0, h->now_us);
    h_drain(h, 1);
    h_pump(h, 100000); /* no ticks: heartbeats cannot be what found it */
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(h->nodes[i].view.view.vid, vid);
    done(h);
}

/* dr_core_report_failure: an unknown id and the node's own id are ignored (no view change
 * without ticks); a reported member is suspected at once, as a broken connection is. */
static void test_reported_failure_suspects_at_once(void **state) {
    (void)state;
    harness *h = cluster(3, 4);
    int32_t vid = h->nodes[0].view.view.vid;
    dr_core_report_failure(h->nodes[1].core, 999, h->now_us);
    dr_core_report_failure(h->nodes[1].core, h->nodes[1].id, h->now_us);
    h_drain(h, 1);
    h_pump(h, 100000);
    for (uint32_t i = 0; i < 3; i++) {
        assert_false(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].view.view.vid, vid);
    }
    h_crash(h, 2);
    dr_core_report_failure(h->nodes[1].core, h->nodes[2].id, h->now_us);
    h_drain(h, 1);
    h_pump(h, 100000); /* no ticks: heartbeats cannot be what found it */
    for (uint32_t i = 0; i < 2; i++) {
        assert_int_equal(h->nodes[i].view.view.vid, vid + 1);
        assert_int_equal(h->nodes[i].view.view.num_members, 2);
    }
    done(h);
}

static void test_messages_beyond_the_trim_are_resent(void **state) {
    (void)state;
    harness *h = cluster(4, 4);
    int32_t vid = h->nodes[0].view.view.vid + 1;
    h_crash(h, 3);
    assert_int_equal(send_msg(h, 0, 0), 0); /* on its way to 1 and 2 ... */
    for (uint32_t i = 1; i < 3; i++) {      /* ... which wedge first and drop it */
        dr_core_on_disconnect(h->nodes[i].core, h->nodes[3].id, 0, h->now_us);
        h_drain(h, i);
    }
    h_pump(h, 100000);
    h_run(h, 1000, 5);
    dr_core_stats stats;
    dr_core_get_stats(h->nodes[0].core, &stats);
    assert_int_equal(stats.resent, 1);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(h->nodes[i].view.view.vid, vid);
        assert_int_equal(h->nodes[i].num_deliveries, 1); /* once, in the new view */
        assert_int_equal(h->nodes[i].deliveries[0].version >> 32, vid);
        assert_all_from(&h->nodes[i], h->nodes[0].id, 1);
    }
    done(h);
}

/*
 * Raw mode through a view change: node 0's raw message reaches node 1 (delivered on receipt)
 * but not node 2, which had wedged (it dropped the frame); node 3 crashed. The view change
 * must get it to node 2 (node 0 re-sends it beyond the raw trim) without delivering it twice at
 * node 1 or at node 0 itself. Before the fix, node 2 never delivered it.
 */
static void test_raw_messages_beyond_the_trim_reach_every_survivor_once(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 4);
    dr_shard_policy_flexible(&options.layout.types[0].policy, 1, 1, 8, DR_MODE_RAW);
    options.window_size = 4;
    options.heartbeat_ms = HB_MS;
    options.suspect_after_missed = 3;
    if (getenv("VC_TRACE"))
        options.trace = trace_fn;
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, 4, &options);
    int32_t vid = h->nodes[0].view.view.vid + 1;
    h_crash(h, 3);
    uint8_t payload[8];
    uint32_t m = 0;
    memcpy(payload, &h->nodes[0].id, 4);
    memcpy(payload + 4, &m, 4);
    assert_int_equal(
        dr_core_send(h->nodes[0].core, 0, payload, sizeof payload, DR_MODE_RAW, h->now_us), 0);
    h_drain(h, 0);
    dr_core_on_disconnect(h->nodes[2].core, h->nodes[3].id, 0, h->now_us); /* node 2 wedges */
    h_drain(h, 2);
    h_pump(h, 100000); /* node 1 gets the message before node 2's wedge reaches it */
    assert_int_equal(h->nodes[1].num_deliveries, 1);
    assert_int_equal(h->nodes[2].num_deliveries, 0);
    h_run(h, 2000, 60); /* suspicion of node 3 everywhere, view change */
    dr_core_stats stats;
    dr_core_get_stats(h->nodes[0].core, &stats);
    assert_int_equal(stats.resent, 1);
    for (uint32_t i = 0; i < 3; i++) {
        assert_false(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].view.view.vid, vid);
        assert_int_equal(h->nodes[i].num_deliveries, 1);
        assert_int_equal(h->nodes[i].deliveries[0].version, -1);
        assert_all_from(&h->nodes[i], h->nodes[0].id, 1);
    }
    done(h);
}

static void test_paused_member_is_excluded(void **state) {
    (void)state;
    harness *h = cluster(4, 4);
    /* node 3 hears nothing and says nothing for a while (frames to it are held) */
    dr_core *paused = h->nodes[3].core;
    h->nodes[3].crashed = true;
    h->nodes[3].core = NULL;
    h_run(h, 2000, 40);
    h->nodes[3].crashed = false;
    h->nodes[3].core = paused;
    h_run(h, 2000, 40);
    assert_true(h->nodes[3].stopped);
    /* it learns it was excluded; its own stall is no evidence against the others, so it does
     * not suspect them all on resume (which would stop it by partitioning safety instead) */
    assert_int_equal(h->nodes[3].stop_error, DR_EREMOVED);
    for (uint32_t i = 0; i < 3; i++)
        assert_false(h->nodes[i].stopped);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(h->nodes[i].view.view.num_members, 3);
    done(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_crash),
        cmocka_unit_test(test_leader_crash),
        cmocka_unit_test(test_partition_safety_stops_minority),
        cmocka_unit_test(test_clean_leave),
        cmocka_unit_test(test_members_leave_together_then_the_last_one),
        cmocka_unit_test(test_every_member_leaves_at_once),
        cmocka_unit_test(test_every_member_of_a_fixed_shard_leaves),
        cmocka_unit_test(test_disconnect_suspects_at_once),
        cmocka_unit_test(test_reported_failure_suspects_at_once),
        cmocka_unit_test(test_messages_beyond_the_trim_are_resent),
        cmocka_unit_test(test_raw_messages_beyond_the_trim_reach_every_survivor_once),
        cmocka_unit_test(test_paused_member_is_excluded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
