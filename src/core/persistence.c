/*
 * Persistence frontier (PROTOCOL.md §6, docs/persistence.md "Frontier"): the core's side of
 * durable shards. The driver logs delivered versions and reports the highest one it made
 * durable (dr_core_persisted); the core writes it to PERSISTED_NUM in its SST row, which is
 * pushed to the shard like every per-subgroup field. A predicate computes, per shard of mine,
 * the minimum of PERSISTED_NUM over the shard's rows — the highest version every member has
 * persisted — and emits DR_ACTION_PERSISTED when it grows.
 *
 * Versions are whole (vid << 32) | seq values, so they keep growing across views. A new view's
 * table starts at -1 everywhere; each member re-publishes its last persisted version at install
 * (persistence_start_view), and the frontier is only emitted when it exceeds every frontier
 * emitted before (a joiner whose log starts with the new view holds the new frontier back until
 * it persisted its first delivery there; see docs/persistence.md for what that means).
 *
 * The core does no I/O here; a shard nobody reports for (not durable) never moves from -1 and
 * emits nothing.
 */
#include "core/core_internal.h"

void persistence_init(dr_core *core) {
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        core->persisted_local[s] = -1;
        core->persisted_global[s] = -1;
    }
}

static void publish_local(dr_core *core, uint32_t subgroup) {
    uint32_t field = dr_sst_subgroup_field(core->sst, subgroup, DR_SST_PERSISTED_NUM);
    if (core->persisted_local[subgroup] > dr_sst_get(core->sst, core->my_rank, field))
        dr_sst_set(core->sst, field, core->persisted_local[subgroup]);
}

/** The frontier predicate of one shard: emits PERSISTED when the column's minimum grows. */
static bool frontier_predicate(void *ctx) {
    mc_shard *shard = ctx;
    dr_core *core = shard->core;
    uint32_t field = dr_sst_subgroup_field(core->sst, shard->subgroup, DR_SST_PERSISTED_NUM);
    int64_t frontier = INT64_MAX;
    for (uint32_t r = 0; r < shard->num_members; r++) {
        int64_t value = dr_sst_get(core->sst, shard->member_rows[r], field);
        if (value < frontier)
            frontier = value;
    }
    if (frontier <= core->persisted_global[shard->subgroup])
        return false;
    core->persisted_global[shard->subgroup] = frontier;
    core_trace(core, "view %d: shard %u/%u persisted everywhere up to version %lld", core->view.vid,
               shard->subgroup, shard->shard, (long long)frontier);
    dr_action action = {.type = DR_ACTION_PERSISTED,
                        .subgroup = shard->subgroup,
                        .shard = shard->shard,
                        .version = frontier};
    core_push_action(core, &action);
    return false; /* informs the driver; changes nothing in the table */
}

int persistence_start_view(dr_core *core) {
    for (uint32_t s = 0; s < core->layout.num_subgroups; s++) {
        mc_shard *shard = &core->shards[s];
        if (!shard->active || shard->mode != DR_MODE_ORDERED)
            continue;
        publish_local(core, s);
        int rc = dr_sst_add_predicate(core->sst, frontier_predicate, shard);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void dr_core_persisted(dr_core *core, uint32_t subgroup, int64_t version, uint64_t now_us) {
    if (now_us > core->now_us)
        core->now_us = now_us;
    if (subgroup >= DR_LAYOUT_MAX_SUBGROUPS || version < 0 ||
        version <= core->persisted_local[subgroup])
        return;
    if (core->state == CORE_RESTARTING) {
        /* nothing was delivered in this incarnation yet: what its logs hold durably came with
         * the restart options (tails), and what lies beyond the coming trim will be cut */
        core_trace(core, "subgroup %u: persisted version %lld reported while restarting: ignored",
                   subgroup, (long long)version);
        return;
    }
    if (core->state == CORE_IN_VIEW && subgroup < core->layout.num_subgroups) {
        const mc_shard *shard = &core->shards[subgroup];
        int32_t vid = (int32_t)(version >> 32);
        int64_t seq = version & 0xffffffff;
        if (vid > core->view.vid || (vid == core->view.vid && seq > shard->delivered_num)) {
            core_trace(core, "subgroup %u: persisted version %lld not delivered here: ignored",
                       subgroup, (long long)version);
            return;
        }
    }
    core->persisted_local[subgroup] = version;
    if (core->state != CORE_IN_VIEW || subgroup >= core->layout.num_subgroups ||
        !core->shards[subgroup].active || core->shards[subgroup].mode != DR_MODE_ORDERED)
        return; /* published when a view with my shard of it is installed */
    publish_local(core, subgroup);
    core_after_event(core);
}

int64_t dr_core_persisted_frontier(const dr_core *core, uint32_t subgroup) {
    return subgroup < DR_LAYOUT_MAX_SUBGROUPS ? core->persisted_global[subgroup] : -1;
}
