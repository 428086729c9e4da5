/*
 * The function tier's backend: forwards Whatsthis / InstallModel / RemoveModel to the
 * categorizer tier with p2p calls (function_backend.h), and answers the HTTP hooks.
 * Argument and reply formats are the categorizer's (categorizer.h).
 */
#include "function_backend.h"

#include "categorizer.h"
#include "derecho/buffer.h"
#include "derecho/log.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_INFERENCE_TIMEOUT_MS 60000
#define DEFAULT_INSTALL_TIMEOUT_MS   300000
#define LIST_TIMEOUT_MS              10000

struct sd_service {
    dr_rpc_node *node;
    sd_service_config config;
    atomic_uint next_member[DR_LAYOUT_MAX_SHARDS]; /* round-robin cursor per shard */
    char last_health[1024]; /* health problems last logged (sd_service_log_health) */
};

int sd_service_create(dr_rpc_node *node, const sd_service_config *config, sd_service **out) {
    sd_service *service = calloc(1, sizeof *service);
    if (!service)
        return DR_ENOMEM;
    service->node = node;
    if (config)
        service->config = *config;
    sd_service_config *c = &service->config;
    if (!config) {
        c->function_subgroup = 0;
        c->categorizer_subgroup = 1;
    }
    if (!c->function_tier_base_port)
        c->function_tier_base_port = SD_FUNCTION_TIER_BASE_PORT;
    if (c->inference_timeout_ms <= 0)
        c->inference_timeout_ms = DEFAULT_INFERENCE_TIMEOUT_MS;
    if (c->install_timeout_ms <= 0)
        c->install_timeout_ms = DEFAULT_INSTALL_TIMEOUT_MS;
    for (size_t i = 0; i < DR_LAYOUT_MAX_SHARDS; i++)
        atomic_init(&service->next_member[i], 0);
    snprintf(service->last_health, sizeof service->last_health, "[]");
    *out = service;
    return DR_OK;
}

void sd_service_destroy(sd_service *service) {
    free(service);
}

/* ---- view helpers ------------------------------------------------------------------------ */

/* Copies the current view (heap: a view with its layout is tens of KiB). */
static int current_view(sd_service *service, dr_group_view **out, dr_err *err) {
    dr_group_view *view = malloc(sizeof *view);
    if (!view)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc = dr_group_get_view(dr_rpc_node_group(service->node), view);
    if (rc != DR_OK) {
        free(view);
        return dr_err_set(err, DR_EAGAIN, "the group has no view yet");
    }
    *out = view;
    return DR_OK;
}

static const dr_subgroup_layout *categorizer_layout(const sd_service *service,
                                                    const dr_group_view *view, dr_err *err) {
    uint32_t id = service->config.categorizer_subgroup;
    if (id >= view->layout.num_subgroups || view->layout.subgroups[id].num_shards == 0) {
        dr_err_set(err, DR_EAGAIN, "the categorizer tier has no shards in view %d",
                   (int)view->view.vid);
        return NULL;
    }
    return &view->layout.subgroups[id];
}

static bool member_failed(const dr_group_view *view, uint32_t node_id) {
    for (uint32_t i = 0; i < view->view.num_members; i++) {
        if (view->view.member_ids[i] == node_id)
            return view->view.failed[i];
    }
    return true; /* not in the view */
}

/* A member worth a call: in the view, not marked failed, and its connection not lost. */
static bool member_usable(sd_service *service, const dr_group_view *view, uint32_t node_id) {
    return !member_failed(view, node_id) && !dr_rpc_node_peer_down(service->node, node_id);
}

/* Next usable member of `shard` after the round-robin cursor, skipping those `tried` already
 * (a bit per rank); NONE if none is left. */
static uint32_t pick_member(sd_service *service, const dr_group_view *view,
                            const dr_shard_layout *shard, uint32_t shard_index, uint64_t tried) {
    if (shard->num_members == 0)
        return DR_NODE_NONE;
    unsigned start = atomic_fetch_add(&service->next_member[shard_index % DR_LAYOUT_MAX_SHARDS], 1);
    for (uint32_t i = 0; i < shard->num_members; i++) {
        uint32_t rank = (start + i) % shard->num_members;
        uint32_t id = shard->member_ids[rank];
        if (!(tried & (1ull << (rank % 64))) && member_usable(service, view, id))
            return id;
    }
    return DR_NODE_NONE;
}

/* The bit of `node_id` in a shard's `tried` mask. */
static uint64_t rank_bit(const dr_shard_layout *shard, uint32_t node_id) {
    for (uint32_t r = 0; r < shard->num_members; r++)
        if (shard->member_ids[r] == node_id)
            return 1ull << (r % 64);
    return 0;
}

/* Errors after which another replica may answer: the chosen one is gone, stopped or slow. */
static bool worth_retry(int status) {
    return status == DR_EREMOVED || status == DR_ETIMEDOUT || status == DR_ECLOSED ||
           status == DR_EIO || status == DR_EAGAIN || status == DR_ENOTFOUND;
}

/* DR_ECLOSED with the reason when this node's group stopped (it must not serve), else 0. */
static int refuse_if_stopped(sd_service *service, dr_err *err) {
    int stopped = dr_group_stopped(dr_rpc_node_group(service->node));
    if (stopped == DR_OK)
        return DR_OK;
    return dr_err_set(err, DR_ECLOSED, "this node is no longer a member of the group (%s)",
                      stopped == DR_EREMOVED ? "the group excluded it" : dr_strerror(stopped));
}

/* The reason a failing handler wrote into its reply as a NUL-terminated string: u32 n + n bytes
 * as the categorizer writes it (dr_buf_put_str), or the bytes as they are in any other form. */
static char *reply_text(const dr_rpc_reply *reply) {
    const uint8_t *bytes = reply->bytes;
    size_t len = reply->len;
    dr_reader reader;
    dr_reader_init(&reader, reply->bytes, reply->len);
    uint32_t reason_len = 0;
    const uint8_t *reason = dr_reader_blob(&reader, UINT32_MAX, &reason_len);
    if (reason && dr_reader_done(&reader)) {
        bytes = reason;
        len = reason_len;
    }
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    if (len)
        memcpy(text, bytes, len);
    text[len] = '\0';
    return text;
}

/* ---- Whatsthis --------------------------------------------------------------------------- */

typedef struct tag_call {
    uint32_t shard;
    uint32_t target;
    uint64_t tried; /* ranks of the shard asked already */
    dr_rpc_pending *pending;
    int start_rc;
    dr_rpc_reply reply;
    int status;
} tag_call;

/* Retries one tag on the other usable members of its shard, one after the other, until one
 * answers or none is left. */
static int retry_tag(sd_service *service, const dr_group_view *view,
                     const dr_subgroup_layout *layout, tag_call *call, const dr_buf *args) {
    const dr_shard_layout *shard = &layout->shards[call->shard];
    while (worth_retry(call->status)) {
        uint32_t other = pick_member(service, view, shard, call->shard, call->tried);
        if (other == DR_NODE_NONE)
            break;
        DR_INFO(DR_LOGM_APP, "inference on node %u failed (%s); retrying on node %u", call->target,
                dr_strerror(call->status), other);
        dr_rpc_reply_clear(&call->reply);
        call->target = other;
        call->tried |= rank_bit(shard, other);
        call->status = dr_rpc_p2p_call(service->node, other, service->config.categorizer_subgroup,
                                       SD_METHOD_INFERENCE, args->data, args->len,
                                       service->config.inference_timeout_ms, &call->reply);
    }
    return call->status;
}

/* Writes tag into the shared inference args (its first field, a little-endian u32). */
static void set_args_tag(dr_buf *args, uint32_t tag) {
    for (int i = 0; i < 4; i++)
        args->data[i] = (uint8_t)(tag >> (8 * i));
}

/* Starts one tag's call on a usable member of its shard (start_rc says how it went). */
static int start_tag(sd_service *service, const dr_group_view *view,
                     const dr_subgroup_layout *layout, uint32_t tag, tag_call *call, dr_buf *args,
                     const uint8_t *photo, size_t photo_size_bytes, uint32_t top_k) {
    call->shard = tag % layout->num_shards;
    const dr_shard_layout *shard = &layout->shards[call->shard];
    call->target = pick_member(service, view, shard, call->shard, 0);
    (void)photo, (void)photo_size_bytes, (void)top_k;
    set_args_tag(args, tag); /* one encoded photo serves every tag: the call copies it */
    if (call->target == DR_NODE_NONE) {
        call->start_rc = DR_EAGAIN;
        return DR_OK;
    }
    call->tried = rank_bit(shard, call->target);
    call->start_rc = dr_rpc_p2p_start(
        service->node, call->target, service->config.categorizer_subgroup, SD_METHOD_INFERENCE,
        args->data, args->len, service->config.inference_timeout_ms, &call->pending);
    return DR_OK;
}

/* Waits for one tag's answer (retrying elsewhere) into *answer, or sets err. */
static int finish_tag(sd_service *service, const dr_group_view *view,
                      const dr_subgroup_layout *layout, uint32_t tag, tag_call *call,
                      const dr_buf *args, sd_tag_answer *answer, dr_err *err) {
    if (call->start_rc == DR_OK)
        call->status =
            dr_rpc_pending_wait(call->pending, service->config.inference_timeout_ms, &call->reply);
    else
        call->status = call->start_rc;
    if (worth_retry(call->status))
        set_args_tag((dr_buf *)args, tag); /* the shared args may carry another tag now */
    retry_tag(service, view, layout, call, args);
    if (call->status != DR_OK) {
        if (call->target == DR_NODE_NONE)
            return dr_err_set(err, DR_EAGAIN,
                              "no live replica of categorizer shard %u can classify for tag %u "
                              "(waiting for a node)",
                              call->shard, tag);
        if (worth_retry(call->status)) /* retry_tag found no member left to ask */
            return dr_err_set(err, DR_EAGAIN,
                              "no live replica of categorizer shard %u can classify for tag %u "
                              "(every one asked failed; the last, node %u: %s)",
                              call->shard, tag, call->target, dr_strerror(call->status));
        char *detail = call->reply.len ? reply_text(&call->reply) : NULL;
        int rc = dr_err_set(err, call->status,
                            "categorizer node %u (shard %u) could not classify for tag %u: %s%s%s",
                            call->target, call->shard, tag, dr_strerror(call->status),
                            detail ? ": " : "", detail ? detail : "");
        free(detail);
        return rc;
    }
    answer->tag = tag;
    int rc = sd_inference_reply_decode(call->reply.bytes, call->reply.len, answer);
    if (rc != DR_OK)
        return dr_err_set(err, DR_EPROTO, "malformed inference reply from categorizer node %u",
                          call->target);
    return DR_OK;
}

/* Frees the descriptions of answers[0..n). */
static void free_answers(sd_tag_answer *answers, size_t n) {
    for (size_t i = 0; answers && i < n; i++)
        sd_tag_answer_clear(&answers[i]);
}

static int service_classify(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                            size_t photo_size_bytes, uint32_t top_k, sd_tag_answer *answers,
                            dr_err *err) {
    sd_service *service = user;
    if (service->config.max_photo_bytes && photo_size_bytes > service->config.max_photo_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "photo of %zu bytes exceeds the limit of %" PRIu64
                          " bytes (max_p2p_request_payload_size)",
                          photo_size_bytes, service->config.max_photo_bytes);
    int rc = refuse_if_stopped(service, err);
    if (rc != DR_OK)
        return rc;
    dr_group_view *view = NULL;
    rc = current_view(service, &view, err);
    if (rc != DR_OK)
        return rc;
    const dr_subgroup_layout *layout = categorizer_layout(service, view, err);
    tag_call *calls = calloc(n_tags ? n_tags : 1, sizeof *calls);
    dr_buf args = {0}; /* one copy of the photo for all tags (tags are distinct: the front ends
                          merge repeated ones) */
    memset(answers, 0, n_tags * sizeof *answers);
    if (!layout) {
        rc = err ? err->code : DR_EAGAIN;
        goto cleanup;
    }
    if (!calls) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto cleanup;
    }
    rc = sd_inference_args_encode(&args, n_tags ? tags[0] : 0, photo, photo_size_bytes, top_k);
    if (rc != DR_OK) {
        rc = dr_err_set(err, rc, "cannot encode the photo");
        goto cleanup;
    }
    /* start every tag's call, then wait for all: shards classify in parallel */
    for (size_t i = 0; i < n_tags; i++)
        start_tag(service, view, layout, tags[i], &calls[i], &args, photo, photo_size_bytes, top_k);
    for (size_t i = 0; i < n_tags && rc == DR_OK; i++)
        rc = finish_tag(service, view, layout, tags[i], &calls[i], &args, &answers[i], err);
cleanup:
    if (rc != DR_OK)
        free_answers(answers, n_tags);
    for (size_t i = 0; calls && i < n_tags; i++) {
        dr_rpc_pending_free(calls[i].pending);
        dr_rpc_reply_clear(&calls[i].reply);
    }
    free(calls);
    dr_buf_free(&args);
    free(view);
    return rc;
}

/* The seed's answer: every tag's description joined with " or ". */
static int service_whatsthis(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                             size_t photo_size_bytes, char **desc_out, dr_err *err) {
    sd_tag_answer *answers = calloc(n_tags ? n_tags : 1, sizeof *answers);
    if (!answers)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc = service_classify(user, tags, n_tags, photo, photo_size_bytes, 0, answers, err);
    dr_buf joined = {0};
    for (size_t i = 0; rc == DR_OK && i < n_tags; i++) {
        if (i > 0)
            dr_buf_put_bytes(&joined, " or ", 4);
        dr_buf_put_bytes(&joined, answers[i].desc, strlen(answers[i].desc));
    }
    dr_buf_put_u8(&joined, 0);
    if (rc == DR_OK && joined.failed)
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
    if (rc == DR_OK) {
        size_t len = 0;
        *desc_out = (char *)dr_buf_steal(&joined, &len);
    }
    dr_buf_free(&joined);
    if (rc == DR_OK)
        free_answers(answers, n_tags);
    free(answers);
    return rc;
}

/* ---- install / remove -------------------------------------------------------------------- */

/* Calls `method` on a usable member of tag's shard; on a member that is gone, on the next. */
static int call_shard_member(sd_service *service, uint32_t tag, const char *method,
                             const dr_buf *args, int32_t *code_out, char **desc_out, dr_err *err) {
    int rc = refuse_if_stopped(service, err);
    if (rc != DR_OK)
        return rc;
    dr_group_view *view = NULL;
    rc = current_view(service, &view, err);
    if (rc != DR_OK)
        return rc;
    dr_rpc_reply reply = {0};
    const dr_subgroup_layout *layout = categorizer_layout(service, view, err);
    if (!layout) {
        rc = err ? err->code : DR_EAGAIN;
        goto cleanup;
    }
    uint32_t shard = tag % layout->num_shards;
    const dr_shard_layout *members = &layout->shards[shard];
    uint64_t tried = 0;
    uint32_t target = DR_NODE_NONE;
    for (uint32_t next;
         (next = pick_member(service, view, members, shard, tried)) != DR_NODE_NONE;) {
        target = next;
        tried |= rank_bit(members, target);
        dr_rpc_reply_clear(&reply);
        rc = dr_rpc_p2p_call(service->node, target, service->config.categorizer_subgroup, method,
                             args->data, args->len, service->config.install_timeout_ms, &reply);
        if (!(rc == DR_EREMOVED || rc == DR_ECLOSED || rc == DR_EIO || rc == DR_ENOTFOUND))
            break;
    }
    if (target == DR_NODE_NONE) {
        rc = dr_err_set(err, DR_EAGAIN,
                        "shard %u of the categorizer tier has no live member (waiting for a node)",
                        shard);
    } else if (rc != DR_OK) {
        char *detail = reply.len ? reply_text(&reply) : NULL;
        rc = dr_err_set(err, rc, "%s on categorizer node %u failed: %s%s%s", method, target,
                        dr_strerror(rc), detail ? ": " : "", detail ? detail : "");
        free(detail);
    } else if (sd_model_reply_decode(reply.bytes, reply.len, code_out, desc_out) != DR_OK) {
        rc = dr_err_set(err, DR_EPROTO, "malformed reply from categorizer node %u", target);
    }
cleanup:
    dr_rpc_reply_clear(&reply);
    free(view);
    return rc;
}

static int member_models(sd_service *service, uint32_t node_id, sd_model_info **infos,
                         size_t *count);

/*
 * True when tag's shard already holds max_models_per_shard models and tag is not one of them
 * (asked of one live member; sets *held). Best effort: installs racing each other may pass it
 * together, and a shard that does not answer is not refused here.
 */
static bool shard_full(sd_service *service, uint32_t tag, size_t *held) {
    *held = 0;
    if (!service->config.max_models_per_shard)
        return false;
    dr_group_view *view = NULL;
    if (current_view(service, &view, NULL) != DR_OK)
        return false;
    bool full = false;
    const dr_subgroup_layout *layout = categorizer_layout(service, view, NULL);
    if (layout && layout->num_shards > 0) {
        uint32_t shard = tag % layout->num_shards;
        uint32_t member = pick_member(service, view, &layout->shards[shard], shard, 0);
        sd_model_info *infos = NULL;
        size_t count = 0;
        if (member != DR_NODE_NONE && member_models(service, member, &infos, &count) == DR_OK) {
            bool has_tag = false;
            for (size_t i = 0; i < count; i++)
                has_tag |= infos[i].tag == tag;
            *held = count;
            full = !has_tag && count >= service->config.max_models_per_shard;
        }
        free(infos);
    }
    free(view);
    return full;
}

static int service_install(void *user, uint32_t tag, const uint8_t *synset, size_t synset_bytes,
                           const uint8_t *symbol, size_t symbol_bytes, const uint8_t *params,
                           size_t params_bytes, uint8_t precision, int32_t *error_code_out,
                           char **error_desc_out, dr_err *err) {
    sd_service *service = user;
    uint64_t total = (uint64_t)synset_bytes + symbol_bytes + params_bytes;
    if (service->config.max_model_bytes && total > service->config.max_model_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "model of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes",
                          total, service->config.max_model_bytes);
    size_t held = 0;
    if (shard_full(service, tag, &held)) {
        char desc[160];
        snprintf(desc, sizeof desc,
                 "install_model failed: the shard of tag (%u) holds %zu models, the limit "
                 "([SOSPDEMO] max_models_per_shard)",
                 tag, held);
        *error_code_out = DR_ETOOBIG;
        *error_desc_out = strdup(desc);
        return DR_OK;
    }
    dr_buf args = {0};
    int rc = dr_buf_reserve(&args, SD_MODEL_ARGS_HEADER_BYTES + total + 1);
    if (rc == DR_OK)
        rc = sd_model_args_encode(&args, tag, synset, synset_bytes, symbol, symbol_bytes, params,
                                  params_bytes);
    if (rc == DR_OK && precision != 0) /* fp32 is the default: no byte (as before) */
        rc = sd_model_args_add_precision(&args, precision);
    if (rc != DR_OK) {
        dr_buf_free(&args);
        return dr_err_set(err, DR_ENOMEM, "out of memory for a model of %" PRIu64 " bytes", total);
    }
    rc = call_shard_member(service, tag, SD_METHOD_INSTALL, &args, error_code_out, error_desc_out,
                           err);
    dr_buf_free(&args);
    return rc;
}

static int service_remove(void *user, uint32_t tag, int32_t *error_code_out, char **error_desc_out,
                          dr_err *err) {
    dr_buf args = {0};
    dr_buf_put_u32(&args, tag);
    if (args.failed)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc =
        call_shard_member(user, tag, SD_METHOD_REMOVE, &args, error_code_out, error_desc_out, err);
    dr_buf_free(&args);
    return rc;
}

sd_backend sd_service_backend(sd_service *service) {
    sd_backend backend = {
        .user = service,
        .whatsthis = service_whatsthis,
        .classify = service_classify,
        .install_model = service_install,
        .remove_model = service_remove,
    };
    return backend;
}

/* ---- health ------------------------------------------------------------------------------ */

/* Appends one problem per shard of `subgroup` with fewer usable members than its minimum. */
static size_t shard_problems(sd_service *service, const dr_group_view *view, uint32_t subgroup,
                             const char *type_name, cJSON *problems) {
    if (subgroup >= view->layout.num_subgroups)
        return 0;
    const dr_subgroup_layout *layout = &view->layout.subgroups[subgroup];
    size_t found = 0;
    for (uint32_t s = 0; s < layout->num_shards; s++) {
        const dr_shard_layout *shard = &layout->shards[s];
        uint32_t usable = 0;
        for (uint32_t m = 0; m < shard->num_members; m++)
            usable += member_usable(service, view, shard->member_ids[m]) ? 1u : 0u;
        if (usable >= shard->min_nodes)
            continue;
        char text[160];
        snprintf(text, sizeof text, "%s shard %u needs %u, has %u: waiting for a node", type_name,
                 s, shard->min_nodes, usable);
        cJSON_AddItemToArray(problems, cJSON_CreateString(text));
        found++;
    }
    return found;
}

/* Every shard that cannot go on (an array of strings; empty when healthy). */
static cJSON *health_problems(sd_service *service, const dr_group_view *view) {
    cJSON *problems = cJSON_CreateArray();
    int stopped = dr_group_stopped(dr_rpc_node_group(service->node));
    if (stopped != DR_OK) {
        char text[160];
        snprintf(text, sizeof text, "node %u is no longer a member of the group (%s)", view->my_id,
                 stopped == DR_EREMOVED ? "the group excluded it" : dr_strerror(stopped));
        cJSON_AddItemToArray(problems, cJSON_CreateString(text));
    }
    shard_problems(service, view, service->config.function_subgroup, "FUNCTION_TIER", problems);
    shard_problems(service, view, service->config.categorizer_subgroup, "CATEGORIZER_TIER",
                   problems);
    return problems;
}

void sd_service_log_health(sd_service *service) {
    dr_group_view *view = NULL;
    if (current_view(service, &view, NULL) != DR_OK)
        return;
    cJSON *problems = health_problems(service, view);
    char *text = problems ? cJSON_PrintUnformatted(problems) : NULL;
    cJSON_Delete(problems);
    free(view);
    if (!text)
        return;
    if (strcmp(text, service->last_health) != 0) {
        if (strcmp(text, "[]") == 0)
            DR_INFO(DR_LOGM_APP, "every shard has enough live members again");
        else
            DR_WARN(DR_LOGM_APP, "cluster health: %s", text);
        snprintf(service->last_health, sizeof service->last_health, "%s", text);
    }
    free(text);
}

/* ---- HTTP hooks -------------------------------------------------------------------------- */

/* One member's model list (NULL + 0 when it did not answer). */
static int member_models(sd_service *service, uint32_t node_id, sd_model_info **infos,
                         size_t *count) {
    dr_rpc_reply reply = {0};
    *infos = NULL;
    *count = 0;
    int rc = dr_rpc_p2p_call(service->node, node_id, service->config.categorizer_subgroup,
                             SD_METHOD_LIST_MODELS, NULL, 0, LIST_TIMEOUT_MS, &reply);
    if (rc == DR_OK)
        rc = sd_model_list_decode(reply.bytes, reply.len, infos, count);
    dr_rpc_reply_clear(&reply);
    return rc;
}

static char *json_take(cJSON *root) {
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

static void address_ip(const char *address, char *ip, size_t cap) {
    snprintf(ip, cap, "%s", address);
    char *colon = strrchr(ip, ':');
    if (colon)
        *colon = '\0';
}

/* An ISO-8601 UTC text of a time in µs since the epoch ("2026-12-07T21:00:00.000001Z"). */
static void iso_time(uint64_t us, char *out, size_t cap) {
    time_t seconds = (time_t)(us / 1000000u);
    struct tm utc;
    gmtime_r(&seconds, &utc);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + n, cap - n, ".%06uZ", (unsigned)(us % 1000000u));
}

/* Whether a tag's entry says `version` (replicas installed it by one ordered call). */
static bool same_version(const cJSON *item, int64_t version) {
    const cJSON *known = cJSON_GetObjectItem(item, "version");
    return known ? version >= 0 && (int64_t)known->valuedouble == version : version < 0;
}

/* Adds one tag's entry for a replica to the models array (merging replicas of one tag). */
static void add_model_replica(cJSON *models, uint32_t shard, uint32_t node_id,
                              const sd_model_info *info) {
    cJSON *item = NULL;
    cJSON_ArrayForEach(item, models) {
        if ((uint32_t)cJSON_GetObjectItem(item, "tag")->valuedouble == info->tag)
            break;
    }
    char digest[24];
    snprintf(digest, sizeof digest, "%016" PRIx64, info->digest);
    if (!item) {
        item = cJSON_CreateObject();
        cJSON_AddNumberToObject(item, "tag", info->tag);
        cJSON_AddNumberToObject(item, "shard", shard);
        cJSON_AddStringToObject(item, "format", sd_model_format_name(info->format));
        cJSON_AddStringToObject(item, "precision", sd_precision_name(info->precision));
        cJSON_AddNumberToObject(item, "bytes", (double)info->bytes);
        cJSON_AddStringToObject(item, "digest", digest);
        if (info->version >= 0) { /* unknown for models restored from an older snapshot */
            cJSON_AddNumberToObject(item, "version", (double)info->version);
            cJSON_AddNumberToObject(item, "view", (double)(info->version >> 32));
            char when[40];
            iso_time(info->installed_us, when, sizeof when);
            cJSON_AddStringToObject(item, "installed", when);
        }
        cJSON_AddItemToObject(item, "replicas", cJSON_CreateArray());
        cJSON_AddBoolToObject(item, "consistent", true);
        cJSON_AddItemToArray(models, item);
    } else if (strcmp(cJSON_GetObjectItem(item, "digest")->valuestring, digest) != 0 ||
               !same_version(item, info->version)) {
        cJSON_ReplaceItemInObject(item, "consistent", cJSON_CreateBool(false));
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(item, "replicas"), cJSON_CreateNumber(node_id));
}

static int hook_list_models(void *user, char **json_out, dr_err *err) {
    sd_service *service = user;
    dr_group_view *view = NULL;
    int rc = refuse_if_stopped(service, err);
    if (rc == DR_OK)
        rc = current_view(service, &view, err);
    if (rc != DR_OK)
        return rc;
    const dr_subgroup_layout *layout = categorizer_layout(service, view, err);
    if (!layout) {
        free(view);
        return err ? err->code : DR_EAGAIN;
    }
    cJSON *models = cJSON_CreateArray();
    for (uint32_t s = 0; s < layout->num_shards; s++) {
        const dr_shard_layout *shard = &layout->shards[s];
        uint32_t answered = 0;
        for (uint32_t m = 0; m < shard->num_members; m++) {
            sd_model_info *infos = NULL;
            size_t count = 0;
            if (member_models(service, shard->member_ids[m], &infos, &count) != DR_OK)
                continue;
            answered++;
            for (size_t i = 0; i < count; i++)
                add_model_replica(models, s, shard->member_ids[m], &infos[i]);
            free(infos);
        }
        /* a tag some replica of the shard lacks is inconsistent */
        cJSON *item = NULL;
        cJSON_ArrayForEach(item, models) {
            if ((uint32_t)cJSON_GetObjectItem(item, "shard")->valuedouble == s &&
                (uint32_t)cJSON_GetArraySize(cJSON_GetObjectItem(item, "replicas")) != answered)
                cJSON_ReplaceItemInObject(item, "consistent", cJSON_CreateBool(false));
        }
    }
    free(view);
    *json_out = json_take(models);
    return *json_out ? DR_OK : dr_err_set(err, DR_ENOMEM, "out of memory");
}

/* Errors after which another replica of the shard may answer a model_as_of: the chosen one is
 * gone, or its history is shorter (it joined the shard later, or was checkpointed). */
static bool as_of_worth_retry(int status) {
    return status == DR_EREMOVED || status == DR_ECLOSED || status == DR_EIO ||
           status == DR_ENOTFOUND || status == DR_ERANGE || status == DR_ETIMEDOUT;
}

/* The JSON of a model_as_of answer that holds a model. */
static cJSON *model_as_of_json(const sd_model_as_of *as_of, bool by_time, int64_t key,
                               uint32_t replica) {
    const sd_model_info *info = &as_of->model;
    cJSON *item = cJSON_CreateObject();
    char text[40];
    cJSON_AddNumberToObject(item, "tag", info->tag);
    cJSON *asked = cJSON_AddObjectToObject(item, "as_of");
    cJSON_AddNumberToObject(asked, by_time ? "time_us" : "version", (double)key);
    cJSON_AddNumberToObject(asked, "resolved_version", (double)as_of->resolved);
    cJSON_AddStringToObject(item, "format", sd_model_format_name(info->format));
    cJSON_AddStringToObject(item, "precision", sd_precision_name(info->precision));
    cJSON_AddNumberToObject(item, "bytes", (double)info->bytes);
    snprintf(text, sizeof text, "%016" PRIx64, info->digest);
    cJSON_AddStringToObject(item, "digest", text);
    if (info->version >= 0) { /* unknown for a model of an old replay base */
        cJSON_AddNumberToObject(item, "version", (double)info->version);
        cJSON_AddNumberToObject(item, "view", (double)(info->version >> 32));
        cJSON_AddNumberToObject(item, "installed_us", (double)info->installed_us);
        iso_time(info->installed_us, text, sizeof text);
        cJSON_AddStringToObject(item, "installed", text);
    }
    cJSON_AddNumberToObject(item, "replica", replica);
    return item;
}

/*
 * GET /v1/models/{tag}?version=V | ?time=T: asks a usable replica of the tag's shard for its
 * model_as_of (over the same p2p path as install/remove), the next one when a replica is gone
 * or its history does not reach that far back.
 */
static int hook_model_as_of(void *user, uint32_t tag, bool by_time, int64_t key, char **json_out,
                            dr_err *err) {
    sd_service *service = user;
    dr_buf args = {0};
    int rc =
        sd_model_as_of_args_encode(&args, tag, by_time ? SD_AS_OF_TIME : SD_AS_OF_VERSION, key);
    if (rc != DR_OK) {
        dr_buf_free(&args);
        return dr_err_set(err, rc,
                          rc == DR_EINVAL ? "a negative version or time" : "out of memory");
    }
    dr_group_view *view = NULL;
    rc = refuse_if_stopped(service, err);
    if (rc == DR_OK)
        rc = current_view(service, &view, err);
    if (rc != DR_OK) {
        dr_buf_free(&args);
        return rc;
    }
    const dr_subgroup_layout *layout = categorizer_layout(service, view, err);
    dr_rpc_reply reply = {0};
    uint32_t target = DR_NODE_NONE, shard = 0;
    if (!layout) {
        rc = err ? err->code : DR_EAGAIN;
        goto cleanup;
    }
    shard = tag % layout->num_shards;
    const dr_shard_layout *members = &layout->shards[shard];
    uint64_t tried = 0;
    for (uint32_t next;
         (next = pick_member(service, view, members, shard, tried)) != DR_NODE_NONE;) {
        target = next;
        tried |= rank_bit(members, target);
        dr_rpc_reply_clear(&reply);
        rc = dr_rpc_p2p_call(service->node, target, service->config.categorizer_subgroup,
                             SD_METHOD_MODEL_AS_OF, args.data, args.len,
                             service->config.inference_timeout_ms, &reply);
        if (!as_of_worth_retry(rc))
            break;
    }
    sd_model_as_of as_of;
    const char *what = by_time ? "time" : "version";
    if (target == DR_NODE_NONE) {
        rc = dr_err_set(err, DR_EAGAIN,
                        "shard %u of the categorizer tier has no live member (waiting for a node)",
                        shard);
    } else if (rc == DR_ENOTFOUND) { /* the call's status, not the answer "no model then" */
        rc = dr_err_set(err, DR_EUNSUPPORTED,
                        "categorizer node %u does not serve %s (an older build?)", target,
                        SD_METHOD_MODEL_AS_OF);
    } else if (rc != DR_OK) {
        char *detail = reply.len ? reply_text(&reply) : NULL;
        rc = dr_err_set(err, rc, "model of tag %u as of %s %" PRId64 " (categorizer node %u): %s",
                        tag, what, key, target, detail ? detail : dr_strerror(rc));
        free(detail);
    } else if (sd_model_as_of_reply_decode(reply.bytes, reply.len, &as_of) != DR_OK) {
        rc = dr_err_set(err, DR_EPROTO, "malformed model_as_of reply from categorizer node %u",
                        target);
    } else if (!as_of.installed && as_of.removed_version >= 0) {
        char when[40];
        iso_time(as_of.removed_us, when, sizeof when);
        rc = dr_err_set(err, DR_ENOTFOUND,
                        "no model under tag %u as of %s %" PRId64 ": removed at version %" PRId64
                        " (%s)",
                        tag, what, key, as_of.removed_version, when);
    } else if (!as_of.installed) {
        rc = dr_err_set(err, DR_ENOTFOUND,
                        "no model under tag %u as of %s %" PRId64 ": none installed by then", tag,
                        what, key);
    } else {
        *json_out = json_take(model_as_of_json(&as_of, by_time, key, target));
        rc = *json_out ? DR_OK : dr_err_set(err, DR_ENOMEM, "out of memory");
    }
cleanup:
    dr_rpc_reply_clear(&reply);
    dr_buf_free(&args);
    free(view);
    return rc;
}

static cJSON *tier_json(sd_service *service, const dr_group_view *view, uint32_t subgroup,
                        bool function_tier) {
    cJSON *shards = cJSON_CreateArray();
    if (subgroup >= view->layout.num_subgroups)
        return shards;
    const dr_subgroup_layout *layout = &view->layout.subgroups[subgroup];
    for (uint32_t s = 0; s < layout->num_shards; s++) {
        cJSON *shard = cJSON_CreateObject();
        cJSON_AddNumberToObject(shard, "shard", s);
        cJSON *members = cJSON_AddArrayToObject(shard, "members");
        for (uint32_t m = 0; m < layout->shards[s].num_members; m++) {
            uint32_t id = layout->shards[s].member_ids[m];
            cJSON *member = cJSON_CreateObject();
            cJSON_AddNumberToObject(member, "id", id);
            cJSON_AddBoolToObject(member, "failed", member_failed(view, id));
            cJSON_AddBoolToObject(member, "suspected", !member_usable(service, view, id));
            if (function_tier) {
                char ip[DR_ADDRESS_MAX] = "";
                for (uint32_t i = 0; i < view->view.num_members; i++) {
                    if (view->view.member_ids[i] == id)
                        address_ip(view->view.addresses[i], ip, sizeof ip);
                }
                char text[DR_ADDRESS_MAX + 16];
                snprintf(text, sizeof text, "%s:%u", ip,
                         (unsigned)(service->config.function_tier_base_port + id));
                cJSON_AddStringToObject(member, "grpc", text);
                if (service->config.http_base_port) {
                    snprintf(text, sizeof text, "http://%s:%u/", ip,
                             (unsigned)(service->config.http_base_port + id));
                    cJSON_AddStringToObject(member, "http", text);
                }
            }
            cJSON_AddItemToArray(members, member);
        }
        if (!function_tier) {
            char rule[64];
            snprintf(rule, sizeof rule, "tag %% %u == %u", layout->num_shards, s);
            cJSON_AddStringToObject(shard, "serves", rule);
        }
        cJSON_AddItemToArray(shards, shard);
    }
    return shards;
}

static int hook_cluster(void *user, char **json_out, dr_err *err) {
    sd_service *service = user;
    dr_group_view *view = NULL;
    int rc = current_view(service, &view, err);
    if (rc != DR_OK)
        return rc;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "view_id", view->view.vid);
    cJSON_AddNumberToObject(root, "my_id", view->my_id);
    cJSON *members = cJSON_AddArrayToObject(root, "members");
    for (uint32_t i = 0; i < view->view.num_members; i++) {
        cJSON *member = cJSON_CreateObject();
        cJSON_AddNumberToObject(member, "id", view->view.member_ids[i]);
        cJSON_AddStringToObject(member, "address", view->view.addresses[i]);
        cJSON_AddBoolToObject(member, "failed", view->view.failed[i]);
        cJSON_AddBoolToObject(member, "suspected",
                              !member_usable(service, view, view->view.member_ids[i]));
        cJSON_AddItemToArray(members, member);
    }
    cJSON_AddItemToObject(root, "problems", health_problems(service, view));
    cJSON_AddItemToObject(root, "function_tier",
                          tier_json(service, view, service->config.function_subgroup, true));
    cJSON *categorizer = tier_json(service, view, service->config.categorizer_subgroup, false);
    /* which tags each categorizer shard holds (asked of one live member) */
    cJSON *shard = NULL;
    cJSON_ArrayForEach(shard, categorizer) {
        cJSON *tags = cJSON_AddArrayToObject(shard, "tags");
        cJSON *member = NULL;
        cJSON_ArrayForEach(member, cJSON_GetObjectItem(shard, "members")) {
            if (cJSON_IsTrue(cJSON_GetObjectItem(member, "suspected")))
                continue;
            sd_model_info *infos = NULL;
            size_t count = 0;
            uint32_t id = (uint32_t)cJSON_GetObjectItem(member, "id")->valuedouble;
            if (member_models(service, id, &infos, &count) != DR_OK)
                continue;
            for (size_t i = 0; i < count; i++)
                cJSON_AddItemToArray(tags, cJSON_CreateNumber(infos[i].tag));
            free(infos);
            break;
        }
    }
    cJSON_AddItemToObject(root, "categorizer_tier", categorizer);
    free(view);
    *json_out = json_take(root);
    return *json_out ? DR_OK : dr_err_set(err, DR_ENOMEM, "out of memory");
}

static int hook_metrics(void *user, char **text_out) {
    sd_service *service = user;
    dr_group_view *view = NULL;
    if (current_view(service, &view, NULL) != DR_OK)
        return asprintf(text_out, "sospdemo_view_id -1\n") < 0 ? DR_ENOMEM : DR_OK;
    size_t installed = 0;
    uint32_t shards = 0;
    uint32_t id = service->config.categorizer_subgroup;
    if (id < view->layout.num_subgroups) {
        const dr_subgroup_layout *layout = &view->layout.subgroups[id];
        shards = layout->num_shards;
        for (uint32_t s = 0; s < layout->num_shards; s++) {
            const dr_shard_layout *shard = &layout->shards[s];
            for (uint32_t m = 0; m < shard->num_members; m++) {
                sd_model_info *infos = NULL;
                size_t count = 0;
                if (!member_usable(service, view, shard->member_ids[m]) ||
                    member_models(service, shard->member_ids[m], &infos, &count) != DR_OK)
                    continue;
                installed += count;
                free(infos);
                break;
            }
        }
    }
    int rc = asprintf(text_out,
                      "# HELP sospdemo_view_id Current view id of the group.\n"
                      "# TYPE sospdemo_view_id gauge\n"
                      "sospdemo_view_id %d\n"
                      "# HELP sospdemo_members Members of the current view.\n"
                      "# TYPE sospdemo_members gauge\n"
                      "sospdemo_members %u\n"
                      "# HELP sospdemo_categorizer_shards Shards of the categorizer tier.\n"
                      "# TYPE sospdemo_categorizer_shards gauge\n"
                      "sospdemo_categorizer_shards %u\n"
                      "# HELP sospdemo_models_installed Models installed over all shards.\n"
                      "# TYPE sospdemo_models_installed gauge\n"
                      "sospdemo_models_installed %zu\n",
                      (int)view->view.vid, view->view.num_members, shards, installed);
    free(view);
    return rc < 0 ? DR_ENOMEM : DR_OK;
}

sd_http_hooks sd_service_http_hooks(sd_service *service) {
    sd_http_hooks hooks = {
        .user = service,
        .list_models = hook_list_models,
        .model_as_of = hook_model_as_of,
        .cluster = hook_cluster,
        .metrics = hook_metrics,
    };
    return hooks;
}
