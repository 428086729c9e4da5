/*
 * The function tier's gRPC server in process, on 127.0.0.1:24101, with a fake backend and a
 * raw gRPC-core client sending well-formed and malformed streams: replies, INVALID_ARGUMENT
 * messages, backend errors, unknown methods, concurrency, limits on open calls, stop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client_call.h"
#include "fake_backend.h"
#include "function_tier.h"
#include "grpc_util.h"
#include "stream_helpers.h"

#include <grpc/grpc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ADDRESS "127.0.0.1:24101"

typedef struct fixture {
    fake_backend fake;
    sd_function_tier *server;
} fixture;

static int start_server_with(fixture *fx, unsigned max_active_calls, uint64_t max_buffered) {
    sd_function_tier_config config = {
        .listen_address = ADDRESS,
        .limits = {.max_photo_bytes = 1 << 20, .max_model_bytes = 4 << 20, .max_tags = 8},
        .workers = 4,
        .max_active_calls = max_active_calls,
        .max_buffered_bytes = max_buffered,
    };
    sd_backend backend = fake_backend_interface(&fx->fake);
    dr_err err;
    int rc = sd_function_tier_start(&config, &backend, &fx->server, &err);
    if (rc)
        print_error("start: %s\n", err.msg);
    return rc;
}

static int start_server(fixture *fx, unsigned max_active_calls) {
    return start_server_with(fx, max_active_calls, 0);
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof(*fx));
    fake_backend_init(&fx->fake);
    grpc_init();
    *state = fx;
    return start_server(fx, 0);
}

static int teardown(void **state) {
    fixture *fx = *state;
    sd_function_tier_stop(fx->server);
    grpc_shutdown();
    fake_backend_destroy(&fx->fake);
    free(fx);
    return 0;
}

static void assert_invalid(call_result *r, const char *part) {
    if (r->status != GRPC_STATUS_INVALID_ARGUMENT)
        fail_msg("status %s (%s), expected INVALID_ARGUMENT", sd_grpc_status_name(r->status),
                 r->details);
    if (!strstr(r->details, part))
        fail_msg("details '%s' lack '%s'", r->details, part);
}

/* ---------------------------------------------------------------- well-formed calls */

static void test_whatsthis_answers_each_tag(void **state) {
    fixture *fx = *state;
    enum { SIZE = 100000 };
    uint8_t *photo = malloc(SIZE);
    fill_pattern(photo, SIZE, 3);
    fake_backend_install(&fx->fake, 1);
    const uint32_t tags[] = {1, 2};
    packed_msg msgs[5];
    size_t n = 0;
    msgs[n++] = photo_metadata_msg(SIZE, tags, 2);
    for (size_t off = 0; off < SIZE; off += 32768)
        msgs[n++] = photo_data_msg(photo + off, SIZE - off < 32768 ? SIZE - off : 32768);
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, msgs, n, &r);
    assert_int_equal(r.status, GRPC_STATUS_OK);
    char *one = fake_describe(1, photo, SIZE);
    char expected[256];
    snprintf(expected, sizeof(expected), "%s or Cannot find model for photo tag.", one);
    assert_string_equal(r.desc, expected);
    free(one);
    free(photo);
    call_result_free(&r);
}

static void test_install_duplicate_and_remove(void **state) {
    fixture *fx = *state;
    const char synset[] = "n0001 rose\nn0002 tulip\n";
    uint8_t model[200];
    fill_pattern(model, sizeof(model), 4);
    memcpy(model, synset, strlen(synset));
    for (int round = 0; round < 2; round++) {
        /* the first install asks for precision auto: it reaches the backend */
        packed_msg msgs[3] = {model_metadata_precision_msg(5, (uint32_t)strlen(synset), 50,
                                                           (uint32_t)(200 - 50 - strlen(synset)),
                                                           round == 0 ? "auto" : NULL),
                              model_data_msg(model, 120), model_data_msg(model + 120, 80)};
        call_result r;
        raw_call(ADDRESS, SD_METHOD_INSTALL_MODEL, msgs, 3, &r);
        assert_int_equal(r.status, GRPC_STATUS_OK);
        if (round == 0) {
            assert_int_equal(r.error_code, 0);
            assert_string_equal(r.error_desc, "install model successfully.");
        } else {
            assert_int_equal(r.error_code, -1);
            assert_string_equal(r.error_desc,
                                "install_model failed because tag (5) has been taken.");
        }
        call_result_free(&r);
    }
    assert_string_equal(fake_snapshot(&fx->fake).last_synset, synset);
    assert_int_equal(fake_snapshot(&fx->fake).model_bytes[5], 200);
    assert_int_equal(fake_snapshot(&fx->fake).last_precision, 2); /* DR_PRECISION_AUTO */
    for (int round = 0; round < 2; round++) {
        packed_msg msg = remove_msg(5);
        call_result r;
        raw_call(ADDRESS, SD_METHOD_REMOVE_MODEL, &msg, 1, &r);
        assert_int_equal(r.status, GRPC_STATUS_OK);
        assert_int_equal(r.error_code, round == 0 ? 0 : -1);
        call_result_free(&r);
    }
    assert_false(fake_snapshot(&fx->fake).installed[5]);
}

/* ---------------------------------------------------------------- malformed streams */

static void test_missing_metadata(void **state) {
    fixture *fx = *state;
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, NULL, 0, &r);
    assert_invalid(&r, "Whatsthis: the stream ended before any metadata");
    call_result_free(&r);
    raw_call(ADDRESS, SD_METHOD_INSTALL_MODEL, NULL, 0, &r);
    assert_invalid(&r, "InstallModel: the stream ended before any metadata");
    call_result_free(&r);
    raw_call(ADDRESS, SD_METHOD_REMOVE_MODEL, NULL, 0, &r);
    assert_invalid(&r, "RemoveModel: the stream ended without a request");
    call_result_free(&r);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0); /* nothing reached the backend */
}

static void test_data_before_metadata(void **state) {
    fixture *fx = *state;
    uint8_t bytes[16] = {0};
    const uint32_t tag = 1;
    packed_msg msgs[2] = {photo_data_msg(bytes, 16), photo_metadata_msg(16, &tag, 1)};
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, msgs, 2, &r);
    assert_invalid(&r, "Whatsthis: the first message must carry metadata, got file_data");
    call_result_free(&r);
    packed_msg model_msgs[1] = {model_data_msg(bytes, 16)};
    raw_call(ADDRESS, SD_METHOD_INSTALL_MODEL, model_msgs, 1, &r);
    assert_invalid(&r, "InstallModel: the first message must carry metadata");
    call_result_free(&r);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

static void test_truncated_stream(void **state) {
    fixture *fx = *state;
    uint8_t bytes[1000] = {0};
    const uint32_t tag = 1;
    packed_msg msgs[2] = {photo_metadata_msg(5000, &tag, 1), photo_data_msg(bytes, 1000)};
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, msgs, 2, &r);
    assert_invalid(&r, "Whatsthis: the stream ended after 1000 of 5000 announced bytes");
    call_result_free(&r);
    packed_msg model_msgs[2] = {model_metadata_msg(1, 10, 10, 10), model_data_msg(bytes, 29)};
    raw_call(ADDRESS, SD_METHOD_INSTALL_MODEL, model_msgs, 2, &r);
    assert_invalid(&r, "InstallModel: the stream ended after 29 of 30 announced bytes");
    call_result_free(&r);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

static void test_more_than_announced(void **state) {
    uint8_t bytes[1000] = {0};
    const uint32_t tag = 1;
    packed_msg msgs[3] = {photo_metadata_msg(1500, &tag, 1), photo_data_msg(bytes, 1000),
                          photo_data_msg(bytes, 1000)};
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, msgs, 3, &r);
    assert_invalid(&r, "Whatsthis: received 2000 bytes, more than the announced 1500");
    call_result_free(&r);
    (void)state;
}

static void test_oversized_metadata(void **state) {
    fixture *fx = *state;
    const uint32_t tags[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    packed_msg msg = photo_metadata_msg((1 << 20) + 1, tags, 1);
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, &msg, 1, &r);
    assert_invalid(&r, "photo_size 1048577 exceeds the limit of 1048576 bytes");
    call_result_free(&r);
    msg = photo_metadata_msg(10, tags, 9);
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, &msg, 1, &r);
    assert_invalid(&r, "9 tags exceed the limit of 8");
    call_result_free(&r);
    msg = model_metadata_msg(1, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu);
    raw_call(ADDRESS, SD_METHOD_INSTALL_MODEL, &msg, 1, &r);
    assert_invalid(&r, "InstallModel: model size 12884901885");
    call_result_free(&r);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

static void test_second_metadata_and_garbage(void **state) {
    const uint32_t tag = 1;
    packed_msg msgs[2] = {photo_metadata_msg(10, &tag, 1), photo_metadata_msg(10, &tag, 1)};
    call_result r;
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, msgs, 2, &r);
    assert_invalid(&r, "unexpected metadata after the first message");
    call_result_free(&r);
    const uint8_t garbage[] = {0x12, 0x80}; /* field 2, truncated length */
    packed_msg bad = raw_msg(garbage, sizeof(garbage));
    raw_call(ADDRESS, SD_METHOD_INSTALL_MODEL, &bad, 1, &r);
    assert_invalid(&r, "not a valid InstallModelRequest");
    call_result_free(&r);
    packed_msg two[2] = {remove_msg(1), remove_msg(2)};
    raw_call(ADDRESS, SD_METHOD_REMOVE_MODEL, two, 2, &r);
    assert_invalid(&r, "RemoveModel: more than one request message");
    call_result_free(&r);
    (void)state;
}

/* ---------------------------------------------------------------- other statuses */

static void test_unknown_method(void **state) {
    packed_msg msg = remove_msg(1);
    call_result r;
    raw_call(ADDRESS, "/sospdemo.FunctionTierService/Nope", &msg, 1, &r);
    assert_int_equal(r.status, GRPC_STATUS_UNIMPLEMENTED);
    call_result_free(&r);
    (void)state;
}

static void test_backend_error_becomes_status(void **state) {
    fixture *fx = *state;
    fake_backend_fail_with(&fx->fake, DR_EAGAIN);
    packed_msg msg = remove_msg(1);
    call_result r;
    raw_call(ADDRESS, SD_METHOD_REMOVE_MODEL, &msg, 1, &r);
    assert_int_equal(r.status, GRPC_STATUS_UNAVAILABLE);
    assert_string_equal(r.details, "fake backend failure");
    call_result_free(&r);
}

/* ---------------------------------------------------------------- concurrency and stop */

typedef struct call_thread {
    pthread_t thread;
    uint32_t tag;
    call_result result;
} call_thread;

static void *remove_in_thread(void *arg) {
    call_thread *t = arg;
    packed_msg msg = remove_msg(t->tag);
    raw_call(ADDRESS, SD_METHOD_REMOVE_MODEL, &msg, 1, &t->result);
    return NULL;
}

static void test_backend_calls_run_concurrently(void **state) {
    fixture *fx = *state;
    call_thread threads[3];
    fake_backend_close_gate(&fx->fake);
    for (int i = 0; i < 3; i++) {
        fake_backend_install(&fx->fake, (uint32_t)(10 + i));
        threads[i].tag = (uint32_t)(10 + i);
        pthread_create(&threads[i].thread, NULL, remove_in_thread, &threads[i]);
    }
    bool all_inside = fake_backend_wait_inside(&fx->fake, 3, 10000);
    sd_function_tier_stats stats;
    sd_function_tier_get_stats(fx->server, &stats);
    fake_backend_open_gate(&fx->fake);
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i].thread, NULL);
        assert_int_equal(threads[i].result.status, GRPC_STATUS_OK);
        assert_int_equal(threads[i].result.error_code, 0);
        call_result_free(&threads[i].result);
    }
    assert_true(all_inside);
    assert_int_equal(stats.backend_running, 3);
}

static void test_too_many_calls_refused(void **state) {
    fixture *fx = *state;
    sd_function_tier_stop(fx->server);
    assert_int_equal(start_server(fx, 1), 0);
    call_thread held = {.tag = 1};
    fake_backend_close_gate(&fx->fake);
    pthread_create(&held.thread, NULL, remove_in_thread, &held);
    assert_true(fake_backend_wait_inside(&fx->fake, 1, 10000));
    packed_msg msg = remove_msg(2);
    call_result r;
    raw_call(ADDRESS, SD_METHOD_REMOVE_MODEL, &msg, 1, &r);
    assert_int_equal(r.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    call_result_free(&r);
    fake_backend_open_gate(&fx->fake);
    pthread_join(held.thread, NULL);
    assert_int_equal(held.result.status, GRPC_STATUS_OK);
    call_result_free(&held.result);
}

typedef struct photo_thread {
    pthread_t thread;
    call_result result;
} photo_thread;

/* Sends a 1 MiB photo for tag 1 in 32 KiB chunks. */
static void *whatsthis_1mib(void *arg) {
    photo_thread *t = arg;
    enum { SIZE = 1 << 20, CHUNK = 32768 };
    static const uint8_t zeros[CHUNK];
    const uint32_t tag = 1;
    packed_msg msgs[1 + SIZE / CHUNK];
    msgs[0] = photo_metadata_msg(SIZE, &tag, 1);
    for (size_t i = 1; i <= SIZE / CHUNK; i++)
        msgs[i] = photo_data_msg(zeros, CHUNK);
    raw_call(ADDRESS, SD_METHOD_WHATSTHIS, msgs, 1 + SIZE / CHUNK, &t->result);
    return NULL;
}

/* Uploads held by all calls together stay within max_buffered_bytes. */
static void test_upload_budget(void **state) {
    fixture *fx = *state;
    sd_function_tier_stop(fx->server);
    assert_int_equal(start_server_with(fx, 0, 4 << 20), 0); /* four 1 MiB photos */
    fake_backend_close_gate(&fx->fake);
    photo_thread held[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&held[i].thread, NULL, whatsthis_1mib, &held[i]);
    bool all_inside = fake_backend_wait_inside(&fx->fake, 4, 20000);
    sd_function_tier_stats stats;
    sd_function_tier_get_stats(fx->server, &stats);
    uint64_t held_bytes = stats.buffered_bytes;
    photo_thread extra;
    memset(&extra, 0, sizeof(extra));
    if (all_inside)
        whatsthis_1mib(&extra);
    fake_backend_open_gate(&fx->fake); /* before any assert: never leave calls held */
    for (int i = 0; i < 4; i++)
        pthread_join(held[i].thread, NULL);
    assert_true(all_inside);
    assert_int_equal(held_bytes, 4 << 20);
    assert_int_equal(extra.result.status, GRPC_STATUS_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(extra.result.details, "bytes of uploads (limit 4194304)"));
    call_result_free(&extra.result);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(held[i].result.status, GRPC_STATUS_OK);
        call_result_free(&held[i].result);
    }
    sd_function_tier_get_stats(fx->server, &stats);
    assert_int_equal(stats.buffered_bytes, 0); /* every byte given back */
}

static void test_stop_cancels_open_calls(void **state) {
    fixture *fx = *state;
    const uint32_t tag = 1;
    sd_client_call call;
    assert_int_equal(sd_client_call_open(&call, ADDRESS, SD_METHOD_WHATSTHIS, 10000), 0);
    packed_msg md = photo_metadata_msg(100, &tag, 1);
    grpc_byte_buffer *buffer = sd_grpc_buffer_from_bytes(md.data, md.len);
    assert_true(sd_client_call_send(&call, buffer));
    grpc_byte_buffer_destroy(buffer);
    packed_msg_free(&md);
    /* Wait until the server has the call open, then stop it mid-stream. */
    sd_function_tier_stats stats;
    for (int i = 0; i < 1000; i++) {
        sd_function_tier_get_stats(fx->server, &stats);
        if (stats.calls_active == 1)
            break;
        usleep(1000);
    }
    assert_int_equal(stats.calls_active, 1);
    sd_function_tier_stop(fx->server);
    fx->server = NULL;
    sd_client_call_finish(&call);
    assert_int_not_equal(call.status, GRPC_STATUS_OK);
    sd_client_call_close(&call);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
    assert_int_equal(start_server(fx, 0), 0); /* the port is free again */
}

static void test_taken_port_is_an_error(void **state) {
    fixture *fx = *state;
    sd_function_tier_config config = {.listen_address = ADDRESS};
    sd_backend backend = fake_backend_interface(&fx->fake);
    sd_function_tier *second = NULL;
    dr_err err;
    assert_int_equal(sd_function_tier_start(&config, &backend, &second, &err), DR_EIO);
    assert_null(second);
    assert_non_null(strstr(err.msg, "cannot listen on " ADDRESS));
}

static void test_utf8_sanitize(void **state) {
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"rose", "rose"},
        {"p\xc3\xa9tale \xe2\x9c\xbf \xf0\x9f\x8c\xb9",
         "p\xc3\xa9tale \xe2\x9c\xbf \xf0\x9f\x8c\xb9"},
        {"latin1 p\xe9tale", "latin1 p?tale"}, /* a lone Latin-1 byte */
        {"cut \xe2\x9c", "cut ??"},            /* truncated at the end */
        {"overlong \xc0\xaf", "overlong ??"},  /* '/' encoded in two bytes */
        {"surrogate \xed\xa0\x80", "surrogate ???"},
        {"\xff\xfe", "??"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = strdup(cases[i].in);
        sd_utf8_sanitize(text);
        assert_string_equal(text, cases[i].out);
        free(text);
    }
}

static void test_address_and_banner(void **state) {
    (void)state;
    char address[64];
    assert_int_equal(sd_function_tier_address(address, sizeof(address), "127.0.0.1", 3), 0);
    assert_string_equal(address, "127.0.0.1:28003");
    assert_int_equal(sd_function_tier_address(address, sizeof(address), "127.0.0.1", 40000),
                     DR_ERANGE);
    assert_int_equal(sd_function_tier_address(address, 8, "127.0.0.1", 0), DR_ERANGE);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    sd_function_tier_print_banner(out, "127.0.0.1:28000");
    fclose(out);
    assert_string_equal(text, "//////////////////////////////////////////\n"
                              "FunctionTier listening on 127.0.0.1:28000\n"
                              "//////////////////////////////////////////\n");
    free(text);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_whatsthis_answers_each_tag),
        T(test_install_duplicate_and_remove),
        T(test_missing_metadata),
        T(test_data_before_metadata),
        T(test_truncated_stream),
        T(test_more_than_announced),
        T(test_oversized_metadata),
        T(test_second_metadata_and_garbage),
        T(test_unknown_method),
        T(test_backend_error_becomes_status),
        T(test_backend_calls_run_concurrently),
        T(test_too_many_calls_refused),
        T(test_upload_budget),
        T(test_stop_cancels_open_calls),
        T(test_taken_port_is_an_error),
        cmocka_unit_test(test_address_and_banner),
        cmocka_unit_test(test_utf8_sanitize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
