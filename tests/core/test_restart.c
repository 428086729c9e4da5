/*
 * Total restart in the core (src/core/restart.c, docs/persistence.md "Total restart"): nodes
 * that come back with a saved view and log tails agree, through the restart leader, on one
 * restart view (vid = last + 1) and on per-shard trims; each truncates its log to the trim
 * before the view is installed. A minority waits; an older saved view is brought along; a
 * silent leader is replaced by the next one after restart_timeout_ms.
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
#include "derecho/buffer.h"
#include "harness.h"

#define HB_MS      10u
#define TIMEOUT_MS 100u

/* Shards of the one subgroup: 1 (of up to 8 nodes), or 2 of up to 3 nodes for the tests that
 * set it (and reset it in teardown): five nodes joining one by one then fill them 3 and 2.
 * Every node of a test, restarted ones included, must use the same layout policy. */
static uint32_t num_shards = 1;

static dr_core_options base_options(uint32_t n) {
    dr_core_options options;
    h_options(&options, n);
    dr_shard_policy_flexible(&options.layout.types[0].policy, num_shards, 1,
                             num_shards == 1 ? 8 : 3, DR_MODE_ORDERED);
    options.window_size = 8;
    options.heartbeat_ms = HB_MS;
    options.suspect_after_missed = 3;
    options.join_retry_us = 20000;
    return options;
}

static harness *cluster(uint32_t n) {
    dr_core_options options = base_options(n);
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, n, &options);
    for (uint32_t i = 0; i < n; i++)
        assert_true(h->nodes[i].installed);
    return h;
}

static void send_some(harness *h, uint32_t i, uint32_t count) {
    for (uint32_t m = 0; m < count; m++) {
        uint8_t payload[4] = {9, 8, 7, (uint8_t)m};
        int rc =
            dr_core_send(h->nodes[i].core, 0, payload, sizeof payload, DR_MODE_ORDERED, h->now_us);
        assert_int_equal(rc, 0);
        h_drain(h, i);
        h_pump(h, (size_t)-1);
    }
}

/** What node i would have saved: its last installed view, as the runtime writes last_view. */
typedef struct saved {
    uint8_t *frame;
    size_t len;
} saved;

static saved save_view(const harness *h, uint32_t i) {
    dr_buf buf;
    dr_buf_init(&buf, 0);
    const dr_view_info *info = &h->nodes[i].view;
    assert_int_equal(dr_wire_encode_view_with_layout(&buf, h->nodes[i].id, &info->view,
                                                     &info->layout, &info->layout),
                     0);
    saved out;
    out.frame = dr_buf_steal(&buf, &out.len);
    assert_non_null(out.frame);
    return out;
}

/** Every node of a 3-node cluster saves its view into s[] and crashes (a total crash). */
static void save_and_crash_all(harness *h, saved s[3]) {
    for (uint32_t i = 0; i < 3; i++) {
        s[i] = save_view(h, i);
        h_crash(h, i);
    }
}

/** Frees the saved views of save_and_crash_all and the harness. */
static void free_all(harness *h, saved s[3]) {
    for (uint32_t i = 0; i < 3; i++)
        free(s[i].frame);
    h_free(h);
    free(h);
}

/**
 * Restarts crashed node i from `s` (`stateless`: marked so, as after a DISCARD_DURABLE; `vote`:
 * the restart vote it saved, NULL if none).
 */
static uint32_t restart_node_full(harness *h, uint32_t i, const saved *s, int64_t tail,
                                  bool stateless, const saved *vote) {
    dr_core_options options = base_options(1);
    options.restart.stateless = stateless;
    options.restart.vote = vote ? vote->frame : NULL;
    options.restart.vote_len = vote ? vote->len : 0;
    options.restart.saved_view = s->frame;
    options.restart.saved_view_len = s->len;
    options.restart.tails[0] = tail;
    options.restart.num_leaders = 2;
    snprintf(options.restart.leaders[0], DR_ADDRESS_MAX, "n0");
    snprintf(options.restart.leaders[1], DR_ADDRESS_MAX, "n1");
    options.restart.timeout_ms = TIMEOUT_MS;
    uint32_t index = h_restart(h, i, &options);
    h->nodes[index].truncated[0] = -2; /* "no TRUNCATE yet" */
    return index;
}

/** The restart vote node i saved last (borrowed from the harness; empty if none). */
static saved vote_of(const harness *h, uint32_t i) {
    return (saved){.frame = h->nodes[i].vote, .len = h->nodes[i].vote_len};
}

/** Restarts crashed node i from `s` with `tail` for subgroup 0; returns its new index. */
static uint32_t restart_node(harness *h, uint32_t i, const saved *s, int64_t tail) {
    return restart_node_full(h, i, s, tail, false, NULL);
}

static int64_t nth_version(const harness *h, uint32_t node, uint32_t n) {
    assert_true(n < h->nodes[node].num_deliveries);
    return h->nodes[node].deliveries[n].version;
}

static void assert_restart_view(const harness *h, const uint32_t *nodes, uint32_t count,
                                int32_t vid, int64_t trim) {
    for (uint32_t k = 0; k < count; k++) {
        const h_node *node = &h->nodes[nodes[k]];
        assert_true(node->installed);
        assert_int_equal(node->views_installed, 1);
        assert_int_equal(node->view.view.vid, vid);
        assert_int_equal(node->view.view.num_members, count);
        assert_int_equal(node->truncations, 1);
        assert_int_equal(node->truncated[0], trim);
        assert_int_equal(dr_core_view_id(node->core), vid);
    }
}

/** The restarted group works: a message sent in the restart view reaches everyone. */
static void assert_group_works(harness *h, const uint32_t *nodes, uint32_t count, int32_t vid) {
    uint32_t before[H_MAX_NODES];
    for (uint32_t k = 0; k < count; k++)
        before[k] = h->nodes[nodes[k]].num_deliveries;
    send_some(h, nodes[0], 1);
    for (uint32_t k = 0; k < count; k++) {
        assert_int_equal(h->nodes[nodes[k]].num_deliveries, before[k] + 1);
        assert_int_equal(nth_version(h, nodes[k], before[k]) >> 32, vid);
    }
}

static void test_logs_of_different_length_truncate_to_one_trim(void **state) {
    (void)state;
    harness *h = cluster(3);
    send_some(h, 0, 5);
    int64_t v[5];
    for (uint32_t m = 0; m < 5; m++)
        v[m] = nth_version(h, 0, m);
    int32_t last = h->nodes[0].view.view.vid;
    saved s[3];
    save_and_crash_all(h, s);
    /* the logs reached different lengths before the crash: 4, 2 and 3 versions durable */
    uint32_t r[3];
    r[1] = restart_node(h, 1, &s[1], v[1]);
    r[2] = restart_node(h, 2, &s[2], v[2]);
    r[0] = restart_node(h, 0, &s[0], v[3]);
    h_run(h, 1000, 20);
    /* the smallest tail: every member of the last view had persisted at least the frontier */
    assert_restart_view(h, r, 3, last + 1, v[1]);
    for (uint32_t k = 0; k < 3; k++)
        assert_int_equal(h->nodes[r[k]].view.view.member_ids[k], 10 + k); /* ranks kept */
    assert_group_works(h, r, 3, last + 1);
    assert_int_equal(h->rejected, 0);
    free_all(h, s);
}

/*
 * A driver that reports its old log as persisted while the node is restarting (before any
 * delivery of this incarnation) must not lift the persistence frontier above the restart's
 * trim: the records above it are cut. Before the fix the core kept the report and published it
 * in the restart view's table (derecho-sim --total-restart: a frontier above the next restart's
 * trim).
 */
static void test_persisted_report_while_restarting_is_not_published(void **state) {
    (void)state;
    harness *h = cluster(3);
    send_some(h, 0, 5);
    int64_t v[5];
    for (uint32_t m = 0; m < 5; m++)
        v[m] = nth_version(h, 0, m);
    int32_t last = h->nodes[0].view.view.vid;
    saved s[3];
    save_and_crash_all(h, s);
    uint32_t r[3];
    r[0] = restart_node(h, 0, &s[0], v[3]);
    r[1] = restart_node(h, 1, &s[1], v[1]);
    r[2] = restart_node(h, 2, &s[2], v[2]);
    for (uint32_t k = 0; k < 3; k++)
        dr_core_persisted(h->nodes[r[k]].core, 0, v[4], h->now_us); /* its whole old log */
    h_run(h, 1000, 20);
    assert_restart_view(h, r, 3, last + 1, v[1]);
    for (uint32_t k = 0; k < 3; k++)
        assert_true(dr_core_persisted_frontier(h->nodes[r[k]].core, 0) <= v[1]);
    free_all(h, s);
}

/** A group of three that delivered a little, saved its view and crashed whole. */
typedef struct crashed_group {
    saved s[3];   /**< what each node saved */
    int64_t v1;   /**< a version every node persisted */
    int32_t last; /**< the view they were in */
} crashed_group;

static harness *crash_group_of_three(crashed_group *g) {
    harness *h = cluster(3);
    send_some(h, 1, 2);
    g->v1 = nth_version(h, 0, 1);
    g->last = h->nodes[0].view.view.vid;
    save_and_crash_all(h, g->s);
    return h;
}

static void test_minority_waits_then_majority_restarts(void **state) {
    (void)state;
    crashed_group g;
    harness *h = crash_group_of_three(&g);
    uint32_t a = restart_node(h, 0, &g.s[0], g.v1);
    /* alone for many timeouts (rounds move on between n0 and n1): no view */
    h_run(h, 10000, 100);
    assert_false(h->nodes[a].installed);
    assert_int_equal(h->nodes[a].truncations, 0);
    assert_int_equal(dr_core_view_id(h->nodes[a].core), -1);
    /* a second member of the last view makes a majority */
    uint32_t b = restart_node(h, 1, &g.s[1], g.v1);
    h_run(h, 10000, 30);
    uint32_t r[2] = {a, b};
    assert_restart_view(h, r, 2, g.last + 1, g.v1);
    assert_group_works(h, r, 2, g.last + 1);
    free_all(h, g.s);
}

/**
 * Three nodes crash, n0 with the shortest log (tail v0, the others v2), and restart; n0, the
 * first leader, hears both reports and proposes (trim v0). Its PREPARE to n2 is held back.
 */
typedef struct proposed_restart {
    saved s[3];
    int64_t v0, v2;
    int32_t last;     /* the view they crashed in */
    uint32_t a, b, c; /* n0, n1, n2 restarted */
} proposed_restart;

static harness *restart_with_a_proposal(proposed_restart *p) {
    harness *h = cluster(3);
    send_some(h, 0, 3);
    p->v0 = nth_version(h, 0, 0);
    p->v2 = nth_version(h, 0, 2);
    p->last = h->nodes[0].view.view.vid;
    save_and_crash_all(h, p->s);
    p->a = restart_node(h, 0, &p->s[0], p->v0);
    p->b = restart_node(h, 1, &p->s[1], p->v2);
    p->c = restart_node(h, 2, &p->s[2], p->v2);
    assert_int_equal(h_pump(h, 2), 2); /* the reports of n1 and n2 reach n0: it proposes */
    h->hold[p->a][p->c] = true;        /* n0's PREPARE to n2 waits */
    return h;
}

/*
 * Restart votes are durable (Paxos acceptors keep what they accepted across a crash): n0 leads
 * the restart, n1 accepts its proposal (trim v0, the smallest tail), n0 commits and installs
 * it, then the power fails again before the commit reaches n1 or n2. n1 and n2 restart (a
 * majority): n1's saved vote carries the accepted proposal, which is adopted, so they install
 * the same view n0 installed, with the same trim. Without the vote they would choose another
 * view with that id (trim v2): two histories (derecho-sim --total-restart --partial-restarts
 * seed 4061175).
 */
static void test_accepted_restart_view_survives_a_second_power_cut(void **state) {
    (void)state;
    proposed_restart p;
    harness *h = restart_with_a_proposal(&p);
    saved *s = p.s;
    int64_t v0 = p.v0, v2 = p.v2;
    int32_t last = p.last;
    uint32_t a = p.a, b = p.b, c = p.c;
    assert_int_equal(h_pump(h, 1), 1); /* n0's PREPARE reaches n1, which accepts */
    assert_true(h->nodes[b].votes_saved > 0);
    h->hold[a][b] = true; /* the commit will not reach n1 */
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[a].installed); /* n0 committed (itself + n1) and installed */
    assert_false(h->nodes[b].installed);
    saved vote = vote_of(h, b);
    h_crash(h, a);
    h_crash(h, b);
    h_crash(h, c);
    h->hold[a][b] = h->hold[a][c] = false;
    uint32_t b2 = restart_node_full(h, 1, &s[1], v2, false, &vote);
    uint32_t c2 = restart_node(h, 2, &s[2], v2);
    h_run(h, 10000, 60);
    uint32_t r[2] = {b2, c2};
    for (uint32_t k = 0; k < 2; k++) {
        const h_node *node = &h->nodes[r[k]];
        assert_true(node->history_len >= 1);
        assert_int_equal(node->history_vid[0], last + 1);
        assert_int_equal(node->history_members[0][0], 3); /* n0's view: all three */
        assert_int_equal(node->truncated[0], v0);         /* and n0's trim */
    }
    free_all(h, s);
}

/*
 * A stateless report (a node that gave up an earlier restart to join and was cut off before its
 * first view: its saved view names a membership it has no state for) counts for nothing: with
 * n0 it would be a majority of the saved view, and as the only other member of the shard it
 * would let a trim ignore what n1 holds (derecho-sim --total-restart seed 1011712 lost a
 * globally persisted version that way). The restart waits for n1; n2 then joins as new.
 */
static void test_stateless_report_counts_for_nothing(void **state) {
    (void)state;
    crashed_group g;
    harness *h = crash_group_of_three(&g);
    uint32_t a = restart_node(h, 0, &g.s[0], g.v1);
    uint32_t c = restart_node_full(h, 2, &g.s[2], -1, true, NULL);
    h_run(h, 10000, 60);
    assert_false(h->nodes[a].installed); /* one counting report of three: no majority */
    assert_false(h->nodes[c].installed);
    uint32_t b = restart_node(h, 1, &g.s[1], g.v1);
    h_run(h, 10000, 60);
    for (uint32_t k = 0; k < 2; k++) { /* the restart view: n0 and n1 only, their trim */
        const h_node *node = &h->nodes[k == 0 ? a : b];
        assert_int_equal(node->history_vid[0], g.last + 1);
        assert_int_equal(node->history_members[0][0], 2);
        assert_int_equal(node->truncated[0], g.v1);
    }
    const h_node *late = &h->nodes[c];
    assert_true(late->installed); /* it joined afterwards */
    assert_true(late->view.view.vid > g.last + 1);
    assert_int_equal(late->truncations, 0);
    assert_int_equal(late->discards, 1);
    uint32_t all[3] = {a, b, c};
    assert_group_works(h, all, 3, late->view.view.vid);
    free_all(h, g.s);
}

/*
 * A late node: n0 and n1 restart the group without n2 (a majority of the saved view); n2
 * restarts afterwards with its saved view and reports to the restart leader, which is in the
 * restart view by then. It used to wait for a restart view for ever; it is told to join
 * (JOIN_REDIRECT) and becomes a member of a later view like any joiner. Its durable state (saved
 * view, logs) is discarded first: the restart cut the others' logs at a trim it never applied,
 * its records beyond that trim must not survive, and neither its tail nor its saved view may
 * mislead a later restart; the group gives it the state.
 */
static void test_late_node_joins_the_restarted_group(void **state) {
    (void)state;
    crashed_group g;
    harness *h = crash_group_of_three(&g);
    uint32_t a = restart_node(h, 0, &g.s[0], g.v1);
    uint32_t b = restart_node(h, 1, &g.s[1], g.v1);
    h_run(h, 10000, 30);
    uint32_t r[2] = {a, b};
    assert_restart_view(h, r, 2, g.last + 1, g.v1);
    uint32_t c = restart_node(h, 2, &g.s[2], g.v1);
    h_run(h, 10000, 30);
    const h_node *late = &h->nodes[c];
    assert_false(late->join_failed);
    assert_true(late->installed);
    assert_int_equal(late->truncations, 0); /* no restart trim applies to it... */
    assert_int_equal(late->discards, 1);    /* ...its saved view and logs are discarded */
    assert_true(late->view.view.vid > g.last + 1);
    assert_int_equal(late->view.view.num_members, 3);
    assert_int_equal(h->nodes[a].view.view.vid, late->view.view.vid);
    uint32_t all[3] = {a, b, c};
    assert_group_works(h, all, 3, late->view.view.vid);
    assert_int_equal(h->rejected, 0);
    free_all(h, g.s);
}

/*
 * A node whose saved view is older than the latest one reported (it was removed, or missed an
 * earlier restart) is not in the restart view: L's history may lack records its log holds (an
 * earlier restart's trim it never applied; derecho-sim --total-restart --partial-restarts
 * found such a node keeping discarded versions), and there is no log shipping. It joins the
 * restarted group as a new member instead, its durable state discarded.
 */
static void test_node_with_older_saved_view_joins_as_new(void **state) {
    (void)state;
    harness *h = cluster(3);
    send_some(h, 0, 2);
    int32_t first = h->nodes[0].view.view.vid;
    saved old = save_view(h, 2); /* node 12 saved `first`, then crashed */
    h_crash(h, 2);
    h_run(h, HB_MS * 1000, 20); /* the others remove it: view first + 1 = {10, 11} */
    assert_int_equal(h->nodes[0].view.view.vid, first + 1);
    assert_int_equal(h->nodes[0].view.view.num_members, 2);
    send_some(h, 0, 3);
    int64_t last = h->nodes[0].deliveries[h->nodes[0].num_deliveries - 1].version;
    saved s0 = save_view(h, 0), s1 = save_view(h, 1);
    h_crash(h, 0);
    h_crash(h, 1);
    uint32_t a = restart_node(h, 0, &s0, last);
    uint32_t c = restart_node(h, 2, &old, nth_version(h, 2, 1));
    uint32_t b = restart_node(h, 1, &s1, last);
    h_run(h, 1000, 20);
    /* the most recent saved view wins: the restart view holds its members only; the old member
     * joins the view after it, without its log */
    uint32_t r[3] = {a, b, c};
    assert_int_equal(h->nodes[c].view.view.vid, first + 3);
    assert_int_equal(h->nodes[c].view.view.num_members, 3);
    assert_int_equal(h->nodes[c].truncations, 0);
    assert_int_equal(h->nodes[c].discards, 1);
    assert_int_equal(h->nodes[a].view.view.vid, first + 3);
    assert_int_equal(h->nodes[a].view.view.member_ids[2], 12);
    assert_int_equal(h->nodes[a].truncated[0], last); /* the restart view's trim */
    assert_group_works(h, r, 3, first + 3);
    free(old.frame);
    free(s0.frame);
    free(s1.frame);
    h_free(h);
    free(h);
}

static void test_backup_leader_takes_over(void **state) {
    (void)state;
    harness *h = cluster(3);
    send_some(h, 2, 3);
    int64_t v0 = nth_version(h, 0, 0), v2 = nth_version(h, 0, 2);
    int32_t last = h->nodes[0].view.view.vid;
    saved s[3];
    save_and_crash_all(h, s);
    /* the first restart leader (n0) never comes back */
    uint32_t b = restart_node(h, 1, &s[1], v2);
    uint32_t c = restart_node(h, 2, &s[2], v0);
    h_run(h, 10000, TIMEOUT_MS / 10 - 2);
    assert_false(h->nodes[b].installed); /* still waiting for n0 */
    h_run(h, 10000, 20);                 /* past restart_timeout_ms: n1 leads */
    uint32_t r[2] = {b, c};
    assert_restart_view(h, r, 2, last + 1, v0);
    assert_group_works(h, r, 2, last + 1);
    assert_int_equal(h->rejected, 0);
    free_all(h, s);
}

/** Leader n0 dies after only n1 accepted its proposal: the backup must adopt it (Paxos). */
static void test_backup_adopts_an_accepted_proposal(void **state) {
    (void)state;
    proposed_restart p;
    harness *h = restart_with_a_proposal(&p);
    saved *s = p.s;
    int64_t v0 = p.v0;
    int32_t last = p.last;
    uint32_t a = p.a, b = p.b, c = p.c;
    h->hold[b][a] = true; /* n1's ACK to n0 waits */
    h_pump(h, (size_t)-1);
    assert_false(h->nodes[b].installed);
    h_crash(h, a); /* n0 dies having proposed {10, 11, 12}, trim v0; n1 accepted it */
    h->hold[a][c] = h->hold[b][a] = false;
    h_run(h, 10000, 40);
    /* n1 leads round 1 with n2; its own computation would be {11, 12} with trim v2, but the
     * proposal n1 accepted may have been chosen: it is adopted, dead member included */
    uint32_t r[2] = {b, c};
    for (uint32_t k = 0; k < 2; k++) {
        const h_node *node = &h->nodes[r[k]];
        assert_true(node->history_len >= 1);
        assert_int_equal(node->history_vid[0], last + 1);
        assert_int_equal(node->history_members[0][0], 3);
        assert_int_equal(node->truncations, 1);
        assert_int_equal(node->truncated[0], v0);
    }
    /* the dead member is then removed by an ordinary view change */
    assert_int_equal(h->nodes[b].view.view.vid, last + 2);
    assert_int_equal(h->nodes[b].view.view.num_members, 2);
    assert_group_works(h, r, 2, last + 2);
    free_all(h, s);
}

/**
 * Lets restart leader `a` propose (at once, or at its tick past half a timeout when a member
 * of the saved view is missing) and member `b` accept; the commit to b is then held back, so
 * only a installs. Returns when a has installed.
 */
static void commit_at_leader_only(harness *h, uint32_t a, uint32_t b) {
    uint32_t votes = h->nodes[b].votes_saved;
    bool ticked = false;
    while (h->nodes[b].votes_saved == votes) { /* up to b's acceptance of the PREPARE */
        if (h_pump(h, 1) == 1)
            continue;
        assert_false(ticked); /* all reports are in: the tick must make a propose */
        h->now_us += TIMEOUT_MS * 1000 / 2 + 1000;
        dr_core_on_tick(h->nodes[a].core, h->now_us);
        h_drain(h, a);
        ticked = true;
    }
    h->hold[a][b] = true; /* its ACK reaches a, a's COMMIT waits */
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[a].installed);
    assert_false(h->nodes[b].installed);
}

/*
 * Restart views chained across power cuts, the others behind (derecho-sim --total-restart seed
 * 8013016 found the adoption form of it). Saved view L = {10, 11, 12}; 12 stays down.
 * 1. 10 and 11 restart: 10 commits P = {10, 11} (view L+1) and installs it; 11 only accepted.
 * 2. Power cut; 10 (saved P) and 11 (saved L, vote P) restart: a majority of P, so 10 commits
 *    P+1 = {10, 11} (view L+2); 11 only accepted again. Power cut.
 * 3. 11 (saved L, vote P+1) and 12 (saved L) restart without 10: a majority of L. A proposal
 *    of their own would be another view L+1 = {11, 12}, beside the P that 10 installed: 11's
 *    vote names a view built on a newer view than L, so they must wait for its members.
 * 4. 10 returns: the group restarts from P+1 (view L+3 = {10, 11}); 12 joins it as new.
 */
static void test_restart_waits_for_a_newer_view_it_hears_of(void **state) {
    (void)state;
    crashed_group g;
    harness *h = crash_group_of_three(&g);
    int32_t L = g.last;
    uint32_t a = restart_node(h, 0, &g.s[0], g.v1);
    uint32_t b = restart_node(h, 1, &g.s[1], g.v1);
    commit_at_leader_only(h, a, b);
    assert_int_equal(h->nodes[a].view.view.vid, L + 1);
    saved p = save_view(h, a);
    saved vote_p = vote_of(h, b);
    h_crash(h, a);
    h_crash(h, b);
    uint32_t a2 = restart_node(h, a, &p, g.v1);
    uint32_t b2 = restart_node_full(h, b, &g.s[1], g.v1, false, &vote_p);
    commit_at_leader_only(h, a2, b2);
    assert_int_equal(h->nodes[a2].view.view.vid, L + 2);
    saved p1 = save_view(h, a2);
    saved vote_p1 = vote_of(h, b2);
    h_crash(h, a2);
    h_crash(h, b2);
    uint32_t b3 = restart_node_full(h, b2, &g.s[1], g.v1, false, &vote_p1);
    uint32_t c3 = restart_node(h, 2, &g.s[2], g.v1);
    h_run(h, 10000, 100); /* ten restart timeouts */
    assert_false(h->nodes[b3].installed);
    assert_false(h->nodes[c3].installed);
    assert_int_equal(h->nodes[b3].truncations, 0);
    assert_int_equal(h->nodes[c3].truncations, 0);
    uint32_t a3 = restart_node(h, a2, &p1, g.v1);
    h_run(h, 10000, 100);
    for (uint32_t k = 0; k < 2; k++) { /* the restart view: built on P+1 */
        const h_node *node = &h->nodes[k == 0 ? a3 : b3];
        assert_true(node->history_len >= 1);
        assert_int_equal(node->history_vid[0], L + 3);
        assert_int_equal(node->history_members[0][0], 2);
    }
    const h_node *late = &h->nodes[c3];
    assert_true(late->installed); /* joined as new, its saved state discarded */
    assert_true(late->history_vid[0] > L + 3);
    assert_int_equal(late->discards, 1);
    uint32_t all[3] = {a3, b3, c3};
    assert_group_works(h, all, 3, late->view.view.vid);
    free(p.frame);
    free(p1.frame);
    free_all(h, g.s);
}

/*
 * A stateless node named by an adopted proposal: 10 leads a restart of L = {10, 11, 12} and
 * proposes P = {10, 11, 12}; only 12 accepts before the power fails again. 12 then gives up
 * its state (as after an abandoned restart: stateless, its vote kept). 10 and 11 restart
 * with it: they adopt P (12's vote and 10's own), and 12 is in P. With empty logs it must not
 * install P: it joins the group instead, once failure detection removed the member it never
 * became.
 */
static void test_stateless_node_named_by_a_proposal_joins(void **state) {
    (void)state;
    crashed_group g;
    harness *h = crash_group_of_three(&g);
    int32_t L = g.last;
    uint32_t a = restart_node(h, 0, &g.s[0], g.v1);
    uint32_t b = restart_node(h, 1, &g.s[1], g.v1);
    uint32_t c = restart_node(h, 2, &g.s[2], g.v1);
    h->hold[a][b] = true; /* 11 never sees the PREPARE */
    while (h->nodes[c].votes_saved == 0)
        assert_int_equal(h_pump(h, 1), 1);
    saved vote_a = vote_of(h, a);
    saved vote_c = vote_of(h, c);
    assert_non_null(vote_a.frame);
    h_crash(h, a);
    h_crash(h, b);
    h_crash(h, c);
    h->hold[a][b] = false;
    uint32_t a2 = restart_node_full(h, a, &g.s[0], g.v1, false, &vote_a);
    uint32_t b2 = restart_node(h, b, &g.s[1], g.v1);
    uint32_t c2 = restart_node_full(h, c, &g.s[2], -1, true, &vote_c);
    h_run(h, 10000, 100);
    for (uint32_t k = 0; k < 2; k++) { /* P, adopted: all three named */
        const h_node *node = &h->nodes[k == 0 ? a2 : b2];
        assert_true(node->history_len >= 1);
        assert_int_equal(node->history_vid[0], L + 1);
        assert_int_equal(node->history_members[0][0], 3);
    }
    const h_node *late = &h->nodes[c2];
    assert_int_equal(late->truncations, 0);
    assert_true(late->installed);
    assert_true(late->history_vid[0] > L + 1); /* never P: a view it joined */
    uint32_t all[3] = {a2, b2, c2};
    assert_group_works(h, all, 3, late->view.view.vid);
    free_all(h, g.s);
}

/** dr_core_create for crashed node i restarting from `s` with `vote` (bytes, len): its code. */
static int create_with_vote(harness *h, uint32_t i, const saved *s, const uint8_t *vote,
                            size_t len) {
    dr_core_options options = base_options(1);
    options.my_id = h->nodes[i].id;
    snprintf(options.my_address, sizeof options.my_address, "%s", h->nodes[i].address);
    snprintf(options.contact_address, sizeof options.contact_address, "n0");
    options.restart.saved_view = s->frame;
    options.restart.saved_view_len = s->len;
    options.restart.tails[0] = -1;
    options.restart.vote = vote;
    options.restart.vote_len = len;
    dr_core *core = NULL;
    int rc = dr_core_create(&options, h->now_us, &core, NULL);
    assert_true((rc == 0) == (core != NULL));
    dr_core_destroy(core);
    return rc;
}

/*
 * A saved vote that cannot be read is an error at start (DR_ECORRUPT; DR_ETOOBIG over the cap):
 * forgetting it silently would let this node accept a second restart view with the same id. A
 * well-formed vote for another saved view is obsolete and ignored.
 */
static void test_unreadable_vote_is_refused(void **state) {
    (void)state;
    proposed_restart p;
    harness *h = restart_with_a_proposal(&p);
    assert_int_equal(h_pump(h, 1), 1); /* n0's PREPARE reaches n1, which accepts and saves */
    const h_node *b = &h->nodes[p.b];
    assert_non_null(b->vote);
    size_t len = b->vote_len;
    uint8_t *copy = malloc(len + 1);
    assert_non_null(copy);
    h_crash(h, p.b);
    memcpy(copy, b->vote, len);
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, len), 0); /* the genuine vote */
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, len - 1), DR_ECORRUPT);
    copy[len] = 0;
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, len + 1), DR_ECORRUPT);
    copy[0] ^= 0xff; /* magic */
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, len), DR_ECORRUPT);
    copy[0] ^= 0xff;
    copy[12] = 9; /* accepted round 9 (little-endian u32 at 12) beyond promised round 0 + 1 */
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, len), DR_ECORRUPT);
    memcpy(copy, b->vote, len);
    copy[4] ^= 0x40; /* the vid of the saved view it is for: another view, obsolete */
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, len), 0);
    assert_int_equal(create_with_vote(h, p.b, &p.s[1], copy, DR_RESTART_MAX_VOTE_BYTES + 1),
                     DR_ETOOBIG);
    free(copy);
    h_crash(h, p.a);
    h_crash(h, p.c);
    free_all(h, p.s);
}

/** Malformed or mutated restart frames are rejected or ignored, never trusted or crashed on. */
static void test_mutated_restart_frames(void **state) {
    (void)state;
    harness *h = cluster(3);
    saved s[3];
    save_and_crash_all(h, s);
    uint32_t a = restart_node(h, 0, &s[0], -1);
    uint32_t b = restart_node(h, 1, &s[1], -1);
    assert_true(h->len >= 1); /* b's report to n0, not delivered yet */
    const h_frame *frame = &h->queue[h->head];
    assert_int_equal(frame->from, b);
    size_t len = frame->len;
    uint8_t *good = malloc(len), *bad = malloc(len);
    assert_non_null(good);
    assert_non_null(bad);
    memcpy(good, frame->bytes, len);
    uint64_t seed = 12345, rejected = 0;
    for (uint32_t round = 0; round < 2000; round++) {
        memcpy(bad, good, len);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t cut = DR_WIRE_HEADER_BYTES + (size_t)(seed >> 33) % (len - DR_WIRE_HEADER_BYTES);
        size_t at = DR_WIRE_HEADER_BYTES + (size_t)(seed >> 13) % (len - DR_WIRE_HEADER_BYTES);
        bad[at] ^= (uint8_t)(1u + (seed >> 5) % 255u);
        size_t use = round % 2 ? len : cut;
        /* keep the header's length honest so the body decoders are what is tested */
        dr_store_u32le(bad + DR_WIRE_HEADER_BYTES - 4, (uint32_t)(use - DR_WIRE_HEADER_BYTES));
        int rc = dr_core_on_message(h->nodes[a].core, DR_NODE_NONE, bad, use, h->now_us);
        assert_true(rc == 0 || rc == DR_EPROTO);
        rejected += rc == DR_EPROTO;
        h_drain(h, a);
    }
    assert_true(rejected > 1000); /* truncations at least are all refused */
    assert_false(h->nodes[a].installed);
    /* the genuine report still works afterwards: the two form a majority and restart */
    h_run(h, 10000, 20);
    uint32_t r[2] = {a, b};
    assert_restart_view(h, r, 2, h->nodes[0].view.view.vid + 1, -1);
    free(good);
    free(bad);
    free_all(h, s);
}

static int two_shards(void **state) {
    (void)state;
    num_shards = 2;
    return 0;
}

static int one_shard(void **state) {
    (void)state;
    num_shards = 1;
    return 0;
}

/*
 * A member of a restart view L that neither installed nor accepted it (docs/persistence.md,
 * "Restart views chained across power cuts"). Five nodes, two shards; X = {C, D, E} holds the
 * long logs of C and D (tail t7) and the short one of E (t5). Restart 1 from L0: all report,
 * the trim of X is t5; E and the members of the other shard accept and install L, while C and
 * D never hear of the proposal (power cut). Restart 2 from L, without E: C and D are members
 * of L with an older saved view and t7 in their logs, records L's restart discarded, and they
 * are the only reporters of X. The installers' reports carry L's proposal (the vote saved at
 * the install), so X's trim is t5 again; before, it was t7, and records the group had cut came
 * back.
 */
static void test_restart_trims_outlive_the_restart_view(void **state) {
    (void)state;
    harness *h = cluster(5);
    int32_t L0 = h->nodes[0].view.view.vid;
    const dr_layout *layout = &h->nodes[0].view.layout;
    assert_int_equal(layout->subgroups[0].num_shards, 2);
    uint32_t x = layout->subgroups[0].shards[0].num_members == 3 ? 0 : 1;
    const dr_shard_layout *shard_x = &layout->subgroups[0].shards[x];
    const dr_shard_layout *shard_y = &layout->subgroups[0].shards[1 - x];
    assert_int_equal(shard_x->num_members, 3);
    assert_int_equal(shard_y->num_members, 2);
    /* E: n0 if it is in X (the leader must install), else X's first member; C, D: the rest */
    uint32_t e = shard_x->member_ids[0] - 10, c = shard_x->member_ids[1] - 10,
             d = shard_x->member_ids[2] - 10;
    for (uint32_t k = 1; k < 3; k++)
        if (shard_x->member_ids[k] == 10) {
            e = 0;
            c = shard_x->member_ids[k == 1 ? 0 : 1] - 10;
            d = shard_x->member_ids[k == 2 ? 0 : 2] - 10;
        }
    uint32_t y0 = shard_y->member_ids[0] - 10, y1 = shard_y->member_ids[1] - 10;
    int64_t t3 = (int64_t)L0 << 32 | 3, t5 = (int64_t)L0 << 32 | 5, t7 = (int64_t)L0 << 32 | 7;
    saved s[5];
    for (uint32_t i = 0; i < 5; i++) {
        s[i] = save_view(h, i);
        h_crash(h, i);
    }
    /* restart 1: C and D report, but nothing reaches them any more */
    uint32_t r[5];
    for (uint32_t i = 0; i < 5; i++)
        r[i] = restart_node(h, i, &s[i], i == e ? t5 : i == c || i == d ? t7 : t3);
    for (uint32_t i = 0; i < 5; i++) {
        h->hold[r[i]][r[c]] = true;
        h->hold[r[i]][r[d]] = true;
    }
    h_pump(h, (size_t)-1);
    uint32_t installers[3] = {r[e], r[y0], r[y1]};
    for (uint32_t k = 0; k < 3; k++) {
        const h_node *node = &h->nodes[installers[k]];
        assert_true(node->installed);
        assert_int_equal(node->view.view.vid, L0 + 1);
        assert_int_equal(node->view.view.num_members, 5);
        assert_int_equal(node->truncated[0], installers[k] == r[e] ? t5 : t3);
    }
    assert_false(h->nodes[r[c]].installed);
    assert_false(h->nodes[r[d]].installed);
    assert_int_equal(h->nodes[r[c]].truncations, 0);
    /* power cut: the installers saved L (and the vote of its install), C and D only L0 */
    saved s2[5], v2[5];
    for (uint32_t i = 0; i < 5; i++) {
        bool installed = h->nodes[r[i]].installed;
        s2[i] = installed ? save_view(h, r[i]) : (saved){NULL, 0};
        v2[i] = vote_of(h, r[i]);
        if (v2[i].frame != NULL) { /* the harness frees its own copy at the crash */
            uint8_t *copy = malloc(v2[i].len);
            assert_non_null(copy);
            memcpy(copy, v2[i].frame, v2[i].len);
            v2[i].frame = copy;
        }
        h_crash(h, r[i]);
    }
    for (uint32_t i = 0; i < 5; i++)
        for (uint32_t j = 0; j < 5; j++)
            h->hold[r[i]][r[j]] = false;
    /* restart 2, without E: a majority of L (4 of 5); X's reporters are C and D alone */
    uint32_t r2[4], n = 0;
    for (uint32_t i = 0; i < 5; i++) {
        if (i == e)
            continue;
        bool installer = i == y0 || i == y1;
        r2[n++] = restart_node_full(h, r[i], installer ? &s2[i] : &s[i], i == c || i == d ? t7 : t3,
                                    false, v2[i].frame != NULL ? &v2[i] : NULL);
    }
    h_run(h, 10000, 100);
    for (uint32_t k = 0; k < n; k++) {
        const h_node *node = &h->nodes[r2[k]];
        assert_true(node->history_len >= 1);
        assert_int_equal(node->history_vid[0], L0 + 2);
        assert_int_equal(node->history_members[0][0], 4);
        assert_int_equal(node->truncations, 1);
    }
    /* C and D cut their logs at L's trim of X, not at their own t7 */
    for (uint32_t k = 0; k < n; k++) {
        uint32_t id = h->nodes[r2[k]].id;
        bool in_x = id == 10 + c || id == 10 + d;
        assert_int_equal(h->nodes[r2[k]].truncated[0], in_x ? t5 : t3);
    }
    for (uint32_t i = 0; i < 5; i++) {
        free(s[i].frame);
        free(s2[i].frame);
        free(v2[i].frame);
    }
    h_free(h);
    free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logs_of_different_length_truncate_to_one_trim),
        cmocka_unit_test(test_minority_waits_then_majority_restarts),
        cmocka_unit_test(test_stateless_report_counts_for_nothing),
        cmocka_unit_test(test_accepted_restart_view_survives_a_second_power_cut),
        cmocka_unit_test(test_node_with_older_saved_view_joins_as_new),
        cmocka_unit_test(test_persisted_report_while_restarting_is_not_published),
        cmocka_unit_test(test_late_node_joins_the_restarted_group),
        cmocka_unit_test(test_backup_leader_takes_over),
        cmocka_unit_test(test_backup_adopts_an_accepted_proposal),
        cmocka_unit_test(test_restart_waits_for_a_newer_view_it_hears_of),
        cmocka_unit_test(test_stateless_node_named_by_a_proposal_joins),
        cmocka_unit_test(test_unreadable_vote_is_refused),
        cmocka_unit_test(test_mutated_restart_frames),
        cmocka_unit_test_setup_teardown(test_restart_trims_outlive_the_restart_view, two_shards,
                                        one_shard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
