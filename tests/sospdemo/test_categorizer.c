/*
 * The categorizer tier's object in process, without a group: three replicas whose ordered
 * calls are delivered by a fake of the rpc layer's ordered-call functions (defined below,
 * in place of dr_rpc), handlers called directly. Uses the bundled demo model
 * (models/demo-shapes) and a tiny model whose engine cannot be built.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "categorizer.h"
#include "derecho/infer.h"
#include "derecho/rpc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPLICAS 3

static sd_categorizer *g_replicas[REPLICAS];
static dr_rpc_type g_types[REPLICAS];

/* ---- fake group: running, or stopped (excluded) when g_stopped says so -------------------- */

static int g_stopped; /* what dr_group_stopped answers */

dr_group *dr_rpc_node_group(dr_rpc_node *node) {
    return (dr_group *)node;
}

int dr_group_stopped(dr_group *group) {
    (void)group;
    return g_stopped;
}

/* ---- fake ordered calls: deliver to every replica at once -------------------------------- */

struct dr_rpc_results {
    dr_rpc_reply replies[REPLICAS];
};

static const dr_rpc_method *find_method(const dr_rpc_type *type, const char *name) {
    for (size_t i = 0; i < type->num_methods; i++) {
        if (strcmp(type->methods[i].name, name) == 0)
            return &type->methods[i];
    }
    return NULL;
}

/* The fake's delivery order: each ordered call gets the next version of view 1 and a stamp. */
static int64_t g_next_seq;
#define FAKE_VIEW       1
#define FAKE_STAMP_BASE 1765000000000000ull /* µs since the epoch */

/* ---- fake durable log: every fake ordered call, as the shard's log would hold it ---------- */

typedef struct fake_record {
    int64_t version;
    uint64_t stamp_us;
    uint8_t *bytes; /* u32 method id, then the args (the fake's own framing, see below) */
    size_t len;
} fake_record;

static fake_record g_log[64];
static size_t g_log_count;
static bool g_log_durable;  /* false: reads answer DR_ESTATE, as a volatile subgroup's */
static int64_t g_log_floor; /* records below it are trimmed (a joiner's or checkpointed log) */
static uint8_t *g_base;     /* the replay base (the state below g_log_floor) */
static size_t g_base_len;
static bool g_base_present; /* false: no base (the log holds the whole history) */

uint32_t dr_rpc_method_id(const char *name) { /* the real one's FNV-1a */
    uint32_t hash = 2166136261u;
    for (const char *c = name; *c; c++)
        hash = (hash ^ (uint8_t)*c) * 16777619u;
    return hash;
}

static void log_append(int64_t version, uint64_t stamp_us, const char *method, const void *args,
                       size_t len) {
    assert_true(g_log_count < sizeof g_log / sizeof *g_log);
    fake_record *record = &g_log[g_log_count++];
    record->version = version;
    record->stamp_us = stamp_us;
    record->len = 4 + len;
    record->bytes = malloc(record->len);
    dr_store_u32le(record->bytes, dr_rpc_method_id(method));
    if (len)
        memcpy(record->bytes + 4, args, len);
}

static void log_reset(void) {
    for (size_t i = 0; i < g_log_count; i++)
        free(g_log[i].bytes);
    g_log_count = 0;
    g_log_floor = 0;
    free(g_base);
    g_base = NULL;
    g_base_len = 0;
    g_base_present = false;
}

int dr_rpc_decode_logged_call(const uint8_t *bytes, size_t len, dr_rpc_logged_call *out) {
    if (len < 4)
        return DR_EPROTO;
    *out = (dr_rpc_logged_call){
        .method_id = dr_load_u32le(bytes), .args = bytes + 4, .args_len = len - 4};
    return DR_OK;
}

int dr_group_read_versioned(dr_group *group, uint32_t subgroup, dr_read_mode mode, int64_t key,
                            dr_versioned *out) {
    (void)group;
    (void)subgroup;
    memset(out, 0, sizeof *out);
    if (!g_log_durable)
        return DR_ESTATE;
    const fake_record *found = NULL;
    for (size_t i = 0; i < g_log_count; i++) {
        const fake_record *record = &g_log[i];
        if (record->version < g_log_floor)
            continue; /* trimmed */
        if ((mode == DR_READ_AT_OR_BELOW && record->version <= key) ||
            (mode == DR_READ_BY_TIME && key >= 0 && record->stamp_us <= (uint64_t)key) ||
            (mode == DR_READ_EXACT && record->version == key) || mode == DR_READ_LATEST)
            found = record;
    }
    if (!found)
        return DR_ENOTFOUND;
    out->version = found->version;
    out->timestamp_us = found->stamp_us;
    out->len = found->len;
    out->bytes = malloc(found->len);
    memcpy(out->bytes, found->bytes, found->len);
    return DR_OK;
}

void dr_versioned_clear(dr_versioned *out) {
    free(out->bytes);
    memset(out, 0, sizeof *out);
}

int dr_group_read_replay_base(dr_group *group, uint32_t subgroup, int64_t *floor_out,
                              uint8_t **bytes_out, size_t *len_out) {
    (void)group;
    (void)subgroup;
    if (!g_log_durable)
        return DR_ESTATE;
    if (!g_base_present)
        return DR_ENOTFOUND;
    *floor_out = g_log_floor;
    *bytes_out = malloc(g_base_len ? g_base_len : 1);
    memcpy(*bytes_out, g_base, g_base_len);
    *len_out = g_base_len;
    return DR_OK;
}

int dr_rpc_ordered_call(dr_rpc_node *node, uint32_t subgroup, const char *method, const void *args,
                        size_t len, int timeout_ms, dr_rpc_results **out) {
    (void)node;
    (void)timeout_ms;
    int64_t seq = g_next_seq++;
    log_append(((int64_t)FAKE_VIEW << 32) | seq, FAKE_STAMP_BASE + (uint64_t)seq, method, args,
               len);
    dr_rpc_results *results = calloc(1, sizeof *results);
    for (int r = 0; r < REPLICAS; r++) {
        const dr_rpc_method *m = find_method(&g_types[r], method);
        if (!m)
            return DR_ENOTFOUND;
        dr_rpc_call_info info = {.subgroup = subgroup,
                                 .ordered = true,
                                 .version = ((int64_t)FAKE_VIEW << 32) | seq,
                                 .timestamp_us = FAKE_STAMP_BASE + (uint64_t)seq};
        dr_buf reply = {0};
        results->replies[r].node_id = (uint32_t)r;
        results->replies[r].status = m->handler(g_types[r].ctx, &info, args, len, &reply);
        results->replies[r].bytes = dr_buf_steal(&reply, &results->replies[r].len);
    }
    *out = results;
    return DR_OK;
}

size_t dr_rpc_results_count(dr_rpc_results *results, int timeout_ms) {
    (void)results;
    (void)timeout_ms;
    return REPLICAS;
}

int dr_rpc_results_wait(dr_rpc_results *results, size_t index, int timeout_ms, dr_rpc_reply *out) {
    (void)timeout_ms;
    *out = results->replies[index];
    results->replies[index].bytes = NULL;
    return DR_OK;
}

int dr_rpc_results_wait_persisted(dr_rpc_node *node, uint32_t subgroup, dr_rpc_results *results,
                                  bool global, int timeout_ms) {
    (void)node;
    (void)subgroup;
    (void)results;
    (void)global;
    (void)timeout_ms;
    return DR_ESTATE; /* not durable in process */
}

void dr_rpc_results_free(dr_rpc_results *results) {
    for (int r = 0; results && r < REPLICAS; r++)
        free(results->replies[r].bytes);
    free(results);
}

void dr_rpc_reply_clear(dr_rpc_reply *reply) {
    free(reply->bytes);
    reply->bytes = NULL;
    reply->len = 0;
}

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct file_bytes {
    uint8_t *data;
    size_t len;
} file_bytes;

static file_bytes read_file(const char *relative) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", getenv("DR_SOURCE_DIR"), relative);
    file_bytes f = {0};
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    f.len = (size_t)ftell(in);
    fseek(in, 0, SEEK_SET);
    f.data = malloc(f.len ? f.len : 1);
    assert_int_equal(fread(f.data, 1, f.len, in), f.len);
    fclose(in);
    return f;
}

/* Calls method on replica r; returns the handler's status, reply in *reply (caller frees). */
/* Calls replica r's handler of `method`: its result, or DR_ENOTFOUND without such a method.
 * No cmocka assertion: the inference threads use it too. */
static int try_call(int r, const char *method, const dr_buf *args, dr_buf *reply) {
    const dr_rpc_method *m = find_method(&g_types[r], method);
    if (m == NULL)
        return DR_ENOTFOUND;
    bool ordered = m->kind == DR_RPC_ORDERED; /* one replica's delivery of the next call */
    dr_rpc_call_info info = {.subgroup = 1,
                             .ordered = ordered,
                             .version = ordered ? ((int64_t)FAKE_VIEW << 32) | g_next_seq : -1,
                             .timestamp_us = ordered ? FAKE_STAMP_BASE + (uint64_t)g_next_seq : 0};
    dr_buf_init(reply, 1 << 20);
    return m->handler(g_types[r].ctx, &info, args ? args->data : NULL, args ? args->len : 0, reply);
}

static int call(int r, const char *method, const dr_buf *args, dr_buf *reply) {
    assert_non_null(find_method(&g_types[r], method));
    return try_call(r, method, args, reply);
}

static int32_t model_call(int r, const char *method, const dr_buf *args, char **desc) {
    dr_buf reply;
    assert_int_equal(call(r, method, args, &reply), DR_OK);
    int32_t code = 99;
    assert_int_equal(sd_model_reply_decode(reply.data, reply.len, &code, desc), DR_OK);
    dr_buf_free(&reply);
    return code;
}

static int32_t install(int r, uint32_t tag, const file_bytes *synset, const file_bytes *symbol,
                       const file_bytes *params, char **desc) {
    dr_buf args = {0};
    assert_int_equal(sd_model_args_encode(&args, tag, synset->data, synset->len, symbol->data,
                                          symbol->len, params->data, params->len),
                     DR_OK);
    int32_t code = model_call(r, SD_METHOD_INSTALL, &args, desc);
    dr_buf_free(&args);
    return code;
}

static int32_t remove_tag(int r, uint32_t tag, char **desc) {
    dr_buf args = {0};
    dr_buf_put_u32(&args, tag);
    int32_t code = model_call(r, SD_METHOD_REMOVE, &args, desc);
    dr_buf_free(&args);
    return code;
}

/* Replica r's inference answer as a string in *text (caller frees): 0 or the failing step's
 * code. No cmocka assertion: the inference threads use it too. */
static int try_classify(int r, uint32_t tag, const file_bytes *photo, char **text) {
    dr_buf args = {0};
    int rc = sd_inference_args_encode(&args, tag, photo->data, photo->len, 0);
    dr_buf reply = {0};
    if (rc == DR_OK)
        rc = try_call(r, SD_METHOD_INFERENCE, &args, &reply);
    dr_buf_free(&args);
    sd_tag_answer answer = {.tag = tag};
    if (rc == DR_OK)
        rc = sd_inference_reply_decode(reply.data, reply.len, &answer);
    dr_buf_free(&reply);
    *text = rc == DR_OK ? answer.desc : NULL;
    if (rc != DR_OK)
        free(answer.desc);
    return rc;
}

/* The inference answer of replica r (desc malloc'd). */
static sd_tag_answer classify_answer(int r, uint32_t tag, const file_bytes *photo) {
    dr_buf args = {0};
    assert_int_equal(sd_inference_args_encode(&args, tag, photo->data, photo->len, 0), DR_OK);
    dr_buf reply;
    assert_int_equal(call(r, SD_METHOD_INFERENCE, &args, &reply), DR_OK);
    dr_buf_free(&args);
    sd_tag_answer answer = {.tag = tag};
    assert_int_equal(sd_inference_reply_decode(reply.data, reply.len, &answer), DR_OK);
    assert_int_equal(answer.n_top, 0); /* not asked for */
    dr_buf_free(&reply);
    /* the kind agrees with the seed's text */
    assert_int_equal(answer.kind, sd_answer_kind_of(answer.desc));
    return answer;
}

/* The inference answer of replica r as a string (caller frees). */
static char *classify(int r, uint32_t tag, const file_bytes *photo) {
    return classify_answer(r, tag, photo).desc;
}

/* Installs through ordered_install on every replica directly (no validation before it). */
static void install_ordered(uint32_t tag, const file_bytes *synset, const file_bytes *symbol,
                            const file_bytes *params) {
    dr_buf args = {0};
    assert_int_equal(sd_model_args_encode(&args, tag, synset->data, synset->len, symbol->data,
                                          symbol->len, params->data, params->len),
                     DR_OK);
    for (int r = 0; r < REPLICAS; r++) {
        char *desc = NULL;
        assert_int_equal(model_call(r, SD_METHOD_ORDERED_INSTALL, &args, &desc), DR_OK);
        free(desc);
    }
    g_next_seq++; /* every replica delivered this one call */
    dr_buf_free(&args);
}

/** The model list of the categorizer behind `type` (a replica or a restored copy). */
static void list_of_type(const dr_rpc_type *type, sd_model_info **infos, size_t *count) {
    dr_buf reply;
    dr_rpc_call_info info = {.subgroup = 1, .version = -1};
    dr_buf_init(&reply, 1 << 20);
    assert_int_equal(
        find_method(type, SD_METHOD_LIST_MODELS)->handler(type->ctx, &info, NULL, 0, &reply),
        DR_OK);
    assert_int_equal(sd_model_list_decode(reply.data, reply.len, infos, count), DR_OK);
    dr_buf_free(&reply);
}

static void list_of(int r, sd_model_info **infos, size_t *count) {
    list_of_type(&g_types[r], infos, count);
}

static void assert_replicas_agree(size_t expected_models) {
    sd_model_info *first = NULL;
    size_t first_count = 0;
    list_of(0, &first, &first_count);
    assert_int_equal(first_count, expected_models);
    for (int r = 1; r < REPLICAS; r++) {
        sd_model_info *infos = NULL;
        size_t count = 0;
        list_of(r, &infos, &count);
        assert_int_equal(count, first_count);
        assert_memory_equal(infos, first, count * sizeof *infos);
        free(infos);
    }
    free(first);
}

static file_bytes g_synset, g_symbol, g_params;

static int setup(void **state) {
    (void)state;
    g_synset = read_file("models/demo-shapes/synset.txt");
    g_symbol = read_file("models/demo-shapes/shapes-symbol.json");
    g_params = read_file("models/demo-shapes/shapes-0000.params");
    for (int r = 0; r < REPLICAS; r++) {
        sd_categorizer_limits limits = {.max_model_bytes = 1 << 20, .max_photo_bytes = 1 << 20};
        assert_int_equal(sd_categorizer_create(&limits, &g_replicas[r]), DR_OK);
        sd_categorizer_rpc_type(g_replicas[r], &g_types[r]);
        sd_categorizer_set_node(g_replicas[r], (dr_rpc_node *)(uintptr_t)1);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int r = 0; r < REPLICAS; r++)
        sd_categorizer_destroy(g_replicas[r]);
    free(g_synset.data);
    free(g_symbol.data);
    free(g_params.data);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static const char *const photos[][2] = {
    {"red-circle.jpg", "n00000001 red circle"},   {"red-square.png", "n00000002 red square"},
    {"green-star.png", "n00000004 green star"},   {"blue-circle.jpg", "n00000005 blue circle"},
    {"yellow-star.jpg", "n00000007 yellow star"},
};

static void test_install_inference_remove(void **state) {
    (void)state;
    char *desc = NULL;
    assert_int_equal(install(1, 7, &g_synset, &g_symbol, &g_params, &desc), 0);
    assert_string_equal(desc, SD_DESC_INSTALL_OK);
    free(desc);
    assert_replicas_agree(1);

    /* every replica answers with the synset line of the arg-max */
    for (size_t i = 0; i < sizeof photos / sizeof *photos; i++) {
        char path[256];
        snprintf(path, sizeof path, "models/demo-shapes/photos/%s", photos[i][0]);
        file_bytes photo = read_file(path);
        for (int r = 0; r < REPLICAS; r++) {
            sd_tag_answer answer = classify_answer(r, 7, &photo);
            assert_string_equal(answer.desc, photos[i][1]);
            assert_int_equal(answer.kind, SD_ANSWER_OK);
            assert_true(answer.score > 0.0f && answer.score <= 1.0f); /* the label's probability */
            free(answer.desc);
        }
        free(photo.data);
    }
    /* on request, the top k classes, best first, the first being the answer */
    {
        file_bytes photo = read_file("models/demo-shapes/photos/red-circle.jpg");
        dr_buf args = {0}, reply;
        assert_int_equal(sd_inference_args_encode(&args, 7, photo.data, photo.len, 3), DR_OK);
        assert_int_equal(call(0, SD_METHOD_INFERENCE, &args, &reply), DR_OK);
        sd_tag_answer answer = {.tag = 7};
        assert_int_equal(sd_inference_reply_decode(reply.data, reply.len, &answer), DR_OK);
        assert_int_equal(answer.n_top, 3);
        assert_string_equal(answer.top[0].label, answer.desc);
        assert_true(answer.top[0].score == answer.score);
        assert_true(answer.top[0].score >= answer.top[1].score &&
                    answer.top[1].score >= answer.top[2].score);
        sd_tag_answer_clear(&answer);
        dr_buf_free(&reply);
        dr_buf_free(&args);
        free(photo.data);
    }
    /* not an image: a clear answer, no crash */
    file_bytes junk = {(uint8_t *)strdup("not a photo"), 11};
    sd_tag_answer not_image = classify_answer(0, 7, &junk);
    assert_true(strncmp(not_image.desc, "Cannot classify photo:", 22) == 0);
    assert_int_equal(not_image.kind, SD_ANSWER_BAD_PHOTO);
    free(not_image.desc);
    char *answer = classify(0, 8, &junk);
    assert_string_equal(answer, SD_DESC_NO_MODEL);
    free(answer);

    /* duplicate install: the seed's message, nothing changes */
    assert_int_equal(install(0, 7, &g_synset, &g_symbol, &g_params, &desc), DR_EEXIST);
    assert_string_equal(desc, "install_model failed because tag (7) has been taken.");
    free(desc);
    assert_replicas_agree(1);

    assert_int_equal(remove_tag(2, 7, &desc), 0);
    assert_string_equal(desc, SD_DESC_REMOVE_OK);
    free(desc);
    assert_replicas_agree(0);
    answer = classify(0, 7, &junk);
    assert_string_equal(answer, SD_DESC_NO_MODEL);
    free(answer);
    assert_int_equal(remove_tag(0, 7, &desc), DR_ENOTFOUND);
    assert_string_equal(desc, "remove_model failed because tag (7) is not installed.");
    free(desc);
    free(junk.data);
}

static void test_model_that_cannot_load(void **state) {
    (void)state;
    const char *symbol = "{\"nodes\": [], \"arg_nodes\": [], \"heads\": []}";
    file_bytes bad_symbol = {(uint8_t *)strdup(symbol), strlen(symbol)};
    char *desc = NULL;
    /* install loads it first: refused with the loader's reason, nothing installed */
    assert_int_equal(install(0, 3, &g_synset, &bad_symbol, &g_params, &desc), DR_ECORRUPT);
    printf("install of a bad model: %s\n", desc);
    assert_non_null(strstr(desc, "install_model failed because the model of tag (3) cannot be "
                                 "loaded: "));
    free(desc);
    assert_int_equal(sd_categorizer_model_count(g_replicas[1]), 0);
    /* one that got in anyway (an older node's install) fails at inference, each time */
    install_ordered(3, &g_synset, &bad_symbol, &g_params);
    file_bytes photo = read_file("models/demo-shapes/photos/red-circle.jpg");
    size_t loads0 = sd_categorizer_load_attempts(g_replicas[1]);
    for (int attempt = 0; attempt < 3; attempt++) { /* the same answer each time */
        char *answer = classify(1, 3, &photo);
        assert_string_equal(answer, SD_DESC_LOAD_FAIL);
        free(answer);
    }
    /* the failed load is remembered (back-off): loaded once, not once per request */
    assert_int_equal(sd_categorizer_load_attempts(g_replicas[1]) - loads0, 1);
    /* an ONNX-looking model (no symbol, no MXNet magic) that is not ONNX */
    file_bytes not_onnx = {(uint8_t *)strdup("garbage bytes"), 13}, empty = {NULL, 0};
    assert_int_equal(install(0, 4, &g_synset, &empty, &not_onnx, &desc), DR_ECORRUPT);
    free(desc);
    install_ordered(4, &g_synset, &empty, &not_onnx);
    char *answer = classify(2, 4, &photo);
    assert_string_equal(answer, SD_DESC_LOAD_FAIL);
    free(answer);
    sd_model_info *infos = NULL;
    size_t count = 0;
    list_of(0, &infos, &count);
    assert_int_equal(count, 2);
    assert_int_equal(infos[0].format, SD_FORMAT_MXNET);
    assert_int_equal(infos[1].format, SD_FORMAT_ONNX);
    free(infos);
    assert_int_equal(remove_tag(0, 3, &desc), 0);
    free(desc);
    assert_int_equal(remove_tag(0, 4, &desc), 0);
    free(desc);
    free(photo.data);
    free(bad_symbol.data);
    free(not_onnx.data);
}

static void test_malformed_arguments(void **state) {
    (void)state;
    dr_buf args = {0}, reply;
    /* truncated model args: sizes announce more than the data */
    assert_int_equal(sd_model_args_encode(&args, 1, g_synset.data, g_synset.len, g_symbol.data,
                                          g_symbol.len, g_params.data, g_params.len),
                     DR_OK);
    args.len -= 10;
    assert_int_equal(call(0, SD_METHOD_ORDERED_INSTALL, &args, &reply), DR_EINVAL);
    dr_buf_free(&reply);
    assert_int_equal(call(0, SD_METHOD_INSTALL, &args, &reply), DR_EINVAL);
    dr_buf_free(&reply);
    /* sizes over the limit are refused before anything is read */
    dr_buf_reset(&args);
    dr_buf_put_u32(&args, 1);
    dr_buf_put_u32(&args, 0xffffffffu);
    dr_buf_put_u32(&args, 0xffffffffu);
    dr_buf_put_u32(&args, 0xffffffffu);
    assert_int_equal(call(0, SD_METHOD_ORDERED_INSTALL, &args, &reply), DR_ETOOBIG);
    dr_buf_free(&reply);
    /* photo length past the data */
    dr_buf_reset(&args);
    dr_buf_put_u32(&args, 1);
    dr_buf_put_u32(&args, 1000);
    dr_buf_put_bytes(&args, "abc", 3);
    assert_int_equal(call(0, SD_METHOD_INFERENCE, &args, &reply), DR_EINVAL);
    dr_buf_free(&reply);
    /* remove with a short tag */
    dr_buf_reset(&args);
    dr_buf_put_u8(&args, 1);
    assert_int_equal(call(0, SD_METHOD_REMOVE, &args, &reply), DR_EINVAL);
    dr_buf_free(&reply);
    assert_int_equal(call(0, SD_METHOD_ORDERED_REMOVE, &args, &reply), DR_EINVAL);
    dr_buf_free(&reply);
    dr_buf_free(&args);
    assert_replicas_agree(0);
}

/* Installs tag with the given precision byte appended to the model args (through install). */
static int32_t install_precision(uint32_t tag, uint8_t precision, char **desc) {
    dr_buf args = {0};
    assert_int_equal(sd_model_args_encode(&args, tag, g_synset.data, g_synset.len, g_symbol.data,
                                          g_symbol.len, g_params.data, g_params.len),
                     DR_OK);
    assert_int_equal(sd_model_args_add_precision(&args, precision), DR_OK);
    int32_t code = model_call(0, SD_METHOD_INSTALL, &args, desc);
    dr_buf_free(&args);
    return code;
}

/* The precision of the install metadata is stored on every replica, listed, transferred with
 * the state and applied to every replica's engine. */
static void test_install_precision(void **state) {
    (void)state;
    char *desc = NULL;
    int have_bf16 = dr_infer_have_bf16();
    file_bytes photo = read_file("models/demo-shapes/photos/blue-circle.jpg");
    assert_int_equal(install_precision(21, DR_PRECISION_AUTO, &desc), 0);
    free(desc);
    int32_t code = install_precision(22, DR_PRECISION_BF16, &desc);
    if (have_bf16) {
        assert_int_equal(code, 0);
    } else { /* refused at install: the loader has no native bf16 here */
        assert_int_equal(code, DR_ECORRUPT);
        assert_non_null(strstr(desc, "bf16"));
    }
    free(desc);
    sd_model_info *infos = NULL;
    size_t count = 0;
    for (int r = 0; r < REPLICAS; r++) {
        list_of(r, &infos, &count);
        assert_int_equal(count, have_bf16 ? 2 : 1);
        assert_int_equal(infos[0].tag, 21);
        assert_int_equal(infos[0].precision, DR_PRECISION_AUTO);
        if (have_bf16)
            assert_int_equal(infos[1].precision, DR_PRECISION_BF16);
        free(infos);
        /* every replica's engine runs in it (auto: bf16 where native) */
        int in_effect = -1;
        assert_int_equal(sd_categorizer_engine_precision(g_replicas[r], 21, &in_effect),
                         DR_ENOTFOUND); /* not built before the first inference */
        char *answer = classify(r, 21, &photo);
        assert_string_equal(answer, "n00000005 blue circle");
        free(answer);
        assert_int_equal(sd_categorizer_engine_precision(g_replicas[r], 21, &in_effect), DR_OK);
        assert_int_equal(in_effect, have_bf16 ? DR_PRECISION_BF16 : DR_PRECISION_FP32);
    }
    /* the snapshot carries it */
    dr_buf snapshot = {0};
    assert_int_equal(g_types[0].serialize(g_types[0].ctx, 1, &snapshot), DR_OK);
    sd_categorizer *joiner = NULL;
    assert_int_equal(sd_categorizer_create(NULL, &joiner), DR_OK);
    dr_rpc_type type;
    sd_categorizer_rpc_type(joiner, &type);
    assert_int_equal(type.restore(type.ctx, 1, snapshot.data, snapshot.len), DR_OK);
    list_of_type(&type, &infos, &count);
    assert_int_equal(infos[0].precision, DR_PRECISION_AUTO);
    free(infos);
    sd_categorizer_destroy(joiner);
    dr_buf_free(&snapshot);
    /* an unknown precision byte is refused; the encoder refuses it too */
    dr_buf args = {0};
    assert_int_equal(sd_model_args_add_precision(&args, 3), DR_EINVAL);
    assert_int_equal(sd_model_args_encode(&args, 23, g_synset.data, g_synset.len, g_symbol.data,
                                          g_symbol.len, g_params.data, g_params.len),
                     DR_OK);
    dr_buf_put_u8(&args, 3);
    dr_buf reply;
    assert_int_equal(call(0, SD_METHOD_ORDERED_INSTALL, &args, &reply), DR_EINVAL);
    dr_buf_free(&reply);
    dr_buf_free(&args);
    for (uint32_t tag = 21; tag <= (have_bf16 ? 22u : 21u); tag++) {
        assert_int_equal(remove_tag(0, tag, &desc), 0);
        free(desc);
    }
    free(photo.data);
    assert_replicas_agree(0);
}

static void test_state_transfer(void **state) {
    (void)state;
    char *desc = NULL;
    file_bytes empty = {NULL, 0};
    assert_int_equal(install(0, 11, &g_synset, &g_symbol, &g_params, &desc), 0);
    free(desc);
    install_ordered(5, &g_synset, &empty, &g_params); /* a model that does not load travels too */
    dr_buf snapshot = {0};
    assert_int_equal(g_types[0].serialize(g_types[0].ctx, 1, &snapshot), DR_OK);

    sd_categorizer *joiner = NULL;
    assert_int_equal(sd_categorizer_create(NULL, &joiner), DR_OK);
    dr_rpc_type type;
    sd_categorizer_rpc_type(joiner, &type);
    /* every truncation is refused and leaves the state alone */
    for (size_t cut = 0; cut < snapshot.len; cut += 1 + cut / 3)
        assert_int_equal(type.restore(type.ctx, 1, snapshot.data, cut), DR_ECORRUPT);
    assert_int_equal(sd_categorizer_model_count(joiner), 0);
    assert_int_equal(type.restore(type.ctx, 1, snapshot.data, snapshot.len), DR_OK);
    assert_int_equal(sd_categorizer_model_count(joiner), 2);
    /* each install kept its own version and stamp (the snapshot carries them: the comparison
     * of the joiner's list with the other replicas' below is exact) */
    sd_model_info *infos = NULL;
    size_t count = 0;
    list_of(0, &infos, &count);
    assert_int_equal(count, 2);
    assert_true(infos[0].tag == 5 && infos[1].tag == 11);
    assert_true(infos[1].version < infos[0].version); /* 11 was installed first */
    assert_int_equal(infos[0].version >> 32, FAKE_VIEW);
    for (size_t i = 0; i < count; i++)
        assert_true(infos[i].installed_us ==
                    FAKE_STAMP_BASE + (uint64_t)(infos[i].version & 0xffffffff));
    free(infos);
    /* the joiner classifies with the transferred model */
    sd_categorizer *saved = g_replicas[0];
    dr_rpc_type saved_type = g_types[0];
    g_replicas[0] = joiner;
    g_types[0] = type;
    file_bytes photo = read_file("models/demo-shapes/photos/blue-circle.jpg");
    char *answer = classify(0, 11, &photo);
    assert_string_equal(answer, "n00000005 blue circle");
    free(answer);
    assert_replicas_agree(2);
    g_replicas[0] = saved;
    g_types[0] = saved_type;
    sd_categorizer_destroy(joiner);
    free(photo.data);
    dr_buf_free(&snapshot);
    assert_int_equal(remove_tag(0, 11, &desc), 0);
    free(desc);
    assert_int_equal(remove_tag(0, 5, &desc), 0);
    free(desc);
}

/* A replay base saved before models kept their version ("SDCT" snapshot) still restores: the
 * model comes back with the version unknown (-1) and no stamp. */
static void test_restore_snapshot_without_versions(void **state) {
    (void)state;
    dr_buf old = {0};
    dr_buf_put_u32(&old, 0x54434453u); /* "SDCT" */
    dr_buf_put_u32(&old, 1);
    dr_buf_put_u32(&old, 7);                /* tag */
    dr_buf_put_u8(&old, SD_FORMAT_MXNET);   /* format */
    dr_buf_put_u8(&old, DR_PRECISION_FP32); /* precision */
    dr_buf_put_u32(&old, (uint32_t)g_synset.len);
    dr_buf_put_u32(&old, (uint32_t)g_symbol.len);
    dr_buf_put_u32(&old, (uint32_t)g_params.len);
    dr_buf_put_bytes(&old, g_synset.data, g_synset.len);
    dr_buf_put_bytes(&old, g_symbol.data, g_symbol.len);
    dr_buf_put_bytes(&old, g_params.data, g_params.len);
    assert_false(old.failed);
    sd_categorizer *node = NULL;
    assert_int_equal(sd_categorizer_create(NULL, &node), DR_OK);
    dr_rpc_type type;
    sd_categorizer_rpc_type(node, &type);
    assert_int_equal(type.restore(type.ctx, 1, old.data, old.len), DR_OK);
    sd_model_info *infos = NULL;
    size_t count = 0;
    list_of_type(&type, &infos, &count);
    assert_int_equal(count, 1);
    assert_int_equal(infos[0].tag, 7);
    assert_true(infos[0].version == -1);
    assert_true(infos[0].installed_us == 0);
    free(infos);
    /* an unknown magic is refused */
    old.data[0] ^= 1;
    assert_int_equal(type.restore(type.ctx, 1, old.data, old.len), DR_ECORRUPT);
    sd_categorizer_destroy(node);
    dr_buf_free(&old);
}

/* Inferences on worker threads while the tag is removed and installed again. The threads
 * record what they saw; only the main thread asserts (cmocka's asserts are not thread-safe). */
static atomic_int g_stop; /* set by the main thread, read by the inference threads */
static file_bytes g_photo;

/* What one inference thread saw. */
typedef struct inference_result {
    int replica;           /* the replica it asks */
    int answered;          /* answers in all */
    int with_model;        /* answers "n00000001 red circle" (the model was installed) */
    int wrong;             /* failed calls and answers that are neither */
    char first_wrong[160]; /* the first of those, for the failure message */
} inference_result;

/* Signalled when an inference thread got an answer from the installed model. */
static pthread_mutex_t g_seen_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_seen_cond = PTHREAD_COND_INITIALIZER;
static int g_seen_model; /* guarded by g_seen_lock */

static void *inference_loop(void *arg) {
    inference_result *result = arg;
    while (!atomic_load(&g_stop)) {
        char *answer = NULL;
        int rc = try_classify(result->replica, 21, &g_photo, &answer);
        bool model = rc == DR_OK && strcmp(answer, "n00000001 red circle") == 0;
        bool no_model = rc == DR_OK && strcmp(answer, SD_DESC_NO_MODEL) == 0;
        if (!model && !no_model && result->wrong++ == 0)
            snprintf(result->first_wrong, sizeof result->first_wrong, "rc %d: %s", rc,
                     answer ? answer : "(no answer)");
        if (model && result->with_model++ == 0) {
            pthread_mutex_lock(&g_seen_lock);
            g_seen_model = 1;
            pthread_cond_broadcast(&g_seen_cond);
            pthread_mutex_unlock(&g_seen_lock);
        }
        free(answer);
        result->answered++;
    }
    return NULL;
}

/* Waits up to timeout_s for an inference thread to get an answer from the model. */
static bool wait_seen_model(int timeout_s) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_s;
    pthread_mutex_lock(&g_seen_lock);
    int rc = 0;
    while (!g_seen_model && rc == 0)
        rc = pthread_cond_timedwait(&g_seen_cond, &g_seen_lock, &deadline);
    bool seen = g_seen_model != 0;
    pthread_mutex_unlock(&g_seen_lock);
    return seen;
}

static void test_concurrent_inference_and_remove(void **state) {
    (void)state;
    g_photo = read_file("models/demo-shapes/photos/red-circle.jpg");
    pthread_t threads[3];
    inference_result results[3];
    atomic_store(&g_stop, 0);
    g_seen_model = 0;
    for (int t = 0; t < 3; t++) {
        results[t] = (inference_result){.replica = t % REPLICAS};
        assert_int_equal(pthread_create(&threads[t], NULL, inference_loop, &results[t]), 0);
    }
    bool seen = true;
    for (int round = 0; round < 15; round++) {
        char *desc = NULL;
        assert_int_equal(install(round % REPLICAS, 21, &g_synset, &g_symbol, &g_params, &desc), 0);
        free(desc);
        if (round == 0) /* the model answered a thread at least once before its first removal */
            seen = wait_seen_model(60);
        struct timespec pause = {0, 20 * 1000 * 1000}; /* lets inferences overlap the removal */
        nanosleep(&pause, NULL);
        assert_int_equal(remove_tag(0, 21, &desc), 0);
        free(desc);
    }
    atomic_store(&g_stop, 1);
    for (int t = 0; t < 3; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    free(g_photo.data);
    int with_model = 0;
    for (int t = 0; t < 3; t++) {
        printf("  thread %d (replica %d): %d answers, %d from the model, %d wrong\n", t,
               results[t].replica, results[t].answered, results[t].with_model, results[t].wrong);
        if (results[t].wrong > 0)
            fail_msg("thread %d: %d wrong answers, the first: %s", t, results[t].wrong,
                     results[t].first_wrong);
        assert_true(results[t].answered > 0);
        with_model += results[t].with_model;
    }
    assert_true(seen);
    assert_true(with_model > 0);
    assert_replicas_agree(0);
}

/* A replica whose group stopped (it was excluded) answers nothing from its stale models. */
static void test_stopped_replica_refuses(void **state) {
    (void)state;
    char *desc = NULL;
    assert_int_equal(install(0, 5, &g_synset, &g_symbol, &g_params, &desc), DR_OK);
    free(desc);
    file_bytes photo = read_file("models/demo-shapes/photos/red-circle.jpg");
    dr_buf args = {0}, reply;
    assert_int_equal(sd_inference_args_encode(&args, 5, photo.data, photo.len, 0), DR_OK);
    g_stopped = DR_EREMOVED;
    assert_int_equal(call(0, SD_METHOD_INFERENCE, &args, &reply), DR_ECLOSED);
    dr_buf_free(&reply);
    assert_int_equal(call(0, SD_METHOD_LIST_MODELS, NULL, &reply), DR_ECLOSED);
    dr_buf_free(&reply);
    g_stopped = DR_OK;
    assert_int_equal(call(0, SD_METHOD_INFERENCE, &args, &reply), DR_OK);
    dr_buf_free(&reply);
    dr_buf_free(&args);
    free(photo.data);
    assert_int_equal(remove_tag(0, 5, &desc), DR_OK);
    free(desc);
}

/* ---- models as of a past version (the durable log) ------------------------------------------ */

/* Replica 0's model_as_of answer for tag at key (by version or time); *status its status and,
 * when it fails, `why` its reason. */
static sd_model_as_of as_of(uint32_t tag, sd_as_of_kind kind, int64_t key, int *status, char *why,
                            size_t cap) {
    dr_buf args = {0}, reply;
    assert_int_equal(sd_model_as_of_args_encode(&args, tag, kind, key), DR_OK);
    *status = call(0, SD_METHOD_MODEL_AS_OF, &args, &reply);
    sd_model_as_of answer = {0};
    if (*status == DR_OK) {
        assert_int_equal(sd_model_as_of_reply_decode(reply.data, reply.len, &answer), DR_OK);
    } else if (why) {
        dr_reader reader;
        dr_reader_init(&reader, reply.data, reply.len);
        uint32_t n = 0;
        const uint8_t *text = dr_reader_blob(&reader, (uint32_t)cap - 1, &n);
        snprintf(why, cap, "%.*s", text ? (int)n : 0, text ? (const char *)text : "");
    }
    dr_buf_free(&reply);
    dr_buf_free(&args);
    return answer;
}

static void expect_model(uint32_t tag, sd_as_of_kind kind, int64_t key, uint64_t digest,
                         int64_t install_version) {
    int status = 99;
    sd_model_as_of answer = as_of(tag, kind, key, &status, NULL, 0);
    assert_int_equal(status, DR_OK);
    assert_true(answer.installed);
    assert_int_equal(answer.model.tag, tag);
    assert_int_equal(answer.model.digest, digest);
    assert_int_equal(answer.model.version, install_version);
    assert_int_equal(answer.model.installed_us,
                     FAKE_STAMP_BASE + (uint64_t)(install_version & 0xffffffff));
}

static void expect_no_model(uint32_t tag, sd_as_of_kind kind, int64_t key, int64_t removed) {
    int status = 99;
    sd_model_as_of answer = as_of(tag, kind, key, &status, NULL, 0);
    assert_int_equal(status, DR_OK);
    assert_false(answer.installed);
    assert_int_equal(answer.removed_version, removed);
}

/* The digest list_models shows of tag on replica 0 now. */
static uint64_t digest_now(uint32_t tag) {
    sd_model_info *infos = NULL;
    size_t count = 0;
    list_of(0, &infos, &count);
    uint64_t digest = 0;
    for (size_t i = 0; i < count; i++)
        if (infos[i].tag == tag)
            digest = infos[i].digest;
    free(infos);
    assert_int_not_equal(digest, 0);
    return digest;
}

/*
 * model_as_of rebuilds a tag's model at a past version or time from the log: install A, a
 * refused install of B over it (no effect), remove, install B, another tag; by version and by
 * time; a log that starts later (a joiner's) takes the state before it from the replay base
 * and refuses versions older than that (DR_ERANGE); a volatile shard answers DR_ESTATE;
 * malformed args DR_EINVAL.
 */
static void test_model_as_of(void **state) {
    (void)state;
    log_reset();
    g_log_durable = true;
    file_bytes synset_b = {malloc(g_synset.len), g_synset.len}; /* model B: other labels */
    memcpy(synset_b.data, g_synset.data, g_synset.len);
    synset_b.data[g_synset.len - 2] ^= 0x20; /* a letter of the last label changes case */
    char *desc = NULL;
    const int64_t view = (int64_t)FAKE_VIEW << 32;
    int64_t v_a = view | g_next_seq;
    assert_int_equal(install(0, 3, &g_synset, &g_symbol, &g_params, &desc), DR_OK);
    free(desc);
    uint64_t digest_a = digest_now(3);
    int64_t v_refused = view | g_next_seq;
    assert_int_equal(install(0, 3, &synset_b, &g_symbol, &g_params, &desc), DR_EEXIST);
    free(desc);
    dr_buf base = {0}; /* the state a joiner of the next version would receive */
    assert_int_equal(g_types[0].serialize(g_types[0].ctx, 1, &base), DR_OK);
    int64_t v_removed = view | g_next_seq;
    assert_int_equal(remove_tag(0, 3, &desc), DR_OK);
    free(desc);
    int64_t v_b = view | g_next_seq;
    assert_int_equal(install(0, 3, &synset_b, &g_symbol, &g_params, &desc), DR_OK);
    free(desc);
    uint64_t digest_b = digest_now(3);
    assert_int_not_equal(digest_a, digest_b);
    int64_t v_other = view | g_next_seq;
    assert_int_equal(install(0, 4, &g_synset, &g_symbol, &g_params, &desc), DR_OK);
    free(desc);

    expect_no_model(3, SD_AS_OF_VERSION, 0, -1);       /* before anything */
    expect_no_model(3, SD_AS_OF_VERSION, v_a - 1, -1); /* just before A */
    expect_model(3, SD_AS_OF_VERSION, v_a, digest_a, v_a);
    expect_model(3, SD_AS_OF_VERSION, v_refused, digest_a, v_a); /* B's install was refused */
    expect_no_model(3, SD_AS_OF_VERSION, v_removed, v_removed);
    expect_model(3, SD_AS_OF_VERSION, v_b, digest_b, v_b);
    expect_model(3, SD_AS_OF_VERSION, INT64_MAX, digest_b, v_b);
    expect_model(4, SD_AS_OF_VERSION, v_other, digest_a, v_other);
    expect_no_model(4, SD_AS_OF_VERSION, v_b, -1);
    expect_no_model(9, SD_AS_OF_VERSION, INT64_MAX, -1); /* never installed */
    uint64_t stamp_a = FAKE_STAMP_BASE + (uint64_t)(v_a & 0xffffffff);
    expect_model(3, SD_AS_OF_TIME, (int64_t)stamp_a, digest_a, v_a);
    expect_model(3, SD_AS_OF_TIME, (int64_t)stamp_a + 1, digest_a, v_a);
    expect_no_model(3, SD_AS_OF_TIME, (int64_t)stamp_a - 1, -1);
    expect_no_model(3, SD_AS_OF_TIME, 0, -1);
    int status = 99;
    sd_model_as_of answer = as_of(3, SD_AS_OF_TIME, (int64_t)stamp_a + 1, &status, NULL, 0);
    assert_int_equal(answer.resolved, v_refused); /* the newest record stamped by then */

    /* a joiner's log: it starts at v_removed, the base holds the state before it */
    g_log_floor = v_removed;
    g_base = base.data;
    g_base_len = base.len;
    g_base_present = true;
    memset(&base, 0, sizeof base);
    expect_model(3, SD_AS_OF_VERSION, v_removed - 1, digest_a, v_a); /* from the base */
    expect_no_model(3, SD_AS_OF_VERSION, v_removed, v_removed);
    expect_model(3, SD_AS_OF_VERSION, v_b, digest_b, v_b);
    expect_no_model(4, SD_AS_OF_VERSION, v_b, -1); /* not in the base, not in the log */
    char why[256] = "";
    as_of(3, SD_AS_OF_VERSION, v_a, &status, why, sizeof why);
    assert_int_equal(status, DR_ERANGE);
    assert_non_null(strstr(why, "older than this replica's history"));
    as_of(3, SD_AS_OF_TIME, 0, &status, NULL, 0); /* nothing logged by then: before the log */
    assert_int_equal(status, DR_ERANGE);

    /* a volatile shard keeps no history */
    g_log_durable = false;
    as_of(3, SD_AS_OF_VERSION, v_a, &status, why, sizeof why);
    assert_int_equal(status, DR_ESTATE);
    assert_non_null(strstr(why, "not durable"));
    g_log_durable = true;

    /* malformed args: too short, an unknown kind, a negative key */
    const uint8_t short_args[5] = {0};
    uint8_t bad_kind[13] = {2};
    uint8_t negative[13] = {0};
    memset(negative + 5, 0xff, 8);
    const uint8_t *cases[] = {short_args, bad_kind, negative};
    const size_t lens[] = {sizeof short_args, sizeof bad_kind, sizeof negative};
    for (size_t i = 0; i < 3; i++) {
        dr_buf args = {0}, reply;
        dr_buf_put_bytes(&args, cases[i], lens[i]);
        assert_int_equal(call(0, SD_METHOD_MODEL_AS_OF, &args, &reply), DR_EINVAL);
        dr_buf_free(&reply);
        dr_buf_free(&args);
    }
    dr_buf unused = {0};
    assert_int_equal(sd_model_as_of_args_encode(&unused, 3, SD_AS_OF_VERSION, -1), DR_EINVAL);
    dr_buf_free(&unused);

    for (uint32_t tag = 3; tag <= 4; tag++) {
        assert_int_equal(remove_tag(0, tag, &desc), DR_OK);
        free(desc);
    }
    free(synset_b.data);
    log_reset();
    g_log_durable = false;
}

/* ---- dynamic batching ----------------------------------------------------------------------- */

typedef struct batch_client {
    dr_rpc_type *type;
    const file_bytes *photo, *junk;
    const char *expected;
    int wrong, bad_photo_answers;
} batch_client;

/* Inference through a categorizer's own handler: the answer text (malloc'd) or NULL. */
static char *type_classify(dr_rpc_type *type, const file_bytes *photo) {
    const dr_rpc_method *m = find_method(type, SD_METHOD_INFERENCE);
    dr_buf args = {0}, reply;
    if (!m || sd_inference_args_encode(&args, 9, photo->data, photo->len, 0) != DR_OK)
        return NULL;
    dr_rpc_call_info info = {.subgroup = 1};
    dr_buf_init(&reply, 1 << 16);
    int rc = m->handler(type->ctx, &info, args.data, args.len, &reply);
    sd_tag_answer answer = {.tag = 9};
    if (rc == DR_OK)
        rc = sd_inference_reply_decode(reply.data, reply.len, &answer);
    dr_buf_free(&args);
    dr_buf_free(&reply);
    if (rc != DR_OK) {
        free(answer.desc);
        return NULL;
    }
    return answer.desc;
}

static void *batch_client_main(void *arg) {
    batch_client *c = arg;
    for (int i = 0; i < 12; i++) {
        int junk = c->junk && i % 4 == 3; /* a bad photo in a batch must not spoil the others */
        char *text = type_classify(c->type, junk ? c->junk : c->photo);
        if (!text)
            c->wrong++;
        else if (junk)
            c->bad_photo_answers +=
                strncmp(text, SD_DESC_BAD_PHOTO_PREFIX, strlen(SD_DESC_BAD_PHOTO_PREFIX)) == 0;
        else if (strcmp(text, c->expected) != 0)
            c->wrong++;
        free(text);
    }
    return NULL;
}

/* Photos of one model that arrive together are classified as one batch, each answer the one
 * it gets alone; a bad photo in a batch gets its own error. One batch slot and a 20 ms delay
 * make batches form even on a loaded machine. */
static void test_dynamic_batching(void **state) {
    (void)state;
    sd_categorizer_limits limits = {.max_model_bytes = 1 << 20,
                                    .max_photo_bytes = 1 << 20,
                                    .max_batch_size = 8,
                                    .max_queue_delay_us = 20000,
                                    .batch_workers = 1};
    sd_categorizer *cat = NULL;
    assert_int_equal(sd_categorizer_create(&limits, &cat), DR_OK);
    dr_rpc_type type;
    sd_categorizer_rpc_type(cat, &type);
    sd_categorizer_set_node(cat, (dr_rpc_node *)(uintptr_t)1);
    const dr_rpc_method *install = find_method(&type, SD_METHOD_ORDERED_INSTALL);
    assert_non_null(install);
    dr_buf args = {0}, reply;
    assert_int_equal(sd_model_args_encode(&args, 9, g_synset.data, g_synset.len, g_symbol.data,
                                          g_symbol.len, g_params.data, g_params.len),
                     DR_OK);
    dr_rpc_call_info info = {.subgroup = 1, .ordered = true};
    dr_buf_init(&reply, 1 << 16);
    assert_int_equal(install->handler(type.ctx, &info, args.data, args.len, &reply), DR_OK);
    dr_buf_free(&args);
    dr_buf_free(&reply);
    file_bytes photo = read_file("models/demo-shapes/photos/red-circle.jpg");
    file_bytes junk = {(uint8_t *)strdup("not a photo"), 11};
    char *expected = type_classify(&type, &photo); /* alone: a batch of one */
    assert_non_null(expected);
    printf("  alone: %s\n", expected);
    size_t b0, p0;
    sd_categorizer_batch_stats(cat, &b0, &p0);
    assert_int_equal(b0, 1);
    enum { CLIENTS = 8 };
    pthread_t threads[CLIENTS];
    batch_client clients[CLIENTS];
    for (int t = 0; t < CLIENTS; t++) {
        clients[t] = (batch_client){&type, &photo, t == 0 ? &junk : NULL, expected, 0, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, batch_client_main, &clients[t]), 0);
    }
    for (int t = 0; t < CLIENTS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    size_t batches, photos;
    sd_categorizer_batch_stats(cat, &batches, &photos);
    batches -= b0;
    photos -= p0;
    printf("  %zu photos from %d clients in %zu batches (%.2f per batch)\n", photos, CLIENTS,
           batches, (double)photos / (double)batches);
    assert_int_equal(photos, CLIENTS * 12);
    assert_true(photos >= 2 * batches); /* batches formed: 2+ photos each on average */
    for (int t = 0; t < CLIENTS; t++)
        assert_int_equal(clients[t].wrong, 0);
    assert_int_equal(clients[0].bad_photo_answers, 3);
    free(expected);
    free(photo.data);
    free(junk.data);
    sd_categorizer_destroy(cat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stopped_replica_refuses),
        cmocka_unit_test(test_install_inference_remove),
        cmocka_unit_test(test_model_that_cannot_load),
        cmocka_unit_test(test_malformed_arguments),
        cmocka_unit_test(test_state_transfer),
        cmocka_unit_test(test_restore_snapshot_without_versions),
        cmocka_unit_test(test_install_precision),
        cmocka_unit_test(test_model_as_of),
        cmocka_unit_test(test_concurrent_inference_and_remove),
        cmocka_unit_test(test_dynamic_batching),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
