/*
 * The function tier's HTTP/JSON API on libmicrohttpd (routes and statuses: http_api.h).
 *
 * libmicrohttpd calls the access handler several times per request: once with the headers
 * (we route, check Content-Length against the limits and set up the request state), once per
 * piece of body (appended to a bounded buffer, or fed to the multipart parser), and once at
 * the end (we call the backend and queue the answer). The request state is freed by the
 * completion callback whatever happened to the connection.
 */
#include "http_api.h"

#include "client.h"
#include "derecho/buffer.h"
#include "derecho/log.h"
#include "upload.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* web/index.html, embedded at build time (embed.cmake). */
extern const unsigned char sd_web_page[];

/* The demo model's sample photos, embedded at build time (embed_samples.cmake). */
typedef struct sd_sample {
    const char *name;           /* file name, e.g. "red-circle.jpg" */
    const char *type;           /* its content type */
    const unsigned char *bytes; /* its bytes */
    size_t len;                 /* their number */
} sd_sample;
extern const sd_sample sd_samples[];
extern const size_t sd_samples_count;

enum {
    DEFAULT_MAX_CONNECTIONS = 256,
    DEFAULT_MAX_CONNECTIONS_PER_IP = 32,
    DEFAULT_CONNECTION_TIMEOUT_S = 30,
    MAX_HTTP_TAGS = 64,
    POST_BUFFER_BYTES = 64 * 1024,
    MAX_ALLOWED_HOSTS = 16,
    LOG_BURST = 20, /* libmicrohttpd lines allowed per LOG_WINDOW_MS */
    LOG_WINDOW_MS = 10000,
};
#define DEFAULT_MIN_UPLOAD_BUDGET (256ull << 20)
/* Body bytes read and dropped after a refusal before the connection is closed instead. */
#define MAX_DISCARD_BYTES (256ull << 20)

/* Requests refused before they reach an endpoint, counted in /metrics. */
typedef enum refusal {
    REFUSED_HOST,            /* Host header not allowed (DNS rebinding) */
    REFUSED_ORIGIN,          /* Origin not allowed */
    REFUSED_UNAUTHENTICATED, /* no bearer token where one is needed */
    REFUSED_FORBIDDEN,       /* a token that does not grant the endpoint */
    REFUSED_TOO_LARGE,       /* body over the request's limit */
    REFUSED_BUDGET,          /* the server's upload budget was spent */
    REFUSED_COUNT,
} refusal;

static const char *const refusal_names[REFUSED_COUNT] = {
    "host", "origin", "unauthenticated", "forbidden", "too_large", "upload_budget",
};

typedef enum endpoint {
    EP_WHATSTHIS,
    EP_MODEL_PUT,
    EP_MODEL_DELETE,
    EP_MODEL_GET,
    EP_MODELS,
    EP_CLUSTER,
    EP_HEALTHZ,
    EP_METRICS,
    EP_PAGE,
    EP_SAMPLE,
    EP_OTHER,
    EP_COUNT,
} endpoint;

static const char *const endpoint_names[EP_COUNT] = {
    "whatsthis", "install_model", "remove_model", "model",  "models", "cluster",
    "healthz",   "metrics",       "page",         "sample", "other",
};

/* Error kinds counted in /metrics (sospdemo_http_errors_by_kind_total). */
typedef enum error_kind {
    KIND_BAD_REQUEST,       /* 400 malformed request */
    KIND_NOT_FOUND,         /* 404 unknown path, model or tag */
    KIND_WRONG_METHOD,      /* 405 */
    KIND_CONFLICT,          /* 409 tag taken */
    KIND_TOO_LARGE,         /* 413 */
    KIND_UNSUPPORTED_MEDIA, /* 415 not an image / not multipart */
    KIND_UNPROCESSABLE,     /* 422 model cannot be loaded */
    KIND_UNAVAILABLE,       /* 503 no replica, node stopped */
    KIND_TIMEOUT,           /* 504 */
    KIND_NOT_IMPLEMENTED,   /* 501 */
    KIND_INTERNAL,          /* 500 and anything else */
    KIND_UNAUTHORIZED,      /* 401 no token */
    KIND_FORBIDDEN,         /* 403 wrong token, host or origin */
    KIND_GONE,              /* 410 a version older than the log */
    KIND_COUNT,
} error_kind;

static const char *const kind_names[KIND_COUNT] = {
    "bad_request",     "not_found",   "method_not_allowed",
    "conflict",        "too_large",   "unsupported_media_type",
    "unprocessable",   "unavailable", "timeout",
    "not_implemented", "internal",    "unauthorized",
    "forbidden",       "gone",
};

static error_kind kind_of_status(unsigned status) {
    switch (status) {
    case 400:
        return KIND_BAD_REQUEST;
    case 404:
        return KIND_NOT_FOUND;
    case 405:
        return KIND_WRONG_METHOD;
    case 409:
        return KIND_CONFLICT;
    case 413:
        return KIND_TOO_LARGE;
    case 415:
        return KIND_UNSUPPORTED_MEDIA;
    case 422:
        return KIND_UNPROCESSABLE;
    case 503:
        return KIND_UNAVAILABLE;
    case 504:
        return KIND_TIMEOUT;
    case 501:
        return KIND_NOT_IMPLEMENTED;
    case 401:
        return KIND_UNAUTHORIZED;
    case 403:
        return KIND_FORBIDDEN;
    case 410:
        return KIND_GONE;
    default:
        return KIND_INTERNAL;
    }
}

/* Latency histogram bucket bounds, seconds (the last bucket is +Inf). */
static const double latency_bounds_s[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define N_BOUNDS (sizeof(latency_bounds_s) / sizeof(latency_bounds_s[0]))

typedef struct http_metrics {
    uint64_t requests[EP_COUNT];
    uint64_t errors[EP_COUNT];              /* answers with status >= 400 */
    uint64_t errors_by_kind[KIND_COUNT];    /* the same, by kind */
    uint64_t answers_by_kind[4];            /* per-tag classification answers, sd_answer_kind */
    uint64_t latency_buckets[N_BOUNDS + 1]; /* not cumulative; +Inf last */
    double latency_sum_s;
    uint64_t latency_count;
    uint64_t refused[REFUSED_COUNT]; /* refusals by reason */
} http_metrics;

struct sd_http_api {
    struct MHD_Daemon *daemon;
    sd_backend backend;
    sd_http_hooks hooks;
    sd_http_config config;
    int port;
    pthread_mutex_t lock; /* guards metrics */
    http_metrics metrics;
    atomic_uint_fast64_t upload_bytes;          /* body bytes held by all requests now */
    uint64_t upload_budget;                     /* their limit */
    char *allowed_text;                         /* owned copy of allowed_hosts, cut at the commas */
    const char *allowed[MAX_ALLOWED_HOSTS + 1]; /* into allowed_text, plus listen_ip */
    size_t n_allowed;
    char listen_ip[64]; /* the bound address, an allowed host */
    char *admin_token;  /* owned copies of the tokens (NULL: open) */
    char *inference_token;
    char *tls_cert_pem; /* owned copies for libmicrohttpd (NULL: plain HTTP) */
    char *tls_key_pem;
    sd_ratelimit log_limit; /* libmicrohttpd's lines */
};

/* Model parts of a multipart install. */
enum { PART_SYNSET, PART_SYMBOL, PART_PARAMS, PART_COUNT };

/* One request in progress. */
typedef struct http_request {
    endpoint ep;
    uint64_t start_ns;
    uint32_t model_tag;             /* PUT / DELETE /v1/models/{tag} */
    dr_buf body;                    /* POST /v1/whatsthis: the photo */
    struct MHD_PostProcessor *post; /* PUT: multipart parser */
    dr_buf parts[PART_COUNT];       /* PUT: synset, symbol, params */
    char precision[8];              /* PUT: the precision field's text ("" = fp32) */
    size_t precision_len;
    uint64_t parts_bytes;  /* PUT: bytes of all parts so far */
    unsigned error_status; /* != 0: answer this status with error_text */
    char error_text[DR_ERR_MSG_MAX];
    int sample;               /* GET /samples/<name>: its index; -1: the list */
    sd_http_api *api;         /* the server (for the upload budget in the part callbacks) */
    uint64_t charged_bytes;   /* body bytes counted in api->upload_bytes */
    uint64_t discarded_bytes; /* body bytes dropped after a refusal */
} http_request;

/* ---------------------------------------------------------------- small helpers */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void record(sd_http_api *api, endpoint ep, unsigned status, uint64_t start_ns) {
    double seconds = (double)(now_ns() - start_ns) / 1e9;
    size_t bucket = 0;
    while (bucket < N_BOUNDS && seconds > latency_bounds_s[bucket])
        bucket++;
    pthread_mutex_lock(&api->lock);
    api->metrics.requests[ep]++;
    if (status >= 400) {
        api->metrics.errors[ep]++;
        api->metrics.errors_by_kind[kind_of_status(status)]++;
    }
    api->metrics.latency_buckets[bucket]++;
    api->metrics.latency_sum_s += seconds;
    api->metrics.latency_count++;
    pthread_mutex_unlock(&api->lock);
}

static void request_fail(http_request *req, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void request_fail(http_request *req, unsigned status, const char *fmt, ...) {
    if (req->error_status)
        return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->error_text, sizeof(req->error_text), fmt, ap);
    va_end(ap);
    req->error_status = status;
}

static unsigned http_status_of_error(int dr_code) {
    switch (dr_code) {
    case DR_EINVAL:
        return MHD_HTTP_BAD_REQUEST;
    case DR_ENOTFOUND:
        return MHD_HTTP_NOT_FOUND;
    case DR_ETOOBIG:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case DR_ETIMEDOUT:
        return MHD_HTTP_GATEWAY_TIMEOUT;
    case DR_EAGAIN:
    case DR_ECLOSED:
    case DR_EREMOVED:
    case DR_EIO:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case DR_EUNSUPPORTED:
        return MHD_HTTP_NOT_IMPLEMENTED;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

/* Queues text (taken: freed by libmicrohttpd) with a content type; records the metrics. */
static enum MHD_Result answer(sd_http_api *api, struct MHD_Connection *conn, http_request *req,
                              unsigned status, char *text, const char *content_type) {
    if (!text)
        text = strdup("");
    struct MHD_Response *response =
        MHD_create_response_from_buffer(text ? strlen(text) : 0, text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"sospdemo\"");
    enum MHD_Result rc = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    record(api, req->ep, status, req->start_ns);
    return rc;
}

static enum MHD_Result answer_json(sd_http_api *api, struct MHD_Connection *conn, http_request *req,
                                   unsigned status, cJSON *json) {
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text)
        return answer(api, conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR,
                      strdup("{\"error\":\"out of memory\"}"), "application/json");
    return answer(api, conn, req, status, text, "application/json");
}

static enum MHD_Result answer_error(sd_http_api *api, struct MHD_Connection *conn,
                                    http_request *req, unsigned status, const char *message) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "error", message);
    return answer_json(api, conn, req, status, json);
}

/* ---------------------------------------------------------------- routing */

/* Parses "/v1/models/<tag>"; returns false for anything else. */
static bool parse_model_path(const char *url, uint32_t *tag) {
    static const char prefix[] = "/v1/models/";
    if (strncmp(url, prefix, sizeof(prefix) - 1) != 0)
        return false;
    size_t n = 0;
    return sd_parse_tags(url + sizeof(prefix) - 1, tag, 1, &n) == DR_OK;
}

/* Picks the endpoint; sets req->error_status for unknown paths and wrong methods. */
static void route(http_request *req, const char *url, const char *method) {
    static const struct {
        const char *path;
        const char *method;
        endpoint ep;
    } fixed[] = {
        {"/v1/whatsthis", "POST", EP_WHATSTHIS}, {"/v1/models", "GET", EP_MODELS},
        {"/v1/cluster", "GET", EP_CLUSTER},      {"/healthz", "GET", EP_HEALTHZ},
        {"/metrics", "GET", EP_METRICS},         {"/", "GET", EP_PAGE},
        {"/index.html", "GET", EP_PAGE},
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strcmp(url, fixed[i].path) != 0)
            continue;
        req->ep = fixed[i].ep;
        if (strcmp(method, fixed[i].method) != 0)
            request_fail(req, MHD_HTTP_METHOD_NOT_ALLOWED, "%s needs %s", url, fixed[i].method);
        return;
    }
    if (parse_model_path(url, &req->model_tag)) {
        if (strcmp(method, "PUT") == 0)
            req->ep = EP_MODEL_PUT;
        else if (strcmp(method, "DELETE") == 0)
            req->ep = EP_MODEL_DELETE;
        else if (strcmp(method, "GET") == 0)
            req->ep = EP_MODEL_GET;
        else
            request_fail(req, MHD_HTTP_METHOD_NOT_ALLOWED, "%s needs GET, PUT or DELETE", url);
        return;
    }
    if (strcmp(url, "/samples") == 0 || strncmp(url, "/samples/", 9) == 0) {
        req->ep = EP_SAMPLE;
        req->sample = -1;
        const char *name = url[8] == '/' ? url + 9 : "";
        for (size_t i = 0; *name && i < sd_samples_count; i++)
            if (strcmp(name, sd_samples[i].name) == 0)
                req->sample = (int)i;
        if (*name && req->sample < 0)
            request_fail(req, MHD_HTTP_NOT_FOUND, "no sample photo named '%s'", name);
        else if (strcmp(method, "GET") != 0)
            request_fail(req, MHD_HTTP_METHOD_NOT_ALLOWED, "%s needs GET", url);
        return;
    }
    req->ep = EP_OTHER;
    request_fail(req, MHD_HTTP_NOT_FOUND, "no such resource: %s", url);
}

/* ---------------------------------------------------------------- bodies */

static void count_refusal(sd_http_api *api, refusal why) {
    pthread_mutex_lock(&api->lock);
    api->metrics.refused[why]++;
    pthread_mutex_unlock(&api->lock);
}

/*
 * Admits size more body bytes of req: within its own limit (413) and the server's upload
 * budget (503), checked before anything is stored. Returns false (and fails req) otherwise.
 */
static bool admit_bytes(http_request *req, uint64_t held, uint64_t limit, size_t size,
                        const char *what) {
    sd_http_api *api = req->api;
    if (held + size > limit) {
        count_refusal(api, REFUSED_TOO_LARGE);
        request_fail(req, MHD_HTTP_CONTENT_TOO_LARGE,
                     "the %s exceeds the limit of %" PRIu64 " bytes (refused after %" PRIu64
                     " bytes)",
                     what, limit, held + size);
        return false;
    }
    uint64_t total = atomic_fetch_add(&api->upload_bytes, size) + size;
    if (total > api->upload_budget) {
        atomic_fetch_sub(&api->upload_bytes, size);
        count_refusal(api, REFUSED_BUDGET);
        request_fail(req, MHD_HTTP_SERVICE_UNAVAILABLE,
                     "the server holds the most uploads it may (%" PRIu64
                     " bytes, [SOSPDEMO] http_max_upload_bytes); retry later",
                     api->upload_budget);
        return false;
    }
    req->charged_bytes += size;
    return true;
}

static int part_of(const char *key) {
    if (strcmp(key, "synset") == 0 || strcmp(key, "labels") == 0)
        return PART_SYNSET;
    if (strcmp(key, "symbol") == 0)
        return PART_SYMBOL;
    if (strcmp(key, "params") == 0 || strcmp(key, "onnx") == 0)
        return PART_PARAMS;
    return -1;
}

static enum MHD_Result on_form_part(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *filename, const char *content_type,
                                    const char *transfer_encoding, const char *data, uint64_t off,
                                    size_t size) {
    http_request *req = cls;
    (void)kind, (void)filename, (void)content_type, (void)transfer_encoding, (void)off;
    if (!key) { /* a part without Content-Disposition: form-data; name="..." */
        request_fail(req, MHD_HTTP_BAD_REQUEST, "a form part without a field name");
        return MHD_NO;
    }
    if (strcmp(key, "precision") == 0) { /* fp32 | bf16 | auto, checked in do_install */
        if (size > sizeof req->precision - 1 - req->precision_len) {
            request_fail(req, MHD_HTTP_BAD_REQUEST, "precision must be fp32, bf16 or auto");
            return MHD_NO;
        }
        memcpy(req->precision + req->precision_len, data, size);
        req->precision_len += size;
        req->precision[req->precision_len] = '\0';
        return MHD_YES;
    }
    int part = part_of(key);
    if (part < 0) {
        request_fail(req, MHD_HTTP_BAD_REQUEST,
                     "unknown form field '%s' (synset, symbol, params, labels, onnx, precision)",
                     key);
        return MHD_NO;
    }
    /* The parts share one limit: each part may hold only what the others left. */
    if (!admit_bytes(req, req->parts_bytes, req->api->config.limits.max_model_bytes, size,
                     "model (all parts together)"))
        return MHD_NO;
    req->parts_bytes += size;
    if (dr_buf_put_bytes(&req->parts[part], data, size) != DR_OK) {
        request_fail(req, MHD_HTTP_INSUFFICIENT_STORAGE, "out of memory for the model");
        return MHD_NO;
    }
    return MHD_YES;
}

/* POST /v1/whatsthis as multipart/form-data (curl -F photo=@x.jpg): the photo field. */
static enum MHD_Result on_photo_part(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *filename, const char *content_type,
                                     const char *transfer_encoding, const char *data, uint64_t off,
                                     size_t size) {
    http_request *req = cls;
    (void)kind, (void)content_type, (void)transfer_encoding, (void)off;
    if ((!key || strcmp(key, "photo") != 0) && !filename) { /* key: NULL without a name */
        request_fail(req, MHD_HTTP_BAD_REQUEST,
                     "unknown form field '%s' (the photo goes in a field named photo)",
                     key ? key : "");
        return MHD_NO;
    }
    if (!admit_bytes(req, req->body.len, req->api->config.limits.max_photo_bytes, size, "photo"))
        return MHD_NO;
    if (dr_buf_put_bytes(&req->body, data, size) != DR_OK) {
        request_fail(req, MHD_HTTP_INSUFFICIENT_STORAGE, "out of memory for the photo");
        return MHD_NO;
    }
    return MHD_YES;
}

static bool is_multipart(struct MHD_Connection *conn) {
    const char *type =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    return type && strncasecmp(type, "multipart/form-data", strlen("multipart/form-data")) == 0;
}

static void start_body(sd_http_api *api, struct MHD_Connection *conn, http_request *req) {
    const char *length_text =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t length = length_text ? strtoull(length_text, NULL, 10) : 0;
    if (req->ep == EP_WHATSTHIS) {
        uint64_t limit = api->config.limits.max_photo_bytes;
        bool form = is_multipart(conn);
        if (length > limit + (form ? 64 * 1024 : 0)) {
            count_refusal(api, REFUSED_TOO_LARGE);
            request_fail(req, MHD_HTTP_CONTENT_TOO_LARGE,
                         "photo of %" PRIu64 " bytes exceeds the limit of %" PRIu64, length, limit);
        }
        dr_buf_init(&req->body, (size_t)limit);
        if (form) {
            req->post = MHD_create_post_processor(conn, POST_BUFFER_BYTES, on_photo_part, req);
            if (!req->post)
                request_fail(req, MHD_HTTP_BAD_REQUEST, "malformed multipart/form-data header");
        }
    } else if (req->ep == EP_MODEL_PUT && !is_multipart(conn)) {
        request_fail(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                     "PUT /v1/models/{tag} needs multipart/form-data, e.g. curl -X PUT -F "
                     "synset=@synset.txt -F symbol=@x-symbol.json -F params=@x-0000.params");
    } else if (req->ep == EP_MODEL_PUT) {
        /* Multipart framing adds a little; the parts themselves are checked as they come. */
        uint64_t limit = api->config.limits.max_model_bytes;
        if (length > limit + 64 * 1024) {
            count_refusal(api, REFUSED_TOO_LARGE);
            request_fail(req, MHD_HTTP_CONTENT_TOO_LARGE,
                         "model upload of %" PRIu64 " bytes exceeds the limit of %" PRIu64, length,
                         limit);
        }
        for (int i = 0; i < PART_COUNT; i++)
            dr_buf_init(&req->parts[i], (size_t)limit);
        req->post = MHD_create_post_processor(conn, POST_BUFFER_BYTES, on_form_part, req);
        if (!req->post)
            request_fail(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                         "PUT /v1/models/{tag} needs multipart/form-data");
    }
}

/*
 * One piece of body, counted before it is stored. Returns false when the connection should be
 * closed: a refused request whose client keeps sending far past the limit.
 */
static bool take_body(http_request *req, const char *data, size_t size) {
    if (req->error_status) {
        req->discarded_bytes += size; /* read and dropped: the 413 goes out at the end */
        return req->discarded_bytes <= MAX_DISCARD_BYTES;
    }
    if (req->ep == EP_WHATSTHIS && req->post) {
        if (MHD_post_process(req->post, data, size) != MHD_YES)
            request_fail(req, MHD_HTTP_BAD_REQUEST, "malformed multipart body");
    } else if (req->ep == EP_WHATSTHIS) {
        if (admit_bytes(req, req->body.len, req->api->config.limits.max_photo_bytes, size,
                        "photo") &&
            dr_buf_put_bytes(&req->body, data, size) != DR_OK)
            request_fail(req, MHD_HTTP_INSUFFICIENT_STORAGE, "out of memory for the photo");
    } else if (req->ep == EP_MODEL_PUT && req->post) {
        if (MHD_post_process(req->post, data, size) != MHD_YES)
            request_fail(req, MHD_HTTP_BAD_REQUEST, "malformed multipart body");
    } else if (size > 0) {
        request_fail(req, MHD_HTTP_BAD_REQUEST, "this request takes no body");
    }
    return true;
}

/* ---------------------------------------------------------------- endpoints */

/* The HTTP status of one answer kind (200 for a label). */
static unsigned status_of_answer(sd_answer_kind kind) {
    switch (kind) {
    case SD_ANSWER_NO_MODEL:
        return MHD_HTTP_NOT_FOUND;
    case SD_ANSWER_LOAD_FAIL:
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    case SD_ANSWER_BAD_PHOTO:
        return MHD_HTTP_UNSUPPORTED_MEDIA_TYPE;
    default:
        return MHD_HTTP_OK;
    }
}

/* Asks the backend: per-tag answers from classify, or whatsthis' text split into its kind. */
static int ask_backend(sd_http_api *api, const uint32_t *tags, size_t n_tags, const dr_buf *photo,
                       uint32_t top_k, sd_tag_answer *answers, char **joined, dr_err *err) {
    if (!api->backend.classify)
        return api->backend.whatsthis(api->backend.user, tags, n_tags, photo->data, photo->len,
                                      joined, err);
    int rc = api->backend.classify(api->backend.user, tags, n_tags, photo->data, photo->len, top_k,
                                   answers, err);
    if (rc)
        return rc;
    dr_buf text = {0};
    for (size_t i = 0; i < n_tags; i++) {
        if (i > 0)
            dr_buf_put_bytes(&text, " or ", 4);
        dr_buf_put_bytes(&text, answers[i].desc, strlen(answers[i].desc));
    }
    dr_buf_put_u8(&text, 0);
    size_t len = 0;
    *joined = text.failed ? NULL : (char *)dr_buf_steal(&text, &len);
    dr_buf_free(&text);
    return DR_OK;
}

/* A probability for JSON: 6 decimals (a float's 0.2 would print as 0.20000000298023224). */
static double json_score(float score) {
    return round((double)score * 1e6) / 1e6;
}

/* {"tags":[..],"description":"..","answers":[{"tag","description","score"|"error"}..]}. */
static cJSON *whatsthis_json(const uint32_t *tags, size_t n_tags, const char *desc,
                             const sd_tag_answer *answers, bool have_answers, unsigned status) {
    cJSON *json = cJSON_CreateObject();
    cJSON *array = cJSON_AddArrayToObject(json, "tags");
    for (size_t i = 0; i < n_tags; i++)
        cJSON_AddItemToArray(array, cJSON_CreateNumber(tags[i]));
    cJSON_AddStringToObject(json, "description", desc ? desc : "");
    if (status != MHD_HTTP_OK)
        cJSON_AddStringToObject(json, "error", desc ? desc : "");
    if (!have_answers)
        return json;
    cJSON *list = cJSON_AddArrayToObject(json, "answers");
    for (size_t i = 0; i < n_tags; i++) {
        cJSON *one = cJSON_CreateObject();
        cJSON_AddNumberToObject(one, "tag", answers[i].tag);
        cJSON_AddStringToObject(one, "description", answers[i].desc ? answers[i].desc : "");
        if (answers[i].kind == SD_ANSWER_OK)
            cJSON_AddNumberToObject(one, "score", json_score(answers[i].score));
        if (answers[i].kind == SD_ANSWER_OK && answers[i].n_top > 0) {
            cJSON *top = cJSON_AddArrayToObject(one, "top");
            for (uint32_t k = 0; k < answers[i].n_top && k < SD_MAX_TOP; k++) {
                cJSON *class = cJSON_CreateObject();
                cJSON_AddStringToObject(class, "label", answers[i].top[k].label);
                cJSON_AddNumberToObject(class, "score", json_score(answers[i].top[k].score));
                cJSON_AddItemToArray(top, class);
            }
        }
        if (answers[i].kind != SD_ANSWER_OK)
            cJSON_AddStringToObject(one, "error", sd_answer_kind_name(answers[i].kind));
        cJSON_AddItemToArray(list, one);
    }
    return json;
}

static enum MHD_Result do_whatsthis(sd_http_api *api, struct MHD_Connection *conn,
                                    http_request *req) {
    if (req->post)
        MHD_post_process(req->post, NULL, 0); /* flush */
    if (req->error_status)
        return answer_error(api, conn, req, req->error_status, req->error_text);
    uint32_t tags[MAX_HTTP_TAGS];
    size_t n_tags = 0;
    const char *tags_text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "tags");
    if (!tags_text || sd_parse_tags(tags_text, tags, MAX_HTTP_TAGS, &n_tags) != DR_OK ||
        n_tags > api->config.limits.max_tags)
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "?tags= must be decimal tags separated by commas, like 1,2");
    n_tags = sd_dedup_tags(tags, n_tags); /* one call per tag, one copy of the photo */
    if (req->body.len == 0)
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            req->post ? "the form needs the photo (curl -F photo=@x.jpg)"
                                      : "the body must be the photo");
    const char *top_text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "top");
    uint32_t top_k = 0;
    size_t n_top = 0;
    if (top_text &&
        (sd_parse_tags(top_text, &top_k, 1, &n_top) != DR_OK || top_k < 1 || top_k > SD_MAX_TOP))
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "?top= must be a number of classes from 1 to 10");
    if (!api->backend.whatsthis && !api->backend.classify)
        return answer_error(api, conn, req, MHD_HTTP_NOT_IMPLEMENTED, "not served here");
    sd_tag_answer answers[MAX_HTTP_TAGS];
    memset(answers, 0, sizeof answers);
    char *desc = NULL;
    dr_err err;
    dr_err_clear(&err);
    int rc = ask_backend(api, tags, n_tags, &req->body, top_k, answers, &desc, &err);
    if (rc)
        return answer_error(api, conn, req, http_status_of_error(rc),
                            err.msg[0] ? err.msg : dr_strerror(rc));
    bool have_answers = api->backend.classify != NULL;
    sd_answer_kind kind = sd_answer_kind_of(desc);
    pthread_mutex_lock(&api->lock);
    for (size_t i = 0; i < n_tags; i++)
        api->metrics.answers_by_kind[have_answers ? answers[i].kind : kind]++;
    pthread_mutex_unlock(&api->lock);
    unsigned status = status_of_answer(kind);
    cJSON *json = whatsthis_json(tags, n_tags, desc, answers, have_answers, status);
    free(desc);
    for (size_t i = 0; have_answers && i < n_tags; i++)
        sd_tag_answer_clear(&answers[i]);
    return answer_json(api, conn, req, status, json);
}

static enum MHD_Result model_answer(sd_http_api *api, struct MHD_Connection *conn,
                                    http_request *req, int rc, int32_t code, char *desc,
                                    const dr_err *err, unsigned refused_status) {
    if (rc) {
        free(desc);
        return answer_error(api, conn, req, http_status_of_error(rc),
                            err->msg[0] ? err->msg : dr_strerror(rc));
    }
    cJSON *json = cJSON_CreateObject();
    cJSON_AddNumberToObject(json, "tag", req->model_tag);
    cJSON_AddNumberToObject(json, "error_code", code);
    cJSON_AddStringToObject(json, "error_desc", desc ? desc : "");
    free(desc);
    unsigned status = code == 0 ? MHD_HTTP_OK : refused_status;
    if (code == DR_ECORRUPT)
        status = MHD_HTTP_UNPROCESSABLE_CONTENT; /* the model cannot be loaded */
    else if (code == DR_ETOOBIG)
        status = MHD_HTTP_CONTENT_TOO_LARGE;
    return answer_json(api, conn, req, status, json);
}

static enum MHD_Result do_install(sd_http_api *api, struct MHD_Connection *conn,
                                  http_request *req) {
    if (req->post)
        MHD_post_process(req->post, NULL, 0); /* flush */
    if (req->error_status)
        return answer_error(api, conn, req, req->error_status, req->error_text);
    if (req->parts[PART_PARAMS].len == 0)
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "the form needs params (MXNet: synset, symbol, params; ONNX: labels, "
                            "onnx)");
    if (req->parts_bytes > api->config.limits.max_model_bytes)
        return answer_error(api, conn, req, MHD_HTTP_CONTENT_TOO_LARGE,
                            "the model exceeds the size limit");
    uint8_t precision = 0;
    if (sd_precision_parse(req->precision, &precision) != DR_OK)
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "precision must be fp32, bf16 or auto");
    if (!api->backend.install_model)
        return answer_error(api, conn, req, MHD_HTTP_NOT_IMPLEMENTED, "not served here");
    int32_t code = 0;
    char *desc = NULL;
    dr_err err;
    dr_err_clear(&err);
    const dr_buf *p = req->parts;
    int rc = api->backend.install_model(api->backend.user, req->model_tag, p[PART_SYNSET].data,
                                        p[PART_SYNSET].len, p[PART_SYMBOL].data, p[PART_SYMBOL].len,
                                        p[PART_PARAMS].data, p[PART_PARAMS].len, precision, &code,
                                        &desc, &err);
    return model_answer(api, conn, req, rc, code, desc, &err, MHD_HTTP_CONFLICT);
}

static enum MHD_Result do_remove(sd_http_api *api, struct MHD_Connection *conn, http_request *req) {
    if (!api->backend.remove_model)
        return answer_error(api, conn, req, MHD_HTTP_NOT_IMPLEMENTED, "not served here");
    int32_t code = 0;
    char *desc = NULL;
    dr_err err;
    dr_err_clear(&err);
    int rc = api->backend.remove_model(api->backend.user, req->model_tag, &code, &desc, &err);
    return model_answer(api, conn, req, rc, code, desc, &err, MHD_HTTP_NOT_FOUND);
}

static enum MHD_Result do_hook_json(sd_http_api *api, struct MHD_Connection *conn,
                                    http_request *req, int (*hook)(void *, char **, dr_err *)) {
    if (!hook)
        return answer_error(api, conn, req, MHD_HTTP_NOT_IMPLEMENTED, "not available on this node");
    char *json = NULL;
    dr_err err;
    dr_err_clear(&err);
    int rc = hook(api->hooks.user, &json, &err);
    if (rc) {
        free(json);
        return answer_error(api, conn, req, http_status_of_error(rc),
                            err.msg[0] ? err.msg : dr_strerror(rc));
    }
    return answer(api, conn, req, MHD_HTTP_OK, json, "application/json");
}

/* GET /samples: the names of the bundled sample photos; GET /samples/<name>: one of them. */
static enum MHD_Result do_sample(sd_http_api *api, struct MHD_Connection *conn, http_request *req) {
    if (req->sample < 0) {
        cJSON *names = cJSON_CreateArray();
        for (size_t i = 0; i < sd_samples_count; i++)
            cJSON_AddItemToArray(names, cJSON_CreateString(sd_samples[i].name));
        return answer_json(api, conn, req, MHD_HTTP_OK, names);
    }
    const sd_sample *sample = &sd_samples[req->sample];
    struct MHD_Response *response =
        MHD_create_response_from_buffer(sample->len, (void *)sample->bytes, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, sample->type);
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "max-age=3600");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    record(api, req->ep, MHD_HTTP_OK, req->start_ns);
    return rc;
}

/* The ?version= and ?time= arguments of GET /v1/models/{tag} (values NULL when absent). */
typedef struct as_of_query {
    const char *version, *time;
    unsigned repeated; /* either given more than once */
} as_of_query;

static enum MHD_Result collect_as_of(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
    as_of_query *query = cls;
    (void)kind;
    const char **slot = strcmp(key, "version") == 0 ? &query->version
                        : strcmp(key, "time") == 0  ? &query->time
                                                    : NULL;
    if (slot) {
        query->repeated += *slot != NULL;
        *slot = value ? value : ""; /* "?version" without a value is malformed, not absent */
    }
    return MHD_YES;
}

/* A non-negative decimal int64 ("0" .. "9223372036854775807", nothing else). */
static bool parse_decimal_i64(const char *text, int64_t *out) {
    if (!*text || strlen(text) > 19)
        return false;
    uint64_t value = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return false;
        value = value * 10 + (uint64_t)(*c - '0');
    }
    if (value > (uint64_t)INT64_MAX)
        return false;
    *out = (int64_t)value;
    return true;
}

/* A time: µs since the epoch, or ISO-8601 UTC "YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z". */
static bool parse_time_us(const char *text, int64_t *out) {
    if (parse_decimal_i64(text, out))
        return true;
    static const char shape[] = "dddd-dd-ddTdd:dd:dd"; /* d: a digit; anything else as is */
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        bool digit = text[i] >= '0' && text[i] <= '9';
        if (shape[i] == 'd' ? !digit : text[i] != shape[i])
            return false; /* also stops at the end of a shorter text */
    }
    int year, month, day, hour, minute, second, used = 0;
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute, &second,
               &used) != 6 ||
        used != 19 || year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
        minute > 59 || second > 60)
        return false;
    const char *rest = text + used;
    int64_t fraction = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++) {
            if (digits == 6)
                return false;
            fraction = fraction * 10 + (*rest - '0');
        }
        if (digits == 0)
            return false;
        for (; digits < 6; digits++)
            fraction *= 10;
    }
    if (strcmp(rest, "Z") != 0)
        return false;
    struct tm utc = {.tm_year = year - 1900,
                     .tm_mon = month - 1,
                     .tm_mday = day,
                     .tm_hour = hour,
                     .tm_min = minute,
                     .tm_sec = second};
    time_t seconds = timegm(&utc);
    struct tm back;
    if (seconds < 0 || !gmtime_r(&seconds, &back) || back.tm_mday != day ||
        back.tm_mon != month - 1)
        return false; /* a day the month does not have (timegm would roll it over) */
    *out = (int64_t)seconds * 1000000 + fraction;
    return true;
}

/* GET /v1/models/{tag}?version=V | ?time=T: the model_as_of hook's answer. */
static enum MHD_Result do_model_as_of(sd_http_api *api, struct MHD_Connection *conn,
                                      http_request *req, const as_of_query *query) {
    int64_t key = 0;
    bool by_time = query->time != NULL;
    if (query->version && query->time)
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "give either version or time, not both");
    if (query->repeated)
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "version or time is given more than once");
    if (!by_time && !parse_decimal_i64(query->version, &key))
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "version must be a non-negative decimal integer (a version of the "
                            "shard's log, as /v1/models shows them)");
    if (by_time && !parse_time_us(query->time, &key))
        return answer_error(api, conn, req, MHD_HTTP_BAD_REQUEST,
                            "time must be microseconds since the epoch or an ISO-8601 UTC time "
                            "such as 2026-12-07T21:00:00.5Z");
    if (!api->hooks.model_as_of)
        return answer_error(api, conn, req, MHD_HTTP_NOT_IMPLEMENTED, "not available on this node");
    char *json = NULL;
    dr_err err;
    dr_err_clear(&err);
    int rc = api->hooks.model_as_of(api->hooks.user, req->model_tag, by_time, key, &json, &err);
    if (rc == DR_OK)
        return answer(api, conn, req, MHD_HTTP_OK, json, "application/json");
    free(json);
    unsigned status = rc == DR_ERANGE   ? MHD_HTTP_GONE
                      : rc == DR_ESTATE ? MHD_HTTP_CONFLICT
                                        : http_status_of_error(rc);
    return answer_error(api, conn, req, status, err.msg[0] ? err.msg : dr_strerror(rc));
}

/* GET /v1/models/{tag}: that tag's entry of the list_models hook's array, or 404; with
 * ?version= or ?time=, the tag's model as of then (do_model_as_of). */
static enum MHD_Result do_model_get(sd_http_api *api, struct MHD_Connection *conn,
                                    http_request *req) {
    as_of_query query = {0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_as_of, &query);
    if (query.version || query.time)
        return do_model_as_of(api, conn, req, &query);
    if (!api->hooks.list_models)
        return answer_error(api, conn, req, MHD_HTTP_NOT_IMPLEMENTED, "not available on this node");
    char *text = NULL;
    dr_err err;
    dr_err_clear(&err);
    int rc = api->hooks.list_models(api->hooks.user, &text, &err);
    if (rc) {
        free(text);
        return answer_error(api, conn, req, http_status_of_error(rc),
                            err.msg[0] ? err.msg : dr_strerror(rc));
    }
    cJSON *models = cJSON_Parse(text ? text : "");
    free(text);
    cJSON *item = NULL, *found = NULL;
    cJSON_ArrayForEach(item, models) {
        cJSON *tag = cJSON_GetObjectItem(item, "tag");
        if (cJSON_IsNumber(tag) && (uint32_t)tag->valuedouble == req->model_tag)
            found = item;
    }
    if (!found) {
        cJSON_Delete(models);
        char message[96];
        snprintf(message, sizeof message, "no model is installed under tag %" PRIu32,
                 req->model_tag);
        return answer_error(api, conn, req, MHD_HTTP_NOT_FOUND, message);
    }
    cJSON *copy = cJSON_Duplicate(found, true);
    cJSON_Delete(models);
    return answer_json(api, conn, req, MHD_HTTP_OK, copy);
}

/* ---------------------------------------------------------------- /metrics */

static void metrics_http(dr_buf *out, const http_metrics *m) {
    char line[256];
    int n;
#define PUT_LINE(...)                                                                              \
    do {                                                                                           \
        n = snprintf(line, sizeof(line), __VA_ARGS__);                                             \
        dr_buf_put_bytes(out, line, (size_t)n);                                                    \
    } while (0)
    PUT_LINE("# HELP sospdemo_http_requests_total HTTP requests answered, per endpoint.\n"
             "# TYPE sospdemo_http_requests_total counter\n");
    for (int ep = 0; ep < EP_COUNT; ep++)
        PUT_LINE("sospdemo_http_requests_total{endpoint=\"%s\"} %" PRIu64 "\n", endpoint_names[ep],
                 m->requests[ep]);
    PUT_LINE("# HELP sospdemo_http_errors_total HTTP answers with status >= 400, per endpoint.\n"
             "# TYPE sospdemo_http_errors_total counter\n");
    for (int ep = 0; ep < EP_COUNT; ep++)
        PUT_LINE("sospdemo_http_errors_total{endpoint=\"%s\"} %" PRIu64 "\n", endpoint_names[ep],
                 m->errors[ep]);
    PUT_LINE("# HELP sospdemo_http_errors_by_kind_total HTTP answers with status >= 400, by kind.\n"
             "# TYPE sospdemo_http_errors_by_kind_total counter\n");
    for (int kind = 0; kind < KIND_COUNT; kind++)
        PUT_LINE("sospdemo_http_errors_by_kind_total{kind=\"%s\"} %" PRIu64 "\n", kind_names[kind],
                 m->errors_by_kind[kind]);
    PUT_LINE("# HELP sospdemo_answers_total Classification answers per tag, by kind.\n"
             "# TYPE sospdemo_answers_total counter\n");
    for (int kind = 0; kind < 4; kind++)
        PUT_LINE("sospdemo_answers_total{kind=\"%s\"} %" PRIu64 "\n",
                 sd_answer_kind_name((sd_answer_kind)kind), m->answers_by_kind[kind]);
    PUT_LINE("# HELP sospdemo_http_request_duration_seconds Time from request to answer.\n"
             "# TYPE sospdemo_http_request_duration_seconds histogram\n");
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= N_BOUNDS; i++) {
        cumulative += m->latency_buckets[i];
        if (i < N_BOUNDS)
            PUT_LINE("sospdemo_http_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                     latency_bounds_s[i], cumulative);
        else
            PUT_LINE("sospdemo_http_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                     cumulative);
    }
    PUT_LINE("sospdemo_http_request_duration_seconds_sum %.6f\n", m->latency_sum_s);
    PUT_LINE("sospdemo_http_request_duration_seconds_count %" PRIu64 "\n", m->latency_count);
    PUT_LINE("# HELP sospdemo_http_refused_total Requests refused by a check, by reason.\n"
             "# TYPE sospdemo_http_refused_total counter\n");
    for (int why = 0; why < REFUSED_COUNT; why++)
        PUT_LINE("sospdemo_http_refused_total{reason=\"%s\"} %" PRIu64 "\n", refusal_names[why],
                 m->refused[why]);
}

static void metrics_uploads(dr_buf *out, sd_http_api *api) {
    char line[512];
    int n;
    PUT_LINE("# HELP sospdemo_http_upload_bytes Request body bytes held now.\n"
             "# TYPE sospdemo_http_upload_bytes gauge\n"
             "sospdemo_http_upload_bytes %" PRIu64 "\n"
             "# HELP sospdemo_http_upload_budget_bytes Their limit (http_max_upload_bytes).\n"
             "# TYPE sospdemo_http_upload_budget_bytes gauge\n"
             "sospdemo_http_upload_budget_bytes %" PRIu64 "\n",
             (uint64_t)atomic_load(&api->upload_bytes), api->upload_budget);
}

static void metrics_grpc(dr_buf *out, sd_function_tier *grpc) {
    char line[256];
    int n;
    sd_function_tier_stats s;
    sd_function_tier_get_stats(grpc, &s);
    PUT_LINE("# HELP sospdemo_grpc_calls_total gRPC calls finished, by outcome.\n"
             "# TYPE sospdemo_grpc_calls_total counter\n");
    PUT_LINE("sospdemo_grpc_calls_total{result=\"ok\"} %" PRIu64 "\n", s.calls_ok);
    PUT_LINE("sospdemo_grpc_calls_total{result=\"invalid_argument\"} %" PRIu64 "\n",
             s.calls_invalid);
    PUT_LINE("sospdemo_grpc_calls_total{result=\"failed\"} %" PRIu64 "\n", s.calls_failed);
    PUT_LINE("# HELP sospdemo_grpc_calls_active gRPC calls open now.\n"
             "# TYPE sospdemo_grpc_calls_active gauge\n"
             "sospdemo_grpc_calls_active %" PRIu64 "\n",
             s.calls_active);
    PUT_LINE("# HELP sospdemo_grpc_refused_total gRPC calls refused or cancelled, by reason.\n"
             "# TYPE sospdemo_grpc_refused_total counter\n");
    PUT_LINE("sospdemo_grpc_refused_total{reason=\"unauthenticated\"} %" PRIu64 "\n",
             s.calls_unauthenticated);
    PUT_LINE("sospdemo_grpc_refused_total{reason=\"permission_denied\"} %" PRIu64 "\n",
             s.calls_denied);
    PUT_LINE("sospdemo_grpc_refused_total{reason=\"deadline\"} %" PRIu64 "\n", s.calls_deadline);
#undef PUT_LINE
}

static enum MHD_Result do_metrics(sd_http_api *api, struct MHD_Connection *conn,
                                  http_request *req) {
    http_metrics snapshot;
    pthread_mutex_lock(&api->lock);
    snapshot = api->metrics;
    pthread_mutex_unlock(&api->lock);
    dr_buf out;
    dr_buf_init(&out, 1 << 20);
    metrics_http(&out, &snapshot);
    metrics_uploads(&out, api);
    if (api->config.grpc)
        metrics_grpc(&out, api->config.grpc);
    char *extra = NULL;
    if (api->hooks.metrics && api->hooks.metrics(api->hooks.user, &extra) == DR_OK && extra)
        dr_buf_put_bytes(&out, extra, strlen(extra));
    free(extra);
    dr_buf_put_u8(&out, 0);
    if (out.failed) {
        dr_buf_free(&out);
        return answer_error(api, conn, req, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics too large");
    }
    size_t len = 0;
    char *text = (char *)dr_buf_steal(&out, &len);
    return answer(api, conn, req, MHD_HTTP_OK, text, "text/plain; version=0.0.4");
}

/* ---------------------------------------------------------------- libmicrohttpd callbacks */

static enum MHD_Result dispatch(sd_http_api *api, struct MHD_Connection *conn, http_request *req) {
    if (req->error_status)
        return answer_error(api, conn, req, req->error_status, req->error_text);
    switch (req->ep) {
    case EP_WHATSTHIS:
        return do_whatsthis(api, conn, req);
    case EP_MODEL_PUT:
        return do_install(api, conn, req);
    case EP_MODEL_DELETE:
        return do_remove(api, conn, req);
    case EP_MODEL_GET:
        return do_model_get(api, conn, req);
    case EP_MODELS:
        return do_hook_json(api, conn, req, api->hooks.list_models);
    case EP_CLUSTER:
        return do_hook_json(api, conn, req, api->hooks.cluster);
    case EP_HEALTHZ:
        return answer(api, conn, req, MHD_HTTP_OK, strdup("ok\n"), "text/plain");
    case EP_METRICS:
        return do_metrics(api, conn, req);
    case EP_SAMPLE:
        return do_sample(api, conn, req);
    case EP_PAGE:
        return answer(api, conn, req, MHD_HTTP_OK, strdup((const char *)sd_web_page),
                      "text/html; charset=utf-8");
    default:
        return answer_error(api, conn, req, MHD_HTTP_NOT_FOUND, "no such resource");
    }
}

/* Refuses a Host or Origin that names another site (DNS rebinding, cross-site forms). */
static void check_host(sd_http_api *api, struct MHD_Connection *conn, http_request *req) {
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
    if (!sd_host_allowed(host, api->allowed, api->n_allowed)) {
        count_refusal(api, REFUSED_HOST);
        request_fail(req, MHD_HTTP_FORBIDDEN,
                     "Host '%.100s' is not a name of this server (loopback, its address, or "
                     "[SOSPDEMO] http_allowed_hosts)",
                     host);
    } else if (!sd_origin_allowed(origin, api->allowed, api->n_allowed)) {
        count_refusal(api, REFUSED_ORIGIN);
        request_fail(req, MHD_HTTP_FORBIDDEN,
                     "Origin '%.100s' is not this server (cross-site requests are refused)",
                     origin);
    }
}

/* Checks the bearer token the endpoint needs (401 without one, 403 with a wrong one). */
static void check_token(sd_http_api *api, struct MHD_Connection *conn, http_request *req) {
    const char *needed = NULL, *also = NULL;
    if (req->ep == EP_MODEL_PUT || req->ep == EP_MODEL_DELETE) {
        needed = api->admin_token;
    } else if (req->ep == EP_WHATSTHIS) {
        needed = api->inference_token;
        also = api->admin_token;
    }
    if (!needed)
        return;
    const char *value =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    sd_auth_result result = sd_check_bearer(value, value ? strlen(value) : 0, needed, also);
    if (result == SD_AUTH_MISSING) {
        count_refusal(api, REFUSED_UNAUTHENTICATED);
        request_fail(
            req, MHD_HTTP_UNAUTHORIZED, "%s needs the header Authorization: Bearer <token> (%s)",
            endpoint_names[req->ep],
            req->ep == EP_WHATSTHIS ? "the inference or admin token"
                                    : "the admin token, the cluster's secrets/admin.token");
    } else if (result == SD_AUTH_DENIED) {
        count_refusal(api, REFUSED_FORBIDDEN);
        request_fail(req, MHD_HTTP_FORBIDDEN, "the token does not grant %s",
                     endpoint_names[req->ep]);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    sd_http_api *api = cls;
    http_request *req = *con_cls;
    (void)version;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        req->start_ns = now_ns();
        req->api = api;
        *con_cls = req;
        check_host(api, conn, req);
        if (!req->error_status)
            route(req, url, method);
        if (!req->error_status)
            check_token(api, conn, req);
        if (!req->error_status)
            start_body(api, conn, req);
        /* A refused request is answered at once; libmicrohttpd then skips its body. */
        return req->error_status ? dispatch(api, conn, req) : MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool keep = take_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return keep ? MHD_YES : MHD_NO;
    }
    return dispatch(api, conn, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode code) {
    http_request *req = *con_cls;
    (void)cls, (void)conn, (void)code;
    if (!req)
        return;
    if (req->post)
        MHD_destroy_post_processor(req->post);
    atomic_fetch_sub(&req->api->upload_bytes, req->charged_bytes);
    dr_buf_free(&req->body);
    for (int i = 0; i < PART_COUNT; i++)
        dr_buf_free(&req->parts[i]);
    free(req);
    *con_cls = NULL;
}

/* ---------------------------------------------------------------- start / stop */

/* libmicrohttpd's own messages ("Error processing request", ...) go to our log, prefixed. */
static void log_from_microhttpd(void *cls, const char *fmt, va_list ap) {
    sd_http_api *api = cls;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap); /* before anything else touches ap */
    uint64_t suppressed = 0;
    if (!sd_ratelimit_allow(&api->log_limit, &suppressed))
        return; /* a client can provoke these lines at will */
    if (suppressed)
        DR_WARN(DR_LOGM_APP, "HTTP server (libmicrohttpd): %" PRIu64 " lines suppressed",
                suppressed);
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    DR_WARN(DR_LOGM_APP, "HTTP server (libmicrohttpd): %s", text);
}

/* Frees what sd_http_start copied (the daemon is stopped or was never started). */
static void api_free(sd_http_api *api) {
    sd_credentials copies = {.tls_cert_pem = api->tls_cert_pem,
                             .tls_key_pem = api->tls_key_pem,
                             .admin_token = api->admin_token,
                             .inference_token = api->inference_token};
    sd_credentials_free(&copies); /* zeroes the secrets */
    free(api->allowed_text);
    sd_ratelimit_destroy(&api->log_limit);
    pthread_mutex_destroy(&api->lock);
    free(api);
}

static char *dup_or_null(const char *text, bool *failed) {
    if (!text)
        return NULL;
    char *copy = strdup(text);
    *failed |= copy == NULL;
    return copy;
}

/* Copies the credentials and the allowed host names. Returns 0 or DR_ENOMEM / DR_EINVAL. */
static int copy_settings(sd_http_api *api, const sd_http_config *config, dr_err *err) {
    const sd_credentials *creds = config->credentials;
    bool failed = false;
    if (creds) {
        api->tls_cert_pem = dup_or_null(creds->tls_cert_pem, &failed);
        api->tls_key_pem = dup_or_null(creds->tls_key_pem, &failed);
        api->admin_token = dup_or_null(creds->admin_token, &failed);
        api->inference_token = dup_or_null(creds->inference_token, &failed);
    }
    api->allowed_text = dup_or_null(config->allowed_hosts, &failed);
    if (failed)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    if ((api->tls_cert_pem != NULL) != (api->tls_key_pem != NULL))
        return dr_err_set(err, DR_EINVAL, "http: a TLS certificate needs its key and back");
    if (config->listen_ip) {
        snprintf(api->listen_ip, sizeof api->listen_ip, "%s", config->listen_ip);
        api->allowed[api->n_allowed++] = api->listen_ip;
    }
    char *save = NULL;
    for (char *name = api->allowed_text ? strtok_r(api->allowed_text, ", ", &save) : NULL; name;
         name = strtok_r(NULL, ", ", &save)) {
        if (api->n_allowed == MAX_ALLOWED_HOSTS)
            return dr_err_set(err, DR_EINVAL, "http: more than %d allowed host names",
                              MAX_ALLOWED_HOSTS - 1);
        api->allowed[api->n_allowed++] = name;
    }
    return DR_OK;
}

static void apply_http_defaults(sd_http_api *api) {
    sd_upload_limits *l = &api->config.limits;
    l->max_photo_bytes = l->max_photo_bytes ? l->max_photo_bytes : SD_DEFAULT_MAX_PHOTO_BYTES;
    l->max_model_bytes = l->max_model_bytes ? l->max_model_bytes : SD_DEFAULT_MAX_MODEL_BYTES;
    l->max_tags = l->max_tags ? l->max_tags : SD_DEFAULT_MAX_TAGS;
    sd_http_config *c = &api->config;
    if (!c->max_connections)
        c->max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!c->max_connections_per_ip)
        c->max_connections_per_ip = DEFAULT_MAX_CONNECTIONS_PER_IP;
    if (!c->connection_timeout_s)
        c->connection_timeout_s = DEFAULT_CONNECTION_TIMEOUT_S;
    uint64_t one_of_each = l->max_model_bytes + l->max_photo_bytes;
    api->upload_budget =
        c->max_upload_bytes
            ? c->max_upload_bytes
            : (one_of_each > DEFAULT_MIN_UPLOAD_BUDGET ? one_of_each : DEFAULT_MIN_UPLOAD_BUDGET);
}

static struct MHD_Daemon *start_daemon(sd_http_api *api, struct sockaddr_in *addr) {
    struct MHD_OptionItem options[12];
    size_t n = 0;
    options[n++] =
        (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)log_from_microhttpd, api};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, addr};
    options[n++] =
        (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, api};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                           (intptr_t)api->config.max_connections, NULL};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                           (intptr_t)api->config.max_connections_per_ip, NULL};
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                           (intptr_t)api->config.connection_timeout_s, NULL};
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (api->tls_cert_pem) {
        flags |= MHD_USE_TLS;
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, api->tls_cert_pem};
        options[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, api->tls_key_pem};
    }
    options[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, api, MHD_OPTION_ARRAY, options,
                            MHD_OPTION_END);
}

int sd_http_start(const sd_http_config *config, const sd_backend *backend,
                  const sd_http_hooks *hooks, sd_http_api **out, dr_err *err) {
    *out = NULL;
    if (!config || !backend)
        return dr_err_set(err, DR_EINVAL, "http: no config or backend");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(config->port)};
    if (config->listen_ip && inet_pton(AF_INET, config->listen_ip, &addr.sin_addr) != 1)
        return dr_err_set(err, DR_EINVAL, "http: bad IPv4 address '%s'", config->listen_ip);
    sd_http_api *api = calloc(1, sizeof(*api));
    if (!api)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    pthread_mutex_init(&api->lock, NULL);
    sd_ratelimit_init(&api->log_limit, LOG_BURST, LOG_WINDOW_MS);
    atomic_init(&api->upload_bytes, 0);
    api->backend = *backend;
    if (hooks)
        api->hooks = *hooks;
    api->config = *config;
    int rc = copy_settings(api, config, err);
    api->config.listen_ip = NULL;     /* not kept */
    api->config.allowed_hosts = NULL; /* copied */
    api->config.credentials = NULL;   /* copied */
    if (rc) {
        api_free(api);
        return rc;
    }
    apply_http_defaults(api);
    if (api->tls_cert_pem && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        api_free(api);
        return dr_err_set(err, DR_EUNSUPPORTED, "http: this libmicrohttpd has no TLS support");
    }
    api->daemon = start_daemon(api, &addr);
    if (!api->daemon) {
        api_free(api);
        return dr_err_set(err, DR_EIO,
                          "http: cannot listen on %s:%u (port taken, or a bad TLS certificate "
                          "or key)",
                          config->listen_ip ? config->listen_ip : "0.0.0.0", config->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->daemon, MHD_DAEMON_INFO_BIND_PORT);
    api->port = info ? info->port : config->port;
    DR_INFO(DR_LOGM_APP,
            "HTTP API on port %d (%s; install/remove %s; inference %s; at most %u connections, "
            "%u per address, idle timeout %u s, upload budget %" PRIu64 " bytes)",
            api->port, api->tls_cert_pem ? "HTTPS" : "plain HTTP",
            api->admin_token ? "need the admin token" : "OPEN to anyone",
            api->inference_token ? "needs a token" : "open", api->config.max_connections,
            api->config.max_connections_per_ip, api->config.connection_timeout_s,
            api->upload_budget);
    *out = api;
    return DR_OK;
}

int sd_http_port(const sd_http_api *api) {
    return api->port;
}

void sd_http_stop(sd_http_api *api) {
    if (!api)
        return;
    MHD_stop_daemon(api->daemon);
    api_free(api);
}
