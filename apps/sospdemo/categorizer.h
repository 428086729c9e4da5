/*
 * The categorizer tier: the replicated object type CATEGORIZER_TIER (rpc.h) that stores the
 * installed models of its shard and classifies photos with them.
 *
 * Replicated state: tag -> model (synset, symbol, params, format, precision). The format is decided
 * at install time: params starting with the MXNet NDArray-list magic (0x112, u64 LE) are MXNet
 * (synset + symbol JSON + params), otherwise an empty symbol means ONNX (synset = labels file,
 * params = the .onnx bytes); anything else is stored as MXNet and fails to load later.
 *
 * Methods (names below; every integer little-endian):
 *   ordered_install  ORDERED  args: model args         reply: model reply
 *   ordered_remove   ORDERED  args: u32 tag            reply: model reply
 *   install          P2P      args: model args         reply: model reply (the seed's flow: the
 *                             member multicasts ordered_install in its shard and combines every
 *                             replica's reply: 0 only if all replicas answered 0). Before the
 *                             multicast the member loads the model once (parse, shapes, the
 *                             engine's limits; loading is deterministic, so every replica would
 *                             agree): a model that cannot load is refused with DR_ECORRUPT and
 *                             the loader's reason, and nothing is multicast
 *   remove           P2P      args: u32 tag            reply: model reply (via ordered_remove)
 *   inference        P2P      args: u32 tag, u32 n, n photo bytes, then optionally u32 top_k
 *                             (the classes to list, 0..SD_MAX_TOP; absent: 0)
 *                             reply: inference reply: u8 kind (sd_answer_kind), u32 score
 *                             (IEEE float bits), u32 n + n bytes of description (UTF-8): the
 *                             synset line of the arg-max class, "Cannot find model for photo
 *                             tag.", "Cannot load model for photo tag." or "Cannot classify
 *                             photo: <reason>."; then u32 count, count x (u32 score bits, u32
 *                             n + n bytes of label): the top_k best classes, best first
 *   list_models      P2P      args: none               reply: u32 count, count x (u32 tag,
 *                             u8 format, u8 precision, u64 bytes, u64 digest, i64 version,
 *                             u64 installed_us) in tag order
 *   model_as_of      P2P      args: u8 by (0 version, 1 time), u32 tag, i64 key (a version,
 *                             or µs since the epoch; >= 0)
 *                             reply: u8 installed, i64 resolved (the newest logged version <=
 *                             the version asked, or of the newest record stamped <= the time
 *                             asked; -1: none), then installed: u32 tag, u8 format, u8
 *                             precision, u64 bytes, u64 digest, i64 version, u64 installed_us
 *                             (the install record that produced the model); not installed: i64
 *                             removed_version, u64 removed_us (the remove that ended the tag's
 *                             last model; -1 and 0: none, never installed by then). Computed
 *                             from this replica's durable log (sd_categorizer_model_as_of).
 *                             Errors: DR_ESTATE not durable, DR_ERANGE older than this replica's
 *                             history, DR_ETOOBIG too many records to search
 *   A handler that fails (a nonzero status: DR_EINVAL for malformed args, DR_ETOOBIG,
 *   DR_EAGAIN while starting, DR_ECLOSED once the group stopped) replies, instead, with its
 *   reason as u32 n + n bytes (dr_buf_put_str), or with no bytes.
 *
 *   model args : u32 tag, u32 synset_len, u32 symbol_len, u32 params_len, then the three
 *                byte ranges back to back (total checked against max_model_bytes), then
 *                optionally u8 precision (dr_precision: 0 fp32, 1 bf16, 2 auto; absent: fp32;
 *                anything else is refused). Every replica loads the model's engine with it
 *   model reply: u32 error_code (int32: 0 success), u32 n, n bytes of description
 *   snapshot (state transfer, replay base): u32 magic "SDC2", u32 count, count x (u32 tag,
 *                u8 format, u8 precision, i64 version, u64 installed_us, u32 synset_len,
 *                u32 symbol_len, u32 params_len, bytes), in tag order; "SDCT" (no version and
 *                time) is still read, from replay bases saved before them
 *
 * Engines (dr_model) are built lazily on the first inference of a tag, cached, not cached
 * when loading fails (the next inference tries again), and dropped on remove. Inference runs
 * on the rpc worker threads, several at once; a model removed during an inference is freed
 * when the last inference using it returns.
 */
#ifndef SOSPDEMO_CATEGORIZER_H
#define SOSPDEMO_CATEGORIZER_H

#include "answers.h"
#include "derecho/buffer.h"
#include "derecho/error.h"
#include "derecho/rpc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The layout type names, in layout order (SEED-COMPAT). */
#define SD_TYPE_FUNCTION_TIER    "FUNCTION_TIER"
#define SD_TYPE_CATEGORIZER_TIER "CATEGORIZER_TIER"

/** Method names of CATEGORIZER_TIER. */
#define SD_METHOD_ORDERED_INSTALL "ordered_install"
#define SD_METHOD_ORDERED_REMOVE  "ordered_remove"
#define SD_METHOD_INSTALL         "install"
#define SD_METHOD_REMOVE          "remove"
#define SD_METHOD_INFERENCE       "inference"
#define SD_METHOD_LIST_MODELS     "list_models"
#define SD_METHOD_MODEL_AS_OF     "model_as_of"

/** Fixed bytes in front of a model's data in the model args (4 x u32). */
#define SD_MODEL_ARGS_HEADER_BYTES 16u
/** Fixed bytes around a photo in the inference args (tag, length, top_k). */
#define SD_INFERENCE_ARGS_HEADER_BYTES 12u

/** Answers (seed texts where the seed had one; the inference ones are in answers.h). */
#define SD_DESC_INSTALL_OK "install model successfully."
#define SD_DESC_REMOVE_OK  "remove model successfully."

/** Stored model formats. */
typedef enum sd_model_format {
    SD_FORMAT_MXNET = 0, /**< synset + symbol JSON + params */
    SD_FORMAT_ONNX = 1,  /**< labels (synset) + .onnx (params), empty symbol */
} sd_model_format;

/** Name of a format ("mxnet", "onnx"). */
const char *sd_model_format_name(sd_model_format format);

/** Name of a dr_precision value ("fp32", "bf16", "auto"; anything else "fp32"). Static. */
const char *sd_precision_name(uint8_t precision);

/** Limits of a categorizer (0: defaults SD_DEFAULT_MAX_MODEL_BYTES / _PHOTO_BYTES). */
typedef struct sd_categorizer_limits {
    uint64_t max_model_bytes; /**< synset + symbol + params of one model */
    uint64_t max_photo_bytes; /**< one photo */
    int ordered_timeout_ms;   /**< install/remove: wait for the shard's replies (default 120 s) */
    /* Dynamic batching of one model's photos (Triton's max_batch_size / max_queue_delay_us):
     * photos that arrive while batches of that model run are classified together, at most
     * batch_workers batches at once. */
    uint32_t max_batch_size;     /**< photos per batch; 0 = SD_DEFAULT_MAX_BATCH; 1 = off */
    uint32_t max_queue_delay_us; /**< a batch waits this long to fill up (default 0) */
    uint32_t batch_workers;      /**< concurrent batches per model; 0 = online CPUs */
} sd_categorizer_limits;

#define SD_DEFAULT_MAX_BATCH 8u

/** One replica's models and engines (opaque). */
typedef struct sd_categorizer sd_categorizer;

/** Creates an empty categorizer. Returns 0 and *out, or DR_ENOMEM. */
int sd_categorizer_create(const sd_categorizer_limits *limits, sd_categorizer **out);

/** Frees the models and engines. No handler may be running (destroy the rpc node first). */
void sd_categorizer_destroy(sd_categorizer *cat);

/**
 * Gives the categorizer the node it serves on (needed by the p2p install/remove, which
 * multicast in the shard). Until it is set those methods answer DR_EAGAIN. Thread-safe.
 */
void sd_categorizer_set_node(sd_categorizer *cat, dr_rpc_node *node);

/** Fills *type with the CATEGORIZER_TIER type (methods, serialize, restore, ctx = cat). */
void sd_categorizer_rpc_type(sd_categorizer *cat, dr_rpc_type *type);

/** Number of installed models. Thread-safe. */
size_t sd_categorizer_model_count(sd_categorizer *cat);

/**
 * Sets *precision_out to the dr_precision in effect (fp32 or bf16; auto resolved) of tag's
 * engine. Returns 0, or DR_ENOTFOUND when the tag is not installed or its engine is not built
 * yet (engines are built on the first inference). Thread-safe.
 */
int sd_categorizer_engine_precision(sd_categorizer *cat, uint32_t tag, int *precision_out);

/** Engine loads attempted by inferences so far (a failed load is not retried before its
 * back-off expires, 10 s doubling to 10 min). Thread-safe. */
size_t sd_categorizer_load_attempts(sd_categorizer *cat);

/** Batches run by inferences so far and the photos in them (photos / batches = mean batch
 * size). Thread-safe. */
void sd_categorizer_batch_stats(sd_categorizer *cat, size_t *batches, size_t *photos);

/* ---- wire helpers (shared with the function tier and tests) ------------------------------ */

/**
 * Appends an inference reply (see above) with n_top classes of top (may be NULL when 0).
 * Returns 0 or DR_ETOOBIG / DR_ENOMEM.
 */
int sd_inference_reply_encode(dr_buf *out, sd_answer_kind kind, float score, const char *desc,
                              const sd_class *top, uint32_t n_top);

/**
 * Decodes an inference reply into *answer (desc and labels malloc'd: sd_tag_answer_clear; tag
 * left as is). Returns 0, DR_EPROTO (malformed; nothing to free) or DR_ENOMEM.
 */
int sd_inference_reply_decode(const uint8_t *bytes, size_t len, sd_tag_answer *answer);

/**
 * Appends the optional precision byte to model args just encoded by sd_model_args_encode
 * (leave it out for fp32). Returns 0, DR_EINVAL (not a dr_precision) or DR_ETOOBIG.
 */
int sd_model_args_add_precision(dr_buf *out, uint8_t precision);

/** Appends model args to *out. Returns 0 or DR_ETOOBIG / DR_ENOMEM (out's limit). */
int sd_model_args_encode(dr_buf *out, uint32_t tag, const uint8_t *synset, size_t synset_bytes,
                         const uint8_t *symbol, size_t symbol_bytes, const uint8_t *params,
                         size_t params_bytes);

/** Appends inference args (tag + photo) to *out. */
int sd_inference_args_encode(dr_buf *out, uint32_t tag, const uint8_t *photo, size_t photo_bytes,
                             uint32_t top_k);

/** Appends a model reply. */
int sd_model_reply_encode(dr_buf *out, int32_t error_code, const char *desc);

/**
 * Decodes a model reply: *code_out and *desc_out (malloc'd, NUL-terminated; free it).
 * Returns 0, DR_EPROTO for malformed bytes, DR_ENOMEM.
 */
int sd_model_reply_decode(const uint8_t *bytes, size_t len, int32_t *code_out, char **desc_out);

/** One entry of a list_models reply. */
typedef struct sd_model_info {
    uint32_t tag;
    sd_model_format format;
    uint8_t precision; /**< dr_precision given at install (0 fp32, 1 bf16, 2 auto) */
    uint64_t bytes;    /**< synset + symbol + params */
    uint64_t digest;   /**< FNV-1a 64 over the three ranges (replicas must agree) */
    int64_t version;   /**< the install's version in its shard ((vid << 32) | seq); -1:
                            unknown (restored from a snapshot saved before versions were kept) */
    uint64_t
        installed_us; /**< the install call's timestamp, µs since the epoch (the caller's
                           clock, carried by the call: the same at every replica); 0: unknown */
} sd_model_info;

/** How a model_as_of query names the past state. */
typedef enum sd_as_of_kind {
    SD_AS_OF_VERSION = 0, /**< the state after the newest logged version <= key */
    SD_AS_OF_TIME = 1,    /**< the state after the newest record stamped <= key (µs) */
} sd_as_of_kind;

/** Records of its log one model_as_of reads at most (each one disk read). */
#define SD_AS_OF_MAX_RECORDS 4096u

/** A model_as_of answer: a tag's model as the shard's state was at a past version or time. */
typedef struct sd_model_as_of {
    int64_t resolved;        /**< the newest version <= the query in the answering replica's
                                  log (-1: none there) */
    bool installed;          /**< a model was installed under the tag then (in `model`) */
    sd_model_info model;     /**< installed: the model; version / installed_us are those of
                                  its install record */
    int64_t removed_version; /**< not installed: the remove that ended the tag's last model
                                  (-1: none, nothing was installed under it by then) */
    uint64_t removed_us;     /**< that remove's log stamp (0: none) */
} sd_model_as_of;

/** Appends model_as_of args. Returns 0, DR_EINVAL (negative key, bad kind), DR_ENOMEM. */
int sd_model_as_of_args_encode(dr_buf *out, uint32_t tag, sd_as_of_kind kind, int64_t key);

/** Decodes a model_as_of reply into *out. Returns 0 or DR_EPROTO (malformed). */
int sd_model_as_of_reply_decode(const uint8_t *bytes, size_t len, sd_model_as_of *out);

/**
 * The model of `tag` as this replica's shard state was at `version` (the state after the
 * newest logged version <= version; -1: before any record), rebuilt from the node's durable
 * log of `subgroup` (include/derecho/durable.h): reads the log downwards from `version` until
 * the tag's last remove or the start of the log (at most SD_AS_OF_MAX_RECORDS records), then
 * applies the tag's installs upwards with the rules of ordered_install (an install of a taken
 * tag, an empty or malformed one had no effect); where the log does not start at the shard's
 * beginning (a joiner's log, a checkpointed one) the replay base supplies the state before it.
 * Fills *out (out->resolved: the newest logged version <= `version`). Returns 0; DR_ESTATE (the
 * subgroup is not durable here); DR_ERANGE (`version` is older than this replica's history: below
 * its replay base's floor - 1); DR_ETOOBIG (more than SD_AS_OF_MAX_RECORDS records to read);
 * DR_ECORRUPT, DR_EIO, DR_ENOMEM from the log or the base. `why` receives the reason of an error.
 * Blocks on disk reads; any thread but the delivery thread (p2p worker threads call it). Reads only
 * the log: the categorizer's table is not touched.
 */
int sd_categorizer_model_as_of(sd_categorizer *cat, dr_group *group, uint32_t subgroup,
                               uint32_t tag, int64_t version, sd_model_as_of *out, char *why,
                               size_t cap);

/**
 * Decodes a list_models reply into *infos_out (malloc'd array of *count_out; free it).
 * Returns 0, DR_EPROTO, DR_ENOMEM.
 */
int sd_model_list_decode(const uint8_t *bytes, size_t len, sd_model_info **infos_out,
                         size_t *count_out);

#endif
