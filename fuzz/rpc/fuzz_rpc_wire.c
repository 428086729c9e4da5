/*
 * libFuzzer target for the rpc wire decoders (src/rpc/wire.c). The input's first byte picks the
 * decoder; the rest is the message. Checks: no crash or leak, borrowed pointers stay inside the
 * input, and whatever decodes re-encodes to the very same bytes (the format has one encoding).
 */
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
