/*
 * plog-bench: what the durable log (src/persist/plog.c) costs on a disk, beside the fsync floor
 * of ../shared/tools/peers/fsync-ref.sh. In a fresh directory it appends --count records of
 * --size bytes (default 10 KB), flushing (one write + one fdatasync) every --group records, and
 * reports records/s and per-commit latency p50/p99 (first append of a batch -> flush return).
 * Then it checks its answers: the log is reopened, must hold every record with the right
 * versions, and a sample of records is read back and compared byte for byte.
 *
 *   plog-bench [--dir DIR] [--count N] [--size BYTES] [--group G] [--keep]
 *
 *   --dir DIR    parent of the scratch directory (default /tmp); use the same file system as
 *                fsync-ref.sh --dir, and not tmpfs (fdatasync is free there)
 *   --group G    records per flush: 1 = a sync per record (single), 100 = group commit
 *   --keep       leave the scratch directory
 *
 * Last line: RESULT bench=plog size=... group=... count=... recs_per_s=... MB_per_s=...
 *   commit_p50_ms=... commit_p99_ms=... check=ok|FAILED
 */
#include "derecho/error.h"
#include "persist/plog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Command-line settings. */
typedef struct bench_args {
    const char *parent; /* scratch parent directory */
    long count;         /* records */
    long size;          /* payload bytes */
    long group;         /* records per flush */
    int keep;           /* keep the scratch dir */
} bench_args;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void fill(uint8_t *p, long v, long len) {
    for (long i = 0; i < len; i++)
        p[i] = (uint8_t)(v * 131 + i);
}

static int parse(int argc, char **argv, bench_args *a) {
    *a = (bench_args){"/tmp", 20000, 10240, 100, 0};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--keep") == 0) {
            a->keep = 1;
            continue;
        }
        if (!val)
            return -1;
        if (strcmp(opt, "--dir") == 0)
            a->parent = val;
        else if (strcmp(opt, "--count") == 0)
            a->count = atol(val);
        else if (strcmp(opt, "--size") == 0)
            a->size = atol(val);
        else if (strcmp(opt, "--group") == 0)
            a->group = atol(val);
        else
            return -1;
        i++;
    }
    return a->count > 0 && a->size >= 0 && a->size <= 64L * 1024 * 1024 && a->group > 0 ? 0 : -1;
}

/* Appends and flushes; fills lat_ms (one entry per commit) and *elapsed_s. */
static int run_writes(dr_plog *log, const bench_args *a, uint8_t *payload, double *lat_ms,
                      long *commits, double *elapsed_s) {
    double start = now_s(), batch_start = start;
    *commits = 0;
    for (long v = 0; v < a->count; v++) {
        if (v % a->group == 0)
            batch_start = now_s();
        fill(payload, v, a->size < 16 ? a->size : 16); /* vary each record a little */
        int rc = dr_plog_append(log, v, (uint64_t)v, payload, (size_t)a->size);
        if (rc == 0 && ((v + 1) % a->group == 0 || v + 1 == a->count)) {
            int64_t durable;
            rc = dr_plog_flush(log, &durable);
            if (rc == 0 && durable != v)
                rc = DR_ESTATE;
            lat_ms[(*commits)++] = (now_s() - batch_start) * 1e3;
        }
        if (rc != 0) {
            fprintf(stderr, "plog-bench: version %ld: %s: %s\n", v, dr_strerror(rc),
                    dr_plog_errmsg(log));
            return rc;
        }
    }
    *elapsed_s = now_s() - start;
    return 0;
}

/* Reopens the log and compares what it holds with what was written. */
static int check(const char *dir, const bench_args *a, uint8_t *payload) {
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    dr_plog *log = NULL;
    dr_plog_open_info info;
    dr_err err = {0};
    if (dr_plog_open(dir, "bench", &opts, &log, &info, &err) != 0) {
        fprintf(stderr, "plog-bench: reopen: %s\n", err.msg);
        return -1;
    }
    int ok = info.records == (uint64_t)a->count && info.bytes_cut == 0 &&
             info.latest_version == a->count - 1;
    for (long v = 0; ok && v < a->count; v += a->count / 50 + 1) {
        dr_plog_record rec;
        fill(payload, v, a->size < 16 ? a->size : 16);
        ok = dr_plog_read(log, v, &rec) == 0 && rec.len == (uint32_t)a->size &&
             (a->size == 0 || memcmp(rec.data, payload, (size_t)a->size) == 0);
        dr_plog_record_free(&rec);
    }
    dr_plog_close(log);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    bench_args a;
    if (parse(argc, argv, &a) != 0) {
        fprintf(stderr, "usage: plog-bench [--dir DIR] [--count N] [--size BYTES] [--group G] "
                        "[--keep]\n");
        return 2;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/plog-bench-XXXXXX", a.parent);
    uint8_t *payload = calloc(1, (size_t)a.size + 1);
    double *lat_ms = calloc((size_t)(a.count / a.group + 2), sizeof *lat_ms);
    if (!payload || !lat_ms || !mkdtemp(dir)) {
        perror("plog-bench: setup");
        return 1;
    }
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    dr_plog *log = NULL;
    dr_err err = {0};
    long commits = 0;
    double elapsed = 0;
    int rc = dr_plog_open(dir, "bench", &opts, &log, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "plog-bench: open: %s\n", err.msg);
    if (rc == 0)
        rc = run_writes(log, &a, payload, lat_ms, &commits, &elapsed);
    dr_plog_close(log);
    int checked = rc == 0 ? check(dir, &a, payload) : -1;
    if (rc == 0) {
        qsort(lat_ms, (size_t)commits, sizeof *lat_ms, cmp_double);
        printf("RESULT bench=plog size=%ld group=%ld count=%ld recs_per_s=%.0f MB_per_s=%.1f "
               "commit_p50_ms=%.3f commit_p99_ms=%.3f check=%s\n",
               a.size, a.group, a.count, (double)a.count / elapsed,
               (double)a.count * (double)a.size / elapsed / 1e6, lat_ms[commits / 2],
               lat_ms[(commits * 99) / 100 < commits ? (commits * 99) / 100 : commits - 1],
               checked == 0 ? "ok" : "FAILED");
    }
    if (!a.keep) {
        char path[4200];
        snprintf(path, sizeof path, "%s/bench.plog", dir);
        unlink(path);
        rmdir(dir);
    }
    free(payload);
    free(lat_ms);
    return rc == 0 && checked == 0 ? 0 : 1;
}
