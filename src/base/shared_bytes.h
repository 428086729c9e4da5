/*
 * Reference-counted byte buffers: one malloc'd payload read by several owners at once (the
 * core's copy of an own large message and the transport's queued frames that send its blocks
 * without copying them; a received block frame and the queued frames that relay it). The count is
 * atomic, so the last owner may drop it on any thread; the bytes are never written through a shared
 * reference.
 */
#ifndef DR_BASE_SHARED_BYTES_H
#define DR_BASE_SHARED_BYTES_H

#include <stddef.h>
#include <stdint.h>

/** A shared payload. Opaque: use the functions below. */
typedef struct dr_shared_bytes dr_shared_bytes;

/**
 * Wraps `bytes` (malloc'd, len bytes; taken) with one reference held by the caller. Returns
 * NULL when out of memory: the caller then still owns `bytes`.
 */
dr_shared_bytes *dr_shared_bytes_wrap(uint8_t *bytes, size_t len);

/**
 * Wraps len bytes that lie inside the malloc'd `block` (a received frame inside its network
 * message, say); the last release frees `block`. One reference is held by the caller. Returns
 * NULL when out of memory: the caller then still owns `block`.
 */
dr_shared_bytes *dr_shared_bytes_wrap_inside(const uint8_t *bytes, size_t len, void *block);

/** Adds a reference (any thread) and returns `shared`. */
dr_shared_bytes *dr_shared_bytes_retain(dr_shared_bytes *shared);

/** Drops a reference (any thread); the last one frees the bytes and the wrapper. NULL: no-op. */
void dr_shared_bytes_release(dr_shared_bytes *shared);

/**
 * Ends sharing: if the caller holds the only reference to bytes wrapped by dr_shared_bytes_wrap,
 * frees the wrapper and returns the bytes (now the caller's to free); otherwise (or for bytes
 * inside a block) returns a malloc'd copy and drops the caller's
 * reference. NULL when out of memory (the reference is then kept). Only for len > 0.
 */
uint8_t *dr_shared_bytes_take(dr_shared_bytes *shared);

/** The bytes (valid while a reference is held). */
const uint8_t *dr_shared_bytes_data(const dr_shared_bytes *shared);

/** Their length. */
size_t dr_shared_bytes_len(const dr_shared_bytes *shared);

#endif
