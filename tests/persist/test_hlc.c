/* Unit tests for the hybrid logical clock (src/persist/hlc.c), with a fake physical clock. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "derecho/error.h"
#include "persist/hlc.h"

static uint64_t fake_us(void *ctx) {
    return *(uint64_t *)ctx;
}

static void test_now_follows_physical_and_never_repeats(void **state) {
    (void)state;
    uint64_t phys = 1000;
    dr_hlc clock;
    dr_hlc_init(&clock, fake_us, &phys, 0);
    assert_int_equal(dr_hlc_now(&clock), 1000);
    assert_int_equal(dr_hlc_now(&clock), 1001); /* same physical time: moves on anyway */
    assert_int_equal(dr_hlc_now(&clock), 1002);
    phys = 5000;
    assert_int_equal(dr_hlc_now(&clock), 5000); /* catches up with physical time */
    phys = 4000;                                /* physical clock stepped back */
    assert_int_equal(dr_hlc_now(&clock), 5001);
    assert_int_equal(dr_hlc_peek(&clock), 5001);
}

static void test_update_moves_past_remote(void **state) {
    (void)state;
    uint64_t phys = 1000;
    dr_hlc clock;
    dr_hlc_init(&clock, fake_us, &phys, 10000);
    uint64_t stamp = 0;
    assert_int_equal(dr_hlc_update(&clock, 3000, &stamp), 0); /* peer ahead by 2 ms */
    assert_int_equal(stamp, 3001);
    assert_true(dr_hlc_now(&clock) > 3001); /* later local events stay after the receive */
    assert_int_equal(dr_hlc_update(&clock, 10, &stamp), 0); /* old remote stamp: just tick */
    assert_int_equal(stamp, 3003);
    phys = 9000;
    assert_int_equal(dr_hlc_update(&clock, 10, NULL), 0);
    assert_int_equal(dr_hlc_peek(&clock), 9000);
}

static void test_update_refuses_far_future(void **state) {
    (void)state;
    uint64_t phys = 1000;
    dr_hlc clock;
    dr_hlc_init(&clock, fake_us, &phys, 500);
    uint64_t stamp = 77;
    assert_int_equal(dr_hlc_update(&clock, 1501, &stamp), DR_ERANGE);
    assert_int_equal(stamp, 77);
    assert_int_equal(dr_hlc_peek(&clock), 0); /* unchanged */
    assert_int_equal(dr_hlc_update(&clock, 1500, &stamp), 0);
    assert_int_equal(stamp, 1501);
}

static void test_realtime_default(void **state) {
    (void)state;
    dr_hlc clock;
    dr_hlc_init(&clock, NULL, NULL, 0);
    uint64_t a = dr_hlc_now(&clock);
    uint64_t b = dr_hlc_now(&clock);
    assert_true(b > a);
    assert_true(a > 1600000000ull * 1000000); /* after 2020: microseconds since the epoch */
    assert_true(a - dr_hlc_realtime_us(NULL) < 1000000 || dr_hlc_realtime_us(NULL) - a < 1000000);
}

#define THREADS    4
#define PER_THREAD 20000

typedef struct stamps {
    dr_hlc *clock;
    uint64_t *out;
} stamps;

static void *stamp_thread(void *arg) {
    stamps *s = arg;
    for (int i = 0; i < PER_THREAD; i++)
        s->out[i] =
            i % 3 ? dr_hlc_now(s->clock) : (dr_hlc_update(s->clock, 5, &s->out[i]), s->out[i]);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Concurrent callers: every stamp is unique and each thread sees its own stamps increase. */
static void test_concurrent_unique_monotonic(void **state) {
    (void)state;
    uint64_t phys = 1;
    dr_hlc clock;
    dr_hlc_init(&clock, fake_us, &phys, 0);
    uint64_t *all = calloc(THREADS * PER_THREAD, sizeof *all);
    assert_non_null(all);
    pthread_t tids[THREADS];
    stamps args[THREADS];
    for (int t = 0; t < THREADS; t++) {
        args[t] = (stamps){&clock, all + t * PER_THREAD};
        assert_int_equal(pthread_create(&tids[t], NULL, stamp_thread, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(tids[t], NULL);
    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < PER_THREAD; i++)
            assert_true(args[t].out[i] > args[t].out[i - 1]);
    qsort(all, THREADS * PER_THREAD, sizeof *all, cmp_u64);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        assert_true(all[i] > all[i - 1]);
    assert_int_equal(dr_hlc_peek(&clock), all[THREADS * PER_THREAD - 1]);
    free(all);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_now_follows_physical_and_never_repeats),
        cmocka_unit_test(test_update_moves_past_remote),
        cmocka_unit_test(test_update_refuses_far_future),
        cmocka_unit_test(test_realtime_default),
        cmocka_unit_test(test_concurrent_unique_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
