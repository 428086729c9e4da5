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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"
#include "derecho/log.h"

/** NUM_ACKED value acknowledging the proposal of `proposer_rank` (0 and -1: nothing acked). */
static int64_t ack_value(uint32_t proposer_rank) {
    return (int64_t)proposer_rank + 1;
}

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
    if (shard->mode != DR_MODE_ORDERED)
        return; /* raw shards deliver on receipt: nothing to trim */
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        int64_t trim = INT64_MAX;
        for (uint32_t m = 0; m < shard->num_members; m++) {
            if (!kept(prop, shard->member_ids[m]))
                continue;
            int rank = core_view_rank(core, shard->member_ids[m]);
            assert(rank >= 0);
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
    }
    membership_joiners(core, &prop->next);
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

/** Sends the held proposal to every unsuspected member of the ending view but me. */
static int send_proposal(dr_core *core) {
    dr_buf_reset(&core->scratch);
    int rc = dr_wire_encode_proposal(&core->scratch, core->options.my_id, core->view.vid,
                                     core->vc.proposal);
    for (uint32_t r = 0; rc == 0 && r < core->view.num_members; r++)
        if (r != core->my_rank && !failure_suspected(core, r))
            rc = core_send_scratch(core, core->view.member_ids[r]);
    return rc;
}

static void leader_propose(dr_core *core) {
    dr_msg_proposal *held = core->vc.proposal;
    if (held != NULL && held->proposer_rank == core->my_rank)
        return; /* already proposed: waiting for acks */
    if (held == NULL) {
        if (!all_wedged(core))
            return;
        dr_msg_proposal *prop = calloc(1, sizeof *prop);
        dr_layout *layout = malloc(sizeof *layout);
        if (prop == NULL || layout == NULL) {
            free(prop);
            free(layout);
            return; /* retried after the next event */
        }
        build_proposal(core, prop);
        bool adequate = next_layout(core, &prop->next, layout);
        free(layout);
        if (!adequate) {
            core_trace(core, "view %d: next view of %u members inadequate; staying wedged",
                       core->view.vid, prop->next.num_members);
            free(prop);
            return;
        }
        core->vc.proposal = held = prop;
        core_trace(core, "view %d: propose view %d with %u members, %u trims", core->view.vid,
                   prop->next.vid, prop->next.num_members, prop->num_trims);
    } else {
        core_trace(core, "view %d: adopt the proposal of rank %u", core->view.vid,
                   held->proposer_rank);
    }
    held->proposer_rank = core->my_rank;
    held->committed = false;
    dr_sst_set(core->sst, DR_SST_NUM_ACKED, ack_value(core->my_rank));
    send_proposal(core);
}

static void save_commit_frame(dr_core *core) {
    dr_buf_reset(&core->scratch);
    if (dr_wire_encode_proposal(&core->scratch, core->options.my_id, core->view.vid,
                                core->vc.proposal) != 0)
        return;
    free(core->last_commit);
    core->last_commit = dr_buf_steal(&core->scratch, &core->last_commit_len);
}

static void leader_try_commit(dr_core *core) {
    dr_msg_proposal *held = core->vc.proposal;
    if (held == NULL || held->proposer_rank != core->my_rank || core->vc.committing)
        return;
    for (uint32_t r = 0; r < core->view.num_members; r++)
        if (!failure_suspected(core, r) &&
            row_field(core, r, DR_SST_NUM_ACKED) != ack_value(core->my_rank))
            return;
    held->committed = true;
    core_trace(core, "view %d: commit view %d", core->view.vid, held->next.vid);
    send_proposal(core);
    core->vc.committing = true;
}

/* ---- member side --------------------------------------------------------------------- */

static void hold_proposal(dr_core *core, dr_msg_proposal *msg) {
    free(core->vc.proposal);
    core->vc.proposal = msg;
    viewchange_wedge(core, "proposal");
    int64_t acked = dr_sst_get(core->sst, core->my_rank, DR_SST_NUM_ACKED);
    if (ack_value(msg->proposer_rank) > acked) /* a commit may come from an older proposer */
        dr_sst_set(core->sst, DR_SST_NUM_ACKED, ack_value(msg->proposer_rank));
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
    const dr_msg_proposal *held = core->vc.proposal;
    const char *ignore = NULL;
    if (msg->proposer_rank >= core->view.num_members)
        ignore = "proposer rank out of range";
    else if (!msg->committed && (uint32_t)from != msg->proposer_rank)
        ignore = "proposal not sent by its proposer";
    else if (!msg->committed && failure_suspected(core, (uint32_t)from))
        ignore = "proposal from a suspected leader";
    else if (core->vc.committing)
        ignore = "already committed";
    else if (!msg->committed && held && held->proposer_rank > msg->proposer_rank)
        ignore = "older than the held proposal"; /* a commit is final: always taken */
    else if (held && !msg->committed && held->proposer_rank == msg->proposer_rank)
        ignore = "duplicate";
    if (ignore != NULL) {
        core_trace(core, "view %d: ignore PROPOSAL from %u: %s", core->view.vid, header->sender_id,
                   ignore);
        free(msg);
        return 0;
    }
    core_trace(core, "view %d: %s view %d from %u (proposer rank %u)", core->view.vid,
               msg->committed ? "commit" : "ack", msg->next.vid, header->sender_id,
               msg->proposer_rank);
    hold_proposal(core, msg);
    if (msg->committed)
        core->vc.committing = true;
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
 * Ragged trim of every ordered shard of mine from the committed proposal. Messages trimmed now
 * were sent before those still waiting in the re-send queue (from an earlier view change), so
 * they go in front of them: per-sender FIFO holds across any number of view changes.
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

static int trim_shards(dr_core *core, const dr_msg_proposal *prop) {
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++) {
        const mc_shard *shard = &core->shards[s];
        if (!shard->active || shard->mode != DR_MODE_ORDERED)
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

static void apply_commit(dr_core *core) {
    dr_msg_proposal *prop = core->vc.proposal;
    assert(prop != NULL && core->vc.committing);
    save_commit_frame(core);
    bool member = kept(prop, core->options.my_id);
    if (!member) {
        core_stop(core, core->vc.leaving ? 0 : DR_EREMOVED,
                  core->vc.leaving ? "left the group" : "excluded from the next view");
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

void viewchange_step(dr_core *core) {
    for (int round = 0; round < 8 && core->state == CORE_IN_VIEW; round++) {
        failure_copy_suspicions(core);
        if (core->state != CORE_IN_VIEW || failure_check_partition(core))
            return;
        if (change_wanted(core))
            viewchange_wedge(core, "view change");
        if (!core->vc.wedged)
            return;
        if (core->vc.committing) {
            apply_commit(core);
            return;
        }
        if (viewchange_leader_rank(core) != core->my_rank)
            return;
        leader_propose(core);
        leader_try_commit(core);
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
    free(core->last_commit);
    core->last_commit = NULL;
    for (uint32_t i = 0; i < core->num_resends; i++)
        free(core->resends[i].payload);
    free(core->resends);
    core->resends = NULL;
    core->num_resends = core->cap_resends = 0;
}
