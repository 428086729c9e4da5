/*
 * Pending calls of one node or client (the "registry"): request ids (a per-node counter) mapped
 * to ordered-call results and p2p pendings, per-target p2p windows, and the peers known to be
 * down. Replies are matched by request id only (plus their sender), never by pointer.
 *
 * One mutex guards the registry and every call object in it; each object has its own condition
 * variable (on that mutex) for its waiters. The registry is reference counted by its owner and
 * by every call object not yet freed, so dr_rpc_results_free / dr_rpc_pending_free stay safe
 * after the node or client that made the call was destroyed (its calls then end DR_ECLOSED).
 */
#ifndef DR_RPC_CALLS_H
#define DR_RPC_CALLS_H

#include "derecho/layout.h"
#include "derecho/rpc.h"
#include "rpc/wire.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct rpc_registry rpc_registry;

/** Creates an empty registry (the caller holds one reference). 0 or DR_ENOMEM. */
int rpc_registry_create(rpc_registry **out);

/**
 * The owner goes away: every pending call ends with `status` (DR_ECLOSED), new calls are
 * refused, and the owner's reference is dropped. Any thread.
 */
void rpc_registry_close(rpc_registry *reg, int status);

/** Ends every pending call with `status` and refuses new ones; the owner keeps its reference. */
void rpc_registry_cancel_all(rpc_registry *reg, int status);

/** Registers a new ordered call; *request_id names it on the wire. 0, DR_ENOMEM, DR_ECLOSED. */
int rpc_results_new(rpc_registry *reg, dr_rpc_results **out, uint64_t *request_id);

/** Withdraws an ordered call that was never sent, and frees it. */
void rpc_results_abort(dr_rpc_results *results);

/**
 * My own call was delivered: its version and the shard members expected to reply (the view that
 * delivered it). Members already known down resolve DR_EREMOVED. Unknown ids are ignored.
 */
void rpc_results_delivered(rpc_registry *reg, uint64_t request_id, int64_t version,
                           const uint32_t *members, uint32_t num_members);

/**
 * Registers a p2p call to `target`, first waiting (up to timeout_ms, <0 forever) while `window`
 * calls to it are outstanding. 0, DR_ETIMEDOUT, DR_ENOMEM, DR_ECLOSED.
 */
int rpc_pending_new(rpc_registry *reg, uint32_t target, uint32_t window, int timeout_ms,
                    dr_rpc_pending **out, uint64_t *request_id);

/** Ends a p2p call with a local status (e.g. the send failed) as if it had been answered. */
void rpc_pending_fail(dr_rpc_pending *pending, int status);

/**
 * A reply arrived from `from` (ordered: a shard member; p2p: the target). Bytes are copied.
 * Replies for unknown ids, from the wrong node or beyond max_len (then DR_ETOOBIG) are handled
 * here. Any thread.
 */
void rpc_reply_arrived(rpc_registry *reg, bool ordered, uint32_t from, const rpc_reply_msg *msg,
                       size_t max_len);

/** `peer`'s connection went down: its p2p calls and ordered entries end DR_EREMOVED. */
void rpc_peer_down(rpc_registry *reg, uint32_t peer);

/** A frame arrived from `peer`: it is up again (clears a down mark). */
void rpc_peer_alive(rpc_registry *reg, uint32_t peer);

/**
 * A new view: calls waiting on nodes outside it end DR_EREMOVED, and their down marks are
 * forgotten (a node that joins again later is a new incarnation with a new connection).
 */
void rpc_view_changed(rpc_registry *reg, const dr_view *view);

/** True if `peer`'s connection went down and no frame arrived from it since. Any thread. */
bool rpc_peer_is_down(rpc_registry *reg, uint32_t peer);

#endif
