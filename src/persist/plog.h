/*
 * The durable, versioned log of one subgroup shard (Derecho's FilePersistLog, rebuilt as one
 * append-only file): what each delivered update was, its version and its hybrid-logical-clock
 * time, kept across crashes. The file format is specified at the top of plog.c and in
 * docs/persistence.md.
 *
 * Life of a record: dr_plog_append() buffers it in memory (strictly increasing version,
 * non-decreasing timestamp); dr_plog_flush() writes everything appended since the last flush with
 * one write and one fdatasync (group commit) and returns the highest durable version, which the
 * runtime publishes as persisted_num. Reads find records by version, by time or latest through an
 * in-memory index (version -> file offset, binary search), built when the log is opened.
 * dr_plog_trim_below()/dr_plog_trim_before_time() drop old records (crash-safe header update),
 * dr_plog_truncate_after() drops new ones (total restart cuts what lies beyond the agreed trim),
 * dr_plog_iterate() replays a version range (rebuilding state at restart).
 *
 * Opening scans the file: a torn tail (short record, bad checksum, zeros or holes, with no record
 * of a later flush after it) is cut and reported; a bad record followed by a record of a later
 * flush is DR_ECORRUPT, never dropped silently (unless the caller asks for the repair with
 * cut_corrupt).
 *
 * Errors: 0 or a negative DR_E* code (derecho/error.h); dr_plog_errmsg() says why. A failed write
 * or fdatasync (disk full, EIO) makes the log fail-stop: that call and every later append, flush,
 * trim and truncate return DR_EIO, and nothing beyond what an earlier flush reported is ever
 * reported durable (after a failed fdatasync the kernel may have dropped the dirty pages, so a
 * retry could lie). The node must stop and restart from the file, which is then scanned again.
 *
 * Threading: every function except open and close is thread-safe. Appends proceed while a flush
 * waits for the disk; flushes, trims and truncations are serialised among themselves.
 */
#ifndef DR_PERSIST_PLOG_H
#define DR_PERSIST_PLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "derecho/error.h"

/** "No version" (Derecho's INVALID_VERSION): an empty log, nothing durable yet. */
#define DR_PLOG_NO_VERSION ((int64_t)-1)

/** Default largest payload of one record (the runtime passes the subgroup's payload limit). */
#define DR_PLOG_DEFAULT_MAX_RECORD_BYTES (64u * 1024 * 1024)

/** Makes a version from a view id and a sequence number: (vid << 32) | seq, as Derecho does. */
static inline int64_t dr_plog_version(int32_t vid, uint32_t seq) {
    return (int64_t)(((uint64_t)(uint32_t)vid << 32) | seq);
}

/** Bounds checked on every append and on every size read from the file, before allocating. */
typedef struct dr_plog_limits {
    uint64_t max_log_entry;    /**< most records kept at once ([PERS] max_log_entry) */
    uint64_t max_data_size;    /**< most payload bytes kept at once ([PERS] max_data_size) */
    uint32_t max_record_bytes; /**< largest payload of one record */
} dr_plog_limits;

/**
 * The system calls the log makes to change the file, replaceable by tests (counting fdatasync
 * calls, injecting ENOSPC or EIO). Each returns what the system call returns and sets errno.
 */
typedef struct dr_plog_io {
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t offset);
    int (*fdatasync)(void *ctx, int fd); /**< the file's data (records, headers, truncations) */
    int (*fsync_dir)(void *ctx, int fd); /**< a directory, after a create or rename in it */
    void *ctx;                           /**< passed to each function */
} dr_plog_io;

/** The real system calls (pwrite, fdatasync, fsync): what a NULL `io` means. Static storage. */
const dr_plog_io *dr_plog_real_io(void);

/** zlib's CRC-32 of len bytes continuing `crc` (0 to start), for lengths of any size. Pure. */
uint32_t dr_plog_crc32(uint32_t crc, const uint8_t *bytes, size_t len);

/** How to open a log. Fill with dr_plog_options_default(), then change what differs. */
typedef struct dr_plog_options {
    dr_plog_limits limits;
    bool reset;           /**< delete an existing log first ([PERS] reset) */
    bool cut_corrupt;     /**< repair: cut at the first bad record even if valid ones follow */
    const dr_plog_io *io; /**< NULL: the real system calls; else must outlive the log */
} dr_plog_options;

/** What dr_plog_open found. */
typedef struct dr_plog_open_info {
    bool created;           /**< the file did not exist (or reset) and was created */
    uint64_t records;       /**< records kept after the scan */
    uint64_t bytes_cut;     /**< bytes of torn/corrupt tail removed (0 for a clean file) */
    int64_t first_version;  /**< oldest kept version, DR_PLOG_NO_VERSION if none */
    int64_t latest_version; /**< newest kept version, DR_PLOG_NO_VERSION if none */
} dr_plog_open_info;

/** One record read back. data is malloc'd, owned by the caller: dr_plog_record_free(). */
typedef struct dr_plog_record {
    int64_t version; /**< (vid << 32) | seq */
    uint64_t hlc_us; /**< hybrid-logical-clock time given at append, µs since the epoch */
    uint32_t len;    /**< payload bytes */
    uint8_t *data;   /**< payload (NULL when len is 0) */
} dr_plog_record;

/** An open log. Opaque. */
typedef struct dr_plog dr_plog;

/**
 * Called by dr_plog_iterate for each record in order. rec and its data are valid only during the
 * call (do not free). Return 0 to go on, anything else to stop (dr_plog_iterate returns it).
 */
typedef int (*dr_plog_visit_fn)(void *ctx, const dr_plog_record *rec);

/** Fills *opts with Derecho's [PERS] defaults (1048576 entries, 512 GiB) and no flags. */
void dr_plog_options_default(dr_plog_options *opts);

/**
 * Opens (or creates) the log `dir/name.plog`. dir is created if missing (one level). A new file is
 * written as `name.plog.tmp`, synced, renamed, and the directory synced, so a log file that exists
 * always has a valid header. The file is then scanned: checksums, version order and the limits in
 * opts (a record count, total payload or record length beyond them is refused before anything
 * is allocated for it); a torn tail is cut and reported in *info (may be NULL).
 * name: letters, digits, '.', '-', '_' (no '/'). opts NULL: defaults.
 * Errors: DR_EINVAL (bad name or limits), DR_EIO (system call failed), DR_ECORRUPT (bad header or
 * a bad record with valid ones after it), DR_ETOOBIG (the file holds more than the limits allow),
 * DR_ENOMEM; the message goes to *err (may be NULL). Blocks on disk I/O. Not thread-safe.
 */
int dr_plog_open(const char *dir, const char *name, const dr_plog_options *opts, dr_plog **out,
                 dr_plog_open_info *info, dr_err *err);

/**
 * Closes the log and frees it. Records appended since the last successful flush are NOT written
 * (they were never reported durable): flush first. NULL is ignored. No other call may be running.
 */
void dr_plog_close(dr_plog *log);

/**
 * Buffers one record (copies data). version must be >= 0 and greater than every version appended
 * before (also those trimmed or truncated away), hlc_us at least the previous record's.
 * Errors: DR_EINVAL (order, len with NULL data), DR_ETOOBIG (len > max_record_bytes, or the log
 * would hold more than max_log_entry records or max_data_size bytes: trim first), DR_ENOMEM,
 * DR_EIO (the log has failed). Never blocks on disk I/O.
 */
int dr_plog_append(dr_plog *log, int64_t version, uint64_t hlc_us, const void *data, size_t len);

/**
 * Group commit: writes every record appended since the last flush, then one fdatasync. On success
 * *durable_version (may be NULL) is the highest version known durable (DR_PLOG_NO_VERSION if
 * none); it never goes backwards except through dr_plog_truncate_after. With nothing to write it
 * returns at once. Errors: DR_EIO (write or fdatasync failed, e.g. disk full: the log has failed,
 * *durable_version is not written, the records of the failed flush are removed from the log).
 * Blocks on disk I/O; appends may run meanwhile.
 */
int dr_plog_flush(dr_plog *log, int64_t *durable_version);

/** The highest durable version (as the last flush returned), DR_PLOG_NO_VERSION if none. */
int64_t dr_plog_durable_version(dr_plog *log);

/** The newest version appended (durable or not), DR_PLOG_NO_VERSION if the log is empty. */
int64_t dr_plog_latest_version(dr_plog *log);

/** The oldest version kept, DR_PLOG_NO_VERSION if the log is empty. */
int64_t dr_plog_first_version(dr_plog *log);

/** How many records the log holds (durable or not). */
uint64_t dr_plog_count(dr_plog *log);

/**
 * Reads the record of exactly `version` into *rec (buffered records included).
 * Errors: DR_ENOTFOUND, DR_ECORRUPT (the bytes on disk no longer match their checksum), DR_EIO,
 * DR_ENOMEM. Blocks on a disk read.
 */
int dr_plog_read(dr_plog *log, int64_t version, dr_plog_record *rec);

/** Reads the newest record whose version is <= version. Errors as dr_plog_read. */
int dr_plog_read_at_or_below(dr_plog *log, int64_t version, dr_plog_record *rec);

/**
 * Reads the newest record whose timestamp is <= hlc_us (the state as of that time). Consistent
 * across replicas only for times below the shard's stability frontier (the caller checks that).
 * Errors as dr_plog_read.
 */
int dr_plog_read_by_time(dr_plog *log, uint64_t hlc_us, dr_plog_record *rec);

/** Reads the newest record. DR_ENOTFOUND if the log is empty. Errors as dr_plog_read. */
int dr_plog_read_latest(dr_plog *log, dr_plog_record *rec);

/** Frees rec->data and clears *rec. NULL is ignored. */
void dr_plog_record_free(dr_plog_record *rec);

/**
 * Calls fn for each record with from <= version <= to, oldest first (restart: replay everything
 * with from = 0, to = INT64_MAX). Records appended during the iteration may or may not be seen.
 * Returns 0, fn's non-zero value if it stopped the walk, or an error as dr_plog_read.
 * fn runs without the log's lock: it may call other dr_plog functions.
 */
int dr_plog_iterate(dr_plog *log, int64_t from, int64_t to, dr_plog_visit_fn fn, void *ctx);

/**
 * Drops every record with a version < version, durably (header rewrite + fdatasync) before it
 * returns. Only durable records can be trimmed: DR_ESTATE if the cut reaches records not yet
 * flushed. Later appends must stay above the trimmed versions, and a log trimmed empty still
 * reports its newest durable version (also after a reopen), so persisted_num never goes back. Freed
 * file space is returned with a punched hole where the file system can. Errors: DR_ESTATE, DR_EIO
 * (the log has failed). Blocks on disk I/O.
 */
int dr_plog_trim_below(dr_plog *log, int64_t version);

/**
 * Drops every record with a timestamp < hlc_us (as dr_plog_trim_below on the first record at or
 * after hlc_us). To keep the state as of time t readable, trim below dr_plog_read_by_time(t)'s
 * version instead. Errors as dr_plog_trim_below.
 */
int dr_plog_trim_before_time(dr_plog *log, uint64_t hlc_us);

/**
 * Drops every record with a version > version, buffered or durable; the file is cut and synced
 * before it returns. Later appends may reuse the dropped versions. The durable version becomes
 * the newest kept one (never less than the versions a trim dropped, as in dr_plog_trim_below).
 * Errors: DR_EIO (the log has failed). Blocks on disk I/O.
 */
int dr_plog_truncate_after(dr_plog *log, int64_t version);

/** The message of the last failure on this log ("" if none); valid until the next call. */
const char *dr_plog_errmsg(dr_plog *log);

/** The file's path (owned by the log). */
const char *dr_plog_path(const dr_plog *log);

#endif
