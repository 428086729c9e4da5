/*
 * A categorizer replica killed with kill -9 while requests flow: a 3-node cluster (ports
 * 26100-26199; node 0 function tier, nodes 1-2 one categorizer shard of min 1, max 2 nodes,
 * heartbeat 300 ms). Two threads send requests without pause; the replica is killed once
 * some were answered, and every request must succeed: those in flight or started between the
 * kill and the view change (the function tier retries a request whose replica vanished on the
 * other member; docs/sospdemo.md) and every one after it (node 0's log line "installed view
 * <next> with 2 members" marks the view change; then at least 6 more requests). Then the
 * killed node is restarted: it rejoins the shard and receives the installed model by state
 * transfer; the test asks both replicas directly (its own RPC client, not the service's
 * `consistent` flag) for the model list and for the photo's inference, and compares the
 * answers; then the original replica is killed in turn and the replacement answers alone.
 * Never skipped: a build without view changes fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "categorizer.h"
#include "cluster_harness.h"
#include "derecho/rpc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PORT_BASE 26100

static harness_cluster g_cluster;
static char g_args[1000];

/* Phases of a failover run, by the time a request started or ended. */
enum { BEFORE_KILL, WINDOW, RECOVERED, PHASES };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_answered = PTHREAD_COND_INITIALIZER; /* a request ended */
static bool g_stop;
static int g_phase;
static int g_ok[PHASES][PHASES], g_failed[PHASES][PHASES]; /* [start phase][end phase] */

/* A request thread: requests back to back until g_stop; counts by start and end phase. */
static void *request_loop(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_lock);
    while (!g_stop) {
        int start = g_phase;
        pthread_mutex_unlock(&g_lock);
        int rc = -1;
        char *out = harness_client(&g_cluster, 0, g_args, &rc);
        bool ok = rc == 0 && out && strstr(out, "photo description:n00000001 red circle\n");
        if (!ok)
            fprintf(stderr, "request failed (%d): %s", rc, out ? out : "(no output)\n");
        free(out);
        pthread_mutex_lock(&g_lock);
        (ok ? g_ok : g_failed)[start][g_phase]++;
        pthread_cond_broadcast(&g_answered);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* Answers (ok) among requests that started in phase `from` or later. Call with g_lock held. */
static int ok_started_since(int from) {
    int n = 0;
    for (int s = from; s < PHASES; s++)
        for (int e = 0; e < PHASES; e++)
            n += g_ok[s][e];
    return n;
}

/* Waits (g_lock held) up to timeout_s until ok_started_since(from) >= n. */
static bool wait_answers(int from, int n, int timeout_s) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_s;
    while (ok_started_since(from) < n)
        if (pthread_cond_timedwait(&g_answered, &g_lock, &deadline) != 0)
            return ok_started_since(from) >= n;
    return true;
}

/* The highest vid of node 0's "installed view <vid> with <members> members" lines, or -1. */
static int last_view_with(int members) {
    char path[700];
    snprintf(path, sizeof path, "%s/n0/server.log", g_cluster.dir);
    FILE *in = fopen(path, "r");
    if (!in)
        return -1;
    char line[4096];
    int last = -1;
    while (fgets(line, sizeof line, in)) {
        const char *at = strstr(line, "installed view ");
        int vid = -1, n = -1;
        if (at && sscanf(at, "installed view %d with %d members", &vid, &n) == 2 && n == members &&
            vid > last)
            last = vid;
    }
    fclose(in);
    return last;
}

/* Between attempts of a call that must succeed once a server is up (a retry with a deadline). */
static void retry_pause(void) {
    struct timespec pause = {0, 200 * 1000000L};
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

/* What one failover run saw. */
typedef struct failover_counts {
    int before_kill;  /* answered, started and ended before the kill */
    int window_ok;    /* answered, in flight at the kill or started before the view change */
    int recovered_ok; /* answered, started after the view change */
    int failed;       /* failed requests, whenever */
    bool view_changed;
    bool enough; /* every wait for answers ended in time */
} failover_counts;

/* Requests flow from two threads; `victim` is killed once 4 were answered; the run ends when
 * 6 requests started after the view change (node 0's log) were answered. */
static failover_counts run_requests_around(int victim) {
    failover_counts counts = {0};
    int old_vid = last_view_with(3);
    pthread_mutex_lock(&g_lock);
    g_stop = false;
    g_phase = BEFORE_KILL;
    memset(g_ok, 0, sizeof g_ok);
    memset(g_failed, 0, sizeof g_failed);
    pthread_mutex_unlock(&g_lock);
    pthread_t threads[2];
    for (int t = 0; t < 2; t++)
        pthread_create(&threads[t], NULL, request_loop, NULL);
    pthread_mutex_lock(&g_lock);
    counts.enough = wait_answers(BEFORE_KILL, 4, 60);
    g_phase = WINDOW;
    pthread_mutex_unlock(&g_lock);
    harness_kill9(&g_cluster, victim);
    char text[64];
    snprintf(text, sizeof text, "installed view %d with 2 members", old_vid + 1);
    counts.view_changed = old_vid >= 0 && harness_wait_log(&g_cluster, 0, text, 30);
    pthread_mutex_lock(&g_lock);
    g_phase = RECOVERED;
    counts.enough = wait_answers(RECOVERED, 6, 60) && counts.enough;
    g_stop = true;
    pthread_mutex_unlock(&g_lock);
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    counts.before_kill = g_ok[BEFORE_KILL][BEFORE_KILL];
    counts.window_ok = g_ok[BEFORE_KILL][WINDOW] + g_ok[BEFORE_KILL][RECOVERED] +
                       g_ok[WINDOW][WINDOW] + g_ok[WINDOW][RECOVERED];
    counts.recovered_ok = g_ok[RECOVERED][RECOVERED];
    for (int s = 0; s < PHASES; s++)
        for (int e = 0; e < PHASES; e++)
            counts.failed += g_failed[s][e];
    printf("kill -9 of node %d (view %d -> %d %s): %d answered before the kill, %d in flight or "
           "started before the view change, %d after it; %d failed\n",
           victim, old_vid, old_vid + 1, counts.view_changed ? "seen" : "NOT seen",
           counts.before_kill, counts.window_ok, counts.recovered_ok, counts.failed);
    return counts;
}

static void assert_failover(const failover_counts *counts) {
    assert_true(counts->enough);
    assert_true(counts->view_changed);
    assert_true(counts->before_kill > 0);
    assert_true(counts->window_ok > 0); /* at least the two requests in flight at the kill */
    assert_true(counts->recovered_ok >= 6);
    assert_int_equal(counts->failed, 0); /* the retry on the other replica: none fails */
}

/*
 * Asks categorizer nodes a and b directly (an outside RPC client of the group, as the function
 * tier's own calls): both must list the same models (tag, bytes, digest) and give the same
 * inference answer for the photo.
 */
static void assert_replicas_agree(int a, int b, const char *photo_path) {
    dr_err err = {0};
    dr_rpc_client *client = NULL;
    int rc = dr_rpc_client_create("127.0.0.1", (uint16_t)g_cluster.port_base, 10000, &client, &err);
    if (rc != DR_OK)
        fail_msg("rpc client: %s", err.msg);
    uint32_t subgroup = 0;
    assert_int_equal(dr_rpc_client_find_subgroup(client, SD_TYPE_CATEGORIZER_TIER, 0, &subgroup),
                     DR_OK);
    FILE *in = fopen(photo_path, "rb");
    assert_non_null(in);
    static uint8_t photo[1 << 20];
    size_t photo_len = fread(photo, 1, sizeof photo, in);
    fclose(in);
    assert_true(photo_len > 0 && photo_len < sizeof photo);
    dr_buf args;
    dr_buf_init(&args, 2u << 20);
    assert_int_equal(sd_inference_args_encode(&args, 1, photo, photo_len, 0), DR_OK);
    sd_model_info *lists[2] = {NULL, NULL};
    size_t counts[2] = {0, 0};
    char *descs[2] = {NULL, NULL};
    const int nodes[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        dr_rpc_reply reply;
        assert_int_equal(dr_rpc_client_call(client, (uint32_t)nodes[i], subgroup,
                                            SD_METHOD_LIST_MODELS, NULL, 0, 10000, &reply),
                         DR_OK);
        assert_int_equal(reply.status, DR_OK);
        assert_int_equal(sd_model_list_decode(reply.bytes, reply.len, &lists[i], &counts[i]),
                         DR_OK);
        dr_rpc_reply_clear(&reply);
        assert_int_equal(dr_rpc_client_call(client, (uint32_t)nodes[i], subgroup,
                                            SD_METHOD_INFERENCE, args.data, args.len, 30000,
                                            &reply),
                         DR_OK);
        assert_int_equal(reply.status, DR_OK);
        sd_tag_answer answer = {0};
        assert_int_equal(sd_inference_reply_decode(reply.bytes, reply.len, &answer), DR_OK);
        dr_rpc_reply_clear(&reply);
        printf("replica %d: %zu model(s), tag 1 digest %016llx; answer '%s'\n", nodes[i], counts[i],
               counts[i] ? (unsigned long long)lists[i][0].digest : 0ull,
               answer.desc ? answer.desc : "(none)");
        assert_int_equal(answer.kind, SD_ANSWER_OK);
        descs[i] = answer.desc;
        answer.desc = NULL;
        sd_tag_answer_clear(&answer);
    }
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(lists[0][0].tag, 1);
    assert_int_equal(lists[1][0].tag, 1);
    assert_int_equal(lists[0][0].bytes, lists[1][0].bytes);
    assert_true(lists[0][0].digest == lists[1][0].digest);
    assert_string_equal(descs[0], descs[1]);
    assert_non_null(strstr(descs[0], "red circle"));
    for (int i = 0; i < 2; i++) {
        free(lists[i]);
        free(descs[i]);
    }
    dr_buf_free(&args);
    dr_rpc_client_destroy(client);
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

    failover_counts counts = run_requests_around(2);
    assert_failover(&counts);

    /* node 2 comes back and rejoins the shard: it gets the model by state transfer (it was
     * never installed through it); then the original replica dies and it answers alone */
    assert_int_equal(harness_restart(&g_cluster, 2), 0);
    bool restored = harness_wait_log(&g_cluster, 2, "restored 1 models by state transfer", 60);
    printf("replacement node 2: %s\n",
           restored ? "restored the model by state transfer" : "no state transfer logged");
    assert_true(restored);
    assert_replicas_agree(1, 2, photo);
    counts = run_requests_around(1);
    assert_failover(&counts);
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
        retry_pause();
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
