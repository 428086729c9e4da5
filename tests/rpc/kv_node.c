/*
 * kv_node: a replicated key-value map served with dr_rpc, run as a real process by
 * test_rpc_procs.c (member or outside client).
 *
 *   kv_node CONFIG_FILE --puts N [--victim V] [--DERECHO/key=value ...]   (member)
 *   kv_node --client CONTACT_PORT --puts N --members M [--victim V]      (outside client)
 *   kv_node CONFIG_FILE --join --puts N                                   (joiner)
 *   kv_node --probe CONTACT_PORT [--key FILE [--admin]]          (client rights, see run_probe)
 *   kv_node CONFIG_FILE --history --puts N --start-members K --dump FILE  (history check)
 *
 * --victim-ordered V (member 0): after a "go" line on stdin, an ordered call that member V
 * answers only after 5 s; once the others answered node 0 prints CALLING_ORDERED (the test then
 * pauses V with SIGSTOP), and then ORDERED_REMOVED status=<V's entry, DR_EREMOVED once the view
 * change excluded V> bad=<n>.
 * --start-members K (member): wait for a view whose shard has K members before the puts.
 * --fill BYTES (member): before its puts, node 0 also puts values of 512 KiB until the map
 * holds BYTES of values (state for the state-transfer timings of bench/join_state.sh; the
 * config's max_payload_size must exceed 512 KiB).
 * --fail-serialize (member): the type's serialize fails (DR_EINVAL), so a joiner gets no state.
 * --stall-serialize (member): once the map holds entries (not for the start-up joins), the
 *   type's serialize prints "SERIALIZING node=<id>" and then waits for good (the test kills the
 *   state's source while the joiner waits for it).
 * --stall-mid-transfer (member): when it is the source of a state of several chunks
 *   (dr_rpc_node_options.on_state_chunk), after handing the first chunk to the transport it
 *   prints "STATE_CHUNK_SENT node=<id> to=<new member> bytes=<sent> total=<state bytes>" and
 *   waits for good, sending no further chunk (the test kills it between two chunks).
 * --print-chunks (joiner): prints "STATE_CHUNK_RECEIVED from=<source> bytes=<received so far>
 *   total=<state bytes>" for each state chunk it stores (from the network thread).
 * --join --expect-no-state: a joiner whose state transfer must fail (the source's serialize
 * fails, or the state is over the joiner's max_state_transfer_size): it waits until its group
 * stops (the runtime makes it leave) and prints
 *   NO_STATE node=<id> rc=<stop code> restored=<0|1> vid=<the view it joined in>.
 * --join: the node joins a running group and must receive the map by state transfer (the
 * type's serialize/restore): it waits for the restore, makes N puts of its own, compares every
 * replica's digest and prints
 *   JOINED node=<id> restored=<state bytes> ms=<start to restored> equal=<0|1> count=<n> bad=<n>
 *
 * --history (member, tests/netns): prints "VIEW node=<id> vid=<n> members=<id>,..." for every
 * installed view and, once the view has K members, "PUTTING node=<id>"; then makes N ordered
 * puts one after another (key h<id>-<i>, value v-h<id>-<i>) and prints "ACK <key>" for each
 * acknowledged one: the call was delivered and every entry of its results is OK, or
 * DR_EREMOVED (a member the view change removed), with at least one OK. Members may die
 * meanwhile: no check fails on that. Then prints "PUTS node=<id> acked=<n> failed=<n>" (or
 * "STOPPED node=<id> rc=<code>" first if the group stopped); once its standard input closes
 * (the test's barrier) it writes its map to FILE, one "key value" line per entry, and prints
 * "DUMPED node=<id> count=<puts applied> digest=<digest> vid=<view id>". stdout is line-buffered.
 *
 * --victim V: the test kills member V while node 0 and the client wait on a `sleep` call to it
 * (each prints CALLING first, then REMOVED rc=<status> bad=<n>); the victim prints
 * "IN_SLEEP caller=<id> client=<0|1>" as each sleep call starts, so the test kills it once
 * both calls are there.
 * Members read stdin until it closes (the release barrier); a line "wait-members K [VID]" blocks
 * until the shard has K members (in a view >= VID) and prints "MEMBERS n=<K> vid=<view id>" (a test
 * waits for a view change this way instead of pausing).
 *
 * Type KV (one subgroup): ordered `put` (key, value blobs; every replica applies it in delivery
 * order and folds (version, key, value) into a running digest), p2p `get`, `digest` (count,
 * digest), `whoami`, `put_via` (a p2p method that makes an ordered put for outside clients and
 * returns how many members replied OK), `big` / `big_ordered` (replies over the limit).
 *
 * A member makes N puts from two threads, checks every results object holds one OK reply per
 * shard member, then exercises the error paths (oversized arguments, unknown method, unknown
 * node, replies over the limit) and checks that the group still answers; prints
 *   DONE node=<id> ok=<puts fully acknowledged> bad=<failed checks>
 * and waits for its standard input to close. The client does the same through put_via, prints
 *   PUTS ok=<n> bad=<n>
 * then, on the line "check <total>" from standard input, reads every member's digest and prints
 *   CHECK equal=<0|1> count=<first member's count> bad=<n>
 */
#include "common/hash.h"
#include "derecho/config.h"
#include "derecho/log.h"
#include "derecho/rpc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { NUM_BUCKETS = 1024, WAIT_MS = 20000 };

typedef struct kv_entry {
    struct kv_entry *next;
    char *key;
    uint8_t *value;
    uint32_t value_len;
} kv_entry;

typedef struct kv_state {
    pthread_mutex_t lock;
    kv_entry *buckets[NUM_BUCKETS];
    uint64_t count;  /* puts applied */
    uint64_t digest; /* running FNV-1a over (version, key, value) */
    _Atomic(dr_rpc_node *) node;
    uint32_t my_id;
    pthread_cond_t restored_cond;
    bool restored;           /* restore ran (state transfer) */
    uint64_t restored_bytes; /* state bytes it got */
    struct timespec restored_at;
} kv_state;

static kv_state g_kv;
static atomic_int g_bad;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "kv_node: check failed at line %d: %s\n", __LINE__, #cond);            \
            atomic_fetch_add(&g_bad, 1);                                                           \
        }                                                                                          \
    } while (0)

static uint32_t bucket_of(const uint8_t *key, uint32_t len) {
    return (uint32_t)(test_hash(TEST_HASH_SEED, key, len) % NUM_BUCKETS);
}

static kv_entry *find_locked(const uint8_t *key, uint32_t len) {
    for (kv_entry *e = g_kv.buckets[bucket_of(key, len)]; e; e = e->next)
        if (strlen(e->key) == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* ---- handlers ------------------------------------------------------------------------------- */

/* Sets key to value (copied). Caller holds g_kv.lock. */
static void insert_locked(const uint8_t *key, uint32_t key_len, const uint8_t *value,
                          uint32_t value_len) {
    kv_entry *entry = find_locked(key, key_len);
    if (!entry) {
        entry = calloc(1, sizeof *entry);
        entry->key = calloc(1, key_len + 1);
        memcpy(entry->key, key, key_len);
        uint32_t b = bucket_of(key, key_len);
        entry->next = g_kv.buckets[b];
        g_kv.buckets[b] = entry;
    }
    free(entry->value);
    entry->value = malloc(value_len ? value_len : 1);
    memcpy(entry->value, value ? value : (const uint8_t *)"", value_len);
    entry->value_len = value_len;
}

static int put_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                       dr_buf *reply) {
    (void)ctx;
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint32_t key_len = 0, value_len = 0;
    const uint8_t *key = dr_reader_blob(&reader, 1024, &key_len);
    const uint8_t *value = dr_reader_blob(&reader, 1u << 20, &value_len);
    if (!key || (!value && value_len) || !dr_reader_done(&reader))
        return DR_EINVAL;
    pthread_mutex_lock(&g_kv.lock);
    insert_locked(key, key_len, value, value_len);
    g_kv.count++;
    g_kv.digest = test_hash(g_kv.digest, &info->version, sizeof info->version);
    g_kv.digest = test_hash(g_kv.digest, key, key_len);
    g_kv.digest = test_hash(g_kv.digest, value, value_len);
    uint64_t count = g_kv.count;
    pthread_mutex_unlock(&g_kv.lock);
    return dr_buf_put_u64(reply, count);
}

static int get_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                       dr_buf *reply) {
    (void)ctx;
    (void)info;
    pthread_mutex_lock(&g_kv.lock);
    kv_entry *entry = len <= 1024 ? find_locked(args, (uint32_t)len) : NULL;
    int rc = DR_ENOTFOUND;
    if (entry) {
        dr_buf_put_u32(reply, g_kv.my_id);
        rc = dr_buf_put_blob(reply, entry->value, entry->value_len);
    }
    pthread_mutex_unlock(&g_kv.lock);
    return rc;
}

static int digest_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                          dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len;
    pthread_mutex_lock(&g_kv.lock);
    dr_buf_put_u64(reply, g_kv.count);
    int rc = dr_buf_put_u64(reply, g_kv.digest);
    pthread_mutex_unlock(&g_kv.lock);
    return rc;
}

static int whoami_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                          dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len;
    return dr_buf_put_u32(reply, g_kv.my_id);
}

static bool g_fail_serialize;     /* --fail-serialize: the state cannot be produced */
static bool g_stall_serialize;    /* --stall-serialize: the source never finishes it */
static bool g_stall_mid_transfer; /* --stall-mid-transfer: the source stops after a chunk */
static bool g_print_chunks;       /* --print-chunks: a line per state chunk received */

/* dr_rpc_node_options.on_state_chunk: --stall-mid-transfer (source side) and --print-chunks
 * (receiving side). */
static void kv_state_chunk(void *ctx, uint32_t peer, uint32_t subgroup, bool sent, uint64_t done,
                           uint64_t total) {
    (void)ctx, (void)subgroup;
    if (!sent && g_print_chunks) {
        printf("STATE_CHUNK_RECEIVED from=%u bytes=%" PRIu64 " total=%" PRIu64 "\n", peer, done,
               total);
        fflush(stdout);
    }
    if (sent && g_stall_mid_transfer && done < total) {
        printf("STATE_CHUNK_SENT node=%u to=%u bytes=%" PRIu64 " total=%" PRIu64 "\n", g_kv.my_id,
               peer, done, total);
        fflush(stdout);
        for (;;)
            pause(); /* until the test's SIGKILL: no further chunk leaves */
    }
}

/* State transfer: u64 count, u64 digest, u32 entries, then per entry blob key, blob value. */
static int kv_serialize(void *ctx, uint32_t subgroup, dr_buf *out) {
    (void)ctx, (void)subgroup;
    if (g_fail_serialize)
        return DR_EINVAL;
    pthread_mutex_lock(&g_kv.lock);
    bool stall = g_stall_serialize && g_kv.count > 0;
    pthread_mutex_unlock(&g_kv.lock);
    if (stall) {
        printf("SERIALIZING node=%u\n", g_kv.my_id);
        fflush(stdout);
        for (;;)
            pause(); /* until the test's SIGKILL */
    }
    pthread_mutex_lock(&g_kv.lock);
    uint32_t entries = 0;
    size_t bytes = 20; /* count, digest, entries */
    for (uint32_t b = 0; b < NUM_BUCKETS; b++)
        for (kv_entry *e = g_kv.buckets[b]; e; e = e->next) {
            entries++;
            bytes += 8 + strlen(e->key) + e->value_len; /* two blobs, each with its u32 length */
        }
    dr_buf_reserve(out, bytes); /* one allocation of the right size instead of doublings */
    dr_buf_put_u64(out, g_kv.count);
    dr_buf_put_u64(out, g_kv.digest);
    dr_buf_put_u32(out, entries);
    for (uint32_t b = 0; b < NUM_BUCKETS; b++)
        for (kv_entry *e = g_kv.buckets[b]; e; e = e->next) {
            dr_buf_put_blob(out, e->key, (uint32_t)strlen(e->key));
            dr_buf_put_blob(out, e->value, e->value_len);
        }
    pthread_mutex_unlock(&g_kv.lock);
    return out->failed ? DR_ETOOBIG : DR_OK;
}

static void insert_locked(const uint8_t *key, uint32_t key_len, const uint8_t *value,
                          uint32_t value_len);

static int kv_restore(void *ctx, uint32_t subgroup, const uint8_t *bytes, size_t len) {
    (void)ctx, (void)subgroup;
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint64_t count = dr_reader_u64(&reader);
    uint64_t digest = dr_reader_u64(&reader);
    uint32_t entries = dr_reader_u32(&reader);
    pthread_mutex_lock(&g_kv.lock);
    CHECK(g_kv.count == 0); /* a joiner restores into an empty map */
    for (uint32_t i = 0; i < entries && !reader.failed; i++) {
        uint32_t key_len = 0, value_len = 0;
        const uint8_t *key = dr_reader_blob(&reader, 1024, &key_len);
        const uint8_t *value = dr_reader_blob(&reader, 1u << 20, &value_len);
        if (key && (value || value_len == 0))
            insert_locked(key, key_len, value, value_len);
    }
    int rc = reader.failed || !dr_reader_done(&reader) ? DR_EPROTO : DR_OK;
    g_kv.count = count;
    g_kv.digest = digest;
    g_kv.restored = true;
    g_kv.restored_bytes = len;
    clock_gettime(CLOCK_MONOTONIC, &g_kv.restored_at);
    pthread_cond_broadcast(&g_kv.restored_cond);
    pthread_mutex_unlock(&g_kv.lock);
    return rc;
}

static int big_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                       dr_buf *reply) {
    (void)ctx, (void)info, (void)args, (void)len;
    static uint8_t chunk[4096];
    for (int i = 0; i < 1024; i++) /* 4 MiB: above every limit of the test */
        if (dr_buf_put_bytes(reply, chunk, sizeof chunk))
            break;
    return DR_OK;
}

/* An ordered put of args on my node; returns the number of members that replied OK. */
static int ordered_put(dr_rpc_node *node, const void *args, size_t len, uint32_t *ok_out,
                       uint32_t *count_out) {
    dr_rpc_results *results = NULL;
    int rc = dr_rpc_ordered_call(node, 0, "put", args, len, WAIT_MS, &results);
    if (rc)
        return rc;
    size_t count = dr_rpc_results_count(results, WAIT_MS);
    uint32_t ok = 0;
    for (size_t i = 0; i < count; i++) {
        dr_rpc_reply reply;
        if (dr_rpc_results_wait(results, i, WAIT_MS, &reply) == DR_OK && reply.status == DR_OK &&
            reply.len == 8)
            ok++;
        dr_rpc_reply_clear(&reply);
    }
    CHECK(dr_rpc_results_version(results) >= 0);
    dr_rpc_results_free(results);
    *ok_out = ok;
    *count_out = (uint32_t)count;
    return DR_OK;
}

static int put_via_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                           dr_buf *reply) {
    (void)ctx, (void)info;
    uint32_t ok = 0, count = 0;
    int rc = ordered_put(atomic_load(&g_kv.node), args, len, &ok, &count);
    if (rc)
        return rc;
    dr_buf_put_u32(reply, ok);
    return dr_buf_put_u32(reply, count);
}

static int sleep_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                         dr_buf *reply) {
    (void)ctx, (void)args, (void)len, (void)reply;
    /* the test kills this node once both callers' calls are here (one line each) */
    flockfile(stdout);
    printf("IN_SLEEP caller=%u client=%d\n", info->caller_id, info->from_client ? 1 : 0);
    fflush(stdout);
    funlockfile(stdout);
    sleep(5); /* the slow method itself (a reply the caller must not get), not a wait */
    return DR_OK;
}

/* Ordered: the member whose id is in args sleeps 5 s before replying; the others reply at once. */
static int slow_ordered_handler(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                                size_t len, dr_buf *reply) {
    (void)ctx, (void)info, (void)reply;
    if (len == 4 && dr_load_u32le(args) == g_kv.my_id)
        sleep(5);
    return DR_OK;
}

static const dr_rpc_method kv_methods[] = {
    {"sleep", DR_RPC_P2P, sleep_handler, DR_RPC_CLIENTS},
    {"wipe", DR_RPC_P2P, whoami_handler, DR_RPC_ADMINS},
    {"put", DR_RPC_ORDERED, put_handler, DR_RPC_MEMBERS_ONLY},
    {"get", DR_RPC_P2P, get_handler, DR_RPC_CLIENTS},
    {"digest", DR_RPC_P2P, digest_handler, DR_RPC_CLIENTS},
    {"whoami", DR_RPC_P2P, whoami_handler, DR_RPC_CLIENTS},
    {"put_via", DR_RPC_P2P, put_via_handler, DR_RPC_CLIENTS},
    {"big", DR_RPC_P2P, big_handler, DR_RPC_CLIENTS},
    {"big_ordered", DR_RPC_ORDERED, big_handler, DR_RPC_MEMBERS_ONLY},
    {"slow_ordered", DR_RPC_ORDERED, slow_ordered_handler, DR_RPC_MEMBERS_ONLY},
};

/* ---- workloads ------------------------------------------------------------------------------ */

static size_t encode_put(uint8_t *out, size_t cap, const char *key, const char *value) {
    dr_buf buf;
    dr_buf_init(&buf, cap);
    dr_buf_put_str(&buf, key);
    dr_buf_put_str(&buf, value);
    size_t len = buf.len;
    memcpy(out, buf.data, len);
    dr_buf_free(&buf);
    return len;
}

typedef struct put_thread {
    dr_rpc_node *node;
    uint32_t id, thread, puts, expected_members;
    uint32_t ok;
} put_thread;

static void *member_puts(void *arg) {
    put_thread *t = arg;
    for (uint32_t i = 0; i < t->puts; i++) {
        char key[64], value[128];
        snprintf(key, sizeof key, "n%u-t%u-%u", t->id, t->thread, i);
        snprintf(value, sizeof value, "value of %s", key);
        uint8_t args[256];
        size_t len = encode_put(args, sizeof args, key, value);
        uint32_t ok = 0, count = 0;
        int rc = ordered_put(t->node, args, len, &ok, &count);
        CHECK(rc == DR_OK && count == t->expected_members && ok == t->expected_members);
        if (rc == DR_OK && ok == t->expected_members)
            t->ok++;
    }
    return NULL;
}

static void member_error_paths(dr_rpc_node *node, uint32_t my_id, uint32_t members) {
    dr_rpc_results *results = NULL;
    static uint8_t huge[1u << 20];
    CHECK(dr_rpc_ordered_call(node, 0, "put", huge, sizeof huge, WAIT_MS, &results) == DR_ETOOBIG);
    CHECK(dr_rpc_ordered_call(node, 0, "nope", "x", 1, WAIT_MS, &results) == DR_ENOTFOUND);
    dr_rpc_reply reply;
    CHECK(dr_rpc_p2p_call(node, 99, 0, "whoami", NULL, 0, WAIT_MS, &reply) == DR_ENOTFOUND);
    CHECK(dr_rpc_p2p_call(node, my_id, 0, "nope", NULL, 0, WAIT_MS, &reply) == DR_ENOTFOUND);
    CHECK(dr_rpc_p2p_call(node, my_id, 0, "get", huge, sizeof huge, WAIT_MS, &reply) == DR_ETOOBIG);
    /* a reply over max_p2p_reply_payload_size */
    CHECK(dr_rpc_p2p_call(node, (my_id + 1) % members, 0, "big", NULL, 0, WAIT_MS, &reply) ==
          DR_ETOOBIG);
    dr_rpc_reply_clear(&reply);
    /* ordered replies over max_reply_payload_size: every member answers DR_ETOOBIG */
    if (dr_rpc_ordered_call(node, 0, "big_ordered", NULL, 0, WAIT_MS, &results) == DR_OK) {
        size_t count = dr_rpc_results_count(results, WAIT_MS);
        CHECK(count == members);
        for (size_t i = 0; i < count; i++) {
            CHECK(dr_rpc_results_wait(results, i, WAIT_MS, &reply) == DR_OK &&
                  reply.status == DR_ETOOBIG);
            dr_rpc_reply_clear(&reply);
        }
        CHECK(dr_rpc_results_wait(results, count, 0, &reply) == DR_EINVAL);
        dr_rpc_results_free(results);
    } else {
        CHECK(!"big_ordered call failed");
    }
    /* the group keeps working: each replica answers as itself, my keys are everywhere */
    for (uint32_t target = 0; target < members; target++) {
        CHECK(dr_rpc_p2p_call(node, target, 0, "whoami", NULL, 0, WAIT_MS, &reply) == DR_OK &&
              reply.len == 4 && reply.bytes[0] == target);
        dr_rpc_reply_clear(&reply);
        char key[64];
        snprintf(key, sizeof key, "n%u-t0-0", my_id);
        CHECK(dr_rpc_p2p_call(node, target, 0, "get", key, strlen(key), WAIT_MS, &reply) == DR_OK &&
              reply.len > 4 && reply.bytes[0] == target);
        dr_rpc_reply_clear(&reply);
    }
}

typedef struct member_options {
    uint32_t puts;
    bool history;          /* --history */
    const char *dump_path; /* --dump FILE */
    int victim;
    uint64_t fill;          /* --fill BYTES (node 0) */
    bool join;              /* --join */
    bool expect_no_state;   /* --expect-no-state (with --join) */
    uint32_t start_members; /* --start-members K: wait for K shard members before the puts */
    int victim_ordered;     /* --victim-ordered V: an ordered call V does not answer in time */
    const char **overrides;
    size_t override_count;
} member_options;

static double ms_between(const struct timespec *from, const struct timespec *to) {
    return (double)(to->tv_sec - from->tv_sec) * 1e3 + (double)(to->tv_nsec - from->tv_nsec) / 1e6;
}

/* Folds one replica's "digest" reply into the comparison: the first sets the reference;
 * returns false if a later one differs (or is malformed). */
static bool same_digest(int rc, const dr_rpc_reply *reply, bool first, uint64_t *count,
                        uint64_t *digest) {
    CHECK(rc == DR_OK && reply->len == 16);
    uint64_t c = reply->len == 16 ? dr_load_u64le(reply->bytes) : 0;
    uint64_t d = reply->len == 16 ? dr_load_u64le(reply->bytes + 8) : 0;
    if (first) {
        *count = c, *digest = d;
        return true;
    }
    return c == *count && d == *digest;
}

/* Node 0 fills the map with 512 KiB values until it holds `bytes` (state transfer timings). */
static void fill_state(dr_rpc_node *node, uint64_t bytes, uint32_t members) {
    enum { VALUE_BYTES = 512 * 1024 };
    uint8_t *args = malloc(VALUE_BYTES + 256);
    uint8_t *value = malloc(VALUE_BYTES);
    for (uint32_t i = 0; i < VALUE_BYTES; i++)
        value[i] = (uint8_t)(i * 31u);
    for (uint64_t done = 0, i = 0; done < bytes; done += VALUE_BYTES, i++) {
        char key[64];
        snprintf(key, sizeof key, "fill-%" PRIu64, i);
        dr_buf buf;
        dr_buf_init(&buf, 0);
        dr_buf_put_str(&buf, key);
        dr_buf_put_blob(&buf, value, VALUE_BYTES);
        memcpy(args, buf.data, buf.len);
        uint32_t ok = 0, count = 0;
        CHECK(ordered_put(node, args, buf.len, &ok, &count) == DR_OK && ok == members);
        dr_buf_free(&buf);
    }
    free(value);
    free(args);
}

/* A joiner: waits for its state, puts, then checks that every replica holds the same map. */
static void joiner_checks(dr_rpc_node *node, uint32_t puts, const struct timespec *started) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&g_kv.lock);
    while (!g_kv.restored &&
           pthread_cond_timedwait(&g_kv.restored_cond, &g_kv.lock, &deadline) == 0) {
    }
    bool restored = g_kv.restored;
    uint64_t restored_bytes = g_kv.restored_bytes;
    double ms = restored ? ms_between(started, &g_kv.restored_at) : -1.0;
    pthread_mutex_unlock(&g_kv.lock);
    CHECK(restored);
    dr_group *group = dr_rpc_node_group(node);
    dr_group_view *view = malloc(sizeof *view);
    uint32_t members = 0;
    if (dr_group_get_view(group, view) == DR_OK)
        members = view->layout.subgroups[0].shards[0].num_members;
    put_thread thread = {
        .node = node, .id = g_kv.my_id, .thread = 0, .puts = puts, .expected_members = members};
    member_puts(&thread);
    CHECK(thread.ok == puts);
    bool equal = true;
    uint64_t first_count = 0, first_digest = 0;
    for (uint32_t m = 0; m < members; m++) {
        dr_rpc_reply reply;
        uint32_t target = view->layout.subgroups[0].shards[0].member_ids[m];
        int rc = dr_rpc_p2p_call(node, target, 0, "digest", NULL, 0, WAIT_MS, &reply);
        equal &= same_digest(rc, &reply, m == 0, &first_count, &first_digest);
        dr_rpc_reply_clear(&reply);
    }
    free(view);
    printf("JOINED node=%u restored=%" PRIu64 " ms=%.1f equal=%d count=%" PRIu64 " bad=%d\n",
           g_kv.my_id, restored_bytes, ms, equal ? 1 : 0, first_count, atomic_load(&g_bad));
    fflush(stdout);
}

/*
 * An ordered call that `victim` handles slowly: once the other members replied the test pauses
 * the victim (SIGSTOP); the group excludes it and its entry in the results must end DR_EREMOVED
 * (resolved by the view change, the connection stays open). Prints CALLING_ORDERED, then
 * ORDERED_REMOVED status=<victim's entry> bad=<n>.
 */
static void ordered_call_to_victim(dr_rpc_node *node, uint32_t victim) {
    dr_group_view *view = malloc(sizeof *view);
    size_t victim_index = SIZE_MAX; /* entries are in shard rank order */
    if (dr_group_get_view(dr_rpc_node_group(node), view) == DR_OK)
        for (uint32_t i = 0; i < view->layout.subgroups[0].shards[0].num_members; i++)
            if (view->layout.subgroups[0].shards[0].member_ids[i] == victim)
                victim_index = i;
    free(view);
    uint8_t args[4];
    dr_store_u32le(args, victim);
    dr_rpc_results *results = NULL;
    int status = DR_EINVAL;
    if (dr_rpc_ordered_call(node, 0, "slow_ordered", args, sizeof args, WAIT_MS, &results) ==
        DR_OK) {
        size_t count = dr_rpc_results_count(results, WAIT_MS);
        CHECK(count == 3 && victim_index < count);
        dr_rpc_reply reply;
        for (size_t i = 0; i < count; i++) { /* the others answer at once */
            if (i == victim_index)
                continue;
            CHECK(dr_rpc_results_wait(results, i, WAIT_MS, &reply) == DR_OK &&
                  reply.status == DR_OK);
            dr_rpc_reply_clear(&reply);
        }
        printf("CALLING_ORDERED\n");
        fflush(stdout);
        if (victim_index < count &&
            dr_rpc_results_wait(results, victim_index, WAIT_MS, &reply) == DR_OK) {
            status = reply.status;
            CHECK(reply.node_id == victim);
            dr_rpc_reply_clear(&reply);
        }
        dr_rpc_results_free(results);
    } else {
        CHECK(!"slow_ordered call failed");
    }
    printf("ORDERED_REMOVED status=%d bad=%d\n", status, atomic_load(&g_bad));
    fflush(stdout);
}

/* ---- history check (tests/netns) ----------------------------------------------------------- */

/* --history: one line per installed view (delivery thread), written under stdout's lock: the
 * main thread prints PUTTING meanwhile, and a line cut in two hides both from the test. */
static void print_view(void *ctx, const dr_group_view *view) {
    (void)ctx;
    flockfile(stdout);
    printf("VIEW node=%u vid=%d members=", view->my_id, view->view.vid);
    for (uint32_t i = 0; i < view->view.num_members; i++)
        printf("%s%u", i ? "," : "", view->view.member_ids[i]);
    printf("\n");
    fflush(stdout);
    funlockfile(stdout);
}

/* One put of the history: true if acknowledged (delivered; every entry OK or removed, one OK). */
static bool history_put(dr_rpc_node *node, uint32_t index, int *stop_rc) {
    char key[64], value[80];
    snprintf(key, sizeof key, "h%u-%u", g_kv.my_id, index);
    snprintf(value, sizeof value, "v-%s", key);
    uint8_t args[256];
    size_t len = encode_put(args, sizeof args, key, value);
    dr_rpc_results *results = NULL;
    int rc = dr_rpc_ordered_call(node, 0, "put", args, len, WAIT_MS, &results);
    if (rc) {
        *stop_rc = rc == DR_ETIMEDOUT ? 0 : rc;
        return false;
    }
    size_t count = dr_rpc_results_count(results, WAIT_MS);
    uint32_t ok = 0, other = 0;
    for (size_t i = 0; i < count; i++) {
        dr_rpc_reply reply;
        dr_rpc_results_wait(results, i, WAIT_MS, &reply);
        if (reply.status == DR_OK && reply.len == 8)
            ok++;
        else if (reply.status != DR_EREMOVED)
            other++;
        dr_rpc_reply_clear(&reply);
    }
    dr_rpc_results_free(results);
    bool acked = count > 0 && ok > 0 && other == 0;
    if (acked)
        printf("ACK %s\n", key);
    return acked;
}

/* Writes the map, one "key value" line per entry (values of the history are text). */
static int dump_state(const char *path) {
    FILE *file = fopen(path, "w");
    if (!file)
        return -1;
    pthread_mutex_lock(&g_kv.lock);
    for (uint32_t b = 0; b < NUM_BUCKETS; b++)
        for (kv_entry *e = g_kv.buckets[b]; e; e = e->next)
            fprintf(file, "%s %.*s\n", e->key, (int)e->value_len, (const char *)e->value);
    pthread_mutex_unlock(&g_kv.lock);
    return fclose(file);
}

/* --history: the puts, then (standard input closed) the dump. */
static void run_history(dr_rpc_node *node, const member_options *opts) {
    dr_group *group = dr_rpc_node_group(node);
    printf("PUTTING node=%u\n", g_kv.my_id);
    uint32_t acked = 0, failed = 0;
    int stop_rc = 0;
    for (uint32_t i = 0; i < opts->puts && stop_rc == 0; i++) {
        if (history_put(node, i, &stop_rc))
            acked++;
        else
            failed++;
    }
    if (stop_rc)
        printf("STOPPED node=%u rc=%d\n", g_kv.my_id, stop_rc);
    printf("PUTS node=%u acked=%u failed=%u\n", g_kv.my_id, acked, failed);
    char sink[64];
    while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    if (!opts->dump_path)
        return;
    CHECK(dump_state(opts->dump_path) == 0);
    dr_group_view *view = malloc(sizeof *view);
    int32_t vid = view && dr_group_get_view(group, view) == DR_OK ? view->view.vid : -1;
    free(view);
    pthread_mutex_lock(&g_kv.lock);
    printf("DUMPED node=%u count=%" PRIu64 " digest=%016" PRIx64 " vid=%d\n", g_kv.my_id,
           g_kv.count, g_kv.digest, vid);
    pthread_mutex_unlock(&g_kv.lock);
}

static int run_member(const char *config_path, const member_options *opts) {
    dr_err err = {0};
    dr_config *config = NULL;
    dr_config_options options = {.file_path = config_path,
                                 .overrides = opts->overrides,
                                 .override_count = opts->override_count};
    if (dr_config_load(&options, &config, &err)) {
        fprintf(stderr, "kv_node: %s\n", err.msg);
        return 1;
    }
    dr_config_apply_logging(config);
    dr_layout_spec spec = {.num_types = 1};
    snprintf(spec.types[0].name, sizeof spec.types[0].name, "KV");
    spec.types[0].num_subgroups = 1;
    if (dr_group_policy_from_config(config, "KV", DR_MODE_ORDERED, &spec.types[0].policy, &err)) {
        fprintf(stderr, "kv_node: %s\n", err.msg);
        return 1;
    }
    dr_rpc_type type = {.name = "KV",
                        .methods = kv_methods,
                        .num_methods = sizeof kv_methods / sizeof *kv_methods,
                        .serialize = kv_serialize,
                        .restore = kv_restore};
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    dr_rpc_node_options node_options = {.on_state_chunk = kv_state_chunk};
    if (opts->history) {
        node_options.app_callbacks.on_view = print_view;
        setvbuf(stdout, NULL, _IOLBF, 0); /* a killed node's ACK lines are in its log */
    }
    dr_rpc_node *node = NULL;
    if (dr_rpc_node_create(config, &spec, &type, 1, &node_options, &node, &err)) {
        fprintf(stderr, "kv_node: cannot start: %s\n", err.msg);
        return 1;
    }
    atomic_store(&g_kv.node, node);
    dr_group *group = dr_rpc_node_group(node);
    g_kv.my_id = dr_group_my_id(group);
    int rc = dr_group_wait_view(group, 0, 30000);
    if (rc) {
        fprintf(stderr, "kv_node: no view: %s\n", dr_strerror(rc));
        return 1;
    }
    if (opts->join && opts->expect_no_state) {
        /* the state transfer must fail: the joiner leaves (the group stops here), never
         * restoring anything */
        dr_group_view *first = malloc(sizeof *first);
        CHECK(first != NULL && dr_group_get_view(group, first) == DR_OK);
        int32_t joined_vid = first->view.vid;
        free(first);
        int stopped = dr_group_wait_view(group, INT32_MAX, WAIT_MS);
        pthread_mutex_lock(&g_kv.lock);
        bool restored = g_kv.restored;
        pthread_mutex_unlock(&g_kv.lock);
        printf("NO_STATE node=%u rc=%d restored=%d vid=%d\n", g_kv.my_id, stopped, restored ? 1 : 0,
               (int)joined_vid);
        fflush(stdout);
    } else if (opts->join) {
        joiner_checks(node, opts->puts, &started);
    } else {
        dr_group_view *view = malloc(sizeof *view);
        dr_group_get_view(group, view);
        for (int32_t vid = view->view.vid + 1;
             view->layout.subgroups[0].shards[0].num_members < opts->start_members &&
             dr_group_wait_view(group, vid, WAIT_MS) == DR_OK;
             vid++)
            dr_group_get_view(group, view);
        uint32_t members = view->layout.subgroups[0].shards[0].num_members;
        free(view);
        if (opts->history) {
            run_history(node, opts);
            goto release;
        }
        if (opts->fill && g_kv.my_id == 0)
            fill_state(node, opts->fill, members);
        put_thread threads[2];
        pthread_t ids[2];
        uint32_t puts = opts->puts;
        for (uint32_t t = 0; t < 2; t++) {
            threads[t] = (put_thread){.node = node,
                                      .id = g_kv.my_id,
                                      .thread = t,
                                      .puts = puts / 2 + (t == 0 ? puts % 2 : 0),
                                      .expected_members = members};
            pthread_create(&ids[t], NULL, member_puts, &threads[t]);
        }
        for (uint32_t t = 0; t < 2; t++)
            pthread_join(ids[t], NULL);
        if (puts)
            member_error_paths(node, g_kv.my_id, members);
        printf("DONE node=%u ok=%u bad=%d\n", g_kv.my_id, threads[0].ok + threads[1].ok,
               atomic_load(&g_bad));
        fflush(stdout);
    }
    if (opts->victim >= 0 && g_kv.my_id == 0) { /* a p2p call to a member the test kills */
        /* dr_rpc_node_peer_down: no member is marked down while every connection is up */
        CHECK(!dr_rpc_node_peer_down(node, (uint32_t)opts->victim));
        CHECK(!dr_rpc_node_peer_down(node, 1));
        printf("CALLING\n");
        fflush(stdout);
        dr_rpc_reply reply;
        int rc =
            dr_rpc_p2p_call(node, (uint32_t)opts->victim, 0, "sleep", NULL, 0, WAIT_MS, &reply);
        CHECK(!dr_rpc_node_peer_down(node, 1)); /* the survivor is still up */
        CHECK(rc == DR_EREMOVED && reply.status == DR_EREMOVED);
        CHECK(dr_rpc_p2p_call(node, 1, 0, "whoami", NULL, 0, WAIT_MS, &reply) == DR_OK);
        dr_rpc_reply_clear(&reply);
        printf("REMOVED rc=%d bad=%d\n", rc, atomic_load(&g_bad));
        fflush(stdout);
    }
    if (opts->victim_ordered >= 0 && g_kv.my_id == 0) {
        /* the test writes "go" once every member printed DONE: no call of theirs may still be
         * queued behind the victim's slow handler, or the victim would answer before the pause */
        char c = 0;
        while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n') {
        }
        ordered_call_to_victim(node, (uint32_t)opts->victim_ordered);
    }
release:;
    /* until stdin closes: "wait-members K" lines block until this node's shard has K members
     * (or WAIT_MS passes) and print "MEMBERS n=<members> vid=<view id>" */
    char command[64];
    size_t used = 0;
    char c = 0;
    while (read(STDIN_FILENO, &c, 1) == 1) {
        if (c != '\n') {
            if (used + 1 < sizeof command)
                command[used++] = c;
            continue;
        }
        command[used] = '\0';
        used = 0;
        unsigned want = 0;
        int min_vid = 0;
        if (sscanf(command, "wait-members %u %d", &want, &min_vid) < 1)
            continue;
        dr_group_view *view = malloc(sizeof *view);
        CHECK(view != NULL);
        CHECK(dr_group_get_view(group, view) == DR_OK);
        while (
            (view->layout.subgroups[0].shards[0].num_members != want || view->view.vid < min_vid) &&
            dr_group_wait_view(group, view->view.vid + 1, WAIT_MS) == DR_OK)
            CHECK(dr_group_get_view(group, view) == DR_OK);
        printf("MEMBERS n=%u vid=%d\n", view->layout.subgroups[0].shards[0].num_members,
               (int)view->view.vid);
        fflush(stdout);
        free(view);
    }
    dr_rpc_node_destroy(node);
    dr_config_free(config);
    return atomic_load(&g_bad) ? 1 : 0;
}

/* ---- outside client ------------------------------------------------------------------------- */

static void client_error_paths(dr_rpc_client *client, uint32_t subgroup, uint32_t members) {
    dr_rpc_reply reply;
    static uint8_t huge[1u << 20];
    CHECK(dr_rpc_client_call(client, 0, subgroup, "nope", NULL, 0, WAIT_MS, &reply) ==
          DR_ENOTFOUND);
    CHECK(dr_rpc_client_call(client, 0, subgroup, "get", huge, sizeof huge, WAIT_MS, &reply) ==
          DR_ETOOBIG);
    CHECK(dr_rpc_client_call(client, 99, subgroup, "whoami", NULL, 0, WAIT_MS, &reply) ==
          DR_ENOTFOUND);
    /* an ordered method is for members; an admin method needs the admin key (docs/security.md) */
    CHECK(dr_rpc_client_call(client, 1, subgroup, "put", "x", 1, WAIT_MS, &reply) == DR_EPERM);
    CHECK(dr_rpc_client_call(client, 1, subgroup, "wipe", NULL, 0, WAIT_MS, &reply) == DR_EPERM);
    for (uint32_t target = 0; target < members; target++) {
        CHECK(dr_rpc_client_call(client, target, subgroup, "whoami", NULL, 0, WAIT_MS, &reply) ==
                  DR_OK &&
              reply.len == 4 && reply.bytes[0] == target);
        dr_rpc_reply_clear(&reply);
        CHECK(dr_rpc_client_call(client, target, subgroup, "get", "client-0", 8, WAIT_MS, &reply) ==
                  DR_OK &&
              reply.len > 4 && reply.bytes[0] == target);
        dr_rpc_reply_clear(&reply);
    }
}

/* Calls `sleep` on member `victim` (which the test kills meanwhile): expects DR_EREMOVED, then
 * a working call to another member and a refreshed view. Prints CALLING, then REMOVED rc=<rc>. */
static int client_removed(dr_rpc_client *client, uint32_t victim) {
    dr_rpc_reply reply;
    CHECK(dr_rpc_client_call(client, victim, 0, "whoami", NULL, 0, WAIT_MS, &reply) == DR_OK);
    dr_rpc_reply_clear(&reply);
    printf("CALLING\n");
    fflush(stdout);
    int rc = dr_rpc_client_call(client, victim, 0, "sleep", NULL, 0, WAIT_MS, &reply);
    CHECK(rc == DR_EREMOVED);
    uint32_t other = victim == 0 ? 1 : 0;
    CHECK(dr_rpc_client_call(client, other, 0, "whoami", NULL, 0, WAIT_MS, &reply) == DR_OK &&
          reply.len == 4 && reply.bytes[0] == other);
    dr_rpc_reply_clear(&reply);
    dr_group_view view;
    CHECK(dr_rpc_client_get_view(client, &view) == DR_OK);
    printf("REMOVED rc=%d bad=%d\n", rc, atomic_load(&g_bad));
    fflush(stdout);
    return 0;
}

/* Client puts i = first, first + step, ... < puts, each through put_via on member i % members. */
typedef struct client_thread {
    dr_rpc_client *client;
    uint32_t first, step, puts, members;
    uint32_t ok;
} client_thread;

static void *client_puts(void *arg) {
    client_thread *t = arg;
    for (uint32_t i = t->first; i < t->puts; i += t->step) {
        char key[64], value[128];
        snprintf(key, sizeof key, "client-%u", i);
        snprintf(value, sizeof value, "client value %u", i);
        uint8_t args[256];
        size_t len = encode_put(args, sizeof args, key, value);
        dr_rpc_reply reply;
        int rc =
            dr_rpc_client_call(t->client, i % t->members, 0, "put_via", args, len, WAIT_MS, &reply);
        bool ok = rc == DR_OK && reply.len == 8 && dr_load_u32le(reply.bytes) == t->members &&
                  dr_load_u32le(reply.bytes + 4) == t->members;
        CHECK(ok);
        t->ok += ok;
        dr_rpc_reply_clear(&reply);
    }
    return NULL;
}

static int run_client(uint16_t port, uint32_t puts, uint32_t members, int victim) {
    dr_err err = {0};
    dr_rpc_client *client = NULL;
    if (dr_rpc_client_create("127.0.0.1", port, 30000, &client, &err)) {
        fprintf(stderr, "kv_node: client: %s\n", err.msg);
        return 1;
    }
    dr_group_view view;
    uint32_t subgroup = 99;
    CHECK(dr_rpc_client_get_view(client, &view) == DR_OK && view.my_id == DR_NODE_NONE);
    CHECK(dr_rpc_client_find_subgroup(client, "KV", 0, &subgroup) == DR_OK && subgroup == 0);
    CHECK(dr_rpc_client_find_subgroup(client, "KV", 1, &subgroup) == DR_ENOTFOUND);
    subgroup = 0;
    if (victim >= 0) {
        client_removed(client, (uint32_t)victim);
        char sink[64];
        while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
        }
        dr_rpc_client_destroy(client);
        return atomic_load(&g_bad) ? 1 : 0;
    }
    client_thread threads[2];
    pthread_t ids[2];
    for (uint32_t t = 0; t < 2; t++) {
        threads[t] = (client_thread){
            .client = client, .first = t, .step = 2, .puts = puts, .members = members};
        pthread_create(&ids[t], NULL, client_puts, &threads[t]);
    }
    for (uint32_t t = 0; t < 2; t++)
        pthread_join(ids[t], NULL);
    uint32_t ok_puts = threads[0].ok + threads[1].ok;
    if (puts)
        client_error_paths(client, subgroup, members);
    printf("PUTS ok=%u bad=%d\n", ok_puts, atomic_load(&g_bad));
    fflush(stdout);
    char line[128];
    unsigned long long total = 0;
    if (fgets(line, sizeof line, stdin) && sscanf(line, "check %llu", &total) == 1) {
        uint64_t first_count = 0, first_digest = 0;
        bool equal = true;
        for (uint32_t target = 0; target < members; target++) {
            dr_rpc_reply reply;
            int rc =
                dr_rpc_client_call(client, target, subgroup, "digest", NULL, 0, WAIT_MS, &reply);
            equal &= same_digest(rc, &reply, target == 0, &first_count, &first_digest);
            dr_rpc_reply_clear(&reply);
        }
        CHECK(first_count == total);
        printf("CHECK equal=%d count=%" PRIu64 " bad=%d\n", equal ? 1 : 0, first_count,
               atomic_load(&g_bad));
        fflush(stdout);
    }
    char sink[64];
    while (read(STDIN_FILENO, sink, sizeof sink) > 0) {
    }
    dr_rpc_client_destroy(client);
    return atomic_load(&g_bad) ? 1 : 0;
}

/*
 * --probe PORT [--key FILE [--admin]]: connects as an outside client proving the key (or none)
 * and prints "PROBE connect=<rc> members=<n> whoami=<rc> wipe=<rc>" (whoami is open to clients,
 * wipe needs the admin key; members = the shard's size in the view the client learnt).
 */
static int run_probe(uint16_t port, const char *key_file, bool admin) {
    dr_err err = {0};
    dr_rpc_client *client = NULL;
    dr_rpc_client_credential credential = {.key_file = key_file, .admin = admin};
    int rc = dr_rpc_client_create_auth("127.0.0.1", port, key_file ? &credential : NULL, 3000,
                                       &client, &err);
    if (rc) {
        printf("PROBE connect=%d members=0 whoami=0 wipe=0\n", rc);
        fprintf(stderr, "kv_node: probe: %s\n", err.msg);
        return 0;
    }
    dr_group_view view;
    uint32_t members = 0;
    if (dr_rpc_client_get_view(client, &view) == DR_OK)
        members = view.layout.subgroups[0].shards[0].num_members;
    dr_rpc_reply reply;
    int whoami = dr_rpc_client_call(client, 0, 0, "whoami", NULL, 0, WAIT_MS, &reply);
    dr_rpc_reply_clear(&reply);
    int wipe = dr_rpc_client_call(client, 0, 0, "wipe", NULL, 0, WAIT_MS, &reply);
    dr_rpc_reply_clear(&reply);
    printf("PROBE connect=0 members=%u whoami=%d wipe=%d\n", members, whoami, wipe);
    fflush(stdout);
    dr_rpc_client_destroy(client);
    return 0;
}

int main(int argc, char **argv) {
    pthread_mutex_init(&g_kv.lock, NULL);
    pthread_cond_init(&g_kv.restored_cond, NULL);
    g_kv.digest = TEST_HASH_SEED;
    uint32_t members = 3;
    int client_port = 0, probe_port = 0;
    const char *key_file = NULL;
    bool admin = false;
    const char *config_path = NULL;
    const char *overrides[32];
    member_options opts = {.victim = -1, .victim_ordered = -1, .overrides = overrides};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--puts") == 0 && i + 1 < argc)
            opts.puts = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--client") == 0 && i + 1 < argc)
            client_port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--probe") == 0 && i + 1 < argc)
            probe_port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key_file = argv[++i];
        else if (strcmp(argv[i], "--admin") == 0)
            admin = true;
        else if (strcmp(argv[i], "--victim") == 0 && i + 1 < argc)
            opts.victim = atoi(argv[++i]);
        else if (strcmp(argv[i], "--members") == 0 && i + 1 < argc)
            members = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--fill") == 0 && i + 1 < argc)
            opts.fill = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--start-members") == 0 && i + 1 < argc)
            opts.start_members = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--victim-ordered") == 0 && i + 1 < argc)
            opts.victim_ordered = atoi(argv[++i]);
        else if (strcmp(argv[i], "--join") == 0)
            opts.join = true;
        else if (strcmp(argv[i], "--expect-no-state") == 0)
            opts.expect_no_state = true;
        else if (strcmp(argv[i], "--fail-serialize") == 0)
            g_fail_serialize = true;
        else if (strcmp(argv[i], "--stall-serialize") == 0)
            g_stall_serialize = true;
        else if (strcmp(argv[i], "--stall-mid-transfer") == 0)
            g_stall_mid_transfer = true;
        else if (strcmp(argv[i], "--print-chunks") == 0)
            g_print_chunks = true;
        else if (strcmp(argv[i], "--history") == 0)
            opts.history = true;
        else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc)
            opts.dump_path = argv[++i];
        else if (dr_config_is_override_arg(argv[i]) && opts.override_count < 32)
            overrides[opts.override_count++] = argv[i] + 2;
        else if (!config_path && argv[i][0] != '-')
            config_path = argv[i];
        else {
            fprintf(stderr, "kv_node: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (probe_port)
        return run_probe((uint16_t)probe_port, key_file, admin);
    if (client_port)
        return run_client((uint16_t)client_port, opts.puts, members, opts.victim);
    if (!config_path) {
        fprintf(stderr, "usage: kv_node CONFIG_FILE --puts N | kv_node --client PORT --puts N\n");
        return 2;
    }
    return run_member(config_path, &opts);
}
