/*
 * The seed README's story on a 2-node cluster (ports 26200-26299; node 0 function tier,
 * node 1 categorizer): the server's printed lines, the real SqueezeNet MXNet model from
 * ../shared/testdata installed through the client classifying dog_winml.jpg as a golden
 * retriever through the whole cluster (SKIP without the test data), and ENTER stopping each
 * node cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster_harness.h"
#include "common/skip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PORT_BASE 26200

static harness_cluster g_cluster;

static int setup(void **state) {
    (void)state;
    harness_options options = {
        .name = "seed-story", .nodes = 2, .function_nodes = 1, .shards = 1, .port_base = PORT_BASE};
    return harness_start(&g_cluster, &options, 60);
}

static int teardown(void **state) {
    (void)state;
    harness_stop(&g_cluster);
    return 0;
}

static void test_server_lines(void **state) {
    (void)state;
    /* function tier: the banner framed by slashes, then the seed's two lines */
    assert_true(harness_log_contains(&g_cluster, 0, "//////////////////////////////////////////"));
    char line[128], address[64];
    harness_grpc_address(&g_cluster, 0, address, sizeof address);
    snprintf(line, sizeof line, "FunctionTier listening on %s\n", address);
    assert_true(harness_log_contains(&g_cluster, 0, line));
    for (int i = 0; i < 2; i++) {
        assert_true(harness_log_contains(&g_cluster, i, "Finished constructing derecho group."));
        assert_true(harness_log_contains(&g_cluster, i, "Press ENTER to stop."));
    }
    assert_false(harness_log_contains(&g_cluster, 1, "FunctionTier listening"));
}

static void test_squeezenet_golden_retriever(void **state) {
    (void)state;
    char data[700];
    snprintf(data, sizeof data, "%s/../shared/testdata", g_cluster.source_dir);
    if (access(data, R_OK) != 0) {
        DR_SKIP("%s not found (the SqueezeNet golden-retriever check needs it)", data);
    }
    char args[4000];
    snprintf(args, sizeof args,
             "installmodel 5 '%s/mxnet/squeezenet1.1/synset.txt' "
             "'%s/mxnet/squeezenet1.1/squeezenet1.1-symbol.json' "
             "'%s/mxnet/squeezenet1.1/squeezenet1.1-0000.params'",
             data, data, data);
    int rc = -1;
    char *out = harness_client(&g_cluster, 0, args, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "description:install model successfully."));
    free(out);
    snprintf(args, sizeof args, "inference 5 '%s/photos/dog_winml.jpg'", data);
    out = harness_client(&g_cluster, 0, args, &rc);
    printf("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "photo description:n02099601 golden retriever\n"));
    free(out);
}

/* ENTER stops node 0 cleanly. Node 1, alone in a 2-node group, then suspects half its view and
 * its group stops (partitioning safety): it says so and exits non-zero by itself (issue 18:
 * a node whose group stopped never serves); if it is still running, ENTER stops it cleanly. */
static void test_enter_stops_cleanly(void **state) {
    (void)state;
    harness_enter(&g_cluster, 0);
    assert_int_equal(harness_wait_exit(&g_cluster, 0, 20), 0);
    int exit_code = harness_wait_exit(&g_cluster, 1, 5);
    if (exit_code < 0) {
        harness_enter(&g_cluster, 1);
        assert_int_equal(harness_wait_exit(&g_cluster, 1, 20), 0);
    } else {
        assert_int_not_equal(exit_code, 0);
        assert_true(harness_log_contains(&g_cluster, 1, "no longer a member of the group"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_lines),
        cmocka_unit_test(test_squeezenet_golden_retriever),
        cmocka_unit_test(test_enter_stops_cleanly),
    };
    return dr_test_exit(cmocka_run_group_tests(tests, setup, teardown));
}
