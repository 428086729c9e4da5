/*
 * Bounded, adaptive spinning before a blocking wait.
 *
 * Waking a sleeping vCPU costs 30-60 µs on the target VMs, polling costs ~5 µs, so a waiter may
 * poll for at most budget_us before it blocks. Spinning is adaptive so that idle or sparse
 * traffic costs (almost) no CPU: after DR_SPIN_MISS_LIMIT spins in a row find nothing, the
 * next `backoff` waits block at once (backoff doubles up to DR_SPIN_MAX_BACKOFF); a blocking wait
 * that ends within the budget (a spin would have caught it) or a successful spin re-enables it.
 * No clocks inside: the caller measures time and reports results. Owned by one thread.
 */
#ifndef DR_NET_SPIN_H
#define DR_NET_SPIN_H

#include <stdbool.h>
#include <stdint.h>

#define DR_SPIN_MISS_LIMIT  4u
#define DR_SPIN_MAX_BACKOFF 256u

typedef struct dr_spin {
    uint32_t budget_us; /**< longest spin; 0 disables spinning */
    uint32_t misses;    /**< consecutive spins that found nothing */
    uint32_t skip_left; /**< waits still to block without spinning */
    uint32_t backoff;   /**< next skip length */
} dr_spin;

static inline void dr_spin_init(dr_spin *spin, uint32_t budget_us) {
    spin->budget_us = budget_us;
    spin->misses = 0;
    spin->skip_left = 0;
    spin->backoff = 1;
}

/** Whether the next wait should spin first. */
static inline bool dr_spin_should(dr_spin *spin) {
    if (spin->budget_us == 0)
        return false;
    if (spin->skip_left) {
        spin->skip_left--;
        return false;
    }
    return true;
}

/** Reports a spin's outcome: `hit` when work arrived during it. */
static inline void dr_spin_spun(dr_spin *spin, bool hit) {
    if (hit) {
        spin->misses = 0;
        spin->backoff = 1;
        return;
    }
    if (++spin->misses >= DR_SPIN_MISS_LIMIT) {
        spin->misses = 0;
        spin->skip_left = spin->backoff;
        if (spin->backoff < DR_SPIN_MAX_BACKOFF)
            spin->backoff *= 2;
    }
}

/** Reports how long a blocking wait took; a short one means spinning would have paid. */
static inline void dr_spin_blocked(dr_spin *spin, uint64_t waited_ns) {
    if (waited_ns <= (uint64_t)spin->budget_us * 1000u) {
        spin->skip_left = 0;
        spin->backoff = 1;
        spin->misses = 0;
    }
}

/** CPU hint inside a spin loop. */
static inline void dr_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif
