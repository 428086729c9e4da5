/*
 * The TCP runtime (include/derecho/group.h): drives the sans-IO core (src/core) with the epoll
 * transport (src/net) (its network thread also ticks the core) and the delivery thread.
 *
 * Threads and the core lock. The core is a single-threaded state machine; every event reaches
 * it under `core_lock`, so its events are processed one at a time, in order:
 *   - the network thread (dr_net callback mode) feeds frames and connection changes;
 *   - application threads feed sends (dr_group_send), so a send goes out on the caller's
 *     thread with no thread hop (dr_net writes directly to the socket when its queue is empty);
 *   - dr_net's TICK events (network thread) feed the core's clock every tick_ms.
 * After each event the same thread drains the core's actions (dispatch_actions_locked): frames
 * go to dr_net, deliveries and views go to the delivery thread, which runs the application's
 * callbacks outside the lock. Lock order: core_lock, then dr_net's internal lock (dr_net never
 * calls back while holding its own lock).
 *
 * Connections: the core asks for a connection to a node (CONNECT) and sends frames to nodes.
 * Frames for a peer whose connection is not up yet wait in a per-peer backlog (bounded) and
 * go out on PEER_UP. A frame is never dropped while its connection stays up: if it cannot be
 * queued (a stalled peer's queue or backlog is full, memory ran out) the connection is closed
 * and the core told (send_failed), so the core sees a failure instead of a silent gap. A joiner
 * does not know its contact's id: it dials the contact address with DR_NET_ANY_NODE and learns the
 * id from the handshake.
 */
#include "derecho/group.h"

#include "base/big_buffers.h"
#include "core/core.h"
#include "core/wire.h"
#include "derecho/log.h"
#include "net/net.h"
#include "runtime/delivery.h"
#include "runtime/durable.h"
#include "runtime/runtime.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

enum {
    NET_TYPE_CORE = DR_NET_TYPE_USER_MIN, /* frames of the protocol core */
    MAX_PEERS = 2 * DR_VIEW_MAX_MEMBERS,  /* peers the runtime tracks */
    MAX_TICK_MS = 100,                    /* the core's clock advances at least this often */
    WINDOW_SLOTS_MAX = 4096,              /* message slots per sender under a byte window */
};
#define MAX_BACKLOG_BYTES (256u << 20) /* frames waiting for one peer's connection */

/* A frame waiting for its peer's connection. */
typedef struct pending_frame {
    struct pending_frame *next;
    uint16_t type;  /* net frame type */
    uint8_t *bytes; /* owned */
    size_t len;
} pending_frame;

/* What the runtime knows of one peer connection. */
typedef struct peer_state {
    uint32_t id;                           /* node id, DR_NODE_NONE for a free slot */
    bool up;                               /* handshake done, frames may be sent */
    bool dialing;                          /* dr_net_connect issued, no PEER_UP/DOWN yet */
    pending_frame *backlog, *backlog_tail; /* frames waiting for `up` */
    size_t backlog_bytes;                  /* bytes in the backlog */
} peer_state;

struct dr_group {
    pthread_mutex_t core_lock; /* guards every field below except the immutable ones */
    pthread_cond_t changed;    /* view installed, window opened, join failed or closing */
    dr_core *core;             /* the protocol state machine */
    dr_net *net;               /* the transport (its own thread) */
    delivery_queue delivery;   /* the delivery thread */
    durable durable;           /* durable subgroups' logs and the persistence thread */
    uint32_t my_id;            /* immutable */
    uint32_t tick_ms;          /* immutable */
    bool closing;              /* dr_group_destroy started */
    int join_error;            /* 0, or why the join failed / the core stopped */
    bool stopped;              /* the core stopped (left, excluded, partitioned) */
    uint64_t window_opens;     /* WINDOW_OPEN actions seen (a send retries if one came) */
    int stop_code;             /* its code: 0 after a clean leave */
    dr_group_view *view;       /* latest installed view (owned), NULL before view 0 */
    peer_state peers[MAX_PEERS];
    char contact_address[DR_ADDRESS_MAX]; /* "ip:port" of the contact */
    peer_state contact;                   /* the contact connection before its id is known */
    uint32_t contact_id;                  /* the contact's id once learned, else DR_NODE_NONE */
    uint32_t replying_to;      /* while handling a frame: its sender, else DR_NODE_NONE */
    dr_group_hooks hooks;      /* the layer above (rpc), immutable after create */
    uint32_t max_frame_bytes;  /* the transport's frame limit, immutable */
    uint32_t max_payload_size; /* the core's largest message, immutable */
    bool batch_open;           /* network thread: frames handled, flush and uncork at batch end */
};

/* ---- time --------------------------------------------------------------------------------- */

static uint64_t now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

static void deadline_after_ms(struct timespec *deadline, int timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

/* Waits on `changed`; returns DR_ETIMEDOUT once the deadline passed (timeout_ms < 0: never). */
static int wait_changed(dr_group *group, int timeout_ms, const struct timespec *deadline) {
    if (timeout_ms < 0) {
        pthread_cond_wait(&group->changed, &group->core_lock);
        return DR_OK;
    }
    int rc = pthread_cond_timedwait(&group->changed, &group->core_lock, deadline);
    return rc == ETIMEDOUT ? DR_ETIMEDOUT : DR_OK;
}

/* ---- peers and backlogs ------------------------------------------------------------------- */

static peer_state *find_peer(dr_group *group, uint32_t id, bool create) {
    peer_state *free_slot = NULL;
    for (size_t i = 0; i < MAX_PEERS; i++) {
        if (group->peers[i].id == id)
            return &group->peers[i];
        if (!free_slot && group->peers[i].id == DR_NODE_NONE)
            free_slot = &group->peers[i];
    }
    if (!create || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->id = id;
    return free_slot;
}

static void free_backlog(peer_state *peer) {
    while (peer->backlog) {
        pending_frame *next = peer->backlog->next;
        free(peer->backlog->bytes);
        free(peer->backlog);
        peer->backlog = next;
    }
    peer->backlog_tail = NULL;
    peer->backlog_bytes = 0;
}

/*
 * A frame for a peer could not be queued (its queue or backlog is full: it stalled; or memory
 * ran out). The core assumes no frame is lost while a connection stays up (SST pushes carry
 * only changed fields, proposals are sent once), so a lost frame must never pass in silence:
 * the connection is closed and the core is told, which treats it as that peer's failure.
 * Called with the core lock held, between actions (the core is not inside a call).
 */
static void send_failed(dr_group *group, uint32_t peer_id, size_t len, const char *why) {
    DR_ERROR(DR_LOGM_NET,
             "frame of %zu bytes to node %" PRIu32 " could not be queued (%s): closing the "
             "connection; the group treats the node as failed",
             len, peer_id, why);
    if (peer_id == DR_NODE_NONE)
        return;
    dr_net_disconnect(group->net, peer_id);
    dr_core_on_disconnect(group->core, peer_id, 0, now_us());
}

/* Appends a frame of `type` (taking its bytes) to a peer's backlog. */
static void backlog_typed(dr_group *group, peer_state *peer, uint16_t type, uint8_t *bytes,
                          size_t len) {
    pending_frame *frame = malloc(sizeof *frame);
    if (!frame || peer->backlog_bytes + len > MAX_BACKLOG_BYTES) {
        free(frame);
        free(bytes);
        free_backlog(peer);
        send_failed(group, peer->id, len, "backlog full");
        return;
    }
    frame->next = NULL;
    frame->type = type;
    frame->bytes = bytes;
    frame->len = len;
    if (peer->backlog_tail)
        peer->backlog_tail->next = frame;
    else
        peer->backlog = frame;
    peer->backlog_tail = frame;
    peer->backlog_bytes += len;
}

static void release_shared(void *owner, void *body) {
    (void)body; /* a slice of the owner's bytes */
    dr_shared_bytes_release(owner);
}

static void backlog_frame(dr_group *group, peer_state *peer, uint8_t *bytes, size_t len) {
    backlog_typed(group, peer, NET_TYPE_CORE, bytes, len);
}

/*
 * The transport lane of a frame (docs/protocol.md, "Control frames overtake data"). Data - the
 * core's DATA, NULLS and BLOCK messages, and every frame outside the core (RPC, p2p, application
 * frames: their own protocols may count on send order) - goes on the normal lane in send order.
 * Every other core message (SST pushes, heartbeats, proposals, views, joins, restarts) is urgent:
 * it overtakes the data queued to the same peer, so a view change does not wait behind a full
 * multicast window. Safe because no step of the core infers "I hold the sender's data" from one
 * of its control frames: stability, the window, the leave flush and the ragged trim read what
 * each member itself received or delivered (its own SST row, written after the data arrived). A
 * control frame that overtakes data can only make a receiver wedge earlier, freezing a lower
 * RECEIVED, as slow data would: the trim is the minimum over the survivors, and what lies beyond
 * it is re-sent in the next view. A commit that overtakes old-view data reaches a member that is
 * already wedged (it accepted the value), which drops that data anyway. New-view data is sent
 * only after its sender installed the view, so it never overtakes that sender's control frames;
 * from other senders it may come first, as before, and waits in the core's early buffer. Each
 * lane keeps its FIFO order (SST pushes too). The simulator models the same reordering
 * (src/sim/sim.c; --fifo-links turns it off). Reasoning in full: docs/protocol.md.
 */
static dr_net_lane core_lane(const uint8_t *bytes, size_t len) {
    return dr_wire_is_data(bytes, len) ? DR_NET_LANE_NORMAL : DR_NET_LANE_URGENT;
}

/* Sends a frame of `type` (taking its bytes) on an up connection. */
static void transmit_typed(dr_group *group, uint32_t peer_id, uint16_t type, uint8_t *bytes,
                           size_t len) {
    dr_net_lane lane = type == NET_TYPE_CORE ? core_lane(bytes, len) : DR_NET_LANE_NORMAL;
    int rc = dr_net_send_lane(group->net, peer_id, lane, type, 0, NULL, 0, bytes, len,
                              dr_net_free_payload, NULL);
    if (rc != 0 && rc != DR_ENOTFOUND && rc != DR_ECLOSED)
        send_failed(group, peer_id, len, dr_strerror(rc));
}

static void transmit(dr_group *group, uint32_t peer_id, uint8_t *bytes, size_t len) {
    transmit_typed(group, peer_id, NET_TYPE_CORE, bytes, len);
}

static void flush_backlog(dr_group *group, peer_state *peer, uint32_t to_id) {
    pending_frame *frame = peer->backlog;
    peer->backlog = peer->backlog_tail = NULL;
    peer->backlog_bytes = 0;
    while (frame) {
        pending_frame *next = frame->next;
        transmit_typed(group, to_id, frame->type, frame->bytes, frame->len);
        free(frame);
        frame = next;
    }
}

static void dial(dr_group *group, uint32_t node_id, const char *address, peer_state *peer) {
    char ip[DR_ADDRESS_MAX];
    uint16_t port = 0;
    if (peer->up || peer->dialing)
        return;
    if (dr_net_split_address(address, ip, sizeof ip, &port)) {
        DR_ERROR(DR_LOGM_NET, "cannot dial node %" PRIu32 ": bad address '%s'", node_id, address);
        return;
    }
    int rc = dr_net_connect(group->net, node_id, ip, port);
    if (rc == DR_OK || rc == DR_EEXIST)
        peer->dialing = true;
    else
        DR_WARN(DR_LOGM_NET, "dial %s failed: %s", address, dr_strerror(rc));
}

/* ---- actions -------------------------------------------------------------------------------- */

static void act_send(dr_group *group, dr_action *action) {
    uint32_t to = action->node_id;
    peer_state *peer = NULL;
    if (to == DR_NODE_NONE && strcmp(action->address, group->contact_address) != 0) {
        /* A reply to a joiner (accept, redirect, refuse), produced while handling the
         * joiner's own frame: it goes back on the connection that frame came from. */
        to = group->replying_to;
        if (to == DR_NODE_NONE) {
            DR_WARN(DR_LOGM_NET, "frame for %s has no connection; dropped", action->address);
            return;
        }
        peer = find_peer(group, to, true);
    } else if (to == DR_NODE_NONE) { /* to the contact, whose id we may not know yet */
        to = group->contact_id;
        peer = to == DR_NODE_NONE ? &group->contact : find_peer(group, to, true);
    } else {
        peer = find_peer(group, to, true);
    }
    if (peer && peer->up && action->body_owner) { /* a block sent without copying it */
        dr_shared_bytes *owner = action->body_owner;
        action->body_owner = NULL;
        const uint8_t *frame_start = action->len > 0 ? action->bytes : action->body; /* a relay */
        size_t frame_len = action->len > 0 ? action->len : action->body_len;
        int rc = dr_net_send_lane(group->net, to, core_lane(frame_start, frame_len), NET_TYPE_CORE,
                                  0, action->bytes, action->len, (void *)action->body,
                                  action->body_len, release_shared, owner);
        if (rc != 0 && rc != DR_ENOTFOUND && rc != DR_ECLOSED)
            send_failed(group, to, action->len + action->body_len, dr_strerror(rc));
        return;
    }
    if (dr_action_flatten(action) != 0) {
        send_failed(group, to, action->len + action->body_len, "out of memory");
        return;
    }
    uint8_t *bytes = action->bytes;
    action->bytes = NULL;
    if (!peer) {
        free(bytes);
        send_failed(group, to, action->len, "too many peers");
    } else if (peer->up) {
        transmit(group, to, bytes, action->len);
    } else {
        backlog_frame(group, peer, bytes, action->len);
    }
}

static void act_connect(dr_group *group, const dr_action *action) {
    if (action->node_id == DR_NODE_NONE) {
        if (group->contact_id != DR_NODE_NONE)
            return;
        dial(group, DR_NET_ANY_NODE, action->address, &group->contact);
        return;
    }
    peer_state *peer = find_peer(group, action->node_id, true);
    if (peer)
        dial(group, action->node_id, action->address, peer);
}

static void act_deliver(dr_group *group, dr_action *action) {
    dr_message message = {
        .subgroup = action->subgroup,
        .shard = action->shard,
        .sender_id = action->sender_id,
        .index = action->index,
        .version = action->version,
        .timestamp_us = action->timestamp_us,
        .mode = action->mode,
        .bytes = action->body_owner ? action->body : action->bytes,
        .len = action->body_owner ? action->body_len : action->len,
    };
    if (message.mode == DR_MODE_ORDERED && message.version >= 0) /* a durable shard: log it */
        if (durable_on_deliver(&group->durable, message.subgroup, message.version,
                               message.timestamp_us, message.bytes, message.len) != DR_OK &&
            !group->stopped)
            dr_core_leave(group->core, now_us()); /* cannot log: stop acknowledging */
    dr_shared_bytes *owner = action->body_owner;
    action->bytes = NULL;
    action->body_owner = NULL;
    delivery_push_message(&group->delivery, &message, owner);
}

/* A total restart's replay of one log, run on the delivery thread (durable_replay). */
typedef struct replay_task {
    dr_group *group;
    uint32_t subgroup, shard;
    int64_t to; /* the restart's trim */
} replay_task;

static void run_replay(void *arg, const dr_group_callbacks *callbacks) {
    replay_task *task = arg;
    dr_group *group = task->group;
    int rc = durable_replay(&group->durable, task->subgroup, task->shard, task->to,
                            callbacks->on_replay, callbacks->ctx);
    if (rc != DR_OK && rc != DR_ECLOSED) {
        DR_ERROR(DR_LOGM_PERSISTENCE,
                 "node %" PRIu32 " cannot rebuild subgroup %" PRIu32 " from its log (%s); it "
                 "leaves the group",
                 group->my_id, task->subgroup, dr_strerror(rc));
        dr_group_leave_async(group);
    }
    free(task);
}

/*
 * After a total restart's truncations (DR_ACTION_TRUNCATE), the restart view's install queues
 * the replay of each truncated log on the delivery thread, ahead of the view upcall and of every
 * delivery of the view (docs/persistence.md "Replay").
 */
static void queue_replays(dr_group *group, const dr_view_info *info) {
    for (uint32_t s = 0; s < info->layout.num_subgroups && s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        int64_t to = -1;
        if (!durable_take_replay(&group->durable, s, &to))
            continue;
        int shard = dr_layout_find_shard(&info->layout, s, group->my_id, NULL);
        replay_task *task = malloc(sizeof *task);
        if (task) {
            *task = (replay_task){
                .group = group, .subgroup = s, .shard = shard < 0 ? 0 : (uint32_t)shard, .to = to};
        }
        if (!task || delivery_push_task(&group->delivery, run_replay, task) != DR_OK) {
            free(task);
            DR_ERROR(DR_LOGM_PERSISTENCE,
                     "out of memory queueing the replay of subgroup %" PRIu32
                     "; the node leaves the group",
                     s);
            if (!group->stopped)
                dr_core_leave(group->core, now_us());
        }
    }
}

static void act_view_installed(dr_group *group, const dr_action *action) {
    dr_group_view *latest = malloc(sizeof *latest);
    dr_group_view *upcall = malloc(sizeof *upcall);
    if (!latest || !upcall) {
        DR_ERROR(DR_LOGM_VIEWMANAGER, "out of memory recording view %" PRId32,
                 action->view_info->view.vid);
        free(latest);
        free(upcall);
        return;
    }
    latest->view = action->view_info->view;
    latest->layout = action->view_info->layout;
    latest->my_id = group->my_id;
    latest->has_previous = action->view_info->has_previous;
    latest->previous_layout = action->view_info->previous_layout;
    *upcall = *latest;
    free(group->view);
    group->view = latest;
    if (durable_on_view(&group->durable, action->view_info, group->my_id) != DR_OK &&
        !group->stopped)                      /* opens new logs */
        dr_core_leave(group->core, now_us()); /* cannot log: stop acknowledging */
    queue_replays(group, action->view_info);
    DR_INFO(DR_LOGM_VIEWMANAGER, "view %" PRId32 " installed with %" PRIu32 " members",
            latest->view.vid, latest->view.num_members);
    delivery_push_view(&group->delivery, upcall);
    pthread_cond_broadcast(&group->changed);
}

static void handle_action(dr_group *group, dr_action *action) {
    switch (action->type) {
    case DR_ACTION_SEND:
        act_send(group, action);
        break;
    case DR_ACTION_CONNECT:
        act_connect(group, action);
        break;
    case DR_ACTION_DELIVER:
        act_deliver(group, action);
        break;
    case DR_ACTION_VIEW_INSTALLED:
        act_view_installed(group, action);
        break;
    case DR_ACTION_WINDOW_OPEN:
        group->window_opens++;
        pthread_cond_broadcast(&group->changed);
        break;
    case DR_ACTION_STOPPED:
        if (action->error != 0)
            DR_ERROR(DR_LOGM_VIEWMANAGER, "group stopped: %.*s", (int)action->len,
                     action->bytes ? (const char *)action->bytes : "");
        group->join_error = action->error ? action->error : DR_ECLOSED;
        group->stopped = true;
        group->stop_code = action->error;
        pthread_cond_broadcast(&group->changed);
        break;
    case DR_ACTION_PERSISTED:
        durable_set_global(&group->durable, action->subgroup, action->version);
        delivery_push_persisted(&group->delivery, action->subgroup, action->version, true);
        break;
    case DR_ACTION_JOIN_FAILED:
        group->join_error = action->error ? action->error : DR_EPROTO;
        DR_ERROR(DR_LOGM_VIEWMANAGER, "join refused: %.*s", (int)action->len,
                 action->bytes ? (const char *)action->bytes : "");
        pthread_cond_broadcast(&group->changed);
        break;
    case DR_ACTION_TRUNCATE:
        /* total restart: cut the log before the restart view (the next action) is installed */
        if (durable_truncate(&group->durable, action->subgroup, action->version) != DR_OK &&
            !group->stopped)
            dr_core_leave(group->core, now_us()); /* cannot agree on the log: do not take part */
        break;
    case DR_ACTION_SAVE_RESTART_VOTE:
        /* total restart: my vote is durable before the acknowledgement that follows leaves */
        if (durable_save_vote(&group->durable, action->bytes, action->len) != DR_OK &&
            !group->stopped)
            dr_core_leave(group->core, now_us());
        break;
    case DR_ACTION_DISCARD_DURABLE:
        /* the restart is given up for a join: the old membership's state goes, durably, before
         * the join request (the next action) leaves */
        if (durable_discard(&group->durable) != DR_OK && !group->stopped)
            dr_core_leave(group->core, now_us());
        break;
    }
}

/* Hands every queued action of the core to its handler (frames to dr_net, deliveries and views
 * to the delivery thread). */
static void drain_actions_locked(dr_group *group) {
    dr_action action;
    bool delivered = false;
    while (dr_core_next_action(group->core, &action)) {
        delivered |= action.type == DR_ACTION_DELIVER;
        handle_action(group, &action);
        dr_action_free(&action);
    }
    if (delivered)
        delivery_kick(&group->delivery); /* one wake-up for all the deliveries of this pass */
}

/*
 * After an event: the core's deferred work (options.defer_flush: predicates, i.e. stable
 * deliveries, owed nulls, window; then one SST push of every changed field), then its actions.
 * Corked, so the frames for one peer (a DATA and the SST push after it) leave in one write.
 */
static void dispatch_actions_locked(dr_group *group) {
    dr_net *net = group->net;
    if (net)
        dr_net_cork(net);
    if (group->core)
        dr_core_flush(group->core, now_us());
    drain_actions_locked(group);
    if (net)
        dr_net_uncork(net);
}

/* The delivery thread took messages up to `version`: they stop counting against the windows. */
static void on_delivery_taken(void *ctx, uint32_t subgroup, int64_t version) {
    dr_group *group = ctx;
    pthread_mutex_lock(&group->core_lock);
    if (!group->closing) {
        dr_core_consumed(group->core, subgroup, version, now_us());
        dispatch_actions_locked(group);
    }
    pthread_mutex_unlock(&group->core_lock);
}

/*
 * The persistence thread made `subgroup`'s log durable up to `version`: the core publishes it
 * (PERSISTED_NUM) and the application hears of it. A failed log stops acknowledging: the node
 * leaves the group rather than let the frontier wait for it forever.
 */
static void on_durable_report(void *ctx, uint32_t subgroup, int64_t version, bool failed) {
    dr_group *group = ctx;
    pthread_mutex_lock(&group->core_lock);
    bool closing = group->closing;
    if (!closing && failed && !group->stopped)
        dr_core_leave(group->core, now_us());
    else if (!closing && !failed)
        dr_core_persisted(group->core, subgroup, version, now_us());
    if (!closing)
        dispatch_actions_locked(group);
    pthread_mutex_unlock(&group->core_lock);
    if (!closing && !failed)
        delivery_push_persisted(&group->delivery, subgroup, version, false);
}

/* ---- network events (network thread) -------------------------------------------------------- */

static void on_peer_up(dr_group *group, uint32_t id) {
    if (group->contact_id == DR_NODE_NONE && (group->contact.dialing || group->contact.backlog)) {
        /* the only connection a joiner dials by address is its contact */
        group->contact_id = id;
        group->contact.dialing = false;
        peer_state *peer = find_peer(group, id, true);
        if (peer) {
            peer->up = true;
            peer->dialing = false;
            flush_backlog(group, &group->contact, id);
        }
    }
    peer_state *peer = find_peer(group, id, true);
    if (!peer)
        return;
    peer->up = true;
    peer->dialing = false;
    flush_backlog(group, peer, id);
    dr_core_on_connect(group->core, id, now_us());
}

static void on_peer_down(dr_group *group, uint32_t id, int reason, uint64_t incarnation) {
    DR_INFO(DR_LOGM_NET, "connection to node %" PRIu32 " down: %s", id, dr_strerror(reason));
    if (reason == DR_EEXIST && !group->view && !group->join_error) {
        /* the contact refused us: a live member already has our id (net.h
         * duplicate_window_ms; a crashed predecessor's connection is not live) */
        DR_ERROR(DR_LOGM_VIEWMANAGER,
                 "node id %" PRIu32 " is in use by a running member of the group: not joining "
                 "(two processes with one local_id?)",
                 group->my_id);
        group->join_error = DR_EEXIST;
        pthread_cond_broadcast(&group->changed);
    }
    if (reason == DR_EPERM && !group->view && !group->join_error) {
        /* a member we dialled to join did not accept our credentials, or proved one we do not
         * hold: keys do not change, so retrying cannot help (docs/security.md) */
        char peer[DR_ADDRESS_MAX + 16];
        if (id == DR_NET_ANY_NODE)
            snprintf(peer, sizeof peer, "the contact at %s", group->contact_address);
        else
            snprintf(peer, sizeof peer, "node %" PRIu32, id);
        DR_ERROR(DR_LOGM_VIEWMANAGER,
                 "node %" PRIu32 ": the group refused this node's credentials (authentication "
                 "with %s failed): not joining; is [DERECHO] cluster_key_file the group's key?",
                 group->my_id, peer);
        group->join_error = DR_EPERM;
        pthread_cond_broadcast(&group->changed);
    }
    if (id == DR_NET_ANY_NODE || id == group->contact_id) {
        group->contact_id = DR_NODE_NONE;
        group->contact.dialing = false;
    }
    peer_state *peer = find_peer(group, id, false);
    if (peer) {
        peer->up = false;
        peer->dialing = false;
    }
    dr_core_on_disconnect(group->core, id, incarnation, now_us());
}

/* Frames from this size are handed to the core as shared bytes (blocks it may relay). */
#define SHARED_FRAME_MIN_BYTES (64u << 10)

/*
 * Hands a frame to the core. A large one (a block, whatever the core makes of it) goes as shared
 * bytes that free the network message with the last reference, so relaying it queues the
 * received bytes instead of a copy (docs/protocol.md, "Large messages and the core lock").
 * Returns true when the message was taken that way (the caller must not free it).
 */
static bool on_frame(dr_group *group, const dr_net_event *event) {
    dr_net_msg *msg = event->msg;
    if (msg->type != NET_TYPE_CORE) {
        DR_WARN(DR_LOGM_NET, "frame of unknown type %u from %" PRIu32 " ignored", msg->type,
                event->peer);
        return false;
    }
    group->replying_to = event->peer;
    dr_shared_bytes *shared =
        msg->payload_bytes >= SHARED_FRAME_MIN_BYTES
            ? dr_shared_bytes_wrap_inside(msg->payload, msg->payload_bytes, msg)
            : NULL; /* out of memory: the copying path below */
    int rc = shared ? dr_core_on_shared_message(group->core, event->peer, shared, now_us())
                    : dr_core_on_message(group->core, event->peer, msg->payload, msg->payload_bytes,
                                         now_us());
    if (rc == DR_EPROTO)
        dr_net_disconnect(group->net, event->peer);
    drain_actions_locked(group); /* relayed blocks, replies to joiners; the rest at batch end */
    group->replying_to = DR_NODE_NONE;
    dr_shared_bytes_release(shared); /* the queued relays hold their own references */
    return shared != NULL;
}

/* Events for the layer above, handled outside the core lock. Returns true if consumed. */
static bool route_to_hooks(dr_group *group, const dr_net_event *event) {
    bool client = event->role == DR_NET_ROLE_CLIENT;
    if (event->kind == DR_NET_EV_FRAME && event->msg->type >= DR_RUNTIME_TYPE_APP_MIN) {
        if (group->hooks.on_frame)
            group->hooks.on_frame(group->hooks.ctx, event->peer, event->key, client, event->msg);
        else
            free(event->msg);
        return true;
    }
    if (event->kind == DR_NET_EV_PEER_DOWN && group->hooks.on_peer_down)
        group->hooks.on_peer_down(group->hooks.ctx, event->peer, client);
    if (client && event->kind == DR_NET_EV_FRAME) {
        /* the core's frame types are members' business: a client sending one is refused */
        DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_WARN,
                       "client %u sent a member frame (type %u): disconnected", event->peer,
                       event->msg->type);
        free(event->msg);
        dr_net_disconnect(group->net, event->peer);
    }
    return client; /* clients are not the core's business */
}

static void on_net_event(void *ctx, const dr_net_event *event) {
    dr_group *group = ctx;
    bool msg_taken = false; /* a frame handed on as shared bytes (on_frame) */
    if (route_to_hooks(group, event))
        return;
    pthread_mutex_lock(&group->core_lock);
    if (!group->closing) {
        switch (event->kind) {
        case DR_NET_EV_PEER_UP:
            if (event->role == DR_NET_ROLE_MEMBER)
                on_peer_up(group, event->peer);
            break;
        case DR_NET_EV_FRAME:
            if (!group->batch_open) { /* the first frame of this batch */
                group->batch_open = true;
                dr_net_cork(group->net);
            }
            msg_taken = on_frame(group, event);
            break;
        case DR_NET_EV_TICK:
            dr_core_on_tick(group->core, now_us());
            break;
        case DR_NET_EV_PEER_DOWN:
            on_peer_down(group, event->peer, event->reason, event->incarnation);
            break;
        }
        if (event->kind == DR_NET_EV_FRAME)
            drain_actions_locked(group);
        else
            dispatch_actions_locked(group);
    }
    pthread_mutex_unlock(&group->core_lock);
    if (event->kind == DR_NET_EV_FRAME && !msg_taken)
        free(event->msg);
}

/*
 * After the network thread handled a batch of events (one epoll_wait's worth): one flush of the
 * core for all the frames of the batch, i.e. one cumulative acknowledgement (SST push of the
 * received counters) per peer, every newly stable message delivered in one pass, owed nulls sent
 * once; then the frames held since the batch's first frame leave, one gathered write per peer.
 */
static void on_batch_end(void *ctx) {
    dr_group *group = ctx;
    pthread_mutex_lock(&group->core_lock);
    if (group->batch_open) {
        group->batch_open = false;
        if (!group->closing)
            dispatch_actions_locked(group);
        dr_net_uncork(group->net);
    }
    pthread_mutex_unlock(&group->core_lock);
}

/* ---- configuration -------------------------------------------------------------------------- */

int dr_group_policy_from_config(const dr_config *config, const char *profile, dr_delivery_mode mode,
                                dr_shard_policy *policy, dr_err *err) {
    uint32_t num_shards = 0, min_nodes = 0, max_nodes = 0;
    if (dr_config_subgroup_u32(config, profile, "num_shards", &num_shards) ||
        dr_config_subgroup_u32(config, profile, "min_nodes", &min_nodes) ||
        dr_config_subgroup_u32(config, profile, "max_nodes", &max_nodes))
        return dr_err_set(err, DR_EINVAL,
                          "[SUBGROUP/%s] needs num_shards, min_nodes and max_nodes for a "
                          "flexible shard policy",
                          profile ? profile : "DEFAULT");
    dr_shard_policy_flexible(policy, num_shards, min_nodes, max_nodes, mode);
    snprintf(policy->profile, sizeof policy->profile, "%s", profile ? profile : "DEFAULT");
    return DR_OK;
}

static dr_pipeline_algorithm pipeline_from_name(const char *name) {
    if (name && strcmp(name, "sequential_send") == 0)
        return DR_PIPELINE_SEQUENTIAL;
    if (name && strcmp(name, "chain_send") == 0)
        return DR_PIPELINE_CHAIN;
    return DR_PIPELINE_TREE; /* binomial_send and tree_send */
}

/*
 * The core has one set of sizes per group: the largest max_payload_size and
 * max_smc_payload_size and the smallest window_size over the profiles of the subgroup types
 * (and DEFAULT), so every subgroup's messages fit and memory stays bounded.
 */
static void sizes_from_config(const dr_config *config, const dr_layout_spec *spec,
                              dr_core_options *options) {
    uint32_t payload = 0, smc = 0, window = 0, block = 0;
    dr_config_subgroup_u32(config, NULL, "max_payload_size", &options->max_payload_size);
    dr_config_subgroup_u32(config, NULL, "max_smc_payload_size", &options->max_smc_payload_size);
    dr_config_subgroup_u32(config, NULL, "window_size", &options->window_size);
    dr_config_subgroup_u32(config, NULL, "block_size", &options->block_size);
    options->pipeline =
        pipeline_from_name(dr_config_get(config, "SUBGROUP/DEFAULT", "rdmc_send_algorithm"));
    for (uint32_t t = 0; t < spec->num_types; t++) {
        const char *profile =
            spec->types[t].policy.profile[0] ? spec->types[t].policy.profile : NULL;
        if (!dr_config_subgroup_u32(config, profile, "max_payload_size", &payload) &&
            payload > options->max_payload_size)
            options->max_payload_size = payload;
        if (!dr_config_subgroup_u32(config, profile, "max_smc_payload_size", &smc) &&
            smc > options->max_smc_payload_size)
            options->max_smc_payload_size = smc;
        if (!dr_config_subgroup_u32(config, profile, "window_size", &window) &&
            window < options->window_size)
            options->window_size = window;
        if (!dr_config_subgroup_u32(config, profile, "block_size", &block) && t == 0)
            options->block_size = block;
    }
    if (options->max_smc_payload_size > options->max_payload_size)
        options->max_smc_payload_size = options->max_payload_size;
    /* byte window (issue 13): window_bytes bounds a sender's bytes in flight; the message
     * slots then grow to one per 4 KiB of it (at most WINDOW_SLOTS_MAX), so many small
     * messages fit, while window_size stays the minimum number of slots */
    uint32_t bytes = 0;
    dr_config_subgroup_u32(config, NULL, "window_bytes", &bytes);
    for (uint32_t t = 0; t < spec->num_types; t++) {
        const char *profile =
            spec->types[t].policy.profile[0] ? spec->types[t].policy.profile : NULL;
        uint32_t value = 0;
        if (!dr_config_subgroup_u32(config, profile, "window_bytes", &value) && value < bytes)
            bytes = value;
    }
    options->window_bytes = bytes;
    uint32_t slots = bytes / 4096 < WINDOW_SLOTS_MAX ? bytes / 4096 : WINDOW_SLOTS_MAX;
    if (bytes > 0 && slots > options->window_size)
        options->window_size = slots;
}

/* DR_CORE_TRACE=1 in the environment: the core's decision trace on stderr, with times. */
static void trace_to_stderr(void *ctx, const char *line) {
    const dr_group *group = ctx;
    fprintf(stderr, "[%" PRIu64 "] core %" PRIu32 ": %s\n", now_us(), group->my_id, line);
}

/* Failure detection: heartbeat period, suspicion threshold, partitioning safety. */
static void failure_options_from_config(const dr_config *config, dr_core_options *options) {
    uint32_t heartbeat_ms = 100, missed = 5;
    bool no_safety = false;
    dr_config_get_u32(config, "DERECHO", "heartbeat_ms", &heartbeat_ms);
    dr_config_get_u32(config, "DERECHO", "suspicion_missed_heartbeats", &missed);
    dr_config_get_bool(config, "DERECHO", "disable_partitioning_safety", &no_safety);
    options->heartbeat_ms = heartbeat_ms;
    options->suspect_after_missed = missed;
    options->disable_partitioning_safety = no_safety;
    options->count_consumption = true; /* a slow application slows the senders (bounded queue) */
}

/*
 * Total restart: [DERECHO] restart_leaders / restart_leader_ports (comma-separated, pairwise)
 * name the restart leaders in order; the first is this node's contact. With
 * enable_backup_restart_leaders the others take over in turn after restart_timeout_ms each (the
 * core sends to a leader by the node id its saved view gives that address, so the runtime
 * reaches it like any member); without it only the first leads.
 */
static void restart_leader_from_config(const dr_config *config, dr_core_options *options) {
    const char *ips = dr_config_get(config, "DERECHO", "restart_leaders");
    const char *ports = dr_config_get(config, "DERECHO", "restart_leader_ports");
    bool backups = false;
    dr_config_get_bool(config, "DERECHO", "enable_backup_restart_leaders", &backups);
    uint32_t n = 0;
    while (ips && ports && *ips && *ports && n < DR_RESTART_MAX_LEADERS) {
        char ip[48] = "", port[16] = "";
        int ip_len = 0, port_len = 0;
        if (sscanf(ips, " %47[^, ]%n", ip, &ip_len) != 1 ||
            sscanf(ports, " %15[^, ]%n", port, &port_len) != 1)
            break;
        snprintf(options->restart.leaders[n++], DR_ADDRESS_MAX, "%s:%s", ip, port);
        ips += ip_len;
        ports += port_len;
        ips += strspn(ips, ", ");
        ports += strspn(ports, ", ");
        if (!backups)
            break;
    }
    if (n == 0)
        snprintf(options->restart.leaders[n++], DR_ADDRESS_MAX, "%s", options->contact_address);
    options->restart.num_leaders = n;
    snprintf(options->contact_address, sizeof options->contact_address, "%s",
             options->restart.leaders[0]);
    uint32_t timeout = 0;
    if (dr_config_get_u32(config, "DERECHO", "restart_timeout_ms", &timeout) == DR_OK)
        options->restart.timeout_ms = timeout;
}

static int core_options_from_config(const dr_config *config, const dr_layout_spec *spec,
                                    dr_core_options *options, dr_err *err) {
    uint32_t local_id = 0;
    uint16_t gms_port = 0, contact_port = 0;
    dr_core_options_default(options);
    if (dr_config_get_u32(config, "DERECHO", "local_id", &local_id) ||
        dr_config_get_u16(config, "DERECHO", "gms_port", &gms_port) ||
        dr_config_get_u16(config, "DERECHO", "contact_port", &contact_port))
        return dr_err_set(err, DR_EINVAL, "[DERECHO] local_id, gms_port and contact_port needed");
    options->my_id = local_id;
    snprintf(options->my_address, sizeof options->my_address, "%s:%u",
             dr_config_get(config, "DERECHO", "local_ip"), gms_port);
    snprintf(options->contact_address, sizeof options->contact_address, "%s:%u",
             dr_config_get(config, "DERECHO", "contact_ip"), contact_port);
    options->layout = *spec;
    sizes_from_config(config, spec, options);
    options->join_retry_us = 500000;
    options->early_buffer_bytes = (size_t)64 << 20;
    failure_options_from_config(config, options);
    if (getenv("DR_CORE_TRACE") != NULL)
        options->trace = trace_to_stderr;
    return DR_OK;
}

/* A cluster id both ends of a connection must share: a hash of the layout spec. */
static uint64_t cluster_id_of(const dr_layout_spec *spec) {
    uint64_t hash = 1469598103934665603ull;
    for (uint32_t t = 0; t < spec->num_types; t++) {
        const dr_subgroup_type *type = &spec->types[t];
        for (const char *c = type->name; *c; c++)
            hash = (hash ^ (uint8_t)*c) * 1099511628211ull;
        uint32_t numbers[] = {type->num_subgroups, type->policy.kind, type->policy.num_shards,
                              type->policy.mode};
        for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++)
            hash = (hash ^ numbers[i]) * 1099511628211ull;
    }
    return hash;
}

/*
 * The group port's keys from [DERECHO] cluster_key_file / admin_key_file / client_key_file
 * (docs/security.md). Without a cluster key the port is open: warned about once per group.
 */
static int load_keys(const dr_config *config, dr_net_config *net_config,
                     uint8_t keys[DR_NET_KEY_KINDS][DR_NET_KEY_BYTES], dr_err *err) {
    static const struct {
        const char *name;
        dr_net_key_kind kind;
    } files[] = {{"cluster_key_file", DR_NET_KEY_MEMBER},
                 {"admin_key_file", DR_NET_KEY_ADMIN},
                 {"client_key_file", DR_NET_KEY_CLIENT}};
    const char *relative_to = dr_config_source(config);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        const char *path = dr_config_get(config, "DERECHO", files[i].name);
        if (!path || !*path)
            continue;
        int rc = dr_net_load_key(path, relative_to, keys[files[i].kind], err);
        if (rc)
            return rc;
        net_config->keys[files[i].kind] = keys[files[i].kind];
    }
    if (!net_config->keys[DR_NET_KEY_MEMBER] &&
        (net_config->keys[DR_NET_KEY_ADMIN] || net_config->keys[DR_NET_KEY_CLIENT]))
        return dr_err_set(err, DR_EINVAL,
                          "[DERECHO] admin_key_file / client_key_file need cluster_key_file");
    bool encrypt = false;
    dr_config_get_bool(config, "DERECHO", "encrypt_group_port", &encrypt);
    if (encrypt && !net_config->keys[DR_NET_KEY_MEMBER])
        return dr_err_set(err, DR_EINVAL, "[DERECHO] encrypt_group_port needs cluster_key_file");
    net_config->encrypt = encrypt;
    if (!net_config->keys[DR_NET_KEY_MEMBER])
        DR_WARN(DR_LOGM_NET,
                "no [DERECHO] cluster_key_file: the group port accepts anyone who connects "
                "(scripts/gen-cluster.sh makes keys; docs/security.md)");
    return DR_OK;
}

static int start_net(dr_group *group, const dr_config *config, const dr_core_options *options,
                     const dr_layout_spec *spec, dr_err *err) {
    dr_net_config net_config;
    dr_net_config_defaults(&net_config);
    net_config.node_id = options->my_id;
    net_config.incarnation = dr_core_incarnation(group->core); /* in each HELLO */
    net_config.role = DR_NET_ROLE_MEMBER;
    net_config.cluster_id = cluster_id_of(spec);
    net_config.listen_ip = dr_config_get(config, "DERECHO", "local_ip");
    dr_config_get_u16(config, "DERECHO", "gms_port", &net_config.listen_port);
    uint32_t largest = options->block_size > options->max_smc_payload_size
                           ? options->block_size
                           : options->max_smc_payload_size;
    uint64_t p2p = 0, p2p_reply = 0;
    dr_config_get_u64(config, "DERECHO", "max_p2p_request_payload_size", &p2p);
    dr_config_get_u64(config, "DERECHO", "max_p2p_reply_payload_size", &p2p_reply);
    if (p2p_reply > p2p)
        p2p = p2p_reply;
    if (options->max_payload_size > p2p)
        p2p = options->max_payload_size; /* ordered-call replies and forwarded calls */
    if (p2p > largest)
        largest = p2p > (1u << 30) ? (1u << 30) : (uint32_t)p2p;
    net_config.max_frame_bytes = largest + (1u << 20); /* headers, views, SST batches */
    group->max_frame_bytes = net_config.max_frame_bytes;
    /* a client may send one p2p request of the configured size, not a member-sized frame */
    uint64_t client_frame = 0;
    dr_config_get_u64(config, "DERECHO", "max_p2p_request_payload_size", &client_frame);
    client_frame += 4096; /* request header */
    net_config.max_client_frame_bytes = client_frame < net_config.max_frame_bytes
                                            ? (uint32_t)client_frame
                                            : net_config.max_frame_bytes;
    dr_config_get_u32(config, "DERECHO", "max_clients", &net_config.max_clients);
    dr_config_get_u32(config, "DERECHO", "max_clients_per_ip", &net_config.max_clients_per_ip);
    /* a member heard from within the failure detector's own threshold is alive: a second
     * process with its id is refused rather than allowed to cut it off */
    uint32_t heartbeat_ms = 100, missed = 5;
    dr_config_get_u32(config, "DERECHO", "heartbeat_ms", &heartbeat_ms);
    dr_config_get_u32(config, "DERECHO", "suspicion_missed_heartbeats", &missed);
    net_config.duplicate_window_ms = heartbeat_ms * missed;
    net_config.tick_ms = group->tick_ms;
    net_config.on_event = on_net_event;
    net_config.on_event_ctx = group;
    net_config.on_batch_end = on_batch_end;
    uint8_t keys[DR_NET_KEY_KINDS][DR_NET_KEY_BYTES];
    int rc = load_keys(config, &net_config, keys, err);
    if (rc == DR_OK)
        rc = dr_net_create(&net_config, &group->net, err);
    memset(keys, 0, sizeof keys);
    return rc;
}

/* ---- public API ----------------------------------------------------------------------------- */

/*
 * Message buffers (blocks of large messages, received frames, deliveries) are allocated and
 * freed at a high rate. Above glibc's default mmap threshold every one of them is a fresh
 * mmap: the page faults of touching it cost more than the copy (measured: 1 MB multicast 480 ->
 * 656 MB/s at 3 nodes). Keep them in the heap instead, unless the user tuned malloc through the
 * environment (glibc's MALLOC_MMAP_THRESHOLD_ and friends win then).
 */
static void tune_malloc_once(void) {
    if (getenv("MALLOC_MMAP_THRESHOLD_") || getenv("MALLOC_TRIM_THRESHOLD_"))
        return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's maximum */
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    mallopt(M_TOP_PAD, 64 << 20);
}

static int init_group(dr_group *group, const dr_config *config) {
    uint32_t heartbeat_ms = 100;
    memset(group, 0, sizeof *group);
    for (size_t i = 0; i < MAX_PEERS; i++)
        group->peers[i].id = DR_NODE_NONE;
    group->contact.id = DR_NODE_NONE;
    group->contact_id = DR_NODE_NONE;
    group->replying_to = DR_NODE_NONE;
    dr_config_get_u32(config, "DERECHO", "heartbeat_ms", &heartbeat_ms);
    /* the core wants a tick at least every heartbeat_ms / 2 (heartbeats and timeouts) */
    uint32_t half = heartbeat_ms / 2 ? heartbeat_ms / 2 : 1;
    group->tick_ms = half < MAX_TICK_MS ? half : MAX_TICK_MS;
    pthread_mutex_init(&group->core_lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&group->changed, &monotonic);
    pthread_condattr_destroy(&monotonic);
    return DR_OK;
}

int dr_group_create(const dr_config *config, const dr_layout_spec *spec,
                    const dr_group_callbacks *callbacks, dr_group **out, dr_err *err) {
    return dr_group_create_with_hooks(config, spec, callbacks, NULL, out, err);
}

int dr_group_create_with_hooks(const dr_config *config, const dr_layout_spec *spec,
                               const dr_group_callbacks *callbacks, const dr_group_hooks *hooks,
                               dr_group **out, dr_err *err) {
    static pthread_once_t malloc_tuned = PTHREAD_ONCE_INIT;
    pthread_once(&malloc_tuned, tune_malloc_once);
    dr_core_options options;
    int rc = core_options_from_config(config, spec, &options, err);
    if (rc)
        return rc;
    dr_group *group = malloc(sizeof *group);
    if (!group)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    init_group(group, config);
    group->my_id = options.my_id;
    if (hooks)
        group->hooks = *hooks;
    snprintf(group->contact_address, sizeof group->contact_address, "%s", options.contact_address);
    if (getenv("DR_CORE_TRACE")) {
        options.trace = trace_to_stderr;
        options.trace_ctx = group;
    }
    group->max_payload_size = options.max_payload_size;
    options.defer_flush = true; /* flushed once per event batch: dispatch_actions_locked */
    rc = durable_start(&group->durable, config, spec, options.max_payload_size, on_durable_report,
                       group, err);
    if (rc)
        goto fail;
    uint8_t *saved_view = NULL; /* total restart: what this node saved, and its logs' tails */
    rc = durable_restart_inputs(&group->durable, options.my_id, &options.restart, &saved_view, err);
    if (rc == DR_OK) {
        restart_leader_from_config(config, &options);
        snprintf(group->contact_address, sizeof group->contact_address, "%s",
                 options.contact_address);
        DR_INFO(DR_LOGM_VIEWMANAGER, "node %" PRIu32 ": total restart, restart leader %s",
                options.my_id, options.contact_address);
    } else if (rc != DR_ENOTFOUND) {
        goto fail;
    }
    /* a fresh incarnation per process start: a restart with the same id and address is never
     * taken for the process the group admitted (the core refuses it until that one is gone) */
    if (getrandom(&options.incarnation, sizeof options.incarnation, 0) !=
        (ssize_t)sizeof options.incarnation)
        options.incarnation = 0; /* the core derives one from the id and the clock */
    rc = dr_core_create(&options, now_us(), &group->core, err);
    free(saved_view);
    if (rc)
        goto fail;
    rc = delivery_start(&group->delivery, callbacks, on_delivery_taken, group);
    if (rc) {
        dr_err_set(err, rc, "cannot start the delivery thread");
        goto fail;
    }
    pthread_mutex_lock(&group->core_lock); /* no network event before the first dispatch */
    rc = start_net(group, config, &options, spec, err);
    if (!rc)
        dispatch_actions_locked(group);
    pthread_mutex_unlock(&group->core_lock);
    if (rc)
        goto fail;
    DR_INFO(DR_LOGM_VIEWMANAGER, "node %" PRIu32 " at %s, contact %s", options.my_id,
            options.my_address, options.contact_address);
    *out = group;
    return DR_OK;
fail:
    dr_group_destroy(group);
    return rc;
}

int dr_group_wait_view(dr_group *group, int32_t min_vid, int timeout_ms) {
    struct timespec deadline;
    deadline_after_ms(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&group->core_lock);
    while (!group->view || group->view->view.vid < min_vid) {
        if (group->closing) {
            rc = DR_ECLOSED;
            break;
        }
        if (group->join_error) {
            rc = group->join_error;
            break;
        }
        if (wait_changed(group, timeout_ms, &deadline) == DR_ETIMEDOUT) {
            rc = DR_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

int dr_group_get_view(dr_group *group, dr_group_view *out) {
    pthread_mutex_lock(&group->core_lock);
    int rc = group->view ? DR_OK : DR_EAGAIN;
    if (group->view)
        *out = *group->view;
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

uint32_t dr_group_my_id(const dr_group *group) {
    return group->my_id;
}

int dr_group_stopped(dr_group *group) {
    pthread_mutex_lock(&group->core_lock);
    int rc = group->join_error;
    if (rc == 0 && (group->stopped || group->closing))
        rc = DR_ECLOSED;
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

int dr_group_my_shard(dr_group *group, uint32_t subgroup, uint32_t *rank_out) {
    pthread_mutex_lock(&group->core_lock);
    int shard = -1;
    if (group->view && subgroup < group->view->layout.num_subgroups)
        shard = dr_layout_find_shard(&group->view->layout, subgroup, group->my_id, rank_out);
    pthread_mutex_unlock(&group->core_lock);
    return shard;
}

/* The delivery mode of my shard of `subgroup`, or a negative error. */
static int my_shard_mode(dr_group *group, uint32_t subgroup, dr_delivery_mode *mode) {
    const dr_layout *layout = dr_core_layout(group->core);
    if (!layout)
        return DR_EAGAIN;
    if (subgroup >= layout->num_subgroups)
        return DR_EINVAL;
    int shard = dr_layout_find_shard(layout, subgroup, group->my_id, NULL);
    if (shard < 0)
        return DR_ESTATE;
    *mode = layout->subgroups[subgroup].shards[shard].mode;
    return DR_OK;
}

int dr_group_leave(dr_group *group, int timeout_ms) {
    struct timespec deadline;
    deadline_after_ms(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
    pthread_mutex_lock(&group->core_lock);
    int rc = group->stopped ? DR_ESTATE : dr_core_leave(group->core, now_us());
    dispatch_actions_locked(group);
    while (rc == DR_OK && !group->stopped) {
        if (wait_changed(group, timeout_ms, &deadline) == DR_ETIMEDOUT)
            rc = DR_ETIMEDOUT;
    }
    if (rc == DR_OK && group->stop_code != 0)
        rc = group->stop_code;
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

/* Hands `copy` (len bytes from dr_big_alloc) to the core, waiting for the window; the core
 * owns it on success only. */
static int send_owned(dr_group *group, uint32_t subgroup, uint8_t *copy, size_t len,
                      int timeout_ms) {
    struct timespec deadline;
    deadline_after_ms(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
    int rc;
    pthread_mutex_lock(&group->core_lock);
    for (;;) {
        dr_delivery_mode mode = DR_MODE_ORDERED;
        if (group->closing) {
            rc = DR_ECLOSED;
            break;
        }
        if (group->join_error) {
            rc = group->join_error;
            break;
        }
        rc = my_shard_mode(group, subgroup, &mode);
        uint64_t opens = group->window_opens;
        if (rc == DR_OK) {
            rc = dr_core_send_owned(group->core, subgroup, copy, len, mode, now_us());
            dispatch_actions_locked(group);
        }
        if (rc != DR_EAGAIN)
            break;
        /* The call's own dispatch may have opened the window (e.g. re-sends went out) or stopped
         * the group: the core's deferred work (dr_core_flush) can find this node excluded, and
         * the STOPPED action is then handled here, its broadcast heard by no one. The top of the
         * loop sees either; waiting instead slept through the stop until timeout_ms. */
        if (group->window_opens != opens || group->join_error != 0)
            continue;
        if (wait_changed(group, timeout_ms, &deadline) == DR_ETIMEDOUT) {
            rc = DR_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

int dr_group_send(dr_group *group, uint32_t subgroup, const void *payload, size_t len,
                  int timeout_ms) {
    if (payload == NULL && len > 0)
        return DR_EINVAL;
    if (len > group->max_payload_size)
        return DR_ETOOBIG;
    /* the core keeps its own copy: make it here, outside the core lock, so a large message
     * does not hold up the network thread (ticks, heartbeats, frames) while it is copied */
    uint8_t *copy = len > 0 ? dr_big_alloc(len) : NULL; /* large: a reused, mapped buffer */
    if (len > 0 && copy == NULL)
        return DR_ENOMEM;
    if (len > 0)
        memcpy(copy, payload, len);
    int rc = send_owned(group, subgroup, copy, len, timeout_ms);
    if (rc != DR_OK)
        dr_big_free(copy); /* the core took it only on success */
    return rc;
}

void *dr_group_alloc_send_buffer(size_t len) {
    return dr_big_alloc(len);
}

void dr_group_free_send_buffer(void *buffer) {
    dr_big_free(buffer);
}

int dr_group_send_buffer(dr_group *group, uint32_t subgroup, void *buffer, size_t len,
                         int timeout_ms) {
    if (buffer == NULL)
        return DR_EINVAL;
    if (len > group->max_payload_size)
        return DR_ETOOBIG;
    return send_owned(group, subgroup, buffer, len, timeout_ms);
}

int dr_group_wait_writable(dr_group *group, uint32_t peer, int timeout_ms) {
    return dr_net_wait_writable(group->net, peer, timeout_ms);
}

int dr_group_leave_async(dr_group *group) {
    pthread_mutex_lock(&group->core_lock);
    int rc = group->stopped || group->closing ? DR_ESTATE : dr_core_leave(group->core, now_us());
    dispatch_actions_locked(group);
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

uint32_t dr_group_max_frame_bytes(const dr_group *group) {
    return group->max_frame_bytes;
}

/* The address of a member of the current view, or NULL. */
static const char *view_address(const dr_group *group, uint32_t node_id) {
    const dr_view *view = group->view ? &group->view->view : NULL;
    for (uint32_t i = 0; view && i < view->num_members; i++) {
        if (view->member_ids[i] == node_id)
            return view->addresses[i];
    }
    return NULL;
}

/* A member of the view we have no connection to yet: the frame (head then body, copied) waits in
 * the peer's backlog until its connection comes up (dialled if this node has the higher id). */
static int send_frame_to_unconnected(dr_group *group, uint32_t peer_id, uint16_t type,
                                     const void *head, size_t head_len, const void *body,
                                     size_t body_len) {
    pthread_mutex_lock(&group->core_lock);
    const char *address = view_address(group, peer_id);
    peer_state *peer = address ? find_peer(group, peer_id, true) : NULL;
    int rc = DR_ENOTFOUND;
    if (peer && !group->closing) {
        size_t len = head_len + body_len;
        uint8_t *copy = malloc(len ? len : 1);
        rc = copy ? DR_OK : DR_ENOMEM;
        if (copy) {
            if (head_len)
                memcpy(copy, head, head_len);
            if (body_len)
                memcpy(copy + head_len, body, body_len);
            if (peer->up)
                transmit_typed(group, peer_id, type, copy, len);
            else
                backlog_typed(group, peer, type, copy, len);
            if (!peer->up && group->my_id > peer_id)
                dial(group, peer_id, address, peer);
        }
        dispatch_actions_locked(group); /* a failed send told the core: act on it */
    }
    pthread_mutex_unlock(&group->core_lock);
    return rc;
}

int dr_group_send_frame(dr_group *group, uint32_t peer_id, uint16_t type, const void *payload,
                        size_t len) {
    if (type < DR_RUNTIME_TYPE_APP_MIN)
        return DR_EINVAL;
    int rc = dr_net_send(group->net, peer_id, type, 0, payload, len);
    if (rc != DR_ENOTFOUND || peer_id >= DR_NET_CLIENT_ID_BASE) /* clients: only if connected */
        return rc;
    return send_frame_to_unconnected(group, peer_id, type, NULL, 0, payload, len);
}

int dr_group_send_frame_split(dr_group *group, uint32_t peer_id, uint16_t type, const void *head,
                              size_t head_len, void *body, size_t body_len, dr_net_free_fn free_fn,
                              void *free_ctx) {
    bool taken = false;
    int rc = type < DR_RUNTIME_TYPE_APP_MIN
                 ? DR_EINVAL
                 : dr_net_send_lane_taken(group->net, peer_id, DR_NET_LANE_NORMAL, type, 0, head,
                                          head_len, body, body_len, free_fn, free_ctx, &taken);
    if (rc == DR_ENOTFOUND && peer_id < DR_NET_CLIENT_ID_BASE) /* copied into the backlog */
        rc = send_frame_to_unconnected(group, peer_id, type, head, head_len, body, body_len);
    if (!taken && free_fn) /* refused, dropped on a cut link, or copied: the body is ours */
        free_fn(free_ctx, body);
    return rc;
}

void dr_group_destroy(dr_group *group) {
    if (!group)
        return;
    pthread_mutex_lock(&group->core_lock);
    group->closing = true;
    pthread_cond_broadcast(&group->changed);
    pthread_mutex_unlock(&group->core_lock);
    dr_net_destroy(group->net);    /* joins the network thread: no more events */
    durable_stop(&group->durable); /* last flush; reports nothing more (closing) */
    delivery_stop(&group->delivery);
    dr_core_destroy(group->core);
    for (size_t i = 0; i < MAX_PEERS; i++)
        free_backlog(&group->peers[i]);
    free_backlog(&group->contact);
    free(group->view);
    pthread_cond_destroy(&group->changed);
    pthread_mutex_destroy(&group->core_lock);
    free(group);
}

/* ---- test only ---------------------------------------------------------------------------- */

void dr_group_test_cut_link(dr_group *group, uint32_t peer, bool cut) {
    dr_net_test_cut_link(group->net, peer, cut); /* dr_net locks; no core_lock needed */
}

/* ---- durable subgroups (include/derecho/durable.h; runtime/durable.c) ---------------------- */

int64_t dr_group_persisted_version(dr_group *group, uint32_t subgroup, bool global) {
    return durable_version(&group->durable, subgroup, global);
}

int dr_group_wait_persisted(dr_group *group, uint32_t subgroup, int64_t version, bool global,
                            int timeout_ms) {
    return durable_wait(&group->durable, subgroup, version, global, timeout_ms);
}

int dr_group_read_versioned(dr_group *group, uint32_t subgroup, dr_read_mode mode, int64_t key,
                            dr_versioned *out) {
    return durable_read(&group->durable, subgroup, mode, key, out);
}

int dr_group_read_replay_base(dr_group *group, uint32_t subgroup, int64_t *floor_out,
                              uint8_t **bytes_out, size_t *len_out) {
    return durable_read_base(&group->durable, subgroup, floor_out, bytes_out, len_out);
}

int dr_group_save_replay_base(dr_group *group, uint32_t subgroup, int32_t vid, const uint8_t *bytes,
                              size_t len) {
    return durable_save_base(&group->durable, subgroup, vid, bytes, len);
}

int dr_group_checkpoint(dr_group *group, uint32_t subgroup, int64_t version, const uint8_t *bytes,
                        size_t len) {
    return durable_checkpoint(&group->durable, subgroup, version, bytes, len);
}
