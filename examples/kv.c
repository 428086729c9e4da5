/*
 * kv: a replicated key-value map (include/derecho/rpc.h) with point-to-point reads and an
 * outside client.
 *
 *   kv [--SECTION/key=value ...]                   a member: serves until SIGINT or SIGTERM,
 *                                                  then leaves the group cleanly
 *   kv --client HOST:PORT put KEY VALUE | get KEY  an outside client (not a group member)
 *
 * Type KV, one subgroup sized by [SUBGROUP/KV]; the configuration as in counter.c. Methods:
 * "apply" (ORDERED) stores (key, value) at every member in delivery order; "put" (P2P, what a
 * client calls) makes the member it reaches call "apply" in its shard and reply how many
 * members applied it; "get" (P2P) returns one replica's value (DR_ENOTFOUND if none).
 * Arguments are text, "KEY\0VALUE". A member prints "VIEW vid=<id> members=<n>" per view. The
 * client reaches any member (HOST:PORT: its gms_port), learns the view and prints "put KEY:
 * applied by N replicas", or reads KEY from every member: "node <id>: <value>" each. (A member
 * joining a running group would need the map by state transfer, dr_rpc_type.serialize and
 * .restore; left out to stay short.)
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask */

#include <derecho/config.h>
#include <derecho/log.h>
#include <derecho/rpc.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

enum { WAIT_MS = 10000, MAX_ENTRIES = 1024, MAX_TEXT = 256 };

static struct {
    pthread_mutex_t lock;
    size_t count;
    char keys[MAX_ENTRIES][MAX_TEXT], values[MAX_ENTRIES][MAX_TEXT];
} g_map = {.lock = PTHREAD_MUTEX_INITIALIZER};
static _Atomic(dr_rpc_node *) g_node;

/* Splits "KEY\0VALUE" (value optional) into NUL-terminated key and value; false if bad. */
static bool split(const uint8_t *args, size_t len, char key[MAX_TEXT], char value[MAX_TEXT]) {
    const uint8_t *nul = memchr(args, '\0', len);
    size_t key_len = nul ? (size_t)(nul - args) : len;
    size_t value_len = nul ? len - key_len - 1 : 0;
    if (key_len >= MAX_TEXT || value_len >= MAX_TEXT)
        return false;
    memcpy(key, args, key_len), memcpy(value, args + len - value_len, value_len);
    key[key_len] = value[value_len] = '\0';
    return true;
}

/* ORDERED: stores (key, value) at every member, in delivery order. */
static int apply(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                 dr_buf *reply) {
    (void)ctx, (void)info, (void)reply;
    char key[MAX_TEXT], value[MAX_TEXT];
    if (!split(args, len, key, value))
        return DR_EINVAL;
    pthread_mutex_lock(&g_map.lock);
    size_t i = 0;
    while (i < g_map.count && strcmp(g_map.keys[i], key) != 0)
        i++;
    if (i < MAX_ENTRIES) {
        g_map.count += i == g_map.count;
        strcpy(g_map.keys[i], key), strcpy(g_map.values[i], value);
    }
    pthread_mutex_unlock(&g_map.lock);
    return i < MAX_ENTRIES ? 0 : DR_ETOOBIG;
}

/* P2P: an ordered "apply" in my shard; replies with how many members applied it (u32). */
static int put(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
               dr_buf *reply) {
    (void)ctx, (void)info;
    dr_rpc_results *results = NULL;
    int rc = dr_rpc_ordered_call(atomic_load(&g_node), 0, "apply", args, len, WAIT_MS, &results);
    uint32_t applied = 0;
    for (size_t i = 0, n = rc ? 0 : dr_rpc_results_count(results, WAIT_MS); i < n; i++) {
        dr_rpc_reply one;
        applied += dr_rpc_results_wait(results, i, WAIT_MS, &one) == 0 && one.status == 0;
        dr_rpc_reply_clear(&one);
    }
    dr_rpc_results_free(results);
    return rc ? rc : dr_buf_put_u32(reply, applied);
}

/* P2P: this replica's value of KEY, or DR_ENOTFOUND. */
static int get(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
               dr_buf *reply) {
    (void)ctx, (void)info;
    char key[MAX_TEXT], value[MAX_TEXT];
    if (!split(args, len, key, value))
        return DR_EINVAL;
    int rc = DR_ENOTFOUND;
    pthread_mutex_lock(&g_map.lock);
    for (size_t i = 0; i < g_map.count && rc == DR_ENOTFOUND; i++)
        if (strcmp(g_map.keys[i], key) == 0)
            rc = dr_buf_put_bytes(reply, g_map.values[i], strlen(g_map.values[i]));
    pthread_mutex_unlock(&g_map.lock);
    return rc;
}

static const dr_rpc_method methods[] = {{"apply", DR_RPC_ORDERED, apply, DR_RPC_MEMBERS_ONLY},
                                        {"put", DR_RPC_P2P, put, DR_RPC_CLIENTS},
                                        {"get", DR_RPC_P2P, get, DR_RPC_CLIENTS}};

static void print_view(void *ctx, const dr_group_view *view) {
    (void)ctx;
    printf("VIEW vid=%d members=%u\n", view->view.vid, view->view.num_members);
    fflush(stdout);
}

static int member(const char *const *overrides, size_t num_overrides) {
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.overrides = overrides, .override_count = num_overrides};
    dr_layout_spec spec = {.num_types = 1, .types = {{.name = "KV", .num_subgroups = 1}}};
    if (dr_config_load(&options, &config, &err) ||
        dr_group_policy_from_config(config, "KV", DR_MODE_ORDERED, &spec.types[0].policy, &err))
        return fprintf(stderr, "kv: configuration: %s\n", err.msg), 1;
    dr_config_apply_logging(config);
    dr_rpc_type type = {.name = "KV", .methods = methods, .num_methods = 3};
    dr_rpc_node_options node_options = {.app_callbacks = {.on_view = print_view}};
    sigset_t stop;
    sigemptyset(&stop), sigaddset(&stop, SIGINT), sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before the library starts its threads */
    dr_rpc_node *node = NULL;
    if (dr_rpc_node_create(config, &spec, &type, 1, &node_options, &node, &err))
        return fprintf(stderr, "kv: cannot start: %s\n", err.msg), 1;
    atomic_store(&g_node, node);
    int signal_number;
    sigwait(&stop, &signal_number);
    dr_rpc_node_leave(node, 5000); /* a clean departure: the others see no failure */
    dr_rpc_node_destroy(node);
    dr_config_free(config);
    return 0;
}

/* The outside client: put through the first member, or get from every member. */
static int client(const char *address, const char *verb, const char *key, const char *value) {
    char host[64];
    unsigned port = 0;
    dr_err err = {0};
    dr_rpc_client *client = NULL;
    uint32_t subgroup = 0;
    static dr_group_view view;
    dr_log_set_all_levels(DR_LOG_WARN); /* a client has no configuration ([LOGGER]) */
    if (sscanf(address, "%63[^:]:%u", host, &port) != 2 ||
        dr_rpc_client_create(host, (uint16_t)port, WAIT_MS, &client, &err) ||
        dr_rpc_client_find_subgroup(client, "KV", 0, &subgroup) ||
        dr_rpc_client_get_view(client, &view))
        return fprintf(stderr, "kv: cannot reach the group at %s: %s\n", address, err.msg), 1;
    char args[2 * MAX_TEXT];
    int len = snprintf(args, sizeof args, "%s%c%s", key, '\0', value ? value : "");
    const dr_shard_layout *shard = &view.layout.subgroups[subgroup].shards[0];
    int rc = 0;
    for (uint32_t i = 0; i < (value ? 1 : shard->num_members) && rc == 0; i++) {
        dr_rpc_reply reply;
        rc = dr_rpc_client_call(client, shard->member_ids[i], subgroup, value ? "put" : "get", args,
                                value ? (size_t)len : strlen(key), WAIT_MS, &reply);
        if (rc == 0 && value && reply.len == 4)
            printf("put %s: applied by %u replicas\n", key, dr_load_u32le(reply.bytes));
        else if (rc == 0)
            printf("node %u: %.*s\n", shard->member_ids[i], (int)reply.len, (char *)reply.bytes);
        else
            fprintf(stderr, "kv: %s %s: %s\n", verb, key, dr_strerror(rc));
        dr_rpc_reply_clear(&reply);
    }
    dr_rpc_client_destroy(client);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 5 || (argc == 6 && strcmp(argv[3], "put") == 0))
        if (strcmp(argv[1], "--client") == 0 && (argc == 6 || strcmp(argv[3], "get") == 0))
            return client(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    const char *overrides[64];
    size_t num_overrides = 0;
    for (int i = 1; i < argc; i++) {
        if (!dr_config_is_override_arg(argv[i]) || !strchr(argv[i], '=') || num_overrides == 64)
            return fprintf(stderr, "usage: kv [--SECTION/key=value ...]\n"
                                   "       kv --client HOST:PORT put KEY VALUE | get KEY\n"),
                   2;
        overrides[num_overrides++] = argv[i] + 2; /* without the "--" */
    }
    return member(overrides, num_overrides);
}
