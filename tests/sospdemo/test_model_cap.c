/*
 * [SOSPDEMO] max_models_per_shard end to end (issue 12 item 9): a real 3-node cluster on
 * 127.0.0.1 (ports 26500-26599, CTest resource lock): node 0 the function tier, nodes 1-2 one
 * categorizer shard of two replicas, the limit set to 1. The second model of the shard is
 * refused with a clear error (gRPC client: return code and description; HTTP: 413) and nothing
 * is installed; after the first is removed, the second installs; reinstalling a tag that is
 * already there still gets the categorizer's "taken" answer, not the limit's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PORT_BASE 26500

static harness_cluster g_cluster;
static char g_model[3][700];

static int setup(void **state) {
    (void)state;
    harness_options options = {.name = "model-cap",
                               .nodes = 3,
                               .function_nodes = 1,
                               .shards = 1,
                               .port_base = PORT_BASE,
                               .extra_config = "[SOSPDEMO]\nmax_models_per_shard = 1\n"};
    if (harness_start(&g_cluster, &options, 60) != 0)
        return -1;
    harness_source_path(&g_cluster, "models/demo-shapes/synset.txt", g_model[0], 700);
    harness_source_path(&g_cluster, "models/demo-shapes/shapes-symbol.json", g_model[1], 700);
    harness_source_path(&g_cluster, "models/demo-shapes/shapes-0000.params", g_model[2], 700);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    harness_stop(&g_cluster);
    return 0;
}

static void expect_client(const char *args, int exit_code, const char *contains) {
    int rc = -1;
    char *out = harness_client(&g_cluster, 0, args, &rc);
    assert_non_null(out);
    if (rc != exit_code || !strstr(out, contains))
        fprintf(stderr, "client %s -> %d:\n%s(expected %d and '%s')\n", args, rc, out, exit_code,
                contains);
    assert_int_equal(rc, exit_code);
    assert_non_null(strstr(out, contains));
    free(out);
}

static void install(uint32_t tag, int exit_code, const char *contains) {
    char args[4000];
    snprintf(args, sizeof args, "installmodel %u '%s' '%s' '%s'", tag, g_model[0], g_model[1],
             g_model[2]);
    expect_client(args, exit_code, contains);
}

static void test_second_model_of_a_shard_is_refused(void **state) {
    (void)state;
    install(1, 0, "return code:0");
    install(2, 1, "holds 1 models, the limit ([SOSPDEMO] max_models_per_shard)");
    install(1, 1, "has been taken"); /* the categorizer's answer: the tag is there */
    char url[128], command[4200];
    harness_http_base(&g_cluster, 0, url, sizeof url);
    snprintf(command, sizeof command,
             "curl -sS -o /dev/null -w '%%{http_code}' -X PUT -F 'synset=@%s' -F 'symbol=@%s' "
             "-F 'params=@%s' '%s/v1/models/3'",
             g_model[0], g_model[1], g_model[2], url);
    int rc = -1;
    char *out = harness_run(command, &rc);
    assert_non_null(out);
    if (strcmp(out, "413") != 0)
        fprintf(stderr, "HTTP install over the limit: %s\n", out);
    assert_string_equal(out, "413");
    free(out);
    expect_client("removemodel 1", 0, "return code:0");
    install(2, 0, "return code:0");
    expect_client("removemodel 2", 0, "return code:0");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_model_of_a_shard_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
