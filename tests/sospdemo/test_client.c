/*
 * The `sospdemo client` binary end to end against an in-process function tier (fake backend)
 * on 127.0.0.1:24201: seed output lines and exit codes for install, inference (multi-chunk,
 * several tags), remove; usage on bad arguments; files refused before anything is sent; a
 * server that is down; a photo over the server's limit; the progress bar only on a terminal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "client.h"
#include "fake_backend.h"
#include "function_tier.h"
#include "stream_helpers.h"

#include <grpc/grpc.h>

#include <fcntl.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ADDRESS   "127.0.0.1:24201"
#define NO_SERVER "127.0.0.1:24299"

typedef struct fixture {
    fake_backend fake;
    sd_function_tier *server;
    char dir[64];      /* temporary folder with the input files */
    char binary[4096]; /* path of the sospdemo binary */
} fixture;

/* The outcome of one run of the binary. */
typedef struct run_result {
    int exit_code;
    char out[8192];
    char err[8192];
} run_result;

static void read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

/* Runs the binary with args (NULL-terminated), stdout and stderr captured in files. */
static void run_client(fixture *fx, const char *const *args, run_result *r) {
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof(out_path), "%s/stdout", fx->dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", fx->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *argv[16];
        int n = 0;
        argv[n++] = fx->binary;
        for (; args[n - 1] && n < 15; n++)
            argv[n] = (char *)args[n - 1];
        argv[n] = NULL;
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        execv(fx->binary, argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    read_file(out_path, r->out, sizeof(r->out));
    read_file(err_path, r->err, sizeof(r->err));
}

static void write_file(fixture *fx, const char *name, const void *bytes, size_t len, char *path,
                       size_t path_cap) {
    snprintf(path, path_cap, "%s/%s", fx->dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
}

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof(*fx));
    fake_backend_init(&fx->fake);
    const char *bin_dir = getenv("DR_BIN_DIR");
    snprintf(fx->binary, sizeof(fx->binary), "%s/sospdemo", bin_dir ? bin_dir : "bin");
    strcpy(fx->dir, "/tmp/sospdemo_client_XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    sd_function_tier_config config = {
        .listen_address = ADDRESS,
        .limits = {.max_photo_bytes = 1 << 20},
    };
    sd_backend backend = fake_backend_interface(&fx->fake);
    dr_err err;
    *state = fx;
    return sd_function_tier_start(&config, &backend, &fx->server, &err);
}

static int teardown(void **state) {
    fixture *fx = *state;
    sd_function_tier_stop(fx->server);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
    if (system(cmd) != 0)
        return -1;
    fake_backend_destroy(&fx->fake);
    free(fx);
    return 0;
}

/* ---------------------------------------------------------------- the seed's story */

/* installmodel of a small model under tag, with the optional precision argument (NULL: none) */
static void install_precision(fixture *fx, uint32_t tag, const char *precision, run_result *r) {
    char synset[256], symbol[256], params[256], tag_text[16];
    const char synset_text[] = "n0001 rose\nn0002 tulip\n";
    uint8_t blob[70000];
    fill_pattern(blob, sizeof(blob), 9);
    write_file(fx, "synset.txt", synset_text, strlen(synset_text), synset, sizeof(synset));
    write_file(fx, "model-symbol.json", "{\"nodes\": []}", 13, symbol, sizeof(symbol));
    write_file(fx, "model-0040.params", blob, sizeof(blob), params, sizeof(params));
    snprintf(tag_text, sizeof(tag_text), "%u", tag);
    const char *args[] = {"client", ADDRESS, "installmodel", tag_text, synset,
                          symbol,   params,  precision,      NULL};
    run_client(fx, args, r);
}

static void install(fixture *fx, uint32_t tag, run_result *r) {
    install_precision(fx, tag, NULL, r);
}

static void test_install_inference_remove(void **state) {
    fixture *fx = *state;
    run_result r;
    install(fx, 1, &r);
    assert_string_equal(r.out, "Use function tier node: " ADDRESS "\n"
                               "return code:0\n"
                               "description:install model successfully.\n");
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(fake_snapshot(&fx->fake).last_synset, "n0001 rose\nn0002 tulip\n");
    assert_int_equal(fake_snapshot(&fx->fake).model_bytes[1], 23 + 13 + 70000);
    assert_int_equal(fake_snapshot(&fx->fake).last_precision, 0); /* not given: fp32 */
    assert_null(strstr(r.err, "Uploading")); /* stdout is not a terminal: no progress bar */

    enum { PHOTO = 100000 }; /* four 32 KiB chunks */
    static uint8_t photo[PHOTO];
    char photo_path[256];
    fill_pattern(photo, PHOTO, 5);
    write_file(fx, "photo.jpg", photo, PHOTO, photo_path, sizeof(photo_path));
    const char *infer[] = {"client", ADDRESS, "inference", "1,2", photo_path, NULL};
    run_client(fx, infer, &r);
    char *one = fake_describe(1, photo, PHOTO);
    char expected[512];
    snprintf(expected, sizeof(expected),
             "Use function tier node: " ADDRESS "\nphoto description:%s or Cannot find model "
             "for photo tag.\n",
             one);
    free(one);
    assert_string_equal(r.out, expected);
    /* the seed's line as before, but an error answer is an error: exit 1, its kind on stderr */
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "inference failed (no_model): "));
    const char *infer_one[] = {"client", ADDRESS, "inference", "1", photo_path, NULL};
    run_client(fx, infer_one, &r);
    assert_int_equal(r.exit_code, 0);

    const char *remove[] = {"client", ADDRESS, "removemodel", "1", NULL};
    run_client(fx, remove, &r);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "return code:0\n"));
    run_client(fx, remove, &r);
    assert_int_equal(r.exit_code, 1); /* non-zero return code */
    assert_non_null(strstr(r.out, "return code:-1\n"));

    install_precision(fx, 2, "auto", &r); /* the optional precision reaches the backend */
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(fake_snapshot(&fx->fake).last_precision, 2); /* DR_PRECISION_AUTO */
}

static void test_duplicate_install_fails(void **state) {
    fixture *fx = *state;
    run_result r;
    install(fx, 3, &r);
    assert_int_equal(r.exit_code, 0);
    install(fx, 3, &r);
    assert_int_equal(r.exit_code, 1);
    assert_string_equal(r.out, "Use function tier node: " ADDRESS "\n"
                               "return code:-1\n"
                               "description:install_model failed because tag (3) has been "
                               "taken.\n");
}

/* ---------------------------------------------------------------- refusals */

static void assert_usage(fixture *fx, const char *const *args) {
    run_result r;
    run_client(fx, args, &r);
    assert_int_equal(r.exit_code, 2);
    if (strncmp(r.out, "Usage:./sospdemo <mode> <mode specific args>\n", 45) != 0)
        fail_msg("no usage text for '%s %s %s %s': %s", args[0], args[1] ? args[1] : "",
                 args[1] && args[2] ? args[2] : "", args[1] && args[2] && args[3] ? args[3] : "",
                 r.out);
}

static void test_usage_on_bad_arguments(void **state) {
    fixture *fx = *state;
    const char *const none[] = {NULL};
    const char *const mode[] = {"nonsense", NULL};
    const char *const no_node[] = {"client", NULL};
    const char *const no_cmd[] = {"client", ADDRESS, NULL};
    const char *const bad_cmd[] = {"client", ADDRESS, "classify", "1", "x", NULL};
    const char *const short_inf[] = {"client", ADDRESS, "inference", "1", NULL};
    const char *const long_rm[] = {"client", ADDRESS, "removemodel", "1", "2", NULL};
    const char *const short_inst[] = {"client", ADDRESS, "installmodel", "1", "a", "b", NULL};
    assert_usage(fx, none);
    assert_usage(fx, mode);
    assert_usage(fx, no_node);
    assert_usage(fx, no_cmd);
    assert_usage(fx, bad_cmd);
    assert_usage(fx, short_inf);
    assert_usage(fx, long_rm);
    assert_usage(fx, short_inst);
    const char *const bad_precision[] = {"client", ADDRESS, "installmodel", "1", "a",
                                         "b",      "c",     "fp16",         NULL};
    assert_usage(fx, bad_precision);
    const char *const long_inst[] = {"client", ADDRESS, "installmodel", "1", "a",
                                     "b",      "c",     "bf16",         "x", NULL};
    assert_usage(fx, long_inst);
    const char *const bad_tags[] = {"",   "a",  "1,", ",1",         "1,,2", "-1",
                                    "+1", " 1", "1 ", "4294967296", "1;2",  "0x10"};
    for (size_t i = 0; i < sizeof(bad_tags) / sizeof(bad_tags[0]); i++) {
        const char *const args[] = {"client", ADDRESS, "inference", bad_tags[i], "/dev/null", NULL};
        assert_usage(fx, args);
    }
    const char *const bad_tag[] = {"client", ADDRESS, "removemodel", "1,2", NULL};
    assert_usage(fx, bad_tag);
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

static void test_tag_parser(void **state) {
    uint32_t tags[4];
    size_t n = 0;
    assert_int_equal(sd_parse_tags("1", tags, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sd_parse_tags("1,2,4294967295", tags, 4, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(tags[2], 4294967295u);
    assert_int_equal(sd_parse_tags("1,2,3,4,5", tags, 4, &n), DR_ERANGE);
    assert_int_equal(sd_parse_tags("99999999999999999999", tags, 4, &n), DR_ERANGE);
    assert_int_equal(sd_parse_tags("1,,2", tags, 4, &n), DR_EINVAL);
    assert_int_equal(n, 0);
    (void)state;
}

static void test_bad_files_refused_before_sending(void **state) {
    fixture *fx = *state;
    run_result r;
    char missing[256];
    snprintf(missing, sizeof(missing), "%s/no-such.jpg", fx->dir);
    const char *const photo_missing[] = {"client", ADDRESS, "inference", "1", missing, NULL};
    run_client(fx, photo_missing, &r);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "cannot open photo file"));
    const char *const photo_dir[] = {"client", ADDRESS, "inference", "1", fx->dir, NULL};
    run_client(fx, photo_dir, &r);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "is not a regular file"));
    char synset[256];
    write_file(fx, "s.txt", "x\n", 2, synset, sizeof(synset));
    const char *const params_missing[] = {"client", ADDRESS, "installmodel", "1",
                                          synset,   synset,  missing,        NULL};
    run_client(fx, params_missing, &r);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "cannot open params file"));
    sd_function_tier_stats stats;
    sd_function_tier_get_stats(fx->server, &stats);
    assert_int_equal(stats.calls_started, 0); /* nothing reached the server */
}

static void test_server_down_and_limits(void **state) {
    fixture *fx = *state;
    run_result r;
    const char *const down[] = {"client", NO_SERVER, "removemodel", "1", NULL};
    run_client(fx, down, &r);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "RPC failed: UNAVAILABLE"));

    static uint8_t big[(1 << 20) + 1];
    char path[256];
    write_file(fx, "big.jpg", big, sizeof(big), path, sizeof(path));
    const char *const too_big[] = {"client", ADDRESS, "inference", "1", path, NULL};
    run_client(fx, too_big, &r);
    assert_int_equal(r.exit_code, 1);
    assert_non_null(strstr(r.err, "RPC failed: INVALID_ARGUMENT (3): Whatsthis: photo_size "
                                  "1048577 exceeds the limit of 1048576 bytes"));
    assert_int_equal(fake_snapshot(&fx->fake).calls, 0);
}

/* The progress bar appears on stderr when stdout is a terminal. */
static void test_progress_bar_on_terminal(void **state) {
    fixture *fx = *state;
    static uint8_t photo[200000];
    char path[256], err_path[256];
    fake_backend_install(&fx->fake, 1); /* an answer, not "Cannot find model" (exit 1) */
    write_file(fx, "p.jpg", photo, sizeof(photo), path, sizeof(path));
    snprintf(err_path, sizeof(err_path), "%s/pty-stderr", fx->dir);
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(err, STDERR_FILENO);
        execl(fx->binary, fx->binary, "client", ADDRESS, "inference", "1", path, (char *)NULL);
        _exit(127);
    }
    char sink[4096];
    while (read(master, sink, sizeof(sink)) > 0)
        ; /* the terminal's output; EIO once the child is gone */
    int status = 0;
    waitpid(pid, &status, 0);
    close(master);
    char err_text[8192];
    read_file(err_path, err_text, sizeof(err_text));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(err_text, "Uploading ["));
    assert_non_null(strstr(err_text, "100% 200000/200000 bytes"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
    grpc_init();
    const struct CMUnitTest tests[] = {
        T(test_install_inference_remove),         T(test_duplicate_install_fails),
        T(test_usage_on_bad_arguments),           T(test_tag_parser),
        T(test_bad_files_refused_before_sending), T(test_server_down_and_limits),
        T(test_progress_bar_on_terminal),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    grpc_shutdown();
    return failed;
}
