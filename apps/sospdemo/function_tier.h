/*
 * The function tier's gRPC server: service sospdemo.FunctionTierService (sospdemo.proto) on
 * the gRPC core C API, seed-compatible on the wire.
 *
 * The server only speaks gRPC and checks the request streams (upload.h); the work is done by
 * a backend (sd_backend), which in the service forwards to the categorizer tier and in tests
 * is a fake.
 *
 * Threads: one completion-queue thread runs every gRPC event (accepting calls, reading and
 * checking stream messages, finishing calls); complete requests are handed to a pool of
 * worker threads that call the backend, which may block (group RPCs), so `workers` requests
 * are served at once. Idle threads block in grpc_completion_queue_next or on a condition
 * variable; nothing polls.
 *
 * Security (docs/security.md): with credentials the port speaks TLS only; a call whose method
 * needs a token and that carries no `authorization: Bearer <token>` metadata ends with
 * UNAUTHENTICATED, one with a wrong token with PERMISSION_DENIED, before any message is read.
 * Every call has a server-side deadline (call_timeout_ms / install_timeout_ms): a client that
 * stops sending is cancelled with DEADLINE_EXCEEDED and its upload bytes are given back.
 *
 * Statuses: a malformed stream ends with INVALID_ARGUMENT and a one-line message (upload.h);
 * more than max_active_calls calls at once, or uploads past max_buffered_bytes in all, with
 * RESOURCE_EXHAUSTED; an unknown method with
 * UNIMPLEMENTED; a backend error (negative return) with the status of sd_status_of_error and
 * the backend's message. A backend answer (description, or error_code + error_desc) is sent
 * with status OK, as in the seed.
 */
#ifndef SOSPDEMO_FUNCTION_TIER_H
#define SOSPDEMO_FUNCTION_TIER_H

#include "answers.h"
#include "derecho/error.h"
#include "security.h"
#include "upload.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/**
 * What the function tier delegates to. All callbacks are called on worker threads, several
 * at once (they must be thread-safe), may block, and must return (server stop waits for
 * them). Byte arguments are borrowed for the duration of the call. Strings returned through
 * *_out are malloc'd by the backend and freed by the server with free().
 * A callback returns 0 when it produced an answer, or a negative DR_E* code with err set when
 * the request could not be served at all (the call then fails with a gRPC status).
 */
typedef struct sd_backend {
    void *user; /**< passed as the first argument of every callback */

    /**
     * Classifies the photo (photo_size_bytes bytes, as uploaded) with the models of tags[0..
     * n_tags) and sets *desc_out to the answer ("rose", "Cannot find model for photo tag.",
     * several tags' answers joined with " or ").
     */
    int (*whatsthis)(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                     size_t photo_size_bytes, char **desc_out, dr_err *err);

    /**
     * Optional (the HTTP API uses it when set; the gRPC server never does): like whatsthis, but
     * one answer per tag in answers[0..n_tags) (kind, score, desc, and the top_k best classes
     * when top_k is 1..SD_MAX_TOP; after a 0 return the caller frees each answer with
     * sd_tag_answer_clear; nothing to free after an error).
     */
    int (*classify)(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                    size_t photo_size_bytes, uint32_t top_k, sd_tag_answer *answers, dr_err *err);

    /**
     * Installs the model under tag, its engine to run in `precision` (a dr_precision: 0 fp32,
     * 1 bf16, 2 auto). Sets *error_code_out (0: success) and *error_desc_out
     * (e.g. "install model successfully.") as returned to the client in ModelReply.
     */
    int (*install_model)(void *user, uint32_t tag, const uint8_t *synset, size_t synset_bytes,
                         const uint8_t *symbol, size_t symbol_bytes, const uint8_t *params,
                         size_t params_bytes, uint8_t precision, int32_t *error_code_out,
                         char **error_desc_out, dr_err *err);

    /** Removes the model of tag; answers like install_model. */
    int (*remove_model)(void *user, uint32_t tag, int32_t *error_code_out, char **error_desc_out,
                        dr_err *err);
} sd_backend;

/** Server settings. Zero fields take the defaults named below. */
typedef struct sd_function_tier_config {
    const char *listen_address;  /**< "ip:port" (required; port 0 picks a free one) */
    sd_upload_limits limits;     /**< stream limits (defaults: SD_DEFAULT_MAX_*) */
    unsigned workers;            /**< backend worker threads (default 4) */
    unsigned max_active_calls;   /**< calls open at once before RESOURCE_EXHAUSTED (default 64) */
    size_t max_message_bytes;    /**< largest single gRPC message (default 4 MiB) */
    uint64_t max_buffered_bytes; /**< upload bytes held by all calls at once (default 1 GiB,
                                      at least max_model_bytes); beyond: RESOURCE_EXHAUSTED */
    /** TLS and tokens (borrowed during start, copied; NULL or NULL fields: that protection is
     *  off): tls_cert_pem + tls_key_pem turn on TLS; admin_token guards InstallModel and
     *  RemoveModel, inference_token Whatsthis (the admin token grants it too). */
    const sd_credentials *credentials;
    uint32_t call_timeout_ms;    /**< server-side deadline of Whatsthis / RemoveModel from the
                                      call's start (default 60000); then DEADLINE_EXCEEDED */
    uint32_t install_timeout_ms; /**< the same for InstallModel (default 600000) */
} sd_function_tier_config;

/** A running server (opaque). */
typedef struct sd_function_tier sd_function_tier;

/**
 * Binds config->listen_address, starts the completion-queue thread and the workers, and
 * returns the running server in *out. backend is copied; backend->user must outlive the
 * server. Returns 0, DR_EIO when the address cannot be bound (err says which), DR_EINVAL for
 * a bad config, DR_ENOMEM. Blocking: returns once the server accepts calls. Any thread.
 */
int sd_function_tier_start(const sd_function_tier_config *config, const sd_backend *backend,
                           sd_function_tier **out, dr_err *err);

/** The TCP port the server listens on (useful with port 0). */
int sd_function_tier_port(const sd_function_tier *server);

/**
 * Stops accepting calls, cancels the calls in progress (their clients see CANCELLED or
 * UNAVAILABLE), waits for running backend callbacks to return, joins every thread and frees
 * the server. NULL is ignored. Blocking; must not be called from a backend callback.
 */
void sd_function_tier_stop(sd_function_tier *server);

/** Counters since start (for logs, metrics and tests). Thread-safe. */
typedef struct sd_function_tier_stats {
    uint64_t calls_started;         /**< calls accepted (any method) */
    uint64_t calls_ok;              /**< calls answered with status OK */
    uint64_t calls_invalid;         /**< calls refused with INVALID_ARGUMENT */
    uint64_t calls_failed;          /**< other non-OK statuses (backend error, busy, unknown) */
    uint64_t calls_active;          /**< calls open now */
    uint64_t backend_running;       /**< backend callbacks running now */
    uint64_t buffered_bytes;        /**< upload bytes held now */
    uint64_t calls_unauthenticated; /**< refused with UNAUTHENTICATED (no token) */
    uint64_t calls_denied;          /**< refused with PERMISSION_DENIED (wrong token) */
    uint64_t calls_deadline;        /**< cancelled by the server-side deadline */
} sd_function_tier_stats;

/** Copies the current counters into *stats. */
void sd_function_tier_get_stats(sd_function_tier *server, sd_function_tier_stats *stats);

/** The seed's function-tier port: a node listens on local_ip:(SD_FUNCTION_TIER_BASE_PORT + id). */
#define SD_FUNCTION_TIER_BASE_PORT 28000

/**
 * Writes "<local_ip>:<28000 + local_id>" into buf (cap bytes). Returns 0, or DR_ERANGE when the
 * port would pass 65535 or buf is too small.
 */
int sd_function_tier_address(char *buf, size_t cap, const char *local_ip, uint32_t local_id);

/**
 * Prints the seed's banner for a listening function tier to out:
 *   //////////////////////////////////////////
 *   FunctionTier listening on <address>
 *   //////////////////////////////////////////
 */
void sd_function_tier_print_banner(FILE *out, const char *address);

/** The gRPC status code (grpc_status_code value) used for a backend's DR_E* error. */
int sd_status_of_error(int dr_code);

#endif
