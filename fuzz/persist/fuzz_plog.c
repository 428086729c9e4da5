/*
 * Fuzz target: a log file's bytes are untrusted (disk damage, another writer). The input becomes
 * a log file and is opened (the recovery scan: record checks, tail cut, limits), then every
 * read is tried. Byte 0 selects the layout: even = a valid header (taken from a freshly created
 * log) followed by the rest of the input as the records region; odd = the rest of the input is
 * the whole file (headers included); bit 1 of byte 0 sets cut_corrupt. Nothing may crash, leak,
 * or allocate beyond the limits. DR_FUZZ_SEED_DIR: a seed (a valid log of five records) is
 * written there at start-up.
 *   mkdir -p /tmp/fz/plog && DR_FUZZ_SEED_DIR=/tmp/fz/plog \
 *   build-fuzz/bin/fuzz/fuzz_persist_plog -max_total_time=60 -max_len=65536 /tmp/fz/plog
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "derecho/error.h"
#include "derecho/log.h"
#include "persist/plog.h"

#define HEADER_BYTES 8192

static char dir[256];                /* scratch directory of this process */
static char path[300];               /* dir/f.plog */
static uint8_t header[HEADER_BYTES]; /* the header pages of an empty log */

static ssize_t real_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off) {
    (void)ctx;
    return pwrite(fd, buf, len, off);
}

static int no_sync(void *ctx, int fd) { /* durability is not under test here: speed */
    (void)ctx;
    (void)fd;
    return 0;
}

static const dr_plog_io fast_io = {real_pwrite, no_sync, no_sync, NULL};

static void remove_scratch(void) {
    unlink(path);
    rmdir(dir);
}

/* With DR_FUZZ_SEED_DIR set: writes a seed input (layout 0, five records in two flushes). */
static void write_seed(void) {
    const char *seed_dir = getenv("DR_FUZZ_SEED_DIR");
    if (!seed_dir)
        return;
    dr_plog *log = NULL;
    if (dr_plog_open(dir, "s", NULL, &log, NULL, NULL) != 0)
        abort();
    uint8_t payload[64];
    memset(payload, 0x5a, sizeof payload);
    for (int64_t v = 0; v < 5; v++) {
        dr_plog_append(log, dr_plog_version(1, (uint32_t)v), 1000 + (uint64_t)v, payload,
                       (size_t)(v * 13));
        if (v == 2)
            dr_plog_flush(log, NULL);
    }
    dr_plog_flush(log, NULL);
    dr_plog_close(log);
    char src[400], dst[4200];
    snprintf(src, sizeof src, "%s/s.plog", dir);
    snprintf(dst, sizeof dst, "%s/plog-seed", seed_dir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out)
        abort();
    uint8_t buf[4096];
    size_t n;
    fputc(0, out);
    fseek(in, HEADER_BYTES, SEEK_SET);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    unlink(src);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dr_log_set_all_levels(DR_LOG_OFF);
    snprintf(dir, sizeof dir, "/tmp/fuzz-plog-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/f.plog", dir);
    dr_plog *log = NULL;
    if (dr_plog_open(dir, "f", NULL, &log, NULL, NULL) != 0)
        abort();
    dr_plog_close(log);
    FILE *f = fopen(path, "rb");
    if (!f || fread(header, 1, HEADER_BYTES, f) != HEADER_BYTES)
        abort();
    fclose(f);
    write_seed();
    atexit(remove_scratch);
    return 0;
}

static int visit(void *ctx, const dr_plog_record *rec) {
    *(uint64_t *)ctx += rec->len;
    return 0;
}

static void exercise(dr_plog *log) {
    dr_plog_record rec;
    if (dr_plog_read_latest(log, &rec) == 0)
        dr_plog_record_free(&rec);
    if (dr_plog_read_by_time(log, UINT64_MAX / 2, &rec) == 0)
        dr_plog_record_free(&rec);
    if (dr_plog_read_at_or_below(log, dr_plog_first_version(log) + 1, &rec) == 0)
        dr_plog_record_free(&rec);
    uint64_t bytes = 0;
    dr_plog_iterate(log, 0, INT64_MAX, visit, &bytes);
    dr_plog_trim_below(log, dr_plog_first_version(log) + 1);
    dr_plog_truncate_after(log, dr_plog_latest_version(log) - 1);
    uint8_t byte = 7;
    if (dr_plog_append(log, dr_plog_latest_version(log) + 1, UINT64_MAX / 2, &byte, 1) == 0)
        dr_plog_flush(log, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if ((data[0] & 1) == 0)
        fwrite(header, 1, HEADER_BYTES, f);
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    dr_plog_options opts;
    dr_plog_options_default(&opts);
    opts.limits.max_record_bytes = 1 << 20;
    opts.limits.max_log_entry = 4096;
    opts.limits.max_data_size = 8 << 20;
    opts.cut_corrupt = (data[0] & 2) != 0;
    opts.io = &fast_io;
    dr_plog *log = NULL;
    if (dr_plog_open(dir, "f", &opts, &log, NULL, NULL) == 0) {
        exercise(log);
        dr_plog_close(log);
    }
    return 0;
}
