/*
 * The function tier's HTTP/JSON API (libmicrohttpd), on the same backend as the gRPC server:
 *
 *   POST   /v1/whatsthis?tags=1,2   the photo as body, or multipart/form-data with the photo in
 *                                   a field `photo` (curl -F photo=@x.jpg)
 *          -> {"tags":[1,2],"description":"...","answers":[{"tag":1,"description":"...",
 *              "score":0.9}, {"tag":2,...,"error":"no_model"}]} (answers only with the
 *              backend's classify); an error answer also sets "error" and the status: 404 no
 *              model, 422 the model cannot be loaded, 415 not an image (the first error wins);
 *              ?top=K (1..10) adds "top":[{"label","score"}..] to each answer
 *   PUT    /v1/models/{tag}         multipart/form-data: synset + symbol + params (MXNet),
 *                                   or labels + onnx (ONNX: passed on as synset = labels,
 *                                   symbol empty, params = the .onnx bytes)
 *          -> {"tag":1,"error_code":0,"error_desc":"install model successfully."}
 *   DELETE /v1/models/{tag}         -> {"tag":1,"error_code":0,"error_desc":"..."}
 *   GET    /v1/models               the list_models hook's JSON (501 without it)
 *   GET    /v1/models/{tag}         that tag's entry of it, or 404
 *   GET    /v1/models/{tag}?version=V   the tag's model as its shard's state was at version V
 *   GET    /v1/models/{tag}?time=T      ...or at time T (µs since the epoch, or ISO-8601 UTC
 *                                   2026-12-07T21:00:00[.123456]Z), from the durable log (the
 *                                   model_as_of hook): 404 no model then, 400 a malformed
 *                                   query, 410 older than the log, 409 not durable
 *   GET    /v1/cluster              the cluster hook's JSON (501 without it)
 *   GET    /, /index.html           the web page (web/index.html): classify, models, cluster
 *   GET    /samples                 the names of the demo model's sample photos (JSON array)
 *   GET    /samples/<name>          one of them (embedded at build time), for the page
 *   GET    /healthz                 "ok"
 *   GET    /metrics                 Prometheus text: requests and errors per endpoint, a
 *                                   latency histogram, the gRPC server's call counters, the
 *                                   metrics hook's lines
 *
 * Security (docs/security.md): with a certificate the port speaks HTTPS only. PUT and DELETE
 * of models need `Authorization: Bearer <admin token>` when an admin token is configured,
 * POST /v1/whatsthis the inference token (or the admin token) when one is configured: no or a
 * malformed header answers 401 (with WWW-Authenticate), a wrong token 403. A Host header that
 * is not loopback, listen_ip or an allowed host (DNS rebinding), or an Origin whose host is not
 * one of them, answers 403. Bodies (Content-Length or chunked, raw or multipart) are counted as
 * they arrive, against the request's limit (413) and the server's upload budget shared by all
 * requests (503); the rest of a refused body is read and dropped without being kept. Repeated
 * tags are merged.
 *
 * Status codes: 200 answered; 400 bad request (bad tags, empty or missing parts); 404 unknown
 * path, model or tag; 405 wrong method; 409 install refused (error_code != 0, e.g. tag taken);
 * 422 install refused with error_code DR_ECORRUPT (the model cannot be loaded); 404 remove of a
 * tag that is not installed (error_code != 0); 413 body over the configured limits (checked
 * against Content-Length before reading, and while reading); 415 a PUT that is not multipart;
 * 501 no hook; 503 / 504 / 500 backend errors (DR_EAGAIN, DR_ECLOSED etc. / DR_ETIMEDOUT /
 * other). Errors are JSON {"error":"..."}. /metrics counts errors by kind.
 *
 * Threads: libmicrohttpd's thread per connection (at most max_connections, at most
 * max_connections_per_ip from one address; an idle or slow connection is closed after
 * connection_timeout_s); the backend is called on those threads, so it may block.
 */
#ifndef SOSPDEMO_HTTP_API_H
#define SOSPDEMO_HTTP_API_H

#include "derecho/error.h"
#include "function_tier.h"
#include "upload.h"

#include <stdbool.h>
#include <stdint.h>

/** Optional providers of node information. Every field may be NULL. Called on HTTP threads. */
typedef struct sd_http_hooks {
    void *user; /**< first argument of every hook */
    /** Sets *json_out (malloc'd) to the installed models as JSON. Returns 0 or DR_E*. */
    int (*list_models)(void *user, char **json_out, dr_err *err);
    /**
     * Sets *json_out (malloc'd) to the model of `tag` as its categorizer shard's state was at a
     * past version (by_time false: the newest logged version <= key) or time (by_time true: key
     * in µs since the epoch), read back from the shard's durable log: tag, format, precision,
     * bytes, digest, and the version and time of the install record that produced it. Returns
     * 0; DR_ENOTFOUND (no model under the tag then: never installed yet, or removed; err says
     * which); DR_ERANGE (older than the history any replica keeps); DR_ESTATE (the shard is not
     * durable); DR_EINVAL; or another DR_E* with err. Blocks (p2p calls, disk reads).
     */
    int (*model_as_of)(void *user, uint32_t tag, bool by_time, int64_t key, char **json_out,
                       dr_err *err);
    /** Sets *json_out (malloc'd) to the cluster view as JSON. Returns 0 or DR_E*. */
    int (*cluster)(void *user, char **json_out, dr_err *err);
    /** Sets *text_out (malloc'd) to extra Prometheus lines (models installed, view id...). */
    int (*metrics)(void *user, char **text_out);
} sd_http_hooks;

/** HTTP server settings; zero fields take defaults. */
typedef struct sd_http_config {
    const char *listen_ip;           /**< IPv4 address to bind ("127.0.0.1"; NULL: any) */
    uint16_t port;                   /**< TCP port (0: a free one, see sd_http_port) */
    sd_upload_limits limits;         /**< body limits (defaults as the gRPC server's) */
    unsigned max_connections;        /**< simultaneous connections (default 256) */
    unsigned max_connections_per_ip; /**< from one client address (default 32) */
    unsigned connection_timeout_s;   /**< idle / slow connection closed after (default 30) */
    uint64_t max_upload_bytes;       /**< request bodies held by all requests at once (default: the
                                          larger of 256 MiB and max_model_bytes + max_photo_bytes) */
    const char *allowed_hosts;       /**< extra Host / Origin names besides loopback and listen_ip,
                                          comma-separated (copied; NULL: none) */
    /** TLS and tokens (borrowed during start, copied; NULL fields: that protection is off). */
    const sd_credentials *credentials;
    sd_function_tier *grpc; /**< optional: its counters appear in /metrics */
} sd_http_config;

typedef struct sd_http_api sd_http_api;

/**
 * Starts the HTTP server. backend and hooks (may be NULL) are copied; their user pointers must
 * outlive the server. Returns 0, DR_EIO when the address cannot be bound, DR_EINVAL, DR_ENOMEM.
 */
int sd_http_start(const sd_http_config *config, const sd_backend *backend,
                  const sd_http_hooks *hooks, sd_http_api **out, dr_err *err);

/** The bound TCP port. */
int sd_http_port(const sd_http_api *api);

/** Stops the server (waits for the connection threads) and frees it. NULL is ignored. */
void sd_http_stop(sd_http_api *api);

#endif
