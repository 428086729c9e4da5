/* Unit tests for the growable buffer and the bounds-checked reader (src/base/buffer.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "derecho/buffer.h"
#include "derecho/error.h"

static void test_round_trip_little_endian(void **state) {
    (void)state;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    assert_int_equal(dr_buf_put_u8(&buf, 0xab), 0);
    assert_int_equal(dr_buf_put_u16(&buf, 0x1234), 0);
    assert_int_equal(dr_buf_put_u32(&buf, 0xdeadbeef), 0);
    assert_int_equal(dr_buf_put_u64(&buf, 0x0102030405060708ull), 0);
    assert_int_equal(dr_buf_put_str(&buf, "hello"), 0);
    assert_int_equal(buf.len, 1 + 2 + 4 + 8 + 4 + 5);
    /* little-endian on the wire, whatever the host */
    assert_int_equal(buf.data[1], 0x34);
    assert_int_equal(buf.data[3], 0xef);

    dr_reader reader;
    dr_reader_init(&reader, buf.data, buf.len);
    assert_int_equal(dr_reader_u8(&reader), 0xab);
    assert_int_equal(dr_reader_u16(&reader), 0x1234);
    assert_int_equal(dr_reader_u32(&reader), 0xdeadbeef);
    assert_true(dr_reader_u64(&reader) == 0x0102030405060708ull);
    uint32_t len = 0;
    const uint8_t *text = dr_reader_blob(&reader, 16, &len);
    assert_non_null(text);
    assert_int_equal(len, 5);
    assert_memory_equal(text, "hello", 5);
    assert_true(dr_reader_done(&reader));
    dr_buf_free(&buf);
}

static void test_reader_stops_at_end(void **state) {
    (void)state;
    uint8_t bytes[3] = {1, 2, 3};
    dr_reader reader;
    dr_reader_init(&reader, bytes, sizeof bytes);
    assert_int_equal(dr_reader_u16(&reader), 0x0201);
    assert_int_equal(dr_reader_u32(&reader), 0); /* only 1 byte left */
    assert_true(reader.failed);
    assert_int_equal(dr_reader_u8(&reader), 0); /* sticky */
    assert_int_equal(dr_reader_remaining(&reader), 0);
    assert_false(dr_reader_done(&reader));
}

static void test_length_capped_before_use(void **state) {
    (void)state;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    dr_buf_put_u32(&buf, 1000000); /* claims 1 MB, carries 2 bytes */
    dr_buf_put_u16(&buf, 7);
    dr_reader reader;
    dr_reader_init(&reader, buf.data, buf.len);
    assert_int_equal(dr_reader_len(&reader, UINT32_MAX), 0);
    assert_true(reader.failed);

    dr_reader_init(&reader, buf.data, buf.len);
    uint32_t len = 99;
    assert_null(dr_reader_blob(&reader, 10, &len)); /* over the caller's limit */
    assert_int_equal(len, 0);
    dr_buf_free(&buf);
}

static void test_buffer_limit(void **state) {
    (void)state;
    dr_buf buf;
    dr_buf_init(&buf, 8);
    assert_int_equal(dr_buf_put_u64(&buf, 1), 0);
    assert_int_equal(dr_buf_put_u8(&buf, 1), DR_ETOOBIG);
    assert_true(buf.failed);
    assert_int_equal(buf.len, 8);
    size_t len = 0;
    uint8_t *owned = dr_buf_steal(&buf, &len);
    assert_int_equal(len, 8);
    assert_non_null(owned);
    free(owned);
    assert_int_equal(buf.len, 0);
    assert_int_equal(buf.max_bytes, 8);
    dr_buf_free(&buf);
}

static void test_growth_keeps_contents(void **state) {
    (void)state;
    dr_buf buf;
    dr_buf_init(&buf, 0);
    for (uint32_t i = 0; i < 10000; i++)
        assert_int_equal(dr_buf_put_u32(&buf, i), 0);
    dr_reader reader;
    dr_reader_init(&reader, buf.data, buf.len);
    for (uint32_t i = 0; i < 10000; i++)
        assert_int_equal(dr_reader_u32(&reader), i);
    assert_true(dr_reader_done(&reader));
    dr_buf_reset(&buf);
    assert_int_equal(buf.len, 0);
    dr_buf_free(&buf);
}

/* dr_buf_reserve: room up to the limit, DR_ETOOBIG past it (sticky failed); dr_reader_bytes:
 * a borrowed view of the next len bytes, NULL past the end (sticky failed). */
static void test_reserve_and_reader_bytes(void **state) {
    (void)state;
    dr_buf buf;
    dr_buf_init(&buf, 16);
    assert_int_equal(dr_buf_reserve(&buf, 16), 0);
    assert_true(buf.cap >= 16);
    assert_int_equal(buf.len, 0);
    assert_false(buf.failed);
    assert_int_equal(dr_buf_put_bytes(&buf, "abcdefgh", 8), 0);
    assert_int_equal(dr_buf_reserve(&buf, 8), 0);
    assert_int_equal(dr_buf_reserve(&buf, 9), DR_ETOOBIG);
    assert_true(buf.failed);
    assert_int_equal(buf.len, 8); /* contents untouched */
    dr_reader reader;
    dr_reader_init(&reader, buf.data, buf.len);
    const uint8_t *first = dr_reader_bytes(&reader, 3);
    assert_non_null(first);
    assert_ptr_equal(first, buf.data); /* borrowed, not copied */
    assert_memory_equal(first, "abc", 3);
    const uint8_t *rest = dr_reader_bytes(&reader, 5);
    assert_non_null(rest);
    assert_memory_equal(rest, "defgh", 5);
    assert_true(dr_reader_done(&reader));
    assert_null(dr_reader_bytes(&reader, 1));
    assert_true(reader.failed);
    dr_buf_free(&buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_little_endian),
        cmocka_unit_test(test_reader_stops_at_end),
        cmocka_unit_test(test_length_capped_before_use),
        cmocka_unit_test(test_buffer_limit),
        cmocka_unit_test(test_growth_keeps_contents),
        cmocka_unit_test(test_reserve_and_reader_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
