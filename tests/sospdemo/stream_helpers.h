/*
 * Test helpers: serialized request messages (well-formed or not) and a raw client that sends
 * a hand-made stream of them on one call and collects the status and reply.
 */
#ifndef TESTS_SOSPDEMO_STREAM_HELPERS_H
#define TESTS_SOSPDEMO_STREAM_HELPERS_H

#include <stddef.h>
#include <stdint.h>

/** One serialized message (owned bytes). */
typedef struct packed_msg {
    uint8_t *data;
    size_t len;
} packed_msg;

packed_msg photo_metadata_msg(uint32_t photo_size, const uint32_t *tags, size_t n_tags);
packed_msg photo_data_msg(const uint8_t *bytes, size_t len);
packed_msg model_metadata_msg(uint32_t tag, uint32_t synset, uint32_t symbol, uint32_t params);
/* The same with the precision field set (NULL: unset). */
packed_msg model_metadata_precision_msg(uint32_t tag, uint32_t synset, uint32_t symbol,
                                        uint32_t params, const char *precision);
packed_msg model_data_msg(const uint8_t *bytes, size_t len);
packed_msg remove_msg(uint32_t tag);
packed_msg raw_msg(const void *bytes, size_t len);
void packed_msg_free(packed_msg *msg);

/** The outcome of one raw call. */
typedef struct call_result {
    int status;       /* grpc_status_code */
    char *details;    /* status message (owned, "" if none) */
    char *desc;       /* PhotoReply.desc when the method is Whatsthis and a reply came */
    int error_code;   /* ModelReply.error_code */
    char *error_desc; /* ModelReply.error_desc when a ModelReply came */
    int sent;         /* messages gRPC accepted before the call ended */
} call_result;

/**
 * Calls method (full path) on target, sends msgs[0..n) (freeing them), half-closes and waits.
 * Requires grpc_init. Fills *result (free with call_result_free).
 */
void raw_call(const char *target, const char *method, packed_msg *msgs, size_t n,
              call_result *result);
void call_result_free(call_result *result);

/** Fills buf with a deterministic pattern derived from seed. */
void fill_pattern(uint8_t *buf, size_t len, unsigned seed);

#endif
