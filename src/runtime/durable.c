/*
 * Durable logs of the runtime and their persistence thread (design in durable.h and
 * docs/persistence.md "How the runtime wires it").
 *
 * Timestamps: the record of a version gets max(sender's send time, previous record's + 1) µs.
 * Every replica that logged the same history assigns the same stamps (the rule only uses the
 * message and the log), so reads by time agree across them; the stamps are non-decreasing along
 * the log, as dr_plog requires, even when senders' clocks disagree.
 *
 * Replay base (`<log name>.base` beside the log, dr_blob: checksummed, replaced by rename):
 *   magic u32 "DRRB" | format u32 = 1 | floor i64 (records >= floor are replayed on top) |
 *   the state bytes (what dr_group_save_replay_base was given)
 * all little-endian. floor = (vid << 32) of the view in which the node received the state
 * (dr_group_save_replay_base), or the checkpoint's version + 1 (dr_group_checkpoint, which then
 * trims the log below the floor: the base is saved first, so a crash in between leaves a base
 * and an untrimmed log, whose records below the floor the next replay skips, and trims: after a
 * replay the log starts at the base's floor).
 */
#include "runtime/durable.h"

#include "core/wire.h"
#include "derecho/log.h"
#include "persist/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ------------------------------------------------------------------------ */

static int read_config(durable *d, const dr_config *config, const dr_layout_spec *spec,
                       uint32_t max_record_bytes, dr_err *err) {
    dr_plog_options_default(&d->options);
    d->options.limits.max_record_bytes = max_record_bytes;
    uint64_t value = 0;
    if (dr_config_get_u64(config, "PERS", "max_log_entry", &value) == DR_OK)
        d->options.limits.max_log_entry = value;
    if (dr_config_get_u64(config, "PERS", "max_data_size", &value) == DR_OK)
        d->options.limits.max_data_size = value;
    dr_config_get_bool(config, "PERS", "reset", &d->options.reset);
    d->max_base_bytes = 1ull << 30; /* [DERECHO] max_state_transfer_size's default (docs/rpc.md) */
    if (dr_config_get_u64(config, "DERECHO", "max_state_transfer_size", &value) == DR_OK)
        d->max_base_bytes = value;
    const char *path = dr_config_get(config, "PERS", "file_path");
    if (!path || !*path)
        path = ".plog";
    if (strlen(path) >= sizeof d->dir)
        return dr_err_set(err, DR_EINVAL, "[PERS] file_path is too long");
    snprintf(d->dir, sizeof d->dir, "%s", path);
    d->spec = *spec;
    for (uint32_t t = 0; t < spec->num_types && t < DR_LAYOUT_MAX_TYPES; t++) {
        const char *profile =
            spec->types[t].policy.profile[0] ? spec->types[t].policy.profile : "DEFAULT";
        char section[64];
        snprintf(section, sizeof section, "SUBGROUP/%s", profile);
        bool on = false;
        int rc = dr_config_get_bool(config, section, "durable", &on);
        if (rc != DR_OK && rc != DR_ENOTFOUND)
            return dr_err_set(err, DR_EINVAL, "[%s] durable is not a boolean", section);
        d->durable_type[t] = on;
        d->any |= on;
    }
    return DR_OK;
}

/* Creates the log directory if missing (one level, as dr_plog_open does) and syncs its parent,
 * so the saved view has a place before the first log is opened. */
static int ensure_dir(const char *dir, dr_err *err) {
    if (mkdir(dir, 0755) != 0)
        return errno == EEXIST ? DR_OK
                               : dr_err_set(err, DR_EIO, "%s: mkdir: %s", dir, strerror(errno));
    char parent[sizeof((durable *)0)->dir];
    snprintf(parent, sizeof parent, "%s", dir);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else
        slash[slash == parent ? 1 : 0] = '\0';
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 ? fsync(fd) : -1;
    int saved = errno;
    if (fd >= 0)
        close(fd);
    return rc == 0 ? DR_OK : dr_err_set(err, DR_EIO, "%s: fsync: %s", parent, strerror(saved));
}

/* ---- persistence thread ------------------------------------------------------------------- */

/* Flushes every log with pending appends; reports each outside the lock. */
static void flush_pending(durable *d) {
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        pthread_mutex_lock(&d->lock);
        durable_log *entry = &d->logs[s];
        bool pending = entry->log && !entry->failed && entry->appended > entry->local;
        dr_plog *log = entry->log;
        pthread_mutex_unlock(&d->lock);
        if (!pending)
            continue;
        int64_t durable_version = -1;
        int rc = dr_plog_flush(log, &durable_version); /* appends go on meanwhile */
        pthread_mutex_lock(&d->lock);
        if (rc != DR_OK) {
            entry->failed = true;
        } else if (durable_version > entry->local) {
            entry->local = durable_version;
        }
        pthread_cond_broadcast(&d->change);
        pthread_mutex_unlock(&d->lock);
        if (rc != DR_OK) {
            DR_ERROR(DR_LOGM_PERSISTENCE,
                     "log of subgroup %" PRIu32 " failed to flush (%s): nothing more is reported "
                     "durable; the node leaves the group",
                     s, dr_strerror(rc));
            d->report(d->report_ctx, s, -1, true);
        } else if (durable_version >= 0) {
            d->report(d->report_ctx, s, durable_version, false);
        }
    }
}

static bool any_pending_locked(const durable *d) {
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        const durable_log *entry = &d->logs[s];
        if (entry->log && !entry->failed && entry->appended > entry->local)
            return true;
    }
    return false;
}

static void *persist_main(void *arg) {
    durable *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->stopping && !any_pending_locked(d))
            pthread_cond_wait(&d->work, &d->lock);
        bool stopping = d->stopping;
        pthread_mutex_unlock(&d->lock);
        flush_pending(d); /* one group commit per log for everything appended so far */
        pthread_mutex_lock(&d->lock);
        if (stopping)
            break;
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int durable_start(durable *d, const dr_config *config, const dr_layout_spec *spec,
                  uint32_t max_record_bytes, durable_report_fn report, void *report_ctx,
                  dr_err *err) {
    memset(d, 0, sizeof *d);
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        d->logs[s].appended = d->logs[s].local = d->logs[s].global = -1;
    d->report = report;
    d->report_ctx = report_ctx;
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&d->work, NULL);
    pthread_cond_init(&d->change, &monotonic);
    pthread_condattr_destroy(&monotonic);
    d->initialized = true;
    int rc = read_config(d, config, spec, max_record_bytes, err);
    if (rc != DR_OK || !d->any)
        return rc;
    rc = ensure_dir(d->dir, err);
    if (rc != DR_OK)
        return rc;
    char mark[sizeof d->dir + 32];
    snprintf(mark, sizeof mark, "%s/%s", d->dir, DURABLE_STATELESS_FILE);
    d->stateless_mark = access(mark, F_OK) == 0; /* the next saved view removes it */
    snprintf(mark, sizeof mark, "%s/%s", d->dir, DURABLE_VOTE_FILE);
    d->vote_file = access(mark, F_OK) == 0; /* likewise */
    if (pthread_create(&d->thread, NULL, persist_main, d) != 0)
        return dr_err_set(err, DR_EIO, "cannot start the persistence thread");
    pthread_setname_np(d->thread, "dr-persist");
    d->started = true;
    DR_INFO(DR_LOGM_PERSISTENCE, "durable subgroups log under %s", d->dir);
    return DR_OK;
}

/* ---- events (core lock held) -------------------------------------------------------------- */

#define BASE_MAGIC        0x42525244u /* "DRRB" */
#define BASE_FORMAT       1u
#define BASE_HEADER_BYTES 16u

static void base_file_name(char *out, size_t cap, const char *log_name) {
    snprintf(out, cap, "%s.base", log_name);
}

/* Deletes a log's replay base, durably (the directory is synced), if there is one. */
/* Deletes d->dir/file durably (the directory is synced), if it exists; `why` for the log line. */
static void remove_file(durable *d, const char *file, const char *why) {
    char path[sizeof d->dir + DR_LAYOUT_NAME_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", d->dir, file);
    if (unlink(path) != 0)
        return;
    int fd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0)
            DR_WARN(DR_LOGM_PERSISTENCE, "%s: fsync: %s", d->dir, strerror(errno));
        close(fd);
    }
    DR_INFO(DR_LOGM_PERSISTENCE, "%s: deleted %s", why, path);
}

static void remove_base(durable *d, const char *log_name) {
    char file[DR_LAYOUT_NAME_MAX + 64];
    base_file_name(file, sizeof file, log_name);
    remove_file(d, file, d->options.reset ? "[PERS] reset" : "replay base dropped");
}

static int open_log(durable *d, const dr_layout *layout, uint32_t subgroup, uint32_t shard) {
    const dr_subgroup_layout *sg = &layout->subgroups[subgroup];
    char name[DR_LAYOUT_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s-%" PRIu32 "-%" PRIu32, d->spec.types[sg->type_index].name,
             sg->index_in_type, shard);
    dr_plog *log = NULL;
    dr_plog_open_info info;
    dr_err err = {0};
    if (d->options.reset)
        remove_base(d, name); /* a base belongs to the log it completes */
    bool reset = d->options.reset;
    int rc = dr_plog_open(d->dir, name, &d->options, &log, &info, &err);
    uint64_t last_stamp = 0;
    if (rc == DR_OK && info.records > 0) {
        dr_plog_record latest;
        rc = dr_plog_read_latest(log, &latest);
        if (rc == DR_OK)
            last_stamp = latest.hlc_us;
        dr_plog_record_free(&latest);
    }
    pthread_mutex_lock(&d->lock);
    durable_log *entry = &d->logs[subgroup];
    entry->shard = shard;
    snprintf(entry->name, sizeof entry->name, "%s", name);
    if (rc != DR_OK) {
        entry->failed = true;
        pthread_cond_broadcast(&d->change);
    } else {
        entry->log = log;
        entry->last_stamp = last_stamp;
        entry->base_known = reset; /* after a reset there is no base; otherwise read it lazily */
        entry->base_floor = 0;
    }
    pthread_mutex_unlock(&d->lock);
    if (rc != DR_OK) {
        DR_ERROR(DR_LOGM_PERSISTENCE, "cannot open the log %s/%s.plog: %s", d->dir, name,
                 err.msg[0] ? err.msg : dr_strerror(rc));
        dr_plog_close(log);
        return rc;
    }
    DR_INFO(DR_LOGM_PERSISTENCE,
            "log %s/%s.plog open: %" PRIu64 " records (latest version %" PRId64 ")%s", d->dir, name,
            info.records, info.latest_version, info.bytes_cut ? ", torn tail cut" : "");
    return DR_OK;
}

/*
 * Saves the view being installed as `file_path/last_view` (dr_blob_save: temp file, fdatasync,
 * rename, directory fsync), before any delivery of that view is handed out, so every version in
 * a log belongs to the saved view or an earlier one. The encoding is the core's VIEW frame with
 * the view's own shard assignment (core/wire.h), decoded with its checks at load.
 */
static int save_view(durable *d, const dr_view_info *info, uint32_t my_id) {
    dr_buf buf;
    dr_buf_init(&buf, 0);
    int rc =
        dr_wire_encode_view_with_layout(&buf, my_id, &info->view, &info->layout, &info->layout);
    dr_err err = {0};
    if (rc == DR_OK && !buf.failed)
        rc = dr_blob_save(d->dir, DURABLE_VIEW_FILE, buf.data, buf.len, NULL, &err);
    else if (rc == DR_OK)
        rc = DR_ENOMEM;
    dr_buf_free(&buf);
    if (rc != DR_OK)
        DR_ERROR(DR_LOGM_PERSISTENCE, "cannot save view %" PRId32 " under %s: %s", info->view.vid,
                 d->dir, err.msg[0] ? err.msg : dr_strerror(rc));
    else if (d->stateless_mark) { /* the saved view is this node's own again */
        remove_file(d, DURABLE_STATELESS_FILE, "a view is saved");
        d->stateless_mark = false;
    }
    if (rc == DR_OK && d->vote_file) { /* a restart vote is for an older saved view now */
        remove_file(d, DURABLE_VOTE_FILE, "a view is saved");
        d->vote_file = false;
    }
    return rc;
}

int durable_save_vote(durable *d, const uint8_t *bytes, size_t len) {
    if (!d->any)
        return DR_OK;
    dr_err err = {0};
    d->vote_file = true;
    int rc = dr_blob_save(d->dir, DURABLE_VOTE_FILE, bytes, len, NULL, &err);
    if (rc != DR_OK)
        DR_ERROR(DR_LOGM_PERSISTENCE, "cannot save the restart vote under %s: %s", d->dir,
                 err.msg[0] ? err.msg : dr_strerror(rc));
    return rc;
}

int durable_on_view(durable *d, const dr_view_info *info, uint32_t my_id) {
    if (!d->any)
        return DR_OK;
    int first_error = save_view(d, info, my_id);
    const dr_layout *layout = &info->layout;
    for (uint32_t s = 0; s < layout->num_subgroups && s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        uint32_t type = layout->subgroups[s].type_index;
        if (type >= DR_LAYOUT_MAX_TYPES || !d->durable_type[type])
            continue;
        int shard = dr_layout_find_shard(layout, s, my_id, NULL);
        if (shard < 0 || layout->subgroups[s].shards[shard].mode != DR_MODE_ORDERED)
            continue;
        pthread_mutex_lock(&d->lock);
        bool have = d->logs[s].log != NULL || d->logs[s].failed;
        pthread_mutex_unlock(&d->lock);
        if (have)
            continue; /* members never move between shards (layout.h) */
        int rc = open_log(d, layout, s, (uint32_t)shard);
        if (rc != DR_OK && first_error == DR_OK)
            first_error = rc;
    }
    return first_error;
}

/* The type of subgroup id `s` in a layout of `spec` (subgroups numbered type by type). */
static uint32_t spec_type_of(const dr_layout_spec *spec, uint32_t s) {
    uint32_t first = 0;
    for (uint32_t t = 0; t < spec->num_types && t < DR_LAYOUT_MAX_TYPES; t++) {
        if (s < first + spec->types[t].num_subgroups)
            return t;
        first += spec->types[t].num_subgroups;
    }
    return DR_LAYOUT_MAX_TYPES; /* beyond the spec: never durable */
}

/* The index of subgroup id `s` within its type. */
static uint32_t spec_index_in_type(const dr_layout_spec *spec, uint32_t s) {
    uint32_t first = 0;
    for (uint32_t t = 0; t < spec->num_types && t < DR_LAYOUT_MAX_TYPES; t++) {
        if (s < first + spec->types[t].num_subgroups)
            return s - first;
        first += spec->types[t].num_subgroups;
    }
    return 0;
}

int durable_restart_inputs(durable *d, uint32_t my_id, dr_core_restart_options *out,
                           uint8_t **frame, dr_err *err) {
    *frame = NULL;
    if (!d->any || d->options.reset)
        return DR_ENOTFOUND;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", d->dir, DURABLE_VIEW_FILE);
    if (access(path, F_OK) != 0)
        return DR_ENOTFOUND; /* never saved a view: a fresh start */
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = dr_blob_load(d->dir, DURABLE_VIEW_FILE, DURABLE_VIEW_MAX_BYTES, &bytes, &len, err);
    if (rc != DR_OK)
        return rc;
    char mark[sizeof path];
    snprintf(mark, sizeof mark, "%s/%s", d->dir, DURABLE_STATELESS_FILE);
    out->stateless = d->stateless_mark = access(mark, F_OK) == 0;
    size_t vote_len = 0;
    free(d->vote);
    d->vote = NULL;
    int vote_rc = dr_blob_load(d->dir, DURABLE_VOTE_FILE, DR_RESTART_MAX_VOTE_BYTES, &d->vote,
                               &vote_len, err);
    if (vote_rc != DR_OK && vote_rc != DR_ENOTFOUND)
        return vote_rc; /* a vote that cannot be read must not be forgotten silently */
    d->vote_file = vote_rc == DR_OK;
    out->vote = d->vote;
    out->vote_len = vote_len;
    dr_msg_view *msg = malloc(sizeof *msg);
    dr_wire_header header;
    const char *why = "out of memory";
    rc = msg ? dr_wire_decode_header(bytes, len, &header, &why) : DR_ENOMEM;
    if (rc == DR_OK && header.type != DR_MSG_VIEW)
        rc = DR_EPROTO;
    if (rc == DR_OK)
        rc = dr_wire_decode_view(bytes + DR_WIRE_HEADER_BYTES, header.body_len, msg, &why);
    if (rc == DR_OK && !msg->has_assignment)
        rc = DR_EPROTO;
    if (rc != DR_OK) {
        free(msg);
        free(bytes);
        return dr_err_set(err, DR_ECORRUPT, "%s: not a saved view", path);
    }
    dr_layout *assignment = &msg->assignment;
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        out->tails[s] = -1;
    for (uint32_t s = 0; s < assignment->num_subgroups && s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        /* the saved frame carries members only: the type (log name, durable flag) comes from
         * the spec, whose types' subgroups are numbered in order */
        uint32_t type = spec_type_of(&d->spec, s);
        assignment->subgroups[s].type_index = type;
        assignment->subgroups[s].index_in_type = spec_index_in_type(&d->spec, s);
        if (type >= DR_LAYOUT_MAX_TYPES || !d->durable_type[type])
            continue;
        int shard = dr_layout_find_shard(assignment, s, my_id, NULL);
        if (shard < 0 || assignment->subgroups[s].shards[shard].mode != DR_MODE_ORDERED)
            continue;
        rc = open_log(d, assignment, s, (uint32_t)shard);
        if (rc != DR_OK) {
            free(msg);
            free(bytes);
            return dr_err_set(err, rc, "cannot open the log of subgroup %" PRIu32, s);
        }
        pthread_mutex_lock(&d->lock);
        durable_log *entry = &d->logs[s];
        int64_t tail = -1;
        if (dr_plog_flush(entry->log, &tail) != DR_OK || tail < 0)
            tail = -1; /* nothing appended: just the version recovered at open */
        entry->appended = entry->local = tail;
        out->tails[s] = tail;
        pthread_mutex_unlock(&d->lock);
        DR_INFO(DR_LOGM_PERSISTENCE, "restart: log of subgroup %" PRIu32 " ends at %" PRId64, s,
                tail);
    }
    free(msg);
    out->saved_view = bytes;
    out->saved_view_len = len;
    *frame = bytes;
    return DR_OK;
}

/*
 * Loads the base saved beside `log_name`: *floor (0 if there is none) and, if bytes is not NULL,
 * the whole file in *bytes (caller frees; the state starts at BASE_HEADER_BYTES) and *len.
 * The file is checksummed (dr_blob); its header is checked here. Returns 0 or why not (logged).
 */
static int load_base(durable *d, const char *log_name, int64_t *floor, uint8_t **bytes,
                     size_t *len) {
    char file[DR_LAYOUT_NAME_MAX + 64];
    base_file_name(file, sizeof file, log_name);
    uint8_t *data = NULL;
    size_t size = 0;
    dr_err err = {0};
    *floor = 0;
    int rc = dr_blob_load(d->dir, file, d->max_base_bytes + BASE_HEADER_BYTES, &data, &size, &err);
    if (rc == DR_ENOTFOUND)
        return DR_OK;
    if (rc != DR_OK) {
        DR_ERROR(DR_LOGM_PERSISTENCE, "cannot read the replay base %s/%s: %s", d->dir, file,
                 err.msg);
        return rc;
    }
    dr_reader reader;
    dr_reader_init(&reader, data, size);
    uint32_t magic = dr_reader_u32(&reader);
    uint32_t format = dr_reader_u32(&reader);
    *floor = (int64_t)dr_reader_u64(&reader);
    if (reader.failed || magic != BASE_MAGIC || format != BASE_FORMAT || *floor < 0) {
        free(data);
        *floor = 0;
        DR_ERROR(DR_LOGM_PERSISTENCE, "%s/%s is not a replay base", d->dir, file);
        return DR_ECORRUPT;
    }
    if (bytes) {
        *bytes = data;
        *len = size;
    } else {
        free(data);
    }
    return DR_OK;
}

/* The floor of `subgroup`'s base, read once (d->lock not held: a disk read). */
static int base_floor_of(durable *d, uint32_t subgroup, int64_t *floor) {
    pthread_mutex_lock(&d->lock);
    durable_log *entry = &d->logs[subgroup];
    bool known = entry->base_known;
    *floor = entry->base_floor;
    char name[sizeof entry->name];
    snprintf(name, sizeof name, "%s", entry->name);
    pthread_mutex_unlock(&d->lock);
    if (known)
        return DR_OK;
    int rc = load_base(d, name, floor, NULL, NULL);
    if (rc == DR_OK) {
        pthread_mutex_lock(&d->lock);
        entry->base_known = true;
        entry->base_floor = *floor;
        pthread_mutex_unlock(&d->lock);
    }
    return rc;
}

int durable_discard(durable *d) {
    if (!d->any)
        return DR_OK;
    int first_error = DR_OK;
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        pthread_mutex_lock(&d->lock);
        durable_log *entry = &d->logs[s];
        dr_plog *log = entry->log;
        char name[sizeof entry->name];
        snprintf(name, sizeof name, "%s", entry->name);
        int rc = log && !entry->failed ? dr_plog_truncate_after(log, -1) : DR_OK;
        /* nothing was appended before a view: the persistence thread holds no pointer to it */
        bool close_it = log != NULL && entry->appended <= entry->local;
        if (close_it)
            entry->log = NULL;
        entry->appended = entry->local = entry->global = -1;
        entry->replay_pending = false;
        entry->base_known = true;
        entry->base_floor = 0;
        if (rc != DR_OK)
            entry->failed = true;
        pthread_mutex_unlock(&d->lock);
        if (close_it)
            dr_plog_close(log);
        if (name[0])
            remove_base(d, name);
        if (rc != DR_OK) {
            DR_ERROR(DR_LOGM_PERSISTENCE, "cannot empty the log of subgroup %" PRIu32 ": %s", s,
                     dr_strerror(rc));
            if (first_error == DR_OK)
                first_error = rc;
        }
    }
    uint8_t mark = 1;
    dr_err err = {0};
    int rc = dr_blob_save(d->dir, DURABLE_STATELESS_FILE, &mark, 1, NULL, &err);
    if (rc != DR_OK) {
        DR_ERROR(DR_LOGM_PERSISTENCE, "cannot mark the saved view stateless: %s",
                 err.msg[0] ? err.msg : dr_strerror(rc));
        if (first_error == DR_OK)
            first_error = rc;
    } else {
        d->stateless_mark = true;
        DR_INFO(DR_LOGM_PERSISTENCE,
                "restart given up: logs emptied, bases deleted, saved view marked stateless");
    }
    return first_error;
}

int durable_truncate(durable *d, uint32_t subgroup, int64_t version) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return DR_OK;
    /* A replay base whose floor lies above the cut holds versions the group discarded (a
     * joiner's base, saved before the end of the previous view was globally persisted): this
     * node's state would differ from the others'. It leaves instead. A trim of -1 (no reporter
     * of the shard holds a record: nothing of it survives the restart) drops the base with the
     * log, as every replica of the shard then starts empty. */
    int64_t floor = 0;
    int rc = base_floor_of(d, subgroup, &floor);
    if (rc == DR_OK && version >= 0 && floor > 0 && floor - 1 > version) {
        DR_ERROR(DR_LOGM_PERSISTENCE,
                 "restart: the replay base of subgroup %" PRIu32 " holds versions up to %" PRId64
                 ", above the restart's trim %" PRId64
                 " (versions the group discarded); this node leaves: start it with "
                 "[PERS] reset = true to rejoin with the group's state",
                 subgroup, floor - 1, version);
        rc = DR_ESTATE;
    }
    pthread_mutex_lock(&d->lock);
    durable_log *entry = &d->logs[subgroup];
    if (rc == DR_OK && entry->log && !entry->failed) {
        rc = dr_plog_truncate_after(entry->log, version);
        if (rc == DR_OK) {
            entry->replay_pending = true; /* the restart view's install replays it */
            entry->replay_to = version;
            if (entry->appended > version)
                entry->appended = version;
            if (entry->local > version)
                entry->local = version;
            dr_plog_record latest;
            if (dr_plog_read_latest(entry->log, &latest) == DR_OK) {
                entry->last_stamp = latest.hlc_us;
                dr_plog_record_free(&latest);
            }
        } else {
            DR_ERROR(DR_LOGM_PERSISTENCE, "cannot truncate the log of subgroup %" PRIu32 ": %s",
                     subgroup, dr_strerror(rc));
        }
    }
    if (rc != DR_OK) {
        entry->failed = true;
        pthread_cond_broadcast(&d->change);
    }
    bool drop_base = rc == DR_OK && version < 0 && floor > 0;
    char name[sizeof entry->name];
    snprintf(name, sizeof name, "%s", entry->name);
    if (drop_base)
        entry->base_floor = 0;
    pthread_mutex_unlock(&d->lock);
    if (rc != DR_OK)
        return rc;
    if (drop_base)
        remove_base(d, name);
    DR_INFO(DR_LOGM_PERSISTENCE, "restart: log of subgroup %" PRIu32 " truncated after %" PRId64,
            subgroup, version);
    return DR_OK;
}

bool durable_take_replay(durable *d, uint32_t subgroup, int64_t *to) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return false;
    pthread_mutex_lock(&d->lock);
    durable_log *entry = &d->logs[subgroup];
    bool pending = entry->replay_pending && entry->log && !entry->failed;
    entry->replay_pending = false;
    *to = entry->replay_to;
    pthread_mutex_unlock(&d->lock);
    return pending;
}

/* ---- replay (delivery thread) ------------------------------------------------------------- */

typedef struct replay_walk {
    durable *d;
    uint32_t subgroup, shard;
    dr_replay_fn fn;
    void *ctx;
    uint64_t records;
} replay_walk;

static bool stopping(durable *d) {
    pthread_mutex_lock(&d->lock);
    bool stop = d->stopping;
    pthread_mutex_unlock(&d->lock);
    return stop;
}

static dr_message replay_message(const replay_walk *walk, int64_t version, uint64_t stamp,
                                 const uint8_t *bytes, size_t len) {
    return (dr_message){.subgroup = walk->subgroup,
                        .shard = walk->shard,
                        .sender_id = DR_NODE_NONE,
                        .index = -1,
                        .version = version,
                        .timestamp_us = stamp,
                        .mode = DR_MODE_ORDERED,
                        .bytes = bytes,
                        .len = len};
}

static int replay_record(void *ctx, const dr_plog_record *rec) {
    replay_walk *walk = ctx;
    if (stopping(walk->d))
        return DR_ECLOSED;
    dr_message message = replay_message(walk, rec->version, rec->hlc_us, rec->data, rec->len);
    walk->records++;
    return walk->fn ? walk->fn(walk->ctx, &message, false) : DR_OK;
}

/*
 * Hands the saved base (if any) to the application; *floor receives the first version to replay
 * on top of it (0 without a base). Returns 0 or why not.
 */
static int replay_base(replay_walk *walk, const char *log_name, int64_t *floor) {
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = load_base(walk->d, log_name, floor, &bytes, &len);
    if (rc != DR_OK || bytes == NULL)
        return rc; /* an error, or no base */
    dr_message message =
        replay_message(walk, *floor - 1, 0, bytes + BASE_HEADER_BYTES, len - BASE_HEADER_BYTES);
    rc = walk->fn ? walk->fn(walk->ctx, &message, true) : DR_OK;
    free(bytes);
    if (rc == DR_OK)
        DR_INFO(DR_LOGM_PERSISTENCE,
                "replay: subgroup %" PRIu32 " from its base (%zu bytes, versions below %" PRId64
                ")",
                walk->subgroup, len - BASE_HEADER_BYTES, *floor);
    return rc;
}

int durable_replay(durable *d, uint32_t subgroup, uint32_t shard, int64_t to, dr_replay_fn fn,
                   void *ctx) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return DR_OK;
    pthread_mutex_lock(&d->lock);
    dr_plog *log = d->stopping ? NULL : d->logs[subgroup].log;
    char name[sizeof d->logs[0].name];
    snprintf(name, sizeof name, "%s", d->logs[subgroup].name);
    if (log)
        d->replaying++; /* durable_stop closes the log only after this replay */
    pthread_mutex_unlock(&d->lock);
    if (!log)
        return DR_ECLOSED;
    replay_walk walk = {
        .d = d, .subgroup = subgroup, .shard = shard, .fn = fn, .ctx = ctx, .records = 0};
    int64_t floor = 0;
    int rc = replay_base(&walk, name, &floor);
    if (rc == DR_OK && floor > 0) { /* a checkpoint's trim that a crash interrupted: finish it */
        int trimmed = dr_plog_trim_below(log, floor);
        if (trimmed != DR_OK)
            DR_WARN(DR_LOGM_PERSISTENCE,
                    "replay: subgroup %" PRIu32 ": the log below its base's floor %" PRId64
                    " stays (trim: %s)",
                    subgroup, floor, dr_strerror(trimmed));
    }
    if (rc == DR_OK && to >= floor)
        rc = dr_plog_iterate(log, floor, to, replay_record, &walk);
    pthread_mutex_lock(&d->lock);
    d->replaying--;
    pthread_cond_broadcast(&d->change);
    pthread_mutex_unlock(&d->lock);
    if (rc == DR_OK)
        DR_INFO(DR_LOGM_PERSISTENCE,
                "replay: subgroup %" PRIu32 ": %" PRIu64 " logged versions up to %" PRId64
                " handed to the application",
                subgroup, walk.records, to);
    else if (rc != DR_ECLOSED)
        DR_ERROR(DR_LOGM_PERSISTENCE,
                 "replay of subgroup %" PRIu32 " stopped after %" PRIu64 " versions: %s", subgroup,
                 walk.records, dr_strerror(rc));
    return rc;
}

/*
 * Saves `bytes` as `subgroup`'s replay base with `floor` (durably: dr_blob_save). `what` names
 * the occasion in the log line. Returns 0, DR_ESTATE (no open log), DR_ETOOBIG, DR_EIO,
 * DR_ENOMEM.
 */
static int save_base(durable *d, uint32_t subgroup, int64_t floor, const uint8_t *bytes, size_t len,
                     const char *what) {
    if (len > d->max_base_bytes)
        return DR_ETOOBIG;
    pthread_mutex_lock(&d->lock);
    bool have = d->logs[subgroup].log != NULL && !d->logs[subgroup].failed && !d->stopping;
    char file[DR_LAYOUT_NAME_MAX + 64];
    base_file_name(file, sizeof file, d->logs[subgroup].name);
    pthread_mutex_unlock(&d->lock);
    if (!have)
        return DR_ESTATE;
    uint8_t *blob = malloc(BASE_HEADER_BYTES + len);
    if (!blob)
        return DR_ENOMEM;
    dr_buf header;
    dr_buf_init(&header, BASE_HEADER_BYTES);
    dr_buf_put_u32(&header, BASE_MAGIC);
    dr_buf_put_u32(&header, BASE_FORMAT);
    dr_buf_put_u64(&header, (uint64_t)floor);
    int rc = header.failed ? DR_ENOMEM : DR_OK;
    if (rc == DR_OK) {
        memcpy(blob, header.data, BASE_HEADER_BYTES);
        if (len)
            memcpy(blob + BASE_HEADER_BYTES, bytes, len);
    }
    dr_buf_free(&header);
    dr_err err = {0};
    if (rc == DR_OK)
        rc = dr_blob_save(d->dir, file, blob, BASE_HEADER_BYTES + len, NULL, &err);
    free(blob);
    if (rc != DR_OK) {
        DR_ERROR(DR_LOGM_PERSISTENCE, "cannot save the replay base %s/%s: %s", d->dir, file,
                 err.msg[0] ? err.msg : dr_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&d->lock);
    d->logs[subgroup].base_known = true;
    d->logs[subgroup].base_floor = floor;
    pthread_mutex_unlock(&d->lock);
    DR_INFO(DR_LOGM_PERSISTENCE,
            "saved the replay base %s/%s (%zu bytes, %s, versions below %" PRId64 ")", d->dir, file,
            len, what, floor);
    return DR_OK;
}

int durable_save_base(durable *d, uint32_t subgroup, int32_t vid, const uint8_t *bytes,
                      size_t len) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS || vid < 0)
        return DR_ESTATE;
    return save_base(d, subgroup, (int64_t)vid << 32, bytes, len, "state received on joining");
}

int durable_checkpoint(durable *d, uint32_t subgroup, int64_t version, const uint8_t *bytes,
                       size_t len) {
    if (version < 0 || (len > 0 && bytes == NULL))
        return DR_EINVAL;
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return DR_ESTATE;
    if (len > d->max_base_bytes)
        return DR_ETOOBIG;
    pthread_mutex_lock(&d->lock);
    durable_log *entry = &d->logs[subgroup];
    int rc = DR_OK;
    if (entry->log == NULL || entry->failed || d->stopping)
        rc = DR_ESTATE;
    else if (entry->checkpointing)
        rc = DR_EAGAIN; /* one at a time per log */
    else if (version > entry->global)
        rc = DR_EAGAIN; /* not globally persisted: a restart may still cut it */
    dr_plog *log = entry->log;
    if (rc == DR_OK) {
        entry->checkpointing = true;
        d->replaying++; /* durable_stop closes the log only after this */
    }
    pthread_mutex_unlock(&d->lock);
    if (rc != DR_OK)
        return rc;
    int64_t floor = 0;
    rc = base_floor_of(d, subgroup, &floor);
    if (rc == DR_OK && version + 1 < floor)
        rc = DR_EINVAL; /* older than the saved base: the log no longer holds what follows it */
    if (rc == DR_OK && version + 1 > floor)
        rc = save_base(d, subgroup, version + 1, bytes, len, "checkpoint");
    if (rc == DR_OK)
        rc = dr_plog_trim_below(log, version + 1);
    if (rc == DR_OK)
        DR_INFO(DR_LOGM_PERSISTENCE,
                "checkpoint of subgroup %" PRIu32 " at version %" PRId64 ": %" PRIu64
                " records left in its log",
                subgroup, version, dr_plog_count(log));
    else
        DR_ERROR(DR_LOGM_PERSISTENCE, "checkpoint of subgroup %" PRIu32 " at %" PRId64 ": %s",
                 subgroup, version, dr_strerror(rc));
    pthread_mutex_lock(&d->lock);
    entry->checkpointing = false;
    d->replaying--;
    pthread_cond_broadcast(&d->change);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* ---- deliveries (core lock held) ---------------------------------------------------------- */

int durable_on_deliver(durable *d, uint32_t subgroup, int64_t version, uint64_t timestamp_us,
                       const uint8_t *bytes, size_t len) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS || version < 0)
        return DR_OK;
    pthread_mutex_lock(&d->lock);
    durable_log *entry = &d->logs[subgroup];
    if (!entry->log || entry->failed) {
        pthread_mutex_unlock(&d->lock);
        return DR_OK;
    }
    uint64_t stamp = timestamp_us > entry->last_stamp ? timestamp_us : entry->last_stamp + 1;
    /* a memory copy into the log's buffer; the disk write is the persistence thread's */
    int rc = dr_plog_append(entry->log, version, stamp, bytes, len);
    if (rc == DR_OK) {
        entry->last_stamp = stamp;
        entry->appended = version;
        pthread_cond_signal(&d->work);
    } else {
        entry->failed = true;
        pthread_cond_broadcast(&d->change);
    }
    pthread_mutex_unlock(&d->lock);
    if (rc != DR_OK) {
        DR_ERROR(DR_LOGM_PERSISTENCE,
                 "cannot log version %" PRId64 " of subgroup %" PRIu32 " (%s)%s: nothing more is "
                 "reported durable; the node leaves the group",
                 version, subgroup, dr_strerror(rc),
                 rc == DR_EINVAL ? " - the log holds newer versions of an earlier incarnation "
                                   "of the group (its saved view was lost? set [PERS] "
                                   "reset = true or move the log away)"
                                 : "");
    }
    return rc;
}

void durable_set_global(durable *d, uint32_t subgroup, int64_t version) {
    if (subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return;
    pthread_mutex_lock(&d->lock);
    if (version > d->logs[subgroup].global) {
        d->logs[subgroup].global = version;
        pthread_cond_broadcast(&d->change);
    }
    pthread_mutex_unlock(&d->lock);
}

int dr_group_load_saved_view(const dr_config *config, dr_view *view, dr_layout *assignment,
                             dr_err *err) {
    const char *dir = dr_config_get(config, "PERS", "file_path");
    if (!dir || !*dir)
        dir = ".plog";
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = dr_blob_load(dir, DURABLE_VIEW_FILE, DURABLE_VIEW_MAX_BYTES, &bytes, &len, err);
    if (rc != DR_OK)
        return rc;
    dr_wire_header header;
    const char *why = NULL;
    dr_msg_view *msg = malloc(sizeof *msg);
    if (!msg) {
        free(bytes);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    rc = dr_wire_decode_header(bytes, len, &header, &why);
    if (rc == DR_OK && header.type != DR_MSG_VIEW) {
        rc = DR_EPROTO;
        why = "not a VIEW frame";
    }
    if (rc == DR_OK)
        rc = dr_wire_decode_view(bytes + DR_WIRE_HEADER_BYTES, header.body_len, msg, &why);
    if (rc == DR_OK && !msg->has_assignment) {
        rc = DR_EPROTO;
        why = "no shard assignment";
    }
    if (rc == DR_OK) {
        *view = msg->view;
        view->vid = header.vid;
        if (assignment)
            *assignment = msg->assignment;
    } else {
        rc = dr_err_set(err, DR_ECORRUPT, "%s/%s: %s", dir, DURABLE_VIEW_FILE,
                        why ? why : "undecodable");
    }
    free(msg);
    free(bytes);
    return rc;
}

/* ---- queries (any thread) ----------------------------------------------------------------- */

int64_t durable_version(durable *d, uint32_t subgroup, bool global) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return -1;
    pthread_mutex_lock(&d->lock);
    const durable_log *entry = &d->logs[subgroup];
    int64_t version = !entry->log ? -1 : global ? entry->global : entry->local;
    pthread_mutex_unlock(&d->lock);
    return version;
}

static void deadline_after(struct timespec *deadline, int timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

int durable_wait(durable *d, uint32_t subgroup, int64_t version, bool global, int timeout_ms) {
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return DR_ESTATE;
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms < 0 ? 0 : timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        const durable_log *entry = &d->logs[subgroup];
        if (entry->failed) {
            rc = DR_EIO;
            break;
        }
        if (!entry->log) {
            rc = DR_ESTATE;
            break;
        }
        if ((global ? entry->global : entry->local) >= version)
            break;
        if (d->stopping) {
            rc = DR_ECLOSED;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&d->change, &d->lock);
        } else if (pthread_cond_timedwait(&d->change, &d->lock, &deadline) == ETIMEDOUT) {
            rc = DR_ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int durable_read(durable *d, uint32_t subgroup, dr_read_mode mode, int64_t key, dr_versioned *out) {
    memset(out, 0, sizeof *out);
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return DR_ESTATE;
    pthread_mutex_lock(&d->lock);
    dr_plog *log = d->logs[subgroup].log; /* open until durable_stop */
    pthread_mutex_unlock(&d->lock);
    if (!log)
        return DR_ESTATE;
    dr_plog_record rec = {0};
    int rc;
    switch (mode) {
    case DR_READ_EXACT:
        rc = dr_plog_read(log, key, &rec);
        break;
    case DR_READ_AT_OR_BELOW:
        rc = dr_plog_read_at_or_below(log, key, &rec);
        break;
    case DR_READ_BY_TIME:
        rc = key < 0 ? DR_ENOTFOUND : dr_plog_read_by_time(log, (uint64_t)key, &rec);
        break;
    case DR_READ_LATEST:
        rc = dr_plog_read_latest(log, &rec);
        break;
    default:
        return DR_EINVAL;
    }
    if (rc != DR_OK)
        return rc;
    out->version = rec.version;
    out->timestamp_us = rec.hlc_us;
    out->bytes = rec.data; /* malloc'd by the log: handed over */
    out->len = rec.len;
    return DR_OK;
}

int durable_read_base(durable *d, uint32_t subgroup, int64_t *floor, uint8_t **bytes, size_t *len) {
    *floor = 0;
    *bytes = NULL;
    *len = 0;
    if (!d->any || subgroup >= DR_LAYOUT_MAX_SUBGROUPS)
        return DR_ESTATE;
    pthread_mutex_lock(&d->lock);
    bool open = d->logs[subgroup].log != NULL;
    char name[sizeof d->logs[subgroup].name];
    snprintf(name, sizeof name, "%s", d->logs[subgroup].name);
    pthread_mutex_unlock(&d->lock);
    if (!open)
        return DR_ESTATE;
    uint8_t *file = NULL;
    size_t size = 0;
    int rc = load_base(d, name, floor, &file, &size);
    if (rc != DR_OK)
        return rc;
    if (!file) /* no base file */
        return DR_ENOTFOUND;
    size_t state = size - BASE_HEADER_BYTES; /* load_base checked the header */
    if (state > 0) {
        memmove(file, file + BASE_HEADER_BYTES, state);
        *bytes = file;
    } else {
        free(file);
    }
    *len = state;
    return DR_OK;
}

void dr_versioned_clear(dr_versioned *out) {
    if (!out)
        return;
    free(out->bytes);
    memset(out, 0, sizeof *out);
}

void durable_stop(durable *d) {
    if (!d->initialized)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->work);
    pthread_cond_broadcast(&d->change);
    pthread_mutex_unlock(&d->lock);
    if (d->started)
        pthread_join(d->thread, NULL); /* it flushed what was appended before it saw stopping */
    d->started = false;
    pthread_mutex_lock(&d->lock);
    while (d->replaying > 0) /* a replay sees `stopping` at its next record */
        pthread_cond_wait(&d->change, &d->lock);
    pthread_mutex_unlock(&d->lock);
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++) {
        dr_plog_close(d->logs[s].log);
        d->logs[s].log = NULL;
    }
    free(d->vote);
    d->vote = NULL;
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->change);
    pthread_mutex_destroy(&d->lock);
    d->initialized = false;
}
