/* Error code strings and the dr_err message helper (include/derecho/error.h). */
#include "derecho/error.h"

#include <stdarg.h>
#include <stdio.h>

/* One table from code to string, indexed by -code. */
static const char *const error_strings[] = {
    [0] = "success",
    [-DR_EINVAL] = "invalid argument",
    [-DR_ENOMEM] = "out of memory",
    [-DR_EIO] = "I/O error",
    [-DR_ERANGE] = "value out of range",
    [-DR_ENOTFOUND] = "not found",
    [-DR_EPROTO] = "protocol error",
    [-DR_ETIMEDOUT] = "timed out",
    [-DR_ECLOSED] = "closed",
    [-DR_EEXIST] = "already exists",
    [-DR_EUNSUPPORTED] = "not supported",
    [-DR_ETOOBIG] = "too big",
    [-DR_EAGAIN] = "try again",
    [-DR_EREMOVED] = "removed from group",
    [-DR_ECORRUPT] = "corrupt data",
    [-DR_ESTATE] = "invalid state",
    [-DR_EUNDELIVERED] = "accepted messages not delivered",
    [-DR_EPERM] = "permission denied",
};

const char *dr_strerror(int code) {
    size_t index = code <= 0 ? (size_t)(-(long)code) : sizeof error_strings / sizeof *error_strings;
    if (index >= sizeof error_strings / sizeof *error_strings || !error_strings[index])
        return "unknown error";
    return error_strings[index];
}

int dr_err_set(dr_err *err, int code, const char *fmt, ...) {
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void dr_err_clear(dr_err *err) {
    if (!err)
        return;
    err->code = DR_OK;
    err->msg[0] = '\0';
}
