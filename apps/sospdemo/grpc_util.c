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

/* Length of the valid UTF-8 sequence starting at p (1-4), or 0 when it is not valid. */
static size_t utf8_sequence_length(const unsigned char *p) {
    size_t len;
    uint32_t min;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0)
        len = 2, min = 0x80;
    else if ((p[0] & 0xf0) == 0xe0)
        len = 3, min = 0x800;
    else if ((p[0] & 0xf8) == 0xf0)
        len = 4, min = 0x10000;
    else
        return 0;
    uint32_t code = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        code = (code << 6) | (p[i] & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
        return 0; /* overlong, out of range, or a surrogate */
    return len;
}

void sd_utf8_sanitize(char *text) {
    unsigned char *p = (unsigned char *)text;
    while (*p) {
        size_t len = utf8_sequence_length(p);
        if (len == 0)
            *p++ = '?';
        else
            p += len;
    }
}
