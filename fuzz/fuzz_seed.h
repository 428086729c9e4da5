/*
 * Helpers shared by the fuzz targets: seed writing and checks.
 *
 * fuzz_write_seed: with $DR_FUZZ_SEED_DIR set, LLVMFuzzerInitialize of a target writes its
 * seed inputs there (fuzz/make-corpus.sh regenerates fuzz/corpus/ that way); otherwise it does
 * nothing. Errors are ignored (seeds are a convenience, never needed for a run).
 *
 * FUZZ_CHECK(cond): a property the target asserts on every input; a violation traps, which
 * libFuzzer reports as a crash and the replay driver's CTest test as a failure (in every build
 * type: it does not depend on NDEBUG).
 */
#ifndef DR_FUZZ_SEED_H
#define DR_FUZZ_SEED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);          \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

static inline void fuzz_write_seed(const char *name, const void *data, size_t len) {
    const char *dir = getenv("DR_FUZZ_SEED_DIR");
    if (!dir)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* A growable byte string for building seeds (aborts when out of memory: set-up code only). */
typedef struct fuzz_bytes {
    uint8_t *data;
    size_t len, cap;
} fuzz_bytes;

static inline void fuzz_put(fuzz_bytes *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown)
            abort();
        b->data = grown;
        b->cap = cap;
    }
    for (size_t i = 0; i < len; i++)
        b->data[b->len + i] = ((const uint8_t *)data)[i];
    b->len += len;
}

static inline void fuzz_put_u8(fuzz_bytes *b, uint8_t v) {
    fuzz_put(b, &v, 1);
}

static inline void fuzz_put_u16(fuzz_bytes *b, uint16_t v) {
    uint8_t bytes[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    fuzz_put(b, bytes, 2);
}

static inline void fuzz_put_u32(fuzz_bytes *b, uint32_t v) {
    uint8_t bytes[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    fuzz_put(b, bytes, 4);
}

/* Writes b as seed `name` and empties it. */
static inline void fuzz_seed_done(fuzz_bytes *b, const char *name) {
    fuzz_write_seed(name, b->data, b->len);
    b->len = 0;
}

static inline void fuzz_bytes_free(fuzz_bytes *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
