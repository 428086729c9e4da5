/*
 * The same point-to-point measurements as tcp_ref.h, but through dr_net (two transport
 * instances in one process over 127.0.0.1), so the transport's cost can be read against the raw
 * TCP reference measured in the same run. Two ways of consuming events are measured:
 *   - inbox mode: a consumer thread per node takes events with dr_net_next_event (the
 *     "core thread" shape: network thread -> inbox -> core thread);
 *   - callback mode: the work (echo, count) runs in on_event on the network thread (the
 *     "core stepped on the network thread" shape: one thread wake-up less per hop).
 */
#ifndef DR_BENCH_NET_REF_H
#define DR_BENCH_NET_REF_H

#include "tcp_ref.h"

#include <stdbool.h>
#include <stdint.h>

/** How the transport is configured for a measurement. */
typedef struct dr_net_ref_opts {
    uint32_t spin_us;      /**< dr_net_config.spin_us (inbox consumer spin) */
    uint32_t loop_spin_us; /**< dr_net_config.loop_spin_us (network thread spin) */
    bool callback_mode;    /**< consume events in on_event instead of an inbox thread */
} dr_net_ref_opts;

/** Streams count x msg_bytes from node 1 to node 2 (no copy: dr_net_send_owned). */
int dr_net_ref_bandwidth(size_t msg_bytes, size_t count, const dr_net_ref_opts *opts,
                         dr_tcp_ref_result *out);

/** iters round trips of msg_bytes: node 1 sends, node 2 echoes. */
int dr_net_ref_rtt(size_t msg_bytes, size_t iters, const dr_net_ref_opts *opts,
                   dr_tcp_ref_result *out);

#endif
