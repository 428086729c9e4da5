/*
 * Relay schedules for the blocks of a large message (PROTOCOL.md §3.1, rdmc_send_algorithm).
 *
 * Positions are relative to the message's sender: position 0 is the sender, position p is the
 * shard member of rank (sender_rank + p) % shard_size. Each node forwards a block as soon as it
 * receives it, so consecutive blocks overlap in time (a pipeline):
 *   - sequential: the sender sends every block to every member; nobody relays;
 *   - chain: p forwards to p + 1 (the sender's link carries each block once);
 *   - tree: block spreads along a binomial tree: p forwards to p + 2^j for every 2^j > p
 *     (the sender's link carries each block log2(size) times, depth is log2(size)).
 * The binomial pipeline (blocks rotated over a hypercube so that every link is busy) fits the
 * same interface: it needs the block number to pick the dimension, which is why it is passed.
 */
#include <assert.h>

#include "core/core_internal.h"

static uint32_t hops_sequential(uint32_t shard_size, uint32_t my_position, uint32_t *next) {
    if (my_position != 0)
        return 0;
    for (uint32_t p = 1; p < shard_size; p++)
        next[p - 1] = p;
    return shard_size - 1;
}

static uint32_t hops_chain(uint32_t shard_size, uint32_t my_position, uint32_t *next) {
    if (my_position + 1 >= shard_size)
        return 0;
    next[0] = my_position + 1;
    return 1;
}

static uint32_t hops_tree(uint32_t shard_size, uint32_t my_position, uint32_t *next) {
    uint32_t count = 0;
    for (uint32_t step = 1; step < shard_size; step <<= 1) {
        if (step <= my_position)
            continue;
        if (my_position + step < shard_size)
            next[count++] = my_position + step;
    }
    return count;
}

uint32_t pipeline_next_hops(dr_pipeline_algorithm algorithm, uint32_t shard_size,
                            uint32_t my_position, uint32_t block, uint32_t *next) {
    (void)block;
    assert(shard_size >= 1 && shard_size <= DR_LAYOUT_MAX_SHARD_MEMBERS);
    assert(my_position < shard_size);
    uint32_t count;
    switch (algorithm) {
    case DR_PIPELINE_SEQUENTIAL:
        count = hops_sequential(shard_size, my_position, next);
        break;
    case DR_PIPELINE_TREE:
        count = hops_tree(shard_size, my_position, next);
        break;
    case DR_PIPELINE_CHAIN:
    default:
        count = hops_chain(shard_size, my_position, next);
        break;
    }
    assert(count < shard_size);
    return count;
}
