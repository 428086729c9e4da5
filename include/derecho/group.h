/** @file
 * libderecho's group API: start or join a group of processes, learn its views and shard
 * layout, multicast in my shard (ordered or raw) and receive deliveries.
 *
 * A process describes its replicated object types as a dr_layout_spec (include/derecho/
 * layout.h): subgroup types in a fixed order, each with a shard policy, usually filled from the
 * configuration's `[SUBGROUP/<PROFILE>]` sections with dr_group_policy_from_config. Then
 * dr_group_create starts the node: the node whose local_ip:gms_port equals
 * contact_ip:contact_port starts the group and waits until enough nodes joined for an adequate
 * first view; every other node joins through the contact (redirected to the leader).
 *
 * Threads: dr_group runs a network thread (epoll, which also ticks the protocol clock) and one
 * delivery thread.
 * Deliveries and view changes reach the application through callbacks on the delivery thread,
 * one at a time, in delivery order; a callback must not call dr_group_destroy, and a slow
 * callback delays later deliveries (run slow work elsewhere). Every other function may be
 * called from any thread.
 */
#ifndef DERECHO_GROUP_H
#define DERECHO_GROUP_H

#include "derecho/config.h"
#include "derecho/error.h"
#include "derecho/layout.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A running group node (opaque). */
typedef struct dr_group dr_group;

/** One delivered message, valid only during the callback. */
typedef struct dr_message {
    uint32_t subgroup;     /**< subgroup id (index into the layout's subgroups) */
    uint32_t shard;        /**< shard index within the subgroup */
    uint32_t sender_id;    /**< node id of the sender */
    int64_t index;         /**< sender's message index in its view */
    int64_t version;       /**< (vid << 32) | seq for ordered delivery, -1 for raw */
    uint64_t timestamp_us; /**< the sender's clock when it sent (µs) */
    dr_delivery_mode mode; /**< ordered or raw */
    const uint8_t *bytes;  /**< payload (borrowed) */
    size_t len;            /**< payload length */
} dr_message;

/** A view as the application sees it (copied; owned by the caller). */
typedef struct dr_group_view {
    dr_view view;     /**< id and members in rank order */
    dr_layout layout; /**< subgroups and shards of that view */
    uint32_t my_id;   /**< this node's id */
    /** False for view 0; otherwise previous_layout is the layout of view vid - 1, from which
     * new shard members and their state sources follow (dr_layout_is_new_in_shard,
     * dr_layout_state_source). */
    bool has_previous;
    dr_layout previous_layout; /**< see has_previous */
} dr_group_view;

/** Delivery callback (delivery thread). */
typedef void (*dr_deliver_fn)(void *ctx, const dr_message *message);

/** View-installed callback (delivery thread), after the deliveries of the previous view. */
typedef void (*dr_view_fn)(void *ctx, const dr_group_view *view);

/**
 * Persistence callback (delivery thread) of a durable subgroup (include/derecho/durable.h):
 * every ordered message of my shard of `subgroup` up to `version` is on disk here (global
 * false) or on every member of the shard (global true). Runs after the deliveries it covers.
 */
typedef void (*dr_persisted_fn)(void *ctx, uint32_t subgroup, int64_t version, bool global);

/** Application callbacks; any may be NULL. */
/**
 * Replay callback (delivery thread; durable subgroups, docs/persistence.md "Replay"). At a total
 * restart the runtime hands the application, before the restart view's on_view and before any
 * new delivery, what this node's log of its shard holds up to the restart's trim, in version
 * order, so that it rebuilds the state it had:
 *
 * - base == true (at most once per subgroup, first): message->bytes is the state this node
 *   received by state transfer when it joined the shard and saved with
 *   dr_group_save_replay_base; message->version is the last version that state covers.
 *   Replace the state with it.
 * - base == false: one logged delivery: message->version and ->bytes as delivered,
 *   ->timestamp_us the log's stamp, ->sender_id DR_NODE_NONE and ->index -1 (the log does not
 *   keep them), ->mode DR_MODE_ORDERED. Apply it as at delivery, without replying or sending.
 *
 * message and its bytes are borrowed for the call. Return 0 to go on; anything else stops the
 * replay of that subgroup, and the node leaves the group (its state would be incomplete).
 */
typedef int (*dr_replay_fn)(void *ctx, const dr_message *message, bool base);

typedef struct dr_group_callbacks {
    dr_deliver_fn on_deliver;     /**< each delivered message */
    dr_view_fn on_view;           /**< each installed view */
    void *ctx;                    /**< passed to every callback */
    dr_persisted_fn on_persisted; /**< durable subgroups: local and global persistence */
    dr_replay_fn on_replay;       /**< durable subgroups: the log handed back at a total restart
                                       (NULL: not replayed) */
} dr_group_callbacks;

/**
 * Fills *policy with a flexible-even-shards policy whose num_shards, min_nodes and max_nodes
 * come from `[SUBGROUP/<profile>]` (falling back to [SUBGROUP/DEFAULT]). Returns 0, or
 * DR_EINVAL when the profile lacks one of them (message in *err, may be NULL).
 */
int dr_group_policy_from_config(const dr_config *config, const char *profile, dr_delivery_mode mode,
                                dr_shard_policy *policy, dr_err *err);

/**
 * Starts this node: listens on local_ip:gms_port, then starts the group (if this node is the
 * contact) or joins it. Does not wait for a view: use dr_group_wait_view. The configuration is
 * read during the call only. Sizes (window, payload, block) come from [SUBGROUP/DEFAULT] and
 * the profile of the first subgroup type. Returns 0 and *out (free with dr_group_destroy), or
 * DR_EINVAL (bad spec or config), DR_EIO (cannot listen), DR_ENOMEM, with *err.
 */
int dr_group_create(const dr_config *config, const dr_layout_spec *spec,
                    const dr_group_callbacks *callbacks, dr_group **out, dr_err *err);

/**
 * Blocks until a view with id >= min_vid is installed (returns 0), the join fails (its error,
 * e.g. DR_EEXIST for a duplicate id, DR_EPERM when a member refused this node's key), the
 * group is shut down (DR_ECLOSED) or timeout_ms passes
 * (DR_ETIMEDOUT; -1 waits forever).
 */
int dr_group_wait_view(dr_group *group, int32_t min_vid, int timeout_ms);

/** Copies the current view into *out. Returns 0, or DR_EAGAIN before the first view. */
int dr_group_get_view(dr_group *group, dr_group_view *out);

/** This node's id. */
uint32_t dr_group_my_id(const dr_group *group);

/**
 * Whether this node stopped being a member for good: 0 while it is one (or still joining);
 * otherwise why it stopped: DR_EREMOVED (the group excluded it, e.g. after it was suspected),
 * DR_ECLOSED (it stopped itself: partitioning safety, a clean leave, or shutdown), or the
 * join's error (e.g. DR_EEXIST). A stopped node never rejoins: an application should stop
 * serving. Never blocks; any thread.
 */
int dr_group_stopped(dr_group *group);

/**
 * Finds this node's shard in `subgroup` in the current view: returns the shard index (and its
 * rank in *rank_out, may be NULL), or -1 if it is in no shard of it (or no view yet).
 */
int dr_group_my_shard(dr_group *group, uint32_t subgroup, uint32_t *rank_out);

/**
 * Multicasts payload[0..len) to my shard of `subgroup` (copied before returning), ordered or
 * raw as the shard's mode says. Blocks while the sending window is full or no view is
 * installed yet, up to timeout_ms (-1: forever). Returns 0; DR_ETIMEDOUT; DR_ETOOBIG over
 * max_payload_size; DR_ESTATE if this node is not a sender there; DR_EINVAL for a bad
 * subgroup; DR_ECLOSED after shutdown.
 */
int dr_group_send(dr_group *group, uint32_t subgroup, const void *payload, size_t len,
                  int timeout_ms);

/**
 * A send buffer of len bytes (at least 1; uninitialised) for dr_group_send_buffer: the
 * application writes its message straight into it, and the group sends it without copying
 * (Derecho's get-send-buffer-then-send). Large buffers (4 MiB and more) are reused ones, already
 * mapped, when a delivered or sent message returned one. NULL when out of memory. Any thread.
 */
void *dr_group_alloc_send_buffer(size_t len);

/** Releases a send buffer that was not sent (NULL: no-op). Any thread. */
void dr_group_free_send_buffer(void *buffer);

/**
 * As dr_group_send, without the copy: multicasts buffer[0..len) (from
 * dr_group_alloc_send_buffer, at least len bytes) and, on success (0), takes it: the group
 * frees it once every member has it, and the caller must not touch it any more (the sender's
 * own delivery hands the same bytes to its callback). On failure the buffer stays the caller's,
 * unchanged (send it again, or dr_group_free_send_buffer). Returns as dr_group_send; DR_EINVAL
 * for a NULL buffer.
 */
int dr_group_send_buffer(dr_group *group, uint32_t subgroup, void *buffer, size_t len,
                         int timeout_ms);

/**
 * Leaves the group cleanly: new sends are refused (DR_ESTATE), the messages this node already
 * sent are delivered first (flush), then the leader removes this node in the next view (a
 * departure, not a failure); blocks until that view is committed or timeout_ms passes (-1:
 * forever). Afterwards the group object only answers DR_ECLOSED; free it with
 * dr_group_destroy. Returns 0 (everything this node sent was delivered), DR_EUNDELIVERED (a
 * view change overtook the flush and some of its messages were not delivered: the log names
 * how many), DR_ETIMEDOUT, DR_ESTATE (not in a view, or already stopped), or the code the group
 * stopped with instead (DR_EREMOVED). Members that leave are not counted by partitioning
 * safety, so any number may leave at once; the last one ends the group (a member alone in its
 * view that leaves stops at once).
 * Must not be called from a delivery or view callback.
 */
int dr_group_leave(dr_group *group, int timeout_ms);

/**
 * Stops this node: closes connections, stops threads (joins them, so no callback runs after
 * it returns) and frees everything. Call from a thread that is not the delivery thread. This is
 * not a leave: the others see a failure (dr_group_leave first for a clean departure).
 * NULL is a no-op.
 */
void dr_group_destroy(dr_group *group);

#ifdef __cplusplus
}
#endif
#endif
