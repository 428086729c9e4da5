/*
 * The group core: Derecho's membership bootstrap, shared state table and ordered multicast as
 * one deterministic, sans-IO state machine (PROTOCOL.md §1-§3; docs/protocol.md).
 *
 * Shape (cowsql/raft's step function): the driver (the TCP runtime, or the simulator) feeds
 * *events* in and drains *actions* out.
 *
 *   events in                                   actions out (dr_core_next_action)
 *   dr_core_on_message(from, bytes, now)        DR_ACTION_SEND       bytes to a node / address
 *   dr_core_on_tick(now)                        DR_ACTION_CONNECT    open a connection
 *   dr_core_send(subgroup, payload, mode, now)  DR_ACTION_DELIVER    hand to the delivery thread
 *   dr_core_on_connect / on_disconnect(peer)    DR_ACTION_VIEW_INSTALLED
 *                                               DR_ACTION_WINDOW_OPEN  a full window has room
 *                                               DR_ACTION_JOIN_FAILED  refused (duplicate id)
 *   dr_core_leave / dr_core_report_failure      DR_ACTION_STOPPED    left, excluded, partitioned
 *
 * View changes (PROTOCOL.md §5, docs/protocol.md "View changes"): heartbeats go out on ticks;
 * a member silent for suspect_after_missed heartbeat periods, or whose connection broke, is
 * suspected; suspicions spread through the SST and every member wedges (no new sends, no more
 * deliveries by stability, RECEIVED frozen and pushed to everyone). The leader (lowest-ranked
 * unsuspected member) proposes the next view with per-shard ragged trims, members ack, the leader
 * commits; every member delivers exactly up to the trim, re-sends its own messages beyond it in
 * the next view, and installs that view (DR_ACTION_VIEW_INSTALLED).
 *
 * The core never blocks, opens sockets, starts threads, reads clocks or draws random numbers:
 * time comes in as `now_us` arguments (any monotonic microsecond clock). It allocates only for
 * state the protocol bounds: the view's SST, at most window_size messages per sender of each
 * of its shards (window x shard size x max_payload_size bytes), the action queue (drained by
 * the driver after every event), and frames of a view not yet installed (early_buffer_bytes).
 *
 * Threading: a dr_core is single-threaded; call every function for one core from one thread
 * (the runtime's core thread). Different cores are independent.
 *
 * Ownership: bytes passed to events are borrowed for the call only. Every action popped by
 * dr_core_next_action is owned by the caller and must be released with dr_action_free (which
 * frees its bytes and view snapshot); the caller may instead steal `bytes` (set it to NULL
 * first) and free() it later, e.g. after the delivery thread ran the application's handler.
 *
 * Connections: one per pair of nodes; by convention the node with the higher id opens it
 * (DR_ACTION_CONNECT is only emitted towards lower ids, and by a joiner towards its contact).
 * A driver learns the id of an accepted connection from the first frame's header
 * (dr_core_peek_sender) and passes it as `from_node`. The core does not depend on ordering
 * across connections, but it does assume each frame arrives whole and intact (TCP + framing).
 */
#ifndef DR_CORE_CORE_H
#define DR_CORE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/shared_bytes.h"
#include "derecho/error.h"
#include "derecho/layout.h"

/** Opaque core state. */
typedef struct dr_core dr_core;

/** Large-message relay schemes (rdmc_send_algorithm). */
typedef enum dr_pipeline_algorithm {
    DR_PIPELINE_SEQUENTIAL = 0, /**< sender sends every block to every member */
    DR_PIPELINE_CHAIN = 1,      /**< blocks travel down the shard, sender first */
    DR_PIPELINE_TREE = 2,       /**< each block spreads along a binomial tree */
} dr_pipeline_algorithm;

/** Trace hook: one readable line per protocol decision (no trailing newline). */
typedef void (*dr_core_trace_fn)(void *ctx, const char *line);

/** Test-only fault switches (never set in production). */
typedef enum dr_core_test_fault {
    DR_CORE_FAULT_NONE = 0,
    /** Ordered shards deliver on local receipt, FIFO per sender (breaks total order). */
    DR_CORE_FAULT_BROKEN_DELIVERY = 1,
    /** View changes skip the ragged-trim deliveries (breaks agreement/stability). */
    DR_CORE_FAULT_SKIP_TRIM = 2,
} dr_core_test_fault;

/** Most restart leaders a configuration names (restart_leaders). */
#define DR_RESTART_MAX_LEADERS 8u
/** Largest saved view frame a restarting node reports (bytes). */
#define DR_RESTART_MAX_VIEW_BYTES (1u << 20)
/** Largest restart vote (DR_ACTION_SAVE_RESTART_VOTE): a header and two proposals (the one
 * accepted, and the one that made the saved view, if a restart did). */
#define DR_RESTART_MAX_VOTE_BYTES (5u << 20)

/**
 * Total restart (docs/persistence.md "Total restart"): a node that saved a view and holds
 * durable logs starts RESTARTING instead of joining. The driver loads what it saved.
 */
typedef struct dr_core_restart_options {
    /** The saved view: a VIEW frame as dr_wire_encode_view_with_layout wrote it (the runtime's
     * file_path/last_view), borrowed for dr_core_create (copied). NULL: not restarting. */
    const uint8_t *saved_view;
    size_t saved_view_len; /**< bytes (<= DR_RESTART_MAX_VIEW_BYTES) */
    /** Per subgroup id: the latest version this node's log of its shard holds durably, or -1
     * (no log, or an empty one). */
    int64_t tails[DR_LAYOUT_MAX_SUBGROUPS];
    /** Restart leaders in order of preference ("ip:port" group addresses); none: the contact. */
    char leaders[DR_RESTART_MAX_LEADERS][DR_ADDRESS_MAX];
    uint32_t num_leaders;
    /** A round with no restart view after this long moves on to the next leader (> 0). */
    uint32_t timeout_ms;
    /** This node gave up an earlier restart to join (DR_ACTION_DISCARD_DURABLE) and has not
     * installed a view since: its saved view names a membership it holds no state for. It
     * reports (so it learns where the group is), but counts for no quorum, shard or trim, and
     * joins the restarted group as a new member. The driver keeps this mark durably from the
     * discard until the next view it saves. */
    bool stateless;
    /** The last DR_ACTION_SAVE_RESTART_VOTE's bytes (borrowed for dr_core_create, copied), or
     * NULL. Ignored unless it was saved for the same saved view. */
    const uint8_t *vote;
    size_t vote_len; /**< bytes (<= DR_RESTART_MAX_VOTE_BYTES) */
} dr_core_restart_options;

/** Creation options. Copied by dr_core_create; strings may be freed afterwards. */
typedef struct dr_core_options {
    uint32_t my_id;                       /**< this node's unique id (not DR_NODE_NONE) */
    char my_address[DR_ADDRESS_MAX];      /**< "ip:port" of this node's group port */
    char contact_address[DR_ADDRESS_MAX]; /**< contact_ip:contact_port; == my_address: leader */
    dr_layout_spec layout;                /**< subgroup types and shard policies */
    uint32_t window_size;                 /**< per-sender outstanding messages (>= 1) */
    /** 0: the window is window_size messages. Otherwise also a byte window: a sender starts a
     * message only while its messages not yet delivered at every member (raw: received) hold
     * fewer than window_bytes bytes, or while it has fewer than 2 such messages (so a message
     * larger than the window still goes, double-buffered); window_size stays the cap on their
     * number (the receivers' slots). */
    uint64_t window_bytes;
    uint32_t max_payload_size;        /**< largest message, bytes */
    uint32_t max_smc_payload_size;    /**< at or below: sent whole; above: blocks */
    uint32_t block_size;              /**< block of a large message, bytes (>= 1) */
    dr_pipeline_algorithm pipeline;   /**< relay scheme for large messages */
    uint64_t join_retry_us;           /**< joiner re-sends its request this often */
    size_t early_buffer_bytes;        /**< cap on buffered frames of an uninstalled view */
    dr_core_trace_fn trace;           /**< optional decision trace (NULL: off, free) */
    void *trace_ctx;                  /**< passed to trace */
    bool defer_flush;                 /**< events do not evaluate/push: the driver calls
                                           dr_core_flush after a batch (fewer SST pushes) */
    dr_core_test_fault test_fault;    /**< DR_CORE_FAULT_NONE outside tests */
    uint32_t heartbeat_ms;            /**< heartbeat period (0: no heartbeats, no timeouts) */
    uint32_t suspect_after_missed;    /**< suspect after this many silent periods (>= 1) */
    bool disable_partitioning_safety; /**< keep running while suspecting half the view */
    bool count_consumption;           /**< ordered messages count against the window until
                                           the driver reports them taken by the application
                                           (dr_core_consumed): bounds its delivery queue */
    dr_core_restart_options restart;  /**< total restart (saved_view NULL: a normal start) */
    /** This process's incarnation: a value that differs between two starts of one node id (the
     * runtime draws it at random). It rides in JOIN_REQUEST and in views, so a process that
     * crashed and restarted with the same id and address is never mistaken for the one the
     * group admitted. 0: derived from my_id and the creation time (deterministic: tests). */
    uint64_t incarnation;
} dr_core_options;

/**
 * Fills *options with defaults (window 16, payload 10240, smc 10240, block 1 MiB, chain,
 * heartbeat 100 ms, suspicion after 5 missed heartbeats, partitioning safety on).
 */
void dr_core_options_default(dr_core_options *options);

/** What an action asks the driver to do. */
typedef enum dr_action_type {
    DR_ACTION_SEND = 1,           /**< send bytes to node_id (or, if DR_NODE_NONE, address) */
    DR_ACTION_CONNECT = 2,        /**< open a connection to node_id at address (idempotent) */
    DR_ACTION_DELIVER = 3,        /**< deliver a message to the application, in this order */
    DR_ACTION_VIEW_INSTALLED = 4, /**< a new view is installed (view_info) */
    DR_ACTION_WINDOW_OPEN = 5,    /**< subgroup's window has room again after DR_EAGAIN */
    DR_ACTION_JOIN_FAILED = 6,    /**< join refused: error code in `error`, text in bytes */
    /**
     * The core stopped for good (it ignores every later event; the driver should close its
     * connections and report). `error`: 0 after a clean dr_core_leave (DR_EUNDELIVERED if
     * some of its own messages could not be delivered); DR_EREMOVED if the
     * group excluded this node (it was suspected, e.g. after a long pause); DR_ECLOSED if it
     * suspected half or more of the view (partitioning safety: it may be in a minority
     * partition). A readable reason is in bytes/len.
     */
    DR_ACTION_STOPPED = 7,
    /**
     * The persistence frontier of my shard of `subgroup` (shard: `shard`) advanced to `version`:
     * every member of that shard in the current view reported (dr_core_persisted) a persisted
     * version >= `version` (the minimum of the shard's PERSISTED_NUM column). Emitted only when
     * it grows beyond every frontier emitted before, views included (docs/persistence.md).
     */
    DR_ACTION_PERSISTED = 8,
    /**
     * Total restart: remove every record with a version above `version` from my log of shard
     * `shard` of `subgroup` (-1: all of them), durably, before handling the next action (the
     * restart view's VIEW_INSTALLED follows). A node without such a log ignores it.
     */
    DR_ACTION_TRUNCATE = 9,
    /**
     * A restarting node gives up its total restart to join the running group as a new member:
     * discard every durable trace of its old membership, durably, before handling the next
     * action (its join request follows): the saved last view, every record of every log and any
     * replay base (keeping the saved view, marked stateless: dr_core_restart_options.stateless
     * after a power cut before its next view). Its state comes by state transfer. Without the
     * mark, such a power cut would bring it back with a saved view naming a membership whose
     * state it never had, and it would count for that view's restart quorum and for its shard
     * with nothing in its logs (derecho-sim --total-restart found a globally persisted version
     * lost that way).
     */
    DR_ACTION_DISCARD_DURABLE = 10,
    /**
     * Total restart, acceptor's vote: save `bytes` (opaque, `len` bytes) durably, replacing the
     * previous vote, before handling the next action (an acknowledgement may follow), and hand
     * them back as dr_core_restart_options.vote if the node restarts with the same saved view.
     * The restart rounds are Paxos ballots; without the vote a power cut during a restart made
     * acceptors forget a restart view one node had installed, and a second, different view
     * with the same id could follow (derecho-sim --total-restart --partial-restarts seed
     * 4061175). Obsolete once a newer view is saved (the driver may delete it then).
     */
    DR_ACTION_SAVE_RESTART_VOTE = 11,
} dr_action_type;

/** A snapshot of an installed view, owned by whoever holds the action. */
typedef struct dr_view_info {
    dr_view view;              /**< members in rank order */
    dr_layout layout;          /**< subgroups and shards */
    uint32_t my_rank;          /**< this node's rank in view */
    bool has_previous;         /**< false for view 0 */
    dr_layout previous_layout; /**< the previous view's layout (state transfer), if any */
} dr_view_info;

/** One action. Fields not listed for a type are zero. */
typedef struct dr_action {
    dr_action_type type;
    uint32_t node_id;             /**< SEND: destination; CONNECT: peer (DR_NODE_NONE: contact) */
    char address[DR_ADDRESS_MAX]; /**< CONNECT: where; SEND: where if node_id is NONE */
    uint8_t *bytes;               /**< SEND: frame; DELIVER: payload; JOIN_FAILED: reason */
    size_t len;                   /**< bytes in `bytes` */
    /**
     * SEND, DELIVER: a part shared with the core instead of copied (the blocks of an own large
     * message). SEND: the frame is bytes[len] followed by body[body_len]; DELIVER: the payload
     * is body[body_len] and bytes is NULL. The action holds one reference on body_owner, which
     * keeps body alive: the driver takes it (and releases it when done) or dr_action_free
     * releases it. dr_action_flatten turns such an action into a plain one.
     */
    const uint8_t *body;
    size_t body_len;             /**< bytes in `body` */
    dr_shared_bytes *body_owner; /**< the reference that keeps body alive */
    uint32_t subgroup;           /**< DELIVER, WINDOW_OPEN, PERSISTED, TRUNCATE */
    uint32_t shard;              /**< DELIVER, PERSISTED, TRUNCATE */
    uint32_t sender_id;          /**< DELIVER: node id of the sender */
    uint32_t sender_index;       /**< DELIVER: sender's rank among the shard's senders */
    int64_t index;               /**< DELIVER: sender's message index in this view */
    int64_t version;             /**< DELIVER: (vid << 32) | seq, or -1 for raw mode;
                                      PERSISTED: the shard's new persistence frontier;
                                      TRUNCATE: the last version to keep */
    uint64_t timestamp_us;       /**< DELIVER: the sender's send time */
    dr_delivery_mode mode;       /**< DELIVER */
    int error;                   /**< JOIN_FAILED: DR_E* code */
    dr_view_info *view_info;     /**< VIEW_INSTALLED: owned snapshot */
} dr_action;

/** Frees an action's bytes and view snapshot and releases body_owner (any may have been
 * stolen: NULL). */
void dr_action_free(dr_action *action);

/**
 * For drivers that want one buffer per action: if the action has a shared body, replaces
 * bytes with a malloc'd copy of bytes followed by body (SEND: the whole frame; DELIVER: the
 * payload) and releases body_owner. Returns 0, or DR_ENOMEM (the action is unchanged).
 */
int dr_action_flatten(dr_action *action);

/** A short name of an action type for logs. */
const char *dr_action_type_name(dr_action_type type);

/**
 * Creates a core. Checks the options (layout spec, sizes, addresses); with
 * options.restart.saved_view the node takes part in a total restart (it reports its saved view
 * and log tails to the restart leader, and installs the restart view it is sent after the
 * TRUNCATE actions); otherwise a node whose address
 * equals the contact address is the initial leader and waits for joiners; any other node
 * queues CONNECT + SEND(JOIN_REQUEST) towards the contact. Returns 0 and *out, or DR_EINVAL
 * (reason in *err, may be NULL) or DR_ENOMEM.
 */
int dr_core_create(const dr_core_options *options, uint64_t now_us, dr_core **out, dr_err *err);

/** Frees a core and everything it holds (queued actions included). NULL is a no-op. */
void dr_core_destroy(dr_core *core);

/**
 * A frame arrived from `from_node` (DR_NODE_NONE if the driver has not yet bound the
 * connection to a node: the core then trusts the header's sender id). Returns 0, or
 * DR_EPROTO for a malformed or illegal frame (already logged; the driver should close the
 * connection), or DR_ENOMEM. Never asserts on the bytes.
 */
int dr_core_on_message(dr_core *core, uint32_t from_node, const uint8_t *bytes, size_t len,
                       uint64_t now_us);

/**
 * As dr_core_on_message, for a frame the driver holds as shared bytes (`frame`, borrowed: the
 * core takes its own references): a BLOCK frame it relays is then sent without copying it, the
 * SEND actions sharing `frame` (their body) instead of a copy. The bytes must stay unchanged
 * while any reference lives.
 */
int dr_core_on_shared_message(dr_core *core, uint32_t from_node, dr_shared_bytes *frame,
                              uint64_t now_us);

/**
 * Time passed: joiner retries, heartbeats (every heartbeat_ms) and suspicion of members silent
 * for heartbeat_ms x suspect_after_missed. Call at least every heartbeat_ms / 2. Returns 0 or
 * DR_ENOMEM.
 */
int dr_core_on_tick(dr_core *core, uint64_t now_us);

/**
 * Multicasts payload[0..len) in my shard of `subgroup` (copied). `mode` must match the shard's
 * delivery mode. Returns 0; DR_EAGAIN if the window is full or a view change is under way (a
 * DR_ACTION_WINDOW_OPEN follows when it has room / after the next view), or no view yet;
 * DR_ECLOSED once stopped; DR_ETOOBIG over max_payload_size; DR_ESTATE
 * if this node is not a sender of a shard of that subgroup; DR_EINVAL for a bad subgroup or
 * mode; DR_ERANGE once this view used up its 2^32 sequence numbers (a view change renews them).
 */
int dr_core_send(dr_core *core, uint32_t subgroup, const void *payload, size_t len,
                 dr_delivery_mode mode, uint64_t now_us);

/**
 * As dr_core_send, but takes ownership of `payload` (allocated with malloc) instead of copying
 * it: on success the core frees it (or hands it out again as a DELIVER's bytes); on any error
 * it stays the caller's. Saves one copy per message for large payloads.
 */
int dr_core_send_owned(dr_core *core, uint32_t subgroup, uint8_t *payload, size_t len,
                       dr_delivery_mode mode, uint64_t now_us);

/**
 * The application asks to leave the group cleanly. From now on dr_core_send refuses new
 * messages (DR_ESTATE); once every message this node multicast was delivered here (hence is
 * stable: every member received it), it sets LEAVING and wedges; the leader removes it in the
 * next view (a departure, not counted as a failure), the leaver applies that view change's
 * trim like every survivor, and the core emits DR_ACTION_STOPPED with error 0, or
 * DR_EUNDELIVERED if some of its own messages still fell beyond the trim (a view change for
 * another reason overtook the flush; the reason text counts them). Returns 0, or DR_ESTATE
 * outside a view.
 */
int dr_core_leave(dr_core *core, uint64_t now_us);

/**
 * The application (or the driver) reports node_id as failed: it is suspected at once, as if
 * its heartbeats had stopped. Unknown ids and this node's own id are ignored.
 */
void dr_core_report_failure(dr_core *core, uint32_t node_id, uint64_t now_us);

/**
 * With options.count_consumption: the application took every ordered message of `subgroup` up
 * to `version` (a DELIVER action's version) off the driver's delivery queue. Until then those
 * messages count against every sender's window (DELIVERED_NUM lags), so a slow application
 * slows the senders instead of growing its queue without bound. Versions of an earlier view
 * are ignored (the new view's window starts afresh). Any time; no-op without the option.
 */
void dr_core_consumed(dr_core *core, uint32_t subgroup, int64_t version, uint64_t now_us);

/**
 * The driver made every ordered message of `subgroup` it was handed up to `version` (a DELIVER
 * action's version, any view) durable on this node (src/core/persistence.c). The core writes it
 * to PERSISTED_NUM in its SST row (pushed to the shard) and remembers it across views (it is
 * re-published in each new view's table); the shard's minimum becomes DR_ACTION_PERSISTED.
 * Reports that do not grow are ignored, as are negative versions, unknown subgroups and
 * versions this node has not delivered (a driver bug: traced). The core does no I/O itself.
 */
void dr_core_persisted(dr_core *core, uint32_t subgroup, int64_t version, uint64_t now_us);

/**
 * The persistence frontier last emitted for `subgroup` (DR_ACTION_PERSISTED), or -1 if none.
 */
int64_t dr_core_persisted_frontier(const dr_core *core, uint32_t subgroup);

/** True once the core emitted DR_ACTION_STOPPED (or a join failed): it does nothing more. */
bool dr_core_stopped(const dr_core *core);

/** The driver has a working connection to peer (informational for now). */
void dr_core_on_connect(dr_core *core, uint32_t peer_id, uint64_t now_us);

/**
 * The connection to peer broke: joiners retry; a view member is suspected at once. `incarnation`
 * is the process incarnation the connection's peer proved at its handshake (0: unknown, taken as
 * the member's current one): a notice about an earlier incarnation of a member's id (a crashed
 * process whose connection's end is reported after its restart rejoined) says nothing about the
 * member and is ignored.
 */
void dr_core_on_disconnect(dr_core *core, uint32_t peer_id, uint64_t incarnation, uint64_t now_us);

/**
 * Evaluates the SST predicates (deliveries, nulls, window) and pushes changed SST fields, one
 * frame per peer. Every event does this itself unless options.defer_flush is set; then the
 * driver calls it after each batch of events (e.g. after one epoll round), which coalesces the
 * pushes of many received messages into one.
 */
void dr_core_flush(dr_core *core, uint64_t now_us);

/** Pops the oldest queued action into *out (caller owns it). Returns false if none. */
bool dr_core_next_action(dr_core *core, dr_action *out);

/** Reads the sender id from a frame's header, or returns DR_NODE_NONE if it is malformed. */
uint32_t dr_core_peek_sender(const uint8_t *bytes, size_t len);

/** Current view id, or -1 before the first view. */
int32_t dr_core_view_id(const dr_core *core);

/** This node's id. */
uint32_t dr_core_my_id(const dr_core *core);

/** This process's incarnation (options.incarnation, or the value derived from it when 0). */
uint64_t dr_core_incarnation(const dr_core *core);

/** The installed view and layout (borrowed; valid until the next event), or NULL. */
const dr_view *dr_core_view(const dr_core *core);
const dr_layout *dr_core_layout(const dr_core *core);

/** Counters for tests and benchmarks. */
typedef struct dr_core_stats {
    uint64_t messages_sent;      /**< application messages accepted by dr_core_send */
    uint64_t messages_delivered; /**< DELIVER actions produced */
    uint64_t nulls_sent;         /**< null messages sent */
    uint64_t frames_rejected;    /**< malformed or illegal frames */
    uint64_t frames_buffered;    /**< frames held for a view not yet installed */
    uint64_t sst_pushes;         /**< SST_PUSH frames sent */
    uint64_t view_changes;       /**< views installed after the first */
    uint64_t resent;             /**< own messages re-sent after a ragged trim */
    uint64_t left_undelivered;   /**< own messages beyond the trim of my clean leave */
} dr_core_stats;

/** Copies the counters. */
void dr_core_get_stats(const dr_core *core, dr_core_stats *out);

#endif
