/*
 * Failure detection (PROTOCOL.md §5.1-§5.2): heartbeats, suspicion, its spreading through the
 * SST, and partitioning safety.
 *
 * Every heartbeat_ms each member sends HEARTBEAT (an empty frame) to every other member of its
 * view, and, while wedged, to the joiners of the proposal it accepted (one may have installed
 * that view already); any frame from a member that carries a view id (of any view; join
 * requests do not) counts as a sign of life. A member silent for
 * heartbeat_ms x suspect_after_missed, whose connection broke, or that the application reports,
 * is suspected: SUSPECTED[rank] = 1 in my row (pushed to all) and I wedge. Every node copies
 * the suspicions of every row it does not itself suspect into its own, so if anyone suspects X
 * everyone soon does. A node that sees itself suspected was excluded: it stops (DR_EREMOVED). A
 * node that suspects half or more of the members that are not leaving on purpose stops (DR_ECLOSED,
 * partitioning safety) unless disable_partitioning_safety is set.
 *
 * One broken connection must not cost two members: the end with the higher rank is suspected
 * at once by the lower-ranked end (a broken connection) or after the failure timeout T of
 * silence; the higher-ranked end suspects a lower-ranked peer only after T plus one heartbeat
 * period of silence if their connection broke, 1.5 T otherwise. The higher end is usually
 * excluded before it accuses; a crash is still seen by every other member.
 *
 * Silence only counts while this node was listening: a tick that comes more than a heartbeat
 * period after the previous one means this node itself stalled (the process was paused, or its
 * event loop was held up), so the stall is added to every member's last-heard time instead of
 * counting against them. A paused node that resumes thus learns from the frames it missed that
 * it was excluded, rather than suspecting everyone and stopping by partitioning safety.
 */
#include <assert.h>
#include <stdio.h>

#include "core/core_internal.h"
#include "derecho/log.h"

static uint32_t suspected_field(const dr_core *core, uint32_t rank) {
    return dr_sst_suspected_field(core->sst, rank);
}

bool failure_suspected(const dr_core *core, uint32_t rank) {
    return dr_sst_get(core->sst, core->my_rank, suspected_field(core, rank)) != 0;
}

void failure_start_view(dr_core *core) {
    for (uint32_t r = 0; r < core->view.num_members; r++)
        core->vc.last_heard_us[r] = core->now_us;
    core->vc.last_heartbeat_us = 0;
    core->vc.last_tick_us = core->now_us;
}

/* A late tick: this node stalled; the others' silence during the stall is not counted. */
static void discount_own_stall(dr_core *core, uint64_t period_us) {
    uint64_t previous = core->vc.last_tick_us;
    core->vc.last_tick_us = core->now_us;
    if (core->now_us - previous <= period_us)
        return;
    uint64_t stall = core->now_us - previous - period_us / 2;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        uint64_t heard = core->vc.last_heard_us[r] + stall;
        core->vc.last_heard_us[r] = heard < core->now_us ? heard : core->now_us;
    }
    core_trace(core, "view %d: tick %llu us late; not counted as silence of others", core->view.vid,
               (unsigned long long)stall);
}

void failure_heard_from(dr_core *core, uint32_t node_id) {
    int rank = core_view_rank(core, node_id);
    if (rank >= 0)
        core->vc.last_heard_us[rank] = core->now_us;
}

void failure_suspect(dr_core *core, uint32_t rank, const char *why) {
    assert(core->have_view && rank < core->view.num_members);
    if (rank == core->my_rank || failure_suspected(core, rank))
        return;
    dr_sst_set(core->sst, suspected_field(core, rank), 1);
    core_trace(core, "view %d: suspect %u (%s)", core->view.vid, core->view.member_ids[rank], why);
    DR_WARN(DR_LOGM_VIEWMANAGER, "node %u: suspecting member %u of view %d: %s",
            core->options.my_id, core->view.member_ids[rank], core->view.vid, why);
    viewchange_wedge(core, "suspicion");
}

/**
 * Heartbeats to the joiners of the proposal I accepted: a joiner may already have installed
 * that view (its leader sent it, then crashed before the rest got the commit) while the others
 * are still in this view, taking over. They send it nothing of this view, so without these it
 * would suspect all of them and stop by partitioning safety before the takeover commits
 * (simulator seed 11532201). A heartbeat carries no state: it only keeps the joiner waiting.
 */
static int heartbeat_accepted_joiners(dr_core *core) {
    const dr_msg_proposal *accepted = core->vc.proposal;
    int rc = 0;
    for (uint32_t i = 0; accepted != NULL && rc == 0 && i < accepted->next.num_members; i++) {
        uint32_t id = accepted->next.member_ids[i];
        if (id == core->options.my_id || core_view_rank(core, id) >= 0)
            continue;
        if (id < core->options.my_id) { /* one connection per pair: the higher id dials */
            dr_action connect = {.type = DR_ACTION_CONNECT, .node_id = id};
            snprintf(connect.address, sizeof connect.address, "%s", accepted->next.addresses[i]);
            rc = core_push_action(core, &connect);
        }
        if (rc == 0)
            rc = core_send_scratch(core, id); /* a joiner that installed dialled me already */
    }
    return rc;
}

static int send_heartbeats(dr_core *core) {
    dr_buf_reset(&core->scratch);
    int rc = dr_wire_encode_heartbeat(&core->scratch, core->options.my_id, core->view.vid);
    for (uint32_t r = 0; rc == 0 && r < core->view.num_members; r++)
        if (r != core->my_rank && !failure_suspected(core, r))
            rc = core_send_scratch(core, core->view.member_ids[r]);
    if (rc == 0 && core->vc.wedged)
        rc = heartbeat_accepted_joiners(core);
    core->vc.last_heartbeat_us = core->now_us;
    return rc;
}

int failure_on_tick(dr_core *core) {
    if (core->state != CORE_IN_VIEW || core->options.heartbeat_ms == 0)
        return 0;
    uint64_t period_us = (uint64_t)core->options.heartbeat_ms * 1000u;
    discount_own_stall(core, period_us);
    int rc = 0;
    if (core->now_us - core->vc.last_heartbeat_us >= period_us)
        rc = send_heartbeats(core);
    uint64_t timeout_us = period_us * core->options.suspect_after_missed;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        if (r == core->my_rank)
            continue;
        /* Tie-break of one broken link: the lower-ranked end accuses first, so only the
         * higher-ranked end is excluded (not both, which could cost the majority). */
        uint64_t silence = core->now_us - core->vc.last_heard_us[r];
        if (r > core->my_rank) {
            if (silence > timeout_us)
                failure_suspect(core, r, "missed heartbeats");
        } else if (core->vc.disconnected_us[r] != 0 && silence > timeout_us + period_us) {
            failure_suspect(core, r, "connection broke");
        } else if (silence > timeout_us + timeout_us / 2) {
            failure_suspect(core, r, "missed heartbeats");
        }
    }
    return rc;
}

void failure_on_disconnect(dr_core *core, uint32_t rank) {
    if (rank == core->my_rank || failure_suspected(core, rank))
        return;
    if (rank > core->my_rank) {
        failure_suspect(core, rank, "connection broke");
        return;
    }
    /* a lower-ranked peer: suspected after a grace of half the failure timeout (see above) */
    if (core->vc.disconnected_us[rank] == 0)
        core->vc.disconnected_us[rank] = core->now_us ? core->now_us : 1;
    core_trace(core,
               "view %d: connection to %u broke; suspect it after %u ms of silence unless "
               "excluded first",
               core->view.vid, core->view.member_ids[rank],
               (unsigned)(core->options.heartbeat_ms * (core->options.suspect_after_missed + 1)));
}

/** True if suspecting `extra` more members would make me stop by partitioning safety. */
static bool would_lose_majority(const dr_core *core, uint32_t extra) {
    uint32_t counted = 0, suspected = extra;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        if (dr_sst_get(core->sst, r, DR_SST_LEAVING) != 0)
            continue;
        counted++;
        suspected += failure_suspected(core, r) ? 1u : 0u;
    }
    return !core->options.disable_partitioning_safety && suspected * 2 >= counted;
}

/**
 * Whether I may act on `accuser`'s suspicion of `accused` now. An accusation of a lower-ranked
 * member by a higher-ranked one waits one heartbeat period: when one connection breaks, both
 * ends may accuse each other within moments, and every member must side with the lower-ranked
 * end, whose accusation (of the higher end) is taken at once. Whichever reaches me first, by then
 * I hold both and keep only the lower end's (its accuser is then suspected, its row ignored).
 */
static bool accusation_ripe(dr_core *core, uint32_t accuser, uint32_t accused) {
    if (accused > accuser)
        return true;
    uint64_t *since = &core->vc.accused_since[accused];
    if (*since == 0)
        *since = core->now_us ? core->now_us : 1;
    return core->now_us - *since >= (uint64_t)core->options.heartbeat_ms * 1000u;
}

bool failure_copy_suspicions(dr_core *core) {
    bool progress = false;
    /* lower-ranked accusers first: their accusations of higher ranks are taken at once */
    for (uint32_t row = 0; row < core->view.num_members; row++) {
        if (row == core->my_rank || failure_suspected(core, row))
            continue; /* a suspected member's opinions no longer count */
        uint32_t news = 0;
        bool take[DR_VIEW_MAX_MEMBERS] = {false};
        for (uint32_t r = 0; r < core->view.num_members; r++) {
            if (dr_sst_get(core->sst, row, suspected_field(core, r)) == 0 ||
                (r != core->my_rank && failure_suspected(core, r)) ||
                !accusation_ripe(core, row, r))
                continue;
            if (r == core->my_rank) {
                char reason[96];
                snprintf(reason, sizeof reason, "excluded from view %d: member %u suspects me",
                         core->view.vid, core->view.member_ids[row]);
                core_stop(core, DR_EREMOVED, reason);
                return true;
            }
            take[r] = true;
            news++;
        }
        if (news == 0)
            continue;
        /* A bridge between two sides of a partition: taking this row's word would leave me
         * without a majority, while I still hear the members it accuses. Side with the rest:
         * suspect the accuser instead (safety never rests on suspicions, only on quorums). */
        if (would_lose_majority(core, news) && !would_lose_majority(core, 1)) {
            failure_suspect(core, row, "its suspicions would cost this node its majority");
            progress = true;
            continue;
        }
        for (uint32_t r = 0; r < core->view.num_members; r++)
            if (take[r] && !failure_suspected(core, r))
                failure_suspect(core, r, "suspected by another member");
        progress = true;
    }
    return progress;
}

bool failure_accusations_pending(const dr_core *core) {
    for (uint32_t row = 0; row < core->view.num_members; row++) {
        if (row == core->my_rank || failure_suspected(core, row))
            continue;
        for (uint32_t r = 0; r < core->view.num_members; r++)
            if (r != core->my_rank && !failure_suspected(core, r) &&
                dr_sst_get(core->sst, row, suspected_field(core, r)) != 0)
                return true;
    }
    return false;
}

bool failure_check_partition(dr_core *core) {
    uint32_t counted = 0, suspected = 0;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        if (dr_sst_get(core->sst, r, DR_SST_LEAVING) != 0)
            continue;
        counted++;
        suspected += failure_suspected(core, r) ? 1u : 0u;
    }
    if (suspected == 0 || suspected * 2 < counted || core->options.disable_partitioning_safety)
        return false;
    char reason[128];
    snprintf(reason, sizeof reason,
             "partitioning safety: suspecting %u of %u members of view %d; this node may be in "
             "a minority partition and stops",
             suspected, counted, core->view.vid);
    core_stop(core, DR_ECLOSED, reason);
    return true;
}
