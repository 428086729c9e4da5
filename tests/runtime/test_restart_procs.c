/*
 * Total restart with real processes (durable_node; docs/persistence.md "Total restart"): three
 * members of a durable shard send; once each saw its sends globally persisted (ACKED) they keep
 * sending, and once more puts flowed (FLOWING) all three are killed with SIGKILL mid-stream.
 * Started again with the same configuration, they find their saved view and logs, restart through
 * the restart leader into one view of all three with a higher view id, and truncate their logs to
 * one trim: afterwards every log holds every acknowledged (globally persisted) version, and the
 * three logs are identical (versions, bytes and timestamps).
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

#include "node_procs.h"
#include "persist/plog.h"

enum { NODES = 3, WAIT_SECONDS = 90, BASE_PORT = 21810 };

static char test_dir[] = "/tmp/dr_restart_procs_XXXXXX";

static void write_config(int node, char *path, size_t path_len) {
    snprintf(path, path_len, "%s/node%d.cfg", test_dir, node);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file,
            "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n"
            "local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = 1000\n"
            "suspicion_missed_heartbeats = 30\n"
            "restart_leaders = 127.0.0.1\nrestart_leader_ports = %d\nrestart_timeout_ms = 5000\n"
            "[SUBGROUP/DEFAULT]\nmax_payload_size = 10240\nmax_smc_payload_size = 10240\n"
            "window_size = 16\n"
            "[SUBGROUP/TEST]\nnum_shards = 1\nmin_nodes = %d\nmax_nodes = %d\ndurable = true\n"
            "[PERS]\nfile_path = %s/log%d\n"
            "[LOGGER]\ndefault_log_level = warn\n",
            BASE_PORT, node, BASE_PORT + node, BASE_PORT, NODES, NODES, test_dir, node);
    fclose(file);
}

static uint64_t fnv(uint64_t hash, const void *data, size_t len) {
    const uint8_t *bytes = data;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ bytes[i]) * 1099511628211ull;
    return hash;
}

typedef struct log_walk {
    uint64_t count;
    uint64_t hash; /* over (version, timestamp, bytes) */
    int64_t latest;
} log_walk;

static int visit(void *ctx, const dr_plog_record *rec) {
    log_walk *walk = ctx;
    walk->count++;
    walk->hash = fnv(walk->hash, &rec->version, sizeof rec->version);
    walk->hash = fnv(walk->hash, &rec->hlc_us, sizeof rec->hlc_us);
    walk->hash = fnv(walk->hash, rec->data, rec->len);
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
    log_walk walk = {.hash = 1469598103934665603ull, .latest = -1};
    assert_int_equal(dr_plog_iterate(log, 0, INT64_MAX, visit, &walk), 0);
    dr_plog_close(log);
    return walk;
}

static void test_kill_all_during_puts_then_restart(void **state) {
    (void)state;
    char *crash_args[] = {"--messages",      "100", "--size",      "300", "--expect-senders", "3",
                          "--start-members", "3",   "--crash-run", NULL};
    child children[NODES];
    char path[512];
    for (int i = 0; i < NODES; i++) {
        write_config(i, path, sizeof path);
        spawn_test_program(&children[i], "durable_node", path, crash_args);
        if (i == 0)
            usleep(200000); /* let the leader listen first (joiners also retry) */
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
     * the restart must trim every log to the smallest of these */
    int64_t smallest_tail = INT64_MAX;
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
        if (info.latest_version < smallest_tail)
            smallest_tail = info.latest_version;
        dr_plog_close(log);
    }
    char *restart_args[] = {"--restarted", NULL};
    for (int i = NODES - 1; i >= 0; i--) { /* the leader last: the others wait for it */
        write_config(i, path, sizeof path);
        spawn_test_program(&children[i], "durable_node", path, restart_args);
    }
    wait_all_done(children, NODES, WAIT_SECONDS);
    int32_t vid0 = -1;
    for (int i = 0; i < NODES; i++) {
        int node = -1, vid = -1, members = 0;
        if (sscanf(children[i].output, "RESTARTED node=%d vid=%d members=%d", &node, &vid,
                   &members) != 3) {
            finish_all(children, NODES);
            fail_msg("node %d did not restart: '%s'", i, children[i].output);
        }
        assert_int_equal(node, i);
        assert_int_equal(members, NODES);
        assert_true(vid > crash_vid); /* a new view above every saved one */
        if (i == 0)
            vid0 = vid;
        assert_int_equal(vid, vid0);
    }
    assert_int_equal(finish_all(children, NODES), NODES);
    log_walk first = walk_log(0, acked);
    assert_true(first.latest >= acked);
    assert_int_equal(first.latest, smallest_tail); /* the trim: nothing beyond it survives */
    for (int i = 1; i < NODES; i++) {
        log_walk walk = walk_log(i, acked);
        assert_int_equal(walk.count, first.count); /* one trim for all */
        assert_int_equal(walk.latest, first.latest);
        assert_int_equal(walk.hash, first.hash); /* the same records, stamps included */
    }
}

static int setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return mkdtemp(test_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char command[300];
    snprintf(command, sizeof command, "rm -rf %s", test_dir);
    return system(command) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill_all_during_puts_then_restart, kill_leftover_children),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
