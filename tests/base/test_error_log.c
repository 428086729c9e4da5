/* Unit tests for error strings, dr_err and log level handling (src/base). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

    dr_log_set_level(DR_LOGM_RPC, DR_LOG_OFF);
    assert_int_equal(dr_log_thresholds[DR_LOGM_RPC], DR_LOG_OFF);
    DR_ERROR(DR_LOGM_RPC, "must not be printed %d", 1);
    dr_log_set_all_levels(DR_LOG_TRACE);
    dr_log_set_node_id(7);
    DR_TRACE(DR_LOGM_RPC, "printed at trace with node id");
    dr_log_set_all_levels(DR_LOG_INFO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_err_set_formats_and_returns_code),
        cmocka_unit_test(test_log_levels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
