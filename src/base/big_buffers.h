/*
 * Reuse of large message buffers (issue 13): a freshly malloc'd buffer of many MiB is a fresh
 * mapping whose every page faults on first touch, which cost as much as copying a 100 MB
 * message. Buffers of at least DR_BIG_BUFFER_MIN bytes released through dr_big_free are kept
 * (a few, bounded in count and bytes) and handed out again by dr_big_alloc, already mapped.
 * Every pointer from malloc may be released with dr_big_free, and every pointer from
 * dr_big_alloc with free: the cache only decides whether a large one is kept.
 */
#ifndef DR_BASE_BIG_BUFFERS_H
#define DR_BASE_BIG_BUFFERS_H

#include <stddef.h>

/** Buffers from this size are cached. */
#define DR_BIG_BUFFER_MIN ((size_t)4 << 20)
/** At most this many buffers and bytes are kept. */
#define DR_BIG_BUFFER_COUNT 4
#define DR_BIG_BUFFER_BYTES ((size_t)512 << 20)
/** Fresh large buffers are aligned to this (a huge page) and advised MADV_HUGEPAGE. */
#define DR_BIG_BUFFER_ALIGN ((size_t)2 << 20)

/**
 * Returns len bytes (uninitialised) like malloc: for len >= DR_BIG_BUFFER_MIN a kept buffer of
 * at least len and at most 2 * len usable bytes when there is one, else malloc's. NULL when out
 * of memory. Any thread (a mutex guards the cache).
 */
void *dr_big_alloc(size_t len);

/** Releases a malloc'd buffer (NULL: no-op): kept for reuse if large and the cache has room,
 * else freed. Any thread. */
void dr_big_free(void *ptr);

/** Frees every kept buffer (tests, leak checks). Any thread. */
void dr_big_trim(void);

#endif
