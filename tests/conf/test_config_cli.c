/*
 * Process test of `sospdemo config`: run the real binary in a folder holding a derecho.cfg
 * and check what a user debugging a cluster sees: resolved values, overrides, and a clear
 * non-zero exit naming the key and line of a bad value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char test_dir[] = "/tmp/dr_conf_cli_XXXXXX";

/* Runs `sospdemo config ARGS 2>&1` in test_dir; returns its exit status and output (owned). */
static int run_config(const char *args, char **output) {
    const char *bin_dir = getenv("DR_BIN_DIR");
    assert_non_null(bin_dir);
    char command[8192];
    snprintf(command, sizeof command, "cd %s && %s/sospdemo config %s 2>&1", test_dir, bin_dir,
             args);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len = fread(text, 1, cap - 1, pipe);
    text[len] = '\0';
    *output = text;
    int status = pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_cfg(const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/derecho.cfg", test_dir);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
}

static void test_override_shows_under_derecho(void **state) {
    (void)state;
    write_cfg("[DERECHO]\nleader_ip = 127.0.0.1\nlocal_id = 0\ngms_port = 23580\n"
              "[SUBGROUP/FUNCTION_TIER]\nnum_shards = 1\nmin_nodes = 1\nmax_nodes = 1\n");
    char *output = NULL;
    assert_int_equal(run_config("--DERECHO/local_id=3", &output), 0);
    const char *derecho = strstr(output, "[DERECHO]\n");
    const char *local_id = strstr(output, "\nlocal_id = 3\n");
    const char *next_section = derecho ? strstr(derecho + 1, "\n[") : NULL;
    assert_non_null(derecho);
    assert_non_null(local_id);
    assert_true(local_id > derecho && (!next_section || local_id < next_section));
    assert_non_null(strstr(output, "[SUBGROUP/FUNCTION_TIER]\n"));
    free(output);

    /* the two-argument form works too */
    assert_int_equal(run_config("--DERECHO/local_id 4", &output), 0);
    assert_non_null(strstr(output, "\nlocal_id = 4\n"));
    free(output);
}

static void test_bad_port_names_key_and_line(void **state) {
    (void)state;
    write_cfg("[DERECHO]\nlocal_id = 0\n# the next line is wrong\ngms_port = 99999\n");
    char *output = NULL;
    assert_int_not_equal(run_config("", &output), 0);
    assert_non_null(strstr(output, "derecho.cfg:4"));
    assert_non_null(strstr(output, "gms_port"));
    assert_non_null(strstr(output, "out of range"));
    free(output);
}

static void test_bad_argument_is_rejected(void **state) {
    (void)state;
    write_cfg("[DERECHO]\nlocal_id = 0\n");
    char *output = NULL;
    assert_int_not_equal(run_config("stray", &output), 0);
    assert_non_null(strstr(output, "unexpected argument 'stray'"));
    free(output);
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(test_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/derecho.cfg", test_dir);
    unlink(path);
    return rmdir(test_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_override_shows_under_derecho),
        cmocka_unit_test(test_bad_port_names_key_and_line),
        cmocka_unit_test(test_bad_argument_is_rejected),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
