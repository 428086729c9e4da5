/*
 * The durable, versioned log of one shard: one append-only file (API and rules in plog.h).
 *
 * File format (all integers little-endian), `dir/name.plog`:
 *
 *   offset 0     header slot A  (64 bytes, rest of the 4 KiB page zero)
 *   offset 4096  header slot B  (64 bytes, rest of the page zero)
 *   offset 8192  records, back to back, the first live one at the header's start_offset
 *
 *   header slot: magic u32 "DRPH" (0x48505244) | format u32 = 1 | generation u64 |
 *                start_offset u64 | trim_version i64 | 28 zero bytes | crc32 u32 of bytes 0..59
 *   record:      magic u32 "DRPL" (0x4c505244) | payload_len u32 | version i64 | hlc_us u64 |
 *                batch_offset u64 | flags u32 = 0 | crc32 u32 of header bytes 0..35 then the
 *                payload | payload (payload_len bytes)
 *
 *   batch_offset: the file offset of the first record written by the same flush (group commit).
 *
 * The valid header slot with the highest generation wins. A trim writes generation + 1 into the
 * slot that does not hold the current header and fdatasyncs it: a crash during that write leaves
 * the old slot intact (the torn one fails its CRC), so the trim is all or nothing; then the
 * dropped prefix [8192, start_offset) is returned to the file system with a punched hole where it
 * can (the logical file size never shrinks from the front; offsets stay valid). trim_version is
 * the trim's bound: versions below it are gone, and new appends must stay above it.
 *
 * Appends go to a memory buffer; a flush writes the buffer at the end of the file with pwrite and
 * one fdatasync (group commit). Versions strictly increase and timestamps never decrease along the
 * file, so the in-memory index (one entry per record: version, time, offset, length) is sorted by
 * both and every lookup is a binary search.
 *
 * Opening scans from start_offset. A record that is short (file ends inside it), has a bad magic
 * or flags, or a bad CRC is "bad". Flushes write one after another, each finished by an
 * fdatasync before the next begins, so only the last flush can be partly on disk after a crash,
 * and it can be torn anywhere (the disk may persist its pages in any order, leaving holes with
 * valid records after them). Hence: if no valid record of a LATER flush (batch_offset beyond the
 * bad record) starts anywhere after the bad record, the bad record lies in the last flush, which
 * never returned and reported nothing durable: the file is cut there, synced, and the cut is
 * reported. If one does, a flush that completed was damaged afterwards (media error, someone
 * wrote the file): opening fails with DR_ECORRUPT (or, with cut_corrupt, cuts there too). Checksums
 * are computed while reading in 64 KiB chunks, so a corrupt length never causes an allocation; each
 * valid record's length, the record count and the total payload are checked against
 * max_record_bytes, max_log_entry and max_data_size (DR_ETOOBIG) as the index grows, and nothing
 * read from the file is allocated before that. CRC: zlib's crc32 (CRC-32, IEEE).
 *
 * Locks: `mu` guards every field below; `flush_mu` serialises flush, trim and truncate. A flush
 * moves the pending buffer to `inflight` under mu, writes and syncs it without mu (appends go on
 * into a fresh pending buffer), then publishes the new durable version under mu.
 */
#include "persist/plog.h"

#include "derecho/log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HEADER_MAGIC   0x48505244u /* "DRPH" */
#define RECORD_MAGIC   0x4c505244u /* "DRPL" */
#define FORMAT_VERSION 1u
#define SLOT_BYTES     64u
#define SLOT_B_OFFSET  4096u
#define DATA_START     8192u
#define REC_HDR_BYTES  40u
#define REC_CRC_AT     36u /* the CRC's offset in a record header */
#define CHUNK_BYTES    (64u * 1024)
#define NAME_MAX_BYTES 200u

/* One record in the index. */
typedef struct plog_entry {
    int64_t version; /* record's version */
    uint64_t hlc_us; /* record's timestamp */
    uint64_t offset; /* file offset of the record header (logical: may still be buffered) */
    uint32_t len;    /* payload bytes */
} plog_entry;

/* A byte buffer holding encoded records destined for file offsets [base, base + len). */
typedef struct plog_buf {
    uint8_t *bytes; /* encoded records */
    size_t len;     /* bytes used */
    size_t cap;     /* bytes allocated */
    uint64_t base;  /* file offset of bytes[0] */
} plog_buf;

struct dr_plog {
    pthread_mutex_t mu;       /* guards everything below */
    pthread_mutex_t flush_mu; /* one flush / trim / truncate at a time */
    int fd;                   /* the log file, O_RDWR */
    char *path;               /* dir/name.plog */
    dr_plog_limits limits;    /* from the options */
    dr_plog_io io;            /* system calls (real or a test's) */
    uint64_t header_gen;      /* generation of the current header */
    int header_slot;          /* 0 (A) or 1 (B): where the current header lives */
    uint64_t start_offset;    /* first live record */
    int64_t trim_version;     /* versions below were trimmed (DR_PLOG_NO_VERSION: none) */
    plog_entry *index;        /* live records, oldest first */
    size_t count;             /* entries in index */
    size_t cap;               /* entries allocated */
    uint64_t data_bytes;      /* total payload of the live records */
    int64_t last_version;     /* newest version ever appended (append order check) */
    uint64_t last_hlc_us;     /* newest timestamp ever appended */
    uint64_t written_end;     /* file bytes written and synced: end of the durable records */
    plog_buf pending;         /* appended, not yet being flushed; base = end of inflight */
    plog_buf inflight;        /* being written by a flush (len 0 when none) */
    int64_t durable_version;  /* highest version synced */
    int failed;               /* 0, or the sticky DR_EIO after a failed write/sync */
    dr_err err;               /* last failure's message */
};

/* ---- little-endian encoding ---------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint32_t dr_plog_crc32(uint32_t crc, const uint8_t *bytes, size_t len) {
    while (len > 0) {
        uInt piece = len > UINT_MAX ? UINT_MAX : (uInt)len;
        crc = (uint32_t)crc32(crc, bytes, piece);
        bytes += piece;
        len -= piece;
    }
    return crc;
}

/* ---- real system calls --------------------------------------------------------------------- */

static ssize_t real_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t offset) {
    (void)ctx;
    return pwrite(fd, buf, len, offset);
}

static int real_fdatasync(void *ctx, int fd) {
    (void)ctx;
    return fdatasync(fd);
}

static int real_fsync_dir(void *ctx, int fd) {
    (void)ctx;
    return fsync(fd);
}

static const dr_plog_io real_io = {real_pwrite, real_fdatasync, real_fsync_dir, NULL};

const dr_plog_io *dr_plog_real_io(void) {
    return &real_io;
}

void dr_plog_options_default(dr_plog_options *opts) {
    memset(opts, 0, sizeof *opts);
    opts->limits.max_log_entry = 1048576;
    opts->limits.max_data_size = 549755813888ull;
    opts->limits.max_record_bytes = DR_PLOG_DEFAULT_MAX_RECORD_BYTES;
}

/* ---- small I/O helpers --------------------------------------------------------------------- */

/* Writes all of buf at offset through the io hook; 0 or -1 with errno. */
static int write_all(const dr_plog_io *io, int fd, const uint8_t *buf, size_t len,
                     uint64_t offset) {
    while (len > 0) {
        ssize_t n = io->pwrite(io->ctx, fd, buf, len, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* Reads exactly len bytes at offset; 0, or -1 with errno (EIO for end of file). */
static int read_all(int fd, uint8_t *buf, size_t len, uint64_t offset) {
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* fsyncs the directory dir through the io hook; 0 or -1 with errno. */
static int sync_dir(const dr_plog_io *io, const char *dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = io->fsync_dir(io->ctx, dfd);
    int saved = errno;
    close(dfd);
    errno = saved;
    return rc;
}

/* Marks the log failed (sticky) and records why; returns DR_EIO. Called with mu held. */
static int fail_locked(dr_plog *log, const char *what, int errnum) {
    log->failed = DR_EIO;
    DR_LOG(DR_LOGM_PERSISTENCE, DR_LOG_ERROR, "%s: %s failed: %s; log stopped", log->path, what,
           strerror(errnum));
    return dr_err_set(&log->err, DR_EIO, "%s: %s failed: %s (log stopped: restart from the file)",
                      log->path, what, strerror(errnum));
}

/* ---- header -------------------------------------------------------------------------------- */

static void encode_header(uint8_t slot[SLOT_BYTES], uint64_t gen, uint64_t start, int64_t trim) {
    memset(slot, 0, SLOT_BYTES);
    put_u32(slot, HEADER_MAGIC);
    put_u32(slot + 4, FORMAT_VERSION);
    put_u64(slot + 8, gen);
    put_u64(slot + 16, start);
    put_u64(slot + 24, (uint64_t)trim);
    put_u32(slot + 60, dr_plog_crc32(0, slot, 60));
}

/* Decodes a slot; 1 if valid, 0 if not (torn, never written, other format). */
static int decode_header(const uint8_t slot[SLOT_BYTES], uint64_t *gen, uint64_t *start,
                         int64_t *trim) {
    if (get_u32(slot) != HEADER_MAGIC || get_u32(slot + 60) != dr_plog_crc32(0, slot, 60))
        return 0;
    if (get_u32(slot + 4) != FORMAT_VERSION)
        return 0;
    *gen = get_u64(slot + 8);
    *start = get_u64(slot + 16);
    *trim = (int64_t)get_u64(slot + 24);
    return 1;
}

/* Writes a new header (generation + 1) into the other slot and syncs it. Called with mu held. */
static int write_header_locked(dr_plog *log, uint64_t start, int64_t trim) {
    uint8_t slot[SLOT_BYTES];
    int other = 1 - log->header_slot;
    encode_header(slot, log->header_gen + 1, start, trim);
    if (write_all(&log->io, log->fd, slot, sizeof slot, other ? SLOT_B_OFFSET : 0) != 0)
        return fail_locked(log, "header write", errno);
    if (log->io.fdatasync(log->io.ctx, log->fd) != 0)
        return fail_locked(log, "fdatasync (header)", errno);
    log->header_gen++;
    log->header_slot = other;
    log->start_offset = start;
    log->trim_version = trim;
    return 0;
}

/* ---- index --------------------------------------------------------------------------------- */

/* Appends an entry to the index, growing it; DR_ENOMEM. */
static int index_push(dr_plog *log, int64_t version, uint64_t hlc, uint64_t offset, uint32_t len) {
    if (log->count == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 256;
        plog_entry *grown = realloc(log->index, cap * sizeof *grown);
        if (!grown)
            return DR_ENOMEM;
        log->index = grown;
        log->cap = cap;
    }
    log->index[log->count++] = (plog_entry){version, hlc, offset, len};
    log->data_bytes += len;
    return 0;
}

/* The number of entries with version <= v (binary search; the index is sorted by version). */
static size_t count_at_or_below(const dr_plog *log, int64_t v) {
    size_t lo = 0, hi = log->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->index[mid].version <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The number of entries with hlc_us <= t (timestamps never decrease along the index). */
static size_t count_at_or_before(const dr_plog *log, uint64_t t) {
    size_t lo = 0, hi = log->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->index[mid].hlc_us <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Removes the first k entries. */
static void index_drop_front(dr_plog *log, size_t k) {
    for (size_t i = 0; i < k; i++)
        log->data_bytes -= log->index[i].len;
    memmove(log->index, log->index + k, (log->count - k) * sizeof *log->index);
    log->count -= k;
}

/* Removes the entries from position k on. */
static void index_drop_back(dr_plog *log, size_t k) {
    for (size_t i = k; i < log->count; i++)
        log->data_bytes -= log->index[i].len;
    log->count = k;
}

/* ---- scanning at open ---------------------------------------------------------------------- */

/* What check_record found at an offset. */
enum { REC_OK = 0, REC_BAD = 1 };

/* A record header as decoded. */
typedef struct rec_header {
    int64_t version;       /* record's version */
    uint64_t hlc_us;       /* record's timestamp */
    uint64_t batch_offset; /* offset of the first record of the flush that wrote it */
    uint32_t len;          /* payload bytes */
} rec_header;

/* State of one scan: the file, its size, the limits, a chunk buffer for streaming the CRC. */
typedef struct scan_ctx {
    int fd;                  /* the file */
    uint64_t size;           /* its size when the scan began */
    const dr_plog_limits *l; /* limits */
    uint8_t *chunk;          /* CHUNK_BYTES scratch */
} scan_ctx;

/*
 * Checks the record at off: REC_OK with *h filled, REC_BAD (short, bad magic/flags, bad CRC), or
 * DR_EIO (a read failed; errno kept). Never allocates: the payload's CRC is computed chunk by
 * chunk, so a corrupt length costs at most a read to the end of the file. The limits are checked
 * by the caller on valid records only (a record over max_record_bytes is DR_ETOOBIG, not damage).
 */
static int check_record(scan_ctx *sc, uint64_t off, rec_header *h) {
    uint8_t hdr[REC_HDR_BYTES];
    if (sc->size - off < REC_HDR_BYTES)
        return REC_BAD;
    if (read_all(sc->fd, hdr, sizeof hdr, off) != 0)
        return DR_EIO;
    h->len = get_u32(hdr + 4);
    h->version = (int64_t)get_u64(hdr + 8);
    h->hlc_us = get_u64(hdr + 16);
    h->batch_offset = get_u64(hdr + 24);
    if (get_u32(hdr) != RECORD_MAGIC || get_u32(hdr + 32) != 0)
        return REC_BAD;
    if (sc->size - off - REC_HDR_BYTES < h->len)
        return REC_BAD;
    uint32_t crc = dr_plog_crc32(0, hdr, REC_CRC_AT);
    for (uint64_t done = 0; done < h->len;) {
        size_t piece = h->len - done < CHUNK_BYTES ? (size_t)(h->len - done) : CHUNK_BYTES;
        if (read_all(sc->fd, sc->chunk, piece, off + REC_HDR_BYTES + done) != 0)
            return DR_EIO;
        crc = dr_plog_crc32(crc, sc->chunk, piece);
        done += piece;
    }
    return crc == get_u32(hdr + REC_CRC_AT) ? REC_OK : REC_BAD;
}

/*
 * Looks for a valid record starting anywhere in (from, size): *found = its offset (and *h its
 * header) or 0 if none. Reads windows of the file and checks each occurrence of the record
 * magic. 0, DR_ENOMEM or DR_EIO.
 */
static int find_valid_after(scan_ctx *sc, uint64_t from, uint64_t *found, rec_header *h) {
    static const uint8_t magic[4] = {0x44, 0x52, 0x50, 0x4c}; /* RECORD_MAGIC, little-endian */
    uint8_t *window = malloc(CHUNK_BYTES);
    if (!window)
        return DR_ENOMEM;
    int rc = 0;
    *found = 0;
    for (uint64_t pos = from + 1; pos + 4 <= sc->size && !*found && rc == 0;) {
        size_t n = sc->size - pos < CHUNK_BYTES ? (size_t)(sc->size - pos) : CHUNK_BYTES;
        if (read_all(sc->fd, window, n, pos) != 0) {
            rc = DR_EIO;
            break;
        }
        for (size_t i = 0; i + 4 <= n && !*found; i++) {
            if (memcmp(window + i, magic, 4) != 0)
                continue;
            int r = check_record(sc, pos + i, h);
            if (r < 0)
                rc = r;
            else if (r == REC_OK)
                *found = pos + i;
        }
        pos += n > 3 ? n - 3 : n; /* overlap: a magic split across two windows */
    }
    free(window);
    return rc;
}

/* Adds a valid record to the index after checking order and limits. Called at open. */
static int scan_accept(dr_plog *log, const rec_header *h, uint64_t off, dr_err *err) {
    if (log->count > 0) {
        const plog_entry *prev = &log->index[log->count - 1];
        if (h->version <= prev->version || h->hlc_us < prev->hlc_us)
            return dr_err_set(err, DR_ECORRUPT,
                              "%s: record at offset %llu (version %lld) out of order after "
                              "version %lld",
                              log->path, (unsigned long long)off, (long long)h->version,
                              (long long)prev->version);
    }
    if (h->len > log->limits.max_record_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "%s: record at offset %llu holds %u bytes, over max_record_bytes=%u",
                          log->path, (unsigned long long)off, h->len, log->limits.max_record_bytes);
    if (h->version < 0 || h->batch_offset > off)
        return dr_err_set(err, DR_ECORRUPT, "%s: bad version or batch offset at offset %llu",
                          log->path, (unsigned long long)off);
    if (log->count >= log->limits.max_log_entry ||
        h->len > log->limits.max_data_size - log->data_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "%s: holds more than max_log_entry=%llu records or max_data_size=%llu "
                          "bytes (at offset %llu): raise the limits or trim",
                          log->path, (unsigned long long)log->limits.max_log_entry,
                          (unsigned long long)log->limits.max_data_size, (unsigned long long)off);
    if (index_push(log, h->version, h->hlc_us, off, h->len) != 0)
        return dr_err_set(err, DR_ENOMEM, "%s: out of memory for the index", log->path);
    return 0;
}

/*
 * After a bad record at off: *later_batch = the offset of the first valid record after it that
 * was written by a later flush than the one that wrote off (its batch began after off), or 0.
 * Valid records of the same flush after a hole are that flush's own torn writes.
 */
static int find_later_batch(scan_ctx *sc, uint64_t off, uint64_t *later_batch) {
    *later_batch = 0;
    for (uint64_t from = off;;) {
        uint64_t found = 0;
        rec_header h;
        int rc = find_valid_after(sc, from, &found, &h);
        if (rc != 0 || found == 0)
            return rc;
        if (h.batch_offset > off) {
            *later_batch = found;
            return 0;
        }
        from = found + REC_HDR_BYTES + h.len - 1;
    }
}

/* A bad record at off: cut a torn tail, or refuse mid-file damage. Sets *end to the new end. */
static int scan_bad(dr_plog *log, scan_ctx *sc, uint64_t off, bool cut_corrupt, uint64_t *end,
                    dr_err *err) {
    uint64_t valid_after = 0;
    int rc = find_later_batch(sc, off, &valid_after);
    if (rc != 0)
        return dr_err_set(err, rc, "%s: reading after offset %llu: %s", log->path,
                          (unsigned long long)off, strerror(errno));
    if (valid_after && !cut_corrupt)
        return dr_err_set(err, DR_ECORRUPT,
                          "%s: corrupt record at offset %llu (after version %lld) with valid "
                          "records of later flushes after it (offset %llu): refusing to drop them",
                          log->path, (unsigned long long)off,
                          log->count ? (long long)log->index[log->count - 1].version : -1LL,
                          (unsigned long long)valid_after);
    if (ftruncate(sc->fd, (off_t)off) != 0 || log->io.fdatasync(log->io.ctx, sc->fd) != 0)
        return dr_err_set(err, DR_EIO, "%s: cutting the tail at %llu: %s", log->path,
                          (unsigned long long)off, strerror(errno));
    DR_LOG(DR_LOGM_PERSISTENCE, DR_LOG_WARN, "%s: cut %llu bytes of %s tail at offset %llu",
           log->path, (unsigned long long)(sc->size - off), valid_after ? "corrupt" : "torn",
           (unsigned long long)off);
    *end = off;
    return 0;
}

/* Scans the records from start_offset, fills the index, cuts a torn tail. */
static int scan_records(dr_plog *log, uint64_t size, bool cut_corrupt, dr_plog_open_info *info,
                        dr_err *err) {
    scan_ctx sc = {log->fd, size, &log->limits, malloc(CHUNK_BYTES)};
    if (!sc.chunk)
        return dr_err_set(err, DR_ENOMEM, "%s: out of memory", log->path);
    uint64_t off = log->start_offset;
    int rc = 0;
    while (off < size && rc == 0) {
        rec_header h;
        int r = check_record(&sc, off, &h);
        if (r < 0) {
            rc = dr_err_set(err, r, "%s: read at offset %llu: %s", log->path,
                            (unsigned long long)off, strerror(errno));
        } else if (r == REC_OK) {
            rc = scan_accept(log, &h, off, err);
            off += REC_HDR_BYTES + h.len;
        } else {
            uint64_t end = off;
            rc = scan_bad(log, &sc, off, cut_corrupt, &end, err);
            info->bytes_cut = size - end;
            size = end;
        }
    }
    free(sc.chunk);
    log->written_end = size;
    return rc;
}

/* ---- open / close -------------------------------------------------------------------------- */

static int name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_BYTES || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Creates dir if missing and syncs its parent. */
static int ensure_dir(const dr_plog_io *io, const char *dir, dr_err *err) {
    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST)
            return 0;
        return dr_err_set(err, DR_EIO, "%s: mkdir: %s", dir, strerror(errno));
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else
        slash[slash == parent ? 1 : 0] = '\0';
    if (sync_dir(io, parent) != 0)
        return dr_err_set(err, DR_EIO, "%s: fsync: %s", parent, strerror(errno));
    return 0;
}

/* Writes a fresh log (header slot A, empty slot B) as path.tmp, syncs, renames, syncs dir. */
static int create_file(const dr_plog_io *io, const char *dir, const char *path, dr_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        return dr_err_set(err, DR_EIO, "%s: create: %s", tmp, strerror(errno));
    uint8_t slot[SLOT_BYTES];
    encode_header(slot, 1, DATA_START, DR_PLOG_NO_VERSION);
    int ok = write_all(io, fd, slot, sizeof slot, 0) == 0 && ftruncate(fd, DATA_START) == 0 &&
             io->fdatasync(io->ctx, fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        unlink(tmp);
        return dr_err_set(err, DR_EIO, "%s: writing the header: %s", tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0 || sync_dir(io, dir) != 0)
        return dr_err_set(err, DR_EIO, "%s: rename or directory fsync: %s", path, strerror(errno));
    return 0;
}

/* Reads both header slots and adopts the valid one with the highest generation. */
static int load_header(dr_plog *log, uint64_t size, dr_err *err) {
    uint8_t a[SLOT_BYTES], b[SLOT_BYTES];
    if (read_all(log->fd, a, SLOT_BYTES, 0) != 0 || read_all(log->fd, b, SLOT_BYTES, SLOT_B_OFFSET))
        return dr_err_set(err, DR_EIO, "%s: reading the header: %s", log->path, strerror(errno));
    uint64_t gen_a = 0, gen_b = 0, start_a = 0, start_b = 0;
    int64_t trim_a = 0, trim_b = 0;
    int ok_a = decode_header(a, &gen_a, &start_a, &trim_a);
    int ok_b = decode_header(b, &gen_b, &start_b, &trim_b);
    if (!ok_a && !ok_b)
        return dr_err_set(err, DR_ECORRUPT, "%s: no valid header (not a log, or damaged)",
                          log->path);
    int use_b = ok_b && (!ok_a || gen_b > gen_a);
    log->header_slot = use_b;
    log->header_gen = use_b ? gen_b : gen_a;
    log->start_offset = use_b ? start_b : start_a;
    log->trim_version = use_b ? trim_b : trim_a;
    if (log->start_offset < DATA_START || log->start_offset > size)
        return dr_err_set(err, DR_ECORRUPT, "%s: header start offset %llu outside the file (%llu)",
                          log->path, (unsigned long long)log->start_offset,
                          (unsigned long long)size);
    return 0;
}

/* Allocates a log with its path and options; the file is not touched. */
static int log_new(const char *dir, const char *name, const dr_plog_options *opts, dr_plog **out,
                   dr_err *err) {
    dr_plog *log = calloc(1, sizeof *log);
    size_t n = strlen(dir) + strlen(name) + 8;
    if (!log || !(log->path = malloc(n))) {
        free(log);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    snprintf(log->path, n, "%s/%s.plog", dir, name);
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->flush_mu, NULL);
    log->fd = -1;
    log->limits = opts->limits;
    log->io = opts->io ? *opts->io : real_io;
    log->durable_version = DR_PLOG_NO_VERSION;
    log->last_version = DR_PLOG_NO_VERSION;
    *out = log;
    return 0;
}

/* After a scan: where appends go, what is durable, which versions may come next. */
static void adopt_scan(dr_plog *log) {
    log->pending.base = log->written_end;
    if (log->count > 0) {
        log->durable_version = log->index[log->count - 1].version;
        log->last_version = log->durable_version;
        log->last_hlc_us = log->index[log->count - 1].hlc_us;
    }
    if (log->trim_version > 0 && log->trim_version - 1 > log->last_version) {
        /* trimmed empty: the bound is one past the newest durable version that was trimmed */
        log->last_version = log->trim_version - 1;
        log->durable_version = log->trim_version - 1;
    }
}

static void fill_info(dr_plog *log, dr_plog_open_info *info) {
    info->records = log->count;
    info->first_version = log->count ? log->index[0].version : DR_PLOG_NO_VERSION;
    info->latest_version = log->count ? log->index[log->count - 1].version : DR_PLOG_NO_VERSION;
}

/* Opens (creating if needed) the file and scans it. */
static int open_file(dr_plog *log, const char *dir, const dr_plog_options *opts,
                     dr_plog_open_info *info, dr_err *err) {
    int rc = ensure_dir(&log->io, dir, err);
    if (rc == 0 && opts->reset && unlink(log->path) == 0 && sync_dir(&log->io, dir) != 0)
        rc = dr_err_set(err, DR_EIO, "%s: fsync: %s", dir, strerror(errno));
    if (rc != 0)
        return rc;
    log->fd = open(log->path, O_RDWR | O_CLOEXEC);
    if (log->fd < 0 && errno == ENOENT) {
        if ((rc = create_file(&log->io, dir, log->path, err)) != 0)
            return rc;
        info->created = true;
        log->fd = open(log->path, O_RDWR | O_CLOEXEC);
    }
    if (log->fd < 0)
        return dr_err_set(err, DR_EIO, "%s: open: %s", log->path, strerror(errno));
    struct stat st;
    if (fstat(log->fd, &st) != 0)
        return dr_err_set(err, DR_EIO, "%s: fstat: %s", log->path, strerror(errno));
    if ((uint64_t)st.st_size < DATA_START)
        return dr_err_set(err, DR_ECORRUPT, "%s: %lld bytes, shorter than its header", log->path,
                          (long long)st.st_size);
    if ((rc = load_header(log, (uint64_t)st.st_size, err)) != 0)
        return rc;
    return scan_records(log, (uint64_t)st.st_size, opts->cut_corrupt, info, err);
}

int dr_plog_open(const char *dir, const char *name, const dr_plog_options *opts, dr_plog **out,
                 dr_plog_open_info *info, dr_err *err) {
    dr_plog_options defaults;
    dr_plog_open_info scratch;
    if (!opts) {
        dr_plog_options_default(&defaults);
        opts = &defaults;
    }
    if (!info)
        info = &scratch;
    memset(info, 0, sizeof *info);
    if (!dir || !name || !out || !name_ok(name) || strlen(dir) > 4000)
        return dr_err_set(err, DR_EINVAL, "plog: bad directory or name (letters, digits, .-_)");
    const dr_plog_limits *l = &opts->limits;
    if (l->max_log_entry == 0 || l->max_data_size == 0 ||
        l->max_log_entry > SIZE_MAX / sizeof(plog_entry))
        return dr_err_set(err, DR_EINVAL, "plog: limits must be positive");
    dr_plog *log = NULL;
    int rc = log_new(dir, name, opts, &log, err);
    if (rc != 0)
        return rc;
    rc = open_file(log, dir, opts, info, err);
    if (rc != 0) {
        dr_plog_close(log);
        return rc;
    }
    adopt_scan(log);
    fill_info(log, info);
    *out = log;
    return 0;
}

void dr_plog_close(dr_plog *log) {
    if (!log)
        return;
    if (log->fd >= 0)
        close(log->fd);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->flush_mu);
    free(log->index);
    free(log->pending.bytes);
    free(log->inflight.bytes);
    free(log->path);
    free(log);
}

/* ---- append and group commit --------------------------------------------------------------- */

/* Makes room for need more bytes in b; DR_ENOMEM. */
static int buf_reserve(plog_buf *b, size_t need) {
    if (b->cap - b->len >= need)
        return 0;
    if (need > SIZE_MAX / 2 - b->len)
        return DR_ENOMEM;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap - b->len < need)
        cap *= 2;
    uint8_t *grown = realloc(b->bytes, cap);
    if (!grown)
        return DR_ENOMEM;
    b->bytes = grown;
    b->cap = cap;
    return 0;
}

/* Encodes a record (header + payload) at p. */
static void encode_record(uint8_t *p, int64_t version, uint64_t hlc, uint64_t batch_offset,
                          const void *data, uint32_t len) {
    put_u32(p, RECORD_MAGIC);
    put_u32(p + 4, len);
    put_u64(p + 8, (uint64_t)version);
    put_u64(p + 16, hlc);
    put_u64(p + 24, batch_offset);
    put_u32(p + 32, 0);
    if (len)
        memcpy(p + REC_HDR_BYTES, data, len);
    put_u32(p + REC_CRC_AT, dr_plog_crc32(dr_plog_crc32(0, p, REC_CRC_AT), p + REC_HDR_BYTES, len));
}

/* The checks of dr_plog_append, with mu held. */
static int append_check_locked(dr_plog *log, int64_t version, uint64_t hlc_us, size_t len) {
    if (log->failed)
        return dr_err_set(&log->err, log->failed, "%s: the log has failed", log->path);
    if (version < 0 || version <= log->last_version || hlc_us < log->last_hlc_us)
        return dr_err_set(&log->err, DR_EINVAL,
                          "%s: append version %lld at %llu us: must follow version %lld at %llu us",
                          log->path, (long long)version, (unsigned long long)hlc_us,
                          (long long)log->last_version, (unsigned long long)log->last_hlc_us);
    if (len > log->limits.max_record_bytes)
        return dr_err_set(&log->err, DR_ETOOBIG, "%s: record of %zu bytes over the limit %u",
                          log->path, len, log->limits.max_record_bytes);
    if (log->count >= log->limits.max_log_entry ||
        len > log->limits.max_data_size - log->data_bytes)
        return dr_err_set(&log->err, DR_ETOOBIG,
                          "%s: full (max_log_entry %llu, max_data_size %llu): trim first",
                          log->path, (unsigned long long)log->limits.max_log_entry,
                          (unsigned long long)log->limits.max_data_size);
    return 0;
}

int dr_plog_append(dr_plog *log, int64_t version, uint64_t hlc_us, const void *data, size_t len) {
    if (len > 0 && !data)
        return DR_EINVAL;
    pthread_mutex_lock(&log->mu);
    int rc = append_check_locked(log, version, hlc_us, len);
    if (rc == 0 && (buf_reserve(&log->pending, REC_HDR_BYTES + len) != 0 ||
                    index_push(log, version, hlc_us, log->pending.base + log->pending.len,
                               (uint32_t)len) != 0))
        rc = dr_err_set(&log->err, DR_ENOMEM, "%s: out of memory", log->path);
    if (rc == 0) {
        encode_record(log->pending.bytes + log->pending.len, version, hlc_us, log->pending.base,
                      data, (uint32_t)len);
        log->pending.len += REC_HDR_BYTES + len;
        log->last_version = version;
        log->last_hlc_us = hlc_us;
    }
    pthread_mutex_unlock(&log->mu);
    return rc;
}

/* A failed flush: forget everything that is not durable, stop the log. With mu held. */
static int flush_failed_locked(dr_plog *log, const char *what, int errnum) {
    uint64_t durable_end = log->inflight.base;
    int rc = fail_locked(log, what, errnum);
    index_drop_back(log, count_at_or_below(log, log->durable_version));
    log->inflight.len = 0;
    log->pending.len = 0;
    log->pending.base = durable_end;
    if (ftruncate(log->fd, (off_t)durable_end) != 0) /* best effort: open cuts it anyway */
        DR_LOG(DR_LOGM_PERSISTENCE, DR_LOG_WARN, "%s: ftruncate after failure: %s", log->path,
               strerror(errno));
    return rc;
}

int dr_plog_flush(dr_plog *log, int64_t *durable_version) {
    pthread_mutex_lock(&log->flush_mu);
    pthread_mutex_lock(&log->mu);
    int rc =
        log->failed ? dr_err_set(&log->err, log->failed, "%s: the log has failed", log->path) : 0;
    if (rc == 0 && log->pending.len > 0) {
        assert(log->inflight.len == 0 && log->pending.base == log->written_end);
        assert(log->count > 0 && log->index[log->count - 1].offset >= log->pending.base);
        plog_buf spare = log->inflight;
        log->inflight = log->pending;
        log->pending =
            (plog_buf){spare.bytes, 0, spare.cap, log->inflight.base + log->inflight.len};
        int64_t target = log->index[log->count - 1].version;
        pthread_mutex_unlock(&log->mu);
        const char *what = NULL;
        int errnum = 0;
        if (write_all(&log->io, log->fd, log->inflight.bytes, log->inflight.len,
                      log->inflight.base) != 0)
            what = "write", errnum = errno;
        else if (log->io.fdatasync(log->io.ctx, log->fd) != 0)
            what = "fdatasync", errnum = errno;
        pthread_mutex_lock(&log->mu);
        if (what) {
            rc = flush_failed_locked(log, what, errnum);
        } else {
            log->written_end = log->inflight.base + log->inflight.len;
            log->inflight.len = 0;
            log->durable_version = target;
        }
    }
    if (rc == 0 && durable_version)
        *durable_version = log->durable_version;
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->flush_mu);
    return rc;
}

/* ---- reads --------------------------------------------------------------------------------- */

/* Copies the encoded bytes [off, off + n) of a record from the file or a buffer, with mu held. */
static int fetch_locked(dr_plog *log, uint64_t off, uint8_t *dst, size_t n) {
    const plog_buf *b = NULL;
    if (off >= log->pending.base)
        b = &log->pending;
    else if (off >= log->written_end)
        b = &log->inflight;
    if (b) {
        assert(off - b->base + n <= b->len);
        memcpy(dst, b->bytes + (off - b->base), n);
        return 0;
    }
    if (read_all(log->fd, dst, n, off) != 0)
        return dr_err_set(&log->err, DR_EIO, "%s: read at %llu: %s", log->path,
                          (unsigned long long)off, strerror(errno));
    return 0;
}

/* Reads index entry i into *rec, checking it against its CRC, with mu held. */
static int load_locked(dr_plog *log, size_t i, dr_plog_record *rec) {
    const plog_entry e = log->index[i];
    uint8_t hdr[REC_HDR_BYTES];
    uint8_t *data = e.len ? malloc(e.len) : NULL;
    if (e.len && !data)
        return dr_err_set(&log->err, DR_ENOMEM, "%s: out of memory", log->path);
    int rc = fetch_locked(log, e.offset, hdr, sizeof hdr);
    if (rc == 0 && e.len)
        rc = fetch_locked(log, e.offset + REC_HDR_BYTES, data, e.len);
    if (rc == 0 && (get_u32(hdr) != RECORD_MAGIC || get_u32(hdr + 4) != e.len ||
                    (int64_t)get_u64(hdr + 8) != e.version ||
                    get_u32(hdr + REC_CRC_AT) !=
                        dr_plog_crc32(dr_plog_crc32(0, hdr, REC_CRC_AT), data, e.len)))
        rc = dr_err_set(&log->err, DR_ECORRUPT, "%s: version %lld at offset %llu fails its check",
                        log->path, (long long)e.version, (unsigned long long)e.offset);
    if (rc != 0) {
        free(data);
        return rc;
    }
    *rec = (dr_plog_record){e.version, e.hlc_us, e.len, data};
    return 0;
}

/* Loads entry `k - 1` where k counts the entries at or below a bound: DR_ENOTFOUND if k is 0. */
static int read_below_count(dr_plog *log, size_t k, int64_t exact, dr_plog_record *rec) {
    int rc = DR_ENOTFOUND;
    if (k > 0 && (exact < 0 || log->index[k - 1].version == exact))
        rc = load_locked(log, k - 1, rec);
    return rc;
}

int dr_plog_read(dr_plog *log, int64_t version, dr_plog_record *rec) {
    pthread_mutex_lock(&log->mu);
    int rc = version < 0 ? DR_ENOTFOUND
                         : read_below_count(log, count_at_or_below(log, version), version, rec);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int dr_plog_read_at_or_below(dr_plog *log, int64_t version, dr_plog_record *rec) {
    pthread_mutex_lock(&log->mu);
    int rc = read_below_count(log, count_at_or_below(log, version), -1, rec);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int dr_plog_read_by_time(dr_plog *log, uint64_t hlc_us, dr_plog_record *rec) {
    pthread_mutex_lock(&log->mu);
    int rc = read_below_count(log, count_at_or_before(log, hlc_us), -1, rec);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

int dr_plog_read_latest(dr_plog *log, dr_plog_record *rec) {
    pthread_mutex_lock(&log->mu);
    int rc = read_below_count(log, log->count, -1, rec);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

void dr_plog_record_free(dr_plog_record *rec) {
    if (!rec)
        return;
    free(rec->data);
    memset(rec, 0, sizeof *rec);
}

int dr_plog_iterate(dr_plog *log, int64_t from, int64_t to, dr_plog_visit_fn fn, void *ctx) {
    int64_t next = from < 0 ? 0 : from;
    for (;;) {
        dr_plog_record rec;
        pthread_mutex_lock(&log->mu);
        size_t i = count_at_or_below(log, next - 1);
        int rc = i < log->count && log->index[i].version <= to ? load_locked(log, i, &rec)
                                                               : DR_ENOTFOUND;
        pthread_mutex_unlock(&log->mu);
        if (rc == DR_ENOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
        int stop = fn(ctx, &rec);
        int64_t seen = rec.version;
        dr_plog_record_free(&rec);
        if (stop != 0)
            return stop;
        if (seen == INT64_MAX)
            return 0;
        next = seen + 1;
    }
}

/* ---- trim and truncate --------------------------------------------------------------------- */

/* Drops the first k records durably; bound: versions below it are gone. Both locks held. */
static int trim_front_locked(dr_plog *log, size_t k, int64_t bound) {
    if (log->failed)
        return dr_err_set(&log->err, log->failed, "%s: the log has failed", log->path);
    if (bound > log->durable_version + 1) /* a trim never reaches past what is durable */
        bound = log->durable_version + 1;
    if (bound < log->trim_version)
        bound = log->trim_version;
    if (k == 0)
        return 0;
    if (log->index[k - 1].offset >= log->written_end)
        return dr_err_set(&log->err, DR_ESTATE,
                          "%s: trim through version %lld reaches records not yet flushed",
                          log->path, (long long)log->index[k - 1].version);
    uint64_t start = k < log->count ? log->index[k].offset : log->written_end;
    int rc = write_header_locked(log, start, bound);
    if (rc != 0)
        return rc;
    index_drop_front(log, k);
    if (bound - 1 > log->last_version)
        log->last_version = bound - 1;
    uint64_t hole_end = start & ~(uint64_t)4095;
    if (hole_end > DATA_START && fallocate(log->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                           DATA_START, (off_t)(hole_end - DATA_START)) != 0)
        DR_LOG(DR_LOGM_PERSISTENCE, DR_LOG_DEBUG, "%s: punching the trimmed prefix: %s", log->path,
               strerror(errno));
    return 0;
}

int dr_plog_trim_below(dr_plog *log, int64_t version) {
    pthread_mutex_lock(&log->flush_mu);
    pthread_mutex_lock(&log->mu);
    int rc = trim_front_locked(log, count_at_or_below(log, version - 1), version);
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->flush_mu);
    return rc;
}

int dr_plog_trim_before_time(dr_plog *log, uint64_t hlc_us) {
    pthread_mutex_lock(&log->flush_mu);
    pthread_mutex_lock(&log->mu);
    size_t k = hlc_us == 0 ? 0 : count_at_or_before(log, hlc_us - 1);
    int64_t bound = k ? log->index[k - 1].version + 1 : DR_PLOG_NO_VERSION;
    int rc = trim_front_locked(log, k, bound);
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->flush_mu);
    return rc;
}

/* Cuts the file at off and syncs it, with both locks held. */
static int cut_file_locked(dr_plog *log, uint64_t off) {
    if (ftruncate(log->fd, (off_t)off) != 0)
        return fail_locked(log, "ftruncate", errno);
    if (log->io.fdatasync(log->io.ctx, log->fd) != 0)
        return fail_locked(log, "fdatasync (truncate)", errno);
    log->written_end = off;
    return 0;
}

int dr_plog_truncate_after(dr_plog *log, int64_t version) {
    pthread_mutex_lock(&log->flush_mu);
    pthread_mutex_lock(&log->mu);
    int rc =
        log->failed ? dr_err_set(&log->err, log->failed, "%s: the log has failed", log->path) : 0;
    size_t k = count_at_or_below(log, version);
    if (rc == 0 && k < log->count) {
        uint64_t cut = log->index[k].offset;
        if (cut >= log->pending.base) {
            log->pending.len = cut - log->pending.base;
        } else {
            log->pending.len = 0;
            log->pending.base = cut;
            rc = cut_file_locked(log, cut);
        }
        index_drop_back(log, k);
        int64_t kept = k ? log->index[k - 1].version : DR_PLOG_NO_VERSION;
        if (log->trim_version > 0 && log->trim_version - 1 > kept)
            kept = log->trim_version - 1; /* trimmed versions stay counted, as at reopen */
        log->last_version = kept;
        log->last_hlc_us = k ? log->index[k - 1].hlc_us : 0;
        if (log->durable_version > kept)
            log->durable_version = kept;
    }
    pthread_mutex_unlock(&log->mu);
    pthread_mutex_unlock(&log->flush_mu);
    return rc;
}

/* ---- accessors ----------------------------------------------------------------------------- */

int64_t dr_plog_durable_version(dr_plog *log) {
    pthread_mutex_lock(&log->mu);
    int64_t v = log->durable_version;
    pthread_mutex_unlock(&log->mu);
    return v;
}

int64_t dr_plog_latest_version(dr_plog *log) {
    pthread_mutex_lock(&log->mu);
    int64_t v = log->count ? log->index[log->count - 1].version : DR_PLOG_NO_VERSION;
    pthread_mutex_unlock(&log->mu);
    return v;
}

int64_t dr_plog_first_version(dr_plog *log) {
    pthread_mutex_lock(&log->mu);
    int64_t v = log->count ? log->index[0].version : DR_PLOG_NO_VERSION;
    pthread_mutex_unlock(&log->mu);
    return v;
}

uint64_t dr_plog_count(dr_plog *log) {
    pthread_mutex_lock(&log->mu);
    uint64_t n = log->count;
    pthread_mutex_unlock(&log->mu);
    return n;
}

const char *dr_plog_errmsg(dr_plog *log) {
    return log->err.msg;
}

const char *dr_plog_path(const dr_plog *log) {
    return log->path;
}
