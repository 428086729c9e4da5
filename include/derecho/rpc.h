/** @file
 * Replicated objects (PROTOCOL.md §4): the programming model applications are written against.
 *
 * An application describes each subgroup type of its layout (same order as the dr_layout_spec)
 * as a dr_rpc_type: named methods, each ORDERED (multicast in the caller's shard, run by every
 * member at delivery, in delivery order, on the delivery thread) or P2P (sent to one named
 * node, run on a worker thread of that node), plus serialize/restore callbacks for state
 * transfer to joining replicas. The object's state belongs to the application (type->ctx).
 *
 *   ordered call:  dr_rpc_ordered_call(node, subgroup, "put", args) -> results: one entry per
 *                  member of the caller's shard in the view that delivered the call, each
 *                  waitable for that member's reply or DR_EREMOVED.
 *   p2p call:      dr_rpc_p2p_call(node, target, subgroup, "get", args) -> one reply;
 *                  members and non-members of the subgroup may call; so may outside clients
 *                  (dr_rpc_client_*), which are not group members.
 *
 * Wire: every call carries a request id that the caller maps to its pending call (never a
 * pointer); methods are named by a 32-bit hash of their name; arguments and replies are
 * length-checked against the configured limits (max_p2p_request_payload_size,
 * max_p2p_reply_payload_size, the subgroup's max_payload_size / max_reply_payload_size).
 * Unknown methods, unknown nodes and oversized arguments or replies are errors returned to
 * the caller; the group keeps working.
 *
 * Threads: ordered handlers run on the delivery thread (keep them short); p2p handlers run on a
 * worker pool (never the delivery thread); every dr_rpc_* call may be made from any thread
 * except from inside a handler waiting on its own node's delivery thread (an ordered handler
 * must not wait for an ordered call's results).
 */
#ifndef DERECHO_RPC_H
#define DERECHO_RPC_H

#include "derecho/buffer.h"
#include "derecho/config.h"
#include "derecho/durable.h"
#include "derecho/error.h"
#include "derecho/group.h"
#include "derecho/layout.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What a handler learns about the call it serves. */
typedef struct dr_rpc_call_info {
    uint32_t caller_id;    /**< node id of the caller (outside clients: their local id) */
    bool from_client;      /**< the caller is an outside client */
    bool from_admin;       /**< ...that proved the admin key */
    uint32_t subgroup;     /**< subgroup id the call addresses */
    uint32_t shard;        /**< my shard in that subgroup (-1 as UINT32_MAX if none) */
    bool ordered;          /**< ordered call (delivery thread) or p2p (worker thread) */
    int64_t version;       /**< ordered: the call's version ((vid << 32) | seq); p2p: -1 */
    uint64_t timestamp_us; /**< ordered: the caller's send time; p2p: arrival time */
    /** Ordered, durable subgroups: the call is re-executed from the log at a total restart
     * (docs/persistence.md "Replay"): on the delivery thread before the restart view, the reply
     * is discarded, `timestamp_us` is the log's stamp. The handler must only apply the call's
     * effect (no calls, no waits, no side effects beyond the replicated state). */
    bool replayed;
} dr_rpc_call_info;

/**
 * A method handler. Reads args[0..len) (borrowed, untrusted: decode with dr_reader), may append
 * a reply to *reply (an empty buffer limited to the configured maximum reply size). Returns 0,
 * or a negative DR_E* code that the caller receives as that reply's status (with the reply
 * bytes, if any, as a message). `type_ctx` is dr_rpc_type.ctx.
 */
typedef int (*dr_rpc_handler)(void *type_ctx, const dr_rpc_call_info *info, const uint8_t *args,
                              size_t len, dr_buf *reply);

/** Whether a method is called by ordered multicast or point to point. */
typedef enum dr_rpc_kind {
    DR_RPC_ORDERED = 0, /**< multicast in the caller's shard; every member replies */
    DR_RPC_P2P = 1,     /**< to one node; runs on its worker pool */
} dr_rpc_kind;

/**
 * Who may call a p2p method besides the group's members (docs/security.md). Members always may;
 * an outside client's rights come from the key it proved when it connected.
 */
typedef enum dr_rpc_access {
    DR_RPC_MEMBERS_ONLY = 0, /**< members only (the default: a forgotten field stays closed) */
    DR_RPC_CLIENTS = 1,      /**< also every outside client (client or admin key; in a group
                                  without keys, any client) */
    DR_RPC_ADMINS = 2,       /**< also outside clients that proved the admin key */
} dr_rpc_access;

/** One method of a replicated type. */
typedef struct dr_rpc_method {
    const char *name;       /**< unique within the type */
    dr_rpc_kind kind;       /**< ordered or p2p */
    dr_rpc_handler handler; /**< runs the method */
    dr_rpc_access access;   /**< p2p: who outside the group may call it (ordered methods are
                                 called by members only) */
} dr_rpc_method;

/** A replicated object type: its methods and state-transfer callbacks. */
typedef struct dr_rpc_type {
    const char *name;             /**< must equal the layout spec's type name */
    const dr_rpc_method *methods; /**< borrowed; must outlive the node */
    size_t num_methods;           /**< entries in methods */
    /** Appends this replica's state for `subgroup` to *out (state transfer); NULL: none. */
    int (*serialize)(void *ctx, uint32_t subgroup, dr_buf *out);
    /** Replaces this replica's state for `subgroup` with bytes from serialize; NULL: none. */
    int (*restore)(void *ctx, uint32_t subgroup, const uint8_t *bytes, size_t len);
    void *ctx; /**< passed to handlers and callbacks */
} dr_rpc_type;

/** A group member that serves and calls replicated objects (opaque). */
typedef struct dr_rpc_node dr_rpc_node;

/** One member's reply. `bytes` is owned by the holder: release with dr_rpc_reply_clear. */
typedef struct dr_rpc_reply {
    uint32_t node_id; /**< who answered (or was expected to) */
    int status;       /**< 0, the handler's error, DR_EREMOVED, DR_ENOTFOUND (unknown method),
                           DR_ETOOBIG (reply over the limit), DR_ETIMEDOUT */
    uint8_t *bytes;   /**< reply bytes (malloc), NULL if none */
    size_t len;       /**< bytes */
} dr_rpc_reply;

/** Frees reply->bytes and zeroes it. */
void dr_rpc_reply_clear(dr_rpc_reply *reply);

/** Options beyond the configuration. Zero-initialise for defaults. */
typedef struct dr_rpc_node_options {
    uint32_t p2p_workers;             /**< worker threads for p2p handlers (0: 4) */
    dr_group_callbacks app_callbacks; /**< the application's own view callback (on_view);
                                           on_deliver is ignored (the node owns deliveries) */
    /**
     * State-transfer progress (NULL: none; for tests and monitoring, docs/rpc.md "State
     * transfer"). Called once per chunk of a state (not for a chunk that carries a serialize
     * failure): on the source's delivery thread after the chunk for new member `peer` was
     * handed to the transport (`sent` true; the next chunk waits until it returns), and on a
     * new member's network thread once a chunk from source `peer` was stored (`sent` false; it
     * must not block). `done` of the state's `total` bytes so far, this chunk's included.
     */
    void (*on_state_chunk)(void *ctx, uint32_t peer, uint32_t subgroup, bool sent, uint64_t done,
                           uint64_t total);
    void *state_chunk_ctx; /**< passed to on_state_chunk */
} dr_rpc_node_options;

/**
 * Starts a node: creates the group (dr_group_create with `spec`) and serves `types`
 * (types[i] describes spec->types[i]; num_types must equal spec->num_types). Returns 0 and
 * *out (free with dr_rpc_node_destroy) or an error with *err (DR_EINVAL for mismatched types
 * or duplicate method names).
 */
int dr_rpc_node_create(const dr_config *config, const dr_layout_spec *spec,
                       const dr_rpc_type *types, size_t num_types,
                       const dr_rpc_node_options *options, dr_rpc_node **out, dr_err *err);

/** The underlying group (views, shards, raw multicast). Borrowed. */
dr_group *dr_rpc_node_group(dr_rpc_node *node);

/**
 * True if this node's connection to member `node_id` went down and nothing arrived from it
 * since: the group suspects such a member at once and removes it in the next view change, so
 * a caller choosing among replicas should pick another instead of waiting for a timeout (a
 * call already waiting on it ends DR_EREMOVED). The mark is forgotten when a frame arrives
 * from the node or a view without it is installed. A member that hangs with its connection up
 * is not reported here (the failure detector excludes it after its heartbeats stop). Never
 * blocks; any thread.
 */
bool dr_rpc_node_peer_down(dr_rpc_node *node, uint32_t node_id);

/**
 * Leaves the group cleanly (dr_group_leave) and waits up to timeout_ms for the view that removes
 * this node: every call this node multicast is delivered first, and the others install a view
 * without it (a departure, not a failure: a member that leaves never makes the others suspect
 * anyone, so several members leaving at once never stop the rest by partitioning safety; the
 * last member to leave ends the group). Handlers keep running until the view change. Returns 0;
 * DR_EUNDELIVERED if a view change for another reason overtook the leave and some of this
 * node's calls fell beyond its trim; DR_ETIMEDOUT; DR_ESTATE if the node is not in a view or has
 * stopped. Call dr_rpc_node_destroy afterwards in every case. Blocks; any thread but a handler.
 */
int dr_rpc_node_leave(dr_rpc_node *node, int timeout_ms);

/**
 * Stops serving (no handler runs after it returns), closes every connection and frees the node.
 * It does not leave the group: the others see this node fail (its connections break) and
 * exclude it, and if half or more of the members go that way at once the rest stop by
 * partitioning safety. Call dr_rpc_node_leave first for a clean departure.
 */
void dr_rpc_node_destroy(dr_rpc_node *node);

/** The pending results of one ordered call (opaque). */
typedef struct dr_rpc_results dr_rpc_results;

/**
 * Multicasts a call of `method` with args in the caller's shard of `subgroup` (the caller must
 * be a member of it). Blocks while the sending window is full, up to timeout_ms. Returns 0 and
 * *out (free with dr_rpc_results_free), or DR_ENOTFOUND (no such method), DR_ETOOBIG, DR_ESTATE
 * (not a member), DR_ETIMEDOUT, DR_ECLOSED.
 */
int dr_rpc_ordered_call(dr_rpc_node *node, uint32_t subgroup, const char *method, const void *args,
                        size_t len, int timeout_ms, dr_rpc_results **out);

/**
 * Waits until the call was delivered locally (so its members are known), up to timeout_ms,
 * and returns the number of shard members expected to reply (0 on timeout).
 */
size_t dr_rpc_results_count(dr_rpc_results *results, int timeout_ms);

/**
 * Waits for the reply of the index-th member (0 <= index < count) up to timeout_ms and copies
 * it into *out (the caller then owns out->bytes). Returns 0 (the member's own status is in
 * out->status: 0, the handler's error, DR_EREMOVED, DR_ETOOBIG, ...), or DR_ETIMEDOUT (out->status
 * is also DR_ETIMEDOUT), DR_EINVAL for a bad index, DR_ECLOSED if the node was destroyed before
 * the call was delivered. Entries appear in shard rank order.
 */
int dr_rpc_results_wait(dr_rpc_results *results, size_t index, int timeout_ms, dr_rpc_reply *out);

/** The call's version ((vid << 32) | seq), or -1 if not delivered yet. */
int64_t dr_rpc_results_version(dr_rpc_results *results);

/**
 * For a durable subgroup (include/derecho/durable.h): waits until the call was delivered here
 * and its version is persisted on this node (global false) or on every member of the shard
 * (global true), up to timeout_ms in all (-1: forever). `subgroup` is the one the call went to.
 * Returns 0, DR_ETIMEDOUT, or dr_group_wait_persisted's errors (DR_ESTATE: not durable, DR_EIO:
 * the log failed, DR_ECLOSED). Not from a handler.
 */
int dr_rpc_results_wait_persisted(dr_rpc_node *node, uint32_t subgroup, dr_rpc_results *results,
                                  bool global, int timeout_ms);

/**
 * Frees the results (replies that arrive later are dropped). NULL is a no-op. Safe after
 * dr_rpc_node_destroy (calls still pending then ended with DR_ECLOSED).
 */
void dr_rpc_results_free(dr_rpc_results *results);

/** A pending point-to-point call (opaque). */
typedef struct dr_rpc_pending dr_rpc_pending;

/**
 * Starts a p2p call of `method` on node `target` (may be this node), which must be in a shard of
 * `subgroup` in this node's latest view (the handler's shard); waits up to timeout_ms for a first
 * view. If the target's connection goes down or a view without it is installed, the call ends
 * DR_EREMOVED (whether the handler ran is unknown). Blocks while p2p_window_size calls to that
 * target are outstanding (up to timeout_ms). Returns 0 and *out (wait with dr_rpc_pending_wait,
 * free with dr_rpc_pending_free), or DR_ENOTFOUND (target not in the subgroup / unknown method name
 * on this node's types), DR_ETOOBIG (args over max_p2p_request_payload_size), DR_ETIMEDOUT,
 * DR_ECLOSED.
 */
int dr_rpc_p2p_start(dr_rpc_node *node, uint32_t target, uint32_t subgroup, const char *method,
                     const void *args, size_t len, int timeout_ms, dr_rpc_pending **out);

/** Waits up to timeout_ms for the reply (moved into *out). Returns its status or DR_ETIMEDOUT. */
int dr_rpc_pending_wait(dr_rpc_pending *pending, int timeout_ms, dr_rpc_reply *out);

/** Frees a pending call (a late reply is dropped). NULL is a no-op. */
void dr_rpc_pending_free(dr_rpc_pending *pending);

/** Start + wait + free: a blocking p2p call. Returns the reply status (also in out->status). */
int dr_rpc_p2p_call(dr_rpc_node *node, uint32_t target, uint32_t subgroup, const char *method,
                    const void *args, size_t len, int timeout_ms, dr_rpc_reply *out);

/* ---- outside clients -------------------------------------------------------------------- */

/** A process outside the group that calls its members point to point (opaque). */
typedef struct dr_rpc_client dr_rpc_client;

/**
 * Connects to any member at contact_ip:contact_port (its gms_port), learns the current view and
 * layout. Returns 0 and *out, or DR_EIO / DR_ETIMEDOUT / DR_EPROTO with *err. The client needs
 * no configuration: it learns the limits (p2p window and sizes) and the type names with the view
 * (see dr_rpc_client_find_subgroup), and its connections use the transport's client cluster id
 * DR_NET_CLUSTER_ANY (members accept it from clients only; docs/rpc.md). Threads: one network
 * thread; every dr_rpc_client_* function may be called from any thread.
 */
int dr_rpc_client_create(const char *contact_ip, uint16_t contact_port, int timeout_ms,
                         dr_rpc_client **out, dr_err *err);

/** The key an outside client proves when it connects (docs/security.md). */
typedef struct dr_rpc_client_credential {
    const char *key_file; /**< a key file (64 hex digits, as scripts/gen-cluster.sh writes
                               secrets/client.key and secrets/admin.key); NULL: none */
    bool admin;           /**< key_file holds the group's admin key (calls DR_RPC_ADMINS methods) */
} dr_rpc_client_credential;

/**
 * dr_rpc_client_create for a group whose members authenticate (cluster_key_file set): the client
 * proves `credential` (NULL or key_file NULL: none, as dr_rpc_client_create). Returns as
 * dr_rpc_client_create, plus DR_EIO/DR_EINVAL for an unreadable or malformed key file; a group
 * that refuses the key closes the connection (DR_EIO, the member logs the refusal).
 */
int dr_rpc_client_create_auth(const char *contact_ip, uint16_t contact_port,
                              const dr_rpc_client_credential *credential, int timeout_ms,
                              dr_rpc_client **out, dr_err *err);

/**
 * Copies the latest known view (out->my_id is DR_NODE_NONE: a client is no member). Returns 0
 * (refreshing it from a member first when a member disappeared since, up to 5 s), or the
 * refresh's error when no view is known at all.
 */
int dr_rpc_client_get_view(dr_rpc_client *client, dr_group_view *out);

/**
 * The subgroup id of the index-th subgroup of type `type_name` in the latest known view.
 * Returns 0 and *subgroup_out, or DR_ENOTFOUND.
 */
int dr_rpc_client_find_subgroup(dr_rpc_client *client, const char *type_name, uint32_t index,
                                uint32_t *subgroup_out);

/**
 * A blocking p2p call from outside the group to `target` (a member of a shard of `subgroup`).
 * Returns the reply status (also in out->status): 0, the handler's error, DR_ENOTFOUND (unknown
 * method or target), DR_EREMOVED (target gone: refresh the view and choose another),
 * DR_ETIMEDOUT, DR_ETOOBIG.
 */
int dr_rpc_client_call(dr_rpc_client *client, uint32_t target, uint32_t subgroup,
                       const char *method, const void *args, size_t len, int timeout_ms,
                       dr_rpc_reply *out);

/** Disconnects and frees the client. NULL is a no-op. */
void dr_rpc_client_destroy(dr_rpc_client *client);

/* ---- argument helpers --------------------------------------------------------------------- */

/** A 32-bit FNV-1a hash of a method name, as carried on the wire. */
uint32_t dr_rpc_method_id(const char *name);

/** An ordered call as a durable subgroup logs it (arguments borrowed from the logged bytes). */
typedef struct dr_rpc_logged_call {
    uint32_t caller_id;  /**< the node that multicast the call */
    uint32_t method_id;  /**< dr_rpc_method_id of the method's name */
    const uint8_t *args; /**< the call's arguments, pointing into the decoded bytes */
    size_t args_len;     /**< their length */
} dr_rpc_logged_call;

/**
 * Decodes the payload of one record of a durable subgroup's log (dr_group_read_versioned's
 * out->bytes: the whole ordered-call message the rpc layer multicast) into *out; out->args
 * points into `bytes`, which must outlive it. Every field is checked (the bytes are untrusted).
 * Returns 0, or DR_EPROTO when the bytes are not an rpc ordered call (a raw multicast, damage).
 * Pure function; any thread.
 */
int dr_rpc_decode_logged_call(const uint8_t *bytes, size_t len, dr_rpc_logged_call *out);

#ifdef __cplusplus
}
#endif
#endif
