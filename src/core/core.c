/*
 * The group core's entry points (core.h): option checks, event dispatch, the action queue,
 * view installation and the buffer of frames that arrive before their view is installed.
 *
 * Every event runs to completion: decode and apply, then evaluate the SST predicates (deliver,
 * nulls, window), then flush the dirty SST fields as one push per peer. The action queue is a
 * ring that grows by doubling; the driver drains it after each event.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"
#include "derecho/log.h"

#define EARLY_MAX_FRAMES 65536u

void dr_core_options_default(dr_core_options *options) {
    memset(options, 0, sizeof *options);
    options->my_id = 0;
    snprintf(options->my_address, sizeof options->my_address, "127.0.0.1:23580");
    snprintf(options->contact_address, sizeof options->contact_address, "127.0.0.1:23580");
    options->layout.num_types = 1;
    snprintf(options->layout.types[0].name, DR_LAYOUT_NAME_MAX, "default");
    options->layout.types[0].num_subgroups = 1;
    dr_shard_policy_flexible(&options->layout.types[0].policy, 1, 1, DR_LAYOUT_MAX_SHARD_MEMBERS,
                             DR_MODE_ORDERED);
    options->window_size = 16;
    options->max_payload_size = 10240;
    options->max_smc_payload_size = 10240;
    options->block_size = 1u << 20;
    options->pipeline = DR_PIPELINE_CHAIN;
    options->join_retry_us = 1000000;
    options->early_buffer_bytes = 64u << 20;
    options->heartbeat_ms = 100;
    options->suspect_after_missed = 5;
    options->disable_partitioning_safety = false;
    for (uint32_t i = 0; i < DR_LAYOUT_MAX_SUBGROUPS; i++)
        options->restart.tails[i] = -1;
    options->restart.timeout_ms = 2000;
}

/* ---- actions ------------------------------------------------------------------------- */

void dr_action_free(dr_action *action) {
    if (action == NULL)
        return;
    free(action->bytes);
    free(action->view_info);
    dr_shared_bytes_release(action->body_owner);
    action->bytes = NULL;
    action->view_info = NULL;
    action->body = NULL;
    action->body_len = 0;
    action->body_owner = NULL;
}

int dr_action_flatten(dr_action *action) {
    if (action->body_owner == NULL)
        return 0;
    size_t len = action->len + action->body_len;
    uint8_t *flat = len > 0 ? malloc(len) : NULL;
    if (len > 0 && flat == NULL)
        return DR_ENOMEM;
    if (action->len > 0)
        memcpy(flat, action->bytes, action->len);
    if (action->body_len > 0)
        memcpy(flat + action->len, action->body, action->body_len);
    dr_action_free(action); /* SEND and DELIVER carry no view snapshot */
    action->bytes = flat;
    action->len = len;
    return 0;
}

const char *dr_action_type_name(dr_action_type type) {
    switch (type) {
    case DR_ACTION_SEND:
        return "SEND";
    case DR_ACTION_CONNECT:
        return "CONNECT";
    case DR_ACTION_DELIVER:
        return "DELIVER";
    case DR_ACTION_VIEW_INSTALLED:
        return "VIEW_INSTALLED";
    case DR_ACTION_WINDOW_OPEN:
        return "WINDOW_OPEN";
    case DR_ACTION_JOIN_FAILED:
        return "JOIN_FAILED";
    case DR_ACTION_STOPPED:
        return "STOPPED";
    case DR_ACTION_PERSISTED:
        return "PERSISTED";
    case DR_ACTION_TRUNCATE:
        return "TRUNCATE";
    case DR_ACTION_DISCARD_DURABLE:
        return "DISCARD_DURABLE";
    case DR_ACTION_SAVE_RESTART_VOTE:
        return "SAVE_RESTART_VOTE";
    }
    return "?";
}

static int grow_actions(dr_core *core) {
    uint32_t cap = core->cap_actions ? core->cap_actions * 2 : 64;
    dr_action *grown = malloc(cap * sizeof *grown);
    if (grown == NULL)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < core->num_actions; i++)
        grown[i] = core->actions[(core->action_head + i) % core->cap_actions];
    free(core->actions);
    core->actions = grown;
    core->cap_actions = cap;
    core->action_head = 0;
    return 0;
}

int core_push_action(dr_core *core, const dr_action *action) {
    if (core->num_actions == core->cap_actions && grow_actions(core) != 0) {
        dr_action copy = *action;
        dr_action_free(&copy);
        return DR_ENOMEM;
    }
    assert(core->num_actions < core->cap_actions);
    core->actions[(core->action_head + core->num_actions) % core->cap_actions] = *action;
    core->num_actions++;
    return 0;
}

bool dr_core_next_action(dr_core *core, dr_action *out) {
    if (core->num_actions == 0)
        return false;
    assert(core->action_head < core->cap_actions);
    *out = core->actions[core->action_head];
    core->action_head = (core->action_head + 1) % core->cap_actions;
    core->num_actions--;
    return true;
}

int core_send_bytes(dr_core *core, uint32_t node_id, const uint8_t *bytes, size_t len) {
    assert(node_id != core->options.my_id);
    dr_action action = {.type = DR_ACTION_SEND, .node_id = node_id, .len = len};
    action.bytes = malloc(len);
    if (action.bytes == NULL)
        return DR_ENOMEM;
    memcpy(action.bytes, bytes, len);
    return core_push_action(core, &action);
}

int core_send_shared(dr_core *core, uint32_t node_id, uint8_t *head, size_t head_len,
                     dr_shared_bytes *owner, const uint8_t *body, size_t body_len) {
    assert(node_id != core->options.my_id);
    dr_action action = {.type = DR_ACTION_SEND,
                        .node_id = node_id,
                        .bytes = head,
                        .len = head_len,
                        .body = body,
                        .body_len = body_len,
                        .body_owner = dr_shared_bytes_retain(owner)};
    return core_push_action(core, &action);
}

int core_send_scratch(dr_core *core, uint32_t node_id) {
    if (core->scratch.failed)
        return DR_ENOMEM;
    return core_send_bytes(core, node_id, core->scratch.data, core->scratch.len);
}

int core_send_scratch_to_address(dr_core *core, const char *address) {
    if (core->scratch.failed)
        return DR_ENOMEM;
    dr_action action = {.type = DR_ACTION_SEND, .node_id = DR_NODE_NONE};
    snprintf(action.address, sizeof action.address, "%s", address);
    action.bytes = malloc(core->scratch.len);
    if (action.bytes == NULL)
        return DR_ENOMEM;
    memcpy(action.bytes, core->scratch.data, core->scratch.len);
    action.len = core->scratch.len;
    return core_push_action(core, &action);
}

void core_trace(dr_core *core, const char *fmt, ...) {
    if (core->options.trace == NULL)
        return;
    char line[256];
    int prefix = snprintf(line, sizeof line, "node %u: ", core->options.my_id);
    assert(prefix > 0 && (size_t)prefix < sizeof line);
    va_list args;
    va_start(args, fmt);
    vsnprintf(line + prefix, sizeof line - (size_t)prefix, fmt, args);
    va_end(args);
    core->options.trace(core->options.trace_ctx, line);
}

int core_reject(dr_core *core, uint32_t from_node, const char *why) {
    core->stats.frames_rejected++;
    DR_WARN(DR_LOGM_SST, "node %u: rejected frame from node %u: %s", core->options.my_id, from_node,
            why);
    core_trace(core, "REJECT frame from %u: %s", from_node, why);
    return DR_EPROTO;
}

void core_stop(dr_core *core, int code, const char *reason) {
    if (core->state == CORE_STOPPED)
        return;
    core->state = CORE_STOPPED;
    if (code == 0)
        DR_INFO(DR_LOGM_VIEWMANAGER, "node %u stops: %s", core->options.my_id, reason);
    else
        DR_ERROR(DR_LOGM_VIEWMANAGER, "node %u stops: %s", core->options.my_id, reason);
    core_trace(core, "STOPPED (%d): %s", code, reason);
    dr_action action = {.type = DR_ACTION_STOPPED, .error = code};
    size_t len = strlen(reason);
    action.bytes = malloc(len + 1);
    if (action.bytes != NULL) {
        memcpy(action.bytes, reason, len + 1);
        action.len = len;
    }
    core_push_action(core, &action);
}

bool dr_core_stopped(const dr_core *core) {
    return core->state == CORE_STOPPED || core->state == CORE_JOIN_FAILED;
}

int core_view_rank(const dr_core *core, uint32_t node_id) {
    if (!core->have_view)
        return -1;
    for (uint32_t i = 0; i < core->view.num_members; i++)
        if (core->view.member_ids[i] == node_id)
            return (int)i;
    return -1;
}

/* ---- create / destroy ---------------------------------------------------------------- */

static int check_options(const dr_core_options *o, dr_err *err) {
    if (o->my_id == DR_NODE_NONE)
        return dr_err_set(err, DR_EINVAL, "my_id %u is reserved", o->my_id);
    if (o->my_address[0] == '\0' || o->contact_address[0] == '\0')
        return dr_err_set(err, DR_EINVAL, "my_address and contact_address are required");
    if (o->window_size == 0 || o->window_size > (1u << 20))
        return dr_err_set(err, DR_EINVAL, "window_size %u not in 1..2^20", o->window_size);
    if (o->max_smc_payload_size > o->max_payload_size)
        return dr_err_set(err, DR_EINVAL, "max_smc_payload_size exceeds max_payload_size");
    if (o->block_size == 0 || o->max_payload_size > 0x7fffffffu)
        return dr_err_set(err, DR_EINVAL, "block_size must be >= 1, payloads < 2 GiB");
    if (o->heartbeat_ms > 0 && (o->suspect_after_missed == 0 || o->suspect_after_missed > 10000))
        return dr_err_set(err, DR_EINVAL, "suspect_after_missed %u not in 1..10000",
                          o->suspect_after_missed);
    if (o->pipeline > DR_PIPELINE_TREE)
        return dr_err_set(err, DR_EINVAL, "unknown pipeline algorithm");
    return dr_layout_spec_check(&o->layout, err);
}

/** A nonzero incarnation from the node id and the start time (splitmix64's finaliser). */
static uint64_t derive_incarnation(uint32_t my_id, uint64_t now_us) {
    uint64_t x = ((uint64_t)my_id << 32) ^ now_us ^ 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x != 0 ? x : 1;
}

int dr_core_create(const dr_core_options *options, uint64_t now_us, dr_core **out, dr_err *err) {
    int rc = check_options(options, err);
    if (rc != 0)
        return rc;
    dr_core *core = calloc(1, sizeof *core);
    if (core == NULL)
        return dr_err_set(err, DR_ENOMEM, "no memory for the core");
    core->options = *options;
    core->now_us = now_us;
    if (core->options.incarnation == 0)
        core->options.incarnation = derive_incarnation(options->my_id, now_us);
    dr_buf_init(&core->scratch, 0);
    core->limits = (dr_wire_limits){.max_payload_bytes = options->max_payload_size,
                                    .max_block_bytes = options->block_size,
                                    .max_subgroups = DR_LAYOUT_MAX_SUBGROUPS,
                                    .max_senders = DR_LAYOUT_MAX_SHARD_MEMBERS};
    persistence_init(core);
    core->options.restart.saved_view = NULL; /* borrowed: restart_start copies it */
    rc = options->restart.saved_view != NULL ? restart_start(core, &options->restart)
                                             : membership_start(core);
    if (rc != 0) {
        dr_core_destroy(core);
        return dr_err_set(err, rc, "starting membership: %s", dr_strerror(rc));
    }
    *out = core;
    return 0;
}

static void free_early(dr_core *core) {
    for (uint32_t i = 0; i < core->num_early; i++)
        free(core->early[i].bytes);
    free(core->early);
    core->early = NULL;
    core->num_early = core->cap_early = 0;
    core->early_bytes = 0;
}

void dr_core_destroy(dr_core *core) {
    if (core == NULL)
        return;
    dr_action action;
    while (dr_core_next_action(core, &action))
        dr_action_free(&action);
    free(core->actions);
    multicast_end_view(core);
    dr_sst_destroy(core->sst);
    membership_free(core);
    restart_free(core);
    viewchange_free(core);
    free_early(core);
    dr_buf_free(&core->scratch);
    free(core);
}

/* ---- after every event: predicates and pushes ---------------------------------------- */

static void sst_send(void *ctx, uint32_t rank, const uint8_t *bytes, size_t len) {
    dr_core *core = ctx;
    assert(rank < core->view.num_members);
    core->stats.sst_pushes++;
    core_send_bytes(core, core->view.member_ids[rank], bytes, len);
}

static void flush_now(dr_core *core) {
    if (!core->have_view || core->state != CORE_IN_VIEW)
        return;
    if (core->num_resends > 0 && !core->vc.wedged)
        viewchange_drain_resends(core);
    dr_sst_evaluate(core->sst);
    viewchange_step(core);
    if (core->state != CORE_IN_VIEW)
        return;
    dr_sst_evaluate(core->sst);
    /* out of memory keeps the fields dirty: the next flush retries them */
    if (dr_sst_flush(core->sst, core->options.my_id, core->view.vid, sst_send, core) >= 0)
        assert(!dr_sst_has_dirty(core->sst));
}

static void after_event(dr_core *core) {
    if (!core->options.defer_flush)
        flush_now(core);
}

void core_after_event(dr_core *core) {
    after_event(core);
}

void dr_core_flush(dr_core *core, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    flush_now(core);
}

/* ---- view installation --------------------------------------------------------------- */

static int emit_view_installed(dr_core *core) {
    dr_action action = {.type = DR_ACTION_VIEW_INSTALLED};
    action.view_info = malloc(sizeof *action.view_info);
    if (action.view_info == NULL)
        return DR_ENOMEM;
    action.view_info->view = core->view;
    action.view_info->layout = core->layout;
    action.view_info->my_rank = core->my_rank;
    action.view_info->has_previous = core->has_previous_layout;
    action.view_info->previous_layout = core->previous_layout;
    return core_push_action(core, &action);
}

/** One connection per pair: connect to lower ids (a CONNECT to a connected peer is a no-op). */
static int emit_connects(dr_core *core) {
    for (uint32_t i = 0; i < core->view.num_members; i++) {
        if (core->view.member_ids[i] >= core->options.my_id)
            continue;
        dr_action action = {.type = DR_ACTION_CONNECT, .node_id = core->view.member_ids[i]};
        snprintf(action.address, sizeof action.address, "%s", core->view.addresses[i]);
        int rc = core_push_action(core, &action);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void trace_view(dr_core *core) {
    char members[200] = "";
    size_t used = 0;
    for (uint32_t i = 0; i < core->view.num_members && used + 12 < sizeof members; i++)
        used += (size_t)snprintf(members + used, sizeof members - used, "%s%u", i ? " " : "",
                                 core->view.member_ids[i]);
    core_trace(core, "view %d installed, members [%s], my rank %u", core->view.vid, members,
               core->my_rank);
}

static void replay_early_frames(dr_core *core);

static bool in_some_shard(const dr_layout *layout, uint32_t node_id) {
    for (uint32_t sg = 0; sg < layout->num_subgroups; sg++)
        if (dr_layout_find_shard(layout, sg, node_id, NULL) >= 0)
            return true;
    return false;
}

/**
 * Which members of `view` joined in it: not in the view installed here before, or (first view
 * at this node) not in any shard of the previous layout the leader sent (view 0: everyone).
 */
static void mark_joined_now(dr_core *core, const dr_view *view, const dr_layout *previous) {
    for (uint32_t i = 0; i < view->num_members; i++) {
        uint32_t id = view->member_ids[i];
        bool known;
        if (core->have_view)
            known = core_view_rank(core, id) >= 0;
        else if (previous != NULL)
            known = in_some_shard(previous, id);
        else
            known = false;
        core->joined_now[i] = !known;
    }
}

int core_install_view(dr_core *core, const dr_view *view, const dr_layout *layout,
                      const dr_layout *previous) {
    assert(layout->adequate);
    core->has_previous_layout = previous != NULL;
    if (previous != NULL && previous != &core->previous_layout)
        core->previous_layout = *previous; /* before core->layout, which it may alias */
    assert(!core->have_view || view->vid > core->view.vid);
    mark_joined_now(core, view, previous);
    multicast_end_view(core);
    dr_sst_destroy(core->sst);
    core->sst = NULL;
    core->view = *view;
    core->layout = *layout;
    core->have_view = true;
    int rank = core_view_rank(core, core->options.my_id);
    assert(rank >= 0);
    core->my_rank = (uint32_t)rank;
    assert(core->view.member_ids[core->my_rank] == core->options.my_id);
    int rc = dr_sst_create(&core->view, &core->layout, core->my_rank, &core->sst);
    if (rc == 0)
        rc = multicast_start_view(core);
    if (rc == 0)
        rc = persistence_start_view(core);
    if (rc != 0)
        return rc;
    core->state = CORE_IN_VIEW;
    bool leaving = core->vc.leaving;
    free(core->vc.proposal);
    free(core->vc.best_report);
    memset(&core->vc, 0, sizeof core->vc);
    core->vc.leaving = leaving;
    failure_start_view(core);
    if (leaving) {
        dr_sst_set(core->sst, DR_SST_LEAVING, 1);
        viewchange_wedge(core, "leaving");
    }
    trace_view(core);
    DR_INFO(DR_LOGM_VIEWMANAGER, "node %u installed view %d with %u members", core->options.my_id,
            view->vid, view->num_members);
    rc = emit_view_installed(core);
    if (rc == 0)
        rc = emit_connects(core);
    if (rc == 0)
        replay_early_frames(core);
    return rc;
}

/* ---- frames for views not yet installed ---------------------------------------------- */

static int buffer_early(dr_core *core, uint32_t from_node, const uint8_t *bytes, size_t len) {
    if (core->num_early >= EARLY_MAX_FRAMES ||
        core->early_bytes + len > core->options.early_buffer_bytes)
        return core_reject(core, from_node, "too many frames for a view not installed yet");
    if (core->num_early == core->cap_early) {
        uint32_t cap = core->cap_early ? core->cap_early * 2 : 16;
        early_frame *grown = realloc(core->early, cap * sizeof *grown);
        if (grown == NULL)
            return DR_ENOMEM;
        core->early = grown;
        core->cap_early = cap;
    }
    assert(len >= DR_WIRE_HEADER_BYTES); /* its header was checked */
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return DR_ENOMEM;
    memcpy(copy, bytes, len);
    core->early[core->num_early++] =
        (early_frame){.from_node = from_node, .bytes = copy, .len = len};
    core->early_bytes += len;
    core->stats.frames_buffered++;
    return 0;
}

static int dispatch(dr_core *core, const dr_wire_header *header, const uint8_t *bytes, size_t len);

/** Feeds buffered frames of the new view back in; keeps those of still later views. */
static void replay_early_frames(dr_core *core) {
    early_frame *frames = core->early;
    uint32_t count = core->num_early;
    core->early = NULL;
    core->num_early = core->cap_early = 0;
    core->early_bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        dr_wire_header header;
        int rc = dr_wire_decode_header(frames[i].bytes, frames[i].len, &header, NULL);
        assert(rc == 0); /* checked before it was buffered */
        (void)rc;
        dispatch(core, &header, frames[i].bytes, frames[i].len);
        free(frames[i].bytes);
    }
    free(frames);
}

/* ---- events -------------------------------------------------------------------------- */

static bool is_view_traffic(uint8_t type) {
    return type == DR_MSG_SST_PUSH || type == DR_MSG_DATA || type == DR_MSG_NULLS ||
           type == DR_MSG_BLOCK;
}

static int on_sst_push(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_sst_push push;
    const char *why = NULL;
    if (dr_wire_decode_sst_push(body, header->body_len, &push, &why) != 0)
        return core_reject(core, header->sender_id, why);
    if (push.row >= core->view.num_members || core->view.member_ids[push.row] != header->sender_id)
        return core_reject(core, header->sender_id, "SST_PUSH for a row its sender does not own");
    for (uint32_t i = 0; i < push.num_entries; i++) {
        dr_sst_entry entry;
        dr_wire_sst_entry(&push, i, &entry);
        if (dr_sst_apply(core->sst, push.row, entry.field, entry.value) < 0)
            return core_reject(core, header->sender_id, "SST_PUSH field out of range");
    }
    return 0;
}

static int dispatch_view_traffic(dr_core *core, const dr_wire_header *header, const uint8_t *bytes,
                                 size_t len) {
    if (!core->have_view || header->vid > core->view.vid)
        return buffer_early(core, header->sender_id, bytes, len);
    if (header->vid < core->view.vid) {
        core_trace(core, "drop %s of old view %d", dr_wire_type_name(header->type), header->vid);
        return 0;
    }
    if (core_view_rank(core, header->sender_id) < 0)
        return core_reject(core, header->sender_id, "view traffic from a non-member");
    if (core->vc.wedged && header->type != DR_MSG_SST_PUSH) {
        core_trace(core, "wedged: drop %s", dr_wire_type_name(header->type));
        return 0; /* RECEIVED is frozen; what is beyond the trim is re-sent */
    }
    const uint8_t *body = bytes + DR_WIRE_HEADER_BYTES;
    switch (header->type) {
    case DR_MSG_SST_PUSH:
        return on_sst_push(core, header, body);
    case DR_MSG_DATA:
        return multicast_on_data(core, header, body);
    case DR_MSG_NULLS:
        return multicast_on_nulls(core, header, body);
    default:
        return multicast_on_block(core, header, bytes, len);
    }
}

static int on_heartbeat(dr_core *core, const dr_wire_header *header) {
    if (header->body_len != 0)
        return core_reject(core, header->sender_id, "HEARTBEAT with a body");
    if (core->have_view && header->vid >= 0 && header->vid < core->view.vid)
        viewchange_on_laggard(core, header->sender_id, header->vid);
    return 0;
}

static int dispatch(dr_core *core, const dr_wire_header *header, const uint8_t *bytes, size_t len) {
    const uint8_t *body = bytes + DR_WIRE_HEADER_BYTES;
    if (is_view_traffic(header->type))
        return dispatch_view_traffic(core, header, bytes, len);
    switch (header->type) {
    case DR_MSG_HEARTBEAT:
        return on_heartbeat(core, header);
    case DR_MSG_PROPOSAL:
        return viewchange_on_proposal(core, header, body);
    case DR_MSG_JOIN_REQUEST:
        return membership_on_join_request(core, header, body);
    case DR_MSG_JOIN_REDIRECT:
        return membership_on_join_redirect(core, header, body);
    case DR_MSG_JOIN_REFUSED:
        return membership_on_join_refused(core, header, body);
    case DR_MSG_JOIN_ACCEPTED:
        return membership_on_join_accepted(core, header, body);
    case DR_MSG_VIEW:
        return membership_on_view(core, header, body);
    case DR_MSG_RESTART_REQUEST:
    case DR_MSG_RESTART_PREPARE:
    case DR_MSG_RESTART_ACK:
    case DR_MSG_RESTART_COMMIT:
        return restart_on_message(core, header, body);
    default:
        return core_reject(core, header->sender_id, "unexpected message type");
    }
}

int dr_core_on_message(dr_core *core, uint32_t from_node, const uint8_t *bytes, size_t len,
                       uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    dr_wire_header header;
    const char *why = NULL;
    if (dr_wire_decode_header(bytes, len, &header, &why) != 0)
        return core_reject(core, from_node, why);
    /* join messages may carry my id: that is the duplicate-id case the leader refuses */
    if (header.sender_id == core->options.my_id && is_view_traffic(header.type))
        return core_reject(core, from_node, "frame claims to come from this node");
    bool relayed = header.type == DR_MSG_BLOCK; /* relays forward the sender's frame as is */
    if (from_node != DR_NODE_NONE && from_node != header.sender_id && !relayed)
        return core_reject(core, from_node, "header sender differs from the connection's node");
    if (core->state == CORE_JOIN_FAILED || core->state == CORE_STOPPED)
        return 0;
    if (core->state == CORE_IN_VIEW) {
        /* join messages carry no view: a restarted process asking to join under a member's
         * id is no sign of life of the member's old incarnation */
        if (header.vid != DR_WIRE_NO_VIEW)
            failure_heard_from(core, header.sender_id);
        int rank = header.vid == core->view.vid ? core_view_rank(core, header.sender_id) : -1;
        if (rank >= 0)
            core->joined_now[rank] = false; /* it installed this view: never a retry now */
    }
    int rc = dispatch(core, &header, bytes, len);
    after_event(core);
    return rc;
}

int dr_core_on_shared_message(dr_core *core, uint32_t from_node, dr_shared_bytes *frame,
                              uint64_t now_us) {
    core->incoming = frame; /* relay_block shares it */
    int rc = dr_core_on_message(core, from_node, dr_shared_bytes_data(frame),
                                dr_shared_bytes_len(frame), now_us);
    core->incoming = NULL;
    return rc;
}

int dr_core_on_tick(dr_core *core, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    if (core->state == CORE_STOPPED)
        return 0;
    int rc = membership_on_tick(core);
    if (rc == 0)
        rc = restart_on_tick(core);
    if (rc == 0)
        rc = failure_on_tick(core);
    after_event(core);
    return rc;
}

int dr_core_send(dr_core *core, uint32_t subgroup, const void *payload, size_t len,
                 dr_delivery_mode mode, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    if (payload == NULL && len > 0)
        return DR_EINVAL;
    if (core->state == CORE_STOPPED)
        return DR_ECLOSED;
    if (core->leave_requested)
        return DR_ESTATE; /* leaving: only what was accepted before is flushed */
    if (len > core->options.max_payload_size)
        return DR_ETOOBIG;
    uint8_t *copy = len > 0 ? malloc(len) : NULL;
    if (len > 0 && copy == NULL)
        return DR_ENOMEM;
    if (len > 0)
        memcpy(copy, payload, len);
    int rc = multicast_send(core, subgroup, copy, len, mode);
    if (rc != 0)
        free(copy);
    after_event(core);
    return rc;
}

int dr_core_send_owned(dr_core *core, uint32_t subgroup, uint8_t *payload, size_t len,
                       dr_delivery_mode mode, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    if (payload == NULL && len > 0)
        return DR_EINVAL;
    if (core->state == CORE_STOPPED)
        return DR_ECLOSED;
    if (core->leave_requested)
        return DR_ESTATE; /* leaving: only what was accepted before is flushed */
    int rc = multicast_send(core, subgroup, payload, len, mode);
    after_event(core);
    return rc;
}

void dr_core_on_connect(dr_core *core, uint32_t peer_id, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    core_trace(core, "connected to %u", peer_id);
}

void dr_core_on_disconnect(dr_core *core, uint32_t peer_id, uint64_t incarnation, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    membership_on_disconnect(core, peer_id);
    int rank = core_view_rank(core, peer_id);
    if (rank < 0 || core->state != CORE_IN_VIEW)
        return;
    uint64_t member = core->view.incarnations[rank];
    if (incarnation != 0 && member != 0 && incarnation != member) {
        core_trace(core,
                   "view %d: a connection to an earlier process of member %u broke: "
                   "not a sign about the member",
                   core->view.vid, peer_id);
        return;
    }
    failure_on_disconnect(core, (uint32_t)rank);
    after_event(core);
}

int dr_core_leave(dr_core *core, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    if (core->state != CORE_IN_VIEW)
        return DR_ESTATE;
    core->leave_requested = true; /* LEAVING follows once my sends are delivered */
    after_event(core);
    return 0;
}

void dr_core_consumed(dr_core *core, uint32_t subgroup, int64_t version, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    if (!core->options.count_consumption || core->state != CORE_IN_VIEW || version < 0 ||
        subgroup >= core->layout.num_subgroups || (version >> 32) != core->view.vid)
        return;
    mc_shard *shard = &core->shards[subgroup];
    int64_t seq = version & 0xffffffff;
    if (!shard->active || shard->mode != DR_MODE_ORDERED || seq <= shard->consumed ||
        seq > shard->last_handed)
        return;
    shard->consumed = seq;
    multicast_publish_delivered(core, shard);
    after_event(core);
}

void dr_core_report_failure(dr_core *core, uint32_t node_id, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    int rank = core_view_rank(core, node_id);
    if (rank < 0 || core->state != CORE_IN_VIEW)
        return;
    failure_suspect(core, (uint32_t)rank, "reported by the application");
    after_event(core);
}

uint32_t dr_core_peek_sender(const uint8_t *bytes, size_t len) {
    dr_wire_header header;
    if (dr_wire_decode_header(bytes, len, &header, NULL) != 0)
        return DR_NODE_NONE;
    return header.sender_id;
}

int32_t dr_core_view_id(const dr_core *core) {
    return core->have_view ? core->view.vid : -1;
}

uint32_t dr_core_my_id(const dr_core *core) {
    return core->options.my_id;
}

uint64_t dr_core_incarnation(const dr_core *core) {
    return core->options.incarnation;
}

const dr_view *dr_core_view(const dr_core *core) {
    return core->have_view ? &core->view : NULL;
}

const dr_layout *dr_core_layout(const dr_core *core) {
    return core->have_view ? &core->layout : NULL;
}

void dr_core_get_stats(const dr_core *core, dr_core_stats *out) {
    *out = core->stats;
}
