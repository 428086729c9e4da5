/* Credentials and request checks of the function tier (contract: security.h). */
#include "security.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void free_secret(char **secret) {
    if (*secret) {
        volatile char *p = *secret;
        while (*p)
            *p++ = 0;
        free(*secret);
        *secret = NULL;
    }
}

void sd_credentials_free(sd_credentials *creds) {
    if (!creds)
        return;
    free(creds->tls_cert_pem);
    creds->tls_cert_pem = NULL;
    free(creds->tls_ca_pem);
    creds->tls_ca_pem = NULL;
    free_secret(&creds->tls_key_pem);
    free_secret(&creds->admin_token);
    free_secret(&creds->inference_token);
}

int sd_read_small_file(const char *path, const char *what, size_t max_bytes, char **out,
                       dr_err *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dr_err_set(err, DR_EIO, "%s %s: %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return dr_err_set(err, DR_EIO, "%s %s: not a regular file", what, path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return dr_err_set(err, DR_ETOOBIG, "%s %s: %lld bytes, over the limit of %zu", what, path,
                          (long long)st.st_size, max_bytes);
    }
    char *text = malloc((size_t)st.st_size + 1);
    if (!text) {
        close(fd);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t got = read(fd, text + len, (size_t)st.st_size - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    text[len] = '\0';
    if (len != (size_t)st.st_size) {
        free(text);
        return dr_err_set(err, DR_EIO, "%s %s: short read", what, path);
    }
    *out = text;
    return DR_OK;
}

int sd_read_token_file(const char *path, const char *what, char **out, dr_err *err) {
    char *text = NULL;
    int rc = sd_read_small_file(path, what, SD_MAX_TOKEN_CHARS + 2, &text, err);
    if (rc)
        return rc;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        text[--len] = '\0';
    bool visible = true;
    for (size_t i = 0; i < len; i++)
        visible &= text[i] > ' ' && text[i] < 127;
    if (!visible || len < SD_MIN_TOKEN_CHARS || len > SD_MAX_TOKEN_CHARS) {
        free_secret(&text);
        return dr_err_set(err, DR_EINVAL,
                          "%s %s: must be one line of %u to %u visible characters without spaces "
                          "(scripts/gen-cluster.sh writes one)",
                          what, path, SD_MIN_TOKEN_CHARS, SD_MAX_TOKEN_CHARS);
    }
    *out = text;
    return DR_OK;
}

bool sd_secret_equal(const char *a, size_t a_len, const char *b, size_t b_len) {
    /* Walk the longer length; bytes past a string's end compare as 0 against the other. */
    size_t n = a_len > b_len ? a_len : b_len;
    unsigned diff = (unsigned)(a_len ^ b_len) != 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < a_len ? (unsigned char)a[i] : 0;
        unsigned char y = i < b_len ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}

sd_auth_result sd_check_bearer(const char *value, size_t len, const char *needed,
                               const char *also) {
    if (!needed)
        return SD_AUTH_OK;
    static const char scheme[] = "Bearer ";
    const size_t scheme_len = sizeof scheme - 1;
    if (!value || len <= scheme_len || strncasecmp(value, scheme, scheme_len) != 0)
        return SD_AUTH_MISSING;
    const char *token = value + scheme_len;
    size_t token_len = len - scheme_len;
    while (token_len > 0 && *token == ' ')
        token++, token_len--;
    while (token_len > 0 && token[token_len - 1] == ' ')
        token_len--;
    bool ok = sd_secret_equal(token, token_len, needed, strlen(needed));
    if (also)
        ok |= sd_secret_equal(token, token_len, also, strlen(also));
    return ok ? SD_AUTH_OK : SD_AUTH_DENIED;
}

/* Copies the host part of "host[:port]" or "[v6]:port" into buf (lower case). */
static bool host_part(const char *text, size_t len, char *buf, size_t cap) {
    size_t end = len;
    if (len > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (!close)
            return false;
        end = (size_t)(close - text) + 1;
    } else {
        const char *colon = memchr(text, ':', len);
        if (colon)
            end = (size_t)(colon - text);
    }
    if (end == 0 || end >= cap)
        return false;
    for (size_t i = 0; i < end; i++)
        buf[i] = (char)tolower((unsigned char)text[i]);
    buf[end] = '\0';
    return true;
}

static bool is_loopback_name(const char *host) {
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    unsigned a, b, c, d;
    char extra;
    return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) == 4 && a == 127 && b < 256 &&
           c < 256 && d < 256;
}

static bool host_name_allowed(const char *text, size_t len, const char *const *allowed,
                              size_t n_allowed) {
    char host[256];
    if (!host_part(text, len, host, sizeof host))
        return false;
    if (is_loopback_name(host))
        return true;
    for (size_t i = 0; i < n_allowed; i++)
        if (allowed[i] && strcasecmp(host, allowed[i]) == 0)
            return true;
    return false;
}

bool sd_host_allowed(const char *host, const char *const *allowed, size_t n_allowed) {
    if (!host || !*host)
        return true;
    return host_name_allowed(host, strlen(host), allowed, n_allowed);
}

bool sd_origin_allowed(const char *origin, const char *const *allowed, size_t n_allowed) {
    if (!origin)
        return true;
    const char *rest = NULL;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    if (!rest)
        return false; /* "null" (a sandboxed page or a file://) and other schemes */
    size_t len = strcspn(rest, "/");
    return host_name_allowed(rest, len, allowed, n_allowed);
}

static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sd_ratelimit_init(sd_ratelimit *rl, unsigned burst, unsigned window_ms) {
    memset(rl, 0, sizeof *rl);
    pthread_mutex_init(&rl->lock, NULL);
    rl->burst = burst;
    rl->window_ns = (uint64_t)window_ms * 1000000u;
    rl->window_start_ns = monotonic_ns();
}

void sd_ratelimit_destroy(sd_ratelimit *rl) {
    pthread_mutex_destroy(&rl->lock);
}

bool sd_ratelimit_allow(sd_ratelimit *rl, uint64_t *suppressed_out) {
    uint64_t now = monotonic_ns();
    pthread_mutex_lock(&rl->lock);
    if (now - rl->window_start_ns >= rl->window_ns) {
        rl->window_start_ns = now;
        rl->used = 0;
    }
    bool allowed = rl->used < rl->burst;
    if (allowed) {
        rl->used++;
        if (suppressed_out)
            *suppressed_out = rl->suppressed;
        rl->suppressed = 0;
    } else {
        rl->suppressed++;
    }
    pthread_mutex_unlock(&rl->lock);
    return allowed;
}
