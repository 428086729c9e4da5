/*
 * bench_function_tier: the gRPC front end's own cost. An in-process function tier whose
 * backend answers at once, and clients on shared channels sending Whatsthis streams as the
 * sospdemo client does (metadata, then 32 KiB chunks): latency p50/p99 for one client and
 * throughput for several.
 *
 *   bench_function_tier [calls (default 2000)] [photo_bytes (default 100000)] [clients (4)]
 */
#include "client_call.h"
#include "function_tier.h"
#include "grpc_util.h"
#include "stream_helpers.h"

#include <grpc/grpc.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ADDRESS "127.0.0.1:24501"
enum { CHUNK = 32 * 1024 };

static int instant_whatsthis(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                             size_t photo_size_bytes, char **desc_out, dr_err *err) {
    (void)user, (void)tags, (void)n_tags, (void)photo, (void)photo_size_bytes, (void)err;
    *desc_out = strdup("rose");
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The messages of one Whatsthis stream, serialized once and reused. */
typedef struct stream {
    grpc_byte_buffer **messages;
    size_t count;
} stream;

static stream make_stream(size_t photo_bytes) {
    uint8_t *photo = malloc(photo_bytes);
    fill_pattern(photo, photo_bytes, 1);
    const uint32_t tag = 1;
    stream s = {calloc(2 + photo_bytes / CHUNK, sizeof(grpc_byte_buffer *)), 0};
    packed_msg md = photo_metadata_msg((uint32_t)photo_bytes, &tag, 1);
    s.messages[s.count++] = sd_grpc_buffer_from_bytes(md.data, md.len);
    packed_msg_free(&md);
    for (size_t off = 0; off < photo_bytes; off += CHUNK) {
        packed_msg chunk =
            photo_data_msg(photo + off, photo_bytes - off < CHUNK ? photo_bytes - off : CHUNK);
        s.messages[s.count++] = sd_grpc_buffer_from_bytes(chunk.data, chunk.len);
        packed_msg_free(&chunk);
    }
    free(photo);
    return s;
}

static int one_call(grpc_channel *channel, const stream *s) {
    sd_client_call call;
    sd_client_call_open_on(&call, channel, SD_METHOD_WHATSTHIS, 10000);
    for (size_t i = 0; i < s->count; i++) {
        grpc_byte_buffer *copy = grpc_byte_buffer_copy(s->messages[i]);
        bool sent = sd_client_call_send(&call, copy);
        grpc_byte_buffer_destroy(copy);
        if (!sent)
            break;
    }
    sd_client_call_finish(&call);
    int ok = call.status == GRPC_STATUS_OK;
    sd_client_call_close(&call);
    return ok ? 0 : -1;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct worker {
    pthread_t thread;
    const stream *s;
    int calls;
    int failures;
} worker;

static void *client_thread(void *arg) {
    worker *w = arg;
    grpc_channel *channel = sd_client_channel_create(ADDRESS);
    for (int i = 0; i < w->calls; i++)
        w->failures += one_call(channel, w->s) != 0;
    grpc_channel_destroy(channel);
    return NULL;
}

int main(int argc, char **argv) {
    int calls = argc > 1 ? atoi(argv[1]) : 2000;
    size_t photo_bytes = argc > 2 ? (size_t)atol(argv[2]) : 100000;
    int clients = argc > 3 ? atoi(argv[3]) : 4;
    grpc_init();
    sd_backend backend = {.whatsthis = instant_whatsthis};
    sd_function_tier_config config = {.listen_address = ADDRESS};
    sd_function_tier *server = NULL;
    dr_err err;
    if (sd_function_tier_start(&config, &backend, &server, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    stream s = make_stream(photo_bytes);
    grpc_channel *channel = sd_client_channel_create(ADDRESS);
    for (int i = 0; i < 50; i++)
        one_call(channel, &s); /* warm up: connection, allocator */
    double *latency = calloc((size_t)calls, sizeof(double));
    int failures = 0;
    double start = now_s();
    for (int i = 0; i < calls; i++) {
        double t0 = now_s();
        failures += one_call(channel, &s) != 0;
        latency[i] = now_s() - t0;
    }
    double elapsed = now_s() - start;
    grpc_channel_destroy(channel);
    qsort(latency, (size_t)calls, sizeof(double), compare_double);
    printf("Whatsthis, %zu-byte photo in %zu messages, instant backend, 1 client:\n", photo_bytes,
           s.count);
    printf("  %d calls, p50 %.3f ms, p99 %.3f ms, %.0f calls/s, %d failed\n", calls,
           latency[calls / 2] * 1e3, latency[calls * 99 / 100] * 1e3, calls / elapsed, failures);

    worker *workers = calloc((size_t)clients, sizeof(worker));
    start = now_s();
    for (int i = 0; i < clients; i++) {
        workers[i] = (worker){.s = &s, .calls = calls / clients};
        pthread_create(&workers[i].thread, NULL, client_thread, &workers[i]);
    }
    failures = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(workers[i].thread, NULL);
        failures += workers[i].failures;
    }
    elapsed = now_s() - start;
    printf("  %d clients: %.0f calls/s, %d failed\n", clients,
           (calls / clients * clients) / elapsed, failures);
    free(workers);
    free(latency);
    for (size_t i = 0; i < s.count; i++)
        grpc_byte_buffer_destroy(s.messages[i]);
    free(s.messages);
    sd_function_tier_stop(server);
    grpc_shutdown();
    return 0;
}
