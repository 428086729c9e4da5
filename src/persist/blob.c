/*
 * Whole-object durable files by write-temp, fdatasync, rename, fsync-directory (format and rules
 * in blob.h).
 */
#include "persist/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOB_MAGIC  0x42505244u /* "DRPB" */
#define BLOB_FORMAT 1u
#define BLOB_HDR    24u

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc_of(const uint8_t *bytes, size_t len) {
    return dr_plog_crc32(0, bytes, len);
}

static int name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 200 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Writes all of buf at off through io; 0 or -1 with errno. */
static int write_all(const dr_plog_io *io, int fd, const uint8_t *buf, size_t len, off_t off) {
    while (len > 0) {
        ssize_t n = io->pwrite(io->ctx, fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static void encode_header(uint8_t hdr[BLOB_HDR], const void *bytes, size_t len) {
    put_u32(hdr, BLOB_MAGIC);
    put_u32(hdr + 4, BLOB_FORMAT);
    put_u32(hdr + 8, (uint32_t)len);
    put_u32(hdr + 12, (uint32_t)((uint64_t)len >> 32));
    put_u32(hdr + 16, crc_of(bytes, len));
    put_u32(hdr + 20, crc_of(hdr, 20));
}

/* Writes and syncs the temporary file; 0 or -1 with errno. */
static int write_tmp(const dr_plog_io *io, const char *tmp, const void *bytes, size_t len) {
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    uint8_t hdr[BLOB_HDR];
    encode_header(hdr, bytes, len);
    int rc = write_all(io, fd, hdr, sizeof hdr, 0) == 0 &&
                     write_all(io, fd, bytes, len, BLOB_HDR) == 0 && io->fdatasync(io->ctx, fd) == 0
                 ? 0
                 : -1;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int dr_blob_save(const char *dir, const char *name, const void *bytes, size_t len,
                 const dr_plog_io *io, dr_err *err) {
    if (!dir || !name || !name_ok(name) || (len > 0 && !bytes) || strlen(dir) > 4000)
        return dr_err_set(err, DR_EINVAL, "blob: bad directory, name or buffer");
    if (!io)
        io = dr_plog_real_io();
    char path[4300], tmp[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    if (write_tmp(io, tmp, bytes, len) != 0) {
        int saved = errno;
        unlink(tmp);
        return dr_err_set(err, DR_EIO, "%s: write: %s", tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0)
        return dr_err_set(err, DR_EIO, "%s: rename: %s", path, strerror(errno));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = dfd >= 0 ? io->fsync_dir(io->ctx, dfd) : -1;
    int saved = errno;
    if (dfd >= 0)
        close(dfd);
    if (rc != 0)
        return dr_err_set(err, DR_EIO, "%s: directory fsync: %s", dir, strerror(saved));
    return 0;
}

/* Reads exactly len bytes; 0 or -1 (errno, or EIO at end of file). */
static int read_exact(int fd, uint8_t *buf, size_t len) {
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Checks the header of a file of file_size bytes; sets *len. */
static int check_header(const char *path, const uint8_t hdr[BLOB_HDR], uint64_t file_size,
                        size_t max_len, size_t *len, dr_err *err) {
    if (get_u32(hdr) != BLOB_MAGIC || get_u32(hdr + 20) != crc_of(hdr, 20) ||
        get_u32(hdr + 4) != BLOB_FORMAT)
        return dr_err_set(err, DR_ECORRUPT, "%s: bad header", path);
    uint64_t stored = (uint64_t)get_u32(hdr + 8) | (uint64_t)get_u32(hdr + 12) << 32;
    if (stored > max_len)
        return dr_err_set(err, DR_ETOOBIG, "%s: %llu bytes, over the limit %zu", path,
                          (unsigned long long)stored, max_len);
    if (stored != file_size - BLOB_HDR)
        return dr_err_set(err, DR_ECORRUPT, "%s: holds %llu bytes, header says %llu", path,
                          (unsigned long long)(file_size - BLOB_HDR), (unsigned long long)stored);
    *len = (size_t)stored;
    return 0;
}

/* Reads the object of an open file. */
static int load_fd(int fd, const char *path, size_t max_len, uint8_t **bytes, size_t *len,
                   dr_err *err) {
    struct stat st;
    uint8_t hdr[BLOB_HDR];
    if (fstat(fd, &st) != 0)
        return dr_err_set(err, DR_EIO, "%s: fstat: %s", path, strerror(errno));
    if ((uint64_t)st.st_size < BLOB_HDR)
        return dr_err_set(err, DR_ECORRUPT, "%s: shorter than its header", path);
    if (read_exact(fd, hdr, sizeof hdr) != 0)
        return dr_err_set(err, DR_EIO, "%s: read: %s", path, strerror(errno));
    int rc = check_header(path, hdr, (uint64_t)st.st_size, max_len, len, err);
    if (rc != 0)
        return rc;
    uint8_t *buf = *len ? malloc(*len) : NULL;
    if (*len && !buf)
        return dr_err_set(err, DR_ENOMEM, "%s: out of memory", path);
    if (*len && read_exact(fd, buf, *len) != 0)
        rc = dr_err_set(err, DR_EIO, "%s: read: %s", path, strerror(errno));
    else if (crc_of(buf, *len) != get_u32(hdr + 16))
        rc = dr_err_set(err, DR_ECORRUPT, "%s: payload checksum mismatch", path);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *bytes = buf;
    return 0;
}

int dr_blob_load(const char *dir, const char *name, size_t max_len, uint8_t **bytes, size_t *len,
                 dr_err *err) {
    if (!dir || !name || !name_ok(name) || !bytes || !len || strlen(dir) > 4000)
        return dr_err_set(err, DR_EINVAL, "blob: bad directory or name");
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? dr_err_set(err, DR_ENOTFOUND, "%s: no such object", path)
                               : dr_err_set(err, DR_EIO, "%s: open: %s", path, strerror(errno));
    *bytes = NULL;
    *len = 0;
    int rc = load_fd(fd, path, max_len, bytes, len, err);
    close(fd);
    return rc;
}
