/*
 * The shared state table (PROTOCOL.md §2): one row per view member, every field a monotonic
 * int64 (counters start at -1 or 0 and only grow; flags only turn on; list entries are written
 * once from 0). The local node writes only its own row (dr_sst_set); changed fields are marked
 * dirty and dr_sst_flush turns them into one SST_PUSH frame per peer that needs them: fields of
 * subgroup s go to the members of my shard of s, every other field goes to all members. A
 * receiver applies a push by taking the maximum (dr_sst_apply), so stale or reordered pushes
 * are harmless. After updates the owner calls dr_sst_evaluate, which runs the registered
 * predicates until none makes progress.
 *
 * Row layout (identical at every member of a view; field ids are indexes):
 *   VID, PROMISED, ACCEPTED, COMMITTED, NUM_INSTALLED, WEDGED, LEAVING,
 *   SUSPECTED[N], CHANGES[N + 16],
 *   per subgroup s: SEQ_NUM, DELIVERED_NUM, PERSISTED_NUM, TRIM_READY,
 *                   RECEIVED[senders_s], TRIM[senders_s]
 * where N is the view size and senders_s the largest sender count of any shard of s.
 * Single-threaded; owned by the core.
 */
#ifndef DR_CORE_SST_H
#define DR_CORE_SST_H

#include <stdbool.h>
#include <stdint.h>

#include "derecho/buffer.h"
#include "derecho/layout.h"

/** Global (all-member) scalar fields. */
enum dr_sst_global_field {
    DR_SST_VID = 0,
    DR_SST_PROMISED,      /**< highest ballot promised (a leader's own: its prepare) */
    DR_SST_ACCEPTED,      /**< ballot of the proposal accepted (acked) last; 0: none */
    DR_SST_COMMITTED,     /**< ballot of the commit this node holds; 0: none */
    DR_SST_NUM_INSTALLED, /**< reserved (views are installed from the commit) */
    DR_SST_WEDGED,
    DR_SST_LEAVING,
    DR_SST_NUM_SCALARS,
};

/** Per-subgroup scalar fields (offsets within a subgroup's block). */
enum dr_sst_subgroup_field {
    DR_SST_SEQ_NUM = 0,
    DR_SST_DELIVERED_NUM,
    DR_SST_PERSISTED_NUM,
    DR_SST_TRIM_READY,
    DR_SST_SUBGROUP_SCALARS,
};

/** Extra change-list entries beyond the member count. */
#define DR_SST_EXTRA_CHANGES 16u

/** A predicate: looks at the table, acts, returns true if it changed anything. */
typedef bool (*dr_sst_predicate_fn)(void *ctx);

#define DR_SST_MAX_PREDICATES 64u

typedef struct dr_sst dr_sst;

/** Sends one encoded frame to the member of rank `rank` (the core turns it into an action). */
typedef void (*dr_sst_send_fn)(void *ctx, uint32_t rank, const uint8_t *bytes, size_t len);

/**
 * Creates the table of a view: rows for every member, my row `my_rank`, push scopes from
 * `layout` (which members share a shard with me). Returns 0 or DR_ENOMEM / DR_EINVAL.
 */
int dr_sst_create(const dr_view *view, const dr_layout *layout, uint32_t my_rank, dr_sst **out);
void dr_sst_destroy(dr_sst *sst);

uint32_t dr_sst_num_rows(const dr_sst *sst);
uint32_t dr_sst_num_fields(const dr_sst *sst);
uint32_t dr_sst_my_row(const dr_sst *sst);

/** Field id of SUSPECTED[member] / CHANGES[i]. */
uint32_t dr_sst_suspected_field(const dr_sst *sst, uint32_t member_rank);
uint32_t dr_sst_changes_field(const dr_sst *sst, uint32_t i);
uint32_t dr_sst_max_changes(const dr_sst *sst);
/** Field id of a per-subgroup scalar (enum dr_sst_subgroup_field). */
uint32_t dr_sst_subgroup_field(const dr_sst *sst, uint32_t subgroup, uint32_t which);
/** Field id of RECEIVED[sender] / TRIM[sender] of a subgroup. */
uint32_t dr_sst_received_field(const dr_sst *sst, uint32_t subgroup, uint32_t sender);
uint32_t dr_sst_trim_field(const dr_sst *sst, uint32_t subgroup, uint32_t sender);

/** Reads row `row`'s field. */
int64_t dr_sst_get(const dr_sst *sst, uint32_t row, uint32_t field);

/**
 * Writes my row's field. The value must not decrease (monotonic; asserted). Marks it dirty if
 * it changed.
 */
void dr_sst_set(dr_sst *sst, uint32_t field, int64_t value);

/**
 * Applies one pushed entry to row `row` by maximum. Returns 1 if the value grew, 0 if not, or
 * DR_EPROTO if the row is mine or the field/row is out of range (peer data: never asserted).
 */
int dr_sst_apply(dr_sst *sst, uint32_t row, uint32_t field, int64_t value);

/** Registers a predicate evaluated by dr_sst_evaluate (in registration order). */
int dr_sst_add_predicate(dr_sst *sst, dr_sst_predicate_fn fn, void *ctx);

/**
 * Runs the predicates round after round until a round changes nothing. Returns the number of
 * rounds that made progress.
 */
uint32_t dr_sst_evaluate(dr_sst *sst);

/**
 * Encodes the dirty fields into one SST_PUSH frame per peer that needs any of them and hands
 * each to send(); then clears the dirty set. `sender_id`/`vid` go into the frame header.
 * Returns the number of frames sent, or DR_ENOMEM.
 */
int dr_sst_flush(dr_sst *sst, uint32_t sender_id, int32_t vid, dr_sst_send_fn send, void *ctx);

/**
 * Wedge support: from now on every field is pushed to every member, and my whole row is marked
 * dirty so the next flush sends it entirely (with WEDGED) to everyone. The view-change leader
 * then holds every member's final RECEIVED values, from which it computes the ragged trims.
 */
void dr_sst_widen(dr_sst *sst);

/** True if any field awaits a push. */
bool dr_sst_has_dirty(const dr_sst *sst);

#endif
