/*
 * Initial membership (PROTOCOL.md §5.7, start-up): the node whose own address equals the
 * contact address is the initial leader; every other node sends JOIN_REQUEST to the contact,
 * follows JOIN_REDIRECTs to the leader, and retries every join_retry_us until a VIEW arrives.
 * The leader refuses a node id already in use (JOIN_REFUSED, DR_EEXIST), answers a repeated
 * request from the same node idempotently, queues joiners in arrival order, and installs view 0
 * (members: itself, then joiners) as soon as the layout function finds it adequate; it then sends
 * VIEW to every member. Joins after view 0 are queued for the view-change protocol (issue 5).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"
#include "derecho/log.h"

static int send_join_request(dr_core *core) {
    assert(core->state == CORE_JOINING);
    /* by id where the target's id is known: a node that gave up a total restart is already
     * connected to it by id, and a second connection from its id would be refused */
    dr_action connect = {.type = DR_ACTION_CONNECT, .node_id = core->join_target_id};
    snprintf(connect.address, sizeof connect.address, "%s", core->join_target);
    int rc = core_push_action(core, &connect);
    dr_buf_reset(&core->scratch);
    if (rc == 0)
        rc = dr_wire_encode_join_request(&core->scratch, core->options.my_id,
                                         core->options.my_address, core->options.incarnation);
    if (rc != 0)
        return rc;
    dr_action send = {.type = DR_ACTION_SEND, .node_id = core->join_target_id};
    snprintf(send.address, sizeof send.address, "%s", core->join_target);
    send.bytes = dr_buf_steal(&core->scratch, &send.len);
    core->last_join_us = core->now_us;
    core_trace(core, "join request to %s", core->join_target);
    return core_push_action(core, &send);
}

/** Members of the view the leader would install now: itself, then joiners. */
static uint32_t candidate_members(const dr_core *core, uint32_t *ids) {
    ids[0] = core->options.my_id;
    for (uint32_t i = 0; i < core->num_joiners; i++)
        ids[i + 1] = core->joiners[i].node_id;
    return core->num_joiners + 1;
}

static void build_view(const dr_core *core, const uint32_t *ids, uint32_t count, dr_view *view) {
    memset(view, 0, sizeof *view);
    view->vid = 0;
    view->num_members = count;
    for (uint32_t i = 0; i < count; i++) {
        view->member_ids[i] = ids[i];
        const char *address = i == 0 ? core->options.my_address : core->joiners[i - 1].address;
        snprintf(view->addresses[i], DR_ADDRESS_MAX, "%s", address);
        view->incarnations[i] =
            i == 0 ? core->options.incarnation : core->joiners[i - 1].incarnation;
    }
}

/** Sends the installed view to `to`, or to every other member if to is DR_NODE_NONE. */
static int send_view(dr_core *core, uint32_t to) {
    dr_buf_reset(&core->scratch);
    /* a joiner of a later view recomputes its layout from the previous one (and learns from it
     * which shard members are new: state transfer) */
    const dr_layout *assignment =
        core->has_previous_layout ? &core->previous_layout : &core->layout;
    int rc = dr_wire_encode_view_with_layout(&core->scratch, core->options.my_id, &core->view,
                                             &core->layout, assignment);
    for (uint32_t i = 0; rc == 0 && i < core->view.num_members; i++) {
        uint32_t member = core->view.member_ids[i];
        if (member != core->options.my_id && (to == DR_NODE_NONE || to == member))
            rc = core_send_scratch(core, member);
    }
    return rc;
}

/** Leader at start-up: installs view 0 if the layout over the joiners so far is adequate. */
static int try_install_initial_view(dr_core *core) {
    assert(core->state == CORE_LEADER_WAITING);
    uint32_t ids[DR_VIEW_MAX_MEMBERS];
    uint32_t count = candidate_members(core, ids);
    assert(count >= 1 && count <= DR_VIEW_MAX_MEMBERS);
    assert(ids[0] == core->options.my_id); /* the initial leader has rank 0 */
    dr_layout *layout = malloc(sizeof *layout);
    dr_view *view = malloc(sizeof *view);
    int rc = layout && view ? 0 : DR_ENOMEM;
    dr_err err;
    if (rc == 0)
        rc = dr_layout_compute(&core->options.layout, NULL, ids, count, layout, &err);
    if (rc == 0 && !layout->adequate) {
        core_trace(core, "%u members, layout not adequate yet", count);
    } else if (rc == 0) {
        build_view(core, ids, count, view);
        rc = core_install_view(core, view, layout, NULL);
        assert(rc != 0 || (core->have_view && core->view.vid == 0 && core->my_rank == 0));
        if (rc == 0)
            rc = send_view(core, DR_NODE_NONE);
        core->num_joiners = 0;
    }
    free(layout);
    free(view);
    return rc;
}

int membership_start(dr_core *core) {
    if (strcmp(core->options.my_address, core->options.contact_address) == 0) {
        core->state = CORE_LEADER_WAITING;
        core_trace(core, "initial leader at %s", core->options.my_address);
        return try_install_initial_view(core);
    }
    core->state = CORE_JOINING;
    core->join_target_id = DR_NODE_NONE;
    snprintf(core->join_target, sizeof core->join_target, "%s", core->options.contact_address);
    return send_join_request(core);
}

int membership_on_tick(dr_core *core) {
    if (core->state != CORE_JOINING)
        return 0;
    if (core->now_us - core->last_join_us < core->options.join_retry_us)
        return 0;
    /* No answer: start over at the contact, or, in turn, at the other members the leader named
     * when it accepted me (if it died after committing the view that adds me, any of them
     * sends me that view). */
    uint32_t turn = core->join_retries++ % (core->num_alt_contacts + 1);
    const char *contact =
        core->rejoin_contact[0] != '\0' ? core->rejoin_contact : core->options.contact_address;
    const char *target = turn == 0 ? contact : core->alt_contacts[turn - 1];
    snprintf(core->join_target, sizeof core->join_target, "%s", target);
    core->join_target_id = restart_node_at(core, target);
    core->redirects = 0;
    return send_join_request(core);
}

void membership_on_disconnect(dr_core *core, uint32_t peer_id) {
    if (core->state == CORE_JOINING)
        core_trace(core, "lost connection to %u while joining; will retry", peer_id);
}

uint32_t membership_joiners(const dr_core *core, dr_view *next) {
    uint32_t added = 0;
    for (uint32_t i = 0; i < core->num_joiners && next->num_members < DR_VIEW_MAX_MEMBERS; i++) {
        if (core_view_rank(core, core->joiners[i].node_id) >= 0)
            continue;
        next->member_ids[next->num_members] = core->joiners[i].node_id;
        snprintf(next->addresses[next->num_members], DR_ADDRESS_MAX, "%s",
                 core->joiners[i].address);
        next->incarnations[next->num_members] = core->joiners[i].incarnation;
        next->num_members++;
        added++;
    }
    return added;
}

int membership_after_view_change(dr_core *core) {
    uint32_t kept = 0;
    for (uint32_t i = 0; i < core->num_joiners; i++)
        if (core_view_rank(core, core->joiners[i].node_id) < 0)
            core->joiners[kept++] = core->joiners[i];
    core->num_joiners = kept;
    /* Every member that installs the view sends it to the members that joined in it, not only
     * the leader that queued them: that leader may be cut off right after its proposal was
     * accepted, and a takeover leader commits the same joiners without knowing them. A joiner
     * that never hears of its view would be suspected by the rest and, counted as lost, could
     * cost the group its majority. The joiner installs the first copy and ignores the others. */
    int rc = 0;
    for (uint32_t rank = 0; rank < core->view.num_members && rc == 0; rank++) {
        uint32_t member = core->view.member_ids[rank];
        if (!core->joined_now[rank] || member == core->options.my_id)
            continue;
        core_trace(core, "send view %d to joiner %u", core->view.vid, member);
        rc = send_view(core, member);
    }
    return rc;
}

void membership_free(dr_core *core) {
    free(core->joiners);
    core->joiners = NULL;
    core->num_joiners = 0;
}

/* Join replies go to the joiner's advertised address (core_send_scratch_to_address): a joiner
 * is not a member yet, and a refused one may even carry an id that is in use. */

static int reply(dr_core *core, const char *address, int refuse_code, const char *reason) {
    dr_buf_reset(&core->scratch);
    char contacts[DR_WIRE_MAX_CONTACTS][DR_ADDRESS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; core->have_view && i < core->view.num_members && n < DR_WIRE_MAX_CONTACTS;
         i++)
        if (core->view.member_ids[i] != core->options.my_id)
            memcpy(contacts[n++], core->view.addresses[i], DR_ADDRESS_MAX);
    int rc =
        refuse_code != 0
            ? dr_wire_encode_join_refused(&core->scratch, core->options.my_id, refuse_code, reason)
            : dr_wire_encode_join_accepted_contacts(&core->scratch, core->options.my_id, contacts,
                                                    n);
    return rc != 0 ? rc : core_send_scratch_to_address(core, address);
}

/** Encodes into scratch a JOIN_REDIRECT naming the node to join through. */
static int encode_redirect(dr_core *core, uint32_t leader_id, const char *address) {
    dr_buf_reset(&core->scratch);
    return dr_wire_encode_join_redirect(&core->scratch, core->options.my_id, leader_id, address);
}

static int redirect(dr_core *core, const char *to_address, uint32_t leader_id,
                    const char *address) {
    int rc = encode_redirect(core, leader_id, address);
    core_trace(core, "redirect joiner at %s to %s", to_address, address);
    return rc != 0 ? rc : core_send_scratch_to_address(core, to_address);
}

static int find_joiner(const dr_core *core, uint32_t node_id) {
    for (uint32_t i = 0; i < core->num_joiners; i++)
        if (core->joiners[i].node_id == node_id)
            return (int)i;
    return -1;
}

static int add_joiner(dr_core *core, uint32_t node_id, const char *address, uint64_t incarnation) {
    if (core->num_joiners + 1 >= DR_VIEW_MAX_MEMBERS)
        return DR_ERANGE;
    pending_joiner *grown = realloc(core->joiners, (core->num_joiners + 1) * sizeof *grown);
    if (grown == NULL)
        return DR_ENOMEM;
    core->joiners = grown;
    pending_joiner *joiner = &core->joiners[core->num_joiners++];
    joiner->node_id = node_id;
    snprintf(joiner->address, sizeof joiner->address, "%s", address);
    joiner->incarnation = incarnation;
    assert(node_id != core->options.my_id &&
           find_joiner(core, node_id) == (int)core->num_joiners - 1);
    return 0;
}

/**
 * A join request from `node_id`, a member of my view at the same address. If the member joined
 * in this view and the request comes from the incarnation the view admitted, it is a retry
 * whose VIEW was lost: send it again. Otherwise it is a new incarnation of a member that
 * crashed and restarted: it has none of the state its old row stands for, so it must not take
 * that row. It is refused for now (DR_EAGAIN: the joiner retries) until failure detection
 * removes the old incarnation; the retry then joins as a new member (with state transfer).
 * A view that does not know the member's incarnation (0: rebuilt by a total restart) admits no
 * retry: its members did not join in it.
 */
static int on_join_from_member(dr_core *core, uint32_t rank, uint64_t incarnation) {
    uint32_t node_id = core->view.member_ids[rank];
    if (core->joined_now[rank] && core->view.incarnations[rank] == incarnation)
        return send_view(core, node_id); /* a retry that crossed our VIEW: resend */
    if (core->view.incarnations[rank] == incarnation) {
        core_trace(core, "ignore a stale join request of member %u", node_id);
        return 0; /* a delayed copy from the admitted process, which has its view */
    }
    char reason[96];
    snprintf(reason, sizeof reason, "node id %u is still in view %d (old incarnation); retry",
             node_id, core->view.vid);
    DR_WARN(DR_LOGM_VIEWMANAGER, "node %u restarted: %s", node_id, reason);
    core_trace(core, "refuse joiner %u for now: still a member (restarted)", node_id);
    /* No suspicion on the request's word: it is unauthenticated (anyone can claim a member's
     * id and address) and would evict that member with one packet. The old incarnation goes
     * through ordinary failure detection; the new one keeps retrying meanwhile. */
    return reply(core, core->view.addresses[rank], DR_EAGAIN, reason);
}

/** Leader: a join request for a view not yet installed (bootstrap) or a later one. */
static int leader_on_join(dr_core *core, uint32_t node_id, const char *address,
                          uint64_t incarnation) {
    char reason[128];
    int view_rank = core->have_view ? core_view_rank(core, node_id) : -1;
    if (view_rank >= 0 && strcmp(core->view.addresses[view_rank], address) == 0)
        return on_join_from_member(core, (uint32_t)view_rank, incarnation);
    int pending = find_joiner(core, node_id);
    if (pending >= 0 && strcmp(core->joiners[pending].address, address) == 0) {
        /* a retry: idempotent. From another incarnation, the process restarted before any
         * view admitted it: the next view admits the one that asks now (a proposal already
         * made for the old one admits a process that no longer runs: it never gets that view
         * and is refused as a restart until failure detection removes it). */
        if (core->joiners[pending].incarnation != incarnation)
            core_trace(core, "joiner %u restarted before its view", node_id);
        core->joiners[pending].incarnation = incarnation;
        return reply(core, address, 0, NULL);
    }
    if (node_id == core->options.my_id || view_rank >= 0 || pending >= 0) {
        snprintf(reason, sizeof reason, "node id %u is already in use", node_id);
        DR_WARN(DR_LOGM_VIEWMANAGER, "refusing join from %s: %s", address, reason);
        core_trace(core, "refuse joiner %u (%s): duplicate id", node_id, address);
        return reply(core, address, DR_EEXIST, reason);
    }
    int rc = add_joiner(core, node_id, address, incarnation);
    if (rc != 0)
        return reply(core, address, rc, "the group is full");
    core_trace(core, "joiner %u at %s queued", node_id, address);
    DR_INFO(DR_LOGM_VIEWMANAGER, "node %u: queued joiner %u at %s", core->options.my_id, node_id,
            address);
    rc = reply(core, address, 0, NULL);
    if (rc == 0 && core->state == CORE_LEADER_WAITING)
        rc = try_install_initial_view(core);
    else if (rc == 0)
        core_trace(core, "joiner %u waits for the next view", node_id);
    return rc;
}

int membership_on_join_request(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_join_request msg;
    const char *why = NULL;
    if (dr_wire_decode_join_request(body, header->body_len, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    bool in_view = core->state == CORE_IN_VIEW;
    uint32_t leader = in_view ? viewchange_leader_rank(core) : 0;
    if (core->state == CORE_LEADER_WAITING || (in_view && leader == core->my_rank))
        return leader_on_join(core, header->sender_id, msg.address, msg.incarnation);
    int member = in_view ? core_view_rank(core, header->sender_id) : -1;
    if (member >= 0 && strcmp(core->view.addresses[member], msg.address) == 0) /* VIEW lost? */
        return on_join_from_member(core, (uint32_t)member, msg.incarnation);
    if (in_view)
        return redirect(core, msg.address, core->view.member_ids[leader],
                        core->view.addresses[leader]);
    if (core->state == CORE_JOINING)
        return redirect(core, msg.address, DR_NODE_NONE, core->options.contact_address);
    return 0;
}

int membership_redirect_to_leader(dr_core *core, uint32_t to_node) {
    assert(core->state == CORE_IN_VIEW);
    uint32_t leader = viewchange_leader_rank(core);
    int rc = encode_redirect(core, core->view.member_ids[leader], core->view.addresses[leader]);
    core_trace(core, "redirect restarting node %u to join through %s", to_node,
               core->view.addresses[leader]);
    return rc != 0 ? rc : core_send_scratch(core, to_node);
}

int membership_join_instead(dr_core *core, const char *address, uint32_t told_by) {
    /* The group restarted (or never stopped) without me. Waiting for a restart view would be
     * for ever; join it as a new member instead (state transfer). My logs' records go: the
     * restart cut the others' logs at trims I never applied, so mine may hold versions the
     * group discarded, and their tails would mislead a later restart (derecho-sim
     * --total-restart --partial-restarts found both). */
    DR_WARN(DR_LOGM_VIEWMANAGER,
            "node %u: the group runs without this node (told by node %u); joining it as a new "
            "member instead of restarting",
            core->options.my_id, told_by);
    core_trace(core, "restart abandoned: the group runs; join through %s", address);
    core->state = CORE_JOINING;
    core->redirects = 0;
    snprintf(core->rejoin_contact, sizeof core->rejoin_contact, "%s", address);
    return restart_abandon(core);
}

int membership_on_join_redirect(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_join_redirect msg;
    const char *why = NULL;
    if (dr_wire_decode_join_redirect(body, header->body_len, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    if (core->state == CORE_RESTARTING) {
        /* a member of a running group answered my total-restart report */
        int rc = membership_join_instead(core, msg.address, header->sender_id);
        if (rc != 0)
            return rc;
    }
    if (core->state != CORE_JOINING)
        return 0;
    return membership_join_through(core, msg.address, header->sender_id);
}

int membership_join_through(dr_core *core, const char *address, uint32_t told_by) {
    core->redirects++;
    core_trace(core, "redirected by %u to %s", told_by, address);
    snprintf(core->join_target, sizeof core->join_target, "%s", address);
    core->join_target_id = core->restart != NULL ? restart_node_at(core, address) : DR_NODE_NONE;
    if (core->redirects > 8) /* a loop of redirects: wait for the retry timer */
        return 0;
    return send_join_request(core);
}

int membership_on_join_refused(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_join_refused msg;
    const char *why = NULL;
    if (dr_wire_decode_join_refused(body, header->body_len, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    if (core->state != CORE_JOINING)
        return 0;
    if (msg.code == DR_EAGAIN) { /* my old incarnation is still a member: retry later */
        DR_WARN(DR_LOGM_VIEWMANAGER, "join deferred by node %u: %s", header->sender_id, msg.reason);
        core_trace(core, "join deferred: %s", msg.reason);
        core->last_join_us = core->now_us; /* the retry timer starts over */
        return 0;
    }
    core->state = CORE_JOIN_FAILED;
    DR_ERROR(DR_LOGM_VIEWMANAGER, "join refused by node %u: %s", header->sender_id, msg.reason);
    core_trace(core, "join refused: %s", msg.reason);
    dr_action action = {.type = DR_ACTION_JOIN_FAILED, .error = msg.code};
    size_t len = strlen(msg.reason);
    action.bytes = malloc(len + 1);
    if (action.bytes != NULL) {
        memcpy(action.bytes, msg.reason, len + 1);
        action.len = len;
    }
    return core_push_action(core, &action);
}

int membership_on_join_accepted(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_join_accepted msg;
    const char *why = NULL;
    if (dr_wire_decode_join_accepted(body, header->body_len, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    if (core->state == CORE_JOINING && msg.num_contacts > 0) {
        memcpy(core->alt_contacts, msg.contacts, sizeof msg.contacts[0] * msg.num_contacts);
        core->num_alt_contacts = msg.num_contacts;
    }
    if (core->state == CORE_JOINING) {
        core->redirects = 0;
        core->last_join_us = core->now_us;
        core_trace(core, "accepted by %u, waiting for the view", header->sender_id);
    }
    return 0;
}

/** Checks a received view against my own computation of its layout; installs it. */
static int install_received_view(dr_core *core, const dr_msg_view *msg, uint32_t from) {
    int my_rank = -1;
    for (uint32_t i = 0; i < msg->view.num_members; i++)
        if (msg->view.member_ids[i] == core->options.my_id)
            my_rank = (int)i;
    if (my_rank < 0)
        return core_reject(core, from, "VIEW does not include this node");
    if (msg->view.incarnations[my_rank] != core->options.incarnation) {
        /* a view that admitted an earlier process with my id and address (it crashed, I
         * restarted): taking its row would pass off my empty state as its state. Keep asking;
         * members refuse me until failure detection removes the old incarnation. */
        core_trace(core, "ignoring VIEW %d: it admitted another incarnation of node %u",
                   msg->view.vid, core->options.my_id);
        return 0;
    }
    if (msg->view.vid > 0 && !msg->has_assignment)
        return core_reject(core, from, "VIEW of a later view without its shard assignment");
    dr_layout *layout = malloc(sizeof *layout);
    if (layout == NULL)
        return DR_ENOMEM;
    const dr_layout *previous = msg->view.vid > 0 ? &msg->assignment : NULL;
    int rc = dr_layout_compute(&core->options.layout, previous, msg->view.member_ids,
                               msg->view.num_members, layout, NULL);
    if (rc != 0 || !layout->adequate || dr_layout_fingerprint(layout) != msg->layout_fingerprint)
        rc = core_reject(core, from, "VIEW layout differs from ours (layout config mismatch?)");
    else
        rc = core_install_view(core, &msg->view, layout, previous);
    free(layout);
    return rc;
}

int membership_on_view(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_view *msg = malloc(sizeof *msg);
    if (msg == NULL)
        return DR_ENOMEM;
    const char *why = NULL;
    int rc = dr_wire_decode_view(body, header->body_len, msg, &why);
    if (rc != 0) {
        rc = core_reject(core, header->sender_id, why);
    } else if (header->vid < 0) {
        rc = core_reject(core, header->sender_id, "VIEW without a view id");
    } else if (core->have_view && header->vid <= core->view.vid) {
        rc = 0; /* a duplicate (the leader resends on join retries) */
    } else if (core->state != CORE_JOINING) {
        core_trace(core, "ignoring VIEW %d (members install views by commit)", header->vid);
        rc = 0;
    } else {
        msg->view.vid = header->vid;
        rc = install_received_view(core, msg, header->sender_id);
    }
    free(msg);
    return rc;
}
