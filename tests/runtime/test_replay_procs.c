/*
 * Replay at a total restart with real processes (durable_kv_node, a replicated KV map on
 * dr_rpc_type; docs/persistence.md "Replay"). Three members put into a durable shard until each
 * saw its puts globally persisted (ACKED), keep putting, and are all killed with SIGKILL. Started
 * again, each re-executes its log's ordered calls before the restart view: every acknowledged
 * put is in every replica's map, the replicas applied the same puts in the same order (one
 * digest), and each applied exactly what its log holds after the restart's truncation (nothing
 * beyond the trim). A second run lets the third member join while the other two put: it gets
 * the map by state transfer and saves it as its replay base, so after the crash and restart its
 * map equals the others' although its log starts at its join.
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

enum { NODES = 3, PUTS = 60, WAIT_SECONDS = 90 };

static char test_dir[] = "/tmp/dr_replay_procs_XXXXXX";

static void write_config(int node, int base_port, char *path, size_t path_len) {
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
            "[SUBGROUP/TEST]\nnum_shards = 1\nmin_nodes = 2\nmax_nodes = %d\ndurable = true\n"
            "[PERS]\nfile_path = %s/log%d\n"
            "[LOGGER]\ndefault_log_level = warn\n",
            base_port, node, base_port + node, base_port, NODES, test_dir, node);
    fclose(file);
}

/* How many records node's log holds. */
static uint64_t log_count(int node) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/log%d", test_dir, node);
    dr_plog *log = NULL;
    dr_plog_open_info info;
    dr_err err = {0};
    if (dr_plog_open(dir, "KV-0-0", NULL, &log, &info, &err) != 0)
        fail_msg("node %d's log: %s", node, err.msg);
    uint64_t count = dr_plog_count(log);
    dr_plog_close(log);
    return count;
}

static void expect_acked(child *c, int node) {
    char line[256];
    if (!procs_wait_line(c, "ACKED", line, sizeof line, WAIT_SECONDS))
        fail_msg("node %d did not get its puts acknowledged: '%s'", node, c->output);
}

typedef struct kv_report {
    int vid, members, acked_ok, base;
    uint64_t count, digest, replayed;
} kv_report;

/* Restarts every node, reads their STATE lines and checks what every run must hold. */
static void restart_and_check(child *children, int base_port, kv_report *reports) {
    char path[512];
    char check[16];
    snprintf(check, sizeof check, "%d", PUTS);
    char *args[] = {"--restarted", "--check-puts", check, NULL};
    for (int i = NODES - 1; i >= 0; i--) { /* the restart leader last: the others wait */
        write_config(i, base_port, path, sizeof path);
        spawn_test_program(&children[i], "durable_kv_node", path, args);
    }
    wait_all_done(children, NODES, WAIT_SECONDS);
    for (int i = 0; i < NODES; i++) {
        kv_report *r = &reports[i];
        int node = -1;
        if (sscanf(children[i].output,
                   "STATE node=%d vid=%d members=%d count=%" SCNu64 " digest=%" SCNu64
                   " acked_ok=%d replayed=%" SCNu64 " base=%d",
                   &node, &r->vid, &r->members, &r->count, &r->digest, &r->acked_ok, &r->replayed,
                   &r->base) != 8) {
            finish_all(children, NODES);
            fail_msg("node %d did not restart: '%s'", i, children[i].output);
        }
        print_message("node %d after the restart: %" PRIu64 " puts applied, %" PRIu64
                      " re-executed from its log, base %d\n",
                      i, r->count, r->replayed, r->base);
    }
    assert_int_equal(finish_all(children, NODES), NODES);
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(reports[i].members, NODES);
        assert_int_equal(reports[i].vid, reports[0].vid);
        assert_int_equal(reports[i].acked_ok, 1); /* every acknowledged put of every writer */
        assert_true(reports[i].count >= (uint64_t)NODES * PUTS);
        assert_int_equal(reports[i].count, reports[0].count);   /* the same puts... */
        assert_int_equal(reports[i].digest, reports[0].digest); /* ...in the same order */
    }
}

/** Kills every node with SIGKILL once each says its load after ACKED is running (puts in flight).
 */
static void kill_all(child *children) {
    char line[256];
    for (int i = 0; i < NODES; i++)
        if (!procs_wait_line(&children[i], "LOADED", line, sizeof line, WAIT_SECONDS))
            fail_msg("node %d: no LOADED line: '%s'", i, children[i].output);
    for (int i = 0; i < NODES; i++)
        kill(children[i].pid, SIGKILL);
    finish_all(children, NODES);
}

static void clean_logs(void) {
    char clean[300];
    snprintf(clean, sizeof clean, "rm -rf %s/log0 %s/log1 %s/log2", test_dir, test_dir, test_dir);
    assert_int_equal(system(clean), 0);
}

static void test_kill_all_then_replay_every_acknowledged_put(void **state) {
    (void)state;
    int base_port = procs_free_port_base(22110, NODES);
    clean_logs();
    child children[NODES];
    char path[512];
    char puts[16];
    snprintf(puts, sizeof puts, "%d", PUTS);
    char *args[] = {"--puts", puts, "--wait-members", "3", NULL};
    for (int i = 0; i < NODES; i++) {
        write_config(i, base_port, path, sizeof path);
        spawn_test_program(&children[i], "durable_kv_node", path, args);
        if (i == 0)
            assert_true(procs_wait_listening(base_port, 10000));
    }
    for (int i = 0; i < NODES; i++)
        expect_acked(&children[i], i);
    kill_all(children);
    kv_report reports[NODES];
    restart_and_check(children, base_port, reports);
    for (int i = 0; i < NODES; i++) {
        /* (a member that joined the load's first views has a base: the empty map it received) */
        /* the map is exactly the log: every record up to the trim re-executed, nothing else */
        assert_int_equal(reports[i].replayed, reports[i].count);
        assert_int_equal(log_count(i), reports[i].count);
    }
}

static void test_joiner_replays_from_its_saved_base(void **state) {
    (void)state;
    int base_port = procs_free_port_base(22130, NODES);
    clean_logs();
    child children[NODES];
    char path[512];
    char puts[16];
    snprintf(puts, sizeof puts, "%d", PUTS);
    char *first_args[] = {"--puts", puts, "--wait-members", "2", NULL};
    for (int i = 0; i < 2; i++) {
        write_config(i, base_port, path, sizeof path);
        spawn_test_program(&children[i], "durable_kv_node", path, first_args);
        if (i == 0)
            assert_true(procs_wait_listening(base_port, 10000));
    }
    for (int i = 0; i < 2; i++)
        expect_acked(&children[i], i);
    /* the third joins while the two put: it receives the map by state transfer */
    char *join_args[] = {"--puts", puts, "--wait-members", "3", NULL};
    write_config(2, base_port, path, sizeof path);
    spawn_test_program(&children[2], "durable_kv_node", path, join_args);
    expect_acked(&children[2], 2);
    kill_all(children);
    kv_report reports[NODES];
    restart_and_check(children, base_port, reports);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(reports[i].base, 0);
        assert_int_equal(reports[i].replayed, reports[i].count);
    }
    assert_int_equal(reports[2].base, 1);                /* its base: the joined state */
    assert_true(reports[2].replayed < reports[2].count); /* its log starts at its join */
    assert_true(log_count(2) < log_count(0));
}

/*
 * dr_group_checkpoint: every node checkpoints its map every 20 puts (once that version is
 * globally persisted), which trims its log. After a kill -9 of all during the load, the
 * restart replays the last checkpoint (the base) and only the records after it, and the three
 * maps agree and hold every acknowledged put, as without checkpoints.
 */
static void test_checkpoint_trims_the_log_and_replays_from_it(void **state) {
    (void)state;
    int base_port = procs_free_port_base(22150, NODES);
    clean_logs();
    child children[NODES];
    char path[512];
    char puts[16];
    snprintf(puts, sizeof puts, "%d", PUTS);
    char *args[] = {"--puts", puts, "--wait-members", "3", "--checkpoint-every", "20", NULL};
    for (int i = 0; i < NODES; i++) {
        write_config(i, base_port, path, sizeof path);
        spawn_test_program(&children[i], "durable_kv_node", path, args);
        if (i == 0)
            assert_true(procs_wait_listening(base_port, 10000));
    }
    for (int i = 0; i < NODES; i++)
        expect_acked(&children[i], i);
    kill_all(children); /* LOADED comes after a checkpoint with --checkpoint-every */
    kv_report reports[NODES];
    restart_and_check(children, base_port, reports);
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(reports[i].base, 1);                /* the checkpoint was restored */
        assert_true(reports[i].replayed < reports[i].count); /* ...and only its suffix replayed */
        assert_int_equal(log_count(i), reports[i].replayed); /* the log holds only the suffix */
        assert_true(reports[i].count >= 20);
    }
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
        cmocka_unit_test_teardown(test_kill_all_then_replay_every_acknowledged_put,
                                  kill_leftover_children),
        cmocka_unit_test_teardown(test_joiner_replays_from_its_saved_base, kill_leftover_children),
        cmocka_unit_test_teardown(test_checkpoint_trims_the_log_and_replays_from_it,
                                  kill_leftover_children),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
