/*
 * Multi-process tests of replicated objects over TCP on 127.0.0.1 (ports 25100..): three
 * kv_node members and one outside client issue puts concurrently; every caller must see one OK
 * reply per member for each put, every replica must end with the same digest and count, p2p
 * calls must reach the chosen replica, and the error paths (oversized arguments, unknown methods,
 * unknown nodes, replies over the limits) must fail cleanly while the group keeps working.
 * A second case kills a member while a client waits on it: the call ends DR_EREMOVED.
 * An ordered call whose member is paused past the failure timeout ends DR_EREMOVED for it.
 * State transfer: a node joining a running group, and a replacement joining after a kill -9,
 * receive the replicated map and end with the same digest as every other replica; a joiner
 * whose transfer fails (serialize fails, the state is over its limit, the source is killed -9
 * before its first chunk or between two chunks) restores nothing and leaves, and the members go
 * on without it.
 * No fixed pauses: joiners start once the leader listens, the kill waits for the victim's
 * IN_SLEEP lines, the replacement for the survivors' MEMBERS line. Ports 25100-25999 (CTest
 * lock ports_25000, shared with test_rpc_node; +500 / +250 when one is taken).
 */
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

#include "runtime/node_procs.h"

enum { MAX_PROCS = 8, WAIT_SECONDS = 90 };

static char test_dir[] = "/tmp/dr_rpc_procs_XXXXXX";

/* Node `node`'s config file with the shard's size limits and the subgroup's max_payload_size
 * (kv_node's --fill needs more than 512 KiB). */
static void write_config_payload(int node, int min_nodes, int max_nodes, int base_port,
                                 int max_payload, char *path, size_t path_len) {
    snprintf(path, path_len, "%s/node%d.cfg", test_dir, node);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fprintf(file,
            "[DERECHO]\ncontact_ip = 127.0.0.1\ncontact_port = %d\nlocal_id = %d\n"
            "local_ip = 127.0.0.1\ngms_port = %d\nheartbeat_ms = 100\np2p_window_size = 4\n"
            "max_p2p_request_payload_size = 10240\nmax_p2p_reply_payload_size = 10240\n"
            "[SUBGROUP/DEFAULT]\nmax_payload_size = %d\nmax_smc_payload_size = 10240\n"
            "max_reply_payload_size = 4096\nblock_size = 1048576\nwindow_size = 16\n"
            "[SUBGROUP/KV]\nnum_shards = 1\nmin_nodes = %d\nmax_nodes = %d\n"
            "[LOGGER]\ndefault_log_level = error\n",
            base_port, node, base_port + node, max_payload, min_nodes, max_nodes);
    fclose(file);
}

static void write_config_sized(int node, int min_nodes, int max_nodes, int base_port, char *path,
                               size_t path_len) {
    write_config_payload(node, min_nodes, max_nodes, base_port, 10240, path, path_len);
}

static void write_config(int node, int nodes, int base_port, char *path, size_t path_len) {
    write_config_sized(node, nodes, nodes, base_port, path, path_len);
}

/* Reads one line (without the newline) within the deadline; returns false on timeout/EOF. */
static bool read_line(child *c, char *line, size_t cap, time_t deadline) {
    size_t len = 0;
    while (len + 1 < cap && time(NULL) < deadline) {
        struct pollfd pfd = {.fd = c->stdout_fd, .events = POLLIN};
        if (poll(&pfd, 1, 500) <= 0)
            continue;
        ssize_t n = read(c->stdout_fd, line + len, 1);
        if (n <= 0)
            break;
        if (line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    return len > 0;
}

/* Spawns node i's kv_node; node 0 (the leader) must listen before the others start. */
static void spawn_member(child *c, int i, int base_port, char *const *args) {
    spawn_test_program(c, "kv_node", NULL, args);
    if (i == 0 && !procs_wait_listening(base_port, 10000))
        fail_msg("the leader does not listen on %d", base_port);
}

static void start_members(child *members, int nodes, int base_port, const char *puts,
                          const char *victim) {
    for (int i = 0; i < nodes; i++) {
        char path[512];
        write_config(i, nodes, base_port, path, sizeof path);
        char *args[] = {path,           "--puts", (char *)puts, victim ? "--victim" : NULL,
                        (char *)victim, NULL};
        spawn_member(&members[i], i, base_port, args);
    }
}

static void test_kv_replicas_agree(void **state) {
    (void)state;
    enum { NODES = 3, MEMBER_PUTS = 500, CLIENT_PUTS = 300 };
    int PORT = procs_free_port_base(25100, NODES);
    child procs[NODES + 1];
    start_members(procs, NODES, PORT, "500", NULL);
    char port[16];
    snprintf(port, sizeof port, "%d", PORT);
    char *client_args[] = {"--client", port, "--puts", "300", "--members", "3", NULL};
    spawn_test_program(&procs[NODES], "kv_node", NULL, client_args);
    time_t deadline = time(NULL) + WAIT_SECONDS;
    char line[256];
    for (int i = 0; i < NODES; i++) {
        int node = -1, bad = -1;
        unsigned ok = 0;
        bool got = read_line(&procs[i], line, sizeof line, deadline);
        if (!got || sscanf(line, "DONE node=%d ok=%u bad=%d", &node, &ok, &bad) != 3) {
            finish_all(procs, NODES + 1);
            fail_msg("member %d: '%s'", i, line);
        }
        assert_int_equal(node, i);
        assert_int_equal(ok, MEMBER_PUTS); /* one OK reply per member, for every put */
        assert_int_equal(bad, 0);
    }
    unsigned ok = 0;
    int bad = -1;
    if (!read_line(&procs[NODES], line, sizeof line, deadline) ||
        sscanf(line, "PUTS ok=%u bad=%d", &ok, &bad) != 2) {
        finish_all(procs, NODES + 1);
        fail_msg("client: '%s'", line);
    }
    assert_int_equal(ok, CLIENT_PUTS);
    assert_int_equal(bad, 0);
    char command[64];
    int len = snprintf(command, sizeof command, "check %d\n", NODES * MEMBER_PUTS + CLIENT_PUTS);
    assert_int_equal(write(procs[NODES].stdin_fd, command, (size_t)len), len);
    int equal = 0;
    uint64_t count = 0;
    if (!read_line(&procs[NODES], line, sizeof line, deadline) ||
        sscanf(line, "CHECK equal=%d count=%" SCNu64 " bad=%d", &equal, &count, &bad) != 3) {
        finish_all(procs, NODES + 1);
        fail_msg("client check: '%s'", line);
    }
    printf("client: %s\n", line);
    assert_int_equal(equal, 1);
    assert_int_equal(count, NODES * MEMBER_PUTS + CLIENT_PUTS);
    assert_int_equal(bad, 0);
    assert_int_equal(finish_all(procs, NODES + 1), NODES + 1);
}

/* A member dies while an outside client and another member wait on p2p calls to it: both calls
 * end DR_EREMOVED and both callers go on with the other members. */
static void test_client_call_to_failed_member(void **state) {
    (void)state;
    enum { NODES = 3, VICTIM = 2 };
    int PORT = procs_free_port_base(25200, NODES);
    child procs[NODES + 1];
    start_members(procs, NODES, PORT, "0", "2");
    char port[16];
    snprintf(port, sizeof port, "%d", PORT);
    char *client_args[] = {"--client", port, "--victim", "2", "--members", "3", NULL};
    spawn_test_program(&procs[NODES], "kv_node", NULL, client_args);
    time_t deadline = time(NULL) + WAIT_SECONDS;
    char line[256];
    for (int i = 0; i < NODES; i++) /* the victim's DONE may follow its IN_SLEEP lines */
        if (i != VICTIM)
            assert_true(read_line(&procs[i], line, sizeof line, deadline));
    if (!read_line(&procs[NODES], line, sizeof line, deadline) || strcmp(line, "CALLING") != 0 ||
        !read_line(&procs[0], line, sizeof line, deadline) || strcmp(line, "CALLING") != 0) {
        finish_all(procs, NODES + 1);
        fail_msg("client or member 0: '%s'", line);
    }
    /* both sleep calls (the client's, member 0's) are running at the victim: kill it now */
    for (int call = 0; call < 2; call++)
        if (!procs_wait_line(&procs[VICTIM], "IN_SLEEP", line, sizeof line, WAIT_SECONDS)) {
            finish_all(procs, NODES + 1);
            fail_msg("the victim did not start sleep call %d: '%s'", call + 1,
                     procs[VICTIM].output);
        }
    kill(procs[VICTIM].pid, SIGKILL);
    int rc = 0, bad = -1;
    if (!read_line(&procs[NODES], line, sizeof line, deadline) ||
        sscanf(line, "REMOVED rc=%d bad=%d", &rc, &bad) != 2) {
        finish_all(procs, NODES + 1);
        fail_msg("client: '%s'", line);
    }
    assert_int_equal(rc, -13); /* DR_EREMOVED */
    assert_int_equal(bad, 0);
    if (!read_line(&procs[0], line, sizeof line, deadline) ||
        sscanf(line, "REMOVED rc=%d bad=%d", &rc, &bad) != 2) {
        finish_all(procs, NODES + 1);
        fail_msg("member 0: '%s'", line);
    }
    assert_int_equal(rc, -13);
    assert_int_equal(bad, 0);
    assert_int_equal(finish_all(procs, NODES + 1), NODES); /* all but the victim exit cleanly */
}

/* A member paused (SIGSTOP) while an ordered call waits for its reply: the others answered;
 * the group excludes it by heartbeat timeout (its connection stays open) and the view change
 * resolves its entry DR_EREMOVED. */
static void test_ordered_call_to_paused_member(void **state) {
    (void)state;
    enum { NODES = 3, VICTIM = 2 };
    int PORT = procs_free_port_base(25600, NODES);
    child procs[NODES];
    for (int i = 0; i < NODES; i++) {
        char path[512];
        write_config_sized(i, 2, NODES, PORT, path, sizeof path); /* 2 survivors suffice */
        char *args[] = {path, "--puts",          "20", "--victim-ordered",
                        "2",  "--start-members", "3",  NULL};
        spawn_member(&procs[i], i, PORT, args);
    }
    time_t deadline = time(NULL) + WAIT_SECONDS;
    char line[256];
    for (int i = 0; i < NODES; i++)
        if (!read_line(&procs[i], line, sizeof line, deadline) || strncmp(line, "DONE", 4) != 0) {
            finish_all(procs, NODES);
            fail_msg("member %d: '%s'", i, line);
        }
    assert_int_equal(write(procs[0].stdin_fd, "go\n", 3), 3); /* every member is idle now */
    if (!read_line(&procs[0], line, sizeof line, deadline) ||
        strcmp(line, "CALLING_ORDERED") != 0) {
        finish_all(procs, NODES);
        fail_msg("member 0: '%s'", line);
    }
    kill(procs[VICTIM].pid, SIGSTOP);
    int status = 0, bad = -1;
    bool got = read_line(&procs[0], line, sizeof line, deadline);
    kill(procs[VICTIM].pid, SIGCONT);
    if (!got || sscanf(line, "ORDERED_REMOVED status=%d bad=%d", &status, &bad) != 2) {
        kill(procs[VICTIM].pid, SIGKILL);
        finish_all(procs, NODES);
        fail_msg("member 0: '%s'", line);
    }
    printf("member 0: %s\n", line);
    assert_int_equal(status, -13); /* DR_EREMOVED */
    assert_int_equal(bad, 0);
    kill(procs[VICTIM].pid, SIGKILL);
    assert_true(finish_all(procs, NODES) >= NODES - 1);
}

/*
 * State transfer: `members` nodes make puts; optionally one of them is killed; then a new node
 * joins and must receive the map (kv_node's serialize/restore) before it applies anything of
 * its first view: after its own puts every replica holds the same count and digest.
 */
static void run_join(int requested_port, int members, int victim, bool restart_victim) {
    int port = procs_free_port_base(requested_port, members + 1);
    enum { PUTS = 200, JOINER_PUTS = 50 };
    child procs[MAX_PROCS];
    int joiner = restart_victim ? victim : members; /* its node id (and config) */
    int joiner_slot = members;
    for (int i = 0; i < members; i++) {
        char path[512];
        write_config_sized(i, 2, 3, port, path, sizeof path);
        char start[16];
        snprintf(start, sizeof start, "%d", members);
        char *args[] = {path, "--puts", "200", "--start-members", start, NULL};
        spawn_member(&procs[i], i, port, args);
    }
    time_t deadline = time(NULL) + WAIT_SECONDS;
    char line[256];
    for (int i = 0; i < members; i++) {
        unsigned ok = 0;
        int node = -1, bad = -1;
        if (!read_line(&procs[i], line, sizeof line, deadline) ||
            sscanf(line, "DONE node=%d ok=%u bad=%d", &node, &ok, &bad) != 3 || ok != PUTS ||
            bad != 0) {
            finish_all(procs, members);
            fail_msg("member %d: '%s'", i, line);
        }
    }
    if (victim >= 0 && restart_victim) {
        /* the same id and address at once, while its old incarnation is still in the view */
        kill(procs[victim].pid, SIGKILL);
    } else if (victim >= 0) {
        kill(procs[victim].pid, SIGKILL);
        /* the survivors install the view without it: ask a survivor to say so */
        int survivor = victim == 0 ? 1 : 0;
        char command[32];
        int len = snprintf(command, sizeof command, "wait-members %d\n", members - 1);
        assert_int_equal(write(procs[survivor].stdin_fd, command, (size_t)len), len);
        int n = -1, vid = -1;
        if (!read_line(&procs[survivor], line, sizeof line, deadline) ||
            sscanf(line, "MEMBERS n=%d vid=%d", &n, &vid) != 2 || n != members - 1) {
            finish_all(procs, members);
            fail_msg("survivor %d: '%s'", survivor, line);
        }
        printf("survivor %d: %s\n", survivor, line);
    }
    char path[512];
    write_config_sized(joiner, 2, 3, port, path, sizeof path);
    char *args[] = {path, "--join", "--puts", "50", NULL};
    spawn_test_program(&procs[joiner_slot], "kv_node", NULL, args);
    unsigned long long restored = 0, count = 0;
    double ms = 0;
    int node = -1, equal = 0, bad = -1;
    if (!read_line(&procs[joiner_slot], line, sizeof line, deadline) ||
        sscanf(line, "JOINED node=%d restored=%llu ms=%lf equal=%d count=%llu bad=%d", &node,
               &restored, &ms, &equal, &count, &bad) != 6) {
        finish_all(procs, members + 1);
        fail_msg("joiner: '%s'", line);
    }
    printf("joiner: %s\n", line);
    assert_int_equal(node, joiner);
    assert_true(restored > 0);
    assert_int_equal(equal, 1); /* every replica, the joiner included, holds the same map */
    assert_int_equal(count, (unsigned long long)(members * PUTS + JOINER_PUTS));
    assert_int_equal(bad, 0);
    int clean = finish_all(procs, members + 1);
    assert_true(clean >= (victim >= 0 ? members : members + 1));
}

static void test_joiner_receives_state(void **state) {
    (void)state;
    run_join(25300, 2, -1, false);
}

/* kill -9 of a replica, then a replacement with a new id joins and receives the state */
static void test_replacement_receives_state(void **state) {
    (void)state;
    run_join(25400, 3, 2, false);
}

/*
 * Issue 11 item 8 on real processes: kill -9 of a replica and, at once, the same node (same id,
 * same address, no state) started again. Its old incarnation is still in the view: the
 * restarted process is refused for now (DR_EAGAIN, it retries) and joins as a new member once
 * the old one is removed, receiving the state like any joiner (never its old row).
 */
static void test_restarted_replica_rejoins_with_state(void **state) {
    (void)state;
    run_join(25850, 3, 2, true);
}

/* FAIL_SOURCE_DIES_MID_TRANSFER: node 0 fills the map with this many bytes of 512 KiB values,
 * so the state takes 4 chunks of 1 MiB (node.c's STATE_CHUNK_BYTES); max_payload_size must
 * exceed a value. */
enum { MID_TRANSFER_FILL = 3 << 20, MID_TRANSFER_PAYLOAD = 1 << 20 };

/*
 * FAIL_SOURCE_DIES_MID_TRANSFER: the source (node 0, --stall-mid-transfer) reports that it
 * handed the first chunk to the transport and sends no more; once the joiner (procs[joiner],
 * --print-chunks) reports storing exactly that chunk, of a larger total, the source is killed
 * -9: between two chunks of the state, whatever the machine's speed.
 */
static void kill_source_after_first_chunk(child *procs, int joiner, time_t deadline) {
    char line[256];
    unsigned long long sent = 0, sent_total = 0, received = 0, total = 0;
    int source = -1, target = -1, from = -1;
    if (!read_line(&procs[0], line, sizeof line, deadline) ||
        sscanf(line, "STATE_CHUNK_SENT node=%d to=%d bytes=%llu total=%llu", &source, &target,
               &sent, &sent_total) != 4) {
        finish_all(procs, joiner + 1);
        fail_msg("source: '%s'", line);
    }
    printf("source: %s\n", line);
    if (!read_line(&procs[joiner], line, sizeof line, deadline) ||
        sscanf(line, "STATE_CHUNK_RECEIVED from=%d bytes=%llu total=%llu", &from, &received,
               &total) != 3) {
        finish_all(procs, joiner + 1);
        fail_msg("joiner: '%s'", line);
    }
    printf("joiner: %s\n", line);
    kill(procs[0].pid, SIGKILL);
    assert_int_equal(source, 0);
    assert_int_equal(target, joiner);
    assert_int_equal(from, 0);
    assert_int_equal(total, sent_total);
    assert_true(total > MID_TRANSFER_FILL); /* the filled map and the puts */
    assert_int_equal(sent, 1u << 20);       /* one full chunk sent... */
    assert_int_equal(received, sent);       /* ...and stored, */
    assert_true(received < total);          /* fewer bytes than the state */
}

/* How a state transfer is made to fail (run_failed_join). */
typedef enum join_failure {
    FAIL_SERIALIZE,   /* the members' serialize fails (--fail-serialize) */
    FAIL_OVER_LIMIT,  /* the state (about 13 KB) is over the joiner's limit of 1000 bytes */
    FAIL_SOURCE_DIES, /* the source is killed -9 while the joiner waits (--stall-serialize) */
    FAIL_SOURCE_DIES_MID_TRANSFER, /* killed -9 between two chunks (--stall-mid-transfer) */
} join_failure;

/*
 * A state transfer that must fail: the members make puts; one more node joins and cannot get
 * the state (see join_failure). The joiner must not restore anything and must leave (its group
 * stops with DR_ECLOSED: "it cannot serve it and leaves"); the two remaining members must
 * install a view of the two of them after the one the joiner joined in, and still answer.
 * When the source dies, there are three members (the shard takes up to four): every one would
 * stall in serialize, and the joiner's source (the lowest-ranked member, node 0) is killed as
 * soon as it says it is serializing; the joiner gives up on that state (DR_EREMOVED once the
 * source's connection is down or a view drops it). Mid transfer, the source stops itself after
 * handing the first of the state's 4 chunks to the transport and says so; the joiner says which
 * chunks it stored; the source is killed once the joiner reports the first one, and the joiner's
 * next line must be its NO_STATE: it received one chunk, not all.
 */
static void run_failed_join(int requested_port, join_failure how) {
    const bool source_dies = how == FAIL_SOURCE_DIES || how == FAIL_SOURCE_DIES_MID_TRANSFER;
    const int members = source_dies ? 3 : 2;
    const int max_payload = how == FAIL_SOURCE_DIES_MID_TRANSFER ? MID_TRANSFER_PAYLOAD : 10240;
    int port = procs_free_port_base(requested_port, members + 1);
    child procs[MAX_PROCS];
    char start_members[8], fill[24];
    snprintf(start_members, sizeof start_members, "%d", members);
    snprintf(fill, sizeof fill, "%d", MID_TRANSFER_FILL);
    const char *member_flag = how == FAIL_SERIALIZE                  ? "--fail-serialize"
                              : how == FAIL_SOURCE_DIES              ? "--stall-serialize"
                              : how == FAIL_SOURCE_DIES_MID_TRANSFER ? "--stall-mid-transfer"
                                                                     : NULL;
    for (int i = 0; i < members; i++) {
        char path[512];
        write_config_payload(i, 2, members + 1, port, max_payload, path, sizeof path);
        bool fills = how == FAIL_SOURCE_DIES_MID_TRANSFER && i == 0;
        char *args[] = {path,
                        "--puts",
                        "200",
                        "--start-members",
                        start_members,
                        (char *)member_flag,
                        fills ? "--fill" : NULL,
                        fill,
                        NULL};
        spawn_member(&procs[i], i, port, args);
    }
    time_t deadline = time(NULL) + WAIT_SECONDS;
    char line[256];
    for (int i = 0; i < members; i++)
        if (!read_line(&procs[i], line, sizeof line, deadline) || strncmp(line, "DONE", 4) != 0 ||
            !strstr(line, "bad=0")) {
            finish_all(procs, members);
            fail_msg("member %d: '%s'", i, line);
        }
    char path[512];
    write_config_payload(members, 2, members + 1, port, max_payload, path, sizeof path);
    char *args[] = {path, "--join", "--expect-no-state",
                    how == FAIL_OVER_LIMIT ? "--DERECHO/max_state_transfer_size=1000"
                    : how == FAIL_SOURCE_DIES_MID_TRANSFER ? "--print-chunks"
                                                           : NULL,
                    NULL};
    spawn_test_program(&procs[members], "kv_node", NULL, args);
    if (how == FAIL_SOURCE_DIES_MID_TRANSFER)
        kill_source_after_first_chunk(procs, members, deadline);
    if (how == FAIL_SOURCE_DIES) {
        if (!read_line(&procs[0], line, sizeof line, deadline) ||
            strcmp(line, "SERIALIZING node=0") != 0) {
            finish_all(procs, members + 1);
            fail_msg("source: '%s'", line);
        }
        kill(procs[0].pid, SIGKILL);
    }
    int node = -1, rc = 0, restored = -1, joined_vid = -1;
    if (!read_line(&procs[members], line, sizeof line, deadline) ||
        sscanf(line, "NO_STATE node=%d rc=%d restored=%d vid=%d", &node, &rc, &restored,
               &joined_vid) != 4) {
        finish_all(procs, members + 1);
        fail_msg("joiner: '%s'", line);
    }
    printf("joiner: %s\n", line);
    assert_int_equal(node, members);
    assert_int_equal(restored, 0);
    assert_int_equal(rc, -8); /* DR_ECLOSED: it left */
    /* the members install a view without it, after the one it joined in */
    int reporter = source_dies ? 1 : 0;
    char command[48];
    int len = snprintf(command, sizeof command, "wait-members 2 %d\n", joined_vid + 1);
    assert_int_equal(write(procs[reporter].stdin_fd, command, (size_t)len), len);
    int n = -1, vid = -1;
    if (!read_line(&procs[reporter], line, sizeof line, deadline) ||
        sscanf(line, "MEMBERS n=%d vid=%d", &n, &vid) != 2 || n != 2) {
        finish_all(procs, members + 1);
        fail_msg("member %d: '%s'", reporter, line);
    }
    printf("member %d: %s\n", reporter, line);
    assert_true(vid > joined_vid);
    /* every process exits cleanly but a killed source */
    int killed = source_dies ? 1 : 0;
    assert_int_equal(finish_all(procs, members + 1), members + 1 - killed);
}

static void test_joiner_without_state_when_serialize_fails(void **state) {
    (void)state;
    run_failed_join(25700, FAIL_SERIALIZE);
}

static void test_joiner_refuses_state_over_its_limit(void **state) {
    (void)state;
    run_failed_join(25750, FAIL_OVER_LIMIT);
}

static void test_joiner_without_state_when_source_dies(void **state) {
    (void)state;
    run_failed_join(25800, FAIL_SOURCE_DIES);
}

/* The source killed -9 after the joiner stored the first of 4 chunks of the state. */
static void test_joiner_without_state_when_source_dies_mid_transfer(void **state) {
    (void)state;
    run_failed_join(25900, FAIL_SOURCE_DIES_MID_TRANSFER);
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
        cmocka_unit_test_teardown(test_kv_replicas_agree, kill_leftover_children),
        cmocka_unit_test_teardown(test_client_call_to_failed_member, kill_leftover_children),
        cmocka_unit_test_teardown(test_ordered_call_to_paused_member, kill_leftover_children),
        cmocka_unit_test_teardown(test_joiner_receives_state, kill_leftover_children),
        cmocka_unit_test_teardown(test_replacement_receives_state, kill_leftover_children),
        cmocka_unit_test_teardown(test_restarted_replica_rejoins_with_state,
                                  kill_leftover_children),
        cmocka_unit_test_teardown(test_joiner_without_state_when_serialize_fails,
                                  kill_leftover_children),
        cmocka_unit_test_teardown(test_joiner_refuses_state_over_its_limit, kill_leftover_children),
        cmocka_unit_test_teardown(test_joiner_without_state_when_source_dies,
                                  kill_leftover_children),
        cmocka_unit_test_teardown(test_joiner_without_state_when_source_dies_mid_transfer,
                                  kill_leftover_children),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
