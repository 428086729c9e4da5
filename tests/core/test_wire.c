/*
 * Unit tests of the core's wire messages (src/core/wire.c): round trips comparing every field
 * of every type, and garbage, truncated and inconsistent input rejected with a reason (never a
 * crash).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "core/wire.h"

static const dr_wire_limits limits = {
    .max_payload_bytes = 1000, .max_block_bytes = 100, .max_subgroups = 4, .max_senders = 8};

/** Decodes a whole frame of any type; returns 0 or DR_EPROTO. */
static int decode_any(const uint8_t *bytes, size_t len, const char **why) {
    dr_wire_header header;
    int rc = dr_wire_decode_header(bytes, len, &header, why);
    if (rc != 0)
        return rc;
    const uint8_t *body = bytes + DR_WIRE_HEADER_BYTES;
    union {
        dr_msg_join_request join;
        dr_msg_join_redirect redirect;
        dr_msg_join_refused refused;
        dr_msg_sst_push push;
        dr_msg_data data;
        dr_msg_nulls nulls;
        dr_msg_block block;
    } m;
    static dr_msg_view view;
    switch (header.type) {
    case DR_MSG_JOIN_REQUEST:
        return dr_wire_decode_join_request(body, header.body_len, &m.join, why);
    case DR_MSG_JOIN_REDIRECT:
        return dr_wire_decode_join_redirect(body, header.body_len, &m.redirect, why);
    case DR_MSG_JOIN_REFUSED:
        return dr_wire_decode_join_refused(body, header.body_len, &m.refused, why);
    case DR_MSG_JOIN_ACCEPTED:
        return header.body_len == 0 ? 0 : DR_EPROTO;
    case DR_MSG_VIEW:
        return dr_wire_decode_view(body, header.body_len, &view, why);
    case DR_MSG_SST_PUSH:
        return dr_wire_decode_sst_push(body, header.body_len, &m.push, why);
    case DR_MSG_DATA:
        return dr_wire_decode_data(body, header.body_len, &limits, &m.data, why);
    case DR_MSG_NULLS:
        return dr_wire_decode_nulls(body, header.body_len, &limits, &m.nulls, why);
    default:
        return dr_wire_decode_block(body, header.body_len, &limits, &m.block, why);
    }
}

/* The payload bytes of encode_all's DATA and BLOCK frames: no two neighbours equal. */
static void fill_payload(uint8_t *payload, size_t len) {
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
}

/** Encodes one valid frame of every type into bufs[]. Returns the count. */
static int encode_all(dr_buf *bufs) {
    int n = 0;
    for (int i = 0; i < 9; i++)
        dr_buf_init(&bufs[i], 0);
    dr_wire_encode_join_request(&bufs[n++], 5, "10.0.0.5:23580", 0x1234567890abcdefull);
    dr_wire_encode_join_redirect(&bufs[n++], 6, 1, "10.0.0.1:23580");
    dr_wire_encode_join_refused(&bufs[n++], 1, DR_EEXIST, "node id 5 is already in use");
    dr_wire_encode_join_accepted(&bufs[n++], 1);
    static dr_view view;
    memset(&view, 0, sizeof view);
    view.vid = 3;
    view.num_members = 2;
    view.member_ids[0] = 1;
    view.member_ids[1] = 5;
    view.failed[1] = true;
    strcpy(view.addresses[0], "a:1");
    strcpy(view.addresses[1], "b:2");
    view.incarnations[1] = 0xfeedull;
    dr_wire_encode_view(&bufs[n++], 1, &view, 0x1122334455667788ull);
    size_t count_offset;
    size_t start = dr_wire_begin_sst_push(&bufs[n], 5, 0, 1, &count_offset);
    dr_wire_put_sst_entry(&bufs[n], count_offset, 3, -1);
    dr_wire_put_sst_entry(&bufs[n], count_offset, 40, 1234567890123ll);
    dr_wire_finish(&bufs[n++], start);
    uint8_t payload[300];
    fill_payload(payload, sizeof payload);
    dr_msg_data data = {.subgroup = 1,
                        .sender_index = 2,
                        .index = 7,
                        .timestamp_us = 99,
                        .len = 300,
                        .payload = payload};
    dr_wire_encode_data(&bufs[n++], 5, 0, &data);
    dr_msg_nulls nulls = {.subgroup = 0, .sender_index = 1, .first_index = 3, .count = 4};
    dr_wire_encode_nulls(&bufs[n++], 5, 0, &nulls);
    dr_msg_block block = {.subgroup = 0,
                          .sender_index = 0,
                          .index = 2,
                          .timestamp_us = 5,
                          .total_len = 250,
                          .block_size = 100,
                          .block = 2,
                          .len = 50,
                          .payload = payload};
    dr_wire_encode_block(&bufs[n++], 5, 0, &block);
    return n;
}

/* Checks bufs[i]'s header (type, sender, vid, body length) and returns its body. */
static const uint8_t *checked_body(const dr_buf *buf, uint8_t type, uint32_t sender_id, int32_t vid,
                                   dr_wire_header *header) {
    assert_int_equal(dr_wire_decode_header(buf->data, buf->len, header, NULL), 0);
    assert_int_equal(header->type, type);
    assert_int_equal(header->sender_id, sender_id);
    assert_int_equal(header->vid, vid);
    assert_int_equal(header->body_len, buf->len - DR_WIRE_HEADER_BYTES);
    assert_int_equal(dr_core_peek_sender(buf->data, buf->len), sender_id);
    return buf->data + DR_WIRE_HEADER_BYTES;
}

/* Every field of every message type encode_all writes comes back from its decoder. */
static void test_round_trips(void **state) {
    (void)state;
    dr_buf bufs[9];
    int n = encode_all(bufs);
    assert_int_equal(n, 9);
    for (int i = 0; i < n; i++) {
        const char *why = NULL;
        assert_int_equal(decode_any(bufs[i].data, bufs[i].len, &why), 0);
    }
    dr_wire_header header;
    const uint8_t *body = checked_body(&bufs[0], DR_MSG_JOIN_REQUEST, 5, DR_WIRE_NO_VIEW, &header);
    dr_msg_join_request join;
    assert_int_equal(dr_wire_decode_join_request(body, header.body_len, &join, NULL), 0);
    assert_string_equal(join.address, "10.0.0.5:23580");
    assert_true(join.incarnation == 0x1234567890abcdefull);

    body = checked_body(&bufs[1], DR_MSG_JOIN_REDIRECT, 6, DR_WIRE_NO_VIEW, &header);
    dr_msg_join_redirect redirect;
    assert_int_equal(dr_wire_decode_join_redirect(body, header.body_len, &redirect, NULL), 0);
    assert_int_equal(redirect.leader_id, 1);
    assert_string_equal(redirect.address, "10.0.0.1:23580");

    body = checked_body(&bufs[2], DR_MSG_JOIN_REFUSED, 1, DR_WIRE_NO_VIEW, &header);
    dr_msg_join_refused refused;
    assert_int_equal(dr_wire_decode_join_refused(body, header.body_len, &refused, NULL), 0);
    assert_int_equal(refused.code, DR_EEXIST);
    assert_string_equal(refused.reason, "node id 5 is already in use");

    checked_body(&bufs[3], DR_MSG_JOIN_ACCEPTED, 1, DR_WIRE_NO_VIEW, &header);
    assert_int_equal(header.body_len, 0);

    body = checked_body(&bufs[4], DR_MSG_VIEW, 1, 3, &header);
    static dr_msg_view view;
    assert_int_equal(dr_wire_decode_view(body, header.body_len, &view, NULL), 0);
    assert_true(view.layout_fingerprint == 0x1122334455667788ull);
    assert_false(view.has_assignment);
    assert_int_equal(view.view.num_members, 2);
    assert_int_equal(view.view.member_ids[0], 1);
    assert_int_equal(view.view.member_ids[1], 5);
    assert_string_equal(view.view.addresses[0], "a:1");
    assert_string_equal(view.view.addresses[1], "b:2");
    assert_false(view.view.failed[0]);
    assert_true(view.view.failed[1]);
    assert_true(view.view.incarnations[0] == 0 && view.view.incarnations[1] == 0xfeedull);

    body = checked_body(&bufs[5], DR_MSG_SST_PUSH, 5, 0, &header);
    dr_msg_sst_push push;
    assert_int_equal(dr_wire_decode_sst_push(body, header.body_len, &push, NULL), 0);
    assert_int_equal(push.row, 1);
    assert_int_equal(push.num_entries, 2);
    dr_sst_entry entry;
    dr_wire_sst_entry(&push, 0, &entry);
    assert_int_equal(entry.field, 3);
    assert_true(entry.value == -1);
    dr_wire_sst_entry(&push, 1, &entry);
    assert_int_equal(entry.field, 40);
    assert_true(entry.value == 1234567890123ll);

    uint8_t payload[300];
    fill_payload(payload, sizeof payload);
    body = checked_body(&bufs[6], DR_MSG_DATA, 5, 0, &header);
    dr_msg_data data;
    assert_int_equal(dr_wire_decode_data(body, header.body_len, &limits, &data, NULL), 0);
    assert_int_equal(data.subgroup, 1);
    assert_int_equal(data.sender_index, 2);
    assert_int_equal(data.index, 7);
    assert_int_equal(data.timestamp_us, 99);
    assert_int_equal(data.len, 300);
    assert_memory_equal(data.payload, payload, 300);

    body = checked_body(&bufs[7], DR_MSG_NULLS, 5, 0, &header);
    dr_msg_nulls nulls;
    assert_int_equal(dr_wire_decode_nulls(body, header.body_len, &limits, &nulls, NULL), 0);
    assert_int_equal(nulls.subgroup, 0);
    assert_int_equal(nulls.sender_index, 1);
    assert_int_equal(nulls.first_index, 3);
    assert_int_equal(nulls.count, 4);

    body = checked_body(&bufs[8], DR_MSG_BLOCK, 5, 0, &header);
    dr_msg_block block;
    assert_int_equal(dr_wire_decode_block(body, header.body_len, &limits, &block, NULL), 0);
    assert_int_equal(block.subgroup, 0);
    assert_int_equal(block.sender_index, 0);
    assert_int_equal(block.index, 2);
    assert_int_equal(block.timestamp_us, 5);
    assert_int_equal(block.total_len, 250);
    assert_int_equal(block.block_size, 100);
    assert_int_equal(block.block, 2);
    assert_int_equal(block.len, 50);
    assert_memory_equal(block.payload, payload, 50);
    for (int i = 0; i < 9; i++)
        dr_buf_free(&bufs[i]);
}

/* PROPOSAL in its three kinds: every field round-trips; a report may carry no value; ballots out
 * of range and values inconsistent with the kind are rejected. */
static void test_proposal_kinds(void **state) {
    (void)state;
    dr_msg_proposal *in = calloc(1, sizeof *in), *out = calloc(1, sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    in->kind = DR_PROPOSAL_PROPOSE;
    in->ballot = in->accepted_ballot = dr_ballot_make(3, 2);
    in->next.num_members = 2;
    in->next.member_ids[0] = 7;
    in->next.member_ids[1] = 9;
    snprintf(in->next.addresses[0], DR_ADDRESS_MAX, "10.0.0.7:1");
    snprintf(in->next.addresses[1], DR_ADDRESS_MAX, "10.0.0.9:1");
    in->next.incarnations[1] = 0xabcdef01ull;
    in->num_trims = 1;
    in->trims[0] = (dr_trim_entry){.subgroup = 1, .shard = 2, .sender = 3, .trim = 41};
    for (uint8_t kind = DR_PROPOSAL_PROPOSE; kind <= DR_PROPOSAL_REPORT; kind++) {
        in->kind = kind;
        in->accepted_ballot = kind == DR_PROPOSAL_REPORT ? dr_ballot_make(1, 0) : in->ballot;
        dr_buf buf;
        dr_buf_init(&buf, 0);
        assert_int_equal(dr_wire_encode_proposal(&buf, 4, 8, in), 0);
        dr_wire_header header;
        const uint8_t *body = checked_body(&buf, DR_MSG_PROPOSAL, 4, 8, &header);
        assert_int_equal(dr_wire_decode_proposal(body, header.body_len, out, NULL), 0);
        assert_int_equal(out->kind, kind);
        assert_int_equal(out->ballot, in->ballot);
        assert_int_equal(out->accepted_ballot, in->accepted_ballot);
        assert_int_equal(out->next.num_members, 2);
        assert_int_equal(out->next.member_ids[1], 9);
        assert_string_equal(out->next.addresses[0], "10.0.0.7:1");
        assert_true(out->next.incarnations[0] == 0 && out->next.incarnations[1] == 0xabcdef01ull);
        assert_int_equal(out->num_trims, 1);
        assert_memory_equal(&out->trims[0], &in->trims[0], sizeof in->trims[0]);
        dr_buf_free(&buf);
    }
    assert_int_equal(dr_ballot_rank(in->ballot), 2);
    assert_int_equal(dr_ballot_round(in->ballot), 3);
    /* a report of nothing accepted: no members, no trims */
    in->kind = DR_PROPOSAL_REPORT;
    in->accepted_ballot = DR_BALLOT_NONE;
    in->next.num_members = 0;
    in->num_trims = 0;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    assert_int_equal(dr_wire_encode_proposal(&buf, 4, 8, in), 0);
    dr_wire_header header;
    const uint8_t *body = checked_body(&buf, DR_MSG_PROPOSAL, 4, 8, &header);
    assert_int_equal(dr_wire_decode_proposal(body, header.body_len, out, NULL), 0);
    assert_int_equal(out->next.num_members, 0);
    /* mutations: kind 3, ballot 0, a report claiming a ballot at or above the promise */
    const char *why = NULL;
    uint8_t *mutable = buf.data + DR_WIRE_HEADER_BYTES;
    mutable[0] = 3;
    assert_int_equal(dr_wire_decode_proposal(mutable, header.body_len, out, &why), DR_EPROTO);
    mutable[0] = DR_PROPOSAL_PROPOSE; /* accepted 0 != ballot */
    assert_int_equal(dr_wire_decode_proposal(mutable, header.body_len, out, &why), DR_EPROTO);
    assert_string_equal(why, "PROPOSAL: bad accepted ballot");
    mutable[0] = DR_PROPOSAL_REPORT;
    memset(mutable + 1, 0, 8); /* ballot 0 */
    assert_int_equal(dr_wire_decode_proposal(mutable, header.body_len, out, &why), DR_EPROTO);
    assert_string_equal(why, "PROPOSAL: bad kind or ballot");
    dr_buf_free(&buf);
    free(in);
    free(out);
}

/* JOIN_ACCEPTED may name other members (retry contacts); empty stays valid. */
static void test_join_accepted_contacts(void **state) {
    (void)state;
    char contacts[2][DR_ADDRESS_MAX] = {"10.0.0.2:23580", "10.0.0.3:23580"};
    dr_buf buf;
    dr_buf_init(&buf, 0);
    assert_int_equal(dr_wire_encode_join_accepted_contacts(&buf, 1, contacts, 2), 0);
    dr_wire_header header;
    const uint8_t *body = checked_body(&buf, DR_MSG_JOIN_ACCEPTED, 1, DR_WIRE_NO_VIEW, &header);
    dr_msg_join_accepted out;
    assert_int_equal(dr_wire_decode_join_accepted(body, header.body_len, &out, NULL), 0);
    assert_int_equal(out.num_contacts, 2);
    assert_string_equal(out.contacts[1], "10.0.0.3:23580");
    assert_int_equal(dr_wire_decode_join_accepted(body, 0, &out, NULL), 0);
    assert_int_equal(out.num_contacts, 0);
    const char *why = NULL;
    uint8_t bad[4] = {17, 0, 0, 0}; /* 17 contacts: over the limit */
    assert_int_equal(dr_wire_decode_join_accepted(bad, sizeof bad, &out, &why), DR_EPROTO);
    assert_string_equal(why, "JOIN_ACCEPTED: bad contact count");
    assert_int_equal(dr_wire_decode_join_accepted(body, header.body_len - 1, &out, &why),
                     DR_EPROTO);
    dr_buf_free(&buf);
}

static void test_every_truncation_rejected(void **state) {
    (void)state;
    dr_buf bufs[9];
    int n = encode_all(bufs);
    for (int i = 0; i < n; i++) {
        for (size_t len = 0; len < bufs[i].len; len++) {
            const char *why = NULL;
            assert_int_equal(decode_any(bufs[i].data, len, &why), DR_EPROTO);
            assert_non_null(why);
        }
        /* truncated body with a consistent header length */
        if (bufs[i].len > DR_WIRE_HEADER_BYTES) {
            uint8_t *copy = malloc(bufs[i].len);
            memcpy(copy, bufs[i].data, bufs[i].len);
            dr_store_u32le(copy + 16, (uint32_t)(bufs[i].len - DR_WIRE_HEADER_BYTES - 1));
            assert_int_equal(decode_any(copy, bufs[i].len - 1, NULL), DR_EPROTO);
            free(copy);
        }
        dr_buf_free(&bufs[i]);
    }
}

/* A block head followed by the payload slice is byte for byte the whole BLOCK frame. */
static void test_block_head_plus_slice_is_the_frame(void **state) {
    (void)state;
    uint8_t payload[250];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 13 + 1);
    dr_msg_block block = {.subgroup = 3,
                          .sender_index = 1,
                          .index = 9,
                          .timestamp_us = 77,
                          .total_len = 250,
                          .block_size = 100,
                          .block = 2,
                          .len = 50,
                          .payload = payload + 200};
    dr_buf whole, head;
    dr_buf_init(&whole, 0);
    dr_buf_init(&head, 0);
    assert_int_equal(dr_wire_encode_block(&whole, 5, 4, &block), 0);
    assert_int_equal(dr_wire_encode_block_head(&head, 5, 4, &block), 0);
    assert_int_equal(head.len + block.len, whole.len);
    assert_memory_equal(head.data, whole.data, head.len);
    assert_memory_equal(whole.data + head.len, block.payload, block.len);
    dr_buf_free(&whole);
    dr_buf_free(&head);
}

static void test_header_checks(void **state) {
    (void)state;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    dr_wire_encode_join_accepted(&buf, 3);
    const char *why = NULL;
    dr_wire_header header;
    buf.data[0] ^= 1;
    assert_int_equal(dr_wire_decode_header(buf.data, buf.len, &header, &why), DR_EPROTO);
    assert_string_equal(why, "bad magic");
    buf.data[0] ^= 1;
    buf.data[4] = DR_WIRE_VERSION + 1;
    assert_int_equal(dr_wire_decode_header(buf.data, buf.len, &header, &why), DR_EPROTO);
    assert_string_equal(why, "unsupported protocol version");
    buf.data[4] = DR_WIRE_VERSION;
    buf.data[5] = 200;
    assert_int_equal(dr_wire_decode_header(buf.data, buf.len, &header, &why), DR_EPROTO);
    assert_string_equal(why, "unknown message type");
    buf.data[5] = DR_MSG_JOIN_ACCEPTED;
    dr_store_u32le(buf.data + 16, 5);
    assert_int_equal(dr_wire_decode_header(buf.data, buf.len, &header, &why), DR_EPROTO);
    assert_int_equal(dr_core_peek_sender(buf.data, buf.len), DR_NODE_NONE);
    dr_buf_free(&buf);
}

/* The transport lanes (issue 11): DATA, NULLS and BLOCK are data, every other type control. */
static void test_data_or_control(void **state) {
    (void)state;
    dr_buf bufs[16];
    int n = encode_all(bufs);
    int data = 0;
    for (int i = 0; i < n; i++) {
        dr_wire_header header;
        assert_int_equal(dr_wire_decode_header(bufs[i].data, bufs[i].len, &header, NULL), 0);
        bool is_data = header.type == DR_MSG_DATA || header.type == DR_MSG_NULLS ||
                       header.type == DR_MSG_BLOCK;
        assert_int_equal(dr_wire_is_data(bufs[i].data, bufs[i].len), is_data);
        data += is_data;
        dr_buf_free(&bufs[i]);
    }
    assert_int_equal(data, 3);
    uint8_t header[DR_WIRE_HEADER_BYTES] = {0};
    for (uint8_t type = 1; type <= DR_MSG_TYPE_MAX; type++) {
        header[5] = type;
        assert_int_equal(dr_wire_is_data(header, sizeof header),
                         type == DR_MSG_DATA || type == DR_MSG_NULLS || type == DR_MSG_BLOCK);
    }
    header[5] = DR_MSG_VIEW;
    assert_true(dr_wire_is_data(header, 5)); /* shorter than a header: data (keeps its order) */
}

static void test_inconsistent_bodies_rejected(void **state) {
    (void)state;
    uint8_t payload[2000] = {0};
    dr_buf buf;
    dr_buf_init(&buf, 0);
    const char *why = NULL;
    /* DATA over max_payload */
    dr_msg_data data = {.len = 1001, .payload = payload};
    dr_wire_encode_data(&buf, 5, 0, &data);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    /* DATA with a subgroup out of range */
    dr_buf_reset(&buf);
    data = (dr_msg_data){.subgroup = 4, .len = 1, .payload = payload};
    dr_wire_encode_data(&buf, 5, 0, &data);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    /* NULLS with count 0 */
    dr_buf_reset(&buf);
    size_t start = dr_wire_begin(&buf, DR_MSG_NULLS, 5, 0);
    dr_buf_put_u32(&buf, 0);
    dr_buf_put_u32(&buf, 0);
    dr_buf_put_u32(&buf, 0);
    dr_buf_put_u32(&buf, 0);
    dr_wire_finish(&buf, start);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    /* BLOCK whose length does not match its position */
    dr_buf_reset(&buf);
    dr_msg_block block = {
        .total_len = 250, .block_size = 100, .block = 1, .len = 50, .payload = payload};
    dr_wire_encode_block(&buf, 5, 0, &block);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    assert_string_equal(why, "BLOCK: inconsistent block geometry");
    /* BLOCK number beyond the message */
    dr_buf_reset(&buf);
    block = (dr_msg_block){
        .total_len = 250, .block_size = 100, .block = 2, .len = 50, .payload = payload};
    dr_wire_encode_block(&buf, 5, 0, &block);
    assert_int_equal(decode_any(buf.data, buf.len, &why), 0);
    dr_store_u32le(buf.data + DR_WIRE_HEADER_BYTES + 28, 3); /* patch the block number */
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    /* SST push whose count disagrees with its bytes */
    dr_buf_reset(&buf);
    size_t count_offset;
    start = dr_wire_begin_sst_push(&buf, 5, 0, 1, &count_offset);
    dr_wire_put_sst_entry(&buf, count_offset, 1, 1);
    dr_store_u32le(buf.data + count_offset, 7);
    dr_wire_finish(&buf, start);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    /* VIEW with a duplicate member */
    dr_buf_reset(&buf);
    static dr_view view;
    memset(&view, 0, sizeof view);
    view.num_members = 2;
    view.member_ids[0] = view.member_ids[1] = 4;
    strcpy(view.addresses[0], "a");
    strcpy(view.addresses[1], "b");
    dr_wire_encode_view(&buf, 4, &view, 0);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    assert_string_equal(why, "VIEW: duplicate member id");
    /* JOIN_REQUEST with an address holding a NUL */
    dr_buf_reset(&buf);
    start = dr_wire_begin(&buf, DR_MSG_JOIN_REQUEST, 5, -1);
    dr_buf_put_blob(&buf, "a\0b", 3);
    dr_wire_finish(&buf, start);
    assert_int_equal(decode_any(buf.data, buf.len, &why), DR_EPROTO);
    dr_buf_free(&buf);
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t xorshift(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_random_garbage_and_mutations(void **state) {
    (void)state;
    dr_buf bufs[9];
    int n = encode_all(bufs);
    uint8_t scratch[600];
    for (int round = 0; round < 20000; round++) {
        const dr_buf *base = &bufs[round % n];
        size_t len = base->len < sizeof scratch ? base->len : sizeof scratch;
        memcpy(scratch, base->data, len);
        int flips = 1 + (int)(xorshift() % 4);
        for (int f = 0; f < flips; f++)
            scratch[xorshift() % len] = (uint8_t)xorshift();
        (void)decode_any(scratch, len, NULL); /* must not crash or read out of bounds */
        size_t random_len = xorshift() % sizeof scratch;
        for (size_t i = 0; i < random_len; i++)
            scratch[i] = (uint8_t)xorshift();
        assert_int_equal(decode_any(scratch, random_len, NULL), DR_EPROTO);
    }
    for (int i = 0; i < n; i++)
        dr_buf_free(&bufs[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_proposal_kinds),
        cmocka_unit_test(test_join_accepted_contacts),
        cmocka_unit_test(test_every_truncation_rejected),
        cmocka_unit_test(test_block_head_plus_slice_is_the_frame),
        cmocka_unit_test(test_header_checks),
        cmocka_unit_test(test_data_or_control),
        cmocka_unit_test(test_inconsistent_bodies_rejected),
        cmocka_unit_test(test_random_garbage_and_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
