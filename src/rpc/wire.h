/*
 * Wire messages of the rpc layer (format specified at the top of wire.c): the ordered-call
 * payload carried inside the group's multicast, p2p requests, replies (ordered and p2p), and the
 * view query/reply that outside clients use. Encoders append to a dr_buf; decoders check every
 * field of untrusted bytes with dr_reader and return borrowed pointers into the input.
 */
#ifndef DR_RPC_WIRE_H
#define DR_RPC_WIRE_H

#include "derecho/buffer.h"
#include "derecho/group.h"

#include <stddef.h>
#include <stdint.h>

/** Net frame types of the rpc layer (>= DR_RUNTIME_TYPE_APP_MIN, checked in node.c). */
enum {
    RPC_T_P2P_REQUEST = 32,   /**< p2p call: member or client -> member */
    RPC_T_P2P_REPLY = 33,     /**< its reply */
    RPC_T_ORDERED_REPLY = 34, /**< a member's reply to an ordered call, member -> caller */
    RPC_T_VIEW_QUERY = 35,    /**< client -> member: send me your view */
    RPC_T_VIEW_REPLY = 36,    /**< member -> client: the view, layout and limits */
    RPC_T_STATE = 37,         /**< member -> new shard member: a chunk of replicated state */
};

#define RPC_WIRE_VERSION          1u
#define RPC_ORDERED_MAGIC         0x43505244u /* "DRPC" little-endian */
#define RPC_ORDERED_HEADER_SIZE   28u         /* bytes before the arguments */
#define RPC_STATE_CHUNK_HEAD_SIZE 36u         /* bytes of a state chunk before its state */
#define RPC_P2P_HEADER_SIZE       24u
#define RPC_REPLY_HEADER_SIZE     16u
#define RPC_MAX_TYPES             8u /* == DR_LAYOUT_MAX_TYPES */

/** A decoded ordered-call payload (args borrowed from the input). */
typedef struct rpc_ordered_msg {
    uint64_t request_id;
    uint32_t caller_id;
    uint32_t method_id;
    const uint8_t *args;
    size_t args_len;
} rpc_ordered_msg;

/** A decoded p2p request (args borrowed). */
typedef struct rpc_p2p_request {
    uint64_t request_id;
    uint32_t subgroup;
    uint32_t method_id;
    const uint8_t *args;
    size_t args_len;
} rpc_p2p_request;

/** A decoded reply (bytes borrowed). */
typedef struct rpc_reply_msg {
    uint64_t request_id;
    int status; /* 0 or a negative error */
    const uint8_t *bytes;
    size_t len;
} rpc_reply_msg;

/** What a member tells an outside client. */
typedef struct rpc_view_info {
    dr_group_view view;       /* my_id: the answering member */
    uint32_t p2p_window;      /* p2p_window_size */
    uint64_t max_p2p_request; /* max_p2p_request_payload_size */
    uint64_t max_p2p_reply;   /* max_p2p_reply_payload_size */
    uint32_t num_types;       /* subgroup types of the layout spec */
    char type_names[RPC_MAX_TYPES][DR_LAYOUT_NAME_MAX];
} rpc_view_info;

/** One chunk of a state transfer (bytes borrowed). */
typedef struct rpc_state_chunk {
    int32_t vid;       /* the view whose start the state describes */
    uint32_t subgroup; /* the subgroup it belongs to */
    int status;        /* 0, or the sender's serialize error (the transfer failed) */
    uint64_t total;    /* state bytes in all */
    uint64_t offset;   /* where this chunk goes */
    const uint8_t *bytes;
    size_t len;
} rpc_state_chunk;

/** Encoders append one message to *out; return 0 or the dr_buf error (DR_ETOOBIG, DR_ENOMEM). */
int rpc_encode_ordered(dr_buf *out, uint64_t request_id, uint32_t caller_id, uint32_t method_id,
                       const void *args, size_t len);
/** The RPC_ORDERED_HEADER_SIZE bytes before an ordered call's args_len bytes of arguments
 * (rpc_encode_ordered without them: the caller places the arguments after it). */
int rpc_encode_ordered_head(dr_buf *out, uint64_t request_id, uint32_t caller_id,
                            uint32_t method_id, size_t args_len);
int rpc_encode_p2p_request(dr_buf *out, uint64_t request_id, uint32_t subgroup, uint32_t method_id,
                           const void *args, size_t len);
int rpc_encode_reply(dr_buf *out, uint64_t request_id, int status, const void *bytes, size_t len);
int rpc_encode_view_query(dr_buf *out);
int rpc_encode_view_reply(dr_buf *out, const rpc_view_info *info);
/** DR_EINVAL also for a chunk outside [0, total) or a positive status. */
int rpc_encode_state_chunk(dr_buf *out, const rpc_state_chunk *chunk);
/** The RPC_STATE_CHUNK_HEAD_SIZE bytes of a state chunk before its chunk->len bytes of state
 * (rpc_encode_state_chunk without them: the sender sends the state slice after it, uncopied).
 * Errors as rpc_encode_state_chunk. */
int rpc_encode_state_chunk_head(dr_buf *out, const rpc_state_chunk *chunk);

/** Decoders: 0, or DR_EPROTO for anything malformed, truncated or with trailing bytes. */
int rpc_decode_ordered(const uint8_t *bytes, size_t len, rpc_ordered_msg *out);
int rpc_decode_p2p_request(const uint8_t *bytes, size_t len, rpc_p2p_request *out);
int rpc_decode_reply(const uint8_t *bytes, size_t len, rpc_reply_msg *out);
int rpc_decode_view_query(const uint8_t *bytes, size_t len);
/** Also checks the layout's internal consistency (ids in the view, counts within capacity). */
int rpc_decode_view_reply(const uint8_t *bytes, size_t len, rpc_view_info *out);
/** Also rejects a negative vid, a positive status and a chunk past total. */
int rpc_decode_state_chunk(const uint8_t *bytes, size_t len, rpc_state_chunk *out);

#endif
