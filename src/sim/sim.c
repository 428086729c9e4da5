/*
 * The simulator engine (sim.h): nodes, a virtual network, random workloads and the invariant
 * checker.
 *
 * Network model: every directed link has a seeded base latency, jitter and bandwidth; a frame
 * arrives at max(now + latency + jitter + size / bandwidth, the link's previous arrival), so each
 * link is FIFO like a TCP connection while different links race. Events (frame arrivals, ticks,
 * application sends, node starts) sit in a heap ordered by (virtual time, insertion number);
 * equal times are broken by a seeded random tiebreak, so scheduling varies with the seed.
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
#include "sim/sim.h"

#define SIM_MAX_NODES     17u
#define SIM_MAX_SUBGROUPS 4u
#define PAYLOAD_MAGIC     0x4d495344u /* "DSIM" */
#define PAYLOAD_HEADER    16u

enum sim_event_kind { EV_START, EV_FRAME, EV_TICK, EV_APP_SEND, EV_RESUME };

typedef struct sim_event {
    uint64_t time_us;
    uint64_t order; /**< tiebreak: random high bits, insertion count low bits */
    int kind;
    uint32_t node; /**< target node index */
    uint32_t from; /**< EV_FRAME: source node index */
    uint32_t subgroup;
    uint8_t *bytes;
    size_t len;
    uint64_t link_seq; /**< EV_FRAME: position on its link (checks the FIFO model) */
} sim_event;

typedef struct sim_stream {
    uint32_t total; /**< messages this node multicasts in this subgroup */
    uint32_t sent;  /**< accepted by dr_core_send so far */
    uint32_t *lens; /**< size of each message */
    bool active;    /**< I am a sender of a shard of this subgroup */
    bool waiting;   /**< got DR_EAGAIN in a view: waits for WINDOW_OPEN */
} sim_stream;

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
} sim_node;

typedef struct sim_link {
    uint64_t last_arrival_us;
    uint32_t latency_us;
    uint32_t jitter_us;
    uint32_t bytes_per_ms;
    uint64_t frames_sent;      /**< frames put on the link */
    uint64_t frames_delivered; /**< frames taken off it */
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

static void make_payload(uint8_t *out, size_t len, uint32_t sender_id, uint32_t subgroup,
                         uint32_t msgno) {
    assert(len >= PAYLOAD_HEADER);
    uint32_t header[4] = {PAYLOAD_MAGIC, sender_id, subgroup, msgno};
    memcpy(out, header, sizeof header);
    for (size_t i = PAYLOAD_HEADER; i < len; i++)
        out[i] = pattern_byte(sender_id, subgroup, msgno, i);
}

static int find_node_by_id(const sim *s, uint32_t id) {
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (s->nodes[i].id == id && !s->nodes[i].duplicate)
            return (int)i;
    return -1;
}

static int find_node_by_address(const sim *s, const char *address) {
    for (uint32_t i = 0; i < s->num_nodes; i++)
        if (strcmp(s->nodes[i].address, address) == 0)
            return (int)i;
    return -1;
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
    int sender = find_node_by_id(s, header[1]);
    if (header[0] != PAYLOAD_MAGIC || sender < 0 || header[1] != a->sender_id ||
        header[2] != a->subgroup) {
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
    *sender_index = (uint32_t)sender;
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

static void check_delivery(sim *s, sim_node *node, const dr_action *a) {
    uint32_t sender = 0, msgno = 0;
    if (a->subgroup >= SIM_MAX_SUBGROUPS || !node->in_view) {
        fail(s, "node %u delivered in subgroup %u without a view", node->id, a->subgroup);
        return;
    }
    if (!payload_is_genuine(s, a, &sender, &msgno))
        return;
    uint32_t *expected = &node->next_expected[a->subgroup][sender];
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
        check_total_order(s, node, a, (uint64_t)sender << 32 | msgno);
    } else if (a->version != -1) {
        fail(s, "raw delivery at node %u carries version %" PRId64, node->id, a->version);
    }
    node->delivered[a->subgroup]++;
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

static void on_view_installed(sim *s, uint32_t index, dr_action *a) {
    sim_node *node = &s->nodes[index];
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
    uint64_t arrival = s->now_us + link->latency_us + rng_range(s, 0, link->jitter_us) +
                       (uint64_t)len * 1000u / link->bytes_per_ms;
    if (arrival <= link->last_arrival_us)
        arrival = link->last_arrival_us + 1; /* FIFO per link, as TCP (strictly: no ties) */
    link->last_arrival_us = arrival;
    heap_push(s, (sim_event){.time_us = arrival,
                             .kind = EV_FRAME,
                             .node = to,
                             .from = from,
                             .bytes = bytes,
                             .len = len,
                             .link_seq = link->frames_sent++});
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
    fail(s, "node %u stopped (%d): %.*s", node->id, a->error, (int)a->len, (char *)a->bytes);
}

static void drain_actions(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    dr_action a;
    while (dr_core_next_action(node->core, &a)) {
        switch (a.type) {
        case DR_ACTION_SEND:
            on_send_action(s, index, &a);
            break;
        case DR_ACTION_CONNECT:
            break; /* links always exist */
        case DR_ACTION_DELIVER:
            check_delivery(s, node, &a);
            break;
        case DR_ACTION_VIEW_INSTALLED:
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
        }
        dr_action_free(&a);
    }
}

/* ---- events -------------------------------------------------------------------------- */

static void on_start(sim *s, uint32_t index) {
    sim_node *node = &s->nodes[index];
    dr_core_options options = s->base;
    options.my_id = node->id;
    options.defer_flush = node->defer_flush;
    snprintf(options.my_address, sizeof options.my_address, "%s", node->address);
    snprintf(options.contact_address, sizeof options.contact_address, "%s", node->contact);
    dr_err err;
    if (dr_core_create(&options, s->now_us, &node->core, &err) != 0) {
        fail(s, "node %u: dr_core_create: %s", node->id, err.msg);
        return;
    }
    schedule(s, s->now_us + node->tick_us, EV_TICK, index, 0);
}

static void on_app_send(sim *s, uint32_t index, uint32_t subgroup) {
    sim_node *node = &s->nodes[index];
    sim_stream *stream = &node->streams[subgroup];
    if (stream->sent == stream->total || stream->waiting)
        return;
    uint32_t len = stream->lens[stream->sent];
    uint8_t *payload = malloc(len);
    assert(payload != NULL);
    make_payload(payload, len, node->id, subgroup, stream->sent);
    const dr_layout *layout = dr_core_layout(node->core);
    uint32_t rank = 0;
    int shard = dr_layout_find_shard(layout, subgroup, node->id, &rank);
    assert(shard >= 0);
    dr_delivery_mode mode = layout->subgroups[subgroup].shards[shard].mode;
    int rc = dr_core_send(node->core, subgroup, payload, len, mode, s->now_us);
    free(payload);
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
    node->paused = true;
    uint64_t until = s->now_us + rng_range(s, 1000, 20000);
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
    sim_event *held = node->held;
    size_t count = node->num_held;
    node->held = NULL;
    node->num_held = node->cap_held = 0;
    for (size_t i = 0; i < count; i++)
        process(s, &held[i]); /* may pause again: the rest is then held anew, in order */
    free(held);
}

static void process(sim *s, sim_event *event) {
    sim_node *node = &s->nodes[event->node];
    s->current_node = event->node;
    if (node->paused && event->kind != EV_RESUME) {
        hold_event(node, event);
        return;
    }
    if (event->kind == EV_RESUME) {
        resume(s, event->node);
        return;
    }
    switch (event->kind) {
    case EV_START:
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
    case EV_FRAME: {
        sim_link *link = &s->links[event->from][event->node];
        if (event->link_seq != link->frames_delivered++)
            fail(s, "simulator: link %u->%u delivered frame %" PRIu64 " out of order",
                 s->nodes[event->from].id, node->id, event->link_seq);
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
        if (rc != 0)
            fail(s, "node %u rejected a frame from correct node %u: %s", node->id,
                 s->nodes[event->from].id, dr_strerror(rc));
        break;
    }
    }
    free(event->bytes);
    if (node->core != NULL && node->defer_flush && (event->kind == EV_TICK || rng_chance(s, 40)))
        dr_core_flush(node->core, s->now_us);
    if (node->core != NULL)
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
    s->base.test_fault =
        s->config->broken_delivery ? DR_CORE_FAULT_BROKEN_DELIVERY : DR_CORE_FAULT_NONE;
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

/** Empty if the run is complete, else what is missing. */
static bool incomplete(const sim *s, char *why, size_t cap) {
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
    }
    for (uint32_t sg = 0; sg < SIM_MAX_SUBGROUPS; sg++)
        for (uint32_t sh = 0; sh < DR_LAYOUT_MAX_SHARDS; sh++)
            free(s->order[sg][sh].items);
}

static void run_loop(sim *s) {
    char why[256];
    uint64_t steps = 0;
    while (!s->failed && s->heap_len > 0) {
        sim_event event = heap_pop(s);
        assert(event.time_us >= s->now_us); /* the virtual clock never goes back */
        s->now_us = event.time_us;
        if (s->now_us > s->config->max_virtual_us) {
            free(event.bytes);
            break;
        }
        process(s, &event);
        if ((++steps & 63) == 0 && !incomplete(s, why, sizeof why))
            return;
    }
    if (!s->failed && incomplete(s, why, sizeof why))
        fail(s, "liveness: after %" PRIu64 " us of virtual time %s", s->now_us, why);
}

int sim_run(const sim_config *config, sim_result *result) {
    sim *s = calloc(1, sizeof *s);
    if (s == NULL)
        return DR_ENOMEM;
    memset(result, 0, sizeof *result);
    s->config = config;
    s->result = result;
    s->rng = config->seed * 0x2545f4914f6cdd1dull + 1;
    uint32_t members = config->num_nodes ? config->num_nodes : rng_range(s, 1, 8);
    if (members > SIM_MAX_NODES - 1)
        members = SIM_MAX_NODES - 1;
    bool duplicate = rng_chance(s, 15);
    random_options(s, members);
    setup_nodes(s, members, duplicate);
    setup_links(s);
    if (config->trace)
        fprintf(config->trace,
                "seed %" PRIu64 ": %u members%s, window %u, payload %u, smc %u, "
                "block %u, pipeline %u, %u subgroup types\n",
                config->seed, members, duplicate ? " + a duplicate id" : "", s->base.window_size,
                s->base.max_payload_size, s->base.max_smc_payload_size, s->base.block_size,
                (unsigned)s->base.pipeline, s->base.layout.num_types);
    for (uint32_t i = 0; i < s->num_nodes; i++)
        schedule(s, s->nodes[i].start_us, EV_START, i, 0);
    run_loop(s);
    result->passed = !s->failed;
    result->num_nodes = s->num_nodes;
    result->virtual_us = s->now_us;
    free_sim(s);
    free(s);
    return 0;
}
