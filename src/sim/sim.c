/*
 * The simulator engine (sim.h): nodes, a virtual network, random workloads and the invariant
 * checker.
 *
 * Network model: every directed link has a seeded base latency, jitter and bandwidth, and two
 * lanes like the transport's per-peer queue (net.h, dr_net_send_lane): data frames (DATA, NULLS,
 * BLOCK: dr_wire_is_data) and control frames (everything else). A frame arrives at
 * max(now + latency + jitter + size / bandwidth, the previous arrival of its lane); a data frame
 * also never before the previous control frame. So each lane is FIFO like a TCP connection,
 * a control frame may overtake data frames sent before it on the same link (the transport's
 * urgent lane jumps the queue), never the other way round, and different links race.
 * config.fifo_links puts every frame in one lane (one FIFO link, the model before the lanes).
 * Events (frame arrivals, ticks, application sends, node starts) sit in a heap ordered by (virtual
 * time, insertion number); equal times are broken by a seeded random tiebreak, so scheduling varies
 * with the seed.
 *
 * Checks on every DELIVER (cheap): the payload is a message its sender really multicast, with
 * the same bytes (no creation), each sender's messages arrive once and in order (no duplication,
 * FIFO), ordered versions grow and carry the view id, and every member's ordered sequence matches
 * the shard's reference sequence position by position (total order). Every VIEW_INSTALLED must
 * agree with the leader's view; no frame between correct nodes may be rejected. At the end:
 * every multicast message was delivered to every member of its shard (liveness), the duplicate
 * id (when the seed adds one) was refused.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/wire.h"
#include "derecho/buffer.h"
#include "sim/sim.h"

#define SIM_MAX_NODES     17u
#define SIM_MAX_SUBGROUPS 4u
#define PAYLOAD_MAGIC     0x4d495300u /* "\0SIM", the low byte holds the sender's slot */
#define PAYLOAD_HEADER    16u

#define SIM_MAX_VIDS 64u

/* Invariant 5's bound (liveness_bound): failure timeouts after the last fault, plus slack for
 * joins (join_retry_us up to 20 ms, a redirect) and the ordinary pauses. */
#define SETTLE_TIMEOUTS 10u
#define SETTLE_SLACK_US 100000u

enum sim_event_kind {
    EV_START,
    EV_FRAME,
    EV_TICK,
    EV_APP_SEND,
    EV_RESUME,
    EV_CRASH,          /**< fault mode: the node dies */
    EV_LONG_PAUSE,     /**< fault mode: the node pauses past the failure timeout */
    EV_LEAVE,          /**< fault mode: the node leaves cleanly */
    EV_PARTITION,      /**< fault mode: the partition victims are cut off */
    EV_HEAL,           /**< fault mode: the partition heals */
    EV_DISCONNECT,     /**< fault mode: node learns its connection to `from` broke */
    EV_LINK_BREAK,     /**< fault mode: the link node <-> partner breaks (in-flight frames lost) */
    EV_ONE_WAY,        /**< fault mode: frames node -> partner are lost from now on (no error) */
    EV_BRIDGE,         /**< fault mode: bridge partition: victims | others, one bridge node */
    EV_MAJORITY_CRASH, /**< fault mode: a majority of the view crashes at once */
    EV_CONSUMED,       /**< the application took deliveries up to `version` (lagging) */
    EV_SYNC,           /**< durable mode: the node syncs its logs and reports them persisted */
    EV_POWER_CUT,      /**< durable mode: every node stops at once */
    EV_RESTART,        /**< durable mode: the node starts again from its saved view and logs */
};

/** What happens to a node in fault mode. */
enum sim_fault {
    FAULT_NONE,
    FAULT_CRASH,
    FAULT_PAUSE,
    FAULT_LEAVE,
    FAULT_PARTITION,
    FAULT_LINK,    /**< its link to `partner` breaks: one of the two may be excluded */
    FAULT_ONE_WAY, /**< its frames to `partner` are lost: one of the two may be excluded */
    FAULT_BRIDGE,  /**< cut off from every node but the bridge: one side may be excluded */
    FAULT_PARTNER, /**< the other end of a FAULT_LINK / FAULT_ONE_WAY */
};

typedef struct sim_event {
    uint64_t time_us;
    uint64_t order; /**< tiebreak: random high bits, insertion count low bits */
    int kind;
    uint32_t node; /**< target node index */
    uint32_t from; /**< EV_FRAME: source node index */
    uint32_t subgroup;
    uint8_t *bytes;
    size_t len;
    uint64_t link_seq; /**< EV_FRAME: position in its link's lane (checks the FIFO model) */
    uint32_t lane;     /**< EV_FRAME: LANE_DATA or LANE_CONTROL */
    uint32_t epoch;    /**< EV_FRAME: the link's epoch when sent (a break loses older frames) */
    int64_t version;   /**< EV_CONSUMED: the delivery taken up to */
} sim_event;

typedef struct sim_stream {
    uint32_t total; /**< messages this node multicasts in this subgroup */
    uint32_t sent;  /**< accepted by dr_core_send so far */
    uint32_t *lens; /**< size of each message */
    bool active;    /**< I am a sender of a shard of this subgroup */
    bool waiting;   /**< got DR_EAGAIN in a view: waits for WINDOW_OPEN */
} sim_stream;

/** Durable mode: one record of a node's simulated log (a delivered ordered message). */
typedef struct sim_log_entry {
    int64_t version; /**< the delivery's version */
    uint64_t item;   /**< which message: sender node index << 32 | msgno */
    uint32_t shard;  /**< the shard it was delivered in */
} sim_log_entry;

/** Durable mode: a node's log of one subgroup; entries[0..synced) survive any crash. */
typedef struct sim_log {
    sim_log_entry *entries;
    size_t len, cap;
    size_t synced; /**< entries made durable by the last EV_SYNC */
} sim_log;

/** Durable mode: what one restart's trim removed (versions above `trim` in views <= upto). */
typedef struct sim_discard {
    uint32_t subgroup, shard;
    int64_t trim;
    int32_t upto_vid; /**< the latest saved view the restart covered (restart view - 1) */
} sim_discard;

#define SIM_MAX_DISCARDS 64u

typedef struct sim_node {
    uint32_t id;
    char address[DR_ADDRESS_MAX];
    char contact[DR_ADDRESS_MAX];
    dr_core *core;
    bool duplicate;     /**< carries the leader's id: must be refused */
    bool defer_flush;   /**< batches pushes: flushed on ticks and at random moments */
    bool refused;       /**< got JOIN_FAILED */
    bool in_view;       /**< installed a view */
    dr_view_info *view; /**< its installed view (owned) */
    uint64_t start_us;
    uint32_t tick_us;
    bool paused;     /**< descheduled: events are held until EV_RESUME */
    sim_event *held; /**< events that arrived while paused, in order */
    size_t num_held, cap_held;
    sim_stream streams[SIM_MAX_SUBGROUPS];
    uint32_t next_expected[SIM_MAX_SUBGROUPS][SIM_MAX_NODES]; /**< per sender node index */
    uint64_t delivered[SIM_MAX_SUBGROUPS];
    int64_t last_version[SIM_MAX_SUBGROUPS];
    /* fault mode */
    int fault;      /**< enum sim_fault planned for this node */
    bool late;      /**< joins after the faults (not an initial member) */
    bool absent;    /**< a late node that never starts (majority-loss runs) */
    bool ready;     /**< may multicast: it is in the full group (or a late joiner) */
    bool dead;      /**< crashed or stopped: handles nothing more */
    bool stopped;   /**< got DR_ACTION_STOPPED */
    int stop_error; /**< its error */
    bool first_seen[SIM_MAX_SUBGROUPS][SIM_MAX_NODES]; /**< late joiner: sender seen */
    int8_t shard_at[SIM_MAX_SUBGROUPS][SIM_MAX_VIDS];  /**< my shard in view v, or -1 */
    int32_t max_vid;                                   /**< highest view installed */
    uint64_t resumed_us;                               /**< end of its last pause */
    bool long_pause;                                   /**< its long pause (FAULT_PAUSE) began */
    bool left;                                         /**< FAULT_LEAVE: dr_core_leave called */
    bool flex;            /**< may be excluded (a link or bridge fault decides which side goes) */
    bool must_stop;       /**< a survivor of a majority crash: must stop, never install a view */
    int32_t partner;      /**< FAULT_LINK / FAULT_ONE_WAY: the other end's index, else -1 */
    bool long_pause_over; /**< ... and ended: stopped, or a correct member again */
    uint64_t view_deliveries[SIM_MAX_SUBGROUPS]; /**< deliveries in the current view */
    int32_t restart_slot; /**< crash victim: the slot of its next incarnation, else -1 */
    int32_t restart_of;   /**< next incarnation: the crashed node's slot, else -1 */
    uint64_t incarnation; /**< its core's incarnation: broken-connection notices carry it */
    /* durable mode */
    sim_log logs[SIM_MAX_SUBGROUPS]; /**< its log of its shard of each subgroup */
    uint8_t *saved_view;             /**< the last view it installed, as the runtime saves it */
    size_t saved_view_len;
    dr_view saved_members; /**< ... its members (saved_members.vid -1: none saved) */
    bool restarting;       /**< this incarnation started from its saved view */
    bool stateless; /**< durable mark: it discarded its state to join (DR_ACTION_DISCARD_DURABLE)
                         and has not saved a view since */
    uint8_t *vote;  /**< its durable restart vote (DR_ACTION_SAVE_RESTART_VOTE), or NULL */
    size_t vote_len;
    int32_t base_vid; /**< its state covers every version of the views before this one without
                           its log: the state transfer of its join (the runtime's replay base) */
    bool trim_set[SIM_MAX_SUBGROUPS]; /**< a TRUNCATE came for the subgroup (restart) */
    int64_t trim[SIM_MAX_SUBGROUPS];  /**< ... the last version it kept */
    uint32_t trim_shard[SIM_MAX_SUBGROUPS];
} sim_node;

/** One delivered version of one shard: which message, and which nodes delivered it. */
typedef struct vmap_entry {
    bool used;
    uint32_t subgroup, shard;
    int64_t version;
    uint64_t item; /**< sender node index << 32 | msgno */
    uint32_t mask; /**< nodes (bit per index) that delivered it */
} vmap_entry;

/** The lanes of a link (the transport's normal and urgent lanes). */
enum { LANE_DATA = 0, LANE_CONTROL = 1, LANES = 2 };

typedef struct sim_link {
    uint64_t last_arrival_us[LANES]; /**< per lane: the latest arrival of a frame sent */
    uint32_t latency_us;
    uint32_t jitter_us;
    uint32_t bytes_per_ms;
    uint64_t frames_sent[LANES];      /**< frames put on the link, per lane */
    uint64_t frames_delivered[LANES]; /**< frames taken off it, per lane */
    bool cut;                         /**< partitioned: frames are lost */
    uint32_t epoch;                   /**< bumped when frames in flight are lost (a break) */
} sim_link;

/** Reference delivery order of one shard: (sender node index << 32 | message number). */
typedef struct sim_sequence {
    uint64_t *items;
    size_t len, cap;
} sim_sequence;

typedef struct sim {
    const sim_config *config;
    sim_result *result;
    uint64_t rng;
    uint64_t rng2; /**< restart faults only: keeps the main stream (and old seeds) unchanged */
    int32_t restart_index; /**< the slot kept for a crash victim's next incarnation, or -1 */
    uint64_t now_us;
    uint64_t inserted;
    sim_event *heap;
    size_t heap_len, heap_cap;
    uint32_t num_nodes;
    sim_node nodes[SIM_MAX_NODES];
    sim_link links[SIM_MAX_NODES][SIM_MAX_NODES];
    dr_core_options base; /**< options shared by every node */
    sim_sequence order[SIM_MAX_SUBGROUPS][DR_LAYOUT_MAX_SHARDS];
    uint32_t current_node; /**< for trace lines */
    bool failed;
    /* fault mode */
    uint32_t full_members; /**< initial members (late joiners come after) */
    bool faults_scheduled; /**< every initial member is in: faults are on their way */
    uint64_t timeout_us;   /**< heartbeat_ms x suspect_after_missed */
    vmap_entry *vmap;      /**< open addressing, vmap_cap entries (power of two) */
    size_t vmap_len, vmap_cap;
    dr_view_info *views[SIM_MAX_VIDS]; /**< first installed copy of each view */
    bool majority_crashed;             /**< the majority-loss scenario struck */
    bool bridged; /**< a bridge partition is planned: which side survives, if any, is open */
    uint64_t bridge_deadline_us;   /**< bridged runs end here (safety checked, not liveness) */
    uint64_t last_fault_us;        /**< the last fault event (strike, heal, long pause's end) */
    bool completed;                /**< the run reached its end state (not a deadline) */
    bool tampered;                 /**< config->tamper CORRUPT applied once */
    uint64_t settled_us;           /**< when the views first settled after the last fault */
    int32_t vid_at_majority_crash; /**< highest view installed when it struck */
    /* durable mode */
    int64_t frontier[SIM_MAX_SUBGROUPS][DR_LAYOUT_MAX_SHARDS]; /**< highest globally persisted
                                                                   version reported, or -1 */
    uint32_t cuts_left;                                        /**< power cuts still to come */
    bool cut_scheduled;    /**< the next power cut is in the heap */
    bool final_restart;    /**< the last cut struck: every node restarts, liveness is checked */
    bool minority_restart; /**< this epoch's restarting nodes hold no majority of their latest
                                saved view: none may install a view */
    sim_discard discards[SIM_MAX_DISCARDS];
    size_t num_discards;
    char leaders[DR_RESTART_MAX_LEADERS][DR_ADDRESS_MAX]; /**< restart leaders, in order */
    uint32_t num_leaders;
    uint32_t restart_timeout_ms;
} sim;

/* ---- randomness ---------------------------------------------------------------------- */

static uint64_t rng_next(sim *s) {
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/** Uniform in [lo, hi]. */
static uint32_t rng_range(sim *s, uint32_t lo, uint32_t hi) {
    assert(lo <= hi);
    return lo + (uint32_t)(rng_next(s) % ((uint64_t)hi - lo + 1));
}

static bool rng_chance(sim *s, uint32_t percent) {
    return rng_range(s, 0, 99) < percent;
}

/* ---- failures and trace -------------------------------------------------------------- */

/** Swaps in the second stream: draws made meanwhile leave the main stream untouched. */
static void swap_rng(sim *s) {
    uint64_t main_stream = s->rng;
    s->rng = s->rng2;
    s->rng2 = main_stream;
}

static void fail(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(sim *s, const char *fmt, ...) {
    if (s->failed)
        return;
    s->failed = true;
    va_list args;
    va_start(args, fmt);
    vsnprintf(s->result->failure, sizeof s->result->failure, fmt, args);
    va_end(args);
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] INVARIANT VIOLATION: %s\n", s->now_us,
                s->result->failure);
}

static void trace_line(void *ctx, const char *line) {
    sim *s = ctx;
    fprintf(s->config->trace, "[%10" PRIu64 " us] %s\n", s->now_us, line);
}

/* ---- event heap ---------------------------------------------------------------------- */

static bool event_before(const sim_event *a, const sim_event *b) {
    return a->time_us != b->time_us ? a->time_us < b->time_us : a->order < b->order;
}

static void heap_push(sim *s, sim_event event) {
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = realloc(s->heap, s->heap_cap * sizeof *s->heap);
        assert(s->heap != NULL);
    }
    event.order = (rng_next(s) & 0xffff000000000000ull) | s->inserted++;
    size_t i = s->heap_len++;
    while (i > 0 && event_before(&event, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = event;
}

static sim_event heap_pop(sim *s) {
    assert(s->heap_len > 0);
    sim_event top = s->heap[0];
    sim_event last = s->heap[--s->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->heap_len)
            break;
        if (child + 1 < s->heap_len && event_before(&s->heap[child + 1], &s->heap[child]))
            child++;
        if (!event_before(&s->heap[child], &last))
            break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (s->heap_len > 0)
        s->heap[i] = last;
    return top;
}

static void schedule(sim *s, uint64_t time_us, int kind, uint32_t node, uint32_t subgroup) {
    heap_push(s, (sim_event){.time_us = time_us, .kind = kind, .node = node, .subgroup = subgroup});
}

/* ---- payloads ------------------------------------------------------------------------ */

static uint8_t pattern_byte(uint32_t sender_id, uint32_t subgroup, uint32_t msgno, size_t i) {
    return (uint8_t)(sender_id * 131u + subgroup * 31u + msgno * 7u + (uint32_t)i * 13u);
}

/** A message's bytes: a header naming the sender (its id and slot: incarnations differ),
 * subgroup and number, then a pattern derived from them. */
static void make_payload(uint8_t *out, size_t len, uint32_t sender_slot, uint32_t sender_id,
                         uint32_t subgroup, uint32_t msgno) {
    assert(len >= PAYLOAD_HEADER && sender_slot < SIM_MAX_NODES);
    uint32_t header[4] = {PAYLOAD_MAGIC | sender_slot, sender_id, subgroup, msgno};
    memcpy(out, header, sizeof header);
    for (size_t i = PAYLOAD_HEADER; i < len; i++)
        out[i] = pattern_byte(sender_id, subgroup, msgno, i);
}

/**
 * True for the slot kept for a restart while that restart is not due: it takes no part in
 * fault draws (so a seed's run is unchanged until the crash of the node that restarts).
 */
static bool restart_not_due(const sim *s, uint32_t index) {
    return (int32_t)index == s->restart_index && s->nodes[index].absent;
}

/** True if the slot runs a core now (a restarted node's old slot does not). */
static bool live(const sim_node *node) {
    return node->core != NULL && !node->dead;
}

/** The slot of node `id`: its running incarnation if one runs, else its first slot. */
static int find_node_by_id(const sim *s, uint32_t id) {
    int found = -1;
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (s->nodes[i].id == id && !s->nodes[i].duplicate && (found < 0 || live(&s->nodes[i])))
            found = (int)i;
    return found;
}

/** As find_node_by_id, by address. */
static int find_node_by_address(const sim *s, const char *address) {
    int found = -1;
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (strcmp(s->nodes[i].address, address) == 0 && (found < 0 || live(&s->nodes[i])))
            found = (int)i;
    return found;
}

/* ---- checker ------------------------------------------------------------------------- */

static bool payload_is_genuine(sim *s, const dr_action *a, uint32_t *sender_index,
                               uint32_t *msgno) {
    uint32_t header[4];
    if (a->len < PAYLOAD_HEADER) {
        fail(s, "no creation: %zu-byte payload is not a simulated message", a->len);
        return false;
    }
    memcpy(header, a->bytes, sizeof header);
    uint32_t sender = header[0] & 0xffu;
    if ((header[0] & ~0xffu) != PAYLOAD_MAGIC || sender >= s->num_nodes ||
        s->nodes[sender].id != header[1] || header[1] != a->sender_id || header[2] != a->subgroup) {
        fail(s, "no creation: delivered payload names sender %u subgroup %u, action says %u/%u",
             header[1], header[2], a->sender_id, a->subgroup);
        return false;
    }
    const sim_stream *stream = &s->nodes[sender].streams[a->subgroup];
    if (header[3] >= stream->sent || stream->lens[header[3]] != a->len) {
        fail(s, "no creation: message %u of node %u (%zu bytes) was never sent", header[3],
             header[1], a->len);
        return false;
    }
    for (size_t i = PAYLOAD_HEADER; i < a->len; i++) {
        if (a->bytes[i] != pattern_byte(header[1], header[2], header[3], i)) {
            fail(s, "no creation: byte %zu of message %u from node %u corrupted", i, header[3],
                 header[1]);
            return false;
        }
    }
    *sender_index = sender;
    *msgno = header[3];
    return true;
}

static void check_total_order(sim *s, sim_node *node, const dr_action *a, uint64_t item) {
    sim_sequence *seq = &s->order[a->subgroup][a->shard];
    uint64_t position = node->delivered[a->subgroup];
    if (position < seq->len) {
        if (seq->items[position] != item)
            fail(s,
                 "total order: node %u delivered node %u msg %u at position %" PRIu64
                 " of subgroup %u shard %u, another member delivered node %u msg %u there",
                 node->id, s->nodes[item >> 32].id, (uint32_t)item, position, a->subgroup, a->shard,
                 s->nodes[seq->items[position] >> 32].id, (uint32_t)seq->items[position]);
        return;
    }
    assert(position == seq->len);
    if (seq->len == seq->cap) {
        seq->cap = seq->cap ? seq->cap * 2 : 64;
        seq->items = realloc(seq->items, seq->cap * sizeof *seq->items);
        assert(seq->items != NULL);
    }
    seq->items[seq->len++] = item;
}

static uint64_t vmap_hash(uint32_t subgroup, uint32_t shard, int64_t version) {
    uint64_t h = (uint64_t)version * 0x9e3779b97f4a7c15ull;
    h ^= ((uint64_t)subgroup << 40 | (uint64_t)shard << 20) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static void vmap_grow(sim *s) {
    vmap_entry *old = s->vmap;
    size_t old_cap = s->vmap_cap;
    s->vmap_cap = old_cap ? old_cap * 2 : 1024;
    s->vmap = calloc(s->vmap_cap, sizeof *s->vmap);
    assert(s->vmap != NULL);
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used)
            continue;
        size_t j = vmap_hash(old[i].subgroup, old[i].shard, old[i].version) & (s->vmap_cap - 1);
        while (s->vmap[j].used)
            j = (j + 1) & (s->vmap_cap - 1);
        s->vmap[j] = old[i];
    }
    free(old);
}

/** The entry of (subgroup, shard, version), created with `item` if new. */
static vmap_entry *vmap_get(sim *s, uint32_t subgroup, uint32_t shard, int64_t version,
                            uint64_t item) {
    if ((s->vmap_len + 1) * 2 > s->vmap_cap)
        vmap_grow(s);
    size_t j = vmap_hash(subgroup, shard, version) & (s->vmap_cap - 1);
    while (s->vmap[j].used) {
        vmap_entry *e = &s->vmap[j];
        if (e->subgroup == subgroup && e->shard == shard && e->version == version)
            return e;
        j = (j + 1) & (s->vmap_cap - 1);
    }
    s->vmap[j] = (vmap_entry){
        .used = true, .subgroup = subgroup, .shard = shard, .version = version, .item = item};
    s->vmap_len++;
    return &s->vmap[j];
}

/** Fault mode: a version names one message everywhere (total order across members/views). */
static void check_version_agreement(sim *s, uint32_t index, const dr_action *a, uint64_t item) {
    vmap_entry *e = vmap_get(s, a->subgroup, a->shard, a->version, item);
    if (e->item != item)
        fail(s,
             "total order: node %u delivered node %u msg %u as version %" PRId64
             " of subgroup %u shard %u; another member delivered node %u msg %u there",
             s->nodes[index].id, s->nodes[item >> 32].id, (uint32_t)item, a->version, a->subgroup,
             a->shard, s->nodes[e->item >> 32].id, (uint32_t)e->item);
    e->mask |= 1u << index;
}

static void check_delivery(sim *s, sim_node *node, const dr_action *a) {
    uint32_t sender = 0, msgno = 0;
    if (a->subgroup >= SIM_MAX_SUBGROUPS || !node->in_view) {
        fail(s, "node %u delivered in subgroup %u without a view", node->id, a->subgroup);
        return;
    }
    if (!payload_is_genuine(s, a, &sender, &msgno))
        return;
    uint32_t *expected = &node->next_expected[a->subgroup][sender];
    /* a late joiner (or, in durable mode, any joiner before the first cut) sees each sender's
     * stream from where it joined */
    if ((node->late || s->config->total_restart) && !node->first_seen[a->subgroup][sender]) {
        node->first_seen[a->subgroup][sender] = true; /* joined mid-stream */
        *expected = msgno;
    }
    if (msgno != *expected) {
        fail(s, "%s: node %u delivered msg %u of node %u, expected msg %u",
             msgno < *expected ? "no duplication" : "FIFO per sender", node->id, msgno,
             s->nodes[sender].id, *expected);
        return;
    }
    (*expected)++;
    if (a->mode == DR_MODE_ORDERED) {
        if (a->version <= node->last_version[a->subgroup] ||
            (a->version >> 32) != node->view->view.vid)
            fail(s, "versions: node %u delivered version %" PRId64 " after %" PRId64, node->id,
                 a->version, node->last_version[a->subgroup]);
        node->last_version[a->subgroup] = a->version;
        if (s->config->faults || s->config->total_restart)
            check_version_agreement(s, (uint32_t)(node - s->nodes), a,
                                    (uint64_t)sender << 32 | msgno);
        else
            check_total_order(s, node, a, (uint64_t)sender << 32 | msgno);
    } else if (a->version != -1) {
        fail(s, "raw delivery at node %u carries version %" PRId64, node->id, a->version);
    }
    node->delivered[a->subgroup]++;
    node->view_deliveries[a->subgroup]++;
    s->result->deliveries++;
    if (s->config->trace)
        fprintf(s->config->trace,
                "[%10" PRIu64 " us] node %u: DELIVER subgroup %u shard %u sender %u (index %" PRId64
                ") msg %u, %zu bytes, version %" PRId64 "\n",
                s->now_us, node->id, a->subgroup, a->shard, a->sender_id, a->index, msgno, a->len,
                a->version);
}

static bool same_view(const dr_view_info *a, const dr_view_info *b) {
    if (a->view.vid != b->view.vid || a->view.num_members != b->view.num_members)
        return false;
    for (uint32_t i = 0; i < a->view.num_members; i++)
        if (a->view.member_ids[i] != b->view.member_ids[i])
            return false;
    return dr_layout_fingerprint(&a->layout) == dr_layout_fingerprint(&b->layout);
}

static void schedule_faults(sim *s, const dr_layout *layout);

/** Fault mode: views agree per vid; shard membership per view is recorded for the checks. */
static void record_view(sim *s, uint32_t index, dr_view_info *info) {
    sim_node *node = &s->nodes[index];
    int32_t vid = info->view.vid;
    if (vid < 0 || (uint32_t)vid >= SIM_MAX_VIDS) {
        fail(s, "node %u installed view %d: more views than the simulator tracks", node->id, vid);
        return;
    }
    if (node->in_view && vid <= node->max_vid)
        fail(s, "node %u installed view %d after view %d", node->id, vid, node->max_vid);
    /* one view committed before the crash may still arrive; a second one needs a quorum */
    if (s->majority_crashed && vid > s->vid_at_majority_crash + 1)
        fail(s, "minority: node %u installed view %d after a majority of view %d crashed", node->id,
             vid, s->vid_at_majority_crash);
    if (s->views[vid] == NULL) {
        if (vid > 0)
            s->result->view_changes++;
        s->views[vid] = malloc(sizeof *info);
        assert(s->views[vid] != NULL);
        *s->views[vid] = *info;
    } else if (!same_view(s->views[vid], info)) {
        fail(s, "views differ: node %u's view %d is not the one others installed", node->id, vid);
    }
    node->max_vid = vid;
    for (uint32_t sg = 0; sg < info->layout.num_subgroups && sg < SIM_MAX_SUBGROUPS; sg++) {
        node->shard_at[sg][vid] = (int8_t)dr_layout_find_shard(&info->layout, sg, node->id, NULL);
        node->view_deliveries[sg] = 0;
    }
    if (!node->ready)
        node->ready = node->late || info->view.num_members >= s->full_members;
    uint32_t ready = 0;
    for (uint32_t i = 0; i < s->full_members; i++)
        ready += s->nodes[i].ready ? 1u : 0u;
    if (ready == s->full_members && !s->faults_scheduled)
        schedule_faults(s, &info->layout);
}

/* ---- durable mode: logs, persistence, restart views ------------------------------------ */

static const char *version_text(int64_t version, char *out, size_t cap) {
    if (version < 0)
        snprintf(out, cap, "none");
    else
        snprintf(out, cap, "(%" PRId64 ",%" PRId64 ")", version >> 32, version & 0xffffffff);
    return out;
}

/** Appends an ordered delivery to the node's log of its subgroup (not yet durable). */
static void log_append(sim_node *node, const dr_action *a) {
    sim_log *log = &node->logs[a->subgroup];
    if (log->len == log->cap) {
        log->cap = log->cap ? log->cap * 2 : 64;
        log->entries = realloc(log->entries, log->cap * sizeof *log->entries);
        assert(log->entries != NULL);
    }
    uint32_t header[4];
    memcpy(header, a->bytes, sizeof header); /* check_delivery made sure it is genuine */
    log->entries[log->len++] =
        (sim_log_entry){.version = a->version,
                        .item = (uint64_t)(header[0] & 0xffu) << 32 | header[3],
                        .shard = a->shard};
}

/** DR_ACTION_TRUNCATE: the node's log of `subgroup` keeps the versions up to `trim`. */
static void log_truncate(sim_node *node, uint32_t subgroup, uint32_t shard, int64_t trim) {
    sim_log *log = &node->logs[subgroup];
    while (log->len > 0 && log->entries[log->len - 1].version > trim)
        log->len--;
    if (log->synced > log->len)
        log->synced = log->len;
    node->trim_set[subgroup] = true;
    node->trim[subgroup] = trim;
    node->trim_shard[subgroup] = shard;
}

/** EV_SYNC: everything appended is durable now; the core learns it (PERSISTED_NUM). */
static void sync_logs(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
        sim_log *log = &node->logs[sg];
        bool grew = log->len > log->synced; /* the runtime reports what it appended and synced */
        log->synced = log->len;
        if (grew)
            dr_core_persisted(node->core, sg, log->entries[log->len - 1].version, s->now_us);
    }
    schedule(s, s->now_us + rng_range(s, 200, 3000), EV_SYNC, index, 0);
}

/** Saves the view being installed, as the runtime does (file_path/last_view). */
static void save_view(sim *s, sim_node *node, const dr_view_info *info) {
    dr_buf buf;
    dr_buf_init(&buf, 0);
    if (dr_wire_encode_view_with_layout(&buf, node->id, &info->view, &info->layout,
                                        &info->layout) != 0 ||
        buf.failed) {
        fail(s, "node %u: cannot encode view %d", node->id, info->view.vid);
        dr_buf_free(&buf);
        return;
    }
    free(node->saved_view);
    node->saved_view = dr_buf_steal(&buf, &node->saved_view_len);
    node->saved_members = info->view;
    node->stateless = false; /* the runtime removes its mark once a new view is saved */
    free(node->vote);        /* ...and its restart vote, which is for an older view now */
    node->vote = NULL;
    node->vote_len = 0;
    dr_buf_free(&buf);
}

/** DR_ACTION_DISCARD_DURABLE: every log emptied, the saved view marked stateless (durably). */
static void discard_durable(sim_node *node) {
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
        node->logs[sg].len = node->logs[sg].synced = 0;
    node->stateless = true;
}

static bool discarded(const sim *s, uint32_t subgroup, const sim_log_entry *e,
                      const sim_discard **by) {
    for (size_t d = 0; d < s->num_discards; d++) {
        const sim_discard *x = &s->discards[d];
        if (x->subgroup == subgroup && x->shard == e->shard && e->version > x->trim &&
            (int32_t)(e->version >> 32) <= x->upto_vid) {
            *by = x;
            return true;
        }
    }
    return false;
}

/**
 * Invariant 6 at a node's first view after a restart (its TRUNCATEs came just before): no
 * globally persisted version was cut, a minority never restarts, and its logs keep nothing
 * that an earlier restart discarded. Its own trims are then recorded as discards.
 */
static void check_restart_view(sim *s, uint32_t index, const dr_view_info *info, bool joined) {
    sim_node *node = &s->nodes[index];
    char a[48], b[48];
    if (s->minority_restart && !joined)
        fail(s,
             "minority restart: node %u installed view %d, but the restarting nodes hold no "
             "majority of their latest saved view",
             node->id, info->view.vid);
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS && !joined; sg++) {
        if (!node->trim_set[sg])
            continue;
        uint32_t sh = node->trim_shard[sg];
        int64_t frontier = s->frontier[sg][sh];
        if (node->trim[sg] < frontier && (int32_t)(frontier >> 32) >= node->base_vid)
            fail(s,
                 "invariant 6: restart view %d trims subgroup %u shard %u at version %s, "
                 "below the globally persisted %s",
                 info->view.vid, sg, sh, version_text(node->trim[sg], a, sizeof a),
                 version_text(frontier, b, sizeof b));
    }
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
        const sim_log *log = &node->logs[sg];
        for (size_t i = 0; i < log->len; i++) {
            const sim_discard *by = NULL;
            if (discarded(s, sg, &log->entries[i], &by)) {
                fail(s,
                     "invariant 6: node %u restarted into view %d keeping version %s of "
                     "subgroup %u shard %u, which the restart after view %d discarded (trim %s)",
                     node->id, info->view.vid, version_text(log->entries[i].version, a, sizeof a),
                     sg, log->entries[i].shard, by->upto_vid, version_text(by->trim, b, sizeof b));
                break;
            }
        }
    }
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
        if (!node->trim_set[sg] || joined) /* a join's truncation discards only its own log */
            continue;
        sim_discard d = {.subgroup = sg,
                         .shard = node->trim_shard[sg],
                         .trim = node->trim[sg],
                         .upto_vid = info->view.vid - 1};
        bool known = false;
        for (size_t i = 0; i < s->num_discards; i++)
            known |= memcmp(&s->discards[i], &d, sizeof d) == 0;
        if (!known && s->num_discards < SIM_MAX_DISCARDS)
            s->discards[s->num_discards++] = d;
        node->trim_set[sg] = false;
    }
}

/** A new view: the node's streams go on in the subgroups where it is a sender now. */
static void start_streams(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    for (uint32_t sg = 0; sg < node->view->layout.num_subgroups; sg++) {
        uint32_t rank = 0;
        int shard = dr_layout_find_shard(&node->view->layout, sg, node->id, &rank);
        node->streams[sg].active =
            shard >= 0 && node->view->layout.subgroups[sg].shards[shard].is_sender[rank];
        node->streams[sg].waiting = false;
        if (node->streams[sg].active && node->streams[sg].sent < node->streams[sg].total)
            schedule(s, s->now_us + rng_range(s, 0, 500), EV_APP_SEND, index, sg);
    }
}

static void schedule_power_cut(sim *s, uint64_t after_us) {
    if (s->cut_scheduled || s->cuts_left == 0)
        return;
    s->cut_scheduled = true;
    schedule(s, s->now_us + after_us, EV_POWER_CUT, 0, 0);
}

static void on_view_installed_durable(sim *s, uint32_t index, dr_action *a) {
    sim_node *node = &s->nodes[index];
    dr_view_info *info = a->view_info;
    int32_t vid = info->view.vid;
    if (vid < 0 || (uint32_t)vid >= SIM_MAX_VIDS) {
        fail(s, "node %u installed view %d: more views than the simulator tracks", node->id, vid);
        return;
    }
    if (node->in_view && vid <= node->view->view.vid)
        fail(s, "node %u installed view %d after view %d", node->id, vid, node->view->view.vid);
    if (s->views[vid] == NULL) {
        s->views[vid] = malloc(sizeof *info);
        assert(s->views[vid] != NULL);
        *s->views[vid] = *info;
        s->result->view_changes += vid > 0 ? 1u : 0u;
        s->result->restart_views += node->restarting ? 1u : 0u;
    } else if (!same_view(s->views[vid], info)) {
        fail(s, "views differ: node %u's view %d is not the one others installed", node->id, vid);
    }
    /* the first view of this incarnation, joining a group that runs (a view before it in this
     * epoch): its state up to there comes by state transfer */
    bool joined = false;
    for (int32_t v = 0; v < vid && !node->in_view; v++)
        joined |= s->views[v] != NULL;
    if (!node->in_view && (joined || !node->restarting))
        node->base_vid = vid;
    if (node->restarting) {
        check_restart_view(s, index, info, joined);
        node->restarting = false;
        if (joined) /* too late for the restart view: sees each stream from where it joined */
            memset(node->first_seen, 0, sizeof node->first_seen);
    }
    save_view(s, node, info); /* before any delivery of the view */
    free(node->view);
    node->in_view = true;
    node->view = info;
    a->view_info = NULL;
    start_streams(s, index);
    bool all_in = true; /* the first cut comes once the group is formed */
    for (uint32_t i = 0; i < s->num_nodes; i++)
        all_in &= s->nodes[i].in_view;
    if (all_in && s->result->power_cuts == 0)
        schedule_power_cut(s, rng_range(s, 500, 40000));
}

static void on_view_installed_faults(sim *s, uint32_t index, dr_action *a) {
    sim_node *node = &s->nodes[index];
    if (node->restart_of >= 0 && !node->in_view)
        s->result->rejoined++;
    record_view(s, index, a->view_info);
    free(node->view);
    node->in_view = true;
    node->view = a->view_info;
    a->view_info = NULL;
    if (!node->ready)
        return;
    start_streams(s, index);
}

static void on_view_installed(sim *s, uint32_t index, dr_action *a) {
    sim_node *node = &s->nodes[index];
    if (s->config->total_restart) {
        on_view_installed_durable(s, index, a);
        return;
    }
    if (s->config->faults) {
        on_view_installed_faults(s, index, a);
        return;
    }
    if (node->in_view) {
        fail(s, "node %u installed a second view (view changes are not simulated)", node->id);
        return;
    }
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (s->nodes[i].in_view && !same_view(s->nodes[i].view, a->view_info))
            fail(s, "views differ between node %u and node %u", s->nodes[i].id, node->id);
    node->in_view = true;
    node->view = a->view_info;
    a->view_info = NULL;
    for (uint32_t sg = 0; sg < node->view->layout.num_subgroups; sg++) {
        uint32_t rank = 0;
        int shard = dr_layout_find_shard(&node->view->layout, sg, node->id, &rank);
        node->streams[sg].active =
            shard >= 0 && node->view->layout.subgroups[sg].shards[shard].is_sender[rank];
        if (node->streams[sg].active && node->streams[sg].total > 0)
            schedule(s, s->now_us + rng_range(s, 0, 500), EV_APP_SEND, index, sg);
    }
}

/* ---- the network --------------------------------------------------------------------- */

static void transmit(sim *s, uint32_t from, uint32_t to, uint8_t *bytes, size_t len) {
    sim_link *link = &s->links[from][to];
    if (link->cut) {
        free(bytes); /* partitioned: lost */
        return;
    }
    uint64_t arrival = s->now_us + link->latency_us + rng_range(s, 0, link->jitter_us) +
                       (uint64_t)len * 1000u / link->bytes_per_ms;
    uint32_t lane = s->config->fifo_links || dr_wire_is_data(bytes, len) ? LANE_DATA : LANE_CONTROL;
    /* FIFO per lane, as TCP (strictly: no ties); data never overtakes control sent before it */
    uint64_t after = link->last_arrival_us[lane];
    if (lane == LANE_DATA && link->last_arrival_us[LANE_CONTROL] > after)
        after = link->last_arrival_us[LANE_CONTROL];
    if (arrival <= after)
        arrival = after + 1;
    if (lane == LANE_CONTROL && arrival < link->last_arrival_us[LANE_DATA])
        s->result->overtakes++;
    link->last_arrival_us[lane] = arrival;
    heap_push(s, (sim_event){.time_us = arrival,
                             .kind = EV_FRAME,
                             .node = to,
                             .from = from,
                             .bytes = bytes,
                             .len = len,
                             .link_seq = link->frames_sent[lane]++,
                             .lane = lane,
                             .epoch = link->epoch});
    s->result->frames++;
}

static void on_send_action(sim *s, uint32_t index, dr_action *a) {
    int to = a->node_id != DR_NODE_NONE ? find_node_by_id(s, a->node_id)
                                        : find_node_by_address(s, a->address);
    if (to < 0 || (uint32_t)to == index) {
        fail(s, "node %u sent to unknown node %u / %s", s->nodes[index].id, a->node_id, a->address);
        return;
    }
    transmit(s, index, (uint32_t)to, a->bytes, a->len);
    a->bytes = NULL;
}

static void on_stopped(sim *s, uint32_t index, const dr_action *a) {
    sim_node *node = &s->nodes[index];
    node->stopped = true;
    node->dead = true;
    node->stop_error = a->error;
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] node %u STOPPED (%d)\n", s->now_us, node->id,
                a->error);
    /* any faulty node may be excluded first (a crash victim cut off before its crash ...) */
    bool excluded = a->error == DR_EREMOVED || a->error == DR_ECLOSED;
    bool faulty = node->fault != FAULT_NONE || node->flex || node->must_stop;
    bool expected = (faulty && excluded) ||
                    (node->fault == FAULT_LEAVE && (a->error == 0 || a->error == DR_EUNDELIVERED));
    if (!s->config->faults || !expected)
        fail(s, "node %u stopped (%d): %.*s", node->id, a->error, (int)a->len, (char *)a->bytes);
}

/** How late the application takes a delivery: 0-3 ms, from a hash (leaves the rng alone). */
static uint64_t consume_lag(const sim_node *node, const dr_action *a) {
    uint64_t h = ((uint64_t)node->id << 40) ^ (uint64_t)a->version;
    h = (h ^ (h >> 31)) * 0x9e3779b97f4a7c15ull;
    return (h >> 33) % 3000;
}

static void drain_actions(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    dr_action a;
    while (dr_core_next_action(node->core, &a)) {
        if (dr_action_flatten(&a) != 0) { /* the simulated network carries whole frames */
            fail(s, "node %u: out of memory", node->id);
            dr_action_free(&a);
            continue;
        }
        switch (a.type) {
        case DR_ACTION_SEND:
            on_send_action(s, index, &a);
            break;
        case DR_ACTION_CONNECT:
            break; /* links always exist */
        case DR_ACTION_DELIVER:
            if (s->config->tamper == SIM_TAMPER_CORRUPT && index == s->num_nodes - 1 &&
                a.len > PAYLOAD_HEADER && !s->tampered) {
                /* test switch: the checker sees one byte flipped (a copy; the core's is kept) */
                uint8_t *copy = malloc(a.len);
                assert(copy != NULL);
                memcpy(copy, a.bytes, a.len);
                copy[a.len - 1] ^= 0x5a;
                uint8_t *real = a.bytes;
                a.bytes = copy;
                s->tampered = true;
                check_delivery(s, node, &a);
                a.bytes = real;
                free(copy);
            } else {
                check_delivery(s, node, &a);
            }
            if (s->config->total_restart && a.mode == DR_MODE_ORDERED && !s->failed)
                log_append(node, &a);
            if (s->base.count_consumption && a.version >= 0) /* a slow application */
                heap_push(s, (sim_event){.time_us = s->now_us + consume_lag(node, &a),
                                         .kind = EV_CONSUMED,
                                         .node = index,
                                         .subgroup = a.subgroup,
                                         .version = a.version});
            break;
        case DR_ACTION_VIEW_INSTALLED:
            if (s->config->tamper == SIM_TAMPER_VIEW && index == s->num_nodes - 1 &&
                a.view_info != NULL)
                a.view_info->view.vid += 1; /* test switch: the simulator's copy only */
            on_view_installed(s, index, &a);
            break;
        case DR_ACTION_WINDOW_OPEN:
            if (a.subgroup < SIM_MAX_SUBGROUPS && node->streams[a.subgroup].waiting) {
                node->streams[a.subgroup].waiting = false;
                schedule(s, s->now_us + rng_range(s, 0, 50), EV_APP_SEND, index, a.subgroup);
            }
            break;
        case DR_ACTION_JOIN_FAILED:
            node->refused = true;
            if (!node->duplicate)
                fail(s, "node %u was refused: %.*s", node->id, (int)a.len, (char *)a.bytes);
            break;
        case DR_ACTION_STOPPED:
            on_stopped(s, index, &a);
            break;
        case DR_ACTION_PERSISTED:
            if (a.subgroup < SIM_MAX_SUBGROUPS && a.shard < DR_LAYOUT_MAX_SHARDS &&
                a.version > s->frontier[a.subgroup][a.shard])
                s->frontier[a.subgroup][a.shard] = a.version;
            break;
        case DR_ACTION_TRUNCATE:
            if (!s->config->total_restart || a.subgroup >= SIM_MAX_SUBGROUPS)
                fail(s, "node %u: TRUNCATE outside a total restart", node->id);
            else if (s->config->tamper == SIM_TAMPER_SKIP_TRUNCATE && index == s->num_nodes - 1)
                log_truncate(node, a.subgroup, a.shard, INT64_MAX); /* test switch: ignored */
            else
                log_truncate(node, a.subgroup, a.shard, a.version);
            break;
        case DR_ACTION_SAVE_RESTART_VOTE:
            if (!s->config->total_restart) {
                fail(s, "node %u: SAVE_RESTART_VOTE outside a total restart", node->id);
            } else { /* durable at once: the next action (its ACK) follows the save */
                free(node->vote);
                node->vote = a.bytes;
                node->vote_len = a.len;
                a.bytes = NULL;
            }
            break;
        case DR_ACTION_DISCARD_DURABLE:
            if (!s->config->total_restart)
                fail(s, "node %u: DISCARD_DURABLE outside a total restart", node->id);
            else
                discard_durable(node);
            break;
        }
        dr_action_free(&a);
    }
}

/* ---- events -------------------------------------------------------------------------- */

/** Starts the node's core; `restart` (durable mode) brings it back from its saved state. */
static void start_core(sim *s, uint32_t index, const dr_core_restart_options *restart) {
    sim_node *node = &s->nodes[index];
    dr_core_options options = s->base;
    if (restart)
        options.restart = *restart;
    options.my_id = node->id;
    options.defer_flush = node->defer_flush;
    snprintf(options.my_address, sizeof options.my_address, "%s", node->address);
    snprintf(options.contact_address, sizeof options.contact_address, "%s", node->contact);
    dr_err err;
    if (dr_core_create(&options, s->now_us, &node->core, &err) != 0) {
        fail(s, "node %u: dr_core_create: %s", node->id, err.msg);
        return;
    }
    node->incarnation = dr_core_incarnation(node->core); /* what its HELLOs would carry */
    schedule(s, s->now_us + node->tick_us, EV_TICK, index, 0);
    if (s->config->total_restart)
        schedule(s, s->now_us + rng_range(s, 200, 3000), EV_SYNC, index, 0);
}

static void on_start(sim *s, uint32_t index) {
    start_core(s, index, NULL);
}

/* ---- durable mode: power cuts and restarts --------------------------------------------- */

/** A restarting node multicasts more: 1-15 new messages per subgroup. */
static void extend_workload(sim *s, sim_node *node) {
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
        sim_stream *stream = &node->streams[sg];
        uint32_t more = rng_range(s, 1, 15);
        stream->lens = realloc(stream->lens, (stream->total + more) * sizeof *stream->lens);
        assert(stream->lens != NULL);
        uint32_t smc = s->base.max_smc_payload_size, max = s->base.max_payload_size;
        for (uint32_t m = stream->total; m < stream->total + more; m++) {
            bool large = max > smc && rng_chance(s, 35);
            stream->lens[m] =
                large ? rng_range(s, smc + 1, max) : rng_range(s, PAYLOAD_HEADER, smc);
        }
        stream->total += more;
    }
}

/** The nodes of `set` (bit per index) hold no majority of the latest view any of them saved. */
static bool restart_set_is_minority(const sim *s, uint32_t set) {
    const dr_view *latest = NULL;
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if ((set >> i & 1u) && (latest == NULL || s->nodes[i].saved_members.vid > latest->vid))
            latest = &s->nodes[i].saved_members;
    uint32_t present = 0;
    for (uint32_t m = 0; m < latest->num_members; m++) {
        int at = find_node_by_id(s, latest->member_ids[m]);
        present += at >= 0 && (set >> at & 1u) ? 1u : 0u;
    }
    return present * 2 <= latest->num_members;
}

/**
 * EV_POWER_CUT: every node stops at once. A log keeps what was synced and a random part of the
 * rest (written but not yet synced: the disk may or may not have it; recovery cuts a torn
 * record, so a prefix survives). Frames in flight are lost. Then some nodes restart.
 */
/** Whether the members of `view` without node `id` have an adequate layout (a restart can
 * succeed without it). */
static bool adequate_without(const sim *s, const dr_view_info *view, uint32_t id) {
    uint32_t ids[DR_VIEW_MAX_MEMBERS], n = 0;
    for (uint32_t m = 0; m < view->view.num_members; m++)
        if (view->view.member_ids[m] != id)
            ids[n++] = view->view.member_ids[m];
    dr_layout *layout = malloc(sizeof *layout);
    assert(layout != NULL);
    bool adequate = n > 0 &&
                    dr_layout_compute(&s->base.layout, &view->layout, ids, n, layout, NULL) == 0 &&
                    layout->adequate;
    free(layout);
    return adequate;
}

static void power_cut(sim *s) {
    s->result->power_cuts++;
    /* a node whose absence leaves every shard a member (a restart without it can succeed) */
    uint32_t spare[SIM_MAX_NODES], num_spare = 0;
    const dr_view_info *latest = NULL;
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (s->nodes[i].in_view && (!latest || s->nodes[i].view->view.vid > latest->view.vid))
            latest = s->nodes[i].view;
    for (uint32_t i = 0; i < s->num_nodes && latest; i++)
        if (adequate_without(s, latest, s->nodes[i].id) &&
            (s->num_leaders > 1 || strcmp(s->nodes[i].address, s->leaders[0]) != 0))
            spare[num_spare++] = i; /* (nor the only restart leader) */
    s->cut_scheduled = false;
    s->cuts_left--;
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] POWER CUT (%u to come)\n", s->now_us,
                s->cuts_left);
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        sim_node *node = &s->nodes[i];
        dr_core_destroy(node->core);
        node->core = NULL;
        node->dead = true;
        node->paused = false;
        for (size_t e = 0; e < node->num_held; e++)
            free(node->held[e].bytes);
        node->num_held = 0;
        free(node->view);
        node->view = NULL;
        node->in_view = false;
        node->restarting = false;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
            sim_log *log = &node->logs[sg];
            log->len = log->synced + rng_range(s, 0, (uint32_t)(log->len - log->synced));
            if (s->config->tamper == SIM_TAMPER_LOST_SYNC && i == s->num_nodes - 1 &&
                log->synced > 0)
                log->len = log->synced - 1; /* test switch: the disk lost a synced record */
            log->synced = log->len;
            node->trim_set[sg] = false;
            node->streams[sg].active = node->streams[sg].waiting = false;
        }
    }
    while (s->heap_len > 0) {
        sim_event event = heap_pop(s);
        free(event.bytes);
    }
    for (uint32_t a = 0; a < s->num_nodes; a++)
        for (uint32_t b = 0; b < s->num_nodes; b++) {
            sim_link *link = &s->links[a][b];
            for (uint32_t lane = 0; lane < LANES; lane++) {
                link->last_arrival_us[lane] = s->now_us;
                link->frames_sent[lane] = link->frames_delivered[lane] = 0;
            }
            link->epoch++;
        }
    for (uint32_t v = 0; v < SIM_MAX_VIDS; v++) { /* later views are checked among themselves */
        free(s->views[v]);
        s->views[v] = NULL;
    }
    /* A version names one message in every log: rebuild the map from what survived (a
     * delivery that reached no disk may be reused by a later view) and check it. */
    if (s->vmap != NULL)
        memset(s->vmap, 0, s->vmap_cap * sizeof *s->vmap);
    s->vmap_len = 0;
    char text[48];
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
            const sim_log *log = &s->nodes[i].logs[sg];
            for (size_t e = 0; e < log->len; e++) {
                const sim_log_entry *x = &log->entries[e];
                vmap_entry *entry = vmap_get(s, sg, x->shard, x->version, x->item);
                if (entry->item != x->item)
                    fail(s, "logs differ: version %s of subgroup %u shard %u names two messages",
                         version_text(x->version, text, sizeof text), sg, x->shard);
                entry->mask |= 1u << i;
            }
        }
    }
    /* every receiver expects each sender's next message: the ones in flight are gone */
    for (uint32_t i = 0; i < s->num_nodes; i++)
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
            for (uint32_t j = 0; j < s->num_nodes; j++) {
                s->nodes[i].next_expected[sg][j] = s->nodes[j].streams[sg].sent;
                s->nodes[i].first_seen[sg][j] = true; /* exactly that one, from now on */
            }
    s->final_restart = s->cuts_left == 0;
    uint32_t everyone = (1u << s->num_nodes) - 1u, set = everyone;
    if (!s->final_restart && s->config->partial_restarts && rng_chance(s, 70)) {
        if (num_spare > 0 && rng_chance(s, 60)) /* one that can be spared stays out */
            set = everyone & ~(1u << spare[rng_range(s, 0, num_spare - 1)]);
        else /* any subset: often no quorum */
            set = rng_range(s, 1, everyone);
    }
    s->minority_restart = restart_set_is_minority(s, set);
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (set >> i & 1u)
            schedule(s, s->now_us + rng_range(s, 100, 5000), EV_RESTART, i, 0);
    if (!s->final_restart)
        schedule_power_cut(s, rng_range(s, 20000, 150000)); /* may strike during the restart */
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] restarting nodes mask 0x%x%s\n", s->now_us,
                set, s->minority_restart ? " (a minority: must not restart)" : "");
}

/** EV_RESTART: the node starts again with its saved view and the tails of its logs. */
static void restart_node(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    node->dead = node->stopped = false;
    node->restarting = true;
    extend_workload(s, node);
    dr_core_restart_options restart = {.saved_view = node->saved_view,
                                       .saved_view_len = node->saved_view_len,
                                       .num_leaders = s->num_leaders,
                                       .timeout_ms = s->restart_timeout_ms,
                                       .stateless = node->stateless,
                                       .vote = node->vote,
                                       .vote_len = node->vote_len};
    for (uint32_t sg = 0; sg < DR_LAYOUT_MAX_SUBGROUPS; sg++) {
        const sim_log *log = sg < SIM_MAX_SUBGROUPS ? &node->logs[sg] : NULL;
        restart.tails[sg] = log && log->len > 0 ? log->entries[log->len - 1].version : -1;
    }
    memcpy(restart.leaders, s->leaders, sizeof restart.leaders);
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] node %u restarts from its saved view %d%s\n",
                s->now_us, node->id, node->saved_members.vid,
                node->stateless ? " (stateless)" : "");
    start_core(s, index, &restart);
}

static void add_type(dr_layout_spec *spec, const char *name, uint32_t subgroups,
                     const dr_shard_policy *policy);

/** Durable mode's setup: no power cut yet, 1-3 to come, the restart leaders, and in half the
 * seeds a layout with room to spare (flexible shards whose minimums are below the group's
 * size), so that a restart without some node can succeed. */
static void setup_durable(sim *s) {
    if (s->num_nodes >= 2 && rng_chance(s, 50)) {
        dr_layout_spec *spec = &s->base.layout;
        memset(spec, 0, sizeof *spec);
        dr_shard_policy policy;
        uint32_t shards = rng_range(s, 1, s->num_nodes >= 4 ? 2 : 1);
        uint32_t min = rng_range(s, 1, s->num_nodes / shards - (s->num_nodes / shards > 1));
        dr_shard_policy_flexible(&policy, shards, min, s->num_nodes, DR_MODE_ORDERED);
        add_type(spec, "durable", 1, &policy);
    }
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
        for (uint32_t sh = 0; sh < DR_LAYOUT_MAX_SHARDS; sh++)
            s->frontier[sg][sh] = -1;
    for (uint32_t i = 0; i < s->num_nodes; i++)
        s->nodes[i].saved_members.vid = -1;
    s->cuts_left = rng_range(s, 1, 3);
    s->num_leaders = rng_range(s, 1, s->num_nodes < 3 ? s->num_nodes : 3);
    uint32_t first = rng_range(s, 0, s->num_nodes - 1);
    for (uint32_t l = 0; l < s->num_leaders; l++)
        memcpy(s->leaders[l], s->nodes[(first + l) % s->num_nodes].address, DR_ADDRESS_MAX);
    s->restart_timeout_ms = rng_range(s, 20, 80);
}

static void on_app_send(sim *s, uint32_t index, uint32_t subgroup) {
    sim_node *node = &s->nodes[index];
    sim_stream *stream = &node->streams[subgroup];
    if (stream->sent == stream->total || stream->waiting)
        return;
    uint32_t len = stream->lens[stream->sent];
    uint8_t *payload = malloc(len);
    assert(payload != NULL);
    make_payload(payload, len, index, node->id, subgroup, stream->sent);
    const dr_layout *layout = dr_core_layout(node->core);
    uint32_t rank = 0;
    int shard = dr_layout_find_shard(layout, subgroup, node->id, &rank);
    assert(shard >= 0);
    dr_delivery_mode mode = layout->subgroups[subgroup].shards[shard].mode;
    int rc = dr_core_send(node->core, subgroup, payload, len, mode, s->now_us);
    free(payload);
    if (rc == DR_ESTATE && node->left)
        return; /* leaving: sends are refused from the leave on */
    if (rc == DR_EAGAIN) {
        stream->waiting = true;
        return;
    }
    if (rc != 0) {
        fail(s, "node %u: dr_core_send(subgroup %u, %u bytes) = %s", node->id, subgroup, len,
             dr_strerror(rc));
        return;
    }
    stream->sent++;
    s->result->messages_sent++;
    if (stream->sent < stream->total) {
        uint64_t gap = rng_chance(s, 50) ? 0 : rng_range(s, 1, 3000);
        schedule(s, s->now_us + gap, EV_APP_SEND, index, subgroup);
    }
}

/** Holds an event of a paused node, in arrival order. */
static void hold_event(sim_node *node, const sim_event *event) {
    if (node->num_held == node->cap_held) {
        node->cap_held = node->cap_held ? node->cap_held * 2 : 16;
        node->held = realloc(node->held, node->cap_held * sizeof *node->held);
        assert(node->held != NULL);
    }
    node->held[node->num_held++] = *event;
}

/**
 * A node may pause (a descheduled vCPU, a GC pause): until its EV_RESUME it handles nothing;
 * events that arrive meanwhile are held in order and handled at the resume, so per-link FIFO
 * order is kept.
 */
static void maybe_pause(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    if (node->paused || !rng_chance(s, 3))
        return;
    /* fault mode: ordinary pauses stay well below the failure timeout, and are spaced out */
    if (s->config->faults && s->now_us < node->resumed_us + s->timeout_us)
        return;
    node->paused = true;
    uint32_t longest = s->config->faults ? (uint32_t)(s->timeout_us / 3) : 20000u;
    uint64_t until = s->now_us + rng_range(s, 1000, longest > 1000 ? longest : 1000);
    schedule(s, until, EV_RESUME, index, 0);
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] node %u paused until %" PRIu64 " us\n",
                s->now_us, node->id, until);
}

static void process(sim *s, sim_event *event);

static void resume(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    assert(node->paused);
    node->paused = false;
    node->resumed_us = s->now_us;
    node->long_pause_over = node->long_pause;
    if (node->long_pause)
        s->last_fault_us = s->now_us; /* the paused node's return counts as a fault event */
    sim_event *held = node->held;
    size_t count = node->num_held;
    node->held = NULL;
    node->num_held = node->cap_held = 0;
    for (size_t i = 0; i < count; i++)
        process(s, &held[i]); /* may pause again: the rest is then held anew, in order */
    free(held);
}

static void trace_fault(sim *s, const sim_node *node, const char *what) {
    s->result->faults++;
    s->last_fault_us = s->now_us;
    if (s->config->trace)
        fprintf(s->config->trace, "[%10" PRIu64 " us] FAULT node %u: %s\n", s->now_us, node->id,
                what);
}

/** Peers of `index` learn (or not: 50%) that their connections to it broke. */
static void maybe_disconnect(sim *s, uint32_t index, uint32_t peer) {
    if (rng_chance(s, 50))
        heap_push(s, (sim_event){.time_us = s->now_us + rng_range(s, 0, 3000),
                                 .kind = EV_DISCONNECT,
                                 .node = peer,
                                 .from = index});
}

/** Frames in flight on a -> b are lost (a broken connection, a crashed sender's buffers). */
static void lose_in_flight(sim *s, uint32_t a, uint32_t b) {
    s->links[a][b].epoch++;
}

/**
 * A crash mid-fan-out: the frames the node sent last reach some peers and not others (its
 * outgoing links lose what is in flight at random).
 */
static void on_crash(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    trace_fault(s, node, "crash");
    node->dead = true;
    dr_core_destroy(node->core);
    node->core = NULL;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        if (i == index || restart_not_due(s, i))
            continue;
        if (rng_chance(s, 50))
            lose_in_flight(s, index, i);
        maybe_disconnect(s, index, i);
    }
    if (node->restart_slot >= 0) { /* the process comes back: same id, same address */
        sim_node *next = &s->nodes[node->restart_slot];
        next->absent = false;
        swap_rng(s);
        /* often before it is suspected: the old incarnation is still in the view */
        uint64_t at = s->now_us + rng_range(s, 1000, (uint32_t)s->timeout_us * 3);
        swap_rng(s);
        schedule(s, at, EV_START, (uint32_t)node->restart_slot, 0);
    }
}

/** One connection breaks for good: frames in flight both ways are lost; ends may notice. */
static void on_link_break(sim *s, uint32_t a, uint32_t b) {
    trace_fault(s, &s->nodes[a], "its link to its partner breaks");
    s->links[a][b].cut = s->links[b][a].cut = true;
    lose_in_flight(s, a, b);
    lose_in_flight(s, b, a);
    maybe_disconnect(s, a, b);
    maybe_disconnect(s, b, a);
}

/** Frames a -> b are lost from now on, with no error at either end (a one-way link). */
static void on_one_way(sim *s, uint32_t a, uint32_t b) {
    trace_fault(s, &s->nodes[a], "its frames to its partner are lost (one-way)");
    s->links[a][b].cut = true;
    lose_in_flight(s, a, b);
}

/**
 * Bridge partition: the FAULT_BRIDGE victims are cut off from every other node except `bridge`,
 * which reaches both sides (PROTOCOL.md's two-sided partition with one node in the middle).
 */
static void on_bridge(sim *s, uint32_t bridge) {
    trace_fault(s, &s->nodes[bridge], "bridge partition (this node reaches both sides)");
    s->bridge_deadline_us = s->now_us + 40 * s->timeout_us;
    for (uint32_t a = 0; a < s->num_nodes; a++)
        for (uint32_t b = 0; b < s->num_nodes; b++) {
            bool a_side = s->nodes[a].fault == FAULT_BRIDGE;
            bool b_side = s->nodes[b].fault == FAULT_BRIDGE;
            if (a == bridge || b == bridge || a_side == b_side)
                continue;
            s->links[a][b].cut = true;
            lose_in_flight(s, a, b);
            if (!restart_not_due(s, a) && !restart_not_due(s, b))
                maybe_disconnect(s, a, b);
        }
}

/** A majority of the nodes crash at once: the survivors must stop and install no view. */
static void on_majority_crash(sim *s) {
    int32_t highest = -1;
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (s->nodes[i].max_vid > highest)
            highest = s->nodes[i].max_vid;
    s->majority_crashed = true;
    s->vid_at_majority_crash = highest;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        if (s->nodes[i].dead)
            continue;
        if (s->nodes[i].fault == FAULT_CRASH)
            on_crash(s, i);
        else
            s->nodes[i].must_stop = true;
    }
}

static bool in_partition(const sim *s, uint32_t index) {
    return s->nodes[index].fault == FAULT_PARTITION;
}

static void set_partition(sim *s, bool cut) {
    for (uint32_t a = 0; a < s->num_nodes; a++)
        for (uint32_t b = 0; b < s->num_nodes; b++)
            if (in_partition(s, a) != in_partition(s, b)) {
                s->links[a][b].cut = cut;
                if (cut && !restart_not_due(s, a) && !restart_not_due(s, b))
                    maybe_disconnect(s, a, b);
            }
}

/** Fault mode events. Returns true if the event was one of them. */
static bool process_fault_event(sim *s, sim_event *event) {
    sim_node *node = &s->nodes[event->node];
    switch (event->kind) {
    case EV_CRASH:
        on_crash(s, event->node);
        return true;
    case EV_LONG_PAUSE: {
        trace_fault(s, node, "long pause");
        node->paused = true;
        node->long_pause = true;
        uint64_t until =
            s->now_us + rng_range(s, (uint32_t)s->timeout_us * 2, (uint32_t)s->timeout_us * 4);
        schedule(s, until, EV_RESUME, event->node, 0);
        return true;
    }
    case EV_LEAVE:
        trace_fault(s, node, "leave");
        node->left = true;
        if (dr_core_leave(node->core, s->now_us) != 0)
            fail(s, "node %u: dr_core_leave failed", node->id);
        drain_actions(s, event->node);
        return true;
    case EV_PARTITION:
        trace_fault(s, node, "partition (with every other partition victim)");
        set_partition(s, true);
        return true;
    case EV_HEAL:
        trace_fault(s, node, "partition heals");
        set_partition(s, false);
        return true;
    case EV_LINK_BREAK:
        on_link_break(s, event->node, (uint32_t)node->partner);
        return true;
    case EV_ONE_WAY:
        on_one_way(s, event->node, (uint32_t)node->partner);
        return true;
    case EV_BRIDGE:
        on_bridge(s, event->node);
        return true;
    case EV_MAJORITY_CRASH:
        on_majority_crash(s);
        return true;
    case EV_DISCONNECT:
        if (node->core != NULL) {
            dr_core_on_disconnect(node->core, s->nodes[event->from].id,
                                  s->nodes[event->from].incarnation, s->now_us);
            drain_actions(s, event->node);
        }
        return true;
    default:
        return false;
    }
}

static void process(sim *s, sim_event *event) {
    sim_node *node = &s->nodes[event->node];
    s->current_node = event->node;
    bool global = event->kind == EV_PARTITION || event->kind == EV_HEAL ||
                  event->kind == EV_BRIDGE || event->kind == EV_MAJORITY_CRASH ||
                  event->kind == EV_LINK_BREAK || event->kind == EV_ONE_WAY ||
                  event->kind == EV_POWER_CUT || event->kind == EV_RESTART;
    if (event->kind == EV_POWER_CUT) {
        power_cut(s);
        return;
    }

    if (node->dead && !global) {
        if (event->kind == EV_FRAME) /* taken off its link (a restart may listen again) */
            s->links[event->from][event->node].frames_delivered[event->lane]++;
        free(event->bytes); /* crashed or stopped: nothing more */
        return;
    }
    if (node->paused && event->kind != EV_RESUME && !global) {
        hold_event(node, event);
        return;
    }
    if (event->kind == EV_RESUME) {
        resume(s, event->node);
        return;
    }
    if (process_fault_event(s, event))
        return;
    switch (event->kind) {
    case EV_START:
        if (node->restart_of >= 0) {
            trace_fault(s, node, "restarts (same id and address, no state)");
            s->result->restarts++;
        }
        on_start(s, event->node);
        break;
    case EV_TICK:
        if (dr_core_on_tick(node->core, s->now_us) != 0)
            fail(s, "node %u: tick failed", node->id);
        maybe_pause(s, event->node);
        schedule(s, s->now_us + node->tick_us, EV_TICK, event->node, 0);
        break;
    case EV_APP_SEND:
        on_app_send(s, event->node, event->subgroup);
        break;
    case EV_CONSUMED:
        dr_core_consumed(node->core, event->subgroup, event->version, s->now_us);
        break;
    case EV_SYNC:
        sync_logs(s, event->node);
        break;
    case EV_RESTART:
        restart_node(s, event->node);
        break;
    case EV_FRAME: {
        sim_link *link = &s->links[event->from][event->node];
        if (event->link_seq != link->frames_delivered[event->lane]++)
            fail(s, "simulator: link %u->%u delivered %s frame %" PRIu64 " out of order",
                 s->nodes[event->from].id, node->id, event->lane == LANE_DATA ? "data" : "control",
                 event->link_seq);
        if (event->epoch != link->epoch || link->cut)
            break; /* the link broke (or is cut) while the frame was in flight: lost */
        if (s->config->tamper == SIM_TAMPER_DEAF && event->node == s->num_nodes - 1)
            break;                /* test switch: the last node never hears anything */
        if (node->core == NULL) { /* not listening yet: like a refused TCP connect */
            if (s->config->trace)
                fprintf(s->config->trace,
                        "[%10" PRIu64 " us] frame to node %u dropped: not "
                        "started\n",
                        s->now_us, node->id);
            break;
        }
        /* a driver may not have bound a joiner's connection yet: then it passes NONE */
        uint32_t from = s->nodes[event->from].id;
        if (!s->nodes[event->from].in_view && rng_chance(s, 50))
            from = DR_NODE_NONE;
        int rc = dr_core_on_message(node->core, from, event->bytes, event->len, s->now_us);
        if (rc != 0 && s->nodes[event->from].fault == FAULT_NONE)
            fail(s, "node %u rejected a frame from correct node %u: %s", node->id,
                 s->nodes[event->from].id, dr_strerror(rc));
        break;
    }
    }
    free(event->bytes);
    if (node->core != NULL && !node->dead && node->defer_flush &&
        (event->kind == EV_TICK || rng_chance(s, 40)))
        dr_core_flush(node->core, s->now_us);
    if (node->core != NULL && !node->dead)
        drain_actions(s, event->node);
}

/* ---- setup --------------------------------------------------------------------------- */

/** Splits `total` members into `parts` shard sizes >= 1; returns parts actually used. */
static uint32_t split_sizes(sim *s, uint32_t total, uint32_t parts, uint32_t *sizes) {
    if (parts > total)
        parts = total;
    for (uint32_t i = 0; i < parts; i++)
        sizes[i] = 1;
    for (uint32_t left = total - parts; left > 0; left--)
        sizes[rng_range(s, 0, parts - 1)]++;
    return parts;
}

static void add_type(dr_layout_spec *spec, const char *name, uint32_t subgroups,
                     const dr_shard_policy *policy) {
    dr_subgroup_type *type = &spec->types[spec->num_types++];
    snprintf(type->name, sizeof type->name, "%s", name);
    type->num_subgroups = subgroups;
    type->policy = *policy;
}

/** A layout whose minimums add up to exactly `members` (so view 0 holds them all). */
static void random_layout(sim *s, uint32_t members, dr_layout_spec *spec) {
    memset(spec, 0, sizeof *spec);
    dr_shard_policy policy;
    uint32_t sizes[DR_LAYOUT_MAX_SHARDS];
    uint32_t shape = rng_range(s, 0, 3);
    if (shape == 0 || members < 2) {
        if (rng_chance(s, 50))
            dr_shard_policy_fixed(&policy, 1, members, DR_MODE_ORDERED);
        else
            dr_shard_policy_flexible(&policy, 1, members, members + 2, DR_MODE_ORDERED);
        add_type(spec, "single", 1, &policy);
        return;
    }
    if (shape == 1) { /* several ordered shards of one subgroup */
        uint32_t parts = split_sizes(s, members, rng_range(s, 1, 3), sizes);
        dr_shard_policy_custom(&policy, parts, sizes, sizes, DR_MODE_ORDERED);
        add_type(spec, "sharded", 1, &policy);
        return;
    }
    /* two types: ordered then raw (or two ordered subgroups) */
    uint32_t first = rng_range(s, 1, members - 1);
    dr_shard_policy_fixed(&policy, 1, first, DR_MODE_ORDERED);
    add_type(spec, "ordered", 1, &policy);
    uint32_t parts = split_sizes(s, members - first, rng_range(s, 1, 2), sizes);
    dr_shard_policy_custom(&policy, parts, sizes, sizes,
                           shape == 2 ? DR_MODE_RAW : DR_MODE_ORDERED);
    add_type(spec, shape == 2 ? "raw" : "second", 1, &policy);
}

static void random_options(sim *s, uint32_t members) {
    dr_core_options_default(&s->base);
    random_layout(s, members, &s->base.layout);
    s->base.window_size = rng_range(s, 1, 8);
    s->base.max_payload_size = rng_range(s, PAYLOAD_HEADER, 3000);
    s->base.max_smc_payload_size =
        rng_chance(s, 30) ? PAYLOAD_HEADER : rng_range(s, PAYLOAD_HEADER, s->base.max_payload_size);
    s->base.block_size = rng_range(s, 8, 700);
    s->base.pipeline = (dr_pipeline_algorithm)rng_range(s, 0, 2);
    s->base.join_retry_us = rng_range(s, 2000, 20000);
    /* a third of the seeds model a slow application that takes deliveries late (the windows
     * then wait for it); chosen from the seed, not the stream, so other seeds replay as before */
    s->base.count_consumption = s->config->seed % 3 == 2;
    /* a quarter of the seeds add a byte window (issue 13) of 1..4000 bytes (payloads up to
     * 3000), also from the seed: it binds, and the rule of two lets larger messages through */
    s->base.window_bytes = (s->config->seed / 3) % 4 == 1 ? 1 + (s->config->seed / 12) % 4000 : 0;
    s->base.test_fault = s->config->broken_delivery ? DR_CORE_FAULT_BROKEN_DELIVERY
                         : s->config->skip_trim     ? DR_CORE_FAULT_SKIP_TRIM
                                                    : DR_CORE_FAULT_NONE;
    if (s->config->trace) {
        s->base.trace = trace_line;
        s->base.trace_ctx = s;
    }
}

static void random_workload(sim *s, sim_node *node) {
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
        sim_stream *stream = &node->streams[sg];
        stream->total = rng_chance(s, 20) ? 0 : rng_range(s, 1, 40);
        stream->lens = calloc(stream->total ? stream->total : 1, sizeof *stream->lens);
        assert(stream->lens != NULL);
        uint32_t smc = s->base.max_smc_payload_size, max = s->base.max_payload_size;
        for (uint32_t m = 0; m < stream->total; m++) {
            bool large = max > smc && rng_chance(s, 35);
            stream->lens[m] =
                large ? rng_range(s, smc + 1, max) : rng_range(s, PAYLOAD_HEADER, smc);
        }
    }
}

static void setup_nodes(sim *s, uint32_t members, bool add_duplicate) {
    s->num_nodes = members + (add_duplicate ? 1u : 0u);
    uint32_t used_ids[SIM_MAX_NODES];
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        sim_node *node = &s->nodes[i];
        bool unique;
        do { /* distinct random ids: rank order differs from id order */
            node->id = rng_range(s, 0, 999);
            unique = true;
            for (uint32_t j = 0; j < i; j++)
                unique &= used_ids[j] != node->id;
        } while (!unique);
        used_ids[i] = node->id;
        snprintf(node->address, sizeof node->address, "10.0.%u.1:23580", i);
        /* most join through the leader; some through another joiner (redirect) */
        uint32_t via = i > 1 && rng_chance(s, 30) ? rng_range(s, 1, i - 1) : 0;
        if (strcmp(s->nodes[via].contact, s->nodes[0].address) != 0)
            via = 0;
        char contact[DR_ADDRESS_MAX];
        memcpy(contact, s->nodes[via].address, sizeof contact);
        memcpy(node->contact, contact, sizeof contact);
        node->start_us = i == 0 ? 0 : rng_range(s, 0, 3000);
        node->tick_us = rng_range(s, 500, 3000);
        node->defer_flush = rng_chance(s, 25);
        node->restart_slot = node->restart_of = -1;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
            node->last_version[sg] = -1;
        random_workload(s, node);
    }
    snprintf(s->nodes[0].contact, sizeof s->nodes[0].contact, "%s", s->nodes[0].address);
    if (add_duplicate) {
        sim_node *dup = &s->nodes[s->num_nodes - 1];
        dup->id = s->nodes[0].id;
        dup->duplicate = true;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
            dup->streams[sg].total = 0;
    }
}

static void setup_links(sim *s) {
    for (uint32_t a = 0; a < s->num_nodes; a++) {
        for (uint32_t b = 0; b < s->num_nodes; b++) {
            sim_link *link = &s->links[a][b];
            link->latency_us = rng_range(s, 1, 400);
            link->jitter_us = rng_range(s, 0, 300);
            link->bytes_per_ms = rng_range(s, 10000, 2000000);
        }
    }
}

/* ---- fault mode: scenario ----------------------------------------------------------- */

/** Layouts whose shards survive a minority of failures: flexible, minimum 1. */
static void fault_layout(sim *s, uint32_t members, dr_layout_spec *spec) {
    memset(spec, 0, sizeof *spec);
    dr_shard_policy policy;
    uint32_t shape = members < 4 ? 0 : rng_range(s, 0, 2);
    if (shape == 0) {
        dr_shard_policy_flexible(&policy, 1, 1, members + 1, DR_MODE_ORDERED);
        add_type(spec, "single", 1, &policy);
    } else if (shape == 1) {
        dr_shard_policy_flexible(&policy, 2, 1, members, DR_MODE_ORDERED);
        add_type(spec, "sharded", 1, &policy);
    } else {
        /* odd seeds (unless --no-raw) make the big subgroup raw: messages in flight at a view
         * change must still reach every survivor, FIFO and once. Chosen from the seed, not the
         * stream: with --no-raw every seed replays as it did before raw layouts existed. */
        bool raw = !s->config->no_raw && s->config->seed % 2 == 1;
        dr_shard_policy_flexible(&policy, 1, 1, 2, DR_MODE_ORDERED);
        add_type(spec, "small", 1, &policy);
        dr_shard_policy_flexible(&policy, 1, 1, members, raw ? DR_MODE_RAW : DR_MODE_ORDERED);
        add_type(spec, raw ? "raw" : "big", 1, &policy);
    }
}

/** True if removing node `index` would leave a shard of `layout` without a non-victim. */
static bool last_in_a_shard(const sim *s, const dr_layout *layout, uint32_t index) {
    for (uint32_t sg = 0; sg < layout->num_subgroups; sg++) {
        int shard = dr_layout_find_shard(layout, sg, s->nodes[index].id, NULL);
        if (shard < 0)
            continue;
        const dr_shard_layout *sh = &layout->subgroups[sg].shards[shard];
        uint32_t others = 0;
        for (uint32_t m = 0; m < sh->num_members; m++) {
            int j = find_node_by_id(s, sh->member_ids[m]);
            others += j >= 0 && (uint32_t)j != index && s->nodes[j].fault == FAULT_NONE ? 1u : 0u;
        }
        if (others == 0)
            return true;
    }
    return false;
}

/** A node that may still be given a fault: no fault yet and not the last of a shard. */
static bool may_fail(const sim *s, const dr_layout *layout, uint32_t index) {
    return s->nodes[index].fault == FAULT_NONE && !last_in_a_shard(s, layout, index);
}

/** A random node of 0..members-1 that may_fail, or -1. */
static int pick_victim(sim *s, uint32_t members, const dr_layout *layout) {
    uint32_t index = rng_range(s, 0, members - 1);
    for (uint32_t tries = 0; tries < members; tries++, index = (index + 1) % members)
        if (may_fail(s, layout, index))
            return (int)index;
    return -1;
}

/** The majority-loss scenario: more than half of the members crash at once. */
static void plan_majority_crash(sim *s, uint32_t members) {
    for (uint32_t crashed = 0; crashed < members / 2 + 1;) {
        uint32_t index = rng_range(s, 0, members - 1);
        if (s->nodes[index].fault == FAULT_NONE) {
            s->nodes[index].fault = FAULT_CRASH;
            crashed++;
        }
    }
}

/**
 * Picks the victims: a clean leave maybe, and fewer failures than half the rest, never the last
 * member of a shard (members never move between shards: that shard would stay inadequate).
 * A failure is a crash, a long pause, a partition (one side), a broken link or a one-way link
 * (the two ends count as two failures: either may be excluded), or a bridge partition (one
 * node reaches both sides; either side may be excluded). Returns true for the majority-loss
 * scenario instead.
 */
static bool plan_faults(sim *s, uint32_t members, const dr_layout *layout) {
    if (members >= 3 && rng_chance(s, 4)) {
        plan_majority_crash(s, members);
        return true;
    }
    uint32_t leaves = members >= 4 && rng_chance(s, 30) ? 1u : 0u;
    uint32_t max_failures = (members - leaves - 1) / 2;
    uint32_t failures =
        max_failures == 0 ? 0 : rng_range(s, rng_chance(s, 85) ? 1 : 0, max_failures);
    bool partition = false, bridge = false;
    for (uint32_t v = 0; v < leaves + failures; v++) {
        int index = pick_victim(s, members, layout);
        if (index < 0)
            break;
        sim_node *node = &s->nodes[index];
        uint32_t dice = rng_range(s, 0, 99);
        int fault = v < leaves  ? FAULT_LEAVE
                    : dice < 30 ? FAULT_CRASH
                    : dice < 48 ? FAULT_PAUSE
                    : dice < 62 ? FAULT_PARTITION
                    : dice < 78 ? FAULT_LINK
                    : dice < 90 ? FAULT_ONE_WAY
                                : FAULT_BRIDGE;
        if ((fault == FAULT_PARTITION && bridge) || (fault == FAULT_BRIDGE && partition))
            fault = FAULT_CRASH; /* one partition of either kind per run */
        node->fault = fault;
        if (fault == FAULT_LINK || fault == FAULT_ONE_WAY) {
            int partner = v + 1 < leaves + failures ? pick_victim(s, members, layout) : -1;
            if (partner >= 0 && partner != 0 && index != 0 && rng_chance(s, 50) &&
                may_fail(s, layout, 0))
                partner = 0; /* the leader's links matter most: bias toward them */
            if (partner < 0) {
                node->fault = FAULT_CRASH;
            } else {
                node->partner = partner;
                s->nodes[partner].fault = FAULT_PARTNER;
                s->nodes[partner].partner = index;
                node->flex = s->nodes[partner].flex = true;
                v++;
            }
        }
        partition |= node->fault == FAULT_PARTITION;
        bridge |= node->fault == FAULT_BRIDGE;
    }
    if (bridge) { /* everyone may be on the losing side, the bridge node too */
        for (uint32_t i = 0; i < s->num_nodes; i++) /* a late joiner too */
            s->nodes[i].flex |=
                s->nodes[i].fault == FAULT_NONE || s->nodes[i].fault == FAULT_BRIDGE;
    }
    return false;
}

static void setup_fault_mode(sim *s, uint32_t members) {
    s->full_members = members;
    dr_layout_spec spec;
    fault_layout(s, members, &spec);
    s->base.layout = spec;
    s->base.heartbeat_ms = rng_range(s, 6, 15);
    s->base.suspect_after_missed = rng_range(s, 3, 5);
    s->timeout_us = (uint64_t)s->base.heartbeat_ms * s->base.suspect_after_missed * 1000u;
    bool late = members + 1 < SIM_MAX_NODES && rng_chance(s, 40);
    setup_nodes(s, members + (late ? 1u : 0u), false);
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        memset(s->nodes[i].shard_at, 0xff, sizeof s->nodes[i].shard_at);
        s->nodes[i].partner = -1;
        s->nodes[i].restart_slot = s->nodes[i].restart_of = -1;
        s->nodes[i].max_vid = -1;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
            if (s->nodes[i].streams[sg].total > 25)
                s->nodes[i].streams[sg].total = 25;
    }
    if (late)
        s->nodes[members].late = true;
}

/** The late joiner (it comes right after the initial members), or NULL. */
static sim_node *late_joiner(sim *s) {
    sim_node *node = &s->nodes[s->full_members];
    return s->num_nodes > s->full_members && node->late &&
                   (int32_t)s->full_members != s->restart_index
               ? node
               : NULL;
}

/**
 * Restart faults: with a free slot, half the runs keep one for the next incarnation of a crash
 * victim (chosen when the faults are planned). Drawn from the second stream, so every seed's
 * run is the one it was before restarts existed until a restart strikes.
 */
static void reserve_restart_slot(sim *s) {
    swap_rng(s);
    if (s->num_nodes < SIM_MAX_NODES && rng_chance(s, 50)) {
        uint32_t index = s->num_nodes++;
        s->restart_index = (int32_t)index;
        sim_node *next = &s->nodes[index];
        next->id = 1000000u + index; /* matches no member until the victim is chosen */
        next->late = true;
        next->absent = true; /* until its old incarnation crashes */
        next->tick_us = rng_range(s, 500, 3000);
        next->defer_flush = rng_chance(s, 25);
        random_workload(s, next);
        memset(next->shard_at, 0xff, sizeof next->shard_at);
        next->partner = next->restart_slot = next->restart_of = -1;
        next->max_vid = -1;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
            next->last_version[sg] = -1;
            if (next->streams[sg].total > 25)
                next->streams[sg].total = 25;
        }
        for (uint32_t i = 0; i < s->num_nodes; i++) {
            sim_link *links[2] = {&s->links[i][index], &s->links[index][i]};
            for (int d = 0; d < 2; d++) {
                links[d]->latency_us = rng_range(s, 1, 400);
                links[d]->jitter_us = rng_range(s, 0, 300);
                links[d]->bytes_per_ms = rng_range(s, 10000, 2000000);
            }
        }
    }
    swap_rng(s);
}

/** Picks which crash victim restarts (if a slot is kept) and through which contact. */
static void plan_restart(sim *s) {
    if (s->restart_index < 0)
        return;
    sim_node *next = &s->nodes[s->restart_index];
    swap_rng(s);
    uint32_t first = rng_range(s, 0, s->full_members - 1);
    for (uint32_t k = 0; k < s->full_members; k++) {
        sim_node *victim = &s->nodes[(first + k) % s->full_members];
        if (victim->fault != FAULT_CRASH)
            continue;
        next->id = victim->id;
        memcpy(next->address, victim->address, sizeof next->address);
        next->restart_of = (int32_t)(victim - s->nodes);
        victim->restart_slot = (int32_t)(next - s->nodes);
        /* a fault-free contact (never itself: it would found a group of its own); one that
         * stays in the group if there is one */
        uint32_t contact = rng_range(s, 0, s->full_members - 1);
        for (uint32_t tries = 0; tries < 2 * s->full_members; tries++) {
            const sim_node *c = &s->nodes[contact];
            if (c->fault == FAULT_NONE && (!c->flex || tries >= s->full_members))
                break;
            contact = (contact + 1) % s->full_members;
        }
        memcpy(next->contact, s->nodes[contact].address, sizeof next->contact);
        break;
    }
    swap_rng(s);
}

/** The bridge of a bridge partition: a node without a fault (flex is set on all of them). */
static int pick_bridge(sim *s) {
    uint32_t index = rng_range(s, 0, s->full_members - 1);
    for (uint32_t tries = 0; tries < s->full_members;
         tries++, index = (index + 1) % s->full_members)
        if (s->nodes[index].fault == FAULT_NONE)
            return (int)index;
    return -1;
}

/** Writes the fault plan to the trace. */
static void trace_plan(const sim *s) {
    static const char *const names[] = {"none", "crash",   "pause",       "leave",  "partition",
                                        "link", "one-way", "bridge-side", "partner"};
    if (s->config->trace == NULL)
        return;
    fprintf(s->config->trace, "[%10" PRIu64 " us] fault plan:", s->now_us);
    for (uint32_t i = 0; i < s->num_nodes; i++)
        fprintf(s->config->trace, " %u=%s%s%s%s", s->nodes[i].id, names[s->nodes[i].fault],
                s->nodes[i].flex ? "(flex)" : "",
                s->nodes[i].restart_of >= 0 ? "(restart)"
                : s->nodes[i].late          ? "(late)"
                                            : "",
                s->nodes[i].restart_slot >= 0 ? "(restarts)" : "");
    fprintf(s->config->trace, "\n");
}

static void schedule_faults(sim *s, const dr_layout *layout) {
    s->faults_scheduled = true;
    /* faults strike at random times over several failure timeouts, also during view changes */
    uint32_t spread = (uint32_t)s->timeout_us * 6;
    /* half the runs cluster their faults: a later one strikes while the view change of an
     * earlier one is being agreed on (a leave starts one at once, a failure after the timeout) */
    uint64_t base = s->now_us;
    if (rng_chance(s, 50)) {
        base += rng_range(s, 1000, spread);
        spread = (uint32_t)s->timeout_us * 2;
    }
    if (plan_faults(s, s->full_members, layout)) {
        schedule(s, base + rng_range(s, 1000, spread), EV_MAJORITY_CRASH, 0, 0);
        if (late_joiner(s) != NULL)
            late_joiner(s)->absent = true; /* no late joiner: nobody to join */
        return;
    }
    plan_restart(s);
    int bridge = -1;
    for (uint32_t i = 0; i < s->full_members && bridge < 0; i++)
        if (s->nodes[i].fault == FAULT_BRIDGE) {
            bridge = pick_bridge(s);
            if (bridge < 0)
                s->nodes[i].fault = FAULT_CRASH; /* cannot happen: a majority is fault-free */
        }
    if (bridge >= 0) {
        s->bridged = true; /* safety only: every side, the bridge too, may stop */
        trace_plan(s);
        schedule(s, base + rng_range(s, 1000, spread), EV_BRIDGE, (uint32_t)bridge, 0);
    }
    if (bridge < 0)
        trace_plan(s);
    if (late_joiner(s) != NULL) {
        sim_node *joiner = late_joiner(s);
        uint32_t contact = rng_range(s, 0, s->full_members - 1);
        for (uint32_t tries = 0; tries < 2 * s->full_members; tries++) {
            const sim_node *c = &s->nodes[contact];
            /* a fault-free contact; one that stays in the group if there is one */
            if (c->fault == FAULT_NONE && (!c->flex || tries >= s->full_members))
                break;
            contact = (contact + 1) % s->full_members;
        }
        memcpy(joiner->contact, s->nodes[contact].address, sizeof joiner->contact);
    }
    bool partition = false;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        sim_node *node = &s->nodes[i];
        if ((int32_t)i == s->restart_index)
            continue; /* started by its old incarnation's crash */
        uint64_t at = base + rng_range(s, 0, spread);
        if (node->fault == FAULT_LINK)
            schedule(s, at, EV_LINK_BREAK, i, 0);
        else if (node->fault == FAULT_ONE_WAY)
            schedule(s, at, EV_ONE_WAY, i, 0);
        else if (node->fault == FAULT_CRASH)
            schedule(s, at, EV_CRASH, i, 0);
        else if (node->fault == FAULT_PAUSE)
            schedule(s, at, EV_LONG_PAUSE, i, 0);
        else if (node->fault == FAULT_LEAVE)
            schedule(s, at, EV_LEAVE, i, 0);
        else if (node->fault == FAULT_PARTITION && !partition) {
            partition = true;
            schedule(s, at, EV_PARTITION, i, 0);
            uint64_t heal =
                at + rng_range(s, (uint32_t)s->timeout_us * 3, (uint32_t)s->timeout_us * 6);
            schedule(s, heal, EV_HEAL, i, 0);
        }
        if (node->late && !node->absent)
            schedule(s, s->now_us + rng_range(s, 0, 60000), EV_START, i, 0);
    }
}

/**
 * Fault mode: a node that must end in the final view. A paused node whose pause ended before
 * anyone suspected it (or whose view change included it) is a correct member again.
 */
static bool is_correct(const sim_node *node) {
    if (node->absent || node->must_stop)
        return false;
    if (node->flex)
        return !node->dead; /* the side that was not excluded */
    return node->fault == FAULT_NONE ||
           (node->fault == FAULT_PAUSE && node->long_pause_over && !node->dead);
}

/** Fault mode: what keeps the run from being complete, if anything. */
/**
 * Fault mode: the membership part of completion: faulty nodes stopped, long pauses over, and
 * the correct nodes in one view of exactly themselves. *out_ref gets a node in that view.
 */
static bool views_unsettled(const sim *s, char *why, size_t cap, const sim_node **out_ref) {
    *out_ref = NULL;
    if (!s->faults_scheduled)
        return snprintf(why, cap, "the %u initial members never formed one view", s->full_members),
               true;
    const sim_node *ref = NULL;
    uint32_t correct = 0;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        const sim_node *node = &s->nodes[i];
        if (node->absent)
            continue;
        if (node->fault == FAULT_PAUSE && !node->long_pause_over)
            return snprintf(why, cap, "node %u's long pause is not over", node->id), true;
        if (!is_correct(node) && !node->dead)
            return snprintf(why, cap, "faulty node %u has not stopped", node->id), true;
        if (!is_correct(node))
            continue;
        if (!node->in_view)
            return snprintf(why, cap, "node %u is in no view", node->id), true;
        correct++;
        if (ref == NULL)
            ref = node;
        if (node->view->view.vid != ref->view->view.vid)
            return snprintf(why, cap, "nodes %u and %u are in views %d and %d", ref->id, node->id,
                            ref->view->view.vid, node->view->view.vid),
                   true;
    }
    *out_ref = ref;
    if (ref == NULL && (s->majority_crashed || s->bridged))
        return false; /* every survivor stopped: as it must, or (bridge) as it may */
    if (ref == NULL || ref->view->view.num_members != correct)
        return snprintf(why, cap, "the view does not hold exactly the %u correct nodes", correct),
               true;
    return false;
}

/* Marks a lost message in incomplete()'s answer: at the deadline, with the views settled, it is
 * a safety failure (something a survivor multicast never reached a survivor), not liveness. */
#define LOSS_PREFIX "loss: "

static bool incomplete_faults(const sim *s, char *why, size_t cap) {
    const sim_node *ref = NULL;
    if (views_unsettled(s, why, cap, &ref))
        return true;
    if (ref == NULL)
        return false;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        const sim_node *node = &s->nodes[i];
        if (!is_correct(node))
            continue;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
            const sim_stream *st = &node->streams[sg];
            if (st->active && (st->sent < st->total || node->next_expected[sg][i] < st->total))
                return snprintf(why, cap, "node %u: %u of %u sent, %u delivered in subgroup %u",
                                node->id, st->sent, st->total, node->next_expected[sg][i], sg),
                       true;
            for (uint32_t j = 0; j < s->num_nodes; j++) {
                const sim_node *peer = &s->nodes[j];
                if (!is_correct(peer) || sg >= ref->view->layout.num_subgroups ||
                    peer->shard_at[sg][ref->max_vid] != node->shard_at[sg][ref->max_vid])
                    continue;
                /* raw shards: a re-sent message is delivered only where it was missing, so the
                 * counts of the last view may differ; the per-sender check below covers them */
                int shard = ref->max_vid >= 0 ? node->shard_at[sg][ref->max_vid] : -1;
                bool raw =
                    shard >= 0 && ref->view->layout.subgroups[sg].shards[shard].mode == DR_MODE_RAW;
                if (!raw && peer->view_deliveries[sg] != node->view_deliveries[sg])
                    return snprintf(why, cap, "nodes %u and %u still differ in subgroup %u",
                                    node->id, peer->id, sg),
                           true;
                /* every message of a correct sender reaches every correct member of its shard
                 * (raw mode too: what was in flight at a view change is re-sent); a node that
                 * joined late owes the messages from the first one it delivered on */
                bool owes = !node->late || node->first_seen[sg][j];
                if (owes && peer->streams[sg].sent > 0 &&
                    node->next_expected[sg][j] < peer->streams[sg].sent)
                    return snprintf(why, cap,
                                    "%snode %u delivered %u of the %u messages node %u sent in "
                                    "subgroup %u",
                                    LOSS_PREFIX, node->id, node->next_expected[sg][j],
                                    peer->streams[sg].sent, peer->id, sg),
                           true;
            }
        }
    }
    return false;
}

/**
 * Fault mode, at the end: every version delivered anywhere was delivered by every node that was
 * in that shard in that view and either installed a later view or is correct (agreement across
 * view changes, stability: nothing delivered is lost by survivors).
 */
static void check_stability(sim *s) {
    for (size_t e = 0; e < s->vmap_cap && !s->failed; e++) {
        const vmap_entry *entry = &s->vmap[e];
        if (!entry->used)
            continue;
        int32_t vid = (int32_t)(entry->version >> 32);
        for (uint32_t i = 0; i < s->num_nodes; i++) {
            const sim_node *node = &s->nodes[i];
            if (node->shard_at[entry->subgroup][vid] != (int8_t)entry->shard)
                continue;
            /* a node still wedged in view v at the end of an unfinished (bridged) run has
             * not applied its trim yet: only installing a later view obliges it then */
            bool obliged = node->max_vid > vid || (is_correct(node) && s->completed);
            if (obliged && !(entry->mask & (1u << i)))
                fail(s,
                     "stability: node %u was in view %d of subgroup %u shard %u and did not "
                     "deliver version %" PRId64 " (node %u msg %u) that another member delivered",
                     node->id, vid, entry->subgroup, entry->shard, entry->version,
                     s->nodes[entry->item >> 32].id, (uint32_t)entry->item);
        }
    }
}

/**
 * Fault mode, at the end: a node that left cleanly (stopped with 0) delivered every message it
 * had sent before it stopped (a leave flushes; PROTOCOL.md §5.8); check_stability then makes
 * every survivor of those views hold them too.
 */
/**
 * Fault mode, at the end: one broken or one-way link should cost at most one of its two ends.
 * Counted, not failed: when the lower end is paused (or its notice and last frames are lost)
 * past the higher end's grace, both accusations spread and both ends go; the rest of the group
 * goes on (liveness checks that). docs/protocol.md gives the rate.
 */
static void check_links(sim *s) {
    if (s->bridged || s->majority_crashed)
        return; /* there any node may go (see the bridge's note in run_loop) */
    for (uint32_t i = 0; i < s->num_nodes && !s->failed; i++) {
        const sim_node *node = &s->nodes[i];
        if ((node->fault == FAULT_LINK || node->fault == FAULT_ONE_WAY) && node->stopped &&
            s->nodes[node->partner].stopped)
            s->result->link_cost_both = true;
    }
}

static void check_leavers(sim *s) {
    for (uint32_t i = 0; i < s->num_nodes && !s->failed; i++) {
        const sim_node *leaver = &s->nodes[i];
        if (leaver->fault != FAULT_LEAVE || !leaver->stopped || leaver->stop_error != 0)
            continue;
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++) {
            const sim_stream *st = &leaver->streams[sg];
            if (leaver->next_expected[sg][i] < st->sent)
                fail(s,
                     "leave: node %u left cleanly after sending %u messages in subgroup %u but "
                     "delivered only %u of them",
                     leaver->id, st->sent, sg, leaver->next_expected[sg][i]);
        }
    }
}

/* ---- completion ---------------------------------------------------------------------- */

/** Messages a member of (subgroup, shard) must deliver: everything its senders multicast. */
static uint64_t shard_expected(const sim *s, const dr_layout *layout, uint32_t sg, int shard) {
    uint64_t total = 0;
    const dr_shard_layout *sh = &layout->subgroups[sg].shards[shard];
    for (uint32_t r = 0; r < sh->num_members; r++) {
        int sender = find_node_by_id(s, sh->member_ids[r]);
        if (sender >= 0 && sh->is_sender[r])
            total += s->nodes[sender].streams[sg].total;
    }
    return total;
}

/**
 * Durable mode: complete once the last power cut struck, every node installed the same view
 * after it and delivered every message its shard's senders multicast since.
 */
static bool incomplete_durable(const sim *s, char *why, size_t cap) {
    if (!s->final_restart)
        return snprintf(why, cap, "%u power cuts still to come", s->cuts_left), true;
    const sim_node *first = &s->nodes[0];
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        const sim_node *node = &s->nodes[i];
        if (!node->in_view || node->restarting)
            return snprintf(why, cap, "node %u has not installed a restart view", node->id), true;
        if (node->view->view.vid != first->view->view.vid)
            return snprintf(why, cap, "node %u is in view %d, node %u in view %d", node->id,
                            node->view->view.vid, first->id, first->view->view.vid),
                   true;
        const dr_layout *layout = &node->view->layout;
        for (uint32_t sg = 0; sg < layout->num_subgroups; sg++) {
            const sim_stream *mine = &node->streams[sg];
            if (mine->active && mine->sent < mine->total)
                return snprintf(why, cap, "node %u sent %u of %u in subgroup %u", node->id,
                                mine->sent, mine->total, sg),
                       true;
            int shard = dr_layout_find_shard(layout, sg, node->id, NULL);
            if (shard < 0)
                continue;
            const dr_shard_layout *sh = &layout->subgroups[sg].shards[shard];
            for (uint32_t r = 0; r < sh->num_members; r++) {
                int sender = find_node_by_id(s, sh->member_ids[r]);
                /* a node that joined after the restart view owes the streams it saw begin */
                if (sender < 0 || !sh->is_sender[r] || !node->first_seen[sg][sender])
                    continue;
                uint32_t total = s->nodes[sender].streams[sg].total;
                if (node->next_expected[sg][sender] != total)
                    return snprintf(why, cap,
                                    "node %u delivered messages up to %u of %u from node %u in "
                                    "subgroup %u",
                                    node->id, node->next_expected[sg][sender], total,
                                    s->nodes[sender].id, sg),
                           true;
            }
        }
    }
    return false;
}

/** Empty if the run is complete, else what is missing. */
static bool incomplete(const sim *s, char *why, size_t cap) {
    if (s->config->total_restart)
        return incomplete_durable(s, why, cap);
    if (s->config->faults)
        return incomplete_faults(s, why, cap);
    const sim_node *leader = &s->nodes[0];
    if (!leader->in_view)
        return snprintf(why, cap, "the leader never installed view 0"), true;
    const dr_layout *layout = &leader->view->layout;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        const sim_node *node = &s->nodes[i];
        if (node->duplicate) {
            if (!node->refused)
                return snprintf(why, cap, "duplicate id %u was not refused", node->id), true;
            continue;
        }
        if (!node->in_view)
            return snprintf(why, cap, "node %u never installed view 0", node->id), true;
        for (uint32_t sg = 0; sg < layout->num_subgroups; sg++) {
            int shard = dr_layout_find_shard(layout, sg, node->id, NULL);
            if (shard < 0)
                continue;
            uint64_t want = shard_expected(s, layout, sg, shard);
            if (node->streams[sg].active && node->streams[sg].sent < node->streams[sg].total)
                return snprintf(why, cap, "node %u sent %u of %u in subgroup %u", node->id,
                                node->streams[sg].sent, node->streams[sg].total, sg),
                       true;
            if (node->delivered[sg] != want)
                return snprintf(why, cap,
                                "node %u delivered %" PRIu64 " of %" PRIu64
                                " messages in subgroup %u",
                                node->id, node->delivered[sg], want, sg),
                       true;
        }
    }
    return false;
}

static void free_sim(sim *s) {
    while (s->heap_len > 0) {
        sim_event event = heap_pop(s);
        free(event.bytes);
    }
    free(s->heap);
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        dr_core_destroy(s->nodes[i].core);
        free(s->nodes[i].view);
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
            free(s->nodes[i].streams[sg].lens);
        for (size_t e = 0; e < s->nodes[i].num_held; e++)
            free(s->nodes[i].held[e].bytes);
        free(s->nodes[i].held);
        for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
            free(s->nodes[i].logs[sg].entries);
        free(s->nodes[i].saved_view);
        free(s->nodes[i].vote);
    }
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
        for (uint32_t sh = 0; sh < DR_LAYOUT_MAX_SHARDS; sh++)
            free(s->order[sg][sh].items);
    free(s->vmap);
    for (uint32_t v = 0; v < SIM_MAX_VIDS; v++)
        free(s->views[v]);
}

/**
 * Invariant 5 as a bound: once the last fault has struck (and no node is still to start or
 * resume), the views settle (faulty nodes stopped, the correct ones in one view of exactly
 * themselves) within SETTLE_TIMEOUTS failure timeouts plus SETTLE_SLACK_US. Not for bridged
 * runs (no side may have a quorum) or majority loss (nobody may go on).
 */
static void liveness_bound(sim *s) {
    if (!s->config->faults || !s->faults_scheduled || s->bridged || s->majority_crashed)
        return;
    for (uint32_t i = 0; i < s->num_nodes; i++) {
        const sim_node *node = &s->nodes[i];
        if ((node->late && !node->absent && node->core == NULL) ||
            (node->fault == FAULT_PAUSE && !node->long_pause_over))
            return; /* a join or a return is still to come */
    }
    const sim_node *ref = NULL;
    char unsettled[256];
    if (!views_unsettled(s, unsettled, sizeof unsettled, &ref)) {
        if (s->settled_us < s->last_fault_us || s->settled_us == 0)
            s->settled_us = s->now_us; /* the first settled moment after the last fault */
        return;
    }
    if (s->now_us > s->last_fault_us + SETTLE_TIMEOUTS * s->timeout_us + SETTLE_SLACK_US)
        fail(s,
             "liveness bound: %" PRIu64
             " us after the last fault (> %u failure timeouts + %u ms): %s",
             s->now_us - s->last_fault_us, SETTLE_TIMEOUTS, SETTLE_SLACK_US / 1000, unsettled);
}

/** Fault mode: the safety checks that need the whole run (also run when liveness failed). */
static void check_at_end(sim *s) {
    if (!s->config->faults || s->failed)
        return;
    check_stability(s);
    check_leavers(s);
    check_links(s);
}

static void run_loop(sim *s) {
    char why[256];
    uint64_t steps = 0;
    while (!s->failed && s->heap_len > 0) {
        sim_event event = heap_pop(s);
        assert(event.time_us >= s->now_us); /* the virtual clock never goes back */
        s->now_us = event.time_us;
        if (s->now_us > s->config->max_virtual_us ||
            (s->bridge_deadline_us != 0 && s->now_us > s->bridge_deadline_us)) {
            free(event.bytes);
            break;
        }
        process(s, &event);
        if ((++steps & 63) != 0)
            continue;
        if (!incomplete(s, why, sizeof why)) {
            s->completed = true;
            if (s->faults_scheduled)
                s->result->settle_us =
                    s->settled_us >= s->last_fault_us ? s->settled_us - s->last_fault_us : 0;
            check_at_end(s);
            return;
        }
        liveness_bound(s);
    }
    check_at_end(s);
    /* A bridge partition may leave no side with a quorum, or a shard without members: then
     * the group stays wedged or stops, which is safe; only safety is checked for it. */
    if (!s->failed && !s->bridged && incomplete(s, why, sizeof why)) {
        if (strncmp(why, LOSS_PREFIX, strlen(LOSS_PREFIX)) == 0)
            fail(s, "%s (views settled; %" PRIu64 " us of virtual time)", why, s->now_us);
        else
            fail(s, "liveness: after %" PRIu64 " us of virtual time %s", s->now_us, why);
    }
}

int sim_run(const sim_config *config, sim_result *result) {
    sim *s = calloc(1, sizeof *s);
    if (s == NULL)
        return DR_ENOMEM;
    memset(result, 0, sizeof *result);
    s->config = config;
    s->result = result;
    s->rng = config->seed * 0x2545f4914f6cdd1dull + 1;
    if (config->faults && config->total_restart) {
        free(s);
        return DR_EINVAL; /* one scenario per run */
    }
    uint32_t members = config->num_nodes ? config->num_nodes
                                         : rng_range(s, config->faults ? 3 : 1,
                                                     config->faults          ? 7
                                                     : config->total_restart ? 6
                                                                             : 8);
    if (members > SIM_MAX_NODES - 2)
        members = SIM_MAX_NODES - 2;
    bool duplicate = !config->faults && !config->total_restart && rng_chance(s, 15);
    random_options(s, members);
    if (config->faults)
        setup_fault_mode(s, members);
    else
        setup_nodes(s, members, duplicate);
    setup_links(s);
    if (config->total_restart)
        setup_durable(s);
    s->rng2 = config->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    s->restart_index = -1;
    if (config->faults)
        reserve_restart_slot(s);
    if (config->trace)
        fprintf(config->trace,
                "seed %" PRIu64 ": %u members%s, window %u (bytes %" PRIu64
                "), payload %u, smc %u, "
                "block %u, pipeline %u, %u subgroup types\n",
                config->seed, members, duplicate ? " + a duplicate id" : "", s->base.window_size,
                s->base.window_bytes, s->base.max_payload_size, s->base.max_smc_payload_size,
                s->base.block_size, (unsigned)s->base.pipeline, s->base.layout.num_types);
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (!s->nodes[i].late)
            schedule(s, s->nodes[i].start_us, EV_START, i, 0);
    run_loop(s);
    result->passed = !s->failed;
    result->timeout_us = s->timeout_us;
    result->num_nodes = s->num_nodes;
    result->virtual_us = s->now_us;
    free_sim(s);
    free(s);
    return 0;
}
