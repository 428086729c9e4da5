/*
 * Reference-counted byte buffers (shared_bytes.h).
 */
#include "base/shared_bytes.h"
#include "base/big_buffers.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct dr_shared_bytes {
    atomic_uint_fast32_t refs; /* owners */
    uint8_t *bytes;            /* malloc'd, len bytes */
    size_t len;
};

dr_shared_bytes *dr_shared_bytes_wrap(uint8_t *bytes, size_t len) {
    dr_shared_bytes *shared = malloc(sizeof *shared);
    if (shared == NULL)
        return NULL;
    atomic_init(&shared->refs, 1);
    shared->bytes = bytes;
    shared->len = len;
    return shared;
}

dr_shared_bytes *dr_shared_bytes_retain(dr_shared_bytes *shared) {
    atomic_fetch_add_explicit(&shared->refs, 1, memory_order_relaxed);
    return shared;
}

void dr_shared_bytes_release(dr_shared_bytes *shared) {
    if (shared == NULL || atomic_fetch_sub_explicit(&shared->refs, 1, memory_order_acq_rel) != 1)
        return;
    dr_big_free(shared->bytes); /* a large message buffer is kept for reuse */
    free(shared);
}

uint8_t *dr_shared_bytes_take(dr_shared_bytes *shared) {
    assert(shared->len > 0);
    /* acquire: every other owner's reads of the bytes happen before the caller reuses them */
    if (atomic_load_explicit(&shared->refs, memory_order_acquire) == 1) {
        uint8_t *bytes = shared->bytes;
        free(shared);
        return bytes;
    }
    uint8_t *copy = malloc(shared->len);
    if (copy == NULL)
        return NULL;
    memcpy(copy, shared->bytes, shared->len);
    dr_shared_bytes_release(shared);
    return copy;
}

const uint8_t *dr_shared_bytes_data(const dr_shared_bytes *shared) {
    return shared->bytes;
}

size_t dr_shared_bytes_len(const dr_shared_bytes *shared) {
    return shared->len;
}
