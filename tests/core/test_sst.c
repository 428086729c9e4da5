/*
 * Unit tests of the shared state table (src/core/sst.c): row layout and initial values,
 * monotonic writes, apply-by-max, push scopes and batching, predicate evaluation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/sst.h"
#include "core/wire.h"

static dr_view view;
static dr_layout layout;

/** View of 4 members {1,2,3,4}: one subgroup with shards {1,2} and {3,4}. */
static void make_view(void) {
    memset(&view, 0, sizeof view);
    view.vid = 3;
    view.num_members = 4;
    for (uint32_t i = 0; i < 4; i++)
        view.member_ids[i] = i + 1;
    dr_layout_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.num_types = 1;
    spec.types[0].num_subgroups = 1;
    dr_shard_policy_fixed(&spec.types[0].policy, 2, 2, DR_MODE_ORDERED);
    assert_int_equal(dr_layout_compute(&spec, NULL, view.member_ids, 4, &layout, NULL), 0);
    assert_true(layout.adequate);
}

typedef struct captured {
    uint32_t ranks[8];
    dr_msg_sst_push pushes[8];
    uint8_t *frames[8];
    uint32_t count;
} captured;

static void capture(void *ctx, uint32_t rank, const uint8_t *bytes, size_t len) {
    captured *c = ctx;
    assert_true(c->count < 8);
    c->frames[c->count] = malloc(len);
    memcpy(c->frames[c->count], bytes, len);
    dr_wire_header header;
    assert_int_equal(dr_wire_decode_header(bytes, len, &header, NULL), 0);
    assert_int_equal(header.type, DR_MSG_SST_PUSH);
    assert_int_equal(header.vid, 3);
    assert_int_equal(dr_wire_decode_sst_push(c->frames[c->count] + DR_WIRE_HEADER_BYTES,
                                             header.body_len, &c->pushes[c->count], NULL),
                     0);
    c->ranks[c->count++] = rank;
}

static void free_captured(captured *c) {
    for (uint32_t i = 0; i < c->count; i++)
        free(c->frames[i]);
    memset(c, 0, sizeof *c);
}

static void test_layout_and_initial_values(void **state) {
    (void)state;
    make_view();
    dr_sst *sst;
    assert_int_equal(dr_sst_create(&view, &layout, 0, &sst), 0);
    assert_int_equal(dr_sst_num_rows(sst), 4);
    uint32_t seq = dr_sst_subgroup_field(sst, 0, DR_SST_SEQ_NUM);
    uint32_t recv1 = dr_sst_received_field(sst, 0, 1);
    uint32_t trim0 = dr_sst_trim_field(sst, 0, 0);
    uint32_t susp3 = dr_sst_suspected_field(sst, 3);
    assert_true(seq != recv1 && recv1 != trim0 && susp3 < seq);
    assert_true(trim0 < dr_sst_num_fields(sst));
    for (uint32_t row = 0; row < 4; row++) {
        assert_int_equal(dr_sst_get(sst, row, DR_SST_VID), 3);
        assert_int_equal(dr_sst_get(sst, row, seq), -1);
        assert_int_equal(dr_sst_get(sst, row, recv1), -1);
        assert_int_equal(dr_sst_get(sst, row, DR_SST_WEDGED), 0);
        assert_int_equal(dr_sst_get(sst, row, susp3), 0);
        assert_int_equal(dr_sst_get(sst, row, dr_sst_changes_field(sst, 0)), 0);
    }
    assert_true(dr_sst_max_changes(sst) >= 4);
    dr_sst_destroy(sst);
}

static void test_apply_takes_the_maximum(void **state) {
    (void)state;
    make_view();
    dr_sst *sst;
    assert_int_equal(dr_sst_create(&view, &layout, 0, &sst), 0);
    uint32_t seq = dr_sst_subgroup_field(sst, 0, DR_SST_SEQ_NUM);
    assert_int_equal(dr_sst_apply(sst, 1, seq, 10), 1);
    assert_int_equal(dr_sst_apply(sst, 1, seq, 7), 0); /* stale: ignored */
    assert_int_equal(dr_sst_get(sst, 1, seq), 10);
    assert_int_equal(dr_sst_apply(sst, 1, seq, 10), 0);
    assert_int_equal(dr_sst_apply(sst, 1, seq, 11), 1);
    assert_int_equal(dr_sst_apply(sst, 0, seq, 50), DR_EPROTO); /* my own row */
    assert_int_equal(dr_sst_apply(sst, 4, seq, 50), DR_EPROTO); /* no such row */
    assert_int_equal(dr_sst_apply(sst, 1, dr_sst_num_fields(sst), 1), DR_EPROTO);
    assert_int_equal(dr_sst_get(sst, 0, seq), -1);
    dr_sst_destroy(sst);
}

static void test_flush_sends_fields_to_those_who_need_them(void **state) {
    (void)state;
    make_view();
    dr_sst *sst;
    assert_int_equal(dr_sst_create(&view, &layout, 0, &sst), 0); /* I am 1, shard {1,2} */
    captured c = {0};
    assert_int_equal(dr_sst_flush(sst, 1, 3, capture, &c), 0); /* nothing dirty */
    uint32_t seq = dr_sst_subgroup_field(sst, 0, DR_SST_SEQ_NUM);
    dr_sst_set(sst, seq, 5);
    dr_sst_set(sst, seq, 5); /* unchanged: not dirty twice */
    dr_sst_set(sst, seq, 6);
    assert_true(dr_sst_has_dirty(sst));
    assert_int_equal(dr_sst_flush(sst, 1, 3, capture, &c), 1);
    assert_int_equal(c.ranks[0], 1); /* only my shard peer */
    assert_int_equal(c.pushes[0].row, 0);
    assert_int_equal(c.pushes[0].num_entries, 1);
    dr_sst_entry entry;
    dr_wire_sst_entry(&c.pushes[0], 0, &entry);
    assert_int_equal(entry.field, seq);
    assert_true(entry.value == 6);
    assert_false(dr_sst_has_dirty(sst));
    free_captured(&c);
    /* a membership field goes to everyone, batched with the data field for the shard peer */
    dr_sst_set(sst, DR_SST_WEDGED, 1);
    dr_sst_set(sst, seq, 9);
    assert_int_equal(dr_sst_flush(sst, 1, 3, capture, &c), 3);
    for (uint32_t i = 0; i < 3; i++) {
        uint32_t expected_entries = c.ranks[i] == 1 ? 2 : 1;
        assert_int_equal(c.pushes[i].num_entries, expected_entries);
    }
    free_captured(&c);
    dr_sst_destroy(sst);
}

static int counter_a, counter_b;

static bool predicate_a(void *ctx) {
    (void)ctx;
    if (counter_a >= 3)
        return false;
    counter_a++;
    return true;
}

static bool predicate_b(void *ctx) {
    int *limit = ctx;
    if (counter_a < 3 || counter_b >= *limit) /* waits for a: re-evaluated after updates */
        return false;
    counter_b++;
    return true;
}

static void test_predicates_run_to_quiescence(void **state) {
    (void)state;
    make_view();
    dr_sst *sst;
    assert_int_equal(dr_sst_create(&view, &layout, 2, &sst), 0);
    int limit = 2;
    assert_int_equal(dr_sst_add_predicate(sst, predicate_b, &limit), 0);
    assert_int_equal(dr_sst_add_predicate(sst, predicate_a, NULL), 0);
    counter_a = counter_b = 0;
    uint32_t rounds = dr_sst_evaluate(sst);
    assert_int_equal(counter_a, 3);
    assert_int_equal(counter_b, 2);
    assert_true(rounds >= 3);
    assert_int_equal(dr_sst_evaluate(sst), 0); /* nothing left to do */
    dr_sst_destroy(sst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_initial_values),
        cmocka_unit_test(test_apply_takes_the_maximum),
        cmocka_unit_test(test_flush_sends_fields_to_those_who_need_them),
        cmocka_unit_test(test_predicates_run_to_quiescence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
