/*
 * Tests of src/base/big_buffers.c: large buffers released with dr_big_free come back from
 * dr_big_alloc (same pointer, so already mapped); small ones, and sizes that do not fit, do not;
 * fresh ones are huge-page aligned. Also shared bytes inside a block (shared_bytes.c).
 */
#include "base/big_buffers.h"
#include "base/shared_bytes.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_large_buffer_reused(void **state) {
    (void)state;
    dr_big_trim();
    /* a little over twice the minimum: a kept buffer of this size is more than twice
     * DR_BIG_BUFFER_MIN whatever the allocator rounds to (ASan's malloc_usable_size is the
     * exact request; glibc's is a few bytes more) */
    size_t len = DR_BIG_BUFFER_MIN * 2 + 4096;
    uint8_t *a = dr_big_alloc(len);
    assert_non_null(a);
    memset(a, 1, len);
    dr_big_free(a);
    uint8_t *b = dr_big_alloc(len - 100); /* fits: the kept buffer comes back */
    assert_ptr_equal(b, a);
    uint8_t *c = dr_big_alloc(len); /* the cache is empty again: a fresh one */
    assert_non_null(c);
    assert_ptr_not_equal(c, a);
    dr_big_free(b);
    dr_big_free(c);
    /* too large for the kept ones, or so small they would waste half: fresh */
    uint8_t *d = dr_big_alloc(len * 3);
    assert_non_null(d);
    assert_ptr_not_equal(d, a);
    assert_ptr_not_equal(d, c);
    uint8_t *e = dr_big_alloc(DR_BIG_BUFFER_MIN); /* the kept ones are more than twice */
    assert_non_null(e);
    assert_ptr_not_equal(e, a);
    assert_ptr_not_equal(e, c);
    free(d); /* dr_big_alloc's buffers are plain malloc'd ones */
    free(e);
    dr_big_trim();
}

/* A fresh large buffer starts on a huge-page boundary (so MADV_HUGEPAGE can back it with
 * 2 MiB pages); it is still an ordinary malloc'd block, kept and reused as the others. */
static void test_fresh_large_buffer_is_huge_page_aligned(void **state) {
    (void)state;
    dr_big_trim();
    uint8_t *a = dr_big_alloc(DR_BIG_BUFFER_MIN + 12345);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % DR_BIG_BUFFER_ALIGN, 0);
    memset(a, 7, DR_BIG_BUFFER_MIN + 12345);
    dr_big_free(a);
    assert_ptr_equal(dr_big_alloc(DR_BIG_BUFFER_MIN + 100), a);
    free(a);
}

/* Bytes wrapped inside a block: the last release frees (here: keeps for reuse) the block, not
 * the bytes' address; taking them gives a copy, never the inner pointer. */
static void test_shared_bytes_inside_a_block(void **state) {
    (void)state;
    dr_big_trim();
    uint8_t *block = malloc(DR_BIG_BUFFER_MIN);
    assert_non_null(block);
    memset(block, 0, 64);
    memcpy(block + 64, "frame", 5);
    dr_shared_bytes *shared = dr_shared_bytes_wrap_inside(block + 64, 5, block);
    assert_non_null(shared);
    assert_ptr_equal(dr_shared_bytes_data(shared), block + 64);
    dr_shared_bytes_retain(shared);
    uint8_t *copy = dr_shared_bytes_take(shared); /* two owners: a copy, one reference left */
    assert_non_null(copy);
    assert_ptr_not_equal(copy, block + 64);
    assert_memory_equal(copy, "frame", 5);
    free(copy);
    dr_shared_bytes_retain(shared);
    copy = dr_shared_bytes_take(shared); /* even as the only owner: a copy */
    assert_ptr_not_equal(copy, block + 64);
    assert_memory_equal(copy, "frame", 5);
    free(copy);
    dr_shared_bytes_release(shared); /* the last: the block goes to the cache */
    assert_ptr_equal(dr_big_alloc(DR_BIG_BUFFER_MIN), block);
    free(block);
}

static void test_small_buffers_not_kept(void **state) {
    (void)state;
    dr_big_trim();
    uint8_t *a = dr_big_alloc(1000);
    assert_non_null(a);
    dr_big_free(a);
    dr_big_free(NULL);
    uint8_t *small = malloc(DR_BIG_BUFFER_MIN / 2);
    assert_non_null(small);
    dr_big_free(small); /* freed, not kept */
    /* a large one is kept; a small request never takes it */
    uint8_t *big = dr_big_alloc(DR_BIG_BUFFER_MIN);
    assert_non_null(big);
    dr_big_free(big);
    uint8_t *b = dr_big_alloc(1000);
    assert_non_null(b);
    assert_ptr_not_equal(b, big);
    assert_ptr_equal(dr_big_alloc(DR_BIG_BUFFER_MIN), big); /* still kept */
    free(big);
    free(b);
}

static void test_cache_bounded(void **state) {
    (void)state;
    dr_big_trim();
    void *kept[DR_BIG_BUFFER_COUNT + 2];
    for (int i = 0; i < DR_BIG_BUFFER_COUNT + 2; i++) {
        kept[i] = malloc(DR_BIG_BUFFER_MIN);
        assert_non_null(kept[i]);
    }
    for (int i = 0; i < DR_BIG_BUFFER_COUNT + 2; i++)
        dr_big_free(kept[i]); /* the last two are freed: the cache holds COUNT */
    int reused = 0;
    void *got[DR_BIG_BUFFER_COUNT + 2];
    for (int i = 0; i < DR_BIG_BUFFER_COUNT + 2; i++) {
        got[i] = dr_big_alloc(DR_BIG_BUFFER_MIN);
        for (int k = 0; k < DR_BIG_BUFFER_COUNT; k++)
            reused += got[i] == kept[k];
    }
    assert_int_equal(reused, DR_BIG_BUFFER_COUNT);
    for (int i = 0; i < DR_BIG_BUFFER_COUNT + 2; i++)
        free(got[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_buffer_reused),
        cmocka_unit_test(test_fresh_large_buffer_is_huge_page_aligned),
        cmocka_unit_test(test_shared_bytes_inside_a_block),
        cmocka_unit_test(test_small_buffers_not_kept),
        cmocka_unit_test(test_cache_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
