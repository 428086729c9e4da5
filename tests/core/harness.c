/* The unit tests' in-process cluster (harness.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "harness.h"

void h_options(dr_core_options *options, uint32_t members) {
    dr_core_options_default(options);
    dr_shard_policy_fixed(&options->layout.types[0].policy, 1, members, DR_MODE_ORDERED);
    options->window_size = 4;
    options->max_payload_size = 100000;
    options->max_smc_payload_size = 1000;
    options->block_size = 256;
    options->join_retry_us = 1000000;
}

static int find_by_id(const harness *h, uint32_t id) {
    for (uint32_t i = 0; i < h->num_nodes; i++)
        if (h->nodes[i].id == id && h->nodes[i].core != NULL)
            return (int)i;
    return -1;
}

static int find_by_address(const harness *h, const char *address) {
    for (uint32_t i = 0; i < h->num_nodes; i++)
        if (strcmp(h->nodes[i].address, address) == 0 && !h->nodes[i].crashed)
            return (int)i;
    return -1;
}

static void enqueue(harness *h, uint32_t from, uint32_t to, uint8_t *bytes, size_t len) {
    if (h->head + h->len == h->cap) {
        if (h->head > 0) {
            memmove(h->queue, h->queue + h->head, h->len * sizeof *h->queue);
            h->head = 0;
        } else {
            h->cap = h->cap ? h->cap * 2 : 256;
            h->queue = realloc(h->queue, h->cap * sizeof *h->queue);
            CHECK(h->queue != NULL, "frame queue of %zu entries", h->cap);
        }
    }
    h->queue[h->head + h->len++] = (h_frame){.from = from, .to = to, .bytes = bytes, .len = len};
}

static void record_delivery(h_node *node, dr_action *a) {
    CHECK(node->num_deliveries < H_MAX_DELIVERIES, "node %u: more than %d deliveries", node->id,
          H_MAX_DELIVERIES);
    h_delivery *d = &node->deliveries[node->num_deliveries++];
    *d = (h_delivery){.subgroup = a->subgroup,
                      .shard = a->shard,
                      .sender_id = a->sender_id,
                      .sender_index = a->sender_index,
                      .index = a->index,
                      .version = a->version,
                      .timestamp_us = a->timestamp_us,
                      .len = a->len,
                      .bytes = a->bytes};
    a->bytes = NULL;
}

void h_drain(harness *h, uint32_t index) {
    h_node *node = &h->nodes[index];
    dr_action a;
    while (dr_core_next_action(node->core, &a)) {
        if (a.body_owner != NULL && a.type == DR_ACTION_SEND)
            node->shared_sends++;
        if (a.body_owner != NULL && a.type == DR_ACTION_DELIVER)
            node->shared_deliveries++;
        int flat = dr_action_flatten(&a); /* frames and payloads in one buffer each */
        CHECK(flat == 0, "dr_action_flatten: %d", flat);
        int to;
        switch (a.type) {
        case DR_ACTION_SEND:
            to = a.node_id != DR_NODE_NONE ? find_by_id(h, a.node_id)
                                           : find_by_address(h, a.address);
            if (to < 0)
                break; /* a crashed node */
            enqueue(h, index, (uint32_t)to, a.bytes, a.len);
            a.bytes = NULL;
            break;
        case DR_ACTION_DELIVER:
            record_delivery(node, &a);
            break;
        case DR_ACTION_VIEW_INSTALLED:
            node->installed = true;
            node->view = *a.view_info;
            node->views_installed++;
            if (node->history_len < H_MAX_VIEWS) {
                uint32_t *ids = node->history_members[node->history_len];
                uint32_t n = a.view_info->view.num_members;
                ids[0] = n < H_MAX_NODES ? n : H_MAX_NODES;
                for (uint32_t m = 0; m < ids[0]; m++)
                    ids[1 + m] = a.view_info->view.member_ids[m];
                node->history_vid[node->history_len++] = a.view_info->view.vid;
            }
            break;
        case DR_ACTION_WINDOW_OPEN:
            node->window_open[a.subgroup]++;
            break;
        case DR_ACTION_JOIN_FAILED:
            node->join_failed = true;
            node->join_error = a.error;
            break;
        case DR_ACTION_STOPPED:
            node->stopped = true;
            node->stop_error = a.error;
            break;
        case DR_ACTION_CONNECT:
            break;
        case DR_ACTION_TRUNCATE:
            CHECK(a.subgroup < DR_LAYOUT_MAX_SUBGROUPS, "TRUNCATE of subgroup %u", a.subgroup);
            CHECK(!node->installed, "TRUNCATE after a view was installed");
            node->truncated[a.subgroup] = a.version;
            node->truncations++;
            break;
        case DR_ACTION_SAVE_RESTART_VOTE:
            /* the last vote may follow the install of a restart view: it carries its proposal */
            CHECK(!node->installed || node->views_installed == 1,
                  "SAVE_RESTART_VOTE after a later view was installed");
            free(node->vote);
            node->vote = a.bytes; /* taken */
            node->vote_len = a.len;
            a.bytes = NULL;
            node->votes_saved++;
            break;
        case DR_ACTION_DISCARD_DURABLE:
            CHECK(!node->installed, "DISCARD_DURABLE after a view was installed");
            node->discards++;
            break;
        case DR_ACTION_PERSISTED:
            CHECK(a.subgroup < DR_LAYOUT_MAX_SUBGROUPS, "PERSISTED of subgroup %u", a.subgroup);
            CHECK(a.version > node->persisted[a.subgroup], "frontier %lld after %lld",
                  (long long)a.version, (long long)node->persisted[a.subgroup]);
            node->persisted[a.subgroup] = a.version;
            node->persisted_events++;
            break;
        }
        dr_action_free(&a);
    }
}

uint32_t h_add(harness *h, uint32_t id, const dr_core_options *base, const char *contact) {
    CHECK(h->num_nodes < H_MAX_NODES, "more than %d nodes", H_MAX_NODES);
    uint32_t index = h->num_nodes++;
    h_node *node = &h->nodes[index];
    node->id = id;
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        node->persisted[s] = -1;
    snprintf(node->address, sizeof node->address, "n%u", index);
    dr_core_options options = *base;
    options.my_id = id;
    snprintf(options.my_address, sizeof options.my_address, "%s", node->address);
    snprintf(options.contact_address, sizeof options.contact_address, "%s",
             contact ? contact : "n0");
    int rc = dr_core_create(&options, h->now_us, &node->core, NULL);
    CHECK(rc == 0, "dr_core_create of node %u: %d", id, rc);
    h_drain(h, index);
    return index;
}

static bool held(const harness *h, size_t i) {
    return h->hold[h->queue[i].from][h->queue[i].to];
}

/**
 * Takes the next frame off the queue into *out: the oldest whose link is not held (FIFO), or
 * with h->shuffle the oldest frame of the link of a randomly chosen deliverable frame, so links
 * interleave at random but each stays FIFO. Returns false if every queued frame is held.
 */
static bool take_frame(harness *h, h_frame *out) {
    size_t end = h->head + h->len, ready = 0;
    if (h->len > 0 && h->shuffle == 0 && !held(h, h->head))
        ready = 1; /* FIFO and the oldest frame may go: no need to count */
    else
        for (size_t i = h->head; i < end; i++)
            ready += held(h, i) ? 0u : 1u;
    if (ready == 0)
        return false;
    size_t skip = 0;
    if (h->shuffle != 0) {
        h->shuffle = h->shuffle * 6364136223846793005ull + 1442695040888963407ull;
        skip = (size_t)((h->shuffle >> 33) % ready);
    }
    size_t pick = h->head;
    for (;; pick++)
        if (!held(h, pick) && skip-- == 0)
            break;
    size_t first = h->head; /* the oldest frame on the picked frame's link */
    while (h->queue[first].from != h->queue[pick].from || h->queue[first].to != h->queue[pick].to)
        first++;
    *out = h->queue[first];
    if (first == h->head)
        h->head++; /* the usual case: no shifting */
    else
        memmove(h->queue + first, h->queue + first + 1, (end - first - 1) * sizeof *h->queue);
    h->len--;
    return true;
}

size_t h_pump(harness *h, size_t max_frames) {
    size_t delivered = 0;
    h_frame frame;
    while (delivered < max_frames && take_frame(h, &frame)) {
        h->now_us += 10;
        h_node *node = &h->nodes[frame.to];
        if (node->crashed || h->nodes[frame.from].crashed || h->cut[frame.from][frame.to]) {
            free(frame.bytes);
            continue;
        }
        dr_shared_bytes *shared =
            h->share_frames ? dr_shared_bytes_wrap(frame.bytes, frame.len) : NULL;
        CHECK(!h->share_frames || shared != NULL, "out of memory");
        int rc = shared ? dr_core_on_shared_message(node->core, h->nodes[frame.from].id, shared,
                                                    h->now_us)
                        : dr_core_on_message(node->core, h->nodes[frame.from].id, frame.bytes,
                                             frame.len, h->now_us);
        if (rc != 0)
            h->rejected++;
        if (shared) /* the core's SEND actions hold their own references */
            dr_shared_bytes_release(shared);
        else
            free(frame.bytes);
        h_drain(h, frame.to);
        delivered++;
    }
    return delivered;
}

void h_crash(harness *h, uint32_t index) {
    h->nodes[index].crashed = true;
    dr_core_destroy(h->nodes[index].core);
    h->nodes[index].core = NULL;
}

uint32_t h_restart(harness *h, uint32_t index, const dr_core_options *base) {
    CHECK(h->num_nodes < H_MAX_NODES, "too many nodes");
    CHECK(h->nodes[index].crashed, "restart of a node that did not crash");
    uint32_t fresh = h->num_nodes++;
    h_node *node = &h->nodes[fresh];
    const h_node *old = &h->nodes[index];
    node->id = old->id;
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        node->persisted[s] = -1;
    memcpy(node->address, old->address, sizeof node->address);
    dr_core_options options = *base;
    options.my_id = node->id;
    snprintf(options.my_address, sizeof options.my_address, "%s", node->address);
    snprintf(options.contact_address, sizeof options.contact_address, "n0");
    int rc = dr_core_create(&options, h->now_us, &node->core, NULL);
    CHECK(rc == 0, "dr_core_create failed: %d", rc);
    h_drain(h, fresh);
    return fresh;
}

void h_break_link(harness *h, uint32_t a, uint32_t b, bool notify_a, bool notify_b) {
    h->cut[a][b] = h->cut[b][a] = true; /* queued frames between them are dropped at pump */
    if (notify_a && !h->nodes[a].crashed) {
        dr_core_on_disconnect(h->nodes[a].core, h->nodes[b].id, 0, h->now_us);
        h_drain(h, a);
    }
    if (notify_b && !h->nodes[b].crashed) {
        dr_core_on_disconnect(h->nodes[b].core, h->nodes[a].id, 0, h->now_us);
        h_drain(h, b);
    }
}

void h_run(harness *h, uint64_t step_us, uint32_t steps) {
    for (uint32_t i = 0; i < steps; i++) {
        h->now_us += step_us;
        for (uint32_t n = 0; n < h->num_nodes; n++) {
            if (h->nodes[n].crashed)
                continue;
            dr_core_on_tick(h->nodes[n].core, h->now_us);
            h_drain(h, n);
        }
        h_pump(h, 1000000);
    }
}

void h_free(harness *h) {
    for (size_t i = 0; i < h->len; i++)
        free(h->queue[h->head + i].bytes);
    free(h->queue);
    for (uint32_t i = 0; i < h->num_nodes; i++) {
        dr_core_destroy(h->nodes[i].core);
        for (uint32_t d = 0; d < h->nodes[i].num_deliveries; d++)
            free(h->nodes[i].deliveries[d].bytes);
        free(h->nodes[i].vote);
    }
    memset(h, 0, sizeof *h);
}

void h_cluster(harness *h, uint32_t n, const dr_core_options *base) {
    memset(h, 0, sizeof *h);
    for (uint32_t i = 0; i < n; i++) {
        h_add(h, 10 + i, base, "n0");
        h_pump(h, (size_t)-1);
    }
}
