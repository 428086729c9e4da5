/* Unit tests of src/base: error strings, dr_err, log levels, thresholds and the line format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <regex.h>
#include <stdatomic.h>
#include <unistd.h>

#include <cmocka.h>

#include "derecho/error.h"
#include "derecho/log.h"

static void test_error_strings(void **state) {
    (void)state;
    assert_string_equal(dr_strerror(DR_OK), "success");
    assert_string_equal(dr_strerror(DR_ETOOBIG), "too big");
    assert_string_equal(dr_strerror(-999), "unknown error");
    assert_string_equal(dr_strerror(5), "unknown error");
}

static void test_err_set_formats_and_returns_code(void **state) {
    (void)state;
    dr_err err;
    dr_err_clear(&err);
    assert_int_equal(dr_err_set(&err, DR_ERANGE, "port %d out of range", 99999), DR_ERANGE);
    assert_int_equal(err.code, DR_ERANGE);
    assert_string_equal(err.msg, "port 99999 out of range");
    assert_int_equal(dr_err_set(NULL, DR_EINVAL, "ignored"), DR_EINVAL);
    char longer[2 * DR_ERR_MSG_MAX];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    dr_err_set(&err, DR_EINVAL, "%s", longer);
    assert_int_equal(strlen(err.msg), DR_ERR_MSG_MAX - 1);
}

static void test_log_levels(void **state) {
    (void)state;
    dr_log_level level;
    assert_int_equal(dr_log_parse_level("TRACE", &level), 0);
    assert_int_equal(level, DR_LOG_TRACE);
    assert_int_equal(dr_log_parse_level("warning", &level), 0);
    assert_int_equal(level, DR_LOG_WARN);
    assert_int_equal(dr_log_parse_level("off", &level), 0);
    assert_int_equal(level, DR_LOG_OFF);
    assert_int_equal(dr_log_parse_level("loud", &level), DR_EINVAL);
    assert_string_equal(dr_log_module_name(DR_LOGM_VIEWMANAGER), "viewmanager");
    assert_null(dr_log_module_name(DR_LOGM_COUNT));

    assert_string_equal(dr_log_level_name(DR_LOG_WARN), "warn");
    assert_string_equal(dr_log_level_name((dr_log_level)99), "?");
}

/* What the logger writes to stderr while fn runs (a pipe stands in for fd 2). */
static char captured[8192];
static const char *capture_stderr(void (*fn)(void)) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    fn(); /* a few short lines: they fit in the pipe's buffer */
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    size_t n = 0;
    ssize_t got;
    while ((got = read(fds[0], captured + n, sizeof captured - 1 - n)) > 0)
        n += (size_t)got;
    close(fds[0]);
    captured[n] = '\0';
    return captured;
}

static void log_at_thresholds(void) {
    dr_log_set_all_levels(DR_LOG_INFO);
    dr_log_set_level(DR_LOGM_RPC, DR_LOG_OFF);
    DR_ERROR(DR_LOGM_RPC, "must not be printed %d", 1);
    dr_log_set_level(DR_LOGM_RPC, DR_LOG_WARN);
    DR_INFO(DR_LOGM_RPC, "below the threshold %d", 2);
    DR_WARN(DR_LOGM_RPC, "at the threshold %d", 3);
    DR_DEBUG(DR_LOGM_NET, "below the default %d", 4);
    DR_INFO(DR_LOGM_NET, "other module %s", "unaffected");
}

static void log_with_name_and_node(void) {
    dr_log_set_all_levels(DR_LOG_TRACE);
    dr_log_set_node_id(7);
    dr_log_set_name("unit_test");
    DR_TRACE(DR_LOGM_VIEWMANAGER, "printed at trace with node id %d", 7);
    dr_log_set_node_id(-1);
    dr_log_set_name("derecho_debug");
    dr_log_write(DR_LOGM_APP, DR_LOG_CRITICAL, "written directly");
}

/* Each line matches pattern (POSIX extended regex). */
static void assert_line(const char *line, const char *pattern) {
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    int match = regexec(&re, line, 0, NULL, 0);
    regfree(&re);
    if (match != 0)
        fail_msg("log line \"%s\" does not match %s", line, pattern);
}

static void test_log_thresholds(void **state) {
    (void)state;
    const char *out = capture_stderr(log_at_thresholds);
    assert_int_equal(dr_log_thresholds[DR_LOGM_RPC], DR_LOG_WARN);
    assert_int_equal(dr_log_thresholds[DR_LOGM_NET], DR_LOG_INFO);
    assert_null(strstr(out, "must not be printed"));
    assert_null(strstr(out, "below the"));
    char copy[sizeof captured];
    snprintf(copy, sizeof copy, "%s", out);
    char *save = NULL, *first = strtok_r(copy, "\n", &save), *second = strtok_r(NULL, "\n", &save);
    assert_non_null(first);
    assert_non_null(second);
    assert_null(strtok_r(NULL, "\n", &save)); /* exactly two lines */
    assert_line(first, "\\[warn\\] \\[rpc\\] at the threshold 3$");
    assert_line(second, "\\[info\\] \\[net\\] other module unaffected$");
    dr_log_set_all_levels(DR_LOG_INFO);
}

static void test_log_line_format(void **state) {
    (void)state;
    const char *out = capture_stderr(log_with_name_and_node);
    char copy[sizeof captured];
    snprintf(copy, sizeof copy, "%s", out);
    assert_int_equal(out[strlen(out) - 1], '\n');
    char *save = NULL, *first = strtok_r(copy, "\n", &save), *second = strtok_r(NULL, "\n", &save);
    assert_non_null(first);
    assert_non_null(second);
    assert_null(strtok_r(NULL, "\n", &save));
    /* [HH:MM:SS.uuuuuu] [name] [node N] [thread T] [level] [module] message */
    assert_line(first, "^\\[[0-2][0-9]:[0-5][0-9]:[0-6][0-9]\\.[0-9]{6}\\] \\[unit_test\\] "
                       "\\[node 7\\] \\[thread [0-9]+\\] \\[trace\\] \\[viewmanager\\] "
                       "printed at trace with node id 7$");
    /* node id -1 hides the node; dr_log_write writes whatever the threshold */
    assert_line(second, "^\\[[0-9:.]{15}\\] \\[derecho_debug\\] \\[thread [0-9]+\\] "
                        "\\[critical\\] \\[app\\] written directly$");
    dr_log_set_all_levels(DR_LOG_INFO);
}

/* dr_log_limit_allow: DR_LOG_LIMIT_LINES lines per window, then refused and counted; a new
 * window (the limiter's start moved back one window: no waiting) reports the dropped count. */
static void test_log_limit_allow(void **state) {
    (void)state;
    dr_log_limit limit = {0};
    unsigned int suppressed = 99;
    for (unsigned i = 0; i < DR_LOG_LIMIT_LINES; i++) {
        assert_int_equal(dr_log_limit_allow(&limit, &suppressed), 1);
        assert_int_equal(suppressed, 0);
    }
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(dr_log_limit_allow(&limit, &suppressed), 0);
        assert_int_equal(suppressed, 0);
    }
    atomic_store(&limit.window_start_ms,
                 atomic_load(&limit.window_start_ms) - DR_LOG_LIMIT_WINDOW_MS);
    assert_int_equal(dr_log_limit_allow(&limit, &suppressed), 1);
    assert_int_equal(suppressed, 3); /* the three refused in the previous window */
    assert_int_equal(dr_log_limit_allow(&limit, &suppressed), 1);
    assert_int_equal(suppressed, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_err_set_formats_and_returns_code),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_log_thresholds),
        cmocka_unit_test(test_log_line_format),
        cmocka_unit_test(test_log_limit_allow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
