/*
 * Small helpers shared by the function tier's server and client on the gRPC core C API:
 * protobuf-c messages to and from gRPC byte buffers, status names, method paths.
 */
#ifndef SOSPDEMO_GRPC_UTIL_H
#define SOSPDEMO_GRPC_UTIL_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include <stddef.h>
#include <stdint.h>

/** Full method paths of service sospdemo.FunctionTierService. */
#define SD_METHOD_WHATSTHIS     "/sospdemo.FunctionTierService/Whatsthis"
#define SD_METHOD_INSTALL_MODEL "/sospdemo.FunctionTierService/InstallModel"
#define SD_METHOD_REMOVE_MODEL  "/sospdemo.FunctionTierService/RemoveModel"

/**
 * Serializes a protobuf-c message into a new gRPC byte buffer (the caller destroys it with
 * grpc_byte_buffer_destroy). Returns NULL when out of memory.
 */
grpc_byte_buffer *sd_grpc_buffer_from_message(const ProtobufCMessage *message);

/** Wraps raw bytes (copied) in a new gRPC byte buffer. Returns NULL when out of memory. */
grpc_byte_buffer *sd_grpc_buffer_from_bytes(const void *bytes, size_t len);

/**
 * Returns the contents of a received byte buffer as one slice (decompressed if needed); the
 * caller releases it with grpc_slice_unref. On failure returns an empty slice and sets *ok 0.
 */
grpc_slice sd_grpc_buffer_flatten(grpc_byte_buffer *buffer, int *ok);

/** The canonical name of a gRPC status code ("INVALID_ARGUMENT"); "UNKNOWN_STATUS" if none. */
const char *sd_grpc_status_name(grpc_status_code status);

/** Copies a slice into a new NUL-terminated string (malloc'd), NULL when out of memory. */
char *sd_grpc_slice_to_string(grpc_slice slice);

/**
 * Replaces, in place, every byte that is not part of a valid UTF-8 sequence with '?', so the
 * text can travel in a proto3 string (clients in other languages reject invalid UTF-8).
 */
void sd_utf8_sanitize(char *text);

#endif
