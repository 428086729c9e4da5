/*
 * Outside clients (dr_rpc_client_*): a process that is not a group member calls members point to
 * point. It runs its own dr_net in CLIENT role with cluster id DR_NET_CLUSTER_ANY (it cannot
 * know the members' cluster id, a hash of their layout spec; members accept such client HELLOs
 * and serve clients only rpc frames). It dials the contact by address, asks it for its view
 * (RPC_T_VIEW_QUERY / RPC_T_VIEW_REPLY, wire.c), then dials the members it calls by id. A member
 * whose connection goes down ends its pending calls with DR_EREMOVED and marks the view stale;
 * the next dr_rpc_client_get_view or call refreshes it from a member that is still reachable.
 *
 * Threads: the net's network thread matches replies and views (callback mode, never blocks);
 * application threads call and wait. `lock` guards the view and connection state.
 */
#include "derecho/rpc.h"

#include "derecho/log.h"
#include "net/net.h"
#include "rpc/calls.h"
#include "rpc/wire.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    QUERY_RETRY_MS = 300,        /* a member without a view yet is asked again */
    REFRESH_TIMEOUT_MS = 5000,   /* view refreshes inside calls */
    CLIENT_MAX_FRAME = 1u << 27, /* 128 MiB: the largest reply a client accepts */
};

struct dr_rpc_client {
    dr_net *net;
    rpc_registry *reg;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    rpc_view_info *info; /* latest view (owned), NULL before the first */
    uint64_t view_seq;   /* bumped by every view reply */
    bool stale;          /* a member disappeared since the view was learned */
    uint32_t contact_id; /* the contact's node id once its HELLO came, else DR_NODE_NONE */
    bool contact_failed; /* the contact connection went down */
    char contact_ip[DR_ADDRESS_MAX];
    uint16_t contact_port;
};

static void deadline_after(struct timespec *deadline, int timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, deadline);
    deadline->tv_sec += timeout_ms / 1000;
    deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline->tv_nsec >= 1000000000L) {
        deadline->tv_sec++;
        deadline->tv_nsec -= 1000000000L;
    }
}

static bool before(const struct timespec *deadline) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec < deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec < deadline->tv_nsec);
}

/* ---- network thread ------------------------------------------------------------------------- */

static void on_view_reply(dr_rpc_client *client, const dr_net_msg *msg) {
    rpc_view_info *info = malloc(sizeof *info);
    if (!info)
        return;
    if (rpc_decode_view_reply(msg->payload, msg->payload_bytes, info)) {
        DR_WARN(DR_LOGM_RPC, "malformed view reply from %" PRIu32 " dropped", msg->from);
        free(info);
        return;
    }
    pthread_mutex_lock(&client->lock);
    if (client->info && client->info->view.view.vid > info->view.view.vid) {
        free(info); /* an older view than the one we have */
    } else {
        free(client->info);
        client->info = info;
        client->stale = false;
    }
    client->view_seq++;
    pthread_cond_broadcast(&client->changed);
    pthread_mutex_unlock(&client->lock);
}

static void on_event(void *ctx, const dr_net_event *event) {
    dr_rpc_client *client = ctx;
    switch (event->kind) {
    case DR_NET_EV_PEER_UP:
        pthread_mutex_lock(&client->lock);
        if (client->contact_id == DR_NODE_NONE)
            client->contact_id = event->peer;
        pthread_cond_broadcast(&client->changed);
        pthread_mutex_unlock(&client->lock);
        break;
    case DR_NET_EV_FRAME: {
        rpc_reply_msg reply;
        if (event->msg->type == RPC_T_VIEW_REPLY) {
            on_view_reply(client, event->msg);
        } else if (event->msg->type == RPC_T_P2P_REPLY &&
                   rpc_decode_reply(event->msg->payload, event->msg->payload_bytes, &reply) ==
                       DR_OK) {
            rpc_reply_arrived(client->reg, false, event->peer, &reply, CLIENT_MAX_FRAME);
        } else {
            DR_WARN(DR_LOGM_RPC, "unexpected frame of type %u from %" PRIu32 " dropped",
                    event->msg->type, event->peer);
        }
        free(event->msg);
        break;
    }
    case DR_NET_EV_PEER_DOWN:
        rpc_peer_down(client->reg, event->peer);
        pthread_mutex_lock(&client->lock);
        client->stale = true;
        if (event->peer == client->contact_id || event->peer == DR_NET_ANY_NODE) {
            client->contact_id = DR_NODE_NONE;
            client->contact_failed = true;
        }
        pthread_cond_broadcast(&client->changed);
        pthread_mutex_unlock(&client->lock);
        break;
    case DR_NET_EV_TICK:
        break;
    }
}

/* ---- views ---------------------------------------------------------------------------------- */

/* Dials member `id` at its view address (lock held); DR_EEXIST (already connected) is fine. */
static int connect_member_locked(dr_rpc_client *client, uint32_t id) {
    const dr_view *view = client->info ? &client->info->view.view : NULL;
    for (uint32_t m = 0; view && m < view->num_members; m++) {
        if (view->member_ids[m] != id)
            continue;
        char ip[DR_ADDRESS_MAX];
        uint16_t port = 0;
        if (dr_net_split_address(view->addresses[m], ip, sizeof ip, &port))
            return DR_EPROTO;
        int rc = dr_net_connect(client->net, id, ip, port);
        return rc == DR_EEXIST ? DR_OK : rc;
    }
    return DR_ENOTFOUND;
}

static int send_query(dr_rpc_client *client, uint32_t member) {
    dr_buf frame;
    dr_buf_init(&frame, 0);
    int rc = rpc_encode_view_query(&frame);
    if (rc == DR_OK)
        rc = dr_net_send(client->net, member, RPC_T_VIEW_QUERY, 0, frame.data, frame.len);
    dr_buf_free(&frame);
    return rc;
}

/*
 * Asks a member for its view and waits for a newer view reply (lock held). Tries the contact,
 * then the members of the last view in turn. Returns 0, DR_ETIMEDOUT or DR_EIO.
 */
static int refresh_locked(dr_rpc_client *client, int timeout_ms) {
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms);
    uint64_t seq = client->view_seq;
    uint32_t next_member = 0;
    while (client->view_seq == seq && before(&deadline)) {
        uint32_t ask = client->contact_id;
        if (ask == DR_NODE_NONE && !client->info && client->contact_failed) {
            /* no view yet and the contact refused: it may still be starting; dial again */
            client->contact_failed = false;
            dr_net_connect(client->net, DR_NET_ANY_NODE, client->contact_ip, client->contact_port);
        }
        if (ask == DR_NODE_NONE && client->info) {
            const dr_view *view = &client->info->view.view;
            if (view->num_members) {
                ask = view->member_ids[next_member++ % view->num_members];
                connect_member_locked(client, ask);
            }
        }
        if (ask != DR_NODE_NONE)
            send_query(client, ask);
        struct timespec retry;
        deadline_after(&retry, QUERY_RETRY_MS);
        if (retry.tv_sec > deadline.tv_sec ||
            (retry.tv_sec == deadline.tv_sec && retry.tv_nsec > deadline.tv_nsec))
            retry = deadline;
        while (client->view_seq == seq &&
               pthread_cond_timedwait(&client->changed, &client->lock, &retry) == 0) {
            if (ask == DR_NODE_NONE && client->contact_id != DR_NODE_NONE)
                break; /* the contact came up: ask it */
        }
    }
    if (client->view_seq != seq)
        return DR_OK;
    return client->info || client->contact_id != DR_NODE_NONE ? DR_ETIMEDOUT : DR_EIO;
}

/* ---- public API ----------------------------------------------------------------------------- */

int dr_rpc_client_create(const char *contact_ip, uint16_t contact_port, int timeout_ms,
                         dr_rpc_client **out, dr_err *err) {
    return dr_rpc_client_create_auth(contact_ip, contact_port, NULL, timeout_ms, out, err);
}

int dr_rpc_client_create_auth(const char *contact_ip, uint16_t contact_port,
                              const dr_rpc_client_credential *credential, int timeout_ms,
                              dr_rpc_client **out, dr_err *err) {
    if (!contact_ip || !contact_port || !out)
        return dr_err_set(err, DR_EINVAL, "contact address needed");
    uint8_t key[DR_NET_KEY_BYTES];
    bool have_key = credential && credential->key_file;
    if (have_key) {
        int rc = dr_net_load_key(credential->key_file, NULL, key, err);
        if (rc)
            return rc;
    }
    dr_rpc_client *client = calloc(1, sizeof *client);
    if (!client)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    pthread_mutex_init(&client->lock, NULL);
    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&client->changed, &monotonic);
    pthread_condattr_destroy(&monotonic);
    client->contact_id = DR_NODE_NONE;
    snprintf(client->contact_ip, sizeof client->contact_ip, "%s", contact_ip);
    client->contact_port = contact_port;
    int rc = rpc_registry_create(&client->reg);
    if (rc) {
        dr_err_set(err, rc, "out of memory");
        goto fail;
    }
    dr_net_config config;
    dr_net_config_defaults(&config);
    config.role = DR_NET_ROLE_CLIENT;
    config.cluster_id = DR_NET_CLUSTER_ANY;
    config.max_frame_bytes = CLIENT_MAX_FRAME;
    config.on_event = on_event;
    config.on_event_ctx = client;
    if (have_key) {
        config.prove_with = credential->admin ? DR_NET_KEY_ADMIN : DR_NET_KEY_CLIENT;
        config.keys[config.prove_with] = key;
    }
    rc = dr_net_create(&config, &client->net, err);
    memset(key, 0, sizeof key);
    if (rc)
        goto fail;
    rc = dr_net_connect(client->net, DR_NET_ANY_NODE, contact_ip, contact_port);
    if (rc) {
        dr_err_set(err, rc, "cannot dial %s:%u: %s", contact_ip, contact_port, dr_strerror(rc));
        goto fail;
    }
    pthread_mutex_lock(&client->lock);
    rc = refresh_locked(client, timeout_ms < 0 ? 3600000 : timeout_ms);
    pthread_mutex_unlock(&client->lock);
    if (rc) {
        dr_err_set(err, rc, "no view from %s:%u: %s", contact_ip, contact_port, dr_strerror(rc));
        goto fail;
    }
    *out = client;
    return DR_OK;
fail:
    dr_rpc_client_destroy(client);
    return rc;
}

int dr_rpc_client_get_view(dr_rpc_client *client, dr_group_view *out) {
    pthread_mutex_lock(&client->lock);
    int rc = client->stale || !client->info ? refresh_locked(client, REFRESH_TIMEOUT_MS) : DR_OK;
    if (client->info) {
        *out = client->info->view;
        out->my_id = DR_NODE_NONE; /* a client is no member */
        rc = DR_OK;                /* the last known view, even if the refresh failed */
    }
    pthread_mutex_unlock(&client->lock);
    return rc;
}

int dr_rpc_client_find_subgroup(dr_rpc_client *client, const char *type_name, uint32_t index,
                                uint32_t *subgroup_out) {
    int rc = DR_ENOTFOUND;
    pthread_mutex_lock(&client->lock);
    const rpc_view_info *info = client->info;
    for (uint32_t s = 0; info && s < info->view.layout.num_subgroups; s++) {
        const dr_subgroup_layout *subgroup = &info->view.layout.subgroups[s];
        if (subgroup->type_index < info->num_types &&
            strcmp(info->type_names[subgroup->type_index], type_name) == 0 &&
            subgroup->index_in_type == index) {
            *subgroup_out = s;
            rc = DR_OK;
            break;
        }
    }
    pthread_mutex_unlock(&client->lock);
    return rc;
}

static bool serves_locked(const dr_rpc_client *client, uint32_t target, uint32_t subgroup) {
    const rpc_view_info *info = client->info;
    return info && subgroup < info->view.layout.num_subgroups &&
           dr_layout_find_shard(&info->view.layout, subgroup, target, NULL) >= 0;
}

/* Checks the target against the view (refreshing once if needed) and dials it. */
static int prepare_call(dr_rpc_client *client, uint32_t target, uint32_t subgroup, size_t len,
                        uint32_t *window) {
    pthread_mutex_lock(&client->lock);
    int rc = DR_OK;
    if (client->stale || !serves_locked(client, target, subgroup))
        refresh_locked(client, REFRESH_TIMEOUT_MS);
    if (!serves_locked(client, target, subgroup))
        rc = DR_ENOTFOUND;
    else if (len > client->info->max_p2p_request)
        rc = DR_ETOOBIG;
    else
        rc = connect_member_locked(client, target);
    *window = client->info ? client->info->p2p_window : 1;
    pthread_mutex_unlock(&client->lock);
    return rc;
}

int dr_rpc_client_call(dr_rpc_client *client, uint32_t target, uint32_t subgroup,
                       const char *method, const void *args, size_t len, int timeout_ms,
                       dr_rpc_reply *out) {
    *out = (dr_rpc_reply){.node_id = target};
    uint32_t window = 1;
    int rc = prepare_call(client, target, subgroup, len, &window);
    dr_rpc_pending *pending = NULL;
    uint64_t request_id = 0;
    if (rc == DR_OK)
        rc = rpc_pending_new(client->reg, target, window, timeout_ms, &pending, &request_id);
    if (rc) {
        out->status = rc == DR_EIO ? DR_EREMOVED : rc;
        return out->status;
    }
    dr_buf frame;
    dr_buf_init(&frame, 0);
    rc = rpc_encode_p2p_request(&frame, request_id, subgroup, dr_rpc_method_id(method), args, len);
    if (rc == DR_OK) { /* the transport takes the frame (no copy of the arguments) */
        size_t frame_len = 0;
        uint8_t *bytes = dr_buf_steal(&frame, &frame_len);
        rc = bytes ? dr_net_send_owned(client->net, target, RPC_T_P2P_REQUEST, 0, bytes, frame_len,
                                       dr_net_free_payload, NULL)
                   : DR_ENOMEM;
    }
    dr_buf_free(&frame);
    if (rc)
        rpc_pending_fail(pending, rc == DR_ENOTFOUND ? DR_EREMOVED : rc);
    rc = dr_rpc_pending_wait(pending, timeout_ms, out);
    dr_rpc_pending_free(pending);
    if (rc == DR_EREMOVED) {
        pthread_mutex_lock(&client->lock);
        client->stale = true;
        pthread_mutex_unlock(&client->lock);
    }
    return rc;
}

void dr_rpc_client_destroy(dr_rpc_client *client) {
    if (!client)
        return;
    dr_net_destroy(client->net); /* joins the network thread */
    if (client->reg)
        rpc_registry_close(client->reg, DR_ECLOSED);
    free(client->info);
    pthread_cond_destroy(&client->changed);
    pthread_mutex_destroy(&client->lock);
    free(client);
}
