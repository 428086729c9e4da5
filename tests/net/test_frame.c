/* Unit tests for the frame codec and incremental decoder (src/net/frame.c): no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "derecho/error.h"
#include "net/frame.h"
#include "net/net.h"

static int alloc_calls;

static void *counting_alloc(void *ctx, const dr_frame_header *header, uint8_t **payload_out) {
    (void)ctx;
    alloc_calls++;
    uint8_t *block = malloc(header->payload_bytes + 1);
    *payload_out = block;
    return block;
}

/* Appends one encoded frame to buf at *len. */
static void put_frame(uint8_t *buf, size_t *len, uint16_t type, uint32_t flags, const char *text) {
    size_t n = strlen(text);
    dr_frame_encode_header(buf + *len, type, flags, (uint32_t)n);
    memcpy(buf + *len + DR_FRAME_HEADER_BYTES, text, n);
    *len += DR_FRAME_HEADER_BYTES + n;
}

static void test_header_layout_is_little_endian(void **state) {
    (void)state;
    uint8_t h[DR_FRAME_HEADER_BYTES];
    dr_frame_encode_header(h, 0x1234, 0xa0b0c0d0, 0x01020304);
    static const uint8_t want[16] = {'D',  'R',  'N',  'F',  1,    0,    0x34, 0x12,
                                     0xd0, 0xc0, 0xb0, 0xa0, 0x04, 0x03, 0x02, 0x01};
    assert_memory_equal(h, want, sizeof want);
    dr_frame_header out;
    assert_int_equal(dr_frame_decode_header(h, 0x01020304, &out, NULL), 0);
    assert_int_equal(out.type, 0x1234);
    assert_int_equal(out.flags, 0xa0b0c0d0);
    assert_int_equal(out.payload_bytes, 0x01020304);
}

static void test_bad_magic_version_length(void **state) {
    (void)state;
    uint8_t h[DR_FRAME_HEADER_BYTES];
    dr_frame_header out;
    const char *why = NULL;
    dr_frame_encode_header(h, 20, 0, 10);
    h[0] ^= 1;
    assert_int_equal(dr_frame_decode_header(h, 100, &out, &why), DR_EPROTO);
    assert_string_equal(why, "bad magic");
    dr_frame_encode_header(h, 20, 0, 10);
    h[4] = 2;
    assert_int_equal(dr_frame_decode_header(h, 100, &out, &why), DR_EPROTO);
    dr_frame_encode_header(h, 20, 0, 101);
    assert_int_equal(dr_frame_decode_header(h, 100, &out, &why), DR_ETOOBIG);
    dr_frame_encode_header(h, 20, 0, 100);
    assert_int_equal(dr_frame_decode_header(h, 100, &out, &why), DR_OK);
}

/* Feeding one byte at a time yields exactly the frames, in order, intact. */
static void test_byte_by_byte_feed(void **state) {
    (void)state;
    uint8_t stream[512];
    size_t len = 0;
    put_frame(stream, &len, 16, 1, "hello");
    put_frame(stream, &len, 17, 2, "");
    put_frame(stream, &len, 18, 3, "a somewhat longer payload");
    const char *want[] = {"hello", "", "a somewhat longer payload"};
    dr_frame_decoder dec;
    dr_frame_decoder_init(&dec, 1024, NULL, NULL);
    int got = 0;
    for (size_t i = 0; i < len; i++) {
        size_t used = 0;
        dr_frame frame;
        int rc = dr_frame_decoder_feed(&dec, stream + i, 1, &used, &frame);
        assert_true(rc == 0 || rc == 1);
        assert_int_equal(used, 1);
        if (rc == 1) {
            assert_int_equal(frame.header.type, 16 + got);
            assert_int_equal(frame.header.flags, 1 + got);
            assert_int_equal(frame.header.payload_bytes, strlen(want[got]));
            assert_memory_equal(frame.payload, want[got], strlen(want[got]));
            free(frame.block);
            got++;
        }
    }
    assert_int_equal(got, 3);
    dr_frame_decoder_free(&dec);
}

/* A buffer with several frames: feed stops after each frame and reports bytes consumed. */
static void test_many_frames_in_one_buffer(void **state) {
    (void)state;
    uint8_t stream[512];
    size_t len = 0;
    for (int i = 0; i < 5; i++)
        put_frame(stream, &len, (uint16_t)(100 + i), 0, "xyz");
    dr_frame_decoder dec;
    dr_frame_decoder_init(&dec, 1024, NULL, NULL);
    size_t pos = 0;
    int got = 0;
    while (pos < len) {
        size_t used = 0;
        dr_frame frame;
        int rc = dr_frame_decoder_feed(&dec, stream + pos, len - pos, &used, &frame);
        pos += used;
        assert_int_equal(rc, 1);
        assert_int_equal(frame.header.type, 100 + got);
        assert_int_equal(used, DR_FRAME_HEADER_BYTES + 3);
        free(frame.block);
        got++;
    }
    assert_int_equal(got, 5);
    dr_frame_decoder_free(&dec);
}

/* An oversized length is refused before the allocator is called, and the error is sticky. */
static void test_oversized_refused_before_allocating(void **state) {
    (void)state;
    uint8_t h[DR_FRAME_HEADER_BYTES];
    dr_frame_encode_header(h, 16, 0, 0x7fffffff);
    dr_frame_decoder dec;
    alloc_calls = 0;
    dr_frame_decoder_init(&dec, 1 << 20, counting_alloc, NULL);
    size_t used = 0;
    dr_frame frame;
    assert_int_equal(dr_frame_decoder_feed(&dec, h, sizeof h, &used, &frame), DR_ETOOBIG);
    assert_int_equal(alloc_calls, 0);
    assert_string_equal(dr_frame_decoder_why(&dec), "payload length over the configured maximum");
    /* sticky */
    assert_int_equal(dr_frame_decoder_feed(&dec, h, sizeof h, &used, &frame), DR_ETOOBIG);
    assert_int_equal(used, 0);
    dr_frame_decoder_free(&dec);
}

/* Garbage (an HTTP request) fails on the first header with a clear reason. */
static void test_garbage_is_protocol_error(void **state) {
    (void)state;
    const char *junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    dr_frame_decoder dec;
    dr_frame_decoder_init(&dec, 1024, NULL, NULL);
    size_t used = 0;
    dr_frame frame;
    assert_int_equal(
        dr_frame_decoder_feed(&dec, (const uint8_t *)junk, strlen(junk), &used, &frame), DR_EPROTO);
    assert_int_equal(used, DR_FRAME_HEADER_BYTES);
    assert_string_equal(dr_frame_decoder_why(&dec), "bad magic");
    dr_frame_decoder_free(&dec);
}

/* Zero-copy path: the caller fills the payload gap directly. */
static void test_payload_gap_fill(void **state) {
    (void)state;
    enum { N = 100000 };
    uint8_t *payload = malloc(N);
    for (int i = 0; i < N; i++)
        payload[i] = (uint8_t)(i * 7);
    uint8_t h[DR_FRAME_HEADER_BYTES];
    dr_frame_encode_header(h, 16, 0, N);
    dr_frame_decoder dec;
    dr_frame_decoder_init(&dec, N, NULL, NULL);
    uint8_t *dst = NULL;
    assert_int_equal(dr_frame_decoder_payload_gap(&dec, &dst), 0);
    size_t used = 0;
    dr_frame frame;
    /* header plus the first 10 payload bytes through the buffered path */
    uint8_t first[DR_FRAME_HEADER_BYTES + 10];
    memcpy(first, h, sizeof h);
    memcpy(first + sizeof h, payload, 10);
    assert_int_equal(dr_frame_decoder_feed(&dec, first, sizeof first, &used, &frame), 0);
    size_t filled = 10;
    while (filled < N) {
        size_t gap = dr_frame_decoder_payload_gap(&dec, &dst);
        assert_int_equal(gap, N - filled);
        size_t chunk = gap > 30000 ? 30000 : gap;
        memcpy(dst, payload + filled, chunk);
        filled += chunk;
        int rc = dr_frame_decoder_payload_filled(&dec, chunk, &frame);
        assert_int_equal(rc, filled == N ? 1 : 0);
    }
    assert_memory_equal(frame.payload, payload, N);
    free(frame.block);
    free(payload);
    dr_frame_decoder_free(&dec);
}

/* Freeing a decoder in the middle of a payload releases the partial frame (ASan checks). */
static void test_free_mid_payload(void **state) {
    (void)state;
    uint8_t h[DR_FRAME_HEADER_BYTES + 3];
    dr_frame_encode_header(h, 16, 0, 1000);
    memset(h + DR_FRAME_HEADER_BYTES, 1, 3);
    dr_frame_decoder dec;
    dr_frame_decoder_init(&dec, 1000, NULL, NULL);
    size_t used = 0;
    dr_frame frame;
    assert_int_equal(dr_frame_decoder_feed(&dec, h, sizeof h, &used, &frame), 0);
    assert_int_equal(used, sizeof h);
    dr_frame_decoder_free(&dec);
}

/* Addresses as views carry them: "ip:port", port 1..65535, IP fits the buffer. */
static void test_split_address(void **state) {
    (void)state;
    char ip[16];
    uint16_t port = 0;
    assert_int_equal(dr_net_split_address("127.0.0.1:23580", ip, sizeof ip, &port), DR_OK);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(port, 23580);
    assert_int_equal(dr_net_split_address("127.0.0.1", ip, sizeof ip, &port), DR_EINVAL);
    assert_int_equal(dr_net_split_address("127.0.0.1:", ip, sizeof ip, &port), DR_EINVAL);
    assert_int_equal(dr_net_split_address("127.0.0.1:0", ip, sizeof ip, &port), DR_EINVAL);
    assert_int_equal(dr_net_split_address("127.0.0.1:65536", ip, sizeof ip, &port), DR_EINVAL);
    assert_int_equal(dr_net_split_address("127.0.0.1:80x", ip, sizeof ip, &port), DR_EINVAL);
    assert_int_equal(dr_net_split_address("255.255.255.255.1:80", ip, sizeof ip, &port), DR_EINVAL);
    assert_int_equal(dr_net_split_address(NULL, ip, sizeof ip, &port), DR_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_address),
        cmocka_unit_test(test_header_layout_is_little_endian),
        cmocka_unit_test(test_bad_magic_version_length),
        cmocka_unit_test(test_byte_by_byte_feed),
        cmocka_unit_test(test_many_frames_in_one_buffer),
        cmocka_unit_test(test_oversized_refused_before_allocating),
        cmocka_unit_test(test_garbage_is_protocol_error),
        cmocka_unit_test(test_payload_gap_fill),
        cmocka_unit_test(test_free_mid_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
