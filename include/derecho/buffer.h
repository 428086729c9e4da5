/** @file
 * Growable byte buffers and bounds-checked cursors for wire and file formats.
 *
 * All multi-byte integers are little-endian on the wire. A dr_buf grows up to a caller-set
 * limit (max_bytes); a write beyond it fails with DR_ETOOBIG and sets the sticky `failed`
 * flag, so an encoder can write many fields and check once at the end. A dr_reader reads
 * from a borrowed byte range and never reads past it: a short read returns zero/NULL and sets
 * its sticky `failed` flag, so decoders of untrusted bytes check once at the end, and lengths
 * read from the input are capped with dr_reader_len() before anything is allocated.
 * Neither type is thread-safe; each belongs to one thread at a time.
 */
#ifndef DERECHO_BUFFER_H
#define DERECHO_BUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A growable, owned byte buffer. Zero-initialise, or use dr_buf_init. */
typedef struct dr_buf {
    uint8_t *data;    /**< owned storage (NULL until the first write) */
    size_t len;       /**< bytes written */
    size_t cap;       /**< bytes allocated */
    size_t max_bytes; /**< growth limit; 0 means SIZE_MAX */
    bool failed;      /**< sticky: a write failed (no memory or over max_bytes) */
} dr_buf;

/** Initialises an empty buffer that may grow to max_bytes (0: unlimited). */
void dr_buf_init(dr_buf *buf, size_t max_bytes);

/** Frees the storage and resets the buffer to empty; the limit is kept. */
void dr_buf_free(dr_buf *buf);

/** Empties the buffer but keeps its storage and limit. */
void dr_buf_reset(dr_buf *buf);

/** Ensures room for `extra` more bytes. Returns 0, DR_ETOOBIG or DR_ENOMEM (and sets failed). */
int dr_buf_reserve(dr_buf *buf, size_t extra);

/** Appends bytes; returns 0 or an error as dr_buf_reserve. */
int dr_buf_put_bytes(dr_buf *buf, const void *bytes, size_t len);
int dr_buf_put_u8(dr_buf *buf, uint8_t value);
int dr_buf_put_u16(dr_buf *buf, uint16_t value);
int dr_buf_put_u32(dr_buf *buf, uint32_t value);
int dr_buf_put_u64(dr_buf *buf, uint64_t value);
/** Appends a u32 length followed by the bytes. */
int dr_buf_put_blob(dr_buf *buf, const void *bytes, uint32_t len);
/** Appends a u32 length followed by the string's bytes (no NUL). */
int dr_buf_put_str(dr_buf *buf, const char *text);

/**
 * Gives the storage to the caller (who frees it with free()) and leaves the buffer empty.
 * *len_out receives the length. Returns NULL for an empty buffer.
 */
uint8_t *dr_buf_steal(dr_buf *buf, size_t *len_out);

/** A cursor over borrowed bytes. */
typedef struct dr_reader {
    const uint8_t *data; /**< start of the borrowed range */
    size_t len;          /**< bytes in the range */
    size_t pos;          /**< next byte to read */
    bool failed;         /**< sticky: some read went past the end or over a limit */
} dr_reader;

/** Starts reading `len` bytes at `data` (borrowed; must outlive the reader). */
void dr_reader_init(dr_reader *reader, const void *data, size_t len);

/** Bytes left to read (0 once failed). */
size_t dr_reader_remaining(const dr_reader *reader);

/** Readers return the value, or 0 and set failed when fewer bytes remain than needed. */
uint8_t dr_reader_u8(dr_reader *reader);
uint16_t dr_reader_u16(dr_reader *reader);
uint32_t dr_reader_u32(dr_reader *reader);
uint64_t dr_reader_u64(dr_reader *reader);

/** Returns a pointer to the next `len` bytes (borrowed) and skips them, or NULL and failed. */
const uint8_t *dr_reader_bytes(dr_reader *reader, size_t len);

/**
 * Reads a u32 length, checks it against `max_len` and the bytes remaining, and returns it;
 * on violation returns 0 and sets failed. Use before allocating anything of that size.
 */
uint32_t dr_reader_len(dr_reader *reader, uint32_t max_len);

/** Reads a dr_buf_put_blob value: *len_out gets its length; returns the bytes or NULL. */
const uint8_t *dr_reader_blob(dr_reader *reader, uint32_t max_len, uint32_t *len_out);

/** Returns true if nothing failed and every byte was consumed. */
bool dr_reader_done(const dr_reader *reader);

/** Little-endian helpers for fixed-layout headers. */
static inline void dr_store_u32le(uint8_t *out, uint32_t value) {
    out[0] = (uint8_t)value;
    out[1] = (uint8_t)(value >> 8);
    out[2] = (uint8_t)(value >> 16);
    out[3] = (uint8_t)(value >> 24);
}
static inline uint32_t dr_load_u32le(const uint8_t *in) {
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}
static inline void dr_store_u64le(uint8_t *out, uint64_t value) {
    dr_store_u32le(out, (uint32_t)value);
    dr_store_u32le(out + 4, (uint32_t)(value >> 32));
}
static inline uint64_t dr_load_u64le(const uint8_t *in) {
    return (uint64_t)dr_load_u32le(in) | (uint64_t)dr_load_u32le(in + 4) << 32;
}

#ifdef __cplusplus
}
#endif
#endif
