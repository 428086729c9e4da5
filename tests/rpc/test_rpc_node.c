/*
 * In-process tests of dr_rpc_node: creation checks (type count and names, duplicate method ids)
 * and a one-member group on 127.0.0.1:25050 serving ordered and p2p calls to itself, with its
 * error paths (unknown method, wrong kind, unknown node, oversized arguments and replies), a
 * full p2p window, and results that outlive the node; and a durable one-member group whose
 * ordered call's caller waits for the call's global persistence (include/derecho/durable.h).
 */
#include "derecho/rpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>

static const char *config_text =
    "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = 25050\nlocal_id = 0\n"
    "local_ip = 127.0.0.1\ngms_port = 25050\nheartbeat_ms = 100\np2p_window_size = 2\n"
    "max_p2p_request_payload_size = 1000\nmax_p2p_reply_payload_size = 2000\n"
    "[SUBGROUP/DEFAULT]\nmax_payload_size = 10240\nmax_smc_payload_size = 10240\n"
    "max_reply_payload_size = 500\nblock_size = 1048576\nwindow_size = 16\n"
    "[SUBGROUP/ONE]\nnum_shards = 1\nmin_nodes = 1\nmax_nodes = 1\n"
    "[LOGGER]\ndefault_log_level = error\n";

static int counter;

static int add_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                       dr_buf *reply) {
    (void)ctx;
    if (!info->ordered || info->version < 0 || len != 4)
        return DR_EINVAL;
    counter += (int)dr_load_u32le(args);
    return dr_buf_put_u32(reply, (uint32_t)counter);
}

static int echo_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                        dr_buf *reply) {
    (void)ctx;
    if (info->ordered || info->caller_id != 0 || info->shard != 0)
        return DR_EINVAL;
    return dr_buf_put_bytes(reply, args, len);
}

static int echo_any_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                            size_t len, dr_buf *reply) {
    (void)ctx, (void)info;
    return dr_buf_put_bytes(reply, args, len);
}

static int slow_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                        dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len, (void)reply;
    usleep(300000);
    return DR_OK;
}

static int fail_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                        dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len;
    dr_buf_put_str(reply, "no luck");
    return DR_ERANGE;
}

static const dr_rpc_method methods[] = {
    {"add", DR_RPC_ORDERED, add_handler, DR_RPC_MEMBERS_ONLY},
    {"echo", DR_RPC_P2P, echo_handler, DR_RPC_CLIENTS},
    {"slow", DR_RPC_P2P, slow_handler, DR_RPC_CLIENTS},
    {"fail", DR_RPC_P2P, fail_handler, DR_RPC_CLIENTS},
    {"echo_ordered", DR_RPC_ORDERED, echo_any_handler, DR_RPC_MEMBERS_ONLY},
};

static dr_config *load_config(void) {
    dr_config *config = NULL;
    dr_err err;
    assert_int_equal(dr_config_load_string(config_text, "test", NULL, 0, &config, &err), 0);
    return config;
}

static void make_spec(dr_config *config, dr_layout_spec *spec) {
    memset(spec, 0, sizeof *spec);
    spec->num_types = 1;
    strcpy(spec->types[0].name, "ONE");
    spec->types[0].num_subgroups = 1;
    assert_int_equal(
        dr_group_policy_from_config(config, "ONE", DR_MODE_ORDERED, &spec->types[0].policy, NULL),
        0);
}

static void test_create_checks(void **state) {
    (void)state;
    dr_config *config = load_config();
    dr_layout_spec spec;
    make_spec(config, &spec);
    dr_rpc_node *node = NULL;
    dr_err err;
    dr_rpc_type type = {.name = "ONE", .methods = methods, .num_methods = 5};
    assert_int_equal(dr_rpc_node_create(config, &spec, &type, 0, NULL, &node, &err), DR_EINVAL);
    dr_rpc_type wrong_name = {.name = "TWO", .methods = methods, .num_methods = 5};
    assert_int_equal(dr_rpc_node_create(config, &spec, &wrong_name, 1, NULL, &node, &err),
                     DR_EINVAL);
    dr_rpc_method twice[] = {{"a", DR_RPC_P2P, echo_handler, DR_RPC_CLIENTS},
                             {"a", DR_RPC_ORDERED, add_handler, DR_RPC_MEMBERS_ONLY}};
    dr_rpc_type duplicate = {.name = "ONE", .methods = twice, .num_methods = 2};
    assert_int_equal(dr_rpc_node_create(config, &spec, &duplicate, 1, NULL, &node, &err),
                     DR_EINVAL);
    assert_non_null(strstr(err.msg, "share id"));
    dr_config_free(config);
}

static void test_one_member_group(void **state) {
    (void)state;
    dr_config *config = load_config();
    dr_layout_spec spec;
    make_spec(config, &spec);
    dr_rpc_type type = {.name = "ONE", .methods = methods, .num_methods = 5};
    dr_rpc_node *node = NULL;
    dr_err err;
    assert_int_equal(dr_rpc_node_create(config, &spec, &type, 1, NULL, &node, &err), 0);
    assert_int_equal(dr_group_wait_view(dr_rpc_node_group(node), 0, 10000), 0);

    /* ordered: my own reply, in delivery order */
    uint8_t three[4];
    dr_store_u32le(three, 3);
    dr_rpc_results *results = NULL;
    dr_rpc_reply reply;
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(dr_rpc_ordered_call(node, 0, "add", three, 4, 5000, &results), 0);
        assert_int_equal(dr_rpc_results_count(results, 5000), 1);
        assert_int_equal(dr_rpc_results_wait(results, 0, 5000, &reply), 0);
        assert_int_equal(reply.status, 0);
        assert_int_equal(reply.node_id, 0);
        assert_int_equal(dr_load_u32le(reply.bytes), 3 * i);
        assert_true(dr_rpc_results_version(results) >= 0);
        dr_rpc_reply_clear(&reply);
        dr_rpc_results_free(results);
    }
    /* ordered errors */
    assert_int_equal(dr_rpc_ordered_call(node, 0, "echo", "x", 1, 1000, &results), DR_ENOTFOUND);
    assert_int_equal(dr_rpc_ordered_call(node, 0, "missing", "x", 1, 1000, &results), DR_ENOTFOUND);
    assert_int_equal(dr_rpc_ordered_call(node, 5, "add", three, 4, 1000, &results), DR_EINVAL);
    static uint8_t big[20000];
    assert_int_equal(dr_rpc_ordered_call(node, 0, "add", big, 10240 - 27, 1000, &results),
                     DR_ETOOBIG);
    /* an ordered reply over max_reply_payload_size (500) */
    assert_int_equal(dr_rpc_ordered_call(node, 0, "echo_ordered", big, 600, 1000, &results), 0);
    assert_int_equal(dr_rpc_results_wait(results, 0, 5000, &reply), 0);
    assert_int_equal(reply.status, DR_ETOOBIG);
    assert_null(reply.bytes);
    dr_rpc_results_free(results);

    /* p2p to myself, on a worker */
    assert_int_equal(dr_rpc_p2p_call(node, 0, 0, "echo", "hello", 5, 5000, &reply), 0);
    assert_int_equal(reply.len, 5);
    assert_memory_equal(reply.bytes, "hello", 5);
    dr_rpc_reply_clear(&reply);
    assert_int_equal(dr_rpc_p2p_call(node, 0, 0, "fail", NULL, 0, 5000, &reply), DR_ERANGE);
    assert_int_equal(reply.len, 11); /* the handler's message comes with its error */
    dr_rpc_reply_clear(&reply);
    assert_int_equal(dr_rpc_p2p_call(node, 7, 0, "echo", "x", 1, 1000, &reply), DR_ENOTFOUND);
    assert_int_equal(dr_rpc_p2p_call(node, 0, 0, "add", "x", 1, 1000, &reply), DR_ENOTFOUND);
    assert_int_equal(dr_rpc_p2p_call(node, 0, 0, "echo", big, 1001, 1000, &reply), DR_ETOOBIG);
    assert_int_equal(dr_rpc_p2p_call(node, 0, 0, "echo", big, 1000, 5000, &reply), 0);
    dr_rpc_reply_clear(&reply);

    /* the window (2): a third call waits for a slot */
    dr_rpc_pending *slow[3] = {NULL};
    assert_int_equal(dr_rpc_p2p_start(node, 0, 0, "slow", NULL, 0, 1000, &slow[0]), 0);
    assert_int_equal(dr_rpc_p2p_start(node, 0, 0, "slow", NULL, 0, 1000, &slow[1]), 0);
    assert_int_equal(dr_rpc_p2p_start(node, 0, 0, "slow", NULL, 0, 50, &slow[2]), DR_ETIMEDOUT);
    assert_int_equal(dr_rpc_p2p_start(node, 0, 0, "slow", NULL, 0, 5000, &slow[2]), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dr_rpc_pending_wait(slow[i], 5000, &reply), 0);
        dr_rpc_pending_free(slow[i]);
    }
    /* a pending call and results that outlive the node */
    assert_int_equal(dr_rpc_p2p_start(node, 0, 0, "slow", NULL, 0, 1000, &slow[0]), 0);
    dr_rpc_node_destroy(node);
    int rc = dr_rpc_pending_wait(slow[0], 1000, &reply);
    assert_true(rc == DR_OK || rc == DR_ECLOSED);
    dr_rpc_reply_clear(&reply);
    dr_rpc_pending_free(slow[0]);
    dr_config_free(config);
}

/* Nobody listens at the contact: the client retries until its timeout, then fails cleanly. */
static void test_client_without_contact(void **state) {
    (void)state;
    dr_rpc_client *client = NULL;
    dr_err err = {0};
    assert_int_equal(dr_rpc_client_create("127.0.0.1", 25998, 700, &client, &err), DR_EIO);
    assert_null(client);
    assert_non_null(strstr(err.msg, "no view"));
    assert_int_equal(dr_rpc_client_create(NULL, 25998, 700, &client, &err), DR_EINVAL);
}

typedef struct persisted_seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t local, global; /* highest version each callback reported (-1) */
} persisted_seen;

static void on_persisted(void *ctx, uint32_t subgroup, int64_t version, bool global) {
    persisted_seen *seen = ctx;
    pthread_mutex_lock(&seen->lock);
    if (subgroup == 0 && version > (global ? seen->global : seen->local))
        *(global ? &seen->global : &seen->local) = version;
    pthread_cond_broadcast(&seen->cond);
    pthread_mutex_unlock(&seen->lock);
}

/* A durable subgroup: the caller of an ordered call waits for its version on disk everywhere. */
static void test_durable_ordered_call(void **state) {
    (void)state;
    char dir[] = "/tmp/dr_rpc_durable_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char text[1024];
    snprintf(text, sizeof text,
             "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = 25052\nlocal_id = 0\n"
             "local_ip = 127.0.0.1\ngms_port = 25052\nheartbeat_ms = 100\n"
             "[SUBGROUP/ONE]\nnum_shards = 1\nmin_nodes = 1\nmax_nodes = 1\ndurable = true\n"
             "[PERS]\nfile_path = %s\n[LOGGER]\ndefault_log_level = error\n",
             dir);
    dr_config *config = NULL;
    dr_err err;
    assert_int_equal(dr_config_load_string(text, "test", NULL, 0, &config, &err), 0);
    dr_layout_spec spec;
    make_spec(config, &spec);
    persisted_seen seen = {.local = -1, .global = -1};
    pthread_mutex_init(&seen.lock, NULL);
    pthread_cond_init(&seen.cond, NULL);
    dr_rpc_node_options options = {.app_callbacks = {.on_persisted = on_persisted, .ctx = &seen}};
    dr_rpc_type type = {.name = "ONE", .methods = methods, .num_methods = 5};
    dr_rpc_node *node = NULL;
    assert_int_equal(dr_rpc_node_create(config, &spec, &type, 1, &options, &node, &err), 0);
    dr_group *group = dr_rpc_node_group(node);
    assert_int_equal(dr_group_wait_view(group, 0, 10000), 0);
    uint8_t three[4];
    dr_store_u32le(three, 3);
    dr_rpc_results *results = NULL;
    assert_int_equal(dr_rpc_ordered_call(node, 0, "add", three, 4, 5000, &results), 0);
    assert_int_equal(dr_rpc_results_wait_persisted(node, 0, results, true, 10000), 0);
    int64_t version = dr_rpc_results_version(results);
    assert_true(version >= 0);
    assert_true(dr_group_persisted_version(group, 0, true) >= version);
    assert_true(dr_group_persisted_version(group, 0, false) >= version);
    /* the logged record is the call as delivered */
    dr_versioned rec;
    assert_int_equal(dr_group_read_versioned(group, 0, DR_READ_EXACT, version, &rec), 0);
    assert_int_equal(rec.version, version);
    assert_true(rec.len >= 4);
    assert_memory_equal(rec.bytes + rec.len - 4, three, 4); /* the arguments end the call */
    dr_versioned_clear(&rec);
    /* not a durable subgroup of this node */
    assert_int_equal(dr_group_wait_persisted(group, 3, 0, true, 100), DR_ESTATE);
    /* the callbacks follow (delivery thread) */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&seen.lock);
    while (seen.global < version || seen.local < version)
        if (pthread_cond_timedwait(&seen.cond, &seen.lock, &deadline) != 0)
            break;
    assert_true(seen.global >= version && seen.local >= version);
    pthread_mutex_unlock(&seen.lock);
    dr_rpc_results_free(results);
    dr_rpc_node_destroy(node);
    dr_config_free(config);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    assert_int_equal(system(command), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_checks), cmocka_unit_test(test_one_member_group),
        cmocka_unit_test(test_client_without_contact),
        cmocka_unit_test(test_durable_ordered_call), /* last: it moves `counter` */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
