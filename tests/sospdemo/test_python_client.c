/*
 * A Python client generated at test time from the seed's interface (seed_sospdemo.proto, with
 * Debian's python3-grpcio and python3-grpc-tools) works unchanged against our function tier
 * (in process, fake backend, 127.0.0.1:24301): install, Whatsthis, a malformed stream,
 * remove. Skipped, saying so, when /usr/bin/python3 lacks grpc or grpc_tools.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/skip.h"
#include "fake_backend.h"
#include "function_tier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define ADDRESS "127.0.0.1:24301"
#define PYTHON  "/usr/bin/python3"

static bool python_grpc_available(void) {
    return system(PYTHON " -c 'import grpc, grpc_tools.protoc' >/dev/null 2>&1") == 0;
}

/* Runs seed_client.py; returns its exit code and its stdout in out. */
static int run_seed_client(const char *work_dir, char *out, size_t cap) {
    const char *src = getenv("DR_SOURCE_DIR");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), PYTHON " %s/tests/sospdemo/seed_client.py %s %s 2>&1",
             src ? src : ".", ADDRESS, work_dir);
    FILE *pipe = popen(cmd, "r");
    if (!pipe)
        return -1;
    size_t n = fread(out, 1, cap - 1, pipe);
    out[n] = '\0';
    int status = pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_seed_python_client_works_unchanged(void **state) {
    (void)state;
    if (!python_grpc_available()) {
        DR_SKIP(PYTHON " has no grpc / grpc_tools (Debian python3-grpcio python3-grpc-tools)");
    }
    fake_backend fake;
    fake_backend_init(&fake);
    sd_function_tier_config config = {.listen_address = ADDRESS};
    sd_backend backend = fake_backend_interface(&fake);
    sd_function_tier *server = NULL;
    dr_err err;
    assert_int_equal(sd_function_tier_start(&config, &backend, &server, &err), 0);

    char work_dir[] = "/tmp/sospdemo_python_XXXXXX";
    assert_non_null(mkdtemp(work_dir));
    static char out[16384];
    int rc = run_seed_client(work_dir, out, sizeof(out));
    sd_function_tier_stop(server);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", work_dir);
    if (system(cmd) != 0)
        print_error("cannot remove %s\n", work_dir);
    if (rc != 0)
        fail_msg("seed_client.py exited %d:\n%s", rc, out);

    static uint8_t photo[70000];
    for (size_t i = 0; i < sizeof(photo); i++)
        photo[i] = (uint8_t)((i * 7 + 3) % 256);
    char *desc = fake_describe(7, photo, sizeof(photo));
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "install:0:install model successfully.\n"
             "whatsthis:%s\n"
             "invalid:INVALID_ARGUMENT:Whatsthis: the first message must carry metadata, got "
             "file_data\n"
             "remove:0:remove model successfully.\n",
             desc);
    free(desc);
    assert_string_equal(out, expected);
    assert_int_equal(fake_snapshot(&fake).model_bytes[7], 11 + 2 + 256 * 300);
    fake_backend_destroy(&fake);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_python_client_works_unchanged),
    };
    return dr_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
