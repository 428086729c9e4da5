/*
 * Tests of whole-object durable files (src/persist/blob.c) in a temporary directory: round trip,
 * replacement, the sync sequence (one fdatasync, one directory fsync, counted through the hook),
 * a failed save keeping the old object, and damaged, oversized, missing or leftover files.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "derecho/error.h"
#include "persist/blob.h"

static char dir[256];

static int setup(void **state) {
    (void)state;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/blob-test-XXXXXX", tmp);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    return 0;
}

/* Counting / failing hook. */
typedef struct hook {
    int syncs, dir_syncs, fail_write;
} hook;

static ssize_t h_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t off) {
    hook *h = ctx;
    if (h->fail_write) {
        errno = ENOSPC;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

static int h_sync(void *ctx, int fd) {
    ((hook *)ctx)->syncs++;
    return fdatasync(fd);
}

static int h_dir(void *ctx, int fd) {
    ((hook *)ctx)->dir_syncs++;
    return fsync(fd);
}

static void expect_object(const char *name, const char *want) {
    uint8_t *bytes = NULL;
    size_t len = 99;
    dr_err err = {0};
    assert_int_equal(dr_blob_load(dir, name, 1 << 20, &bytes, &len, &err), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(bytes ? (const char *)bytes : "", want, len);
    free(bytes);
}

static void write_file(const char *name, const void *bytes, size_t len) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
}

static void test_round_trip_and_replace(void **state) {
    (void)state;
    hook h = {0};
    dr_plog_io io = {h_pwrite, h_sync, h_dir, &h};
    dr_err err = {0};
    assert_int_equal(dr_blob_save(dir, "view", "view 7: 0 1 2", 13, &io, &err), 0);
    assert_int_equal(h.syncs, 1);
    assert_int_equal(h.dir_syncs, 1);
    expect_object("view", "view 7: 0 1 2");
    assert_int_equal(dr_blob_save(dir, "view", "view 8: 0 2", 11, NULL, &err), 0);
    expect_object("view", "view 8: 0 2");
    assert_int_equal(dr_blob_save(dir, "empty", NULL, 0, NULL, &err), 0);
    expect_object("empty", "");
    /* a failed save leaves the previous object */
    h.fail_write = 1;
    assert_int_equal(dr_blob_save(dir, "view", "view 9", 6, &io, &err), DR_EIO);
    assert_non_null(strstr(err.msg, "No space left"));
    expect_object("view", "view 8: 0 2");
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/view.tmp", dir);
    assert_int_equal(access(tmp, F_OK), -1); /* the temporary file is gone */
}

static void test_bad_files(void **state) {
    (void)state;
    dr_err err = {0};
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(dr_blob_load(dir, "none", 100, &bytes, &len, &err), DR_ENOTFOUND);
    assert_int_equal(dr_blob_load(dir, "../x", 100, &bytes, &len, &err), DR_EINVAL);
    assert_int_equal(dr_blob_save(dir, "a/b", "x", 1, NULL, &err), DR_EINVAL);
    assert_int_equal(dr_blob_save(dir, "big", "0123456789", 10, NULL, &err), 0);
    assert_int_equal(dr_blob_load(dir, "big", 9, &bytes, &len, &err), DR_ETOOBIG);
    assert_null(bytes);
    /* every single-byte change and every truncation of a saved object is caught */
    char p[600];
    snprintf(p, sizeof p, "%s/big", dir);
    FILE *f = fopen(p, "rb");
    uint8_t orig[64];
    size_t n = fread(orig, 1, sizeof orig, f);
    fclose(f);
    assert_int_equal(n, 24 + 10);
    for (size_t i = 0; i < n; i++) {
        orig[i] ^= 0x10;
        write_file("big", orig, n);
        orig[i] ^= 0x10;
        int rc = dr_blob_load(dir, "big", 100, &bytes, &len, &err);
        assert_true(rc == DR_ECORRUPT || rc == DR_ETOOBIG);
        assert_null(bytes);
    }
    for (size_t cut = 0; cut < n; cut++) {
        write_file("big", orig, cut);
        assert_int_equal(dr_blob_load(dir, "big", 100, &bytes, &len, &err), DR_ECORRUPT);
    }
    /* a length field claiming 2^60 bytes is refused before allocating */
    uint8_t huge[24];
    memcpy(huge, orig, 24);
    huge[15] = 0x10;
    write_file("big", huge, 24);
    assert_int_equal(dr_blob_load(dir, "big", SIZE_MAX, &bytes, &len, &err), DR_ECORRUPT);
    /* a leftover temporary file from a crash does not matter */
    write_file("big", orig, n);
    write_file("big.tmp", "garbage", 7);
    expect_object("big", "0123456789");
    assert_int_equal(dr_blob_save(dir, "big", "new", 3, NULL, &err), 0);
    expect_object("big", "new");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_and_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
