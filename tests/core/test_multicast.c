/*
 * Unit tests of ordered and raw multicast (src/core/multicast.c, pipeline.c): sequence numbers
 * and versions, null messages for silent senders, the sending window and WINDOW_OPEN, large
 * messages cut into blocks and reassembled under every relay scheme, raw FIFO delivery, send
 * errors, and the relay schedules themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core_internal.h"
#include "derecho/log.h"
#include "harness.h"

static harness *cluster(uint32_t n, const dr_core_options *options) {
    harness *h = calloc(1, sizeof *h);
    assert_non_null(h);
    h_cluster(h, n, options);
    for (uint32_t i = 0; i < n; i++)
        assert_true(h->nodes[i].installed);
    return h;
}

static void done(harness *h) {
    assert_int_equal(h->rejected, 0);
    h_free(h);
    free(h);
}

static void send_ok(harness *h, uint32_t node, uint32_t subgroup, const char *text,
                    dr_delivery_mode mode) {
    assert_int_equal(
        dr_core_send(h->nodes[node].core, subgroup, text, strlen(text), mode, h->now_us), 0);
    h_drain(h, node);
}

static void test_one_sender_sequence_and_nulls(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 3);
    harness *h = cluster(3, &options);
    /* only the member of rank 1 sends: seq = i*3 + 1; the others must send nulls */
    send_ok(h, 1, 0, "a", DR_MODE_ORDERED);
    send_ok(h, 1, 0, "b", DR_MODE_ORDERED);
    send_ok(h, 1, 0, "c", DR_MODE_ORDERED);
    h_pump(h, (size_t)-1);
    for (uint32_t n = 0; n < 3; n++) {
        h_node *node = &h->nodes[n];
        assert_int_equal(node->num_deliveries, 3);
        for (uint32_t i = 0; i < 3; i++) {
            h_delivery *d = &node->deliveries[i];
            assert_int_equal(d->sender_id, 11);
            assert_int_equal(d->sender_index, 1);
            assert_int_equal(d->index, i);
            assert_int_equal(d->version, (int64_t)i * 3 + 1); /* vid 0 */
            assert_int_equal(d->len, 1);
            assert_int_equal(d->bytes[0], "abc"[i]);
        }
    }
    dr_core_stats stats;
    dr_core_get_stats(h->nodes[0].core, &stats);
    /* eager nulls (multicast.c): a silent rank fills every round the sender used, 0..2 */
    assert_int_equal(stats.nulls_sent, 3);
    dr_core_get_stats(h->nodes[2].core, &stats);
    assert_int_equal(stats.nulls_sent, 3); /* also 0..2, although round 2 comes after seq 7 */
    assert_int_equal(stats.messages_delivered, 3);
    done(h);
}

static void test_interleaved_senders_total_order(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 4);
    options.window_size = 3;
    harness *h = cluster(4, &options);
    char text[16];
    uint32_t sent[4] = {0};
    for (uint32_t round = 0; round < 40; round++) {
        uint32_t node = (round * 7 + round / 3) % 4;
        snprintf(text, sizeof text, "%u-%u", node, sent[node]);
        int rc =
            dr_core_send(h->nodes[node].core, 0, text, strlen(text), DR_MODE_ORDERED, h->now_us);
        assert_true(rc == 0 || rc == DR_EAGAIN);
        sent[node] += rc == 0 ? 1u : 0u;
        h_drain(h, node);
        h_pump(h, round % 5); /* partial progress between sends */
    }
    h_pump(h, (size_t)-1);
    uint32_t total = sent[0] + sent[1] + sent[2] + sent[3];
    for (uint32_t n = 0; n < 4; n++)
        assert_true(sent[n] > 0); /* not a vacuous pass: every sender got messages through */
    for (uint32_t n = 0; n < 4; n++) {
        h_node *node = &h->nodes[n];
        assert_int_equal(node->num_deliveries, total);
        for (uint32_t i = 0; i < total; i++) {
            h_delivery *a = &node->deliveries[i], *b = &h->nodes[0].deliveries[i];
            assert_int_equal(a->version, b->version);
            assert_int_equal(a->sender_id, b->sender_id);
            assert_memory_equal(a->bytes, b->bytes, a->len);
            if (i > 0)
                assert_true(a->version > node->deliveries[i - 1].version);
        }
    }
    done(h);
}

static void test_window_full_then_open(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 2);
    options.window_size = 2;
    harness *h = cluster(2, &options);
    send_ok(h, 0, 0, "1", DR_MODE_ORDERED);
    send_ok(h, 0, 0, "2", DR_MODE_ORDERED);
    /* nothing delivered at the peer yet: the third send must wait */
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "3", 1, DR_MODE_ORDERED, h->now_us),
                     DR_EAGAIN);
    assert_int_equal(h->nodes[0].window_open[0], 0);
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[0].window_open[0], 1); /* signalled once */
    send_ok(h, 0, 0, "3", DR_MODE_ORDERED);
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[1].num_deliveries, 3);
    assert_int_equal(h->nodes[1].deliveries[2].bytes[0], '3');
    done(h);
}

/* Byte window (issue 13): 64 slots, but at most 100 bytes of undelivered messages per sender
 * (two messages always allowed); opens again once the peer delivered them. */
static void test_byte_window_full_then_open(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 2);
    options.window_size = 64;
    options.window_bytes = 100;
    harness *h = cluster(2, &options);
    char big[300];
    memset(big, 'b', sizeof big);
    send_ok(h, 0, 0, "forty bytes of text, forty bytes of text", DR_MODE_ORDERED);
    send_ok(h, 0, 0, "forty bytes of text, forty bytes of text", DR_MODE_ORDERED); /* 80 B */
    send_ok(h, 0, 0, "twenty bytes of text", DR_MODE_ORDERED); /* 100 B in flight now */
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "x", 1, DR_MODE_ORDERED, h->now_us),
                     DR_EAGAIN); /* the slots allow it, the bytes do not */
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[0].window_open[0], 1);
    assert_int_equal(h->nodes[1].num_deliveries, 3);
    /* a message larger than the window goes, and a second one beside it (double-buffered) */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            dr_core_send(h->nodes[0].core, 0, big, sizeof big, DR_MODE_ORDERED, h->now_us), 0);
        h_drain(h, 0); /* its frames into the network */
    }
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "y", 1, DR_MODE_ORDERED, h->now_us),
                     DR_EAGAIN);
    h_pump(h, (size_t)-1);
    send_ok(h, 0, 0, "y", DR_MODE_ORDERED);
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[1].num_deliveries, 6);
    assert_int_equal(h->nodes[1].deliveries[5].bytes[0], 'y');
    done(h);
}

static void check_large_message(dr_pipeline_algorithm algorithm, uint32_t members) {
    dr_core_options options;
    h_options(&options, members);
    options.pipeline = algorithm;
    options.max_smc_payload_size = 100;
    options.block_size = 64;
    harness *h = cluster(members, &options);
    size_t len = 5000; /* 79 blocks, the last one partial */
    uint8_t *payload = malloc(len);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 37 + 5);
    uint32_t sender = members - 1;
    assert_int_equal(dr_core_send(h->nodes[sender].core, 0, payload, len, DR_MODE_ORDERED, 1), 0);
    h_drain(h, sender);
    send_ok(h, 0, 0, "small after large", DR_MODE_ORDERED);
    h_pump(h, (size_t)-1);
    /* total order: the large message sits at the same position everywhere */
    uint32_t big_at = h->nodes[0].deliveries[0].len == len ? 0 : 1;
    for (uint32_t n = 0; n < members; n++) {
        h_node *node = &h->nodes[n];
        assert_int_equal(node->num_deliveries, 2);
        h_delivery *big = &node->deliveries[big_at], *small = &node->deliveries[1 - big_at];
        assert_int_equal(big->len, len);
        assert_int_equal(small->len, strlen("small after large"));
        assert_memory_equal(small->bytes, "small after large", small->len);
        assert_int_equal(small->sender_id, h->nodes[0].id);
        assert_int_equal(big->version, h->nodes[0].deliveries[big_at].version);
        assert_memory_equal(big->bytes, payload, len);
        assert_int_equal(big->sender_id, h->nodes[sender].id);
    }
    free(payload);
    done(h);
}

static void test_large_messages_all_pipelines(void **state) {
    (void)state;
    for (uint32_t members = 1; members <= 5; members++) {
        check_large_message(DR_PIPELINE_SEQUENTIAL, members);
        check_large_message(DR_PIPELINE_CHAIN, members);
        check_large_message(DR_PIPELINE_TREE, members);
    }
}

static void test_raw_mode_fifo_without_versions(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 3);
    options.layout.types[0].policy.mode = DR_MODE_RAW;
    harness *h = cluster(3, &options);
    send_ok(h, 2, 0, "x", DR_MODE_RAW);
    send_ok(h, 2, 0, "y", DR_MODE_RAW);
    h_pump(h, (size_t)-1);
    for (uint32_t n = 0; n < 3; n++) {
        assert_int_equal(h->nodes[n].num_deliveries, 2);
        assert_int_equal(h->nodes[n].deliveries[0].bytes[0], 'x');
        assert_int_equal(h->nodes[n].deliveries[1].bytes[0], 'y');
        assert_int_equal(h->nodes[n].deliveries[1].version, -1);
    }
    dr_core_stats stats;
    dr_core_get_stats(h->nodes[0].core, &stats);
    assert_int_equal(stats.nulls_sent, 0); /* raw streams need no nulls */
    done(h);
}

static void test_send_errors(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 2);
    harness *h = calloc(1, sizeof *h);
    h_add(h, 10, &options, "n0");
    assert_int_equal(dr_core_send(h->nodes[0].core, 0, "a", 1, DR_MODE_ORDERED, 0), DR_EAGAIN);
    h_add(h, 11, &options, "n0");
    h_pump(h, (size_t)-1);
    dr_core *core = h->nodes[0].core;
    uint8_t *big = calloc(1, options.max_payload_size + 1);
    assert_int_equal(dr_core_send(core, 0, big, options.max_payload_size + 1, DR_MODE_ORDERED, 0),
                     DR_ETOOBIG);
    free(big);
    assert_int_equal(dr_core_send(core, 0, "a", 1, DR_MODE_RAW, 0), DR_EINVAL);
    assert_int_equal(dr_core_send(core, 5, "a", 1, DR_MODE_ORDERED, 0), DR_EINVAL);
    assert_int_equal(dr_core_send(core, 0, NULL, 1, DR_MODE_ORDERED, 0), DR_EINVAL);
    assert_int_equal(dr_core_send(core, 0, NULL, 0, DR_MODE_ORDERED, 0), 0); /* empty is fine */
    h_drain(h, 0);
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[1].num_deliveries, 1);
    assert_int_equal(h->nodes[1].deliveries[0].len, 0);
    done(h);
}

static void test_non_member_of_subgroup_cannot_send(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 1);
    options.layout.num_types = 2; /* node 10 in subgroup 0, node 11 in subgroup 1 */
    options.layout.types[1] = options.layout.types[0];
    harness *h = calloc(1, sizeof *h);
    h_add(h, 10, &options, "n0");
    h_add(h, 11, &options, "n0");
    h_pump(h, (size_t)-1);
    assert_true(h->nodes[1].installed);
    assert_int_equal(dr_core_send(h->nodes[0].core, 1, "a", 1, DR_MODE_ORDERED, 0), DR_ESTATE);
    assert_int_equal(dr_core_send(h->nodes[1].core, 1, "b", 1, DR_MODE_ORDERED, 0), 0);
    h_drain(h, 1);
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[1].num_deliveries, 1); /* a one-member shard delivers to itself */
    assert_int_equal(h->nodes[0].num_deliveries, 0);
    done(h);
}

static void test_owned_send_takes_the_buffer(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 2);
    options.window_size = 1;
    options.max_smc_payload_size = 10; /* 3000 bytes: a block message */
    harness *h = cluster(2, &options);
    uint8_t *first = malloc(3000), *second = malloc(3000);
    memset(first, 7, 3000);
    memset(second, 8, 3000);
    assert_int_equal(dr_core_send_owned(h->nodes[0].core, 0, first, 3000, DR_MODE_ORDERED, 1), 0);
    h_drain(h, 0); /* first now belongs to the core (ASan would flag a leak or double free) */
    assert_int_equal(dr_core_send_owned(h->nodes[0].core, 0, second, 3000, DR_MODE_ORDERED, 1),
                     DR_EAGAIN);
    second[0] = 9; /* still ours after an error */
    h_pump(h, (size_t)-1);
    assert_int_equal(dr_core_send_owned(h->nodes[0].core, 0, second, 3000, DR_MODE_ORDERED, 1), 0);
    h_drain(h, 0);
    h_pump(h, (size_t)-1);
    assert_int_equal(h->nodes[1].num_deliveries, 2);
    assert_int_equal(h->nodes[1].deliveries[0].bytes[2999], 7);
    assert_int_equal(h->nodes[1].deliveries[1].bytes[0], 9);
    done(h);
}

/*
 * The blocks of an own large message go out without copies: every block frame the sender emits
 * shares the payload (head + slice), and so does its own delivery, while the others deliver
 * the same bytes. A small message is still one copied frame.
 */
static void test_own_blocks_share_the_payload(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 3);
    options.max_smc_payload_size = 100;
    options.block_size = 1000;
    options.pipeline = DR_PIPELINE_SEQUENTIAL; /* the sender sends every block to everyone */
    harness *h = cluster(3, &options);
    uint8_t *payload = malloc(3500); /* 4 blocks, the last one partial */
    for (int i = 0; i < 3500; i++)
        payload[i] = (uint8_t)(i * 7);
    assert_int_equal(dr_core_send_owned(h->nodes[0].core, 0, payload, 3500, DR_MODE_ORDERED, 1), 0);
    h_drain(h, 0);
    assert_int_equal(h->nodes[0].shared_sends, 4 * 2);
    send_ok(h, 0, 0, "small", DR_MODE_ORDERED);
    assert_int_equal(h->nodes[0].shared_sends, 4 * 2);
    h_pump(h, (size_t)-1);
    for (uint32_t n = 0; n < 3; n++) {
        assert_int_equal(h->nodes[n].num_deliveries, 2);
        assert_int_equal(h->nodes[n].deliveries[0].len, 3500);
        for (int i = 0; i < 3500; i++)
            assert_int_equal(h->nodes[n].deliveries[0].bytes[i], (uint8_t)(i * 7));
    }
    assert_int_equal(h->nodes[0].shared_deliveries, 1);
    assert_int_equal(h->nodes[1].shared_sends + h->nodes[1].shared_deliveries, 0);
    done(h);
}

/*
 * A received block frame handed over as shared bytes (the runtime does so for large frames) is
 * relayed without a copy: the relay's SEND shares the received frame. Handed over as plain bytes,
 * the relay copies them. The bytes delivered are the same either way.
 */
static void test_relayed_blocks_share_the_received_frame(void **state) {
    (void)state;
    for (int share = 0; share <= 1; share++) {
        dr_core_options options;
        h_options(&options, 3);
        options.max_smc_payload_size = 100;
        options.block_size = 1000;
        options.pipeline = DR_PIPELINE_CHAIN; /* 0 -> 1 -> 2: node 1 relays every block */
        harness *h = cluster(3, &options);
        h->share_frames = share == 1;
        uint8_t *payload = malloc(3500); /* 4 blocks, the last one partial */
        assert_non_null(payload);
        for (int i = 0; i < 3500; i++)
            payload[i] = (uint8_t)(i * 13 + 5);
        assert_int_equal(dr_core_send_owned(h->nodes[0].core, 0, payload, 3500, DR_MODE_ORDERED, 1),
                         0);
        h_drain(h, 0);
        h_pump(h, (size_t)-1);
        assert_int_equal(h->nodes[1].shared_sends, share ? 4 : 0); /* its 4 relays to node 2 */
        assert_int_equal(h->nodes[2].shared_sends, 0);             /* the chain's end */
        for (uint32_t n = 0; n < 3; n++) {
            assert_int_equal(h->nodes[n].num_deliveries, 1);
            assert_int_equal(h->nodes[n].deliveries[0].len, 3500);
            for (int i = 0; i < 3500; i++)
                assert_int_equal(h->nodes[n].deliveries[0].bytes[i], (uint8_t)(i * 13 + 5));
        }
        done(h);
    }
}

static void test_relay_schedules_reach_everyone_once(void **state) {
    (void)state;
    dr_pipeline_algorithm algorithms[] = {DR_PIPELINE_SEQUENTIAL, DR_PIPELINE_CHAIN,
                                          DR_PIPELINE_TREE};
    for (uint32_t a = 0; a < 3; a++) {
        for (uint32_t size = 1; size <= DR_LAYOUT_MAX_SHARD_MEMBERS; size++) {
            uint32_t received[DR_LAYOUT_MAX_SHARD_MEMBERS] = {0};
            uint32_t frontier[DR_LAYOUT_MAX_SHARD_MEMBERS] = {0}, count = 1, next[64];
            received[0] = 1; /* the sender holds the block */
            while (count > 0) {
                uint32_t at = frontier[--count];
                uint32_t hops = pipeline_next_hops(algorithms[a], size, at, 3, next);
                for (uint32_t i = 0; i < hops; i++) {
                    assert_true(next[i] < size);
                    received[next[i]]++;
                    frontier[count++] = next[i];
                }
            }
            for (uint32_t p = 0; p < size; p++)
                assert_int_equal(received[p], 1);
        }
    }
}

static void test_duplicate_and_out_of_window_data_rejected(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 2);
    options.window_size = 2;
    harness *h = cluster(2, &options);
    dr_buf buf;
    dr_buf_init(&buf, 0);
    dr_msg_data msg = {
        .subgroup = 0, .sender_index = 0, .index = 5, .len = 1, .payload = (const uint8_t *)"z"};
    dr_wire_encode_data(&buf, 10, 0, &msg); /* index 5 with window 2: beyond the window */
    assert_int_equal(dr_core_on_message(h->nodes[1].core, 10, buf.data, buf.len, 1), DR_EPROTO);
    dr_buf_reset(&buf);
    msg.index = 0;
    msg.sender_index = 1; /* node 10 claims to be sender 1 (node 11) */
    dr_wire_encode_data(&buf, 10, 0, &msg);
    assert_int_equal(dr_core_on_message(h->nodes[1].core, 10, buf.data, buf.len, 1), DR_EPROTO);
    dr_buf_reset(&buf);
    msg.sender_index = 0;
    dr_wire_encode_data(&buf, 10, 0, &msg);
    assert_int_equal(dr_core_on_message(h->nodes[1].core, 10, buf.data, buf.len, 1), 0);
    assert_int_equal(dr_core_on_message(h->nodes[1].core, 10, buf.data, buf.len, 1), DR_EPROTO);
    dr_buf_free(&buf);
    h_drain(h, 1);
    h_free(h);
    free(h);
}

static void test_early_frames_wait_for_their_view(void **state) {
    (void)state;
    dr_core_options options;
    h_options(&options, 3);
    harness *h = calloc(1, sizeof *h);
    h_add(h, 10, &options, "n0");
    h_add(h, 11, &options, "n0");
    h_pump(h, (size_t)-1);
    h_add(h, 12, &options, "n0");
    /* deliver frames until the leader installs view 0 and sends VIEW to 11 and 12 */
    while (!h->nodes[0].installed)
        h_pump(h, 1);
    /* the leader multicasts at once; its DATA may overtake VIEW at a slow member: reorder */
    send_ok(h, 0, 0, "early", DR_MODE_ORDERED);
    for (size_t i = 0; i + 1 < h->len; i++) { /* move DATA frames to the queue's front */
        h_frame *f = &h->queue[h->head + i];
        dr_wire_header header;
        if (dr_wire_decode_header(f->bytes, f->len, &header, NULL) == 0 &&
            header.type == DR_MSG_DATA && i > 0) {
            h_frame tmp = h->queue[h->head];
            h->queue[h->head] = *f;
            *f = tmp;
        }
    }
    h_pump(h, (size_t)-1);
    uint64_t buffered = 0;
    for (uint32_t n = 0; n < 3; n++) {
        assert_int_equal(h->nodes[n].num_deliveries, 1);
        assert_memory_equal(h->nodes[n].deliveries[0].bytes, "early", 5);
        dr_core_stats stats;
        dr_core_get_stats(h->nodes[n].core, &stats);
        buffered += stats.frames_buffered;
    }
    assert_true(buffered > 0); /* the reordering really happened */
    done(h);
}

int main(void) {
    dr_log_set_all_levels(DR_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_sender_sequence_and_nulls),
        cmocka_unit_test(test_interleaved_senders_total_order),
        cmocka_unit_test(test_window_full_then_open),
        cmocka_unit_test(test_byte_window_full_then_open),
        cmocka_unit_test(test_large_messages_all_pipelines),
        cmocka_unit_test(test_own_blocks_share_the_payload),
        cmocka_unit_test(test_raw_mode_fifo_without_versions),
        cmocka_unit_test(test_send_errors),
        cmocka_unit_test(test_non_member_of_subgroup_cannot_send),
        cmocka_unit_test(test_owned_send_takes_the_buffer),
        cmocka_unit_test(test_relayed_blocks_share_the_received_frame),
        cmocka_unit_test(test_relay_schedules_reach_everyone_once),
        cmocka_unit_test(test_duplicate_and_out_of_window_data_rejected),
        cmocka_unit_test(test_early_frames_wait_for_their_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
