/** @file
 * Views and shard layouts: the public description of a group's membership and of how each
 * view is cut into subgroups and shards (PROTOCOL.md §1, §5).
 *
 * A group is configured with an ordered list of subgroup *types* (dr_layout_spec); each type
 * has `num_subgroups` identical subgroups and a shard policy. The layout function
 * (dr_layout_compute) is pure and deterministic: every node computes it from the same inputs
 * (the spec, the previous layout or none, and the new view's member list in rank order) and
 * gets the same answer, so nodes agree on shards without exchanging them.
 *
 * Policies:
 *  - DR_SHARD_FLEXIBLE_EVEN: `num_shards` shards, each sized min_nodes..max_nodes (the
 *    numbers come from a `[SUBGROUP/<profile>]` section; `profile` names it);
 *  - DR_SHARD_FIXED_EVEN: `num_shards` shards of exactly min_nodes members (max is ignored);
 *  - DR_SHARD_CUSTOM: per-shard min_nodes_by_shard[] / max_nodes_by_shard[].
 *
 * Sizing (Derecho's rule): visit types in order, then subgroups, then shards; every shard
 * needs max(min, its surviving members); if the sum exceeds the members available the view is
 * *inadequate* (not installed); otherwise extra members are handed out one per shard, round
 * robin, until every shard reaches max or members run out; the rest stay unassigned.
 * Assignment: in the first view shards take members in rank order; in later views every shard
 * keeps its survivors (in their order) and fills up from members that were in no shard of the
 * previous layout, in rank order, so members never move between shards. Subgroups are
 * disjoint: a member is in at most one shard of at most one subgroup.
 *
 * All structures are plain values with fixed capacities (no allocation); they may be copied.
 * Nothing here is thread-safe by itself; values are immutable once computed.
 */
#ifndef DERECHO_LAYOUT_H
#define DERECHO_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "derecho/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Capacities (fixed so that views and layouts are plain values). */
#define DR_VIEW_MAX_MEMBERS         128u /**< members of one view */
#define DR_ADDRESS_MAX              64u  /**< "ip:port" text including the NUL */
#define DR_LAYOUT_MAX_TYPES         8u   /**< subgroup types */
#define DR_LAYOUT_MAX_SUBGROUPS     16u  /**< subgroups over all types */
#define DR_LAYOUT_MAX_SHARDS        16u  /**< shards of one subgroup */
#define DR_LAYOUT_MAX_SHARD_MEMBERS 32u  /**< members of one shard */
#define DR_LAYOUT_NAME_MAX          32u  /**< type / profile name including the NUL */

/** A node id that names no node. */
#define DR_NODE_NONE 0xffffffffu

/** Delivery mode of a shard. */
typedef enum dr_delivery_mode {
    DR_MODE_ORDERED = 0, /**< atomic multicast: total order, delivered once stable */
    DR_MODE_RAW = 1,     /**< unordered: delivered on receipt, FIFO per sender */
} dr_delivery_mode;

/** Shard policy kinds (see the file comment). */
typedef enum dr_shard_policy_kind {
    DR_SHARD_FLEXIBLE_EVEN = 0,
    DR_SHARD_FIXED_EVEN = 1,
    DR_SHARD_CUSTOM = 2,
} dr_shard_policy_kind;

/** How one subgroup is cut into shards. */
typedef struct dr_shard_policy {
    dr_shard_policy_kind kind;                         /**< which rule below applies */
    uint32_t num_shards;                               /**< shards per subgroup (1..MAX) */
    uint32_t min_nodes;                                /**< even kinds: members per shard, min */
    uint32_t max_nodes;                                /**< flexible: members per shard, max */
    uint32_t min_nodes_by_shard[DR_LAYOUT_MAX_SHARDS]; /**< custom: per-shard minimum */
    uint32_t max_nodes_by_shard[DR_LAYOUT_MAX_SHARDS]; /**< custom: per-shard maximum */
    dr_delivery_mode mode;                             /**< delivery mode of every shard */
    char profile[DR_LAYOUT_NAME_MAX];                  /**< config profile name ("DEFAULT") */
} dr_shard_policy;

/** One subgroup type (a replicated object type). */
typedef struct dr_subgroup_type {
    char name[DR_LAYOUT_NAME_MAX]; /**< type name, for logs */
    uint32_t num_subgroups;        /**< identical subgroups of this type (>= 1) */
    dr_shard_policy policy;        /**< shard policy shared by those subgroups */
} dr_subgroup_type;

/** The group's layout configuration: subgroup types in their fixed order. */
typedef struct dr_layout_spec {
    uint32_t num_types;                          /**< entries used in types[] */
    dr_subgroup_type types[DR_LAYOUT_MAX_TYPES]; /**< in type order */
} dr_layout_spec;

/** One shard of one subgroup in one view. */
typedef struct dr_shard_layout {
    uint32_t num_members;                             /**< members, <= MAX_SHARD_MEMBERS */
    uint32_t member_ids[DR_LAYOUT_MAX_SHARD_MEMBERS]; /**< node ids in shard rank order */
    bool is_sender[DR_LAYOUT_MAX_SHARD_MEMBERS];      /**< member may multicast */
    uint32_t num_senders;                             /**< count of is_sender */
    dr_delivery_mode mode;                            /**< ordered or raw */
    uint32_t min_nodes;                               /**< policy minimum for this shard */
    uint32_t max_nodes;                               /**< policy maximum for this shard */
} dr_shard_layout;

/** One subgroup in one view. */
typedef struct dr_subgroup_layout {
    uint32_t type_index;                          /**< index into dr_layout_spec.types */
    uint32_t index_in_type;                       /**< 0..num_subgroups-1 of that type */
    uint32_t num_shards;                          /**< shards used in shards[] */
    dr_shard_layout shards[DR_LAYOUT_MAX_SHARDS]; /**< shards 0 to num_shards - 1 */
} dr_subgroup_layout;

/** A view's complete layout; subgroup ids are indexes into subgroups[]. */
typedef struct dr_layout {
    bool adequate;                                         /**< every shard reached its min */
    uint32_t num_subgroups;                                /**< entries used in subgroups[] */
    uint32_t num_assigned;                                 /**< members in some shard */
    dr_subgroup_layout subgroups[DR_LAYOUT_MAX_SUBGROUPS]; /**< in type order */
} dr_layout;

/** A view: its id and members in rank order (the leader is the lowest-ranked live member). */
typedef struct dr_view {
    int32_t vid;                                         /**< view id, 0 for the first view */
    uint32_t num_members;                                /**< members used below */
    uint32_t member_ids[DR_VIEW_MAX_MEMBERS];            /**< node ids in rank order */
    char addresses[DR_VIEW_MAX_MEMBERS][DR_ADDRESS_MAX]; /**< "ip:port" of each member */
    bool failed[DR_VIEW_MAX_MEMBERS];                    /**< member known failed (view changes) */
    /** Each member's process incarnation (random per process start; 0: not known, as in
     * views rebuilt by a total restart). Tells a restarted process from the one admitted. */
    uint64_t incarnations[DR_VIEW_MAX_MEMBERS];
} dr_view;

/**
 * Fills *policy with a flexible-even-shards policy (num_shards shards of min..max nodes).
 * Pure; never fails (dr_layout_spec_check validates the numbers).
 */
void dr_shard_policy_flexible(dr_shard_policy *policy, uint32_t num_shards, uint32_t min_nodes,
                              uint32_t max_nodes, dr_delivery_mode mode);

/** Fills *policy with a fixed-even-shards policy (num_shards shards of exactly nodes). */
void dr_shard_policy_fixed(dr_shard_policy *policy, uint32_t num_shards, uint32_t nodes,
                           dr_delivery_mode mode);

/**
 * Fills *policy with a custom policy: shard i has mins[i]..maxs[i] members. Copies the
 * arrays; num_shards above DR_LAYOUT_MAX_SHARDS is clamped and rejected later by the check.
 */
void dr_shard_policy_custom(dr_shard_policy *policy, uint32_t num_shards, const uint32_t *mins,
                            const uint32_t *maxs, dr_delivery_mode mode);

/**
 * Checks a spec: type count, subgroups and shards within capacity, 1 <= min <= max <=
 * DR_LAYOUT_MAX_SHARD_MEMBERS. Returns 0 or DR_EINVAL with the reason in *err (may be NULL).
 */
int dr_layout_spec_check(const dr_layout_spec *spec, dr_err *err);

/**
 * The layout function. Computes the layout of a view whose members (node ids, rank order) are
 * members[0..num_members). `previous` is the previous view's layout (NULL for the first view):
 * its shards keep their surviving members. On success returns 0 and fills *out; out->adequate
 * tells whether the view may be installed. Returns DR_EINVAL for a bad spec or member list
 * (duplicate ids, too many members), with the reason in *err. Pure and deterministic.
 */
int dr_layout_compute(const dr_layout_spec *spec, const dr_layout *previous,
                      const uint32_t *members, uint32_t num_members, dr_layout *out, dr_err *err);

/**
 * Finds node_id's shard in subgroup `subgroup`: returns the shard index and sets *rank_out to
 * its rank within the shard (rank_out may be NULL), or returns -1 if it is in no shard there.
 */
int dr_layout_find_shard(const dr_layout *layout, uint32_t subgroup, uint32_t node_id,
                         uint32_t *rank_out);

/**
 * State transfer (PROTOCOL.md §5): true if node_id is a member of shard (subgroup, shard) in
 * `next` but was not a member of that same shard in `previous` (a joiner, or a member that
 * refilled the shard from the unassigned ones): it has no state for the shard yet. Always false
 * when previous is NULL (the first view starts from empty state) or the shard does not exist.
 * Pure.
 */
bool dr_layout_is_new_in_shard(const dr_layout *previous, const dr_layout *next, uint32_t subgroup,
                               uint32_t shard, uint32_t node_id);

/**
 * The member that sends shard (subgroup, shard)'s state to its new members in view `next`: the
 * lowest-ranked member of that shard in `next` that was also in it in `previous`. Returns
 * DR_NODE_NONE when previous is NULL, the shard does not exist, or no member survived (the shard
 * lost all its members: its state is gone and the new members start empty). Pure.
 */
uint32_t dr_layout_state_source(const dr_layout *previous, const dr_layout *next, uint32_t subgroup,
                                uint32_t shard);

/**
 * A 64-bit FNV-1a fingerprint of a layout's meaningful content (members, senders, modes), used
 * to detect nodes configured with different specs. Pure.
 */
uint64_t dr_layout_fingerprint(const dr_layout *layout);

#ifdef __cplusplus
}
#endif
#endif
