/*
 * Credentials and request checks shared by the function tier's gRPC server, its HTTP API and
 * the client (docs/security.md): secret files read with a size cap, bearer tokens compared in
 * constant time, Host/Origin checks against an allow list, and a rate limiter for log lines a
 * client can provoke at will. No I/O besides reading the named files; no global state.
 */
#ifndef SOSPDEMO_SECURITY_H
#define SOSPDEMO_SECURITY_H

#include "derecho/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Largest PEM file (certificate chain, key, CA bundle) read. */
#define SD_MAX_PEM_BYTES (1024u * 1024u)
/** Shortest and longest token accepted in a token file. */
#define SD_MIN_TOKEN_CHARS 16u
#define SD_MAX_TOKEN_CHARS 1024u

/** The credentials of one process; every field may be NULL (that protection is off). */
typedef struct sd_credentials {
    char *tls_cert_pem;    /**< server: certificate chain (PEM); NULL: no TLS */
    char *tls_key_pem;     /**< server: its private key (PEM) */
    char *tls_ca_pem;      /**< client: CA that signed the server's certificate; NULL: plain */
    char *admin_token;     /**< install/remove need "Bearer <admin_token>"; NULL: open */
    char *inference_token; /**< inference needs it (or the admin token); NULL: open */
} sd_credentials;

/** Frees every field (the struct itself is the caller's) and zeroes the secrets. */
void sd_credentials_free(sd_credentials *creds);

/**
 * Reads a whole file of at most max_bytes into a malloc'd NUL-terminated string (*out).
 * Returns 0, or DR_EIO (missing, unreadable, not a regular file), DR_ETOOBIG, DR_ENOMEM with
 * err naming the file and `what` ("TLS certificate").
 */
int sd_read_small_file(const char *path, const char *what, size_t max_bytes, char **out,
                       dr_err *err);

/**
 * Reads a token file: one line of SD_MIN_TOKEN_CHARS..SD_MAX_TOKEN_CHARS visible ASCII
 * characters (no spaces), trailing newline allowed. Returns 0 and *out (malloc'd), or DR_EIO /
 * DR_EINVAL (err says why).
 */
int sd_read_token_file(const char *path, const char *what, char **out, dr_err *err);

/** True when a[0..a_len) equals b[0..b_len); the time depends only on the lengths. */
bool sd_secret_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/** The outcome of a bearer-token check. */
typedef enum sd_auth_result {
    SD_AUTH_OK,      /**< the token matches (or no token is required) */
    SD_AUTH_MISSING, /**< no usable "Bearer <token>" credential: answer UNAUTHENTICATED / 401 */
    SD_AUTH_DENIED,  /**< a token that does not grant this method: PERMISSION_DENIED / 403 */
} sd_auth_result;

/**
 * Checks an Authorization value (value[0..len), not NUL-terminated, may be NULL) against the
 * tokens that grant a method: `needed` (NULL: the method is open) or `also` (another token that
 * grants it too, e.g. the admin token for inference; may be NULL). Comparisons take constant
 * time per token.
 */
sd_auth_result sd_check_bearer(const char *value, size_t len, const char *needed, const char *also);

/**
 * True when the Host header value (NULL or "" is accepted: HTTP/1.0) names a loopback host
 * (localhost, 127.x.y.z, [::1]) or one of allowed[0..n) (case-insensitive, port ignored).
 */
bool sd_host_allowed(const char *host, const char *const *allowed, size_t n_allowed);

/**
 * True when an Origin header value (NULL: accepted, not a browser's cross-site request) is
 * "http(s)://<host>[:port]" with a host that sd_host_allowed accepts.
 */
bool sd_origin_allowed(const char *origin, const char *const *allowed, size_t n_allowed);

/**
 * A log-line rate limiter: at most `burst` lines per `window_ms`, then silence until the window
 * ends; the next line allowed learns how many were suppressed. Thread-safe.
 */
typedef struct sd_ratelimit {
    pthread_mutex_t lock;     /**< guards the fields below */
    uint64_t window_start_ns; /**< CLOCK_MONOTONIC start of the current window */
    uint64_t window_ns;       /**< window length */
    unsigned burst;           /**< lines allowed per window */
    unsigned used;            /**< lines allowed in the current window */
    uint64_t suppressed;      /**< lines refused since the last allowed line */
} sd_ratelimit;

/** Prepares a limiter of burst lines per window_ms. */
void sd_ratelimit_init(sd_ratelimit *rl, unsigned burst, unsigned window_ms);

/** Frees the limiter's lock. */
void sd_ratelimit_destroy(sd_ratelimit *rl);

/**
 * True when one more line may be logged now; then *suppressed_out (may be NULL) is the number
 * of lines refused since the last one allowed (and the count restarts).
 */
bool sd_ratelimit_allow(sd_ratelimit *rl, uint64_t *suppressed_out);

#endif
