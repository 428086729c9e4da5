/*
 * Multi-process tests of the group over TCP on 127.0.0.1: each node is a real group_node
 * process. Every member must deliver the identical sequence (same count and running hash of
 * (version, sender, bytes)), every message intact, with several senders interleaving, silent
 * senders not stalling the others, 50 MB messages, and raw (unordered) mode.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "node_procs.h"

enum { MAX_NODES = 8, WAIT_SECONDS = 90 };

static char test_dir[] = "/tmp/dr_group_procs_XXXXXX";

/*
 * No member fails in these tests (they check delivery, not detection: test_group_faults does),
 * so the failure detector is slack: 30 s of silence. Under ThreadSanitizer on a loaded 2-core
 * machine a receiver spends ~100 ms per 1 MiB block (copying it into the message and relaying
 * it), and before own blocks were sent without copies a 50 MB send held the sender's core lock
 * for 2.4 s; these tests check delivery, not the detector's margins (docs/protocol.md).
 */
static void write_node_config(int node, int nodes, int base_port, const char *extra, char *path,
                              size_t path_len) {
    snprintf(path, path_len, "%s/node%d.cfg", test_dir, node);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file,
            "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n"
            "local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = 1000\n"
            "suspicion_missed_heartbeats = 30\n"
            "[SUBGROUP/DEFAULT]\nmax_payload_size = 10240\nmax_smc_payload_size = 10240\n"
            "block_size = 1048576\nwindow_size = 16\n"
            "[SUBGROUP/TEST]\nnum_shards = 1\nmin_nodes = %d\nmax_nodes = %d\n%s"
            "[LOGGER]\ndefault_log_level = warn\n",
            base_port, node, base_port + node, nodes, nodes, extra ? extra : "");
    fclose(file);
}

typedef struct run_spec {
    int nodes;
    int base_port;
    const char *config_extra;     /* more config lines for every node */
    char *const *args[MAX_NODES]; /* per-node extra arguments (NULL-terminated lists) */
} run_spec;

/* Starts the nodes (leader first), waits, and checks they all delivered the same. */
static void run_group(const run_spec *spec, uint64_t expected_delivered) {
    child children[MAX_NODES];
    int base_port = procs_free_port_base(spec->base_port, spec->nodes);
    for (int i = 0; i < spec->nodes; i++) {
        char path[512];
        write_node_config(i, spec->nodes, base_port, spec->config_extra, path, sizeof path);
        spawn_node(&children[i], path, spec->args[i]);
        if (i == 0 && !procs_wait_listening(base_port, 10000)) /* joiners come once it listens */
            fail_msg("the leader does not listen on %d", base_port);
    }
    wait_all_done(children, spec->nodes, WAIT_SECONDS);
    char first_hash[64] = "";
    for (int i = 0; i < spec->nodes; i++) {
        const char *line = children[i].output;
        uint64_t delivered = 0, bad = 0;
        char hash[64] = "";
        int node = -1;
        if (sscanf(line, "DONE node=%d delivered=%" SCNu64 " hash=%63s bad=%" SCNu64, &node,
                   &delivered, hash, &bad) != 4) {
            finish_all(children, spec->nodes);
            fail_msg("node %d did not finish: '%s'", i, line);
        }
        assert_int_equal(node, i);
        assert_int_equal(delivered, expected_delivered);
        assert_int_equal(bad, 0);
        if (i == 0)
            snprintf(first_hash, sizeof first_hash, "%s", hash);
        else
            assert_string_equal(hash, first_hash);
    }
    assert_int_equal(finish_all(children, spec->nodes), spec->nodes);
}

static void test_three_nodes_all_send_mixed_sizes(void **state) {
    (void)state;
    static char *args[] = {"--messages",       "300", "--size", "10000", "--mixed",
                           "--expect-senders", "3",   NULL};
    run_spec spec = {.nodes = 3, .base_port = 21100, .args = {args, args, args}};
    run_group(&spec, 900);
}

static void test_four_nodes_all_send(void **state) {
    (void)state;
    static char *args[] = {"--messages", "500", "--size", "1024", "--expect-senders", "4", NULL};
    run_spec spec = {.nodes = 4, .base_port = 21200, .args = {args, args, args, args}};
    run_group(&spec, 2000);
}

static void test_silent_senders_do_not_stall(void **state) {
    (void)state;
    static char *sender[] = {"--messages", "400", "--size", "512", "--expect-senders", "1", NULL};
    static char *silent[] = {"--messages",       "400", "--size",   "512",
                             "--expect-senders", "1",   "--silent", NULL};
    run_spec spec = {.nodes = 3, .base_port = 21300, .args = {silent, sender, silent}};
    run_group(&spec, 400);
}

static void test_fifty_megabyte_messages_intact(void **state) {
    (void)state;
    static char *sender[] = {"--messages",       "2", "--size", "52428800",
                             "--expect-senders", "1", NULL};
    static char *silent[] = {"--messages",       "2", "--size",   "52428800",
                             "--expect-senders", "1", "--silent", NULL};
    run_spec spec = {.nodes = 3,
                     .base_port = 21400,
                     .config_extra = "max_payload_size = 60000000\nwindow_size = 2\n",
                     .args = {sender, silent, silent}};
    run_group(&spec, 2);
}

/* Four members: with the binomial schedule the member at position 1 relays every block to
 * position 3, forwarding the received frame itself (shared, not copied: docs/protocol.md). The
 * sender writes each message into a send buffer the group takes (dr_group_send_buffer). */
static void test_relayed_blocks_intact(void **state) {
    (void)state;
    static char *sender[] = {"--messages",       "20", "--size",      "3000000",
                             "--expect-senders", "1",  "--zero-copy", NULL};
    static char *silent[] = {"--messages",       "20", "--size",   "3000000",
                             "--expect-senders", "1",  "--silent", NULL};
    run_spec spec = {.nodes = 4,
                     .base_port = 21600,
                     .config_extra = "max_payload_size = 4000000\nwindow_size = 4\n",
                     .args = {sender, silent, silent, silent}};
    run_group(&spec, 20);
}

static void test_raw_mode_delivers_everything(void **state) {
    (void)state;
    static char *args[] = {"--messages",       "300", "--size", "2000", "--mixed", "--raw",
                           "--expect-senders", "3",   NULL};
    run_spec spec = {.nodes = 3, .base_port = 21500, .args = {args, args, args}};
    run_group(&spec, 900);
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
        cmocka_unit_test_teardown(test_three_nodes_all_send_mixed_sizes, kill_leftover_children),
        cmocka_unit_test_teardown(test_four_nodes_all_send, kill_leftover_children),
        cmocka_unit_test_teardown(test_silent_senders_do_not_stall, kill_leftover_children),
        cmocka_unit_test_teardown(test_fifty_megabyte_messages_intact, kill_leftover_children),
        cmocka_unit_test_teardown(test_relayed_blocks_intact, kill_leftover_children),
        cmocka_unit_test_teardown(test_raw_mode_delivers_everything, kill_leftover_children),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
