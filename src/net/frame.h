/*
 * Frame codec of the TCP transport: the fixed header every message carries on a connection,
 * and an incremental decoder that turns a byte stream (delivered in pieces of any size) into
 * whole frames. Pure code: no sockets, no threads, no clocks; the fuzz target drives it directly.
 * The wire format is specified at the top of frame.c.
 */
#ifndef DR_NET_FRAME_H
#define DR_NET_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** "DRNF" read as a little-endian u32: the first 4 bytes of every frame. */
#define DR_FRAME_MAGIC 0x464e5244u
/** Wire protocol version this code speaks; a frame with another version is refused. */
#define DR_FRAME_VERSION 1u
/** Size of the fixed frame header in bytes. */
#define DR_FRAME_HEADER_BYTES 16u
/** Hard upper bound of any payload (the configured maximum must not exceed it). */
#define DR_FRAME_PAYLOAD_HARD_MAX 0x7fffffffu

/** Decoded fixed header of a frame. */
typedef struct dr_frame_header {
    uint16_t type;          /**< message type (net reserves < DR_NET_TYPE_USER_MIN) */
    uint32_t flags;         /**< opaque to net; carried unchanged */
    uint32_t payload_bytes; /**< payload length that follows the header */
} dr_frame_header;

/** Writes the 16-byte header for (type, flags, payload_bytes) into out. */
void dr_frame_encode_header(uint8_t out[DR_FRAME_HEADER_BYTES], uint16_t type, uint32_t flags,
                            uint32_t payload_bytes);

/**
 * Parses and checks a 16-byte header: magic, version, and payload_bytes <= max_payload_bytes.
 * Returns 0, or DR_EPROTO (magic/version; *why names it) or DR_ETOOBIG (length over the limit).
 * Never allocates. `why` may be NULL.
 */
int dr_frame_decode_header(const uint8_t in[DR_FRAME_HEADER_BYTES], uint32_t max_payload_bytes,
                           dr_frame_header *out, const char **why);

/**
 * One frame handed out by the decoder. `payload` points into a single heap block that starts at
 * `block` (the decoder's allocation hook decides its layout); the receiver owns it.
 */
typedef struct dr_frame {
    dr_frame_header header; /**< checked header */
    void *block;            /**< allocation holding the payload (owned by the receiver) */
    uint8_t *payload;       /**< payload bytes inside block (NULL only if payload_bytes == 0
                                 and the allocator returned no payload pointer) */
} dr_frame;

/**
 * Allocation hook: returns a block able to hold `payload_bytes` bytes and sets *payload_out to
 * where they go (lets net put the payload right behind its message struct: one malloc per frame).
 * Returns NULL on failure.
 */
typedef void *(*dr_frame_alloc_fn)(void *ctx, const dr_frame_header *header, uint8_t **payload_out);

/** State of an incremental decoder (one per connection; owned by one thread at a time). */
typedef struct dr_frame_decoder {
    uint32_t max_payload_bytes;            /**< frames with a longer payload are refused */
    dr_frame_alloc_fn alloc;               /**< payload allocator (NULL: malloc) */
    void *alloc_ctx;                       /**< passed to alloc */
    uint8_t header[DR_FRAME_HEADER_BYTES]; /**< header bytes gathered so far */
    size_t header_have;                    /**< how many of them */
    bool in_payload;                       /**< header complete, payload being filled */
    dr_frame current;                      /**< frame being filled (valid when in_payload) */
    size_t payload_have;                   /**< payload bytes filled so far */
    int error;                             /**< sticky error (0 = healthy) */
    const char *error_why;                 /**< static reason for error */
} dr_frame_decoder;

/** Initialises a decoder. alloc may be NULL (malloc; block == payload). */
void dr_frame_decoder_init(dr_frame_decoder *dec, uint32_t max_payload_bytes,
                           dr_frame_alloc_fn alloc, void *alloc_ctx);

/** Frees a partially received frame, if any. The decoder may be re-initialised afterwards. */
void dr_frame_decoder_free(dr_frame_decoder *dec);

/**
 * Consumes up to `len` bytes. Stops after the first complete frame: returns 1 with *out filled
 * (ownership of out->block passes to the caller), 0 when all input was consumed without finishing
 * a frame, or a negative DR_E* code (DR_EPROTO, DR_ETOOBIG, DR_ENOMEM) after which the decoder
 * stays failed and the connection must be closed (dr_frame_decoder_why() says why).
 * *consumed receives the bytes used in every case. The payload length is checked before the
 * allocation is made.
 */
int dr_frame_decoder_feed(dr_frame_decoder *dec, const uint8_t *data, size_t len, size_t *consumed,
                          dr_frame *out);

/**
 * Zero-copy path for large payloads: when the decoder is inside a payload, returns the number of
 * payload bytes still missing and sets *dst to where they go (the caller reads from the socket
 * straight into it, then calls dr_frame_decoder_payload_filled). Returns 0 otherwise.
 */
size_t dr_frame_decoder_payload_gap(const dr_frame_decoder *dec, uint8_t **dst);

/**
 * Records that `len` bytes were written at the address given by dr_frame_decoder_payload_gap.
 * Returns 1 with *out filled when the frame is complete, else 0.
 */
int dr_frame_decoder_payload_filled(dr_frame_decoder *dec, size_t len, dr_frame *out);

/** Static reason of the decoder's error ("bad magic"), or "" when healthy. */
const char *dr_frame_decoder_why(const dr_frame_decoder *dec);

#endif
