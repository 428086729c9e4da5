/*
 * Wire messages of the rpc layer. Every integer is little-endian; "str" is a u32 length then
 * that many bytes (no NUL); nothing on the wire is a pointer: calls are named by a request id
 * that only the caller maps to its pending call.
 *
 * Ordered-call payload (the whole payload of one ordered multicast in the caller's shard):
 *   u32 magic 0x43505244 ("DRPC"), u8 version (1), u8 kind (0), u16 reserved (0),
 *   u64 request_id, u32 caller_id (must equal the multicast's sender), u32 method_id,
 *   u32 args_len, args_len bytes                                          (28-byte header)
 * P2P request (net frame type 32):
 *   u8 version (1), u8 flags (0), u16 reserved (0), u64 request_id, u32 subgroup,
 *   u32 method_id, u32 args_len, args_len bytes                           (24-byte header)
 * Reply (type 33 answers a p2p request, type 34 an ordered call):
 *   u64 request_id, i32 status (0 or a negative DR_E* / handler code), u32 len, len bytes
 * View query (type 35, client -> member):
 *   u32 version (1)
 * View reply (type 36, member -> client):
 *   u32 version (1), u32 replier_id, u32 p2p_window, u64 max_p2p_request, u64 max_p2p_reply,
 *   u32 num_types (<= 8), num_types x str type_name (< 32 bytes),
 *   i32 vid, u32 num_members (<= 128), num_members x {u32 id, u8 failed, str address (< 64)},
 *   u8 adequate, u32 num_assigned, u32 num_subgroups (<= 16), per subgroup:
 *     u32 type_index (< num_types), u32 index_in_type, u32 num_shards (<= 16), per shard:
 *       u8 mode (0 ordered, 1 raw), u32 min_nodes, u32 max_nodes, u32 num_members (<= 32),
 *       num_members x {u32 id (a view member), u8 is_sender}
 * State chunk (type 37, member -> new member of its shard, state transfer):
 *   u32 version (1), i32 vid (the view the state opens), u32 subgroup, i32 status (0, or the
 *   sender's serialize error: the transfer failed), u64 total (state bytes), u64 offset,
 *   u32 len, len bytes (offset + len <= total; chunks arrive in order)   (36-byte header)
 * Method ids are dr_rpc_method_id(name): 32-bit FNV-1a of the name.
 */
#include "rpc/wire.h"

#include "derecho/error.h"

#include <string.h>

/* An encoder's result: a failed dr_buf is over its limit (or out of memory). */
static int buf_status(const dr_buf *out) {
    return out->failed ? DR_ETOOBIG : DR_OK;
}

int rpc_encode_ordered_head(dr_buf *out, uint64_t request_id, uint32_t caller_id,
                            uint32_t method_id, size_t args_len) {
    if (args_len > UINT32_MAX)
        return DR_ETOOBIG;
    dr_buf_put_u32(out, RPC_ORDERED_MAGIC);
    dr_buf_put_u8(out, RPC_WIRE_VERSION);
    dr_buf_put_u8(out, 0);
    dr_buf_put_u16(out, 0);
    dr_buf_put_u64(out, request_id);
    dr_buf_put_u32(out, caller_id);
    dr_buf_put_u32(out, method_id);
    dr_buf_put_u32(out, (uint32_t)args_len);
    return buf_status(out);
}

int rpc_encode_ordered(dr_buf *out, uint64_t request_id, uint32_t caller_id, uint32_t method_id,
                       const void *args, size_t len) {
    int rc = rpc_encode_ordered_head(out, request_id, caller_id, method_id, len);
    if (rc == DR_OK && len)
        dr_buf_put_bytes(out, args, len);
    return rc == DR_OK ? buf_status(out) : rc;
}

/* Reads u32 length + that many bytes, which must be exactly the rest of the input. */
static const uint8_t *read_tail(dr_reader *reader, size_t *len_out) {
    uint32_t len = dr_reader_u32(reader);
    if (reader->failed || len != dr_reader_remaining(reader)) {
        reader->failed = true;
        return NULL;
    }
    *len_out = len;
    return len ? dr_reader_bytes(reader, len) : reader->data + reader->pos;
}

int rpc_decode_ordered(const uint8_t *bytes, size_t len, rpc_ordered_msg *out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t magic = dr_reader_u32(&reader);
    uint8_t version = dr_reader_u8(&reader);
    uint8_t kind = dr_reader_u8(&reader);
    uint16_t reserved = dr_reader_u16(&reader);
    out->request_id = dr_reader_u64(&reader);
    out->caller_id = dr_reader_u32(&reader);
    out->method_id = dr_reader_u32(&reader);
    out->args = read_tail(&reader, &out->args_len);
    if (reader.failed || magic != RPC_ORDERED_MAGIC || version != RPC_WIRE_VERSION || kind != 0 ||
        reserved != 0 || !dr_reader_done(&reader))
        return DR_EPROTO;
    return DR_OK;
}

int rpc_encode_p2p_request(dr_buf *out, uint64_t request_id, uint32_t subgroup, uint32_t method_id,
                           const void *args, size_t len) {
    if (len > UINT32_MAX)
        return DR_ETOOBIG;
    dr_buf_put_u8(out, RPC_WIRE_VERSION);
    dr_buf_put_u8(out, 0);
    dr_buf_put_u16(out, 0);
    dr_buf_put_u64(out, request_id);
    dr_buf_put_u32(out, subgroup);
    dr_buf_put_u32(out, method_id);
    dr_buf_put_u32(out, (uint32_t)len);
    if (len)
        dr_buf_put_bytes(out, args, len);
    return buf_status(out);
}

int rpc_decode_p2p_request(const uint8_t *bytes, size_t len, rpc_p2p_request *out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint8_t version = dr_reader_u8(&reader);
    uint8_t flags = dr_reader_u8(&reader);
    uint16_t reserved = dr_reader_u16(&reader);
    out->request_id = dr_reader_u64(&reader);
    out->subgroup = dr_reader_u32(&reader);
    out->method_id = dr_reader_u32(&reader);
    out->args = read_tail(&reader, &out->args_len);
    if (reader.failed || version != RPC_WIRE_VERSION || flags != 0 || reserved != 0 ||
        !dr_reader_done(&reader))
        return DR_EPROTO;
    return DR_OK;
}

int rpc_encode_reply(dr_buf *out, uint64_t request_id, int status, const void *bytes, size_t len) {
    if (len > UINT32_MAX || status > 0)
        return DR_EINVAL;
    dr_buf_put_u64(out, request_id);
    dr_buf_put_u32(out, (uint32_t)(int32_t)status);
    dr_buf_put_u32(out, (uint32_t)len);
    if (len)
        dr_buf_put_bytes(out, bytes, len);
    return buf_status(out);
}

int rpc_decode_reply(const uint8_t *bytes, size_t len, rpc_reply_msg *out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    out->request_id = dr_reader_u64(&reader);
    int32_t status = (int32_t)dr_reader_u32(&reader);
    out->bytes = read_tail(&reader, &out->len);
    if (reader.failed || status > 0 || !dr_reader_done(&reader))
        return DR_EPROTO;
    out->status = status;
    return DR_OK;
}

int rpc_encode_view_query(dr_buf *out) {
    dr_buf_put_u32(out, RPC_WIRE_VERSION);
    return buf_status(out);
}

int rpc_decode_view_query(const uint8_t *bytes, size_t len) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t version = dr_reader_u32(&reader);
    return reader.failed || version != RPC_WIRE_VERSION || !dr_reader_done(&reader) ? DR_EPROTO
                                                                                    : DR_OK;
}

static void put_text(dr_buf *out, const char *text, size_t cap) {
    size_t len = strnlen(text, cap - 1);
    dr_buf_put_blob(out, text, (uint32_t)len);
}

/* Reads a str of fewer than `cap` bytes into text (NUL-terminated); no NUL bytes inside. */
static void get_text(dr_reader *reader, char *text, size_t cap) {
    uint32_t len = 0;
    const uint8_t *bytes = dr_reader_blob(reader, (uint32_t)cap - 1, &len);
    text[0] = '\0';
    if (!bytes)
        return;
    if (memchr(bytes, 0, len)) {
        reader->failed = true;
        return;
    }
    memcpy(text, bytes, len);
    text[len] = '\0';
}

static void put_layout(dr_buf *out, const dr_layout *layout) {
    dr_buf_put_u8(out, layout->adequate ? 1 : 0);
    dr_buf_put_u32(out, layout->num_assigned);
    dr_buf_put_u32(out, layout->num_subgroups);
    for (uint32_t s = 0; s < layout->num_subgroups; s++) {
        const dr_subgroup_layout *subgroup = &layout->subgroups[s];
        dr_buf_put_u32(out, subgroup->type_index);
        dr_buf_put_u32(out, subgroup->index_in_type);
        dr_buf_put_u32(out, subgroup->num_shards);
        for (uint32_t h = 0; h < subgroup->num_shards; h++) {
            const dr_shard_layout *shard = &subgroup->shards[h];
            dr_buf_put_u8(out, (uint8_t)shard->mode);
            dr_buf_put_u32(out, shard->min_nodes);
            dr_buf_put_u32(out, shard->max_nodes);
            dr_buf_put_u32(out, shard->num_members);
            for (uint32_t m = 0; m < shard->num_members; m++) {
                dr_buf_put_u32(out, shard->member_ids[m]);
                dr_buf_put_u8(out, shard->is_sender[m] ? 1 : 0);
            }
        }
    }
}

int rpc_encode_view_reply(dr_buf *out, const rpc_view_info *info) {
    const dr_view *view = &info->view.view;
    const dr_layout *layout = &info->view.layout;
    if (info->num_types > RPC_MAX_TYPES || view->num_members > DR_VIEW_MAX_MEMBERS ||
        layout->num_subgroups > DR_LAYOUT_MAX_SUBGROUPS)
        return DR_EINVAL;
    for (uint32_t s = 0; s < layout->num_subgroups; s++) {
        if (layout->subgroups[s].num_shards > DR_LAYOUT_MAX_SHARDS)
            return DR_EINVAL;
        for (uint32_t h = 0; h < layout->subgroups[s].num_shards; h++)
            if (layout->subgroups[s].shards[h].num_members > DR_LAYOUT_MAX_SHARD_MEMBERS)
                return DR_EINVAL;
    }
    dr_buf_put_u32(out, RPC_WIRE_VERSION);
    dr_buf_put_u32(out, info->view.my_id);
    dr_buf_put_u32(out, info->p2p_window);
    dr_buf_put_u64(out, info->max_p2p_request);
    dr_buf_put_u64(out, info->max_p2p_reply);
    dr_buf_put_u32(out, info->num_types);
    for (uint32_t t = 0; t < info->num_types; t++)
        put_text(out, info->type_names[t], DR_LAYOUT_NAME_MAX);
    dr_buf_put_u32(out, (uint32_t)view->vid);
    dr_buf_put_u32(out, view->num_members);
    for (uint32_t m = 0; m < view->num_members; m++) {
        dr_buf_put_u32(out, view->member_ids[m]);
        dr_buf_put_u8(out, view->failed[m] ? 1 : 0);
        put_text(out, view->addresses[m], DR_ADDRESS_MAX);
    }
    put_layout(out, layout);
    return buf_status(out);
}

static bool in_view(const dr_view *view, uint32_t id) {
    for (uint32_t m = 0; m < view->num_members; m++)
        if (view->member_ids[m] == id)
            return true;
    return false;
}

static void get_shard(dr_reader *reader, const dr_view *view, dr_shard_layout *shard) {
    uint8_t mode = dr_reader_u8(reader);
    shard->mode = mode == 1 ? DR_MODE_RAW : DR_MODE_ORDERED;
    shard->min_nodes = dr_reader_u32(reader);
    shard->max_nodes = dr_reader_u32(reader);
    shard->num_members = dr_reader_u32(reader);
    if (mode > 1 || shard->num_members > DR_LAYOUT_MAX_SHARD_MEMBERS) {
        reader->failed = true;
        return;
    }
    shard->num_senders = 0;
    for (uint32_t m = 0; m < shard->num_members && !reader->failed; m++) {
        shard->member_ids[m] = dr_reader_u32(reader);
        uint8_t sender = dr_reader_u8(reader);
        if (sender > 1 || !in_view(view, shard->member_ids[m]))
            reader->failed = true;
        shard->is_sender[m] = sender == 1;
        shard->num_senders += sender;
    }
}

static void get_layout(dr_reader *reader, const dr_view *view, uint32_t num_types,
                       dr_layout *layout) {
    uint8_t adequate = dr_reader_u8(reader);
    layout->adequate = adequate == 1;
    layout->num_assigned = dr_reader_u32(reader);
    layout->num_subgroups = dr_reader_u32(reader);
    if (adequate > 1 || layout->num_subgroups > DR_LAYOUT_MAX_SUBGROUPS ||
        layout->num_assigned > view->num_members) {
        reader->failed = true;
        return;
    }
    for (uint32_t s = 0; s < layout->num_subgroups && !reader->failed; s++) {
        dr_subgroup_layout *subgroup = &layout->subgroups[s];
        subgroup->type_index = dr_reader_u32(reader);
        subgroup->index_in_type = dr_reader_u32(reader);
        subgroup->num_shards = dr_reader_u32(reader);
        if (subgroup->type_index >= num_types || subgroup->num_shards > DR_LAYOUT_MAX_SHARDS) {
            reader->failed = true;
            return;
        }
        for (uint32_t h = 0; h < subgroup->num_shards && !reader->failed; h++)
            get_shard(reader, view, &subgroup->shards[h]);
    }
}

int rpc_decode_view_reply(const uint8_t *bytes, size_t len, rpc_view_info *out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    memset(out, 0, sizeof *out);
    uint32_t version = dr_reader_u32(&reader);
    out->view.my_id = dr_reader_u32(&reader);
    out->p2p_window = dr_reader_u32(&reader);
    out->max_p2p_request = dr_reader_u64(&reader);
    out->max_p2p_reply = dr_reader_u64(&reader);
    out->num_types = dr_reader_u32(&reader);
    if (reader.failed || version != RPC_WIRE_VERSION || out->num_types > RPC_MAX_TYPES ||
        out->p2p_window == 0)
        return DR_EPROTO;
    for (uint32_t t = 0; t < out->num_types; t++)
        get_text(&reader, out->type_names[t], DR_LAYOUT_NAME_MAX);
    dr_view *view = &out->view.view;
    view->vid = (int32_t)dr_reader_u32(&reader);
    view->num_members = dr_reader_u32(&reader);
    if (reader.failed || view->num_members > DR_VIEW_MAX_MEMBERS)
        return DR_EPROTO;
    for (uint32_t m = 0; m < view->num_members && !reader.failed; m++) {
        view->member_ids[m] = dr_reader_u32(&reader);
        uint8_t failed = dr_reader_u8(&reader);
        for (uint32_t earlier = 0; earlier < m; earlier++)
            if (view->member_ids[earlier] == view->member_ids[m])
                reader.failed = true; /* duplicate member */
        if (failed > 1)
            reader.failed = true;
        view->failed[m] = failed == 1;
        get_text(&reader, view->addresses[m], DR_ADDRESS_MAX);
    }
    if (reader.failed)
        return DR_EPROTO;
    get_layout(&reader, view, out->num_types, &out->view.layout);
    if (reader.failed || !dr_reader_done(&reader))
        return DR_EPROTO;
    return DR_OK;
}

int rpc_encode_state_chunk_head(dr_buf *out, const rpc_state_chunk *chunk) {
    if (chunk->len > UINT32_MAX || chunk->status > 0 || chunk->offset > chunk->total ||
        chunk->len > chunk->total - chunk->offset)
        return DR_EINVAL;
    dr_buf_put_u32(out, RPC_WIRE_VERSION);
    dr_buf_put_u32(out, (uint32_t)chunk->vid);
    dr_buf_put_u32(out, chunk->subgroup);
    dr_buf_put_u32(out, (uint32_t)(int32_t)chunk->status);
    dr_buf_put_u64(out, chunk->total);
    dr_buf_put_u64(out, chunk->offset);
    dr_buf_put_u32(out, (uint32_t)chunk->len);
    return buf_status(out);
}

int rpc_encode_state_chunk(dr_buf *out, const rpc_state_chunk *chunk) {
    int rc = rpc_encode_state_chunk_head(out, chunk);
    if (rc == DR_OK && chunk->len)
        dr_buf_put_bytes(out, chunk->bytes, chunk->len);
    return rc ? rc : buf_status(out);
}

int rpc_decode_state_chunk(const uint8_t *bytes, size_t len, rpc_state_chunk *out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t version = dr_reader_u32(&reader);
    out->vid = (int32_t)dr_reader_u32(&reader);
    out->subgroup = dr_reader_u32(&reader);
    out->status = (int32_t)dr_reader_u32(&reader);
    out->total = dr_reader_u64(&reader);
    out->offset = dr_reader_u64(&reader);
    out->bytes = read_tail(&reader, &out->len);
    if (reader.failed || version != RPC_WIRE_VERSION || out->vid < 0 || out->status > 0 ||
        out->offset > out->total || out->len > out->total - out->offset || !dr_reader_done(&reader))
        return DR_EPROTO;
    return DR_OK;
}
