/*
 * The web page in headless Chromium (Debian's chromium) against an in-process HTTP API with
 * the fake backend (127.0.0.1:24601): the page's scripts run and fill the model table and the
 * cluster view from the JSON API, and a screenshot is written to
 * $DR_BIN_DIR/../sospdemo-web-page.png. Skipped, saying so, when chromium is not installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/skip.h"
#include "fake_backend.h"
#include "http_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHROMIUM "/usr/bin/chromium"
#define URL      "http://127.0.0.1:24601/"
#define FLAGS                                                                                      \
    "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --virtual-time-budget=5000 "    \
    "--window-size=1100,1000"

/* Runs a shell command; returns its exit code and up to cap-1 bytes of its stdout. */
static int run_capture(const char *cmd, char *out, size_t cap) {
    FILE *pipe = popen(cmd, "r");
    if (!pipe)
        return -1;
    size_t n = 0, got;
    while (n + 1 < cap && (got = fread(out + n, 1, cap - 1 - n, pipe)) > 0)
        n += got;
    out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof(sink), pipe) > 0)
        ;
    int status = pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_page_renders_in_chromium(void **state) {
    (void)state;
    if (access(CHROMIUM, X_OK) != 0) {
        DR_SKIP(CHROMIUM " not installed (Debian package chromium)");
    }
    fake_backend fake;
    fake_backend_init(&fake);
    fake_backend_install(&fake, 3);
    sd_backend backend = fake_backend_interface(&fake);
    sd_http_hooks hooks = fake_backend_http_hooks(&fake);
    sd_http_config config = {.listen_ip = "127.0.0.1", .port = 24601};
    sd_http_api *api = NULL;
    dr_err err;
    assert_int_equal(sd_http_start(&config, &backend, &hooks, &api, &err), 0);

    static char dom[1 << 20];
    int dump_rc =
        run_capture(CHROMIUM " " FLAGS " --dump-dom " URL " 2>/dev/null", dom, sizeof(dom));
    const char *bin_dir = getenv("DR_BIN_DIR");
    char png[4096], cmd[8192];
    snprintf(png, sizeof(png), "%s/../sospdemo-web-page.png", bin_dir ? bin_dir : ".");
    unlink(png);
    snprintf(cmd, sizeof(cmd), CHROMIUM " " FLAGS " --screenshot=%s " URL " >/dev/null 2>&1", png);
    int shot_rc = system(cmd);
    sd_http_stop(api);
    fake_backend_destroy(&fake);

    assert_int_equal(dump_rc, 0);
    /* The scripts ran: the model table and the cluster view come from the JSON API. */
    assert_non_null(strstr(dom, "<td>3</td>"));
    assert_non_null(strstr(dom, "\"view_id\": 1")); /* the raw JSON, folded */
    assert_null(strstr(dom, "loading..."));
    /* the cluster drawn: tiers, a shard column, replicas coloured by health, the problem */
    assert_non_null(strstr(dom, "Categorizer tier"));
    assert_non_null(strstr(dom, "class=\"chip ok\""));
    assert_non_null(strstr(dom, "class=\"chip suspected\""));
    assert_non_null(strstr(dom, "href=\"http://127.0.0.1:18000/\""));
    assert_non_null(strstr(dom, "CATEGORIZER_TIER shard 0 needs 2, has 1: waiting for a node"));
    assert_non_null(strstr(dom, "tags 3"));
    /* the sample photos, one click away */
    assert_non_null(strstr(dom, "src=\"/samples/red-circle.jpg\""));
    assert_int_equal(shot_rc, 0);
    FILE *f = fopen(png, "rb");
    assert_non_null(f);
    unsigned char signature[8] = {0};
    assert_int_equal(fread(signature, 1, 8, f), 8);
    fclose(f);
    assert_memory_equal(signature, "\x89PNG\r\n\x1a\n", 8);
    struct stat st;
    assert_int_equal(stat(png, &st), 0);
    assert_true(st.st_size > 10000);
    print_message("screenshot: %s (%lld bytes)\n", png, (long long)st.st_size);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_renders_in_chromium),
    };
    return dr_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
