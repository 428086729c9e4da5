/*
 * durable-bench: durable ordered puts acknowledged after global persistence (issue 14's
 * comparison with etcd). One process per group member; bench/durable_puts.sh starts them.
 *
 *   durable-bench CONFIG --members M --clients C [--value-bytes 10240] [--seconds 10]
 *                 [--warmup 2] [--latency-file PATH]
 *
 * Each process joins the group of CONFIG with one durable ordered subgroup type "KV" (profile
 * [SUBGROUP/KV], which must say `durable = true`), waits for a view of M members, then runs C
 * closed-loop clients (threads; 0: a member that only replicates): each puts a value of
 * --value-bytes (an ordered call "put" whose handler stores nothing: the log is the state) and
 * waits until the call's version is persisted at every member of the shard
 * (dr_rpc_results_wait_persisted, global) before the next put, as an etcd client waits for its
 * put's commit. Puts completed in the --warmup seconds are not counted; the measured part lasts
 * --seconds.
 *
 * The run checks its answers: every reply must be OK and every 16th acknowledged put is read
 * back from this node's log by its version (dr_group_read_versioned, exact) and its value's
 * bytes compared; any error or mismatch fails the run (exit 1). It prints
 *   RESULT bench=durable node=<id> clients=<C> value_bytes=<B> puts=<n> wall_s=<s>
 *          puts_per_s=<n/s> p50_ms=<> p99_ms=<> checked=<reads compared> cpu_s=<process CPU>
 * and, with --latency-file, every measured latency in µs (one per line) for the script to
 * merge. Then it waits for its standard input to close (the script's barrier: no member leaves
 * while another still measures) and leaves the group.
 */
#include "derecho/config.h"
#include "derecho/durable.h"
#include "derecho/group.h"
#include "derecho/log.h"
#include "derecho/rpc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CLIENTS = 256, CHECK_EVERY = 16, MAX_VALUE = 1 << 20 };

typedef struct bench_options {
    const char *config_path;
    const char *latency_file;
    uint32_t members, clients, value_bytes;
    double seconds, warmup;
} bench_options;

/** A sampled acknowledged put: its version and its value's hash (read back at the end). */
typedef struct put_check {
    int64_t version;
    uint64_t hash;
} put_check;

typedef struct client {
    pthread_t thread;
    uint32_t index;
    uint64_t *latencies_us; /* measured puts */
    size_t num_latencies, cap_latencies;
    put_check *checks; /* every CHECK_EVERY-th measured put */
    size_t num_checks, cap_checks;
    int error; /* first failure, 0 if none */
} client;

static struct {
    bench_options opts;
    dr_rpc_node *node;
    uint32_t my_id;
    double start_s, measure_s, end_s; /* monotonic seconds */
    client clients[MAX_CLIENTS];
} g_bench;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv(const uint8_t *bytes, size_t len) {
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ull;
    return hash;
}

static void fill_value(uint8_t *out, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (uint8_t)(seed >> 56);
    }
}

static int put_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                       dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len, (void)reply;
    return 0; /* the durable log holds the value */
}

static const dr_rpc_method methods[] = {
    {.name = "put", .kind = DR_RPC_ORDERED, .handler = put_handler}};

static bool push_u64(uint64_t **items, size_t *num, size_t *cap, uint64_t value) {
    if (*num == *cap) {
        size_t grown = *cap ? *cap * 2 : 4096;
        uint64_t *bigger = realloc(*items, grown * sizeof *bigger);
        if (bigger == NULL)
            return false;
        *items = bigger, *cap = grown;
    }
    (*items)[(*num)++] = value;
    return true;
}

static bool push_check(client *c, put_check check) {
    if (c->num_checks == c->cap_checks) {
        size_t grown = c->cap_checks ? c->cap_checks * 2 : 256;
        put_check *bigger = realloc(c->checks, grown * sizeof *bigger);
        if (bigger == NULL)
            return false;
        c->checks = bigger, c->cap_checks = grown;
    }
    c->checks[c->num_checks++] = check;
    return true;
}

/** One put: the call, every member's reply OK, then global persistence of its version. */
static int put_once(uint8_t *value, size_t len, int64_t *version) {
    dr_rpc_results *results = NULL;
    int rc = dr_rpc_ordered_call(g_bench.node, 0, "put", value, len, 10000, &results);
    if (rc != 0)
        return rc;
    size_t count = dr_rpc_results_count(results, 10000);
    rc = count == 0 ? DR_ETIMEDOUT : 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        dr_rpc_reply reply = {0};
        rc = dr_rpc_results_wait(results, i, 10000, &reply);
        if (rc == 0)
            rc = reply.status;
        dr_rpc_reply_clear(&reply);
    }
    if (rc == 0)
        rc = dr_rpc_results_wait_persisted(g_bench.node, 0, results, true, 10000);
    *version = dr_rpc_results_version(results);
    dr_rpc_results_free(results);
    return rc;
}

static void *client_main(void *arg) {
    client *c = arg;
    size_t len = g_bench.opts.value_bytes;
    uint8_t *value = malloc(len ? len : 1);
    if (value == NULL) {
        c->error = DR_ENOMEM;
        return NULL;
    }
    uint64_t seq = 0;
    while (c->error == 0) {
        double began = now_s();
        if (began >= g_bench.end_s)
            break;
        fill_value(value, len, ((uint64_t)g_bench.my_id << 48) ^ ((uint64_t)c->index << 32) ^ seq);
        int64_t version = -1;
        int rc = put_once(value, len, &version);
        double done = now_s();
        if (rc != 0) {
            c->error = rc;
            break;
        }
        if (began >= g_bench.measure_s && done <= g_bench.end_s) {
            bool ok = push_u64(&c->latencies_us, &c->num_latencies, &c->cap_latencies,
                               (uint64_t)((done - began) * 1e6));
            if (ok && c->num_latencies % CHECK_EVERY == 0)
                ok = push_check(c, (put_check){.version = version, .hash = fnv(value, len)});
            if (!ok)
                c->error = DR_ENOMEM;
        }
        seq++;
    }
    free(value);
    return NULL;
}

/** Reads every sampled put back from this node's log and compares its value. */
static int check_reads(uint64_t *checked) {
    dr_group *group = dr_rpc_node_group(g_bench.node);
    size_t len = g_bench.opts.value_bytes;
    for (uint32_t i = 0; i < g_bench.opts.clients; i++) {
        client *c = &g_bench.clients[i];
        for (size_t k = 0; k < c->num_checks; k++) {
            dr_versioned record = {0};
            int rc =
                dr_group_read_versioned(group, 0, DR_READ_EXACT, c->checks[k].version, &record);
            bool same = rc == 0 && record.len >= len &&
                        fnv(record.bytes + record.len - len, len) == c->checks[k].hash;
            dr_versioned_clear(&record);
            if (!same) {
                fprintf(stderr, "durable-bench: version %" PRId64 " read back %s\n",
                        c->checks[k].version, rc ? dr_strerror(rc) : "with other bytes");
                return rc ? rc : DR_ECORRUPT;
            }
            (*checked)++;
        }
    }
    return 0;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/** Merges the clients' latencies, prints the RESULT line, writes the latency file. */
static int report(uint64_t checked) {
    size_t total = 0;
    for (uint32_t i = 0; i < g_bench.opts.clients; i++)
        total += g_bench.clients[i].num_latencies;
    uint64_t *all = malloc((total ? total : 1) * sizeof *all);
    if (all == NULL)
        return DR_ENOMEM;
    size_t n = 0;
    for (uint32_t i = 0; i < g_bench.opts.clients; i++) {
        memcpy(all + n, g_bench.clients[i].latencies_us,
               g_bench.clients[i].num_latencies * sizeof *all);
        n += g_bench.clients[i].num_latencies;
    }
    qsort(all, n, sizeof *all, compare_u64);
    if (g_bench.opts.latency_file != NULL) {
        FILE *file = fopen(g_bench.opts.latency_file, "w");
        for (size_t i = 0; file != NULL && i < n; i++)
            fprintf(file, "%" PRIu64 "\n", all[i]);
        if (file == NULL || fclose(file) != 0)
            fprintf(stderr, "durable-bench: cannot write %s\n", g_bench.opts.latency_file);
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = (double)usage.ru_utime.tv_sec + (double)usage.ru_stime.tv_sec +
                 ((double)usage.ru_utime.tv_usec + (double)usage.ru_stime.tv_usec) / 1e6;
    double wall = g_bench.end_s - g_bench.measure_s;
    printf("RESULT bench=durable node=%u clients=%u value_bytes=%u puts=%zu wall_s=%.2f "
           "puts_per_s=%.0f p50_ms=%.3f p99_ms=%.3f checked=%" PRIu64 " cpu_s=%.2f\n",
           g_bench.my_id, g_bench.opts.clients, g_bench.opts.value_bytes, n, wall, (double)n / wall,
           n ? (double)all[n / 2] / 1000.0 : 0.0, n ? (double)all[n * 99 / 100] / 1000.0 : 0.0,
           checked, cpu);
    fflush(stdout);
    free(all);
    return n > 0 || g_bench.opts.clients == 0 ? 0 : DR_ETIMEDOUT;
}

static void usage(FILE *out) {
    fprintf(out, "durable-bench: durable ordered puts acknowledged after global persistence, one\n"
                 "process per member (bench/durable_puts.sh starts a 3-member run beside etcd).\n\n"
                 "usage: durable-bench CONFIG --members M --clients C [--value-bytes 10240]\n"
                 "                     [--seconds 10] [--warmup 2] [--latency-file PATH]\n\n"
                 "CONFIG needs [SUBGROUP/KV] with durable = true and [PERS] file_path. Prints a\n"
                 "RESULT line; exits 1 on any failed put or value read back wrong.\n"
                 "example: durable-bench node0.cfg --members 3 --clients 21 --seconds 10\n");
}

static int parse(int argc, char **argv, bench_options *o) {
    *o = (bench_options){
        .value_bytes = 10240, .seconds = 10, .warmup = 2, .members = 1, .clients = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (next && strcmp(arg, "--members") == 0) {
            o->members = (uint32_t)atoi(argv[++i]);
        } else if (next && strcmp(arg, "--clients") == 0) {
            o->clients = (uint32_t)atoi(argv[++i]);
        } else if (next && strcmp(arg, "--value-bytes") == 0) {
            o->value_bytes = (uint32_t)atoi(argv[++i]);
        } else if (next && strcmp(arg, "--seconds") == 0) {
            o->seconds = atof(argv[++i]);
        } else if (next && strcmp(arg, "--warmup") == 0) {
            o->warmup = atof(argv[++i]);
        } else if (next && strcmp(arg, "--latency-file") == 0) {
            o->latency_file = argv[++i];
        } else if (arg[0] != '-' && o->config_path == NULL) {
            o->config_path = arg;
        } else {
            fprintf(stderr, "durable-bench: unknown or incomplete argument '%s'\n", arg);
            return -1;
        }
    }
    if (o->config_path == NULL || o->members < 1 || o->clients > MAX_CLIENTS ||
        o->value_bytes > MAX_VALUE || o->seconds <= 0 || o->warmup < 0) {
        fprintf(stderr,
                "durable-bench: need CONFIG, 0 <= clients <= %d, value <= %d bytes, "
                "seconds > 0\n",
                MAX_CLIENTS, MAX_VALUE);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_options *o = &g_bench.opts;
    if (parse(argc, argv, o) != 0) {
        usage(stderr);
        return 2;
    }
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.file_path = o->config_path};
    if (dr_config_load(&options, &config, &err) != 0) {
        fprintf(stderr, "durable-bench: %s\n", err.msg);
        return 2;
    }
    dr_config_apply_logging(config);
    dr_layout_spec spec = {.num_types = 1};
    snprintf(spec.types[0].name, sizeof spec.types[0].name, "KV");
    spec.types[0].num_subgroups = 1;
    dr_rpc_type type = {.name = "KV", .methods = methods, .num_methods = 1};
    if (dr_group_policy_from_config(config, "KV", DR_MODE_ORDERED, &spec.types[0].policy, &err) ||
        dr_rpc_node_create(config, &spec, &type, 1, NULL, &g_bench.node, &err)) {
        fprintf(stderr, "durable-bench: cannot start: %s\n", err.msg);
        return 1;
    }
    dr_group *group = dr_rpc_node_group(g_bench.node);
    g_bench.my_id = dr_group_my_id(group);
    int rc = 0;
    int32_t next_vid = 0;
    for (double deadline = now_s() + 60; rc == 0;) { /* a view of every member */
        rc = dr_group_wait_view(group, next_vid, 1000);
        dr_group_view view;
        if (rc == 0)
            rc = dr_group_get_view(group, &view);
        if (rc == 0 && view.view.num_members >= o->members)
            break;
        if (rc == 0)
            next_vid = view.view.vid + 1;
        rc = (rc == DR_ETIMEDOUT || rc == DR_EAGAIN) && now_s() < deadline ? 0 : rc;
    }
    uint64_t checked = 0;
    if (rc == 0) {
        g_bench.start_s = now_s();
        g_bench.measure_s = g_bench.start_s + o->warmup;
        g_bench.end_s = g_bench.measure_s + o->seconds;
        uint32_t started = 0;
        for (; started < o->clients; started++) {
            g_bench.clients[started].index = started;
            if (pthread_create(&g_bench.clients[started].thread, NULL, client_main,
                               &g_bench.clients[started]) != 0)
                break;
        }
        for (uint32_t i = 0; i < started; i++) {
            pthread_join(g_bench.clients[i].thread, NULL);
            if (rc == 0 && g_bench.clients[i].error != 0)
                rc = g_bench.clients[i].error;
        }
        rc = rc == 0 && started < o->clients ? DR_ENOMEM : rc;
        if (rc == 0)
            rc = check_reads(&checked);
        if (rc == 0)
            rc = report(checked);
    }
    if (rc != 0)
        printf("FAIL node=%u %s\n", g_bench.my_id, dr_strerror(rc));
    fflush(stdout);
    char sink[64];
    while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    dr_group_leave(group, 5000);
    dr_rpc_node_destroy(g_bench.node);
    dr_config_free(config);
    for (uint32_t i = 0; i < o->clients; i++) {
        free(g_bench.clients[i].latencies_us);
        free(g_bench.clients[i].checks);
    }
    return rc == 0 ? 0 : 1;
}
