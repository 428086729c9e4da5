/*
 * Hybrid logical clock in one atomic 64-bit word of microseconds (the rules are in hlc.h).
 * Each operation reads the physical time once, then advances last_us with a compare-and-swap
 * loop; a failed CAS means another thread advanced the clock, and the loop retries against the
 * new value (bounded by the number of concurrent callers, never a wait).
 */
#include "persist/hlc.h"

#include "derecho/error.h"

#include <time.h>

uint64_t dr_hlc_realtime_us(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void dr_hlc_init(dr_hlc *clock, dr_hlc_physical_fn physical, void *physical_ctx,
                 uint64_t max_ahead_us) {
    atomic_init(&clock->last_us, 0);
    clock->physical = physical ? physical : dr_hlc_realtime_us;
    clock->physical_ctx = physical_ctx;
    clock->max_ahead_us = max_ahead_us ? max_ahead_us : DR_HLC_DEFAULT_MAX_AHEAD_US;
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
    return a > b ? a : b;
}

/* Advances last_us to max(floor_us, last_us + 1) and returns the new value. */
static uint64_t advance(dr_hlc *clock, uint64_t floor_us) {
    uint64_t last = atomic_load(&clock->last_us);
    uint64_t next;
    do {
        next = max_u64(floor_us, last + 1);
    } while (!atomic_compare_exchange_weak(&clock->last_us, &last, next));
    return next;
}

uint64_t dr_hlc_now(dr_hlc *clock) {
    return advance(clock, clock->physical(clock->physical_ctx));
}

int dr_hlc_update(dr_hlc *clock, uint64_t remote_us, uint64_t *out_us) {
    uint64_t physical = clock->physical(clock->physical_ctx);
    if (remote_us > physical && remote_us - physical > clock->max_ahead_us)
        return DR_ERANGE;
    uint64_t stamp = advance(clock, max_u64(physical, remote_us + 1));
    if (out_us)
        *out_us = stamp;
    return 0;
}

uint64_t dr_hlc_peek(const dr_hlc *clock) {
    return atomic_load(&((dr_hlc *)clock)->last_us);
}
