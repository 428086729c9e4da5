/*
 * Unit tests of the rpc wire messages (src/rpc/wire.c) and of the pending-call registry
 * (src/rpc/calls.c): round trips, every truncation and trailing garbage rejected, random and
 * mutated bytes never crash a decoder, inconsistent views refused; replies matched by request id
 * and sender, early replies kept until delivery, DR_EREMOVED on peer-down and on a view without
 * the member, p2p windows.
 */
#include "rpc/calls.h"
#include "rpc/wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* Every proper prefix and the message plus one byte must fail `decode`. */
static void check_truncations(const dr_buf *msg, int (*decode)(const uint8_t *, size_t, void *),
                              void *scratch) {
    for (size_t len = 0; len < msg->len; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any overread */
        memcpy(copy, msg->data, len);
        assert_int_equal(decode(copy, len, scratch), DR_EPROTO);
        free(copy);
    }
    uint8_t *longer = malloc(msg->len + 1);
    memcpy(longer, msg->data, msg->len);
    longer[msg->len] = 0;
    assert_int_equal(decode(longer, msg->len + 1, scratch), DR_EPROTO);
    free(longer);
}

/* Random mutations of a valid message: decoders may accept or refuse, never misbehave. */
static void check_mutations(const dr_buf *msg, int (*decode)(const uint8_t *, size_t, void *),
                            void *scratch) {
    for (int round = 0; round < 3000; round++) {
        size_t len = msg->len;
        uint8_t *copy = malloc(len);
        memcpy(copy, msg->data, len);
        for (int flips = 1 + (int)(rng() % 4); flips > 0; flips--)
            copy[rng() % len] = (uint8_t)rng();
        int rc = decode(copy, len, scratch);
        assert_true(rc == DR_OK || rc == DR_EPROTO);
        free(copy);
    }
    for (int round = 0; round < 3000; round++) {
        size_t len = rng() % 300;
        uint8_t *garbage = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            garbage[i] = (uint8_t)rng();
        int rc = decode(garbage, len, scratch);
        assert_true(rc == DR_OK || rc == DR_EPROTO);
        free(garbage);
    }
}

static int decode_ordered(const uint8_t *b, size_t n, void *out) {
    return rpc_decode_ordered(b, n, out);
}
static int decode_p2p(const uint8_t *b, size_t n, void *out) {
    return rpc_decode_p2p_request(b, n, out);
}
static int decode_reply(const uint8_t *b, size_t n, void *out) {
    return rpc_decode_reply(b, n, out);
}
static int decode_view(const uint8_t *b, size_t n, void *out) {
    return rpc_decode_view_reply(b, n, out);
}
static int decode_state(const uint8_t *b, size_t n, void *out) {
    return rpc_decode_state_chunk(b, n, out);
}

static void test_ordered_round_trip(void **state) {
    (void)state;
    dr_buf msg;
    dr_buf_init(&msg, 0);
    assert_int_equal(rpc_encode_ordered(&msg, 0x1122334455667788ull, 7, 0xdeadbeef, "args", 4), 0);
    assert_int_equal(msg.len, RPC_ORDERED_HEADER_SIZE + 4);
    assert_int_equal(dr_load_u32le(msg.data), RPC_ORDERED_MAGIC); /* little-endian on the wire */
    rpc_ordered_msg out;
    assert_int_equal(rpc_decode_ordered(msg.data, msg.len, &out), 0);
    assert_true(out.request_id == 0x1122334455667788ull);
    assert_int_equal(out.caller_id, 7);
    assert_int_equal(out.method_id, 0xdeadbeef);
    assert_int_equal(out.args_len, 4);
    assert_memory_equal(out.args, "args", 4);
    check_truncations(&msg, decode_ordered, &out);
    check_mutations(&msg, decode_ordered, &out);
    dr_buf head; /* the head alone, for arguments placed after it by the caller */
    dr_buf_init(&head, 0);
    assert_int_equal(rpc_encode_ordered_head(&head, 0x1122334455667788ull, 7, 0xdeadbeef, 4), 0);
    assert_int_equal(head.len, RPC_ORDERED_HEADER_SIZE);
    assert_memory_equal(head.data, msg.data, RPC_ORDERED_HEADER_SIZE);
    dr_buf_free(&head);
    msg.data[4] = 2; /* unknown version */
    assert_int_equal(rpc_decode_ordered(msg.data, msg.len, &out), DR_EPROTO);
    dr_buf_free(&msg);
    /* a limited buffer refuses oversized arguments */
    dr_buf small;
    dr_buf_init(&small, 64);
    uint8_t big[100] = {0};
    assert_int_equal(rpc_encode_ordered(&small, 1, 1, 1, big, sizeof big), DR_ETOOBIG);
    dr_buf_free(&small);
}

static void test_p2p_and_reply_round_trip(void **state) {
    (void)state;
    dr_buf msg;
    dr_buf_init(&msg, 0);
    assert_int_equal(rpc_encode_p2p_request(&msg, 42, 3, dr_rpc_method_id("get"), "k", 1), 0);
    rpc_p2p_request request;
    assert_int_equal(rpc_decode_p2p_request(msg.data, msg.len, &request), 0);
    assert_int_equal(request.request_id, 42);
    assert_int_equal(request.subgroup, 3);
    assert_int_equal(request.method_id, dr_rpc_method_id("get"));
    assert_int_equal(request.args_len, 1);
    check_truncations(&msg, decode_p2p, &request);
    check_mutations(&msg, decode_p2p, &request);
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_p2p_request(&msg, 43, 0, 1, NULL, 0), 0); /* no arguments */
    assert_int_equal(rpc_decode_p2p_request(msg.data, msg.len, &request), 0);
    assert_int_equal(request.args_len, 0);

    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_reply(&msg, 9, DR_ENOTFOUND, "why", 3), 0);
    rpc_reply_msg reply;
    assert_int_equal(rpc_decode_reply(msg.data, msg.len, &reply), 0);
    assert_int_equal(reply.request_id, 9);
    assert_int_equal(reply.status, DR_ENOTFOUND);
    assert_int_equal(reply.len, 3);
    check_truncations(&msg, decode_reply, &reply);
    check_mutations(&msg, decode_reply, &reply);
    dr_store_u32le(msg.data + 8, 5); /* a positive status is not a status */
    assert_int_equal(rpc_decode_reply(msg.data, msg.len, &reply), DR_EPROTO);
    assert_int_equal(rpc_encode_reply(&msg, 1, 3, NULL, 0), DR_EINVAL);
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_view_query(&msg), 0);
    assert_int_equal(rpc_decode_view_query(msg.data, msg.len), 0);
    assert_int_equal(rpc_decode_view_query(msg.data, msg.len - 1), DR_EPROTO);
    dr_buf_free(&msg);
    /* FNV-1a, 32 bits */
    assert_int_equal(dr_rpc_method_id(""), 2166136261u);
    assert_int_equal(dr_rpc_method_id("a"), 0xe40c292cu);
}

static void make_view(rpc_view_info *info) {
    memset(info, 0, sizeof *info);
    info->view.my_id = 2;
    info->p2p_window = 16;
    info->max_p2p_request = 10240;
    info->max_p2p_reply = 1u << 20;
    info->num_types = 2;
    strcpy(info->type_names[0], "KV");
    strcpy(info->type_names[1], "CACHE");
    dr_view *view = &info->view.view;
    view->vid = 5;
    view->num_members = 4;
    for (uint32_t m = 0; m < 4; m++) {
        view->member_ids[m] = 10 + m;
        snprintf(view->addresses[m], DR_ADDRESS_MAX, "127.0.0.1:%u", 44000 + m);
    }
    view->failed[3] = true;
    dr_layout *layout = &info->view.layout;
    layout->adequate = true;
    layout->num_assigned = 4;
    layout->num_subgroups = 2;
    layout->subgroups[0] = (dr_subgroup_layout){.type_index = 0, .num_shards = 1};
    layout->subgroups[0].shards[0] = (dr_shard_layout){.num_members = 3,
                                                       .member_ids = {10, 11, 12},
                                                       .is_sender = {true, true, false},
                                                       .num_senders = 2,
                                                       .min_nodes = 2,
                                                       .max_nodes = 3};
    layout->subgroups[1] = (dr_subgroup_layout){.type_index = 1, .num_shards = 1};
    layout->subgroups[1].shards[0] = (dr_shard_layout){.num_members = 1,
                                                       .member_ids = {13},
                                                       .is_sender = {true},
                                                       .num_senders = 1,
                                                       .mode = DR_MODE_RAW,
                                                       .min_nodes = 1,
                                                       .max_nodes = 1};
}

static void test_view_round_trip(void **state) {
    (void)state;
    rpc_view_info *info = malloc(sizeof *info), *out = malloc(sizeof *out);
    make_view(info);
    dr_buf msg;
    dr_buf_init(&msg, 0);
    assert_int_equal(rpc_encode_view_reply(&msg, info), 0);
    assert_int_equal(rpc_decode_view_reply(msg.data, msg.len, out), 0);
    assert_int_equal(out->view.my_id, 2);
    assert_int_equal(out->num_types, 2);
    assert_string_equal(out->type_names[1], "CACHE");
    assert_int_equal(out->view.view.vid, 5);
    assert_int_equal(out->view.view.num_members, 4);
    assert_string_equal(out->view.view.addresses[2], "127.0.0.1:44002");
    assert_true(out->view.view.failed[3]);
    assert_int_equal(out->view.layout.num_subgroups, 2);
    assert_int_equal(out->view.layout.subgroups[0].shards[0].num_senders, 2);
    assert_int_equal(out->view.layout.subgroups[1].shards[0].mode, DR_MODE_RAW);
    assert_int_equal(dr_layout_find_shard(&out->view.layout, 0, 12, NULL), 0);
    assert_true(out->max_p2p_reply == 1u << 20);
    check_truncations(&msg, decode_view, out);
    check_mutations(&msg, decode_view, out);
    /* a shard member that is not in the view is refused */
    info->view.layout.subgroups[0].shards[0].member_ids[2] = 99;
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_view_reply(&msg, info), 0);
    assert_int_equal(rpc_decode_view_reply(msg.data, msg.len, out), DR_EPROTO);
    /* too many shards cannot even be encoded */
    make_view(info);
    info->view.layout.subgroups[0].num_shards = DR_LAYOUT_MAX_SHARDS + 1;
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_view_reply(&msg, info), DR_EINVAL);
    dr_buf_free(&msg);
    free(info);
    free(out);
}

/* State-transfer chunks: round trip, and chunks outside their total are refused both ways. */
static void test_state_chunk_round_trip(void **state) {
    (void)state;
    const char *text = "replicated state";
    rpc_state_chunk chunk = {.vid = 7,
                             .subgroup = 2,
                             .status = 0,
                             .total = 100,
                             .offset = 40,
                             .bytes = (const uint8_t *)text,
                             .len = strlen(text)};
    dr_buf msg;
    dr_buf_init(&msg, 0);
    assert_int_equal(rpc_encode_state_chunk(&msg, &chunk), 0);
    rpc_state_chunk out;
    assert_int_equal(rpc_decode_state_chunk(msg.data, msg.len, &out), 0);
    assert_int_equal(out.vid, 7);
    assert_int_equal(out.subgroup, 2);
    assert_int_equal(out.status, 0);
    assert_int_equal(out.total, 100);
    assert_int_equal(out.offset, 40);
    assert_int_equal(out.len, strlen(text));
    assert_memory_equal(out.bytes, text, out.len);
    check_truncations(&msg, decode_state, &out);
    check_mutations(&msg, decode_state, &out);
    /* the head alone (a sender sends the state slice after it, uncopied): the same bytes */
    dr_buf head;
    dr_buf_init(&head, 0);
    assert_int_equal(rpc_encode_state_chunk_head(&head, &chunk), 0);
    assert_int_equal(head.len, RPC_STATE_CHUNK_HEAD_SIZE);
    assert_int_equal(head.len + chunk.len, msg.len);
    assert_memory_equal(head.data, msg.data, head.len);
    assert_memory_equal(msg.data + head.len, text, chunk.len);
    dr_buf_free(&head);
    /* a chunk past its total, a positive status: not encodable */
    chunk.offset = 90;
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_state_chunk(&msg, &chunk), DR_EINVAL);
    chunk.offset = 0;
    chunk.status = 3;
    assert_int_equal(rpc_encode_state_chunk(&msg, &chunk), DR_EINVAL);
    /* a failure notice carries the sender's error and no bytes */
    chunk = (rpc_state_chunk){.vid = 1, .status = DR_ETOOBIG};
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_state_chunk(&msg, &chunk), 0);
    assert_int_equal(rpc_decode_state_chunk(msg.data, msg.len, &out), 0);
    assert_int_equal(out.status, DR_ETOOBIG);
    assert_int_equal(out.len, 0);
    /* a forged total smaller than offset + len is refused on decode */
    chunk = (rpc_state_chunk){.vid = 1, .total = 4, .bytes = (const uint8_t *)text, .len = 4};
    dr_buf_reset(&msg);
    assert_int_equal(rpc_encode_state_chunk(&msg, &chunk), 0);
    msg.data[16] = 3; /* total's low byte: 4 -> 3 */
    assert_int_equal(rpc_decode_state_chunk(msg.data, msg.len, &out), DR_EPROTO);
    dr_buf_free(&msg);
}

/* ---- registry ------------------------------------------------------------------------------- */

static rpc_reply_msg reply_of(uint64_t id, int status, const char *text) {
    return (rpc_reply_msg){
        .request_id = id, .status = status, .bytes = (const uint8_t *)text, .len = strlen(text)};
}

static void test_results_early_removed_and_view(void **state) {
    (void)state;
    rpc_registry *reg = NULL;
    assert_int_equal(rpc_registry_create(&reg), 0);
    dr_rpc_results *results = NULL;
    uint64_t id = 0;
    assert_int_equal(rpc_results_new(reg, &results, &id), 0);
    assert_int_equal(dr_rpc_results_count(results, 0), 0); /* not delivered yet */
    rpc_reply_msg early = reply_of(id, 0, "two");
    rpc_reply_arrived(reg, true, 2, &early, 100); /* before my own delivery */
    rpc_reply_msg wrong_kind = reply_of(id, 0, "p2p");
    rpc_reply_arrived(reg, false, 2, &wrong_kind, 100); /* a p2p reply cannot fill it */
    rpc_peer_down(reg, 3);
    uint32_t members[] = {0, 1, 2, 3, 4};
    rpc_results_delivered(reg, id, (7ll << 32) | 9, members, 5);
    assert_int_equal(dr_rpc_results_count(results, 0), 5);
    assert_true(dr_rpc_results_version(results) == ((7ll << 32) | 9));
    dr_rpc_reply reply;
    assert_int_equal(dr_rpc_results_wait(results, 2, 0, &reply), 0);
    assert_int_equal(reply.node_id, 2);
    assert_int_equal(reply.status, 0);
    assert_memory_equal(reply.bytes, "two", 3);
    dr_rpc_reply_clear(&reply);
    assert_int_equal(dr_rpc_results_wait(results, 3, 0, &reply), 0); /* down before delivery */
    assert_int_equal(reply.status, DR_EREMOVED);
    assert_int_equal(dr_rpc_results_wait(results, 0, 10, &reply), DR_ETIMEDOUT);
    assert_int_equal(dr_rpc_results_wait(results, 5, 0, &reply), DR_EINVAL);
    rpc_reply_msg zero = reply_of(id, DR_ENOTFOUND, "");
    rpc_reply_arrived(reg, true, 0, &zero, 100);
    rpc_reply_msg stranger = reply_of(id, 0, "who");
    rpc_reply_arrived(reg, true, 77, &stranger, 100); /* not in the shard: dropped */
    rpc_reply_msg large = reply_of(id, 0, "far too long");
    rpc_reply_arrived(reg, true, 1, &large, 4);
    assert_int_equal(dr_rpc_results_wait(results, 0, 0, &reply), 0);
    assert_int_equal(reply.status, DR_ENOTFOUND);
    assert_int_equal(dr_rpc_results_wait(results, 1, 0, &reply), 0);
    assert_int_equal(reply.status, DR_ETOOBIG);
    dr_view view = {.vid = 8, .num_members = 4, .member_ids = {0, 1, 2, 3}};
    rpc_view_changed(reg, &view); /* member 4 left */
    assert_int_equal(dr_rpc_results_wait(results, 4, 0, &reply), 0);
    assert_int_equal(reply.status, DR_EREMOVED);
    dr_rpc_results_free(results);
    rpc_registry_close(reg, DR_ECLOSED);
}

static void test_p2p_window_and_close(void **state) {
    (void)state;
    rpc_registry *reg = NULL;
    assert_int_equal(rpc_registry_create(&reg), 0);
    dr_rpc_pending *first = NULL, *second = NULL, *other = NULL;
    uint64_t id1 = 0, id2 = 0, id3 = 0;
    assert_int_equal(rpc_pending_new(reg, 5, 1, 0, &first, &id1), 0);
    assert_int_equal(rpc_pending_new(reg, 5, 1, 20, &second, &id2), DR_ETIMEDOUT); /* window */
    assert_int_equal(rpc_pending_new(reg, 6, 1, 0, &other, &id3), 0); /* other target: own */
    rpc_reply_msg wrong_sender = reply_of(id1, 0, "x");
    rpc_reply_arrived(reg, false, 6, &wrong_sender, 100);
    dr_rpc_reply reply;
    assert_int_equal(dr_rpc_pending_wait(first, 10, &reply), DR_ETIMEDOUT);
    rpc_reply_msg answer = reply_of(id1, 0, "ok");
    rpc_reply_arrived(reg, false, 5, &answer, 100);
    assert_int_equal(dr_rpc_pending_wait(first, 0, &reply), 0);
    assert_memory_equal(reply.bytes, "ok", 2);
    dr_rpc_reply_clear(&reply);
    dr_rpc_pending_free(first);
    assert_int_equal(rpc_pending_new(reg, 5, 1, 0, &second, &id2), 0); /* slot released */
    rpc_peer_down(reg, 5);
    assert_int_equal(dr_rpc_pending_wait(second, 0, &reply), DR_EREMOVED);
    dr_rpc_pending_free(second);
    rpc_registry_close(reg, DR_ECLOSED); /* `other` outlives its registry's owner */
    assert_int_equal(dr_rpc_pending_wait(other, 0, &reply), DR_ECLOSED);
    dr_rpc_pending_free(other);
}

/*
 * The down mark behind dr_rpc_node_peer_down: set when a connection goes down, cleared by a
 * frame from the node, and forgotten once a view without the node is installed (its true case
 * lasts only between the close and that view: the process tests cannot hold it open).
 */
static void test_peer_down_mark(void **state) {
    (void)state;
    rpc_registry *reg = NULL;
    assert_int_equal(rpc_registry_create(&reg), 0);
    assert_false(rpc_peer_is_down(reg, 4));
    rpc_peer_down(reg, 4);
    rpc_peer_down(reg, 6);
    assert_true(rpc_peer_is_down(reg, 4));
    assert_true(rpc_peer_is_down(reg, 6));
    assert_false(rpc_peer_is_down(reg, 5)); /* only the nodes whose connection closed */
    rpc_peer_alive(reg, 4);                 /* a frame from 4: it is back */
    assert_false(rpc_peer_is_down(reg, 4));
    assert_true(rpc_peer_is_down(reg, 6));
    static dr_view view; /* the next view has no node 6: its mark is forgotten */
    memset(&view, 0, sizeof view);
    view.vid = 3;
    view.num_members = 2;
    view.member_ids[0] = 4;
    view.member_ids[1] = 5;
    rpc_view_changed(reg, &view);
    assert_false(rpc_peer_is_down(reg, 6));
    rpc_peer_down(reg, 5); /* a member of the current view goes down: marked until a view */
    assert_true(rpc_peer_is_down(reg, 5));
    view.vid = 4;
    view.num_members = 1;
    rpc_view_changed(reg, &view);
    assert_false(rpc_peer_is_down(reg, 5));
    rpc_registry_close(reg, DR_ECLOSED);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordered_round_trip),
        cmocka_unit_test(test_p2p_and_reply_round_trip),
        cmocka_unit_test(test_view_round_trip),
        cmocka_unit_test(test_state_chunk_round_trip),
        cmocka_unit_test(test_results_early_removed_and_view),
        cmocka_unit_test(test_peer_down_mark),
        cmocka_unit_test(test_p2p_window_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
