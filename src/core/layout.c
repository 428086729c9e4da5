/*
 * The layout function: cuts a view's members into subgroups and shards (PROTOCOL.md §1, §5).
 * Pure and deterministic; the rules are documented in include/derecho/layout.h.
 *
 * Implementation outline: flatten every (subgroup, shard) of the spec into a list of "slots" in
 * type/subgroup/shard order, each with its min, max and the survivors it keeps from the previous
 * layout; size the slots (min first, then round-robin extras); then fill each slot with its
 * survivors followed by members that were in no shard before, in rank order.
 */
#include <assert.h>
#include <string.h>

#include "derecho/layout.h"

/** Sizing state of one shard while the layout is computed. */
typedef struct layout_slot {
    uint32_t subgroup;  /**< subgroup id */
    uint32_t shard;     /**< shard index in the subgroup */
    uint32_t min_nodes; /**< policy min */
    uint32_t max_nodes; /**< policy max */
    uint32_t survivors; /**< previous members still in the view */
    uint32_t size;      /**< chosen size */
} layout_slot;

#define LAYOUT_MAX_SLOTS (DR_LAYOUT_MAX_SUBGROUPS * DR_LAYOUT_MAX_SHARDS)

void dr_shard_policy_flexible(dr_shard_policy *policy, uint32_t num_shards, uint32_t min_nodes,
                              uint32_t max_nodes, dr_delivery_mode mode) {
    memset(policy, 0, sizeof *policy);
    policy->kind = DR_SHARD_FLEXIBLE_EVEN;
    policy->num_shards = num_shards;
    policy->min_nodes = min_nodes;
    policy->max_nodes = max_nodes;
    policy->mode = mode;
    strcpy(policy->profile, "DEFAULT");
}

void dr_shard_policy_fixed(dr_shard_policy *policy, uint32_t num_shards, uint32_t nodes,
                           dr_delivery_mode mode) {
    dr_shard_policy_flexible(policy, num_shards, nodes, nodes, mode);
    policy->kind = DR_SHARD_FIXED_EVEN;
}

void dr_shard_policy_custom(dr_shard_policy *policy, uint32_t num_shards, const uint32_t *mins,
                            const uint32_t *maxs, dr_delivery_mode mode) {
    dr_shard_policy_flexible(policy, num_shards, 0, 0, mode);
    policy->kind = DR_SHARD_CUSTOM;
    uint32_t copy = num_shards < DR_LAYOUT_MAX_SHARDS ? num_shards : DR_LAYOUT_MAX_SHARDS;
    for (uint32_t i = 0; i < copy; i++) {
        policy->min_nodes_by_shard[i] = mins[i];
        policy->max_nodes_by_shard[i] = maxs[i];
    }
}

/** The min and max of shard `shard` under `policy`. */
static void policy_shard_bounds(const dr_shard_policy *policy, uint32_t shard, uint32_t *min_out,
                                uint32_t *max_out) {
    assert(shard < DR_LAYOUT_MAX_SHARDS);
    switch (policy->kind) {
    case DR_SHARD_FIXED_EVEN:
        *min_out = policy->min_nodes;
        *max_out = policy->min_nodes;
        return;
    case DR_SHARD_CUSTOM:
        *min_out = policy->min_nodes_by_shard[shard];
        *max_out = policy->max_nodes_by_shard[shard];
        return;
    case DR_SHARD_FLEXIBLE_EVEN:
    default:
        *min_out = policy->min_nodes;
        *max_out = policy->max_nodes;
        return;
    }
}

static int check_policy(const dr_subgroup_type *type, dr_err *err) {
    const dr_shard_policy *policy = &type->policy;
    if (policy->kind > DR_SHARD_CUSTOM)
        return dr_err_set(err, DR_EINVAL, "type %s: unknown shard policy %d", type->name,
                          (int)policy->kind);
    if (policy->mode != DR_MODE_ORDERED && policy->mode != DR_MODE_RAW)
        return dr_err_set(err, DR_EINVAL, "type %s: unknown delivery mode", type->name);
    if (policy->num_shards == 0 || policy->num_shards > DR_LAYOUT_MAX_SHARDS)
        return dr_err_set(err, DR_EINVAL, "type %s: num_shards %u not in 1..%u", type->name,
                          policy->num_shards, DR_LAYOUT_MAX_SHARDS);
    for (uint32_t shard = 0; shard < policy->num_shards; shard++) {
        uint32_t min_nodes, max_nodes;
        policy_shard_bounds(policy, shard, &min_nodes, &max_nodes);
        if (min_nodes == 0 || min_nodes > max_nodes || max_nodes > DR_LAYOUT_MAX_SHARD_MEMBERS)
            return dr_err_set(err, DR_EINVAL,
                              "type %s shard %u: need 1 <= min (%u) <= max (%u) <= %u", type->name,
                              shard, min_nodes, max_nodes, DR_LAYOUT_MAX_SHARD_MEMBERS);
    }
    return 0;
}

int dr_layout_spec_check(const dr_layout_spec *spec, dr_err *err) {
    if (spec == NULL || spec->num_types == 0 || spec->num_types > DR_LAYOUT_MAX_TYPES)
        return dr_err_set(err, DR_EINVAL, "layout needs 1..%u subgroup types", DR_LAYOUT_MAX_TYPES);
    uint32_t subgroups = 0;
    for (uint32_t t = 0; t < spec->num_types; t++) {
        const dr_subgroup_type *type = &spec->types[t];
        if (type->num_subgroups == 0)
            return dr_err_set(err, DR_EINVAL, "type %s: num_subgroups is 0", type->name);
        subgroups += type->num_subgroups;
        if (subgroups > DR_LAYOUT_MAX_SUBGROUPS)
            return dr_err_set(err, DR_EINVAL, "more than %u subgroups", DR_LAYOUT_MAX_SUBGROUPS);
        int rc = check_policy(type, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static bool members_valid(const uint32_t *members, uint32_t num_members, dr_err *err) {
    if (num_members > DR_VIEW_MAX_MEMBERS) {
        dr_err_set(err, DR_EINVAL, "%u members exceed %u", num_members, DR_VIEW_MAX_MEMBERS);
        return false;
    }
    for (uint32_t i = 0; i < num_members; i++) {
        if (members[i] == DR_NODE_NONE) {
            dr_err_set(err, DR_EINVAL, "member %u has the reserved id", i);
            return false;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (members[i] == members[j]) {
                dr_err_set(err, DR_EINVAL, "node id %u appears twice", members[i]);
                return false;
            }
        }
    }
    return true;
}

static bool is_member(const uint32_t *members, uint32_t num_members, uint32_t node_id) {
    for (uint32_t i = 0; i < num_members; i++)
        if (members[i] == node_id)
            return true;
    return false;
}

/** The previous shard at the same position, or NULL if it did not exist. */
static const dr_shard_layout *previous_shard(const dr_layout *previous, uint32_t subgroup,
                                             uint32_t shard) {
    if (previous == NULL || subgroup >= previous->num_subgroups)
        return NULL;
    if (shard >= previous->subgroups[subgroup].num_shards)
        return NULL;
    return &previous->subgroups[subgroup].shards[shard];
}

static uint32_t count_survivors(const dr_shard_layout *old, const uint32_t *members,
                                uint32_t num_members) {
    uint32_t survivors = 0;
    for (uint32_t i = 0; old != NULL && i < old->num_members; i++)
        survivors += is_member(members, num_members, old->member_ids[i]) ? 1u : 0u;
    return survivors;
}

/** Builds one slot per (subgroup, shard), fills the subgroup headers; returns the count. */
static uint32_t build_slots(const dr_layout_spec *spec, const dr_layout *previous,
                            const uint32_t *members, uint32_t num_members, dr_layout *out,
                            layout_slot *slots) {
    uint32_t num_slots = 0, subgroup = 0;
    for (uint32_t t = 0; t < spec->num_types; t++) {
        const dr_subgroup_type *type = &spec->types[t];
        for (uint32_t s = 0; s < type->num_subgroups; s++, subgroup++) {
            dr_subgroup_layout *sg = &out->subgroups[subgroup];
            sg->type_index = t;
            sg->index_in_type = s;
            sg->num_shards = type->policy.num_shards;
            for (uint32_t shard = 0; shard < sg->num_shards; shard++) {
                layout_slot *slot = &slots[num_slots++];
                assert(num_slots <= LAYOUT_MAX_SLOTS);
                slot->subgroup = subgroup;
                slot->shard = shard;
                policy_shard_bounds(&type->policy, shard, &slot->min_nodes, &slot->max_nodes);
                slot->survivors = count_survivors(previous_shard(previous, subgroup, shard),
                                                  members, num_members);
                sg->shards[shard].mode = type->policy.mode;
                sg->shards[shard].min_nodes = slot->min_nodes;
                sg->shards[shard].max_nodes = slot->max_nodes;
            }
        }
    }
    out->num_subgroups = subgroup;
    return num_slots;
}

/** Sizes the slots; returns false if the members cannot cover every minimum. */
static bool size_slots(layout_slot *slots, uint32_t num_slots, uint32_t available) {
    uint32_t needed = 0;
    for (uint32_t i = 0; i < num_slots; i++) {
        uint32_t base =
            slots[i].survivors > slots[i].min_nodes ? slots[i].survivors : slots[i].min_nodes;
        slots[i].size = base;
        needed += base;
    }
    if (needed > available)
        return false;
    for (uint32_t i = 0; i < num_slots; i++)
        assert(slots[i].size >= slots[i].min_nodes && slots[i].size <= slots[i].max_nodes);
    uint32_t spare = available - needed;
    bool grew = true;
    while (spare > 0 && grew) {
        grew = false;
        for (uint32_t i = 0; i < num_slots && spare > 0; i++) {
            if (slots[i].size < slots[i].max_nodes) {
                slots[i].size++;
                spare--;
                grew = true;
            }
        }
    }
    return true;
}

/** True if node_id is in some shard of the previous layout. */
static bool was_assigned(const dr_layout *previous, uint32_t node_id) {
    if (previous == NULL)
        return false;
    for (uint32_t sg = 0; sg < previous->num_subgroups; sg++)
        if (dr_layout_find_shard(previous, sg, node_id, NULL) >= 0)
            return true;
    return false;
}

static void shard_add(dr_shard_layout *shard, uint32_t node_id, bool is_sender) {
    assert(shard->num_members < DR_LAYOUT_MAX_SHARD_MEMBERS);
    shard->member_ids[shard->num_members] = node_id;
    shard->is_sender[shard->num_members] = is_sender;
    shard->num_members++;
    shard->num_senders += is_sender ? 1u : 0u;
}

/** Fills one slot: survivors first (keeping sender flags), then fresh members in rank order. */
static void fill_slot(const layout_slot *slot, const dr_layout *previous, const uint32_t *members,
                      uint32_t num_members, bool *fresh_used, dr_layout *out) {
    dr_shard_layout *shard = &out->subgroups[slot->subgroup].shards[slot->shard];
    const dr_shard_layout *old = previous_shard(previous, slot->subgroup, slot->shard);
    for (uint32_t i = 0; old != NULL && i < old->num_members; i++)
        if (is_member(members, num_members, old->member_ids[i]))
            shard_add(shard, old->member_ids[i], old->is_sender[i]);
    for (uint32_t rank = 0; rank < num_members && shard->num_members < slot->size; rank++) {
        if (fresh_used[rank] || was_assigned(previous, members[rank]))
            continue;
        fresh_used[rank] = true;
        shard_add(shard, members[rank], true);
    }
    assert(shard->num_members == slot->size);
}

int dr_layout_compute(const dr_layout_spec *spec, const dr_layout *previous,
                      const uint32_t *members, uint32_t num_members, dr_layout *out, dr_err *err) {
    int rc = dr_layout_spec_check(spec, err);
    if (rc != 0)
        return rc;
    if (!members_valid(members, num_members, err))
        return DR_EINVAL;
    memset(out, 0, sizeof *out);
    layout_slot slots[LAYOUT_MAX_SLOTS];
    uint32_t num_slots = build_slots(spec, previous, members, num_members, out, slots);
    for (uint32_t i = 0; i < num_slots; i++)
        if (slots[i].survivors > slots[i].max_nodes)
            return dr_err_set(err, DR_EINVAL, "previous layout does not fit this spec");
    uint32_t fresh = 0, survivors = 0;
    for (uint32_t rank = 0; rank < num_members; rank++)
        fresh += was_assigned(previous, members[rank]) ? 0u : 1u;
    for (uint32_t i = 0; i < num_slots; i++)
        survivors += slots[i].survivors;
    assert(fresh + survivors == num_members);
    out->adequate = size_slots(slots, num_slots, num_members);
    if (!out->adequate)
        return 0;
    bool fresh_used[DR_VIEW_MAX_MEMBERS] = {false};
    for (uint32_t i = 0; i < num_slots; i++) {
        fill_slot(&slots[i], previous, members, num_members, fresh_used, out);
        out->num_assigned += slots[i].size;
    }
    assert(out->num_assigned <= num_members);
    return 0;
}

int dr_layout_find_shard(const dr_layout *layout, uint32_t subgroup, uint32_t node_id,
                         uint32_t *rank_out) {
    if (subgroup >= layout->num_subgroups)
        return -1;
    const dr_subgroup_layout *sg = &layout->subgroups[subgroup];
    for (uint32_t shard = 0; shard < sg->num_shards; shard++) {
        for (uint32_t r = 0; r < sg->shards[shard].num_members; r++) {
            if (sg->shards[shard].member_ids[r] == node_id) {
                if (rank_out != NULL)
                    *rank_out = r;
                return (int)shard;
            }
        }
    }
    return -1;
}

static uint64_t fnv_mix(uint64_t hash, uint32_t value) {
    for (int i = 0; i < 4; i++) {
        hash ^= (uint8_t)(value >> (8 * i));
        hash *= 1099511628211ull;
    }
    return hash;
}

uint64_t dr_layout_fingerprint(const dr_layout *layout) {
    uint64_t hash = 14695981039346656037ull;
    hash = fnv_mix(hash, layout->adequate ? 1u : 0u);
    hash = fnv_mix(hash, layout->num_subgroups);
    for (uint32_t sg = 0; sg < layout->num_subgroups; sg++) {
        const dr_subgroup_layout *sub = &layout->subgroups[sg];
        hash = fnv_mix(hash, sub->type_index);
        hash = fnv_mix(hash, sub->num_shards);
        for (uint32_t sh = 0; sh < sub->num_shards; sh++) {
            const dr_shard_layout *shard = &sub->shards[sh];
            hash = fnv_mix(hash, (uint32_t)shard->mode);
            hash = fnv_mix(hash, shard->num_members);
            for (uint32_t r = 0; r < shard->num_members; r++) {
                hash = fnv_mix(hash, shard->member_ids[r]);
                hash = fnv_mix(hash, shard->is_sender[r] ? 1u : 0u);
            }
        }
    }
    return hash;
}

/** The shard (subgroup, shard) of layout, or NULL if it does not exist. */
static const dr_shard_layout *shard_at(const dr_layout *layout, uint32_t subgroup, uint32_t shard) {
    if (layout == NULL || subgroup >= layout->num_subgroups ||
        shard >= layout->subgroups[subgroup].num_shards)
        return NULL;
    return &layout->subgroups[subgroup].shards[shard];
}

static bool shard_has(const dr_shard_layout *shard, uint32_t node_id) {
    for (uint32_t i = 0; shard != NULL && i < shard->num_members; i++)
        if (shard->member_ids[i] == node_id)
            return true;
    return false;
}

bool dr_layout_is_new_in_shard(const dr_layout *previous, const dr_layout *next, uint32_t subgroup,
                               uint32_t shard, uint32_t node_id) {
    if (previous == NULL)
        return false;
    return shard_has(shard_at(next, subgroup, shard), node_id) &&
           !shard_has(shard_at(previous, subgroup, shard), node_id);
}

uint32_t dr_layout_state_source(const dr_layout *previous, const dr_layout *next, uint32_t subgroup,
                                uint32_t shard) {
    const dr_shard_layout *now = shard_at(next, subgroup, shard);
    const dr_shard_layout *before = shard_at(previous, subgroup, shard);
    for (uint32_t i = 0; now != NULL && before != NULL && i < now->num_members; i++)
        if (shard_has(before, now->member_ids[i]))
            return now->member_ids[i];
    return DR_NODE_NONE;
}
