/*
 * derecho-bench: bandwidth and latency of the group's multicast, beside raw loopback TCP
 * measured in the same run (in the spirit of Derecho's bandwidth_test and latency_test).
 *
 *   derecho-bench [--nodes N] [--senders S] [--size BYTES] [--count C] [--raw] [--window W]
 *                 [--latency] [--rpc MODE] [--runs R] [--port-base P] [--no-reference]
 *                 [--keys] [--encrypt] [--zero-copy]
 *       starts N local node processes on 127.0.0.1 (a 1-shard subgroup of all of them), R times;
 *   derecho-bench --node-config FILE [same options]
 *       runs as one node of a real cluster described by FILE (every node runs the same command;
 *       the nodes with the S lowest ids send).
 *
 * Throughput mode: the S senders each send C messages as fast as the window allows; every node
 * measures from its first to its last delivery, and the run's figure is the slowest node's
 * (messages/s, MB/s of delivered payload), plus the delivery latency (delivery time minus the
 * sender's timestamp, same host clock) percentiles. Latency mode (--latency): node 0 sends C
 * messages one at a time, each after its own previous one was delivered locally (stable at every
 * member); the figure is that send-to-delivery time, p50/p90/p99.
 * RPC mode (--rpc ordered|p2p|client): node 0 makes C calls one at a time with --size bytes of
 * arguments: `ordered` multicasts an ordered call in the shard of all nodes and waits for every
 * member's (empty) reply; `p2p` calls node 1 (node 0 itself when alone), whose handler echoes the
 * arguments; `client` is the same p2p call made by an outside client (dr_rpc_client, in node
 * 0's process, connected to the contact). The figure is the call's round trip at the caller,
 * p50/p90/p99 (after C/10 warm-up calls).
 * The reference: dr_tcp_ref_bandwidth for the same message size and dr_tcp_ref_rtt for the same
 * size, sleeping and polling.
 *
 * Every run checks its results: message `seq` of a sender carries a pattern derived from
 * (sender id, seq, offset), every byte up to 64 KiB and the first and last 8 bytes of every
 * 4 KiB page above; each node checks each delivery against the next seq it expects from that
 * sender (so FIFO order, no loss, no duplicate, the right bytes) and keeps a running hash of
 * the delivery order. A run fails (exit 1) when a node counts a wrong message, delivers another
 * number of messages than expected, or (ordered mode) the nodes' order hashes differ. Each
 * node also reports its process CPU time (user + system) from the full view to its last
 * delivery; the sum over the nodes divided by the messages multicast is printed as CPU time per
 * delivered message. A run ends with a clean leave of every node at once (dr_group_leave: the
 * last member to leave ends the group), so no member sees the others vanish.
 */
#include "derecho/config.h"
#include "derecho/group.h"
#include "derecho/log.h"
#include "derecho/rpc.h"
#include "tcp_ref.h"

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    MAX_NODES = 16,
    MAX_RUNS = 50,
    MAX_SENDER_IDS = 64,          /* distinct sender ids a node tracks */
    FULL_CHECK_BYTES = 64 * 1024, /* messages up to this size are checked byte by byte */
    CHECK_PAGE = 4096,            /* larger ones: first and last word of every page */
    MAX_REPORTED_BAD = 5          /* wrong messages described on stderr, per node */
};

typedef struct bench_options {
    int nodes;               /* local nodes to start */
    int senders;             /* sending nodes (lowest ids) */
    size_t size;             /* message bytes */
    uint64_t count;          /* messages per sender */
    bool raw;                /* raw (unordered) delivery */
    bool zero_copy;          /* --zero-copy: dr_group_alloc_send_buffer + dr_group_send_buffer */
    int window;              /* window_size */
    long long window_bytes;  /* window_bytes; -1: the configuration's default */
    bool latency;            /* latency mode */
    int runs;                /* repetitions (local mode) */
    int port_base;           /* first gms port */
    bool reference;          /* measure raw TCP too */
    bool keys;               /* authenticated group port (cluster and client keys) */
    bool encrypt;            /* sealed group port (AES-256-GCM; implies keys) */
    const char *node_config; /* run as one node of this cluster */
    int as_node;             /* internal: child process index, -1 for the parent */
    const char *rpc;         /* "ordered" or "p2p": RPC round-trip mode; NULL otherwise */
} bench_options;

/* What one node measured. */
typedef struct node_result {
    double seconds;                  /* first to last delivery */
    uint64_t delivered;              /* messages */
    uint64_t p50_us, p90_us, p99_us; /* latency percentiles */
    uint64_t bad;                    /* deliveries that failed the check */
    uint64_t order_hash;             /* running hash of (sender, seq) in delivery order */
    uint64_t cpu_us;                 /* process CPU time, full view to last delivery */
} node_result;

/* ---- message content ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The pattern word at 8-byte-aligned offset `offset` of message `seq` of `sender`. */
static uint64_t pattern_word(uint64_t base, size_t offset) {
    return base ^ ((uint64_t)(offset / 8) * 0x9e3779b97f4a7c15ull);
}

/* Writes (write) or checks one pattern word of at most 8 bytes at buf + offset. */
static bool pattern_at(uint8_t *buf, size_t len, size_t offset, uint64_t base, bool write) {
    uint64_t word = pattern_word(base, offset);
    size_t n = len - offset < 8 ? len - offset : 8;
    if (write) {
        memcpy(buf + offset, &word, n);
        return true;
    }
    return memcmp(buf + offset, &word, n) == 0;
}

/*
 * Writes or checks the pattern of message `seq` of `sender` in buf[0..len): every word up to
 * FULL_CHECK_BYTES, else the first and last word of every CHECK_PAGE bytes and the last word.
 * Returns false on the first mismatch (check mode).
 */
static bool pattern_apply(uint8_t *buf, size_t len, uint32_t sender, uint64_t seq, bool write) {
    uint64_t base = mix64(((uint64_t)sender << 40) ^ seq ^ 0x5eedull);
    if (len <= FULL_CHECK_BYTES) {
        for (size_t offset = 0; offset < len; offset += 8)
            if (!pattern_at(buf, len, offset, base, write))
                return false;
        return true;
    }
    for (size_t page = 0; page < len; page += CHECK_PAGE) {
        if (!pattern_at(buf, len, page, base, write))
            return false;
        if (page + CHECK_PAGE - 8 < len &&
            !pattern_at(buf, len, page + CHECK_PAGE - 8, base, write))
            return false;
    }
    return pattern_at(buf, len, (len - 1) & ~(size_t)7, base, write);
}

static uint64_t cpu_now_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/* ---- one node ------------------------------------------------------------------------------- */

typedef struct node_run {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t expected; /* deliveries to wait for */
    uint64_t delivered;
    uint64_t first_ns, last_ns;
    uint64_t *latency_us; /* one sample per delivery (throughput) or per send (latency) */
    uint64_t samples;
    uint32_t my_id;
    bool latency_mode;
    uint64_t own_delivered; /* latency mode: my own messages delivered */
    size_t size;            /* expected payload bytes */
    uint64_t bad;           /* deliveries that failed the check */
    uint64_t order_hash;    /* FNV-1a over (sender id, seq) of every delivery, in order */
    uint32_t sender_ids[MAX_SENDER_IDS];
    uint64_t next_seq[MAX_SENDER_IDS]; /* next seq expected from sender_ids[i] */
    uint32_t num_senders;
} node_run;

/* Checks one delivery against the next seq of its sender; called under run->lock. */
static void check_delivery(node_run *run, const dr_message *message) {
    uint32_t k = 0;
    while (k < run->num_senders && run->sender_ids[k] != message->sender_id)
        k++;
    if (k == run->num_senders && k < MAX_SENDER_IDS) {
        run->sender_ids[k] = message->sender_id;
        run->next_seq[k] = 0;
        run->num_senders++;
    }
    uint64_t seq = k < MAX_SENDER_IDS ? run->next_seq[k]++ : UINT64_MAX;
    uint64_t key[2] = {message->sender_id, seq};
    const uint8_t *bytes = (const uint8_t *)key;
    for (size_t i = 0; i < sizeof key; i++)
        run->order_hash = (run->order_hash ^ bytes[i]) * 1099511628211ull;
    const char *wrong =
        k == MAX_SENDER_IDS         ? "too many senders"
        : message->len != run->size ? "wrong length"
        : !pattern_apply((uint8_t *)message->bytes, message->len, message->sender_id, seq, false)
            ? "wrong bytes (lost, duplicated, reordered or corrupted)"
            : NULL;
    if (!wrong)
        return;
    if (run->bad++ < MAX_REPORTED_BAD)
        fprintf(stderr,
                "derecho-bench: node %u: WRONG message from %u (its seq %" PRIu64
                " expected, index "
                "%" PRId64 ", %zu bytes): %s\n",
                run->my_id, message->sender_id, seq, message->index, message->len, wrong);
}

static uint64_t realtime_us(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

static void on_deliver(void *ctx, const dr_message *message) {
    node_run *run = ctx;
    uint64_t now = dr_bench_now_ns();
    uint64_t now_us = realtime_us();
    pthread_mutex_lock(&run->lock);
    if (!run->delivered)
        run->first_ns = now;
    run->last_ns = now;
    run->delivered++;
    if (!run->latency_mode && run->samples < run->expected)
        run->latency_us[run->samples++] =
            now_us > message->timestamp_us ? now_us - message->timestamp_us : 0;
    if (message->sender_id == run->my_id)
        run->own_delivered++;
    check_delivery(run, message);
    pthread_cond_broadcast(&run->cond);
    pthread_mutex_unlock(&run->lock);
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t percentile(const uint64_t *sorted, uint64_t n, double p) {
    if (!n)
        return 0;
    uint64_t index = (uint64_t)(p * (double)(n - 1) + 0.5);
    return sorted[index];
}

static int load_node_config(const bench_options *options, const char *path, dr_config **config,
                            dr_layout_spec *spec) {
    dr_err err = {0};
    dr_config_options config_options = {.file_path = path};
    if (dr_config_load(&config_options, config, &err) ||
        dr_group_policy_from_config(*config, "BENCH", options->raw ? DR_MODE_RAW : DR_MODE_ORDERED,
                                    &spec->types[0].policy, &err)) {
        fprintf(stderr, "derecho-bench: %s\n", err.msg);
        return 1;
    }
    spec->num_types = 1;
    snprintf(spec->types[0].name, sizeof spec->types[0].name, "BENCH");
    spec->types[0].num_subgroups = 1;
    dr_config_apply_logging(*config);
    return 0;
}

/*
 * One message: written into `payload` and copied by dr_group_send, or (--zero-copy) written
 * straight into a send buffer the group takes. Returns dr_group_send's code.
 */
static int send_one(dr_group *group, node_run *run, const bench_options *options, uint8_t *payload,
                    uint64_t i, uint64_t corrupt) {
    size_t size = options->size;
    uint8_t *message = options->zero_copy ? dr_group_alloc_send_buffer(size) : payload;
    if (message == NULL)
        return DR_ENOMEM;
    pattern_apply(message, size, run->my_id, i, true);
    if (i == corrupt)
        message[size / 2 & ~(size_t)(CHECK_PAGE - 1)] ^= 1; /* a checked byte */
    if (!options->zero_copy)
        return dr_group_send(group, 0, message, size, 60000);
    int rc = dr_group_send_buffer(group, 0, message, size, 60000);
    if (rc != DR_OK)
        dr_group_free_send_buffer(message); /* not taken */
    return rc;
}

static void send_stream(dr_group *group, node_run *run, const bench_options *options) {
    uint8_t *payload = options->zero_copy ? NULL : calloc(1, options->size ? options->size : 1);
    /* test only (bench/test_derecho_bench.sh): message N of every sender gets a wrong byte */
    const char *corrupt_text = getenv("DR_BENCH_TEST_CORRUPT");
    uint64_t corrupt = corrupt_text ? strtoull(corrupt_text, NULL, 10) : UINT64_MAX;
    for (uint64_t i = 0; i < options->count && (payload || options->zero_copy); i++) {
        uint64_t start_ns = dr_bench_now_ns();
        if (send_one(group, run, options, payload, i, corrupt) != DR_OK) {
            fprintf(stderr, "derecho-bench: send failed\n");
            break;
        }
        if (!options->latency)
            continue;
        pthread_mutex_lock(&run->lock); /* wait for my own message to be delivered */
        while (run->own_delivered < i + 1)
            pthread_cond_wait(&run->cond, &run->lock);
        run->latency_us[run->samples++] = (dr_bench_now_ns() - start_ns) / 1000;
        pthread_mutex_unlock(&run->lock);
    }
    free(payload);
}

/* Local runs: waits for the parent to close standard input (every node has reported). */
static void wait_barrier(const bench_options *options) {
    char sink[16];
    while (options->as_node >= 0 && read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
}

/* Waits (up to 60 s) until the view has `members` members; 0 or an error code. */
static int wait_full_view(dr_group *group, int members) {
    int rc = dr_group_wait_view(group, 0, 60000);
    dr_group_view view;
    while (rc == DR_OK && dr_group_get_view(group, &view) == DR_OK &&
           view.view.num_members < (uint32_t)members)
        rc = dr_group_wait_view(group, view.view.vid + 1, 60000);
    return rc;
}

/*
 * The clean end of a run (after the barrier: every node delivered everything): every node
 * leaves at once; none is suspected, and the last to go ends the group. Returns 0, or 1 after
 * saying what went wrong.
 */
static int leave_group(dr_group *group, uint32_t my_id) {
    int rc = dr_group_leave(group, 20000);
    if (rc != DR_OK)
        fprintf(stderr, "derecho-bench: node %u: no clean leave: %s\n", my_id, dr_strerror(rc));
    return rc != DR_OK;
}

/* ---- rpc mode ------------------------------------------------------------------------------- */

static int bench_ordered(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                         dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len, (void)reply;
    return DR_OK;
}

static int bench_echo(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                      dr_buf *reply) {
    (void)ctx, (void)info;
    return dr_buf_put_bytes(reply, args, len);
}

static const dr_rpc_method bench_methods[] = {
    {"ordered", DR_RPC_ORDERED, bench_ordered, DR_RPC_MEMBERS_ONLY},
    {"echo", DR_RPC_P2P, bench_echo, DR_RPC_CLIENTS},
};

/* One call; returns 0 when every reply came back OK. */
static int rpc_call_once(dr_rpc_node *node, dr_rpc_client *client, bool ordered, uint32_t target,
                         const uint8_t *args, size_t len) {
    dr_rpc_reply reply;
    if (client) {
        int rc = dr_rpc_client_call(client, target, 0, "echo", args, len, 60000, &reply);
        rc = rc == DR_OK && reply.len != len ? DR_EPROTO : rc;
        dr_rpc_reply_clear(&reply);
        return rc;
    }
    if (!ordered) {
        int rc = dr_rpc_p2p_call(node, target, 0, "echo", args, len, 60000, &reply);
        rc = rc == DR_OK && reply.len != len ? DR_EPROTO : rc;
        dr_rpc_reply_clear(&reply);
        return rc;
    }
    dr_rpc_results *results = NULL;
    int rc = dr_rpc_ordered_call(node, 0, "ordered", args, len, 60000, &results);
    size_t count = rc == DR_OK ? dr_rpc_results_count(results, 60000) : 0;
    for (size_t i = 0; i < count && rc == DR_OK; i++) {
        rc = dr_rpc_results_wait(results, i, 60000, &reply);
        rc = rc == DR_OK ? reply.status : rc;
        dr_rpc_reply_clear(&reply);
    }
    if (rc == DR_OK && count == 0)
        rc = DR_ETIMEDOUT;
    dr_rpc_results_free(results);
    return rc;
}

static int run_rpc_node(const bench_options *options, const char *config_path) {
    dr_config *config = NULL;
    dr_layout_spec spec = {0};
    if (load_node_config(options, config_path, &config, &spec))
        return 1;
    dr_rpc_type type = {.name = "BENCH", .methods = bench_methods, .num_methods = 2};
    dr_rpc_node *node = NULL;
    dr_err err = {0};
    uint64_t *samples = calloc(options->count + 1, sizeof *samples);
    if (!samples || dr_rpc_node_create(config, &spec, &type, 1, NULL, &node, &err) ||
        wait_full_view(dr_rpc_node_group(node), options->nodes)) {
        fprintf(stderr, "derecho-bench: cannot join: %s\n", err.msg);
        return 1;
    }
    dr_group *group = dr_rpc_node_group(node);
    dr_group_view view;
    dr_group_get_view(group, &view);
    uint32_t my_id = dr_group_my_id(group);
    bool caller = view.view.member_ids[0] == my_id;
    uint32_t target = view.view.num_members > 1 ? view.view.member_ids[1] : my_id;
    bool ordered = strcmp(options->rpc, "ordered") == 0;
    dr_rpc_client *client = NULL;
    uint16_t contact_port = 0;
    dr_config_get_u16(config, "DERECHO", "contact_port", &contact_port);
    char key_path[1024] = "";
    const char *config_file = dr_config_source(config);
    const char *slash = strrchr(config_file, '/');
    if (slash)
        snprintf(key_path, sizeof key_path, "%.*s/client.key", (int)(slash - config_file),
                 config_file);
    dr_rpc_client_credential credential = {.key_file = key_path};
    bool keyed = dr_config_get(config, "DERECHO", "cluster_key_file") != NULL;
    if (caller && strcmp(options->rpc, "client") == 0 &&
        dr_rpc_client_create_auth(dr_config_get(config, "DERECHO", "contact_ip"), contact_port,
                                  keyed ? &credential : NULL, 60000, &client, &err)) {
        fprintf(stderr, "derecho-bench: client: %s\n", err.msg);
        return 1;
    }
    uint8_t *args = calloc(1, options->size ? options->size : 1);
    uint64_t done = 0, first_ns = dr_bench_now_ns(), cpu_start_us = cpu_now_us();
    int rc = 0;
    for (uint64_t i = 0; caller && args && rc == 0 && i < options->count + options->count / 10;
         i++) {
        uint64_t start_ns = dr_bench_now_ns();
        rc = rpc_call_once(node, client, ordered, target, args, options->size);
        if (i >= options->count / 10)
            samples[done++] = (dr_bench_now_ns() - start_ns) / 1000;
    }
    if (rc)
        fprintf(stderr, "derecho-bench: rpc call failed: %s\n", dr_strerror(rc));
    double seconds = (double)(dr_bench_now_ns() - first_ns) / 1e9;
    qsort(samples, done, sizeof *samples, compare_u64);
    printf("RESULT %.6f %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %d 0 %" PRIu64 "\n",
           seconds, done, percentile(samples, done, 0.5), percentile(samples, done, 0.9),
           percentile(samples, done, 0.99), rc ? 1 : 0, cpu_now_us() - cpu_start_us);
    fflush(stdout);
    dr_rpc_client_destroy(client);
    client = NULL;
    wait_barrier(options);
    if (leave_group(group, my_id))
        rc = rc ? rc : 1;
    dr_rpc_node_destroy(node);
    dr_config_free(config);
    free(samples);
    free(args);
    return rc ? 1 : 0;
}

/* Runs one node; prints "RESULT seconds delivered p50 p90 p99". */
static int run_node(const bench_options *options, const char *config_path) {
    if (options->rpc)
        return run_rpc_node(options, config_path);
    dr_config *config = NULL;
    dr_layout_spec spec = {0};
    if (load_node_config(options, config_path, &config, &spec))
        return 1;
    int senders = options->latency ? 1 : options->senders;
    node_run run = {.expected = options->count * (uint64_t)senders,
                    .latency_mode = options->latency,
                    .size = options->size,
                    .order_hash = 14695981039346656037ull};
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.cond, NULL);
    run.latency_us = calloc(run.expected + 1, sizeof *run.latency_us);
    /* my id before the group exists: on_deliver (delivery thread) reads it from the first
     * delivery on, which may come before this thread returns from dr_group_create */
    if (dr_config_get_u32(config, "DERECHO", "local_id", &run.my_id) != 0) {
        fprintf(stderr, "derecho-bench: no local_id in the node's configuration\n");
        return 1;
    }
    dr_group_callbacks callbacks = {.on_deliver = on_deliver, .ctx = &run};
    dr_group *group = NULL;
    dr_err err = {0};
    if (!run.latency_us || dr_group_create(config, &spec, &callbacks, &group, &err) ||
        wait_full_view(group, options->nodes)) {
        fprintf(stderr, "derecho-bench: cannot join: %s\n", err.msg);
        return 1;
    }
    if (run.my_id != dr_group_my_id(group)) {
        fprintf(stderr, "derecho-bench: the group's id %u is not local_id %u\n",
                dr_group_my_id(group), run.my_id);
        return 1;
    }
    uint32_t rank = 0;
    dr_group_view view;
    dr_group_get_view(group, &view);
    for (uint32_t i = 0; i < view.view.num_members; i++) {
        if (view.view.member_ids[i] == run.my_id)
            rank = i;
    }
    uint64_t cpu_start_us = cpu_now_us();
    if ((int)rank < senders)
        send_stream(group, &run, options);
    pthread_mutex_lock(&run.lock);
    while (run.delivered < run.expected)
        pthread_cond_wait(&run.cond, &run.lock);
    pthread_mutex_unlock(&run.lock);
    uint64_t cpu_us = cpu_now_us() - cpu_start_us;
    qsort(run.latency_us, run.samples, sizeof *run.latency_us, compare_u64);
    double seconds = (double)(run.last_ns - run.first_ns) / 1e9;
    pthread_mutex_lock(&run.lock);
    printf("RESULT %.6f %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
           " %" PRIu64 "\n",
           seconds, run.delivered, percentile(run.latency_us, run.samples, 0.5),
           percentile(run.latency_us, run.samples, 0.9),
           percentile(run.latency_us, run.samples, 0.99), run.bad, run.order_hash, cpu_us);
    pthread_mutex_unlock(&run.lock);
    fflush(stdout);
    wait_barrier(options);
    int rc = leave_group(group, run.my_id);
    dr_group_destroy(group);
    dr_config_free(config);
    free(run.latency_us);
    return rc || run.bad ? 1 : 0;
}

/* ---- local cluster -------------------------------------------------------------------------- */

static void write_config(const bench_options *options, const char *dir, int node, int port_base,
                         char *path, size_t path_len) {
    snprintf(path, path_len, "%s/node%d.cfg", dir, node);
    FILE *file = fopen(path, "w");
    if (!file)
        return;
    size_t payload = options->size < 10240 ? 10240 : options->size;
    char window_bytes_line[64] = "";
    if (options->window_bytes >= 0)
        snprintf(window_bytes_line, sizeof window_bytes_line, "window_bytes = %lld\n",
                 options->window_bytes);
    if (options->keys || options->encrypt) { /* fixed test keys: a benchmark, not a secret */
        fprintf(file,
                "[DERECHO]\ncluster_key_file = %s/cluster.key\n"
                "client_key_file = %s/client.key\nadmin_key_file = %s/client.key\n"
                "encrypt_group_port = %s\n",
                dir, dir, dir, options->encrypt ? "true" : "false");
        for (int k = 0; k < 2; k++) {
            char key_path[600];
            snprintf(key_path, sizeof key_path, "%s/%s", dir, k ? "client.key" : "cluster.key");
            FILE *key = fopen(key_path, "w");
            if (key) {
                fprintf(key, "%064d\n", k + 1);
                fclose(key);
                chmod(key_path, 0600);
            }
        }
    }
    fprintf(file,
            "%scontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n"
            "local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = 1000\n"
            "[SUBGROUP/DEFAULT]\nmax_payload_size = %zu\nmax_smc_payload_size = 10240\n"
            "block_size = 1048576\nwindow_size = %d\n%s"
            "[SUBGROUP/BENCH]\nnum_shards = 1\nmin_nodes = 1\nmax_nodes = %d\n"
            "[LOGGER]\ndefault_log_level = warn\n",
            options->keys || options->encrypt ? "" : "[DERECHO]\n", port_base, node,
            port_base + node, payload, options->window, window_bytes_line, options->nodes);
    fclose(file);
}

typedef struct child_proc {
    pid_t pid;
    int stdin_fd, stdout_fd;
    char line[256];
} child_proc;

static int spawn_child(child_proc *child, const char *self, const char *config_path, int node,
                       char **forward) {
    int in_pipe[2], out_pipe[2];
    /* close-on-exec: a later child must not hold an earlier one's stdin open (its barrier) */
    if (pipe2(in_pipe, O_CLOEXEC) || pipe2(out_pipe, O_CLOEXEC))
        return -1;
    child->pid = fork();
    if (child->pid == 0) {
        dup2(in_pipe[0], STDIN_FILENO);
        dup2(out_pipe[1], STDOUT_FILENO);
        close(in_pipe[1]);
        close(out_pipe[0]);
        char node_text[16];
        snprintf(node_text, sizeof node_text, "%d", node);
        char *argv[64] = {(char *)self, "--as-node", node_text, "--node-config",
                          (char *)config_path};
        int argc = 5;
        for (int i = 0; forward[i] && argc < 63; i++)
            argv[argc++] = forward[i];
        argv[argc] = NULL;
        execv(self, argv);
        _exit(127);
    }
    close(in_pipe[0]);
    close(out_pipe[1]);
    child->stdin_fd = in_pipe[1];
    child->stdout_fd = out_pipe[0];
    child->line[0] = '\0';
    return child->pid > 0 ? 0 : -1;
}

static int read_line_timeout(int fd, char *line, size_t cap, int timeout_s) {
    size_t len = 0;
    time_t deadline = time(NULL) + timeout_s;
    while (len + 1 < cap && time(NULL) < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        ssize_t n = read(fd, line + len, 1);
        if (n <= 0)
            break;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    return len ? 0 : -1;
}

/* Messages node `i` of a local run must report: deliveries, or calls made in rpc mode. */
static uint64_t expected_count(const bench_options *options, int i) {
    if (options->rpc)
        return i == 0 ? options->count : 0;
    return options->count * (uint64_t)(options->latency ? 1 : options->senders);
}

/*
 * One local run: the slowest node's result (latency and rpc modes: node 0's), with cpu_us the
 * sum over the nodes. Returns 0, or -1 when a node gave no result, counted a wrong message,
 * delivered another number than expected, the nodes' delivery orders differ (ordered mode) or
 * a node did not end cleanly.
 */
static int run_local_once(const bench_options *options, const char *self, char **forward,
                          int port_base, node_result *out) {
    char dir[] = "/tmp/derecho_bench_XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    child_proc children[MAX_NODES];
    int rc = 0;
    for (int i = 0; i < options->nodes; i++) {
        char path[512];
        write_config(options, dir, i, port_base, path, sizeof path);
        if (spawn_child(&children[i], self, path, i, forward))
            return -1;
        if (i == 0)
            usleep(200000);
    }
    memset(out, 0, sizeof *out);
    uint64_t cpu_us = 0, first_hash = 0;
    for (int i = 0; i < options->nodes; i++) {
        node_result result = {0};
        if (read_line_timeout(children[i].stdout_fd, children[i].line, sizeof children[i].line,
                              600) ||
            sscanf(children[i].line,
                   "RESULT %lf %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                   " %" SCNu64,
                   &result.seconds, &result.delivered, &result.p50_us, &result.p90_us,
                   &result.p99_us, &result.bad, &result.order_hash, &result.cpu_us) != 8) {
            fprintf(stderr, "derecho-bench: node %d gave no result\n", i);
            rc = -1;
            continue;
        }
        uint64_t want = expected_count(options, i);
        if (result.bad || result.delivered != want) {
            fprintf(stderr,
                    "derecho-bench: node %d FAILED: %" PRIu64
                    " wrong message(s) or call(s), %" PRIu64 " counted, %" PRIu64 " expected\n",
                    i, result.bad, result.delivered, want);
            rc = -1;
        }
        if (!options->raw && !options->rpc && i > 0 && result.order_hash != first_hash) {
            fprintf(stderr,
                    "derecho-bench: node %d FAILED: delivered in another order than node 0\n", i);
            rc = -1;
        }
        if (i == 0)
            first_hash = result.order_hash;
        cpu_us += result.cpu_us;
        if (options->latency || options->rpc ? i == 0 : result.seconds > out->seconds)
            *out = result;
    }
    out->cpu_us = cpu_us;
    for (int i = 0; i < options->nodes; i++)
        close(children[i].stdin_fd);
    for (int i = 0; i < options->nodes; i++) {
        int status;
        waitpid(children[i].pid, &status, 0);
        close(children[i].stdout_fd);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "derecho-bench: node %d FAILED: it did not end cleanly (status %d)\n",
                    i, status);
            rc = -1;
        }
    }
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0)
        rc = -1;
    return rc;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_spread(const char *what, double *values, int n, const char *unit) {
    qsort(values, (size_t)n, sizeof *values, compare_double);
    printf("  %-34s median %10.2f %s   min %10.2f   max %10.2f   (n=%d)\n", what, values[n / 2],
           unit, values[0], values[n - 1], n);
}

static void run_reference(const bench_options *options) {
    dr_tcp_ref_result bandwidth = {0}, rtt_sleep = {0}, rtt_poll = {0};
    size_t total = options->size * options->count * (size_t)options->senders;
    size_t count = total / (options->size ? options->size : 1);
    if (count > 100000)
        count = 100000;
    if (count < 4)
        count = 4;
    dr_tcp_ref_bandwidth(options->size, count, &bandwidth);
    dr_tcp_ref_rtt(options->size, 2000, false, &rtt_sleep);
    dr_tcp_ref_rtt(options->size, 2000, true, &rtt_poll);
    printf("raw loopback TCP (same run): %.1f MB/s, %.0f msgs/s for %zu B; round trip p50 %.1f "
           "us sleeping, %.1f us polling\n",
           bandwidth.mb_per_s, bandwidth.msgs_per_s, options->size, rtt_sleep.p50_ns / 1000.0,
           rtt_poll.p50_ns / 1000.0);
}

static int run_local(const bench_options *options, const char *self, char **forward) {
    double mbps[MAX_RUNS], msgs[MAX_RUNS], p50[MAX_RUNS], p90[MAX_RUNS], p99[MAX_RUNS];
    double cpu[MAX_RUNS];
    int good = 0;
    for (int r = 0; r < options->runs; r++) {
        node_result result;
        if (run_local_once(options, self, forward, options->port_base + r * 2 * MAX_NODES, &result))
            continue;
        double bytes = (double)result.delivered * (double)options->size;
        msgs[good] = result.seconds > 0 ? (double)result.delivered / result.seconds : 0;
        mbps[good] = result.seconds > 0 ? bytes / result.seconds / 1e6 : 0;
        p50[good] = (double)result.p50_us;
        p90[good] = (double)result.p90_us;
        p99[good] = (double)result.p99_us;
        uint64_t multicast = options->rpc ? options->count : expected_count(options, 0);
        cpu[good] = multicast ? (double)result.cpu_us / (double)multicast : 0;
        good++;
    }
    const char *mode = options->latency ? "latency" : "throughput";
    char window_bytes_text[32] = "default";
    if (options->window_bytes >= 0)
        snprintf(window_bytes_text, sizeof window_bytes_text, "%lld", options->window_bytes);
    if (options->rpc)
        mode = strcmp(options->rpc, "ordered") == 0 ? "rpc ordered-call"
               : strcmp(options->rpc, "p2p") == 0   ? "rpc p2p-call"
                                                    : "rpc client-call";
    bool one_sender = options->latency || options->rpc;
    printf("derecho-bench: %d nodes, %d senders, %zu B, %" PRIu64 " msgs/sender, %s, window %d, "
           "window_bytes %s, %s mode, %d/%d runs ok\n",
           options->nodes, one_sender ? 1 : options->senders, options->size, options->count,
           options->raw ? "raw" : "ordered", options->window, window_bytes_text, mode, good,
           options->runs);
    if (good) {
        if (!options->latency && !options->rpc) {
            print_spread("throughput (slowest node)", mbps, good, "MB/s");
            print_spread("throughput (slowest node)", msgs, good, "msg/s");
        }
        const char *what = options->rpc       ? "call round trip"
                           : options->latency ? "send-to-delivery"
                                              : "delivery latency";
        char label[64];
        snprintf(label, sizeof label, "%s p50", what);
        print_spread(label, p50, good, "us");
        snprintf(label, sizeof label, "%s p90", what);
        print_spread(label, p90, good, "us");
        snprintf(label, sizeof label, "%s p99", what);
        print_spread(label, p99, good, "us");
        print_spread(options->rpc ? "CPU per call (all nodes)" : "CPU per message (all nodes)", cpu,
                     good, "us");
    }
    if (options->reference)
        run_reference(options);
    return good == options->runs ? 0 : 1;
}

/* ---- command line --------------------------------------------------------------------------- */

static void print_help(FILE *out) {
    fprintf(out,
            "derecho-bench: bandwidth, latency and RPC round trips of the group's multicast,\n"
            "beside raw loopback TCP measured in the same run.\n"
            "\n"
            "usage: derecho-bench [options]                       N local node processes\n"
            "       derecho-bench --node-config FILE [options]    one node of a real cluster\n"
            "       derecho-bench --help\n"
            "\n"
            "  --nodes N          local node processes, 1..%d (default 3)\n"
            "  --senders S        nodes that send (the S lowest ids), 1..N (default: all N)\n"
            "  --size BYTES       message (or call argument) bytes, >= 1 (default 1024)\n"
            "  --count C          messages per sender (or calls), >= 1 (default 10000)\n"
            "  --window W         window_size, >= 1 (default 16)\n"
            "  --window-bytes B   window_bytes: a sender's bytes in flight, 0 = window_size\n"
            "                     messages only (default: the configuration's, 4 MiB)\n"
            "  --raw              raw (unordered) delivery instead of ordered\n"
            "  --latency          latency mode: node 0 sends one message at a time and times\n"
            "                     send to local delivery (p50/p90/p99)\n"
            "  --rpc MODE         RPC round trips: ordered (ordered call to all), p2p (call to\n"
            "                     node 1), client (the p2p call from an outside client)\n"
            "  --runs R           repetitions, 1..%d; spread printed (default 1)\n"
            "  --port-base P      first gms port; node i uses P + i (default 22000)\n"
            "  --no-reference     skip the raw TCP reference\n"
            "  --zero-copy        senders write each message into a group send buffer\n"
            "                     (dr_group_send_buffer) instead of dr_group_send's copy\n"
            "  --keys             authenticated group port (cluster and client keys)\n"
            "  --encrypt          sealed group port: every frame AES-256-GCM (implies --keys)\n"
            "  --node-config FILE run as one node of the cluster FILE describes (every node runs\n"
            "                     the same command)\n"
            "\n"
            "Every delivery is checked (sender order, bytes; ordered mode: the same order at\n"
            "every node); a run with a wrong message fails. Runs end with a clean leave.\n"
            "Exit codes: 0 every run measured and checked, 1 a run failed, 2 bad arguments.\n"
            "\n"
            "examples:\n"
            "  derecho-bench --nodes 3 --size 10240 --count 20000\n"
            "  derecho-bench --nodes 2 --latency --count 2000\n"
            "  derecho-bench --nodes 2 --rpc p2p --size 1024 --count 5000\n",
            MAX_NODES, MAX_RUNS);
}

/* Says what was wrong, then the help; returns the exit code 2. */
static int usage_error(const char *what, const char *value) {
    fprintf(stderr, "derecho-bench: %s%s%s\n\n", what, value ? " " : "", value ? value : "");
    print_help(stderr);
    return 2;
}

/* A whole decimal number in [min, max] into *out; false otherwise. */
static bool parse_number(const char *text, unsigned long long min, unsigned long long max,
                         unsigned long long *out) {
    char *end = NULL;
    if (!text || !*text || *text == '-')
        return false;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end || value < min || value > max)
        return false;
    *out = value;
    return true;
}

/* The range each numeric option takes. */
static const struct {
    const char *name;
    unsigned long long min, max;
} numeric_options[] = {
    {"--nodes", 1, MAX_NODES},    {"--senders", 1, MAX_NODES},     {"--size", 1, 1ull << 32},
    {"--count", 1, 1ull << 40},   {"--window", 1, 1u << 20},       {"--runs", 1, MAX_RUNS},
    {"--port-base", 1024, 65000}, {"--as-node", 0, MAX_NODES - 1}, {"--window-bytes", 0, 1u << 30},
};

/* Stores a numeric option's value; 0, or 2 after saying what was wrong. */
static int set_numeric(bench_options *options, const char *arg, const char *value) {
    for (size_t k = 0; k < sizeof numeric_options / sizeof *numeric_options; k++) {
        if (strcmp(arg, numeric_options[k].name) != 0)
            continue;
        unsigned long long n = 0;
        if (!parse_number(value, numeric_options[k].min, numeric_options[k].max, &n)) {
            char what[160];
            snprintf(what, sizeof what, "%s wants a whole number from %llu to %llu, not", arg,
                     numeric_options[k].min, numeric_options[k].max);
            return usage_error(what, value ? value : "nothing");
        }
        if (k == 0)
            options->nodes = (int)n;
        else if (k == 1)
            options->senders = (int)n;
        else if (k == 2)
            options->size = (size_t)n;
        else if (k == 3)
            options->count = n;
        else if (k == 4)
            options->window = (int)n;
        else if (k == 5)
            options->runs = (int)n;
        else if (k == 6)
            options->port_base = (int)n;
        else if (k == 7)
            options->as_node = (int)n;
        else
            options->window_bytes = (long long)n;
        return 0;
    }
    return -1; /* not numeric */
}

/* One option (and its value); 0, or the exit code 2 after saying what was wrong. */
static int parse_option(bench_options *options, int argc, char **argv, int *i, bool *takes_value) {
    const char *arg = argv[*i];
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    *takes_value = true;
    int rc = set_numeric(options, arg, value);
    if (rc >= 0)
        return rc;
    if (strcmp(arg, "--node-config") == 0) {
        if (!value)
            return usage_error("--node-config needs a file", NULL);
        options->node_config = value;
    } else if (strcmp(arg, "--rpc") == 0) {
        if (!value || !(strcmp(value, "ordered") == 0 || strcmp(value, "p2p") == 0 ||
                        strcmp(value, "client") == 0))
            return usage_error("--rpc wants ordered, p2p or client, not",
                               value ? value : "nothing");
        options->rpc = value;
    } else {
        *takes_value = false;
        if (strcmp(arg, "--raw") == 0)
            options->raw = true;
        else if (strcmp(arg, "--zero-copy") == 0)
            options->zero_copy = true;
        else if (strcmp(arg, "--latency") == 0)
            options->latency = true;
        else if (strcmp(arg, "--no-reference") == 0)
            options->reference = false;
        else if (strcmp(arg, "--keys") == 0)
            options->keys = true;
        else if (strcmp(arg, "--encrypt") == 0)
            options->encrypt = true;
        else
            return usage_error("unknown argument", arg);
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_options options = {.nodes = 3,
                             .senders = 0, /* all nodes, once --nodes is known */
                             .size = 1024,
                             .count = 10000,
                             .window = 16,
                             .window_bytes = -1,
                             .runs = 1,
                             .port_base = 22000,
                             .reference = true,
                             .as_node = -1};
    static char *forward[64];
    int forwarded = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(stdout);
            return 0;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        bool takes_value = false;
        int rc = parse_option(&options, argc, argv, &i, &takes_value);
        if (rc)
            return rc;
        bool internal = strcmp(arg, "--as-node") == 0 || strcmp(arg, "--node-config") == 0 ||
                        strcmp(arg, "--runs") == 0;
        if (!internal && forwarded < 60) {
            forward[forwarded++] = argv[i];
            if (takes_value)
                forward[forwarded++] = argv[i + 1];
        }
        if (takes_value)
            i++;
    }
    if (options.senders == 0)
        options.senders = options.nodes;
    if (options.senders > options.nodes) {
        char what[120];
        snprintf(what, sizeof what, "--senders %d is more than the %d node(s) of --nodes",
                 options.senders, options.nodes);
        return usage_error(what, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    if (options.node_config)
        return run_node(&options, options.node_config);
    return run_local(&options, "/proc/self/exe", forward);
}
