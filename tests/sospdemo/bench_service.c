/*
 * bench_service: Whatsthis through a running cluster against the engine's own time for the
 * same model and photo (docs/perf/service.md).
 *
 *   bench_service ADDRESS TAG PHOTO SYNSET SYMBOL PARAMS [calls (500)] [clients (4)]
 *
 * 1. engine: loads the model in this process (dr_model_load_mxnet, seed preset, as the
 *    categorizer does) and times dr_model_classify on the photo `calls` times (one thread);
 * 2. service: `calls` sequential Whatsthis calls of the photo with TAG (already installed) on
 *    one channel, as the sospdemo client streams it (metadata, then 32 KiB chunks): p50/p99;
 * 3. throughput: `clients` threads, each on its own channel, calls / clients calls each.
 * The service's overhead is service p50 - engine p50. Every answer is checked: it must name the
 * engine's top class; a wrong or failed one is counted and makes the exit status 1.
 */
#include "client_call.h"
#include "derecho/infer.h"
#include "grpc_util.h"
#include "sospdemo.pb-c.h"
#include "stream_helpers.h"

#include <grpc/grpc.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CHUNK = 32 * 1024 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int read_file(const char *path, uint8_t **data, size_t *len) {
    FILE *in = fopen(path, "rb");
    if (!in)
        return -1;
    fseek(in, 0, SEEK_END);
    *len = (size_t)ftell(in);
    fseek(in, 0, SEEK_SET);
    *data = malloc(*len ? *len : 1);
    size_t got = fread(*data, 1, *len, in);
    fclose(in);
    return got == *len ? 0 : -1;
}

typedef struct stream {
    grpc_byte_buffer **messages;
    size_t count;
} stream;

static stream make_stream(const uint8_t *photo, size_t photo_bytes, uint32_t tag) {
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
    return s;
}

/* The answer every call must get (the engine's top class, without a WordNet id), set once. */
static char g_expected[256];

/* Whether the call's reply is a PhotoReply whose description names the expected class. */
static bool answer_ok(sd_client_call *call) {
    if (call->status != GRPC_STATUS_OK || !call->response)
        return false;
    int ok = 0;
    grpc_slice all = sd_grpc_buffer_flatten(call->response, &ok);
    Sospdemo__PhotoReply *reply =
        ok ? sospdemo__photo_reply__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all))
           : NULL;
    grpc_slice_unref(all);
    bool right = reply && reply->desc && strstr(reply->desc, g_expected) != NULL;
    static atomic_bool told; /* one example per run is enough (client threads race here) */
    if (!right && !atomic_exchange(&told, true))
        fprintf(stderr, "bench_service: wrong answer '%s' (want '%s')\n",
                reply && reply->desc ? reply->desc : "(none)", g_expected);
    if (reply)
        sospdemo__photo_reply__free_unpacked(reply, NULL);
    return right;
}

static int one_call(grpc_channel *channel, const stream *s) {
    sd_client_call call;
    sd_client_call_open_on(&call, channel, SD_METHOD_WHATSTHIS, 60000);
    for (size_t i = 0; i < s->count; i++) {
        grpc_byte_buffer *copy = grpc_byte_buffer_copy(s->messages[i]);
        bool sent = sd_client_call_send(&call, copy);
        grpc_byte_buffer_destroy(copy);
        if (!sent)
            break;
    }
    sd_client_call_finish(&call);
    bool ok = answer_ok(&call);
    sd_client_call_close(&call);
    return ok ? 0 : -1;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *samples, int n, double elapsed) {
    qsort(samples, (size_t)n, sizeof(double), compare_double);
    printf("  %-9s %d calls, p50 %.3f ms, p99 %.3f ms, %.1f calls/s\n", what, n,
           samples[n / 2] * 1e3, samples[n * 99 / 100] * 1e3, n / elapsed);
}

typedef struct worker {
    pthread_t thread;
    const char *address;
    const stream *s;
    int calls, failures;
} worker;

static void *client_thread(void *arg) {
    worker *w = arg;
    grpc_channel *channel = sd_client_channel_create(w->address);
    for (int i = 0; i < w->calls; i++)
        w->failures += one_call(channel, w->s) != 0;
    grpc_channel_destroy(channel);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: bench_service ADDRESS TAG PHOTO SYNSET SYMBOL PARAMS [calls] "
                        "[clients]\n");
        return 2;
    }
    const char *address = argv[1];
    uint32_t tag = (uint32_t)strtoul(argv[2], NULL, 10);
    int calls = argc > 7 ? atoi(argv[7]) : 500;
    int clients = argc > 8 ? atoi(argv[8]) : 4;
    uint8_t *files[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++) {
        if (read_file(argv[3 + i], &files[i], &lens[i]) != 0) {
            fprintf(stderr, "cannot read %s\n", argv[3 + i]);
            return 1;
        }
    }
    double *samples = calloc((size_t)calls, sizeof(double));

    dr_model *model = NULL;
    dr_err err = {0};
    if (dr_model_load_mxnet(files[1], lens[1], files[2], lens[2], files[3], lens[3], NULL, &model,
                            &err) != 0) {
        fprintf(stderr, "cannot load the model: %s\n", err.msg);
        return 1;
    }
    dr_class_score top;
    size_t n = 0;
    for (int i = 0; i < 10; i++)
        dr_model_classify(model, files[0], lens[0], &top, 1, &n, &err);
    printf("photo %s (%zu bytes), answer '%s'\n", argv[3], lens[0], top.label);
    /* "n02099601 golden retriever": the service answers with the words */
    const char *words = top.label;
    if (words[0] == 'n' && strlen(words) > 10 && words[9] == ' ')
        words += 10;
    snprintf(g_expected, sizeof g_expected, "%s", words);
    double start = now_s();
    for (int i = 0; i < calls; i++) {
        double t0 = now_s();
        dr_model_classify(model, files[0], lens[0], &top, 1, &n, &err);
        samples[i] = now_s() - t0;
    }
    report("engine", samples, calls, now_s() - start);
    double engine_p50 = samples[calls / 2];
    dr_model_free(model);

    grpc_init();
    stream s = make_stream(files[0], lens[0], tag);
    grpc_channel *channel = sd_client_channel_create(address);
    for (int i = 0; i < 20; i++)
        one_call(channel, &s);
    int failures = 0;
    start = now_s();
    for (int i = 0; i < calls; i++) {
        double t0 = now_s();
        failures += one_call(channel, &s) != 0;
        samples[i] = now_s() - t0;
    }
    report("service", samples, calls, now_s() - start);
    printf("  overhead at p50: %.3f ms (service p50 - engine p50), %d failed\n",
           (samples[calls / 2] - engine_p50) * 1e3, failures);
    grpc_channel_destroy(channel);

    worker *workers = calloc((size_t)clients, sizeof(worker));
    start = now_s();
    for (int i = 0; i < clients; i++) {
        workers[i] = (worker){.address = address, .s = &s, .calls = calls / clients};
        pthread_create(&workers[i].thread, NULL, client_thread, &workers[i]);
    }
    int sequential_failures = failures;
    failures = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(workers[i].thread, NULL);
        failures += workers[i].failures;
    }
    double elapsed = now_s() - start;
    printf("  %d clients: %.1f calls/s, %d failed\n", clients,
           (calls / clients * clients) / elapsed, failures);
    for (size_t i = 0; i < s.count; i++)
        grpc_byte_buffer_destroy(s.messages[i]);
    free(s.messages);
    free(workers);
    free(samples);
    for (int i = 0; i < 4; i++)
        free(files[i]);
    grpc_shutdown();
    return failures || sequential_failures ? 1 : 0; /* a wrong or failed answer fails the run */
}
