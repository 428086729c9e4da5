/*
 * A tiny in-process cluster for the core's unit tests: cores wired by one global FIFO queue of
 * frames (no randomness), with every action recorded so tests can assert on deliveries, views,
 * window signals and join failures. Simpler than the simulator, for targeted scenarios.
 */
#ifndef DR_TESTS_CORE_HARNESS_H
#define DR_TESTS_CORE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

#define H_MAX_NODES      16
#define H_MAX_DELIVERIES 4096
#define H_MAX_VIEWS      64

typedef struct h_delivery {
    uint32_t subgroup, shard, sender_id, sender_index;
    int64_t index, version;
    uint64_t timestamp_us;
    size_t len;
    uint8_t *bytes; /* owned */
} h_delivery;

typedef struct h_node {
    dr_core *core;
    uint32_t id;
    char address[DR_ADDRESS_MAX];
    bool installed;
    dr_view_info view;
    uint32_t views_installed;
    bool join_failed;
    int join_error;
    bool stopped;   /* got DR_ACTION_STOPPED */
    int stop_error; /* its error */
    bool crashed;   /* h_crash: core destroyed, frames to it dropped */
    uint32_t window_open[DR_LAYOUT_MAX_SUBGROUPS];
    int64_t persisted[DR_LAYOUT_MAX_SUBGROUPS]; /* last DR_ACTION_PERSISTED version (-1) */
    uint32_t persisted_events;                  /* DR_ACTION_PERSISTED actions */
    int64_t truncated[DR_LAYOUT_MAX_SUBGROUPS]; /* last DR_ACTION_TRUNCATE version per subgroup */
    uint32_t truncations;                       /* DR_ACTION_TRUNCATE actions */
    uint32_t discards;                          /* DR_ACTION_DISCARD_DURABLE actions */
    uint8_t *vote;                              /* last DR_ACTION_SAVE_RESTART_VOTE (owned) */
    size_t vote_len;
    uint32_t votes_saved;
    uint32_t shared_sends;      /* SEND actions whose body was shared, not copied */
    uint32_t shared_deliveries; /* DELIVER actions likewise */
    h_delivery deliveries[H_MAX_DELIVERIES];
    uint32_t num_deliveries;
    /* every view installed, in order: vid and its member ids */
    int32_t history_vid[H_MAX_VIEWS];
    uint32_t history_members[H_MAX_VIEWS][H_MAX_NODES + 1]; /* [0] = count, then the ids */
    uint32_t history_len;
} h_node;

typedef struct h_frame {
    uint32_t from, to; /* node indexes */
    uint8_t *bytes;
    size_t len;
} h_frame;

typedef struct harness {
    h_node nodes[H_MAX_NODES];
    uint32_t num_nodes;
    h_frame *queue;
    size_t head, len, cap;
    uint64_t now_us;
    uint64_t rejected;                   /* frames a core returned an error for */
    bool cut[H_MAX_NODES][H_MAX_NODES];  /* link from -> to is broken: its frames are lost */
    bool hold[H_MAX_NODES][H_MAX_NODES]; /* link from -> to is slow: frames wait in the queue */
    uint64_t shuffle;  /* nonzero: h_pump takes frames in a seeded random order across links
                          (FIFO per link, like TCP); 0: one global FIFO */
    bool share_frames; /* h_pump hands frames over as shared bytes (dr_core_on_shared_message),
                          as the runtime does with large ones */
} harness;

/** Options every test node starts from: one subgroup, one ordered shard of `members`. */
void h_options(dr_core_options *options, uint32_t members);

/** Adds node `id` (address "n<i>"); contact is node 0's address; starts it. Returns index. */
uint32_t h_add(harness *h, uint32_t id, const dr_core_options *base, const char *contact);

/** Delivers queued frames (FIFO) until none are left or max_frames were delivered. */
size_t h_pump(harness *h, size_t max_frames);

/** Drains one node's actions into its records / the queue. */
void h_drain(harness *h, uint32_t index);

/** Crashes node `index`: destroys its core; frames to and from it are dropped. */
void h_crash(harness *h, uint32_t index);

/**
 * Starts a new incarnation of crashed node `index` (same id, same address, contact n0) as a new
 * node; returns its index.
 */
uint32_t h_restart(harness *h, uint32_t index, const dr_core_options *base);

/**
 * Breaks the connection between nodes a and b for good: frames queued between them are lost
 * and so are later ones; each end is told (dr_core_on_disconnect) if notify_a / notify_b.
 */
void h_break_link(harness *h, uint32_t a, uint32_t b, bool notify_a, bool notify_b);

/** Advances time by step_us `steps` times, ticking every live core and pumping frames. */
void h_run(harness *h, uint64_t step_us, uint32_t steps);

/** Frees everything. */
void h_free(harness *h);

/** Builds a cluster of `n` nodes (ids 10, 11, ...) with `base` options and pumps to view 0. */
void h_cluster(harness *h, uint32_t n, const dr_core_options *base);

#endif
