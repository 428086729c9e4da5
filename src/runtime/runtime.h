/*
 * Internal runtime interface for the layers above the group (src/rpc): extra frame types on the
 * group's connections, peer-down notices, and the group's network handle. Not public API.
 */
#ifndef DR_RUNTIME_RUNTIME_H
#define DR_RUNTIME_RUNTIME_H

#include "derecho/group.h"
#include "net/net.h"

/** Net frame types >= this belong to the layers above the runtime (rpc); below: the core's. */
#define DR_RUNTIME_TYPE_APP_MIN 32u

/** Hooks run on the network thread; they must not block (hand work to other threads). */
typedef struct dr_group_hooks {
    /**
     * A frame of type >= DR_RUNTIME_TYPE_APP_MIN arrived from a member or an outside client
     * (from_client) that proved `key` (DR_NET_KEY_NONE in a group without keys). The hook owns
     * msg (free it with free()).
     */
    void (*on_frame)(void *ctx, uint32_t peer, dr_net_key_kind key, bool from_client,
                     dr_net_msg *msg);
    /** The connection to a member or outside client closed. */
    void (*on_peer_down)(void *ctx, uint32_t peer, bool was_client);
    void *ctx; /**< passed to both */
} dr_group_hooks;

/** dr_group_create with hooks (may be NULL). Same contract otherwise. */
int dr_group_create_with_hooks(const dr_config *config, const dr_layout_spec *spec,
                               const dr_group_callbacks *callbacks, const dr_group_hooks *hooks,
                               dr_group **out, dr_err *err);

/**
 * Sends one frame (payload copied) of `type` (>= DR_RUNTIME_TYPE_APP_MIN) to a member or an
 * outside client. A member of the current view without a connection yet gets it when the
 * connection comes up (dialled if this node has the higher id). Never blocks. Returns 0,
 * DR_ENOTFOUND (neither connected nor in the view), DR_ETOOBIG, DR_EAGAIN (peer's queue full),
 * DR_ENOMEM, DR_ECLOSED. Any thread, including the hooks.
 */
int dr_group_send_frame(dr_group *group, uint32_t peer, uint16_t type, const void *payload,
                        size_t len);

/**
 * As dr_group_send_frame for a payload in two parts: head[0..head_len) is copied (at most
 * DR_NET_MAX_HEAD_BYTES, else DR_EINVAL) and body[0..body_len) is sent without a copy (a slice
 * of a larger buffer, e.g. a dr_shared_bytes held once per frame), then released with
 * free_fn(free_ctx, body) on whichever thread finishes with it; also when this call fails, so
 * the body is never the caller's after it returns. A member without a connection yet gets a
 * copy of the frame in its backlog, as with dr_group_send_frame. Returns as dr_group_send_frame.
 * Any thread.
 */
int dr_group_send_frame_split(dr_group *group, uint32_t peer, uint16_t type, const void *head,
                              size_t head_len, void *body, size_t body_len, dr_net_free_fn free_fn,
                              void *free_ctx);

/**
 * Blocks until the queue towards `peer` has room again after dr_group_send_frame answered
 * DR_EAGAIN (returns 0), the peer has no connection (DR_ENOTFOUND: frames for it wait in the
 * runtime's backlog instead; retry later), the group closes (DR_ECLOSED) or timeout_ms passes
 * (DR_ETIMEDOUT). Not on the network thread (DR_ESTATE there).
 */
int dr_group_wait_writable(dr_group *group, uint32_t peer, int timeout_ms);

/**
 * Starts a clean leave (as dr_group_leave) without waiting for it: for a layer above that finds
 * this node unable to serve (e.g. its state transfer failed) and must get out of the group from
 * a callback. Returns 0, DR_ESTATE (not in a view or already stopped). Any thread.
 */
int dr_group_leave_async(dr_group *group);

/** The largest frame payload the group's transport accepts. */
uint32_t dr_group_max_frame_bytes(const dr_group *group);

/**
 * Test only (fault tests): while `cut` is true, the link to member `peer` is black-holed in both
 * directions at this node: frames to it are dropped and frames from it are discarded on arrival,
 * silently, and the connection stays up (dr_net_test_cut_link). A partition needs no cut on the
 * other side, but the tests cut both sides anyway. The failure detector then suspects `peer` once
 * its heartbeats stop. Any thread.
 */
void dr_group_test_cut_link(dr_group *group, uint32_t peer, bool cut);

#endif
