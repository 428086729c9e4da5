/*
 * Tests of the durable versioned log (src/persist/plog.c) on real files in a temporary
 * directory: round trip and reopen, torn tails cut at every byte of the last record, mid-file
 * corruption refused, group commit (one fdatasync per flush, counted through the I/O hook), reads
 * by version and time, trim and truncate surviving a reopen, limits on corrupt lengths, and
 * failures (injected ENOSPC/EIO, a real RLIMIT_FSIZE) never reported durable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/skip.h"
#include "derecho/error.h"
#include "persist/plog.h"

#define DATA_START 8192u /* first record offset (plog.c's format) */
#define REC_HDR    40u   /* record header bytes */

/* ---- fixture: a fresh temporary directory per test ------------------------------------------ */

typedef struct fixture {
    char dir[256];  /* the temporary directory */
    char path[300]; /* dir/t.plog */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(f->dir, sizeof f->dir, "%s/plog-test-XXXXXX", tmp);
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/t.plog", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* The payload of record `version`, len bytes, deterministic. */
static void fill(uint8_t *p, int64_t version, size_t len) {
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(version * 31 + (int64_t)i * 7 + 1);
}

/* Payload length used for version v in most tests (0 included). */
static size_t len_of(int64_t v) {
    return (size_t)((v * 37) % 300);
}

static int append_v(dr_plog *log, int64_t v, uint64_t hlc, size_t len) {
    uint8_t *p = malloc(len ? len : 1);
    fill(p, v, len);
    int rc = dr_plog_append(log, v, hlc, p, len);
    free(p);
    return rc;
}

/* Checks that rec is version v with the payload append_v wrote. */
static void check_rec(const dr_plog_record *rec, int64_t v, size_t len) {
    assert_int_equal(rec->version, v);
    assert_int_equal(rec->len, len);
    uint8_t *want = malloc(len ? len : 1);
    fill(want, v, len);
    assert_memory_equal(rec->data ? rec->data : want, want, len);
    free(want);
}

static dr_plog *open_ok(fixture *f, const dr_plog_options *opts, dr_plog_open_info *info) {
    dr_plog *log = NULL;
    dr_err err = {0};
    int rc = dr_plog_open(f->dir, "t", opts, &log, info, &err);
    if (rc != 0)
        print_error("open: %s\n", err.msg);
    assert_int_equal(rc, 0);
    return log;
}

/* Appends versions first..last (hlc = 1000 + 10 * v) and flushes. */
static void write_range(dr_plog *log, int64_t first, int64_t last) {
    for (int64_t v = first; v <= last; v++)
        assert_int_equal(append_v(log, v, 1000 + 10 * (uint64_t)v, len_of(v)), 0);
    int64_t durable = -7;
    assert_int_equal(dr_plog_flush(log, &durable), 0);
    assert_int_equal(durable, last);
}

static long file_size(const char *path) {
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (long)st.st_size;
}

static uint8_t *slurp(const char *path, long *size) {
    *size = file_size(path);
    uint8_t *bytes = malloc((size_t)*size);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(bytes, 1, (size_t)*size, fp), (size_t)*size);
    fclose(fp);
    return bytes;
}

static void spit(const char *path, const uint8_t *bytes, long size) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
}

/* File offset of record v when versions 0..v-1 precede it from DATA_START (len_of sizes). */
static long offset_of(int64_t v) {
    long off = DATA_START;
    for (int64_t i = 0; i < v; i++)
        off += REC_HDR + (long)len_of(i);
    return off;
}

/* ---- I/O hook: counts calls, injects failures ----------------------------------------------- */

typedef struct hook {
    int pwrites;        /* pwrite calls */
    int fdatasyncs;     /* fdatasync calls */
    int dir_syncs;      /* directory fsyncs */
    long write_budget;  /* bytes pwrite may still write; < 0: unlimited */
    int fail_fdatasync; /* fdatasync fails with EIO while set */
    int fail_header;    /* pwrite into the header pages fails with EIO while set */
} hook;

static ssize_t hook_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off) {
    hook *h = ctx;
    h->pwrites++;
    if (h->fail_header && off < DATA_START) {
        errno = EIO;
        return -1;
    }
    if (h->write_budget >= 0) {
        if (h->write_budget == 0) {
            errno = ENOSPC;
            return -1;
        }
        if ((long)len > h->write_budget)
            len = (size_t)h->write_budget; /* a short write, then ENOSPC on the next */
        h->write_budget -= (long)len;
    }
    return pwrite(fd, buf, len, off);
}

static int hook_fdatasync(void *ctx, int fd) {
    hook *h = ctx;
    h->fdatasyncs++;
    if (h->fail_fdatasync) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static int hook_fsync_dir(void *ctx, int fd) {
    hook *h = ctx;
    h->dir_syncs++;
    return fsync(fd);
}

static void hooked_options(dr_plog_options *opts, dr_plog_io *io, hook *h) {
    memset(h, 0, sizeof *h);
    h->write_budget = -1;
    *io = (dr_plog_io){hook_pwrite, hook_fdatasync, hook_fsync_dir, h};
    dr_plog_options_default(opts);
    opts->io = io;
}

/* ---- round trip ----------------------------------------------------------------------------- */

typedef struct walk {
    int64_t next; /* version expected next */
    int seen;     /* records visited */
    int stop_at;  /* stop (return 99) at this many records; 0: never */
} walk;

static int visit(void *ctx, const dr_plog_record *rec) {
    walk *w = ctx;
    check_rec(rec, w->next, len_of(w->next));
    w->next++;
    w->seen++;
    return w->stop_at && w->seen == w->stop_at ? 99 : 0;
}

static void test_round_trip_and_reopen(void **state) {
    fixture *f = *state;
    dr_plog_open_info info;
    dr_plog *log = open_ok(f, NULL, &info);
    assert_true(info.created);
    assert_int_equal(info.records, 0);
    assert_int_equal(dr_plog_durable_version(log), DR_PLOG_NO_VERSION);
    assert_int_equal(dr_plog_latest_version(log), DR_PLOG_NO_VERSION);
    write_range(log, 0, 99);
    assert_int_equal(append_v(log, 100, 5000, 10), 0); /* buffered, not durable */
    assert_int_equal(dr_plog_durable_version(log), 99);
    assert_int_equal(dr_plog_latest_version(log), 100);
    dr_plog_record rec;
    assert_int_equal(dr_plog_read(log, 100, &rec), 0); /* buffered records are readable */
    check_rec(&rec, 100, 10);
    dr_plog_record_free(&rec);
    dr_plog_close(log); /* drops version 100: never flushed */

    log = open_ok(f, NULL, &info);
    assert_false(info.created);
    assert_int_equal(info.records, 100);
    assert_int_equal(info.bytes_cut, 0);
    assert_int_equal(info.first_version, 0);
    assert_int_equal(info.latest_version, 99);
    assert_int_equal(dr_plog_durable_version(log), 99);
    assert_int_equal(file_size(f->path), offset_of(100));
    for (int64_t v = 0; v < 100; v++) {
        assert_int_equal(dr_plog_read(log, v, &rec), 0);
        check_rec(&rec, v, len_of(v));
        assert_int_equal(rec.hlc_us, 1000 + 10 * (uint64_t)v);
        dr_plog_record_free(&rec);
    }
    walk w = {0, 0, 0};
    assert_int_equal(dr_plog_iterate(log, 0, INT64_MAX, visit, &w), 0);
    assert_int_equal(w.seen, 100);
    w = (walk){10, 0, 5};
    assert_int_equal(dr_plog_iterate(log, 10, 50, visit, &w), 99); /* stopped by the visitor */
    assert_int_equal(w.seen, 5);
    w = (walk){20, 0, 0};
    assert_int_equal(dr_plog_iterate(log, 20, 29, visit, &w), 0);
    assert_int_equal(w.seen, 10);
    /* appends continue after the reopened records */
    write_range(log, 100, 104);
    dr_plog_close(log);
    log = open_ok(f, NULL, &info);
    assert_int_equal(info.records, 105);
    dr_plog_close(log);
}

static void test_order_and_arguments_refused(void **state) {
    fixture *f = *state;
    dr_plog *log = open_ok(f, NULL, NULL);
    uint8_t byte = 1;
    assert_int_equal(dr_plog_append(log, 5, 100, &byte, 1), 0);
    assert_int_equal(dr_plog_append(log, 5, 100, &byte, 1), DR_EINVAL); /* same version */
    assert_int_equal(dr_plog_append(log, 4, 100, &byte, 1), DR_EINVAL); /* older version */
    assert_int_equal(dr_plog_append(log, 6, 99, &byte, 1), DR_EINVAL);  /* time went back */
    assert_int_equal(dr_plog_append(log, -3, 100, &byte, 1), DR_EINVAL);
    assert_int_equal(dr_plog_append(log, 6, 100, NULL, 1), DR_EINVAL);
    assert_non_null(strstr(dr_plog_errmsg(log), "must follow"));
    assert_int_equal(dr_plog_append(log, 6, 100, &byte, 1), 0); /* equal time is fine */
    dr_plog_close(log);

    dr_plog *bad = NULL;
    dr_err err = {0};
    assert_int_equal(dr_plog_open(f->dir, "a/b", NULL, &bad, NULL, &err), DR_EINVAL);
    assert_int_equal(dr_plog_open(f->dir, "", NULL, &bad, NULL, &err), DR_EINVAL);
    assert_int_equal(dr_plog_open(f->dir, "..", NULL, &bad, NULL, &err), DR_EINVAL);
    assert_null(bad);
    /* a file that is not a log */
    uint8_t junk[DATA_START + 100];
    memset(junk, 'x', sizeof junk);
    char p[400];
    snprintf(p, sizeof p, "%s/junk.plog", f->dir);
    spit(p, junk, sizeof junk);
    assert_int_equal(dr_plog_open(f->dir, "junk", NULL, &bad, NULL, &err), DR_ECORRUPT);
    assert_non_null(strstr(err.msg, "no valid header"));
    spit(p, junk, 100);
    assert_int_equal(dr_plog_open(f->dir, "junk", NULL, &bad, NULL, &err), DR_ECORRUPT);
}

static void test_reset_and_new_directory(void **state) {
    fixture *f = *state;
    dr_plog *log = open_ok(f, NULL, NULL);
    write_range(log, 0, 9);
    dr_plog_close(log);
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.reset = true;
    dr_plog_open_info info;
    log = open_ok(f, &opts, &info);
    assert_true(info.created);
    assert_int_equal(info.records, 0);
    dr_plog_close(log);
    /* a directory that does not exist yet is created (one level) */
    char sub[400];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    dr_err err = {0};
    assert_int_equal(dr_plog_open(sub, "s", NULL, &log, NULL, &err), 0);
    write_range(log, 0, 2);
    dr_plog_close(log);
    char p[450];
    snprintf(p, sizeof p, "%s/s.plog", sub);
    unlink(p);
    rmdir(sub);
}

/* ---- torn tails and corruption -------------------------------------------------------------- */

/* Writes versions 0..n-1 (len_of sizes), one flush each, and returns the file's bytes. */
static uint8_t *make_log(fixture *f, int64_t n, long *size) {
    dr_plog *log = open_ok(f, NULL, NULL);
    for (int64_t v = 0; v < n; v++)
        write_range(log, v, v);
    dr_plog_close(log);
    return slurp(f->path, size);
}

/* Every cut inside the last record leaves the earlier ones, and the log takes appends again. */
static void test_torn_tail_every_offset(void **state) {
    fixture *f = *state;
    long size;
    uint8_t *orig = make_log(f, 5, &size); /* record 4: 32 + 148 bytes */
    long last = offset_of(4);
    assert_int_equal(size, offset_of(5));
    for (long cut = last + 1; cut < size; cut++) {
        spit(f->path, orig, cut);
        dr_plog_open_info info;
        dr_plog *log = open_ok(f, NULL, &info);
        assert_int_equal(info.records, 4);
        assert_int_equal(info.bytes_cut, cut - last);
        assert_int_equal(info.latest_version, 3);
        assert_int_equal(file_size(f->path), last);
        if (cut % 16 == 0) { /* the cut log is a working log */
            write_range(log, 4, 5);
            dr_plog_close(log);
            log = open_ok(f, NULL, &info);
            assert_int_equal(info.records, 6);
            assert_int_equal(info.bytes_cut, 0);
        }
        dr_plog_close(log);
    }
    free(orig);
}

/* A flipped byte anywhere in the last record (header or payload) makes it a torn tail. */
static void test_corrupt_last_record_cut(void **state) {
    fixture *f = *state;
    long size;
    uint8_t *orig = make_log(f, 5, &size);
    long last = offset_of(4);
    for (long at = last; at < size; at++) {
        orig[at] ^= 0x5a;
        spit(f->path, orig, size);
        orig[at] ^= 0x5a;
        dr_plog_open_info info;
        dr_plog *log = open_ok(f, NULL, &info);
        assert_int_equal(info.records, 4);
        assert_int_equal(info.bytes_cut, size - last);
        dr_plog_close(log);
    }
    /* zeros after the last record (a file extended but never written) are cut too */
    uint8_t *padded = calloc(1, (size_t)size + 4096);
    memcpy(padded, orig, (size_t)size);
    spit(f->path, padded, size + 4096);
    dr_plog_open_info info;
    dr_plog *log = open_ok(f, NULL, &info);
    assert_int_equal(info.records, 5);
    assert_int_equal(info.bytes_cut, 4096);
    dr_plog_close(log);
    free(padded);
    free(orig);
}

/* Damage followed by valid records is an error, never a silent cut; cut_corrupt repairs it. */
static void test_mid_file_corruption(void **state) {
    fixture *f = *state;
    long size;
    uint8_t *orig = make_log(f, 10, &size);
    long bad = offset_of(3);
    long spots[] = {bad, bad + 4, bad + 9, bad + 26, bad + 37, bad + REC_HDR + 2};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        orig[spots[i]] ^= 0x01;
        spit(f->path, orig, size);
        orig[spots[i]] ^= 0x01;
        dr_plog *log = NULL;
        dr_err err = {0};
        assert_int_equal(dr_plog_open(f->dir, "t", NULL, &log, NULL, &err), DR_ECORRUPT);
        assert_null(log);
        assert_non_null(strstr(err.msg, "corrupt record at offset"));
        assert_int_equal(file_size(f->path), size); /* nothing cut */
    }
    /* a length field blown up to 3 GiB in the middle: refused before anything is allocated */
    uint8_t saved[4];
    memcpy(saved, orig + bad + 4, 4);
    orig[bad + 4] = 0, orig[bad + 5] = 0, orig[bad + 6] = 0, orig[bad + 7] = 0xc0;
    spit(f->path, orig, size);
    dr_plog *log = NULL;
    dr_err err = {0};
    assert_int_equal(dr_plog_open(f->dir, "t", NULL, &log, NULL, &err), DR_ECORRUPT);
    memcpy(orig + bad + 4, saved, 4);
    /* repair on request */
    orig[bad + REC_HDR + 2] ^= 0x01;
    spit(f->path, orig, size);
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.cut_corrupt = true;
    dr_plog_open_info info;
    log = open_ok(f, &opts, &info);
    assert_int_equal(info.records, 3);
    assert_int_equal(info.bytes_cut, size - bad);
    dr_plog_close(log);
    free(orig);
}

/*
 * A crash during a flush can leave holes anywhere in that flush's bytes, with valid records of
 * the same flush after them: that is still a torn tail (the flush never returned). The same
 * damage with a later flush after it is mid-file corruption.
 */
static void test_hole_in_last_flush_is_a_tail(void **state) {
    fixture *f = *state;
    dr_plog *log = open_ok(f, NULL, NULL);
    write_range(log, 0, 4); /* flush 1 */
    write_range(log, 5, 9); /* flush 2: the last */
    dr_plog_close(log);
    long size;
    uint8_t *orig = slurp(f->path, &size);
    for (int64_t hole = 5; hole < 10; hole++) { /* a zeroed page-like hole in record `hole` */
        uint8_t *copy = malloc((size_t)size);
        memcpy(copy, orig, (size_t)size);
        memset(copy + offset_of(hole), 0, REC_HDR + 8);
        spit(f->path, copy, size);
        free(copy);
        dr_plog_open_info info;
        log = open_ok(f, NULL, &info);
        assert_int_equal(info.latest_version, hole - 1);
        assert_int_equal(info.bytes_cut, size - offset_of(hole));
        dr_plog_close(log);
    }
    for (int64_t hole = 0; hole < 5; hole++) { /* in flush 1, with flush 2 after it */
        uint8_t *copy = malloc((size_t)size);
        memcpy(copy, orig, (size_t)size);
        memset(copy + offset_of(hole), 0, REC_HDR + 8);
        spit(f->path, copy, size);
        free(copy);
        dr_plog *bad = NULL;
        dr_err err = {0};
        assert_int_equal(dr_plog_open(f->dir, "t", NULL, &bad, NULL, &err), DR_ECORRUPT);
        assert_non_null(strstr(err.msg, "later flushes"));
    }
    free(orig);
}

/* A valid record whose version does not follow its predecessor is damage, not a tail. */
static void test_out_of_order_record_refused(void **state) {
    fixture *f = *state;
    long size;
    uint8_t *orig = make_log(f, 3, &size);
    long rec1 = offset_of(1), rec1_bytes = REC_HDR + (long)len_of(1);
    uint8_t *bad = malloc((size_t)(size + rec1_bytes));
    memcpy(bad, orig, (size_t)size);
    memcpy(bad + size, orig + rec1, (size_t)rec1_bytes); /* version 1 again, after version 2 */
    spit(f->path, bad, size + rec1_bytes);
    dr_plog *log = NULL;
    dr_err err = {0};
    assert_int_equal(dr_plog_open(f->dir, "t", NULL, &log, NULL, &err), DR_ECORRUPT);
    assert_non_null(strstr(err.msg, "out of order"));
    free(bad);
    free(orig);
}

/* Lengths at the tail up to 4 GiB with the widest record limit: cut, no allocation. */
static void test_huge_length_at_tail(void **state) {
    fixture *f = *state;
    long size;
    uint8_t *orig = make_log(f, 5, &size);
    long last = offset_of(4);
    orig[last + 4] = 0xff, orig[last + 5] = 0xff, orig[last + 6] = 0xff, orig[last + 7] = 0xff;
    spit(f->path, orig, size);
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.limits.max_record_bytes = UINT32_MAX;
    opts.limits.max_data_size = UINT64_MAX;
    dr_plog_open_info info;
    dr_plog *log = open_ok(f, &opts, &info);
    assert_int_equal(info.records, 4);
    assert_int_equal(info.bytes_cut, size - last);
    dr_plog_close(log);
    free(orig);
}

/* A file holding more than the limits is refused at open, and appends stop at the limits. */
static void test_limits(void **state) {
    fixture *f = *state;
    long size;
    free(make_log(f, 10, &size));
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.limits.max_log_entry = 5;
    dr_plog *log = NULL;
    dr_err err = {0};
    assert_int_equal(dr_plog_open(f->dir, "t", &opts, &log, NULL, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_log_entry"));
    dr_plog_options_default(&opts);
    opts.limits.max_data_size = 100;
    assert_int_equal(dr_plog_open(f->dir, "t", &opts, &log, NULL, &err), DR_ETOOBIG);
    opts.limits.max_data_size = 0;
    assert_int_equal(dr_plog_open(f->dir, "t", &opts, &log, NULL, &err), DR_EINVAL);
    dr_plog_options_default(&opts);
    opts.limits.max_record_bytes = 200; /* record 8 holds 259 bytes: over, but not damage */
    assert_int_equal(dr_plog_open(f->dir, "t", &opts, &log, NULL, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_record_bytes"));
    /* appends */
    opts.limits.max_log_entry = 11;
    opts.limits.max_record_bytes = 300;
    log = open_ok(f, &opts, NULL);
    assert_int_equal(append_v(log, 10, 5000, 301), DR_ETOOBIG);
    assert_int_equal(append_v(log, 10, 5000, 300), 0);
    assert_int_equal(append_v(log, 11, 5000, 1), DR_ETOOBIG); /* 12th record */
    assert_int_equal(dr_plog_flush(log, NULL), 0);
    assert_int_equal(dr_plog_trim_below(log, 5), 0);
    assert_int_equal(append_v(log, 11, 5000, 1), 0); /* room again after the trim */
    assert_int_equal(dr_plog_flush(log, NULL), 0);
    dr_plog_close(log);
}

/* ---- group commit --------------------------------------------------------------------------- */

static void test_group_commit_one_sync_per_flush(void **state) {
    fixture *f = *state;
    dr_plog_options opts;
    dr_plog_io io;
    hook h;
    hooked_options(&opts, &io, &h);
    dr_plog *log = open_ok(f, &opts, NULL);
    assert_true(h.dir_syncs >= 1);     /* the directory was synced after the file's creation */
    assert_int_equal(h.fdatasyncs, 1); /* the new file's header */
    h = (hook){.write_budget = -1};
    for (int64_t v = 0; v < 50; v++)
        assert_int_equal(append_v(log, v, 100, len_of(v)), 0);
    assert_int_equal(h.fdatasyncs, 0); /* appends never touch the disk */
    assert_int_equal(h.pwrites, 0);
    int64_t durable = 0;
    assert_int_equal(dr_plog_flush(log, &durable), 0);
    assert_int_equal(durable, 49);
    assert_int_equal(h.fdatasyncs, 1);
    assert_int_equal(h.pwrites, 1); /* one contiguous write for the whole batch */
    assert_int_equal(dr_plog_flush(log, &durable), 0); /* nothing new: no I/O */
    assert_int_equal(durable, 49);
    assert_int_equal(h.fdatasyncs, 1);
    assert_int_equal(append_v(log, 50, 100, 7), 0);
    assert_int_equal(dr_plog_flush(log, &durable), 0);
    assert_int_equal(durable, 50);
    assert_int_equal(h.fdatasyncs, 2);
    dr_plog_close(log);
    /* reopening an existing clean log writes nothing */
    h = (hook){.write_budget = -1};
    log = open_ok(f, &opts, NULL);
    assert_int_equal(h.fdatasyncs + h.pwrites, 0);
    dr_plog_close(log);
}

/* Appends from another thread while the main thread flushes: all land, in order. */
typedef struct appender {
    dr_plog *log;
    int64_t n;
} appender;

static void *append_thread(void *arg) {
    appender *a = arg;
    for (int64_t v = 0; v < a->n; v++)
        if (append_v(a->log, v, 100 + (uint64_t)v, len_of(v)) != 0)
            abort();
    return NULL;
}

static void test_appends_during_flush(void **state) {
    fixture *f = *state;
    dr_plog *log = open_ok(f, NULL, NULL);
    appender a = {log, 3000};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, append_thread, &a), 0);
    int64_t durable = DR_PLOG_NO_VERSION, prev = DR_PLOG_NO_VERSION;
    for (int i = 0; i < 200; i++) { /* flushes racing the appender (each syncs what is there) */
        assert_int_equal(dr_plog_flush(log, &durable), 0);
        assert_true(durable >= prev); /* never goes backwards */
        assert_true(durable <= dr_plog_latest_version(log));
        prev = durable;
    }
    pthread_join(tid, NULL);
    assert_int_equal(dr_plog_flush(log, &durable), 0);
    assert_int_equal(durable, a.n - 1);
    dr_plog_close(log);
    dr_plog_open_info info;
    log = open_ok(f, NULL, &info);
    assert_int_equal(info.records, a.n);
    walk w = {0, 0, 0};
    assert_int_equal(dr_plog_iterate(log, 0, INT64_MAX, visit, &w), 0);
    assert_int_equal(w.seen, a.n);
    dr_plog_close(log);
}

/* ---- reads by version and by time ---------------------------------------------------------- */

static void test_reads_by_version_and_time(void **state) {
    fixture *f = *state;
    dr_plog *log = open_ok(f, NULL, NULL);
    /* view 1: seq 0..9 at t = 1000, 1010, ...; view 2: seq 0..4 */
    uint64_t t = 1000;
    for (uint32_t s = 0; s < 10; s++, t += 10)
        assert_int_equal(append_v(log, dr_plog_version(1, s), t, 16), 0);
    for (uint32_t s = 0; s < 5; s++, t += 10)
        assert_int_equal(append_v(log, dr_plog_version(2, s), t, 16), 0);
    for (int pass = 0; pass < 3; pass++) { /* buffered, flushed, reopened */
        if (pass == 1)
            assert_int_equal(dr_plog_flush(log, NULL), 0);
        if (pass == 2) {
            dr_plog_close(log);
            log = open_ok(f, NULL, NULL);
        }
        dr_plog_record rec;
        assert_int_equal(dr_plog_read(log, dr_plog_version(1, 3), &rec), 0);
        check_rec(&rec, dr_plog_version(1, 3), 16);
        assert_int_equal(rec.hlc_us, 1030);
        dr_plog_record_free(&rec);
        assert_int_equal(dr_plog_read(log, dr_plog_version(1, 10), &rec), DR_ENOTFOUND);
        assert_int_equal(dr_plog_read(log, -1, &rec), DR_ENOTFOUND);
        /* latest at or below a version between views */
        assert_int_equal(dr_plog_read_at_or_below(log, dr_plog_version(1, 99), &rec), 0);
        assert_int_equal(rec.version, dr_plog_version(1, 9));
        dr_plog_record_free(&rec);
        assert_int_equal(dr_plog_read_at_or_below(log, dr_plog_version(1, 0) - 1, &rec),
                         DR_ENOTFOUND);
        /* by time: the newest record stamped at or before t */
        assert_int_equal(dr_plog_read_by_time(log, 1105, &rec), 0);
        assert_int_equal(rec.version, dr_plog_version(2, 0)); /* stamped 1100 */
        dr_plog_record_free(&rec);
        assert_int_equal(dr_plog_read_by_time(log, 1090, &rec), 0);
        assert_int_equal(rec.version, dr_plog_version(1, 9));
        dr_plog_record_free(&rec);
        assert_int_equal(dr_plog_read_by_time(log, 999, &rec), DR_ENOTFOUND);
        assert_int_equal(dr_plog_read_by_time(log, UINT64_MAX, &rec), 0);
        assert_int_equal(rec.version, dr_plog_version(2, 4));
        dr_plog_record_free(&rec);
        assert_int_equal(dr_plog_read_latest(log, &rec), 0);
        check_rec(&rec, dr_plog_version(2, 4), 16);
        dr_plog_record_free(&rec);
        assert_int_equal(dr_plog_first_version(log), dr_plog_version(1, 0));
        assert_int_equal(dr_plog_count(log), 15);
    }
    dr_plog_close(log);
    log = open_ok(f, NULL, NULL);
    dr_plog_record rec;
    /* bit rot after open is caught at read time */
    int fd = open(f->path, O_RDWR);
    uint8_t x = 0xee;
    assert_int_equal(pwrite(fd, &x, 1, DATA_START + REC_HDR + 3), 1);
    close(fd);
    assert_int_equal(dr_plog_read(log, dr_plog_version(1, 0), &rec), DR_ECORRUPT);
    dr_plog_close(log);
    dr_plog *empty = NULL;
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.reset = true;
    dr_err err = {0};
    assert_int_equal(dr_plog_open(f->dir, "t", &opts, &empty, NULL, &err), 0);
    assert_int_equal(dr_plog_read_latest(empty, &rec), DR_ENOTFOUND);
    assert_int_equal(dr_plog_read_by_time(empty, 5000, &rec), DR_ENOTFOUND);
    dr_plog_close(empty);
}

/* ---- trim and truncate ---------------------------------------------------------------------- */

static void reopen(fixture *f, dr_plog **log, dr_plog_open_info *info) {
    dr_plog_close(*log);
    *log = open_ok(f, NULL, info);
    assert_int_equal(info->bytes_cut, 0);
}

static void test_trim_and_truncate_survive_reopen(void **state) {
    fixture *f = *state;
    dr_plog_open_info info;
    dr_plog *log = open_ok(f, NULL, NULL);
    write_range(log, 0, 19); /* hlc = 1000 + 10 v */
    assert_int_equal(dr_plog_trim_below(log, 10), 0);
    assert_int_equal(dr_plog_first_version(log), 10);
    assert_int_equal(dr_plog_count(log), 10);
    dr_plog_record rec;
    assert_int_equal(dr_plog_read(log, 9, &rec), DR_ENOTFOUND);
    reopen(f, &log, &info);
    assert_int_equal(info.first_version, 10);
    assert_int_equal(info.records, 10);
    assert_int_equal(dr_plog_read(log, 10, &rec), 0);
    check_rec(&rec, 10, len_of(10));
    dr_plog_record_free(&rec);
    /* by time: drop what is older than version 15's stamp */
    assert_int_equal(dr_plog_trim_before_time(log, 1150), 0);
    assert_int_equal(dr_plog_first_version(log), 15);
    assert_int_equal(dr_plog_trim_below(log, 12), 0); /* already gone: no change */
    reopen(f, &log, &info);
    assert_int_equal(info.first_version, 15);
    /* truncate beyond a version: durable records and buffered ones */
    assert_int_equal(append_v(log, 20, 2000, 5), 0);
    assert_int_equal(dr_plog_truncate_after(log, 17), 0);
    assert_int_equal(dr_plog_latest_version(log), 17);
    assert_int_equal(dr_plog_durable_version(log), 17);
    assert_int_equal(file_size(f->path), offset_of(18));
    reopen(f, &log, &info);
    assert_int_equal(info.latest_version, 17);
    assert_int_equal(info.records, 3);
    write_range(log, 18, 19); /* truncated versions may be written again */
    assert_int_equal(append_v(log, 5, 3000, 1), DR_EINVAL); /* below the trim */
    /* truncate only buffered records */
    assert_int_equal(append_v(log, 20, 2000, 5), 0);
    assert_int_equal(append_v(log, 21, 2000, 5), 0);
    assert_int_equal(dr_plog_truncate_after(log, 20), 0);
    assert_int_equal(dr_plog_durable_version(log), 19);
    int64_t durable;
    assert_int_equal(dr_plog_flush(log, &durable), 0);
    assert_int_equal(durable, 20);
    /* trim reaching unflushed records is refused */
    assert_int_equal(append_v(log, 22, 2000, 5), 0);
    assert_int_equal(dr_plog_trim_below(log, 23), DR_ESTATE);
    assert_int_equal(dr_plog_flush(log, NULL), 0);
    /* trim everything: the log is empty but remembers the newest durable version (22) */
    assert_int_equal(dr_plog_trim_below(log, 30), 0);
    assert_int_equal(dr_plog_count(log), 0);
    assert_int_equal(dr_plog_durable_version(log), 22);
    reopen(f, &log, &info);
    assert_int_equal(info.records, 0);
    assert_int_equal(dr_plog_durable_version(log), 22); /* persisted_num does not go back */
    assert_int_equal(append_v(log, 22, 3000, 1), DR_EINVAL);
    write_range(log, 30, 31);
    reopen(f, &log, &info);
    assert_int_equal(info.first_version, 30);
    assert_int_equal(info.latest_version, 31);
    assert_int_equal(dr_plog_truncate_after(log, DR_PLOG_NO_VERSION), 0); /* cut it all */
    assert_int_equal(dr_plog_durable_version(log), 22); /* what the trim dropped stays counted */
    reopen(f, &log, &info);
    assert_int_equal(info.records, 0);
    assert_int_equal(dr_plog_durable_version(log), 22);
    dr_plog_close(log);
}

/* A trim whose header write fails leaves the old header: the log keeps every record. */
static void test_trim_is_all_or_nothing(void **state) {
    fixture *f = *state;
    dr_plog_options opts;
    dr_plog_io io;
    hook h;
    hooked_options(&opts, &io, &h);
    dr_plog *log = open_ok(f, &opts, NULL);
    write_range(log, 0, 9);
    assert_int_equal(dr_plog_trim_below(log, 3), 0); /* header generation 2, in slot B */
    h.fail_header = 1;
    assert_int_equal(dr_plog_trim_below(log, 6), DR_EIO);
    assert_non_null(strstr(dr_plog_errmsg(log), "header write"));
    assert_int_equal(append_v(log, 10, 5000, 1), DR_EIO); /* failed: stays stopped */
    dr_plog_close(log);
    dr_plog_open_info info;
    log = open_ok(f, NULL, &info);
    assert_int_equal(info.first_version, 3);
    assert_int_equal(info.records, 7);
    dr_plog_close(log);
    /* a torn header in the other slot (A, generation 1, overwritten with junk) is ignored */
    int fd = open(f->path, O_RDWR);
    uint8_t junk[64];
    memset(junk, 0xab, sizeof junk);
    assert_int_equal(pwrite(fd, junk, 40, 0), 40);
    close(fd);
    log = open_ok(f, NULL, &info);
    assert_int_equal(info.first_version, 3);
    assert_int_equal(dr_plog_trim_below(log, 5), 0); /* writes slot A again */
    dr_plog_close(log);
    log = open_ok(f, NULL, &info);
    assert_int_equal(info.first_version, 5);
    dr_plog_close(log);
}

/* ---- disk full and I/O errors --------------------------------------------------------------- */

/* After a failed flush: only what was durable before is reported, read, or found at reopen. */
static void check_failed_log(fixture *f, dr_plog *log, int64_t durable_before) {
    int64_t durable = -7;
    assert_int_equal(dr_plog_flush(log, &durable), DR_EIO);
    assert_int_equal(durable, -7); /* not written */
    assert_int_equal(dr_plog_durable_version(log), durable_before);
    assert_int_equal(dr_plog_latest_version(log), durable_before);
    assert_int_equal(append_v(log, 1000, 99999, 1), DR_EIO);
    assert_int_equal(dr_plog_flush(log, &durable), DR_EIO);
    assert_int_equal(dr_plog_truncate_after(log, 1), DR_EIO);
    dr_plog_record rec;
    assert_int_equal(dr_plog_read(log, durable_before, &rec), 0);
    dr_plog_record_free(&rec);
    assert_int_equal(dr_plog_read(log, durable_before + 1, &rec), DR_ENOTFOUND);
    dr_plog_close(log);
    dr_plog_open_info info;
    log = open_ok(f, NULL, &info);
    assert_int_equal(info.latest_version, durable_before);
    dr_plog_close(log);
}

static void test_disk_full_injected(void **state) {
    fixture *f = *state;
    dr_plog_options opts;
    dr_plog_io io;
    hook h;
    hooked_options(&opts, &io, &h);
    dr_plog *log = open_ok(f, &opts, NULL);
    write_range(log, 0, 9);
    for (int64_t v = 10; v < 20; v++)
        assert_int_equal(append_v(log, v, 5000, 100), 0);
    h.write_budget = 250; /* a short write, then ENOSPC */
    int64_t durable = -7;
    assert_int_equal(dr_plog_flush(log, &durable), DR_EIO);
    assert_non_null(strstr(dr_plog_errmsg(log), "No space left"));
    check_failed_log(f, log, 9);
}

static void test_fdatasync_error_injected(void **state) {
    fixture *f = *state;
    dr_plog_options opts;
    dr_plog_io io;
    hook h;
    hooked_options(&opts, &io, &h);
    dr_plog *log = open_ok(f, &opts, NULL);
    write_range(log, 0, 4);
    write_range(log, 5, 9);
    for (int64_t v = 10; v < 20; v++)
        assert_int_equal(append_v(log, v, 5000, 100), 0);
    h.fail_fdatasync = 1; /* the data was written, but the sync failed: not durable */
    int64_t durable = -7;
    assert_int_equal(dr_plog_flush(log, &durable), DR_EIO);
    assert_non_null(strstr(dr_plog_errmsg(log), "fdatasync"));
    check_failed_log(f, log, 9);
}

/* A real write failure: the file-size limit of the process (EFBIG), no root needed. */
static void test_file_size_limit_real(void **state) {
    fixture *f = *state;
    dr_plog *log = open_ok(f, NULL, NULL);
    write_range(log, 0, 9);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < (rlim_t)offset_of(10) + 30000) {
        dr_plog_close(log);
        DR_SKIP("RLIMIT_FSIZE is already %llu bytes, below what this test needs",
                (unsigned long long)old.rlim_cur);
        return;
    }
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit low = old;
    low.rlim_cur = (rlim_t)offset_of(10) + 25000;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
    uint8_t *big = calloc(1, 10000);
    for (int64_t v = 10; v < 15; v++) /* 50 KB: beyond the limit */
        assert_int_equal(dr_plog_append(log, v, 5000, big, 10000), 0);
    int64_t durable = -7;
    int rc = dr_plog_flush(log, &durable);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    free(big);
    assert_int_equal(rc, DR_EIO);
    assert_non_null(strstr(dr_plog_errmsg(log), "write"));
    check_failed_log(f, log, 9);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_and_arguments_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_new_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_last_record_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mid_file_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hole_in_last_flush_is_a_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order_record_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_length_at_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_one_sync_per_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_during_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_by_version_and_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_and_truncate_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_injected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fdatasync_error_injected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit_real, setup, teardown),
    };
    return dr_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
