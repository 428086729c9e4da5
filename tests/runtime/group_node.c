/*
 * group_node: one member of a test group, run as a real process by the multi-process tests
 * (test_group_procs.c) and usable by hand.
 *
 *   group_node CONFIG_FILE [--messages N] [--size BYTES] [--mixed] [--raw] [--silent]
 *              [--expect-senders S] [--wait-from ID,ID,... --expect-members M]
 *              [--start-members K]  (wait for a view of K members before sending)
 *              [--say-sending]      (print "SENDING node=<id>" once it starts sending)
 *              [--print-views]      (print "VIEW node=<id> vid=<n> members=<id,...>" per view)
 *              [--wait-ms MS]       (--wait-from's limit before "TIMEOUT ... from=<counts
 *                                    of ids 0-3>", and each send's; default 120000)
 *              [--leave]            (after DONE: dr_group_leave, prints "LEFT ...")
 *              [--stderr-to-stdout] (log lines into the test's pipe, to wait for one)
 *              [--say-delivered N]  (print "DELIVERED node=<id> n=<N>" at the N-th delivery)
 *              [--stop-at-delivered N] (the process stops itself, SIGSTOP, at the N-th delivery)
 *              [--cut-after-ms T | --cut-after-delivered N] [--cut-peers ID,ID,...]
 *              [--zero-copy]        (send each message through dr_group_alloc_send_buffer +
 *                                    dr_group_send_buffer; first checks that a buffer over
 *                                    max_payload_size is refused and left to the caller)
 *              [--DERECHO/key=value ...]
 *
 * Joins the group described by CONFIG_FILE with one subgroup type TEST (profile
 * [SUBGROUP/TEST]); unless --silent, sends N messages whose bytes are derived from (sender,
 * index) so every receiver can check them; delivers until it has seen N messages from each of
 * S senders; then prints one line
 *   DONE node=<id> delivered=<count> hash=<running hash of (version, sender, bytes)> bad=<n>
 * (bad: messages whose bytes do not match their (sender, index); in raw mode also messages
 * out of their sender's FIFO order)
 * With --wait-from (fault tests: some members die), it instead waits until it delivered N
 * messages from each listed sender and its view has M members, and prints
 *   DONE node=<id> delivered=<count> hash=<hash> bad=<n> vid=<view id>
 * "--wait-from members" (tests where it is not known in advance which member the group loses)
 * lists the members of the current view, whichever they are; --expect-members 0 accepts a view
 * of any size (then DONE means: every member of my current view delivered its N messages here).
 * A send failing because the group stopped (excluded this node, or partitioning safety) prints
 * "STOPPED node=<id> rc=<code>"; one still blocked after --wait-ms (a wedged group that neither
 * goes on nor stops) prints "TIMEOUT node=<id> sending=<index>"; so does the wait of --wait-from
 * when the group stops there, and the wait for deliveries without it (then with delivered=<count>),
 * so a node that the group excluded reports it instead of waiting forever.
 * --cut-after-ms T --cut-peers LIST (partition tests): T ms after this node starts sending (once
 * the --start-members view is in), it black-holes its links to each listed member, both
 * directions (dr_group_test_cut_link, test only); the listed nodes cut theirs to it likewise, so
 * the partition is symmetric up to the few ms between the nodes' starts.
 * --cut-after-delivered N: the same cut, once this node has delivered N messages (fault tests:
 * the cut lands in the middle of the stream whatever the machine's speed).
 * --say-delivered N prints "DELIVERED node=<id> n=<N>" (from the delivery thread) when the N-th
 * message is delivered here: a fault test strikes then, mid-stream, instead of after a pause.
 * --stop-at-delivered N: the delivery thread raises SIGSTOP right after the N-th delivery, so
 * the whole process stops at that exact point of the stream (a fault test sees it stop with
 * waitpid(WUNTRACED), lets the others' frames for it pile up, then kills it).
 * --say-sending prints the line "SENDING node=<id>" first, when the --start-members view is in
 * and the stream starts, so a fault test can strike in the middle of the stream rather than at
 * a time guessed from the start of the processes.
 * --print-views prints, for every view this node installs (from the view callback, in order),
 *   VIEW node=<id> vid=<view id> members=<id>,<id>,...   (members in rank order)
 * so a test can check across all nodes' output that no view id names two memberships
 * (tests/netns). The lines come before and after the others; stdout is line-buffered then.
 * --leave: after its DONE line the node leaves gracefully (dr_group_leave) and prints
 *   LEFT node=<id> rc=<dr_group_leave's code> shard=<its shard before> rank=<its rank before>
 * (dr_group_my_shard of subgroup 0 just before leaving), then waits for stdin like the others.
 * It then waits for its standard input to close (the test's barrier) before leaving, so no node
 * leaves while others still need its acknowledgements. Exit status 0 on success.
 */
#include "common/hash.h"
#include "derecho/config.h"
#include "derecho/group.h"
#include "derecho/log.h"
#include "runtime/runtime.h"

#include <errno.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct node_state {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    uint64_t expected;      /* messages to deliver before DONE */
    uint64_t delivered;     /* messages delivered */
    uint64_t hash;          /* running FNV-1a over (version, sender, bytes) */
    uint64_t bad;           /* deliveries whose bytes did not match their (sender, index) */
    bool raw;               /* raw mode: order differs between nodes, hash only the multiset */
    uint64_t from[64];      /* deliveries per sender id (ids < 64) */
    int64_t last_index[64]; /* raw mode: last message index seen per sender id (-1: none) */
    uint32_t my_id;         /* set once the group is created */
    uint64_t say_at;        /* --say-delivered (0: none) */
    uint64_t stop_at;       /* --stop-at-delivered (0: none) */
    uint64_t cut_at;        /* --cut-after-delivered (0: none): wakes the cutter */
    bool quit;              /* main is leaving: the cutter stops waiting */
} node_state;

/* The content of message `index` of `sender`: a header then a pattern. */
static void fill_message(uint8_t *out, size_t len, uint32_t sender, uint64_t index) {
    uint64_t seed = ((uint64_t)sender << 40) ^ index ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (uint8_t)(seed >> 56);
    }
    if (len >= 12) {
        memcpy(out, &sender, 4);
        memcpy(out + 4, &index, 8);
    }
}

static size_t message_size(size_t size, bool mixed, uint64_t index) {
    if (!mixed)
        return size;
    static const size_t sizes[] = {1, 100, 1000, 4096, 10000, 12, 50000, 200000};
    size_t chosen = sizes[index % (sizeof sizes / sizeof *sizes)];
    return chosen > size ? size : chosen;
}

/* The index a message carries (its first 12 bytes: sender, index), or -1 when too short. */
static int64_t message_index(const dr_message *message) {
    if (message->len < 12)
        return -1;
    uint64_t index;
    memcpy(&index, message->bytes + 4, 8);
    return (int64_t)index;
}

static bool message_ok(const dr_message *message, size_t size, bool mixed) {
    if (message->len < 12)
        return true; /* too short to carry its identity; covered by the hash */
    uint32_t sender;
    uint64_t index;
    memcpy(&sender, message->bytes, 4);
    memcpy(&index, message->bytes + 4, 8);
    if (sender != message->sender_id || message->len != message_size(size, mixed, index))
        return false;
    uint8_t *expected = malloc(message->len);
    if (!expected)
        return false;
    fill_message(expected, message->len, sender, index);
    bool same = memcmp(expected, message->bytes, message->len) == 0;
    free(expected);
    return same;
}

static size_t g_size;
static bool g_mixed;

/* --print-views: one line per installed view (delivery thread). */
static void on_view(void *ctx, const dr_group_view *view) {
    (void)ctx;
    char members[DR_VIEW_MAX_MEMBERS * 11 + 1] = "";
    size_t len = 0;
    for (uint32_t i = 0; i < view->view.num_members && len < sizeof members; i++)
        len += (size_t)snprintf(members + len, sizeof members - len, "%s%" PRIu32, i ? "," : "",
                                view->view.member_ids[i]);
    printf("VIEW node=%" PRIu32 " vid=%" PRId32 " members=%s\n", view->my_id, view->view.vid,
           members);
    fflush(stdout);
}

static void on_deliver(void *ctx, const dr_message *message) {
    node_state *state = ctx;
    bool ok = message_ok(message, g_size, g_mixed);
    pthread_mutex_lock(&state->lock);
    if (!ok)
        state->bad++;
    if (state->raw) {
        /* per-sender FIFO only: combine per-message hashes commutatively, and count a message
         * whose index is not above its sender's previous one as bad (the hash cannot see it) */
        uint64_t one = test_hash(TEST_HASH_SEED, &message->sender_id, 4);
        state->hash += test_hash(one, message->bytes, message->len);
        int64_t index = message_index(message);
        if (index >= 0 && message->sender_id < 64) {
            if (index <= state->last_index[message->sender_id])
                state->bad++;
            state->last_index[message->sender_id] = index;
        }
    } else {
        state->hash = test_hash(state->hash, &message->version, sizeof message->version);
        state->hash = test_hash(state->hash, &message->sender_id, 4);
        state->hash = test_hash(state->hash, message->bytes, message->len);
    }
    state->delivered++;
    if (message->sender_id < 64)
        state->from[message->sender_id]++;
    if (state->say_at && state->delivered == state->say_at) {
        printf("DELIVERED node=%" PRIu32 " n=%" PRIu64 "\n", state->my_id, state->delivered);
        fflush(stdout);
    }
    if (state->delivered >= state->expected || state->delivered == state->cut_at)
        pthread_cond_broadcast(&state->done_cond);
    bool stop = state->stop_at && state->delivered == state->stop_at;
    pthread_mutex_unlock(&state->lock);
    if (stop)
        raise(SIGSTOP); /* the whole process, here: no delivery after the N-th */
}

/* Fault tests: every listed sender's messages delivered and the view holds `members` (0: any
 * number); the list "members" names the members of the current view. */
static bool fault_done(dr_group *group, node_state *state, const char *list, uint64_t messages,
                       uint32_t members, int32_t *vid) {
    dr_group_view view;
    if (dr_group_get_view(group, &view) != 0 || (members && view.view.num_members != members))
        return false;
    *vid = view.view.vid;
    if (strcmp(list, "members") == 0) {
        for (uint32_t i = 0; i < view.view.num_members; i++)
            if (view.view.member_ids[i] >= 64 || state->from[view.view.member_ids[i]] < messages)
                return false;
        return true;
    }
    for (const char *p = list; *p;) {
        unsigned long id = strtoul(p, (char **)&p, 10);
        if (id >= 64 || state->from[id] < messages)
            return false;
        if (*p == ',')
            p++;
        else if (*p)
            return false;
    }
    return true;
}

/* --cut-after-ms: a thread that cuts this node's links to `peers` after `after_ms`. */
typedef struct cutter {
    pthread_mutex_t lock;
    pthread_cond_t quit_cond;
    bool quit; /* main is leaving: stop waiting */
    dr_group *group;
    const char *peers; /* "ID,ID,..." */
    int after_ms;
    node_state *state; /* --cut-after-delivered: waits on state->done_cond instead */
    pthread_t thread;
} cutter;

static void *cutter_main(void *arg) {
    cutter *cut = arg;
    if (cut->state->cut_at) {
        node_state *state = cut->state;
        pthread_mutex_lock(&state->lock);
        while (!state->quit && state->delivered < state->cut_at)
            pthread_cond_wait(&state->done_cond, &state->lock);
        bool quit = state->quit;
        pthread_mutex_unlock(&state->lock);
        if (quit)
            return NULL;
        cut->after_ms = 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += cut->after_ms / 1000;
    deadline.tv_nsec += (long)(cut->after_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&cut->lock);
    int rc = 0;
    while (!cut->quit && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&cut->quit_cond, &cut->lock, &deadline);
    bool quit = cut->quit;
    pthread_mutex_unlock(&cut->lock);
    for (const char *p = cut->peers; !quit && *p;) {
        char *end;
        unsigned long id = strtoul(p, &end, 10);
        if (end == p)
            break;
        dr_group_test_cut_link(cut->group, (uint32_t)id, true);
        fprintf(stderr, "group_node %" PRIu32 ": cut link to %lu\n", dr_group_my_id(cut->group),
                id);
        p = *end == ',' ? end + 1 : end;
    }
    return NULL;
}

static void cutter_stop(cutter *cut) {
    pthread_mutex_lock(&cut->state->lock);
    cut->state->quit = true;
    pthread_cond_broadcast(&cut->state->done_cond);
    pthread_mutex_unlock(&cut->state->lock);
    pthread_mutex_lock(&cut->lock);
    cut->quit = true;
    pthread_cond_signal(&cut->quit_cond);
    pthread_mutex_unlock(&cut->lock);
    pthread_join(cut->thread, NULL);
    pthread_cond_destroy(&cut->quit_cond);
    pthread_mutex_destroy(&cut->lock);
}

static int g_wait_ms = 120000; /* --wait-ms: how long --wait-from waits before TIMEOUT */

static int wait_fault_done(dr_group *group, node_state *state, const char *list, uint64_t messages,
                           uint32_t members) {
    int32_t vid = -1;
    for (int waited_ms = 0; waited_ms < g_wait_ms; waited_ms += 50) {
        pthread_mutex_lock(&state->lock);
        bool done = fault_done(group, state, list, messages, members, &vid);
        if (done)
            printf("DONE node=%" PRIu32 " delivered=%" PRIu64 " hash=%016" PRIx64 " bad=%" PRIu64
                   " vid=%" PRId32 "\n",
                   dr_group_my_id(group), state->delivered, state->hash, state->bad, vid);
        pthread_mutex_unlock(&state->lock);
        if (done)
            return 0;
        dr_group_view view; /* sleep until the next view, the group stopping, or 50 ms */
        int32_t current = dr_group_get_view(group, &view) == 0 ? view.view.vid : 0;
        int rc = dr_group_wait_view(group, current + 1, 50);
        if (rc != DR_OK && rc != DR_ETIMEDOUT) {
            printf("STOPPED node=%" PRIu32 " rc=%d\n", dr_group_my_id(group), rc);
            return rc;
        }
    }
    pthread_mutex_lock(&state->lock); /* what arrived from whom: the test prints it */
    printf("TIMEOUT node=%" PRIu32 " from=%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n",
           dr_group_my_id(group), state->from[0], state->from[1], state->from[2], state->from[3]);
    pthread_mutex_unlock(&state->lock);
    return DR_ETIMEDOUT;
}

/* --zero-copy: message i written straight into a group send buffer, sent without a copy. */
static int send_in_buffer(dr_group *group, size_t len, uint32_t my_id, uint64_t i) {
    uint8_t *message = dr_group_alloc_send_buffer(len ? len : 1);
    if (message == NULL)
        return DR_ENOMEM;
    fill_message(message, len, my_id, i);
    int rc = dr_group_send_buffer(group, 0, message, len, g_wait_ms);
    if (rc != DR_OK)
        dr_group_free_send_buffer(message); /* refused: still ours */
    return rc;
}

/* A send buffer over max_payload_size is refused (DR_ETOOBIG) and stays the caller's, intact. */
static int check_send_buffer_refusal(dr_group *group) {
    size_t len = (size_t)1 << 27; /* 128 MiB: over every test's max_payload_size */
    uint8_t *message = dr_group_alloc_send_buffer(len);
    if (message == NULL)
        return DR_ENOMEM;
    message[0] = 0x5a;
    message[len - 1] = 0xa5;
    int rc = dr_group_send_buffer(group, 0, message, len, 1000);
    bool intact = message[0] == 0x5a && message[len - 1] == 0xa5;
    dr_group_free_send_buffer(message);
    return rc == DR_ETOOBIG && intact && dr_group_send_buffer(group, 0, NULL, 1, 1000) == DR_EINVAL
               ? 0
               : DR_EPROTO;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: group_node CONFIG_FILE [options]\n");
        return 2;
    }
    uint64_t messages = 100, senders = 1;
    size_t size = 1024;
    bool zero_copy = false;
    bool mixed = false, raw = false, silent = false, say_sending = false, print_views = false,
         leave = false;
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the test whole and in order */
    const char *wait_from = NULL, *cut_peers = NULL;
    int cut_after_ms = -1;
    uint64_t say_delivered = 0, cut_after_delivered = 0, stop_at_delivered = 0;
    uint32_t members = 0, start_members = 0;
    const char *overrides[64];
    size_t override_count = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            messages = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--expect-senders") == 0 && i + 1 < argc)
            senders = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--wait-from") == 0 && i + 1 < argc)
            wait_from = argv[++i];
        else if (strcmp(argv[i], "--start-members") == 0 && i + 1 < argc)
            start_members = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--expect-members") == 0 && i + 1 < argc)
            members = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--cut-after-ms") == 0 && i + 1 < argc)
            cut_after_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--cut-after-delivered") == 0 && i + 1 < argc)
            cut_after_delivered = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--say-delivered") == 0 && i + 1 < argc)
            say_delivered = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--stop-at-delivered") == 0 && i + 1 < argc)
            stop_at_delivered = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--cut-peers") == 0 && i + 1 < argc)
            cut_peers = argv[++i];
        else if (strcmp(argv[i], "--mixed") == 0)
            mixed = true;
        else if (strcmp(argv[i], "--zero-copy") == 0)
            zero_copy = true;
        else if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (strcmp(argv[i], "--silent") == 0)
            silent = true;
        else if (strcmp(argv[i], "--stderr-to-stdout") == 0)
            dup2(STDOUT_FILENO, STDERR_FILENO);
        else if (strcmp(argv[i], "--wait-ms") == 0 && i + 1 < argc)
            g_wait_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--leave") == 0)
            leave = true;
        else if (strcmp(argv[i], "--say-sending") == 0)
            say_sending = true;
        else if (strcmp(argv[i], "--print-views") == 0)
            print_views = true;
        else if (dr_config_is_override_arg(argv[i]) && override_count < 64)
            overrides[override_count++] = argv[i] + 2;
        else {
            fprintf(stderr, "group_node: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    g_size = size;
    g_mixed = mixed;

    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {
        .file_path = argv[1], .overrides = overrides, .override_count = override_count};
    if (dr_config_load(&options, &config, &err)) {
        fprintf(stderr, "group_node: %s\n", err.msg);
        return 1;
    }
    dr_config_apply_logging(config);

    dr_layout_spec spec = {.num_types = 1};
    snprintf(spec.types[0].name, sizeof spec.types[0].name, "TEST");
    spec.types[0].num_subgroups = 1;
    if (dr_group_policy_from_config(config, "TEST", raw ? DR_MODE_RAW : DR_MODE_ORDERED,
                                    &spec.types[0].policy, &err)) {
        fprintf(stderr, "group_node: %s\n", err.msg);
        return 1;
    }
    node_state state = {.expected = messages * senders,
                        .hash = TEST_HASH_SEED,
                        .raw = raw,
                        .say_at = say_delivered,
                        .stop_at = stop_at_delivered,
                        .cut_at = cut_after_delivered};
    for (int i = 0; i < 64; i++)
        state.last_index[i] = -1;
    pthread_mutex_init(&state.lock, NULL);
    pthread_cond_init(&state.done_cond, NULL);
    dr_group_callbacks callbacks = {
        .on_deliver = on_deliver, .on_view = print_views ? on_view : NULL, .ctx = &state};
    if (print_views)
        setvbuf(stdout, NULL, _IOLBF, 0); /* a killed node's lines are in its log */
    dr_group *group = NULL;
    if (dr_group_create(config, &spec, &callbacks, &group, &err)) {
        fprintf(stderr, "group_node: cannot start: %s\n", err.msg);
        return 1;
    }
    int rc = dr_group_wait_view(group, 0, 30000);
    if (rc) {
        fprintf(stderr, "group_node: no view: %s\n", dr_strerror(rc));
        return 1;
    }
    /* joins are view changes: wait (blocking on the next view) for the whole group */
    dr_group_view view;
    while (start_members > 0 && dr_group_get_view(group, &view) == 0 &&
           view.view.num_members < start_members &&
           dr_group_wait_view(group, view.view.vid + 1, 30000) == DR_OK) {
    }
    uint32_t my_id = dr_group_my_id(group);
    pthread_mutex_lock(&state.lock);
    state.my_id = my_id;
    pthread_mutex_unlock(&state.lock);
    cutter cut = {.group = group, .peers = cut_peers, .after_ms = cut_after_ms, .state = &state};
    bool cutting = cut_peers != NULL && (cut_after_ms >= 0 || cut_after_delivered > 0);
    if (cutting) {
        pthread_mutex_init(&cut.lock, NULL);
        pthread_cond_init(&cut.quit_cond, NULL);
        if (pthread_create(&cut.thread, NULL, cutter_main, &cut) != 0) {
            fprintf(stderr, "group_node: cannot start the cutter thread\n");
            return 1;
        }
    }
    if (say_sending) {
        printf("SENDING node=%" PRIu32 "\n", my_id);
        fflush(stdout);
    }
    uint8_t *buffer = malloc(size ? size : 1);
    if (zero_copy && !silent && (rc = check_send_buffer_refusal(group)) != 0)
        fprintf(stderr, "group_node: an oversized send buffer was not refused\n");
    for (uint64_t i = 0; !silent && i < messages && rc == 0; i++) {
        size_t len = message_size(size, mixed, i);
        rc = zero_copy ? send_in_buffer(group, len, my_id, i) : DR_OK;
        if (!zero_copy) {
            fill_message(buffer, len, my_id, i);
            rc = dr_group_send(group, 0, buffer, len, g_wait_ms);
        }
        if (rc)
            fprintf(stderr, "group_node: send %" PRIu64 " failed: %s\n", i, dr_strerror(rc));
        if (rc == DR_ETIMEDOUT && wait_from != NULL)
            printf("TIMEOUT node=%" PRIu32 " sending=%" PRIu64 "\n", my_id, i);
    }
    free(buffer);
    if (rc == DR_ETIMEDOUT && wait_from != NULL) {
        fflush(stdout);
    } else if (rc != 0 && wait_from != NULL) {
        printf("STOPPED node=%" PRIu32 " rc=%d\n", my_id, rc);
        fflush(stdout);
    } else if (wait_from != NULL) {
        rc = wait_fault_done(group, &state, wait_from, messages, members);
        fflush(stdout);
    }
    pthread_mutex_lock(&state.lock);
    while (rc == 0 && wait_from == NULL && state.delivered < state.expected) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1;
        if (pthread_cond_timedwait(&state.done_cond, &state.lock, &deadline) != ETIMEDOUT)
            continue;
        /* a node the group excluded (or that stopped) never gets the rest: say so */
        int stopped = dr_group_wait_view(group, INT32_MAX, 0);
        if (stopped != DR_ETIMEDOUT)
            rc = stopped;
    }
    if (wait_from == NULL && rc != 0)
        printf("STOPPED node=%" PRIu32 " rc=%d delivered=%" PRIu64 "\n", my_id, rc,
               state.delivered);
    else if (wait_from == NULL)
        printf("DONE node=%" PRIu32 " delivered=%" PRIu64 " hash=%016" PRIx64 " bad=%" PRIu64 "\n",
               my_id, state.delivered, state.hash, state.bad);
    pthread_mutex_unlock(&state.lock);
    fflush(stdout);
    if (leave && rc == 0) {
        uint32_t rank = UINT32_MAX;
        int shard = dr_group_my_shard(group, 0, &rank);
        int left = dr_group_leave(group, 30000);
        printf("LEFT node=%" PRIu32 " rc=%d shard=%d rank=%" PRIu32 "\n", my_id, left, shard, rank);
        fflush(stdout);
        if (left != 0)
            rc = left;
    }
    char sink[64];
    while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    if (cutting)
        cutter_stop(&cut);
    dr_group_destroy(group);
    dr_config_free(config);
    return rc == 0 && state.bad == 0 ? 0 : 1;
}
