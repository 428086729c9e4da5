/*
 * Private state of the group core, shared by its files (core.c: events, actions, view
 * install; membership.c: bootstrap; multicast.c: ordered and raw multicast; pipeline.c: block
 * relay schedules). Not for use outside src/core.
 */
#ifndef DR_CORE_CORE_INTERNAL_H
#define DR_CORE_CORE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"
#include "core/sst.h"
#include "core/wire.h"
#include "derecho/buffer.h"

/** Life cycle of a node. */
typedef enum core_state {
    CORE_JOINING = 0,    /**< asked a contact to join, waiting for the view */
    CORE_LEADER_WAITING, /**< initial leader collecting joiners for view 0 */
    CORE_IN_VIEW,        /**< a view is installed */
    CORE_JOIN_FAILED,    /**< refused; does nothing more */
    CORE_STOPPED,        /**< left, excluded or partitioned; does nothing more */
    CORE_RESTARTING,     /**< total restart: reporting to a restart leader (restart.c) */
} core_state;

/** State of one message slot of a sender's receive window. */
typedef enum mc_slot_state {
    MC_SLOT_EMPTY = 0,
    MC_SLOT_NULL,     /**< a null message */
    MC_SLOT_PARTIAL,  /**< a large message with blocks missing */
    MC_SLOT_COMPLETE, /**< a whole message */
    MC_SLOT_KEPT,     /**< raw mode, own stream: delivered here, kept (payload in `shared`)
                           until every member received it, to re-send after a view change */
} mc_slot_state;

/** One received (or own) message held until delivered; indexed by index % window. */
typedef struct mc_slot {
    mc_slot_state state;
    uint32_t index;          /**< message index of the sender */
    uint64_t timestamp_us;   /**< sender's send time */
    uint8_t *payload;        /**< owned (or in `shared`); NULL for nulls and empty messages */
    dr_shared_bytes *shared; /**< an own large message: holds payload, which queued block
                                  frames read without copying (one reference held here) */
    uint32_t len;            /**< payload bytes */
    uint32_t block_size;     /**< PARTIAL: block size used by the sender */
    uint32_t num_blocks;     /**< PARTIAL: blocks in the message */
    uint32_t blocks_present; /**< PARTIAL: blocks received */
    uint8_t *block_bitmap;   /**< PARTIAL: owned bitmap of received blocks */
} mc_slot;

/** Receive state of one sender of my shard. */
typedef struct mc_stream {
    int64_t received;      /**< highest index held contiguously (-1: none) */
    int64_t raw_delivered; /**< raw mode: highest index handled (delivered or a duplicate) */
    /* Raw mode numbers each sender's messages across views ("sender-wide"): index i of this
     * view is number base + i. A survivor's messages beyond the trim are re-sent in the next
     * view, whose base continues after the trim; numbers already delivered are skipped. The
     * numbering is this node's own (it starts at 0 where it first shares a shard with the
     * sender) and agrees with the sender's only in differences, which is all it needs. */
    int64_t base;     /**< raw mode: number of index 0 of this view */
    int64_t raw_last; /**< raw mode: highest number delivered here (-1: none) */
    mc_slot *slots;   /**< window_size slots */
} mc_stream;

/** My shard of one subgroup. */
typedef struct mc_shard {
    bool active;           /**< I am a member of a shard of this subgroup */
    uint32_t subgroup;     /**< subgroup id */
    uint32_t shard;        /**< shard index */
    dr_delivery_mode mode; /**< ordered or raw */
    uint32_t num_members;  /**< shard members */
    uint32_t member_ids[DR_LAYOUT_MAX_SHARD_MEMBERS];
    uint32_t member_rows[DR_LAYOUT_MAX_SHARD_MEMBERS];   /**< view rank (SST row) per member */
    uint32_t my_shard_rank;                              /**< my position in member_ids */
    uint32_t num_senders;                                /**< n in seq = i*n + s */
    uint32_t sender_member[DR_LAYOUT_MAX_SHARD_MEMBERS]; /**< shard rank of sender k */
    int32_t my_sender_index;                             /**< my k, or -1 if I do not send */
    mc_stream *streams;                                  /**< num_senders streams */
    int64_t next_index;                                  /**< my next message index */
    int64_t seq_num;                                     /**< local copy of my SEQ_NUM */
    int64_t delivered_num;                               /**< highest seq delivered here */
    int64_t last_handed;  /**< seq of the last DELIVER action of this view (-1: none) */
    int64_t consumed;     /**< count_consumption: seq the application took up to (-1) */
    bool window_blocked;  /**< a send got DR_EAGAIN; signal WINDOW_OPEN */
    struct dr_core *core; /**< back pointer for predicates */
    /* byte window (options.window_bytes, senders only): */
    uint64_t *own_len;       /**< bytes of my message i at [i % window_size], until acked */
    int64_t acked_index;     /**< my messages up to here are delivered at every member */
    uint64_t inflight_bytes; /**< bytes of my messages after acked_index */
    int64_t released_index;  /**< raw mode: my kept messages up to here are released */
} mc_shard;

/** Raw mode across a view change: where a surviving sender's numbering goes on (mc_stream). */
typedef struct raw_carry {
    uint32_t subgroup;
    uint32_t sender_id;
    int64_t base; /**< number of the sender's index 0 in the next view */
    int64_t last; /**< highest number delivered here */
} raw_carry;

#define RAW_CARRY_MAX (DR_LAYOUT_MAX_SUBGROUPS * DR_LAYOUT_MAX_SHARD_MEMBERS)

/** A frame of a view not yet installed here, replayed after install. */
typedef struct early_frame {
    uint32_t from_node;
    uint8_t *bytes;
    size_t len;
} early_frame;

/** A node asking to join (leader side). */
typedef struct pending_joiner {
    uint32_t node_id;
    char address[DR_ADDRESS_MAX];
    uint64_t incarnation; /**< of the process that asked */
} pending_joiner;

/** An own message beyond a ragged trim, re-sent in the next view (FIFO). */
typedef struct resend_item {
    uint32_t subgroup;
    uint8_t *payload; /**< owned */
    uint32_t len;
} resend_item;

/** View-change state of the current view (reset at every install). */
typedef struct vc_state {
    bool wedged;                                   /**< no sends, no stability deliveries */
    bool leaving;                                  /**< dr_core_leave was called */
    uint64_t last_heard_us[DR_VIEW_MAX_MEMBERS];   /**< per rank: last frame from that member */
    uint64_t last_heartbeat_us;                    /**< when I last sent heartbeats */
    uint64_t last_tick_us;                         /**< when failure_on_tick last ran */
    uint64_t accused_since[DR_VIEW_MAX_MEMBERS];   /**< per rank: when I first saw a member ranked
                                                      above it accuse it (0: never) */
    uint64_t disconnected_us[DR_VIEW_MAX_MEMBERS]; /**< per rank: when its connection broke
                                                      (0: never); lower ranks get a grace */
    /* acceptor (every member) */
    dr_msg_proposal *proposal; /**< value accepted last (ballot = my ACCEPTED), or the commit */
    bool committing;           /**< commit decided; install after the event */
    /* leader */
    int64_t ballot;                        /**< my current ballot as leader (0: not leading) */
    bool proposed;                         /**< phase 2 of `ballot` started: PROPOSE sent */
    int64_t reported[DR_VIEW_MAX_MEMBERS]; /**< per rank: the ballot its REPORT answered */
    dr_msg_proposal *best_report;          /**< highest-ballot value reported for `ballot` */
} vc_state;

struct dr_core {
    dr_core_options options; /**< copied at create */
    core_state state;
    uint64_t now_us; /**< time of the current event */
    /* membership */
    char join_target[DR_ADDRESS_MAX];    /**< joiner: where the next request goes */
    char rejoin_contact[DR_ADDRESS_MAX]; /**< a node that gave up its total restart: the member
                                              that told it the group runs, its contact from then
                                              on (the configured one may be itself or dead) */
    uint32_t join_target_id;             /**< its node id when known (a node that gave up a total
                                              restart: it is connected to those nodes by id), else
                                              DR_NODE_NONE (sent by address) */
    uint64_t last_join_us;               /**< joiner: when it last asked */
    uint32_t redirects;                  /**< joiner: redirects followed since the last reply */
    char alt_contacts[DR_WIRE_MAX_CONTACTS][DR_ADDRESS_MAX]; /**< joiner: other members named
                                                                  by JOIN_ACCEPTED */
    uint32_t num_alt_contacts;
    uint32_t join_retries;   /**< joiner: retries so far (they rotate over the contacts) */
    pending_joiner *joiners; /**< leader: nodes for the next view, arrival order */
    uint32_t num_joiners;
    /* view */
    bool have_view;
    dr_view view;
    dr_layout layout;
    bool has_previous_layout;  /* false in view 0 */
    dr_layout previous_layout; /* layout of the view before (state transfer) */
    uint32_t my_rank;
    bool joined_now[DR_VIEW_MAX_MEMBERS]; /**< per rank: the member joined in this view and has
                                               sent nothing in it yet (a join request from it
                                               is a retry whose VIEW was lost, not a restart) */
    dr_sst *sst;
    mc_shard shards[DR_LAYOUT_MAX_SUBGROUPS]; /**< indexed by subgroup id */
    /* early frames */
    early_frame *early;
    uint32_t num_early;
    uint32_t cap_early;
    size_t early_bytes;
    /* actions */
    dr_action *actions;   /**< ring buffer */
    uint32_t action_head; /**< index of the oldest */
    uint32_t num_actions;
    uint32_t cap_actions;
    vc_state vc;
    uint8_t *last_commit; /**< the commit frame that ended the previous view (for laggards) */
    size_t last_commit_len;
    raw_carry raw_carry[RAW_CARRY_MAX]; /**< set by the trim, read by the next view's start */
    uint32_t num_raw_carry;
    resend_item *resends; /**< own messages to re-send, in order */
    uint32_t num_resends, cap_resends;
    bool draining;        /**< sending queued re-sends (they go before new application sends) */
    bool leave_requested; /**< dr_core_leave was called: no new sends; LEAVING once flushed */
    dr_buf scratch;       /**< frame encoding */
    dr_shared_bytes
        *incoming; /**< the frame being handled, when the driver shares it (else NULL) */
    dr_wire_limits limits;
    dr_core_stats stats;
    /* persistence (persistence.c), kept across views */
    int64_t persisted_local[DR_LAYOUT_MAX_SUBGROUPS];  /**< my last dr_core_persisted, or -1 */
    int64_t persisted_global[DR_LAYOUT_MAX_SUBGROUPS]; /**< last frontier emitted, or -1 */
    struct restart_state *restart; /**< total restart (restart.c), NULL if not restarting */
};

/* core.c: actions and helpers */
/** Queues an action (copied; `bytes` ownership moves to the queue). Returns 0 or DR_ENOMEM. */
int core_push_action(dr_core *core, const dr_action *action);
/** Queues SEND of a copy of bytes[0..len) to node_id. */
int core_send_bytes(dr_core *core, uint32_t node_id, const uint8_t *bytes, size_t len);
/**
 * Queues SEND of the frame head[0..head_len) + body[0..body_len) to node_id without copying
 * body: the action takes head (malloc'd; also on failure) and a new reference on owner, which
 * holds body.
 */
int core_send_shared(dr_core *core, uint32_t node_id, uint8_t *head, size_t head_len,
                     dr_shared_bytes *owner, const uint8_t *body, size_t body_len);
/** Queues SEND of the scratch buffer's content to node_id. */
int core_send_scratch(dr_core *core, uint32_t node_id);
/**
 * Queues SEND of the scratch buffer's content to an address (node_id DR_NODE_NONE): for nodes
 * that are not members (joiners, restarting nodes), which need no connection yet.
 */
int core_send_scratch_to_address(dr_core *core, const char *address);
/** Emits a trace line if tracing is on (formats nothing otherwise). */
void core_trace(dr_core *core, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Logs and counts a rejected frame; returns DR_EPROTO. */
int core_reject(dr_core *core, uint32_t from_node, const char *why);
/** Installs `view` (adequate layout already checked); emits VIEW_INSTALLED, CONNECTs. */
int core_install_view(dr_core *core, const dr_view *view, const dr_layout *layout,
                      const dr_layout *previous);
/** Row of node_id in the installed view, or -1. */
int core_view_rank(const dr_core *core, uint32_t node_id);

/* membership.c */
int membership_start(dr_core *core);
int membership_on_tick(dr_core *core);
void membership_on_disconnect(dr_core *core, uint32_t peer_id);
int membership_on_join_request(dr_core *core, const dr_wire_header *header, const uint8_t *body);
int membership_on_join_redirect(dr_core *core, const dr_wire_header *header, const uint8_t *body);
/** A restarting node gives up its restart and becomes a joiner (its logs are emptied:
 * restart_abandon); the caller then joins through an address (membership_join_through).
 * `told_by`: who said the group runs without it (for the log). 0 or DR_ENOMEM. */
int membership_join_instead(dr_core *core, const char *address, uint32_t told_by);
/** A joiner sends its JOIN_REQUEST to `address` (a redirect, or a member of a restarted
 * group); stops after 8 redirects in a row (the retry timer goes on). */
int membership_join_through(dr_core *core, const char *address, uint32_t told_by);
/**
 * In a view: tells node `to_node` (a restarting node that asked for a total restart while the
 * group runs without it; it is connected to us) to join instead, naming the current leader
 * (JOIN_REDIRECT, sent by id on its connection).
 */
int membership_redirect_to_leader(dr_core *core, uint32_t to_node);
int membership_on_join_refused(dr_core *core, const dr_wire_header *header, const uint8_t *body);
int membership_on_join_accepted(dr_core *core, const dr_wire_header *header, const uint8_t *body);
int membership_on_view(dr_core *core, const dr_wire_header *header, const uint8_t *body);
void membership_free(dr_core *core);
/** Leader: appends queued joiners (not yet members) to `next`; returns how many. */
uint32_t membership_joiners(const dr_core *core, dr_view *next);
/**
 * After installing a committed view: forgets queued joiners that are now members and sends the
 * view to every member that joined in it (from every member: the joiner takes the first copy).
 */
int membership_after_view_change(dr_core *core);

/* restart.c: total restart */
/** Starts a total restart from the saved view and tails (copied). */
int restart_start(dr_core *core, const dr_core_restart_options *options);
/** Re-sends the report, moves to the next leader after restart.timeout_ms. */
int restart_on_tick(dr_core *core);
/** RESTART_REQUEST / PREPARE / ACK / COMMIT. */
int restart_on_message(dr_core *core, const dr_wire_header *header, const uint8_t *body);
/** Frees the restart state. */
void restart_free(dr_core *core);
/** The id of the node at `address` in my saved view (a restarting node), else DR_NODE_NONE. */
uint32_t restart_node_at(const dr_core *core, const char *address);
/** The node gives up its total restart to join the running group as a new member: its saved
 * view and its logs' records are not part of that group's history (an earlier restart may have
 * cut some of them), so its durable state is discarded (DR_ACTION_DISCARD_DURABLE) and its tails
 * are forgotten; the state transfer of the join replaces them. 0 or DR_ENOMEM. */
int restart_abandon(dr_core *core);

/* multicast.c */
/** Sets up my shards of the installed view and registers their predicates. */
int multicast_start_view(dr_core *core);
/** Frees all shard state of the current view. */
void multicast_end_view(dr_core *core);
/**
 * Multicasts payload (malloc'd; taken on success, still the caller's on error). Returns 0,
 * DR_EAGAIN (window), DR_ESTATE, DR_EINVAL, DR_ETOOBIG, DR_ENOMEM.
 */
int multicast_send(dr_core *core, uint32_t subgroup, uint8_t *payload, size_t len,
                   dr_delivery_mode mode);
int multicast_on_data(dr_core *core, const dr_wire_header *header, const uint8_t *body);
int multicast_on_nulls(dr_core *core, const dr_wire_header *header, const uint8_t *body);
int multicast_on_block(dr_core *core, const dr_wire_header *header, const uint8_t *frame,
                       size_t frame_len);

/** Stops the core for good and emits DR_ACTION_STOPPED(code, reason). */
void core_stop(dr_core *core, int code, const char *reason);

/* failure.c: heartbeats and suspicion */
/** Starts failure detection for the freshly installed view. */
void failure_start_view(dr_core *core);
/** Any frame from node_id counts as a sign of life. */
void failure_heard_from(dr_core *core, uint32_t node_id);
/** Sends heartbeats that are due and suspects silent members. */
int failure_on_tick(dr_core *core);
/** The connection to rank broke: suspect it now (higher rank) or after a grace (lower). */
void failure_on_disconnect(dr_core *core, uint32_t rank);
/** Suspects the member of rank `rank` (no-op if already suspected or me). */
void failure_suspect(dr_core *core, uint32_t rank, const char *why);
/** True if I suspect rank. */
bool failure_suspected(const dr_core *core, uint32_t rank);
/** Copies suspicions from every row into mine; stops me if anyone suspects me. */
bool failure_copy_suspicions(dr_core *core);
/**
 * True if a member I do not suspect accuses one I do not suspect yet (an accusation that waits
 * to ripen): a fresh proposal would keep the accused and the change would repeat itself.
 */
bool failure_accusations_pending(const dr_core *core);
/** Partitioning safety: stops the core if it suspects half or more of the view. */
bool failure_check_partition(dr_core *core);

/* viewchange.c: wedge, proposal, ack, commit, ragged trim, install */
/** Runs the view-change steps that the table allows now (after every event). */
void viewchange_step(dr_core *core);
/** Handles a PROPOSAL frame (already checked to be of the current view). */
int viewchange_on_proposal(dr_core *core, const dr_wire_header *header, const uint8_t *body);
/** An old-view heartbeat from a node of the previous view (a member that missed the commit, or
 * one the change excluded, e.g. after a pause): resend it the commit. */
void viewchange_on_laggard(dr_core *core, uint32_t node_id, int32_t vid);
/** Frees the view-change state (proposal, saved commit, resends). */
void viewchange_free(dr_core *core);
/** Wedges this node (idempotent). */
void viewchange_wedge(dr_core *core, const char *why);
/** Lowest-ranked member I do not suspect (the leader). */
uint32_t viewchange_leader_rank(const dr_core *core);
/** Clean leave: sets LEAVING once every own message was delivered here (stable everywhere). */
void viewchange_leave_when_flushed(dr_core *core);
/** Sends queued re-sends as far as windows allow; true if all went. */
bool viewchange_drain_resends(dr_core *core);

/* multicast.c: view-change support */
/**
 * Ragged trim of my shard of `subgroup`: delivers, in seq order, every message with index <=
 * trim[k] of its sender k that is not yet delivered, then moves my own messages beyond my trim
 * to the re-send queue. Returns 0, DR_EPROTO if a trim exceeds what I hold (a bad proposal),
 * or DR_ENOMEM.
 */
int multicast_ragged_trim(dr_core *core, uint32_t subgroup, const int64_t *trim);
/**
 * End of a view for my raw shard of `subgroup` (the committed proposal's trim[k] = the lowest
 * index of sender k that every survivor of the shard received; survives[k]: sender k is in the
 * next view): delivers what arrived and was
 * not delivered yet (deliveries stop at the wedge), queues my own messages beyond my trim for
 * re-sending, and records where each surviving sender's numbering goes on, so that the next
 * view delivers the re-sent messages only where they were missing. Returns 0, DR_EPROTO if a
 * trim exceeds what I hold, or DR_ENOMEM.
 */
int multicast_raw_view_end(dr_core *core, uint32_t subgroup, const int64_t *trim,
                           const bool *survives);
/** True if every message I multicast in a raw shard was received by every member (a leave
 * waits for it: nothing is left to re-send). */
bool multicast_raw_sends_settled(const dr_core *core);
/** Publishes DELIVERED_NUM: delivered_num, or with count_consumption what was consumed. */
void multicast_publish_delivered(dr_core *core, mc_shard *shard);
/** Queues an own message for re-sending (payload taken). */
int core_queue_resend(dr_core *core, uint32_t subgroup, uint8_t *payload, uint32_t len);

/* persistence.c: PERSISTED_NUM and the persistence frontier */
/** Sets the persisted versions to "none" (at create). */
void persistence_init(dr_core *core);
/** Re-publishes my persisted versions in the new view's table; registers the frontier
 * predicate (after multicast_start_view). Returns 0 or DR_ENOMEM / the SST's error. */
int persistence_start_view(dr_core *core);
/** Evaluates and pushes after an event unless the driver defers it (core.c). */
void core_after_event(dr_core *core);

/* pipeline.c */
/**
 * Relay schedule of one block: given the shard size, the positions relative to the sender
 * (0 = the sender; position p is shard rank (sender_rank + p) % size), fills next[] with the
 * relative positions this node forwards `block` to and returns their count (<= size - 1).
 */
uint32_t pipeline_next_hops(dr_pipeline_algorithm algorithm, uint32_t shard_size,
                            uint32_t my_position, uint32_t block, uint32_t *next);

#endif
