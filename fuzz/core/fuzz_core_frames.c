/*
 * libFuzzer target for the group core's frame handling (src/core): a node (id 11) joins a
 * 3-member group (leader 10, member 12), installs view 0 from a genuine VIEW frame, and then
 * receives the fuzz input as frames: each is u16 length + bytes, from node 10 or 12 (first bit
 * of the length picks which). Half the time the frame gets a valid header (magic, version,
 * sender, vid 0, body length) so that body decoders and state checks are reached. Checks: no
 * crash, leak or assertion; every action is well formed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/wire.h"
#include "derecho/log.h"
#include "fuzz_seed.h"

static void check(int condition) {
    if (!condition)
        __builtin_trap();
}

static void drain(dr_core *core) {
    dr_action action;
    while (dr_core_next_action(core, &action)) {
        check(action.type >= DR_ACTION_SEND && action.type <= DR_ACTION_STOPPED);
        if (action.type == DR_ACTION_SEND)
            check(action.bytes != NULL && action.len >= DR_WIRE_HEADER_BYTES);
        dr_action_free(&action);
    }
}

static dr_core *make_member(void) {
    dr_core_options options;
    dr_core_options_default(&options);
    options.my_id = 11;
    strcpy(options.my_address, "b:1");
    strcpy(options.contact_address, "a:1");
    dr_shard_policy_fixed(&options.layout.types[0].policy, 1, 3, DR_MODE_ORDERED);
    options.window_size = 4;
    options.max_payload_size = 2048;
    options.max_smc_payload_size = 256;
    options.block_size = 64;
    dr_core *core = NULL;
    check(dr_core_create(&options, 0, &core, NULL) == 0);
    static dr_view view;
    memset(&view, 0, sizeof view);
    view.num_members = 3;
    uint32_t ids[3] = {10, 11, 12};
    const char *addresses[3] = {"a:1", "b:1", "c:1"};
    for (int i = 0; i < 3; i++) {
        view.member_ids[i] = ids[i];
        strcpy(view.addresses[i], addresses[i]);
    }
    view.incarnations[1] = dr_core_incarnation(core); /* the view admits this process */
    static dr_layout layout;
    check(dr_layout_compute(&options.layout, NULL, ids, 3, &layout, NULL) == 0);
    dr_buf buf;
    dr_buf_init(&buf, 0);
    check(dr_wire_encode_view(&buf, 10, &view, dr_layout_fingerprint(&layout)) == 0);
    check(dr_core_on_message(core, 10, buf.data, buf.len, 1) == 0);
    check(dr_core_view_id(core) == 0);
    dr_buf_free(&buf);
    drain(core);
    return core;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dr_log_set_all_levels(DR_LOG_OFF);
    dr_core *core = make_member();
    uint8_t frame[4096];
    uint64_t now_us = 10;
    while (size >= 2) {
        uint16_t word = (uint16_t)(data[0] | data[1] << 8);
        data += 2;
        size -= 2;
        uint32_t from = (word & 0x8000) ? 12 : 10;
        size_t len = word & 0x0fff;
        if (len > size)
            len = size;
        memcpy(frame, data, len);
        data += len;
        size -= len;
        if ((word & 0x4000) && len >= DR_WIRE_HEADER_BYTES) {
            dr_store_u32le(frame, DR_WIRE_MAGIC);
            frame[4] = DR_WIRE_VERSION;
            dr_store_u32le(frame + 8, from);
            dr_store_u32le(frame + 12, 0);
            dr_store_u32le(frame + 16, (uint32_t)(len - DR_WIRE_HEADER_BYTES));
        }
        (void)dr_core_on_message(core, from, frame, len, ++now_us);
        if (word & 0x2000)
            (void)dr_core_send(core, 0, frame, len < 2048 ? len : 2048, DR_MODE_ORDERED, now_us);
        drain(core);
    }
    dr_core_destroy(core);
    return 0;
}

/* ---- seeds (fuzz/make-corpus.sh): genuine frames of the leader and the other member ------- */

static void put_frame(fuzz_bytes *b, uint16_t flags, dr_buf *frame) {
    fuzz_put_u16(b, (uint16_t)(flags | (frame->len & 0x0fff)));
    fuzz_put(b, frame->data, frame->len);
    dr_buf_free(frame);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (!getenv("DR_FUZZ_SEED_DIR"))
        return 0;
    fuzz_bytes b = {0};
    dr_buf f;
    /* heartbeats from both, then data and nulls from the leader, sends of our own */
    dr_buf_init(&f, 0);
    dr_wire_encode_heartbeat(&f, 10, 0);
    put_frame(&b, 0, &f);
    dr_buf_init(&f, 0);
    dr_wire_encode_heartbeat(&f, 12, 0);
    put_frame(&b, 0x8000, &f);
    static const uint8_t payload[] = "an ordered message";
    for (uint32_t i = 0; i < 3; i++) {
        dr_msg_data data = {.subgroup = 0,
                            .sender_index = 0,
                            .index = i,
                            .timestamp_us = 100 + i,
                            .len = sizeof payload,
                            .payload = payload};
        dr_buf_init(&f, 0);
        dr_wire_encode_data(&f, 10, 0, &data);
        put_frame(&b, i == 1 ? 0x2000 : 0, &f);
    }
    dr_msg_nulls nulls = {.subgroup = 0, .sender_index = 2, .first_index = 0, .count = 3};
    dr_buf_init(&f, 0);
    dr_wire_encode_nulls(&f, 12, 0, &nulls);
    put_frame(&b, 0x8000, &f);
    fuzz_seed_done(&b, "data_and_nulls");
    /* a join request to a non-leader, a refusal, random bytes with a forced header */
    dr_buf_init(&f, 0);
    dr_wire_encode_join_request(&f, 10, "d:1", 7);
    put_frame(&b, 0, &f);
    dr_buf_init(&f, 0);
    dr_wire_encode_join_refused(&f, 10, -5, "no");
    put_frame(&b, 0, &f);
    fuzz_put_u16(&b, 0x4000 | 40);
    for (int i = 0; i < 40; i++)
        fuzz_put_u8(&b, (uint8_t)(i * 37));
    fuzz_seed_done(&b, "join_and_forced_header");
    /* a block of a large message from the leader */
    static const uint8_t block[64] = {1, 2, 3};
    dr_msg_block blk = {.subgroup = 0,
                        .sender_index = 0,
                        .index = 0,
                        .timestamp_us = 5,
                        .total_len = 300,
                        .block_size = 64,
                        .block = 0,
                        .len = 64,
                        .payload = block};
    dr_buf_init(&f, 0);
    dr_wire_encode_block(&f, 10, 0, &blk);
    put_frame(&b, 0, &f);
    fuzz_seed_done(&b, "block");
    fuzz_bytes_free(&b);
    return 0;
}
