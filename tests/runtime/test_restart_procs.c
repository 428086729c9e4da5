/*
 * Total restart with real processes (durable_node; docs/persistence.md "Total restart"): three
 * members of a durable shard send; once each saw its sends globally persisted (ACKED) they keep
 * sending, and once more puts flowed (FLOWING) all three are killed with SIGKILL mid-stream.
 * Started again with the same configuration, they find their saved view and logs, restart through
 * the restart leader into one view of all three with a higher view id, and truncate their logs to
 * one trim: afterwards every log holds every acknowledged (globally persisted) version, and the
 * three logs are identical (versions, bytes and timestamps); each node's application was handed
 * exactly its log back (on_replay: every record up to the trim, in order, before the restart
 * view's upcall; docs/persistence.md "Replay"). A second run leaves node 0, the first
 * restart leader, dead: with enable_backup_restart_leaders, node 1 leads after
 * restart_timeout_ms and nodes 1 and 2 (a majority) restart the same way.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/hash.h"
#include "node_procs.h"
#include "persist/plog.h"

enum { NODES = 3, WAIT_SECONDS = 90 };

static char test_dir[] = "/tmp/dr_restart_procs_XXXXXX";

/* backups: restart leaders node 0 then node 1, enable_backup_restart_leaders, and a layout
 * that two nodes satisfy */
static void write_config(int node, int base_port, bool backups, char *path, size_t path_len) {
    char leaders[64], ports[64];
    snprintf(leaders, sizeof leaders, "127.0.0.1%s", backups ? ",127.0.0.1" : "");
    if (backups)
        snprintf(ports, sizeof ports, "%d,%d", base_port, base_port + 1);
    else
        snprintf(ports, sizeof ports, "%d", base_port);
    snprintf(path, path_len, "%s/node%d.cfg", test_dir, node);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file,
            "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n"
            "local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = 1000\n"
            "suspicion_missed_heartbeats = 30\n"
            "restart_leaders = %s\nrestart_leader_ports = %s\nrestart_timeout_ms = %d\n"
            "enable_backup_restart_leaders = %s\n"
            "[SUBGROUP/DEFAULT]\nmax_payload_size = 10240\nmax_smc_payload_size = 10240\n"
            "window_size = 16\n"
            "[SUBGROUP/TEST]\nnum_shards = 1\nmin_nodes = %d\nmax_nodes = %d\ndurable = true\n"
            "[PERS]\nfile_path = %s/log%d\n"
            "[LOGGER]\ndefault_log_level = warn\n",
            base_port, node, base_port + node, leaders, ports, backups ? 1000 : 5000,
            backups ? "true" : "false", backups ? NODES - 1 : NODES, NODES, test_dir, node);
    fclose(file);
}

typedef struct log_walk {
    uint64_t count;
    uint64_t hash; /* over (version, timestamp, bytes) */
    int64_t latest;
} log_walk;

static int visit(void *ctx, const dr_plog_record *rec) {
    log_walk *walk = ctx;
    walk->count++;
    walk->hash = test_hash(walk->hash, &rec->version, sizeof rec->version);
    walk->hash = test_hash(walk->hash, &rec->hlc_us, sizeof rec->hlc_us);
    walk->hash = test_hash(walk->hash, rec->data, rec->len);
    walk->latest = rec->version;
    return 0;
}

/** Walks node's log; asserts that it holds `must_hold`. */
static log_walk walk_log(int node, int64_t must_hold) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/log%d", test_dir, node);
    dr_plog *log = NULL;
    dr_plog_open_info info;
    dr_err err = {0};
    if (dr_plog_open(dir, "DURABLE-0-0", NULL, &log, &info, &err) != 0)
        fail_msg("node %d's log: %s", node, err.msg);
    assert_false(info.created);
    dr_plog_record rec;
    if (dr_plog_read(log, must_hold, &rec) != 0)
        fail_msg("node %d's log lacks the acknowledged version %" PRId64, node, must_hold);
    dr_plog_record_free(&rec);
    log_walk walk = {.hash = TEST_HASH_SEED, .latest = -1};
    assert_int_equal(dr_plog_iterate(log, 0, INT64_MAX, visit, &walk), 0);
    dr_plog_close(log);
    return walk;
}

static int count_old(void *ctx, const dr_plog_record *rec) {
    int64_t *old = ctx; /* old[0]: the last view id before the restart; old[1]: the count */
    if ((int32_t)(rec->version >> 32) <= (int32_t)old[0])
        old[1]++;
    return 0;
}

/** Records of node's log from views up to `vid` (the views before the restart). */
static int64_t old_records(int node, int32_t vid) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/log%d", test_dir, node);
    dr_plog *log = NULL;
    dr_plog_open_info info;
    dr_err err = {0};
    if (dr_plog_open(dir, "DURABLE-0-0", NULL, &log, &info, &err) != 0)
        fail_msg("node %d's log: %s", node, err.msg);
    int64_t old[2] = {vid, 0};
    assert_int_equal(dr_plog_iterate(log, 0, INT64_MAX, count_old, old), 0);
    dr_plog_close(log);
    return old[1];
}

/*
 * Crash run of all three, SIGKILL mid-stream, then the last `restarted` nodes (node ids
 * NODES - restarted .. NODES - 1) come back; with backups, node 0 (the first restart leader)
 * stays dead and node 1 leads after restart_timeout_ms.
 */
static void run(int base_port, int restarted, bool backups) {
    char clean[300];
    snprintf(clean, sizeof clean, "rm -rf %s/log0 %s/log1 %s/log2", test_dir, test_dir, test_dir);
    assert_int_equal(system(clean), 0);
    char *crash_args[] = {"--messages",      "100", "--size",      "300", "--expect-senders", "3",
                          "--start-members", "3",   "--crash-run", NULL};
    child children[NODES];
    char path[512];
    for (int i = 0; i < NODES; i++) {
        write_config(i, base_port, backups, path, sizeof path);
        spawn_test_program(&children[i], "durable_node", path, crash_args);
        if (i == 0 && !procs_wait_listening(base_port, 10000)) /* the leader listens first */
            fail_msg("the leader does not listen on %d", base_port);
    }
    wait_all_done(children, NODES, WAIT_SECONDS);
    int64_t acked = -1;
    int32_t crash_vid = -1;
    for (int i = 0; i < NODES; i++) {
        int node = -1, vid = -1;
        int64_t version = -1;
        if (sscanf(children[i].output, "ACKED node=%d version=%" SCNd64 " vid=%d", &node, &version,
                   &vid) != 3) {
            finish_all(children, NODES);
            fail_msg("node %d did not get its puts acknowledged: '%s'", i, children[i].output);
        }
        if (version > acked)
            acked = version;
        if (vid > crash_vid)
            crash_vid = vid;
    }
    for (int i = 0; i < NODES; i++)
        drop_first_line(&children[i]);
    wait_all_done(children, NODES, WAIT_SECONDS); /* FLOWING: more puts delivered since */
    for (int i = 0; i < NODES; i++)
        if (strncmp(children[i].output, "FLOWING", 7) != 0) {
            finish_all(children, NODES);
            fail_msg("node %d: '%s'", i, children[i].output);
        }
    /* every node is still sending: kill them all at once */
    for (int i = 0; i < NODES; i++)
        kill(children[i].pid, SIGKILL);
    finish_all(children, NODES);
    /* what each log holds after the crash (recovery cuts a torn tail, as the node's open will):
     * the restart must trim every log to the smallest of the restarted nodes' */
    int64_t smallest_tail = INT64_MAX; /* over the nodes that come back */
    for (int i = 0; i < NODES; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/log%d", test_dir, i);
        dr_plog *log = NULL;
        dr_plog_open_info info;
        dr_err err = {0};
        if (dr_plog_open(dir, "DURABLE-0-0", NULL, &log, &info, &err) != 0)
            fail_msg("node %d's log after the crash: %s", i, err.msg);
        assert_true(info.latest_version >= acked); /* globally persisted: on every disk */
        print_message("node %d: log ends at %" PRId64 " after the crash (acknowledged %" PRId64
                      ")\n",
                      i, info.latest_version, acked);
        if (i >= NODES - restarted && info.latest_version < smallest_tail)
            smallest_tail = info.latest_version;
        dr_plog_close(log);
    }
    char *restart_args[] = {"--restarted", NULL};
    int from = NODES - restarted;
    child *back = &children[from];
    for (int i = NODES - 1; i >= from; i--) { /* the first leader last: the others wait */
        write_config(i, base_port, backups, path, sizeof path);
        spawn_test_program(&children[i], "durable_node", path, restart_args);
    }
    wait_all_done(back, restarted, WAIT_SECONDS);
    int32_t vid0 = -1;
    uint64_t replayed[NODES] = {0}, replay_hash[NODES] = {0};
    int64_t replay_last[NODES];
    for (int i = from; i < NODES; i++) {
        int node = -1, vid = -1, members = 0, replay_ok = 0;
        if (sscanf(children[i].output,
                   "RESTARTED node=%d vid=%d members=%d replayed=%" SCNu64 " replay_hash=%" SCNu64
                   " replay_last=%" SCNd64 " replay_ok=%d",
                   &node, &vid, &members, &replayed[i], &replay_hash[i], &replay_last[i],
                   &replay_ok) != 7 ||
            !replay_ok) {
            finish_all(back, restarted);
            fail_msg("node %d did not restart: '%s'", i, children[i].output);
        }
        assert_int_equal(node, i);
        assert_int_equal(members, restarted);
        assert_true(vid > crash_vid); /* a new view above every saved one */
        if (i == from)
            vid0 = vid;
        assert_int_equal(vid, vid0);
    }
    if (from > 0) {
        /* the first restart leader comes back late, with its saved view: the group restarted
         * without it, so it is told to join (JOIN_REDIRECT) and becomes a member of a later
         * view (it used to wait for ever); its log is emptied first (the others' trim may have
         * cut records it holds), nothing is replayed, the state comes by state transfer */
        int64_t before = old_records(0, crash_vid);
        assert_true(before > 0);
        write_config(0, base_port, backups, path, sizeof path);
        spawn_test_program(&children[0], "durable_node", path, restart_args);
        wait_all_done(&children[0], 1, WAIT_SECONDS);
        int node = -1, vid = -1, members = 0, replay_ok = 0;
        uint64_t late_replayed = 1, late_hash = 0;
        int64_t late_last = 0;
        if (sscanf(children[0].output,
                   "RESTARTED node=%d vid=%d members=%d replayed=%" SCNu64 " replay_hash=%" SCNu64
                   " replay_last=%" SCNd64 " replay_ok=%d",
                   &node, &vid, &members, &late_replayed, &late_hash, &late_last,
                   &replay_ok) != 7) {
            finish_all(children, NODES);
            fail_msg("the late node did not join: '%s'", children[0].output);
        }
        print_message("late node: %s", children[0].output);
        assert_int_equal(node, 0);
        assert_true(vid > vid0);
        assert_int_equal(members, NODES);
        assert_int_equal(late_replayed, 0);
        assert_int_equal(finish_all(children, 1), 1);
        print_message("late node: %" PRId64 " records from before the restart, %" PRId64
                      " after its join\n",
                      before, old_records(0, crash_vid));
        assert_int_equal(old_records(0, crash_vid), 0);
    }
    assert_int_equal(finish_all(back, restarted), restarted);
    log_walk first = walk_log(from, acked);
    assert_true(first.latest >= acked);
    assert_int_equal(first.latest, smallest_tail); /* the trim: nothing beyond it survives */
    for (int i = from + 1; i < NODES; i++) {
        log_walk walk = walk_log(i, acked);
        assert_int_equal(walk.count, first.count); /* one trim for all */
        assert_int_equal(walk.latest, first.latest);
        assert_int_equal(walk.hash, first.hash); /* the same records, stamps included */
    }
    for (int i = from; i < NODES; i++) { /* replay: the application got its log back, whole */
        assert_int_equal(replayed[i], first.count);
        assert_int_equal(replay_last[i], first.latest);
        assert_int_equal(replay_hash[i], first.hash);
    }
}

static void test_kill_all_during_puts_then_restart(void **state) {
    (void)state;
    run(21810, NODES, false);
}

static void test_backup_restart_leader_when_the_first_stays_dead(void **state) {
    (void)state;
    run(21830, NODES - 1, true);
}

static int setup(void **state) {
    (void)state;
    return procs_setup_dir(test_dir);
}

static int teardown(void **state) {
    (void)state;
    return procs_remove_dir(test_dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill_all_during_puts_then_restart, kill_leftover_children),
        cmocka_unit_test_teardown(test_backup_restart_leader_when_the_first_stays_dead,
                                  kill_leftover_children),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
