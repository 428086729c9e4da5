/*
 * durable_kv_node: one member of a durable replicated KV map built on dr_rpc_type, a real
 * process (test_replay_procs.c; docs/persistence.md "Replay").
 *
 *   durable_kv_node CONFIG_FILE --puts N [--wait-members K] [--restarted] [--check-puts N]
 *                   [--checkpoint-every C]
 *
 * The map holds, per (writer node < 4, index < MAX_INDEX), the value of the last put; its state
 * also counts the puts applied and chains an FNV-1a digest over them in delivery order, so two
 * replicas with the same digest applied the same puts in the same order. The ordered method
 * "put" (u32 writer, u32 index, u64 value) is the only update; serialize/restore carry the whole
 * state to a joiner.
 *
 * Load run (default): waits for a view of K members (--wait-members, default 1), makes N puts
 * (index 0..N-1, value index * 7 + writer), waits until the last one is globally persisted
 * (dr_rpc_results_wait_persisted), prints
 *   ACKED node=<id> puts=<N> vid=<view>
 * then keeps putting (index N, N+1, ...) without waiting until it is killed; after LOADED_PUTS
 * of those it prints "LOADED node=<id> puts=<n>" (the test kills then: puts are in flight).
 * --checkpoint-every C: at every C-th put applied here (not replayed) while no snapshot waits,
 *   the delivery thread serializes the map as of that put's version; the load loop checkpoints it
 *   (dr_group_checkpoint) once the version is globally persisted, printing
 *   "CHECKPOINT node=<id> version=<v>"; LOADED then waits for the first checkpoint too.
 * --restarted: waits for the restart view's upcall (the log's replay runs before it), prints
 *   STATE node=<id> vid=<view> members=<n> count=<puts applied> digest=<chain>
 *         acked_ok=<1 when every put index < --check-puts of writers 0..2 is present with its
 *                  value> replayed=<ordered calls re-executed from the log>
 *         base=<1 when restore ran: a replay base or a state transfer>
 * and waits for its standard input to close. "FAIL node=<id> <why>" on failure.
 */
#include "common/hash.h"
#include "derecho/config.h"
#include "derecho/durable.h"
#include "derecho/log.h"
#include "derecho/rpc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_WRITERS = 4, MAX_INDEX = 4096, LOADED_PUTS = 50 };

#define STATE_MAGIC 0x4b564453u /* "SDVK" */

typedef struct kv_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t values[MAX_WRITERS][MAX_INDEX]; /* value + 1; 0: never put */
    uint64_t count;                          /* puts applied */
    uint64_t digest;                         /* FNV-1a chain over the applied puts' arguments */
    uint64_t replayed;                       /* puts re-executed from the log */
    bool base;                               /* a replay base was restored */
    uint32_t views;                          /* application view upcalls */
    uint32_t checkpoint_every;               /* --checkpoint-every (0: none) */
    dr_buf snapshot;          /* the state serialized at snapshot_version, not checkpointed yet */
    int64_t snapshot_version; /* -1: no snapshot waiting */
} kv_state;

static kv_state state;

/* Appends the state's serialized form (state.lock held). */
static void put_state(dr_buf *out) {
    dr_buf_put_u32(out, STATE_MAGIC);
    dr_buf_put_u64(out, state.count);
    dr_buf_put_u64(out, state.digest);
    dr_buf_put_bytes(out, state.values, sizeof state.values);
}

/*
 * The refusals of dr_group_checkpoint and reads after it, checked after the first checkpoint at
 * `version` (`ahead`: a version not globally persisted). Returns NULL or what went wrong.
 */
static const char *check_checkpoint_rules(dr_group *group, int64_t version, int64_t ahead) {
    uint8_t byte = 0;
    if (dr_group_checkpoint(group, 0, ahead, &byte, 1) != DR_EAGAIN)
        return "a version not globally persisted was not refused with DR_EAGAIN";
    if (dr_group_checkpoint(group, 0, version - 1, &byte, 1) != DR_EINVAL)
        return "a checkpoint older than the base was not refused with DR_EINVAL";
    if (dr_group_checkpoint(group, 0, -1, &byte, 1) != DR_EINVAL)
        return "a negative version was not refused with DR_EINVAL";
    if (dr_group_checkpoint(group, 7, version, &byte, 1) != DR_ESTATE)
        return "a subgroup without a log was not refused with DR_ESTATE";
    dr_versioned read = {0};
    if (dr_group_read_versioned(group, 0, DR_READ_EXACT, version, &read) != DR_ENOTFOUND)
        return "a version the checkpoint trimmed is still readable";
    int rc = dr_group_read_versioned(group, 0, DR_READ_LATEST, 0, &read);
    dr_versioned_clear(&read);
    return rc == DR_OK ? NULL : "the latest version is not readable after the checkpoint";
}

/*
 * dr_group_read_replay_base after the checkpoint at `version` of `saved`: the same bytes,
 * floor version + 1; DR_ESTATE for a subgroup without a log. Returns NULL or what went wrong.
 */
static const char *check_base_read_back(dr_group *group, int64_t version, const dr_buf *saved) {
    int64_t floor = -1;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = dr_group_read_replay_base(group, 0, &floor, &bytes, &len);
    bool same = rc == DR_OK && floor == version + 1 && len == saved->len &&
                (len == 0 || memcmp(bytes, saved->data, len) == 0);
    free(bytes);
    if (!same)
        return "the replay base read back is not the checkpoint's state and floor";
    if (dr_group_read_replay_base(group, 7, &floor, &bytes, &len) != DR_ESTATE)
        return "the replay base of a subgroup without a log was not refused with DR_ESTATE";
    return NULL;
}

/*
 * Checkpoints the waiting snapshot if its version is globally persisted (load loop). Returns 1
 * if it checkpointed, 0 if there was nothing to do, -1 on failure (printed).
 */
static int maybe_checkpoint(dr_group *group, uint32_t me) {
    pthread_mutex_lock(&state.lock);
    int64_t version = state.snapshot_version;
    if (version < 0 || dr_group_persisted_version(group, 0, true) < version) {
        pthread_mutex_unlock(&state.lock);
        return 0;
    }
    dr_buf bytes = state.snapshot; /* taken over: the delivery thread starts a fresh one */
    dr_buf_init(&state.snapshot, 0);
    state.snapshot_version = -1;
    pthread_mutex_unlock(&state.lock);
    int rc = dr_group_checkpoint(group, 0, version, bytes.data, bytes.len);
    if (rc != DR_OK) {
        dr_buf_free(&bytes);
        printf("FAIL node=%" PRIu32 " checkpoint at %" PRId64 ": %s\n", me, version,
               dr_strerror(rc));
        return -1;
    }
    static bool checked = false;
    const char *wrong = NULL;
    if (!checked) {
        checked = true;
        wrong = check_checkpoint_rules(group, version, INT64_MAX);
        if (!wrong)
            wrong = check_base_read_back(group, version, &bytes);
    }
    dr_buf_free(&bytes);
    if (wrong) {
        printf("FAIL node=%" PRIu32 " %s\n", me, wrong);
        return -1;
    }
    printf("CHECKPOINT node=%" PRIu32 " version=%" PRId64 "\n", me, version);
    fflush(stdout);
    return 1;
}

static int handle_put(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                      dr_buf *reply) {
    (void)ctx;
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint32_t writer = dr_reader_u32(&reader);
    uint32_t index = dr_reader_u32(&reader);
    uint64_t value = dr_reader_u64(&reader);
    if (!dr_reader_done(&reader) || writer >= MAX_WRITERS || index >= MAX_INDEX)
        return DR_EINVAL;
    pthread_mutex_lock(&state.lock);
    state.values[writer][index] = value + 1;
    state.count++;
    state.digest = test_hash(state.digest, args, len);
    if (info->replayed)
        state.replayed++;
    /* a snapshot waits until the load loop checkpoints it; none is taken meanwhile (a newer one
     * replacing it would starve the checkpoint whenever persistence lags more than C puts) */
    if (state.checkpoint_every && !info->replayed && state.snapshot_version < 0 &&
        state.count % state.checkpoint_every == 0) {
        dr_buf_reset(&state.snapshot);
        put_state(&state.snapshot);
        state.snapshot_version = state.snapshot.failed ? -1 : info->version;
    }
    dr_buf_put_u64(reply, state.count);
    pthread_mutex_unlock(&state.lock);
    return DR_OK;
}

static int serialize(void *ctx, uint32_t subgroup, dr_buf *out) {
    (void)ctx;
    (void)subgroup;
    pthread_mutex_lock(&state.lock);
    put_state(out);
    pthread_mutex_unlock(&state.lock);
    return out->failed ? DR_ENOMEM : DR_OK;
}

static int restore(void *ctx, uint32_t subgroup, const uint8_t *bytes, size_t len) {
    (void)ctx;
    (void)subgroup;
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t magic = dr_reader_u32(&reader);
    uint64_t count = dr_reader_u64(&reader);
    uint64_t digest = dr_reader_u64(&reader);
    const uint8_t *values = dr_reader_bytes(&reader, sizeof state.values);
    if (magic != STATE_MAGIC || !dr_reader_done(&reader))
        return DR_ECORRUPT;
    pthread_mutex_lock(&state.lock);
    state.count = count;
    state.digest = digest;
    memcpy(state.values, values, sizeof state.values);
    state.base = true;
    pthread_mutex_unlock(&state.lock);
    return DR_OK;
}

static void on_view(void *ctx, const dr_group_view *view) {
    (void)ctx;
    (void)view;
    pthread_mutex_lock(&state.lock);
    state.views++;
    pthread_cond_broadcast(&state.cond);
    pthread_mutex_unlock(&state.lock);
}

static const dr_rpc_method methods[] = {{"put", DR_RPC_ORDERED, handle_put, DR_RPC_MEMBERS_ONLY}};

static int put(dr_rpc_node *node, uint32_t me, uint32_t index, dr_rpc_results **results) {
    dr_buf args;
    dr_buf_init(&args, 16);
    dr_buf_put_u32(&args, me);
    dr_buf_put_u32(&args, index);
    dr_buf_put_u64(&args, (uint64_t)index * 7 + me);
    int rc = dr_rpc_ordered_call(node, 0, "put", args.data, args.len, 30000, results);
    dr_buf_free(&args);
    return rc;
}

/* The load run: N acknowledged puts, then puts until killed. Returns only on failure. */
static int load(dr_rpc_node *node, uint32_t me, uint32_t puts) {
    dr_rpc_results *last = NULL;
    for (uint32_t i = 0; i < puts; i++) {
        dr_rpc_results *results = NULL;
        int rc = put(node, me, i, &results);
        if (rc != DR_OK) {
            printf("FAIL node=%" PRIu32 " put %" PRIu32 ": %s\n", me, i, dr_strerror(rc));
            return 1;
        }
        dr_rpc_results_free(last);
        last = results;
    }
    int rc = puts ? dr_rpc_results_wait_persisted(node, 0, last, true, 60000) : DR_OK;
    dr_rpc_results_free(last);
    dr_group_view view;
    if (rc == DR_OK)
        rc = dr_group_get_view(dr_rpc_node_group(node), &view);
    if (rc != DR_OK) {
        printf("FAIL node=%" PRIu32 " wait persisted: %s\n", me, dr_strerror(rc));
        return 1;
    }
    printf("ACKED node=%" PRIu32 " puts=%" PRIu32 " vid=%" PRId32 "\n", me, puts, view.view.vid);
    fflush(stdout);
    uint32_t checkpoints = 0;
    bool loaded = false;
    for (uint32_t i = puts; i < MAX_INDEX; i++) { /* until killed, a put every 2 ms */
        dr_rpc_results *results = NULL;
        if (put(node, me, i, &results) != DR_OK)
            break;
        dr_rpc_results_free(results);
        int checkpointed = maybe_checkpoint(dr_rpc_node_group(node), me);
        if (checkpointed < 0)
            return 1;
        checkpoints += (uint32_t)checkpointed;
        if (!loaded && i >= puts + LOADED_PUTS && (!state.checkpoint_every || checkpoints > 0)) {
            printf("LOADED node=%" PRIu32 " puts=%" PRIu32 "\n", me, i + 1);
            fflush(stdout); /* the test kills the nodes now, with puts in flight */
            loaded = true;
        }
        usleep(2000);
    }
    printf("FAIL node=%" PRIu32 " the load ended before the kill\n", me);
    return 1;
}

static int report_state(dr_rpc_node *node, uint32_t me, uint32_t check_puts) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    int rc = 0;
    pthread_mutex_lock(&state.lock); /* the replay runs before the restart view's upcall */
    while (rc == 0 && state.views == 0)
        rc = pthread_cond_timedwait(&state.cond, &state.lock, &deadline);
    bool acked_ok = true;
    for (uint32_t w = 0; w < 3; w++)
        for (uint32_t i = 0; i < check_puts && i < MAX_INDEX; i++)
            acked_ok &= state.values[w][i] == (uint64_t)i * 7 + w + 1;
    uint64_t count = state.count, digest = state.digest, replayed = state.replayed;
    bool base = state.base;
    pthread_mutex_unlock(&state.lock);
    dr_group_view view;
    if (rc != 0 || dr_group_get_view(dr_rpc_node_group(node), &view) != DR_OK) {
        printf("FAIL node=%" PRIu32 " no view upcall\n", me);
        return 1;
    }
    printf("STATE node=%" PRIu32 " vid=%" PRId32 " members=%" PRIu32 " count=%" PRIu64
           " digest=%" PRIu64 " acked_ok=%d replayed=%" PRIu64 " base=%d\n",
           me, view.view.vid, view.view.num_members, count, digest, acked_ok ? 1 : 0, replayed,
           base ? 1 : 0);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: durable_kv_node CONFIG_FILE --puts N [--wait-members K] "
                        "[--restarted] [--check-puts N] [--checkpoint-every C]\n");
        return 2;
    }
    uint32_t puts = 0, wait_members = 1, check_puts = 0;
    bool restarted = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--puts") == 0 && i + 1 < argc)
            puts = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--wait-members") == 0 && i + 1 < argc)
            wait_members = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--check-puts") == 0 && i + 1 < argc)
            check_puts = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--checkpoint-every") == 0 && i + 1 < argc)
            state.checkpoint_every = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--restarted") == 0)
            restarted = true;
        else {
            fprintf(stderr, "durable_kv_node: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (puts > MAX_INDEX) {
        fprintf(stderr, "durable_kv_node: at most %d puts\n", MAX_INDEX);
        return 2;
    }
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.file_path = argv[1]};
    if (dr_config_load(&options, &config, &err)) {
        fprintf(stderr, "durable_kv_node: %s\n", err.msg);
        return 1;
    }
    dr_config_apply_logging(config);
    dr_layout_spec spec = {.num_types = 1};
    snprintf(spec.types[0].name, sizeof spec.types[0].name, "KV");
    spec.types[0].num_subgroups = 1;
    if (dr_group_policy_from_config(config, "TEST", DR_MODE_ORDERED, &spec.types[0].policy, &err)) {
        fprintf(stderr, "durable_kv_node: %s\n", err.msg);
        return 1;
    }
    pthread_mutex_init(&state.lock, NULL);
    pthread_cond_init(&state.cond, NULL);
    state.digest = TEST_HASH_SEED;
    dr_buf_init(&state.snapshot, 0);
    state.snapshot_version = -1;
    dr_rpc_type type = {.name = "KV",
                        .methods = methods,
                        .num_methods = 1,
                        .serialize = serialize,
                        .restore = restore};
    dr_rpc_node_options node_options = {.app_callbacks = {.on_view = on_view}};
    dr_rpc_node *node = NULL;
    if (dr_rpc_node_create(config, &spec, &type, 1, &node_options, &node, &err)) {
        fprintf(stderr, "durable_kv_node: cannot start: %s\n", err.msg);
        return 1;
    }
    uint32_t me = dr_group_my_id(dr_rpc_node_group(node));
    dr_group *group = dr_rpc_node_group(node);
    int rc = dr_group_wait_view(group, 0, 30000);
    for (int waited_ms = 0; rc == 0 && waited_ms < 30000; waited_ms += 10) {
        dr_group_view view;
        if (dr_group_get_view(group, &view) == 0 && view.view.num_members >= wait_members)
            break;
        usleep(10000);
    }
    int status = rc != 0     ? 1
                 : restarted ? report_state(node, me, check_puts)
                             : load(node, me, puts);
    if (rc != 0)
        printf("FAIL node=%" PRIu32 " no view: %s\n", me, dr_strerror(rc));
    fflush(stdout);
    char sink[64];
    while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    dr_rpc_node_destroy(node);
    dr_config_free(config);
    return status;
}
