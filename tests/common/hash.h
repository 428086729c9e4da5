/*
 * test_hash: the content hash the multi-process tests and their helper programs (group_node,
 * kv_node, durable_node, durable_kv_node) print and compare: FNV-1a's step, taken over 8-byte
 * words (little-endian loads) and then the remaining bytes, so hashing a 1 GiB replay costs a
 * multiply per 8 bytes instead of per byte (bench/restart_time.sh spent most of its replay time
 * in the byte-wise loop). Order- and content-sensitive; not for anything but tests. Every
 * program that compares hashes must use this one function.
 */
#ifndef DR_TESTS_COMMON_HASH_H
#define DR_TESTS_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TEST_HASH_SEED 1469598103934665603ull

/** Folds `len` bytes at `data` into `hash` (start from TEST_HASH_SEED). Pure. */
static inline uint64_t test_hash(uint64_t hash, const void *data, size_t len) {
    const uint8_t *bytes = data;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, bytes + i, sizeof word);
        hash = (hash ^ word) * 1099511628211ull;
    }
    for (; i < len; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ull;
    return hash;
}

#endif
