/*
 * libFuzzer target for the rpc wire decoders (src/rpc/wire.c). The input's first byte picks the
 * decoder; the rest is the message. Checks: no crash or leak, borrowed pointers stay inside the
 * input, and whatever decodes re-encodes to the very same bytes (the format has one encoding).
 */
#include "fuzz_seed.h"
#include "rpc/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int condition) {
    if (!condition)
        __builtin_trap();
}

static void check_inside(const uint8_t *data, size_t size, const uint8_t *part, size_t len) {
    check(len <= size && (len == 0 || (part >= data && part + len <= data + size)));
}

static void check_same(const dr_buf *buf, const uint8_t *data, size_t size) {
    check(!buf->failed && buf->len == size && (size == 0 || memcmp(buf->data, data, size) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 5;
    data++, size--;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    if (which == 0) {
        rpc_ordered_msg msg;
        if (rpc_decode_ordered(data, size, &msg) == 0) {
            check_inside(data, size, msg.args, msg.args_len);
            rpc_encode_ordered(&buf, msg.request_id, msg.caller_id, msg.method_id, msg.args,
                               msg.args_len);
            check_same(&buf, data, size);
        }
    } else if (which == 1) {
        rpc_p2p_request msg;
        if (rpc_decode_p2p_request(data, size, &msg) == 0) {
            check_inside(data, size, msg.args, msg.args_len);
            rpc_encode_p2p_request(&buf, msg.request_id, msg.subgroup, msg.method_id, msg.args,
                                   msg.args_len);
            check_same(&buf, data, size);
        }
    } else if (which == 2) {
        rpc_reply_msg msg;
        if (rpc_decode_reply(data, size, &msg) == 0) {
            check_inside(data, size, msg.bytes, msg.len);
            rpc_encode_reply(&buf, msg.request_id, msg.status, msg.bytes, msg.len);
            check_same(&buf, data, size);
        }
    } else if (which == 3) {
        if (rpc_decode_view_query(data, size) == 0) {
            rpc_encode_view_query(&buf);
            check_same(&buf, data, size);
        }
    } else {
        rpc_view_info *info = malloc(sizeof *info);
        if (info && rpc_decode_view_reply(data, size, info) == 0) {
            /* the shard members are view members, counts are within capacity */
            for (uint32_t s = 0; s < info->view.layout.num_subgroups; s++)
                for (uint32_t h = 0; h < info->view.layout.subgroups[s].num_shards; h++)
                    check(info->view.layout.subgroups[s].shards[h].num_members <=
                          DR_LAYOUT_MAX_SHARD_MEMBERS);
            check(rpc_encode_view_reply(&buf, info) == 0);
        }
        free(info);
    }
    dr_buf_free(&buf);
    return 0;
}

/* ---- seeds (fuzz/make-corpus.sh): one valid message per decoder ------------------------- */

static void seed_buf(const char *name, uint8_t which, dr_buf *buf) {
    fuzz_bytes b = {0};
    fuzz_put_u8(&b, which);
    fuzz_put(&b, buf->data, buf->len);
    fuzz_seed_done(&b, name);
    fuzz_bytes_free(&b);
    dr_buf_free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    rpc_encode_ordered(&buf, 7, 2, 0xabcdef01u, "args", 4);
    seed_buf("ordered", 0, &buf);
    rpc_encode_p2p_request(&buf, 8, 1, 0x12345678u, "p2p-args", 8);
    seed_buf("p2p_request", 1, &buf);
    rpc_encode_reply(&buf, 9, -3, "reply", 5);
    seed_buf("reply", 2, &buf);
    rpc_encode_view_query(&buf);
    seed_buf("view_query", 3, &buf);
    rpc_view_info *info = calloc(1, sizeof *info);
    if (!info)
        abort(); /* seed generation only */
    info->view.view.vid = 3;
    info->view.view.num_members = 2;
    info->view.view.member_ids[0] = 0;
    info->view.view.member_ids[1] = 1;
    snprintf(info->view.view.addresses[0], sizeof info->view.view.addresses[0], "127.0.0.1:23580");
    snprintf(info->view.view.addresses[1], sizeof info->view.view.addresses[1], "127.0.0.1:23581");
    if (rpc_encode_view_reply(&buf, info) == 0)
        seed_buf("view_reply", 4, &buf);
    else
        dr_buf_free(&buf);
    free(info);
    return 0;
}
