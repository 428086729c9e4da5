/*
 * The HTTP/JSON API (apps/sospdemo/http_api.h) in process on 127.0.0.1:24401 with the fake
 * backend, driven by a raw HTTP/1.1 client over a socket: install (multipart), duplicate,
 * whatsthis, remove; bad tags, empty and oversized bodies, non-multipart and unknown form
 * fields; unknown paths and methods; hooks; /healthz and /metrics; backend errors; the
 * ?version= / ?time= queries of GET /v1/models/{tag} (a fake model_as_of hook).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_backend.h"
#include "http_api.h"
#include "stream_helpers.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT 24401

typedef struct fixture {
    fake_backend fake;
    sd_http_api *api;
} fixture;

typedef struct http_reply {
    int status;
    char *body; /* owned, NUL-terminated */
} http_reply;

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends one request (Connection: close) and reads the whole answer. */
static http_reply http_call(const char *method, const char *path, const char *content_type,
                            const void *body, size_t body_len, const char *extra_headers) {
    http_reply reply = {0, NULL};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s%s%s"
                     "Content-Length: %zu\r\n%s\r\n",
                     method, path, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", body_len,
                     extra_headers ? extra_headers : "");
    write_all(fd, head, (size_t)n);
    if (body_len)
        write_all(fd, body, body_len); /* may fail when the server answered early */
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    ssize_t got;
    while ((got = read(fd, text + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (len + 1 == cap)
            text = realloc(text, cap *= 2);
    }
    text[len] = '\0';
    close(fd);
    sscanf(text, "HTTP/1.1 %d", &reply.status);
    char *start = strstr(text, "\r\n\r\n");
    reply.body = strdup(start ? start + 4 : "");
    free(text);
    return reply;
}

/* A multipart/form-data body with the given fields. */
static char *multipart(const char *const *names, const char *const *values, size_t n,
                       size_t *len_out) {
    size_t cap = 1024;
    for (size_t i = 0; i < n; i++)
        cap += strlen(values[i]) + 256;
    char *body = malloc(cap);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "--XyZ\r\nContent-Disposition: form-data; name=\"%s\"; "
                                "filename=\"%s.bin\"\r\nContent-Type: application/octet-stream"
                                "\r\n\r\n%s\r\n",
                                names[i], names[i], values[i]);
    len += (size_t)snprintf(body + len, cap - len, "--XyZ--\r\n");
    *len_out = len;
    return body;
}

#define FORM_TYPE "multipart/form-data; boundary=XyZ"

static int hook_models(void *user, char **json_out, dr_err *err) {
    (void)user, (void)err;
    *json_out = strdup("[{\"tag\":1}]");
    return 0;
}

static int hook_metrics(void *user, char **text_out) {
    (void)user;
    *text_out = strdup("sospdemo_models_installed 1\n");
    return 0;
}

/* What the model_as_of hook was last asked, and how often (it answers by tag: 1 a model,
 * 2 none then, 3 older than the log, 4 not durable). */
static struct {
    int calls;
    uint32_t tag;
    bool by_time;
    int64_t key;
} g_as_of;

static int hook_model_as_of(void *user, uint32_t tag, bool by_time, int64_t key, char **json_out,
                            dr_err *err) {
    (void)user;
    g_as_of.calls++;
    g_as_of.tag = tag;
    g_as_of.by_time = by_time;
    g_as_of.key = key;
    switch (tag) {
    case 1:
        *json_out = strdup("{\"tag\":1,\"digest\":\"00000000000000aa\"}");
        return DR_OK;
    case 2:
        return dr_err_set(err, DR_ENOTFOUND, "no model under tag 2 then");
    case 3:
        return dr_err_set(err, DR_ERANGE, "older than every replica's history");
    default:
        return dr_err_set(err, DR_ESTATE, "the categorizer shard is not durable");
    }
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof(*fx));
    fake_backend_init(&fx->fake);
    sd_http_config config = {
        .listen_ip = "127.0.0.1",
        .port = PORT,
        .limits = {.max_photo_bytes = 100000, .max_model_bytes = 200000, .max_tags = 4},
    };
    sd_backend backend = fake_backend_interface(&fx->fake);
    sd_http_hooks hooks = {
        .list_models = hook_models, .model_as_of = hook_model_as_of, .metrics = hook_metrics};
    dr_err err;
    *state = fx;
    return sd_http_start(&config, &backend, &hooks, &fx->api, &err);
}

static int teardown(void **state) {
    fixture *fx = *state;
    sd_http_stop(fx->api);
    fake_backend_destroy(&fx->fake);
    free(fx);
    return 0;
}

static void assert_json_string(const char *body, const char *key, const char *expected) {
    cJSON *json = cJSON_Parse(body);
    assert_non_null(json);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!cJSON_IsString(item) || strcmp(item->valuestring, expected) != 0)
        fail_msg("%s: expected %s = '%s'", body, key, expected);
    cJSON_Delete(json);
}

static void test_install_whatsthis_remove(void **state) {
    fixture *fx = *state;
    const char *names[] = {"synset", "symbol", "params"};
    const char *values[] = {"n0001 rose", "{}", "PARAMSPARAMS"};
    size_t len = 0;
    char *form = multipart(names, values, 3, &len);
    http_reply r = http_call("PUT", "/v1/models/2", FORM_TYPE, form, len, NULL);
    assert_int_equal(r.status, 200);
    assert_json_string(r.body, "error_desc", "install model successfully.");
    free(r.body);
    assert_string_equal(fake_snapshot(&fx->fake).last_synset, "n0001 rose");
    assert_int_equal(fake_snapshot(&fx->fake).model_bytes[2], 10 + 2 + 12);
    r = http_call("PUT", "/v1/models/2", FORM_TYPE, form, len, NULL);
    assert_int_equal(r.status, 409); /* tag taken */
    assert_json_string(r.body, "error_desc",
                       "install_model failed because tag (2) has been taken.");
    free(r.body);
    free(form);

    uint8_t photo[5000];
    fill_pattern(photo, sizeof(photo), 8);
    r = http_call("POST", "/v1/whatsthis?tags=2", "image/jpeg", photo, sizeof(photo), NULL);
    assert_int_equal(r.status, 200);
    char *one = fake_describe(2, photo, sizeof(photo));
    assert_json_string(r.body, "description", one);
    free(r.body);
    /* an unknown tag is an error (404), the answer of the other tag still in the body */
    r = http_call("POST", "/v1/whatsthis?tags=2,3", "image/jpeg", photo, sizeof(photo), NULL);
    assert_int_equal(r.status, 404);
    char expected[256];
    snprintf(expected, sizeof(expected), "%s or Cannot find model for photo tag.", one);
    free(one);
    assert_json_string(r.body, "description", expected);
    assert_json_string(r.body, "error", expected);
    free(r.body);

    r = http_call("DELETE", "/v1/models/2", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    free(r.body);
    r = http_call("DELETE", "/v1/models/2", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 404);
    free(r.body);
}

static void test_onnx_form_fields(void **state) {
    fixture *fx = *state;
    const char *names[] = {"labels", "onnx"};
    const char *values[] = {"cat\ndog", "ONNXBYTES"};
    size_t len = 0;
    char *form = multipart(names, values, 2, &len);
    http_reply r = http_call("PUT", "/v1/models/4", FORM_TYPE, form, len, NULL);
    free(form);
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_string_equal(fake_snapshot(&fx->fake).last_synset, "cat\ndog");
    assert_int_equal(fake_snapshot(&fx->fake).model_bytes[4], 7 + 9);
    assert_int_equal(fake_snapshot(&fx->fake).last_precision, 0); /* no field: fp32 */
}

/* The precision field reaches the backend; a value other than fp32/bf16/auto is a 400. */
static void test_precision_field(void **state) {
    fixture *fx = *state;
    const char *names[] = {"labels", "onnx", "precision"};
    const char *values[] = {"cat\ndog", "ONNXBYTES", "bf16"};
    size_t len = 0;
    char *form = multipart(names, values, 3, &len);
    http_reply r = http_call("PUT", "/v1/models/5", FORM_TYPE, form, len, NULL);
    free(form);
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_int_equal(fake_snapshot(&fx->fake).last_precision, 1); /* DR_PRECISION_BF16 */
    values[2] = "auto";
    form = multipart(names, values, 3, &len);
    r = http_call("PUT", "/v1/models/6", FORM_TYPE, form, len, NULL);
    free(form);
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_int_equal(fake_snapshot(&fx->fake).last_precision, 2); /* DR_PRECISION_AUTO */
    const char *bad[] = {"fp16", "bf16bf16bf16"};
    for (size_t i = 0; i < 2; i++) {
        values[2] = bad[i];
        form = multipart(names, values, 3, &len);
        r = http_call("PUT", "/v1/models/7", FORM_TYPE, form, len, NULL);
        free(form);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "precision must be fp32, bf16 or auto"));
        free(r.body);
    }
    assert_false(fake_snapshot(&fx->fake).installed[7]);
}

static void test_bad_requests(void **state) {
    fixture *fx = *state;
    const uint8_t byte = 1;
    struct {
        const char *method, *path, *type;
        const void *body;
        size_t len;
        int status;
        const char *part;
    } cases[] = {
        {"POST", "/v1/whatsthis?tags=1,,2", "image/jpeg", &byte, 1, 400, "?tags="},
        {"POST", "/v1/whatsthis", "image/jpeg", &byte, 1, 400, "?tags="},
        {"POST", "/v1/whatsthis?tags=1,2,3,4,5", "image/jpeg", &byte, 1, 400, "?tags="},
        {"POST", "/v1/whatsthis?tags=1", "image/jpeg", NULL, 0, 400, "the body must be the photo"},
        {"PUT", "/v1/models/1", "application/octet-stream", &byte, 1, 415, "multipart"},
        {"PUT", "/v1/models/x", FORM_TYPE, NULL, 0, 404, "no such resource"},
        {"POST", "/v1/models/1", "image/jpeg", &byte, 1, 405, "GET, PUT or DELETE"},
        {"GET", "/v1/whatsthis", NULL, NULL, 0, 405, "needs POST"},
        {"GET", "/nothing", NULL, NULL, 0, 404, "no such resource: /nothing"},
        {"GET", "/v1/cluster", NULL, NULL, 0, 501, "not available"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        http_reply r = http_call(cases[i].method, cases[i].path, cases[i].type, cases[i].body,
                                 cases[i].len, NULL);
        if (r.status != cases[i].status || !strstr(r.body, cases[i].part))
            fail_msg("%s %s: %d %s, expected %d and '%s'", cases[i].method, cases[i].path, r.status,
                     r.body, cases[i].status, cases[i].part);
        free(r.body);
    }
    const char *names[] = {"weights"};
    const char *values[] = {"x"};
    size_t len = 0;
    char *form = multipart(names, values, 1, &len);
    http_reply r = http_call("PUT", "/v1/models/1", FORM_TYPE, form, len, NULL);
    free(form);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "unknown form field 'weights'"));
    free(r.body);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

static void test_oversized_bodies(void **state) {
    fixture *fx = *state;
    static uint8_t big[100001];
    http_reply r = http_call("POST", "/v1/whatsthis?tags=1", "image/jpeg", big, sizeof(big), NULL);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "exceeds the limit of 100000"));
    free(r.body);
    static char params[200002]; /* 200001 bytes and a NUL */
    memset(params, 'p', sizeof(params) - 1);
    const char *names[] = {"params"};
    const char *values[] = {params};
    size_t len = 0;
    char *form = multipart(names, values, 1, &len);
    r = http_call("PUT", "/v1/models/1", FORM_TYPE, form, len, NULL);
    free(form);
    assert_int_equal(r.status, 413);
    free(r.body);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

static void test_backend_error_and_hooks(void **state) {
    fixture *fx = *state;
    fake_backend_fail_with(&fx->fake, DR_EAGAIN);
    http_reply r = http_call("DELETE", "/v1/models/1", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 503);
    assert_json_string(r.body, "error", "fake backend failure");
    free(r.body);
    r = http_call("GET", "/v1/models", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "[{\"tag\":1}]");
    free(r.body);
    r = http_call("GET", "/healthz", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);
    r = http_call("GET", "/metrics", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "sospdemo_http_requests_total{endpoint=\"remove_model\"} 1\n"));
    assert_non_null(strstr(r.body, "sospdemo_http_errors_total{endpoint=\"remove_model\"} 1\n"));
    assert_non_null(strstr(r.body, "sospdemo_http_requests_total{endpoint=\"healthz\"} 1\n"));
    assert_non_null(
        strstr(r.body, "sospdemo_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(r.body, "sospdemo_models_installed 1\n"));
    free(r.body);
}

/* The status and error text of GET path. */
static void expect_get(const char *path, int status, const char *text) {
    http_reply r = http_call("GET", path, NULL, NULL, 0, NULL);
    if (r.status != status || (text && !strstr(r.body, text)))
        fail_msg("GET %s: %d %s (expected %d with '%s')", path, r.status, r.body, status,
                 text ? text : "");
    free(r.body);
}

/* GET /v1/models/{tag}?version= / ?time=: the query's parsing (µs or ISO-8601 UTC), the hook's
 * errors as 404 / 410 / 409, malformed queries 400 without calling the hook. */
static void test_model_as_of_query(void **state) {
    (void)state;
    memset(&g_as_of, 0, sizeof g_as_of);
    expect_get("/v1/models/1?version=12", 200, "\"digest\":\"00000000000000aa\"");
    assert_int_equal(g_as_of.tag, 1);
    assert_false(g_as_of.by_time);
    assert_int_equal(g_as_of.key, 12);
    expect_get("/v1/models/1?time=1796678873150103", 200, NULL);
    assert_true(g_as_of.by_time);
    assert_int_equal(g_as_of.key, 1796678873150103);
    expect_get("/v1/models/1?time=2026-12-07T21:00:00.5Z", 200, NULL);
    assert_int_equal(g_as_of.key, 1796677200500000);
    expect_get("/v1/models/1?time=2026-12-07T21:00:00Z", 200, NULL);
    assert_int_equal(g_as_of.key, 1796677200000000);
    expect_get("/v1/models/1?version=9223372036854775807", 200, NULL);
    assert_int_equal(g_as_of.key, INT64_MAX);
    expect_get("/v1/models/2?version=5", 404, "no model under tag 2 then");
    expect_get("/v1/models/3?version=5", 410, "older than every replica's history");
    expect_get("/v1/models/4?time=5", 409, "not durable");
    int calls = g_as_of.calls;
    static const char *const bad[] = {
        "version=abc",
        "version=-1",
        "version=",
        "version",
        "version=1&time=2",
        "version=1&version=2",
        "version=1x",
        "version=+1",
        "version=9223372036854775808",
        "time=yesterday",
        "time=2026-13-01T00:00:00Z",
        "time=2026-12-07T21:00:00",
        "time=2026-12-07T21:00:00.1234567Z",
        "time=2026-12-07T21:00:00.Z",
        "time=",
        "time=2026-+1-07T21:00:00Z",
        "time=2026-02-30T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/models/1?%s", bad[i]);
        expect_get(path, 400, NULL);
    }
    assert_int_equal(g_as_of.calls, calls);       /* refused before the hook */
    expect_get("/v1/models/1", 200, "\"tag\":1"); /* no query: the current entry */
    expect_get("/v1/models/1?other=1", 200, "\"tag\":1");
    assert_int_equal(g_as_of.calls, calls);
    http_reply r = http_call("GET", "/metrics", NULL, NULL, 0, NULL);
    assert_non_null(strstr(r.body, "sospdemo_http_errors_by_kind_total{kind=\"gone\"} 1\n"));
    free(r.body);
}

/* GET / serves the embedded web page, which uses the JSON API. */
static void test_web_page(void **state) {
    (void)state;
    http_reply r = http_call("GET", "/", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_true(strncmp(r.body, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(r.body, "/v1/whatsthis?tags="));
    assert_non_null(strstr(r.body, "/v1/cluster"));
    assert_non_null(strstr(r.body, "</html>"));
    free(r.body);
    r = http_call("POST", "/", "text/plain", "x", 1, NULL);
    assert_int_equal(r.status, 405);
    free(r.body);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* ---- errors as errors: a backend with per-tag answers (classify) -------------------------- */

/* tag 1: a label (score 0.75); 2: no model; 3: a model that cannot load; 4: not an image. */
static int answers_classify(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                            size_t photo_size_bytes, uint32_t top_k, sd_tag_answer *answers,
                            dr_err *err) {
    (void)user, (void)photo, (void)photo_size_bytes, (void)err;
    static const char *const texts[] = {"", "n00000001 red circle", SD_DESC_NO_MODEL,
                                        SD_DESC_LOAD_FAIL,
                                        "Cannot classify photo: not a JPEG or PNG image."};
    for (size_t i = 0; i < n_tags; i++) {
        uint32_t tag = tags[i] < 5 ? tags[i] : 2;
        answers[i] = (sd_tag_answer){.tag = tags[i],
                                     .kind = tag == 1 ? SD_ANSWER_OK : (sd_answer_kind)(tag - 1),
                                     .score = tag == 1 ? 0.75f : 0.0f,
                                     .desc = strdup(texts[tag])};
        for (uint32_t k = 0; tag == 1 && k < top_k; k++) /* scores 0.75, 0.2, 0.05, ... */
            answers[i].top[answers[i].n_top++] =
                (sd_class){.score = k == 0   ? 0.75f
                                    : k == 1 ? 0.2f
                                             : 0.05f,
                           .label = strdup(k == 0 ? texts[1] : "n00000002 red square")};
    }
    return DR_OK;
}

static int setup_answers(void **state) {
    fixture *fx = calloc(1, sizeof(*fx));
    fake_backend_init(&fx->fake);
    sd_http_config config = {.listen_ip = "127.0.0.1", .port = PORT};
    sd_backend backend = {.classify = answers_classify};
    sd_http_hooks hooks = {.list_models = hook_models};
    dr_err err;
    *state = fx;
    return sd_http_start(&config, &backend, &hooks, &fx->api, &err);
}

static void expect(http_reply r, int status, const char *part) {
    if (r.status != status || !strstr(r.body, part))
        fail_msg("%d %s, expected %d and '%s'", r.status, r.body, status, part);
    free(r.body);
}

static void test_errors_are_errors(void **state) {
    (void)state;
    const uint8_t photo[4] = {1, 2, 3, 4};
    const char *type = "image/jpeg";
    expect(http_call("POST", "/v1/whatsthis?tags=1", type, photo, 4, NULL), 200, "\"score\":0.75");
    expect(http_call("POST", "/v1/whatsthis?tags=1&top=2", type, photo, 4, NULL), 200,
           "\"top\":[{\"label\":\"n00000001 red circle\",\"score\":0.75},"
           "{\"label\":\"n00000002 red square\",\"score\":0.2}]");
    expect(http_call("POST", "/v1/whatsthis?tags=1&top=11", type, photo, 4, NULL), 400, "?top=");
    expect(http_call("POST", "/v1/whatsthis?tags=2", type, photo, 4, NULL), 404,
           "\"error\":\"Cannot find model for photo tag.\"");
    expect(http_call("POST", "/v1/whatsthis?tags=3", type, photo, 4, NULL), 422,
           "\"error\":\"cannot_load_model\"");
    expect(http_call("POST", "/v1/whatsthis?tags=4", type, photo, 4, NULL), 415,
           "not a JPEG or PNG image");
    /* the label's answer stays in the body next to the other tag's error */
    expect(http_call("POST", "/v1/whatsthis?tags=1,2", type, photo, 4, NULL), 404,
           "{\"tag\":1,\"description\":\"n00000001 red circle\",\"score\":0.75}");
    /* curl -F photo=@x.jpg */
    const char *names[] = {"photo"};
    const char *values[] = {"JPEGBYTES"};
    size_t len = 0;
    char *form = multipart(names, values, 1, &len);
    expect(http_call("POST", "/v1/whatsthis?tags=1", FORM_TYPE, form, len, NULL), 200,
           "red circle");
    free(form);
    /* curl -X PUT --data-binary: not multipart */
    expect(http_call("PUT", "/v1/models/1", "application/x-www-form-urlencoded", photo, 4, NULL),
           415, "needs multipart/form-data");
    /* GET /v1/models/{tag} */
    expect(http_call("GET", "/v1/models/1", NULL, NULL, 0, NULL), 200, "{\"tag\":1}");
    expect(http_call("GET", "/v1/models/9", NULL, NULL, 0, NULL), 404,
           "no model is installed under tag 9");
    /* counted by kind */
    http_reply r = http_call("GET", "/metrics", NULL, NULL, 0, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "sospdemo_http_errors_by_kind_total{kind=\"not_found\"} 3"));
    assert_non_null(strstr(r.body, "sospdemo_http_errors_by_kind_total{kind=\"unprocessable\"} 1"));
    assert_non_null(
        strstr(r.body, "sospdemo_http_errors_by_kind_total{kind=\"unsupported_media_type\"} 2"));
    assert_non_null(strstr(r.body, "sospdemo_answers_total{kind=\"ok\"} 4"));
    assert_non_null(strstr(r.body, "sospdemo_answers_total{kind=\"no_model\"} 2"));
    free(r.body);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_errors_are_errors, setup_answers, teardown),
        T(test_install_whatsthis_remove),
        T(test_onnx_form_fields),
        T(test_precision_field),
        T(test_bad_requests),
        T(test_oversized_bodies),
        T(test_backend_error_and_hooks),
        T(test_model_as_of_query),
        T(test_web_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
