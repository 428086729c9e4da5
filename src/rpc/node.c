/*
 * dr_rpc_node: a group member serving replicated objects (include/derecho/rpc.h).
 *
 * Threads:
 *   - network thread (the runtime's hooks): replies are matched to pending calls at once;
 *     p2p requests are queued for the worker pool; view queries from outside clients are
 *     answered from the node's copy of its latest view. Never blocks.
 *   - delivery thread (dr_group callbacks): every ordered call runs here, in delivery order;
 *     the member's reply goes point to point to the caller (or straight into the caller's own
 *     results when the caller is this node). View upcalls update the node's view copy and end
 *     calls waiting on departed nodes with DR_EREMOVED.
 *   - worker pool (p2p_workers threads): p2p handlers, then their replies.
 *   - application threads: calls (dr_rpc_ordered_call, dr_rpc_p2p_*), which block only on
 *     their own results, the multicast window or the p2p window.
 */
#include "derecho/rpc.h"

#include "base/shared_bytes.h"
#include "derecho/log.h"
#include "rpc/calls.h"
#include "rpc/wire.h"
#include "runtime/runtime.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(RPC_T_P2P_REQUEST >= DR_RUNTIME_TYPE_APP_MIN, "rpc frame types above the core's");

enum {
    DEFAULT_WORKERS = 4,
    MAX_WORKERS = 64,
    MAX_QUEUED_JOBS = 4096,      /* p2p requests waiting for a worker; beyond: DR_EAGAIN */
    GROUP_READY_WAIT_MS = 5000,  /* hooks that fire before dr_group_create returned */
    STATE_CHUNK_BYTES = 1 << 20, /* state transfer frames carry this much state each */
    MAX_INCOMING_STATES = 4,     /* state transfers buffered at once (one per view, usually) */
    STATE_CHECK_MS = 1000,       /* a waiting new member re-checks that its source is alive */
    STATE_SEND_WAIT_MS = 60000,  /* a source gives up on a new member whose queue stays full */
};

/* A state transfer arriving (network thread) for a new member's delivery thread. */
typedef struct incoming_state {
    bool used;
    bool complete; /* all `total` bytes arrived */
    int error;     /* nonzero: the transfer failed (sender's status, or a bad chunk) */
    uint32_t from;
    int32_t vid;
    uint32_t subgroup;
    uint64_t total, received;
    uint8_t *bytes; /* total bytes (malloc), NULL until the first chunk */
} incoming_state;

typedef struct method_entry {
    uint32_t id;
    dr_rpc_kind kind;
    dr_rpc_access access;
    dr_rpc_handler handler;
    const char *name;
} method_entry;

typedef struct type_entry {
    dr_rpc_type type;
    method_entry *methods; /* sorted by id */
    size_t num_methods;
    size_t max_ordered_args; /* profile max_payload_size minus the call header */
    size_t max_reply;        /* profile max_reply_payload_size (clamped to the frame limit) */
} type_entry;

/* A p2p request waiting for a worker: the frame as received. */
typedef struct p2p_job {
    struct p2p_job *next;
    uint32_t peer;
    bool from_client;
    bool from_admin;
    uint64_t arrival_us;
    uint8_t *bytes; /* the request frame payload (owned) */
    size_t len;
    dr_net_msg *msg; /* the block bytes point into, if it came from the network */
} p2p_job;

struct dr_rpc_node {
    _Atomic(dr_group *) group; /* set once dr_group_create returned */
    uint32_t my_id;
    rpc_registry *reg;
    dr_layout_spec spec;
    type_entry types[DR_LAYOUT_MAX_TYPES];
    size_t num_types;
    uint32_t p2p_window;
    uint64_t max_p2p_request, max_p2p_reply;
    uint64_t max_state;       /* max_state_transfer_size */
    size_t max_ordered_reply; /* largest over the types */
    atomic_size_t frame_room; /* largest reply one transport frame carries (SIZE_MAX: unknown) */
    dr_group_callbacks app;
    /* options' state-transfer progress hook (NULL: none) and its context */
    void (*on_state_chunk)(void *ctx, uint32_t peer, uint32_t subgroup, bool sent, uint64_t done,
                           uint64_t total);
    void *state_chunk_ctx;
    _Atomic bool closing;

    pthread_mutex_t lock;   /* guards view, group readiness and the job queue */
    pthread_cond_t changed; /* view installed, group ready */
    pthread_cond_t job_ready;
    dr_group_view *view; /* latest view seen on the delivery thread (owned) */
    p2p_job *job_head, *job_tail;
    size_t queued_jobs;
    incoming_state incoming[MAX_INCOMING_STATES]; /* state transfers (guarded by lock) */
    uint32_t awaited_source;  /* the source a new member waits for, else DR_NODE_NONE */
    bool awaited_source_down; /* its connection went down while waited for */
    bool state_missing[DR_LAYOUT_MAX_SUBGROUPS]; /* delivery thread only: transfer failed */
    bool workers_stopping;
    pthread_t workers[MAX_WORKERS];
    uint32_t num_workers;
};

/* ---- helpers -------------------------------------------------------------------------------- */

uint32_t dr_rpc_method_id(const char *name) {
    uint32_t hash = 2166136261u;
    for (const char *c = name; c && *c; c++)
        hash = (hash ^ (uint8_t)*c) * 16777619u;
    return hash;
}

int dr_rpc_decode_logged_call(const uint8_t *bytes, size_t len, dr_rpc_logged_call *out) {
    rpc_ordered_msg call;
    if (rpc_decode_ordered(bytes, len, &call) != DR_OK)
        return DR_EPROTO;
    *out = (dr_rpc_logged_call){.caller_id = call.caller_id,
                                .method_id = call.method_id,
                                .args = call.args,
                                .args_len = call.args_len};
    return DR_OK;
}

static uint64_t now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

static void deadline_after(struct timespec *deadline, int timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

static int compare_methods(const void *a, const void *b) {
    uint32_t x = ((const method_entry *)a)->id, y = ((const method_entry *)b)->id;
    return x < y ? -1 : x > y;
}

static const method_entry *find_method(const type_entry *type, uint32_t id) {
    method_entry key = {.id = id};
    return bsearch(&key, type->methods, type->num_methods, sizeof key, compare_methods);
}

/* The type of subgroup id `subgroup` (ids run over the types in order), or NULL. */
static const type_entry *type_of_subgroup(const dr_rpc_node *node, uint32_t subgroup) {
    uint32_t first = 0;
    for (size_t t = 0; t < node->num_types; t++) {
        if (subgroup < first + node->spec.types[t].num_subgroups)
            return &node->types[t];
        first += node->spec.types[t].num_subgroups;
    }
    return NULL;
}

/* A configured reply limit, clamped to what one frame carries (limits are immutable). */
static size_t reply_limit(dr_rpc_node *node, uint64_t configured) {
    size_t room = atomic_load(&node->frame_room);
    return configured < room ? (size_t)configured : room;
}

/* The group, waiting briefly if a hook fired before dr_group_create returned. */
static dr_group *group_of(dr_rpc_node *node) {
    dr_group *group = atomic_load(&node->group);
    if (group)
        return group;
    struct timespec deadline;
    deadline_after(&deadline, GROUP_READY_WAIT_MS);
    pthread_mutex_lock(&node->lock);
    while (!(group = atomic_load(&node->group)) && !atomic_load(&node->closing) &&
           pthread_cond_timedwait(&node->changed, &node->lock, &deadline) == 0) {
    }
    pthread_mutex_unlock(&node->lock);
    return group;
}

/* Sends an encoded frame to `peer` without copying it: the transport takes the buffer (frame is
 * left empty, also on failure). Returns as dr_group_send_frame. */
static int send_frame_taken(dr_group *group, uint32_t peer, uint16_t type, dr_buf *frame) {
    size_t len = 0;
    uint8_t *bytes = dr_buf_steal(frame, &len);
    if (!bytes)
        return DR_ENOMEM;
    return dr_group_send_frame_split(group, peer, type, NULL, 0, bytes, len, dr_net_free_payload,
                                     NULL);
}

/* Sends a reply frame to `peer`, or fills my own pending call when the caller is me. */
static void send_reply(dr_rpc_node *node, uint16_t type, uint32_t peer, uint64_t request_id,
                       int status, const dr_buf *reply) {
    const uint8_t *bytes = status == DR_OK || !reply->failed ? reply->data : NULL;
    size_t len = bytes ? reply->len : 0;
    if (peer == node->my_id) {
        rpc_reply_msg local = {
            .request_id = request_id, .status = status, .bytes = bytes, .len = len};
        rpc_reply_arrived(node->reg, type == RPC_T_ORDERED_REPLY, peer, &local, SIZE_MAX);
        return;
    }
    dr_buf frame;
    dr_buf_init(&frame, 0);
    int rc = rpc_encode_reply(&frame, request_id, status, bytes, len);
    dr_group *group = group_of(node);
    if (rc == DR_OK && group)
        rc = send_frame_taken(group, peer, type, &frame);
    if (rc)
        DR_WARN(DR_LOGM_RPC, "reply to %" PRIu32 " for request %" PRIu64 " not sent: %s", peer,
                request_id, dr_strerror(rc));
    dr_buf_free(&frame);
}

/* Runs a handler with a reply buffer limited to max_reply; maps an overflow to DR_ETOOBIG. */
static int run_handler(const type_entry *type, const method_entry *method,
                       const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                       size_t max_reply, dr_buf *reply) {
    dr_buf_init(reply, max_reply ? max_reply : 1);
    int status = method->handler(type->type.ctx, info, args, len, reply);
    if (reply->failed || reply->len > max_reply) {
        dr_buf_reset(reply);
        reply->failed = true;
        return DR_ETOOBIG;
    }
    return status > 0 ? DR_EINVAL : status;
}

/* ---- ordered calls (delivery thread) ------------------------------------------------------- */

static const dr_shard_layout *shard_of(const dr_group_view *view, uint32_t subgroup,
                                       uint32_t shard) {
    if (!view || subgroup >= view->layout.num_subgroups ||
        shard >= view->layout.subgroups[subgroup].num_shards)
        return NULL;
    return &view->layout.subgroups[subgroup].shards[shard];
}

static void on_deliver(void *ctx, const dr_message *message) {
    dr_rpc_node *node = ctx;
    if (atomic_load(&node->closing))
        return;
    rpc_ordered_msg call;
    if (rpc_decode_ordered(message->bytes, message->len, &call) ||
        call.caller_id != message->sender_id) {
        DR_WARN(DR_LOGM_RPC, "delivery %" PRId64 " from %" PRIu32 " is not an rpc call; skipped",
                message->version, message->sender_id);
        return;
    }
    /* the view that delivers this call: the delivery thread alone writes node->view */
    const dr_shard_layout *shard = shard_of(node->view, message->subgroup, message->shard);
    if (call.caller_id == node->my_id)
        rpc_results_delivered(node->reg, call.request_id, message->version,
                              shard ? shard->member_ids : NULL, shard ? shard->num_members : 0);
    const type_entry *type = type_of_subgroup(node, message->subgroup);
    const method_entry *method = type ? find_method(type, call.method_id) : NULL;
    dr_buf reply;
    dr_buf_init(&reply, 1);
    int status = DR_ENOTFOUND;
    if (message->subgroup < DR_LAYOUT_MAX_SUBGROUPS && node->state_missing[message->subgroup])
        status = DR_ESTATE; /* this replica never received the shard's state: it is leaving */
    else if (method && method->kind != DR_RPC_ORDERED)
        status = DR_EINVAL;
    else if (method) {
        dr_rpc_call_info info = {.caller_id = call.caller_id,
                                 .subgroup = message->subgroup,
                                 .shard = message->shard,
                                 .ordered = true,
                                 .version = message->version,
                                 .timestamp_us = message->timestamp_us};
        status =
            run_handler(type, method, &info, call.args, call.args_len, type->max_reply, &reply);
    }
    send_reply(node, RPC_T_ORDERED_REPLY, call.caller_id, call.request_id, status, &reply);
    dr_buf_free(&reply);
}

/*
 * A total restart hands back the log of a durable shard (docs/persistence.md "Replay"), before
 * the restart view: the state a joiner saved (restored through the type's `restore`), then each
 * logged ordered call, re-executed with its reply discarded. The caller id comes from the call
 * itself (the log keeps no sender); nothing is sent and no pending call is touched.
 */
static int on_replay(void *ctx, const dr_message *message, bool base) {
    dr_rpc_node *node = ctx;
    if (atomic_load(&node->closing))
        return DR_ECLOSED;
    const type_entry *type = type_of_subgroup(node, message->subgroup);
    if (!type)
        return DR_OK;
    if (base) {
        if (!type->type.restore)
            return DR_OK;
        int rc =
            type->type.restore(type->type.ctx, message->subgroup, message->bytes, message->len);
        return rc > 0 ? DR_EINVAL : rc;
    }
    rpc_ordered_msg call;
    if (rpc_decode_ordered(message->bytes, message->len, &call)) {
        DR_WARN(DR_LOGM_RPC, "replay: version %" PRId64 " is not an rpc call; skipped",
                message->version);
        return DR_OK;
    }
    const method_entry *method = find_method(type, call.method_id);
    if (!method || method->kind != DR_RPC_ORDERED)
        return DR_OK; /* refused at delivery too: no effect */
    dr_rpc_call_info info = {.caller_id = call.caller_id,
                             .subgroup = message->subgroup,
                             .shard = message->shard,
                             .ordered = true,
                             .version = message->version,
                             .timestamp_us = message->timestamp_us,
                             .replayed = true};
    dr_buf reply;
    run_handler(type, method, &info, call.args, call.args_len, type->max_reply, &reply);
    dr_buf_free(&reply); /* its caller heard the reply before the restart, or never will */
    return DR_OK;
}

/* ---- state transfer (delivery thread, chunks on the network thread) ------------------------ */

/*
 * When a view gives a shard new members (joiners, or members that refill it), the shard's
 * lowest-ranked surviving member (dr_layout_state_source) serializes the subgroup's state in its
 * view upcall, that is after every delivery of the previous view and before any of the new one,
 * and sends it to each new member in RPC_T_STATE chunks. A new member's delivery thread waits in
 * its own view upcall until the whole state arrived and restores it, so the new view's
 * deliveries apply on top of exactly that state. If the source dies first (its connection goes
 * down, or a later view no longer has it), or the state cannot be serialized, received or
 * restored, the new member cannot serve the shard: it answers its ordered calls with DR_ESTATE
 * and leaves the group (docs/rpc.md "State transfer").
 */

static incoming_state *find_incoming_locked(dr_rpc_node *node, uint32_t from, int32_t vid,
                                            uint32_t subgroup) {
    for (size_t i = 0; i < MAX_INCOMING_STATES; i++) {
        incoming_state *in = &node->incoming[i];
        if (in->used && in->from == from && in->vid == vid && in->subgroup == subgroup)
            return in;
    }
    return NULL;
}

/* A free slot, or the one of the oldest view (dropped: nobody waits for a stale transfer). */
static incoming_state *claim_incoming_locked(dr_rpc_node *node) {
    incoming_state *oldest = &node->incoming[0];
    for (size_t i = 0; i < MAX_INCOMING_STATES; i++) {
        if (!node->incoming[i].used)
            return &node->incoming[i];
        if (node->incoming[i].vid < oldest->vid)
            oldest = &node->incoming[i];
    }
    DR_WARN(DR_LOGM_RPC, "state transfer of view %" PRId32 " from %" PRIu32 " dropped (too many)",
            oldest->vid, oldest->from);
    free(oldest->bytes);
    return oldest;
}

static void state_chunk_arrived(dr_rpc_node *node, uint32_t peer, const dr_net_msg *msg) {
    rpc_state_chunk chunk;
    if (rpc_decode_state_chunk(msg->payload, msg->payload_bytes, &chunk)) {
        DR_WARN(DR_LOGM_RPC, "malformed state chunk from %" PRIu32 " dropped", peer);
        return;
    }
    pthread_mutex_lock(&node->lock);
    incoming_state *in = find_incoming_locked(node, peer, chunk.vid, chunk.subgroup);
    if (!in && chunk.offset != 0) {
        pthread_mutex_unlock(&node->lock);
        DR_WARN(DR_LOGM_RPC, "state chunk from %" PRIu32 " without its start dropped", peer);
        return;
    }
    if (!in) {
        in = claim_incoming_locked(node);
        *in = (incoming_state){.used = true,
                               .from = peer,
                               .vid = chunk.vid,
                               .subgroup = chunk.subgroup,
                               .total = chunk.total};
        if (chunk.status == DR_OK && chunk.total > node->max_state) {
            DR_ERROR(DR_LOGM_RPC,
                     "state of subgroup %" PRIu32 " from %" PRIu32 " is %" PRIu64
                     " bytes, over max_state_transfer_size %" PRIu64,
                     chunk.subgroup, peer, chunk.total, node->max_state);
            in->error = DR_ETOOBIG;
        } else if (chunk.status == DR_OK &&
                   /* malloc, not dr_big_alloc: in a joiner's fresh process a huge-page buffer
                    * waited for compaction (100 MB joins 175-455 ms, 190-239 ms with malloc) */
                   !(in->bytes = malloc(chunk.total ? chunk.total : 1))) {
            in->error = DR_ENOMEM;
        }
    }
    bool stored = false;
    if (!in->error && !in->complete) {
        if (chunk.status != DR_OK)
            in->error = chunk.status;
        else if (chunk.total != in->total || chunk.offset != in->received)
            in->error = DR_EPROTO; /* chunks travel in order on one connection */
        if (in->error) {
            free(in->bytes);
            in->bytes = NULL;
        } else {
            memcpy(in->bytes + chunk.offset, chunk.bytes, chunk.len);
            in->received += chunk.len;
            in->complete = in->received == in->total;
            stored = true;
        }
    }
    uint64_t received = in->received, total = in->total;
    if (in->complete || in->error)
        pthread_cond_broadcast(&node->changed);
    pthread_mutex_unlock(&node->lock);
    if (stored && node->on_state_chunk)
        node->on_state_chunk(node->state_chunk_ctx, peer, chunk.subgroup, false, received, total);
}

/* True if `member` is in the group's latest installed view (the network thread's, not mine). */
static bool still_member(dr_rpc_node *node, uint32_t member) {
    dr_group_view *latest = malloc(sizeof *latest);
    bool found = latest == NULL; /* out of memory: assume alive, check again later */
    dr_group *group = atomic_load(&node->group);
    if (latest && group && dr_group_get_view(group, latest) == DR_OK) {
        for (uint32_t i = 0; i < latest->view.num_members; i++)
            found = found || latest->view.member_ids[i] == member;
    } else {
        found = true;
    }
    free(latest);
    return found;
}

static void release_state_slice(void *ctx, void *slice) {
    (void)slice;
    dr_shared_bytes_release(ctx);
}

/* Sends one subgroup's state (or a failure status: state NULL) to one new member, in chunks: each
 * frame is a copied chunk head and a slice of the serialized state itself, which every queued
 * frame holds a reference to (no copy of the state per chunk). */
static void send_state_to(dr_rpc_node *node, uint32_t target, int32_t vid, uint32_t subgroup,
                          int status, dr_shared_bytes *state) {
    dr_group *group = group_of(node);
    if (!group)
        return;
    size_t frame = dr_group_max_frame_bytes(group);
    size_t room = frame > 4096 ? frame - 4096 : 1;
    size_t step = room < STATE_CHUNK_BYTES ? room : STATE_CHUNK_BYTES;
    size_t total = state ? dr_shared_bytes_len(state) : 0;
    uint8_t head_bytes[RPC_STATE_CHUNK_HEAD_SIZE];
    size_t offset = 0;
    int rc = DR_OK;
    do {
        size_t len = total - offset < step ? total - offset : step;
        rpc_state_chunk chunk = {.vid = vid,
                                 .subgroup = subgroup,
                                 .status = status,
                                 .total = total,
                                 .offset = offset,
                                 .len = len};
        /* on the stack: max_bytes = cap, so the buffer can never be reallocated */
        dr_buf head = {
            .data = head_bytes, .cap = sizeof head_bytes, .max_bytes = sizeof head_bytes};
        rc = rpc_encode_state_chunk_head(&head, &chunk);
        uint8_t *slice = state ? (uint8_t *)dr_shared_bytes_data(state) + offset : NULL;
        while (rc == DR_OK && (rc = dr_group_send_frame_split(
                                   group, target, RPC_T_STATE, head.data, head.len, slice, len,
                                   state ? release_state_slice : NULL,
                                   state ? dr_shared_bytes_retain(state) : NULL)) == DR_EAGAIN) {
            rc = dr_group_wait_writable(group, target, STATE_SEND_WAIT_MS);
            if (rc == DR_ENOTFOUND)
                rc = DR_OK; /* not connected: the runtime's backlog takes the retry */
        }
        offset += len;
        if (rc == DR_OK && status == DR_OK && node->on_state_chunk)
            node->on_state_chunk(node->state_chunk_ctx, target, subgroup, true, offset, total);
    } while (rc == DR_OK && offset < total);
    if (rc)
        DR_WARN(DR_LOGM_RPC, "state transfer of subgroup %" PRIu32 " to %" PRIu32 " stopped: %s",
                subgroup, target, dr_strerror(rc));
}

/* I am the source of my shard's state: serialize it once, send it to every new member. */
static void send_state(dr_rpc_node *node, const dr_group_view *view, uint32_t subgroup,
                       uint32_t shard, const type_entry *type) {
    const dr_shard_layout *members = &view->layout.subgroups[subgroup].shards[shard];
    bool anyone_new = false;
    for (uint32_t m = 0; m < members->num_members && !anyone_new; m++)
        anyone_new = dr_layout_is_new_in_shard(&view->previous_layout, &view->layout, subgroup,
                                               shard, members->member_ids[m]);
    if (!anyone_new)
        return; /* a view that only removed members: nothing to serialize */
    dr_buf state;
    dr_buf_init(&state, node->max_state);
    int status = DR_ESTATE; /* a member that never got the state itself cannot give it */
    if (!node->state_missing[subgroup]) {
        status = type->type.serialize(type->type.ctx, subgroup, &state);
        status = status > 0 ? DR_EINVAL : status;
        if (status == DR_OK && state.failed)
            status = DR_ETOOBIG;
    }
    /* the serialized bytes, shared by the frames that carry them (the last one frees them) */
    dr_shared_bytes *shared = NULL;
    if (status == DR_OK && state.len > 0) {
        size_t len = 0;
        uint8_t *bytes = dr_buf_steal(&state, &len);
        if (!(shared = dr_shared_bytes_wrap(bytes, len))) {
            free(bytes);
            status = DR_ENOMEM;
        }
    }
    dr_buf_free(&state);
    if (status)
        DR_ERROR(DR_LOGM_RPC, "cannot serialize subgroup %" PRIu32 " for its new members: %s",
                 subgroup, dr_strerror(status));
    for (uint32_t m = 0; m < members->num_members; m++) {
        uint32_t target = members->member_ids[m];
        if (!dr_layout_is_new_in_shard(&view->previous_layout, &view->layout, subgroup, shard,
                                       target))
            continue;
        DR_INFO(DR_LOGM_RPC,
                "view %" PRId32 ": sending %zu bytes of subgroup %" PRIu32
                " state to node %" PRIu32,
                view->view.vid, shared ? dr_shared_bytes_len(shared) : (size_t)0, subgroup, target);
        send_state_to(node, target, view->view.vid, subgroup, status, shared);
    }
    dr_shared_bytes_release(shared);
}

/* I am new in my shard: wait for its state from `source`; restore it. Returns 0 or why not. */
static int await_state(dr_rpc_node *node, const dr_group_view *view, uint32_t subgroup,
                       uint32_t source, const type_entry *type) {
    int error = DR_OK;
    uint8_t *bytes = NULL;
    uint64_t total = 0;
    pthread_mutex_lock(&node->lock);
    node->awaited_source = source;
    node->awaited_source_down = false;
    for (;;) {
        incoming_state *in = find_incoming_locked(node, source, view->view.vid, subgroup);
        if (in && (in->complete || in->error)) {
            error = in->error;
            bytes = in->bytes;
            total = in->total;
            *in = (incoming_state){0};
            break;
        }
        if (atomic_load(&node->closing)) {
            error = DR_ECLOSED;
            break;
        }
        if (node->awaited_source_down) {
            error = DR_EREMOVED;
            break;
        }
        struct timespec deadline;
        deadline_after(&deadline, STATE_CHECK_MS);
        if (pthread_cond_timedwait(&node->changed, &node->lock, &deadline) != 0) {
            pthread_mutex_unlock(&node->lock);
            bool alive = still_member(node, source);
            pthread_mutex_lock(&node->lock);
            if (!alive)
                node->awaited_source_down = true;
        }
    }
    node->awaited_source = DR_NODE_NONE;
    pthread_mutex_unlock(&node->lock);
    if (error == DR_OK) {
        error = type->type.restore(type->type.ctx, subgroup, bytes, (size_t)total);
        error = error > 0 ? DR_EINVAL : error;
    }
    if (error == DR_OK) {
        /* a durable shard: this state is what a later total restart replays the log on top of */
        dr_group *group = atomic_load(&node->group);
        int saved =
            group ? dr_group_save_replay_base(group, subgroup, view->view.vid, bytes, (size_t)total)
                  : DR_ESTATE;
        if (saved != DR_OK && saved != DR_ESTATE)
            error = saved;
    }
    free(bytes);
    if (error == DR_OK)
        DR_INFO(DR_LOGM_RPC,
                "view %" PRId32 ": restored %" PRIu64 " bytes of subgroup %" PRIu32
                " state from node %" PRIu32,
                view->view.vid, total, subgroup, source);
    return error;
}

/* Runs at the start of every view's upcall, before the view's first delivery. */
static void transfer_state(dr_rpc_node *node, const dr_group_view *view) {
    if (!view->has_previous || atomic_load(&node->closing))
        return;
    const dr_layout *before = &view->previous_layout, *now = &view->layout;
    for (uint32_t sg = 0; sg < now->num_subgroups && sg < DR_LAYOUT_MAX_SUBGROUPS; sg++) {
        int found = dr_layout_find_shard(now, sg, node->my_id, NULL);
        const type_entry *type = type_of_subgroup(node, sg);
        if (found < 0 || !type || !type->type.serialize || !type->type.restore)
            continue;
        uint32_t shard = (uint32_t)found;
        uint32_t source = dr_layout_state_source(before, now, sg, shard);
        if (source == node->my_id) {
            send_state(node, view, sg, shard, type);
        } else if (dr_layout_is_new_in_shard(before, now, sg, shard, node->my_id)) {
            if (source == DR_NODE_NONE) {
                DR_WARN(DR_LOGM_RPC,
                        "view %" PRId32 ": subgroup %" PRIu32 " shard %" PRIu32
                        " lost all its members; its state is gone and node %" PRIu32
                        " starts it empty",
                        view->view.vid, sg, shard, node->my_id);
                continue;
            }
            int rc = await_state(node, view, sg, source, type);
            if (rc && rc != DR_ECLOSED) {
                node->state_missing[sg] = true;
                DR_ERROR(DR_LOGM_RPC,
                         "node %" PRIu32 " did not get subgroup %" PRIu32
                         " state from node %" PRIu32 " (%s); it cannot serve it and leaves",
                         node->my_id, sg, source, dr_strerror(rc));
                dr_group_leave_async(atomic_load(&node->group));
            }
        }
    }
}

/* Whether node_id is a member of `view` (NULL: of no view). */
static bool in_view(const dr_group_view *view, uint32_t node_id) {
    for (uint32_t m = 0; view && m < view->view.num_members; m++)
        if (view->view.member_ids[m] == node_id)
            return true;
    return false;
}

/* Durable subgroups: the application's own persistence callback, if any (delivery thread). */
static void on_persisted(void *ctx, uint32_t subgroup, int64_t version, bool global) {
    dr_rpc_node *node = ctx;
    if (node->app.on_persisted)
        node->app.on_persisted(node->app.ctx, subgroup, version, global);
}

static void on_view(void *ctx, const dr_group_view *view) {
    dr_rpc_node *node = ctx;
    transfer_state(node, view);
    dr_group_view *copy = malloc(sizeof *copy);
    if (copy) {
        *copy = *view;
        uint32_t joined[DR_VIEW_MAX_MEMBERS], num_joined = 0;
        pthread_mutex_lock(&node->lock);
        for (uint32_t m = 0; m < view->view.num_members; m++)
            if (!in_view(node->view, view->view.member_ids[m]))
                joined[num_joined++] = view->view.member_ids[m];
        free(node->view);
        node->view = copy;
        pthread_cond_broadcast(&node->changed);
        pthread_mutex_unlock(&node->lock);
        /* a member new in this view is a new incarnation: a down mark left by its old
         * connection (whose close may be seen after the view that removed it) no longer holds */
        for (uint32_t i = 0; i < num_joined; i++)
            rpc_peer_alive(node->reg, joined[i]);
    } else {
        DR_ERROR(DR_LOGM_RPC, "out of memory recording view %" PRId32, view->view.vid);
    }
    rpc_view_changed(node->reg, &view->view);
    if (node->app.on_view)
        node->app.on_view(node->app.ctx, view);
}

int dr_rpc_ordered_call(dr_rpc_node *node, uint32_t subgroup, const char *method, const void *args,
                        size_t len, int timeout_ms, dr_rpc_results **out) {
    const type_entry *type = type_of_subgroup(node, subgroup);
    if (!type)
        return DR_EINVAL;
    uint32_t method_id = dr_rpc_method_id(method);
    const method_entry *entry = find_method(type, method_id);
    if (!entry || entry->kind != DR_RPC_ORDERED)
        return DR_ENOTFOUND;
    if (len > type->max_ordered_args)
        return DR_ETOOBIG;
    dr_rpc_results *results = NULL;
    uint64_t request_id = 0;
    int rc = rpc_results_new(node->reg, &results, &request_id);
    if (rc)
        return rc;
    /* the message is built in a group send buffer: the arguments are copied once, into it */
    dr_buf head;
    dr_buf_init(&head, 0);
    rc = rpc_encode_ordered_head(&head, request_id, node->my_id, method_id, len);
    uint8_t *message = rc == DR_OK ? dr_group_alloc_send_buffer(head.len + len) : NULL;
    if (rc == DR_OK && message == NULL)
        rc = DR_ENOMEM;
    if (rc == DR_OK) {
        memcpy(message, head.data, head.len);
        if (len)
            memcpy(message + head.len, args, len);
        rc = dr_group_send_buffer(atomic_load(&node->group), subgroup, message, head.len + len,
                                  timeout_ms);
        if (rc != DR_OK)
            dr_group_free_send_buffer(message); /* not taken */
    }
    dr_buf_free(&head);
    if (rc) {
        rpc_results_abort(results);
        return rc;
    }
    *out = results;
    return DR_OK;
}

/* ---- p2p calls (workers) -------------------------------------------------------------------- */

static void free_job(p2p_job *job) {
    if (job->msg)
        free(job->msg);
    else
        free(job->bytes);
    free(job);
}

static void serve_p2p(dr_rpc_node *node, const p2p_job *job) {
    rpc_p2p_request request;
    if (rpc_decode_p2p_request(job->bytes, job->len, &request)) {
        DR_WARN(DR_LOGM_RPC, "malformed p2p request from %" PRIu32 " dropped", job->peer);
        return;
    }
    const type_entry *type = type_of_subgroup(node, request.subgroup);
    const method_entry *method = type ? find_method(type, request.method_id) : NULL;
    uint32_t shard = UINT32_MAX;
    struct timespec deadline;
    deadline_after(&deadline, GROUP_READY_WAIT_MS);
    pthread_mutex_lock(&node->lock);
    /* a caller may know a view with me before my delivery thread reported it: wait for it */
    while (!node->view && !atomic_load(&node->closing) &&
           pthread_cond_timedwait(&node->changed, &node->lock, &deadline) == 0) {
    }
    if (node->view && request.subgroup < node->view->layout.num_subgroups) {
        int found = dr_layout_find_shard(&node->view->layout, request.subgroup, node->my_id, NULL);
        shard = found < 0 ? UINT32_MAX : (uint32_t)found;
    }
    pthread_mutex_unlock(&node->lock);
    dr_buf reply;
    dr_buf_init(&reply, 1);
    int status;
    if (!method || shard == UINT32_MAX)
        status = DR_ENOTFOUND; /* no such method, or I serve no shard of that subgroup */
    else if (method->kind != DR_RPC_P2P)
        status = DR_EINVAL;
    else if (request.args_len > node->max_p2p_request)
        status = DR_ETOOBIG;
    else {
        dr_rpc_call_info info = {.caller_id = job->peer,
                                 .from_client = job->from_client,
                                 .from_admin = job->from_admin,
                                 .subgroup = request.subgroup,
                                 .shard = shard,
                                 .ordered = false,
                                 .version = -1,
                                 .timestamp_us = job->arrival_us};
        status = run_handler(type, method, &info, request.args, request.args_len,
                             reply_limit(node, node->max_p2p_reply), &reply);
    }
    send_reply(node, RPC_T_P2P_REPLY, job->peer, request.request_id, status, &reply);
    dr_buf_free(&reply);
}

static void *worker_main(void *arg) {
    dr_rpc_node *node = arg;
    pthread_mutex_lock(&node->lock);
    for (;;) {
        while (!node->job_head && !node->workers_stopping)
            pthread_cond_wait(&node->job_ready, &node->lock);
        if (node->workers_stopping)
            break;
        p2p_job *job = node->job_head;
        node->job_head = job->next;
        if (!node->job_head)
            node->job_tail = NULL;
        node->queued_jobs--;
        pthread_mutex_unlock(&node->lock);
        serve_p2p(node, job);
        free_job(job);
        pthread_mutex_lock(&node->lock);
    }
    pthread_mutex_unlock(&node->lock);
    return NULL;
}

/* Queues a job for the workers (takes it). Returns 0, or DR_EAGAIN / DR_ECLOSED (not taken). */
static int push_job(dr_rpc_node *node, p2p_job *job) {
    int rc = DR_OK;
    pthread_mutex_lock(&node->lock);
    if (node->workers_stopping)
        rc = DR_ECLOSED;
    else if (node->queued_jobs >= MAX_QUEUED_JOBS)
        rc = DR_EAGAIN;
    else {
        job->next = NULL;
        if (node->job_tail)
            node->job_tail->next = job;
        else
            node->job_head = job;
        node->job_tail = job;
        node->queued_jobs++;
        pthread_cond_signal(&node->job_ready);
    }
    pthread_mutex_unlock(&node->lock);
    return rc;
}

/* Waits up to timeout_ms for a first view; returns true and whether target serves subgroup. */
static int check_target(dr_rpc_node *node, uint32_t target, uint32_t subgroup, int timeout_ms) {
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&node->lock);
    while (!node->view && rc == DR_OK) {
        if (timeout_ms < 0)
            pthread_cond_wait(&node->changed, &node->lock);
        else if (pthread_cond_timedwait(&node->changed, &node->lock, &deadline))
            rc = DR_ETIMEDOUT;
    }
    if (rc == DR_OK && (subgroup >= node->view->layout.num_subgroups ||
                        dr_layout_find_shard(&node->view->layout, subgroup, target, NULL) < 0))
        rc = DR_ENOTFOUND;
    pthread_mutex_unlock(&node->lock);
    return rc;
}

int dr_rpc_p2p_start(dr_rpc_node *node, uint32_t target, uint32_t subgroup, const char *method,
                     const void *args, size_t len, int timeout_ms, dr_rpc_pending **out) {
    const type_entry *type = type_of_subgroup(node, subgroup);
    uint32_t method_id = dr_rpc_method_id(method);
    const method_entry *entry = type ? find_method(type, method_id) : NULL;
    if (!entry || entry->kind != DR_RPC_P2P)
        return DR_ENOTFOUND;
    if (len > node->max_p2p_request)
        return DR_ETOOBIG;
    int rc = check_target(node, target, subgroup, timeout_ms);
    if (rc)
        return rc;
    dr_rpc_pending *pending = NULL;
    uint64_t request_id = 0;
    rc = rpc_pending_new(node->reg, target, node->p2p_window, timeout_ms, &pending, &request_id);
    if (rc)
        return rc;
    dr_buf frame;
    dr_buf_init(&frame, 0);
    rc = rpc_encode_p2p_request(&frame, request_id, subgroup, method_id, args, len);
    if (rc == DR_OK && target == node->my_id) {
        p2p_job *job = calloc(1, sizeof *job);
        rc = job ? DR_OK : DR_ENOMEM;
        if (job) {
            job->peer = node->my_id;
            job->arrival_us = now_us();
            job->bytes = dr_buf_steal(&frame, &job->len);
            rc = push_job(node, job);
            if (rc)
                free_job(job);
        }
    } else if (rc == DR_OK) {
        rc = send_frame_taken(atomic_load(&node->group), target, RPC_T_P2P_REQUEST, &frame);
    }
    dr_buf_free(&frame);
    if (rc) {
        rpc_pending_fail(pending, rc);
        dr_rpc_pending_free(pending);
        return rc;
    }
    *out = pending;
    return DR_OK;
}

int dr_rpc_p2p_call(dr_rpc_node *node, uint32_t target, uint32_t subgroup, const char *method,
                    const void *args, size_t len, int timeout_ms, dr_rpc_reply *out) {
    dr_rpc_pending *pending = NULL;
    int rc = dr_rpc_p2p_start(node, target, subgroup, method, args, len, timeout_ms, &pending);
    if (rc) {
        *out = (dr_rpc_reply){.node_id = target, .status = rc};
        return rc;
    }
    rc = dr_rpc_pending_wait(pending, timeout_ms, out);
    dr_rpc_pending_free(pending);
    return rc;
}

/* ---- network hooks (network thread: never block) ------------------------------------------- */

static void answer_view_query(dr_rpc_node *node, uint32_t peer) {
    rpc_view_info *info = calloc(1, sizeof *info);
    dr_group *group = atomic_load(&node->group);
    if (!info || !group) {
        free(info);
        return;
    }
    pthread_mutex_lock(&node->lock);
    bool have_view = node->view != NULL;
    if (have_view)
        info->view = *node->view;
    pthread_mutex_unlock(&node->lock);
    if (!have_view) { /* the client asks again */
        free(info);
        return;
    }
    info->view.my_id = node->my_id;
    info->p2p_window = node->p2p_window;
    info->max_p2p_request = node->max_p2p_request;
    info->max_p2p_reply = reply_limit(node, node->max_p2p_reply);
    info->num_types = (uint32_t)node->num_types;
    for (size_t t = 0; t < node->num_types; t++)
        memcpy(info->type_names[t], node->spec.types[t].name, DR_LAYOUT_NAME_MAX);
    dr_buf frame;
    dr_buf_init(&frame, 0);
    int rc = rpc_encode_view_reply(&frame, info);
    if (rc == DR_OK)
        rc = dr_group_send_frame(group, peer, RPC_T_VIEW_REPLY, frame.data, frame.len);
    if (rc)
        DR_WARN(DR_LOGM_RPC, "view reply to %" PRIu32 " not sent: %s", peer, dr_strerror(rc));
    dr_buf_free(&frame);
    free(info);
}

/* A request the workers cannot take: answer DR_EAGAIN / DR_ECLOSED right here. */
static void refuse_request(dr_rpc_node *node, uint32_t peer, const dr_net_msg *msg, int status) {
    rpc_p2p_request request;
    if (rpc_decode_p2p_request(msg->payload, msg->payload_bytes, &request))
        return;
    dr_buf frame;
    dr_buf_init(&frame, 0);
    dr_group *group = atomic_load(&node->group);
    if (rpc_encode_reply(&frame, request.request_id, status, NULL, 0) == DR_OK && group)
        dr_group_send_frame(group, peer, RPC_T_P2P_REPLY, frame.data, frame.len);
    dr_buf_free(&frame);
}

/*
 * An outside client's request, checked before it takes a queue slot: its size, and whether the
 * client's key allows the method. Returns 0 or the status to refuse it with.
 */
static int admit_client_request(dr_rpc_node *node, const dr_net_msg *msg, bool from_admin) {
    rpc_p2p_request request;
    if (rpc_decode_p2p_request(msg->payload, msg->payload_bytes, &request))
        return DR_EINVAL;
    if (request.args_len > node->max_p2p_request)
        return DR_ETOOBIG;
    const type_entry *type = type_of_subgroup(node, request.subgroup);
    const method_entry *method = type ? find_method(type, request.method_id) : NULL;
    if (!method)
        return DR_ENOTFOUND;
    if (method->access == DR_RPC_CLIENTS || (method->access == DR_RPC_ADMINS && from_admin))
        return DR_OK;
    DR_LOG_LIMITED(DR_LOGM_RPC, DR_LOG_WARN, "client call of %s refused: %s", method->name,
                   method->access == DR_RPC_ADMINS ? "needs the admin key" : "members only");
    return DR_EPERM;
}

static void hook_frame(void *ctx, uint32_t peer, dr_net_key_kind key, bool from_client,
                       dr_net_msg *msg) {
    dr_rpc_node *node = ctx;
    if (!from_client)
        rpc_peer_alive(node->reg, peer);
    rpc_reply_msg reply;
    switch (msg->type) {
    case RPC_T_P2P_REQUEST: {
        bool from_admin = from_client && key == DR_NET_KEY_ADMIN;
        int refusal = from_client ? admit_client_request(node, msg, from_admin) : DR_OK;
        if (refusal) {
            refuse_request(node, peer, msg, refusal);
            break;
        }
        p2p_job *job = calloc(1, sizeof *job);
        int rc = job ? DR_OK : DR_ENOMEM;
        if (job) {
            *job = (p2p_job){.peer = peer,
                             .from_client = from_client,
                             .from_admin = from_admin,
                             .arrival_us = now_us(),
                             .bytes = msg->payload,
                             .len = msg->payload_bytes,
                             .msg = msg};
            rc = push_job(node, job);
            if (rc == DR_OK)
                return;
            free(job);
        }
        refuse_request(node, peer, msg, rc);
        break;
    }
    case RPC_T_P2P_REPLY:
    case RPC_T_ORDERED_REPLY:
        if (from_client || rpc_decode_reply(msg->payload, msg->payload_bytes, &reply)) {
            DR_LOG_LIMITED(DR_LOGM_RPC, DR_LOG_WARN, "bad reply from %" PRIu32 " dropped", peer);
            break;
        }
        rpc_reply_arrived(node->reg, msg->type == RPC_T_ORDERED_REPLY, peer, &reply,
                          reply_limit(node, msg->type == RPC_T_ORDERED_REPLY
                                                ? node->max_ordered_reply
                                                : node->max_p2p_reply));
        break;
    case RPC_T_STATE:
        if (from_client)
            DR_LOG_LIMITED(DR_LOGM_RPC, DR_LOG_WARN, "state chunk from client %" PRIu32 " dropped",
                           peer);
        else
            state_chunk_arrived(node, peer, msg);
        break;
    case RPC_T_VIEW_QUERY:
        if (rpc_decode_view_query(msg->payload, msg->payload_bytes) == DR_OK)
            answer_view_query(node, peer);
        break;
    default:
        DR_LOG_LIMITED(DR_LOGM_RPC, DR_LOG_WARN,
                       "frame of unknown type %u from %" PRIu32 " dropped", msg->type, peer);
        break;
    }
    free(msg);
}

static void hook_peer_down(void *ctx, uint32_t peer, bool was_client) {
    dr_rpc_node *node = ctx;
    if (!was_client && peer < DR_NET_ANY_NODE)
        rpc_peer_down(node->reg, peer);
    if (!was_client) {
        pthread_mutex_lock(&node->lock);
        if (peer == node->awaited_source) {
            node->awaited_source_down = true;
            pthread_cond_broadcast(&node->changed);
        }
        pthread_mutex_unlock(&node->lock);
    }
}

/* ---- creation ------------------------------------------------------------------------------- */

static int build_type(type_entry *entry, const dr_rpc_type *type, const dr_subgroup_type *spec,
                      dr_err *err) {
    if (!type->name || strcmp(type->name, spec->name) != 0)
        return dr_err_set(err, DR_EINVAL, "rpc type '%s' does not match layout type '%s'",
                          type->name ? type->name : "(null)", spec->name);
    entry->type = *type;
    entry->num_methods = type->num_methods;
    entry->methods = calloc(type->num_methods ? type->num_methods : 1, sizeof *entry->methods);
    if (!entry->methods)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    for (size_t m = 0; m < type->num_methods; m++) {
        const dr_rpc_method *method = &type->methods[m];
        if (!method->name || !method->handler ||
            (method->kind != DR_RPC_ORDERED && method->kind != DR_RPC_P2P) ||
            (method->access != DR_RPC_MEMBERS_ONLY && method->access != DR_RPC_CLIENTS &&
             method->access != DR_RPC_ADMINS))
            return dr_err_set(err, DR_EINVAL, "type %s: method %zu lacks a name or handler",
                              spec->name, m);
        entry->methods[m] = (method_entry){.id = dr_rpc_method_id(method->name),
                                           .kind = method->kind,
                                           .access = method->access,
                                           .handler = method->handler,
                                           .name = method->name};
    }
    qsort(entry->methods, entry->num_methods, sizeof *entry->methods, compare_methods);
    for (size_t m = 1; m < entry->num_methods; m++)
        if (entry->methods[m].id == entry->methods[m - 1].id)
            return dr_err_set(err, DR_EINVAL, "type %s: methods '%s' and '%s' share id %08" PRIx32,
                              spec->name, entry->methods[m - 1].name, entry->methods[m].name,
                              entry->methods[m].id);
    return DR_OK;
}

static void read_limits(dr_rpc_node *node, const dr_config *config) {
    node->p2p_window = 16;
    node->max_p2p_request = node->max_p2p_reply = 10240;
    dr_config_get_u32(config, "DERECHO", "p2p_window_size", &node->p2p_window);
    dr_config_get_u64(config, "DERECHO", "max_p2p_request_payload_size", &node->max_p2p_request);
    dr_config_get_u64(config, "DERECHO", "max_p2p_reply_payload_size", &node->max_p2p_reply);
    node->max_state = 1u << 30;
    dr_config_get_u64(config, "DERECHO", "max_state_transfer_size", &node->max_state);
    if (node->p2p_window == 0)
        node->p2p_window = 1;
    for (size_t t = 0; t < node->num_types; t++) {
        const char *profile =
            node->spec.types[t].policy.profile[0] ? node->spec.types[t].policy.profile : NULL;
        uint32_t payload = 10240, reply = 10240;
        dr_config_subgroup_u32(config, profile, "max_payload_size", &payload);
        dr_config_subgroup_u32(config, profile, "max_reply_payload_size", &reply);
        node->types[t].max_ordered_args =
            payload > RPC_ORDERED_HEADER_SIZE ? payload - RPC_ORDERED_HEADER_SIZE : 0;
        node->types[t].max_reply = reply;
        if (reply > node->max_ordered_reply)
            node->max_ordered_reply = reply;
    }
}

/* Once the group exists: the largest reply payload one transport frame carries. */
static void set_frame_room(dr_rpc_node *node) {
    uint32_t frame = dr_group_max_frame_bytes(atomic_load(&node->group));
    atomic_store(&node->frame_room,
                 frame > RPC_REPLY_HEADER_SIZE + 64 ? frame - RPC_REPLY_HEADER_SIZE - 64 : 0);
}

static int start_workers(dr_rpc_node *node, uint32_t count, dr_err *err) {
    for (uint32_t i = 0; i < count; i++) {
        if (pthread_create(&node->workers[i], NULL, worker_main, node))
            return dr_err_set(err, DR_EIO, "cannot start p2p worker %u", i);
        node->num_workers++;
    }
    return DR_OK;
}

static void stop_workers(dr_rpc_node *node) {
    pthread_mutex_lock(&node->lock);
    node->workers_stopping = true;
    pthread_cond_broadcast(&node->job_ready);
    pthread_mutex_unlock(&node->lock);
    for (uint32_t i = 0; i < node->num_workers; i++)
        pthread_join(node->workers[i], NULL);
    node->num_workers = 0;
    pthread_mutex_lock(&node->lock);
    while (node->job_head) {
        p2p_job *job = node->job_head;
        node->job_head = job->next;
        free_job(job);
    }
    node->job_tail = NULL;
    node->queued_jobs = 0;
    pthread_mutex_unlock(&node->lock);
}

static void free_node(dr_rpc_node *node) {
    if (node->reg)
        rpc_registry_close(node->reg, DR_ECLOSED);
    for (size_t t = 0; t < node->num_types; t++)
        free(node->types[t].methods);
    for (size_t i = 0; i < MAX_INCOMING_STATES; i++)
        free(node->incoming[i].bytes);
    free(node->view);
    pthread_cond_destroy(&node->job_ready);
    pthread_cond_destroy(&node->changed);
    pthread_mutex_destroy(&node->lock);
    free(node);
}

int dr_rpc_node_create(const dr_config *config, const dr_layout_spec *spec,
                       const dr_rpc_type *types, size_t num_types,
                       const dr_rpc_node_options *options, dr_rpc_node **out, dr_err *err) {
    if (!config || !spec || !out || (num_types && !types))
        return dr_err_set(err, DR_EINVAL, "missing argument");
    if (num_types != spec->num_types || num_types > DR_LAYOUT_MAX_TYPES)
        return dr_err_set(err, DR_EINVAL, "%zu rpc types for %u layout types", num_types,
                          spec->num_types);
    dr_rpc_node *node = calloc(1, sizeof *node);
    if (!node)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    pthread_mutex_init(&node->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&node->changed, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&node->job_ready, NULL);
    node->spec = *spec;
    node->num_types = num_types;
    atomic_store(&node->frame_room, SIZE_MAX);
    if (options) {
        node->app = options->app_callbacks;
        node->on_state_chunk = options->on_state_chunk;
        node->state_chunk_ctx = options->state_chunk_ctx;
    }
    uint32_t local_id = 0;
    dr_config_get_u32(config, "DERECHO", "local_id", &local_id);
    node->my_id = local_id;
    node->awaited_source = DR_NODE_NONE;
    int rc = rpc_registry_create(&node->reg);
    if (rc) {
        dr_err_set(err, rc, "out of memory");
        goto fail;
    }
    for (size_t t = 0; t < num_types && rc == DR_OK; t++)
        rc = build_type(&node->types[t], &types[t], &spec->types[t], err);
    if (rc)
        goto fail;
    read_limits(node, config);
    uint32_t workers = options && options->p2p_workers ? options->p2p_workers : DEFAULT_WORKERS;
    rc = start_workers(node, workers > MAX_WORKERS ? MAX_WORKERS : workers, err);
    if (rc)
        goto fail;
    dr_group_callbacks callbacks = {.on_deliver = on_deliver,
                                    .on_view = on_view,
                                    .ctx = node,
                                    .on_persisted = on_persisted,
                                    .on_replay = on_replay};
    dr_group_hooks hooks = {.on_frame = hook_frame, .on_peer_down = hook_peer_down, .ctx = node};
    dr_group *group = NULL;
    rc = dr_group_create_with_hooks(config, spec, &callbacks, &hooks, &group, err);
    if (rc)
        goto fail;
    pthread_mutex_lock(&node->lock);
    atomic_store(&node->group, group);
    pthread_cond_broadcast(&node->changed);
    pthread_mutex_unlock(&node->lock);
    set_frame_room(node);
    *out = node;
    return DR_OK;
fail:
    atomic_store(&node->closing, true);
    stop_workers(node);
    free_node(node);
    return rc;
}

dr_group *dr_rpc_node_group(dr_rpc_node *node) {
    return atomic_load(&node->group);
}

int dr_rpc_results_wait_persisted(dr_rpc_node *node, uint32_t subgroup, dr_rpc_results *results,
                                  bool global, int timeout_ms) {
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (dr_rpc_results_count(results, timeout_ms) == 0 || dr_rpc_results_version(results) < 0)
        return DR_ETIMEDOUT;
    int left = timeout_ms;
    if (timeout_ms >= 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t spent =
            (int64_t)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        left = spent >= timeout_ms ? 0 : timeout_ms - (int)spent;
    }
    return dr_group_wait_persisted(dr_rpc_node_group(node), subgroup,
                                   dr_rpc_results_version(results), global, left);
}

bool dr_rpc_node_peer_down(dr_rpc_node *node, uint32_t node_id) {
    return rpc_peer_is_down(node->reg, node_id);
}

int dr_rpc_node_leave(dr_rpc_node *node, int timeout_ms) {
    return dr_group_leave(atomic_load(&node->group), timeout_ms);
}

void dr_rpc_node_destroy(dr_rpc_node *node) {
    if (!node)
        return;
    atomic_store(&node->closing, true);
    pthread_mutex_lock(&node->lock);
    pthread_cond_broadcast(&node->changed);
    pthread_mutex_unlock(&node->lock);
    rpc_registry_cancel_all(node->reg, DR_ECLOSED); /* handlers waiting on calls return */
    stop_workers(node);
    dr_group_destroy(atomic_load(&node->group)); /* joins the network and delivery threads */
    free_node(node);
}
