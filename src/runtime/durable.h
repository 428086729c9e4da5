/*
 * The runtime's durable logs (include/derecho/durable.h, docs/persistence.md): one versioned log
 * (src/persist/plog.h) per durable shard this node holds, fed with every ordered delivery, and a
 * persistence thread that group-commits them and reports what is durable. Internal to
 * src/runtime.
 *
 * Threads and locks: durable_on_deliver / durable_on_view / durable_set_global run with the
 * group's core lock held (network or application thread); they take this module's lock only
 * briefly. Only a view install touches the disk (it saves the view and opens new logs); a
 * delivery is a memory copy. The persistence
 * thread sleeps on a condition variable until appends arrive, flushes each log with pending
 * records (one write + one fdatasync for all of them), then, holding no lock of this module,
 * calls `report` (which takes the core lock). Lock order: core lock, then the durable lock.
 */
#ifndef DR_RUNTIME_DURABLE_H
#define DR_RUNTIME_DURABLE_H

#include "core/core.h"
#include "derecho/config.h"
#include "derecho/durable.h"
#include "persist/plog.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/** The last installed view's file under [PERS] file_path, and its largest accepted size. */
#define DURABLE_VIEW_FILE "last_view"
/* Present from a DR_ACTION_DISCARD_DURABLE until the next saved view: the saved view names a
 * membership this node holds no state for (dr_core_restart_options.stateless). */
#define DURABLE_STATELESS_FILE "last_view.stateless"
/* The acceptor's vote of a total restart in progress (DR_ACTION_SAVE_RESTART_VOTE). */
#define DURABLE_VOTE_FILE      "restart_vote"
#define DURABLE_VIEW_MAX_BYTES (1u << 20)

/**
 * Told by the persistence thread (no durable lock held) that `subgroup`'s log is durable up to
 * `version` (failed: the log failed instead, version is -1).
 */
typedef void (*durable_report_fn)(void *ctx, uint32_t subgroup, int64_t version, bool failed);

/** The log of my shard of one subgroup. */
typedef struct durable_log {
    dr_plog *log;        /* NULL until the first view with my shard of it */
    uint32_t shard;      /* shard index the log belongs to */
    uint64_t last_stamp; /* timestamp of the last record appended */
    int64_t appended;    /* newest version appended (-1) */
    int64_t local;       /* newest version durable here (-1) */
    int64_t global;      /* the shard's persistence frontier (-1) */
    bool failed;         /* an append or flush failed: nothing more is logged or reported */
    bool replay_pending; /* a total restart truncated the log: replay it before the view */
    int64_t replay_to;   /* ...up to this version (the restart's trim) */
    bool base_known;     /* base_floor is known (read from the base file, or saved here) */
    int64_t base_floor;  /* the saved base's floor (versions below it are in the base), 0: none */
    bool checkpointing;  /* a dr_group_checkpoint is running on this log */
    char name[DR_LAYOUT_NAME_MAX + 32]; /* the log's file name without .plog */
} durable_log;

typedef struct durable {
    pthread_mutex_t lock;  /* guards everything below except the immutable fields */
    pthread_cond_t work;   /* appends arrived, or stopping */
    pthread_cond_t change; /* local / global versions moved, a log failed, or stopping */
    bool initialized;      /* durable_start ran (the lock and conditions exist) */
    bool stopping;
    bool started;
    pthread_t thread;
    bool durable_type[DR_LAYOUT_MAX_TYPES]; /* immutable: which subgroup types are durable */
    bool any;                               /* immutable: some type is durable */
    char dir[4096];                         /* immutable: [PERS] file_path */
    dr_plog_options options;                /* immutable: limits, reset */
    dr_layout_spec spec;                    /* immutable: type names for the log names */
    uint64_t max_base_bytes;                /* immutable: [DERECHO] max_state_transfer_size */
    uint32_t replaying;  /* replays and checkpoints running (durable_stop waits for them) */
    bool stateless_mark; /* DURABLE_STATELESS_FILE exists (network thread only) */
    bool vote_file;      /* DURABLE_VOTE_FILE may exist (network thread only) */
    uint8_t *vote;       /* the vote loaded by durable_restart_inputs (owned) */
    durable_log logs[DR_LAYOUT_MAX_SUBGROUPS];
    durable_report_fn report;
    void *report_ctx;
} durable;

/**
 * Reads the durable flags ([SUBGROUP/<profile>] durable) and [PERS] keys; starts the persistence
 * thread if any type is durable. max_record_bytes: the group's largest payload. Returns 0, or
 * DR_EINVAL / DR_EIO (thread) with *err.
 */
int durable_start(durable *d, const dr_config *config, const dr_layout_spec *spec,
                  uint32_t max_record_bytes, durable_report_fn report, void *report_ctx,
                  dr_err *err);

/**
 * A view was installed: saves it durably as file_path/last_view (two fdatasyncs and a directory
 * fsync, under the core lock: view changes are rare, and no delivery of the view may be logged
 * before the view is), then opens the log of every durable shard of mine not yet open. Returns 0,
 * or the first error (logged; a failed open marks that subgroup failed; the caller makes the node
 * leave).
 */
int durable_on_view(durable *d, const dr_view_info *info, uint32_t my_id);

/**
 * Total restart (docs/persistence.md "Total restart"): if some type is durable, [PERS] reset is
 * false and file_path/last_view exists, loads the saved view into out->saved_view (*frame
 * receives the malloc'd bytes, the caller frees them after dr_core_create), opens the log of my
 * shard of every durable subgroup of that view and sets out->tails to what each holds (-1:
 * empty). Call after durable_start, before dr_core_create. Returns 0; DR_ENOTFOUND: no restart
 * (a fresh start); or DR_ECORRUPT / DR_EIO / DR_ENOMEM with *err (a saved view or log that
 * cannot be read: the caller should not start).
 */
int durable_restart_inputs(durable *d, uint32_t my_id, dr_core_restart_options *out,
                           uint8_t **frame, dr_err *err);

/**
 * DR_ACTION_TRUNCATE: removes every record above `version` from `subgroup`'s log, durably
 * (dr_plog_truncate_after), before the restart view is installed. Returns 0 (no log: nothing to
 * do) or the log's error (the log is then failed).
 */
int durable_truncate(durable *d, uint32_t subgroup, int64_t version);

/**
 * After the DR_ACTION_TRUNCATEs of a total restart, when its view is installed (core lock held):
 * whether `subgroup`'s log is to be replayed, and up to which version (*to, the trim). Clears the
 * mark, so each truncation is replayed once.
 */
bool durable_take_replay(durable *d, uint32_t subgroup, int64_t *to);

/**
 * Replays `subgroup`'s log (docs/persistence.md "Replay"; delivery thread, no lock held): the
 * saved base if there is one (fn with base true), then every record from the base's floor (or
 * the first) up to `to`, oldest first (fn with base false). Reads one record at a time (appends
 * of the new view go on meanwhile). Returns 0; DR_ECLOSED (stopping); fn's non-zero return;
 * DR_ECORRUPT / DR_EIO / DR_ENOMEM / DR_ETOOBIG from the base or the log (logged).
 */
int durable_replay(durable *d, uint32_t subgroup, uint32_t shard, int64_t to, dr_replay_fn fn,
                   void *ctx);

/**
 * DR_ACTION_DISCARD_DURABLE (the node gives up its restart to join as a new member; core lock
 * held, before any view): empties and closes every log (the first view of the join opens the
 * log of the shard it is given), deletes every replay base and marks the saved view stateless
 * (DURABLE_STATELESS_FILE), each durably. Returns 0 or the first error (logged).
 */
int durable_discard(durable *d);

/**
 * DR_ACTION_SAVE_RESTART_VOTE (core lock held): saves the core's vote bytes durably as
 * DURABLE_VOTE_FILE (dr_blob_save) before the next action. durable_restart_inputs hands them
 * back (out->vote, owned by the module); the next saved view deletes the file. Returns 0 or
 * the error (logged).
 */
int durable_save_vote(durable *d, const uint8_t *bytes, size_t len);

/** See dr_group_save_replay_base. */
int durable_save_base(durable *d, uint32_t subgroup, int32_t vid, const uint8_t *bytes, size_t len);

/** See dr_group_checkpoint. */
int durable_checkpoint(durable *d, uint32_t subgroup, int64_t version, const uint8_t *bytes,
                       size_t len);

/**
 * An ordered message was delivered (version >= 0): appends it to its shard's log (copied) and
 * wakes the persistence thread. No-op for subgroups without a log. Returns 0, or the append's
 * error (the log is then failed: nothing more is reported for it; the caller, which holds the
 * core lock, makes the node leave: `report` is not called).
 */
int durable_on_deliver(durable *d, uint32_t subgroup, int64_t version, uint64_t timestamp_us,
                       const uint8_t *bytes, size_t len);

/** The core's frontier (DR_ACTION_PERSISTED) for `subgroup`. */
void durable_set_global(durable *d, uint32_t subgroup, int64_t version);

/** See dr_group_persisted_version. */
int64_t durable_version(durable *d, uint32_t subgroup, bool global);

/** See dr_group_wait_persisted (`closing`: the group is shutting down). */
int durable_wait(durable *d, uint32_t subgroup, int64_t version, bool global, int timeout_ms);

/** See dr_group_read_versioned. */
int durable_read(durable *d, uint32_t subgroup, dr_read_mode mode, int64_t key, dr_versioned *out);

/** See dr_group_read_replay_base. */
int durable_read_base(durable *d, uint32_t subgroup, int64_t *floor, uint8_t **bytes, size_t *len);

/**
 * Stops the persistence thread after a last flush of every log (so what was delivered is on
 * disk), wakes every waiter (DR_ECLOSED), waits for running replays to stop, closes the logs. Safe
 * on a durable never started.
 */
void durable_stop(durable *d);

#endif
