/** @file
 * Error codes and error messages shared by every layer of libderecho.
 *
 * Convention (docs/STYLE): functions return int, 0 on success or a negative DR_E* code;
 * outputs go through pointers. Where a caller needs to know *why* (a config line, a model
 * file offset), the function also fills a caller-owned dr_err with a readable message.
 */
#ifndef DERECHO_ERROR_H
#define DERECHO_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Project error codes. Always negative; 0 (DR_OK) means success. */
enum dr_error_code {
    DR_OK = 0,
    DR_EINVAL = -1,        /**< invalid argument or malformed input */
    DR_ENOMEM = -2,        /**< allocation failed */
    DR_EIO = -3,           /**< operating-system I/O error (errno kept in the message) */
    DR_ERANGE = -4,        /**< a value is outside its allowed range */
    DR_ENOTFOUND = -5,     /**< a named thing (key, tag, node, method) does not exist */
    DR_EPROTO = -6,        /**< a peer broke the wire protocol */
    DR_ETIMEDOUT = -7,     /**< a wait ended before its event */
    DR_ECLOSED = -8,       /**< the object or connection was shut down */
    DR_EEXIST = -9,        /**< the thing already exists (duplicate id, taken tag) */
    DR_EUNSUPPORTED = -10, /**< valid but not supported (operator, format version) */
    DR_ETOOBIG = -11,      /**< a size exceeds its configured limit */
    DR_EAGAIN = -12,       /**< try again later (window full, view changing) */
    DR_EREMOVED = -13,     /**< the peer was removed from the group */
    DR_ECORRUPT = -14,     /**< stored or received data fails its checks */
    DR_ESTATE = -15,       /**< the call is not valid in the current state */
    DR_EUNDELIVERED = -16, /**< accepted messages could not be delivered (leave, stop) */
    DR_EPERM = -17,        /**< not allowed: missing or wrong credential, or a role's limit */
};

/** Capacity of a dr_err message, including the terminating NUL. */
#define DR_ERR_MSG_MAX 512

/** A caller-owned error report: the code and a one-line human-readable message. */
typedef struct dr_err {
    int code;                 /**< last code set, DR_OK if none */
    char msg[DR_ERR_MSG_MAX]; /**< NUL-terminated message, "" if none */
} dr_err;

/**
 * Returns a static, constant description of a DR_E* code ("invalid argument").
 * Unknown codes give "unknown error". Thread-safe.
 */
const char *dr_strerror(int code);

/**
 * Records code and a printf-style message in *err (which may be NULL: then only the code
 * is returned). Long messages are truncated. Returns code, so callers can write
 * `return dr_err_set(err, DR_EINVAL, "bad %s", what);`.
 */
int dr_err_set(dr_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** Clears *err (code DR_OK, empty message). err may be NULL. */
void dr_err_clear(dr_err *err);

#ifdef __cplusplus
}
#endif
#endif
