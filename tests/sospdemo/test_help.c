/*
 * Help that helps (issue 18 item 4): every program and sospdemo mode answers --help on stdout
 * with what it does, its options with their defaults and an example, and exits 0; a wrong
 * argument says what was wrong (on stderr, before the usage) and exits 2. Runs the built
 * binaries from $DR_BIN_DIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct run_output {
    int exit_code;
    char out[16384]; /* stdout */
    char err[16384]; /* stderr */
} run_output;

static void read_all(const char *path, char *buf, size_t cap) {
    FILE *in = fopen(path, "r");
    size_t got = in ? fread(buf, 1, cap - 1, in) : 0;
    buf[got] = '\0';
    if (in)
        fclose(in);
}

/* Runs "$DR_BIN_DIR/<program> <args>" with stdout and stderr kept apart. */
static void run(const char *program, const char *args, run_output *r) {
    const char *bin = getenv("DR_BIN_DIR");
    assert_non_null(bin);
    char out_path[] = "/tmp/test_help_out_XXXXXX", err_path[] = "/tmp/test_help_err_XXXXXX";
    int out_fd = mkstemp(out_path), err_fd = mkstemp(err_path);
    assert_true(out_fd >= 0 && err_fd >= 0);
    char command[2048];
    snprintf(command, sizeof command, "'%s/%s' %s >'%s' 2>'%s' </dev/null", bin, program, args,
             out_path, err_path);
    int status = system(command);
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    read_all(out_path, r->out, sizeof r->out);
    read_all(err_path, r->err, sizeof r->err);
    remove(out_path);
    remove(err_path);
}

/* --help: exit 0, on stdout, every text in `expected` (options, defaults, an example). */
static void expect_help(const char *program, const char *args, const char *const *expected) {
    run_output *r = calloc(1, sizeof *r);
    run(program, args, r);
    if (r->exit_code != 0)
        fail_msg("%s %s exited %d: %s%s", program, args, r->exit_code, r->out, r->err);
    for (size_t i = 0; expected[i]; i++) {
        if (!strstr(r->out, expected[i]))
            fail_msg("%s %s: no '%s' in:\n%s", program, args, expected[i], r->out);
    }
    assert_non_null(strstr(r->out, "example"));
    free(r);
}

/* A wrong argument: exit 2, `why` on stderr before the usage. */
static void expect_refusal(const char *program, const char *args, const char *why) {
    run_output *r = calloc(1, sizeof *r);
    run(program, args, r);
    const char *where = strstr(r->err, why);
    if (r->exit_code != 2 || !where)
        fail_msg("%s %s: exit %d, stderr:\n%s(expected 2 and '%s')", program, args, r->exit_code,
                 r->err, why);
    const char *usage = strstr(r->err, "usage");
    if (usage && usage < where)
        fail_msg("%s %s: the usage comes before the reason:\n%s", program, args, r->err);
    free(r);
}

static void test_sospdemo_help(void **state) {
    (void)state;
    const char *const overview[] = {"server", "client", "config", "28000", "18000", NULL};
    expect_help("sospdemo", "--help", overview);
    const char *const server[] = {"--SECTION/key=value",
                                  "derecho.cfg",
                                  "function_tier_base_port",
                                  "(28000)",
                                  "http_base_port (18000)",
                                  "timeout_ms",
                                  NULL};
    expect_help("sospdemo", "server --help", server);
    const char *const client[] = {"inference",
                                  "installmodel",
                                  "removemodel",
                                  "SOSPDEMO_CLIENT_TIMEOUT_MS",
                                  "(default 60000; installmodel 600000)",
                                  NULL};
    expect_help("sospdemo", "client --help", client);
    const char *const config[] = {"--SECTION/key=value", NULL};
    expect_help("sospdemo", "config --help", config);
}

static void test_sospdemo_wrong_arguments(void **state) {
    (void)state;
    run_output *r = calloc(1, sizeof *r);
    run("sospdemo", "frobnicate", r);
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "unknown mode 'frobnicate'"));
    /* stdout keeps the seed's usage text */
    assert_int_equal(strncmp(r->out, "Usage:./sospdemo <mode> <mode specific args>\n", 45), 0);
    run("sospdemo", "client 127.0.0.1:1 infer 1 x.jpg", r);
    assert_int_equal(r->exit_code, 2);
    assert_non_null(strstr(r->err, "unknown action 'infer'"));
    free(r);
}

static void test_tools_help(void **state) {
    (void)state;
    const char *const infer[] = {"classify",    "bench",        "--model",     "PREFIX",
                                 "(default 5)", "(default 10)", "--backend",   "default auto",
                                 "--preset",    "--threads",    "default 1,2", NULL};
    expect_help("derecho-infer", "--help", infer);
    expect_help("derecho-infer", "classify --help", infer);
    const char *const bench[] = {"--nodes",     "(default 3)",     "--senders", "(default: all N)",
                                 "--size",      "(default 1024)",  "--count",   "(default 10000)",
                                 "--window",    "(default 16)",    "--rpc",     "--runs",
                                 "--port-base", "(default 22000)", NULL};
    expect_help("derecho-bench", "--help", bench);
    const char *const sim[] = {
        "--seeds",         "(default 0..999)", "--seed",   "--time-budget-s",
        "(default 60)",    "--nodes",          "--faults", "--max-virtual-ms",
        "(default 30000)", "--trace",          NULL};
    expect_help("derecho-sim", "--help", sim);
}

static void test_tools_wrong_arguments(void **state) {
    (void)state;
    expect_refusal("derecho-sim", "--seeds 5", "--seeds wants a range A..B");
    expect_refusal("derecho-sim", "--bogus 1", "unknown argument --bogus");
    expect_refusal("derecho-infer", "classify --model m --top 0 x.jpg",
                   "--top wants a whole number from 1 to 16, not '0'");
    expect_refusal("derecho-infer", "classify --model m --backend gpu x.jpg",
                   "--backend wants auto, dnnl or sgemm, not 'gpu'");
    expect_refusal("derecho-infer", "classify x.jpg", "--model is required");
    expect_refusal("derecho-infer", "frobnicate", "unknown command 'frobnicate'");
    expect_refusal("derecho-bench", "--nodes 2 --senders 3",
                   "--senders 3 is more than the 2 node(s) of --nodes");
    expect_refusal("derecho-bench", "--nodes zero", "--nodes wants a whole number from 1 to 16");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sospdemo_help),
        cmocka_unit_test(test_sospdemo_wrong_arguments),
        cmocka_unit_test(test_tools_help),
        cmocka_unit_test(test_tools_wrong_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
