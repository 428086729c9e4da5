/*
 * The function tier's backend in the real service: an sd_backend (function_tier.h) and
 * sd_http_hooks (http_api.h) that forward to the categorizer tier over the group's p2p calls.
 *
 *   Whatsthis   each tag goes to shard (tag % number of categorizer shards); the replica is
 *               chosen round-robin among the shard's usable members (in the view, not failed,
 *               connection not lost: dr_rpc_node_peer_down); all tags are started at once
 *               (dr_rpc_p2p_start) and then waited for; the answers are joined with " or ".
 *               A replica that is gone, stopped or times out is retried on the next usable
 *               member at once, until one answers or none is left (DR_EAGAIN).
 *   Stopped     once this node's group stopped (excluded, partitioned), every call answers
 *               DR_ECLOSED at once (gRPC UNAVAILABLE, HTTP 503): it never serves again.
 *   Install     p2p `install` on a member of the tag's shard, which multicasts it in the shard.
 *   Remove      p2p `remove`, likewise.
 *   HTTP hooks  /v1/models (every replica's list, so disagreements show), /v1/cluster (view id,
 *               members, shards, who serves what), /metrics (view id, models installed).
 *
 * Thread-safe: the callbacks run on the gRPC workers and the HTTP threads at once.
 */
#ifndef SOSPDEMO_FUNCTION_BACKEND_H
#define SOSPDEMO_FUNCTION_BACKEND_H

#include "derecho/rpc.h"
#include "function_tier.h"
#include "http_api.h"

#include <stdint.h>

/** Settings of the backend. Zero fields take the defaults named. */
typedef struct sd_service_config {
    uint32_t function_subgroup;       /**< subgroup id of FUNCTION_TIER (0) */
    uint32_t categorizer_subgroup;    /**< subgroup id of CATEGORIZER_TIER (1) */
    uint16_t function_tier_base_port; /**< gRPC port = base + node id, for /v1/cluster (28000) */
    uint16_t http_base_port;          /**< HTTP port = base + node id, for /v1/cluster (0: none) */
    int inference_timeout_ms;         /**< one classification (60 s) */
    int install_timeout_ms;           /**< install / remove (300 s) */
    uint64_t max_model_bytes;         /**< p2p request limit minus framing, checked before send */
    uint64_t max_photo_bytes;         /**< likewise for photos */
    uint32_t max_models_per_shard;    /**< installs into a shard holding this many models are
                                           refused (error_code DR_ETOOBIG; 0: no limit) */
} sd_service_config;

/** The backend's state (opaque). */
typedef struct sd_service sd_service;

/** Creates the backend over a running node (borrowed; must outlive it). 0 or DR_ENOMEM. */
int sd_service_create(dr_rpc_node *node, const sd_service_config *config, sd_service **out);

/** Frees it. No callback may be running (stop the gRPC and HTTP servers first). */
void sd_service_destroy(sd_service *service);

/** The sd_backend over this service (user = service). */
sd_backend sd_service_backend(sd_service *service);

/**
 * Logs (once per change) the shards that have fewer live members than their minimum
 * ("CATEGORIZER_TIER shard 0 needs 2, has 1: waiting for a node") and a group that stopped; the
 * same list is `problems` in /v1/cluster. For a periodic call from one thread.
 */
void sd_service_log_health(sd_service *service);

/** The HTTP hooks over this service (user = service). */
sd_http_hooks sd_service_http_hooks(sd_service *service);

#endif
