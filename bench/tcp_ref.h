/*
 * Raw loopback TCP reference for the benchmarks: what plain blocking sockets achieve on this
 * machine, point to point, measured in the same process as the thing being compared with it.
 *   - bandwidth: one sender thread streams `count` messages of `msg_bytes` over one connection
 *     to a receiver thread that reads them into a buffer, then acknowledges with one byte;
 *   - round trip: a client sends `msg_bytes`, an echo thread returns them, repeated `iters` times;
 *     waiting either blocks in the kernel (recv) or busy-polls (recv with MSG_DONTWAIT).
 * TCP_NODELAY on both ends. Used by tcp-ref-bench and by derecho-bench (link bench/tcp_ref).
 */
#ifndef DR_BENCH_TCP_REF_H
#define DR_BENCH_TCP_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Result of one measurement. Latency fields are 0 for bandwidth runs and vice versa. */
typedef struct dr_tcp_ref_result {
    double seconds;    /**< wall time of the measured part */
    double mb_per_s;   /**< payload throughput, 10^6 bytes per second */
    double msgs_per_s; /**< messages (or round trips) per second */
    uint64_t min_ns;   /**< fastest round trip */
    uint64_t p50_ns;   /**< median round trip */
    uint64_t p90_ns;   /**< 90th percentile round trip */
    uint64_t p99_ns;   /**< 99th percentile round trip */
    uint64_t max_ns;   /**< slowest round trip */
} dr_tcp_ref_result;

/**
 * Streams count x msg_bytes over a fresh loopback connection; fills *out (seconds from the first
 * byte sent to the receiver's acknowledgement of the last). Returns 0 or a negative DR_E* code.
 * Blocks the calling thread; starts and joins one thread.
 */
int dr_tcp_ref_bandwidth(size_t msg_bytes, size_t count, dr_tcp_ref_result *out);

/**
 * Measures `iters` round trips of msg_bytes (after `iters / 10` warm-up ones) over a fresh
 * loopback connection; busy_poll makes both ends spin on MSG_DONTWAIT instead of sleeping in recv
 * (only for the reference figure: never do this in the product). Returns 0 or DR_E*.
 */
int dr_tcp_ref_rtt(size_t msg_bytes, size_t iters, bool busy_poll, dr_tcp_ref_result *out);

/** Fills min/p50/p90/p99/max of samples_ns (sorted in place). Shared with other benchmarks. */
void dr_bench_percentiles(uint64_t *samples_ns, size_t n, dr_tcp_ref_result *out);

/** Monotonic clock in nanoseconds. */
uint64_t dr_bench_now_ns(void);

#endif
