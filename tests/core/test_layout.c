/* Unit tests of the layout function (src/core/layout.c, include/derecho/layout.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "derecho/layout.h"

static dr_layout layout_a, layout_b;

static void spec_one(dr_layout_spec *spec, const dr_shard_policy *policy) {
    memset(spec, 0, sizeof *spec);
    spec->num_types = 1;
    strcpy(spec->types[0].name, "t");
    spec->types[0].num_subgroups = 1;
    spec->types[0].policy = *policy;
}

static void assert_shard(const dr_layout *layout, uint32_t sg, uint32_t shard, const uint32_t *ids,
                         uint32_t count) {
    const dr_shard_layout *sh = &layout->subgroups[sg].shards[shard];
    assert_int_equal(sh->num_members, count);
    assert_int_equal(sh->num_senders, count);
    for (uint32_t i = 0; i < count; i++)
        assert_int_equal(sh->member_ids[i], ids[i]);
}

static void test_flexible_takes_rank_order_and_leaves_leftovers(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_flexible(&policy, 1, 2, 3, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t members[] = {7, 3, 9, 1, 5};
    assert_int_equal(dr_layout_compute(&spec, NULL, members, 5, &layout_a, NULL), 0);
    assert_true(layout_a.adequate);
    assert_int_equal(layout_a.num_subgroups, 1);
    assert_int_equal(layout_a.num_assigned, 3);
    assert_shard(&layout_a, 0, 0, (uint32_t[]){7, 3, 9}, 3);
    assert_int_equal(dr_layout_find_shard(&layout_a, 0, 1, NULL), -1); /* unassigned */
    uint32_t rank = 99;
    assert_int_equal(dr_layout_find_shard(&layout_a, 0, 9, &rank), 0);
    assert_int_equal(rank, 2);
}

static void test_inadequate_when_minimum_unreachable(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_fixed(&policy, 2, 2, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t members[] = {1, 2, 3};
    assert_int_equal(dr_layout_compute(&spec, NULL, members, 3, &layout_a, NULL), 0);
    assert_false(layout_a.adequate);
    uint32_t four[] = {1, 2, 3, 4};
    assert_int_equal(dr_layout_compute(&spec, NULL, four, 4, &layout_a, NULL), 0);
    assert_true(layout_a.adequate);
    assert_shard(&layout_a, 0, 0, (uint32_t[]){1, 2}, 2);
    assert_shard(&layout_a, 0, 1, (uint32_t[]){3, 4}, 2);
}

static void test_extras_handed_out_round_robin(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_flexible(&policy, 2, 1, 3, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t members[] = {1, 2, 3, 4, 5};
    assert_int_equal(dr_layout_compute(&spec, NULL, members, 5, &layout_a, NULL), 0);
    assert_true(layout_a.adequate);
    /* start at 1+1, then +1 each, then shard 0 gets the last: sizes 3 and 2 */
    assert_shard(&layout_a, 0, 0, (uint32_t[]){1, 2, 3}, 3);
    assert_shard(&layout_a, 0, 1, (uint32_t[]){4, 5}, 2);
    uint32_t eight[] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(dr_layout_compute(&spec, NULL, eight, 8, &layout_a, NULL), 0);
    assert_int_equal(layout_a.num_assigned, 6); /* both at max 3, two unassigned */
}

static void test_custom_per_shard_bounds(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_custom(&policy, 3, (uint32_t[]){1, 2, 1}, (uint32_t[]){1, 4, 2}, DR_MODE_RAW);
    spec_one(&spec, &policy);
    uint32_t members[] = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(dr_layout_compute(&spec, NULL, members, 7, &layout_a, NULL), 0);
    assert_true(layout_a.adequate);
    /* mins 1,2,1 = 4; 3 spare: shard1 +1, shard2 +1, shard1 +1 -> 1, 4, 2 */
    assert_shard(&layout_a, 0, 0, (uint32_t[]){1}, 1);
    assert_shard(&layout_a, 0, 1, (uint32_t[]){2, 3, 4, 5}, 4);
    assert_shard(&layout_a, 0, 2, (uint32_t[]){6, 7}, 2);
    assert_int_equal(layout_a.subgroups[0].shards[1].mode, DR_MODE_RAW);
}

static void test_types_in_fixed_order_are_disjoint(void **state) {
    (void)state;
    dr_layout_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.num_types = 2;
    spec.types[0].num_subgroups = 1;
    dr_shard_policy_fixed(&spec.types[0].policy, 1, 2, DR_MODE_ORDERED);
    spec.types[1].num_subgroups = 2;
    dr_shard_policy_fixed(&spec.types[1].policy, 1, 1, DR_MODE_RAW);
    uint32_t members[] = {40, 30, 20, 10, 99};
    assert_int_equal(dr_layout_compute(&spec, NULL, members, 5, &layout_a, NULL), 0);
    assert_true(layout_a.adequate);
    assert_int_equal(layout_a.num_subgroups, 3);
    assert_shard(&layout_a, 0, 0, (uint32_t[]){40, 30}, 2);
    assert_shard(&layout_a, 1, 0, (uint32_t[]){20}, 1);
    assert_shard(&layout_a, 2, 0, (uint32_t[]){10}, 1);
    assert_int_equal(layout_a.subgroups[2].type_index, 1);
    assert_int_equal(layout_a.subgroups[2].index_in_type, 1);
}

static void test_later_view_keeps_survivors_and_fills_from_unassigned(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_fixed(&policy, 2, 2, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t first[] = {1, 2, 3, 4, 5};
    assert_int_equal(dr_layout_compute(&spec, NULL, first, 5, &layout_a, NULL), 0);
    assert_shard(&layout_a, 0, 0, (uint32_t[]){1, 2}, 2);
    assert_shard(&layout_a, 0, 1, (uint32_t[]){3, 4}, 2);
    /* 2 fails, 6 joins: shard 0 keeps 1 and takes 5 (unassigned before); 3, 4 stay put */
    uint32_t second[] = {1, 3, 4, 5, 6};
    assert_int_equal(dr_layout_compute(&spec, &layout_a, second, 5, &layout_b, NULL), 0);
    assert_true(layout_b.adequate);
    assert_shard(&layout_b, 0, 0, (uint32_t[]){1, 5}, 2);
    assert_shard(&layout_b, 0, 1, (uint32_t[]){3, 4}, 2);
    /* 3 and 4 fail, only 6 left to refill: inadequate */
    uint32_t third[] = {1, 5, 6};
    assert_int_equal(dr_layout_compute(&spec, &layout_b, third, 3, &layout_a, NULL), 0);
    assert_false(layout_a.adequate);
}

/* Who is new in a shard and who hands it the state (state transfer). */
static void test_state_source_and_new_members(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_flexible(&policy, 2, 1, 2, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t first[] = {1, 2, 3, 4};
    assert_int_equal(dr_layout_compute(&spec, NULL, first, 4, &layout_a, NULL), 0);
    assert_shard(&layout_a, 0, 0, (uint32_t[]){1, 2}, 2);
    assert_shard(&layout_a, 0, 1, (uint32_t[]){3, 4}, 2);
    /* no previous layout: nobody is new and there is no source */
    assert_false(dr_layout_is_new_in_shard(NULL, &layout_a, 0, 0, 1));
    assert_int_equal(dr_layout_state_source(NULL, &layout_a, 0, 0), DR_NODE_NONE);
    /* 1 fails, 5 joins and refills shard 0: 5 is new there, 2 (the survivor) is the source */
    uint32_t second[] = {2, 3, 4, 5};
    assert_int_equal(dr_layout_compute(&spec, &layout_a, second, 4, &layout_b, NULL), 0);
    assert_shard(&layout_b, 0, 0, (uint32_t[]){2, 5}, 2);
    assert_true(dr_layout_is_new_in_shard(&layout_a, &layout_b, 0, 0, 5));
    assert_false(dr_layout_is_new_in_shard(&layout_a, &layout_b, 0, 0, 2));
    assert_false(dr_layout_is_new_in_shard(&layout_a, &layout_b, 0, 0, 3)); /* not in it */
    assert_int_equal(dr_layout_state_source(&layout_a, &layout_b, 0, 0), 2);
    /* the other shard is unchanged: nobody new, its first member is its source */
    assert_false(dr_layout_is_new_in_shard(&layout_a, &layout_b, 0, 1, 4));
    assert_int_equal(dr_layout_state_source(&layout_a, &layout_b, 0, 1), 3);
    /* out-of-range subgroups and shards have neither */
    assert_false(dr_layout_is_new_in_shard(&layout_a, &layout_b, 3, 0, 5));
    assert_int_equal(dr_layout_state_source(&layout_a, &layout_b, 0, 7), DR_NODE_NONE);
    /* shard 0 loses all its members: its new members have no source (the state is gone) */
    uint32_t third[] = {3, 4, 6, 7};
    assert_int_equal(dr_layout_compute(&spec, &layout_b, third, 4, &layout_a, NULL), 0);
    assert_shard(&layout_a, 0, 0, (uint32_t[]){6, 7}, 2);
    assert_true(dr_layout_is_new_in_shard(&layout_b, &layout_a, 0, 0, 6));
    assert_int_equal(dr_layout_state_source(&layout_b, &layout_a, 0, 0), DR_NODE_NONE);
}

static void test_bad_specs_and_members_rejected(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_err err;
    uint32_t members[] = {1, 2, 3};
    dr_shard_policy_flexible(&policy, 1, 3, 2, DR_MODE_ORDERED); /* min > max */
    spec_one(&spec, &policy);
    assert_int_equal(dr_layout_compute(&spec, NULL, members, 3, &layout_a, &err), DR_EINVAL);
    assert_non_null(strstr(err.msg, "min"));
    dr_shard_policy_flexible(&policy, 0, 1, 2, DR_MODE_ORDERED); /* no shards */
    spec_one(&spec, &policy);
    assert_int_equal(dr_layout_spec_check(&spec, NULL), DR_EINVAL);
    dr_shard_policy_flexible(&policy, 1, 1, 2, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t duplicate[] = {1, 2, 1};
    assert_int_equal(dr_layout_compute(&spec, NULL, duplicate, 3, &layout_a, &err), DR_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    spec.num_types = 0;
    assert_int_equal(dr_layout_spec_check(&spec, NULL), DR_EINVAL);
}

static void test_fingerprint_tracks_content(void **state) {
    (void)state;
    dr_shard_policy policy;
    dr_layout_spec spec;
    dr_shard_policy_flexible(&policy, 1, 1, 4, DR_MODE_ORDERED);
    spec_one(&spec, &policy);
    uint32_t a[] = {1, 2, 3}, b[] = {1, 3, 2};
    dr_layout_compute(&spec, NULL, a, 3, &layout_a, NULL);
    dr_layout_compute(&spec, NULL, b, 3, &layout_b, NULL);
    assert_true(dr_layout_fingerprint(&layout_a) != dr_layout_fingerprint(&layout_b));
    dr_layout_compute(&spec, NULL, a, 3, &layout_b, NULL);
    assert_true(dr_layout_fingerprint(&layout_a) == dr_layout_fingerprint(&layout_b));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flexible_takes_rank_order_and_leaves_leftovers),
        cmocka_unit_test(test_inadequate_when_minimum_unreachable),
        cmocka_unit_test(test_extras_handed_out_round_robin),
        cmocka_unit_test(test_custom_per_shard_bounds),
        cmocka_unit_test(test_types_in_fixed_order_are_disjoint),
        cmocka_unit_test(test_later_view_keeps_survivors_and_fills_from_unassigned),
        cmocka_unit_test(test_state_source_and_new_members),
        cmocka_unit_test(test_bad_specs_and_members_rejected),
        cmocka_unit_test(test_fingerprint_tracks_content),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
