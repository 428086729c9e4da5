/* Unit tests of the stream rules of Whatsthis / InstallModel uploads (apps/sospdemo/upload.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "derecho/infer.h"
#include "stream_helpers.h"
#include "upload.h"

#include <stdlib.h>
#include <string.h>

static const sd_upload_limits limits = {
    .max_photo_bytes = 1000, .max_model_bytes = 5000, .max_tags = 4};

/* Feeds one message (freeing it); returns the code and keeps the message in err. */
static int feed(sd_upload *up, packed_msg msg, dr_err *err) {
    dr_err_clear(err);
    int rc = sd_upload_feed(up, msg.data, msg.len, err);
    packed_msg_free(&msg);
    return rc;
}

static void assert_msg(const dr_err *err, const char *part) {
    if (!strstr(err->msg, part))
        fail_msg("message '%s' lacks '%s'", err->msg, part);
}

static void test_photo_stream_assembles(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    uint8_t photo[10];
    fill_pattern(photo, sizeof(photo), 1);
    const uint32_t tags[] = {7, 9};
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
    assert_int_equal(feed(&up, photo_metadata_msg(10, tags, 2), &err), 0);
    assert_int_equal(feed(&up, photo_data_msg(photo, 4), &err), 0);
    assert_int_equal(feed(&up, photo_data_msg(photo + 4, 6), &err), 0);
    assert_int_equal(sd_upload_finish(&up, &err), 0);
    assert_int_equal(up.n_tags, 2);
    assert_int_equal(up.tags[0], 7);
    assert_int_equal(up.tags[1], 9);
    assert_int_equal(up.data.len, 10);
    assert_memory_equal(up.data.data, photo, 10);
    sd_upload_free(&up);
}

static void test_data_before_metadata_refused(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    uint8_t byte = 1;
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
    assert_int_equal(feed(&up, photo_data_msg(&byte, 1), &err), DR_EINVAL);
    assert_msg(&err, "Whatsthis: the first message must carry metadata");
    sd_upload_free(&up);
}

static void test_second_metadata_refused(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    const uint32_t tag = 1;
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
    assert_int_equal(feed(&up, photo_metadata_msg(10, &tag, 1), &err), 0);
    assert_int_equal(feed(&up, photo_metadata_msg(10, &tag, 1), &err), DR_EINVAL);
    assert_msg(&err, "unexpected metadata after the first message");
    sd_upload_free(&up);
}

static void test_photo_metadata_limits(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    const uint32_t tags[5] = {1, 2, 3, 4, 5};
    struct {
        uint32_t size;
        size_t n_tags;
        int rc;
        const char *part;
    } cases[] = {
        {1001, 1, DR_ETOOBIG, "photo_size 1001 exceeds the limit of 1000 bytes"},
        {0xFFFFFFFFu, 1, DR_ETOOBIG, "exceeds the limit"},
        {0, 1, DR_EINVAL, "empty photo"},
        {10, 0, DR_EINVAL, "no tags"},
        {10, 5, DR_ETOOBIG, "5 tags exceed the limit of 4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
        assert_int_equal(feed(&up, photo_metadata_msg(cases[i].size, tags, cases[i].n_tags), &err),
                         cases[i].rc);
        assert_msg(&err, cases[i].part);
        sd_upload_free(&up);
    }
}

static void test_more_than_announced_refused(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    uint8_t photo[8] = {0};
    const uint32_t tag = 1;
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
    assert_int_equal(feed(&up, photo_metadata_msg(10, &tag, 1), &err), 0);
    assert_int_equal(feed(&up, photo_data_msg(photo, 8), &err), 0);
    assert_int_equal(feed(&up, photo_data_msg(photo, 8), &err), DR_EINVAL);
    assert_msg(&err, "received 16 bytes, more than the announced 10");
    sd_upload_free(&up);
}

static void test_truncated_and_empty_streams_refused(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    uint8_t photo[4] = {0};
    const uint32_t tag = 1;
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
    assert_int_equal(sd_upload_finish(&up, &err), DR_EINVAL);
    assert_msg(&err, "the stream ended before any metadata");
    assert_int_equal(feed(&up, photo_metadata_msg(10, &tag, 1), &err), 0);
    assert_int_equal(feed(&up, photo_data_msg(photo, 4), &err), 0);
    assert_int_equal(sd_upload_finish(&up, &err), DR_EINVAL);
    assert_msg(&err, "the stream ended after 4 of 10 announced bytes");
    sd_upload_free(&up);
}

static void test_undecodable_and_empty_messages_refused(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}; /* length past end */
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &limits);
    assert_int_equal(feed(&up, raw_msg(garbage, sizeof(garbage)), &err), DR_EINVAL);
    assert_msg(&err, "not a valid PhotoRequest");
    sd_upload_free(&up);
    sd_upload_init(&up, SD_UPLOAD_MODEL, &limits);
    assert_int_equal(feed(&up, raw_msg("", 0), &err), DR_EINVAL);
    assert_msg(&err, "InstallModel: message carries neither metadata nor file_data");
    sd_upload_free(&up);
}

static void test_model_stream_assembles(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    uint8_t model[30];
    fill_pattern(model, sizeof(model), 2);
    sd_upload_init(&up, SD_UPLOAD_MODEL, &limits);
    assert_int_equal(feed(&up, model_metadata_msg(3, 5, 10, 15), &err), 0);
    assert_int_equal(feed(&up, model_data_msg(model, 12), &err), 0);
    assert_int_equal(feed(&up, model_data_msg(model + 12, 18), &err), 0);
    assert_int_equal(sd_upload_finish(&up, &err), 0);
    assert_int_equal(up.model_tag, 3);
    assert_int_equal(up.synset_size, 5);
    assert_int_equal(up.symbol_size, 10);
    assert_int_equal(up.params_size, 15);
    assert_memory_equal(up.data.data, model, 30);
    sd_upload_free(&up);
}

static void test_model_metadata_limits(void **state) {
    (void)state;
    sd_upload up;
    dr_err err;
    sd_upload_init(&up, SD_UPLOAD_MODEL, &limits);
    /* The three sizes add up past 32 bits: must not wrap around under the limit. */
    assert_int_equal(feed(&up, model_metadata_msg(1, 0xFFFFFFFFu, 0xFFFFFFFFu, 2), &err),
                     DR_ETOOBIG);
    assert_msg(&err, "exceeds the limit of 5000 bytes");
    sd_upload_free(&up);
    sd_upload_init(&up, SD_UPLOAD_MODEL, &limits);
    assert_int_equal(feed(&up, model_metadata_msg(1, 10, 10, 0), &err), DR_EINVAL);
    assert_msg(&err, "empty params");
    sd_upload_free(&up);
}

/* precision: unset or "" is fp32, fp32/bf16/auto are kept, anything else is refused. */
static void test_model_metadata_precision(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint8_t precision;
    } cases[] = {{NULL, 0, DR_PRECISION_FP32},   {"", 0, DR_PRECISION_FP32},
                 {"fp32", 0, DR_PRECISION_FP32}, {"bf16", 0, DR_PRECISION_BF16},
                 {"auto", 0, DR_PRECISION_AUTO}, {"fp16", DR_EINVAL, 0},
                 {"BF16x", DR_EINVAL, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sd_upload up;
        dr_err err;
        sd_upload_init(&up, SD_UPLOAD_MODEL, &limits);
        up.precision = 99;
        assert_int_equal(feed(&up, model_metadata_precision_msg(1, 1, 1, 1, cases[i].text), &err),
                         cases[i].rc);
        if (cases[i].rc == 0)
            assert_int_equal(up.precision, cases[i].precision);
        else
            assert_msg(&err, "precision must be fp32, bf16 or auto");
        sd_upload_free(&up);
    }
}

static void test_memory_follows_received_bytes(void **state) {
    (void)state;
    sd_upload_limits big = {.max_photo_bytes = 1u << 30, .max_model_bytes = 1, .max_tags = 1};
    sd_upload up;
    dr_err err;
    const uint32_t tag = 1;
    uint8_t byte = 0;
    sd_upload_init(&up, SD_UPLOAD_PHOTO, &big);
    assert_int_equal(feed(&up, photo_metadata_msg(1u << 30, &tag, 1), &err), 0);
    assert_int_equal(feed(&up, photo_data_msg(&byte, 1), &err), 0);
    assert_true(up.data.cap < 4096); /* an announced GiB allocates nothing up front */
    sd_upload_free(&up);
}

/* Feeds random mutations of valid streams: never a crash, and the invariants always hold. */
static void test_random_mutations_keep_invariants(void **state) {
    (void)state;
    uint32_t seed = 12345;
    uint8_t photo[300];
    fill_pattern(photo, sizeof(photo), 7);
    const uint32_t tags[3] = {1, 2, 3};
    for (int round = 0; round < 5000; round++) {
        sd_upload up;
        dr_err err;
        sd_upload_kind kind = round % 2 ? SD_UPLOAD_MODEL : SD_UPLOAD_PHOTO;
        sd_upload_init(&up, kind, &limits);
        for (int step = 0; step < 6; step++) {
            seed = seed * 1103515245u + 12345u;
            packed_msg msg;
            if (step == 0)
                msg = kind == SD_UPLOAD_PHOTO
                          ? photo_metadata_msg(seed % 1200, tags, seed % 4)
                          : model_metadata_msg(seed, seed % 3000, seed % 7, seed % 2500);
            else
                msg = kind == SD_UPLOAD_PHOTO ? photo_data_msg(photo, seed % 300)
                                              : model_data_msg(photo, seed % 300);
            for (int flips = (int)(seed >> 28) % 3; flips > 0 && msg.len > 0; flips--) {
                seed = seed * 1103515245u + 12345u;
                msg.data[(seed >> 8) % msg.len] ^= (uint8_t)(1u << (seed % 8));
            }
            if (seed % 17 == 0)
                msg.len /= 2; /* truncate the message itself */
            int rc = feed(&up, msg, &err);
            assert_true(up.data.len <= up.expected_bytes);
            assert_true(up.expected_bytes <= (kind == SD_UPLOAD_PHOTO ? limits.max_photo_bytes
                                                                      : limits.max_model_bytes));
            assert_true(up.n_tags <= limits.max_tags);
            if (rc) {
                assert_true(rc == DR_EINVAL || rc == DR_ETOOBIG);
                assert_true(err.msg[0] != '\0');
                break;
            }
        }
        sd_upload_finish(&up, &err);
        sd_upload_free(&up);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_photo_stream_assembles),
        cmocka_unit_test(test_data_before_metadata_refused),
        cmocka_unit_test(test_second_metadata_refused),
        cmocka_unit_test(test_photo_metadata_limits),
        cmocka_unit_test(test_more_than_announced_refused),
        cmocka_unit_test(test_truncated_and_empty_streams_refused),
        cmocka_unit_test(test_undecodable_and_empty_messages_refused),
        cmocka_unit_test(test_model_stream_assembles),
        cmocka_unit_test(test_model_metadata_limits),
        cmocka_unit_test(test_model_metadata_precision),
        cmocka_unit_test(test_memory_follows_received_bytes),
        cmocka_unit_test(test_random_mutations_keep_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
