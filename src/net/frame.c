/*
 * Frame codec of the TCP transport (frame.h).
 *
 * Wire format of one frame (all integers little-endian):
 *
 *   offset size field
 *   0      4    magic          0x464e5244 ("DRNF" in byte order 'D' 'R' 'N' 'F')
 *   4      2    version        DR_FRAME_VERSION (1); any other value closes the connection
 *   6      2    type           message type; 0..15 reserved for the transport (1 = HELLO),
 *                              16..65535 belong to the layer above
 *   8      4    flags          opaque to the transport, delivered unchanged
 *   12     4    payload_bytes  length of the payload that follows; checked against the
 *                              receiver's configured maximum before anything is allocated
 *   16     n    payload
 *
 * A connection is a sequence of frames. There is no padding, no trailer and no checksum (TCP's
 * checksum and the magic/version/length checks are the integrity layer; a corrupted stream shows
 * up as a bad magic on the next header with overwhelming probability).
 *
 * Decoding is incremental: bytes may arrive one at a time. Any failure is sticky; the caller
 * closes the connection and logs dr_frame_decoder_why().
 */
#include "net/frame.h"

#include "derecho/buffer.h"
#include "derecho/error.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static_assert(DR_FRAME_HEADER_BYTES == 16, "frame header layout is frozen");

void dr_frame_encode_header(uint8_t out[DR_FRAME_HEADER_BYTES], uint16_t type, uint32_t flags,
                            uint32_t payload_bytes) {
    dr_store_u32le(out + 0, DR_FRAME_MAGIC);
    out[4] = (uint8_t)DR_FRAME_VERSION;
    out[5] = (uint8_t)(DR_FRAME_VERSION >> 8);
    out[6] = (uint8_t)type;
    out[7] = (uint8_t)(type >> 8);
    dr_store_u32le(out + 8, flags);
    dr_store_u32le(out + 12, payload_bytes);
}

int dr_frame_decode_header(const uint8_t in[DR_FRAME_HEADER_BYTES], uint32_t max_payload_bytes,
                           dr_frame_header *out, const char **why) {
    const char *dummy;
    if (!why)
        why = &dummy;
    if (dr_load_u32le(in) != DR_FRAME_MAGIC) {
        *why = "bad magic";
        return DR_EPROTO;
    }
    uint16_t version = (uint16_t)(in[4] | in[5] << 8);
    if (version != DR_FRAME_VERSION) {
        *why = "unsupported protocol version";
        return DR_EPROTO;
    }
    out->type = (uint16_t)(in[6] | in[7] << 8);
    out->flags = dr_load_u32le(in + 8);
    out->payload_bytes = dr_load_u32le(in + 12);
    if (out->payload_bytes > max_payload_bytes || out->payload_bytes > DR_FRAME_PAYLOAD_HARD_MAX) {
        *why = "payload length over the configured maximum";
        return DR_ETOOBIG;
    }
    return DR_OK;
}

static void *default_alloc(void *ctx, const dr_frame_header *header, uint8_t **payload_out) {
    (void)ctx;
    uint8_t *block = malloc(header->payload_bytes ? header->payload_bytes : 1);
    *payload_out = block;
    return block;
}

void dr_frame_decoder_init(dr_frame_decoder *dec, uint32_t max_payload_bytes,
                           dr_frame_alloc_fn alloc, void *alloc_ctx) {
    memset(dec, 0, sizeof *dec);
    dec->max_payload_bytes = max_payload_bytes;
    dec->alloc = alloc ? alloc : default_alloc;
    dec->alloc_ctx = alloc_ctx;
}

void dr_frame_decoder_free(dr_frame_decoder *dec) {
    if (dec->in_payload)
        free(dec->current.block);
    dec->in_payload = false;
    dec->current.block = NULL;
}

static int fail(dr_frame_decoder *dec, int code, const char *why) {
    dec->error = code;
    dec->error_why = why;
    return code;
}

/* Header complete: check it, then allocate the payload (only after the length check). */
static int start_payload(dr_frame_decoder *dec) {
    const char *why = "";
    int rc =
        dr_frame_decode_header(dec->header, dec->max_payload_bytes, &dec->current.header, &why);
    if (rc)
        return fail(dec, rc, why);
    dec->current.payload = NULL;
    dec->current.block = dec->alloc(dec->alloc_ctx, &dec->current.header, &dec->current.payload);
    if (!dec->current.block)
        return fail(dec, DR_ENOMEM, "no memory for the payload");
    dec->in_payload = true;
    dec->payload_have = 0;
    dec->header_have = 0;
    return DR_OK;
}

static bool finish_if_complete(dr_frame_decoder *dec, dr_frame *out) {
    if (dec->payload_have < dec->current.header.payload_bytes)
        return false;
    *out = dec->current;
    dec->in_payload = false;
    dec->current.block = NULL;
    return true;
}

int dr_frame_decoder_feed(dr_frame_decoder *dec, const uint8_t *data, size_t len, size_t *consumed,
                          dr_frame *out) {
    size_t pos = 0;
    *consumed = 0;
    if (dec->error)
        return dec->error;
    while (pos < len || dec->in_payload) {
        if (!dec->in_payload) {
            size_t take = DR_FRAME_HEADER_BYTES - dec->header_have;
            if (take > len - pos)
                take = len - pos;
            memcpy(dec->header + dec->header_have, data + pos, take);
            dec->header_have += take;
            pos += take;
            *consumed = pos;
            if (dec->header_have < DR_FRAME_HEADER_BYTES)
                return 0;
            int rc = start_payload(dec);
            if (rc)
                return rc;
        }
        size_t missing = dec->current.header.payload_bytes - dec->payload_have;
        size_t take = missing < len - pos ? missing : len - pos;
        if (take)
            memcpy(dec->current.payload + dec->payload_have, data + pos, take);
        dec->payload_have += take;
        pos += take;
        *consumed = pos;
        if (finish_if_complete(dec, out))
            return 1;
        assert(pos == len);
        return 0;
    }
    return 0;
}

size_t dr_frame_decoder_payload_gap(const dr_frame_decoder *dec, uint8_t **dst) {
    if (dec->error || !dec->in_payload)
        return 0;
    *dst = dec->current.payload + dec->payload_have;
    return dec->current.header.payload_bytes - dec->payload_have;
}

int dr_frame_decoder_payload_filled(dr_frame_decoder *dec, size_t len, dr_frame *out) {
    assert(dec->in_payload);
    assert(len <= dec->current.header.payload_bytes - dec->payload_have);
    dec->payload_have += len;
    return finish_if_complete(dec, out) ? 1 : 0;
}

const char *dr_frame_decoder_why(const dr_frame_decoder *dec) {
    return dec->error ? dec->error_why : "";
}
