/*
 * Virtually synchronous view changes (PROTOCOL.md §5.3-§5.6, §5.8): wedge, proposal, ack,
 * commit, ragged trim, install; leader takeover with adoption of the old leader's proposal;
 * re-sending of own messages beyond the trim; clean leave.
 *
 * Chain (every step runs after each event, in viewchange_step):
 *  1. wedge: any suspicion, any row WEDGED or LEAVING -> WEDGED = 1, no new sends, no more
 *     deliveries by stability, incoming multicast frames of this view dropped (RECEIVED is
 *     frozen), and the whole row is pushed to every member (dr_sst_widen).
 *  2. propose: the leader (lowest-ranked member I do not suspect), once every unsuspected row
 *     is WEDGED (so it holds their final RECEIVED), sends PROPOSAL{next members = unsuspected,
 *     not leaving, in rank order; per shard and sender: trim = min over the shard's surviving
 *     members of RECEIVED}. A leader that holds a proposal of a lower-ranked (now suspected)
 *     leader re-proposes that one unchanged ("adopts" it): if the old leader committed it,
 *     every unsuspected member had acked it, so the new leader holds it.
 *  3. ack: a member stores the proposal of the highest proposer rank it has seen from a
 *     member it does not suspect and sets NUM_ACKED = proposer rank + 1.
 *  4. commit: when every unsuspected row has NUM_ACKED == its rank + 1, the leader sends the
 *     proposal again with committed = 1. Any holder of a commit may forward it (laggards).
 *  5. install: every member of the next view delivers, in seq order, exactly the messages up
 *     to the trim of each sender, queues its own messages beyond it for re-sending, computes the
 *     next layout from the previous one and installs view vid + 1. A node not in the next view
 *     stops (DR_EREMOVED; error 0 if it was leaving).
 * Because RECEIVED is frozen at wedge and pushed with WEDGED, every message delivered anywhere
 * (stable: seq_num >= its seq at every member) is at or below every survivor's final RECEIVED,
 * hence below the trim: survivors deliver it too. Failures during a view change that leave
 * the proposal committed are handled in the next view (the dead member is suspected there).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"
#include "derecho/log.h"

static int64_t row_field(const dr_core *core, uint32_t row, uint32_t field) {
    return dr_sst_get(core->sst, row, field);
}

void viewchange_wedge(dr_core *core, const char *why) {
    if (core->vc.wedged || !core->have_view)
        return;
    core->vc.wedged = true;
    dr_sst_set(core->sst, DR_SST_WEDGED, 1);
    dr_sst_widen(core->sst);
    core_trace(core, "view %d: wedged (%s)", core->view.vid, why);
}

uint32_t viewchange_leader_rank(const dr_core *core) {
    for (uint32_t r = 0; r < core->view.num_members; r++)
        if (!failure_suspected(core, r))
            return r;
    return core->my_rank; /* unreachable: I never suspect myself */
}

static bool change_wanted(const dr_core *core) {
    if (core->num_joiners > 0 && viewchange_leader_rank(core) == core->my_rank)
        return true;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        if (failure_suspected(core, r) || row_field(core, r, DR_SST_WEDGED) != 0 ||
            row_field(core, r, DR_SST_LEAVING) != 0)
            return true;
    }
    return false;
}

static bool all_wedged(const dr_core *core) {
    for (uint32_t r = 0; r < core->view.num_members; r++)
        if (!failure_suspected(core, r) && row_field(core, r, DR_SST_WEDGED) == 0)
            return false;
    return true;
}

/* ---- proposal ------------------------------------------------------------------------ */

/** True if old-view rank r is in the next view of `prop`. */
static bool kept(const dr_msg_proposal *prop, uint32_t node_id) {
    for (uint32_t i = 0; i < prop->next.num_members; i++)
        if (prop->next.member_ids[i] == node_id)
            return true;
    return false;
}

static void add_shard_trims(const dr_core *core, dr_msg_proposal *prop, uint32_t subgroup,
                            uint32_t shard_index) {
    const dr_shard_layout *shard = &core->layout.subgroups[subgroup].shards[shard_index];
    /* raw shards deliver on receipt: their trim says what every survivor received, and each
     * surviving sender re-sends what lies beyond it */
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        int64_t trim = INT64_MAX;
        for (uint32_t m = 0; m < shard->num_members; m++) {
            int rank = core_view_rank(core, shard->member_ids[m]);
            assert(rank >= 0);
            bool flushing_leaver = !failure_suspected(core, (uint32_t)rank) &&
                                   row_field(core, (uint32_t)rank, DR_SST_LEAVING) != 0;
            if (!kept(prop, shard->member_ids[m]) && !flushing_leaver)
                continue; /* a leaver that is still here delivers up to the trim too */
            int64_t received =
                row_field(core, (uint32_t)rank, dr_sst_received_field(core->sst, subgroup, k));
            if (received < trim)
                trim = received;
        }
        if (trim == INT64_MAX)
            return; /* no survivor in this shard */
        assert(prop->num_trims < DR_WIRE_MAX_TRIMS);
        prop->trims[prop->num_trims++] =
            (dr_trim_entry){.subgroup = subgroup, .shard = shard_index, .sender = k, .trim = trim};
    }
}

/** Fills the next view's members (unsuspected, not leaving) and the trims. */
static void build_proposal(const dr_core *core, dr_msg_proposal *prop) {
    memset(&prop->next, 0, sizeof prop->next);
    prop->next.vid = core->view.vid + 1;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        if (failure_suspected(core, r) || row_field(core, r, DR_SST_LEAVING) != 0)
            continue;
        uint32_t i = prop->next.num_members++;
        prop->next.member_ids[i] = core->view.member_ids[r];
        snprintf(prop->next.addresses[i], DR_ADDRESS_MAX, "%s", core->view.addresses[r]);
        prop->next.incarnations[i] = core->view.incarnations[r];
    }
    if (!core->vc.leaving) /* a leaving leader could not send joiners their view */
        membership_joiners(core, &prop->next);
    if (prop->next.num_members == 0 && core->vc.leaving) {
        /* Every member still heard from is leaving, I too: the group ends. The proposal keeps
         * me alone so that it is a well-formed view; its commit carries everyone's last trim,
         * and I apply it as a leaver too (apply_commit) instead of installing it. */
        prop->next.num_members = 1;
        prop->next.member_ids[0] = core->options.my_id;
        snprintf(prop->next.addresses[0], DR_ADDRESS_MAX, "%s",
                 core->view.addresses[core->my_rank]);
        prop->next.incarnations[0] = core->view.incarnations[core->my_rank];
    }
    prop->num_trims = 0;
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++)
        for (uint32_t h = 0; h < core->layout.subgroups[s].num_shards; h++)
            add_shard_trims(core, prop, s, h);
}

/** True if the next view's layout is adequate (the group stays wedged otherwise). */
static bool next_layout(dr_core *core, const dr_view *next, dr_layout *out) {
    if (next->num_members == 0)
        return false;
    dr_err err = {0};
    int rc = dr_layout_compute(&core->options.layout, &core->layout, next->member_ids,
                               next->num_members, out, &err);
    if (rc != 0)
        core_trace(core, "next layout: %s", err.msg);
    for (uint32_t sg = 0; rc == 0 && !out->adequate && sg < core->layout.num_subgroups; sg++)
        for (uint32_t h = 0; h < core->layout.subgroups[sg].num_shards; h++)
            core_trace(core, "  subgroup %u shard %u had %u members (min %u, max %u)", sg, h,
                       core->layout.subgroups[sg].shards[h].num_members,
                       core->layout.subgroups[sg].shards[h].min_nodes,
                       core->layout.subgroups[sg].shards[h].max_nodes);
    return rc == 0 && out->adequate;
}

/** Sends `msg` (about ending my view) to every unsuspected member of the view but me. */
static int send_to_members(dr_core *core, const dr_msg_proposal *msg) {
    dr_buf_reset(&core->scratch);
    int rc = dr_wire_encode_proposal(&core->scratch, core->options.my_id, core->view.vid, msg);
    for (uint32_t r = 0; rc == 0 && r < core->view.num_members; r++)
        if (r != core->my_rank && !failure_suspected(core, r))
            rc = core_send_scratch(core, core->view.member_ids[r]);
    return rc;
}

static dr_msg_proposal *copy_proposal(const dr_msg_proposal *from) {
    dr_msg_proposal *copy = malloc(sizeof *copy);
    if (copy != NULL)
        *copy = *from;
    return copy;
}

/* ---- ballots ------------------------------------------------------------------------- */

/** Highest ballot that any row promised or accepted (0: none). */
static int64_t highest_ballot_seen(const dr_core *core) {
    int64_t best = DR_BALLOT_NONE;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        int64_t promised = row_field(core, r, DR_SST_PROMISED);
        int64_t accepted = row_field(core, r, DR_SST_ACCEPTED);
        if (promised > best)
            best = promised;
        if (accepted > best)
            best = accepted;
    }
    return best;
}

/** My smallest ballot above `above`. */
static int64_t my_ballot_above(const dr_core *core, int64_t above) {
    uint32_t round = above == DR_BALLOT_NONE ? 0 : dr_ballot_round(above);
    int64_t ballot = dr_ballot_make(round, core->my_rank);
    return ballot > above ? ballot : dr_ballot_make(round + 1, core->my_rank);
}

/**
 * Takeover rule (PROTOCOL.md §5.6): I lead only once every member I do not suspect also
 * suspects every member ranked below me. Until then a lower-ranked leader may still be at work
 * for them; waiting keeps two leaders from outbidding each other (safety does not depend on it:
 * the ballots and quorums give that).
 */
static bool may_lead(const dr_core *core) {
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        if (r == core->my_rank || failure_suspected(core, r))
            continue;
        for (uint32_t lower = 0; lower < core->my_rank; lower++)
            if (row_field(core, r, dr_sst_suspected_field(core->sst, lower)) == 0)
                return false;
    }
    return true;
}

/** True if `count` rows are more than half of the view (a quorum: any two intersect). */
static bool is_quorum(const dr_core *core, uint32_t count) {
    return count * 2 > core->view.num_members;
}

/* ---- leader -------------------------------------------------------------------------- */

/**
 * Phase 1: a new ballot above every ballot seen. I promise it myself (my PROMISED row field is
 * the "prepare" the members read) and my own accepted value is my report.
 */
static void leader_start_ballot(dr_core *core, int64_t above) {
    int64_t ballot = my_ballot_above(core, above);
    core->vc.ballot = ballot;
    core->vc.proposed = false;
    memset(core->vc.reported, 0, sizeof core->vc.reported);
    free(core->vc.best_report);
    core->vc.best_report = NULL;
    dr_sst_set(core->sst, DR_SST_PROMISED, ballot);
    core->vc.reported[core->my_rank] = ballot;
    if (core->vc.proposal != NULL)
        core->vc.best_report = copy_proposal(core->vc.proposal);
    core_trace(core, "view %d: lead with ballot %" PRId64 " (round %u)", core->view.vid, ballot,
               dr_ballot_round(ballot));
}

/**
 * Phase 1 is complete when every member I do not suspect (a quorum, or partitioning safety
 * would have stopped me) reported what it accepted before promising my ballot. The very first
 * ballot of a view change (round 0, rank 0) needs no reports: no value can precede it.
 */
static bool leader_heard_reports(const dr_core *core) {
    if (core->vc.ballot == dr_ballot_make(0, 0))
        return true;
    uint32_t count = 0;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        bool reported = core->vc.reported[r] == core->vc.ballot;
        if (!reported && !failure_suspected(core, r))
            return false;
        count += reported ? 1u : 0u;
    }
    return is_quorum(core, count);
}

/**
 * Phase 2: propose the highest-ballot value any reporter accepted (a value that may have been
 * chosen survives the takeover), or, if none accepted anything, a fresh value built from the
 * wedged rows: unsuspected members that are not leaving, pending joiners, and the trims.
 */
static void leader_propose(dr_core *core) {
    dr_msg_proposal *value = core->vc.best_report;
    if (value != NULL) {
        core->vc.best_report = NULL;
        core_trace(core, "view %d: adopt the value accepted at ballot %" PRId64, core->view.vid,
                   value->accepted_ballot);
    } else {
        if (!all_wedged(core) || failure_accusations_pending(core))
            return; /* wait for the final RECEIVED of all, and for accusations to ripen */
        value = calloc(1, sizeof *value);
        dr_layout *layout = malloc(sizeof *layout);
        if (value == NULL || layout == NULL) {
            free(value);
            free(layout);
            return; /* retried after the next event */
        }
        build_proposal(core, value);
        bool group_ends = core->vc.leaving && value->next.num_members == 1 &&
                          value->next.member_ids[0] == core->options.my_id; /* see there */
        bool adequate = group_ends || next_layout(core, &value->next, layout);
        free(layout);
        if (!adequate) {
            core_trace(core, "view %d: next view of %u members inadequate; staying wedged",
                       core->view.vid, value->next.num_members);
            free(value);
            return;
        }
        core_trace(core, "view %d: propose view %d with %u members, %u trims", core->view.vid,
                   value->next.vid, value->next.num_members, value->num_trims);
    }
    value->kind = DR_PROPOSAL_PROPOSE;
    value->ballot = value->accepted_ballot = core->vc.ballot;
    free(core->vc.proposal);
    core->vc.proposal = value; /* I accept my own proposal */
    dr_sst_set(core->sst, DR_SST_ACCEPTED, core->vc.ballot);
    core->vc.proposed = true;
    send_to_members(core, value);
}

static void save_commit_frame(dr_core *core) {
    dr_buf_reset(&core->scratch);
    if (dr_wire_encode_proposal(&core->scratch, core->options.my_id, core->view.vid,
                                core->vc.proposal) != 0)
        return;
    free(core->last_commit);
    core->last_commit = dr_buf_steal(&core->scratch, &core->last_commit_len);
}

/**
 * The value is chosen once a quorum of the view accepted exactly my ballot; I also wait for
 * every member I do not suspect, whose trims the value holds. A row's ACCEPTED may be stale (the
 * member since promised a higher ballot): it did accept my ballot, and the higher ballot's
 * leader learned of it in phase 1 from the quorums' intersection.
 */
static void leader_try_commit(dr_core *core) {
    if (!core->vc.proposed || core->vc.committing || core->vc.proposal == NULL ||
        core->vc.proposal->ballot != core->vc.ballot)
        return; /* the held value must be the one proposed at my ballot */
    uint32_t acked = 0;
    for (uint32_t r = 0; r < core->view.num_members; r++) {
        bool accepted = row_field(core, r, DR_SST_ACCEPTED) == core->vc.ballot;
        if (!accepted && !failure_suspected(core, r))
            return;
        acked += accepted ? 1u : 0u;
    }
    if (!is_quorum(core, acked))
        return; /* a minority never commits: partitioning safety decides */
    core->vc.proposal->kind = DR_PROPOSAL_COMMIT;
    dr_sst_set(core->sst, DR_SST_COMMITTED, core->vc.ballot);
    core_trace(core, "view %d: commit view %d (ballot %" PRId64 ", %u acks)", core->view.vid,
               core->vc.proposal->next.vid, core->vc.ballot, acked);
    send_to_members(core, core->vc.proposal);
    core->vc.committing = true;
}

/** The leader's part of the step (I am the lowest-ranked member I do not suspect). */
static void leader_step(dr_core *core) {
    if (!may_lead(core))
        return;
    bool outbid = false;
    for (uint32_t r = 0; r < core->view.num_members; r++)
        if (!failure_suspected(core, r) && row_field(core, r, DR_SST_PROMISED) > core->vc.ballot)
            outbid = true; /* it promised a higher ballot: mine cannot win */
    if (core->vc.ballot == DR_BALLOT_NONE || outbid)
        leader_start_ballot(core, highest_ballot_seen(core));
    if (!core->vc.proposed) {
        if (!leader_heard_reports(core))
            return;
        leader_propose(core);
    }
    leader_try_commit(core);
}

static void leader_on_report(dr_core *core, uint32_t from_rank, dr_msg_proposal *msg) {
    if (msg->ballot != core->vc.ballot || core->vc.proposed) {
        free(msg);
        return; /* an answer to an older ballot of mine */
    }
    core->vc.reported[from_rank] = msg->ballot;
    const dr_msg_proposal *best = core->vc.best_report;
    if (msg->accepted_ballot != DR_BALLOT_NONE &&
        (best == NULL || msg->accepted_ballot > best->accepted_ballot)) {
        free(core->vc.best_report);
        core->vc.best_report = msg;
        return;
    }
    free(msg);
}

/* ---- acceptor (every member) --------------------------------------------------------- */

/**
 * Phase 1, member side: my leader's PROMISED row field naming its own rank is its prepare. If
 * its ballot is above everything I promised, I promise it (and so refuse every lower ballot
 * from now on) and report what I accepted before.
 */
static void member_promise(dr_core *core) {
    uint32_t leader = viewchange_leader_rank(core);
    if (leader == core->my_rank || core->vc.committing)
        return;
    int64_t prepare = row_field(core, leader, DR_SST_PROMISED);
    if (prepare <= DR_BALLOT_NONE || dr_ballot_rank(prepare) != leader ||
        prepare <= row_field(core, core->my_rank, DR_SST_PROMISED))
        return;
    dr_sst_set(core->sst, DR_SST_PROMISED, prepare);
    viewchange_wedge(core, "prepare");
    dr_msg_proposal *report = calloc(1, sizeof *report);
    if (core->vc.proposal != NULL && report != NULL)
        *report = *core->vc.proposal;
    if (report == NULL)
        return; /* the leader waits; it re-ballots once it sees my promise above its ballot */
    report->kind = DR_PROPOSAL_REPORT;
    report->ballot = prepare;
    report->accepted_ballot = row_field(core, core->my_rank, DR_SST_ACCEPTED);
    if (report->accepted_ballot == DR_BALLOT_NONE) {
        report->next.num_members = 0;
        report->num_trims = 0;
    }
    core_trace(core, "view %d: promise ballot %" PRId64 " to %u (accepted %" PRId64 ")",
               core->view.vid, prepare, core->view.member_ids[leader], report->accepted_ballot);
    dr_buf_reset(&core->scratch);
    if (dr_wire_encode_proposal(&core->scratch, core->options.my_id, core->view.vid, report) == 0)
        core_send_scratch(core, core->view.member_ids[leader]);
    free(report);
}

/** Why a PROPOSE of `msg` from rank `from` is refused, or NULL to accept it. */
static const char *refuse_proposal(const dr_core *core, uint32_t from, const dr_msg_proposal *msg) {
    if (dr_ballot_rank(msg->ballot) != from)
        return "not sent by its ballot's leader";
    if (failure_suspected(core, from))
        return "from a suspected leader";
    if (core->vc.committing)
        return "already committed";
    if (msg->ballot < row_field(core, core->my_rank, DR_SST_PROMISED))
        return "I promised a higher ballot";
    if (msg->ballot <= row_field(core, core->my_rank, DR_SST_ACCEPTED))
        return "duplicate";
    return NULL;
}

int viewchange_on_proposal(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    if (core->state != CORE_IN_VIEW || header->vid != core->view.vid)
        return 0; /* of another view: stale or not for me */
    dr_msg_proposal *msg = malloc(sizeof *msg);
    if (msg == NULL)
        return DR_ENOMEM;
    const char *why = NULL;
    if (dr_wire_decode_proposal(body, header->body_len, msg, &why) != 0) {
        free(msg);
        return core_reject(core, header->sender_id, why);
    }
    msg->next.vid = core->view.vid + 1;
    int from = core_view_rank(core, header->sender_id);
    if (from < 0) {
        free(msg);
        return core_reject(core, header->sender_id, "PROPOSAL from a non-member");
    }
    if (msg->kind == DR_PROPOSAL_REPORT) {
        leader_on_report(core, (uint32_t)from, msg);
        return 0;
    }
    /* A COMMIT is taken from anyone: only a leader holding a quorum's acceptance of the
     * value's ballot makes one (others forward it), and Paxos makes every such value equal. */
    const char *ignore = msg->kind == DR_PROPOSAL_COMMIT
                             ? (core->vc.committing ? "already committed" : NULL)
                             : refuse_proposal(core, (uint32_t)from, msg);
    if (ignore != NULL) {
        core_trace(core, "view %d: ignore PROPOSAL (ballot %" PRId64 ") from %u: %s",
                   core->view.vid, msg->ballot, header->sender_id, ignore);
        free(msg);
        return 0;
    }
    bool commit = msg->kind == DR_PROPOSAL_COMMIT;
    core_trace(core, "view %d: %s view %d from %u (ballot %" PRId64 ")", core->view.vid,
               commit ? "commit" : "accept", msg->next.vid, header->sender_id, msg->ballot);
    viewchange_wedge(core, "proposal");
    if (msg->ballot > row_field(core, core->my_rank, DR_SST_PROMISED))
        dr_sst_set(core->sst, DR_SST_PROMISED, msg->ballot);
    if (msg->ballot > row_field(core, core->my_rank, DR_SST_ACCEPTED) && !commit)
        dr_sst_set(core->sst, DR_SST_ACCEPTED, msg->ballot);
    if (commit) {
        dr_sst_set(core->sst, DR_SST_COMMITTED, msg->ballot);
        core->vc.committing = true;
    }
    free(core->vc.proposal);
    core->vc.proposal = msg;
    return 0;
}

void viewchange_on_laggard(dr_core *core, uint32_t node_id, int32_t vid) {
    /* also a node the last view change excluded: the commit tells it so (it stops, removed) */
    if (core->last_commit == NULL || vid != core->view.vid - 1 || core->state != CORE_IN_VIEW ||
        node_id == core->options.my_id)
        return;
    core_trace(core, "view %d: %u is still in view %d: resend the commit", core->view.vid, node_id,
               vid);
    core_send_bytes(core, node_id, core->last_commit, core->last_commit_len);
}

/* ---- install ------------------------------------------------------------------------- */

static int trim_shards(dr_core *core, const dr_msg_proposal *prop);

/**
 * Ragged trim of every shard of mine from the committed proposal (raw shards: the re-sends).
 * Messages trimmed now were sent before those still waiting in the re-send queue (from an earlier
 * view change), so they go in front of them: per-sender FIFO holds across any number of view
 * changes.
 */
static int trim_my_shards(dr_core *core, const dr_msg_proposal *prop) {
    resend_item *older = core->resends;
    uint32_t num_older = core->num_resends;
    core->resends = NULL;
    core->num_resends = core->cap_resends = 0;
    int rc = trim_shards(core, prop);
    for (uint32_t i = 0; i < num_older; i++) {
        if (rc == 0)
            rc = core_queue_resend(core, older[i].subgroup, older[i].payload, older[i].len);
        else
            free(older[i].payload);
    }
    free(older);
    return rc;
}

/**
 * Raw shard: survives[k] = sender k is in the next view, so it re-sends beyond its trim. The
 * committed proposal alone decides, never this node's own suspicions: a sender I suspect may
 * still be kept (the leader did not suspect it), and then its re-sends must be recognised here
 * too (a local-suspicion check delivered them twice: simulator seed 10466971). An id of the old
 * view in the next one is the same incarnation: joiners whose id is in the view are not added.
 */
static void raw_survivors(const mc_shard *shard, const dr_msg_proposal *prop, bool *survives) {
    for (uint32_t k = 0; k < shard->num_senders; k++)
        survives[k] = kept(prop, shard->member_ids[shard->sender_member[k]]);
}

static int trim_shards(dr_core *core, const dr_msg_proposal *prop) {
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++) {
        const mc_shard *shard = &core->shards[s];
        if (!shard->active)
            continue;
        int64_t trim[DR_LAYOUT_MAX_SHARD_MEMBERS];
        uint32_t found = 0;
        for (uint32_t i = 0; i < prop->num_trims; i++) {
            const dr_trim_entry *t = &prop->trims[i];
            if (t->subgroup != s || t->shard != shard->shard || t->sender >= shard->num_senders)
                continue;
            trim[t->sender] = t->trim;
            found++;
        }
        if (found != shard->num_senders)
            return DR_EPROTO;
        if (shard->mode == DR_MODE_RAW) {
            bool survives[DR_LAYOUT_MAX_SHARD_MEMBERS];
            raw_survivors(shard, prop, survives);
            int rc = multicast_raw_view_end(core, s, trim, survives);
            if (rc != 0)
                return rc;
            continue;
        }
        if (core->options.test_fault == DR_CORE_FAULT_SKIP_TRIM)
            for (uint32_t k = 0; k < shard->num_senders; k++)
                trim[k] = -1; /* test-only broken rule: deliver nothing more */
        int rc = multicast_ragged_trim(core, s, trim);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void emit_window_open(dr_core *core) {
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++) {
        if (!core->shards[s].active || core->shards[s].my_sender_index < 0)
            continue;
        dr_action action = {.type = DR_ACTION_WINDOW_OPEN, .subgroup = s};
        core_push_action(core, &action);
    }
}

/**
 * A clean leave ends with the trim like any survivor's (PROTOCOL.md §5.8): the leaver delivers
 * exactly what the others deliver, then stops. Its own messages beyond the trim cannot be sent
 * any more (it is not in the next view): the stop reason counts them, so they are never lost in
 * silence.
 */
static void leaver_flush(dr_core *core, const dr_msg_proposal *prop) {
    int rc = trim_my_shards(core, prop);
    uint32_t undelivered = core->num_resends;
    char reason[128];
    if (rc != 0)
        snprintf(reason, sizeof reason, "left the group; the final trim failed: %s",
                 dr_strerror(rc));
    else if (undelivered > 0)
        snprintf(reason, sizeof reason,
                 "left the group; %u accepted sends were not delivered (beyond the final trim)",
                 undelivered);
    else
        snprintf(reason, sizeof reason, "left the group");
    core->stats.left_undelivered += undelivered;
    /* The leaver may be the last to hold the commit (the leader can die right after sending
     * it): forward it to the others before going, or they might wait for it forever. */
    for (uint32_t r = 0; core->last_commit != NULL && r < core->view.num_members; r++)
        if (r != core->my_rank && !failure_suspected(core, r))
            core_send_bytes(core, core->view.member_ids[r], core->last_commit,
                            core->last_commit_len);
    core_stop(core, rc != 0 ? rc : undelivered > 0 ? DR_EUNDELIVERED : 0, reason);
}

static void apply_commit(dr_core *core) {
    dr_msg_proposal *prop = core->vc.proposal;
    assert(prop != NULL && core->vc.committing);
    save_commit_frame(core);
    bool member = kept(prop, core->options.my_id);
    /* a leaver alone in the next view: the group ends with it (build_proposal) */
    if (core->vc.leaving && (!member || prop->next.num_members == 1)) {
        leaver_flush(core, prop);
        return;
    }
    if (!member) {
        core_stop(core, DR_EREMOVED, "excluded from the next view");
        return;
    }
    dr_layout *layout = malloc(sizeof *layout);
    dr_view *next = malloc(sizeof *next);
    int rc = layout && next ? trim_my_shards(core, prop) : DR_ENOMEM;
    if (rc == 0 && !next_layout(core, &prop->next, layout))
        rc = DR_EPROTO;
    if (rc == 0) {
        *next = prop->next;
        rc = core_install_view(core, next, layout, &core->layout);
    }
    free(layout);
    free(next);
    if (rc != 0) {
        core_stop(core, rc, "could not install the committed view (bad proposal?)");
        return;
    }
    core->stats.view_changes++;
    membership_after_view_change(core);
    emit_window_open(core);
}

/* ---- the step ------------------------------------------------------------------------ */

/** True if every message I multicast in an ordered shard was delivered here. */
static bool own_sends_delivered(const dr_core *core) {
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++) {
        const mc_shard *shard = &core->shards[s];
        if (!shard->active || shard->mode != DR_MODE_ORDERED || shard->my_sender_index < 0 ||
            shard->next_index == 0)
            continue;
        int64_t last_seq =
            (shard->next_index - 1) * (int64_t)shard->num_senders + shard->my_sender_index;
        if (shard->delivered_num < last_seq)
            return false;
    }
    return true;
}

void viewchange_leave_when_flushed(dr_core *core) {
    if (!core->leave_requested || core->vc.leaving || core->state != CORE_IN_VIEW ||
        core->vc.wedged || core->num_resends > 0 || !own_sends_delivered(core) ||
        !multicast_raw_sends_settled(core))
        return;
    core->vc.leaving = true;
    dr_sst_set(core->sst, DR_SST_LEAVING, 1);
    viewchange_wedge(core, "leaving (own sends delivered)");
}

void viewchange_step(dr_core *core) {
    viewchange_leave_when_flushed(core);
    if (core->vc.leaving && core->state == CORE_IN_VIEW && core->view.num_members == 1) {
        /* the last member leaves: everything sent was delivered here, the only place it had
         * to be; the group ends with it */
        core_stop(core, 0, "left the group (its last member: the group ends)");
        return;
    }
    for (int round = 0; round < 8 && core->state == CORE_IN_VIEW; round++) {
        failure_copy_suspicions(core);
        if (core->state != CORE_IN_VIEW || failure_check_partition(core))
            return;
        if (change_wanted(core))
            viewchange_wedge(core, "view change");
        if (!core->vc.wedged)
            return;
        member_promise(core);
        if (core->vc.committing) {
            apply_commit(core);
            return;
        }
        if (viewchange_leader_rank(core) != core->my_rank)
            return;
        leader_step(core);
        if (!core->vc.committing)
            return;
    }
}

/* ---- re-sends and cleanup ------------------------------------------------------------ */

int core_queue_resend(dr_core *core, uint32_t subgroup, uint8_t *payload, uint32_t len) {
    if (core->num_resends == core->cap_resends) {
        uint32_t cap = core->cap_resends ? core->cap_resends * 2 : 16;
        resend_item *grown = realloc(core->resends, cap * sizeof *grown);
        if (grown == NULL) {
            free(payload);
            return DR_ENOMEM;
        }
        core->resends = grown;
        core->cap_resends = cap;
    }
    core->resends[core->num_resends++] =
        (resend_item){.subgroup = subgroup, .payload = payload, .len = len};
    return 0;
}

bool viewchange_drain_resends(dr_core *core) {
    uint32_t done = 0;
    core->draining = true;
    while (done < core->num_resends) {
        resend_item *item = &core->resends[done];
        const mc_shard *shard = &core->shards[item->subgroup];
        int rc = multicast_send(core, item->subgroup, item->payload, item->len, shard->mode);
        if (rc == DR_EAGAIN)
            break;
        if (rc != 0) {
            DR_WARN(DR_LOGM_VIEWMANAGER, "node %u: dropping a re-send: %s", core->options.my_id,
                    dr_strerror(rc));
            free(item->payload);
        } else {
            core->stats.resent++;
        }
        done++;
    }
    core->draining = false;
    memmove(core->resends, core->resends + done, (core->num_resends - done) * sizeof(resend_item));
    core->num_resends -= done;
    return core->num_resends == 0;
}

void viewchange_free(dr_core *core) {
    free(core->vc.proposal);
    core->vc.proposal = NULL;
    free(core->vc.best_report);
    core->vc.best_report = NULL;
    free(core->last_commit);
    core->last_commit = NULL;
    for (uint32_t i = 0; i < core->num_resends; i++)
        free(core->resends[i].payload);
    free(core->resends);
    core->resends = NULL;
    core->num_resends = core->cap_resends = 0;
}
