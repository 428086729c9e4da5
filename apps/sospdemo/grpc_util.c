/* Helpers between protobuf-c messages and gRPC core byte buffers (grpc_util.h). */
#include "grpc_util.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include <stdlib.h>
#include <string.h>

grpc_byte_buffer *sd_grpc_buffer_from_message(const ProtobufCMessage *message) {
    size_t len = protobuf_c_message_get_packed_size(message);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(message, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

grpc_byte_buffer *sd_grpc_buffer_from_bytes(const void *bytes, size_t len) {
    grpc_slice slice = grpc_slice_from_copied_buffer(bytes, len);
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

grpc_slice sd_grpc_buffer_flatten(grpc_byte_buffer *buffer, int *ok) {
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, buffer)) {
        *ok = 0;
        return grpc_empty_slice();
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    *ok = 1;
    return all;
}

const char *sd_grpc_status_name(grpc_status_code status) {
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((int)status < 0 || (size_t)status >= sizeof(names) / sizeof(names[0]))
        return "UNKNOWN_STATUS";
    return names[status];
}

char *sd_grpc_slice_to_string(grpc_slice slice) {
    size_t len = GRPC_SLICE_LENGTH(slice);
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    memcpy(text, GRPC_SLICE_START_PTR(slice), len);
    text[len] = '\0';
    return text;
}
