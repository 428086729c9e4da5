/*
 * The runtime's durable module on its own (src/runtime/durable.c, docs/persistence.md
 * "Checkpoints" and "Replay"): one durable shard, deliveries appended, the frontier set by hand,
 * then checkpoints, restarts, truncations, discards and replays checked record by record. No group,
 * no network: the module is driven as the runtime drives it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "derecho/config.h"
#include "derecho/log.h"
#include "persist/blob.h"
#include "runtime/durable.h"

#include <unistd.h>

static char test_dir[] = "/tmp/dr_durable_log_XXXXXX";
static char log_dir[sizeof test_dir + 16];

enum { RECORDS = 10 };

static void no_report(void *ctx, uint32_t subgroup, int64_t version, bool failed) {
    (void)ctx, (void)subgroup, (void)version, (void)failed;
}

/** Starts the module on log_dir (one type, durable by [SUBGROUP/DEFAULT]). */
static void start(durable *d) {
    char ini[512];
    snprintf(
        ini, sizeof ini,
        "[DERECHO]\nlocal_id = 0\n[PERS]\nfile_path = %s\n[SUBGROUP/DEFAULT]\ndurable = true\n",
        log_dir);
    dr_config *config = NULL;
    dr_err err = {0};
    if (dr_config_load_string(ini, "test", NULL, 0, &config, &err) != 0)
        fail_msg("config: %s", err.msg);
    dr_layout_spec spec = {.num_types = 1};
    snprintf(spec.types[0].name, sizeof spec.types[0].name, "KV");
    spec.types[0].num_subgroups = 1;
    assert_int_equal(durable_start(d, config, &spec, 1u << 20, no_report, NULL, &err), 0);
    dr_config_free(config);
}

/** Installs view `vid` with node 0 alone in the one ordered shard (opens the log). */
static void install(durable *d, int32_t vid) {
    static dr_view_info info; /* large: not on the stack */
    memset(&info, 0, sizeof info);
    info.view.vid = vid;
    info.view.num_members = 1;
    snprintf(info.view.addresses[0], sizeof info.view.addresses[0], "127.0.0.1:1");
    info.layout.adequate = true;
    info.layout.num_subgroups = 1;
    info.layout.num_assigned = 1;
    dr_subgroup_layout *sg = &info.layout.subgroups[0];
    sg->num_shards = 1;
    sg->shards[0] = (dr_shard_layout){.num_members = 1,
                                      .member_ids = {0},
                                      .is_sender = {true},
                                      .num_senders = 1,
                                      .mode = DR_MODE_ORDERED,
                                      .min_nodes = 1,
                                      .max_nodes = 1};
    assert_int_equal(durable_on_view(d, &info, 0), 0);
}

/** Appends versions first..first+count-1 (payload: the version as text) and waits for them. */
static void deliver(durable *d, int64_t first, int count) {
    for (int i = 0; i < count; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "v%lld", (long long)(first + i));
        assert_int_equal(
            durable_on_deliver(d, 0, first + i, 1000 + (uint64_t)i, (uint8_t *)text, (size_t)len),
            0);
    }
    assert_int_equal(durable_wait(d, 0, first + count - 1, false, 10000), 0);
}

/** A started log in view 0 holding versions 0..RECORDS-1, globally persisted up to 5. */
static void start_with_records(durable *d) {
    start(d);
    install(d, 0);
    deliver(d, 0, RECORDS);
    durable_set_global(d, 0, 5);
}

/** What a replay handed over: the base (if any) and the versions of the records, in order. */
typedef struct replayed {
    bool base;
    int64_t base_version;
    char base_bytes[32];
    int64_t versions[64];
    int count;
} replayed;

static int collect(void *ctx, const dr_message *message, bool base) {
    replayed *r = ctx;
    if (base) {
        assert_int_equal(r->count, 0); /* the base comes first */
        r->base = true;
        r->base_version = message->version;
        snprintf(r->base_bytes, sizeof r->base_bytes, "%.*s", (int)message->len, message->bytes);
        return 0;
    }
    assert_true(r->count < 64);
    r->versions[r->count++] = message->version;
    return 0;
}

static int64_t records_in_log(durable *d) {
    uint64_t count = 0;
    for (int64_t v = 0; v < (int64_t)RECORDS * 2; v++) {
        dr_versioned out = {0};
        if (durable_read(d, 0, DR_READ_EXACT, v, &out) == 0)
            count++;
        dr_versioned_clear(&out);
    }
    return (int64_t)count;
}

static int setup(void **state) {
    (void)state;
    if (!mkdtemp(test_dir))
        return -1;
    dr_log_set_level(DR_LOGM_PERSISTENCE, DR_LOG_OFF);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char command[sizeof test_dir + 16];
    snprintf(command, sizeof command, "rm -rf %s", test_dir);
    return system(command) == 0 ? 0 : -1;
}

/* A fresh log directory per test. */
static int fresh_dir(void **state) {
    (void)state;
    static int counter;
    snprintf(log_dir, sizeof log_dir, "%s/t%d", test_dir, counter++);
    return 0;
}

/*
 * A checkpoint needs a globally persisted version, only moves forward, drops the records up to
 * its version (reads say DR_ENOTFOUND) and keeps the rest; a restart's replay hands the
 * checkpoint's state as the base (version = the checkpoint's), then exactly the later records.
 */
static void test_checkpoint_rules_and_replay(void **state) {
    (void)state;
    durable d;
    start_with_records(&d);
    assert_int_equal(durable_checkpoint(&d, 0, 6, (const uint8_t *)"s6", 2), DR_EAGAIN);
    assert_int_equal(durable_checkpoint(&d, 0, 3, (const uint8_t *)"s3", 2), 0);
    assert_int_equal(records_in_log(&d), RECORDS - 4);
    assert_int_equal(durable_checkpoint(&d, 0, 5, (const uint8_t *)"s5", 2), 0);
    assert_int_equal(records_in_log(&d), RECORDS - 6);
    assert_int_equal(durable_checkpoint(&d, 0, 4, (const uint8_t *)"s4", 2), DR_EINVAL); /* back */
    assert_int_equal(durable_checkpoint(&d, 0, -1, (const uint8_t *)"x", 1), DR_EINVAL);
    assert_int_equal(durable_checkpoint(&d, 0, 5, NULL, 3), DR_EINVAL);
    assert_int_equal(durable_checkpoint(&d, 3, 5, (const uint8_t *)"x", 1), DR_ESTATE);
    assert_int_equal(durable_checkpoint(&d, 0, 5, (const uint8_t *)"s5", 2), 0); /* again: fine */
    dr_versioned out = {0};
    assert_int_equal(durable_read(&d, 0, DR_READ_EXACT, 5, &out), DR_ENOTFOUND);
    assert_int_equal(durable_read(&d, 0, DR_READ_EXACT, 6, &out), 0);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.bytes, "v6", 2);
    dr_versioned_clear(&out);
    durable_stop(&d);

    /* the restart: the base, then 6..9 */
    start(&d);
    install(&d, 1);
    replayed r = {0};
    assert_int_equal(durable_replay(&d, 0, 0, INT64_MAX, collect, &r), 0);
    assert_true(r.base);
    assert_int_equal(r.base_version, 5);
    assert_string_equal(r.base_bytes, "s5");
    assert_int_equal(r.count, RECORDS - 6);
    for (int i = 0; i < r.count; i++)
        assert_int_equal(r.versions[i], 6 + i);
    durable_stop(&d);
}

/*
 * A crash between the checkpoint's two steps leaves the new base and the untrimmed log: replay
 * must skip the records the base already holds, and finishes the trim (the log then starts at
 * the base's floor; test_replay_procs' checkpoint case counts on it after a kill -9). (The base
 * is written by hand here, in the format at the top of durable.c.)
 */
static void test_base_without_trim_skips_covered_records(void **state) {
    (void)state;
    durable d;
    start(&d);
    install(&d, 0);
    deliver(&d, 0, RECORDS);
    durable_stop(&d);
    uint8_t base[16 + 2] = {'D', 'R', 'R', 'B', 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 's', '6'};
    dr_err err = {0};
    assert_int_equal(dr_blob_save(log_dir, "KV-0-0.base", base, sizeof base, NULL, &err), 0);
    start(&d);
    install(&d, 1);
    replayed r = {0};
    assert_int_equal(durable_replay(&d, 0, 0, INT64_MAX, collect, &r), 0);
    assert_true(r.base);
    assert_int_equal(r.base_version, 6);
    assert_int_equal(r.count, RECORDS - 7); /* 7, 8, 9 */
    assert_int_equal(r.versions[0], 7);
    assert_int_equal(dr_plog_count(d.logs[0].log), RECORDS - 7); /* 0..6 trimmed */
    replayed again = {0}; /* and a second replay sees the same */
    assert_int_equal(durable_replay(&d, 0, 0, INT64_MAX, collect, &again), 0);
    assert_int_equal(again.count, RECORDS - 7);
    assert_int_equal(again.versions[0], 7);
    durable_stop(&d);
}

/*
 * A joiner's base (floor = its join view << 32) above a restart's trim holds versions the group
 * discarded: the truncation is refused, the log fails (the node leaves) and the base stays for
 * the operator to see. A restart trim of -1 (nothing of the shard survives) drops log and base
 * alike.
 */
static void test_truncation_below_a_base(void **state) {
    (void)state;
    durable d;
    start(&d);
    install(&d, 2);
    const int64_t first = (int64_t)2 << 32;
    deliver(&d, first, 3);
    assert_int_equal(durable_save_base(&d, 0, 2, (const uint8_t *)"joined", 6), 0);
    durable_stop(&d);

    start(&d);
    install(&d, 3);
    assert_int_equal(durable_truncate(&d, 0, ((int64_t)1 << 32) + 40), DR_ESTATE);
    assert_int_equal(durable_wait(&d, 0, first, false, 1000), DR_EIO); /* the log has failed */
    durable_stop(&d);

    start(&d);
    install(&d, 3);
    assert_int_equal(durable_truncate(&d, 0, first + 1), 0); /* above the floor: fine */
    replayed r = {0};
    assert_int_equal(durable_take_replay(&d, 0, &(int64_t){0}), true);
    assert_int_equal(durable_replay(&d, 0, 0, first + 1, collect, &r), 0);
    assert_true(r.base);
    assert_string_equal(r.base_bytes, "joined");
    assert_int_equal(r.count, 2);
    durable_stop(&d);

    start(&d);
    install(&d, 3);
    assert_int_equal(durable_truncate(&d, 0, -1), 0); /* a trim of -1: nothing stays */
    memset(&r, 0, sizeof r);
    assert_int_equal(durable_replay(&d, 0, 0, INT64_MAX, collect, &r), 0);
    assert_false(r.base);
    assert_int_equal(r.count, 0);
    durable_stop(&d);
}

static bool stateless_mark_exists(void) {
    char path[sizeof log_dir + 64];
    snprintf(path, sizeof path, "%s/%s", log_dir, DURABLE_STATELESS_FILE);
    return access(path, F_OK) == 0;
}

/*
 * Giving up a restart to join (DR_ACTION_DISCARD_DURABLE): logs emptied, bases deleted, the
 * saved view kept but marked stateless, so that a power cut before the next view brings the node
 * back as a stateless reporter (dr_core_restart_options.stateless) and not as a member holding
 * its old membership's state. The next saved view removes the mark.
 */
static void test_discard_marks_the_saved_view_stateless(void **state) {
    (void)state;
    durable d;
    start(&d);
    install(&d, 4);
    const int64_t first = (int64_t)4 << 32;
    deliver(&d, first, 3);
    assert_int_equal(durable_save_base(&d, 0, 4, (const uint8_t *)"joined", 6), 0);
    durable_stop(&d);

    start(&d); /* restarting: the saved view and the log's tail */
    dr_core_restart_options restart = {0};
    uint8_t *frame = NULL;
    dr_err err = {0};
    assert_int_equal(durable_restart_inputs(&d, 0, &restart, &frame, &err), 0);
    assert_false(restart.stateless);
    assert_int_equal(restart.tails[0], first + 2);
    free(frame);
    assert_int_equal(durable_discard(&d), 0);
    assert_true(stateless_mark_exists());
    durable_stop(&d);

    start(&d); /* the power cut came before any view: the node comes back stateless */
    memset(&restart, 0, sizeof restart);
    assert_int_equal(durable_restart_inputs(&d, 0, &restart, &frame, &err), 0);
    assert_true(restart.stateless);
    assert_int_equal(restart.tails[0], -1); /* the log is empty */
    free(frame);
    install(&d, 9); /* it joined: its first view is saved, the mark goes */
    assert_false(stateless_mark_exists());
    replayed r = {0};
    assert_int_equal(durable_replay(&d, 0, 0, INT64_MAX, collect, &r), 0);
    assert_false(r.base); /* the base went with the old membership */
    assert_int_equal(r.count, 0);
    durable_stop(&d);

    start(&d);
    memset(&restart, 0, sizeof restart);
    assert_int_equal(durable_restart_inputs(&d, 0, &restart, &frame, &err), 0);
    assert_false(restart.stateless);
    free(frame);
    durable_stop(&d);
}

/*
 * A restart vote (DR_ACTION_SAVE_RESTART_VOTE) is durable: handed back to the next restart as
 * dr_core_restart_options.vote, byte for byte, and deleted once a newer view is saved.
 */
static void test_restart_vote_survives_until_the_next_view(void **state) {
    (void)state;
    durable d;
    start(&d);
    install(&d, 2);
    deliver(&d, (int64_t)2 << 32, 2);
    durable_stop(&d);

    start(&d);
    dr_core_restart_options restart = {0};
    uint8_t *frame = NULL;
    dr_err err = {0};
    assert_int_equal(durable_restart_inputs(&d, 0, &restart, &frame, &err), 0);
    assert_null(restart.vote); /* none saved yet */
    free(frame);
    const uint8_t vote[] = {'v', 'o', 't', 'e', 7};
    assert_int_equal(durable_save_vote(&d, vote, sizeof vote), 0);
    durable_stop(&d); /* the power fails during the restart */

    start(&d);
    memset(&restart, 0, sizeof restart);
    assert_int_equal(durable_restart_inputs(&d, 0, &restart, &frame, &err), 0);
    assert_int_equal(restart.vote_len, sizeof vote);
    assert_memory_equal(restart.vote, vote, sizeof vote);
    free(frame);
    install(&d, 3); /* the restart view: the vote is for an older view now */
    durable_stop(&d);

    start(&d);
    memset(&restart, 0, sizeof restart);
    assert_int_equal(durable_restart_inputs(&d, 0, &restart, &frame, &err), 0);
    assert_null(restart.vote);
    free(frame);
    durable_stop(&d);
}

/*
 * Bad input on disk: a base file that is checksummed but not a replay base (wrong magic) is
 * refused with DR_ECORRUPT by replay and by a checkpoint, and the log itself stays usable.
 */
static void test_foreign_base_file_is_refused(void **state) {
    (void)state;
    durable d;
    start_with_records(&d);
    uint8_t junk[16 + 2] = {'J', 'U', 'N', 'K', 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 'x', 'y'};
    dr_err err = {0};
    assert_int_equal(dr_blob_save(log_dir, "KV-0-0.base", junk, sizeof junk, NULL, &err), 0);
    assert_int_equal(durable_checkpoint(&d, 0, 5, (const uint8_t *)"s5", 2), DR_ECORRUPT);
    replayed r = {0};
    assert_int_equal(durable_replay(&d, 0, 0, INT64_MAX, collect, &r), DR_ECORRUPT);
    assert_false(r.base);
    assert_int_equal(records_in_log(&d), RECORDS); /* nothing trimmed, all readable */
    durable_stop(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_checkpoint_rules_and_replay, fresh_dir),
        cmocka_unit_test_setup(test_base_without_trim_skips_covered_records, fresh_dir),
        cmocka_unit_test_setup(test_truncation_below_a_base, fresh_dir),
        cmocka_unit_test_setup(test_discard_marks_the_saved_view_stateless, fresh_dir),
        cmocka_unit_test_setup(test_restart_vote_survives_until_the_next_view, fresh_dir),
        cmocka_unit_test_setup(test_foreign_base_file_is_refused, fresh_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
