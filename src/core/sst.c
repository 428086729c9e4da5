/*
 * Shared state table: row layout, monotonic writes, apply-by-max, predicate evaluation and
 * push batching (design in sst.h; the SST_PUSH wire format is in wire.c).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/sst.h"
#include "core/wire.h"
#include "derecho/error.h"

/** Where a subgroup's block of fields starts. */
typedef struct sst_subgroup_block {
    uint32_t base;    /**< field id of SEQ_NUM */
    uint32_t senders; /**< RECEIVED / TRIM entries */
} sst_subgroup_block;

struct dr_sst {
    uint32_t num_rows;      /**< view members */
    uint32_t my_row;        /**< my rank */
    uint32_t num_fields;    /**< fields per row */
    uint32_t num_subgroups; /**< subgroups of the layout */
    uint32_t suspected_base;
    uint32_t changes_base;
    uint32_t max_changes;
    sst_subgroup_block subgroups[DR_LAYOUT_MAX_SUBGROUPS];
    int64_t *values;      /**< num_rows * num_fields */
    int32_t *field_scope; /**< per field: -1 all members, else the subgroup id */
    bool *shares_shard;   /**< [subgroup * num_rows + row]: row is in my shard of subgroup */
    bool *dirty;          /**< per field of my row */
    uint32_t *dirty_list; /**< dirty field ids, in the order they changed */
    uint32_t num_dirty;
    bool wide; /**< wedged: every field goes to every member (the leader computes trims) */
    dr_sst_predicate_fn predicates[DR_SST_MAX_PREDICATES];
    void *predicate_ctx[DR_SST_MAX_PREDICATES];
    uint32_t num_predicates;
    dr_buf frame; /**< scratch for encoding pushes */
};

static uint32_t max_senders_of(const dr_subgroup_layout *sg) {
    uint32_t most = 0;
    for (uint32_t sh = 0; sh < sg->num_shards; sh++)
        if (sg->shards[sh].num_senders > most)
            most = sg->shards[sh].num_senders;
    return most;
}

/** Computes the row layout; returns the field count. */
static uint32_t plan_fields(dr_sst *sst, const dr_layout *layout) {
    uint32_t next = DR_SST_NUM_SCALARS;
    sst->suspected_base = next;
    next += sst->num_rows;
    sst->changes_base = next;
    sst->max_changes = sst->num_rows + DR_SST_EXTRA_CHANGES;
    next += sst->max_changes;
    sst->num_subgroups = layout->num_subgroups;
    for (uint32_t s = 0; s < layout->num_subgroups; s++) {
        sst->subgroups[s].base = next;
        sst->subgroups[s].senders = max_senders_of(&layout->subgroups[s]);
        next += DR_SST_SUBGROUP_SCALARS + 2 * sst->subgroups[s].senders;
    }
    return next;
}

static bool is_counter_field(const dr_sst *sst, uint32_t field) {
    for (uint32_t s = 0; s < sst->num_subgroups; s++) {
        const sst_subgroup_block *block = &sst->subgroups[s];
        uint32_t end = block->base + DR_SST_SUBGROUP_SCALARS + 2 * block->senders;
        if (field >= block->base && field < end)
            return field != block->base + DR_SST_TRIM_READY;
    }
    return false;
}

static void init_values(dr_sst *sst, const dr_view *view) {
    for (uint32_t f = 0; f < sst->num_fields; f++) {
        int64_t initial = is_counter_field(sst, f) ? -1 : 0;
        for (uint32_t r = 0; r < sst->num_rows; r++)
            sst->values[(size_t)r * sst->num_fields + f] = initial;
    }
    for (uint32_t r = 0; r < sst->num_rows; r++)
        sst->values[(size_t)r * sst->num_fields + DR_SST_VID] = view->vid;
}

static void init_scopes(dr_sst *sst, const dr_view *view, const dr_layout *layout) {
    for (uint32_t f = 0; f < sst->num_fields; f++)
        sst->field_scope[f] = -1;
    uint32_t my_id = view->member_ids[sst->my_row];
    for (uint32_t s = 0; s < sst->num_subgroups; s++) {
        const sst_subgroup_block *block = &sst->subgroups[s];
        uint32_t end = block->base + DR_SST_SUBGROUP_SCALARS + 2 * block->senders;
        for (uint32_t f = block->base; f < end; f++)
            sst->field_scope[f] = (int32_t)s;
        int my_shard = dr_layout_find_shard(layout, s, my_id, NULL);
        for (uint32_t r = 0; r < sst->num_rows; r++) {
            int shard = dr_layout_find_shard(layout, s, view->member_ids[r], NULL);
            sst->shares_shard[(size_t)s * sst->num_rows + r] = my_shard >= 0 && shard == my_shard;
        }
    }
}

int dr_sst_create(const dr_view *view, const dr_layout *layout, uint32_t my_rank, dr_sst **out) {
    if (view->num_members == 0 || my_rank >= view->num_members)
        return DR_EINVAL;
    dr_sst *sst = calloc(1, sizeof *sst);
    if (sst == NULL)
        return DR_ENOMEM;
    sst->num_rows = view->num_members;
    sst->my_row = my_rank;
    sst->num_fields = plan_fields(sst, layout);
    size_t rows_fields = (size_t)sst->num_rows * sst->num_fields;
    sst->values = malloc(rows_fields * sizeof *sst->values);
    sst->field_scope = malloc(sst->num_fields * sizeof *sst->field_scope);
    sst->shares_shard = calloc((size_t)DR_LAYOUT_MAX_SUBGROUPS * sst->num_rows, sizeof(bool));
    sst->dirty = calloc(sst->num_fields, sizeof *sst->dirty);
    sst->dirty_list = malloc(sst->num_fields * sizeof *sst->dirty_list);
    if (!sst->values || !sst->field_scope || !sst->shares_shard || !sst->dirty ||
        !sst->dirty_list) {
        dr_sst_destroy(sst);
        return DR_ENOMEM;
    }
    dr_buf_init(&sst->frame, 0);
    init_values(sst, view);
    init_scopes(sst, view, layout);
    *out = sst;
    return 0;
}

void dr_sst_destroy(dr_sst *sst) {
    if (sst == NULL)
        return;
    free(sst->values);
    free(sst->field_scope);
    free(sst->shares_shard);
    free(sst->dirty);
    free(sst->dirty_list);
    dr_buf_free(&sst->frame);
    free(sst);
}

uint32_t dr_sst_num_rows(const dr_sst *sst) {
    return sst->num_rows;
}

uint32_t dr_sst_num_fields(const dr_sst *sst) {
    return sst->num_fields;
}

uint32_t dr_sst_my_row(const dr_sst *sst) {
    return sst->my_row;
}

uint32_t dr_sst_suspected_field(const dr_sst *sst, uint32_t member_rank) {
    assert(member_rank < sst->num_rows);
    return sst->suspected_base + member_rank;
}

uint32_t dr_sst_changes_field(const dr_sst *sst, uint32_t i) {
    assert(i < sst->max_changes);
    return sst->changes_base + i;
}

uint32_t dr_sst_max_changes(const dr_sst *sst) {
    return sst->max_changes;
}

uint32_t dr_sst_subgroup_field(const dr_sst *sst, uint32_t subgroup, uint32_t which) {
    assert(subgroup < sst->num_subgroups);
    assert(which < DR_SST_SUBGROUP_SCALARS);
    return sst->subgroups[subgroup].base + which;
}

uint32_t dr_sst_received_field(const dr_sst *sst, uint32_t subgroup, uint32_t sender) {
    assert(subgroup < sst->num_subgroups);
    assert(sender < sst->subgroups[subgroup].senders);
    return sst->subgroups[subgroup].base + DR_SST_SUBGROUP_SCALARS + sender;
}

uint32_t dr_sst_trim_field(const dr_sst *sst, uint32_t subgroup, uint32_t sender) {
    assert(subgroup < sst->num_subgroups);
    assert(sender < sst->subgroups[subgroup].senders);
    return sst->subgroups[subgroup].base + DR_SST_SUBGROUP_SCALARS +
           sst->subgroups[subgroup].senders + sender;
}

int64_t dr_sst_get(const dr_sst *sst, uint32_t row, uint32_t field) {
    assert(row < sst->num_rows);
    assert(field < sst->num_fields);
    return sst->values[(size_t)row * sst->num_fields + field];
}

void dr_sst_set(dr_sst *sst, uint32_t field, int64_t value) {
    assert(field < sst->num_fields);
    int64_t *slot = &sst->values[(size_t)sst->my_row * sst->num_fields + field];
    assert(value >= *slot); /* every field is monotonic */
    if (value == *slot)
        return;
    *slot = value;
    if (!sst->dirty[field]) {
        sst->dirty[field] = true;
        sst->dirty_list[sst->num_dirty++] = field;
        assert(sst->num_dirty <= sst->num_fields);
    }
}

int dr_sst_apply(dr_sst *sst, uint32_t row, uint32_t field, int64_t value) {
    if (row >= sst->num_rows || row == sst->my_row || field >= sst->num_fields)
        return DR_EPROTO;
    int64_t *slot = &sst->values[(size_t)row * sst->num_fields + field];
    if (value <= *slot)
        return 0;
    *slot = value;
    return 1;
}

int dr_sst_add_predicate(dr_sst *sst, dr_sst_predicate_fn fn, void *ctx) {
    if (sst->num_predicates == DR_SST_MAX_PREDICATES)
        return DR_ERANGE;
    sst->predicates[sst->num_predicates] = fn;
    sst->predicate_ctx[sst->num_predicates] = ctx;
    sst->num_predicates++;
    return 0;
}

uint32_t dr_sst_evaluate(dr_sst *sst) {
    uint32_t rounds = 0;
    for (;;) {
        bool progress = false;
        for (uint32_t i = 0; i < sst->num_predicates; i++)
            progress |= sst->predicates[i](sst->predicate_ctx[i]);
        if (!progress)
            return rounds;
        rounds++;
        /* each round delivers or sends something bounded by the window: cannot spin forever */
        assert(rounds < 1000000u);
    }
}

bool dr_sst_has_dirty(const dr_sst *sst) {
    return sst->num_dirty > 0;
}

void dr_sst_widen(dr_sst *sst) {
    sst->wide = true;
    for (uint32_t field = 0; field < sst->num_fields; field++) {
        if (sst->dirty[field])
            continue;
        sst->dirty[field] = true;
        sst->dirty_list[sst->num_dirty++] = field;
    }
    assert(sst->num_dirty == sst->num_fields);
}

static bool peer_needs(const dr_sst *sst, uint32_t row, uint32_t field) {
    int32_t scope = sst->field_scope[field];
    if (scope < 0 || sst->wide)
        return true;
    return sst->shares_shard[(size_t)scope * sst->num_rows + row];
}

/** Encodes the push for one peer into sst->frame; returns the entry count. */
static uint32_t encode_push_for(dr_sst *sst, uint32_t row, uint32_t sender_id, int32_t vid) {
    dr_buf_reset(&sst->frame);
    size_t count_offset = 0;
    size_t start = dr_wire_begin_sst_push(&sst->frame, sender_id, vid, sst->my_row, &count_offset);
    uint32_t entries = 0;
    for (uint32_t i = 0; i < sst->num_dirty; i++) {
        uint32_t field = sst->dirty_list[i];
        if (!peer_needs(sst, row, field))
            continue;
        dr_wire_put_sst_entry(&sst->frame, count_offset, field,
                              dr_sst_get(sst, sst->my_row, field));
        entries++;
    }
    if (dr_wire_finish(&sst->frame, start) != 0)
        return 0;
    return entries;
}

int dr_sst_flush(dr_sst *sst, uint32_t sender_id, int32_t vid, dr_sst_send_fn send, void *ctx) {
    int frames = 0;
    if (sst->num_dirty == 0)
        return 0;
    for (uint32_t row = 0; row < sst->num_rows; row++) {
        if (row == sst->my_row)
            continue;
        if (encode_push_for(sst, row, sender_id, vid) == 0) {
            if (sst->frame.failed)
                return DR_ENOMEM;
            continue;
        }
        send(ctx, row, sst->frame.data, sst->frame.len);
        frames++;
    }
    for (uint32_t i = 0; i < sst->num_dirty; i++)
        sst->dirty[sst->dirty_list[i]] = false;
    sst->num_dirty = 0;
    return frames;
}
