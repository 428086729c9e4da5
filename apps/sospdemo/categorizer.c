/*
 * The categorizer tier's replicated object (see categorizer.h for the methods and every wire
 * format: model args, model reply, inference args, list_models reply, snapshot).
 *
 * Locking: `lock` guards the table (a sorted array of entry pointers). Entries are reference
 * counted: the table holds one reference, each running inference another, so remove and
 * restore never free a model in use. An entry's `engine_lock` guards its engine state: one
 * caller loads the engine with the lock released (`loading` set; others arriving meanwhile wait
 * on `engine_cv`, they do not load it again); a failed load is remembered and answered at once
 * until a back-off expires (10 s, doubling up to 10 min: the bytes of an entry never change, so
 * a retry only helps after a transient failure such as memory). Classification runs without the
 * lock (dr_model_classify is thread-safe).
 */
#include "categorizer.h"

#include "derecho/infer.h"
#include "derecho/log.h"
#include "upload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SNAPSHOT_MAGIC_V1          0x54434453u /* "SDCT": entries without version and time */
#define SNAPSHOT_MAGIC             0x32434453u /* "SDC2" */
#define MXNET_LIST_MAGIC           0x112u
#define DEFAULT_ORDERED_TIMEOUT_MS 120000
#define LOAD_RETRY_FIRST_MS        10000
#define LOAD_RETRY_MAX_MS          600000
/* model_as_of on a volatile shard (no log to read the past from) */
#define NOT_DURABLE_TEXT                                                                           \
    "the categorizer shard is not durable: it keeps no history of its models "                     \
    "([SUBGROUP/CATEGORIZER_TIER] durable = true keeps one)"

typedef struct sd_entry {
    uint32_t tag;
    sd_model_format format;
    uint8_t precision;     /* dr_precision the engine is loaded with (install metadata) */
    int64_t version;       /* the install's version in the shard ((vid << 32) | seq; -1: unknown) */
    uint64_t installed_us; /* the install call's timestamp (the caller's clock, same everywhere) */
    uint8_t *data;         /* synset | symbol | params */
    uint32_t synset_len, symbol_len, params_len;
    uint64_t digest;
    atomic_int refs;
    pthread_mutex_t engine_lock;
    pthread_cond_t engine_cv; /* signalled when a load ends */
    dr_model *engine;         /* built lazily; NULL until then or after a failed load */
    bool loading;             /* a caller is loading it (engine_lock released) */
    uint64_t retry_at_ms;     /* after a failed load: no new attempt before (monotonic) */
    uint64_t backoff_ms;      /* the next back-off after another failure */
    /* dynamic batching (classify_batched): requests waiting, batches running */
    pthread_mutex_t batch_lock;
    pthread_cond_t batch_cv;
    struct batch_req *queue, *queue_tail;
    size_t queued;
    uint32_t running;
} sd_entry;

struct sd_categorizer {
    sd_categorizer_limits limits;
    pthread_mutex_t lock;
    sd_entry **entries; /* sorted by tag */
    size_t count, cap;
    atomic_size_t load_attempts; /* engine loads attempted at inference time */
    atomic_size_t batches, batched_photos;
    _Atomic(dr_rpc_node *) node;
};

const char *sd_model_format_name(sd_model_format format) {
    return format == SD_FORMAT_ONNX ? "onnx" : "mxnet";
}

const char *sd_precision_name(uint8_t precision) {
    return precision == DR_PRECISION_BF16   ? "bf16"
           : precision == DR_PRECISION_AUTO ? "auto"
                                            : "fp32";
}

int sd_model_args_add_precision(dr_buf *out, uint8_t precision) {
    if (precision > DR_PRECISION_AUTO)
        return DR_EINVAL;
    dr_buf_put_u8(out, precision);
    return out->failed ? DR_ETOOBIG : DR_OK;
}

/* ---- wire helpers ------------------------------------------------------------------------ */

int sd_model_args_encode(dr_buf *out, uint32_t tag, const uint8_t *synset, size_t synset_bytes,
                         const uint8_t *symbol, size_t symbol_bytes, const uint8_t *params,
                         size_t params_bytes) {
    if (synset_bytes > UINT32_MAX || symbol_bytes > UINT32_MAX || params_bytes > UINT32_MAX)
        return DR_ETOOBIG;
    dr_buf_put_u32(out, tag);
    dr_buf_put_u32(out, (uint32_t)synset_bytes);
    dr_buf_put_u32(out, (uint32_t)symbol_bytes);
    dr_buf_put_u32(out, (uint32_t)params_bytes);
    dr_buf_put_bytes(out, synset, synset_bytes);
    dr_buf_put_bytes(out, symbol, symbol_bytes);
    dr_buf_put_bytes(out, params, params_bytes);
    return out->failed ? DR_ETOOBIG : DR_OK;
}

int sd_inference_args_encode(dr_buf *out, uint32_t tag, const uint8_t *photo, size_t photo_bytes,
                             uint32_t top_k) {
    if (photo_bytes > UINT32_MAX)
        return DR_ETOOBIG;
    dr_buf_put_u32(out, tag);
    dr_buf_put_blob(out, photo, (uint32_t)photo_bytes);
    if (top_k > 0)
        dr_buf_put_u32(out, top_k);
    return out->failed ? DR_ETOOBIG : DR_OK;
}

static uint32_t float_bits(float value) {
    uint32_t bits = 0;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits) {
    float value = 0;
    memcpy(&value, &bits, sizeof value);
    return value;
}

int sd_inference_reply_encode(dr_buf *out, sd_answer_kind kind, float score, const char *desc,
                              const sd_class *top, uint32_t n_top) {
    dr_buf_put_u8(out, (uint8_t)kind);
    dr_buf_put_u32(out, float_bits(score));
    dr_buf_put_str(out, desc);
    dr_buf_put_u32(out, n_top);
    for (uint32_t i = 0; i < n_top; i++) {
        dr_buf_put_u32(out, float_bits(top[i].score));
        dr_buf_put_str(out, top[i].label ? top[i].label : "");
    }
    return out->failed ? DR_ETOOBIG : DR_OK;
}

/* A length-prefixed string of the reader as a malloc'd C string, or NULL. */
static char *reader_string(dr_reader *reader) {
    uint32_t len = 0;
    const uint8_t *bytes = dr_reader_blob(reader, 1u << 20, &len);
    if (reader->failed)
        return NULL;
    char *text = malloc((size_t)len + 1);
    if (text) {
        if (len)
            memcpy(text, bytes, len);
        text[len] = '\0';
    }
    return text;
}

int sd_inference_reply_decode(const uint8_t *bytes, size_t len, sd_tag_answer *answer) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint8_t kind = dr_reader_u8(&reader);
    float score = bits_float(dr_reader_u32(&reader));
    char *desc = reader_string(&reader);
    uint32_t n_top = dr_reader_u32(&reader);
    if (!desc || reader.failed || kind > SD_ANSWER_BAD_PHOTO || n_top > SD_MAX_TOP) {
        free(desc);
        return DR_EPROTO;
    }
    answer->kind = (sd_answer_kind)kind;
    answer->score = score;
    answer->desc = desc;
    answer->n_top = 0;
    for (uint32_t i = 0; i < n_top; i++) {
        float one = bits_float(dr_reader_u32(&reader));
        char *label = reader_string(&reader);
        if (!label)
            break;
        answer->top[answer->n_top++] = (sd_class){.score = one, .label = label};
    }
    if (answer->n_top != n_top || !dr_reader_done(&reader)) {
        sd_tag_answer_clear(answer);
        return DR_EPROTO;
    }
    return DR_OK;
}

int sd_model_reply_encode(dr_buf *out, int32_t error_code, const char *desc) {
    dr_buf_put_u32(out, (uint32_t)error_code);
    dr_buf_put_str(out, desc);
    return out->failed ? DR_ETOOBIG : DR_OK;
}

int sd_model_reply_decode(const uint8_t *bytes, size_t len, int32_t *code_out, char **desc_out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    int32_t code = (int32_t)dr_reader_u32(&reader);
    uint32_t desc_len = 0;
    const uint8_t *desc = dr_reader_blob(&reader, 1u << 20, &desc_len);
    if (!dr_reader_done(&reader))
        return DR_EPROTO;
    char *text = malloc((size_t)desc_len + 1);
    if (!text)
        return DR_ENOMEM;
    if (desc_len)
        memcpy(text, desc, desc_len);
    text[desc_len] = '\0';
    *code_out = code;
    *desc_out = text;
    return DR_OK;
}

int sd_model_list_decode(const uint8_t *bytes, size_t len, sd_model_info **infos_out,
                         size_t *count_out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t count = dr_reader_u32(&reader);
    const size_t entry_bytes = 4 + 1 + 1 + 8 + 8 + 8 + 8;
    if (reader.failed || (size_t)count > dr_reader_remaining(&reader) / entry_bytes)
        return DR_EPROTO;
    sd_model_info *infos = calloc(count ? count : 1, sizeof *infos);
    if (!infos)
        return DR_ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        infos[i].tag = dr_reader_u32(&reader);
        infos[i].format =
            dr_reader_u8(&reader) == SD_FORMAT_ONNX ? SD_FORMAT_ONNX : SD_FORMAT_MXNET;
        infos[i].precision = dr_reader_u8(&reader);
        if (infos[i].precision > DR_PRECISION_AUTO)
            reader.failed = true;
        infos[i].bytes = dr_reader_u64(&reader);
        infos[i].digest = dr_reader_u64(&reader);
        infos[i].version = (int64_t)dr_reader_u64(&reader);
        infos[i].installed_us = dr_reader_u64(&reader);
    }
    if (!dr_reader_done(&reader)) {
        free(infos);
        return DR_EPROTO;
    }
    *infos_out = infos;
    *count_out = count;
    return DR_OK;
}

/* ---- entries ----------------------------------------------------------------------------- */

/* FNV-1a 64 over 8-byte words (and the tail bytes): cheap enough for 100 MB models. */
static uint64_t digest_bytes(const uint8_t *data, size_t len) {
    uint64_t hash = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        hash ^= dr_load_u64le(data + i);
        hash *= 0x100000001b3ull;
    }
    for (; i < len; i++) {
        hash ^= data[i];
        hash *= 0x100000001b3ull;
    }
    return hash;
}

static sd_model_format detect_format(const uint8_t *params, uint32_t params_len,
                                     uint32_t symbol_len) {
    if (params_len >= 8 && dr_load_u64le(params) == MXNET_LIST_MAGIC)
        return SD_FORMAT_MXNET;
    return symbol_len == 0 ? SD_FORMAT_ONNX : SD_FORMAT_MXNET;
}

static sd_entry *entry_new(uint32_t tag, const uint8_t *synset, uint32_t synset_len,
                           const uint8_t *symbol, uint32_t symbol_len, const uint8_t *params,
                           uint32_t params_len, uint8_t precision) {
    sd_entry *entry = calloc(1, sizeof *entry);
    size_t total = (size_t)synset_len + symbol_len + params_len;
    if (!entry)
        return NULL;
    entry->data = malloc(total ? total : 1);
    if (!entry->data) {
        free(entry);
        return NULL;
    }
    memcpy(entry->data, synset, synset_len);
    memcpy(entry->data + synset_len, symbol, symbol_len);
    memcpy(entry->data + synset_len + symbol_len, params, params_len);
    entry->tag = tag;
    entry->synset_len = synset_len;
    entry->symbol_len = symbol_len;
    entry->params_len = params_len;
    entry->format = detect_format(params, params_len, symbol_len);
    entry->precision = precision;
    entry->version = -1;
    entry->digest = digest_bytes(entry->data, total);
    atomic_init(&entry->refs, 1);
    pthread_mutex_init(&entry->engine_lock, NULL);
    pthread_cond_init(&entry->engine_cv, NULL);
    pthread_mutex_init(&entry->batch_lock, NULL);
    pthread_condattr_t ca; /* batch_cv's timed waits use CLOCK_MONOTONIC deadlines */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&entry->batch_cv, &ca);
    pthread_condattr_destroy(&ca);
    return entry;
}

static void entry_release(sd_entry *entry) {
    if (!entry || atomic_fetch_sub(&entry->refs, 1) != 1)
        return;
    dr_model_free(entry->engine);
    pthread_mutex_destroy(&entry->engine_lock);
    pthread_cond_destroy(&entry->engine_cv);
    pthread_mutex_destroy(&entry->batch_lock);
    pthread_cond_destroy(&entry->batch_cv);
    free(entry->data);
    free(entry);
}

static uint64_t entry_bytes(const sd_entry *entry) {
    return (uint64_t)entry->synset_len + entry->symbol_len + entry->params_len;
}

/* Index of tag in the sorted table, or where it would go (*found says which). Lock held. */
static size_t table_find(const sd_categorizer *cat, uint32_t tag, bool *found) {
    size_t lo = 0, hi = cat->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cat->entries[mid]->tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < cat->count && cat->entries[lo]->tag == tag;
    return lo;
}

static int table_insert_at(sd_categorizer *cat, size_t index, sd_entry *entry) {
    if (cat->count == cat->cap) {
        size_t cap = cat->cap ? cat->cap * 2 : 8;
        sd_entry **grown = realloc(cat->entries, cap * sizeof *grown);
        if (!grown)
            return DR_ENOMEM;
        cat->entries = grown;
        cat->cap = cap;
    }
    memmove(cat->entries + index + 1, cat->entries + index,
            (cat->count - index) * sizeof *cat->entries);
    cat->entries[index] = entry;
    cat->count++;
    return DR_OK;
}

/* ---- public object ----------------------------------------------------------------------- */

int sd_categorizer_create(const sd_categorizer_limits *limits, sd_categorizer **out) {
    sd_categorizer *cat = calloc(1, sizeof *cat);
    if (!cat)
        return DR_ENOMEM;
    if (limits)
        cat->limits = *limits;
    if (!cat->limits.max_model_bytes)
        cat->limits.max_model_bytes = SD_DEFAULT_MAX_MODEL_BYTES;
    if (!cat->limits.max_photo_bytes)
        cat->limits.max_photo_bytes = SD_DEFAULT_MAX_PHOTO_BYTES;
    if (cat->limits.max_model_bytes > UINT32_MAX)
        cat->limits.max_model_bytes = UINT32_MAX;
    if (cat->limits.max_photo_bytes > UINT32_MAX)
        cat->limits.max_photo_bytes = UINT32_MAX;
    if (cat->limits.ordered_timeout_ms <= 0)
        cat->limits.ordered_timeout_ms = DEFAULT_ORDERED_TIMEOUT_MS;
    pthread_mutex_init(&cat->lock, NULL);
    atomic_init(&cat->node, NULL);
    atomic_init(&cat->load_attempts, 0);
    atomic_init(&cat->batches, 0);
    atomic_init(&cat->batched_photos, 0);
    if (!cat->limits.max_batch_size)
        cat->limits.max_batch_size = SD_DEFAULT_MAX_BATCH;
    if (cat->limits.max_batch_size > DR_INFER_MAX_BATCH)
        cat->limits.max_batch_size = DR_INFER_MAX_BATCH;
    if (cat->limits.max_queue_delay_us > 1000000)
        cat->limits.max_queue_delay_us = 1000000;
    if (!cat->limits.batch_workers) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cat->limits.batch_workers = cpus < 1 ? 1 : cpus > 64 ? 64 : (uint32_t)cpus;
    }
    *out = cat;
    return DR_OK;
}

void sd_categorizer_destroy(sd_categorizer *cat) {
    if (!cat)
        return;
    for (size_t i = 0; i < cat->count; i++)
        entry_release(cat->entries[i]);
    free(cat->entries);
    pthread_mutex_destroy(&cat->lock);
    free(cat);
}

void sd_categorizer_set_node(sd_categorizer *cat, dr_rpc_node *node) {
    atomic_store(&cat->node, node);
}

size_t sd_categorizer_model_count(sd_categorizer *cat) {
    pthread_mutex_lock(&cat->lock);
    size_t count = cat->count;
    pthread_mutex_unlock(&cat->lock);
    return count;
}

int sd_categorizer_engine_precision(sd_categorizer *cat, uint32_t tag, int *precision_out) {
    pthread_mutex_lock(&cat->lock);
    bool found = false;
    size_t index = table_find(cat, tag, &found);
    int rc = DR_ENOTFOUND;
    if (found) {
        sd_entry *entry = cat->entries[index];
        pthread_mutex_lock(&entry->engine_lock);
        if (entry->engine) {
            *precision_out = (int)dr_model_precision(entry->engine);
            rc = DR_OK;
        }
        pthread_mutex_unlock(&entry->engine_lock);
    }
    pthread_mutex_unlock(&cat->lock);
    return rc;
}

/* ---- handlers ---------------------------------------------------------------------------- */

/* Decoded model args (pointers borrowed from the call's bytes). */
typedef struct model_args {
    uint32_t tag;
    uint32_t synset_len, symbol_len, params_len;
    const uint8_t *synset, *symbol, *params;
    uint8_t precision; /* dr_precision; the optional trailing byte (absent: fp32) */
} model_args;

static int decode_model_args(const sd_categorizer *cat, const uint8_t *args, size_t len,
                             model_args *out, dr_buf *reply) {
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    out->tag = dr_reader_u32(&reader);
    out->synset_len = dr_reader_u32(&reader);
    out->symbol_len = dr_reader_u32(&reader);
    out->params_len = dr_reader_u32(&reader);
    if (reader.failed) {
        dr_buf_put_str(reply, "malformed install arguments");
        return DR_EINVAL;
    }
    uint64_t total = (uint64_t)out->synset_len + out->symbol_len + out->params_len;
    if (total > cat->limits.max_model_bytes) {
        char text[160];
        snprintf(text, sizeof text, "model of %llu bytes exceeds the limit of %llu bytes",
                 (unsigned long long)total, (unsigned long long)cat->limits.max_model_bytes);
        dr_buf_put_str(reply, text);
        return DR_ETOOBIG;
    }
    out->synset = dr_reader_bytes(&reader, out->synset_len);
    out->symbol = dr_reader_bytes(&reader, out->symbol_len);
    out->params = dr_reader_bytes(&reader, out->params_len);
    out->precision = DR_PRECISION_FP32;
    if (!reader.failed && dr_reader_remaining(&reader) > 0) {
        out->precision = dr_reader_u8(&reader);
        if (out->precision > DR_PRECISION_AUTO) {
            dr_buf_put_str(reply, "malformed install arguments (unknown precision)");
            return DR_EINVAL;
        }
    }
    if (!dr_reader_done(&reader)) {
        dr_buf_put_str(reply, "malformed install arguments (sizes do not match the data)");
        return DR_EINVAL;
    }
    return DR_OK;
}

static int handle_ordered_install(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                                  size_t len, dr_buf *reply) {
    sd_categorizer *cat = ctx;
    model_args model;
    int rc = decode_model_args(cat, args, len, &model, reply);
    if (rc != DR_OK)
        return rc;
    char text[160];
    if (model.params_len == 0) {
        snprintf(text, sizeof text, "install_model failed because the model of tag (%u) is empty.",
                 model.tag);
        return sd_model_reply_encode(reply, DR_EINVAL, text);
    }
    pthread_mutex_lock(&cat->lock);
    bool found = false;
    size_t index = table_find(cat, model.tag, &found);
    int32_t code = DR_OK;
    if (found) {
        code = DR_EEXIST;
        snprintf(text, sizeof text, "install_model failed because tag (%u) has been taken.",
                 model.tag);
    } else {
        sd_entry *entry =
            entry_new(model.tag, model.synset, model.synset_len, model.symbol, model.symbol_len,
                      model.params, model.params_len, model.precision);
        if (!entry || table_insert_at(cat, index, entry) != DR_OK) {
            entry_release(entry);
            code = DR_ENOMEM;
            snprintf(text, sizeof text, "install_model failed: out of memory for tag (%u).",
                     model.tag);
        } else {
            entry->version = info->version;
            entry->installed_us = info->timestamp_us;
            snprintf(text, sizeof text, "%s", SD_DESC_INSTALL_OK);
            DR_INFO(DR_LOGM_APP, "%s model tag %u (%s, %s, %llu bytes, version %lld)",
                    info->replayed ? "replayed the install of" : "installed", model.tag,
                    sd_model_format_name(entry->format), sd_precision_name(entry->precision),
                    (unsigned long long)entry_bytes(entry), (long long)info->version);
        }
    }
    pthread_mutex_unlock(&cat->lock);
    return sd_model_reply_encode(reply, code, text);
}

static int handle_ordered_remove(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                                 size_t len, dr_buf *reply) {
    (void)info;
    sd_categorizer *cat = ctx;
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint32_t tag = dr_reader_u32(&reader);
    if (!dr_reader_done(&reader)) {
        dr_buf_put_str(reply, "malformed remove arguments");
        return DR_EINVAL;
    }
    sd_entry *removed = NULL;
    pthread_mutex_lock(&cat->lock);
    bool found = false;
    size_t index = table_find(cat, tag, &found);
    if (found) {
        removed = cat->entries[index];
        memmove(cat->entries + index, cat->entries + index + 1,
                (cat->count - index - 1) * sizeof *cat->entries);
        cat->count--;
    }
    pthread_mutex_unlock(&cat->lock);
    if (!removed) {
        char text[160];
        snprintf(text, sizeof text, "remove_model failed because tag (%u) is not installed.", tag);
        return sd_model_reply_encode(reply, DR_ENOTFOUND, text);
    }
    DR_INFO(DR_LOGM_APP, "removed model tag %u", tag);
    entry_release(removed); /* frees the engine unless an inference still uses it */
    return sd_model_reply_encode(reply, DR_OK, SD_DESC_REMOVE_OK);
}

/*
 * The seed's flow for install/remove: multicast `method` in my shard and combine every
 * replica's reply (0 only when all answered 0; else the first failure's code and text).
 */
static int forward_ordered(sd_categorizer *cat, const dr_rpc_call_info *info, const char *method,
                           const uint8_t *args, size_t len, dr_buf *reply) {
    dr_rpc_node *node = atomic_load(&cat->node);
    if (!node) {
        dr_buf_put_str(reply, "categorizer is starting");
        return DR_EAGAIN;
    }
    int timeout_ms = cat->limits.ordered_timeout_ms;
    dr_rpc_results *results = NULL;
    int rc = dr_rpc_ordered_call(node, info->subgroup, method, args, len, timeout_ms, &results);
    if (rc != DR_OK) {
        char text[200];
        snprintf(text, sizeof text, "%s: the ordered multicast failed: %s", method,
                 dr_strerror(rc));
        return sd_model_reply_encode(reply, rc, text);
    }
    size_t count = dr_rpc_results_count(results, timeout_ms);
    int32_t code = count ? DR_OK : DR_ETIMEDOUT;
    char *desc = NULL;
    for (size_t i = 0; i < count; i++) {
        dr_rpc_reply one = {0};
        int32_t one_code = dr_rpc_results_wait(results, i, timeout_ms, &one);
        char *one_desc = NULL;
        if (one_code == DR_OK && one.status != DR_OK)
            one_code = one.status;
        if (one_code == DR_OK &&
            sd_model_reply_decode(one.bytes, one.len, &one_code, &one_desc) != DR_OK)
            one_code = DR_EPROTO;
        if (one_code == DR_EREMOVED) {
            /* the replica left the shard; the survivors' answers decide */
        } else if (one_code != DR_OK && code == DR_OK) {
            code = one_code;
            free(desc);
            desc = one_desc;
            one_desc = NULL;
            if (!desc && asprintf(&desc, "%s failed on replica %u: %s", method, one.node_id,
                                  dr_strerror(one_code)) < 0)
                desc = NULL;
        } else if (one_code == DR_OK && !desc) {
            desc = one_desc;
            one_desc = NULL;
        }
        free(one_desc);
        dr_rpc_reply_clear(&one);
    }
    if (code == DR_OK) {
        /* a durable tier (docs/persistence.md): acknowledge once every replica logged it, so
         * the change survives a stop of the whole cluster; DR_ESTATE: not durable */
        int persisted =
            dr_rpc_results_wait_persisted(node, info->subgroup, results, true, timeout_ms);
        if (persisted != DR_OK && persisted != DR_ESTATE) {
            code = persisted;
            free(desc);
            desc = NULL;
            if (asprintf(&desc, "%s: not persisted at every replica: %s", method,
                         dr_strerror(persisted)) < 0)
                desc = NULL;
        }
    }
    dr_rpc_results_free(results);
    rc = sd_model_reply_encode(reply, code,
                               desc ? desc : (count ? "no replica answered" : "no replies"));
    free(desc);
    return rc;
}

/*
 * A node whose group stopped (excluded, partitioned) must not answer from its stale models:
 * its handlers reply DR_ECLOSED (the function tier then asks another replica). Returns 0 while
 * it is a member.
 */
static int refuse_if_stopped(sd_categorizer *cat, dr_buf *reply) {
    dr_rpc_node *node = atomic_load(&cat->node);
    int stopped = node ? dr_group_stopped(dr_rpc_node_group(node)) : DR_OK;
    if (stopped == DR_OK)
        return DR_OK;
    dr_buf_put_str(reply, "this categorizer node is no longer a member of the group");
    return DR_ECLOSED;
}

/*
 * Loads the model once, as an inference would: 0 if it loads, else DR_ECORRUPT with the
 * loader's reason in why (parse errors, shapes that do not fit, the engine's limits).
 */
static int validate_model(const model_args *model, char *why, size_t cap) {
    if (model->params_len == 0)
        return DR_OK; /* ordered_install refuses an empty model with its own message */
    dr_err err = {0};
    dr_model *engine = NULL;
    dr_load_options opts;
    dr_load_options_default(&opts);
    opts.precision = (dr_precision)model->precision; /* bf16 without native bf16 fails here */
    int rc = detect_format(model->params, model->params_len, model->symbol_len) == SD_FORMAT_ONNX
                 ? dr_model_load_onnx_ex(model->params, model->params_len, model->synset,
                                         model->synset_len, &opts, &engine, &err)
                 : dr_model_load_mxnet_ex(model->synset, model->synset_len, model->symbol,
                                          model->symbol_len, model->params, model->params_len,
                                          &opts, &engine, &err);
    dr_model_free(engine);
    if (rc == DR_OK)
        return DR_OK;
    snprintf(why, cap, "install_model failed because the model of tag (%u) cannot be loaded: %s",
             model->tag, err.msg[0] ? err.msg : dr_strerror(rc));
    return DR_ECORRUPT;
}

static int handle_install(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                          dr_buf *reply) {
    sd_categorizer *cat = ctx;
    model_args model;
    int rc = refuse_if_stopped(cat, reply);
    if (rc != DR_OK)
        return rc;
    rc = decode_model_args(cat, args, len, &model, reply);
    if (rc != DR_OK)
        return rc;
    char why[DR_ERR_MSG_MAX + 120];
    if (validate_model(&model, why, sizeof why) != DR_OK) {
        DR_WARN(DR_LOGM_APP, "%s", why);
        return sd_model_reply_encode(reply, DR_ECORRUPT, why);
    }
    return forward_ordered(cat, info, SD_METHOD_ORDERED_INSTALL, args, len, reply);
}

static int handle_remove(void *ctx, const dr_rpc_call_info *info, const uint8_t *args, size_t len,
                         dr_buf *reply) {
    int rc = refuse_if_stopped(ctx, reply);
    if (rc != DR_OK)
        return rc;
    if (len != 4) {
        dr_buf_put_str(reply, "malformed remove arguments");
        return DR_EINVAL;
    }
    return forward_ordered(ctx, info, SD_METHOD_ORDERED_REMOVE, args, len, reply);
}

/* Takes a reference to tag's entry, or NULL. */
static sd_entry *acquire_entry(sd_categorizer *cat, uint32_t tag) {
    pthread_mutex_lock(&cat->lock);
    bool found = false;
    size_t index = table_find(cat, tag, &found);
    sd_entry *entry = found ? cat->entries[index] : NULL;
    if (entry)
        atomic_fetch_add(&entry->refs, 1);
    pthread_mutex_unlock(&cat->lock);
    return entry;
}

static uint64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Loads an entry's engine (no lock held; the entry's bytes are immutable). */
static dr_model *load_engine(const sd_entry *entry) {
    dr_err err = {0};
    dr_model *engine = NULL;
    const uint8_t *synset = entry->data;
    const uint8_t *symbol = synset + entry->synset_len;
    const uint8_t *params = symbol + entry->symbol_len;
    dr_load_options opts;
    dr_load_options_default(&opts);
    opts.precision = (dr_precision)entry->precision;
    int rc = entry->format == SD_FORMAT_ONNX
                 ? dr_model_load_onnx_ex(params, entry->params_len, synset, entry->synset_len,
                                         &opts, &engine, &err)
                 : dr_model_load_mxnet_ex(synset, entry->synset_len, symbol, entry->symbol_len,
                                          params, entry->params_len, &opts, &engine, &err);
    if (rc != DR_OK) {
        DR_WARN(DR_LOGM_APP, "cannot load the model of tag %u (%s): %s", entry->tag,
                sd_model_format_name(entry->format), err.msg);
        return NULL;
    }
    DR_INFO(DR_LOGM_APP, "built the engine of tag %u (%zu classes, %s)", entry->tag,
            dr_model_num_classes(engine), sd_precision_name(dr_model_precision(engine)));
    return engine;
}

/*
 * Builds the engine if needed. Returns it, or NULL when loading fails (remembered: no new
 * attempt before the entry's back-off expires). Blocks while another caller loads it.
 */
static dr_model *entry_engine(sd_categorizer *cat, sd_entry *entry) {
    pthread_mutex_lock(&entry->engine_lock);
    while (entry->loading)
        pthread_cond_wait(&entry->engine_cv, &entry->engine_lock);
    if (!entry->engine && monotonic_ms() >= entry->retry_at_ms) {
        entry->loading = true;
        pthread_mutex_unlock(&entry->engine_lock);
        atomic_fetch_add(&cat->load_attempts, 1);
        dr_model *engine = load_engine(entry);
        pthread_mutex_lock(&entry->engine_lock);
        entry->loading = false;
        entry->engine = engine;
        if (!engine) {
            if (entry->backoff_ms < LOAD_RETRY_FIRST_MS)
                entry->backoff_ms = LOAD_RETRY_FIRST_MS;
            entry->retry_at_ms = monotonic_ms() + entry->backoff_ms;
            entry->backoff_ms = entry->backoff_ms * 2 > LOAD_RETRY_MAX_MS ? LOAD_RETRY_MAX_MS
                                                                          : entry->backoff_ms * 2;
        }
        pthread_cond_broadcast(&entry->engine_cv);
    }
    dr_model *engine = entry->engine;
    pthread_mutex_unlock(&entry->engine_lock);
    return engine;
}

size_t sd_categorizer_load_attempts(sd_categorizer *cat) {
    return atomic_load(&cat->load_attempts);
}

/* ---- dynamic batching -------------------------------------------------------------------- */

/* One photo waiting in (or taken from) an entry's batch queue; lives on its caller's stack. */
typedef struct batch_req {
    const uint8_t *photo;
    size_t len, k;
    dr_class_score top[SD_MAX_TOP];
    size_t n;
    int rc;
    dr_err err;
    bool done; /* guarded by the entry's batch_lock */
    struct batch_req *next;
} batch_req;

/* Runs n requests as one engine batch; a batch that fails (one bad photo fails it whole) is
 * run again photo by photo so that each gets its own answer or error. No lock held. */
static void run_batch(dr_model *engine, batch_req **reqs, size_t n) {
    if (n > 1) {
        const void *photos[DR_INFER_MAX_BATCH];
        size_t lens[DR_INFER_MAX_BATCH], n_out[DR_INFER_MAX_BATCH], k = 1;
        for (size_t i = 0; i < n; i++) {
            photos[i] = reqs[i]->photo;
            lens[i] = reqs[i]->len;
            if (reqs[i]->k > k)
                k = reqs[i]->k;
        }
        dr_class_score *top = malloc(sizeof(*top) * n * k);
        dr_err err = {0};
        if (top && dr_model_classify_batch(engine, photos, lens, n, top, k, n_out, &err) == DR_OK) {
            for (size_t i = 0; i < n; i++) {
                batch_req *r = reqs[i];
                r->n = n_out[i] < r->k ? n_out[i] : r->k;
                memcpy(r->top, top + i * k, sizeof(*top) * r->n);
                r->rc = DR_OK;
            }
            free(top);
            return;
        }
        free(top);
    }
    for (size_t i = 0; i < n; i++) {
        batch_req *r = reqs[i];
        r->rc = dr_model_classify(engine, r->photo, r->len, r->top, r->k, &r->n, &r->err);
    }
}

/*
 * Classifies r's photo, batched with the photos of the same model that are waiting (Triton's
 * dynamic batching). A caller that finds a free batch slot (fewer than batch_workers batches
 * of this model running) becomes the leader: it waits up to max_queue_delay_us for the queue
 * to reach max_batch_size (0: it does not wait, so a lone photo is not delayed), takes up to
 * max_batch_size photos in arrival order and runs them; the others wait on batch_cv (no
 * spinning) until their photo is done. Photos that arrive while batches run form the next one.
 */
static void classify_batched(sd_categorizer *cat, sd_entry *entry, dr_model *engine,
                             batch_req *me) {
    const sd_categorizer_limits *l = &cat->limits;
    if (l->max_batch_size <= 1) {
        run_batch(engine, &me, 1);
        return;
    }
    pthread_mutex_lock(&entry->batch_lock);
    me->next = NULL;
    if (entry->queue_tail)
        entry->queue_tail->next = me;
    else
        entry->queue = me;
    entry->queue_tail = me;
    entry->queued++;
    pthread_cond_broadcast(&entry->batch_cv); /* a leader waiting for a fuller batch */
    while (!me->done) {
        if (entry->running >= l->batch_workers || !entry->queue) {
            pthread_cond_wait(&entry->batch_cv, &entry->batch_lock);
            continue;
        }
        entry->running++;
        if (l->max_queue_delay_us > 0 && entry->queued < l->max_batch_size) {
            struct timespec deadline;
            clock_gettime(CLOCK_MONOTONIC, &deadline);
            uint64_t ns = (uint64_t)deadline.tv_nsec + l->max_queue_delay_us * 1000u;
            deadline.tv_sec += (time_t)(ns / 1000000000u);
            deadline.tv_nsec = (long)(ns % 1000000000u);
            while (entry->queued < l->max_batch_size &&
                   pthread_cond_timedwait(&entry->batch_cv, &entry->batch_lock, &deadline) == 0)
                ;
        }
        batch_req *taken[DR_INFER_MAX_BATCH];
        size_t n = 0;
        while (entry->queue && n < l->max_batch_size) {
            taken[n++] = entry->queue;
            entry->queue = entry->queue->next;
        }
        if (!entry->queue)
            entry->queue_tail = NULL;
        entry->queued -= n;
        pthread_mutex_unlock(&entry->batch_lock);
        atomic_fetch_add(&cat->batches, 1);
        atomic_fetch_add(&cat->batched_photos, n);
        run_batch(engine, taken, n);
        pthread_mutex_lock(&entry->batch_lock);
        for (size_t i = 0; i < n; i++)
            taken[i]->done = true;
        entry->running--;
        pthread_cond_broadcast(&entry->batch_cv);
    }
    pthread_mutex_unlock(&entry->batch_lock);
}

void sd_categorizer_batch_stats(sd_categorizer *cat, size_t *batches, size_t *photos) {
    *batches = atomic_load(&cat->batches);
    *photos = atomic_load(&cat->batched_photos);
}

static int handle_inference(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                            size_t len, dr_buf *reply) {
    (void)info;
    sd_categorizer *cat = ctx;
    int stopped = refuse_if_stopped(cat, reply);
    if (stopped != DR_OK)
        return stopped;
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint32_t tag = dr_reader_u32(&reader);
    uint32_t photo_len = 0;
    const uint8_t *photo =
        dr_reader_blob(&reader, (uint32_t)cat->limits.max_photo_bytes, &photo_len);
    uint32_t top_k = dr_reader_remaining(&reader) >= 4 ? dr_reader_u32(&reader) : 0;
    if (!dr_reader_done(&reader) || top_k > SD_MAX_TOP) {
        dr_buf_put_str(reply, "malformed inference arguments (or photo over the limit)");
        return DR_EINVAL;
    }
    sd_entry *entry = acquire_entry(cat, tag);
    if (!entry)
        return sd_inference_reply_encode(reply, SD_ANSWER_NO_MODEL, 0, SD_DESC_NO_MODEL, NULL, 0);
    dr_model *engine = entry_engine(cat, entry);
    int rc = DR_OK;
    if (!engine) {
        rc = sd_inference_reply_encode(reply, SD_ANSWER_LOAD_FAIL, 0, SD_DESC_LOAD_FAIL, NULL, 0);
    } else {
        batch_req req = {.photo = photo, .len = photo_len, .k = top_k ? top_k : 1};
        classify_batched(cat, entry, engine, &req);
        dr_class_score *best = req.top;
        size_t n = req.n;
        dr_err err = req.err;
        if (req.rc != DR_OK || n == 0) {
            char text[DR_ERR_MSG_MAX + 40];
            snprintf(text, sizeof text, SD_DESC_BAD_PHOTO_PREFIX ": %s.",
                     err.msg[0] ? err.msg : "no answer");
            rc = sd_inference_reply_encode(reply, SD_ANSWER_BAD_PHOTO, 0, text, NULL, 0);
        } else {
            sd_class top[SD_MAX_TOP];
            for (size_t i = 0; i < n; i++)
                top[i] = (sd_class){.score = best[i].score, .label = (char *)best[i].label};
            rc = sd_inference_reply_encode(reply, SD_ANSWER_OK, best[0].score,
                                           best[0].label ? best[0].label : "", top,
                                           top_k ? (uint32_t)n : 0);
        }
    }
    entry_release(entry);
    return rc;
}

static int handle_list_models(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                              size_t len, dr_buf *reply) {
    (void)info;
    (void)args;
    (void)len;
    sd_categorizer *cat = ctx;
    int stopped = refuse_if_stopped(cat, reply);
    if (stopped != DR_OK)
        return stopped;
    pthread_mutex_lock(&cat->lock);
    dr_buf_put_u32(reply, (uint32_t)cat->count);
    for (size_t i = 0; i < cat->count; i++) {
        const sd_entry *entry = cat->entries[i];
        dr_buf_put_u32(reply, entry->tag);
        dr_buf_put_u8(reply, (uint8_t)entry->format);
        dr_buf_put_u8(reply, entry->precision);
        dr_buf_put_u64(reply, entry_bytes(entry));
        dr_buf_put_u64(reply, entry->digest);
        dr_buf_put_u64(reply, (uint64_t)entry->version);
        dr_buf_put_u64(reply, entry->installed_us);
    }
    pthread_mutex_unlock(&cat->lock);
    return reply->failed ? DR_ETOOBIG : DR_OK;
}

/* ---- models as of a past version (the durable log) --------------------------------------- */

int sd_model_as_of_args_encode(dr_buf *out, uint32_t tag, sd_as_of_kind kind, int64_t key) {
    if (key < 0 || (kind != SD_AS_OF_VERSION && kind != SD_AS_OF_TIME))
        return DR_EINVAL;
    dr_buf_put_u8(out, (uint8_t)kind);
    dr_buf_put_u32(out, tag);
    dr_buf_put_u64(out, (uint64_t)key);
    return out->failed ? DR_ENOMEM : DR_OK;
}

static void put_model_info(dr_buf *out, const sd_model_info *info) {
    dr_buf_put_u32(out, info->tag);
    dr_buf_put_u8(out, (uint8_t)info->format);
    dr_buf_put_u8(out, info->precision);
    dr_buf_put_u64(out, info->bytes);
    dr_buf_put_u64(out, info->digest);
    dr_buf_put_u64(out, (uint64_t)info->version);
    dr_buf_put_u64(out, info->installed_us);
}

static int model_as_of_reply_encode(dr_buf *out, const sd_model_as_of *as_of) {
    dr_buf_put_u8(out, as_of->installed ? 1 : 0);
    dr_buf_put_u64(out, (uint64_t)as_of->resolved);
    if (as_of->installed) {
        put_model_info(out, &as_of->model);
    } else {
        dr_buf_put_u64(out, (uint64_t)as_of->removed_version);
        dr_buf_put_u64(out, as_of->removed_us);
    }
    return out->failed ? DR_ETOOBIG : DR_OK;
}

int sd_model_as_of_reply_decode(const uint8_t *bytes, size_t len, sd_model_as_of *out) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    memset(out, 0, sizeof *out);
    uint8_t installed = dr_reader_u8(&reader);
    out->resolved = (int64_t)dr_reader_u64(&reader);
    out->installed = installed == 1;
    if (out->installed) {
        sd_model_info *info = &out->model;
        info->tag = dr_reader_u32(&reader);
        uint8_t format = dr_reader_u8(&reader);
        info->format = format == SD_FORMAT_ONNX ? SD_FORMAT_ONNX : SD_FORMAT_MXNET;
        info->precision = dr_reader_u8(&reader);
        info->bytes = dr_reader_u64(&reader);
        info->digest = dr_reader_u64(&reader);
        info->version = (int64_t)dr_reader_u64(&reader);
        info->installed_us = dr_reader_u64(&reader);
        if (format > SD_FORMAT_ONNX || info->precision > DR_PRECISION_AUTO)
            reader.failed = true;
    } else {
        out->removed_version = (int64_t)dr_reader_u64(&reader);
        out->removed_us = dr_reader_u64(&reader);
    }
    if (installed > 1 || !dr_reader_done(&reader))
        return DR_EPROTO;
    return DR_OK;
}

/* The model an install's args describe (what list_models would show of its entry). */
static sd_model_info install_info(const model_args *model, int64_t version, uint64_t stamp_us) {
    uint64_t total = (uint64_t)model->synset_len + model->symbol_len + model->params_len;
    /* the three ranges lie back to back in the args, as in an entry's data */
    return (sd_model_info){
        .tag = model->tag,
        .format = detect_format(model->params, model->params_len, model->symbol_len),
        .precision = model->precision,
        .bytes = total,
        .digest = digest_bytes(model->synset, (size_t)total),
        .version = version,
        .installed_us = stamp_us,
    };
}

/*
 * Finds tag in a snapshot (serialize_models' format, as a replay base holds it), checking it
 * as restore_models does. Returns 0 with *found and, when found, *info; DR_ECORRUPT.
 */
static int snapshot_find(const sd_categorizer *cat, const uint8_t *bytes, size_t len, uint32_t tag,
                         bool *found, sd_model_info *info) {
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t magic = dr_reader_u32(&reader);
    bool stamped = magic == SNAPSHOT_MAGIC;
    uint32_t count = dr_reader_u32(&reader);
    if (reader.failed || (!stamped && magic != SNAPSHOT_MAGIC_V1))
        return DR_ECORRUPT;
    *found = false;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t entry_tag = dr_reader_u32(&reader);
        (void)dr_reader_u8(&reader); /* format: detected from the bytes, as restore does */
        uint8_t precision = dr_reader_u8(&reader);
        int64_t version = stamped ? (int64_t)dr_reader_u64(&reader) : -1;
        uint64_t installed_us = stamped ? dr_reader_u64(&reader) : 0;
        model_args model = {.tag = entry_tag, .precision = precision};
        model.synset_len = dr_reader_u32(&reader);
        model.symbol_len = dr_reader_u32(&reader);
        model.params_len = dr_reader_u32(&reader);
        uint64_t total = (uint64_t)model.synset_len + model.symbol_len + model.params_len;
        if (reader.failed || total > cat->limits.max_model_bytes || precision > DR_PRECISION_AUTO)
            return DR_ECORRUPT;
        const uint8_t *data = dr_reader_bytes(&reader, (size_t)total);
        if (!data)
            return DR_ECORRUPT;
        if (entry_tag != tag)
            continue;
        model.synset = data;
        model.symbol = data + model.synset_len;
        model.params = model.symbol + model.symbol_len;
        *info = install_info(&model, version, installed_us);
        *found = true;
        return DR_OK;
    }
    return DR_OK;
}

/* Whether a logged call is an ordered install or remove (*is_install says which) of tag. */
static bool logged_call_of_tag(const dr_rpc_logged_call *call, uint32_t tag, bool *is_install) {
    *is_install = call->method_id == dr_rpc_method_id(SD_METHOD_ORDERED_INSTALL);
    if (!*is_install && call->method_id != dr_rpc_method_id(SD_METHOD_ORDERED_REMOVE))
        return false;
    return call->args_len >= 4 && dr_load_u32le(call->args) == tag;
}

int sd_categorizer_model_as_of(sd_categorizer *cat, dr_group *group, uint32_t subgroup,
                               uint32_t tag, int64_t version, sd_model_as_of *out, char *why,
                               size_t cap) {
    memset(out, 0, sizeof *out);
    out->resolved = -1;
    out->removed_version = -1;
    /* downwards: the tag's installs that may have taken effect, newest first, until its last
     * remove (after which the tag was empty) or the start of the log */
    sd_model_info *installs = NULL;
    size_t n_installs = 0, cap_installs = 0, scanned = 0;
    bool removed = false;
    int rc = DR_OK;
    for (int64_t cursor = version; cursor >= 0 && !removed;) {
        if (scanned == SD_AS_OF_MAX_RECORDS) {
            snprintf(why, cap,
                     "more than %u log records lie between version %lld and the last change "
                     "of tag %u before it",
                     SD_AS_OF_MAX_RECORDS, (long long)version, tag);
            rc = DR_ETOOBIG;
            break;
        }
        dr_versioned record = {0};
        rc = dr_group_read_versioned(group, subgroup, DR_READ_AT_OR_BELOW, cursor, &record);
        if (rc == DR_ENOTFOUND) { /* the start of the log */
            rc = DR_OK;
            break;
        }
        if (rc != DR_OK) {
            snprintf(why, cap, "%s", rc == DR_ESTATE ? NOT_DURABLE_TEXT : "cannot read the log");
            break;
        }
        if (scanned++ == 0)
            out->resolved = record.version; /* the newest version <= the one asked */
        dr_rpc_logged_call call;
        bool is_install = false;
        if (dr_rpc_decode_logged_call(record.bytes, record.len, &call) == DR_OK &&
            logged_call_of_tag(&call, tag, &is_install)) {
            model_args model;
            dr_buf ignored = {0};
            if (!is_install) {
                removed = call.args_len == 4; /* a malformed remove had no effect */
                out->removed_version = removed ? record.version : -1;
                out->removed_us = removed ? record.timestamp_us : 0;
            } else if (decode_model_args(cat, call.args, call.args_len, &model, &ignored) ==
                           DR_OK &&
                       model.params_len > 0) { /* else refused by ordered_install: no effect */
                if (n_installs == cap_installs) {
                    size_t grown_cap = cap_installs ? cap_installs * 2 : 4;
                    sd_model_info *grown = realloc(installs, grown_cap * sizeof *grown);
                    if (!grown) {
                        rc = DR_ENOMEM;
                        snprintf(why, cap, "out of memory");
                    } else {
                        installs = grown;
                        cap_installs = grown_cap;
                    }
                }
                if (rc == DR_OK)
                    installs[n_installs++] =
                        install_info(&model, record.version, record.timestamp_us);
            }
            dr_buf_free(&ignored);
        }
        cursor = record.version - 1;
        dr_versioned_clear(&record);
        if (rc != DR_OK)
            break;
    }
    /* the state before those installs: empty after a remove or at the shard's beginning; where
     * the log starts later (a joiner's log, a checkpoint), the tag's entry in the replay base */
    if (rc == DR_OK && !removed) {
        int64_t floor = 0;
        uint8_t *base = NULL;
        size_t base_len = 0;
        rc = dr_group_read_replay_base(group, subgroup, &floor, &base, &base_len);
        if (rc == DR_ENOTFOUND) {
            rc = DR_OK; /* the log holds the shard's whole history */
        } else if (rc != DR_OK) {
            snprintf(why, cap, "cannot read the categorizer's replay base: %s", dr_strerror(rc));
        } else if (version < floor - 1) {
            char asked[48] = "the time asked"; /* a query by time older than the log: -1 */
            if (version >= 0)
                snprintf(asked, sizeof asked, "version %lld", (long long)version);
            snprintf(why, cap,
                     "%s is older than this replica's history, which starts with the state as "
                     "of version %lld (it joined the shard then, or its log was checkpointed)",
                     asked, (long long)(floor - 1));
            rc = DR_ERANGE;
        } else {
            rc = snapshot_find(cat, base, base_len, tag, &out->installed, &out->model);
            if (rc != DR_OK)
                snprintf(why, cap, "the categorizer's replay base is damaged");
        }
        free(base);
    }
    /* upwards: an install took effect only when the tag was empty (ordered_install) */
    for (size_t i = n_installs; rc == DR_OK && i-- > 0;) {
        if (!out->installed) {
            out->installed = true;
            out->model = installs[i];
        }
    }
    free(installs);
    return rc;
}

static int handle_model_as_of(void *ctx, const dr_rpc_call_info *info, const uint8_t *args,
                              size_t len, dr_buf *reply) {
    sd_categorizer *cat = ctx;
    int rc = refuse_if_stopped(cat, reply);
    if (rc != DR_OK)
        return rc;
    dr_reader reader;
    dr_reader_init(&reader, args, len);
    uint8_t kind = dr_reader_u8(&reader);
    uint32_t tag = dr_reader_u32(&reader);
    int64_t key = (int64_t)dr_reader_u64(&reader);
    if (!dr_reader_done(&reader) || kind > SD_AS_OF_TIME || key < 0) {
        dr_buf_put_str(reply, "malformed model_as_of arguments");
        return DR_EINVAL;
    }
    dr_rpc_node *node = atomic_load(&cat->node);
    if (!node) {
        dr_buf_put_str(reply, "categorizer is starting");
        return DR_EAGAIN;
    }
    dr_group *group = dr_rpc_node_group(node);
    sd_model_as_of as_of;
    char why[256] = "";
    int64_t version = key;
    if (kind == SD_AS_OF_TIME) { /* the state after the newest record stamped at or before it */
        dr_versioned record = {0};
        rc = dr_group_read_versioned(group, info->subgroup, DR_READ_BY_TIME, key, &record);
        version = rc == DR_OK ? record.version : -1; /* -1: before the first record */
        dr_versioned_clear(&record);
        if (rc == DR_ENOTFOUND)
            rc = DR_OK;
        else if (rc != DR_OK)
            snprintf(why, sizeof why, "%s",
                     rc == DR_ESTATE ? NOT_DURABLE_TEXT : "cannot read the log");
    }
    if (rc == DR_OK)
        rc = sd_categorizer_model_as_of(cat, group, info->subgroup, tag, version, &as_of, why,
                                        sizeof why);
    if (rc != DR_OK) {
        dr_buf_put_str(reply, why[0] ? why : dr_strerror(rc));
        return rc;
    }
    return model_as_of_reply_encode(reply, &as_of);
}

/* ---- state transfer ---------------------------------------------------------------------- */

static int serialize_models(void *ctx, uint32_t subgroup, dr_buf *out) {
    (void)subgroup;
    sd_categorizer *cat = ctx;
    pthread_mutex_lock(&cat->lock);
    dr_buf_put_u32(out, SNAPSHOT_MAGIC);
    dr_buf_put_u32(out, (uint32_t)cat->count);
    for (size_t i = 0; i < cat->count; i++) {
        const sd_entry *entry = cat->entries[i];
        dr_buf_put_u32(out, entry->tag);
        dr_buf_put_u8(out, (uint8_t)entry->format);
        dr_buf_put_u8(out, entry->precision);
        dr_buf_put_u64(out, (uint64_t)entry->version);
        dr_buf_put_u64(out, entry->installed_us);
        dr_buf_put_u32(out, entry->synset_len);
        dr_buf_put_u32(out, entry->symbol_len);
        dr_buf_put_u32(out, entry->params_len);
        dr_buf_put_bytes(out, entry->data, entry_bytes(entry));
    }
    pthread_mutex_unlock(&cat->lock);
    return out->failed ? DR_ENOMEM : DR_OK;
}

static void release_all(sd_entry **entries, size_t count) {
    for (size_t i = 0; i < count; i++)
        entry_release(entries[i]);
    free(entries);
}

static int restore_models(void *ctx, uint32_t subgroup, const uint8_t *bytes, size_t len) {
    (void)subgroup;
    sd_categorizer *cat = ctx;
    dr_reader reader;
    dr_reader_init(&reader, bytes, len);
    uint32_t magic = dr_reader_u32(&reader);
    bool stamped = magic == SNAPSHOT_MAGIC; /* V1 (a replay base saved before): no stamps */
    if (!stamped && magic != SNAPSHOT_MAGIC_V1)
        return DR_ECORRUPT;
    uint32_t count = dr_reader_u32(&reader);
    if (reader.failed || count > dr_reader_remaining(&reader) / (stamped ? 34u : 18u))
        return DR_ECORRUPT;
    sd_entry **entries = calloc(count ? count : 1, sizeof *entries);
    if (!entries)
        return DR_ENOMEM;
    size_t loaded = 0;
    int rc = DR_OK;
    for (uint32_t i = 0; i < count && rc == DR_OK; i++) {
        uint32_t tag = dr_reader_u32(&reader);
        (void)dr_reader_u8(&reader); /* format: re-detected from the bytes */
        uint8_t precision = dr_reader_u8(&reader);
        int64_t version = stamped ? (int64_t)dr_reader_u64(&reader) : -1;
        uint64_t installed_us = stamped ? dr_reader_u64(&reader) : 0;
        uint32_t synset_len = dr_reader_u32(&reader);
        uint32_t symbol_len = dr_reader_u32(&reader);
        uint32_t params_len = dr_reader_u32(&reader);
        uint64_t total = (uint64_t)synset_len + symbol_len + params_len;
        const uint8_t *data =
            total <= cat->limits.max_model_bytes ? dr_reader_bytes(&reader, total) : NULL;
        if (!data || precision > DR_PRECISION_AUTO || (i > 0 && tag <= entries[i - 1]->tag)) {
            rc = DR_ECORRUPT;
            break;
        }
        entries[i] = entry_new(tag, data, synset_len, data + synset_len, symbol_len,
                               data + synset_len + symbol_len, params_len, precision);
        if (!entries[i]) {
            rc = DR_ENOMEM;
        } else {
            entries[i]->version = version;
            entries[i]->installed_us = installed_us;
            loaded++;
        }
    }
    if (rc == DR_OK && !dr_reader_done(&reader))
        rc = DR_ECORRUPT;
    if (rc != DR_OK) {
        release_all(entries, loaded);
        return rc;
    }
    pthread_mutex_lock(&cat->lock);
    sd_entry **old = cat->entries;
    size_t old_count = cat->count;
    cat->entries = entries;
    cat->count = count;
    cat->cap = count ? count : 1;
    pthread_mutex_unlock(&cat->lock);
    release_all(old, old_count);
    DR_INFO(DR_LOGM_APP, "restored %u models by state transfer", count);
    return DR_OK;
}

static const dr_rpc_method categorizer_methods[] = {
    {SD_METHOD_ORDERED_INSTALL, DR_RPC_ORDERED, handle_ordered_install, DR_RPC_MEMBERS_ONLY},
    {SD_METHOD_ORDERED_REMOVE, DR_RPC_ORDERED, handle_ordered_remove, DR_RPC_MEMBERS_ONLY},
    {SD_METHOD_INSTALL, DR_RPC_P2P, handle_install, DR_RPC_ADMINS},
    {SD_METHOD_REMOVE, DR_RPC_P2P, handle_remove, DR_RPC_ADMINS},
    {SD_METHOD_INFERENCE, DR_RPC_P2P, handle_inference, DR_RPC_CLIENTS},
    {SD_METHOD_LIST_MODELS, DR_RPC_P2P, handle_list_models, DR_RPC_CLIENTS},
    {SD_METHOD_MODEL_AS_OF, DR_RPC_P2P, handle_model_as_of, DR_RPC_CLIENTS},
};

void sd_categorizer_rpc_type(sd_categorizer *cat, dr_rpc_type *type) {
    memset(type, 0, sizeof *type);
    type->name = SD_TYPE_CATEGORIZER_TIER;
    type->methods = categorizer_methods;
    type->num_methods = sizeof categorizer_methods / sizeof *categorizer_methods;
    type->serialize = serialize_models;
    type->restore = restore_models;
    type->ctx = cat;
}
