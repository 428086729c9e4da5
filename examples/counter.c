/*
 * counter: a replicated counter, the smallest complete program on libderecho's replicated
 * objects (include/derecho/rpc.h).
 *
 * Every member holds a copy of one counter. "add" is an ORDERED method: a call is multicast to
 * the shard and every member runs it in the same delivery order, so all copies go through the
 * same values and every member's reply to one call carries the same number. The caller gets one
 * reply per member (dr_rpc_results) and checks that they agree.
 *
 *   counter [--adds N] [--SECTION/key=value ...]
 *
 * The configuration is derecho.cfg ($DERECHO_CONF_FILE, else ./derecho.cfg) plus the
 * overrides, typically each process's --DERECHO/local_id and --DERECHO/gms_port. The group has
 * one subgroup of type COUNTER sized by [SUBGROUP/COUNTER] min_nodes..max_nodes. Each member
 * waits until the shard holds max_nodes members, adds 1 N times (default 10), then calls
 * "done" and waits until every member did (so nobody leaves while a call still waits for its
 * reply), prints
 *     FINAL node=<id> value=<counter> agreed=<calls whose replies all agreed>/<calls>
 * and leaves the group cleanly (dr_rpc_node_leave). With max_nodes = 3 and N = 10 every member
 * prints value=30. No adds happen before the shard is full, so the type needs no state transfer
 * (examples/kv.c shows one).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <derecho/config.h>
#include <derecho/rpc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { WAIT_MS = 30000 };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    uint64_t value; /* the counter */
    uint32_t done;  /* members that called "done" */
} g_counter = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

/* Ordered: adds the u64 argument; replies with the new value. */
static int add(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
               dr_buf *reply) {
    (void)ctx, (void)info;
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint64_t delta = dr_reader_u64(&reader);
    if (!dr_reader_done(&reader))
        return DR_EINVAL;
    pthread_mutex_lock(&g_counter.lock);
    uint64_t value = g_counter.value += delta;
    pthread_cond_broadcast(&g_counter.changed);
    pthread_mutex_unlock(&g_counter.lock);
    return dr_buf_put_u64(reply, value);
}

/* Ordered: one more member finished its adds. */
static int done(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len, (void)reply;
    pthread_mutex_lock(&g_counter.lock);
    g_counter.done++;
    pthread_cond_broadcast(&g_counter.changed);
    pthread_mutex_unlock(&g_counter.lock);
    return 0;
}

static const dr_rpc_method methods[] = {{"add", DR_RPC_ORDERED, add, DR_RPC_MEMBERS_ONLY},
                                        {"done", DR_RPC_ORDERED, done, DR_RPC_MEMBERS_ONLY}};

/* One add: true if every member of the shard replied OK with the same value. */
static bool add_one(dr_rpc_node *node) {
    uint8_t args[8];
    dr_store_u64le(args, 1);
    dr_rpc_results *results = NULL;
    if (dr_rpc_ordered_call(node, 0, "add", args, sizeof args, WAIT_MS, &results) != 0)
        return false;
    size_t count = dr_rpc_results_count(results, WAIT_MS);
    bool agree = count > 0;
    uint64_t first = 0;
    for (size_t i = 0; i < count; i++) {
        dr_rpc_reply reply;
        int rc = dr_rpc_results_wait(results, i, WAIT_MS, &reply);
        bool ok = rc == 0 && reply.status == 0 && reply.len == 8;
        uint64_t value = ok ? dr_load_u64le(reply.bytes) : 0;
        agree = agree && ok && (i == 0 || value == first);
        first = i == 0 ? value : first;
        dr_rpc_reply_clear(&reply);
    }
    dr_rpc_results_free(results);
    return agree;
}

int main(int argc, char **argv) {
    int adds = 10;
    const char *overrides[64];
    size_t num_overrides = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--adds") == 0 && i + 1 < argc)
            adds = atoi(argv[++i]);
        else if (dr_config_is_override_arg(argv[i]) && strchr(argv[i], '=') && num_overrides < 64)
            overrides[num_overrides++] = argv[i] + 2; /* without the "--" */
        else
            return fprintf(stderr, "usage: counter [--adds N] [--SECTION/key=value ...]\n"), 2;
    }
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.overrides = overrides, .override_count = num_overrides};
    uint32_t members = 0;
    dr_layout_spec spec = {.num_types = 1, .types = {{.name = "COUNTER", .num_subgroups = 1}}};
    if (dr_config_load(&options, &config, &err) ||
        dr_config_subgroup_u32(config, "COUNTER", "max_nodes", &members) ||
        dr_group_policy_from_config(config, "COUNTER", DR_MODE_ORDERED, &spec.types[0].policy,
                                    &err))
        return fprintf(stderr, "counter: configuration: %s\n", err.msg), 1;
    dr_config_apply_logging(config);
    dr_rpc_type type = {.name = "COUNTER", .methods = methods, .num_methods = 2};
    dr_rpc_node *node = NULL;
    if (dr_rpc_node_create(config, &spec, &type, 1, NULL, &node, &err))
        return fprintf(stderr, "counter: cannot start: %s\n", err.msg), 1;
    dr_group *group = dr_rpc_node_group(node);

    /* Follow the views until the shard is full. */
    static dr_group_view view;
    for (int32_t vid = 0; dr_group_wait_view(group, vid, WAIT_MS) == 0; vid = view.view.vid + 1) {
        dr_group_get_view(group, &view);
        if (view.layout.subgroups[0].shards[0].num_members >= members)
            break;
    }
    int agreed = 0;
    for (int i = 0; i < adds && view.layout.subgroups[0].shards[0].num_members >= members; i++)
        agreed += add_one(node);

    dr_rpc_results *results = NULL;
    if (dr_rpc_ordered_call(node, 0, "done", NULL, 0, WAIT_MS, &results) == 0)
        dr_rpc_results_free(results);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g_counter.lock);
    int rc = 0;
    while (g_counter.done < members && rc == 0)
        rc = pthread_cond_timedwait(&g_counter.changed, &g_counter.lock, &deadline);
    uint64_t value = g_counter.value;
    pthread_mutex_unlock(&g_counter.lock);
    printf("FINAL node=%u value=%llu agreed=%d/%d\n", dr_group_my_id(group),
           (unsigned long long)value, agreed, adds);
    /* A clean leave: the members finish at about the same time, and one that only closed its
     * connections would look failed to a member still waiting for the last "done" (two of
     * three failing at once would stop it by partitioning safety). Leaving, each is removed
     * in a view change whose trim delivers that "done" everywhere first. */
    int left = dr_rpc_node_leave(node, WAIT_MS);
    if (left != 0)
        fprintf(stderr, "counter: leave: %s\n", dr_strerror(left));
    dr_rpc_node_destroy(node);
    dr_config_free(config);
    return agreed == adds && rc == 0 && left == 0 ? 0 : 1;
}
