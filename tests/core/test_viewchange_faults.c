/*
 * Hostile schedules for view changes (issue 11's reproductions as regression scenarios): a
 * connection that breaks while a leave or a failure is being agreed on, losing the frames in
 * flight (a proposal that reaches some members and not others, acks that arrive late), a
 * leader that crashes in the middle of its fan-out, and both at once. Each scenario is swept
 * over every point in the frame schedule where the fault can strike, and every run must keep:
 *
 *  - agreement: no two nodes install different memberships under one view id;
 *  - progress: the nodes that neither crashed nor stopped end in one view of exactly themselves;
 *  - cost: one broken connection excludes at most one of its two ends, and a majority of the
 *    group survives whenever a majority stays connected.
 *
 * The schedules are deterministic (one FIFO queue, harness.c), so a failing (scenario, point)
 * pair replays exactly; VC_TRACE=1 prints the cores' decisions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/wire.h"
#include "harness.h"

#define HB_MS     10u
#define MAX_POINT 60u /* frames pumped after the trigger before the fault strikes */
#define SCHEDULES 8u  /* shuffled schedules per point (beside the FIFO one) */

static void trace_fn(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

static void test_options(dr_core_options *options, uint32_t n) {
    h_options(options, n);
    dr_shard_policy_flexible(&options->layout.types[0].policy, 1, 1, 8, DR_MODE_ORDERED);
    options->window_size = 8;
    options->heartbeat_ms = HB_MS;
    options->suspect_after_missed = 3;
    options->join_retry_us = 20000;
    if (getenv("VC_TRACE"))
        options->trace = trace_fn;
}

static harness *cluster(uint32_t n, uint64_t shuffle) {
    dr_core_options options;
    test_options(&options, n);
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, n, &options);
    for (uint32_t i = 0; i < n; i++)
        assert_true(h->nodes[i].installed);
    h->shuffle = shuffle; /* formation in FIFO order; the faults under a shuffled schedule */
    return h;
}

static void done(harness *h) {
    h_free(h);
    free(h);
}

/** A few ordered messages from every live node, so trims have something to cut. */
static void traffic(harness *h) {
    for (uint32_t i = 0; i < h->num_nodes; i++) {
        if (h->nodes[i].crashed || h->nodes[i].stopped)
            continue;
        uint8_t payload[4] = {(uint8_t)i, 1, 2, 3};
        dr_core_send(h->nodes[i].core, 0, payload, sizeof payload, DR_MODE_ORDERED, h->now_us);
        h_drain(h, i);
    }
}

static bool same_members(const uint32_t *a, const uint32_t *b) {
    return a[0] == b[0] && memcmp(a + 1, b + 1, a[0] * sizeof *a) == 0;
}

/** No vid names two memberships across all nodes' histories. */
static void check_agreement(const harness *h, const char *scenario, uint32_t point) {
    for (uint32_t i = 0; i < h->num_nodes; i++)
        for (uint32_t j = i + 1; j < h->num_nodes; j++)
            for (uint32_t x = 0; x < h->nodes[i].history_len; x++)
                for (uint32_t y = 0; y < h->nodes[j].history_len; y++) {
                    if (h->nodes[i].history_vid[x] != h->nodes[j].history_vid[y])
                        continue;
                    if (!same_members(h->nodes[i].history_members[x],
                                      h->nodes[j].history_members[y]))
                        fail_msg("%s, fault after %u frames: nodes %u and %u installed different "
                                 "views %d",
                                 scenario, point, h->nodes[i].id, h->nodes[j].id,
                                 h->nodes[i].history_vid[x]);
                }
}

/** Nodes alive and not stopped share one final view holding exactly them; returns their count. */
static uint32_t check_progress(const harness *h, const char *scenario, uint32_t point) {
    const h_node *ref = NULL;
    uint32_t alive = 0;
    for (uint32_t i = 0; i < h->num_nodes; i++) {
        const h_node *node = &h->nodes[i];
        if (node->crashed || node->stopped)
            continue;
        alive++;
        if (ref == NULL)
            ref = node;
        if (node->view.view.vid != ref->view.view.vid)
            fail_msg("%s, fault after %u frames: nodes %u and %u stay in views %d and %d", scenario,
                     point, ref->id, node->id, ref->view.view.vid, node->view.view.vid);
    }
    if (ref != NULL && ref->view.view.num_members != alive)
        fail_msg("%s, fault after %u frames: the final view %d has %u members, %u nodes are up",
                 scenario, point, ref->view.view.vid, ref->view.view.num_members, alive);
    return alive;
}

typedef enum trigger { TRIGGER_NONE, TRIGGER_LEAVE } trigger;

typedef enum fault {
    FAULT_BREAK_LEADER_LINK, /* the link leader - rank 1 breaks, both ends notified */
    FAULT_BREAK_SILENT,      /* the same link breaks, nobody notified: silence only */
    FAULT_BREAK_MEMBER_LINK, /* the link rank 1 - rank 2 breaks */
    FAULT_CRASH_LEADER,      /* rank 0 crashes: its queued frames reach only some members */
} fault;

static const char *fault_name(fault f) {
    switch (f) {
    case FAULT_BREAK_LEADER_LINK:
        return "leader link breaks";
    case FAULT_BREAK_SILENT:
        return "leader link goes silent";
    case FAULT_BREAK_MEMBER_LINK:
        return "member link breaks";
    case FAULT_CRASH_LEADER:
        return "leader crashes";
    }
    return "?";
}

/** Drops the queued frames from `from` to every node with an odd index (a torn fan-out). */
static void tear_fan_out(harness *h, uint32_t from) {
    for (uint32_t to = 1; to < h->num_nodes; to += 2)
        h->cut[from][to] = true;
}

/**
 * One run: n nodes; the trigger (a clean leave of the last node, or none); `point` frames
 * pumped; then the fault; then time for the group to settle. Returns the nodes still up.
 */
static uint32_t run_one(uint32_t n, trigger t, fault f, uint32_t point, uint64_t schedule) {
    char scenario[128];
    snprintf(scenario, sizeof scenario, "%u nodes, %s%s, schedule %llu", n,
             t == TRIGGER_LEAVE ? "a leave, then " : "", fault_name(f),
             (unsigned long long)schedule);
    harness *h = cluster(n, schedule);
    traffic(h);
    if (t == TRIGGER_LEAVE) {
        assert_int_equal(dr_core_leave(h->nodes[n - 1].core, h->now_us), 0);
        h_drain(h, n - 1);
    }
    h_pump(h, point);
    switch (f) {
    case FAULT_BREAK_LEADER_LINK:
        h_break_link(h, 0, 1, true, true);
        break;
    case FAULT_BREAK_SILENT:
        h_break_link(h, 0, 1, false, false);
        break;
    case FAULT_BREAK_MEMBER_LINK:
        h_break_link(h, 1, 2, true, true);
        break;
    case FAULT_CRASH_LEADER:
        tear_fan_out(h, 0);
        h_crash(h, 0);
        break;
    }
    traffic(h);
    h_run(h, 1000, 600); /* 0.6 s: 60 heartbeat periods */
    check_agreement(h, scenario, point);
    uint32_t alive = check_progress(h, scenario, point);
    uint32_t lost = f == FAULT_CRASH_LEADER ? 1 : 0;
    if (f != FAULT_CRASH_LEADER) { /* one broken link costs at most one of its two ends */
        uint32_t a = f == FAULT_BREAK_MEMBER_LINK ? 1 : 0, b = a + 1;
        bool a_out = h->nodes[a].stopped, b_out = h->nodes[b].stopped;
        if (a_out && b_out)
            fail_msg("%s, fault after %u frames: both ends of the broken link were excluded",
                     scenario, point);
        lost = 1;
    }
    uint32_t leaver = t == TRIGGER_LEAVE ? 1 : 0;
    if (alive + lost + leaver < n)
        fail_msg("%s, fault after %u frames: only %u of %u nodes are still up", scenario, point,
                 alive, n);
    if (t == TRIGGER_LEAVE && !h->nodes[n - 1].crashed && !h->nodes[n - 1].stopped)
        fail_msg("%s, fault after %u frames: the leaver is still in", scenario, point);
    done(h);
    return alive;
}

/** Shuffled schedules per point: SCHEDULES, or $DR_VC_SCHEDULES (sanitizer builds use fewer). */
static uint64_t schedules(void) {
    const char *env = getenv("DR_VC_SCHEDULES");
    return env != NULL && atoi(env) >= 0 ? (uint64_t)atoi(env) : SCHEDULES;
}

/** Every fault point, each under the FIFO schedule and the shuffled ones. */
static void sweep(uint32_t n, trigger t, fault f) {
    uint64_t shuffled = schedules();
    for (uint32_t point = 0; point <= MAX_POINT; point++)
        for (uint64_t schedule = 0; schedule <= shuffled; schedule++)
            run_one(n, t, f, point, schedule);
}

/* Issue 11, reproduction 1: a leave is being agreed on when the leader's link to rank 1 resets;
 * rank 1 must not propose a fresh view that the others ack beside the leader's. */
static void test_leave_then_leader_link_breaks(void **state) {
    (void)state;
    sweep(4, TRIGGER_LEAVE, FAULT_BREAK_LEADER_LINK);
    sweep(5, TRIGGER_LEAVE, FAULT_BREAK_LEADER_LINK);
}

/* Reproduction 3's shape: acks for two leaders' proposals cross; no member may wedge the rest. */
static void test_leave_then_silent_leader_link(void **state) {
    (void)state;
    sweep(4, TRIGGER_LEAVE, FAULT_BREAK_SILENT);
    sweep(5, TRIGGER_LEAVE, FAULT_BREAK_SILENT);
}

/* Reproduction 4: one broken TCP connection between two members costs one member, not the group. */
static void test_one_broken_connection(void **state) {
    (void)state;
    sweep(4, TRIGGER_NONE, FAULT_BREAK_LEADER_LINK);
    sweep(4, TRIGGER_NONE, FAULT_BREAK_MEMBER_LINK);
    sweep(5, TRIGGER_LEAVE, FAULT_BREAK_MEMBER_LINK);
}

/* A leader that crashes mid-fan-out: its last proposal or commit reached only some members. */
static void test_leader_crash_mid_fan_out(void **state) {
    (void)state;
    sweep(4, TRIGGER_LEAVE, FAULT_CRASH_LEADER);
    sweep(5, TRIGGER_LEAVE, FAULT_CRASH_LEADER);
    sweep(5, TRIGGER_NONE, FAULT_CRASH_LEADER);
}

/** Pumps frames and ticks for `ms` milliseconds of virtual time. */
static void settle(harness *h, uint32_t ms) {
    h_pump(h, (size_t)-1);
    h_run(h, 1000, ms);
}

/*
 * Issue 11, reproduction 1, frame by frame. View {A,B,C,D}; D leaves; A proposes, C and D ack;
 * A's link to B is slow and then resets, so A's proposal never reaches B; A's later frames to C
 * and D are delayed. B takes over and proposes; C and D answer it; A commits on the acks it
 * saw. Before ballots, A installed view 4 = {A,B,C} and B and C view 4 = {B,C}. Now B must
 * learn A's accepted value from C or D and re-propose it: one view 4.
 */
static void test_takeover_after_torn_proposal(void **state) {
    (void)state;
    harness *h = cluster(4, 0);
    const uint32_t A = 0, B = 1, C = 2, D = 3;
    traffic(h);
    settle(h, 5);
    h->hold[A][B] = true; /* A's proposal will not reach B */
    assert_int_equal(dr_core_leave(h->nodes[D].core, h->now_us), 0);
    h_drain(h, D);
    h_pump(h, (size_t)-1);                /* A proposed; C and D acked; A waits for B's ack */
    h->hold[A][C] = h->hold[A][D] = true; /* A's commit (and all else) to C and D is late */
    h_break_link(h, A, B, true, true);
    settle(h, 200); /* B, C and D suspect the silent A; B takes over */
    h->hold[A][C] = h->hold[A][D] = false;
    settle(h, 400);
    check_agreement(h, "torn proposal then takeover", 0);
    check_progress(h, "torn proposal then takeover", 0);
    assert_true(h->nodes[D].stopped);
    done(h);
}

/**
 * The vid of the first view of `node` without `id` after one with it, if a later view has `id`
 * again; else -1.
 */
static int32_t removal_then_rejoin(const h_node *node, uint32_t id) {
    int32_t removed = -1;
    bool was_in = false;
    for (uint32_t v = 0; v < node->history_len; v++) {
        const uint32_t *m = node->history_members[v];
        bool in = false;
        for (uint32_t i = 0; i < m[0]; i++)
            in |= m[1 + i] == id;
        if (!in && was_in && removed < 0)
            removed = node->history_vid[v];
        else if (in && removed >= 0)
            return removed;
        was_in |= in;
    }
    return -1;
}

/*
 * A group of three under traffic whose member 2 crashes and restarts at once with the same id
 * and address (a new incarnation); runs until things settle. Returns the group; *fresh_out is
 * the restarted process's index, *old_incarnation (if not NULL) the crashed one's incarnation.
 */
static harness *restart_member_2(uint32_t *fresh_out, uint64_t *old_incarnation) {
    harness *h = cluster(3, 0);
    traffic(h);
    settle(h, 5);
    if (old_incarnation)
        *old_incarnation = dr_core_incarnation(h->nodes[2].core);
    h_crash(h, 2);
    dr_core_options options;
    test_options(&options, 3);
    *fresh_out = h_restart(h, 2, &options);
    settle(h, 400);
    return h;
}

/*
 * Issue 11, item 8: a member crashes and restarts with the same id and address before anyone
 * noticed. It must not be handed its old row (it has none of the state that row stands for):
 * it is refused for now (DR_EAGAIN, it keeps retrying), its old incarnation is removed, and it
 * then joins as a new member.
 */
static void test_restarted_member_rejoins_as_new(void **state) {
    (void)state;
    uint32_t again = 0;
    harness *h = restart_member_2(&again, NULL);
    const h_node *fresh = &h->nodes[again];
    assert_false(fresh->join_failed);
    assert_true(fresh->installed);
    int32_t removed = removal_then_rejoin(&h->nodes[0], h->nodes[2].id);
    assert_true(removed >= 0);
    assert_int_equal(removal_then_rejoin(&h->nodes[1], h->nodes[2].id), removed);
    /* the new incarnation's first view is one that re-added it, never its old one */
    assert_true(fresh->history_vid[0] > removed);
    check_agreement(h, "restart with the same id", 0);
    check_progress(h, "restart with the same id", 0);
    done(h);
}

/*
 * Simulator seeds 11733482 and 12024734: a member crashes, restarts and rejoins; a member then
 * learns (late) that its connection to the crashed process broke. That notice is about the
 * earlier process, not the member now in the view: acting on it suspected a correct new member
 * at once. The notice carries the incarnation the connection's peer proved; only one about the
 * member's current incarnation (or an unknown one) suspects it.
 */
static void test_late_disconnect_of_an_earlier_incarnation(void **state) {
    (void)state;
    uint32_t again = 0;
    uint64_t old_incarnation = 0;
    harness *h = restart_member_2(&again, &old_incarnation);
    const h_node *fresh = &h->nodes[again];
    assert_true(fresh->installed);
    uint64_t new_incarnation = dr_core_incarnation(fresh->core);
    assert_true(new_incarnation != old_incarnation);
    int32_t vid = h->nodes[1].view.view.vid;
    assert_int_equal(fresh->view.view.vid, vid);
    dr_core_on_disconnect(h->nodes[1].core, fresh->id, old_incarnation, h->now_us);
    h_drain(h, 1);
    settle(h, 100);
    for (uint32_t i = 0; i < 2; i++)
        assert_int_equal(h->nodes[i].view.view.vid, vid); /* nobody was suspected */
    assert_false(fresh->stopped);
    assert_int_equal(fresh->view.view.vid, vid);
    /* a notice about the current process still counts */
    dr_core_on_disconnect(h->nodes[1].core, fresh->id, new_incarnation, h->now_us);
    h_drain(h, 1);
    settle(h, 100);
    assert_true(h->nodes[1].view.view.vid > vid);
    for (uint32_t m = 0; m < h->nodes[1].view.view.num_members; m++)
        assert_true(h->nodes[1].view.view.member_ids[m] != fresh->id);
    done(h);
}

/*
 * Issue 11, item 8, the case that remained (simulator seeds 10168357, 10207419, ...): a node
 * joins, installs the view that adds it, and crashes before the leader heard anything from it
 * in that view; it restarts with the same id and address. Its join request looks like a retry
 * of the admitted joiner whose VIEW was lost, and the previous core sent it that view: the
 * fresh process took the old row with none of its state, and the members rejected its first
 * messages. The incarnation in JOIN_REQUEST and in the view tells them apart: the restart is
 * refused until the old incarnation is removed, then joins as new.
 */
static void test_joiner_restarted_before_the_leader_heard_from_it(void **state) {
    (void)state;
    harness *h = cluster(3, 0);
    traffic(h);
    settle(h, 5);
    dr_core_options options;
    test_options(&options, 3);
    uint32_t joiner = h_add(h, 13, &options, "n0");
    for (uint32_t b = 0; b < H_MAX_NODES; b++) /* after its join request, nobody hears it */
        h->hold[joiner][b] = true;
    h->hold[joiner][0] = false;
    h_pump(h, 1); /* the join request */
    for (uint32_t b = 0; b < H_MAX_NODES; b++)
        h->hold[joiner][b] = true;
    for (uint32_t i = 0; i < 2000 && !h->nodes[joiner].installed; i++)
        h_pump(h, 1);
    assert_true(h->nodes[joiner].installed);
    int32_t admitted = h->nodes[joiner].view.view.vid;
    assert_int_equal(h->nodes[0].view.view.vid, admitted);
    h_crash(h, joiner);
    uint32_t again = h_restart(h, joiner, &options);
    settle(h, 500);
    const h_node *fresh = &h->nodes[again];
    assert_false(fresh->join_failed);
    assert_true(fresh->installed);
    /* the restarted process never took the view that admitted its old incarnation */
    for (uint32_t v = 0; v < fresh->history_len; v++)
        assert_true(fresh->history_vid[v] != admitted);
    int32_t removed = removal_then_rejoin(&h->nodes[0], 13);
    assert_true(removed > admitted);
    assert_int_equal(removal_then_rejoin(&h->nodes[1], 13), removed);
    assert_true(fresh->history_vid[0] > removed);
    check_agreement(h, "joiner restarted before it was heard", 0);
    check_progress(h, "joiner restarted before it was heard", 0);
    done(h);
}

/*
 * Issue 11, item 8: the leader commits the view that adds a joiner and dies before sending it
 * that view. The joiner retries at the other members the leader named when it accepted it;
 * one of them sends it the view (or, if it was already removed, it joins again).
 */
static void test_joiner_gets_its_view_from_another_member(void **state) {
    (void)state;
    harness *h = cluster(3, 0);
    settle(h, 5);
    dr_core_options options;
    test_options(&options, 3);
    uint32_t joiner = h_add(h, 13, &options, "n0");
    for (uint32_t a = 0; a < H_MAX_NODES; a++) /* only the leader's answer goes first */
        for (uint32_t b = 0; b < H_MAX_NODES; b++)
            h->hold[a][b] = true;
    h->hold[joiner][0] = false;
    h_pump(h, 1); /* the join request */
    h->hold[joiner][0] = true;
    h->hold[0][joiner] = false;
    h_pump(h, 1); /* JOIN_ACCEPTED, naming n1 and n2 */
    memset(h->hold, 0, sizeof h->hold);
    h->hold[0][joiner] = true; /* the VIEW that adds the joiner will not arrive */
    int32_t before = h->nodes[0].view.view.vid;
    for (uint32_t i = 0; i < 1000 && h->nodes[0].view.view.vid == before; i++)
        h_pump(h, 1);
    assert_int_equal(h->nodes[0].view.view.num_members, 4); /* committed and installed */
    h_crash(h, 0);
    settle(h, 500);
    assert_true(h->nodes[joiner].installed);
    check_agreement(h, "joiner's leader dies", 0);
    assert_int_equal(check_progress(h, "joiner's leader dies", 0), 3);
    done(h);
}

/*
 * The leader that queued a joiner is cut off from it once the view that adds it is committed,
 * and the joiner cannot reach anyone (its retries are held). Simulator seed 1228928: a
 * takeover leader committed such a view without telling the joiner; the rest suspected the
 * silent joiner and, with it counted as lost, had no majority left. Every member that
 * installs the view now sends it to the members that joined in it.
 */
static void test_members_tell_the_joiner_its_view(void **state) {
    (void)state;
    harness *h = cluster(3, 0);
    settle(h, 5);
    dr_core_options options;
    test_options(&options, 3);
    uint32_t joiner = h_add(h, 13, &options, "n0");
    for (uint32_t a = 0; a < H_MAX_NODES; a++)
        for (uint32_t b = 0; b < H_MAX_NODES; b++)
            h->hold[a][b] = a == joiner || b == joiner;
    h->hold[joiner][0] = false;
    h_pump(h, 1); /* the join request reaches the leader; nothing else leaves the joiner */
    h->hold[joiner][0] = true;
    h->hold[1][joiner] = false; /* only the members other than the leader can reach it */
    h->hold[2][joiner] = false;
    int32_t before = h->nodes[0].view.view.vid;
    for (uint32_t i = 0;
         i < 1000 && (h->nodes[0].view.view.vid == before || h->nodes[1].view.view.vid == before ||
                      h->nodes[2].view.view.vid == before);
         i++)
        h_pump(h, 1);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(h->nodes[i].view.view.num_members, 4); /* committed everywhere */
    h_crash(h, 0);
    for (uint32_t i = 0; i < 50 && !h->nodes[joiner].installed; i++)
        h_pump(h, 1); /* the joiner still cannot send: the view must come to it */
    assert_true(h->nodes[joiner].installed);
    memset(h->hold, 0, sizeof h->hold);
    settle(h, 500);
    check_agreement(h, "members tell the joiner", 0);
    assert_int_equal(check_progress(h, "members tell the joiner", 0), 3);
    done(h);
}

/*
 * An unauthenticated stranger sends the leader a JOIN_REQUEST with a live member's id and
 * address (both public). It must not evict that member: no suspicion on the request's word.
 */
static void test_forged_rejoin_evicts_nobody(void **state) {
    (void)state;
    harness *h = cluster(3, 0);
    settle(h, 5);
    int32_t vid = h->nodes[0].view.view.vid;
    dr_buf forged;
    dr_buf_init(&forged, 0);
    assert_int_equal(
        dr_wire_encode_join_request(&forged, h->nodes[2].id, h->nodes[2].address, 12345), 0);
    dr_core_on_message(h->nodes[0].core, DR_NODE_NONE, forged.data, forged.len, h->now_us);
    dr_core_on_message(h->nodes[1].core, DR_NODE_NONE, forged.data, forged.len, h->now_us);
    dr_buf_free(&forged);
    h_drain(h, 0);
    h_drain(h, 1);
    settle(h, 200);
    for (uint32_t i = 0; i < 3; i++) {
        assert_false(h->nodes[i].stopped);
        assert_int_equal(h->nodes[i].view.view.vid, vid);
    }
    done(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takeover_after_torn_proposal),
        cmocka_unit_test(test_restarted_member_rejoins_as_new),
        cmocka_unit_test(test_joiner_restarted_before_the_leader_heard_from_it),
        cmocka_unit_test(test_late_disconnect_of_an_earlier_incarnation),
        cmocka_unit_test(test_forged_rejoin_evicts_nobody),
        cmocka_unit_test(test_joiner_gets_its_view_from_another_member),
        cmocka_unit_test(test_members_tell_the_joiner_its_view),
        cmocka_unit_test(test_leave_then_leader_link_breaks),
        cmocka_unit_test(test_leave_then_silent_leader_link),
        cmocka_unit_test(test_one_broken_connection),
        cmocka_unit_test(test_leader_crash_mid_fan_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
