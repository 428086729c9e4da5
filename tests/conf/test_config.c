/*
 * Unit tests for the configuration layer (src/conf): the seed's 4-node sample, old and new
 * key names, profiles and fallbacks, overlay files, environment, overrides, and every
 * validation error with its file:line message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "derecho/config.h"

/* The seed's sample for node `id` of the 4-node cluster (facts from SEED-COMPAT.md). */
static void write_seed_sample(char *out, size_t len, unsigned id) {
    snprintf(out, len,
             "[DERECHO]\n"
             "leader_ip = 127.0.0.1\n"
             "leader_gms_port = 23580\n"
             "local_id = %u\n"
             "local_ip = 127.0.0.1\n"
             "gms_port = %u\n"
             "rpc_port = %u\n"
             "sst_port = %u\n"
             "rdmc_port = %u\n"
             "timeout_ms = 10000\n"
             "\n"
             "[SUBGROUP/DEFAULT]\n"
             "max_payload_size = 10240\n"
             "max_smc_payload_size = 10240\n"
             "block_size = 1048576\n"
             "window_size = 16\n"
             "rdmc_send_algorithm = binomial_send\n"
             "\n"
             "[SUBGROUP/FUNCTION_TIER]\n"
             "num_shards = 1\n"
             "min_nodes = 2\n"
             "max_nodes = 2\n"
             "\n"
             "[SUBGROUP/CATEGORIZER_TIER]\n"
             "max_payload_size = 104857600\n"
             "max_reply_payload_size = 131072\n"
             "num_shards = 1\n"
             "min_nodes = 2\n"
             "max_nodes = 2\n"
             "\n"
             "[RDMA]\n"
             "provider = sockets\n"
             "domain = lo\n"
             "\n"
             "[LOGGER]\n"
             "default_log_level = info\n",
             id, 23580 + id, 28366 + id, 37683 + id, 31675 + id);
}

static dr_config *load_ok(const char *text, const char *const *overrides, size_t count) {
    dr_config *config = NULL;
    dr_err err = {0};
    int rc = dr_config_load_string(text, "test.cfg", overrides, count, &config, &err);
    if (rc)
        fail_msg("unexpected error %d: %s", rc, err.msg);
    return config;
}

static void expect_error(const char *text, const char *const *overrides, size_t count,
                         int expected_code, const char *expected_message) {
    dr_config *config = NULL;
    dr_err err = {0};
    int rc = dr_config_load_string(text, "test.cfg", overrides, count, &config, &err);
    assert_int_equal(rc, expected_code);
    assert_null(config);
    if (!strstr(err.msg, expected_message))
        fail_msg("message '%s' lacks '%s'", err.msg, expected_message);
}

static void test_seed_sample_with_old_names(void **state) {
    (void)state;
    char text[4096];
    write_seed_sample(text, sizeof text, 2);
    dr_config *config = load_ok(text, NULL, 0);
    uint16_t port = 0;
    uint32_t value = 0;
    uint64_t big = 0;
    /* old names resolve to the new ones, and both names read the same value */
    assert_string_equal(dr_config_get(config, "DERECHO", "contact_ip"), "127.0.0.1");
    assert_int_equal(dr_config_get_u16(config, "DERECHO", "contact_port", &port), 0);
    assert_int_equal(port, 23580);
    assert_int_equal(dr_config_get_u16(config, "DERECHO", "leader_gms_port", &port), 0);
    assert_int_equal(port, 23580);
    assert_int_equal(dr_config_get_u16(config, "DERECHO", "state_transfer_port", &port), 0);
    assert_int_equal(port, 28368);
    assert_int_equal(dr_config_get_u32(config, "DERECHO", "heartbeat_ms", &value), 0);
    assert_int_equal(value, 10000);
    assert_int_equal(dr_config_get_u32(config, "DERECHO", "local_id", &value), 0);
    assert_int_equal(value, 2);
    assert_int_equal(dr_config_get_u16(config, "DERECHO", "gms_port", &port), 0);
    assert_int_equal(port, 23582);
    /* profiles, with fallback to DEFAULT and to built-in defaults */
    assert_int_equal(dr_config_subgroup_u64(config, "CATEGORIZER_TIER", "max_payload_size", &big),
                     0);
    assert_true(big == 104857600);
    assert_int_equal(
        dr_config_subgroup_u64(config, "categorizer_tier", "max_reply_payload_size", &big), 0);
    assert_true(big == 131072);
    assert_int_equal(dr_config_subgroup_u32(config, "FUNCTION_TIER", "window_size", &value), 0);
    assert_int_equal(value, 16);
    assert_int_equal(
        dr_config_subgroup_u64(config, "FUNCTION_TIER", "max_reply_payload_size", &big), 0);
    assert_true(big == 10240); /* built-in default */
    assert_int_equal(dr_config_subgroup_u32(config, "FUNCTION_TIER", "max_nodes", &value), 0);
    assert_int_equal(value, 2);
    assert_int_equal(dr_config_subgroup_u32(config, NULL, "num_shards", &value), DR_ENOTFOUND);
    assert_int_equal(dr_config_subgroup_u32(config, "UNKNOWN_PROFILE", "window_size", &value), 0);
    assert_int_equal(value, 16);
    /* logger module levels inherit the default level */
    assert_string_equal(dr_config_get(config, "LOGGER", "rpc_log_level"), "info");
    bool flag = true;
    assert_int_equal(dr_config_get_bool(config, "DERECHO", "disable_partitioning_safety", &flag),
                     0);
    assert_false(flag);
    /* dr_config_get_u64: the same value as the u32 getter; a string does not parse */
    assert_int_equal(dr_config_get_u64(config, "DERECHO", "heartbeat_ms", &big), 0);
    assert_true(big == 10000);
    assert_int_equal(dr_config_get_u64(config, "DERECHO", "contact_ip", &big), DR_EINVAL);
    dr_config_free(config);
}

static void test_new_names_and_later_value_wins(void **state) {
    (void)state;
    const char *text = "[DERECHO]\ncontact_ip = 10.0.0.1\nlocal_id = 0\nheartbeat_ms = 50\n"
                       "timeout_ms = 70\n";
    dr_config *config = load_ok(text, NULL, 0);
    uint32_t value = 0;
    assert_string_equal(dr_config_get(config, "DERECHO", "leader_ip"), "10.0.0.1");
    assert_int_equal(dr_config_get_u32(config, "derecho", "HEARTBEAT_MS", &value), 0);
    assert_int_equal(value, 70);
    assert_true(dr_config_is_set(config, "DERECHO", "heartbeat_ms"));
    assert_false(dr_config_is_set(config, "DERECHO", "gms_port"));
    dr_config_free(config);
}

static void test_overrides(void **state) {
    (void)state;
    char text[4096];
    write_seed_sample(text, sizeof text, 0);
    const char *overrides[] = {"DERECHO/local_id=3", "SUBGROUP/CATEGORIZER_TIER/max_nodes=5",
                               "DERECHO/leader_gms_port=24000", "LOGGER/rpc_log_level=trace"};
    dr_config *config = load_ok(text, overrides, 4);
    uint32_t value = 0;
    assert_int_equal(dr_config_get_u32(config, "DERECHO", "local_id", &value), 0);
    assert_int_equal(value, 3);
    assert_int_equal(dr_config_subgroup_u32(config, "CATEGORIZER_TIER", "max_nodes", &value), 0);
    assert_int_equal(value, 5);
    assert_string_equal(dr_config_get(config, "DERECHO", "contact_port"), "24000");
    assert_string_equal(dr_config_get(config, "LOGGER", "rpc_log_level"), "trace");
    assert_string_equal(dr_config_get(config, "LOGGER", "sst_log_level"), "info");
    dr_config_free(config);

    /* an override is checked like a file value and named in the message */
    const char *bad[] = {"DERECHO/gms_port=0"};
    expect_error(text, bad, 1, DR_ERANGE, "command line --DERECHO/gms_port=0");
    const char *malformed[] = {"DERECHO/local_id"};
    expect_error(text, malformed, 1, DR_EINVAL, "expected --SECTION/key=value");
    /* an override can supply a missing local_id */
    const char *id[] = {"DERECHO/local_id=7"};
    config = load_ok("[DERECHO]\ngms_port = 23587\n", id, 1);
    dr_config_free(config);
}

static void test_override_arg_detection(void **state) {
    (void)state;
    assert_true(dr_config_is_override_arg("--DERECHO/local_id=3"));
    assert_true(dr_config_is_override_arg("--SUBGROUP/X/min_nodes"));
    assert_false(dr_config_is_override_arg("--help"));
    assert_false(dr_config_is_override_arg("-DERECHO/local_id=3"));
    assert_false(dr_config_is_override_arg("--/local_id=3"));
    assert_false(dr_config_is_override_arg("--DERECHO/=3"));
    assert_false(dr_config_is_override_arg(NULL));
}

static void test_validation_errors(void **state) {
    (void)state;
    /* a name over 127 characters is refused, not cut (a cut name ending in a space read back
     * as another key: fuzz_config) */
    char long_key[300];
    snprintf(long_key, sizeof long_key, "[DERECHO]\nlocal_id = 1\n%0160d cluster: x\n", 7);
    expect_error(long_key, NULL, 0, DR_EINVAL,
                 "test.cfg:3: a section or key name longer than 127 characters");
    expect_error("[DERECHO]\nlocal_id = 1\n\ngms_port = 99999\n", NULL, 0, DR_ERANGE,
                 "test.cfg:4: [DERECHO] gms_port = 99999: port out of range (1..65535)");
    expect_error("[DERECHO]\nlocal_id = 1\ngms_port = many\n", NULL, 0, DR_EINVAL,
                 "test.cfg:3: [DERECHO] gms_port = many: not a port number");
    expect_error("[DERECHO]\nlocal_id = -1\n", NULL, 0, DR_EINVAL,
                 "test.cfg:2: [DERECHO] local_id = -1: not a number");
    expect_error("[DERECHO]\nlocal_id = 70000\n", NULL, 0, DR_ERANGE,
                 "test.cfg:2: [DERECHO] local_id = 70000: out of range (0..65535)");
    expect_error("[DERECHO]\ngms_port = 23580\n", NULL, 0, DR_EINVAL,
                 "[DERECHO] local_id is missing");
    expect_error("[DERECHO]\nlocal_id = 5\nmax_node_id = 5\n", NULL, 0, DR_ERANGE,
                 "test.cfg:2: [DERECHO] local_id = 5 must be below max_node_id = 5");
    expect_error("[DERECHO]\nlocal_id=0\n[SUBGROUP/A]\nnum_shards=1\nmin_nodes=3\nmax_nodes=2\n",
                 NULL, 0, DR_EINVAL,
                 "test.cfg:5: [SUBGROUP/A] min_nodes = 3 is greater than max_nodes = 2");
    expect_error("[DERECHO]\nlocal_id=0\n[SUBGROUP/A]\nnum_shards=1\nmin_nodes=1\n", NULL, 0,
                 DR_EINVAL, "test.cfg:4: [SUBGROUP/A] num_shards is set but max_nodes is missing");
    expect_error(
        "[DERECHO]\nlocal_id=0\n[SUBGROUP/DEFAULT]\nmax_reply_payload_size = 100\n", NULL, 0,
        DR_ERANGE,
        "test.cfg:4: [SUBGROUP/DEFAULT] max_reply_payload_size = 100: out of range (128..");
    expect_error("[DERECHO]\nlocal_id=0\nmax_p2p_reply_payload_size = 127\n", NULL, 0, DR_ERANGE,
                 "max_p2p_reply_payload_size = 127: out of range (128..");
    expect_error("[DERECHO]\nlocal_id=0\nlocal_ip = 300.1.1.1\n", NULL, 0, DR_EINVAL,
                 "test.cfg:3: [DERECHO] local_ip = 300.1.1.1: not an IP address");
    expect_error("[DERECHO]\nlocal_id=0\ndisable_partitioning_safety = maybe\n", NULL, 0, DR_EINVAL,
                 "not a boolean");
    expect_error("[DERECHO]\nlocal_id=0\n[SUBGROUP/DEFAULT]\nrdmc_send_algorithm = flood\n", NULL,
                 0, DR_EINVAL, "must be one of binomial_send|chain_send|sequential_send|tree_send");
    expect_error("[DERECHO]\nlocal_id=0\n[LOGGER]\ndefault_log_level = loud\n", NULL, 0, DR_EINVAL,
                 "test.cfg:4: [LOGGER] default_log_level = loud: must be one of trace");
    expect_error("[DERECHO]\nlocal_id=0\n[LAYOUT]\njson_layout=[]\njson_layout_file=a.json\n", NULL,
                 0, DR_EINVAL, "json_layout and json_layout_file are both set");
    expect_error("local_id = 0\n", NULL, 0, DR_EINVAL,
                 "test.cfg:1: key local_id outside of any [SECTION]");
    expect_error("[DERECHO\nlocal_id = 0\n", NULL, 0, DR_EINVAL, "test.cfg:1: syntax error");
    expect_error("[DERECHO]\nlocal_id = 0\nthis line has no equals sign\n", NULL, 0, DR_EINVAL,
                 "test.cfg:3: syntax error");
    char long_line[400];
    memset(long_line, 'x', sizeof long_line);
    memcpy(long_line, "[DERECHO]\nlocal_id = 0\nk = ", 27);
    long_line[sizeof long_line - 1] = '\0';
    expect_error(long_line, NULL, 0, DR_EINVAL, "test.cfg:3: line longer than");
}

static void test_unknown_keys_are_kept_not_fatal(void **state) {
    (void)state;
    dr_config *config = load_ok(
        "[DERECHO]\nlocal_id = 0\nfavourite_colour = blue\n[MYAPP]\nthreads = 4\n", NULL, 0);
    assert_string_equal(dr_config_get(config, "DERECHO", "favourite_colour"), "blue");
    assert_string_equal(dr_config_get(config, "MYAPP", "threads"), "4");
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *out = open_memstream(&printed, &printed_len);
    assert_int_equal(dr_config_write_ini(config, out), 0);
    fclose(out);
    assert_non_null(strstr(printed, "favourite_colour = blue ; unknown key (test.cfg:3)"));
    assert_non_null(strstr(printed, "[MYAPP]\nthreads = 4"));
    free(printed);
    dr_config_free(config);
}

static void test_effective_output_resolves_everything(void **state) {
    (void)state;
    char text[4096];
    write_seed_sample(text, sizeof text, 1);
    const char *overrides[] = {"DERECHO/local_id=3"};
    dr_config *config = load_ok(text, overrides, 1);
    char *printed = NULL;
    size_t printed_len = 0;
    FILE *out = open_memstream(&printed, &printed_len);
    assert_int_equal(dr_config_write_ini(config, out), 0);
    fclose(out);
    const char *derecho = strstr(printed, "[DERECHO]\n");
    const char *subgroup = strstr(printed, "[SUBGROUP/DEFAULT]\n");
    assert_non_null(derecho);
    assert_non_null(subgroup);
    const char *local_id = strstr(printed, "\nlocal_id = 3\n");
    assert_true(local_id && local_id > derecho && local_id < subgroup);
    assert_non_null(strstr(printed, "\ncontact_port = 23580\n")); /* old name → new */
    assert_non_null(strstr(printed, "\nstate_transfer_port = 28367\n"));
    assert_null(strstr(printed, "leader_gms_port"));
    /* the categorizer profile shows its own and inherited values */
    const char *categorizer = strstr(printed, "[SUBGROUP/CATEGORIZER_TIER]\n");
    assert_non_null(categorizer);
    assert_non_null(strstr(categorizer, "max_payload_size = 104857600\n"));
    assert_non_null(strstr(categorizer, "block_size = 1048576\n"));
    assert_non_null(strstr(printed, "sst_log_level = info\n"));
    free(printed);
    dr_config_free(config);
}

/* Files: main file, overlay, environment. Runs in a private temporary directory. */
static void write_file(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
}

static void test_files_overlay_and_environment(void **state) {
    (void)state;
    char dir[] = "/tmp/dr_conf_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char old_cwd[4096];
    assert_non_null(getcwd(old_cwd, sizeof old_cwd));
    assert_int_equal(chdir(dir), 0);
    unsetenv("DERECHO_CONF_FILE");
    unsetenv("DERECHO_NODE_CONF_FILE");

    dr_config *config = NULL;
    dr_err err = {0};
    assert_int_equal(dr_config_load(NULL, &config, &err), DR_EIO); /* no ./derecho.cfg */
    assert_non_null(strstr(err.msg, "derecho.cfg: cannot open"));

    write_file("derecho.cfg", "[DERECHO]\nlocal_id = 1\ngms_port = 23581\n");
    write_file("derecho_node.cfg", "[DERECHO]\nlocal_id = 2\n");
    assert_int_equal(dr_config_load(NULL, &config, &err), 0);
    uint32_t value = 0;
    assert_int_equal(dr_config_get_u32(config, "DERECHO", "local_id", &value), 0);
    assert_int_equal(value, 2); /* overlay wins over the main file */
    assert_string_equal(dr_config_get(config, "DERECHO", "gms_port"), "23581");
    dr_config_free(config);

    /* the overlay's errors name the overlay */
    write_file("derecho_node.cfg", "[DERECHO]\n\ngms_port = 0\n");
    assert_int_equal(dr_config_load(NULL, &config, &err), DR_ERANGE);
    assert_non_null(strstr(err.msg, "derecho_node.cfg:3: [DERECHO] gms_port = 0"));
    unlink("derecho_node.cfg");

    /* DERECHO_CONF_FILE names another main file; overrides still win */
    write_file("other.cfg", "[DERECHO]\nlocal_id = 9\n");
    setenv("DERECHO_CONF_FILE", "other.cfg", 1);
    const char *overrides[] = {"DERECHO/gms_port=23999"};
    dr_config_options options = {.overrides = overrides, .override_count = 1};
    assert_int_equal(dr_config_load(&options, &config, &err), 0);
    assert_int_equal(dr_config_get_u32(config, "DERECHO", "local_id", &value), 0);
    assert_int_equal(value, 9);
    assert_string_equal(dr_config_get(config, "DERECHO", "gms_port"), "23999");
    assert_string_equal(dr_config_source(config), "other.cfg");
    dr_config_free(config);

    /* an overlay named by the environment must exist */
    setenv("DERECHO_NODE_CONF_FILE", "missing_node.cfg", 1);
    assert_int_equal(dr_config_load(NULL, &config, &err), DR_EIO);
    assert_non_null(strstr(err.msg, "missing_node.cfg"));
    unsetenv("DERECHO_CONF_FILE");
    unsetenv("DERECHO_NODE_CONF_FILE");

    unlink("derecho.cfg");
    unlink("other.cfg");
    assert_int_equal(chdir(old_cwd), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_sample_with_old_names),
        cmocka_unit_test(test_new_names_and_later_value_wins),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_override_arg_detection),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_unknown_keys_are_kept_not_fatal),
        cmocka_unit_test(test_effective_output_resolves_everything),
        cmocka_unit_test(test_files_overlay_and_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
