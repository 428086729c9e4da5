/*
 * The request checks of apps/sospdemo/security.h and sd_dedup_tags in isolation: constant-time
 * comparison, bearer parsing (missing / malformed / wrong / right, the second token), Host and
 * Origin allow lists (loopback, ports, IPv6, DNS rebinding names, schemes), token files (size,
 * spaces, newline), the log rate limiter, tag merging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "security.h"
#include "upload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_secret_equal(void **state) {
    (void)state;
    assert_true(sd_secret_equal("abc", 3, "abc", 3));
    assert_false(sd_secret_equal("abc", 3, "abd", 3));
    assert_false(sd_secret_equal("abc", 3, "abcd", 4));
    assert_false(sd_secret_equal("abc", 3, "ab", 2));
    assert_false(sd_secret_equal("", 0, "a", 1));
    assert_true(sd_secret_equal("", 0, "", 0));
    /* a NUL inside the given value does not end the comparison early */
    assert_false(sd_secret_equal("ab\0d", 4, "ab\0c", 4));
}

static sd_auth_result bearer(const char *value, const char *needed, const char *also) {
    return sd_check_bearer(value, value ? strlen(value) : 0, needed, also);
}

static void test_bearer(void **state) {
    (void)state;
    const char *admin = "0123456789abcdef0123", *infer = "inference-token-xyz";
    assert_int_equal(bearer(NULL, NULL, NULL), SD_AUTH_OK); /* open method */
    assert_int_equal(bearer(NULL, admin, NULL), SD_AUTH_MISSING);
    assert_int_equal(bearer("", admin, NULL), SD_AUTH_MISSING);
    assert_int_equal(bearer("Basic abc", admin, NULL), SD_AUTH_MISSING);
    assert_int_equal(bearer("Bearer ", admin, NULL), SD_AUTH_MISSING);
    assert_int_equal(bearer("Bearer 0123456789abcdef0124", admin, NULL), SD_AUTH_DENIED);
    assert_int_equal(bearer("Bearer 0123456789abcdef0123", admin, NULL), SD_AUTH_OK);
    assert_int_equal(bearer("bearer  0123456789abcdef0123 ", admin, NULL), SD_AUTH_OK);
    assert_int_equal(bearer("Bearer 0123456789abcdef012", admin, NULL), SD_AUTH_DENIED);
    /* inference: its own token or the admin token */
    assert_int_equal(bearer("Bearer inference-token-xyz", infer, admin), SD_AUTH_OK);
    assert_int_equal(bearer("Bearer 0123456789abcdef0123", infer, admin), SD_AUTH_OK);
    assert_int_equal(bearer("Bearer inference-token-xyz", admin, NULL), SD_AUTH_DENIED);
}

static void test_host_and_origin(void **state) {
    (void)state;
    const char *allowed[] = {"10.0.0.5", "photos.example.org"};
    assert_true(sd_host_allowed(NULL, allowed, 2));
    assert_true(sd_host_allowed("localhost", allowed, 2));
    assert_true(sd_host_allowed("LOCALHOST:18000", allowed, 2));
    assert_true(sd_host_allowed("127.0.0.1:18000", allowed, 2));
    assert_true(sd_host_allowed("127.1.2.3", allowed, 2));
    assert_true(sd_host_allowed("[::1]:18000", allowed, 2));
    assert_true(sd_host_allowed("10.0.0.5:18000", allowed, 2));
    assert_true(sd_host_allowed("Photos.Example.org", allowed, 2));
    assert_false(sd_host_allowed("evil.example", allowed, 2));
    assert_false(sd_host_allowed("evil.example:18000", allowed, 2));
    assert_false(sd_host_allowed("localhost.evil.example", allowed, 2));
    assert_false(sd_host_allowed("127.0.0.1.evil.example", allowed, 2));
    assert_false(sd_host_allowed("128.0.0.1", allowed, 2));
    assert_false(sd_host_allowed("[::2]", allowed, 2));
    assert_false(sd_host_allowed(":18000", allowed, 2));
    assert_true(sd_origin_allowed(NULL, allowed, 2));
    assert_true(sd_origin_allowed("http://127.0.0.1:18000", allowed, 2));
    assert_true(sd_origin_allowed("https://photos.example.org", allowed, 2));
    assert_false(sd_origin_allowed("http://evil.example", allowed, 2));
    assert_false(sd_origin_allowed("null", allowed, 2));
    assert_false(sd_origin_allowed("file://localhost", allowed, 2));
}

static char *write_temp(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/sd_token_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_token_file(void **state) {
    (void)state;
    dr_err err = {0};
    char *token = NULL;
    char *path = write_temp("0123456789abcdef0123456789abcdef\n");
    assert_int_equal(sd_read_token_file(path, "admin token", &token, &err), 0);
    assert_string_equal(token, "0123456789abcdef0123456789abcdef");
    free(token);
    unlink(path);
    static const char *const bad[] = {"short\n", "has a space in it 0123456789\n", "", "\n\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        path = write_temp(bad[i]);
        token = NULL;
        assert_int_equal(sd_read_token_file(path, "admin token", &token, &err), DR_EINVAL);
        assert_null(token);
        assert_non_null(strstr(err.msg, path));
        unlink(path);
    }
    assert_int_equal(sd_read_token_file("/nonexistent/token", "admin token", &token, &err), DR_EIO);
    char big[2048];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    path = write_temp(big);
    assert_int_equal(sd_read_token_file(path, "admin token", &token, &err), DR_ETOOBIG);
    unlink(path);
}

static void test_ratelimit(void **state) {
    (void)state;
    sd_ratelimit rl;
    sd_ratelimit_init(&rl, 3, 60000);
    uint64_t suppressed = 99;
    for (int i = 0; i < 3; i++)
        assert_true(sd_ratelimit_allow(&rl, &suppressed));
    assert_int_equal(suppressed, 0);
    for (int i = 0; i < 1000; i++)
        assert_false(sd_ratelimit_allow(&rl, NULL));
    rl.window_start_ns -= 61000000000ull; /* the window ends */
    assert_true(sd_ratelimit_allow(&rl, &suppressed));
    assert_int_equal(suppressed, 1000);
    sd_ratelimit_destroy(&rl);
}

static void test_dedup_tags(void **state) {
    (void)state;
    uint32_t tags[] = {4, 4, 9, 4, 1, 9, 1};
    size_t n = sd_dedup_tags(tags, 7);
    assert_int_equal(n, 3);
    assert_int_equal(tags[0], 4);
    assert_int_equal(tags[1], 9);
    assert_int_equal(tags[2], 1);
    uint32_t same[64];
    for (int i = 0; i < 64; i++)
        same[i] = 1;
    assert_int_equal(sd_dedup_tags(same, 64), 1);
    assert_int_equal(sd_dedup_tags(same, 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_equal),    cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_host_and_origin), cmocka_unit_test(test_token_file),
        cmocka_unit_test(test_ratelimit),       cmocka_unit_test(test_dedup_tags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
