/*
 * A categorizer replica killed with kill -9 while requests flow: a 3-node cluster (ports
 * 26100-26199; node 0 function tier, nodes 1-2 one categorizer shard of min 1, max 2 nodes,
 * heartbeat 300 ms). Requests keep being answered by the survivor once the view changes
 * (the function tier retries a request whose replica vanished on the other member). Then the
 * killed node is restarted: it rejoins the shard and receives the installed model by state
 * transfer; the original replica is killed in turn and the replacement answers alone.
 * Never skipped: a build without view changes fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster_harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PORT_BASE 26100

static harness_cluster g_cluster;
static atomic_int g_stop, g_ok, g_failed, g_ok_after_recovery, g_failed_after_recovery;
static atomic_int g_recovery_window_over;
static char g_args[1000];

static void *request_loop(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        int rc = -1;
        char *out = harness_client(&g_cluster, 0, g_args, &rc);
        bool ok = rc == 0 && out && strstr(out, "photo description:n00000001 red circle\n");
        if (!ok && out)
            fprintf(stderr, "request failed (%d): %s", rc, out);
        free(out);
        atomic_fetch_add(ok ? &g_ok : &g_failed, 1);
        if (atomic_load(&g_recovery_window_over))
            atomic_fetch_add(ok ? &g_ok_after_recovery : &g_failed_after_recovery, 1);
    }
    return NULL;
}

static void sleep_s(double seconds) {
    struct timespec pause = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&pause, NULL);
}

/* Group teardown: no process outlives a failed assertion. */
static int stop_cluster(void **state) {
    (void)state;
    harness_stop(&g_cluster);
    return 0;
}

/* Installs the bundled demo model as tag 1 through node 0; photo gets the red-circle photo. */
static void install_demo_model(char *photo, size_t cap) {
    char synset[700], symbol[700], params[700], args[2200];
    harness_source_path(&g_cluster, "models/demo-shapes/synset.txt", synset, sizeof synset);
    harness_source_path(&g_cluster, "models/demo-shapes/shapes-symbol.json", symbol, sizeof symbol);
    harness_source_path(&g_cluster, "models/demo-shapes/shapes-0000.params", params, sizeof params);
    harness_source_path(&g_cluster, "models/demo-shapes/photos/red-circle.jpg", photo, cap);
    snprintf(args, sizeof args, "installmodel 1 '%s' '%s' '%s'", synset, symbol, params);
    int rc = -1;
    free(harness_client(&g_cluster, 0, args, &rc));
    assert_int_equal(rc, 0);
}

/* Requests flow from two threads; `victim` is killed after 1 s; the counters after a 6 s
 * recovery window must show only answers. *before_kill: answers before the kill. */
static void run_requests_around(int victim, int *before_kill) {
    atomic_store(&g_stop, 0);
    atomic_store(&g_ok, 0);
    atomic_store(&g_failed, 0);
    atomic_store(&g_ok_after_recovery, 0);
    atomic_store(&g_failed_after_recovery, 0);
    atomic_store(&g_recovery_window_over, 0);
    pthread_t threads[2];
    for (int t = 0; t < 2; t++)
        pthread_create(&threads[t], NULL, request_loop, NULL);
    sleep_s(1.0);
    *before_kill = atomic_load(&g_ok);
    harness_kill9(&g_cluster, victim);
    sleep_s(6.0); /* failure detection + view change */
    atomic_store(&g_recovery_window_over, 1);
    sleep_s(3.0);
    atomic_store(&g_stop, 1);
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
}

static void test_kill9_categorizer_replica(void **state) {
    (void)state;
    harness_options options = {.name = "failover",
                               .nodes = 3,
                               .function_nodes = 1,
                               .shards = 1,
                               .min_nodes = 1,
                               .port_base = PORT_BASE,
                               .heartbeat_ms = 300};
    assert_int_equal(harness_start(&g_cluster, &options, 60), 0);
    char photo[700];
    install_demo_model(photo, sizeof photo);
    snprintf(g_args, sizeof g_args, "inference 1 '%s'", photo);

    int before_kill = 0;
    run_requests_around(2, &before_kill);
    printf("kill -9: %d answered before the kill; %d answered, %d failed in all; after the "
           "recovery window %d answered, %d failed\n",
           before_kill, atomic_load(&g_ok), atomic_load(&g_failed),
           atomic_load(&g_ok_after_recovery), atomic_load(&g_failed_after_recovery));
    assert_true(before_kill > 0);
    assert_true(atomic_load(&g_ok_after_recovery) > 0);
    assert_int_equal(atomic_load(&g_failed_after_recovery), 0);

    /* node 2 comes back and rejoins the shard: it gets the model by state transfer (it was
     * never installed through it); then the original replica dies and it answers alone */
    assert_int_equal(harness_restart(&g_cluster, 2), 0);
    bool restored = harness_wait_log(&g_cluster, 2, "restored 1 models by state transfer", 60);
    printf("replacement node 2: %s\n",
           restored ? "restored the model by state transfer" : "no state transfer logged");
    assert_true(restored);
    run_requests_around(1, &before_kill);
    printf("kill -9 of the original replica: %d answered before; after the recovery window %d "
           "answered, %d failed\n",
           before_kill, atomic_load(&g_ok_after_recovery), atomic_load(&g_failed_after_recovery));
    assert_true(atomic_load(&g_ok_after_recovery) > 0);
    assert_int_equal(atomic_load(&g_failed_after_recovery), 0);
    harness_stop(&g_cluster);
    /* the survivors left cleanly */
    assert_int_equal(g_cluster.exit_codes[0], 0);
    assert_int_equal(g_cluster.exit_codes[2], 0);
}

/* A spare (unassigned at start) takes the place of the killed function-tier node, which was
 * also the group's leader: it starts the gRPC server when the new view assigns it, and answers
 * inference with the model installed before the failure. Ports 26200.. */
static void test_spare_takes_over_function_tier(void **state) {
    (void)state;
    harness_options options = {.name = "spare",
                               .nodes = 4,
                               .function_nodes = 1,
                               .spares = 1,
                               .shards = 1,
                               .min_nodes = 1,
                               .port_base = PORT_BASE + 100,
                               .heartbeat_ms = 300};
    assert_int_equal(harness_start(&g_cluster, &options, 60), 0);
    char photo[700], args[2200];
    install_demo_model(photo, sizeof photo);
    int rc = -1;
    assert_false(harness_log_contains(&g_cluster, 3, "joined the function tier"));
    harness_kill9(&g_cluster, 0);
    bool took_over = harness_wait_log(&g_cluster, 3, "This node joined the function tier", 30);
    printf("spare node 3: %s\n", took_over ? "joined the function tier" : "still unassigned");
    assert_true(took_over);
    snprintf(args, sizeof args, "inference 1 '%s'", photo);
    char *out = NULL;
    for (int attempt = 0; attempt < 50; attempt++) { /* its gRPC server comes up */
        free(out);
        out = harness_client(&g_cluster, 3, args, &rc);
        if (rc == 0)
            break;
        sleep_s(0.2);
    }
    printf("inference through node 3: rc %d: %s", rc, out ? out : "(no output)\n");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "photo description:n00000001 red circle\n"));
    free(out);
    harness_stop(&g_cluster);
    for (int i = 1; i < 4; i++)
        assert_int_equal(g_cluster.exit_codes[i], 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill9_categorizer_replica),
        cmocka_unit_test(test_spare_takes_over_function_tier),
    };
    return cmocka_run_group_tests(tests, NULL, stop_cluster);
}
