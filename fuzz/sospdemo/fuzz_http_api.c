/*
 * libFuzzer target for the function tier's HTTP/JSON API (apps/sospdemo/http_api.c): raw bytes
 * sent as an HTTP connection to the real server (libmicrohttpd on 127.0.0.1, a port the
 * kernel picks) with a fake backend, so that everything a client reaches is exercised:
 * request parsing, routing, Content-Length and chunked bodies, the multipart parser for photos
 * and models, ?tags= and ?top= parsing, the JSON answers, /metrics, the hooks and the errors.
 *
 * Input: byte 0 picks the server (bit 0: 0 = full backend with classify and hooks, 1 =
 * whatsthis-only backend without hooks) and a backend failure (bits 1-3: 0 = none, else one of
 * DR_EINVAL, DR_ENOTFOUND, DR_ETOOBIG, DR_ETIMEDOUT, DR_EAGAIN, DR_EUNSUPPORTED, DR_EIO for
 * every call); the rest is what the client sends, then it half-closes and reads the answer to
 * the end. Limits are small (photo 4096 bytes, model 8192, 8 tags) so that they are reached.
 *
 * Checks on every input: the backend never receives a photo over the limit, an empty photo,
 * 0 or more than max_tags tags, a top_k over SD_MAX_TOP, or model parts over the limit in
 * total; every answer the server sends starts with an HTTP status line; the server closes the
 * connection within 20 s of the client's half-close (no hang).
 *
 * DR_FUZZ_SHOW=1 prints each answer's status line (to check what the seeds reach).
 */
#include "derecho/log.h"
#include "fuzz_seed.h"
#include "http_api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PHOTO = 4096, MAX_MODEL = 8192, MAX_TAGS = 8, DEADLINE_MS = 20000 };

static atomic_int g_fail; /* the backend's answer to every call: 0 or a DR_E* code */

static void check_photo(const uint32_t *tags, size_t n_tags, size_t photo_bytes) {
    FUZZ_CHECK(n_tags >= 1 && n_tags <= MAX_TAGS && tags != NULL);
    FUZZ_CHECK(photo_bytes >= 1 && photo_bytes <= MAX_PHOTO);
}

static int fake_whatsthis(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                          size_t photo_bytes, char **desc_out, dr_err *err) {
    (void)user, (void)photo;
    check_photo(tags, n_tags, photo_bytes);
    int fail = atomic_load(&g_fail);
    if (fail)
        return dr_err_set(err, fail, "fake backend: failing as asked");
    /* one of the answers the function tier gives, by the first tag */
    static const char *const answers[] = {"n0001 rose", "Cannot find model for photo tag.",
                                          "Cannot load model for photo tag.",
                                          "Cannot classify photo: not an image."};
    *desc_out = strdup(answers[tags[0] % 4]);
    return *desc_out ? DR_OK : DR_ENOMEM;
}

static int fake_classify(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                         size_t photo_bytes, uint32_t top_k, sd_tag_answer *answers, dr_err *err) {
    (void)user, (void)photo;
    check_photo(tags, n_tags, photo_bytes);
    FUZZ_CHECK(top_k <= SD_MAX_TOP);
    int fail = atomic_load(&g_fail);
    if (fail)
        return dr_err_set(err, fail, "fake backend: failing as asked");
    for (size_t i = 0; i < n_tags; i++) {
        answers[i].tag = tags[i];
        answers[i].kind = (sd_answer_kind)(tags[i] % 4);
        answers[i].score = answers[i].kind == SD_ANSWER_OK ? 0.5f : 0.0f;
        answers[i].desc =
            strdup(answers[i].kind == SD_ANSWER_OK ? "n0001 \"rose\"\\\x01" : "Cannot find model.");
        answers[i].n_top = 0;
        for (uint32_t k = 0; answers[i].kind == SD_ANSWER_OK && k < top_k; k++) {
            answers[i].top[k].score = 1.0f / (float)(k + 2);
            answers[i].top[k].label = strdup("label");
            answers[i].n_top++;
        }
    }
    return DR_OK;
}

static int fake_install(void *user, uint32_t tag, const uint8_t *synset, size_t synset_bytes,
                        const uint8_t *symbol, size_t symbol_bytes, const uint8_t *params,
                        size_t params_bytes, uint8_t precision, int32_t *code, char **desc,
                        dr_err *err) {
    (void)user, (void)synset, (void)symbol, (void)params;
    FUZZ_CHECK(precision <= 2); /* fp32, bf16 or auto: anything else is a 400 */
    FUZZ_CHECK(params_bytes >= 1);
    FUZZ_CHECK(synset_bytes <= MAX_MODEL && symbol_bytes <= MAX_MODEL && params_bytes <= MAX_MODEL);
    FUZZ_CHECK(synset_bytes + symbol_bytes + params_bytes <= MAX_MODEL);
    int fail = atomic_load(&g_fail);
    if (fail)
        return dr_err_set(err, fail, "fake backend: failing as asked");
    /* tags decide the answer: accepted, taken, cannot load, too big */
    static const int32_t codes[] = {0, DR_EEXIST, DR_ECORRUPT, DR_ETOOBIG};
    *code = codes[tag % 4];
    *desc = strdup(*code ? "install_model failed" : "install model successfully.");
    return DR_OK;
}

static int fake_remove(void *user, uint32_t tag, int32_t *code, char **desc, dr_err *err) {
    (void)user;
    int fail = atomic_load(&g_fail);
    if (fail)
        return dr_err_set(err, fail, "fake backend: failing as asked");
    *code = tag % 2 ? DR_ENOTFOUND : 0;
    *desc = strdup(*code ? "remove_model failed" : "remove model successfully.");
    return DR_OK;
}

static int fake_list(void *user, char **json, dr_err *err) {
    (void)user;
    int fail = atomic_load(&g_fail);
    if (fail)
        return dr_err_set(err, fail, "fake hook: failing as asked");
    *json = strdup("[{\"tag\":1,\"format\":\"mxnet\",\"bytes\":10},{\"tag\":2,\"format\":"
                   "\"onnx\",\"bytes\":20},{\"tag\":\"x\"},7,null]");
    return *json ? DR_OK : DR_ENOMEM;
}

static int fake_cluster(void *user, char **json, dr_err *err) {
    (void)user, (void)err;
    *json = strdup("{\"vid\":3,\"members\":[0,1,2]}");
    return *json ? DR_OK : DR_ENOMEM;
}

static int fake_metrics(void *user, char **text) {
    (void)user;
    *text = strdup("sospdemo_models_installed 2\n");
    return *text ? DR_OK : DR_ENOMEM;
}

static int g_ports[2];
static sd_http_api *g_api[2]; /* live as long as the process (libFuzzer never returns) */

static void start_servers(void) {
    dr_log_set_all_levels(DR_LOG_OFF);
    sd_http_config config = {.listen_ip = "127.0.0.1",
                             .limits = {.max_photo_bytes = MAX_PHOTO,
                                        .max_model_bytes = MAX_MODEL,
                                        .max_tags = MAX_TAGS}};
    sd_backend full = {.whatsthis = fake_whatsthis,
                       .classify = fake_classify,
                       .install_model = fake_install,
                       .remove_model = fake_remove};
    sd_http_hooks hooks = {
        .list_models = fake_list, .cluster = fake_cluster, .metrics = fake_metrics};
    sd_backend bare = {.whatsthis = fake_whatsthis};
    sd_http_api **api = g_api;
    dr_err err;
    if (sd_http_start(&config, &full, &hooks, &api[0], &err) != DR_OK ||
        sd_http_start(&config, &bare, NULL, &api[1], &err) != DR_OK) {
        fprintf(stderr, "fuzz_http_api: cannot start the HTTP server: %s\n", err.msg);
        abort(); /* set-up only: no loopback networking here */
    }
    g_ports[0] = sd_http_port(api[0]);
    g_ports[1] = sd_http_port(api[1]);
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sends data on a new connection, half-closes, reads the answer to the server's close. */
static void exchange(int port, const uint8_t *data, size_t size) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* closed with a reset once the answer is read: no TIME_WAIT per input (hundreds of
     * thousands of inputs would otherwise use up the ephemeral ports) */
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    FUZZ_CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger) == 0);
    /* EADDRNOTAVAIL: every local port to this server is still in TIME_WAIT (about a thousand
     * connections a second, and the sockets the server closed first linger on this side too);
     * that is this machine's limit, not the server's fault, so wait for ports to free up. Any
     * other failure (refused: the server stopped listening) is one. */
    uint64_t connect_deadline = now_ms() + DEADLINE_MS;
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int e = errno;
        if ((e == EADDRNOTAVAIL || e == EINTR) && now_ms() < connect_deadline) {
            poll(NULL, 0, e == EINTR ? 0 : 10);
            continue;
        }
        fprintf(stderr, "fuzz_http_api: connect to 127.0.0.1:%d: %s\n", port, strerror(e));
        FUZZ_CHECK(!"cannot connect to the server");
    }
    size_t sent = 0;
    int half_closed = 0;
    char head[16];
    size_t got = 0;
    uint64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        if (sent == size && !half_closed) {
            shutdown(fd, SHUT_WR);
            half_closed = 1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (half_closed ? 0 : POLLOUT)};
        uint64_t now = now_ms();
        if (now >= deadline) {
            fprintf(stderr, "fuzz_http_api: the server did not close the connection in %d ms\n",
                    DEADLINE_MS);
            FUZZ_CHECK(!"the server hangs");
        }
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        if (p.revents & POLLIN) {
            char buf[65536];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n <= 0)
                break; /* closed (or reset: a refused request may be cut off) */
            for (ssize_t i = 0; i < n && got < sizeof head; i++)
                head[got++] = buf[i];
        } else if (p.revents & POLLOUT) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                sent = size; /* the server closed its side: read what it said */
        } else if (p.revents & (POLLERR | POLLHUP)) {
            break;
        }
    }
    close(fd);
    if (getenv("DR_FUZZ_SHOW"))
        fprintf(stderr, "answer: %.*s\n", (int)(got > 12 ? 12 : got), head);
    if (got >= 9)
        FUZZ_CHECK(memcmp(head, "HTTP/1.", 7) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, start_servers);
    if (size < 1)
        return 0;
    static const int codes[8] = {0,         DR_EINVAL,       DR_ENOTFOUND, DR_ETOOBIG, DR_ETIMEDOUT,
                                 DR_EAGAIN, DR_EUNSUPPORTED, DR_EIO};
    atomic_store(&g_fail, codes[(data[0] >> 1) & 7]);
    exchange(g_ports[data[0] & 1], data + 1, size - 1);
    return 0;
}

/* ---- seeds: one request of each kind, valid and near-valid -------------------------------- */

static void seed(const char *name, uint8_t selector, const char *request, size_t len) {
    fuzz_bytes b = {0};
    fuzz_put_u8(&b, selector);
    fuzz_put(&b, request, len);
    fuzz_seed_done(&b, name);
    fuzz_bytes_free(&b);
}

#define SEED(name, selector, text) seed(name, selector, text, sizeof(text) - 1)

/* head (request line and headers, without the blank line) + body, framed by Content-Length or
 * as one chunk (Transfer-Encoding: chunked). */
static void seed_body(const char *name, uint8_t selector, const char *head, const char *body,
                      size_t body_len, int chunked) {
    fuzz_bytes b = {0};
    char line[64];
    fuzz_put_u8(&b, selector);
    fuzz_put(&b, head, strlen(head));
    if (chunked) {
        int n = snprintf(line, sizeof line, "Transfer-Encoding: chunked\r\n\r\n%zx\r\n", body_len);
        fuzz_put(&b, line, (size_t)n);
        fuzz_put(&b, body, body_len);
        fuzz_put(&b, "\r\n0\r\n\r\n", 7);
    } else {
        int n = snprintf(line, sizeof line, "Content-Length: %zu\r\n\r\n", body_len);
        fuzz_put(&b, line, (size_t)n);
        fuzz_put(&b, body, body_len);
    }
    fuzz_seed_done(&b, name);
    fuzz_bytes_free(&b);
}

#define SEED_BODY(name, selector, head, body, chunked)                                             \
    seed_body(name, selector, head, body, sizeof(body) - 1, chunked)
#define FORM "Content-Type: multipart/form-data; boundary=XB\r\n"

/* multipart bodies (boundary XB) */
#define PART(name, file, body)                                                                     \
    "--XB\r\nContent-Disposition: form-data; name=\"" name "\"; filename=\"" file "\"\r\n"         \
    "Content-Type: application/octet-stream\r\n\r\n" body "\r\n"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    SEED("get_healthz", 0, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    SEED("get_metrics", 0, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    SEED("get_page", 0, "GET / HTTP/1.0\r\n\r\n");
    SEED("get_models", 0, "GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_model_1", 0, "GET /v1/models/1 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_model_9", 0, "GET /v1/models/9 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_cluster_bare", 1, "GET /v1/cluster HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_samples", 0, "GET /samples HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_sample", 0, "GET /samples/blue-circle.jpg HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_sample_missing", 0, "GET /samples/../x HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("get_unknown", 0, "GET /v2/nothing?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("delete_healthz", 0, "DELETE /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("pipelined", 0,
         "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("whatsthis_raw", 0,
         "POST /v1/whatsthis?tags=1,2&top=3 HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n\r\n"
         "\xff\xd8\xff\xe0photo-bytes!");
    SEED("whatsthis_errors", 0,
         "POST /v1/whatsthis?tags=1,2,3,4 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd");
    SEED("whatsthis_backend_fails", 2 * 5,
         "POST /v1/whatsthis?tags=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd");
    SEED("whatsthis_bare", 1,
         "POST /v1/whatsthis?tags=3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd");
    SEED("whatsthis_chunked", 0,
         "POST /v1/whatsthis?tags=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    SEED("whatsthis_too_big", 0,
         "POST /v1/whatsthis?tags=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\nabc");
    SEED("whatsthis_bad_tags", 0,
         "POST /v1/whatsthis?tags=1,x,,-2&top=11 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
         "abc");
    SEED("whatsthis_many_tags", 0,
         "POST /v1/whatsthis?tags=1,2,3,4,5,6,7,8,9 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
         "\r\nabc");
    SEED("whatsthis_no_body", 0, "POST /v1/whatsthis?tags=1 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED_BODY("whatsthis_form", 0, "POST /v1/whatsthis?tags=1&top=2 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("photo", "x.jpg", "\xff\xd8\xff\xe0 jpeg bytes") "--XB--\r\n", 0);
    SEED_BODY("whatsthis_form_chunked_other_field", 0,
              "POST /v1/whatsthis?tags=1 HTTP/1.1\r\nHost: a\r\n" FORM,
              "--XB\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nvalue\r\n"
              "--XB--\r\n",
              1);
    SEED_BODY("install_mxnet", 0, "PUT /v1/models/4 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("synset", "synset.txt", "n01 a\nn02 b\n")
                  PART("symbol", "s.json", "{\"nodes\":[]}")
                      PART("params", "p.params", "\x12\x01\x00\x00\x00\x00\x00\x00") "--XB--\r\n",
              0);
    SEED_BODY("install_onnx_taken_chunked", 0, "PUT /v1/models/5 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("labels", "labels.txt", "cat\ndog\n")
                  PART("onnx", "m.onnx", "\x08\x07\x12\x04test") "--XB--\r\n",
              1);
    SEED_BODY("install_unknown_field", 0, "PUT /v1/models/6 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("weights", "w.bin", "123") "--XB--\r\n", 0);
    SEED_BODY("install_not_multipart", 0, "PUT /v1/models/4 HTTP/1.1\r\nHost: a\r\n", "abc", 0);
    SEED_BODY("install_urlencoded", 0,
              "PUT /v1/models/8 HTTP/1.1\r\nHost: a\r\n"
              "Content-Type: application/x-www-form-urlencoded\r\n",
              "synset=a&params=%41B", 0);
    SEED_BODY("install_no_params", 0, "PUT /v1/models/4 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("synset", "s.txt", "n01 a\n") "--XB--\r\n", 0);
    SEED("install_too_big", 0,
         "PUT /v1/models/4 HTTP/1.1\r\nHost: a\r\n" FORM "Content-Length: 999999\r\n\r\n--XB");
    SEED_BODY("install_bare", 1, "PUT /v1/models/4 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("params", "p", "123") "--XB--\r\n", 0);
    SEED_BODY("install_backend_fails", 2 * 6, "PUT /v1/models/4 HTTP/1.1\r\nHost: a\r\n" FORM,
              PART("params", "p", "123") "--XB--\r\n", 0);
    SEED("delete_model", 0, "DELETE /v1/models/2 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("delete_model_missing", 0, "DELETE /v1/models/3 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("delete_model_backend_fails", 2 * 4, "DELETE /v1/models/2 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("delete_with_body", 0,
         "DELETE /v1/models/2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxx");
    SEED("model_bad_tag", 0, "PATCH /v1/models/99999999999 HTTP/1.1\r\nHost: a\r\n\r\n");
    SEED("garbage", 0, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    SEED("http09", 0, "GET /\r\n\r\n");
    return 0;
}
