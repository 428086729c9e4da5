/*
 * The function tier's gRPC server on the gRPC core C API (contract: function_tier.h).
 *
 * Life of a call (every step posts one batch whose completion comes back on the single
 * completion queue, tagged with a ft_tag naming the step):
 *
 *   TAG_NEW_CALL  grpc_server_request_call completed: pick the method, refuse it when too many
 *                 calls are open or the method is unknown, else post RECV_MESSAGE.
 *   TAG_RECV      one message (or the end of the client's stream): check it (upload.h) and
 *                 post the next RECV_MESSAGE; at the end of a valid stream queue the call for
 *                 a worker. A bad stream is finished at once with INVALID_ARGUMENT.
 *   (worker)      calls the backend, then posts the final batch.
 *   TAG_FINISH    final batch (initial metadata, reply, status, close) completed: free the call.
 *
 * At most one batch of a call is in flight, so a call is touched by one thread at a time:
 * the completion-queue thread, or the worker that dequeued it. Stop: shutdown_and_notify and
 * cancel_all_calls; the completion-queue thread runs until the shutdown tag, every accept
 * request and every call have come back, then the workers are joined and everything freed.
 */
#include "function_tier.h"

#include "derecho/log.h"
#include "grpc_util.h"
#include "sospdemo.pb-c.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/log.h>

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    DEFAULT_WORKERS = 4,
    DEFAULT_MAX_ACTIVE_CALLS = 64,
    DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024,
    DEFAULT_MAX_BUFFERED_MIB = 1024,
    ACCEPTS_IN_FLIGHT = 4, /* grpc_server_request_call requests kept posted */
    DEFAULT_CALL_TIMEOUT_MS = 60000,
    DEFAULT_INSTALL_TIMEOUT_MS = 600000,
    LOG_BURST = 20, /* per-call log lines allowed per LOG_WINDOW_MS */
    LOG_WINDOW_MS = 10000,
};

typedef enum ft_tag_kind { TAG_NEW_CALL, TAG_RECV, TAG_FINISH, TAG_SHUTDOWN } ft_tag_kind;

typedef enum ft_method { M_WHATSTHIS, M_INSTALL_MODEL, M_REMOVE_MODEL, M_UNKNOWN } ft_method;

struct ft_call;

/* A completion-queue tag: which step completed, for which call (NULL for TAG_SHUTDOWN). */
typedef struct ft_tag {
    ft_tag_kind kind;
    struct ft_call *call;
} ft_tag;

/* One accepted (or awaited) call and everything it owns. */
typedef struct ft_call {
    sd_function_tier *ft;           /* owning server */
    grpc_call *call;                /* NULL until accepted */
    grpc_call_details details;      /* method, host, deadline */
    grpc_metadata_array request_md; /* client's initial metadata */
    ft_tag tag_new, tag_recv, tag_finish;
    ft_method method;
    grpc_byte_buffer *recv_buffer; /* message of the last RECV_MESSAGE (NULL: end of stream) */
    sd_upload upload;              /* Whatsthis / InstallModel stream being assembled */
    uint64_t charged_bytes;        /* upload bytes counted in ft->buffered_bytes */
    bool have_remove_request;      /* RemoveModel: its one message arrived */
    uint32_t remove_tag;           /* RemoveModel: the tag */
    grpc_byte_buffer *reply;       /* reply message of the final batch (NULL for errors) */
    grpc_slice status_details;     /* status message of the final batch */
    int cancelled;                 /* RECV_CLOSE_ON_SERVER result */
    struct ft_call *next_job;      /* worker queue link */
    atomic_uint handoff;           /* release before each batch, acquire at its completion:
                                      orders our writes for tools that cannot see inside gRPC */
    uint64_t deadline_ns;          /* CLOCK_MONOTONIC server-side deadline (0: not accepted) */
    bool deadline_hit;             /* the deadline thread cancelled it (guarded by ft->lock) */
    struct ft_call *prev_active, *next_active; /* ft->active list (guarded by ft->lock) */
} ft_call;

struct sd_function_tier {
    sd_backend backend;
    sd_function_tier_config config; /* defaults applied; listen_address points to address */
    char *address;                  /* owned copy of the listen address */
    int port;                       /* bound port */
    grpc_server *server;
    bool server_started; /* grpc_server_start was called */
    grpc_completion_queue *cq;
    ft_tag shutdown_tag;
    atomic_bool shutting_down;           /* stop() began: do not post new accepts */
    atomic_uint_fast64_t buffered_bytes; /* upload bytes held by all calls */
    pthread_t cq_thread;
    bool cq_thread_started;
    pthread_t *workers;
    unsigned workers_started;
    pthread_t deadline_thread;
    bool deadline_thread_started;
    char *admin_token; /* owned copies of the tokens (NULL: open) */
    char *inference_token;
    bool tls;               /* the port speaks TLS */
    sd_ratelimit log_limit; /* per-call log lines */

    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t job_ready;     /* signalled when a job is queued or workers must exit */
    ft_call *job_head, *job_tail; /* calls waiting for a worker */
    bool workers_exit;            /* workers return once the queue is empty */
    sd_function_tier_stats stats;
    ft_call *active;              /* accepted calls not yet freed (deadline thread scans them) */
    pthread_cond_t deadline_wake; /* signalled at stop */
    bool deadline_exit;           /* the deadline thread returns */
};

/* ---------------------------------------------------------------- small helpers */

static ft_method method_of(grpc_slice path) {
    if (grpc_slice_str_cmp(path, SD_METHOD_WHATSTHIS) == 0)
        return M_WHATSTHIS;
    if (grpc_slice_str_cmp(path, SD_METHOD_INSTALL_MODEL) == 0)
        return M_INSTALL_MODEL;
    if (grpc_slice_str_cmp(path, SD_METHOD_REMOVE_MODEL) == 0)
        return M_REMOVE_MODEL;
    return M_UNKNOWN;
}

static const char *method_name(ft_method method) {
    static const char *const names[] = {"Whatsthis", "InstallModel", "RemoveModel", "unknown"};
    return names[method];
}

int sd_status_of_error(int dr_code) {
    switch (dr_code) {
    case DR_EINVAL:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case DR_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case DR_EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case DR_ETOOBIG:
    case DR_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case DR_ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case DR_EAGAIN:
    case DR_ECLOSED:
    case DR_EREMOVED:
    case DR_EIO:
        return GRPC_STATUS_UNAVAILABLE;
    case DR_EUNSUPPORTED:
        return GRPC_STATUS_UNIMPLEMENTED;
    case DR_ESTATE:
        return GRPC_STATUS_FAILED_PRECONDITION;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

static void count_finished(sd_function_tier *ft, grpc_status_code status) {
    pthread_mutex_lock(&ft->lock);
    if (status == GRPC_STATUS_OK)
        ft->stats.calls_ok++;
    else if (status == GRPC_STATUS_INVALID_ARGUMENT)
        ft->stats.calls_invalid++;
    else
        ft->stats.calls_failed++;
    if (status == GRPC_STATUS_UNAUTHENTICATED)
        ft->stats.calls_unauthenticated++;
    else if (status == GRPC_STATUS_PERMISSION_DENIED)
        ft->stats.calls_denied++;
    pthread_mutex_unlock(&ft->lock);
}

/* ---------------------------------------------------------------- call objects */

static ft_call *call_new(sd_function_tier *ft) {
    ft_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ft = ft;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_md);
    c->tag_new = (ft_tag){TAG_NEW_CALL, c};
    c->tag_recv = (ft_tag){TAG_RECV, c};
    c->tag_finish = (ft_tag){TAG_FINISH, c};
    c->status_details = grpc_empty_slice();
    sd_upload_init(&c->upload, SD_UPLOAD_PHOTO, &ft->config.limits);
    return c;
}

/* Frees the upload's bytes and gives them back to the server's budget. */
static void release_upload(ft_call *c) {
    sd_upload_free(&c->upload);
    atomic_fetch_sub(&c->ft->buffered_bytes, c->charged_bytes);
    c->charged_bytes = 0;
}

static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Adds an accepted call to the deadline thread's list. */
static void active_link(ft_call *c, uint64_t timeout_ms) {
    sd_function_tier *ft = c->ft;
    pthread_mutex_lock(&ft->lock);
    c->deadline_ns = monotonic_ns() + timeout_ms * 1000000u;
    c->next_active = ft->active;
    if (ft->active)
        ft->active->prev_active = c;
    ft->active = c;
    pthread_mutex_unlock(&ft->lock);
}

static void active_unlink(ft_call *c) {
    sd_function_tier *ft = c->ft;
    pthread_mutex_lock(&ft->lock);
    if (c->deadline_ns) {
        if (c->prev_active)
            c->prev_active->next_active = c->next_active;
        else
            ft->active = c->next_active;
        if (c->next_active)
            c->next_active->prev_active = c->prev_active;
        c->deadline_ns = 0;
    }
    pthread_mutex_unlock(&ft->lock);
}

static void call_free(ft_call *c) {
    active_unlink(c);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_md);
    if (c->recv_buffer)
        grpc_byte_buffer_destroy(c->recv_buffer);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    grpc_slice_unref(c->status_details);
    release_upload(c);
    free(c);
}

/*
 * Posts the final batch: initial metadata, the reply (if any), the status, and the close.
 * Takes ownership of reply. Called on the completion-queue thread or on a worker.
 */
static void finish_call(ft_call *c, grpc_status_code status, const char *message,
                        grpc_byte_buffer *reply) {
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (reply) {
        c->reply = reply;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = reply;
    }
    grpc_slice_unref(c->status_details);
    c->status_details = grpc_slice_from_copied_string(message ? message : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n++].data.send_status_from_server.status_details = message ? &c->status_details : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    uint64_t suppressed = 0;
    if (status != GRPC_STATUS_OK && sd_ratelimit_allow(&c->ft->log_limit, &suppressed))
        DR_INFO(DR_LOGM_APP, "function tier: %s -> %s: %s%s", method_name(c->method),
                sd_grpc_status_name(status), message ? message : "",
                suppressed ? " (and earlier lines suppressed by the rate limit)" : "");
    count_finished(c->ft, status);
    grpc_call *call = c->call; /* c may be freed as soon as the batch is posted */
    atomic_fetch_add_explicit(&c->handoff, 1, memory_order_release);
    grpc_call_error rc = grpc_call_start_batch(call, ops, n, &c->tag_finish, NULL);
    /* Only programming errors (two batches of one kind) make start_batch fail. */
    assert(rc == GRPC_CALL_OK);
    (void)rc;
}

static void finish_with_message(ft_call *c, const ProtobufCMessage *reply_message) {
    grpc_byte_buffer *reply = sd_grpc_buffer_from_message(reply_message);
    if (!reply) {
        finish_call(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        return;
    }
    finish_call(c, GRPC_STATUS_OK, NULL, reply);
}

static void post_recv(ft_call *c) {
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buffer;
    grpc_call *call = c->call;
    atomic_fetch_add_explicit(&c->handoff, 1, memory_order_release);
    grpc_call_error rc = grpc_call_start_batch(call, &op, 1, &c->tag_recv, NULL);
    assert(rc == GRPC_CALL_OK);
    (void)rc;
}

/* ---------------------------------------------------------------- workers */

static void enqueue_job(ft_call *c) {
    sd_function_tier *ft = c->ft;
    pthread_mutex_lock(&ft->lock);
    c->next_job = NULL;
    if (ft->job_tail)
        ft->job_tail->next_job = c;
    else
        ft->job_head = c;
    ft->job_tail = c;
    pthread_cond_signal(&ft->job_ready);
    pthread_mutex_unlock(&ft->lock);
}

static void finish_backend_error(ft_call *c, int rc, const dr_err *err) {
    finish_call(c, (grpc_status_code)sd_status_of_error(rc),
                err->msg[0] ? err->msg : dr_strerror(rc), NULL);
}

static void run_whatsthis(ft_call *c, dr_err *err) {
    const sd_backend *be = &c->ft->backend;
    char *desc = NULL;
    int rc = be->whatsthis(be->user, c->upload.tags, c->upload.n_tags, c->upload.data.data,
                           c->upload.data.len, &desc, err);
    release_upload(c);
    if (rc) {
        finish_backend_error(c, rc, err);
    } else {
        Sospdemo__PhotoReply reply = SOSPDEMO__PHOTO_REPLY__INIT;
        if (desc)
            sd_utf8_sanitize(desc);
        reply.desc = desc ? desc : "";
        finish_with_message(c, &reply.base);
    }
    free(desc);
}

static void reply_model(ft_call *c, int rc, int32_t error_code, char *error_desc,
                        const dr_err *err) {
    if (rc) {
        finish_backend_error(c, rc, err);
        return;
    }
    Sospdemo__ModelReply reply = SOSPDEMO__MODEL_REPLY__INIT;
    if (error_desc)
        sd_utf8_sanitize(error_desc);
    reply.error_code = error_code;
    reply.error_desc = error_desc ? error_desc : "";
    finish_with_message(c, &reply.base);
}

static void run_install_model(ft_call *c, dr_err *err) {
    const sd_backend *be = &c->ft->backend;
    const sd_upload *up = &c->upload;
    const uint8_t *synset = up->data.data;
    const uint8_t *symbol = synset + up->synset_size;
    const uint8_t *params = symbol + up->symbol_size;
    int32_t error_code = 0;
    char *error_desc = NULL;
    int rc =
        be->install_model(be->user, up->model_tag, synset, up->synset_size, symbol, up->symbol_size,
                          params, up->params_size, up->precision, &error_code, &error_desc, err);
    release_upload(c);
    reply_model(c, rc, error_code, error_desc, err);
    free(error_desc);
}

static void run_remove_model(ft_call *c, dr_err *err) {
    const sd_backend *be = &c->ft->backend;
    int32_t error_code = 0;
    char *error_desc = NULL;
    int rc = be->remove_model(be->user, c->remove_tag, &error_code, &error_desc, err);
    reply_model(c, rc, error_code, error_desc, err);
    free(error_desc);
}

static bool backend_has(const sd_backend *be, ft_method method) {
    switch (method) {
    case M_WHATSTHIS:
        return be->whatsthis != NULL;
    case M_INSTALL_MODEL:
        return be->install_model != NULL;
    case M_REMOVE_MODEL:
        return be->remove_model != NULL;
    default:
        return false;
    }
}

static void run_job(ft_call *c) {
    sd_function_tier *ft = c->ft;
    dr_err err;
    dr_err_clear(&err);
    if (atomic_load(&ft->shutting_down)) {
        finish_call(c, GRPC_STATUS_UNAVAILABLE, "the function tier is stopping", NULL);
        return;
    }
    if (!backend_has(&ft->backend, c->method)) {
        finish_call(c, GRPC_STATUS_UNIMPLEMENTED, "this node does not serve the method", NULL);
        return;
    }
    pthread_mutex_lock(&ft->lock);
    ft->stats.backend_running++;
    pthread_mutex_unlock(&ft->lock);
    if (c->method == M_WHATSTHIS)
        run_whatsthis(c, &err);
    else if (c->method == M_INSTALL_MODEL)
        run_install_model(c, &err);
    else
        run_remove_model(c, &err);
    pthread_mutex_lock(&ft->lock);
    ft->stats.backend_running--;
    pthread_mutex_unlock(&ft->lock);
}

static void *worker_main(void *arg) {
    sd_function_tier *ft = arg;
    pthread_setname_np(pthread_self(), "ft-worker");
    pthread_mutex_lock(&ft->lock);
    for (;;) {
        while (!ft->job_head && !ft->workers_exit)
            pthread_cond_wait(&ft->job_ready, &ft->lock);
        ft_call *c = ft->job_head;
        if (!c)
            break; /* workers_exit and nothing left */
        ft->job_head = c->next_job;
        if (!ft->job_head)
            ft->job_tail = NULL;
        pthread_mutex_unlock(&ft->lock);
        run_job(c);
        pthread_mutex_lock(&ft->lock);
    }
    pthread_mutex_unlock(&ft->lock);
    return NULL;
}

/* ---------------------------------------------------------------- completion-queue steps */

/* Keeps one more grpc_server_request_call posted. Returns false when none could be posted. */
static bool post_accept(sd_function_tier *ft) {
    if (atomic_load(&ft->shutting_down))
        return false;
    ft_call *c = call_new(ft);
    if (!c)
        return false;
    grpc_call_error rc = grpc_server_request_call(ft->server, &c->call, &c->details, &c->request_md,
                                                  ft->cq, ft->cq, &c->tag_new);
    if (rc != GRPC_CALL_OK) {
        call_free(c);
        return false;
    }
    return true;
}

/* The value of the call's `authorization` metadata (NULL: none); *len_out its length. */
static const char *authorization_of(const ft_call *c, size_t *len_out) {
    for (size_t i = 0; i < c->request_md.count; i++) {
        const grpc_metadata *md = &c->request_md.metadata[i];
        if (grpc_slice_str_cmp(md->key, "authorization") == 0) {
            *len_out = GRPC_SLICE_LENGTH(md->value);
            return (const char *)GRPC_SLICE_START_PTR(md->value);
        }
    }
    *len_out = 0;
    return NULL;
}

/* Checks the call's bearer token for its method; finishes a refused call and returns false. */
static bool authorized(ft_call *c) {
    sd_function_tier *ft = c->ft;
    const char *needed = c->method == M_WHATSTHIS ? ft->inference_token : ft->admin_token;
    const char *also = c->method == M_WHATSTHIS ? ft->admin_token : NULL;
    size_t len = 0;
    const char *value = authorization_of(c, &len);
    sd_auth_result result = sd_check_bearer(value, len, needed, also);
    if (result == SD_AUTH_MISSING) {
        finish_call(c, GRPC_STATUS_UNAUTHENTICATED,
                    c->method == M_WHATSTHIS
                        ? "Whatsthis needs `authorization: Bearer <token>` metadata (the "
                          "inference or admin token)"
                        : "installing and removing models need `authorization: Bearer "
                          "<admin token>` metadata (the cluster's secrets/admin.token)",
                    NULL);
        return false;
    }
    if (result == SD_AUTH_DENIED) {
        finish_call(c, GRPC_STATUS_PERMISSION_DENIED,
                    "the token does not grant this method (wrong or not the admin token)", NULL);
        return false;
    }
    return true;
}

/* TAG_NEW_CALL: a client opened a call. */
static void on_new_call(ft_call *c) {
    sd_function_tier *ft = c->ft;
    c->method = method_of(c->details.method);
    pthread_mutex_lock(&ft->lock);
    ft->stats.calls_started++;
    uint64_t active = ++ft->stats.calls_active;
    pthread_mutex_unlock(&ft->lock);
    if (c->method == M_UNKNOWN) {
        finish_call(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method", NULL);
        return;
    }
    if (active > ft->config.max_active_calls) {
        finish_call(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many calls in progress; retry later",
                    NULL);
        return;
    }
    if (!authorized(c))
        return;
    active_link(c, c->method == M_INSTALL_MODEL ? ft->config.install_timeout_ms
                                                : ft->config.call_timeout_ms);
    if (c->method == M_INSTALL_MODEL)
        sd_upload_init(&c->upload, SD_UPLOAD_MODEL, &ft->config.limits);
    post_recv(c);
}

/* RemoveModel's single message. Returns 0 or DR_EINVAL with err set. */
static int accept_remove_request(ft_call *c, const uint8_t *msg, size_t len, dr_err *err) {
    if (c->have_remove_request)
        return dr_err_set(err, DR_EINVAL, "RemoveModel: more than one request message");
    Sospdemo__RemoveModelRequest *req = sospdemo__remove_model_request__unpack(NULL, len, msg);
    if (!req)
        return dr_err_set(err, DR_EINVAL, "RemoveModel: message is not a valid RemoveModelRequest");
    c->remove_tag = req->tag;
    c->have_remove_request = true;
    sospdemo__remove_model_request__free_unpacked(req, NULL);
    return DR_OK;
}

/*
 * Feeds one upload message and counts the bytes it added against max_buffered_bytes, the
 * budget of all uploads together. The call that passes the budget fails (its bytes are given
 * back when it ends), so the budget is exceeded by at most one message at a time: only this
 * thread adds to it, workers only give back.
 */
static int feed_upload(ft_call *c, const uint8_t *msg, size_t len, dr_err *err) {
    sd_function_tier *ft = c->ft;
    int rc = sd_upload_feed(&c->upload, msg, len, err);
    uint64_t grown = c->upload.data.len - c->charged_bytes;
    uint64_t buffered = atomic_fetch_add(&ft->buffered_bytes, grown) + grown;
    c->charged_bytes += grown;
    if (rc == DR_OK && buffered > ft->config.max_buffered_bytes)
        return dr_err_set(err, DR_EAGAIN,
                          "%s: the server holds %" PRIu64 " bytes of uploads (limit %" PRIu64
                          "); retry later",
                          method_name(c->method), buffered, ft->config.max_buffered_bytes);
    return rc;
}

static int accept_message(ft_call *c, dr_err *err) {
    int ok = 0;
    grpc_slice msg = sd_grpc_buffer_flatten(c->recv_buffer, &ok);
    grpc_byte_buffer_destroy(c->recv_buffer);
    c->recv_buffer = NULL;
    int rc;
    if (!ok)
        rc = dr_err_set(err, DR_EINVAL, "%s: cannot read the message (bad compression?)",
                        method_name(c->method));
    else if (c->method == M_REMOVE_MODEL)
        rc = accept_remove_request(c, GRPC_SLICE_START_PTR(msg), GRPC_SLICE_LENGTH(msg), err);
    else
        rc = feed_upload(c, GRPC_SLICE_START_PTR(msg), GRPC_SLICE_LENGTH(msg), err);
    grpc_slice_unref(msg);
    return rc;
}

static int check_end_of_stream(const ft_call *c, dr_err *err) {
    if (c->method != M_REMOVE_MODEL)
        return sd_upload_finish(&c->upload, err);
    if (!c->have_remove_request)
        return dr_err_set(err, DR_EINVAL, "RemoveModel: the stream ended without a request");
    return DR_OK;
}

/* TAG_RECV: a message, the end of the client's stream, or a failed call. */
static void on_recv(ft_call *c, bool ok) {
    dr_err err;
    dr_err_clear(&err);
    if (!ok || atomic_load(&c->ft->shutting_down)) {
        finish_call(c, GRPC_STATUS_CANCELLED, "the call ended before its stream was complete",
                    NULL);
        return;
    }
    if (c->recv_buffer) {
        int rc = accept_message(c, &err);
        if (rc) {
            release_upload(c); /* give the budget back now, not when the client is gone */
            finish_call(
                c, rc == DR_EAGAIN ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT,
                err.msg, NULL);
            return;
        }
        post_recv(c);
        return;
    }
    if (check_end_of_stream(c, &err)) {
        finish_call(c, GRPC_STATUS_INVALID_ARGUMENT, err.msg, NULL);
        return;
    }
    enqueue_job(c);
}

/* TAG_FINISH: the call is over on our side. */
static void on_finished(ft_call *c) {
    sd_function_tier *ft = c->ft;
    call_free(c);
    pthread_mutex_lock(&ft->lock);
    ft->stats.calls_active--;
    pthread_mutex_unlock(&ft->lock);
}

static uint64_t active_calls(sd_function_tier *ft) {
    pthread_mutex_lock(&ft->lock);
    uint64_t active = ft->stats.calls_active;
    pthread_mutex_unlock(&ft->lock);
    return active;
}

static void *cq_main(void *arg) {
    sd_function_tier *ft = arg;
    unsigned accepts_posted = 0;
    bool shutdown_seen = false;
    pthread_setname_np(pthread_self(), "ft-cq");
    for (unsigned i = 0; i < ACCEPTS_IN_FLIGHT; i++)
        accepts_posted += post_accept(ft);
    while (!(shutdown_seen && accepts_posted == 0 && active_calls(ft) == 0)) {
        grpc_event ev =
            grpc_completion_queue_next(ft->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE)
            break; /* queue shut down: cannot happen before we shut it down */
        ft_tag *tag = ev.tag;
        if (tag->call)
            (void)atomic_load_explicit(&tag->call->handoff, memory_order_acquire);
        switch (tag->kind) {
        case TAG_NEW_CALL:
            accepts_posted--;
            if (!ev.success) {
                call_free(tag->call);
                break;
            }
            accepts_posted += post_accept(ft);
            on_new_call(tag->call);
            break;
        case TAG_RECV:
            on_recv(tag->call, ev.success != 0);
            break;
        case TAG_FINISH:
            on_finished(tag->call);
            break;
        case TAG_SHUTDOWN:
            shutdown_seen = true;
            break;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- server-side deadlines */

/*
 * Cancels the calls whose deadline passed (DEADLINE_EXCEEDED; their RECV or final batch then
 * completes on the queue thread, which frees them) and sleeps until the next deadline or stop.
 * ft->lock is held while cancelling: call_free unlinks under it, so a listed call is alive.
 */
static void *deadline_main(void *arg) {
    sd_function_tier *ft = arg;
    pthread_setname_np(pthread_self(), "ft-deadline");
    pthread_mutex_lock(&ft->lock);
    while (!ft->deadline_exit) {
        uint64_t now = monotonic_ns(), next = now + 1000000000ull; /* rescan at least each 1 s */
        for (ft_call *c = ft->active; c; c = c->next_active) {
            if (c->deadline_hit)
                continue;
            if (c->deadline_ns <= now) {
                c->deadline_hit = true;
                ft->stats.calls_deadline++;
                grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                             "the call passed the server's deadline "
                                             "(grpc_call_timeout_ms / grpc_install_timeout_ms)",
                                             NULL);
            } else if (c->deadline_ns < next) {
                next = c->deadline_ns;
            }
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t wait_ns = next > now ? next - now : 0;
        until.tv_sec += (time_t)(wait_ns / 1000000000u);
        until.tv_nsec += (long)(wait_ns % 1000000000u);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ft->deadline_wake, &ft->lock, &until);
    }
    pthread_mutex_unlock(&ft->lock);
    return NULL;
}

/* ---------------------------------------------------------------- start / stop */

static void apply_defaults(sd_function_tier_config *config) {
    if (!config->limits.max_photo_bytes)
        config->limits.max_photo_bytes = SD_DEFAULT_MAX_PHOTO_BYTES;
    if (!config->limits.max_model_bytes)
        config->limits.max_model_bytes = SD_DEFAULT_MAX_MODEL_BYTES;
    if (!config->limits.max_tags)
        config->limits.max_tags = SD_DEFAULT_MAX_TAGS;
    if (!config->workers)
        config->workers = DEFAULT_WORKERS;
    if (!config->max_active_calls)
        config->max_active_calls = DEFAULT_MAX_ACTIVE_CALLS;
    if (!config->max_message_bytes)
        config->max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
    if (!config->max_buffered_bytes)
        config->max_buffered_bytes = (uint64_t)DEFAULT_MAX_BUFFERED_MIB << 20;
    if (config->max_buffered_bytes < config->limits.max_model_bytes)
        config->max_buffered_bytes = config->limits.max_model_bytes; /* one model always fits */
    if (!config->call_timeout_ms)
        config->call_timeout_ms = DEFAULT_CALL_TIMEOUT_MS;
    if (!config->install_timeout_ms)
        config->install_timeout_ms = DEFAULT_INSTALL_TIMEOUT_MS;
}

/* The port's credentials: TLS with the configured certificate, or plain. */
static grpc_server_credentials *server_credentials(sd_function_tier *ft, dr_err *err) {
    const sd_credentials *creds = ft->config.credentials;
    if (!creds || !creds->tls_cert_pem)
        return grpc_insecure_server_credentials_create();
    if (!creds->tls_key_pem) {
        dr_err_set(err, DR_EINVAL, "function tier: a TLS certificate without its key");
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {.private_key = creds->tls_key_pem,
                                       .cert_chain = creds->tls_cert_pem};
    ft->tls = true;
    grpc_server_credentials *server_creds = grpc_ssl_server_credentials_create_ex(
        NULL, &pair, 1, GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
    if (!server_creds)
        dr_err_set(err, DR_EINVAL, "function tier: the TLS certificate or key is not valid PEM");
    return server_creds;
}

static int create_server(sd_function_tier *ft, dr_err *err) {
    grpc_arg args[2];
    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer =
        ft->config.max_message_bytes > INT32_MAX ? INT32_MAX : (int)ft->config.max_message_bytes;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ALLOW_REUSEPORT; /* a taken port must be an error, not shared */
    args[1].value.integer = 0;
    grpc_channel_args channel_args = {2, args};
    ft->server = grpc_server_create(&channel_args, NULL);
    ft->cq = grpc_completion_queue_create_for_next(NULL);
    if (!ft->server || !ft->cq)
        return dr_err_set(err, DR_ENOMEM, "cannot create the gRPC server");
    grpc_server_register_completion_queue(ft->server, ft->cq, NULL);
    grpc_server_credentials *creds = server_credentials(ft, err);
    if (!creds)
        return err->code ? err->code : DR_EINVAL;
    ft->port = grpc_server_add_http2_port(ft->server, ft->address, creds);
    grpc_server_credentials_release(creds);
    if (ft->port <= 0)
        return dr_err_set(err, DR_EIO, "function tier: cannot listen on %s", ft->address);
    grpc_server_start(ft->server);
    ft->server_started = true;
    return DR_OK;
}

static int start_threads(sd_function_tier *ft, dr_err *err) {
    ft->workers = calloc(ft->config.workers, sizeof(pthread_t));
    if (!ft->workers)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    for (; ft->workers_started < ft->config.workers; ft->workers_started++) {
        if (pthread_create(&ft->workers[ft->workers_started], NULL, worker_main, ft))
            return dr_err_set(err, DR_ENOMEM, "cannot start a worker thread");
    }
    if (pthread_create(&ft->cq_thread, NULL, cq_main, ft))
        return dr_err_set(err, DR_ENOMEM, "cannot start the completion-queue thread");
    ft->cq_thread_started = true;
    if (pthread_create(&ft->deadline_thread, NULL, deadline_main, ft))
        return dr_err_set(err, DR_ENOMEM, "cannot start the deadline thread");
    ft->deadline_thread_started = true;
    return DR_OK;
}

/*
 * gRPC core's own lines (one per failed TLS handshake, per bad connection...) are a log a client
 * can fill at will: they go to our log through one process-wide rate limiter.
 */
static sd_ratelimit g_grpc_log_limit;
static pthread_once_t g_grpc_log_once = PTHREAD_ONCE_INIT;

static void log_from_grpc(gpr_log_func_args *args) {
    uint64_t suppressed = 0;
    if (!sd_ratelimit_allow(&g_grpc_log_limit, &suppressed))
        return;
    if (args->severity == GPR_LOG_SEVERITY_ERROR)
        DR_WARN(DR_LOGM_APP, "gRPC (%s:%d): %s%s", args->file, args->line, args->message,
                suppressed ? " (earlier gRPC lines suppressed by the rate limit)" : "");
    else
        DR_INFO(DR_LOGM_APP, "gRPC (%s:%d): %s", args->file, args->line, args->message);
}

static void route_grpc_log(void) {
    sd_ratelimit_init(&g_grpc_log_limit, LOG_BURST, LOG_WINDOW_MS); /* lives with the process */
    gpr_set_log_function(log_from_grpc);
}

static int copy_tokens(sd_function_tier *ft, dr_err *err) {
    const sd_credentials *creds = ft->config.credentials;
    if (creds && creds->admin_token && !(ft->admin_token = strdup(creds->admin_token)))
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    if (creds && creds->inference_token && !(ft->inference_token = strdup(creds->inference_token)))
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    return DR_OK;
}

int sd_function_tier_start(const sd_function_tier_config *config, const sd_backend *backend,
                           sd_function_tier **out, dr_err *err) {
    *out = NULL;
    if (!config || !config->listen_address || !backend)
        return dr_err_set(err, DR_EINVAL, "function tier: no listen address or backend");
    sd_function_tier *ft = calloc(1, sizeof(*ft));
    if (!ft)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    pthread_once(&g_grpc_log_once, route_grpc_log);
    grpc_init();
    ft->backend = *backend;
    ft->config = *config;
    apply_defaults(&ft->config);
    ft->address = strdup(config->listen_address);
    ft->config.listen_address = ft->address;
    ft->shutdown_tag = (ft_tag){TAG_SHUTDOWN, NULL};
    atomic_init(&ft->shutting_down, false);
    atomic_init(&ft->buffered_bytes, 0);
    pthread_mutex_init(&ft->lock, NULL);
    pthread_cond_init(&ft->job_ready, NULL);
    pthread_condattr_t cond_attr;
    pthread_condattr_init(&cond_attr);
    pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ft->deadline_wake, &cond_attr);
    pthread_condattr_destroy(&cond_attr);
    sd_ratelimit_init(&ft->log_limit, LOG_BURST, LOG_WINDOW_MS);
    int rc = copy_tokens(ft, err);
    if (rc == DR_OK)
        rc = ft->address ? create_server(ft, err) : dr_err_set(err, DR_ENOMEM, "out of memory");
    if (rc == DR_OK)
        rc = start_threads(ft, err);
    ft->config.credentials = NULL; /* borrowed during start only */
    if (rc) {
        sd_function_tier_stop(ft);
        return rc;
    }
    DR_INFO(DR_LOGM_APP,
            "function tier: gRPC%s on %s (port %d, %u workers; install/remove %s, "
            "inference %s)",
            ft->tls ? " over TLS" : " without TLS", ft->address, ft->port, ft->config.workers,
            ft->admin_token ? "need the admin token" : "OPEN to anyone",
            ft->inference_token ? "needs a token" : "open");
    *out = ft;
    return DR_OK;
}

int sd_function_tier_address(char *buf, size_t cap, const char *local_ip, uint32_t local_id) {
    if (local_id > 65535 - SD_FUNCTION_TIER_BASE_PORT)
        return DR_ERANGE;
    int n = snprintf(buf, cap, "%s:%u", local_ip, SD_FUNCTION_TIER_BASE_PORT + local_id);
    return n < 0 || (size_t)n >= cap ? DR_ERANGE : DR_OK;
}

void sd_function_tier_print_banner(FILE *out, const char *address) {
    static const char rule[] = "//////////////////////////////////////////"; /* 42, as the seed */
    fprintf(out, "%s\nFunctionTier listening on %s\n%s\n", rule, address, rule);
    fflush(out);
}

int sd_function_tier_port(const sd_function_tier *server) {
    return server->port;
}

static void join_workers(sd_function_tier *ft) {
    pthread_mutex_lock(&ft->lock);
    ft->workers_exit = true;
    pthread_cond_broadcast(&ft->job_ready);
    pthread_mutex_unlock(&ft->lock);
    for (unsigned i = 0; i < ft->workers_started; i++)
        pthread_join(ft->workers[i], NULL);
    free(ft->workers);
}

static void drain_and_destroy_queue(grpc_completion_queue *cq) {
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
    }
    grpc_completion_queue_destroy(cq);
}

void sd_function_tier_stop(sd_function_tier *ft) {
    if (!ft)
        return;
    atomic_store(&ft->shutting_down, true);
    if (ft->server_started) {
        grpc_server_shutdown_and_notify(ft->server, ft->cq, &ft->shutdown_tag);
        grpc_server_cancel_all_calls(ft->server);
        if (ft->cq_thread_started) {
            pthread_join(ft->cq_thread, NULL);
        } else {
            /* Failed start: nothing but the shutdown tag can be on the queue. */
            grpc_event ev;
            do {
                ev = grpc_completion_queue_next(ft->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            } while (ev.type == GRPC_OP_COMPLETE && ev.tag != &ft->shutdown_tag);
        }
    }
    if (ft->deadline_thread_started) {
        pthread_mutex_lock(&ft->lock);
        ft->deadline_exit = true;
        pthread_cond_broadcast(&ft->deadline_wake);
        pthread_mutex_unlock(&ft->lock);
        pthread_join(ft->deadline_thread, NULL);
    }
    join_workers(ft);
    assert(ft->job_head == NULL);
    if (ft->server)
        grpc_server_destroy(ft->server);
    if (ft->cq)
        drain_and_destroy_queue(ft->cq);
    pthread_cond_destroy(&ft->job_ready);
    pthread_cond_destroy(&ft->deadline_wake);
    pthread_mutex_destroy(&ft->lock);
    sd_ratelimit_destroy(&ft->log_limit);
    sd_credentials creds = {.admin_token = ft->admin_token, .inference_token = ft->inference_token};
    sd_credentials_free(&creds); /* zeroes the copies */
    free(ft->address);
    free(ft);
    grpc_shutdown();
}

void sd_function_tier_get_stats(sd_function_tier *ft, sd_function_tier_stats *stats) {
    pthread_mutex_lock(&ft->lock);
    *stats = ft->stats;
    pthread_mutex_unlock(&ft->lock);
    stats->buffered_bytes = atomic_load(&ft->buffered_bytes);
}
