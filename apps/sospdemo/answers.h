/*
 * What a classification answers, as the user sees it: the seed's description texts (the gRPC
 * wire carries only them), and their kind, which our own interfaces turn into errors (HTTP
 * status codes, the client's exit code, /metrics counters).
 *
 * A description is either a label (the synset line of the arg-max class) or one of the error
 * texts below; a request with several tags joins the tags' descriptions with " or ". Labels
 * never start with "Cannot ", so the kind can be read back from the text alone.
 */
#ifndef SOSPDEMO_ANSWERS_H
#define SOSPDEMO_ANSWERS_H

#include <stdint.h>

/** Answers (seed texts where the seed had one). */
#define SD_DESC_NO_MODEL         "Cannot find model for photo tag."
#define SD_DESC_LOAD_FAIL        "Cannot load model for photo tag."
#define SD_DESC_BAD_PHOTO_PREFIX "Cannot classify photo"

/** The kind of one tag's answer. */
typedef enum sd_answer_kind {
    SD_ANSWER_OK = 0,        /**< a label */
    SD_ANSWER_NO_MODEL = 1,  /**< no model under the tag (HTTP 404) */
    SD_ANSWER_LOAD_FAIL = 2, /**< the model cannot be loaded (HTTP 422) */
    SD_ANSWER_BAD_PHOTO = 3, /**< the photo cannot be decoded or classified (HTTP 415) */
} sd_answer_kind;

/** The most classes an answer lists on request (HTTP ?top=K). */
#define SD_MAX_TOP 10u

/** One class of a top-k list. */
typedef struct sd_class {
    float score; /**< its probability */
    char *label; /**< its synset line (malloc'd) */
} sd_class;

/** One tag's answer (the HTTP API's per-tag result). */
typedef struct sd_tag_answer {
    uint32_t tag;             /**< the tag asked */
    sd_answer_kind kind;      /**< what the answer is */
    float score;              /**< probability of the label (0 for errors) */
    char *desc;               /**< the description (malloc'd) */
    uint32_t n_top;           /**< classes in top (0 unless asked for, and for errors) */
    sd_class top[SD_MAX_TOP]; /**< the best classes, best first (labels malloc'd) */
} sd_tag_answer;

/** Frees an answer's strings and zeroes its counts (the tag and kind stay). */
void sd_tag_answer_clear(sd_tag_answer *answer);

/** The first error kind among desc's " or "-joined parts; SD_ANSWER_OK if none. NULL: OK. */
sd_answer_kind sd_answer_kind_of(const char *desc);

/** A short name for metrics and JSON: "ok", "no_model", "cannot_load_model", "not_an_image". */
const char *sd_answer_kind_name(sd_answer_kind kind);

#endif
