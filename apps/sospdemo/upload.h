/*
 * Validation and assembly of the function tier's client-streamed uploads (no gRPC, no I/O).
 *
 * A Whatsthis call is a stream of PhotoRequest messages, an InstallModel call a stream of
 * InstallModelRequest messages (sospdemo.proto). Both follow the same rule:
 *
 *   message 1      : metadata (photo: photo_size + tags; model: tag + synset/symbol/params
 *                    sizes), checked against the configured limits before anything is kept;
 *   messages 2..n  : file_data chunks, appended in order; the running total may never exceed
 *                    the announced size;
 *   end of stream  : the total must equal the announced size.
 *
 * Repeated tags in the metadata are merged (sd_dedup_tags) after the max_tags check.
 * Any other shape (data before metadata, a second metadata, a message with neither field, an
 * undecodable message, a size over a limit, too many tags, a short or long total) is refused
 * with a precise one-line message; the function tier answers it with INVALID_ARGUMENT.
 * Memory grows with the bytes actually received (never more than the announced size), so a
 * client cannot make the server allocate by announcing a large size and sending nothing.
 *
 * An sd_upload belongs to one thread at a time.
 */
#ifndef SOSPDEMO_UPLOAD_H
#define SOSPDEMO_UPLOAD_H

#include "derecho/buffer.h"
#include "derecho/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Default limits (used where a configuration gives none). */
#define SD_DEFAULT_MAX_PHOTO_BYTES (16u * 1024u * 1024u)
#define SD_DEFAULT_MAX_MODEL_BYTES (100u * 1024u * 1024u)
#define SD_DEFAULT_MAX_TAGS        64u

/** Which stream an upload assembles. */
typedef enum sd_upload_kind {
    SD_UPLOAD_PHOTO, /**< Whatsthis: PhotoRequest messages */
    SD_UPLOAD_MODEL, /**< InstallModel: InstallModelRequest messages */
} sd_upload_kind;

/** Limits applied to the metadata before any data is accepted. */
typedef struct sd_upload_limits {
    uint64_t max_photo_bytes; /**< largest photo_size accepted (> 0) */
    uint64_t max_model_bytes; /**< largest synset + symbol + params accepted (> 0) */
    uint32_t max_tags;        /**< most tags in one Whatsthis (> 0) */
} sd_upload_limits;

/** One upload in progress. Initialise with sd_upload_init, release with sd_upload_free. */
typedef struct sd_upload {
    sd_upload_kind kind;     /**< photo or model */
    sd_upload_limits limits; /**< copied at init */
    bool have_metadata;      /**< the first message (metadata) was accepted */
    uint32_t *tags;          /**< photo: owned array of n_tags tags */
    size_t n_tags;           /**< photo: number of tags (>= 1 once metadata is in) */
    uint32_t model_tag;      /**< model: the tag to install under */
    uint32_t synset_size;    /**< model: bytes of the synset part */
    uint32_t symbol_size;    /**< model: bytes of the symbol part */
    uint32_t params_size;    /**< model: bytes of the params part */
    uint8_t precision;       /**< model: dr_precision from the metadata (empty: fp32) */
    uint64_t expected_bytes; /**< announced total (photo_size or the sum of the model parts) */
    dr_buf data;             /**< received bytes; max_bytes = expected_bytes */
} sd_upload;

/**
 * Parses an install precision: NULL, "" or "fp32" -> DR_PRECISION_FP32, "bf16", "auto" -> the
 * dr_precision value in *out. Returns 0 or DR_EINVAL (*out untouched).
 */
int sd_precision_parse(const char *text, uint8_t *out);

/** Prepares an empty upload of the given kind. Never fails. */
void sd_upload_init(sd_upload *upload, sd_upload_kind kind, const sd_upload_limits *limits);

/** Frees everything the upload owns; the upload may be initialised again. */
void sd_upload_free(sd_upload *upload);

/**
 * Decodes one serialized request message (len bytes, untrusted) and applies it.
 * Returns 0, or DR_EINVAL / DR_ETOOBIG (err says why: "Whatsthis: ...") for a message the
 * stream rules refuse, or DR_ENOMEM. After an error the upload must not be fed again.
 */
int sd_upload_feed(sd_upload *upload, const uint8_t *msg, size_t len, dr_err *err);

/**
 * Called at the end of the stream: returns 0 when metadata arrived and the received total
 * equals the announced size, else DR_EINVAL with err set.
 */
int sd_upload_finish(const sd_upload *upload, dr_err *err);

/**
 * Removes repeated tags from tags[0..n_tags) in place, keeping each tag's first position (so
 * "1,2,1" asks tag 1 once: one answer, one call to its shard). Returns the new count.
 * Quadratic: callers cap n_tags first (max_tags).
 */
size_t sd_dedup_tags(uint32_t *tags, size_t n_tags);

/** The RPC name of a kind, for messages ("Whatsthis", "InstallModel"). */
const char *sd_upload_kind_name(sd_upload_kind kind);

#endif
