/*
 * The seed-compatible command-line client (contract and output format: client.h).
 *
 * Wire use: Whatsthis sends PhotoRequest{metadata{photo_size, tags}} then the photo as
 * PhotoRequest{file_data} chunks of SD_CLIENT_CHUNK_BYTES; InstallModel sends
 * InstallModelRequest{metadata{tag, synset_size, symbol_size, params_size}} then synset,
 * symbol and params back to back in chunks; RemoveModel sends one RemoveModelRequest.
 */
#include "client.h"

#include "answers.h"

#include "client_call.h"
#include "derecho/error.h"
#include "grpc_util.h"
#include "sospdemo.pb-c.h"
#include "upload.h"
#include "usage.h"

#include <grpc/grpc.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Call deadlines unless $SOSPDEMO_CLIENT_TIMEOUT_MS says otherwise: a classification or a
 * removal answers in seconds; an install uploads up to 100 MiB and loads the model. */
enum { MAX_CLIENT_TAGS = 1024, DEFAULT_TIMEOUT_MS = 60000, DEFAULT_INSTALL_TIMEOUT_MS = 600000 };

/* The credentials of this run (sd_client_main_secure); NULL fields: plain TCP, no token. */
static const sd_credentials *g_creds;

/* ---------------------------------------------------------------- argument parsing */

int sd_parse_tags(const char *text, uint32_t *tags, size_t max_tags, size_t *n_tags_out) {
    size_t n = 0;
    const char *p = text;
    *n_tags_out = 0;
    for (;;) {
        if (*p < '0' || *p > '9')
            return DR_EINVAL; /* empty item, sign, space or garbage */
        uint64_t value = 0;
        while (*p >= '0' && *p <= '9') {
            value = value * 10 + (uint64_t)(*p - '0');
            if (value > UINT32_MAX)
                return DR_ERANGE;
            p++;
        }
        if (n == max_tags)
            return DR_ERANGE;
        tags[n++] = (uint32_t)value;
        if (*p == '\0')
            break;
        if (*p != ',')
            return DR_EINVAL;
        p++;
    }
    *n_tags_out = n;
    return DR_OK;
}

static int parse_one_tag(const char *text, uint32_t *tag) {
    size_t n = 0;
    return sd_parse_tags(text, tag, 1, &n);
}

/* ---------------------------------------------------------------- input files */

/* A file opened and checked before anything is sent. */
typedef struct input_file {
    const char *path; /* as given */
    const char *role; /* "photo", "synset", ... for messages */
    int fd;
    uint32_t size_bytes;
} input_file;

static int open_input(input_file *f, const char *path, const char *role) {
    struct stat st;
    f->path = path;
    f->role = role;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        fprintf(stderr, "cannot open %s file '%s': %s\n", role, path, strerror(errno));
        return DR_EIO;
    }
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "%s file '%s' is not a regular file\n", role, path);
        return DR_EINVAL;
    }
    if ((uint64_t)st.st_size > UINT32_MAX) {
        fprintf(stderr, "%s file '%s' is too large (%" PRIu64 " bytes, at most %" PRIu32 ")\n",
                role, path, (uint64_t)st.st_size, UINT32_MAX);
        return DR_ETOOBIG;
    }
    f->size_bytes = (uint32_t)st.st_size;
    return DR_OK;
}

static void close_inputs(input_file *files, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (files[i].fd >= 0)
            close(files[i].fd);
}

/* ---------------------------------------------------------------- progress bar */

typedef struct progress {
    bool enabled;      /* stdout is a terminal */
    uint64_t total;    /* bytes to send */
    uint64_t sent;     /* bytes sent so far */
    int shown_percent; /* last percentage drawn, -1 before the first */
} progress;

static void progress_init(progress *p, uint64_t total) {
    p->enabled = isatty(STDOUT_FILENO) != 0;
    p->total = total;
    p->sent = 0;
    p->shown_percent = -1;
}

static void progress_advance(progress *p, uint64_t bytes) {
    enum { WIDTH = 40 };
    p->sent += bytes;
    if (!p->enabled || p->total == 0)
        return;
    int percent = (int)(p->sent * 100 / p->total);
    if (percent == p->shown_percent)
        return;
    p->shown_percent = percent;
    char bar[WIDTH + 1];
    int filled = percent * WIDTH / 100;
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\rUploading [%s] %3d%% %" PRIu64 "/%" PRIu64 " bytes", bar, percent, p->sent,
            p->total);
    if (p->sent >= p->total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---------------------------------------------------------------- streaming */

typedef enum chunk_kind { CHUNK_PHOTO, CHUNK_MODEL } chunk_kind;

/* Wraps bytes in a PhotoRequest or InstallModelRequest file_data message. */
static grpc_byte_buffer *data_message(chunk_kind kind, uint8_t *bytes, size_t len) {
    ProtobufCBinaryData data = {len, bytes};
    if (kind == CHUNK_PHOTO) {
        Sospdemo__PhotoRequest req = SOSPDEMO__PHOTO_REQUEST__INIT;
        req.photo_chunk_case = SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_FILE_DATA;
        req.file_data = data;
        return sd_grpc_buffer_from_message(&req.base);
    }
    Sospdemo__InstallModelRequest req = SOSPDEMO__INSTALL_MODEL_REQUEST__INIT;
    req.model_chunk_case = SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_FILE_DATA;
    req.file_data = data;
    return sd_grpc_buffer_from_message(&req.base);
}

static bool send_and_free(sd_client_call *call, grpc_byte_buffer *message) {
    if (!message)
        return false;
    bool sent = sd_client_call_send(call, message);
    grpc_byte_buffer_destroy(message);
    return sent;
}

/*
 * Streams one file in chunks. Returns 0; DR_ECLOSED when the call ended early (the status
 * says why); DR_EIO when the file could not be read or changed size (message printed).
 */
static int stream_file(sd_client_call *call, chunk_kind kind, const input_file *f, progress *prog) {
    static uint8_t chunk[SD_CLIENT_CHUNK_BYTES];
    uint64_t done = 0;
    while (done < f->size_bytes) {
        ssize_t got = read(f->fd, chunk, sizeof(chunk));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            fprintf(stderr, "cannot read %s file '%s': %s\n", f->role, f->path,
                    got < 0 ? strerror(errno) : "it became shorter while sending");
            return DR_EIO;
        }
        size_t len = (size_t)got;
        if (len > f->size_bytes - done)
            len = (size_t)(f->size_bytes - done); /* file grew: send the announced size */
        if (!send_and_free(call, data_message(kind, chunk, len)))
            return DR_ECLOSED;
        done += len;
        progress_advance(prog, len);
    }
    return DR_OK;
}

/* ---------------------------------------------------------------- replies */

/* $SOSPDEMO_CLIENT_TIMEOUT_MS, or the call's default. */
static int64_t timeout_ms(int64_t default_ms) {
    const char *text = getenv("SOSPDEMO_CLIENT_TIMEOUT_MS");
    if (text && *text) {
        char *end = NULL;
        long long value = strtoll(text, &end, 10);
        if (*end == '\0' && value > 0)
            return value;
    }
    return default_ms;
}

/* Prints why a call failed (stderr) when its status is not OK. Returns true for OK. */
static bool status_ok(const sd_client_call *call) {
    if (call->status == GRPC_STATUS_OK)
        return true;
    char *details = sd_grpc_slice_to_string(call->status_details);
    fprintf(stderr, "RPC failed: %s (%d): %s\n", sd_grpc_status_name(call->status),
            (int)call->status, details ? details : "");
    free(details);
    bool tls = g_creds && g_creds->tls_ca_pem;
    if (call->status == GRPC_STATUS_UNAVAILABLE)
        fprintf(stderr, "%s\n",
                tls ? "(is the node up, and does its certificate come from the CA of "
                      "[SOSPDEMO] tls_ca_file?)"
                    : "(is the node up? a node with TLS needs the client run from the "
                      "cluster's client/ folder, whose derecho.cfg names the CA)");
    else if (call->status == GRPC_STATUS_UNAUTHENTICATED ||
             call->status == GRPC_STATUS_PERMISSION_DENIED)
        fprintf(stderr, "(the client sends the token of [SOSPDEMO] admin_token_file / "
                        "inference_token_file of ./derecho.cfg or $DERECHO_CONF_FILE)\n");
    return false;
}

/* Unpacks the reply message; NULL (message printed) if there is none or it is malformed. */
static ProtobufCMessage *unpack_reply(sd_client_call *call,
                                      const ProtobufCMessageDescriptor *descriptor) {
    if (!call->response) {
        fprintf(stderr, "RPC failed: the server sent no reply message\n");
        return NULL;
    }
    int ok = 0;
    grpc_slice all = sd_grpc_buffer_flatten(call->response, &ok);
    ProtobufCMessage *msg = ok ? protobuf_c_message_unpack(descriptor, NULL, GRPC_SLICE_LENGTH(all),
                                                           GRPC_SLICE_START_PTR(all))
                               : NULL;
    grpc_slice_unref(all);
    if (!msg)
        fprintf(stderr, "RPC failed: the reply is not a valid %s\n", descriptor->name);
    return msg;
}

static int print_photo_reply(sd_client_call *call) {
    if (!status_ok(call))
        return SD_EXIT_FAILED;
    ProtobufCMessage *msg = unpack_reply(call, &sospdemo__photo_reply__descriptor);
    if (!msg)
        return SD_EXIT_FAILED;
    const char *desc = ((Sospdemo__PhotoReply *)msg)->desc;
    printf("photo description:%s\n", desc);
    sd_answer_kind kind = sd_answer_kind_of(desc);
    if (kind != SD_ANSWER_OK)
        fprintf(stderr, "inference failed (%s): %s\n", sd_answer_kind_name(kind), desc);
    protobuf_c_message_free_unpacked(msg, NULL);
    return kind == SD_ANSWER_OK ? SD_EXIT_OK : SD_EXIT_FAILED;
}

static int print_model_reply(sd_client_call *call) {
    if (!status_ok(call))
        return SD_EXIT_FAILED;
    ProtobufCMessage *msg = unpack_reply(call, &sospdemo__model_reply__descriptor);
    if (!msg)
        return SD_EXIT_FAILED;
    Sospdemo__ModelReply *reply = (Sospdemo__ModelReply *)msg;
    printf("return code:%" PRId32 "\ndescription:%s\n", reply->error_code, reply->error_desc);
    int code = reply->error_code == 0 ? SD_EXIT_OK : SD_EXIT_FAILED;
    protobuf_c_message_free_unpacked(msg, NULL);
    return code;
}

/* Finishes a streamed call: on a local read error cancel, else half-close and print. */
static int conclude(sd_client_call *call, int stream_rc, int (*print)(sd_client_call *)) {
    if (stream_rc == DR_EIO)
        return SD_EXIT_FAILED; /* sd_client_call_close cancels the call */
    sd_client_call_finish(call);
    return print(call);
}

/* ---------------------------------------------------------------- commands */

/* Opens a call on its own channel: TLS with the configured CA, the token the method needs. */
static int open_call(sd_client_call *call, const char *target, const char *method, int64_t timeout,
                     bool admin) {
    const char *ca = g_creds ? g_creds->tls_ca_pem : NULL;
    const char *token = NULL;
    if (g_creds)
        token = admin
                    ? g_creds->admin_token
                    : (g_creds->inference_token ? g_creds->inference_token : g_creds->admin_token);
    grpc_channel *channel = sd_client_channel_create_tls(target, ca);
    int rc = sd_client_call_open_auth(call, channel, method, timeout, token);
    call->channel = channel;
    call->owns_channel = true;
    return rc;
}

static int run_inference(const char *target, const uint32_t *tags, size_t n_tags,
                         input_file *photo) {
    sd_client_call call;
    int exit_code = SD_EXIT_FAILED;
    if (open_call(&call, target, SD_METHOD_WHATSTHIS, timeout_ms(DEFAULT_TIMEOUT_MS), false) !=
        DR_OK) {
        fprintf(stderr, "cannot open a call to %s\n", target);
        goto out;
    }
    Sospdemo__PhotoRequest__PhotoMetadata md = SOSPDEMO__PHOTO_REQUEST__PHOTO_METADATA__INIT;
    md.photo_size = photo->size_bytes;
    md.n_tags = n_tags;
    md.tags = (uint32_t *)tags;
    Sospdemo__PhotoRequest req = SOSPDEMO__PHOTO_REQUEST__INIT;
    req.photo_chunk_case = SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_METADATA;
    req.metadata = &md;
    progress prog;
    progress_init(&prog, photo->size_bytes);
    int rc = send_and_free(&call, sd_grpc_buffer_from_message(&req.base)) ? DR_OK : DR_ECLOSED;
    if (rc == DR_OK)
        rc = stream_file(&call, CHUNK_PHOTO, photo, &prog);
    exit_code = conclude(&call, rc, print_photo_reply);
out:
    sd_client_call_close(&call);
    return exit_code;
}

static int run_install(const char *target, uint32_t tag, input_file files[3],
                       const char *precision) {
    sd_client_call call;
    int exit_code = SD_EXIT_FAILED;
    if (open_call(&call, target, SD_METHOD_INSTALL_MODEL, timeout_ms(DEFAULT_INSTALL_TIMEOUT_MS),
                  true) != DR_OK) {
        fprintf(stderr, "cannot open a call to %s\n", target);
        goto out;
    }
    Sospdemo__InstallModelRequest__ModelMetadata md =
        SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_METADATA__INIT;
    md.tag = tag;
    md.synset_size = files[0].size_bytes;
    md.symbol_size = files[1].size_bytes;
    md.params_size = files[2].size_bytes;
    if (precision)
        md.precision = (char *)precision;
    Sospdemo__InstallModelRequest req = SOSPDEMO__INSTALL_MODEL_REQUEST__INIT;
    req.model_chunk_case = SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_METADATA;
    req.metadata = &md;
    progress prog;
    progress_init(&prog, (uint64_t)md.synset_size + md.symbol_size + md.params_size);
    int rc = send_and_free(&call, sd_grpc_buffer_from_message(&req.base)) ? DR_OK : DR_ECLOSED;
    for (int i = 0; i < 3 && rc == DR_OK; i++)
        rc = stream_file(&call, CHUNK_MODEL, &files[i], &prog);
    exit_code = conclude(&call, rc, print_model_reply);
out:
    sd_client_call_close(&call);
    return exit_code;
}

static int run_remove(const char *target, uint32_t tag) {
    sd_client_call call;
    int exit_code = SD_EXIT_FAILED;
    if (open_call(&call, target, SD_METHOD_REMOVE_MODEL, timeout_ms(DEFAULT_TIMEOUT_MS), true) !=
        DR_OK) {
        fprintf(stderr, "cannot open a call to %s\n", target);
        goto out;
    }
    Sospdemo__RemoveModelRequest req = SOSPDEMO__REMOVE_MODEL_REQUEST__INIT;
    req.tag = tag;
    send_and_free(&call, sd_grpc_buffer_from_message(&req.base));
    exit_code = conclude(&call, DR_OK, print_model_reply);
out:
    sd_client_call_close(&call);
    return exit_code;
}

/* ---------------------------------------------------------------- main */

static int usage_error(char **argv, const char *why) {
    if (why)
        fprintf(stderr, "%s\n", why);
    sd_print_usage(stdout, argv[0]);
    return SD_EXIT_USAGE;
}

static int cmd_inference(int argc, char **argv) {
    static uint32_t tags[MAX_CLIENT_TAGS];
    size_t n_tags = 0;
    if (argc != 6)
        return usage_error(argv, "inference needs <tags> <photo>");
    if (sd_parse_tags(argv[4], tags, MAX_CLIENT_TAGS, &n_tags) != DR_OK)
        return usage_error(argv, "tags must be decimal numbers separated by commas, like 1,2,3");
    printf("Use function tier node: %s\n", argv[2]);
    fflush(stdout);
    input_file photo = {.fd = -1};
    int exit_code = SD_EXIT_FAILED;
    if (open_input(&photo, argv[5], "photo") == DR_OK)
        exit_code = run_inference(argv[2], tags, n_tags, &photo);
    close_inputs(&photo, 1);
    return exit_code;
}

static int cmd_install(int argc, char **argv) {
    uint32_t tag = 0;
    uint8_t precision = 0;
    if (argc != 8 && argc != 9)
        return usage_error(argv,
                           "installmodel needs <tag> <synset> <symbol> <params> [fp32|bf16|auto]");
    if (parse_one_tag(argv[4], &tag) != DR_OK)
        return usage_error(argv, "the tag must be one decimal number");
    if (argc == 9 && sd_precision_parse(argv[8], &precision) != DR_OK)
        return usage_error(argv, "the precision must be fp32, bf16 or auto");
    printf("Use function tier node: %s\n", argv[2]);
    fflush(stdout);
    input_file files[3] = {{.fd = -1}, {.fd = -1}, {.fd = -1}};
    static const char *const roles[3] = {"synset", "symbol", "params"};
    int rc = DR_OK;
    for (int i = 0; i < 3 && rc == DR_OK; i++)
        rc = open_input(&files[i], argv[5 + i], roles[i]);
    int exit_code =
        rc == DR_OK ? run_install(argv[2], tag, files, argc == 9 ? argv[8] : NULL) : SD_EXIT_FAILED;
    close_inputs(files, 3);
    return exit_code;
}

static int cmd_remove(int argc, char **argv) {
    uint32_t tag = 0;
    if (argc != 5)
        return usage_error(argv, "removemodel needs <tag>");
    if (parse_one_tag(argv[4], &tag) != DR_OK)
        return usage_error(argv, "the tag must be one decimal number");
    printf("Use function tier node: %s\n", argv[2]);
    fflush(stdout);
    return run_remove(argv[2], tag);
}

int sd_client_main(int argc, char **argv) {
    return sd_client_main_secure(argc, argv, NULL);
}

int sd_client_main_secure(int argc, char **argv, const sd_credentials *creds) {
    g_creds = creds;
    if (argc < 3)
        return usage_error(argv, "client needs <function-tier-node> and an action "
                                 "(inference, installmodel, removemodel)");
    if (argc < 4)
        return usage_error(argv, "client needs an action after the node: inference, "
                                 "installmodel or removemodel");
    const char *command = argv[3];
    int (*run)(int, char **) = NULL;
    if (strcmp(command, "inference") == 0)
        run = cmd_inference;
    else if (strcmp(command, "installmodel") == 0)
        run = cmd_install;
    else if (strcmp(command, "removemodel") == 0)
        run = cmd_remove;
    if (!run) {
        fprintf(stderr, "unknown action '%s' (inference, installmodel or removemodel)\n", command);
        return usage_error(argv, NULL);
    }
    grpc_init();
    int exit_code = run(argc, argv);
    grpc_shutdown();
    return exit_code;
}
