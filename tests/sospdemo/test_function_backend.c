/*
 * The function tier's categorizer client (function_backend.c) in process, without a group:
 * which replica of a categorizer shard each Whatsthis tag goes to (round robin per shard,
 * skipping members failed in the view or reported down), the retry on the next replica after
 * a retryable status (DR_EREMOVED, DR_ETIMEDOUT, DR_ECLOSED, DR_EIO, DR_EAGAIN, DR_ENOTFOUND),
 * none after any other, and the error when no replica is left; the model_as_of hook's retry on
 * a replica with a shorter history (DR_ERANGE).
 *
 * function_backend.c is compiled into this program and linked against fakes of the rpc and
 * group functions it calls (defined below, in place of dr_rpc and dr_runtime): the test sets
 * the view, the down marks and, per target node, the status and reply of each call; the fakes
 * record every call (start, wait, blocking call: node and tag) in a trace that the tests
 * compare exactly. Replies are encoded as the categorizer writes them (categorizer.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "categorizer.h"
#include "common/check.h"
#include "derecho/group.h"
#include "derecho/rpc.h"
#include "function_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES          16
#define FUNCTION_SUBGROUP  0u
#define CATEGORIZER_SUB    1u
#define INFERENCE_TIMEOUT  1500
#define CATEGORIZER_REASON "this categorizer node is no longer a member of the group"

static const uint8_t k_photo[] = "photo bytes (the fakes never decode them)";

/* ---- what the fakes answer ---------------------------------------------------------------- */

/* How one categorizer node answers. Zero: the call starts and answers with a label. */
typedef struct node_script {
    int start_status;    /* what dr_rpc_p2p_start returns for this target (0: started) */
    int status;          /* the call's status (dr_rpc_pending_wait, dr_rpc_p2p_call) */
    sd_answer_kind kind; /* with status 0: SD_ANSWER_OK ("label of tag T from node N") or
                            SD_ANSWER_NO_MODEL (SD_DESC_NO_MODEL) */
    const char *reason;  /* with a failing status: the handler's text (as categorizer.c writes
                            it: dr_buf_put_str), or NULL for no reply bytes */
} node_script;

static node_script g_nodes[MAX_NODES];
static bool g_peer_down[MAX_NODES]; /* what dr_rpc_node_peer_down answers */
static int g_stopped;               /* what dr_group_stopped answers */
static dr_group_view g_view;        /* what dr_group_get_view copies */
static char g_trace[4096];          /* the calls made, "start node 1 tag 4; wait node 1 tag 4" */
static int g_pending_live;          /* started calls not freed yet */

/* Appends one call to the trace, with anything unexpected about it spelled out. */
static void trace_call(const char *what, uint32_t node, uint32_t tag, const char *anomaly) {
    size_t used = strlen(g_trace);
    snprintf(g_trace + used, sizeof g_trace - used, "%s%s node %u tag %u%s", used ? "; " : "", what,
             node, tag, anomaly);
}

/* The tag of inference args (u32 tag, u32 n + n photo bytes, optional u32 top_k), and in
 * `anomaly` what is wrong with the call: another method, subgroup, timeout or photo. */
static uint32_t check_call(uint32_t subgroup, const char *method, const void *args, size_t len,
                           int timeout_ms, char *anomaly, size_t cap) {
    if (strcmp(method, SD_METHOD_MODEL_AS_OF) == 0) { /* u8 kind, u32 tag, i64 key */
        dr_reader reader;
        dr_reader_init(&reader, args, len);
        (void)dr_reader_u8(&reader);
        uint32_t tag = dr_reader_u32(&reader);
        (void)dr_reader_u64(&reader);
        anomaly[0] = '\0';
        if (!dr_reader_done(&reader) || subgroup != CATEGORIZER_SUB ||
            timeout_ms != INFERENCE_TIMEOUT)
            snprintf(anomaly, cap, " (not model_as_of args for subgroup %u)", CATEGORIZER_SUB);
        return tag;
    }
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint32_t tag = dr_reader_u32(&reader);
    uint32_t photo_len = 0;
    const uint8_t *photo = dr_reader_blob(&reader, UINT32_MAX, &photo_len);
    uint32_t top_k = dr_reader_remaining(&reader) >= 4 ? dr_reader_u32(&reader) : 0;
    anomaly[0] = '\0';
    if (strcmp(method, SD_METHOD_INFERENCE) != 0 || subgroup != CATEGORIZER_SUB ||
        timeout_ms != INFERENCE_TIMEOUT)
        snprintf(anomaly, cap, " (%s on subgroup %u, timeout %d ms)", method, subgroup, timeout_ms);
    else if (!dr_reader_done(&reader) || photo_len != sizeof k_photo ||
             memcmp(photo, k_photo, sizeof k_photo) != 0 || top_k != 0)
        snprintf(anomaly, cap, " (not the photo's inference args)");
    return tag;
}

/* A model_as_of reply as categorizer.c encodes it (categorizer.h): the model of node `node`
 * (digest 0xd0 + node, installed at version 77), or with SD_ANSWER_NO_MODEL none (removed at
 * version 42). */
static void as_of_reply(dr_buf *reply, uint32_t node, uint32_t tag, sd_answer_kind kind) {
    bool installed = kind != SD_ANSWER_NO_MODEL;
    dr_buf_put_u8(reply, installed ? 1 : 0);
    dr_buf_put_u64(reply, 77); /* resolved */
    if (installed) {
        dr_buf_put_u32(reply, tag);
        dr_buf_put_u8(reply, SD_FORMAT_MXNET);
        dr_buf_put_u8(reply, 0);     /* fp32 */
        dr_buf_put_u64(reply, 1000); /* bytes */
        dr_buf_put_u64(reply, 0xd0 + node);
        dr_buf_put_u64(reply, 77);      /* version */
        dr_buf_put_u64(reply, 1000000); /* installed_us */
    } else {
        dr_buf_put_u64(reply, 42);
        dr_buf_put_u64(reply, 2000000);
    }
}

/* The reply bytes node `node` sends for `tag` under its script (to `method`). */
static void script_reply(uint32_t node, uint32_t tag, const char *method, dr_rpc_reply *out) {
    const node_script *script = &g_nodes[node];
    dr_buf reply;
    dr_buf_init(&reply, 0);
    if (script->status != DR_OK) {
        if (script->reason)
            dr_buf_put_str(&reply, script->reason);
    } else if (strcmp(method, SD_METHOD_MODEL_AS_OF) == 0) {
        as_of_reply(&reply, node, tag, script->kind);
    } else if (script->kind == SD_ANSWER_OK) {
        char label[64];
        snprintf(label, sizeof label, "label of tag %u from node %u", tag, node);
        CHECK(sd_inference_reply_encode(&reply, SD_ANSWER_OK, 0.75f, label, NULL, 0) == DR_OK,
              "encode");
    } else {
        CHECK(sd_inference_reply_encode(&reply, script->kind, 0, SD_DESC_NO_MODEL, NULL, 0) ==
                  DR_OK,
              "encode");
    }
    out->node_id = node;
    out->status = script->status;
    out->bytes = dr_buf_steal(&reply, &out->len);
}

/* ---- fakes of the rpc and group functions function_backend.c calls ------------------------ */

struct dr_rpc_pending {
    uint32_t target;
    uint32_t tag; /* the args are copied at start, as the real call does */
};

dr_group *dr_rpc_node_group(dr_rpc_node *node) {
    return (dr_group *)node;
}

int dr_group_stopped(dr_group *group) {
    (void)group;
    return g_stopped;
}

int dr_group_get_view(dr_group *group, dr_group_view *out) {
    (void)group;
    memcpy(out, &g_view, sizeof *out);
    return DR_OK;
}

bool dr_rpc_node_peer_down(dr_rpc_node *node, uint32_t node_id) {
    (void)node;
    CHECK(node_id < MAX_NODES, "peer_down of node %u", node_id);
    return g_peer_down[node_id];
}

int dr_rpc_p2p_start(dr_rpc_node *node, uint32_t target, uint32_t subgroup, const char *method,
                     const void *args, size_t len, int timeout_ms, dr_rpc_pending **out) {
    (void)node;
    CHECK(target < MAX_NODES, "start on node %u", target);
    char anomaly[96];
    uint32_t tag = check_call(subgroup, method, args, len, timeout_ms, anomaly, sizeof anomaly);
    trace_call("start", target, tag, anomaly);
    if (g_nodes[target].start_status != DR_OK)
        return g_nodes[target].start_status;
    dr_rpc_pending *pending = malloc(sizeof *pending);
    CHECK(pending != NULL, "out of memory");
    *pending = (dr_rpc_pending){.target = target, .tag = tag};
    g_pending_live++;
    *out = pending;
    return DR_OK;
}

int dr_rpc_pending_wait(dr_rpc_pending *pending, int timeout_ms, dr_rpc_reply *out) {
    CHECK(pending != NULL, "wait on no call");
    trace_call("wait", pending->target, pending->tag,
               timeout_ms == INFERENCE_TIMEOUT ? "" : " (another timeout)");
    script_reply(pending->target, pending->tag, SD_METHOD_INFERENCE, out);
    return out->status;
}

void dr_rpc_pending_free(dr_rpc_pending *pending) {
    if (pending)
        g_pending_live--;
    free(pending);
}

int dr_rpc_p2p_call(dr_rpc_node *node, uint32_t target, uint32_t subgroup, const char *method,
                    const void *args, size_t len, int timeout_ms, dr_rpc_reply *out) {
    (void)node;
    CHECK(target < MAX_NODES, "call on node %u", target);
    char anomaly[96];
    uint32_t tag = check_call(subgroup, method, args, len, timeout_ms, anomaly, sizeof anomaly);
    trace_call("call", target, tag, anomaly);
    if (g_nodes[target].start_status != DR_OK) {
        *out = (dr_rpc_reply){.node_id = target, .status = g_nodes[target].start_status};
        return out->status;
    }
    script_reply(target, tag, method, out);
    return out->status;
}

void dr_rpc_reply_clear(dr_rpc_reply *reply) {
    free(reply->bytes);
    reply->bytes = NULL;
    reply->len = 0;
}

/* categorizer.c (linked for the reply codecs) also refers to the ordered calls: never used. */
int dr_rpc_ordered_call(dr_rpc_node *node, uint32_t subgroup, const char *method, const void *args,
                        size_t len, int timeout_ms, dr_rpc_results **out) {
    (void)node, (void)subgroup, (void)method, (void)args, (void)len, (void)timeout_ms, (void)out;
    CHECK(false, "the function backend made an ordered call");
    return DR_EUNSUPPORTED;
}

size_t dr_rpc_results_count(dr_rpc_results *results, int timeout_ms) {
    (void)results, (void)timeout_ms;
    CHECK(false, "unexpected dr_rpc_results_count");
    return 0;
}

int dr_rpc_results_wait(dr_rpc_results *results, size_t index, int timeout_ms, dr_rpc_reply *out) {
    (void)results, (void)index, (void)timeout_ms, (void)out;
    CHECK(false, "unexpected dr_rpc_results_wait");
    return DR_EUNSUPPORTED;
}

int dr_rpc_results_wait_persisted(dr_rpc_node *node, uint32_t subgroup, dr_rpc_results *results,
                                  bool global, int timeout_ms) {
    (void)node;
    (void)subgroup;
    (void)results;
    (void)global;
    (void)timeout_ms;
    return DR_ESTATE; /* not durable in process */
}

void dr_rpc_results_free(dr_rpc_results *results) {
    CHECK(results == NULL, "unexpected dr_rpc_results_free");
}

/* categorizer.c's model_as_of reads the durable log and the rpc wire: never used here. */
int dr_group_read_versioned(dr_group *group, uint32_t subgroup, dr_read_mode mode, int64_t key,
                            dr_versioned *out) {
    (void)group, (void)subgroup, (void)mode, (void)key, (void)out;
    CHECK(false, "unexpected dr_group_read_versioned");
    return DR_ESTATE;
}

int dr_group_read_replay_base(dr_group *group, uint32_t subgroup, int64_t *floor_out,
                              uint8_t **bytes_out, size_t *len_out) {
    (void)group, (void)subgroup, (void)floor_out, (void)bytes_out, (void)len_out;
    CHECK(false, "unexpected dr_group_read_replay_base");
    return DR_ESTATE;
}

void dr_versioned_clear(dr_versioned *out) {
    (void)out;
    CHECK(false, "unexpected dr_versioned_clear");
}

int dr_rpc_decode_logged_call(const uint8_t *bytes, size_t len, dr_rpc_logged_call *out) {
    (void)bytes, (void)len, (void)out;
    CHECK(false, "unexpected dr_rpc_decode_logged_call");
    return DR_EPROTO;
}

uint32_t dr_rpc_method_id(const char *name) {
    (void)name;
    CHECK(false, "unexpected dr_rpc_method_id");
    return 0;
}

/* ---- the view ----------------------------------------------------------------------------- */

/* View 5: node 0 alone in the function tier; the categorizer tier's num_shards shards of
 * per_shard members each, node ids 1, 2, ... in shard order. Every member up. */
static void make_view(uint32_t num_shards, uint32_t per_shard) {
    memset(&g_view, 0, sizeof g_view);
    CHECK(1 + num_shards * per_shard <= MAX_NODES, "too many nodes");
    g_view.view.vid = 5;
    g_view.my_id = 0;
    g_view.view.num_members = 1 + num_shards * per_shard;
    for (uint32_t i = 0; i < g_view.view.num_members; i++) {
        g_view.view.member_ids[i] = i;
        snprintf(g_view.view.addresses[i], DR_ADDRESS_MAX, "127.0.0.1:%u", 23580 + i);
    }
    g_view.layout.num_subgroups = 2;
    dr_subgroup_layout *function_tier = &g_view.layout.subgroups[FUNCTION_SUBGROUP];
    function_tier->num_shards = 1;
    function_tier->shards[0] = (dr_shard_layout){.num_members = 1, .min_nodes = 1, .max_nodes = 1};
    dr_subgroup_layout *categorizer = &g_view.layout.subgroups[CATEGORIZER_SUB];
    categorizer->index_in_type = 0;
    categorizer->type_index = 1;
    categorizer->num_shards = num_shards;
    for (uint32_t s = 0; s < num_shards; s++) {
        dr_shard_layout *shard = &categorizer->shards[s];
        shard->num_members = per_shard;
        shard->min_nodes = 1;
        shard->max_nodes = per_shard;
        for (uint32_t m = 0; m < per_shard; m++)
            shard->member_ids[m] = 1 + s * per_shard + m;
    }
}

/* Marks node_id failed in the view (it stays in the member list and its shard). */
static void mark_failed(uint32_t node_id) {
    for (uint32_t i = 0; i < g_view.view.num_members; i++) {
        if (g_view.view.member_ids[i] == node_id)
            g_view.view.failed[i] = true;
    }
}

/* Drops node_id from the view's member list (its shard still lists it). */
static void drop_from_view(uint32_t node_id) {
    uint32_t kept = 0;
    for (uint32_t i = 0; i < g_view.view.num_members; i++) {
        if (g_view.view.member_ids[i] != node_id)
            g_view.view.member_ids[kept++] = g_view.view.member_ids[i];
    }
    g_view.view.num_members = kept;
}

/* ---- the service under test --------------------------------------------------------------- */

static sd_service *g_service;

/* A new service: every shard's round-robin cursor at rank 0. */
static void restart_service(void) {
    sd_service_destroy(g_service);
    sd_service_config config = {.function_subgroup = FUNCTION_SUBGROUP,
                                .categorizer_subgroup = CATEGORIZER_SUB,
                                .inference_timeout_ms = INFERENCE_TIMEOUT};
    g_service = NULL;
    assert_int_equal(sd_service_create((dr_rpc_node *)(uintptr_t)0x5d, &config, &g_service), DR_OK);
}

static int setup(void **state) {
    (void)state;
    memset(g_nodes, 0, sizeof g_nodes);
    memset(g_peer_down, 0, sizeof g_peer_down);
    g_stopped = DR_OK;
    g_trace[0] = '\0';
    g_pending_live = 0;
    make_view(1, 3);
    g_service = NULL;
    restart_service();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    sd_service_destroy(g_service);
    g_service = NULL;
    return 0;
}

/* Whatsthis through the backend the gRPC and HTTP fronts use: its return code, the answer in
 * *desc (caller frees; NULL after an error), the error in *err. Clears the trace first and
 * asserts that every started call was freed. */
static int whatsthis(const uint32_t *tags, size_t n_tags, char **desc, dr_err *err) {
    sd_backend backend = sd_service_backend(g_service);
    assert_ptr_equal(backend.user, g_service);
    g_trace[0] = '\0';
    *desc = NULL;
    *err = (dr_err){0};
    int rc = backend.whatsthis(backend.user, tags, n_tags, k_photo, sizeof k_photo, desc, err);
    assert_int_equal(g_pending_live, 0);
    if (rc != DR_OK)
        assert_null(*desc);
    return rc;
}

/* Whatsthis of one tag that must succeed with `answer` after exactly the calls of `trace`. */
static void expect_answer(uint32_t tag, const char *trace, const char *answer) {
    char *desc = NULL;
    dr_err err;
    int rc = whatsthis(&tag, 1, &desc, &err);
    assert_string_equal(g_trace, trace);
    assert_string_equal(err.msg, "");
    assert_int_equal(rc, DR_OK);
    assert_string_equal(desc, answer);
    free(desc);
}

/* Whatsthis of one tag that must fail with code and message after exactly the calls of trace. */
static void expect_error(uint32_t tag, const char *trace, int code, const char *message) {
    char *desc = NULL;
    dr_err err;
    int rc = whatsthis(&tag, 1, &desc, &err);
    assert_string_equal(g_trace, trace);
    assert_string_equal(err.msg, message);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_round_robin_alternates_over_each_shards_replicas(void **state) {
    (void)state;
    make_view(2, 2); /* shard 0: nodes 1, 2 (even tags); shard 1: nodes 3, 4 (odd tags) */
    expect_answer(2, "start node 1 tag 2; wait node 1 tag 2", "label of tag 2 from node 1");
    expect_answer(2, "start node 2 tag 2; wait node 2 tag 2", "label of tag 2 from node 2");
    expect_answer(2, "start node 1 tag 2; wait node 1 tag 2", "label of tag 2 from node 1");
    expect_answer(4, "start node 2 tag 4; wait node 2 tag 4", "label of tag 4 from node 2");
    /* shard 1 has its own cursor, untouched by shard 0's four calls */
    expect_answer(3, "start node 3 tag 3; wait node 3 tag 3", "label of tag 3 from node 3");
    /* two tags in one request: both started, then both waited for; answers joined in order */
    uint32_t tags[] = {2, 3};
    char *desc = NULL;
    dr_err err;
    assert_int_equal(whatsthis(tags, 2, &desc, &err), DR_OK);
    assert_string_equal(g_trace, "start node 1 tag 2; start node 4 tag 3; "
                                 "wait node 1 tag 2; wait node 4 tag 3");
    assert_string_equal(desc, "label of tag 2 from node 1 or label of tag 3 from node 4");
    free(desc);
    /* three replicas: each in turn */
    make_view(1, 3);
    restart_service();
    for (uint32_t round = 0; round < 2; round++) {
        for (uint32_t node = 1; node <= 3; node++) {
            char trace[128], answer[64];
            snprintf(trace, sizeof trace, "start node %u tag 7; wait node %u tag 7", node, node);
            snprintf(answer, sizeof answer, "label of tag 7 from node %u", node);
            expect_answer(7, trace, answer);
        }
    }
}

static void test_each_retryable_status_moves_the_tag_to_the_next_replica(void **state) {
    (void)state;
    const int retryable[] = {DR_EREMOVED, DR_ETIMEDOUT, DR_ECLOSED,
                             DR_EIO,      DR_EAGAIN,    DR_ENOTFOUND};
    for (size_t i = 0; i < sizeof retryable / sizeof *retryable; i++) {
        print_message("node 1 answers %s\n", dr_strerror(retryable[i]));
        restart_service();
        g_nodes[1] = (node_script){.status = retryable[i], .reason = CATEGORIZER_REASON};
        expect_answer(4, "start node 1 tag 4; wait node 1 tag 4; call node 2 tag 4",
                      "label of tag 4 from node 2");
        print_message("the start on node 1 fails with %s\n", dr_strerror(retryable[i]));
        restart_service();
        g_nodes[1] = (node_script){.start_status = retryable[i]};
        expect_answer(4, "start node 1 tag 4; call node 2 tag 4", "label of tag 4 from node 2");
    }
}

static void test_retries_go_on_until_a_replica_answers_with_the_tags_own_args(void **state) {
    (void)state;
    /* node 1 times out, node 2 is gone, node 3 answers */
    g_nodes[1].status = DR_ETIMEDOUT;
    g_nodes[2].status = DR_EREMOVED;
    expect_answer(4, "start node 1 tag 4; wait node 1 tag 4; call node 2 tag 4; call node 3 tag 4",
                  "label of tag 4 from node 3");
    /* two tags share one args buffer (the last started tag in it): the retry of the first
     * tag carries its own tag and the photo */
    make_view(2, 2);
    restart_service();
    memset(g_nodes, 0, sizeof g_nodes);
    g_nodes[1].status = DR_EREMOVED;
    uint32_t tags[] = {4, 5};
    char *desc = NULL;
    dr_err err;
    assert_int_equal(whatsthis(tags, 2, &desc, &err), DR_OK);
    assert_string_equal(g_trace, "start node 1 tag 4; start node 3 tag 5; wait node 1 tag 4; "
                                 "call node 2 tag 4; wait node 3 tag 5");
    assert_string_equal(desc, "label of tag 4 from node 2 or label of tag 5 from node 3");
    free(desc);
}

static void test_members_failed_in_the_view_or_reported_down_are_skipped(void **state) {
    (void)state;
    /* node 1 failed in the view, node 2's connection down: every call goes to node 3 */
    mark_failed(1);
    g_peer_down[2] = true;
    for (int i = 0; i < 3; i++)
        expect_answer(4, "start node 3 tag 4; wait node 3 tag 4", "label of tag 4 from node 3");
    /* a retry skips them too: node 1 is back and fails, node 2 is still down */
    make_view(1, 3);
    restart_service();
    g_nodes[1].status = DR_ECLOSED;
    expect_answer(4, "start node 1 tag 4; wait node 1 tag 4; call node 3 tag 4",
                  "label of tag 4 from node 3");
    /* a shard member missing from the view's member list is skipped as failed */
    memset(g_nodes, 0, sizeof g_nodes);
    g_peer_down[2] = false;
    drop_from_view(1);
    restart_service();
    expect_answer(4, "start node 2 tag 4; wait node 2 tag 4", "label of tag 4 from node 2");
    expect_answer(4, "start node 2 tag 4; wait node 2 tag 4", "label of tag 4 from node 2");
    expect_answer(4, "start node 3 tag 4; wait node 3 tag 4", "label of tag 4 from node 3");
}

static void test_no_replica_left_is_a_clear_error(void **state) {
    (void)state;
    /* no usable member at all: no call, DR_EAGAIN (gRPC UNAVAILABLE, HTTP 503) */
    make_view(1, 2);
    mark_failed(1);
    g_peer_down[2] = true;
    expect_error(4, "", DR_EAGAIN,
                 "no live replica of categorizer shard 0 can classify for tag 4 "
                 "(waiting for a node)");
    /* every usable member asked once, each failed with a retryable status */
    make_view(1, 2);
    g_peer_down[2] = false;
    restart_service();
    g_nodes[1] = (node_script){.status = DR_EREMOVED, .reason = CATEGORIZER_REASON};
    g_nodes[2].status = DR_ENOTFOUND;
    expect_error(4, "start node 1 tag 4; wait node 1 tag 4; call node 2 tag 4", DR_EAGAIN,
                 "no live replica of categorizer shard 0 can classify for tag 4 (every one asked "
                 "failed; the last, node 2: not found)");
    /* one tag of two without a replica fails the request; the other's call is freed */
    make_view(2, 2);
    memset(g_nodes, 0, sizeof g_nodes);
    mark_failed(3);
    g_peer_down[4] = true;
    restart_service();
    uint32_t tags[] = {4, 5};
    char *desc = NULL;
    dr_err err;
    assert_int_equal(whatsthis(tags, 2, &desc, &err), DR_EAGAIN);
    assert_string_equal(g_trace, "start node 1 tag 4; wait node 1 tag 4");
    assert_string_equal(err.msg, "no live replica of categorizer shard 1 can classify for tag 5 "
                                 "(waiting for a node)");
}

static void test_other_errors_and_the_models_own_answers_are_not_retried(void **state) {
    (void)state;
    /* the handler refuses the arguments: its reason, no other replica asked */
    g_nodes[1] = (node_script){.status = DR_EINVAL,
                               .reason = "malformed inference arguments (or photo over the limit)"};
    expect_error(4, "start node 1 tag 4; wait node 1 tag 4", DR_EINVAL,
                 "categorizer node 1 (shard 0) could not classify for tag 4: invalid argument: "
                 "malformed inference arguments (or photo over the limit)");
    /* the start itself refused (args over the request limit) */
    g_nodes[2].start_status = DR_ETOOBIG;
    expect_error(4, "start node 2 tag 4", DR_ETOOBIG,
                 "categorizer node 2 (shard 0) could not classify for tag 4: too big");
    /* a retried call that fails otherwise ends the retries: node 3 is never asked */
    restart_service();
    memset(g_nodes, 0, sizeof g_nodes);
    g_nodes[1].status = DR_EREMOVED;
    g_nodes[2] = (node_script){.status = DR_ECORRUPT, .reason = "engine failed"};
    expect_error(4, "start node 1 tag 4; wait node 1 tag 4; call node 2 tag 4", DR_ECORRUPT,
                 "categorizer node 2 (shard 0) could not classify for tag 4: corrupt data: "
                 "engine failed");
    /* the model's own answer is the answer, even when another replica might know the tag */
    restart_service();
    memset(g_nodes, 0, sizeof g_nodes);
    g_nodes[1].kind = SD_ANSWER_NO_MODEL;
    expect_answer(4, "start node 1 tag 4; wait node 1 tag 4", SD_DESC_NO_MODEL);
}

/* GET /v1/models/{tag}?version= (the model_as_of hook): a replica whose history is shorter
 * (DR_ERANGE) or gone passes the query to the next; "not durable" and the answers are final. */
/* The service's model_as_of hook (GET /v1/models/{tag}?version= / ?time=). */
static int model_as_of(uint32_t tag, bool by_time, int64_t key, char **json, dr_err *err) {
    sd_http_hooks hooks = sd_service_http_hooks(g_service); /* the service of now */
    return hooks.model_as_of(hooks.user, tag, by_time, key, json, err);
}

static void test_model_as_of_goes_on_to_a_replica_with_a_longer_history(void **state) {
    (void)state;
    char *json = NULL;
    dr_err err = {0};
    g_nodes[1] = (node_script){.status = DR_ERANGE, .reason = "older than this replica"};
    g_trace[0] = '\0';
    assert_int_equal(model_as_of(7, false, 5, &json, &err), DR_OK);
    assert_string_equal(g_trace, "call node 1 tag 7; call node 2 tag 7");
    assert_non_null(strstr(json, "\"digest\":\"00000000000000d2\""));
    assert_non_null(strstr(json, "\"replica\":2"));
    assert_non_null(strstr(json, "\"as_of\":{\"version\":5,\"resolved_version\":77}"));
    free(json);
    json = NULL;
    /* every replica's history is shorter: the last one's reason */
    restart_service();
    g_nodes[2] = g_nodes[3] = g_nodes[1];
    g_trace[0] = '\0';
    assert_int_equal(model_as_of(7, true, 9, &json, &err), DR_ERANGE);
    assert_null(json);
    assert_string_equal(g_trace, "call node 1 tag 7; call node 2 tag 7; call node 3 tag 7");
    assert_string_equal(
        err.msg, "model of tag 7 as of time 9 (categorizer node 3): older than this replica");
    /* not durable: the same everywhere, not retried */
    restart_service();
    memset(g_nodes, 0, sizeof g_nodes);
    g_nodes[1] =
        (node_script){.status = DR_ESTATE, .reason = "the categorizer shard is not durable"};
    g_trace[0] = '\0';
    assert_int_equal(model_as_of(7, false, 5, &json, &err), DR_ESTATE);
    assert_string_equal(g_trace, "call node 1 tag 7");
    assert_non_null(strstr(err.msg, "not durable"));
    /* no model then; an unknown method everywhere is no "no model" */
    restart_service();
    memset(g_nodes, 0, sizeof g_nodes);
    g_nodes[1].kind = SD_ANSWER_NO_MODEL;
    assert_int_equal(model_as_of(7, false, 5, &json, &err), DR_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no model under tag 7 as of version 5: removed at version 42"));
    restart_service();
    memset(g_nodes, 0, sizeof g_nodes);
    g_nodes[1].status = g_nodes[2].status = g_nodes[3].status = DR_ENOTFOUND;
    assert_int_equal(model_as_of(7, false, 5, &json, &err), DR_EUNSUPPORTED);
    assert_null(json);
}

static void test_a_stopped_node_refuses_without_calling(void **state) {
    (void)state;
    g_stopped = DR_EREMOVED;
    expect_error(4, "", DR_ECLOSED,
                 "this node is no longer a member of the group (the group excluded it)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_robin_alternates_over_each_shards_replicas,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_each_retryable_status_moves_the_tag_to_the_next_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_retries_go_on_until_a_replica_answers_with_the_tags_own_args, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_members_failed_in_the_view_or_reported_down_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_replica_left_is_a_clear_error, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_other_errors_and_the_models_own_answers_are_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_as_of_goes_on_to_a_replica_with_a_longer_history,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stopped_node_refuses_without_calling, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
