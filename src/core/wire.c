/*
 * Wire format of the group core. Every message is one frame (the transport delivers whole
 * frames) encoded little-endian:
 *
 *   header (20 bytes)
 *     u32 magic      "DRC1" = 0x31435244
 *     u8  version    3
 *     u8  type       dr_wire_type
 *     u16 reserved   0
 *     u32 sender_id  node id of the author
 *     i32 vid        view id the message belongs to (-1 outside views)
 *     u32 body_len   bytes after the header (must equal the frame's remainder)
 *
 *   JOIN_REQUEST   str address, u64 incarnation     (str = u32 len + bytes, len < 64;
 *                                                    incarnation != 0)
 *   JOIN_REDIRECT  u32 leader_id, str address
 *   JOIN_REFUSED   i32 code, str reason (len < 128)
 *   JOIN_ACCEPTED  (empty) or u32 n (1..16), n x str address (other members, for retries)
 *   VIEW           u32 num_members (1..128), u64 layout_fingerprint,
 *                  num_members x { u32 node_id, u8 failed, str address,
 *                                  u64 incarnation (0: unknown) }
 *                  [optional, views > 0: the previous view's shard assignment (a joiner
 *                   recomputes the layout from it and learns which shard members are new):
 *                   u32 num_subgroups (<= 16), per subgroup u32 num_shards
 *                   (<= 16), per shard u32 n (<= 32), n x { u32 node_id, u8 is_sender }]
 *   SST_PUSH       u32 row, u32 count, count x { u32 field, i64 value }
 *   DATA           u32 subgroup, u32 sender_index, u32 index, u64 timestamp_us,
 *                  u32 len, len bytes                       (len <= max_payload)
 *   NULLS          u32 subgroup, u32 sender_index, u32 first_index, u32 count (>= 1)
 *   BLOCK          u32 subgroup, u32 sender_index, u32 index, u64 timestamp_us,
 *                  u32 total_len, u32 block_size, u32 block, u32 len, len bytes
 *                  (total_len <= max_payload, block < ceil(total_len / block_size),
 *                   len == the block's exact size)
 *   HEARTBEAT      (empty)
 *   PROPOSAL       u8 kind (0 propose, 1 commit, 2 report), i64 ballot (1..DR_BALLOT_MAX),
 *                  i64 accepted_ballot (propose/commit: == ballot; report: 0..ballot-1),
 *                  u32 num_members (1..128; 0 exactly for a report with nothing accepted),
 *                  num_members x { u32 node_id, str address, u64 incarnation },
 *                  u32 num_trims (<= 16*16*32), num_trims x { u32 subgroup, u32 shard,
 *                  u32 sender, i64 trim (>= -1) }
 *
 * Decoders check all of this and that nothing is left over.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "core/wire.h"
#include "derecho/error.h"

#define SST_ENTRY_BYTES 12u

size_t dr_wire_begin(dr_buf *buf, dr_wire_type type, uint32_t sender_id, int32_t vid) {
    assert(type >= DR_MSG_JOIN_REQUEST && type <= DR_MSG_TYPE_MAX);
    size_t start = buf->len;
    dr_buf_put_u32(buf, DR_WIRE_MAGIC);
    dr_buf_put_u8(buf, DR_WIRE_VERSION);
    dr_buf_put_u8(buf, (uint8_t)type);
    dr_buf_put_u16(buf, 0);
    dr_buf_put_u32(buf, sender_id);
    dr_buf_put_u32(buf, (uint32_t)vid);
    dr_buf_put_u32(buf, 0);
    return start;
}

int dr_wire_finish(dr_buf *buf, size_t start) {
    if (buf->failed)
        return DR_ENOMEM;
    assert(buf->len >= start + DR_WIRE_HEADER_BYTES);
    size_t body = buf->len - start - DR_WIRE_HEADER_BYTES;
    assert(body <= UINT32_MAX);
    dr_store_u32le(buf->data + start + 16, (uint32_t)body);
    return 0;
}

int dr_wire_encode_join_request(dr_buf *buf, uint32_t sender_id, const char *address,
                                uint64_t incarnation) {
    assert(incarnation != 0);
    size_t start = dr_wire_begin(buf, DR_MSG_JOIN_REQUEST, sender_id, DR_WIRE_NO_VIEW);
    dr_buf_put_str(buf, address);
    dr_buf_put_u64(buf, incarnation);
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_join_redirect(dr_buf *buf, uint32_t sender_id, uint32_t leader_id,
                                 const char *address) {
    size_t start = dr_wire_begin(buf, DR_MSG_JOIN_REDIRECT, sender_id, DR_WIRE_NO_VIEW);
    dr_buf_put_u32(buf, leader_id);
    dr_buf_put_str(buf, address);
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_join_refused(dr_buf *buf, uint32_t sender_id, int32_t code, const char *reason) {
    size_t start = dr_wire_begin(buf, DR_MSG_JOIN_REFUSED, sender_id, DR_WIRE_NO_VIEW);
    dr_buf_put_u32(buf, (uint32_t)code);
    char clipped[128];
    snprintf(clipped, sizeof clipped, "%s", reason);
    dr_buf_put_str(buf, clipped);
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_join_accepted(dr_buf *buf, uint32_t sender_id) {
    return dr_wire_encode_join_accepted_contacts(buf, sender_id, NULL, 0);
}

int dr_wire_encode_join_accepted_contacts(dr_buf *buf, uint32_t sender_id,
                                          const char (*contacts)[DR_ADDRESS_MAX], uint32_t n) {
    assert(n <= DR_WIRE_MAX_CONTACTS);
    size_t start = dr_wire_begin(buf, DR_MSG_JOIN_ACCEPTED, sender_id, DR_WIRE_NO_VIEW);
    if (n > 0) {
        dr_buf_put_u32(buf, n);
        for (uint32_t i = 0; i < n; i++)
            dr_buf_put_str(buf, contacts[i]);
    }
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_view(dr_buf *buf, uint32_t sender_id, const dr_view *view,
                        uint64_t layout_fingerprint) {
    assert(view->num_members >= 1 && view->num_members <= DR_VIEW_MAX_MEMBERS);
    size_t start = dr_wire_begin(buf, DR_MSG_VIEW, sender_id, view->vid);
    dr_buf_put_u32(buf, view->num_members);
    dr_buf_put_u64(buf, layout_fingerprint);
    for (uint32_t i = 0; i < view->num_members; i++) {
        dr_buf_put_u32(buf, view->member_ids[i]);
        dr_buf_put_u8(buf, view->failed[i] ? 1 : 0);
        dr_buf_put_str(buf, view->addresses[i]);
        dr_buf_put_u64(buf, view->incarnations[i]);
    }
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_heartbeat(dr_buf *buf, uint32_t sender_id, int32_t vid) {
    size_t start = dr_wire_begin(buf, DR_MSG_HEARTBEAT, sender_id, vid);
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_proposal(dr_buf *buf, uint32_t sender_id, int32_t vid,
                            const dr_msg_proposal *msg) {
    assert(msg->next.num_members <= DR_VIEW_MAX_MEMBERS);
    assert(msg->next.num_members >= 1 || msg->accepted_ballot == DR_BALLOT_NONE);
    assert(msg->num_trims <= DR_WIRE_MAX_TRIMS);
    size_t start = dr_wire_begin(buf, DR_MSG_PROPOSAL, sender_id, vid);
    dr_buf_put_u8(buf, msg->kind);
    dr_buf_put_u64(buf, (uint64_t)msg->ballot);
    dr_buf_put_u64(buf, (uint64_t)msg->accepted_ballot);
    dr_buf_put_u32(buf, msg->next.num_members);
    for (uint32_t i = 0; i < msg->next.num_members; i++) {
        dr_buf_put_u32(buf, msg->next.member_ids[i]);
        dr_buf_put_str(buf, msg->next.addresses[i]);
        dr_buf_put_u64(buf, msg->next.incarnations[i]);
    }
    dr_buf_put_u32(buf, msg->num_trims);
    for (uint32_t i = 0; i < msg->num_trims; i++) {
        dr_buf_put_u32(buf, msg->trims[i].subgroup);
        dr_buf_put_u32(buf, msg->trims[i].shard);
        dr_buf_put_u32(buf, msg->trims[i].sender);
        dr_buf_put_u64(buf, (uint64_t)msg->trims[i].trim);
    }
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_view_with_layout(dr_buf *buf, uint32_t sender_id, const dr_view *view,
                                    const dr_layout *layout, const dr_layout *assignment) {
    size_t start = buf->len;
    int rc = dr_wire_encode_view(buf, sender_id, view, dr_layout_fingerprint(layout));
    if (rc != 0)
        return rc;
    dr_buf_put_u32(buf, assignment->num_subgroups);
    for (uint32_t s = 0; s < assignment->num_subgroups; s++) {
        const dr_subgroup_layout *sg = &assignment->subgroups[s];
        dr_buf_put_u32(buf, sg->num_shards);
        for (uint32_t h = 0; h < sg->num_shards; h++) {
            dr_buf_put_u32(buf, sg->shards[h].num_members);
            for (uint32_t m = 0; m < sg->shards[h].num_members; m++) {
                dr_buf_put_u32(buf, sg->shards[h].member_ids[m]);
                dr_buf_put_u8(buf, sg->shards[h].is_sender[m] ? 1 : 0);
            }
        }
    }
    return dr_wire_finish(buf, start);
}

size_t dr_wire_begin_sst_push(dr_buf *buf, uint32_t sender_id, int32_t vid, uint32_t row,
                              size_t *count_offset) {
    size_t start = dr_wire_begin(buf, DR_MSG_SST_PUSH, sender_id, vid);
    dr_buf_put_u32(buf, row);
    *count_offset = buf->len;
    dr_buf_put_u32(buf, 0);
    return start;
}

void dr_wire_put_sst_entry(dr_buf *buf, size_t count_offset, uint32_t field, int64_t value) {
    dr_buf_put_u32(buf, field);
    dr_buf_put_u64(buf, (uint64_t)value);
    if (buf->failed)
        return;
    uint32_t count = dr_load_u32le(buf->data + count_offset);
    dr_store_u32le(buf->data + count_offset, count + 1);
}

int dr_wire_encode_data(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_data *msg) {
    assert(msg->len == 0 || msg->payload != NULL);
    size_t start = dr_wire_begin(buf, DR_MSG_DATA, sender_id, vid);
    dr_buf_put_u32(buf, msg->subgroup);
    dr_buf_put_u32(buf, msg->sender_index);
    dr_buf_put_u32(buf, msg->index);
    dr_buf_put_u64(buf, msg->timestamp_us);
    dr_buf_put_blob(buf, msg->payload, msg->len);
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_nulls(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_nulls *msg) {
    assert(msg->count >= 1);
    size_t start = dr_wire_begin(buf, DR_MSG_NULLS, sender_id, vid);
    dr_buf_put_u32(buf, msg->subgroup);
    dr_buf_put_u32(buf, msg->sender_index);
    dr_buf_put_u32(buf, msg->first_index);
    dr_buf_put_u32(buf, msg->count);
    return dr_wire_finish(buf, start);
}

static size_t begin_block(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_block *msg) {
    assert(msg->len > 0 && msg->len <= msg->block_size && msg->block_size > 0);
    assert((uint64_t)msg->block * msg->block_size + msg->len <= msg->total_len);
    size_t start = dr_wire_begin(buf, DR_MSG_BLOCK, sender_id, vid);
    dr_buf_put_u32(buf, msg->subgroup);
    dr_buf_put_u32(buf, msg->sender_index);
    dr_buf_put_u32(buf, msg->index);
    dr_buf_put_u64(buf, msg->timestamp_us);
    dr_buf_put_u32(buf, msg->total_len);
    dr_buf_put_u32(buf, msg->block_size);
    dr_buf_put_u32(buf, msg->block);
    return start;
}

int dr_wire_encode_block(dr_buf *buf, uint32_t sender_id, int32_t vid, const dr_msg_block *msg) {
    size_t start = begin_block(buf, sender_id, vid, msg);
    dr_buf_put_blob(buf, msg->payload, msg->len);
    return dr_wire_finish(buf, start);
}

int dr_wire_encode_block_head(dr_buf *buf, uint32_t sender_id, int32_t vid,
                              const dr_msg_block *msg) {
    size_t start = begin_block(buf, sender_id, vid, msg);
    dr_buf_put_u32(buf, msg->len); /* the blob's length; its bytes follow outside buf */
    if (buf->failed)
        return DR_ENOMEM;
    size_t body = buf->len - start - DR_WIRE_HEADER_BYTES + msg->len;
    dr_store_u32le(buf->data + start + 16, (uint32_t)body);
    return 0;
}

static int fail(const char **why, const char *reason) {
    if (why != NULL)
        *why = reason;
    return DR_EPROTO;
}

int dr_wire_decode_header(const uint8_t *bytes, size_t len, dr_wire_header *out, const char **why) {
    if (bytes == NULL || len < DR_WIRE_HEADER_BYTES)
        return fail(why, "shorter than the header");
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    if (dr_reader_u32(&reader) != DR_WIRE_MAGIC)
        return fail(why, "bad magic");
    if (dr_reader_u8(&reader) != DR_WIRE_VERSION)
        return fail(why, "unsupported protocol version");
    out->type = dr_reader_u8(&reader);
    (void)dr_reader_u16(&reader);
    out->sender_id = dr_reader_u32(&reader);
    out->vid = (int32_t)dr_reader_u32(&reader);
    out->body_len = dr_reader_u32(&reader);
    if (out->type < DR_MSG_JOIN_REQUEST || out->type > DR_MSG_TYPE_MAX)
        return fail(why, "unknown message type");
    if (out->sender_id == DR_NODE_NONE)
        return fail(why, "reserved sender id");
    if (out->vid < DR_WIRE_NO_VIEW)
        return fail(why, "negative view id");
    if ((size_t)out->body_len != len - DR_WIRE_HEADER_BYTES)
        return fail(why, "body length does not match the frame");
    return 0;
}

/** Reads a short string into out (capacity cap, NUL-terminated); false on violation. */
static bool read_str(dr_reader *reader, char *out, size_t cap) {
    uint32_t len = 0;
    const uint8_t *text = dr_reader_blob(reader, (uint32_t)cap - 1, &len);
    if (text == NULL && len == 0 && reader->failed)
        return false;
    if (len > 0 && memchr(text, '\0', len) != NULL)
        return false;
    if (len > 0)
        memcpy(out, text, len);
    out[len] = '\0';
    return true;
}

int dr_wire_decode_join_request(const uint8_t *body, size_t len, dr_msg_join_request *out,
                                const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    if (!read_str(&reader, out->address, sizeof out->address) || out->address[0] == '\0')
        return fail(why, "JOIN_REQUEST: bad address");
    out->incarnation = dr_reader_u64(&reader);
    if (reader.failed || out->incarnation == 0)
        return fail(why, "JOIN_REQUEST: bad incarnation");
    return dr_reader_done(&reader) ? 0 : fail(why, "JOIN_REQUEST: trailing bytes");
}

int dr_wire_decode_join_redirect(const uint8_t *body, size_t len, dr_msg_join_redirect *out,
                                 const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    out->leader_id = dr_reader_u32(&reader);
    if (!read_str(&reader, out->address, sizeof out->address) || out->address[0] == '\0')
        return fail(why, "JOIN_REDIRECT: bad address");
    return dr_reader_done(&reader) ? 0 : fail(why, "JOIN_REDIRECT: trailing bytes");
}

int dr_wire_decode_join_accepted(const uint8_t *body, size_t len, dr_msg_join_accepted *out,
                                 const char **why) {
    out->num_contacts = 0;
    if (len == 0)
        return 0;
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    uint32_t n = dr_reader_u32(&reader);
    if (reader.failed || n == 0 || n > DR_WIRE_MAX_CONTACTS)
        return fail(why, "JOIN_ACCEPTED: bad contact count");
    for (uint32_t i = 0; i < n; i++)
        if (!read_str(&reader, out->contacts[i], DR_ADDRESS_MAX) || out->contacts[i][0] == '\0')
            return fail(why, "JOIN_ACCEPTED: bad contact address");
    out->num_contacts = n;
    return dr_reader_done(&reader) ? 0 : fail(why, "JOIN_ACCEPTED: trailing bytes");
}

int dr_wire_decode_join_refused(const uint8_t *body, size_t len, dr_msg_join_refused *out,
                                const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    out->code = (int32_t)dr_reader_u32(&reader);
    if (!read_str(&reader, out->reason, sizeof out->reason))
        return fail(why, "JOIN_REFUSED: bad reason");
    if (out->code >= 0)
        return fail(why, "JOIN_REFUSED: code is not an error");
    return dr_reader_done(&reader) ? 0 : fail(why, "JOIN_REFUSED: trailing bytes");
}

static bool view_has_duplicate(const dr_view *view, uint32_t upto) {
    for (uint32_t j = 0; j < upto; j++)
        if (view->member_ids[j] == view->member_ids[upto])
            return true;
    return false;
}

static bool decode_shard(dr_reader *reader, dr_shard_layout *shard) {
    shard->num_members = dr_reader_u32(reader);
    if (reader->failed || shard->num_members > DR_LAYOUT_MAX_SHARD_MEMBERS)
        return false;
    for (uint32_t m = 0; m < shard->num_members; m++) {
        shard->member_ids[m] = dr_reader_u32(reader);
        uint8_t sender = dr_reader_u8(reader);
        if (reader->failed || sender > 1)
            return false;
        shard->is_sender[m] = sender == 1;
        shard->num_senders += sender;
    }
    return true;
}

static int decode_assignment(dr_reader *reader, dr_msg_view *out, const char **why) {
    dr_layout *layout = &out->assignment;
    memset(layout, 0, sizeof *layout);
    layout->num_subgroups = dr_reader_u32(reader);
    if (reader->failed || layout->num_subgroups > DR_LAYOUT_MAX_SUBGROUPS)
        return fail(why, "VIEW: bad subgroup count");
    for (uint32_t s = 0; s < layout->num_subgroups; s++) {
        dr_subgroup_layout *sg = &layout->subgroups[s];
        sg->num_shards = dr_reader_u32(reader);
        if (reader->failed || sg->num_shards > DR_LAYOUT_MAX_SHARDS)
            return fail(why, "VIEW: bad shard count");
        for (uint32_t h = 0; h < sg->num_shards; h++)
            if (!decode_shard(reader, &sg->shards[h]))
                return fail(why, "VIEW: bad shard assignment");
    }
    out->has_assignment = true;
    return dr_reader_done(reader) ? 0 : fail(why, "VIEW: trailing bytes");
}

int dr_wire_decode_view(const uint8_t *body, size_t len, dr_msg_view *out, const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    memset(&out->view, 0, sizeof out->view);
    uint32_t count = dr_reader_u32(&reader);
    out->layout_fingerprint = dr_reader_u64(&reader);
    if (reader.failed || count == 0 || count > DR_VIEW_MAX_MEMBERS)
        return fail(why, "VIEW: bad member count");
    out->view.num_members = count;
    for (uint32_t i = 0; i < count; i++) {
        out->view.member_ids[i] = dr_reader_u32(&reader);
        uint8_t failed = dr_reader_u8(&reader);
        if (reader.failed || failed > 1 || out->view.member_ids[i] == DR_NODE_NONE)
            return fail(why, "VIEW: bad member entry");
        out->view.failed[i] = failed == 1;
        if (!read_str(&reader, out->view.addresses[i], DR_ADDRESS_MAX))
            return fail(why, "VIEW: bad member address");
        out->view.incarnations[i] = dr_reader_u64(&reader);
        if (reader.failed)
            return fail(why, "VIEW: bad member incarnation");
        if (view_has_duplicate(&out->view, i))
            return fail(why, "VIEW: duplicate member id");
    }
    out->has_assignment = false;
    if (dr_reader_done(&reader))
        return 0;
    return decode_assignment(&reader, out, why);
}

static int decode_proposal_members(dr_reader *reader, dr_view *next, bool empty, const char **why) {
    uint32_t count = dr_reader_u32(reader);
    if (reader->failed || (count == 0) != empty || count > DR_VIEW_MAX_MEMBERS)
        return fail(why, "PROPOSAL: bad member count");
    next->num_members = count;
    for (uint32_t i = 0; i < count; i++) {
        next->member_ids[i] = dr_reader_u32(reader);
        if (reader->failed || next->member_ids[i] == DR_NODE_NONE)
            return fail(why, "PROPOSAL: bad member entry");
        if (!read_str(reader, next->addresses[i], DR_ADDRESS_MAX))
            return fail(why, "PROPOSAL: bad member address");
        next->incarnations[i] = dr_reader_u64(reader);
        if (reader->failed)
            return fail(why, "PROPOSAL: bad member incarnation");
        if (view_has_duplicate(next, i))
            return fail(why, "PROPOSAL: duplicate member id");
    }
    return 0;
}

int dr_wire_decode_proposal(const uint8_t *body, size_t len, dr_msg_proposal *out,
                            const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    memset(&out->next, 0, sizeof out->next);
    out->kind = dr_reader_u8(&reader);
    out->ballot = (int64_t)dr_reader_u64(&reader);
    out->accepted_ballot = (int64_t)dr_reader_u64(&reader);
    if (reader.failed || out->kind > DR_PROPOSAL_REPORT || out->ballot <= 0 ||
        out->ballot > DR_BALLOT_MAX)
        return fail(why, "PROPOSAL: bad kind or ballot");
    bool report = out->kind == DR_PROPOSAL_REPORT;
    if (report ? (out->accepted_ballot < 0 || out->accepted_ballot >= out->ballot)
               : out->accepted_ballot != out->ballot)
        return fail(why, "PROPOSAL: bad accepted ballot");
    bool empty = report && out->accepted_ballot == DR_BALLOT_NONE;
    int rc = decode_proposal_members(&reader, &out->next, empty, why);
    if (rc != 0)
        return rc;
    out->num_trims = dr_reader_u32(&reader);
    if (reader.failed || out->num_trims > DR_WIRE_MAX_TRIMS)
        return fail(why, "PROPOSAL: bad trim count");
    for (uint32_t i = 0; i < out->num_trims; i++) {
        dr_trim_entry *t = &out->trims[i];
        t->subgroup = dr_reader_u32(&reader);
        t->shard = dr_reader_u32(&reader);
        t->sender = dr_reader_u32(&reader);
        t->trim = (int64_t)dr_reader_u64(&reader);
        if (reader.failed || t->subgroup >= DR_LAYOUT_MAX_SUBGROUPS ||
            t->shard >= DR_LAYOUT_MAX_SHARDS || t->sender >= DR_LAYOUT_MAX_SHARD_MEMBERS ||
            t->trim < -1 || t->trim > (int64_t)UINT32_MAX)
            return fail(why, "PROPOSAL: bad trim entry");
    }
    return dr_reader_done(&reader) ? 0 : fail(why, "PROPOSAL: trailing bytes");
}

int dr_wire_decode_sst_push(const uint8_t *body, size_t len, dr_msg_sst_push *out,
                            const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    out->row = dr_reader_u32(&reader);
    out->num_entries = dr_reader_u32(&reader);
    if (reader.failed)
        return fail(why, "SST_PUSH: truncated header");
    if (out->num_entries == 0 || out->num_entries > DR_WIRE_MAX_SST_ENTRIES)
        return fail(why, "SST_PUSH: bad entry count");
    if (dr_reader_remaining(&reader) != (size_t)out->num_entries * SST_ENTRY_BYTES)
        return fail(why, "SST_PUSH: entry bytes do not match the count");
    out->entries = dr_reader_bytes(&reader, (size_t)out->num_entries * SST_ENTRY_BYTES);
    return out->entries != NULL ? 0 : fail(why, "SST_PUSH: truncated entries");
}

void dr_wire_sst_entry(const dr_msg_sst_push *push, uint32_t i, dr_sst_entry *out) {
    assert(i < push->num_entries);
    const uint8_t *at = push->entries + (size_t)i * SST_ENTRY_BYTES;
    out->field = dr_load_u32le(at);
    out->value = (int64_t)dr_load_u64le(at + 4);
}

static bool stream_ids_ok(const dr_wire_limits *limits, uint32_t subgroup, uint32_t sender) {
    return subgroup < limits->max_subgroups && sender < limits->max_senders;
}

int dr_wire_decode_data(const uint8_t *body, size_t len, const dr_wire_limits *limits,
                        dr_msg_data *out, const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    out->subgroup = dr_reader_u32(&reader);
    out->sender_index = dr_reader_u32(&reader);
    out->index = dr_reader_u32(&reader);
    out->timestamp_us = dr_reader_u64(&reader);
    out->payload = dr_reader_blob(&reader, limits->max_payload_bytes, &out->len);
    if (reader.failed)
        return fail(why, "DATA: truncated or payload over max_payload_size");
    if (!stream_ids_ok(limits, out->subgroup, out->sender_index))
        return fail(why, "DATA: subgroup or sender index out of range");
    if (out->index > INT32_MAX)
        return fail(why, "DATA: index out of range");
    return dr_reader_done(&reader) ? 0 : fail(why, "DATA: trailing bytes");
}

int dr_wire_decode_nulls(const uint8_t *body, size_t len, const dr_wire_limits *limits,
                         dr_msg_nulls *out, const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    out->subgroup = dr_reader_u32(&reader);
    out->sender_index = dr_reader_u32(&reader);
    out->first_index = dr_reader_u32(&reader);
    out->count = dr_reader_u32(&reader);
    if (!dr_reader_done(&reader))
        return fail(why, "NULLS: wrong length");
    if (!stream_ids_ok(limits, out->subgroup, out->sender_index))
        return fail(why, "NULLS: subgroup or sender index out of range");
    if (out->count == 0 || (uint64_t)out->first_index + out->count > (uint64_t)INT32_MAX)
        return fail(why, "NULLS: bad range");
    return 0;
}

static bool block_geometry_ok(const dr_msg_block *msg, const dr_wire_limits *limits) {
    if (msg->total_len == 0 || msg->block_size == 0 || msg->block_size > limits->max_block_bytes)
        return false;
    uint32_t num_blocks =
        (uint32_t)(((uint64_t)msg->total_len + msg->block_size - 1) / msg->block_size);
    if (msg->block >= num_blocks)
        return false;
    uint64_t offset = (uint64_t)msg->block * msg->block_size;
    uint64_t expected =
        msg->total_len - offset < msg->block_size ? msg->total_len - offset : msg->block_size;
    return msg->len == expected;
}

int dr_wire_decode_block(const uint8_t *body, size_t len, const dr_wire_limits *limits,
                         dr_msg_block *out, const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, body, len);
    out->subgroup = dr_reader_u32(&reader);
    out->sender_index = dr_reader_u32(&reader);
    out->index = dr_reader_u32(&reader);
    out->timestamp_us = dr_reader_u64(&reader);
    out->total_len = dr_reader_u32(&reader);
    out->block_size = dr_reader_u32(&reader);
    out->block = dr_reader_u32(&reader);
    out->payload = dr_reader_blob(&reader, limits->max_block_bytes, &out->len);
    if (reader.failed)
        return fail(why, "BLOCK: truncated or block over block_size");
    if (!stream_ids_ok(limits, out->subgroup, out->sender_index) || out->index > INT32_MAX)
        return fail(why, "BLOCK: subgroup, sender or index out of range");
    if (out->total_len > limits->max_payload_bytes)
        return fail(why, "BLOCK: message over max_payload_size");
    if (!block_geometry_ok(out, limits))
        return fail(why, "BLOCK: inconsistent block geometry");
    return dr_reader_done(&reader) ? 0 : fail(why, "BLOCK: trailing bytes");
}

bool dr_wire_is_data(const uint8_t *bytes, size_t len) {
    if (len < DR_WIRE_HEADER_BYTES)
        return true;
    uint8_t type = bytes[5]; /* after u32 magic, u8 version */
    return type == DR_MSG_DATA || type == DR_MSG_NULLS || type == DR_MSG_BLOCK;
}

const char *dr_wire_type_name(uint8_t type) {
    static const char *const names[] = {"?",
                                        "JOIN_REQUEST",
                                        "JOIN_REDIRECT",
                                        "JOIN_REFUSED",
                                        "JOIN_ACCEPTED",
                                        "VIEW",
                                        "SST_PUSH",
                                        "DATA",
                                        "NULLS",
                                        "BLOCK",
                                        "HEARTBEAT",
                                        "PROPOSAL",
                                        "RESTART_REQUEST",
                                        "RESTART_PREPARE",
                                        "RESTART_ACK",
                                        "RESTART_COMMIT"};
    return type <= DR_MSG_TYPE_MAX ? names[type] : "?";
}
