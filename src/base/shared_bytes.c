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
    uint8_t *bytes;            /* len bytes: malloc'd, or inside block */
    size_t len;
    void *block; /* malloc'd block holding bytes, freed with them (NULL: bytes is the block) */
};

dr_shared_bytes *dr_shared_bytes_wrap(uint8_t *bytes, size_t len) {
    dr_shared_bytes *shared = malloc(sizeof *shared);
    if (shared == NULL)
        return NULL;
    atomic_init(&shared->refs, 1);
    shared->bytes = bytes;
    shared->len = len;
    shared->block = NULL;
    return shared;
}

dr_shared_bytes *dr_shared_bytes_wrap_inside(const uint8_t *bytes, size_t len, void *block) {
    dr_shared_bytes *shared = dr_shared_bytes_wrap((uint8_t *)bytes, len);
    if (shared != NULL)
        shared->block = block; /* never written through: bytes stay read-only */
    return shared;
}

dr_shared_bytes *dr_shared_bytes_retain(dr_shared_bytes *shared) {
    atomic_fetch_add_explicit(&shared->refs, 1, memory_order_relaxed);
    return shared;
}

void dr_shared_bytes_release(dr_shared_bytes *shared) {
    if (shared == NULL || atomic_fetch_sub_explicit(&shared->refs, 1, memory_order_acq_rel) != 1)
        return;
    dr_big_free(shared->block ? shared->block : shared->bytes); /* a large one is kept */
    free(shared);
}

uint8_t *dr_shared_bytes_take(dr_shared_bytes *shared) {
    assert(shared->len > 0);
    /* acquire: every other owner's reads of the bytes happen before the caller reuses them */
    if (shared->block == NULL && atomic_load_explicit(&shared->refs, memory_order_acquire) == 1) {
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
