/** @file
 * Durable subgroups (Derecho's persistent mode; docs/persistence.md): every ordered message a
 * durable shard delivers is appended to that shard's versioned log on disk, with its version
 * ((vid << 32) | seq) and a timestamp, and made durable by group commit; the group tracks what
 * each member persisted and the shard's persistence frontier (the highest version on disk at
 * every member of the shard).
 *
 * Configuration: a subgroup type is durable when its profile says `durable = true`
 * (`[SUBGROUP/<profile>]`, falling back to `[SUBGROUP/DEFAULT]`); logs live under `[PERS]
 * file_path` (relative paths: relative to the working directory), one file per shard,
 * `<type name>-<index in type>-<shard>.plog`; `[PERS] max_log_entry` / `max_data_size` bound
 * a log and `[PERS] reset = true` deletes an existing log when the node first opens it. Only
 * ordered shards are logged (raw deliveries have no version).
 *
 * Notifications: dr_group_callbacks.on_persisted (group.h) runs on the delivery thread, after
 * the deliveries it covers, for local persistence (global false) and for the frontier (global
 * true). A caller can also block for either with dr_group_wait_persisted, e.g. with the version
 * of its own ordered call (dr_rpc_results_version, or dr_rpc_results_wait_persisted).
 *
 * Reads: dr_group_read_versioned returns a logged message by version (exact, or the newest at or
 * below), by time (the newest with timestamp <= t) or the latest, from this node's own log;
 * dr_group_read_replay_base returns the state the log starts from where it does not hold the
 * shard's whole history (a joiner's log, or one trimmed by a checkpoint).
 *
 * Replay: at a total restart, the log of each durable shard of this node is handed back to the
 * application (dr_group_callbacks.on_replay, group.h) up to the restart's trim, before the
 * restart view; dr_group_save_replay_base keeps the state a joiner received, so that its replay
 * is complete too, and dr_group_checkpoint saves the state at a globally persisted version and
 * trims the log below it (replay starts from that base).
 *
 * Views: a node with a durable subgroup also saves every view it installs (`last_view` under
 * file_path); dr_group_load_saved_view reads it back without a running group.
 *
 * Every function here may be called from any thread, including the callbacks (a read blocks on
 * a disk read; a wait must not run on the delivery thread, which delivers what it waits for).
 */
#ifndef DERECHO_DURABLE_H
#define DERECHO_DURABLE_H

#include "derecho/error.h"
#include "derecho/group.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The highest version of my shard of `subgroup` known persisted here (global false) or at every
 * member of the shard (global true); -1 if none yet, if the subgroup is not durable or this node
 * holds no shard of it.
 */
int64_t dr_group_persisted_version(dr_group *group, uint32_t subgroup, bool global);

/**
 * Blocks until `version` of my shard of `subgroup` is persisted here (global false) or at every
 * member of the shard (global true), up to timeout_ms (-1: forever). Returns 0; DR_ETIMEDOUT;
 * DR_ESTATE if the subgroup is not durable or this node holds no log of it (yet: a view must
 * be installed first); DR_EIO if this node's log failed (disk full, I/O error: the node stops
 * acknowledging and leaves the group); DR_ECLOSED once the group is being destroyed.
 * Not from the delivery thread.
 */
int dr_group_wait_persisted(dr_group *group, uint32_t subgroup, int64_t version, bool global,
                            int timeout_ms);

/** How dr_group_read_versioned picks a record. */
typedef enum dr_read_mode {
    DR_READ_EXACT = 0,       /**< the record of exactly `key` (a version) */
    DR_READ_AT_OR_BELOW = 1, /**< the newest record whose version is <= `key` */
    DR_READ_BY_TIME = 2,     /**< the newest record whose timestamp (µs) is <= `key` */
    DR_READ_LATEST = 3,      /**< the newest record (`key` is ignored) */
} dr_read_mode;

/** One logged message, read back. `bytes` is owned: release with dr_versioned_clear. */
typedef struct dr_versioned {
    int64_t version;       /**< (vid << 32) | seq */
    uint64_t timestamp_us; /**< the log's timestamp of the version (see docs/persistence.md) */
    uint8_t *bytes;        /**< the delivered payload (malloc), NULL when len is 0 */
    size_t len;            /**< payload bytes */
} dr_versioned;

/**
 * Reads from this node's log of its shard of `subgroup` the record `mode` and `key` select into
 * *out (the caller then owns out->bytes). Records delivered here but not yet flushed are
 * readable too (check dr_group_persisted_version for durability). A read by time is the same at
 * every replica that logged the same history (timestamps are assigned deterministically in
 * delivery order; docs/persistence.md). Returns 0; DR_ENOTFOUND (no such record); DR_ESTATE (not
 * durable here / no log yet); DR_EINVAL (bad mode); DR_ECORRUPT (the bytes on disk no longer
 * match their checksum); DR_EIO; DR_ENOMEM. Blocks on a disk read.
 */
int dr_group_read_versioned(dr_group *group, uint32_t subgroup, dr_read_mode mode, int64_t key,
                            dr_versioned *out);

/** Frees out->bytes and zeroes *out. NULL is a no-op. */
void dr_versioned_clear(dr_versioned *out);

/**
 * Saves `bytes` (the state of my shard of `subgroup` that this node received by state transfer
 * on joining the shard in view `vid`, restored already) durably beside the shard's log, as the
 * base a total restart's replay starts from (dr_replay_fn, base == true): the log of a node
 * that joined a running shard starts at its first view, and the state before it is this base.
 * Replay then hands the base, then the logged versions from (vid << 32) on. Replaces an earlier
 * base; [PERS] reset deletes it with the log. Blocks on the disk (temp file, fdatasync, rename,
 * directory fsync). Returns 0; DR_ESTATE (the subgroup is not durable here, or no log is open:
 * nothing to do); DR_ETOOBIG (beyond [DERECHO] max_state_transfer_size); DR_EIO; DR_ENOMEM.
 * Any thread (the rpc layer calls it on the delivery thread, in the view upcall).
 */
int dr_group_save_replay_base(dr_group *group, uint32_t subgroup, int32_t vid, const uint8_t *bytes,
                              size_t len);

/**
 * Reads back the replay base of this node's log of its shard of `subgroup` (the state saved by
 * dr_group_save_replay_base on joining the shard, or by dr_group_checkpoint): *floor_out is its
 * floor F (the base is the state after every version below F; the log holds no record below F),
 * *bytes_out the state (malloc'd, owned by the caller: free it; NULL when *len_out is 0). With
 * the log's records from F on, the state at any version >= F - 1 can be rebuilt
 * (docs/persistence.md "Reads"); versions below F - 1 are gone on this node. Returns 0;
 * DR_ENOTFOUND (no base: the log holds the shard's whole history, nothing was trimmed);
 * DR_ESTATE (not durable here / no log yet); DR_ECORRUPT (a damaged base file); DR_EIO;
 * DR_ENOMEM. Blocks on a disk read; any thread (a checkpoint running meanwhile may replace the
 * base just read).
 */
int dr_group_read_replay_base(dr_group *group, uint32_t subgroup, int64_t *floor_out,
                              uint8_t **bytes_out, size_t *len_out);

/**
 * Checkpoints my shard of `subgroup` so that its log stops growing without bound: `bytes` is
 * the application's state as of `version` (everything delivered up to and including it, nothing
 * after), saved durably as the replay base (as dr_group_save_replay_base), after which the log
 * drops every record up to `version`. A total restart's replay then hands this base and the
 * records after it; reads of the dropped versions return DR_ENOTFOUND.
 * `version` must be globally persisted (dr_group_persisted_version(..., true) >= version), so
 * that no restart can cut below it: the usual pattern is to serialize the state on the delivery
 * thread at some version, then, from another thread, dr_group_wait_persisted(global) for it and
 * checkpoint. Checkpoints only move forward.
 * Returns 0; DR_EAGAIN (`version` is not globally persisted yet, or another checkpoint of this
 * log is running); DR_EINVAL (negative version, NULL bytes with len > 0, or older than the
 * current base); DR_ESTATE (the subgroup is not durable here, or no log is open); DR_ETOOBIG
 * (beyond [DERECHO] max_state_transfer_size); DR_EIO; DR_ENOMEM. Blocks on the disk (the base's
 * temp file, fdatasync and rename; the log's header rewrite). Any thread but the delivery thread
 * is fine; on the delivery thread it holds up deliveries for the disk writes.
 */
int dr_group_checkpoint(dr_group *group, uint32_t subgroup, int64_t version, const uint8_t *bytes,
                        size_t len);

/**
 * The last view this node installed, as saved under `[PERS] file_path` (`last_view`): a node
 * configured with a durable subgroup saves every view it installs, durably, before any delivery
 * of that view, so a restarted node finds its last view (what total restart will start from).
 * Needs no running group. Fills *view (id, members, addresses) and, if not NULL, *assignment
 * (the view's shards: members and sender flags per shard, nothing else set). Returns 0,
 * DR_ENOTFOUND (nothing saved), DR_ECORRUPT (a damaged or foreign file), DR_ETOOBIG, DR_EIO,
 * DR_ENOMEM, with *err (may be NULL). Any thread.
 */
int dr_group_load_saved_view(const dr_config *config, dr_view *view, dr_layout *assignment,
                             dr_err *err);

#ifdef __cplusplus
}
#endif
#endif
