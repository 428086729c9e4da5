/* Growable buffers and bounds-checked readers (include/derecho/buffer.h). */
#include "derecho/buffer.h"

#include "derecho/error.h"

#include <stdlib.h>
#include <string.h>

void dr_buf_init(dr_buf *buf, size_t max_bytes) {
    memset(buf, 0, sizeof *buf);
    buf->max_bytes = max_bytes;
}

void dr_buf_free(dr_buf *buf) {
    size_t max_bytes = buf->max_bytes;
    free(buf->data);
    dr_buf_init(buf, max_bytes);
}

void dr_buf_reset(dr_buf *buf) {
    buf->len = 0;
    buf->failed = false;
}

int dr_buf_reserve(dr_buf *buf, size_t extra) {
    size_t limit = buf->max_bytes ? buf->max_bytes : SIZE_MAX;
    if (buf->failed)
        return DR_ETOOBIG;
    if (extra > limit || buf->len > limit - extra) {
        buf->failed = true;
        return DR_ETOOBIG;
    }
    size_t need = buf->len + extra;
    if (need <= buf->cap)
        return DR_OK;
    size_t cap = buf->cap ? buf->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > limit)
        cap = limit;
    uint8_t *grown = realloc(buf->data, cap);
    if (!grown) {
        buf->failed = true;
        return DR_ENOMEM;
    }
    buf->data = grown;
    buf->cap = cap;
    return DR_OK;
}

int dr_buf_put_bytes(dr_buf *buf, const void *bytes, size_t len) {
    int rc = dr_buf_reserve(buf, len);
    if (rc)
        return rc;
    if (len)
        memcpy(buf->data + buf->len, bytes, len);
    buf->len += len;
    return DR_OK;
}

int dr_buf_put_u8(dr_buf *buf, uint8_t value) {
    return dr_buf_put_bytes(buf, &value, 1);
}

int dr_buf_put_u16(dr_buf *buf, uint16_t value) {
    uint8_t bytes[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
    return dr_buf_put_bytes(buf, bytes, 2);
}

int dr_buf_put_u32(dr_buf *buf, uint32_t value) {
    uint8_t bytes[4];
    dr_store_u32le(bytes, value);
    return dr_buf_put_bytes(buf, bytes, 4);
}

int dr_buf_put_u64(dr_buf *buf, uint64_t value) {
    uint8_t bytes[8];
    dr_store_u64le(bytes, value);
    return dr_buf_put_bytes(buf, bytes, 8);
}

int dr_buf_put_blob(dr_buf *buf, const void *bytes, uint32_t len) {
    int rc = dr_buf_put_u32(buf, len);
    return rc ? rc : dr_buf_put_bytes(buf, bytes, len);
}

int dr_buf_put_str(dr_buf *buf, const char *text) {
    size_t len = strlen(text);
    if (len > UINT32_MAX) {
        buf->failed = true;
        return DR_ETOOBIG;
    }
    return dr_buf_put_blob(buf, text, (uint32_t)len);
}

uint8_t *dr_buf_steal(dr_buf *buf, size_t *len_out) {
    uint8_t *data = buf->len ? buf->data : NULL;
    *len_out = buf->len;
    if (!data)
        free(buf->data);
    size_t max_bytes = buf->max_bytes;
    dr_buf_init(buf, max_bytes);
    return data;
}

void dr_reader_init(dr_reader *reader, const void *data, size_t len) {
    reader->data = data;
    reader->len = len;
    reader->pos = 0;
    reader->failed = false;
}

size_t dr_reader_remaining(const dr_reader *reader) {
    return reader->failed ? 0 : reader->len - reader->pos;
}

const uint8_t *dr_reader_bytes(dr_reader *reader, size_t len) {
    if (reader->failed || len > reader->len - reader->pos) {
        reader->failed = true;
        return NULL;
    }
    const uint8_t *start = reader->data + reader->pos;
    reader->pos += len;
    return start;
}

uint8_t dr_reader_u8(dr_reader *reader) {
    const uint8_t *in = dr_reader_bytes(reader, 1);
    return in ? in[0] : 0;
}

uint16_t dr_reader_u16(dr_reader *reader) {
    const uint8_t *in = dr_reader_bytes(reader, 2);
    return in ? (uint16_t)(in[0] | in[1] << 8) : 0;
}

uint32_t dr_reader_u32(dr_reader *reader) {
    const uint8_t *in = dr_reader_bytes(reader, 4);
    return in ? dr_load_u32le(in) : 0;
}

uint64_t dr_reader_u64(dr_reader *reader) {
    const uint8_t *in = dr_reader_bytes(reader, 8);
    return in ? dr_load_u64le(in) : 0;
}

uint32_t dr_reader_len(dr_reader *reader, uint32_t max_len) {
    uint32_t len = dr_reader_u32(reader);
    if (reader->failed || len > max_len || len > reader->len - reader->pos) {
        reader->failed = true;
        return 0;
    }
    return len;
}

const uint8_t *dr_reader_blob(dr_reader *reader, uint32_t max_len, uint32_t *len_out) {
    uint32_t len = dr_reader_len(reader, max_len);
    *len_out = len;
    return reader->failed ? NULL : dr_reader_bytes(reader, len);
}

bool dr_reader_done(const dr_reader *reader) {
    return !reader->failed && reader->pos == reader->len;
}
