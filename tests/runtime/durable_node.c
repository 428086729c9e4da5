/*
 * durable_node: one member of a durable test group (test_durable_procs.c), a real process.
 *
 *   durable_node CONFIG_FILE --messages N --size BYTES --expect-senders S [--check-reads]
 *                [--start-members K]  (wait for a view of K members before sending)
 *                [--fsize-limit BYTES] (disk full: RLIMIT_FSIZE)
 *
 * Joins the group of CONFIG_FILE with one subgroup type DURABLE (profile [SUBGROUP/TEST], which
 * the test makes durable), sends N messages of BYTES bytes (derived from (sender, index)),
 * delivers N x S messages, then waits (dr_group_wait_persisted) until the last delivered version
 * is persisted at every member and the global on_persisted callback reported it, and prints
 *   DONE node=<id> delivered=<n> hash=<FNV-1a of (version, bytes) in delivery order>
 *        last=<last version> global_cb=<highest global callback version>
 *        local_cb=<highest local callback version> order_ok=<0|1> reads_ok=<0|1>
 *        view_vid=<current view> saved_vid=<view id in the saved last_view> saved_members=<n>
 * (order_ok: every persistence callback came after the delivery of its version and never went
 * backwards). With --check-reads it then reads its own log through dr_group_read_versioned
 * (exact, at or below, by time, latest, and misses) against what it delivered (reads_ok; 1
 * without the option). saved_*: dr_group_load_saved_view read just before the line is printed.
 * With --fsize-limit, files may not grow beyond BYTES (writes then fail with EFBIG, as on a
 * full disk): it sends until a send fails (the node left the group when its log failed), then
 * waits for local persistence of its last delivery and prints
 *   DISKFULL node=<id> send_rc=<code> wait_rc=<code> persisted=<local version> last=<version>
 * With --crash-run (total restart test, test_restart_procs.c): after the N messages are
 * globally persisted it prints
 *   ACKED node=<id> version=<last delivered version, globally persisted> vid=<view>
 * then keeps sending until it is killed (kill -9 during sends), and prints
 *   FLOWING node=<id> delivered=<n>
 * once 100 x S more messages were delivered (the stream is in full flow). With --restarted it
 * only waits
 * for a view (the total restart's) and prints
 *   RESTARTED node=<id> vid=<view> members=<n> replayed=<records> replay_hash=<h>
 *             replay_last=<version> replay_ok=<0|1>
 * once the restart view's upcall ran: the records the total restart replayed (on_replay) before
 * it, their FNV-1a hash over (version, timestamp, bytes) as the log holds them, the last
 * replayed version, and replay_ok (versions increasing, every one before the view upcall and
 * before any new delivery, no base).
 * It waits for its standard input to close before leaving (the test's barrier); on any failure
 * it prints "FAIL node=<id> <why>" instead. Exit status 0 on success.
 */
#include "common/hash.h"
#include "derecho/config.h"
#include "derecho/durable.h"
#include "derecho/group.h"
#include "derecho/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { MAX_KEPT = 4096 };

typedef struct kept {
    int64_t version;
    uint64_t fnv; /* of the payload */
    size_t len;
} kept;

typedef struct node_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t delivered;
    uint64_t hash;
    int64_t last_version;
    int64_t global_cb, local_cb;
    bool order_ok;
    uint32_t views;            /* view upcalls so far */
    uint64_t replayed;         /* records handed back by a total restart */
    uint64_t replay_hash;      /* over (version, timestamp, bytes) */
    int64_t replay_last;       /* the last replayed version */
    bool replay_ok;            /* increasing, before the first view upcall and delivery */
    kept deliveries[MAX_KEPT]; /* the first MAX_KEPT deliveries */
} node_state;

static void fill_message(uint8_t *out, size_t len, uint32_t sender, uint64_t index) {
    uint64_t seed = ((uint64_t)sender << 40) ^ index ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (uint8_t)(seed >> 56);
    }
}

static void on_deliver(void *ctx, const dr_message *message) {
    node_state *state = ctx;
    pthread_mutex_lock(&state->lock);
    state->hash = test_hash(state->hash, &message->version, sizeof message->version);
    state->hash = test_hash(state->hash, message->bytes, message->len);
    if (state->delivered < MAX_KEPT)
        state->deliveries[state->delivered] =
            (kept){.version = message->version,
                   .fnv = test_hash(TEST_HASH_SEED, message->bytes, message->len),
                   .len = message->len};
    state->delivered++;
    if (message->version <= state->last_version)
        state->order_ok = false;
    state->last_version = message->version;
    pthread_cond_broadcast(&state->cond);
    pthread_mutex_unlock(&state->lock);
}

static int on_replay(void *ctx, const dr_message *message, bool base) {
    node_state *state = ctx;
    pthread_mutex_lock(&state->lock);
    if (base || state->views > 0 || state->delivered > 0 || message->subgroup != 0 ||
        message->version <= state->replay_last || message->sender_id != DR_NODE_NONE)
        state->replay_ok = false;
    state->replayed++;
    state->replay_hash = test_hash(state->replay_hash, &message->version, sizeof message->version);
    state->replay_hash =
        test_hash(state->replay_hash, &message->timestamp_us, sizeof message->timestamp_us);
    state->replay_hash = test_hash(state->replay_hash, message->bytes, message->len);
    state->replay_last = message->version;
    pthread_mutex_unlock(&state->lock);
    return 0;
}

static void on_view(void *ctx, const dr_group_view *view) {
    (void)view;
    node_state *state = ctx;
    pthread_mutex_lock(&state->lock);
    state->views++;
    pthread_cond_broadcast(&state->cond);
    pthread_mutex_unlock(&state->lock);
}

static void on_persisted(void *ctx, uint32_t subgroup, int64_t version, bool global) {
    node_state *state = ctx;
    pthread_mutex_lock(&state->lock);
    int64_t *mine = global ? &state->global_cb : &state->local_cb;
    /* never backwards, never ahead of what this node delivered (callbacks follow deliveries) */
    if (subgroup != 0 || version <= *mine || version > state->last_version)
        state->order_ok = false;
    *mine = version;
    pthread_cond_broadcast(&state->cond);
    pthread_mutex_unlock(&state->lock);
}

static void deadline_in(struct timespec *deadline, int seconds) {
    clock_gettime(CLOCK_REALTIME, deadline);
    deadline->tv_sec += seconds;
}

/* Checks the read API against what was delivered. Returns true if every read matched. */
static bool check_reads(dr_group *group, node_state *state) {
    uint64_t n = state->delivered < MAX_KEPT ? state->delivered : MAX_KEPT;
    dr_versioned rec = {0};
    uint64_t previous_stamp = 0;
    for (uint64_t i = 0; i < n; i++) {
        const kept *k = &state->deliveries[i];
        if (dr_group_read_versioned(group, 0, DR_READ_EXACT, k->version, &rec) != DR_OK ||
            rec.version != k->version || rec.len != k->len ||
            test_hash(TEST_HASH_SEED, rec.bytes, rec.len) != k->fnv ||
            rec.timestamp_us < previous_stamp) {
            fprintf(stderr, "durable_node: exact read of %" PRId64 " wrong\n", k->version);
            dr_versioned_clear(&rec);
            return false;
        }
        uint64_t stamp = rec.timestamp_us;
        dr_versioned_clear(&rec);
        /* by time: the record's own stamp finds it (stamps strictly grow along the log) */
        if (dr_group_read_versioned(group, 0, DR_READ_BY_TIME, (int64_t)stamp, &rec) != DR_OK ||
            rec.version != k->version) {
            fprintf(stderr, "durable_node: read by time %" PRIu64 " wrong\n", stamp);
            dr_versioned_clear(&rec);
            return false;
        }
        dr_versioned_clear(&rec);
        /* one below the stamp: the previous record (or none before the first) */
        int rc = dr_group_read_versioned(group, 0, DR_READ_BY_TIME, (int64_t)stamp - 1, &rec);
        if (i == 0 ? rc != DR_ENOTFOUND
                   : rc != DR_OK || rec.version != state->deliveries[i - 1].version) {
            fprintf(stderr, "durable_node: read by time before %" PRIu64 " wrong\n", stamp);
            dr_versioned_clear(&rec);
            return false;
        }
        dr_versioned_clear(&rec);
        /* at or below a version between this one and the next: this one */
        if (dr_group_read_versioned(group, 0, DR_READ_AT_OR_BELOW, k->version, &rec) != DR_OK ||
            rec.version != k->version) {
            dr_versioned_clear(&rec);
            return false;
        }
        dr_versioned_clear(&rec);
        previous_stamp = stamp;
    }
    const kept *first = &state->deliveries[0], *last = &state->deliveries[n - 1];
    /* misses: before the first version, a version never delivered */
    if (dr_group_read_versioned(group, 0, DR_READ_AT_OR_BELOW, first->version - 1, &rec) !=
            DR_ENOTFOUND ||
        dr_group_read_versioned(group, 0, DR_READ_EXACT, last->version + 1, &rec) != DR_ENOTFOUND ||
        dr_group_read_versioned(group, 0, (dr_read_mode)99, 0, &rec) != DR_EINVAL ||
        dr_group_read_versioned(group, 1, DR_READ_LATEST, 0, &rec) != DR_ESTATE)
        return false;
    /* beyond the last: the last; latest: the last */
    if (dr_group_read_versioned(group, 0, DR_READ_AT_OR_BELOW, INT64_MAX, &rec) != DR_OK ||
        rec.version != last->version) {
        dr_versioned_clear(&rec);
        return false;
    }
    dr_versioned_clear(&rec);
    if (dr_group_read_versioned(group, 0, DR_READ_LATEST, 0, &rec) != DR_OK ||
        rec.version != last->version) {
        dr_versioned_clear(&rec);
        return false;
    }
    dr_versioned_clear(&rec);
    return true;
}

/* Disk full: sends until the group refuses (the node left when its log failed), then reports. */
static void disk_full_run(dr_group *group, node_state *state, uint64_t messages, size_t size,
                          uint32_t my_id) {
    uint8_t *buffer = malloc(size ? size : 1);
    int send_rc = 0;
    for (uint64_t i = 0; buffer && send_rc == 0 && i < messages; i++) {
        fill_message(buffer, size, my_id, i);
        send_rc = dr_group_send(group, 0, buffer, size, 10000);
    }
    free(buffer);
    pthread_mutex_lock(&state->lock);
    int64_t last = state->last_version;
    pthread_mutex_unlock(&state->lock);
    int wait_rc = dr_group_wait_persisted(group, 0, last, false, 10000);
    printf("DISKFULL node=%" PRIu32 " send_rc=%d wait_rc=%d persisted=%" PRId64 " last=%" PRId64
           "\n",
           my_id, send_rc, wait_rc, dr_group_persisted_version(group, 0, false), last);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: durable_node CONFIG_FILE [--messages N] [--size B] "
                        "[--expect-senders S] [--check-reads]\n");
        return 2;
    }
    uint64_t messages = 10, senders = 1;
    size_t size = 100;
    bool reads = false;
    uint32_t start_members = 0;
    uint64_t fsize_limit = 0;
    bool crash_run = false, restarted = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            messages = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--expect-senders") == 0 && i + 1 < argc)
            senders = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--start-members") == 0 && i + 1 < argc)
            start_members = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--fsize-limit") == 0 && i + 1 < argc)
            fsize_limit = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--check-reads") == 0)
            reads = true;
        else if (strcmp(argv[i], "--crash-run") == 0)
            crash_run = true;
        else if (strcmp(argv[i], "--restarted") == 0)
            restarted = true;
        else {
            fprintf(stderr, "durable_node: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.file_path = argv[1]};
    if (dr_config_load(&options, &config, &err)) {
        fprintf(stderr, "durable_node: %s\n", err.msg);
        return 1;
    }
    dr_config_apply_logging(config);
    dr_layout_spec spec = {.num_types = 1};
    snprintf(spec.types[0].name, sizeof spec.types[0].name, "DURABLE");
    spec.types[0].num_subgroups = 1;
    if (dr_group_policy_from_config(config, "TEST", DR_MODE_ORDERED, &spec.types[0].policy, &err)) {
        fprintf(stderr, "durable_node: %s\n", err.msg);
        return 1;
    }
    if (fsize_limit > 0) { /* a "full disk": writes beyond the limit fail with EFBIG */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit limit = {.rlim_cur = fsize_limit, .rlim_max = fsize_limit};
        if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
            fprintf(stderr, "durable_node: setrlimit failed\n");
            return 1;
        }
    }
    static node_state state;
    state.hash = TEST_HASH_SEED;
    state.last_version = state.global_cb = state.local_cb = -1;
    state.order_ok = true;
    state.replay_hash = TEST_HASH_SEED;
    state.replay_last = -1;
    state.replay_ok = true;
    pthread_mutex_init(&state.lock, NULL);
    pthread_cond_init(&state.cond, NULL);
    dr_group_callbacks callbacks = {.on_deliver = on_deliver,
                                    .on_view = on_view,
                                    .on_persisted = on_persisted,
                                    .on_replay = on_replay,
                                    .ctx = &state};
    dr_group *group = NULL;
    if (dr_group_create(config, &spec, &callbacks, &group, &err)) {
        fprintf(stderr, "durable_node: cannot start: %s\n", err.msg);
        return 1;
    }
    uint32_t my_id = dr_group_my_id(group);
    int rc = dr_group_wait_view(group, 0, 30000);
    for (int waited_ms = 0; rc == 0 && start_members > 0 && waited_ms < 30000; waited_ms += 10) {
        dr_group_view view; /* joins are view changes: wait for the whole group before sending */
        if (dr_group_get_view(group, &view) == 0 && view.view.num_members >= start_members)
            break;
        usleep(10000);
    }
    if (restarted) {
        dr_group_view view;
        if (rc == 0)
            rc = dr_group_get_view(group, &view);
        struct timespec deadline;
        deadline_in(&deadline, 60);
        pthread_mutex_lock(&state.lock); /* the replay runs before the view upcall */
        while (rc == 0 && state.views == 0)
            if (pthread_cond_timedwait(&state.cond, &state.lock, &deadline) != 0)
                rc = -1;
        pthread_mutex_unlock(&state.lock);
        if (rc == 0)
            printf("RESTARTED node=%" PRIu32 " vid=%" PRId32 " members=%" PRIu32
                   " replayed=%" PRIu64 " replay_hash=%" PRIu64 " replay_last=%" PRId64
                   " replay_ok=%d\n",
                   my_id, view.view.vid, view.view.num_members, state.replayed, state.replay_hash,
                   state.replay_last, state.replay_ok ? 1 : 0);
        else
            printf("FAIL node=%" PRIu32 " no view rc=%d\n", my_id, rc);
        fflush(stdout);
        char sink[64];
        while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
        }
        dr_group_destroy(group);
        dr_config_free(config);
        return rc == 0 ? 0 : 1;
    }
    if (rc == 0 && fsize_limit > 0) {
        disk_full_run(group, &state, messages, size, my_id);
        char sink[64];
        while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
        }
        dr_group_destroy(group);
        dr_config_free(config);
        return 0;
    }
    uint8_t *buffer = malloc(size ? size : 1);
    for (uint64_t i = 0; rc == 0 && i < messages; i++) {
        fill_message(buffer, size, my_id, i);
        rc = dr_group_send(group, 0, buffer, size, 60000);
    }
    free(buffer);
    const char *why = rc ? "send" : NULL;
    pthread_mutex_lock(&state.lock);
    struct timespec deadline;
    deadline_in(&deadline, 60);
    while (!why && state.delivered < messages * senders)
        if (pthread_cond_timedwait(&state.cond, &state.lock, &deadline) == ETIMEDOUT)
            why = "deliveries";
    int64_t last = state.last_version;
    pthread_mutex_unlock(&state.lock);
    if (!why && (rc = dr_group_wait_persisted(group, 0, last, true, 30000)) != 0)
        why = "wait_persisted";
    if (!why && dr_group_persisted_version(group, 0, true) < last)
        why = "persisted_version";
    pthread_mutex_lock(&state.lock);
    deadline_in(&deadline, 30);
    while (!why && (state.global_cb < last || state.local_cb < last))
        if (pthread_cond_timedwait(&state.cond, &state.lock, &deadline) == ETIMEDOUT)
            why = "callbacks";
    pthread_mutex_unlock(&state.lock);
    if (crash_run) {
        dr_group_view view;
        int32_t vid = dr_group_get_view(group, &view) == 0 ? view.view.vid : -1;
        if (why)
            printf("FAIL node=%" PRIu32 " %s rc=%d\n", my_id, why, rc);
        else
            printf("ACKED node=%" PRIu32 " version=%" PRId64 " vid=%" PRId32 "\n", my_id, last,
                   vid);
        fflush(stdout);
        uint8_t *more = malloc(size ? size : 1); /* sends in flight when the test kills us */
        bool flowing = false;
        for (uint64_t i = messages; more != NULL; i++) {
            fill_message(more, size, my_id, i);
            if (dr_group_send(group, 0, more, size, 1000) == DR_ECLOSED)
                break;
            pthread_mutex_lock(&state.lock);
            uint64_t delivered = state.delivered;
            pthread_mutex_unlock(&state.lock);
            if (!flowing && delivered >= (messages + 100) * senders) {
                printf("FLOWING node=%" PRIu32 " delivered=%" PRIu64 "\n", my_id, delivered);
                fflush(stdout);
                flowing = true; /* the test kills us now, while the stream goes on */
            }
        }
        free(more);
        pause();
        return 1;
    }
    bool reads_ok = !reads || (!why && check_reads(group, &state));
    dr_group_view current;
    dr_view saved;
    int32_t view_vid = dr_group_get_view(group, &current) == 0 ? current.view.vid : -1;
    if (!why && dr_group_load_saved_view(config, &saved, NULL, &err) != 0)
        why = "load_saved_view";
    if (why)
        printf("FAIL node=%" PRIu32 " %s rc=%d\n", my_id, why, rc);
    else
        printf("DONE node=%" PRIu32 " delivered=%" PRIu64 " hash=%016" PRIx64 " last=%" PRId64
               " global_cb=%" PRId64 " local_cb=%" PRId64
               " order_ok=%d reads_ok=%d view_vid=%" PRId32 " saved_vid=%" PRId32
               " saved_members=%" PRIu32 "\n",
               my_id, state.delivered, state.hash, last, state.global_cb, state.local_cb,
               state.order_ok, reads_ok, view_vid, saved.vid, saved.num_members);
    fflush(stdout);
    char sink[64];
    while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    dr_group_destroy(group);
    dr_config_free(config);
    return why || !reads_ok || !state.order_ok ? 1 : 0;
}
