/*
 * Pending calls: request ids, result objects, p2p windows, and the public waiting functions
 * (dr_rpc_results_*, dr_rpc_pending_*). See calls.h for the locking and lifetime rules.
 */
#include "rpc/calls.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    NUM_BUCKETS = 256,                         /* request-id hash buckets */
    MAX_DOWN = 2 * DR_VIEW_MAX_MEMBERS,        /* peers remembered as down */
    MAX_TARGETS = 2 * DR_VIEW_MAX_MEMBERS,     /* p2p targets with outstanding calls */
    MAX_ENTRIES = DR_LAYOUT_MAX_SHARD_MEMBERS, /* replies of one ordered call */
};

typedef struct rpc_call {
    struct rpc_call *next; /* bucket chain */
    uint64_t id;           /* request id */
    bool ordered;          /* dr_rpc_results or dr_rpc_pending */
    bool in_table;         /* still matched against replies */
    bool released;         /* the user freed it */
    pthread_cond_t cond;   /* its waiters (on reg->lock) */
    rpc_registry *reg;
} rpc_call;

struct dr_rpc_pending {
    rpc_call call;
    uint32_t target;
    bool done;
    dr_rpc_reply reply;
};

struct dr_rpc_results {
    rpc_call call;
    bool delivered;     /* members known */
    int closed_status;  /* nonzero: the registry closed before delivery */
    int64_t version;    /* -1 before delivery */
    uint32_t count;     /* members expected to reply */
    uint32_t remaining; /* entries not yet filled */
    dr_rpc_reply entries[MAX_ENTRIES];
    bool filled[MAX_ENTRIES];
    uint32_t early_count; /* replies that came before my own delivery */
    dr_rpc_reply early[MAX_ENTRIES];
};

typedef struct target_window {
    uint32_t target;
    uint32_t outstanding;
} target_window;

struct rpc_registry {
    pthread_mutex_t lock;
    pthread_cond_t window_open; /* a p2p window slot was released */
    unsigned refs;              /* owner + live call objects */
    bool closed;
    int close_status;
    uint64_t next_id;
    rpc_call *buckets[NUM_BUCKETS];
    uint32_t down[MAX_DOWN];
    uint32_t num_down;
    target_window windows[MAX_TARGETS];
};

/* ---- time ----------------------------------------------------------------------------------- */

static void deadline_after(struct timespec *deadline, int timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    if (timeout_ms < 0)
        return;
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

/* Waits on cond (reg->lock held); returns DR_ETIMEDOUT once past the deadline. */
static int wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int timeout_ms,
                      const struct timespec *deadline) {
    if (timeout_ms < 0)
        return pthread_cond_wait(cond, lock), DR_OK;
    return pthread_cond_timedwait(cond, lock, deadline) == ETIMEDOUT ? DR_ETIMEDOUT : DR_OK;
}

static void init_cond(pthread_cond_t *cond) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* ---- registry ------------------------------------------------------------------------------- */

int rpc_registry_create(rpc_registry **out) {
    rpc_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return DR_ENOMEM;
    pthread_mutex_init(&reg->lock, NULL);
    init_cond(&reg->window_open);
    reg->refs = 1;
    reg->next_id = 1;
    *out = reg;
    return DR_OK;
}

/* Drops one reference (lock held); returns true if the registry must now be freed. */
static bool unref_locked(rpc_registry *reg) {
    return --reg->refs == 0;
}

static void free_registry(rpc_registry *reg) {
    pthread_cond_destroy(&reg->window_open);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static rpc_call **bucket_of(rpc_registry *reg, uint64_t id) {
    return &reg->buckets[(id ^ (id >> 8)) % NUM_BUCKETS];
}

static void table_insert(rpc_registry *reg, rpc_call *call) {
    rpc_call **bucket = bucket_of(reg, call->id);
    call->next = *bucket;
    *bucket = call;
    call->in_table = true;
}

static void table_remove(rpc_registry *reg, rpc_call *call) {
    if (!call->in_table)
        return;
    for (rpc_call **link = bucket_of(reg, call->id); *link; link = &(*link)->next) {
        if (*link == call) {
            *link = call->next;
            break;
        }
    }
    call->in_table = false;
    call->next = NULL;
}

static rpc_call *table_find(rpc_registry *reg, uint64_t id) {
    for (rpc_call *call = *bucket_of(reg, id); call; call = call->next)
        if (call->id == id)
            return call;
    return NULL;
}

static target_window *window_of(rpc_registry *reg, uint32_t target, bool create) {
    target_window *free_slot = NULL;
    for (size_t i = 0; i < MAX_TARGETS; i++) {
        if (reg->windows[i].outstanding && reg->windows[i].target == target)
            return &reg->windows[i];
        if (!free_slot && !reg->windows[i].outstanding)
            free_slot = &reg->windows[i];
    }
    if (create && free_slot)
        free_slot->target = target;
    return create ? free_slot : NULL;
}

static bool is_down_locked(const rpc_registry *reg, uint32_t peer) {
    for (uint32_t i = 0; i < reg->num_down; i++)
        if (reg->down[i] == peer)
            return true;
    return false;
}

static void free_reply(dr_rpc_reply *reply) {
    free(reply->bytes);
    reply->bytes = NULL;
    reply->len = 0;
}

/* Frees a call object once the user released it and no reply can reach it (lock held). */
static bool maybe_free_locked(rpc_call *call) {
    if (!call->released || call->in_table)
        return false;
    rpc_registry *reg = call->reg;
    if (call->ordered) {
        dr_rpc_results *results = (dr_rpc_results *)call;
        for (uint32_t i = 0; i < MAX_ENTRIES; i++) {
            free_reply(&results->entries[i]);
            free_reply(&results->early[i]);
        }
    } else {
        free_reply(&((dr_rpc_pending *)call)->reply);
    }
    pthread_cond_destroy(&call->cond);
    free(call);
    return unref_locked(reg);
}

/* Ends a p2p call (lock held): stores the reply, releases its window slot, wakes waiters. */
static bool finish_pending_locked(dr_rpc_pending *pending, int status, uint8_t *bytes, size_t len) {
    rpc_registry *reg = pending->call.reg;
    if (pending->done) {
        free(bytes);
        return false;
    }
    pending->done = true;
    pending->reply =
        (dr_rpc_reply){.node_id = pending->target, .status = status, .bytes = bytes, .len = len};
    table_remove(reg, &pending->call);
    target_window *window = window_of(reg, pending->target, false);
    if (window && window->outstanding)
        window->outstanding--;
    pthread_cond_broadcast(&reg->window_open);
    pthread_cond_broadcast(&pending->call.cond);
    return maybe_free_locked(&pending->call);
}

/* Fills entry i of delivered results (lock held); the object leaves the table when complete. */
static bool fill_entry_locked(dr_rpc_results *results, uint32_t i, int status, uint8_t *bytes,
                              size_t len) {
    if (results->filled[i]) {
        free(bytes);
        return false;
    }
    results->filled[i] = true;
    results->entries[i].status = status;
    results->entries[i].bytes = bytes;
    results->entries[i].len = len;
    results->remaining--;
    pthread_cond_broadcast(&results->call.cond);
    if (results->remaining == 0)
        table_remove(results->call.reg, &results->call);
    return maybe_free_locked(&results->call);
}

/* Ends every call in the table with `status` (lock held); true if the registry must be freed. */
static bool cancel_all_locked(rpc_registry *reg, int status) {
    reg->closed = true;
    reg->close_status = status;
    bool free_now = false;
    for (size_t b = 0; b < NUM_BUCKETS; b++) {
        while (reg->buckets[b]) {
            rpc_call *call = reg->buckets[b];
            if (call->ordered) {
                dr_rpc_results *results = (dr_rpc_results *)call;
                for (uint32_t i = 0; results->delivered && i < results->count; i++)
                    if (!results->filled[i])
                        free_now |= fill_entry_locked(results, i, status, NULL, 0);
                if (!results->delivered) {
                    results->closed_status = status;
                    pthread_cond_broadcast(&call->cond);
                }
                if (reg->buckets[b] == call) {
                    table_remove(reg, call);
                    free_now |= maybe_free_locked(call);
                }
            } else {
                free_now |= finish_pending_locked((dr_rpc_pending *)call, status, NULL, 0);
            }
        }
    }
    pthread_cond_broadcast(&reg->window_open);
    return free_now;
}

void rpc_registry_cancel_all(rpc_registry *reg, int status) {
    pthread_mutex_lock(&reg->lock);
    bool free_now = cancel_all_locked(reg, status); /* false: the owner holds a reference */
    pthread_mutex_unlock(&reg->lock);
    if (free_now)
        free_registry(reg);
}

void rpc_registry_close(rpc_registry *reg, int status) {
    pthread_mutex_lock(&reg->lock);
    bool free_now = cancel_all_locked(reg, status);
    free_now |= unref_locked(reg);
    pthread_mutex_unlock(&reg->lock);
    if (free_now)
        free_registry(reg);
}

/* ---- ordered calls -------------------------------------------------------------------------- */

int rpc_results_new(rpc_registry *reg, dr_rpc_results **out, uint64_t *request_id) {
    dr_rpc_results *results = calloc(1, sizeof *results);
    if (!results)
        return DR_ENOMEM;
    results->call.ordered = true;
    results->call.reg = reg;
    results->version = -1;
    init_cond(&results->call.cond);
    pthread_mutex_lock(&reg->lock);
    if (reg->closed) {
        pthread_mutex_unlock(&reg->lock);
        pthread_cond_destroy(&results->call.cond);
        free(results);
        return DR_ECLOSED;
    }
    reg->refs++;
    results->call.id = reg->next_id++;
    table_insert(reg, &results->call);
    *request_id = results->call.id;
    pthread_mutex_unlock(&reg->lock);
    *out = results;
    return DR_OK;
}

void rpc_results_abort(dr_rpc_results *results) {
    rpc_registry *reg = results->call.reg;
    pthread_mutex_lock(&reg->lock);
    table_remove(reg, &results->call);
    results->call.released = true;
    bool free_reg = maybe_free_locked(&results->call);
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

/* Moves an early reply from `node` into entry i, if one came. */
static bool take_early_locked(dr_rpc_results *results, uint32_t i) {
    for (uint32_t e = 0; e < results->early_count; e++) {
        if (results->early[e].node_id != results->entries[i].node_id)
            continue;
        dr_rpc_reply early = results->early[e];
        results->early[e] = results->early[--results->early_count];
        memset(&results->early[results->early_count], 0, sizeof early);
        return fill_entry_locked(results, i, early.status, early.bytes, early.len);
    }
    return false;
}

void rpc_results_delivered(rpc_registry *reg, uint64_t request_id, int64_t version,
                           const uint32_t *members, uint32_t num_members) {
    pthread_mutex_lock(&reg->lock);
    rpc_call *call = table_find(reg, request_id);
    dr_rpc_results *results = call && call->ordered ? (dr_rpc_results *)call : NULL;
    bool free_reg = false;
    if (results && !results->delivered) {
        results->delivered = true;
        results->version = version;
        results->count = num_members < MAX_ENTRIES ? num_members : MAX_ENTRIES;
        results->remaining = results->count;
        for (uint32_t i = 0; i < results->count; i++) {
            results->entries[i].node_id = members[i];
            results->entries[i].status = DR_ETIMEDOUT;
        }
        pthread_cond_broadcast(&results->call.cond);
        /* fill_entry_locked may free the object once released: stop when it leaves the table */
        for (uint32_t i = 0; i < results->count && !free_reg && results->call.in_table; i++) {
            if (take_early_locked(results, i))
                free_reg = true;
            else if (results->call.in_table && !results->filled[i] &&
                     is_down_locked(reg, members[i]))
                free_reg = fill_entry_locked(results, i, DR_EREMOVED, NULL, 0);
        }
        if (!free_reg && results->count == 0) {
            table_remove(reg, &results->call);
            free_reg = maybe_free_locked(&results->call);
        }
    }
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

static bool ordered_reply_locked(dr_rpc_results *results, uint32_t from, int status, uint8_t *bytes,
                                 size_t len) {
    if (!results->delivered) {
        for (uint32_t e = 0; e < results->early_count; e++) {
            if (results->early[e].node_id == from) { /* duplicate */
                free(bytes);
                return false;
            }
        }
        if (results->early_count == MAX_ENTRIES) {
            free(bytes);
            return false;
        }
        results->early[results->early_count++] =
            (dr_rpc_reply){.node_id = from, .status = status, .bytes = bytes, .len = len};
        return false;
    }
    for (uint32_t i = 0; i < results->count; i++)
        if (results->entries[i].node_id == from)
            return fill_entry_locked(results, i, status, bytes, len);
    free(bytes); /* not a member of the shard that delivered the call */
    return false;
}

void rpc_reply_arrived(rpc_registry *reg, bool ordered, uint32_t from, const rpc_reply_msg *msg,
                       size_t max_len) {
    int status = msg->status;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (msg->len > max_len) {
        status = DR_ETOOBIG;
    } else if (msg->len) {
        bytes = malloc(msg->len);
        if (!bytes)
            status = DR_ENOMEM;
        else {
            memcpy(bytes, msg->bytes, msg->len);
            len = msg->len;
        }
    }
    pthread_mutex_lock(&reg->lock);
    rpc_call *call = table_find(reg, msg->request_id);
    bool free_reg = false;
    if (!call || call->ordered != ordered) {
        free(bytes);
    } else if (ordered) {
        free_reg = ordered_reply_locked((dr_rpc_results *)call, from, status, bytes, len);
    } else if (((dr_rpc_pending *)call)->target != from) {
        free(bytes);
    } else {
        free_reg = finish_pending_locked((dr_rpc_pending *)call, status, bytes, len);
    }
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

/* Ends with DR_EREMOVED whatever waits on a node `gone` says is gone (lock held). */
static bool remove_nodes_locked(rpc_registry *reg, bool (*gone)(const void *ctx, uint32_t id),
                                const void *ctx) {
    bool free_reg = false;
    for (size_t b = 0; b < NUM_BUCKETS; b++) {
        rpc_call *call = reg->buckets[b];
        while (call) {
            rpc_call *next = call->next; /* call may leave the table or be freed below */
            if (call->ordered) {
                dr_rpc_results *results = (dr_rpc_results *)call;
                for (uint32_t i = 0; results->delivered && i < results->count; i++) {
                    if (!results->filled[i] && gone(ctx, results->entries[i].node_id)) {
                        bool last = results->remaining == 1;
                        free_reg |= fill_entry_locked(results, i, DR_EREMOVED, NULL, 0);
                        if (last)
                            break; /* it left the table, perhaps freed */
                    }
                }
            } else {
                dr_rpc_pending *pending = (dr_rpc_pending *)call;
                if (gone(ctx, pending->target))
                    free_reg |= finish_pending_locked(pending, DR_EREMOVED, NULL, 0);
            }
            call = next;
        }
    }
    return free_reg;
}

static bool is_peer(const void *ctx, uint32_t id) {
    return *(const uint32_t *)ctx == id;
}

static bool not_in_view(const void *ctx, uint32_t id) {
    const dr_view *view = ctx;
    for (uint32_t m = 0; m < view->num_members; m++)
        if (view->member_ids[m] == id)
            return false;
    return true;
}

void rpc_peer_down(rpc_registry *reg, uint32_t peer) {
    pthread_mutex_lock(&reg->lock);
    if (!is_down_locked(reg, peer)) {
        if (reg->num_down == MAX_DOWN) /* forget the oldest */
            memmove(reg->down, reg->down + 1, (MAX_DOWN - 1) * sizeof *reg->down), reg->num_down--;
        reg->down[reg->num_down++] = peer;
    }
    bool free_reg = remove_nodes_locked(reg, is_peer, &peer);
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

void rpc_peer_alive(rpc_registry *reg, uint32_t peer) {
    pthread_mutex_lock(&reg->lock);
    for (uint32_t i = 0; i < reg->num_down; i++) {
        if (reg->down[i] == peer) {
            reg->down[i] = reg->down[--reg->num_down];
            break;
        }
    }
    pthread_mutex_unlock(&reg->lock);
}

bool rpc_peer_is_down(rpc_registry *reg, uint32_t peer) {
    pthread_mutex_lock(&reg->lock);
    bool down = is_down_locked(reg, peer);
    pthread_mutex_unlock(&reg->lock);
    return down;
}

void rpc_view_changed(rpc_registry *reg, const dr_view *view) {
    pthread_mutex_lock(&reg->lock);
    bool free_reg = remove_nodes_locked(reg, not_in_view, view);
    for (uint32_t i = 0; i < reg->num_down;) {
        if (not_in_view(view, reg->down[i]))
            reg->down[i] = reg->down[--reg->num_down];
        else
            i++;
    }
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

/* ---- p2p calls ------------------------------------------------------------------------------ */

int rpc_pending_new(rpc_registry *reg, uint32_t target, uint32_t window, int timeout_ms,
                    dr_rpc_pending **out, uint64_t *request_id) {
    dr_rpc_pending *pending = calloc(1, sizeof *pending);
    if (!pending)
        return DR_ENOMEM;
    pending->target = target;
    pending->call.reg = reg;
    init_cond(&pending->call.cond);
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&reg->lock);
    for (;;) {
        if (reg->closed) {
            rc = DR_ECLOSED;
            break;
        }
        target_window *slot = window_of(reg, target, true);
        if (slot && slot->outstanding < window) {
            slot->outstanding++;
            break;
        }
        if (wait_until(&reg->window_open, &reg->lock, timeout_ms, &deadline)) {
            rc = DR_ETIMEDOUT;
            break;
        }
    }
    if (rc == DR_OK) {
        reg->refs++;
        pending->call.id = reg->next_id++;
        table_insert(reg, &pending->call);
        *request_id = pending->call.id;
    }
    pthread_mutex_unlock(&reg->lock);
    if (rc) {
        pthread_cond_destroy(&pending->call.cond);
        free(pending);
        return rc;
    }
    *out = pending;
    return DR_OK;
}

void rpc_pending_fail(dr_rpc_pending *pending, int status) {
    rpc_registry *reg = pending->call.reg;
    pthread_mutex_lock(&reg->lock);
    bool free_reg = finish_pending_locked(pending, status, NULL, 0);
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

int dr_rpc_pending_wait(dr_rpc_pending *pending, int timeout_ms, dr_rpc_reply *out) {
    rpc_registry *reg = pending->call.reg;
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&reg->lock);
    while (!pending->done && rc == DR_OK)
        rc = wait_until(&pending->call.cond, &reg->lock, timeout_ms, &deadline);
    if (pending->done) {
        *out = pending->reply; /* moved */
        pending->reply.bytes = NULL;
        pending->reply.len = 0;
        rc = out->status;
    } else {
        *out = (dr_rpc_reply){.node_id = pending->target, .status = DR_ETIMEDOUT};
        rc = DR_ETIMEDOUT;
    }
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

void dr_rpc_pending_free(dr_rpc_pending *pending) {
    if (!pending)
        return;
    rpc_registry *reg = pending->call.reg;
    pthread_mutex_lock(&reg->lock);
    pending->call.released = true; /* stays in the table (holding its window slot) until it ends */
    bool free_reg = maybe_free_locked(&pending->call);
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

/* ---- results -------------------------------------------------------------------------------- */

size_t dr_rpc_results_count(dr_rpc_results *results, int timeout_ms) {
    rpc_registry *reg = results->call.reg;
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms);
    pthread_mutex_lock(&reg->lock);
    while (!results->delivered && !results->closed_status &&
           wait_until(&results->call.cond, &reg->lock, timeout_ms, &deadline) == DR_OK) {
    }
    size_t count = results->delivered ? results->count : 0;
    pthread_mutex_unlock(&reg->lock);
    return count;
}

int dr_rpc_results_wait(dr_rpc_results *results, size_t index, int timeout_ms, dr_rpc_reply *out) {
    rpc_registry *reg = results->call.reg;
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&reg->lock);
    while (rc == DR_OK && !results->closed_status &&
           (!results->delivered || (index < results->count && !results->filled[index])))
        rc = wait_until(&results->call.cond, &reg->lock, timeout_ms, &deadline);
    *out = (dr_rpc_reply){.node_id = DR_NODE_NONE, .status = DR_ETIMEDOUT};
    if (results->delivered && index >= results->count) {
        rc = DR_EINVAL;
        out->status = DR_EINVAL;
    } else if (results->delivered && results->filled[index]) {
        const dr_rpc_reply *entry = &results->entries[index];
        *out = *entry;
        out->bytes = NULL;
        if (entry->len) {
            out->bytes = malloc(entry->len);
            if (out->bytes)
                memcpy(out->bytes, entry->bytes, entry->len);
            else
                out->len = 0, out->status = DR_ENOMEM;
        }
        rc = DR_OK;
    } else if (results->closed_status) {
        out->status = rc = results->closed_status;
    } else {
        if (results->delivered)
            out->node_id = results->entries[index].node_id;
        rc = DR_ETIMEDOUT;
    }
    pthread_mutex_unlock(&reg->lock);
    return rc;
}

int64_t dr_rpc_results_version(dr_rpc_results *results) {
    rpc_registry *reg = results->call.reg;
    pthread_mutex_lock(&reg->lock);
    int64_t version = results->version;
    pthread_mutex_unlock(&reg->lock);
    return version;
}

void dr_rpc_results_free(dr_rpc_results *results) {
    if (!results)
        return;
    rpc_registry *reg = results->call.reg;
    pthread_mutex_lock(&reg->lock);
    table_remove(reg, &results->call); /* later replies are dropped */
    results->call.released = true;
    bool free_reg = maybe_free_locked(&results->call);
    pthread_mutex_unlock(&reg->lock);
    if (free_reg)
        free_registry(reg);
}

void dr_rpc_reply_clear(dr_rpc_reply *reply) {
    if (!reply)
        return;
    free(reply->bytes);
    reply->bytes = NULL;
    reply->len = 0;
}
