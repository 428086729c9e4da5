/*
 * Wire messages of the group core: encoders and checked decoders (format at the top of wire.c).
 *
 * Encoders append one complete message (header + body) to a dr_buf. Decoders read untrusted
 * bytes: they check the header (magic, version, type, length) and every field against the
 * limits passed in, never allocate, and return borrowed pointers into the input for payloads.
 * A malformed message yields DR_EPROTO and a static reason string; nothing asserts on peer data.
 */
#ifndef DR_CORE_WIRE_H
#define DR_CORE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "derecho/buffer.h"
#include "derecho/layout.h"

/** "DRC1" as a little-endian u32. */
#define DR_WIRE_MAGIC 0x31435244u
/** Version of the core protocol spoken here. */
#define DR_WIRE_VERSION 3u
/** Bytes of the common header. */
#define DR_WIRE_HEADER_BYTES 20u
/** View id carried by messages sent outside any view (joins). */
#define DR_WIRE_NO_VIEW (-1)
/** Upper bound of SST entries in one push message. */
#define DR_WIRE_MAX_SST_ENTRIES 65536u

/** Message types. */
typedef enum dr_wire_type {
    DR_MSG_JOIN_REQUEST = 1,  /**< joiner -> contact: my id and address */
    DR_MSG_JOIN_REDIRECT = 2, /**< non-leader -> joiner: ask the leader instead */
    DR_MSG_JOIN_REFUSED = 3,  /**< leader -> joiner: refused (duplicate id ...) */
    DR_MSG_JOIN_ACCEPTED = 4, /**< leader -> joiner: queued, wait for the view */
    DR_MSG_VIEW = 5,          /**< leader -> members: install this view */
    DR_MSG_SST_PUSH = 6,      /**< member -> peer: row R, fields F = values V */
    DR_MSG_DATA = 7,          /**< sender -> shard: one whole small message */
    DR_MSG_NULLS = 8,         /**< sender -> shard: `count` null messages */
    DR_MSG_BLOCK = 9,         /**< pipeline: one block of a large message */
    DR_MSG_HEARTBEAT = 10,    /**< member -> members: I am alive (empty body) */
    DR_MSG_PROPOSAL = 11,     /**< view-change leader -> members: next view + trims */
    /* total restart (src/core/restart.c, docs/persistence.md "Total restart") */
    DR_MSG_RESTART_REQUEST = 12, /**< restarting node -> restart leader: saved view, log tails */
    DR_MSG_RESTART_PREPARE = 13, /**< restart leader -> nodes: accept this restart view + trims */
    DR_MSG_RESTART_ACK = 14,     /**< node -> restart leader: accepted the round's proposal */
    DR_MSG_RESTART_COMMIT = 15,  /**< anyone -> nodes: this restart view was chosen: install */
    DR_MSG_TYPE_MAX = 15,
} dr_wire_type;

/** Decoded common header. */
typedef struct dr_wire_header {
    uint8_t type;       /**< dr_wire_type */
    uint32_t sender_id; /**< node id of the message's author */
    int32_t vid;        /**< view id, DR_WIRE_NO_VIEW outside views */
    uint32_t body_len;  /**< bytes after the header */
} dr_wire_header;

/** Limits a decoder enforces (from the core's options). */
typedef struct dr_wire_limits {
    uint32_t max_payload_bytes; /**< largest multicast message */
    uint32_t max_block_bytes;   /**< largest block of a large message */
    uint32_t max_subgroups;     /**< subgroup ids must be below this */
    uint32_t max_senders;       /**< sender indexes must be below this */
} dr_wire_limits;

typedef struct dr_msg_join_request {
    char address[DR_ADDRESS_MAX]; /**< joiner's "ip:port" */
    uint64_t incarnation;         /**< joiner's process incarnation (nonzero) */
} dr_msg_join_request;

typedef struct dr_msg_join_redirect {
    uint32_t leader_id;           /**< DR_NODE_NONE if unknown */
    char address[DR_ADDRESS_MAX]; /**< where to ask */
} dr_msg_join_redirect;

/** Most other members a JOIN_ACCEPTED names (where the joiner retries if the leader dies). */
#define DR_WIRE_MAX_CONTACTS 16u

/** DR_MSG_JOIN_ACCEPTED body: other members to retry at (the body is empty when there are none). */
typedef struct dr_msg_join_accepted {
    uint32_t num_contacts;
    char contacts[DR_WIRE_MAX_CONTACTS][DR_ADDRESS_MAX];
} dr_msg_join_accepted;

typedef struct dr_msg_join_refused {
    int32_t code;     /**< DR_E* code (DR_EEXIST: duplicate id) */
    char reason[128]; /**< readable reason */
} dr_msg_join_refused;

/** DR_MSG_VIEW body: the view plus the sender's layout fingerprint. */
typedef struct dr_msg_view {
    dr_view view;                /**< vid in view.vid equals the header's vid */
    uint64_t layout_fingerprint; /**< dr_layout_fingerprint of the sender's layout */
    bool has_assignment;         /**< the optional shard assignment follows (views > 0) */
    dr_layout assignment;        /**< members and sender flags per shard (nothing else set) */
} dr_msg_view;

/** One SST entry of a push. */
typedef struct dr_sst_entry {
    uint32_t field; /**< field id in the row (see sst.h) */
    int64_t value;  /**< new value (applied by max) */
} dr_sst_entry;

/** DR_MSG_SST_PUSH body (entries are decoded one by one with dr_wire_sst_entry). */
typedef struct dr_msg_sst_push {
    uint32_t row;           /**< rank of the row's owner in the view */
    uint32_t num_entries;   /**< entries that follow */
    const uint8_t *entries; /**< borrowed: num_entries * 12 bytes */
} dr_msg_sst_push;

/** DR_MSG_DATA body. */
typedef struct dr_msg_data {
    uint32_t subgroup;      /**< subgroup id */
    uint32_t sender_index;  /**< sender rank among the shard's senders */
    uint32_t index;         /**< message index of that sender in this view */
    uint64_t timestamp_us;  /**< sender's clock at send */
    uint32_t len;           /**< payload bytes */
    const uint8_t *payload; /**< borrowed */
} dr_msg_data;

/** DR_MSG_NULLS body: indices first..first+count-1 of the sender are nulls. */
typedef struct dr_msg_nulls {
    uint32_t subgroup;
    uint32_t sender_index;
    uint32_t first_index;
    uint32_t count;
} dr_msg_nulls;

/** DR_MSG_BLOCK body: block `block` of a large message (total_len bytes, num_blocks blocks). */
typedef struct dr_msg_block {
    uint32_t subgroup;
    uint32_t sender_index;
    uint32_t index;
    uint64_t timestamp_us;
    uint32_t total_len;     /**< message size */
    uint32_t block_size;    /**< size of every block but the last */
    uint32_t block;         /**< this block's number */
    uint32_t len;           /**< bytes in this block */
    const uint8_t *payload; /**< borrowed */
} dr_msg_block;

/** Upper bound of ragged-trim entries in one proposal (subgroups x shards x senders). */
#define DR_WIRE_MAX_TRIMS                                                                          \
    (DR_LAYOUT_MAX_SUBGROUPS * DR_LAYOUT_MAX_SHARDS * DR_LAYOUT_MAX_SHARD_MEMBERS)

/** One ragged-trim entry: deliver sender `sender`'s messages of that shard up to `trim`. */
typedef struct dr_trim_entry {
    uint32_t subgroup;
    uint32_t shard;
    uint32_t sender; /**< sender index within the shard */
    int64_t trim;    /**< last index delivered (-1: none) */
} dr_trim_entry;

/** What a DR_MSG_PROPOSAL frame asks (docs/protocol.md, "View change"). */
typedef enum dr_proposal_kind {
    DR_PROPOSAL_PROPOSE = 0, /**< leader -> members: accept this value at `ballot` (phase 2) */
    DR_PROPOSAL_COMMIT = 1,  /**< anyone -> members: this value was chosen at `ballot`: install */
    DR_PROPOSAL_REPORT = 2,  /**< member -> leader: I promised `ballot`; what I accepted before */
} dr_proposal_kind;

/**
 * Ballots order the proposals of one view change: ballot = round * DR_VIEW_MAX_MEMBERS + rank
 * + 1 (0: none), so a ballot names its leader's rank and any leader can outbid any other.
 */
#define DR_BALLOT_NONE 0
/** The ballot of `rank` in `round`. */
static inline int64_t dr_ballot_make(uint32_t round, uint32_t rank) {
    return (int64_t)round * DR_VIEW_MAX_MEMBERS + rank + 1;
}
/** The rank of the leader that owns `ballot` (> 0). */
static inline uint32_t dr_ballot_rank(int64_t ballot) {
    return (uint32_t)((ballot - 1) % DR_VIEW_MAX_MEMBERS);
}
/** The round of `ballot` (> 0). */
static inline uint32_t dr_ballot_round(int64_t ballot) {
    return (uint32_t)((ballot - 1) / DR_VIEW_MAX_MEMBERS);
}
/** Largest ballot a decoder accepts (rounds below 2^31). */
#define DR_BALLOT_MAX ((int64_t)INT32_MAX * DR_VIEW_MAX_MEMBERS)

/** DR_MSG_PROPOSAL body (header vid = the view being ended). */
typedef struct dr_msg_proposal {
    uint8_t kind;            /**< dr_proposal_kind */
    int64_t ballot;          /**< PROPOSE/COMMIT: the value's ballot; REPORT: the ballot promised */
    int64_t accepted_ballot; /**< REPORT: ballot the value was accepted at (0: none, no value);
                                  PROPOSE/COMMIT: equal to ballot */
    dr_view next; /**< next view: members and addresses (vid = header vid + 1); REPORT with
                       accepted_ballot 0: no members */
    uint32_t num_trims;
    dr_trim_entry trims[DR_WIRE_MAX_TRIMS];
} dr_msg_proposal;

/** Writes a header with body_len 0; dr_wire_finish patches the length. Returns the offset. */
size_t dr_wire_begin(dr_buf *buf, dr_wire_type type, uint32_t sender_id, int32_t vid);
/** Patches the body length of the message begun at `start`. Returns 0 or the buf's error. */
int dr_wire_finish(dr_buf *buf, size_t start);

/** JOIN_REQUEST from `address`; `incarnation` (nonzero) tells restarts of one node id apart. */
int dr_wire_encode_join_request(dr_buf *buf, uint32_t sender_id, const char *address,
                                uint64_t incarnation);
int dr_wire_encode_join_redirect(dr_buf *buf, uint32_t sender_id, uint32_t leader_id,
                                 const char *address);
int dr_wire_encode_join_refused(dr_buf *buf, uint32_t sender_id, int32_t code, const char *reason);
int dr_wire_encode_join_accepted(dr_buf *buf, uint32_t sender_id);
/** JOIN_ACCEPTED naming n (<= DR_WIRE_MAX_CONTACTS) other members' addresses. */
int dr_wire_encode_join_accepted_contacts(dr_buf *buf, uint32_t sender_id,
                                          const char (*contacts)[DR_ADDRESS_MAX], uint32_t n);
int dr_wire_encode_view(dr_buf *buf, uint32_t sender_id, const dr_view *view,
                        uint64_t layout_fingerprint);
int dr_wire_encode_heartbeat(dr_buf *buf, uint32_t sender_id, int32_t vid);
/** Encodes a proposal for ending view `vid` (msg->next.vid must be vid + 1). */
int dr_wire_encode_proposal(dr_buf *buf, uint32_t sender_id, int32_t vid,
                            const dr_msg_proposal *msg);
/**
 * As dr_wire_encode_view (with `layout`'s fingerprint), followed by `assignment`'s shard
 * assignment: for a later view, the
 * previous view's layout, which a joiner needs to recompute and check the view's layout and to
 * tell which shard members are new (state transfer).
 */
int dr_wire_encode_view_with_layout(dr_buf *buf, uint32_t sender_id, const dr_view *view,
                                    const dr_layout *layout, const dr_layout *assignment);
/** Begins an SST push of `row`; append entries with dr_wire_put_sst_entry, then finish. */
size_t dr_wire_begin_sst_push(dr_buf *buf, uint32_t sender_id, int32_t vid, uint32_t row,
                              size_t *count_offset);
void dr_wire_put_sst_entry(dr_buf *buf, size_t count_offset, uint32_t field, int64_t value);
int dr_wire_encode_data(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_data *msg);
int dr_wire_encode_nulls(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_nulls *msg);
int dr_wire_encode_block(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_block *msg);
/**
 * Encodes a BLOCK frame without its payload bytes: the head that, followed by
 * msg->payload[0..msg->len), is exactly what dr_wire_encode_block writes (zero-copy sends).
 */
int dr_wire_encode_block_head(dr_buf *buf, uint32_t sender_id, int32_t vid,
                              const dr_msg_block *msg);

/**
 * Checks and decodes the common header of bytes[0..len): magic, version, known type, and
 * body_len == len - header. Returns 0 or DR_EPROTO with *why set (static string).
 */
int dr_wire_decode_header(const uint8_t *bytes, size_t len, dr_wire_header *out, const char **why);

/* Body decoders: `body`/`len` is the body after the header. 0 or DR_EPROTO + *why. */
int dr_wire_decode_join_request(const uint8_t *body, size_t len, dr_msg_join_request *out,
                                const char **why);
int dr_wire_decode_join_redirect(const uint8_t *body, size_t len, dr_msg_join_redirect *out,
                                 const char **why);
/** Decodes a JOIN_ACCEPTED body (empty, or u32 n + n addresses). */
int dr_wire_decode_join_accepted(const uint8_t *body, size_t len, dr_msg_join_accepted *out,
                                 const char **why);
int dr_wire_decode_join_refused(const uint8_t *body, size_t len, dr_msg_join_refused *out,
                                const char **why);
int dr_wire_decode_view(const uint8_t *body, size_t len, dr_msg_view *out, const char **why);
int dr_wire_decode_sst_push(const uint8_t *body, size_t len, dr_msg_sst_push *out,
                            const char **why);
/** Reads entry i (< num_entries) of a decoded push. */
void dr_wire_sst_entry(const dr_msg_sst_push *push, uint32_t i, dr_sst_entry *out);
int dr_wire_decode_data(const uint8_t *body, size_t len, const dr_wire_limits *limits,
                        dr_msg_data *out, const char **why);
int dr_wire_decode_nulls(const uint8_t *body, size_t len, const dr_wire_limits *limits,
                         dr_msg_nulls *out, const char **why);
int dr_wire_decode_block(const uint8_t *body, size_t len, const dr_wire_limits *limits,
                         dr_msg_block *out, const char **why);

/** Decodes a PROPOSAL body; out->next.vid is left 0 (the caller sets header vid + 1). */
int dr_wire_decode_proposal(const uint8_t *body, size_t len, dr_msg_proposal *out,
                            const char **why);

/** A short name of a message type for logs ("DATA"), "?" if unknown. */
const char *dr_wire_type_name(uint8_t type);

/**
 * Whether the encoded message bytes[0..len) is data (DATA, NULLS, BLOCK: the multicast stream,
 * kept in send order on each link) rather than control, which the transport lets overtake data
 * queued on the same link (docs/protocol.md, "Control frames overtake data"). Reads only the
 * header's type byte; fewer bytes than a header count as data. Pure.
 */
bool dr_wire_is_data(const uint8_t *bytes, size_t len);

#endif
