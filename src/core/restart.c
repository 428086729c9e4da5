/*
 * Total restart (docs/persistence.md "Total restart"; Derecho's restart_state.cpp): every node
 * of a group that stopped as a whole comes back with the view it saved last and the tails of
 * its durable logs. It enters CORE_RESTARTING and reports both to the restart leader of the
 * current round (restart_leaders[round % n]). The leader waits for a quorum of the most recent
 * saved view L (a majority of L, a member of every shard of L, an adequate layout), computes
 * per shard the trim (the smallest tail of its reporting members, see below), and runs one
 * Paxos instance over "the restart view": PREPARE(round, proposal) to every member of the
 * proposed view, ACK from each, then COMMIT. A node installs a committed restart view after
 * TRUNCATE actions that cut its logs to the trims; the view's id is L + 1.
 *
 * Rounds are Paxos ballots: a node that moves to round r (timeout, or a message of round r)
 * never accepts a PREPARE of a lower round, and reports the proposal it accepted last in each
 * request; a leader adopts the highest-round accepted proposal among its reports instead of
 * computing its own. The leader commits once a majority of L and a majority of the proposed view
 * accepted; every round's leader needs reports from a majority of L, so any two rounds' quorums
 * overlap and a chosen restart view can only be re-proposed, never replaced (a member of the
 * view that is dead by then is removed by an ordinary view change after the install).
 * Restart views chained across power cuts (one installed only by its leader, a later restart
 * from it) add three rules (docs/persistence.md): a report of a proposal beyond L + 1 makes the
 * leader wait; re-proposing a view needs reports from a majority of it and a member of each of
 * its shards; an acceptor never goes back to an older view than one it accepted.
 *
 * Messages go to addresses (node_id DR_NODE_NONE), like join replies: there are no connections
 * yet. Sizes from the network are capped (a view frame at DR_RESTART_MAX_VIEW_BYTES, one entry
 * per reporting node, at most DR_VIEW_MAX_MEMBERS entries).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_internal.h"
#include "derecho/log.h"

#define MAX_TRIMS (DR_LAYOUT_MAX_SUBGROUPS * DR_LAYOUT_MAX_SHARDS)

/** One node's report, kept by the leader of a round. */
typedef struct restart_entry {
    uint32_t node_id;
    char address[DR_ADDRESS_MAX];
    int32_t vid;         /**< its saved view's id */
    uint8_t *view_frame; /**< its saved view (owned) */
    size_t view_len;     /**< bytes */
    int64_t tails[DR_LAYOUT_MAX_SUBGROUPS];
    uint32_t accepted_round; /**< round+1 of the proposal it accepted (0: none) */
    uint8_t *accepted;       /**< that proposal (owned, NULL if none) */
    size_t accepted_len;
    bool stateless;     /**< it holds no state for its saved view (dr_core_restart_options) */
    uint8_t *installed; /**< the restart proposal that made its saved view (owned, or NULL) */
    size_t installed_len;
} restart_entry;

/** A decoded proposal: the restart view and the trims. */
typedef struct restart_proposal {
    dr_msg_view view; /**< view.vid set; assignment: the saved view's layout */
    uint32_t num_trims;
    struct {
        uint32_t subgroup, shard;
        int64_t trim;
    } trims[MAX_TRIMS];
    uint32_t num_last;                      /**< members of the saved view L it is based on */
    uint32_t last_ids[DR_VIEW_MAX_MEMBERS]; /**< their ids (acks from a majority commit it) */
} restart_proposal;

struct restart_state {
    uint8_t *my_frame; /**< my saved view frame (owned) */
    size_t my_len;
    int32_t my_vid;
    uint32_t my_view_count; /**< members of my saved view (ids and addresses below) */
    uint32_t my_view_ids[DR_VIEW_MAX_MEMBERS];
    char my_view_addresses[DR_VIEW_MAX_MEMBERS][DR_ADDRESS_MAX];
    int64_t tails[DR_LAYOUT_MAX_SUBGROUPS];
    bool stateless; /**< dr_core_restart_options.stateless */
    char leaders[DR_RESTART_MAX_LEADERS][DR_ADDRESS_MAX];
    uint32_t num_leaders;
    uint64_t timeout_us;
    uint32_t round;            /**< my current round (ballot) */
    uint64_t round_started_us; /**< when I entered it, or last heard its leader's PREPARE */
    uint64_t last_request_us;
    /* acceptor (saved durably: DR_ACTION_SAVE_RESTART_VOTE) */
    uint32_t saved_round;    /**< the highest round the saved vote promises */
    uint32_t accepted_round; /**< round+1 of the proposal accepted last (0: none) */
    uint8_t *accepted;       /**< its bytes (owned) */
    size_t accepted_len;
    /** If my saved view is a restart view I installed: its proposal, with the trims that cut
     * the logs (owned, NULL otherwise; saved in the vote at the install, see save_installed) */
    uint8_t *installed;
    size_t installed_len;
    /* leader of `round` */
    restart_entry entries[DR_VIEW_MAX_MEMBERS];
    uint32_t num_entries;
    uint32_t traced_entries; /**< num_entries when "no majority" was last traced */
    bool discarded;          /**< restart_abandon emitted DR_ACTION_DISCARD_DURABLE */
    uint32_t traced_layout;  /**< num_entries when "not adequate" was last traced */
    uint32_t traced_adopt;   /**< num_entries when "wait before adopting" was last traced */
    bool proposed;
    uint8_t *proposal; /**< what I proposed (owned) */
    size_t proposal_len;
    dr_view proposal_view;
    bool acked[DR_VIEW_MAX_MEMBERS];      /**< per index of last_ids: that member of L accepted */
    bool acked_view[DR_VIEW_MAX_MEMBERS]; /**< per rank of proposal_view: that member accepted */
    uint32_t num_last;                    /**< the proposal's L: members */
    uint32_t last_ids[DR_VIEW_MAX_MEMBERS];
    /* after install: the COMMIT frame, resent to members that ask again */
    uint8_t *commit_frame;
    size_t commit_len;
    int32_t commit_vid;
};

/* ---- helpers ------------------------------------------------------------------------- */

static int save_vote(dr_core *core);

static const char *leader_of(const struct restart_state *rs, uint32_t round) {
    return rs->leaders[round % rs->num_leaders];
}

static bool i_lead(const dr_core *core) {
    const struct restart_state *rs = core->restart;
    return strcmp(leader_of(rs, rs->round), core->options.my_address) == 0;
}

static void free_entry(restart_entry *entry) {
    free(entry->view_frame);
    free(entry->accepted);
    free(entry->installed);
    memset(entry, 0, sizeof *entry);
}

/**
 * Copies `len` bytes into *out (owned; NULL when len is 0) and sets *out_len. Returns 0 or
 * DR_ENOMEM (then *out is NULL).
 */
static int copy_blob(const uint8_t *bytes, size_t len, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len == 0)
        return 0;
    *out = malloc(len);
    if (*out == NULL)
        return DR_ENOMEM;
    memcpy(*out, bytes, len);
    *out_len = len;
    return 0;
}

/** An entry's owned copies of a report: its saved view, accepted and installed proposals. */
static int copy_report(restart_entry *entry, const uint8_t *frame, size_t frame_len,
                       const uint8_t *accepted, size_t accepted_len, const uint8_t *installed,
                       size_t installed_len) {
    int rc = copy_blob(frame, frame_len, &entry->view_frame, &entry->view_len);
    if (rc == 0)
        rc = copy_blob(accepted, accepted_len, &entry->accepted, &entry->accepted_len);
    if (rc == 0)
        rc = copy_blob(installed, installed_len, &entry->installed, &entry->installed_len);
    if (rc != 0)
        free_entry(entry);
    return rc;
}

static void reset_leader(struct restart_state *rs) {
    for (uint32_t i = 0; i < rs->num_entries; i++)
        free_entry(&rs->entries[i]);
    rs->num_entries = 0;
    rs->traced_entries = rs->traced_layout = rs->traced_adopt = UINT32_MAX;
    rs->proposed = false;
    free(rs->proposal);
    rs->proposal = NULL;
    rs->proposal_len = 0;
    memset(rs->acked, 0, sizeof rs->acked);
    memset(rs->acked_view, 0, sizeof rs->acked_view);
}

/** Decodes a saved view frame (a VIEW frame with its shard assignment). */
static int decode_view_frame(const uint8_t *frame, size_t len, dr_msg_view *out, const char **why) {
    dr_wire_header header;
    if (dr_wire_decode_header(frame, len, &header, why) != 0)
        return DR_EPROTO;
    if (header.type != DR_MSG_VIEW || header.vid < 0) {
        *why = "restart: not a saved view frame";
        return DR_EPROTO;
    }
    if (dr_wire_decode_view(frame + DR_WIRE_HEADER_BYTES, header.body_len, out, why) != 0)
        return DR_EPROTO;
    if (!out->has_assignment) {
        *why = "restart: saved view without its shard assignment";
        return DR_EPROTO;
    }
    out->view.vid = header.vid;
    return 0;
}

/** Decodes a proposal (view frame blob, trims). */
static int decode_proposal(const uint8_t *bytes, size_t len, restart_proposal *out,
                           const char **why) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t frame_len = 0;
    const uint8_t *frame = dr_reader_blob(&reader, DR_RESTART_MAX_VIEW_BYTES, &frame_len);
    if (reader.failed || frame == NULL) {
        *why = "restart: proposal without a view";
        return DR_EPROTO;
    }
    if (decode_view_frame(frame, frame_len, &out->view, why) != 0)
        return DR_EPROTO;
    out->num_trims = dr_reader_u32(&reader);
    if (reader.failed || out->num_trims > MAX_TRIMS) {
        *why = "restart: bad trim count";
        return DR_EPROTO;
    }
    for (uint32_t i = 0; i < out->num_trims; i++) {
        out->trims[i].subgroup = dr_reader_u32(&reader);
        out->trims[i].shard = dr_reader_u32(&reader);
        out->trims[i].trim = (int64_t)dr_reader_u64(&reader);
        if (reader.failed || out->trims[i].subgroup >= DR_LAYOUT_MAX_SUBGROUPS ||
            out->trims[i].shard >= DR_LAYOUT_MAX_SHARDS || out->trims[i].trim < -1) {
            *why = "restart: bad trim entry";
            return DR_EPROTO;
        }
    }
    out->num_last = dr_reader_u32(&reader);
    if (reader.failed || out->num_last == 0 || out->num_last > DR_VIEW_MAX_MEMBERS) {
        *why = "restart: bad member count of the saved view";
        return DR_EPROTO;
    }
    for (uint32_t i = 0; i < out->num_last; i++)
        out->last_ids[i] = dr_reader_u32(&reader);
    if (!dr_reader_done(&reader)) {
        *why = "restart: trailing bytes in the proposal";
        return DR_EPROTO;
    }
    return 0;
}

/**
 * The view id a proposal restarts the group with (-1: none, or undecodable; proposals are
 * checked in full when they arrive). Reads only its view frame's header: no allocation.
 */
static int32_t proposal_vid(const uint8_t *bytes, size_t len) {
    if (bytes == NULL || len == 0)
        return -1;
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t frame_len = 0;
    const uint8_t *frame = dr_reader_blob(&reader, DR_RESTART_MAX_VIEW_BYTES, &frame_len);
    dr_wire_header header;
    const char *why = NULL;
    if (reader.failed || frame == NULL ||
        dr_wire_decode_header(frame, frame_len, &header, &why) != 0)
        return -1;
    return header.vid;
}

/* ---- reports ------------------------------------------------------------------------- */

/** My report as an entry (the leader counts itself without a message). */
static int own_entry(dr_core *core, restart_entry *entry) {
    struct restart_state *rs = core->restart;
    memset(entry, 0, sizeof *entry);
    entry->node_id = core->options.my_id;
    snprintf(entry->address, sizeof entry->address, "%s", core->options.my_address);
    entry->vid = rs->my_vid;
    memcpy(entry->tails, rs->tails, sizeof entry->tails);
    entry->stateless = rs->stateless;
    entry->accepted_round = rs->accepted_round;
    return copy_report(entry, rs->my_frame, rs->my_len, rs->accepted, rs->accepted_len,
                       rs->installed, rs->installed_len);
}

static int try_propose(dr_core *core);

/** Leader: records (or replaces) a report of my round. */
static int add_entry(dr_core *core, restart_entry *entry) {
    struct restart_state *rs = core->restart;
    for (uint32_t i = 0; i < rs->num_entries; i++)
        if (rs->entries[i].node_id == entry->node_id) {
            free_entry(&rs->entries[i]);
            rs->entries[i] = *entry;
            return try_propose(core);
        }
    if (rs->num_entries == DR_VIEW_MAX_MEMBERS) {
        free_entry(entry);
        return 0;
    }
    rs->entries[rs->num_entries++] = *entry;
    core_trace(core, "restart round %u: report of node %u (saved view %d%s)", rs->round,
               entry->node_id, entry->vid, entry->stateless ? ", stateless" : "");
    return try_propose(core);
}

static int encode_request(dr_core *core) {
    struct restart_state *rs = core->restart;
    dr_buf_reset(&core->scratch);
    size_t start =
        dr_wire_begin(&core->scratch, DR_MSG_RESTART_REQUEST, core->options.my_id, DR_WIRE_NO_VIEW);
    dr_buf_put_u32(&core->scratch, rs->round);
    dr_buf_put_str(&core->scratch, core->options.my_address);
    dr_buf_put_blob(&core->scratch, rs->my_frame, (uint32_t)rs->my_len);
    dr_buf_put_u32(&core->scratch, DR_LAYOUT_MAX_SUBGROUPS);
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        dr_buf_put_u64(&core->scratch, (uint64_t)rs->tails[s]);
    dr_buf_put_u32(&core->scratch, rs->accepted_round);
    dr_buf_put_blob(&core->scratch, rs->accepted, (uint32_t)rs->accepted_len);
    dr_buf_put_u8(&core->scratch, rs->stateless ? 1 : 0);
    dr_buf_put_blob(&core->scratch, rs->installed, (uint32_t)rs->installed_len);
    return dr_wire_finish(&core->scratch, start);
}

/** Sends my report to `address` (the leader of my round, or a node of a lower round). */
/** The id my saved view gives `address` (DR_NODE_NONE: not a member of it, or me). */
static uint32_t id_of_address(const dr_core *core, const char *address) {
    const struct restart_state *rs = core->restart;
    for (uint32_t i = 0; i < rs->my_view_count; i++)
        if (strcmp(rs->my_view_addresses[i], address) == 0 &&
            rs->my_view_ids[i] != core->options.my_id)
            return rs->my_view_ids[i];
    return DR_NODE_NONE;
}

/**
 * Sends the scratch frame to a restart leader: by node id if my saved view names that address
 * (the driver connects to it as to any member, and keeps one connection per pair), else by
 * address after a CONNECT like a join request's.
 */
static int send_to_leader(dr_core *core, const char *address) {
    uint32_t id = id_of_address(core, address);
    dr_action action = {.type = DR_ACTION_CONNECT, .node_id = id};
    snprintf(action.address, sizeof action.address, "%s", address);
    uint8_t *copy = malloc(core->scratch.len > 0 ? core->scratch.len : 1);
    if (copy == NULL || core->scratch.failed) {
        free(copy);
        return DR_ENOMEM;
    }
    memcpy(copy, core->scratch.data, core->scratch.len);
    int rc = core_push_action(core, &action);
    dr_action send = {
        .type = DR_ACTION_SEND, .node_id = id, .bytes = copy, .len = core->scratch.len};
    snprintf(send.address, sizeof send.address, "%s", address);
    if (rc == 0)
        return core_push_action(core, &send);
    free(copy);
    return rc;
}

static int send_request(dr_core *core, const char *address, bool to_leader) {
    /* a reply to a node of a lower round goes back on its connection instead */
    int rc = encode_request(core);
    if (rc == 0)
        rc =
            to_leader ? send_to_leader(core, address) : core_send_scratch_to_address(core, address);
    core->restart->last_request_us = core->now_us;
    return rc;
}

#define VOTE_MAGIC 0x56525244u /* "DRRV" */

/** Pushes DR_ACTION_SAVE_RESTART_VOTE with a vote in the format of save_vote. */
static int push_vote(dr_core *core, int32_t vid, uint32_t promised, uint32_t accepted_round,
                     const uint8_t *accepted, size_t accepted_len, const uint8_t *installed,
                     size_t installed_len) {
    dr_buf buf;
    dr_buf_init(&buf, DR_RESTART_MAX_VOTE_BYTES);
    dr_buf_put_u32(&buf, VOTE_MAGIC);
    dr_buf_put_u32(&buf, (uint32_t)vid);
    dr_buf_put_u32(&buf, promised);
    dr_buf_put_u32(&buf, accepted_round);
    dr_buf_put_blob(&buf, accepted, (uint32_t)accepted_len);
    dr_buf_put_blob(&buf, installed, (uint32_t)installed_len);
    if (buf.failed) {
        dr_buf_free(&buf);
        return DR_ENOMEM;
    }
    dr_action action = {.type = DR_ACTION_SAVE_RESTART_VOTE};
    action.bytes = dr_buf_steal(&buf, &action.len);
    dr_buf_free(&buf);
    int rc = core_push_action(core, &action);
    if (rc != 0)
        free(action.bytes);
    return rc;
}

/**
 * Saves my vote durably (DR_ACTION_SAVE_RESTART_VOTE, before any frame that depends on it):
 * the saved view it is for, the round I promised (I accept nothing lower), the proposal I
 * accepted last with its round, and the restart proposal that made my saved view, if one did.
 * Format: magic u32 | vid i32 | promised u32 | accepted_round u32 | accepted blob | installed
 * blob (absent in votes written before it existed: read as empty).
 */
static int save_vote(dr_core *core) {
    struct restart_state *rs = core->restart;
    int rc = push_vote(core, rs->my_vid, rs->round, rs->accepted_round, rs->accepted,
                       rs->accepted_len, rs->installed, rs->installed_len);
    if (rc == 0)
        rs->saved_round = rs->round;
    return rc;
}

/**
 * At the install of restart view `vid` from `proposal`: a vote for that view (it is my saved
 * view from now on: the runtime saved it, and removed the older vote, on the install action
 * that precedes this one) that promises nothing and carries the proposal. If the power fails
 * before an ordinary view replaces it, my report at the next restart carries the trims that
 * cut the logs of `vid`, so a member of it that neither installed nor accepted it (its saved
 * view older) has its tail capped at them (proposal_of_last).
 */
static int save_installed(dr_core *core, int32_t vid, const uint8_t *proposal, size_t len) {
    return push_vote(core, vid, 0, 0, NULL, 0, proposal, len);
}

/** Reads a saved vote back (restart_start); ignored unless it is for my saved view. */
static int load_vote(struct restart_state *rs, const uint8_t *bytes, size_t len) {
    if (bytes == NULL || len == 0)
        return 0;
    if (len > DR_RESTART_MAX_VOTE_BYTES)
        return DR_ETOOBIG;
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t magic = dr_reader_u32(&reader);
    int32_t vid = (int32_t)dr_reader_u32(&reader);
    uint32_t promised = dr_reader_u32(&reader);
    uint32_t accepted_round = dr_reader_u32(&reader);
    uint32_t accepted_len = 0;
    const uint8_t *accepted = dr_reader_blob(&reader, 2 * DR_RESTART_MAX_VIEW_BYTES, &accepted_len);
    uint32_t installed_len = 0;
    const uint8_t *installed = NULL;
    if (!reader.failed && !dr_reader_done(&reader))
        installed = dr_reader_blob(&reader, 2 * DR_RESTART_MAX_VIEW_BYTES, &installed_len);
    if (reader.failed || !dr_reader_done(&reader) || magic != VOTE_MAGIC ||
        (accepted_round > 0) != (accepted_len > 0) || accepted_round > promised + 1)
        return DR_ECORRUPT;
    if (vid != rs->my_vid)
        return 0; /* for an older saved view: obsolete */
    int rc = copy_blob(accepted, accepted_len, &rs->accepted, &rs->accepted_len);
    if (rc == 0)
        rc = copy_blob(installed, installed_len, &rs->installed, &rs->installed_len);
    if (rc != 0)
        return rc;
    rs->accepted_round = accepted_round;
    rs->round = rs->saved_round = promised;
    return 0;
}

/** Enters round `round`: as its leader, counts myself; otherwise reports to its leader. */
static int enter_round(dr_core *core, uint32_t round) {
    struct restart_state *rs = core->restart;
    reset_leader(rs);
    rs->round = round;
    rs->round_started_us = core->now_us;
    core_trace(core, "restart round %u, leader %s", round, leader_of(rs, round));
    if (round > rs->saved_round) { /* a promise: kept across a crash */
        int rc = save_vote(core);
        if (rc != 0)
            return rc;
    }
    if (!i_lead(core))
        return send_request(core, leader_of(rs, round), true);
    restart_entry entry;
    int rc = own_entry(core, &entry);
    return rc != 0 ? rc : add_entry(core, &entry);
}

/* ---- the leader's decision ----------------------------------------------------------- */

static bool in_view(const dr_view *view, uint32_t id) {
    for (uint32_t i = 0; i < view->num_members; i++)
        if (view->member_ids[i] == id)
            return true;
    return false;
}

/**
 * The report of node `id` that counts for the restart (NULL if none): a stateless node (it gave
 * up an earlier restart to join and never installed a view since) holds nothing of its saved
 * view's membership, so it counts for no quorum, shard or trim and is not in the restart view;
 * it joins afterwards, like a node with an older saved view.
 */
static const restart_entry *find_entry(const struct restart_state *rs, uint32_t id) {
    for (uint32_t i = 0; i < rs->num_entries; i++)
        if (rs->entries[i].node_id == id)
            return rs->entries[i].stateless ? NULL : &rs->entries[i];
    return NULL;
}

/** Whether `bytes` decode (into *p) as the restart proposal of view `last`. */
static bool is_proposal_of(const uint8_t *bytes, size_t len, const dr_view *last,
                           restart_proposal *p) {
    const char *why = NULL;
    return bytes != NULL && decode_proposal(bytes, len, p, &why) == 0 &&
           p->view.view.vid == last->vid && p->view.view.num_members == last->num_members &&
           memcmp(p->view.view.member_ids, last->member_ids,
                  last->num_members * sizeof last->member_ids[0]) == 0;
}

/**
 * L's own restart proposal, if a report carries it (an acceptor of L that never installed it,
 * or an installer of L: save_installed): its trims. Returns a decoded copy (owned) or NULL
 * (none, out of memory: then L's trims are unknown, as when L was an ordinary view).
 */
static restart_proposal *proposal_of_last(const struct restart_state *rs, const dr_view *last) {
    restart_proposal *p = malloc(sizeof *p);
    for (uint32_t i = 0; p != NULL && i < rs->num_entries; i++) {
        const restart_entry *e = &rs->entries[i];
        if (is_proposal_of(e->accepted, e->accepted_len, last, p) ||
            is_proposal_of(e->installed, e->installed_len, last, p))
            return p;
    }
    free(p);
    return NULL;
}

/**
 * The tail that counts for shard (subgroup, shard) of L from a report. A member whose saved view
 * is older than L never installed L: if L was a restart view, its log may hold records above
 * L's trim, which the group discarded; where L's proposal is known (`l_trims`), its tail is
 * capped at that trim (simulator --partial-restarts seed 11983213149111240 kept such records).
 */
static int64_t counted_tail(const restart_entry *entry, int32_t last_vid,
                            const restart_proposal *l_trims, uint32_t subgroup, uint32_t shard) {
    int64_t tail = entry->tails[subgroup];
    if (entry->vid >= last_vid || l_trims == NULL)
        return tail;
    for (uint32_t i = 0; i < l_trims->num_trims; i++)
        if (l_trims->trims[i].subgroup == subgroup && l_trims->trims[i].shard == shard &&
            tail > l_trims->trims[i].trim)
            return l_trims->trims[i].trim;
    return tail;
}

/**
 * The trim of one shard of the saved view L: the smallest tail among its reporting members,
 * ignoring empty logs (-1: such a member either persisted nothing while the frontier was
 * computed over it, so the frontier was -1, or joined later and says nothing about earlier
 * versions). *any: some member of the shard reported. docs/persistence.md "Total restart"
 * explains why no globally persisted version lies above it.
 */
static int64_t shard_trim(const struct restart_state *rs, int32_t last_vid,
                          const restart_proposal *l_trims, const dr_shard_layout *shard,
                          uint32_t subgroup, uint32_t shard_index, bool *any) {
    int64_t trim = -1;
    *any = false;
    for (uint32_t m = 0; m < shard->num_members; m++) {
        const restart_entry *entry = find_entry(rs, shard->member_ids[m]);
        if (entry == NULL)
            continue;
        *any = true;
        int64_t tail = counted_tail(entry, last_vid, l_trims, subgroup, shard_index);
        if (tail < 0)
            continue;
        if (trim < 0 || tail < trim)
            trim = tail;
    }
    return trim;
}

/** Builds my own proposal from the reports, if they form a quorum. Returns 0 (maybe none). */
static int compute_proposal(dr_core *core, dr_buf *out, bool *made, int32_t *last_vid) {
    struct restart_state *rs = core->restart;
    *made = false;
    const restart_entry *latest = NULL;
    for (uint32_t i = 0; i < rs->num_entries; i++)
        if (!rs->entries[i].stateless && (latest == NULL || rs->entries[i].vid > latest->vid))
            latest = &rs->entries[i];
    if (latest == NULL)
        return 0; /* only stateless reports so far */
    dr_msg_view *saved = malloc(sizeof *saved);
    dr_layout *layout = malloc(sizeof *layout);
    dr_view *next = malloc(sizeof *next);
    int rc = saved && layout && next ? 0 : DR_ENOMEM;
    restart_proposal *l_trims = NULL;
    const char *why = NULL;
    if (rc == 0 && decode_view_frame(latest->view_frame, latest->view_len, saved, &why) != 0)
        rc = DR_EPROTO; /* checked when it arrived */
    if (rc != 0)
        goto done;
    const dr_view *last = &saved->view;
    const dr_layout *assignment = &saved->assignment;
    *last_vid = last->vid;
    uint32_t present = 0;
    for (uint32_t i = 0; i < last->num_members; i++)
        present += find_entry(rs, last->member_ids[i]) != NULL;
    if (present < last->num_members / 2 + 1) {
        if (rs->num_entries != rs->traced_entries)
            core_trace(core, "restart: %u of %u members of view %d, no majority yet", present,
                       last->num_members, last->vid);
        rs->traced_entries = rs->num_entries;
        goto done;
    }
    /* with a majority but not everyone, wait half a timeout for the rest (they would
     * otherwise restart on their own later, as joiners without their logs' tails) */
    if (present < last->num_members && core->now_us - rs->round_started_us < rs->timeout_us / 2)
        goto done;
    int64_t trims[DR_LAYOUT_MAX_SUBGROUPS][DR_LAYOUT_MAX_SHARDS];
    l_trims = proposal_of_last(rs, last);
    for (uint32_t sg = 0; sg < assignment->num_subgroups; sg++)
        for (uint32_t sh = 0; sh < assignment->subgroups[sg].num_shards; sh++) {
            bool any;
            trims[sg][sh] = shard_trim(rs, last->vid, l_trims,
                                       &assignment->subgroups[sg].shards[sh], sg, sh, &any);
            if (!any) {
                core_trace(core, "restart: no member of subgroup %u shard %u yet", sg, sh);
                goto done;
            }
        }
    /* members: the reporting members of L in L's rank order. Not the other reporters (nodes
     * whose saved view is older and that L does not name): L's history may have dropped records
     * their logs hold (an earlier restart's trims they never applied), and there is no log
     * shipping to bring them up to date, so they join the restarted group as new members
     * (state transfer; restart_abandon empties their logs) */
    memset(next, 0, sizeof *next);
    next->vid = last->vid + 1;
    for (uint32_t i = 0; i < last->num_members; i++) {
        const restart_entry *entry = find_entry(rs, last->member_ids[i]);
        if (entry == NULL)
            continue;
        next->member_ids[next->num_members] = entry->node_id;
        snprintf(next->addresses[next->num_members++], DR_ADDRESS_MAX, "%s", entry->address);
    }
    dr_err err;
    rc = dr_layout_compute(&core->options.layout, assignment, next->member_ids, next->num_members,
                           layout, &err);
    if (rc != 0 || !layout->adequate) {
        if (rs->num_entries != rs->traced_layout)
            core_trace(core, "restart: layout over %u nodes not adequate", next->num_members);
        rs->traced_layout = rs->num_entries;
        rc = 0;
        goto done;
    }
    dr_buf frame;
    dr_buf_init(&frame, 0);
    rc = dr_wire_encode_view_with_layout(&frame, core->options.my_id, next, layout, assignment);
    dr_buf_reset(out);
    if (rc == 0)
        rc = dr_buf_put_blob(out, frame.data, (uint32_t)frame.len);
    dr_buf_free(&frame);
    uint32_t count = 0;
    for (uint32_t sg = 0; sg < assignment->num_subgroups; sg++)
        count += assignment->subgroups[sg].num_shards;
    dr_buf_put_u32(out, count);
    for (uint32_t sg = 0; sg < assignment->num_subgroups; sg++)
        for (uint32_t sh = 0; sh < assignment->subgroups[sg].num_shards; sh++) {
            dr_buf_put_u32(out, sg);
            dr_buf_put_u32(out, sh);
            dr_buf_put_u64(out, (uint64_t)trims[sg][sh]);
            core_trace(core, "restart: subgroup %u shard %u trim %lld", sg, sh,
                       (long long)trims[sg][sh]);
        }
    dr_buf_put_u32(out, last->num_members);
    for (uint32_t i = 0; i < last->num_members; i++)
        dr_buf_put_u32(out, last->member_ids[i]);
    if (rc == 0 && out->failed)
        rc = DR_ENOMEM;
    *made = rc == 0;
done:
    free(l_trims);
    free(saved);
    free(layout);
    free(next);
    return rc;
}

static int encode_with_round(dr_core *core, dr_wire_type type, uint32_t round,
                             const uint8_t *proposal, size_t len) {
    dr_buf_reset(&core->scratch);
    size_t start = dr_wire_begin(&core->scratch, type, core->options.my_id, DR_WIRE_NO_VIEW);
    dr_buf_put_u32(&core->scratch, round);
    if (proposal != NULL)
        dr_buf_put_bytes(&core->scratch, proposal, len);
    return dr_wire_finish(&core->scratch, start);
}

static int install(dr_core *core, const uint8_t *proposal, size_t len, uint32_t round);

/**
 * Gives up restarting to join the group that `view` (a committed restart view) restarts, as a
 * new member, through one of its members other than me. A stateless node the view names is
 * refused (DR_EAGAIN) until failure detection removes the member it never became.
 */
static int join_instead(dr_core *core, const dr_view *view) {
    const char *through = NULL;
    for (uint32_t i = 0; i < view->num_members && through == NULL; i++)
        if (view->member_ids[i] != core->options.my_id)
            through = view->addresses[i];
    if (through == NULL)
        return core_reject(core, DR_NODE_NONE, "restart view without another member");
    int rc = membership_join_instead(core, through, core->options.my_id);
    return rc != 0 ? rc : membership_join_through(core, through, core->options.my_id);
}

/** Leader: records the acceptance of node `id` (as a member of L and of the proposed view). */
static void record_ack(struct restart_state *rs, uint32_t id) {
    for (uint32_t k = 0; k < rs->num_last; k++)
        if (rs->last_ids[k] == id)
            rs->acked[k] = true;
    for (uint32_t i = 0; i < rs->proposal_view.num_members; i++)
        if (rs->proposal_view.member_ids[i] == id)
            rs->acked_view[i] = true;
}

/**
 * Leader: a majority of the saved view L the proposal is based on accepted it, and a majority
 * of the proposed view: commit (install, tell everyone). Any later round's quorum holds a
 * majority of L too, so it hears of this proposal from one of them and adopts it; a restart
 * from the proposed view (after its install) needs a majority of it, so one of those knows.
 */
static int maybe_commit(dr_core *core) {
    struct restart_state *rs = core->restart;
    uint32_t acks = 0, view_acks = 0;
    for (uint32_t k = 0; k < rs->num_last; k++)
        acks += rs->acked[k] ? 1u : 0u;
    for (uint32_t i = 0; i < rs->proposal_view.num_members; i++)
        view_acks += rs->acked_view[i] ? 1u : 0u;
    if (acks < rs->num_last / 2 + 1 || view_acks < rs->proposal_view.num_members / 2 + 1)
        return 0;
    core_trace(core, "restart round %u: %u of %u members of the saved view accepted, commit",
               rs->round, acks, rs->num_last);
    uint8_t *proposal = rs->proposal;
    size_t len = rs->proposal_len;
    rs->proposal = NULL;
    int rc = 0;
    if (in_view(&rs->proposal_view, core->options.my_id) && !rs->stateless) {
        rc = install(core, proposal, len, rs->round);
    } else {
        /* a leader whose saved view is older than L is not in the restart view, and a
         * stateless one (named by an adopted proposal) holds nothing it could bring into it:
         * it tells the members, then joins the group they restart as a new member */
        rc = encode_with_round(core, DR_MSG_RESTART_COMMIT, rs->round, proposal, len);
        for (uint32_t i = 0; rc == 0 && i < rs->proposal_view.num_members; i++)
            if (rs->proposal_view.member_ids[i] != core->options.my_id)
                rc = core_send_scratch(core, rs->proposal_view.member_ids[i]);
        if (rc == 0)
            rc = join_instead(core, &rs->proposal_view);
    }
    free(proposal);
    return rc;
}

/**
 * Why an acceptor must not accept or install a restart view (NULL: it may). The view I saved
 * myself may come again: I installed it before a power cut that the others, who had only
 * accepted it, restart it from (their votes). Anything else at or below my saved view's id
 * contradicts what I installed; a view older than one I accepted was overtaken (a node
 * installed it and a restart went beyond it), and a node installing it now would be stale.
 */
static const char *stale_proposal(const struct restart_state *rs, const dr_view *view) {
    bool again = view->vid == rs->my_vid && view->num_members == rs->my_view_count &&
                 memcmp(view->member_ids, rs->my_view_ids,
                        rs->my_view_count * sizeof rs->my_view_ids[0]) == 0;
    if (view->vid <= rs->my_vid && !again)
        return "restart view not newer than my saved view";
    if (view->vid < proposal_vid(rs->accepted, rs->accepted_len))
        return "restart view older than one this node accepted";
    return NULL;
}

/** Accepts (round, proposal) as an acceptor: remembers it, restarts the round's timer. */
static int accept(dr_core *core, uint32_t round, const uint8_t *proposal, size_t len) {
    struct restart_state *rs = core->restart;
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return DR_ENOMEM;
    memcpy(copy, proposal, len);
    free(rs->accepted);
    rs->accepted = copy;
    rs->accepted_len = len;
    rs->accepted_round = round + 1;
    rs->round_started_us = core->now_us;
    return save_vote(core); /* durable before my acceptance counts anywhere */
}

/**
 * Whether an adopted proposal P (view L + 1) may be proposed again now. P may have been
 * installed already, by a leader that committed it before a power cut, and a view that was
 * installed may have been used. Every node that reported has not installed P (its saved view
 * would be P, and L with it). So: if each shard of P has a reporting member, no shard delivered
 * anything in P (a delivery needs every member of the shard); if a majority of P reported, a
 * later view built on P (chosen by a majority of P) shows in some report as an accepted
 * proposal beyond L + 1, and this leader waits instead. *ready: both hold.
 */
static int adoptable(dr_core *core, const restart_proposal *p, bool *ready) {
    const struct restart_state *rs = core->restart;
    const dr_view *view = &p->view.view;
    uint32_t reported = 0;
    for (uint32_t i = 0; i < view->num_members; i++)
        reported += find_entry(rs, view->member_ids[i]) != NULL;
    *ready = reported >= view->num_members / 2 + 1;
    if (!*ready)
        return 0;
    dr_layout *layout = malloc(sizeof *layout);
    if (layout == NULL)
        return DR_ENOMEM;
    int rc = dr_layout_compute(&core->options.layout, &p->view.assignment, view->member_ids,
                               view->num_members, layout, NULL);
    for (uint32_t sg = 0; rc == 0 && *ready && sg < layout->num_subgroups; sg++)
        for (uint32_t sh = 0; *ready && sh < layout->subgroups[sg].num_shards; sh++) {
            const dr_shard_layout *shard = &layout->subgroups[sg].shards[sh];
            bool any = false;
            for (uint32_t m = 0; m < shard->num_members && !any; m++)
                any = find_entry(rs, shard->member_ids[m]) != NULL;
            *ready = any;
        }
    free(layout);
    return rc == 0 ? 0 : DR_EPROTO; /* its leader computed that layout */
}

static int try_propose(dr_core *core) {
    struct restart_state *rs = core->restart;
    if (rs->proposed || rs->num_entries == 0)
        return 0;
    dr_buf mine;
    dr_buf_init(&mine, 0);
    bool made = false;
    int32_t last_vid = -1;
    int rc = compute_proposal(core, &mine, &made, &last_vid); /* also the quorum check */
    if (rc != 0 || !made) {
        dr_buf_free(&mine);
        return rc;
    }
    /* Paxos: a proposal some node accepted in an earlier round may have been chosen; adopt
     * the one of the highest round among the reports. Only proposals built on the same saved
     * view L count: one built on an older view was superseded by a view someone installed.
     * One built on a newer view than L means a node installed that view (proposals are built
     * on saved views): the group can only restart from it, so wait for its members. */
    const restart_entry *adopt = NULL;
    int32_t newest = -1;
    for (uint32_t i = 0; i < rs->num_entries; i++) {
        const restart_entry *e = &rs->entries[i];
        int32_t vid = proposal_vid(e->accepted, e->accepted_len);
        newest = vid > newest ? vid : newest;
        if (vid == last_vid + 1 && (adopt == NULL || e->accepted_round > adopt->accepted_round))
            adopt = e;
    }
    if (newest > last_vid + 1) {
        if (rs->num_entries != rs->traced_adopt)
            core_trace(core,
                       "restart: a report accepted view %d, built on a view newer than %d: "
                       "wait for its members",
                       newest, last_vid);
        rs->traced_adopt = rs->num_entries;
        dr_buf_free(&mine);
        return 0;
    }
    const uint8_t *bytes = mine.data;
    size_t len = mine.len;
    if (adopt != NULL) {
        core_trace(core, "restart round %u: adopt the proposal accepted in round %u", rs->round,
                   adopt->accepted_round - 1);
        bytes = adopt->accepted;
        len = adopt->accepted_len;
    }
    restart_proposal *decoded = malloc(sizeof *decoded);
    const char *why = NULL;
    rc = decoded == NULL ? DR_ENOMEM : decode_proposal(bytes, len, decoded, &why);
    bool ready = true;
    if (rc == 0 && adopt != NULL)
        rc = adoptable(core, decoded, &ready);
    if (rc == 0 && !ready) {
        if (rs->num_entries != rs->traced_adopt)
            core_trace(core,
                       "restart round %u: view %d of round %u may be installed: wait for "
                       "a majority of it and a member of each of its shards",
                       rs->round, decoded->view.view.vid, adopt->accepted_round - 1);
        rs->traced_adopt = rs->num_entries;
        free(decoded);
        dr_buf_free(&mine);
        return 0;
    }
    if (rc == 0) {
        rs->proposal = malloc(len);
        rc = rs->proposal == NULL ? DR_ENOMEM : 0;
    }
    if (rc == 0) {
        memcpy(rs->proposal, bytes, len);
        rs->proposal_len = len;
        rs->proposal_view = decoded->view.view;
        rs->num_last = decoded->num_last;
        memcpy(rs->last_ids, decoded->last_ids, sizeof rs->last_ids);
        rs->proposed = true;
        memset(rs->acked, 0, sizeof rs->acked);
        memset(rs->acked_view, 0, sizeof rs->acked_view);
        rc = accept(core, rs->round, bytes, len);
    }
    free(decoded);
    dr_buf_free(&mine);
    if (rc != 0)
        return rc;
    core_trace(core, "restart round %u: propose view %d with %u members", rs->round,
               rs->proposal_view.vid, rs->proposal_view.num_members);
    /* the acceptors: every member of L that reported (an adopted proposal may leave some of
     * them out of its view: they accept all the same, and join the restarted group later),
     * and the proposal's members that did not report (by address) */
    rc = encode_with_round(core, DR_MSG_RESTART_PREPARE, rs->round, rs->proposal, rs->proposal_len);
    record_ack(rs, core->options.my_id); /* accept() saved my vote */
    for (uint32_t k = 0; rc == 0 && k < rs->num_last; k++) {
        uint32_t id = rs->last_ids[k];
        if (id != core->options.my_id && find_entry(rs, id) != NULL)
            rc = core_send_scratch(core, id); /* it reported: the driver knows its connection */
    }
    for (uint32_t i = 0; rc == 0 && i < rs->proposal_view.num_members; i++) {
        uint32_t id = rs->proposal_view.member_ids[i];
        if (id != core->options.my_id && find_entry(rs, id) == NULL)
            rc = core_send_scratch_to_address(core, rs->proposal_view.addresses[i]);
    }
    return rc == 0 ? maybe_commit(core) : rc;
}

/* ---- install ------------------------------------------------------------------------- */

static int install(dr_core *core, const uint8_t *proposal, size_t len, uint32_t round) {
    struct restart_state *rs = core->restart;
    restart_proposal *p = malloc(sizeof *p);
    dr_layout *layout = malloc(sizeof *layout);
    int rc = p && layout ? 0 : DR_ENOMEM;
    const char *why = NULL;
    if (rc == 0 && decode_proposal(proposal, len, p, &why) != 0)
        rc = core_reject(core, DR_NODE_NONE, why);
    if (rc == 0 && !in_view(&p->view.view, core->options.my_id))
        rc = core_reject(core, DR_NODE_NONE, "restart view without this node");
    if (rc == 0 && rs->stateless) {
        /* named by an adopted proposal made before I discarded my state: my logs are empty,
         * and a member without its shard's history would break what the trims promise */
        core_trace(core, "restart: stateless, so view %d is joined, not installed",
                   p->view.view.vid);
        rc = join_instead(core, &p->view.view);
        free(p);
        free(layout);
        return rc;
    }
    /* A stale commit is no protocol error: a re-commit of a view that a restart went beyond
     * (the group then redirects me, or removes the member I would have been, and I join) */
    const char *stale = rc == 0 ? stale_proposal(rs, &p->view.view) : NULL;
    if (stale != NULL) {
        DR_WARN(DR_LOGM_VIEWMANAGER, "node %u: restart view %d not installed: %s",
                core->options.my_id, p->view.view.vid, stale);
        core_trace(core, "restart: ignore the commit of view %d: %s", p->view.view.vid, stale);
        free(p);
        free(layout);
        return 0;
    }
    if (rc == 0) {
        rc = dr_layout_compute(&core->options.layout, &p->view.assignment, p->view.view.member_ids,
                               p->view.view.num_members, layout, NULL);
        if (rc != 0 || !layout->adequate ||
            dr_layout_fingerprint(layout) != p->view.layout_fingerprint)
            rc = core_reject(core, DR_NODE_NONE, "restart view layout differs from ours");
    }
    /* the commit frame: kept to answer members that ask again */
    if (rc == 0)
        rc = encode_with_round(core, DR_MSG_RESTART_COMMIT, round, proposal, len);
    uint8_t *commit = NULL;
    size_t commit_len = 0;
    if (rc == 0)
        commit = dr_buf_steal(&core->scratch, &commit_len);
    if (rc == 0 && commit == NULL)
        rc = DR_ENOMEM;
    /* cut my logs first: nothing beyond the trim may survive into the new view */
    for (uint32_t i = 0; rc == 0 && i < p->num_trims; i++) {
        uint32_t sg = p->trims[i].subgroup, sh = p->trims[i].shard;
        int found = dr_layout_find_shard(layout, sg, core->options.my_id, NULL);
        if (found != (int)sh)
            continue;
        dr_action action = {
            .type = DR_ACTION_TRUNCATE, .subgroup = sg, .shard = sh, .version = p->trims[i].trim};
        core_trace(core, "restart: truncate subgroup %u shard %u after %lld", sg, sh,
                   (long long)p->trims[i].trim);
        rc = core_push_action(core, &action);
        /* what survives in my log is durable here: re-published in the view's table (and
         * nothing beyond the trim, whatever was reported before) */
        int64_t kept = rs->tails[sg] < p->trims[i].trim ? rs->tails[sg] : p->trims[i].trim;
        core->persisted_local[sg] = kept;
    }
    if (rc == 0) {
        DR_INFO(DR_LOGM_VIEWMANAGER, "node %u: total restart installs view %d", core->options.my_id,
                p->view.view.vid);
        rc = core_install_view(core, &p->view.view, layout, &p->view.assignment);
    }
    if (rc == 0) {
        reset_leader(rs);
        free(rs->commit_frame);
        rs->commit_frame = commit;
        rs->commit_len = commit_len;
        rs->commit_vid = p->view.view.vid;
        commit = NULL;
        rc = save_installed(core, p->view.view.vid, proposal, len);
        /* everyone in the view hears of the commit from everyone who installs it (the
         * leader may die right after its first send); by node id: the view is installed, so
         * the driver connects its members as for any view */
        for (uint32_t i = 0; rc == 0 && i < core->view.num_members; i++)
            if (core->view.member_ids[i] != core->options.my_id)
                rc = core_send_bytes(core, core->view.member_ids[i], rs->commit_frame,
                                     rs->commit_len);
    }
    free(commit);
    free(p);
    free(layout);
    return rc;
}

/* ---- events -------------------------------------------------------------------------- */

int restart_start(dr_core *core, const dr_core_restart_options *options) {
    if (options->saved_view_len > DR_RESTART_MAX_VIEW_BYTES)
        return DR_EINVAL;
    struct restart_state *rs = calloc(1, sizeof *rs);
    if (rs == NULL)
        return DR_ENOMEM;
    core->restart = rs;
    dr_msg_view *saved = malloc(sizeof *saved);
    if (saved == NULL)
        return DR_ENOMEM;
    const char *why = NULL;
    int rc = decode_view_frame(options->saved_view, options->saved_view_len, saved, &why);
    bool member = rc == 0 && in_view(&saved->view, core->options.my_id);
    if (rc == 0)
        rs->my_vid = saved->view.vid;
    if (rc == 0) {
        rs->my_view_count = saved->view.num_members;
        memcpy(rs->my_view_ids, saved->view.member_ids, sizeof rs->my_view_ids);
        memcpy(rs->my_view_addresses, saved->view.addresses, sizeof rs->my_view_addresses);
    }
    free(saved);
    if (rc != 0 || !member) {
        DR_ERROR(DR_LOGM_VIEWMANAGER, "node %u: saved view unusable: %s", core->options.my_id,
                 rc != 0 ? why : "this node is not in it");
        return DR_EINVAL;
    }
    rs->my_frame = malloc(options->saved_view_len);
    if (rs->my_frame == NULL)
        return DR_ENOMEM;
    memcpy(rs->my_frame, options->saved_view, options->saved_view_len);
    rs->my_len = options->saved_view_len;
    memcpy(rs->tails, options->tails, sizeof rs->tails);
    rs->stateless = options->stateless;
    if (rs->stateless)
        for (uint32_t sg = 0; sg < DR_LAYOUT_MAX_SUBGROUPS; sg++)
            rs->tails[sg] = -1; /* its logs were discarded with its membership */
    rs->num_leaders = options->num_leaders < DR_RESTART_MAX_LEADERS ? options->num_leaders
                                                                    : DR_RESTART_MAX_LEADERS;
    for (uint32_t i = 0; i < rs->num_leaders; i++)
        snprintf(rs->leaders[i], DR_ADDRESS_MAX, "%s", options->leaders[i]);
    if (rs->num_leaders == 0) {
        snprintf(rs->leaders[0], DR_ADDRESS_MAX, "%s", core->options.contact_address);
        rs->num_leaders = 1;
    }
    rs->timeout_us = (uint64_t)(options->timeout_ms ? options->timeout_ms : 2000) * 1000u;
    int rc_vote = load_vote(rs, options->vote, options->vote_len);
    if (rc_vote != 0) { /* forgetting a vote could let two restart views be chosen */
        DR_ERROR(DR_LOGM_VIEWMANAGER, "node %u: saved restart vote unusable: %s",
                 core->options.my_id, dr_strerror(rc_vote));
        return rc_vote;
    }
    core->state = CORE_RESTARTING;
    core_trace(core, "restarting from saved view %d (round %u, accepted round %u)", rs->my_vid,
               rs->round, rs->accepted_round);
    return enter_round(core, rs->round);
}

/* How soon a report is sent again while its leader has not answered (at most join_retry_us).
 * The leader of a total restart often opens its log last and listens only then; a report sent
 * before was lost with its connection, and at the runtime's join_retry_us (500 ms) the restart
 * waited up to half a second for nothing (docs/perf/durable.md, "Where the 5.5 s went"). */
#define RESTART_RESEND_US 100000u

int restart_on_tick(dr_core *core) {
    struct restart_state *rs = core->restart;
    if (core->state != CORE_RESTARTING || rs == NULL)
        return 0;
    if (core->now_us - rs->round_started_us >= rs->timeout_us)
        return enter_round(core, rs->round + 1); /* the leader is silent: the next one */
    if (i_lead(core))
        return try_propose(core); /* a majority waited long enough for the rest? */
    uint64_t resend_us = core->options.join_retry_us < RESTART_RESEND_US
                             ? core->options.join_retry_us
                             : RESTART_RESEND_US;
    if (core->now_us - rs->last_request_us >= resend_us)
        return send_request(core, leader_of(rs, rs->round), true);
    return 0;
}

static int on_request(dr_core *core, const dr_wire_header *header, dr_reader *reader,
                      uint32_t round) {
    struct restart_state *rs = core->restart;
    restart_entry entry;
    memset(&entry, 0, sizeof entry);
    entry.node_id = header->sender_id;
    uint32_t len = 0;
    const uint8_t *text = dr_reader_blob(reader, DR_ADDRESS_MAX - 1, &len);
    if (!reader->failed && len > 0)
        memcpy(entry.address, text, len);
    uint32_t frame_len = 0;
    const uint8_t *frame = dr_reader_blob(reader, DR_RESTART_MAX_VIEW_BYTES, &frame_len);
    uint32_t num_tails = dr_reader_u32(reader);
    if (reader->failed || len == 0 || memchr(entry.address, '\0', len) != NULL ||
        num_tails > DR_LAYOUT_MAX_SUBGROUPS)
        return core_reject(core, header->sender_id, "RESTART_REQUEST: bad address or tails");
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        entry.tails[s] = s < num_tails ? (int64_t)dr_reader_u64(reader) : -1;
    entry.accepted_round = dr_reader_u32(reader);
    uint32_t accepted_len = 0;
    const uint8_t *accepted = dr_reader_blob(reader, 2 * DR_RESTART_MAX_VIEW_BYTES, &accepted_len);
    uint8_t stateless = dr_reader_u8(reader);
    entry.stateless = stateless == 1;
    uint32_t installed_len = 0;
    const uint8_t *installed =
        dr_reader_blob(reader, 2 * DR_RESTART_MAX_VIEW_BYTES, &installed_len);
    if (reader->failed || !dr_reader_done(reader) || stateless > 1 ||
        (entry.accepted_round > 0) != (accepted_len > 0))
        return core_reject(core, header->sender_id, "RESTART_REQUEST: malformed");
    dr_msg_view *saved = malloc(sizeof *saved);
    if (saved == NULL)
        return DR_ENOMEM;
    const char *why = NULL;
    int rc = decode_view_frame(frame, frame_len, saved, &why);
    bool member = rc == 0 && in_view(&saved->view, header->sender_id);
    entry.vid = saved->view.vid;
    free(saved);
    if (rc != 0 || !member)
        return core_reject(core, header->sender_id,
                           rc != 0 ? why : "RESTART_REQUEST: sender not in its saved view");
    if (core->state == CORE_IN_VIEW) {
        /* a member that missed the commit of the restart view I am in: send it again */
        if (rs != NULL && rs->commit_frame != NULL && core->view.vid == rs->commit_vid &&
            core_view_rank(core, header->sender_id) >= 0) {
            dr_buf_reset(&core->scratch);
            dr_buf_put_bytes(&core->scratch, rs->commit_frame, rs->commit_len);
            return core_send_scratch(core, header->sender_id); /* on its connection */
        }
        /* the group runs without it (it restarted late, or alone): it must join instead */
        core_trace(core, "restart request from %u while in view %d: redirect it to join",
                   header->sender_id, core->view.vid);
        return membership_redirect_to_leader(core, header->sender_id);
    }
    if (core->state != CORE_RESTARTING)
        return 0;
    if (round < rs->round)
        return send_request(core, entry.address, false); /* it is behind: show it my round */
    if (round > rs->round) {
        rc = enter_round(core, round);
        if (rc != 0 || core->state != CORE_RESTARTING)
            return rc;
    }
    if (!i_lead(core) || rs->proposed)
        return 0;
    rc = copy_report(&entry, frame, frame_len, accepted, accepted_len, installed, installed_len);
    return rc != 0 ? rc : add_entry(core, &entry);
}

int restart_on_message(dr_core *core, const dr_wire_header *header, const uint8_t *body) {
    struct restart_state *rs = core->restart;
    dr_reader reader;
    dr_reader_init(&reader, body, header->body_len);
    uint32_t round = dr_reader_u32(&reader);
    if (reader.failed)
        return core_reject(core, header->sender_id, "restart message without a round");
    if (header->type == DR_MSG_RESTART_REQUEST)
        return on_request(core, header, &reader, round);
    if (core->state != CORE_RESTARTING || rs == NULL)
        return 0; /* installed already, or not restarting */
    const uint8_t *rest = body + reader.pos;
    size_t rest_len = header->body_len - reader.pos;
    if (header->type == DR_MSG_RESTART_COMMIT) {
        core_trace(core, "restart: commit of round %u from %u", round, header->sender_id);
        return install(core, rest, rest_len, round);
    }
    if (header->type == DR_MSG_RESTART_ACK) {
        if (round != rs->round || !rs->proposed || rest_len != 0)
            return 0;
        record_ack(rs, header->sender_id);
        return maybe_commit(core);
    }
    /* PREPARE */
    if (round < rs->round) {
        core_trace(core, "restart: ignore PREPARE of old round %u", round);
        return 0;
    }
    restart_proposal *p = malloc(sizeof *p);
    if (p == NULL)
        return DR_ENOMEM;
    const char *why = NULL;
    int rc = decode_proposal(rest, rest_len, p, &why);
    const char *stale = rc == 0 ? stale_proposal(rs, &p->view.view) : NULL;
    free(p);
    if (rc != 0)
        return core_reject(core, header->sender_id, why);
    if (stale != NULL) { /* no ack: its leader waits, or learns of the newer view elsewhere */
        core_trace(core, "restart: refuse PREPARE of round %u: %s", round, stale);
        return 0;
    }
    if (round > rs->round) {
        reset_leader(rs);
        rs->round = round;
    }
    if (strcmp(leader_of(rs, round), core->options.my_address) == 0)
        return 0; /* my own round: only I propose in it */
    rc = accept(core, round, rest, rest_len);
    if (rc == 0)
        rc = encode_with_round(core, DR_MSG_RESTART_ACK, round, NULL, 0);
    core_trace(core, "restart: accepted round %u, ack to %s", round, leader_of(rs, round));
    return rc == 0 ? send_to_leader(core, leader_of(rs, round)) : rc;
}

int restart_abandon(dr_core *core) {
    struct restart_state *rs = core->restart;
    if (rs == NULL || rs->discarded)
        return 0;
    core_trace(core, "restart abandoned: saved view, logs and bases discarded");
    dr_action action = {.type = DR_ACTION_DISCARD_DURABLE};
    int rc = core_push_action(core, &action);
    if (rc != 0)
        return rc;
    for (uint32_t sg = 0; sg < DR_LAYOUT_MAX_SUBGROUPS; sg++)
        rs->tails[sg] = -1;
    rs->discarded = true;
    return 0;
}

uint32_t restart_node_at(const dr_core *core, const char *address) {
    const struct restart_state *rs = core->restart;
    for (uint32_t i = 0; rs != NULL && i < rs->my_view_count; i++)
        if (strcmp(rs->my_view_addresses[i], address) == 0)
            return rs->my_view_ids[i];
    return DR_NODE_NONE;
}

void restart_free(dr_core *core) {
    struct restart_state *rs = core->restart;
    if (rs == NULL)
        return;
    reset_leader(rs);
    free(rs->my_frame);
    free(rs->accepted);
    free(rs->installed);
    free(rs->commit_frame);
    free(rs);
    core->restart = NULL;
}
