/* One client-side gRPC call on the core C API (client_call.h). */
#include "client_call.h"

#include "derecho/error.h"

#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tags of the pluck queue: each batch kind has its own. */
static int tag_send_md, tag_send_msg, tag_close, tag_receive;

static bool run_batch(sd_client_call *c, const grpc_op *ops, size_t n, void *tag) {
    if (grpc_call_start_batch(c->call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return false;
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static int post_receive(sd_client_call *c) {
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[0].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[1].op = GRPC_OP_RECV_MESSAGE;
    ops[1].data.recv_message.recv_message = &c->response;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[2].data.recv_status_on_client.status = &c->status;
    ops[2].data.recv_status_on_client.status_details = &c->status_details;
    if (grpc_call_start_batch(c->call, ops, 3, &tag_receive, NULL) != GRPC_CALL_OK)
        return DR_EIO;
    c->receive_posted = true;
    return DR_OK;
}

grpc_channel *sd_client_channel_create(const char *target) {
    return sd_client_channel_create_tls(target, NULL);
}

grpc_channel *sd_client_channel_create_tls(const char *target, const char *ca_pem) {
    grpc_channel_credentials *creds = ca_pem ? grpc_ssl_credentials_create(ca_pem, NULL, NULL, NULL)
                                             : grpc_insecure_credentials_create();
    if (!creds)
        return NULL;
    grpc_channel *channel = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    return channel;
}

int sd_client_call_open_on(sd_client_call *c, grpc_channel *channel, const char *method,
                           int64_t timeout_ms) {
    return sd_client_call_open_auth(c, channel, method, timeout_ms, NULL);
}

int sd_client_call_open_auth(sd_client_call *c, grpc_channel *channel, const char *method,
                             int64_t timeout_ms, const char *token) {
    memset(c, 0, sizeof(*c));
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    c->status = GRPC_STATUS_UNKNOWN;
    c->status_details = grpc_empty_slice();
    c->channel = channel;
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    if (!c->channel || !c->cq)
        return DR_ENOMEM;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    c->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq,
                                       grpc_slice_from_static_string(method), NULL, deadline, NULL);
    if (!c->call)
        return DR_ENOMEM;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_metadata auth;
    char *value = NULL;
    if (token) {
        size_t len = strlen("Bearer ") + strlen(token) + 1;
        value = malloc(len);
        if (!value)
            return DR_ENOMEM;
        snprintf(value, len, "Bearer %s", token);
        memset(&auth, 0, sizeof auth);
        auth.key = grpc_slice_from_static_string("authorization");
        auth.value = grpc_slice_from_copied_string(value);
        op.data.send_initial_metadata.count = 1;
        op.data.send_initial_metadata.metadata = &auth;
    }
    run_batch(c, &op, 1, &tag_send_md); /* on failure the status will say why */
    if (token) {
        grpc_slice_unref(auth.value);
        memset(value, 0, strlen(value));
        free(value);
    }
    return post_receive(c);
}

int sd_client_call_open(sd_client_call *c, const char *target, const char *method,
                        int64_t timeout_ms) {
    grpc_channel *channel = sd_client_channel_create(target);
    int rc = sd_client_call_open_on(c, channel, method, timeout_ms);
    c->channel = channel;
    c->owns_channel = true;
    return rc;
}

bool sd_client_call_send(sd_client_call *c, grpc_byte_buffer *message) {
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = message;
    return c->call && run_batch(c, &op, 1, &tag_send_msg);
}

void sd_client_call_finish(sd_client_call *c) {
    if (c->finished || !c->call)
        return;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    run_batch(c, &op, 1, &tag_close); /* fails harmlessly when the call is already over */
    if (c->receive_posted)
        grpc_completion_queue_pluck(c->cq, &tag_receive, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    c->receive_posted = false;
    c->finished = true;
}

void sd_client_call_close(sd_client_call *c) {
    if (c->call) {
        if (c->receive_posted) {
            grpc_call_cancel(c->call, NULL);
            grpc_completion_queue_pluck(c->cq, &tag_receive, gpr_inf_future(GPR_CLOCK_REALTIME),
                                        NULL);
        }
        grpc_call_unref(c->call);
    }
    if (c->response)
        grpc_byte_buffer_destroy(c->response);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->status_details);
    if (c->cq) {
        grpc_completion_queue_shutdown(c->cq);
        grpc_event ev;
        do { /* drain: every batch was plucked, so this sees the shutdown at once */
            ev = grpc_completion_queue_pluck(c->cq, &tag_close, gpr_inf_future(GPR_CLOCK_REALTIME),
                                             NULL);
        } while (ev.type != GRPC_QUEUE_SHUTDOWN);
        grpc_completion_queue_destroy(c->cq);
    }
    if (c->channel && c->owns_channel)
        grpc_channel_destroy(c->channel);
    memset(c, 0, sizeof(*c));
}
