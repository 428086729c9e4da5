/*
 * One client-side gRPC call on the core C API, for client-streaming and unary methods:
 * open (sends initial metadata and posts the receive of reply and status), send messages one
 * at a time (each waits until gRPC has taken it: flow control), then finish (half-close and
 * wait for the status). Used by the command-line client and by tests that send hand-made,
 * possibly malformed streams. A call belongs to one thread; gRPC must be initialised.
 */
#ifndef SOSPDEMO_CLIENT_CALL_H
#define SOSPDEMO_CLIENT_CALL_H

#include <grpc/grpc.h>

#include <stdbool.h>
#include <stdint.h>

/** A call in progress and, after sd_client_call_finish, its outcome. */
typedef struct sd_client_call {
    grpc_channel *channel;           /**< channel to the target */
    bool owns_channel;               /**< channel was created by open (else borrowed) */
    grpc_completion_queue *cq;       /**< owned pluck queue */
    grpc_call *call;                 /**< the call */
    grpc_metadata_array initial_md;  /**< server's initial metadata */
    grpc_metadata_array trailing_md; /**< server's trailing metadata */
    grpc_byte_buffer *response;      /**< the reply message, NULL if none (owned) */
    grpc_status_code status;         /**< final status (valid after finish) */
    grpc_slice status_details;       /**< final status message (valid after finish) */
    bool receive_posted;             /**< the reply/status batch is in flight */
    bool finished;                   /**< the status has arrived */
} sd_client_call;

/**
 * Opens a call of method (full path) on target ("host:port", insecure) with a deadline of
 * timeout_ms from now. Returns 0 or DR_ENOMEM / DR_EIO. Connection failures show up later
 * as the call's status (UNAVAILABLE). Call sd_client_call_close even after an error.
 */
int sd_client_call_open(sd_client_call *c, const char *target, const char *method,
                        int64_t timeout_ms);

/**
 * Like sd_client_call_open, on an existing channel (borrowed: it must outlive the call), so
 * that many calls share one connection.
 */
int sd_client_call_open_on(sd_client_call *c, grpc_channel *channel, const char *method,
                           int64_t timeout_ms);

/** Creates an insecure channel to target ("host:port"); destroy with grpc_channel_destroy. */
grpc_channel *sd_client_channel_create(const char *target);

/**
 * Creates a channel to target over TLS that trusts the CA ca_pem (PEM text, borrowed during the
 * call), or a plain one when ca_pem is NULL. The server's certificate must name the target's
 * host (IP or DNS subject alternative name). NULL on failure.
 */
grpc_channel *sd_client_channel_create_tls(const char *target, const char *ca_pem);

/**
 * Like sd_client_call_open_on, and sends `authorization: Bearer <token>` in the call's initial
 * metadata when token is not NULL (borrowed during the call).
 */
int sd_client_call_open_auth(sd_client_call *c, grpc_channel *channel, const char *method,
                             int64_t timeout_ms, const char *token);

/**
 * Sends one message (the buffer stays the caller's). Returns true when gRPC accepted it,
 * false when the call is over (the server finished it early, the deadline passed, the
 * connection failed): stop sending and call sd_client_call_finish to learn why.
 */
bool sd_client_call_send(sd_client_call *c, grpc_byte_buffer *message);

/** Half-closes (if not yet) and waits for the reply and the status. Idempotent. */
void sd_client_call_finish(sd_client_call *c);

/** Frees everything (cancels the call if it is still running). Safe after a failed open. */
void sd_client_call_close(sd_client_call *c);

#endif
