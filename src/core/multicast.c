/*
 * Ordered (atomic) and raw multicast inside a shard (PROTOCOL.md §3).
 *
 * Sender k of n numbers its messages 0, 1, 2...; message i has seq = i*n + k. Every member
 * keeps, per sender, a window of slots (slot = index % window_size) and `received[k]`, the
 * highest index held contiguously. seq_num = the last seq whose predecessors are all held:
 * with m = min_k received[k] and k0 the first sender attaining it, seq_num = (m+1)*n + k0 - 1.
 * Both are written to my SST row and pushed to the shard. stable = min over the shard's rows of
 * seq_num; messages with seq <= stable are delivered in seq order (nulls are skipped) with
 * version (vid << 32) | seq, and delivered_num advances.
 *
 * Window: a sender may send index f only when every member's delivered_num >= (f - window)*n + k
 * (raw mode: every member's received[k] >= f - window), so at most `window` of its messages are
 * undelivered anywhere, and slot f % window is free at every member when f arrives.
 * Nulls (reactive, eager): when sender j's index i is received and my next index is f <= i, I
 * send nulls up to index i, as one NULLS frame (a count). Derecho stops at i - 1 when my k > j
 * (my slot of round i comes after j's); filling round i at once instead means the next round's
 * message never waits for my null, which saves one network hop of latency per message when
 * one member sends and the others are silent (docs/perf/multicast.md).
 * Small messages (<= max_smc_payload_size) travel whole (DATA); larger ones are cut into
 * block_size blocks (BLOCK) relayed by pipeline.c's schedule; slots reassemble them.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/big_buffers.h"
#include "core/core_internal.h"
#include "derecho/log.h"

/* ---- setup --------------------------------------------------------------------------- */

static bool shard_predicate(void *ctx);

static void free_slot(mc_slot *slot) {
    if (slot->shared != NULL)
        dr_shared_bytes_release(slot->shared); /* payload is inside it */
    else
        dr_big_free(slot->payload); /* a large one is kept for the next message */
    free(slot->block_bitmap);
    memset(slot, 0, sizeof *slot);
}

static int init_shard(dr_core *core, mc_shard *shard, uint32_t subgroup, uint32_t shard_index) {
    const dr_shard_layout *layout = &core->layout.subgroups[subgroup].shards[shard_index];
    memset(shard, 0, sizeof *shard);
    shard->active = true;
    shard->core = core;
    shard->subgroup = subgroup;
    shard->shard = shard_index;
    shard->mode = layout->mode;
    shard->num_members = layout->num_members;
    shard->my_sender_index = -1;
    for (uint32_t r = 0; r < layout->num_members; r++) {
        shard->member_ids[r] = layout->member_ids[r];
        int row = core_view_rank(core, layout->member_ids[r]);
        assert(row >= 0);
        shard->member_rows[r] = (uint32_t)row;
        if (layout->member_ids[r] == core->options.my_id)
            shard->my_shard_rank = r;
        if (!layout->is_sender[r])
            continue;
        if (layout->member_ids[r] == core->options.my_id)
            shard->my_sender_index = (int32_t)shard->num_senders;
        shard->sender_member[shard->num_senders++] = r;
    }
    assert(shard->num_senders == layout->num_senders);
    assert(shard->num_members <= DR_LAYOUT_MAX_SHARD_MEMBERS);
    assert(shard->member_ids[shard->my_shard_rank] == core->options.my_id);
    shard->seq_num = -1;
    shard->delivered_num = -1;
    shard->last_handed = shard->consumed = -1;
    shard->streams = calloc(shard->num_senders ? shard->num_senders : 1, sizeof *shard->streams);
    if (shard->streams == NULL)
        return DR_ENOMEM;
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        shard->streams[k].received = -1;
        shard->streams[k].raw_delivered = -1;
        shard->streams[k].raw_last = -1;
        shard->streams[k].slots = calloc(core->options.window_size, sizeof(mc_slot));
        if (shard->streams[k].slots == NULL)
            return DR_ENOMEM;
    }
    shard->acked_index = -1;
    shard->inflight_bytes = 0;
    shard->released_index = -1;
    if (core->options.window_bytes > 0 && shard->my_sender_index >= 0) {
        shard->own_len = calloc(core->options.window_size, sizeof *shard->own_len);
        if (shard->own_len == NULL)
            return DR_ENOMEM;
    }
    return dr_sst_add_predicate(core->sst, shard_predicate, shard);
}

/** Raw mode: each surviving sender's numbering goes on where the last view's trim left it. */
static void apply_raw_carry(dr_core *core, mc_shard *shard) {
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        uint32_t sender_id = shard->member_ids[shard->sender_member[k]];
        for (uint32_t c = 0; c < core->num_raw_carry; c++) {
            const raw_carry *carry = &core->raw_carry[c];
            if (carry->subgroup == shard->subgroup && carry->sender_id == sender_id) {
                shard->streams[k].base = carry->base;
                shard->streams[k].raw_last = carry->last;
            }
        }
    }
}

int multicast_start_view(dr_core *core) {
    assert(core->have_view && core->sst != NULL);
    int rc = 0;
    for (uint32_t s = 0; rc == 0 && s < core->layout.num_subgroups; s++) {
        int shard_index = dr_layout_find_shard(&core->layout, s, core->options.my_id, NULL);
        if (shard_index < 0)
            continue;
        rc = init_shard(core, &core->shards[s], s, (uint32_t)shard_index);
        if (rc == 0 && core->shards[s].mode == DR_MODE_RAW)
            apply_raw_carry(core, &core->shards[s]);
    }
    core->num_raw_carry = 0; /* only the view right after the trim continues the numbering */
    return rc;
}

void multicast_end_view(dr_core *core) {
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        mc_shard *shard = &core->shards[s];
        for (uint32_t k = 0; shard->streams != NULL && k < shard->num_senders; k++) {
            for (uint32_t w = 0; shard->streams[k].slots && w < core->options.window_size; w++)
                free_slot(&shard->streams[k].slots[w]);
            free(shard->streams[k].slots);
        }
        free(shard->streams);
        free(shard->own_len);
        memset(shard, 0, sizeof *shard);
    }
}

/* ---- sequencing ---------------------------------------------------------------------- */

static mc_slot *slot_of(const dr_core *core, mc_stream *stream, int64_t index) {
    assert(index >= 0);
    return &stream->slots[(uint64_t)index % core->options.window_size];
}

/** seq_num from received[]: the last seq whose every predecessor is held. */
static int64_t compute_seq_num(const mc_shard *shard) {
    assert(shard->num_senders > 0);
    uint32_t first_min = 0;
    for (uint32_t k = 1; k < shard->num_senders; k++)
        if (shard->streams[k].received < shard->streams[first_min].received)
            first_min = k;
    int64_t m = shard->streams[first_min].received;
    return (m + 1) * (int64_t)shard->num_senders + (int64_t)first_min - 1;
}

/** Advances received[k] over held slots; updates the SST. Returns true if it moved. */
static bool advance_received(dr_core *core, mc_shard *shard, uint32_t k) {
    mc_stream *stream = &shard->streams[k];
    int64_t before = stream->received;
    for (;;) {
        mc_slot *next = slot_of(core, stream, stream->received + 1);
        bool held = next->state == MC_SLOT_NULL || next->state == MC_SLOT_COMPLETE;
        if (!held || next->index != (uint32_t)(stream->received + 1))
            break;
        stream->received++;
    }
    assert(stream->received - before <= (int64_t)core->options.window_size);
    if (stream->received == before)
        return false;
    dr_sst_set(core->sst, dr_sst_received_field(core->sst, shard->subgroup, k), stream->received);
    if (shard->mode == DR_MODE_ORDERED) {
        int64_t seq_num = compute_seq_num(shard);
        assert(seq_num >= shard->seq_num);
        shard->seq_num = seq_num;
        dr_sst_set(core->sst, dr_sst_subgroup_field(core->sst, shard->subgroup, DR_SST_SEQ_NUM),
                   seq_num);
    }
    return true;
}

/**
 * True if index may exist in this view: its seq must fit the 32 low bits of a version.
 * (4 billion messages per view; a longer-lived view would need a view change to go on.)
 */
static bool index_fits_version(const mc_shard *shard, int64_t index) {
    return index >= 0 && (uint64_t)(index + 1) * shard->num_senders <= UINT32_MAX;
}

/* ---- window -------------------------------------------------------------------------- */

/** True if my sender may use index f now. */
static bool window_allows(const dr_core *core, const mc_shard *shard, int64_t f) {
    assert(shard->my_sender_index >= 0);
    int64_t window = core->options.window_size;
    int64_t k = shard->my_sender_index;
    mc_stream *own = &shard->streams[k];
    if (own->slots[(uint64_t)f % core->options.window_size].state != MC_SLOT_EMPTY)
        return false; /* my own message f - window is not delivered here yet */
    if (f < window)
        return true;
    for (uint32_t r = 0; r < shard->num_members; r++) {
        uint32_t row = shard->member_rows[r];
        if (shard->mode == DR_MODE_ORDERED) {
            uint32_t field =
                dr_sst_subgroup_field(core->sst, shard->subgroup, DR_SST_DELIVERED_NUM);
            if (dr_sst_get(core->sst, row, field) < (f - window) * (int64_t)shard->num_senders + k)
                return false;
        } else {
            uint32_t field = dr_sst_received_field(core->sst, shard->subgroup, (uint32_t)k);
            if (dr_sst_get(core->sst, row, field) < f - window)
                return false;
        }
    }
    return true;
}

/** My highest index delivered (ordered; raw: received) at every member of the shard. */
static int64_t own_acked_index(const dr_core *core, const mc_shard *shard) {
    int64_t k = shard->my_sender_index, n = shard->num_senders, low = INT64_MAX;
    uint32_t field = shard->mode == DR_MODE_ORDERED
                         ? dr_sst_subgroup_field(core->sst, shard->subgroup, DR_SST_DELIVERED_NUM)
                         : dr_sst_received_field(core->sst, shard->subgroup, (uint32_t)k);
    for (uint32_t r = 0; r < shard->num_members; r++) {
        int64_t value = dr_sst_get(core->sst, shard->member_rows[r], field);
        low = value < low ? value : low;
    }
    if (shard->mode != DR_MODE_ORDERED)
        return low;
    return low < k ? -1 : (low - k) / n; /* seq i*n + k <= low */
}

/**
 * Raw mode: releases my kept messages that every member received (and I delivered), so their
 * slots are free for index + window. Before any window check.
 */
static void release_kept(dr_core *core, mc_shard *shard) {
    if (shard->mode != DR_MODE_RAW || shard->my_sender_index < 0)
        return;
    mc_stream *own = &shard->streams[shard->my_sender_index];
    int64_t acked = own_acked_index(core, shard);
    if (acked > own->raw_delivered)
        acked = own->raw_delivered;
    while (shard->released_index < acked) {
        int64_t index = ++shard->released_index;
        mc_slot *slot = slot_of(core, own, index);
        if (slot->state == MC_SLOT_KEPT && slot->index == (uint32_t)index)
            free_slot(slot);
    }
}

/**
 * Byte window (options.window_bytes): true if my next message may start now — my messages not
 * yet acknowledged by every member hold fewer than window_bytes, or there are fewer than 2 of
 * them. Moves acked_index forward first (and forgets the sizes it passes).
 */
static bool bytes_allow(dr_core *core, mc_shard *shard) {
    if (shard->own_len == NULL)
        return true;
    int64_t acked = own_acked_index(core, shard);
    if (acked > shard->next_index - 1)
        acked = shard->next_index - 1;
    while (shard->acked_index < acked) {
        uint64_t *len = &shard->own_len[(uint64_t)++shard->acked_index % core->options.window_size];
        assert(*len <= shard->inflight_bytes);
        shard->inflight_bytes -= *len;
        *len = 0;
    }
    return shard->inflight_bytes < core->options.window_bytes ||
           shard->next_index - 1 - shard->acked_index < 2;
}

/* ---- sending ------------------------------------------------------------------------- */

/** Puts my own message into my stream's slot (the sender holds and delivers it too). */
static mc_slot *claim_own_slot(dr_core *core, mc_shard *shard, int64_t index) {
    mc_stream *stream = &shard->streams[shard->my_sender_index];
    mc_slot *slot = slot_of(core, stream, index);
    assert(index >= 0 && index < INT32_MAX); /* indices travel as u32 <= INT32_MAX */
    assert(slot->state == MC_SLOT_EMPTY);    /* the window guarantees it was delivered */
    slot->index = (uint32_t)index;
    return slot;
}

static int send_to_others(dr_core *core, const mc_shard *shard) {
    for (uint32_t r = 0; r < shard->num_members; r++) {
        if (r == shard->my_shard_rank)
            continue;
        int rc = core_send_scratch(core, shard->member_ids[r]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int send_small(dr_core *core, const mc_shard *shard, const dr_msg_data *msg) {
    dr_buf_reset(&core->scratch);
    int rc = dr_wire_encode_data(&core->scratch, core->options.my_id, core->view.vid, msg);
    return rc != 0 ? rc : send_to_others(core, shard);
}

/** Member at relative position p from the sender. */
static uint32_t member_at(const mc_shard *shard, uint32_t sender_rank, uint32_t position) {
    return shard->member_ids[(sender_rank + position) % shard->num_members];
}

static uint32_t relative_position(const mc_shard *shard, uint32_t sender_rank) {
    return (shard->my_shard_rank + shard->num_members - sender_rank) % shard->num_members;
}

/** Relays a received block frame (copied) to this node's next hops for `block`. */
static int relay_block(dr_core *core, const mc_shard *shard, uint32_t sender_rank, uint32_t block,
                       const uint8_t *frame, size_t len) {
    uint32_t next[DR_LAYOUT_MAX_SHARD_MEMBERS];
    uint32_t count = pipeline_next_hops(core->options.pipeline, shard->num_members,
                                        relative_position(shard, sender_rank), block, next);
    int rc = 0;
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        uint32_t to = member_at(shard, sender_rank, next[i]);
        assert(to != core->options.my_id);
        bool shared = core->incoming != NULL && dr_shared_bytes_data(core->incoming) == frame &&
                      dr_shared_bytes_len(core->incoming) == len;
        rc = shared ? core_send_shared(core, to, NULL, 0, core->incoming, frame, len)
                    : core_send_bytes(core, to, frame, len); /* the driver's buffer is not ours */
    }
    return rc;
}

/**
 * Sends the blocks of my large message without copying them: each frame is a small head
 * (header and block fields) followed by a slice of the payload, which the queued frames share
 * with the slot (`shared`), so the core lock is held only for the heads whatever the size.
 */
static int send_large(dr_core *core, const mc_shard *shard, const dr_msg_data *msg,
                      dr_shared_bytes *shared) {
    uint32_t block_size = core->options.block_size;
    uint32_t num_blocks = (msg->len + block_size - 1) / block_size;
    assert(num_blocks >= 2 || msg->len > core->options.max_smc_payload_size);
    for (uint32_t b = 0; b < num_blocks; b++) {
        uint32_t offset = b * block_size;
        dr_msg_block block = {.subgroup = msg->subgroup,
                              .sender_index = msg->sender_index,
                              .index = msg->index,
                              .timestamp_us = msg->timestamp_us,
                              .total_len = msg->len,
                              .block_size = block_size,
                              .block = b,
                              .len =
                                  msg->len - offset < block_size ? msg->len - offset : block_size,
                              .payload = msg->payload + offset};
        dr_buf_reset(&core->scratch);
        int rc =
            dr_wire_encode_block_head(&core->scratch, core->options.my_id, core->view.vid, &block);
        uint32_t next[DR_LAYOUT_MAX_SHARD_MEMBERS];
        uint32_t count = pipeline_next_hops(core->options.pipeline, shard->num_members, 0, b, next);
        for (uint32_t i = 0; i < count && rc == 0; i++) {
            uint8_t *head = malloc(core->scratch.len);
            if (head == NULL)
                return DR_ENOMEM;
            memcpy(head, core->scratch.data, core->scratch.len);
            rc = core_send_shared(core, member_at(shard, shard->my_shard_rank, next[i]), head,
                                  core->scratch.len, shared, block.payload, block.len);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_send(const dr_core *core, uint32_t subgroup, size_t len, dr_delivery_mode mode) {
    if (!core->have_view)
        return DR_EAGAIN;
    if (subgroup >= core->layout.num_subgroups)
        return DR_EINVAL;
    mc_shard *shard = (mc_shard *)&core->shards[subgroup];
    if (!shard->active || shard->my_sender_index < 0)
        return DR_ESTATE;
    if (core->vc.wedged || (core->num_resends > 0 && !core->draining)) {
        shard->window_blocked = true; /* WINDOW_OPEN after the next view / the re-sends */
        return DR_EAGAIN;
    }
    if (mode != shard->mode)
        return DR_EINVAL;
    if (len > core->options.max_payload_size)
        return DR_ETOOBIG;
    if (!index_fits_version(shard, shard->next_index))
        return DR_ERANGE;
    return 0;
}

int multicast_send(dr_core *core, uint32_t subgroup, uint8_t *payload, size_t len,
                   dr_delivery_mode mode) {
    int rc = check_send(core, subgroup, len, mode);
    if (rc == 0)
        release_kept(core, &core->shards[subgroup]);
    if (rc == 0 &&
        (!window_allows(core, &core->shards[subgroup], core->shards[subgroup].next_index) ||
         !bytes_allow(core, &core->shards[subgroup]))) {
        core->shards[subgroup].window_blocked = true;
        rc = DR_EAGAIN;
    }
    if (rc != 0)
        return rc; /* the caller still owns payload */
    bool large = len > core->options.max_smc_payload_size;
    /* raw mode keeps every own message after delivering it here (re-sent after a view change
     * if a survivor lacks it): shared between the delivery and the kept copy */
    bool share = large || (mode == DR_MODE_RAW && len > 0);
    dr_shared_bytes *shared = share ? dr_shared_bytes_wrap(payload, len) : NULL;
    if (share && shared == NULL)
        return DR_ENOMEM; /* the caller still owns payload */
    mc_shard *shard = &core->shards[subgroup];
    int64_t index = shard->next_index++;
    mc_slot *slot = claim_own_slot(core, shard, index);
    assert(index > shard->streams[shard->my_sender_index].received);
    if (shard->own_len != NULL) { /* the window rule acked index - window_size: entry free */
        assert(shard->own_len[(uint64_t)index % core->options.window_size] == 0);
        shard->own_len[(uint64_t)index % core->options.window_size] = len;
        shard->inflight_bytes += len;
    }
    slot->state = MC_SLOT_COMPLETE;
    slot->payload = payload; /* taken: freed (or handed over) at delivery */
    slot->shared = shared;
    slot->len = (uint32_t)len;
    slot->timestamp_us = core->now_us;
    dr_msg_data msg = {.subgroup = subgroup,
                       .sender_index = (uint32_t)shard->my_sender_index,
                       .index = (uint32_t)index,
                       .timestamp_us = core->now_us,
                       .len = (uint32_t)len,
                       .payload = payload};
    core_trace(core, "view %d: subgroup %u send index %lld (%zu bytes)", core->view.vid, subgroup,
               (long long)index, len);
    rc = large ? send_large(core, shard, &msg, shared) : send_small(core, shard, &msg);
    advance_received(core, shard, (uint32_t)shard->my_sender_index);
    core->stats.messages_sent++;
    return rc;
}

/** Sends nulls for my indices next_index..last (as far as the window allows). */
static bool send_nulls_upto(dr_core *core, mc_shard *shard, int64_t last) {
    int64_t first = shard->next_index;
    while (shard->next_index <= last && index_fits_version(shard, shard->next_index) &&
           window_allows(core, shard, shard->next_index)) {
        mc_slot *slot = claim_own_slot(core, shard, shard->next_index);
        slot->state = MC_SLOT_NULL;
        shard->next_index++;
    }
    int64_t count = shard->next_index - first;
    assert(count >= 0 && count <= (int64_t)core->options.window_size);
    if (count == 0)
        return false;
    dr_msg_nulls msg = {.subgroup = shard->subgroup,
                        .sender_index = (uint32_t)shard->my_sender_index,
                        .first_index = (uint32_t)first,
                        .count = (uint32_t)count};
    dr_buf_reset(&core->scratch);
    if (dr_wire_encode_nulls(&core->scratch, core->options.my_id, core->view.vid, &msg) == 0)
        send_to_others(core, shard);
    core->stats.nulls_sent += (uint64_t)count;
    core_trace(core, "view %d: subgroup %u send nulls %lld..%lld", core->view.vid, shard->subgroup,
               (long long)first, (long long)(shard->next_index - 1));
    advance_received(core, shard, (uint32_t)shard->my_sender_index);
    return true;
}

/** Reactive nulls: keep up with the highest index received from any other sender. */
static bool nulls_predicate(dr_core *core, mc_shard *shard) {
    if (shard->mode != DR_MODE_ORDERED || shard->my_sender_index < 0)
        return false;
    int64_t want = -1;
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        if ((int32_t)k == shard->my_sender_index)
            continue;
        int64_t i = shard->streams[k].received;
        if (i > want)
            want = i;
    }
    return want >= shard->next_index ? send_nulls_upto(core, shard, want) : false;
}

/* ---- delivery ------------------------------------------------------------------------ */

static int64_t shard_stable(const dr_core *core, const mc_shard *shard) {
    uint32_t field = dr_sst_subgroup_field(core->sst, shard->subgroup, DR_SST_SEQ_NUM);
    int64_t stable = INT64_MAX;
    for (uint32_t r = 0; r < shard->num_members; r++) {
        int64_t seq_num = dr_sst_get(core->sst, shard->member_rows[r], field);
        if (seq_num < stable)
            stable = seq_num;
    }
    assert(stable <= shard->seq_num);
    return stable;
}

/** Hands one complete message to the driver and frees its slot. */
static void deliver_slot(dr_core *core, mc_shard *shard, uint32_t k, mc_slot *slot,
                         int64_t version) {
    assert(slot->state == MC_SLOT_COMPLETE);
    dr_action action = {.type = DR_ACTION_DELIVER,
                        .bytes = slot->payload,
                        .len = slot->len,
                        /* an own large message: its blocks may still be queued; share it */
                        .body = slot->shared ? slot->payload : NULL,
                        .body_len = slot->shared ? slot->len : 0,
                        .body_owner = slot->shared,
                        .subgroup = shard->subgroup,
                        .shard = shard->shard,
                        .sender_id = shard->member_ids[shard->sender_member[k]],
                        .sender_index = k,
                        .index = slot->index,
                        .version = version,
                        .timestamp_us = slot->timestamp_us,
                        .mode = shard->mode};
    if (slot->shared != NULL) {
        action.bytes = NULL;
        action.len = 0;
    }
    slot->payload = NULL;
    slot->shared = NULL;
    core_push_action(core, &action);
    core->stats.messages_delivered++;
    if (version >= 0)
        shard->last_handed = version & 0xffffffff;
    free_slot(slot);
}

static bool deliver_ordered(dr_core *core, mc_shard *shard) {
    int64_t stable = shard_stable(core, shard);
    if (stable <= shard->delivered_num)
        return false;
    core_trace(core, "view %d: shard %u/%u stable seq %lld", core->view.vid, shard->subgroup,
               shard->shard, (long long)stable);
    int64_t n = shard->num_senders;
    for (int64_t seq = shard->delivered_num + 1; seq <= stable; seq++) {
        uint32_t k = (uint32_t)(seq % n);
        int64_t index = seq / n;
        mc_slot *slot = slot_of(core, &shard->streams[k], index);
        assert(slot->index == (uint32_t)index); /* stable <= my seq_num: I hold it */
        if (slot->state == MC_SLOT_NULL) {
            free_slot(slot);
            continue;
        }
        core_trace(core, "view %d: shard %u/%u seq %lld -> deliver sender %u index %lld",
                   core->view.vid, shard->subgroup, shard->shard, (long long)seq, k,
                   (long long)index);
        assert(seq >= 0 && seq <= (int64_t)UINT32_MAX); /* index_fits_version */
        deliver_slot(core, shard, k, slot, ((int64_t)core->view.vid << 32) | seq);
    }
    assert(stable <= shard->seq_num); /* never deliver what is not held here */
    shard->delivered_num = stable;
    multicast_publish_delivered(core, shard);
    return true;
}

void multicast_publish_delivered(dr_core *core, mc_shard *shard) {
    int64_t value = shard->delivered_num;
    /* nulls are never handed out: once the application took everything handed out, the
     * window may count up to what is stable, nulls included */
    if (core->options.count_consumption && shard->consumed < shard->last_handed &&
        shard->consumed < value)
        value = shard->consumed;
    uint32_t field = dr_sst_subgroup_field(core->sst, shard->subgroup, DR_SST_DELIVERED_NUM);
    if (value > dr_sst_get(core->sst, core->my_rank, field))
        dr_sst_set(core->sst, field, value);
}

/**
 * Raw mode, my own message: delivered here unless it is a re-sent one I delivered before, and
 * kept either way (state KEPT, one reference in the slot) until every member received it.
 */
static void deliver_own_raw(dr_core *core, mc_shard *shard, uint32_t k, mc_slot *slot,
                            bool duplicate) {
    mc_slot kept = *slot;
    if (!duplicate) {
        if (kept.shared != NULL)
            dr_shared_bytes_retain(kept.shared); /* the delivery takes one reference */
        deliver_slot(core, shard, k, slot, -1);
    }
    *slot = kept;
    slot->state = MC_SLOT_KEPT;
}

/** A raw message: delivered unless its sender-wide number was delivered before (a re-send). */
static void deliver_raw(dr_core *core, mc_shard *shard, uint32_t k, mc_slot *slot) {
    mc_stream *stream = &shard->streams[k];
    int64_t number = stream->base + slot->index;
    bool duplicate = number <= stream->raw_last;
    if (duplicate)
        core_trace(core, "view %d: subgroup %u sender %u index %u: re-sent, delivered before",
                   core->view.vid, shard->subgroup, k, slot->index);
    else
        stream->raw_last = number;
    if ((int32_t)k == shard->my_sender_index)
        deliver_own_raw(core, shard, k, slot, duplicate);
    else if (duplicate)
        free_slot(slot);
    else
        deliver_slot(core, shard, k, slot, -1);
}

/** Raw mode (and the broken test rule): deliver each sender's messages on receipt. */
static bool deliver_on_receipt(dr_core *core, mc_shard *shard) {
    bool progress = false;
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        mc_stream *stream = &shard->streams[k];
        while (stream->raw_delivered < stream->received) {
            int64_t index = ++stream->raw_delivered;
            mc_slot *slot = slot_of(core, stream, index);
            assert(slot->index == (uint32_t)index);
            if (slot->state == MC_SLOT_COMPLETE && shard->mode == DR_MODE_RAW)
                deliver_raw(core, shard, k, slot);
            else if (slot->state == MC_SLOT_COMPLETE)
                deliver_slot(core, shard, k, slot,
                             ((int64_t)core->view.vid << 32) | (index * shard->num_senders + k));
            else
                free_slot(slot);
            progress = true;
        }
    }
    return progress;
}

/** Broken rule: deliver on receipt but keep the counters as the real rule would. */
static bool deliver_broken(dr_core *core, mc_shard *shard) {
    bool progress = deliver_on_receipt(core, shard);
    int64_t stable = shard_stable(core, shard);
    if (stable > shard->delivered_num) {
        shard->delivered_num = stable;
        multicast_publish_delivered(core, shard);
        progress = true;
    }
    return progress;
}

static bool window_predicate(dr_core *core, mc_shard *shard) {
    release_kept(core, shard);
    if (!shard->window_blocked || !window_allows(core, shard, shard->next_index) ||
        !bytes_allow(core, shard))
        return false;
    /* byte window: tell a blocked sender only once half the window is free (or fewer than two
     * of its messages are in flight), so it wakes once per half window, not per acknowledgement */
    if (shard->own_len != NULL && shard->inflight_bytes > core->options.window_bytes / 2 &&
        shard->next_index - 1 - shard->acked_index >= 2)
        return false;
    shard->window_blocked = false;
    dr_action action = {.type = DR_ACTION_WINDOW_OPEN, .subgroup = shard->subgroup};
    core_push_action(core, &action);
    return false; /* informs the driver; changes nothing in the table */
}

/** The shard's predicate: deliver what is stable, send owed nulls, signal the window. */
static bool shard_predicate(void *ctx) {
    mc_shard *shard = ctx;
    dr_core *core = shard->core;
    assert(shard->active);
    if (core->vc.wedged)
        return false; /* only the ragged trim delivers now */
    bool progress;
    if (shard->mode == DR_MODE_RAW)
        progress = deliver_on_receipt(core, shard);
    else if (core->options.test_fault == DR_CORE_FAULT_BROKEN_DELIVERY)
        progress = deliver_broken(core, shard);
    else
        progress = deliver_ordered(core, shard);
    progress |= nulls_predicate(core, shard);
    window_predicate(core, shard);
    return progress;
}

/* ---- ragged trim (view change) ------------------------------------------------------- */

int multicast_ragged_trim(dr_core *core, uint32_t subgroup, const int64_t *trim) {
    mc_shard *shard = &core->shards[subgroup];
    assert(shard->active && shard->mode == DR_MODE_ORDERED && core->vc.wedged);
    int64_t n = shard->num_senders, last_seq = -1;
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        if (trim[k] > shard->streams[k].received)
            return core_reject(core, core->options.my_id, "trim beyond what this node holds");
        if (trim[k] >= 0 && trim[k] * n + k > last_seq)
            last_seq = trim[k] * n + k;
    }
    for (int64_t seq = shard->delivered_num + 1; seq <= last_seq; seq++) {
        uint32_t k = (uint32_t)(seq % n);
        int64_t index = seq / n;
        if (index > trim[k])
            continue;
        mc_slot *slot = slot_of(core, &shard->streams[k], index);
        assert(slot->index == (uint32_t)index);
        if (slot->state == MC_SLOT_NULL) {
            free_slot(slot);
            continue;
        }
        core_trace(core, "view %d: shard %u/%u trim seq %lld -> deliver sender %u index %lld",
                   core->view.vid, subgroup, shard->shard, (long long)seq, k, (long long)index);
        deliver_slot(core, shard, k, slot, ((int64_t)core->view.vid << 32) | seq);
    }
    if (last_seq > shard->delivered_num)
        shard->delivered_num = last_seq;
    if (shard->my_sender_index < 0)
        return 0;
    mc_stream *own = &shard->streams[shard->my_sender_index];
    for (int64_t index = trim[shard->my_sender_index] + 1; index <= own->received; index++) {
        mc_slot *slot = slot_of(core, own, index);
        if (slot->state != MC_SLOT_COMPLETE)
            continue;
        core_trace(core, "view %d: subgroup %u own index %lld beyond the trim: re-send",
                   core->view.vid, subgroup, (long long)index);
        uint8_t *payload = slot->payload;
        if (slot->shared != NULL) { /* blocks of the old view may still be queued */
            payload = dr_shared_bytes_take(slot->shared);
            if (payload == NULL)
                return DR_ENOMEM;
            slot->shared = NULL;
        }
        int rc = core_queue_resend(core, subgroup, payload, slot->len);
        slot->payload = NULL;
        free_slot(slot);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int multicast_raw_view_end(dr_core *core, uint32_t subgroup, const int64_t *trim,
                           const bool *survives) {
    mc_shard *shard = &core->shards[subgroup];
    assert(shard->active && shard->mode == DR_MODE_RAW && core->vc.wedged);
    for (uint32_t k = 0; k < shard->num_senders; k++)
        if (trim[k] > shard->streams[k].received)
            return core_reject(core, core->options.my_id, "trim beyond what this node holds");
    deliver_on_receipt(core, shard); /* what arrived before the wedge */
    for (uint32_t k = 0; k < shard->num_senders; k++) {
        if (!survives[k])
            continue;
        assert(core->num_raw_carry < RAW_CARRY_MAX);
        core->raw_carry[core->num_raw_carry++] =
            (raw_carry){.subgroup = subgroup,
                        .sender_id = shard->member_ids[shard->sender_member[k]],
                        .base = shard->streams[k].base + trim[k] + 1,
                        .last = shard->streams[k].raw_last};
    }
    if (shard->my_sender_index < 0)
        return 0;
    mc_stream *own = &shard->streams[shard->my_sender_index];
    for (int64_t index = trim[shard->my_sender_index] + 1; index <= own->received; index++) {
        mc_slot *slot = slot_of(core, own, index);
        if (slot->state != MC_SLOT_KEPT || slot->index != (uint32_t)index)
            continue; /* not reachable: only what every member received is released */
        core_trace(core, "view %d: subgroup %u own raw index %lld beyond the trim: re-send",
                   core->view.vid, subgroup, (long long)index);
        uint8_t *payload = NULL;
        if (slot->len > 0) {
            payload = dr_shared_bytes_take(slot->shared);
            if (payload == NULL)
                return DR_ENOMEM;
        }
        uint32_t len = slot->len;
        slot->shared = NULL;
        slot->payload = NULL;
        free_slot(slot);
        int rc = core_queue_resend(core, subgroup, payload, len);
        if (rc != 0)
            return rc;
    }
    return 0;
}

bool multicast_raw_sends_settled(const dr_core *core) {
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++) {
        const mc_shard *shard = &core->shards[s];
        if (shard->active && shard->mode == DR_MODE_RAW && shard->my_sender_index >= 0 &&
            own_acked_index(core, shard) < shard->next_index - 1)
            return false;
    }
    return true;
}

/* ---- receiving ----------------------------------------------------------------------- */

/**
 * Validates the stream addressed by a DATA/NULLS/BLOCK frame: my shard of `subgroup`, sender
 * index in range and authored by that sender. Returns the shard or NULL (reject).
 */
static mc_shard *stream_shard(dr_core *core, const dr_wire_header *header, uint32_t subgroup,
                              uint32_t sender_index, const char **why) {
    if (subgroup >= core->layout.num_subgroups || !core->shards[subgroup].active) {
        *why = "not a member of that subgroup's shard";
        return NULL;
    }
    mc_shard *shard = &core->shards[subgroup];
    if (sender_index >= shard->num_senders) {
        *why = "sender index out of range";
        return NULL;
    }
    if ((int32_t)sender_index == shard->my_sender_index ||
        shard->member_ids[shard->sender_member[sender_index]] != header->sender_id) {
        *why = "frame author is not that sender";
        return NULL;
    }
    return shard;
}

/** Checks that index may occupy its slot now: beyond what is held, within the window. */
static bool index_acceptable(const dr_core *core, const mc_shard *shard, mc_stream *stream,
                             int64_t index, bool allow_partial) {
    if (!index_fits_version(shard, index))
        return false;
    if (index <= stream->received || index > stream->received + core->options.window_size)
        return false;
    mc_slot *slot = slot_of(core, stream, index);
    if (slot->state == MC_SLOT_EMPTY)
        return true;
    return allow_partial && slot->state == MC_SLOT_PARTIAL && slot->index == (uint32_t)index;
}

int multicast_on_data(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_data msg;
    const char *why = NULL;
    if (dr_wire_decode_data(body, header->body_len, &core->limits, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    mc_shard *shard = stream_shard(core, header, msg.subgroup, msg.sender_index, &why);
    if (shard == NULL)
        return core_reject(core, header->sender_id, why);
    if (msg.len > core->options.max_smc_payload_size)
        return core_reject(core, header->sender_id, "DATA larger than max_smc_payload_size");
    mc_stream *stream = &shard->streams[msg.sender_index];
    if (!index_acceptable(core, shard, stream, msg.index, false))
        return core_reject(core, header->sender_id, "DATA index duplicate or beyond window");
    mc_slot *slot = slot_of(core, stream, msg.index);
    slot->payload = msg.len > 0 ? malloc(msg.len) : NULL;
    if (msg.len > 0 && slot->payload == NULL)
        return DR_ENOMEM;
    if (msg.len > 0)
        memcpy(slot->payload, msg.payload, msg.len);
    slot->state = MC_SLOT_COMPLETE;
    slot->index = msg.index;
    slot->len = msg.len;
    slot->timestamp_us = msg.timestamp_us;
    advance_received(core, shard, msg.sender_index);
    return 0;
}

int multicast_on_nulls(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    dr_msg_nulls msg;
    const char *why = NULL;
    if (dr_wire_decode_nulls(body, header->body_len, &core->limits, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    mc_shard *shard = stream_shard(core, header, msg.subgroup, msg.sender_index, &why);
    if (shard == NULL)
        return core_reject(core, header->sender_id, why);
    if (shard->mode != DR_MODE_ORDERED)
        return core_reject(core, header->sender_id, "NULLS in a raw shard");
    mc_stream *stream = &shard->streams[msg.sender_index];
    for (uint32_t i = 0; i < msg.count; i++)
        if (!index_acceptable(core, shard, stream, (int64_t)msg.first_index + i, false))
            return core_reject(core, header->sender_id, "NULLS index duplicate or beyond window");
    for (uint32_t i = 0; i < msg.count; i++) {
        mc_slot *slot = slot_of(core, stream, (int64_t)msg.first_index + i);
        slot->state = MC_SLOT_NULL;
        slot->index = msg.first_index + i;
    }
    advance_received(core, shard, msg.sender_index);
    return 0;
}

static int start_assembly(const dr_core *core, mc_slot *slot, const dr_msg_block *msg) {
    (void)core;
    uint32_t num_blocks =
        (uint32_t)(((uint64_t)msg->total_len + msg->block_size - 1) / msg->block_size);
    slot->payload = dr_big_alloc(msg->total_len); /* reused, already mapped, when large */
    slot->block_bitmap = calloc((num_blocks + 7) / 8, 1);
    if (slot->payload == NULL || slot->block_bitmap == NULL) {
        free_slot(slot);
        return DR_ENOMEM;
    }
    slot->state = MC_SLOT_PARTIAL;
    slot->index = msg->index;
    slot->len = msg->total_len;
    slot->block_size = msg->block_size;
    slot->num_blocks = num_blocks;
    slot->timestamp_us = msg->timestamp_us;
    return 0;
}

/** Copies a block into its slot; returns 0, or a reason string via *why on conflict. */
static int store_block(mc_slot *slot, const dr_msg_block *msg, const char **why) {
    if (slot->len != msg->total_len || slot->block_size != msg->block_size ||
        slot->timestamp_us != msg->timestamp_us) {
        *why = "BLOCK disagrees with earlier blocks of the message";
        return DR_EPROTO;
    }
    uint8_t bit = (uint8_t)(1u << (msg->block % 8));
    if (slot->block_bitmap[msg->block / 8] & bit) {
        *why = "BLOCK received twice";
        return DR_EPROTO;
    }
    slot->block_bitmap[msg->block / 8] |= bit;
    memcpy(slot->payload + (size_t)msg->block * msg->block_size, msg->payload, msg->len);
    slot->blocks_present++;
    assert(slot->blocks_present <= slot->num_blocks);
    if (slot->blocks_present == slot->num_blocks) {
        free(slot->block_bitmap);
        slot->block_bitmap = NULL;
        slot->state = MC_SLOT_COMPLETE;
    }
    return 0;
}

int multicast_on_block(dr_core *core, const dr_wire_header *header, const uint8_t *frame,
                       size_t frame_len) {
    dr_msg_block msg;
    const char *why = NULL;
    const uint8_t *body = frame + DR_WIRE_HEADER_BYTES;
    if (dr_wire_decode_block(body, header->body_len, &core->limits, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    mc_shard *shard = stream_shard(core, header, msg.subgroup, msg.sender_index, &why);
    if (shard == NULL)
        return core_reject(core, header->sender_id, why);
    if (msg.total_len <= core->options.max_smc_payload_size)
        return core_reject(core, header->sender_id, "BLOCK of a small message");
    mc_stream *stream = &shard->streams[msg.sender_index];
    if (!index_acceptable(core, shard, stream, msg.index, true))
        return core_reject(core, header->sender_id, "BLOCK index duplicate or beyond window");
    mc_slot *slot = slot_of(core, stream, msg.index);
    int rc = slot->state == MC_SLOT_EMPTY ? start_assembly(core, slot, &msg) : 0;
    if (rc != 0)
        return rc;
    if (store_block(slot, &msg, &why) != 0)
        return core_reject(core, header->sender_id, why);
    uint32_t sender_rank = shard->sender_member[msg.sender_index];
    rc = relay_block(core, shard, sender_rank, msg.block, frame, frame_len);
    if (slot->state == MC_SLOT_COMPLETE)
        advance_received(core, shard, msg.sender_index);
    return rc;
}
