/*
 * Hybrid logical clock (HLC) packed into one 64-bit count of microseconds since the Unix epoch.
 *
 * A timestamp is close to the wall clock but never goes backwards and always moves past every
 * timestamp this node has seen from a peer: now() returns max(physical, last + 1) and
 * update(remote) makes the clock max(physical, last + 1, remote + 1). The "logical" part of a
 * classic HLC (a counter beside the physical time) is folded into the low microseconds: while
 * events come faster than one per microsecond, or after a peer's clock ran ahead, the clock runs
 * a little ahead of the physical time and catches up as soon as the physical time passes it.
 * Derecho stamps each version with the sender's time in microseconds; the log stores this value
 * and reads "by time" compare against it (src/persist/plog.h).
 *
 * A peer can push the clock forward only by max_ahead_us beyond the local physical time: a larger
 * jump is refused (DR_ERANGE), so one peer with a broken clock cannot drag every node's clock
 * far into the future. The physical source is injected (tests use a fake one).
 *
 * Threading: every function is thread-safe (a lock-free compare-and-swap on one atomic word).
 */
#ifndef DR_PERSIST_HLC_H
#define DR_PERSIST_HLC_H

#include <stdatomic.h>
#include <stdint.h>

/** Reads the physical clock in µs since the epoch; ctx is the one given to dr_hlc_init. */
typedef uint64_t (*dr_hlc_physical_fn)(void *ctx);

/** One hybrid logical clock. Caller-owned; initialise with dr_hlc_init, no teardown needed. */
typedef struct dr_hlc {
    _Atomic uint64_t last_us;    /**< the largest timestamp handed out or merged so far */
    dr_hlc_physical_fn physical; /**< physical time source (CLOCK_REALTIME when NULL at init) */
    void *physical_ctx;          /**< passed to physical */
    uint64_t max_ahead_us;       /**< largest accepted lead of a remote stamp over physical time */
} dr_hlc;

/** Default max_ahead_us: a remote clock may be at most 60 s ahead of ours. */
#define DR_HLC_DEFAULT_MAX_AHEAD_US (60ull * 1000 * 1000)

/**
 * Initialises *clock. physical NULL: CLOCK_REALTIME in µs. max_ahead_us 0: the default.
 * Not thread-safe against other calls on the same clock (call before sharing it).
 */
void dr_hlc_init(dr_hlc *clock, dr_hlc_physical_fn physical, void *physical_ctx,
                 uint64_t max_ahead_us);

/** The physical time in µs (CLOCK_REALTIME), the default source. */
uint64_t dr_hlc_realtime_us(void *ctx);

/**
 * A new timestamp for a local event (a send): strictly greater than every timestamp this clock
 * returned or merged before, and at least the physical time. Thread-safe, never blocks.
 */
uint64_t dr_hlc_now(dr_hlc *clock);

/**
 * Merges a timestamp received from a peer: afterwards the clock is beyond remote_us, and the
 * returned value (also in *out_us when not NULL) is a new timestamp for the receive event.
 * Returns 0, or DR_ERANGE when remote_us is more than max_ahead_us ahead of the physical time
 * (the clock is then unchanged and *out_us is not written). Thread-safe, never blocks.
 */
int dr_hlc_update(dr_hlc *clock, uint64_t remote_us, uint64_t *out_us);

/** The largest timestamp returned or merged so far, without advancing the clock. */
uint64_t dr_hlc_peek(const dr_hlc *clock);

#endif
