/* Test helpers: hand-made request messages and a raw gRPC client (stream_helpers.h). */
#include "stream_helpers.h"

#include "client_call.h"
#include "grpc_util.h"
#include "sospdemo.pb-c.h"

#include <stdlib.h>
#include <string.h>

static packed_msg pack(const ProtobufCMessage *message) {
    packed_msg out;
    out.len = protobuf_c_message_get_packed_size(message);
    out.data = malloc(out.len ? out.len : 1);
    protobuf_c_message_pack(message, out.data);
    return out;
}

packed_msg photo_metadata_msg(uint32_t photo_size, const uint32_t *tags, size_t n_tags) {
    Sospdemo__PhotoRequest__PhotoMetadata md = SOSPDEMO__PHOTO_REQUEST__PHOTO_METADATA__INIT;
    md.photo_size = photo_size;
    md.n_tags = n_tags;
    md.tags = (uint32_t *)tags;
    Sospdemo__PhotoRequest req = SOSPDEMO__PHOTO_REQUEST__INIT;
    req.photo_chunk_case = SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_METADATA;
    req.metadata = &md;
    return pack(&req.base);
}

packed_msg photo_data_msg(const uint8_t *bytes, size_t len) {
    Sospdemo__PhotoRequest req = SOSPDEMO__PHOTO_REQUEST__INIT;
    req.photo_chunk_case = SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_FILE_DATA;
    req.file_data.data = (uint8_t *)bytes;
    req.file_data.len = len;
    return pack(&req.base);
}

packed_msg model_metadata_msg(uint32_t tag, uint32_t synset, uint32_t symbol, uint32_t params) {
    return model_metadata_precision_msg(tag, synset, symbol, params, NULL);
}

packed_msg model_metadata_precision_msg(uint32_t tag, uint32_t synset, uint32_t symbol,
                                        uint32_t params, const char *precision) {
    Sospdemo__InstallModelRequest__ModelMetadata md =
        SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_METADATA__INIT;
    if (precision)
        md.precision = (char *)precision;
    md.tag = tag;
    md.synset_size = synset;
    md.symbol_size = symbol;
    md.params_size = params;
    Sospdemo__InstallModelRequest req = SOSPDEMO__INSTALL_MODEL_REQUEST__INIT;
    req.model_chunk_case = SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_METADATA;
    req.metadata = &md;
    return pack(&req.base);
}

packed_msg model_data_msg(const uint8_t *bytes, size_t len) {
    Sospdemo__InstallModelRequest req = SOSPDEMO__INSTALL_MODEL_REQUEST__INIT;
    req.model_chunk_case = SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_FILE_DATA;
    req.file_data.data = (uint8_t *)bytes;
    req.file_data.len = len;
    return pack(&req.base);
}

packed_msg remove_msg(uint32_t tag) {
    Sospdemo__RemoveModelRequest req = SOSPDEMO__REMOVE_MODEL_REQUEST__INIT;
    req.tag = tag;
    return pack(&req.base);
}

packed_msg raw_msg(const void *bytes, size_t len) {
    packed_msg out = {malloc(len ? len : 1), len};
    if (len)
        memcpy(out.data, bytes, len);
    return out;
}

void packed_msg_free(packed_msg *msg) {
    free(msg->data);
    msg->data = NULL;
    msg->len = 0;
}

static void read_reply(sd_client_call *call, const char *method, call_result *result) {
    int ok = 0;
    grpc_slice all = sd_grpc_buffer_flatten(call->response, &ok);
    const uint8_t *bytes = GRPC_SLICE_START_PTR(all);
    size_t len = GRPC_SLICE_LENGTH(all);
    if (ok && strcmp(method, SD_METHOD_WHATSTHIS) == 0) {
        Sospdemo__PhotoReply *reply = sospdemo__photo_reply__unpack(NULL, len, bytes);
        if (reply) {
            result->desc = strdup(reply->desc);
            sospdemo__photo_reply__free_unpacked(reply, NULL);
        }
    } else if (ok) {
        Sospdemo__ModelReply *reply = sospdemo__model_reply__unpack(NULL, len, bytes);
        if (reply) {
            result->error_code = reply->error_code;
            result->error_desc = strdup(reply->error_desc);
            sospdemo__model_reply__free_unpacked(reply, NULL);
        }
    }
    grpc_slice_unref(all);
}

void raw_call(const char *target, const char *method, packed_msg *msgs, size_t n,
              call_result *result) {
    memset(result, 0, sizeof(*result));
    sd_client_call call;
    sd_client_call_open(&call, target, method, 10000);
    bool sending = true;
    for (size_t i = 0; i < n; i++) {
        if (sending) {
            grpc_byte_buffer *buffer = sd_grpc_buffer_from_bytes(msgs[i].data, msgs[i].len);
            sending = sd_client_call_send(&call, buffer);
            grpc_byte_buffer_destroy(buffer);
            result->sent += sending;
        }
        packed_msg_free(&msgs[i]);
    }
    sd_client_call_finish(&call);
    result->status = call.status;
    result->details = sd_grpc_slice_to_string(call.status_details);
    if (call.response)
        read_reply(&call, method, result);
    sd_client_call_close(&call);
}

void call_result_free(call_result *result) {
    free(result->details);
    free(result->desc);
    free(result->error_desc);
    memset(result, 0, sizeof(*result));
}

void fill_pattern(uint8_t *buf, size_t len, unsigned seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}
