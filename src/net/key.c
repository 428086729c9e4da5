/*
 * Authentication key files of the group port (docs/security.md): 64 hexadecimal digits (a
 * 256-bit secret, as `openssl rand -hex 32` prints it), optional surrounding whitespace, nothing
 * else. scripts/gen-cluster.sh writes one file per kind (secrets/cluster.key, admin.key,
 * client.key) with mode 0600.
 */
#include "net/net.h"

#include "derecho/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A key file is tiny; anything larger is not one. */
#define KEY_FILE_MAX_BYTES 4096

static int hex_value(int ch) {
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Parses text[0..len) as exactly 64 hex digits within whitespace. */
static int parse_key(const char *text, size_t len, uint8_t key[DR_NET_KEY_BYTES]) {
    size_t start = 0, end = len;
    while (start < end && isspace((unsigned char)text[start]))
        start++;
    while (end > start && isspace((unsigned char)text[end - 1]))
        end--;
    if (end - start != 2 * DR_NET_KEY_BYTES)
        return DR_EINVAL;
    for (size_t i = 0; i < DR_NET_KEY_BYTES; i++) {
        int high = hex_value((unsigned char)text[start + 2 * i]);
        int low = hex_value((unsigned char)text[start + 2 * i + 1]);
        if (high < 0 || low < 0)
            return DR_EINVAL;
        key[i] = (uint8_t)(high << 4 | low);
    }
    return DR_OK;
}

int dr_net_load_key(const char *path, const char *relative_to, uint8_t key[DR_NET_KEY_BYTES],
                    dr_err *err) {
    if (!path || !*path)
        return dr_err_set(err, DR_EINVAL, "key file: empty path");
    char full[PATH_MAX];
    const char *slash = relative_to ? strrchr(relative_to, '/') : NULL;
    if (path[0] != '/' && slash) {
        int n =
            snprintf(full, sizeof full, "%.*s/%s", (int)(slash - relative_to), relative_to, path);
        if (n < 0 || (size_t)n >= sizeof full)
            return dr_err_set(err, DR_EINVAL, "key file %s: path too long", path);
        path = full;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dr_err_set(err, DR_EIO, "key file %s: %s", path, strerror(errno));
    struct stat st;
    char text[KEY_FILE_MAX_BYTES];
    ssize_t n = -1;
    int rc = DR_OK;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode))
        rc = dr_err_set(err, DR_EINVAL, "key file %s: not a regular file", path);
    else if (st.st_size > KEY_FILE_MAX_BYTES)
        rc = dr_err_set(err, DR_EINVAL, "key file %s: %lld bytes, not a key (64 hex digits)", path,
                        (long long)st.st_size);
    else if ((n = read(fd, text, sizeof text)) < 0)
        rc = dr_err_set(err, DR_EIO, "key file %s: %s", path, strerror(errno));
    close(fd);
    if (rc)
        return rc;
    if (parse_key(text, (size_t)n, key))
        return dr_err_set(err, DR_EINVAL, "key file %s: expected 64 hexadecimal digits", path);
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        DR_WARN(DR_LOGM_NET, "key file %s is readable by others (chmod 600 it)", path);
    return DR_OK;
}
