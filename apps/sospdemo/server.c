/*
 * `sospdemo server`: one node of the photo-identification service (docs/sospdemo.md).
 *
 * Reads derecho.cfg from the working directory (DERECHO_CONF_FILE names another file;
 * --SECTION/key=value arguments override it), builds the seed's layout (FUNCTION_TIER then
 * CATEGORIZER_TIER, flexible even shards from their [SUBGROUP/...] profiles), starts a
 * dr_rpc_node serving the categorizer type, and waits for the first view. A node in the
 * function tier then starts the gRPC server on local_ip:(function_tier_base_port + local_id)
 * (28000 + id by default) and the HTTP API on local_ip:(http_base_port + local_id) (18000 + id;
 * http_base_port = 0 turns HTTP off), both in [SOSPDEMO]. It prints the seed's lines and
 * serves until ENTER on stdin, SIGINT or SIGTERM (end of input alone does not stop it, so it
 * can run in the background with stdin from /dev/null). Stopping: HTTP and gRPC first (their
 * calls finish or are cancelled), then the node leaves the group.
 *
 * A node in the function tier of its first view starts serving at once (the seed's behaviour).
 * A node that was unassigned (a spare, scripts/gen-cluster.sh --spares) and that a later view
 * puts into the function tier, because a function-tier node failed or left, starts the gRPC
 * server and the HTTP API then: view upcalls wake the main thread through a pipe. (A spare that
 * refills a categorizer shard needs nothing here: it receives the shard's models by state
 * transfer before it serves.)
 */
#include "server.h"

#include "app_config.h"
#include "categorizer.h"
#include "derecho/log.h"
#include "derecho/rpc.h"
#include "function_backend.h"
#include "function_tier.h"
#include "http_api.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { FUNCTION_SUBGROUP = 0, CATEGORIZER_SUBGROUP = 1 };

/* Framing the rpc layer may add inside the configured payload limits (kept free). */
#define RPC_FRAMING_RESERVE_BYTES 64u

typedef struct server_state {
    dr_config *config;
    int signal_fd;
    sd_categorizer *categorizer;
    dr_rpc_node *node;
    sd_service *service;
    sd_function_tier *grpc;
    sd_http_api *http;
    sd_credentials credentials; /* TLS and tokens from [SOSPDEMO] (fields NULL when unset) */
    uint32_t local_id;
    char local_ip[64];
    int view_fd; /* read end of the view-upcall pipe */
} server_state;

static int g_view_pipe_write = -1;

/* View upcall (delivery thread): wakes the main thread, which checks its role. */
static void on_view_installed(void *ctx, const dr_group_view *view) {
    (void)ctx, (void)view;
    unsigned char byte = 1;
    ssize_t ignored = write(g_view_pipe_write, &byte, 1); /* non-blocking: a full pipe is awake */
    (void)ignored;
}

static int build_spec(const dr_config *config, dr_layout_spec *spec) {
    static const char *const names[2] = {SD_TYPE_FUNCTION_TIER, SD_TYPE_CATEGORIZER_TIER};
    memset(spec, 0, sizeof *spec);
    spec->num_types = 2;
    for (int i = 0; i < 2; i++) {
        snprintf(spec->types[i].name, sizeof spec->types[i].name, "%s", names[i]);
        spec->types[i].num_subgroups = 1;
        dr_err err = {0};
        if (dr_group_policy_from_config(config, names[i], DR_MODE_ORDERED, &spec->types[i].policy,
                                        &err) != DR_OK) {
            fprintf(stderr, "sospdemo server: %s\n", err.msg);
            return 1;
        }
    }
    return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

static uint64_t minus_reserve(uint64_t limit, uint64_t header) {
    uint64_t reserve = header + RPC_FRAMING_RESERVE_BYTES;
    return limit > reserve ? limit - reserve : 1;
}

/* The service's size limits from the configuration (docs/sospdemo.md "Limits"). */
static void service_limits(const dr_config *config, uint64_t *max_model_bytes,
                           uint64_t *max_photo_bytes) {
    uint64_t p2p_request = 10240, payload = 10240;
    dr_config_get_u64(config, "DERECHO", "max_p2p_request_payload_size", &p2p_request);
    dr_config_subgroup_u64(config, SD_TYPE_CATEGORIZER_TIER, "max_payload_size", &payload);
    *max_model_bytes = minus_reserve(min_u64(p2p_request, payload), SD_MODEL_ARGS_HEADER_BYTES);
    *max_model_bytes = min_u64(*max_model_bytes, UINT32_MAX);
    *max_photo_bytes = minus_reserve(p2p_request, SD_INFERENCE_ARGS_HEADER_BYTES);
    *max_photo_bytes = min_u64(*max_photo_bytes, SD_DEFAULT_MAX_PHOTO_BYTES);
}

static int config_u32(const dr_config *config, const char *key, uint32_t *out) {
    return dr_config_get_u32(config, "SOSPDEMO", key, out);
}

/* The write end of the stop pipe; the signal handler writes the signal number to it. */
static int g_stop_pipe_write = -1;

static void on_stop_signal(int signo) {
    unsigned char byte = (unsigned char)signo;
    ssize_t ignored = write(g_stop_pipe_write, &byte, 1); /* async-signal-safe */
    (void)ignored;
}

/*
 * Routes SIGINT/SIGTERM to a pipe (returns its read end). A handler, not a blocked mask plus
 * signalfd: libraries start threads before main (OpenBLAS's pool), and a process signal may
 * be delivered to any of them.
 */
static int install_stop_signals(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    g_stop_pipe_write = fds[1];
    struct sigaction action = {.sa_handler = on_stop_signal};
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
    return fds[0];
}

/* True when a stop signal arrived (consumes it); waits up to timeout_ms. */
static bool stop_signalled(int signal_fd, int timeout_ms) {
    struct pollfd fd = {.fd = signal_fd, .events = POLLIN};
    if (poll(&fd, 1, timeout_ms) <= 0)
        return false;
    unsigned char signo = 0;
    if (read(signal_fd, &signo, 1) != 1)
        return false;
    fprintf(stderr, "sospdemo server: %s received, stopping\n", strsignal(signo));
    return true;
}

/* Waits for the first view, or a stop signal (returns 1), or an error (returns -1). */
static int wait_first_view(server_state *state) {
    dr_group *group = dr_rpc_node_group(state->node);
    for (;;) {
        int rc = dr_group_wait_view(group, 0, 250);
        if (rc == DR_OK)
            return 0;
        if (rc != DR_ETIMEDOUT) {
            fprintf(stderr, "sospdemo server: cannot join the group: %s\n", dr_strerror(rc));
            return -1;
        }
        if (stop_signalled(state->signal_fd, 0))
            return 1;
    }
}

static int start_function_tier(server_state *state) {
    uint32_t base_port = SD_FUNCTION_TIER_BASE_PORT, http_base = 18000, grpc_workers = 4;
    config_u32(state->config, "function_tier_base_port", &base_port);
    config_u32(state->config, "http_base_port", &http_base);
    config_u32(state->config, "grpc_workers", &grpc_workers);
    uint64_t max_model = 0, max_photo = 0;
    service_limits(state->config, &max_model, &max_photo);

    sd_service_config service_config = {
        .function_subgroup = FUNCTION_SUBGROUP,
        .categorizer_subgroup = CATEGORIZER_SUBGROUP,
        .function_tier_base_port = (uint16_t)base_port,
        .http_base_port = (uint16_t)http_base,
        .max_model_bytes = max_model,
        .max_photo_bytes = max_photo,
    };
    config_u32(state->config, "max_models_per_shard", &service_config.max_models_per_shard);
    if (sd_service_create(state->node, &service_config, &state->service) != DR_OK) {
        fprintf(stderr, "sospdemo server: out of memory\n");
        return 1;
    }
    char address[96];
    if (base_port + state->local_id > 65535) {
        fprintf(stderr, "sospdemo server: function tier port %u + local_id %u passes 65535\n",
                base_port, state->local_id);
        return 1;
    }
    snprintf(address, sizeof address, "%s:%u", state->local_ip, base_port + state->local_id);
    sd_backend backend = sd_service_backend(state->service);
    uint32_t call_timeout_ms = 0, install_timeout_ms = 0, max_tags = 0;
    config_u32(state->config, "grpc_call_timeout_ms", &call_timeout_ms);
    config_u32(state->config, "grpc_install_timeout_ms", &install_timeout_ms);
    config_u32(state->config, "max_tags_per_request", &max_tags);
    sd_function_tier_config grpc_config = {
        .listen_address = address,
        .limits = {.max_photo_bytes = max_photo,
                   .max_model_bytes = max_model,
                   .max_tags = max_tags},
        .workers = grpc_workers,
        .credentials = &state->credentials,
        .call_timeout_ms = call_timeout_ms,
        .install_timeout_ms = install_timeout_ms,
    };
    dr_err err = {0};
    if (sd_function_tier_start(&grpc_config, &backend, &state->grpc, &err) != DR_OK) {
        fprintf(stderr, "sospdemo server: %s\n", err.msg);
        return 1;
    }
    sd_function_tier_print_banner(stdout, address);
    if (http_base != 0) {
        if (http_base + state->local_id > 65535) {
            fprintf(stderr, "sospdemo server: HTTP port %u + local_id %u passes 65535\n", http_base,
                    state->local_id);
            return 1;
        }
        sd_http_hooks hooks = sd_service_http_hooks(state->service);
        uint32_t max_connections = 0, per_ip = 0, timeout_s = 0;
        uint64_t max_upload = 0;
        config_u32(state->config, "http_max_connections", &max_connections);
        config_u32(state->config, "http_max_connections_per_ip", &per_ip);
        config_u32(state->config, "http_connection_timeout_s", &timeout_s);
        dr_config_get_u64(state->config, "SOSPDEMO", "http_max_upload_bytes", &max_upload);
        sd_http_config http_config = {
            .listen_ip = state->local_ip,
            .port = (uint16_t)(http_base + state->local_id),
            .limits = grpc_config.limits,
            .max_connections = max_connections,
            .max_connections_per_ip = per_ip,
            .connection_timeout_s = timeout_s,
            .max_upload_bytes = max_upload,
            .allowed_hosts = dr_config_get(state->config, "SOSPDEMO", "http_allowed_hosts"),
            .credentials = &state->credentials,
            .grpc = state->grpc,
        };
        if (sd_http_start(&http_config, &backend, &hooks, &state->http, &err) != DR_OK) {
            fprintf(stderr, "sospdemo server: %s\n", err.msg);
            return 1;
        }
        printf("Web page and HTTP API on %s://%s:%u/\n",
               state->credentials.tls_cert_pem ? "https" : "http", state->local_ip,
               http_base + state->local_id);
    }
    return 0;
}

/*
 * Reads the TLS certificate and tokens named in [SOSPDEMO] before the node joins (a bad file
 * stops the node at once, not when it serves), and warns when the service is open.
 */
static int load_credentials(server_state *state) {
    dr_err err = {0};
    if (sospdemo_make_missing_credentials(state->config) != 0)
        return 1;
    if (sospdemo_load_credentials(state->config, true, &state->credentials, &err) != DR_OK) {
        fprintf(stderr, "sospdemo server: %s\n", err.msg);
        return 1;
    }
    if (!state->credentials.tls_cert_pem || !state->credentials.admin_token)
        fprintf(stderr,
                "sospdemo server: warning: %s%s%s: anyone who reaches the gRPC and HTTP ports "
                "%s (scripts/gen-cluster.sh makes a cluster with credentials; docs/security.md)\n",
                state->credentials.tls_cert_pem ? "" : "no TLS ([SOSPDEMO] tls_cert_file)",
                !state->credentials.tls_cert_pem && !state->credentials.admin_token ? " and " : "",
                state->credentials.admin_token ? ""
                                               : "no admin token ([SOSPDEMO] admin_token_file)",
                state->credentials.admin_token ? "can read the traffic"
                                               : "can install and remove models");
    return 0;
}

/* A spare that a new view put into the function tier starts serving it. */
static void check_role(server_state *state) {
    unsigned char bytes[64];
    while (read(state->view_fd, bytes, sizeof bytes) > 0) {
    }
    dr_group *group = dr_rpc_node_group(state->node);
    if (state->grpc || dr_group_my_shard(group, FUNCTION_SUBGROUP, NULL) < 0)
        return;
    printf("This node joined the function tier.\n");
    fflush(stdout);
    if (start_function_tier(state) != 0)
        fprintf(stderr, "sospdemo server: cannot serve the function tier; still a member\n");
    fflush(stdout);
}

/* Every HEALTH_CHECK_MS the main loop checks that the group still runs and logs shard health. */
#define HEALTH_CHECK_MS 500

/* True (and says why) when this node's group stopped for good: it must not serve any more. */
static bool group_stopped(server_state *state) {
    int stopped = dr_group_stopped(dr_rpc_node_group(state->node));
    if (stopped == DR_OK)
        return false;
    fprintf(stderr,
            "sospdemo server: this node is no longer a member of the group (%s); it stops "
            "serving and exits. Start it again to rejoin as a new member.\n",
            stopped == DR_EREMOVED ? "the group excluded it" : dr_strerror(stopped));
    return true;
}

/*
 * Serves until ENTER on stdin or a stop signal (returns 0), or until the group stops under this
 * node (returns 1); starts the function tier when assigned to it.
 */
static int serve_until_stopped(server_state *state) {
    bool watch_stdin = true;
    check_role(state); /* a view may have come between the first view and now */
    for (;;) {
        struct pollfd fds[3] = {{.fd = state->signal_fd, .events = POLLIN},
                                {.fd = state->view_fd, .events = POLLIN},
                                {.fd = STDIN_FILENO, .events = POLLIN}};
        int n = poll(fds, watch_stdin ? 3 : 2, HEALTH_CHECK_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (fds[0].revents && stop_signalled(state->signal_fd, 0)))
            return 0;
        if (group_stopped(state))
            return 1;
        if (state->service)
            sd_service_log_health(state->service);
        if (fds[1].revents)
            check_role(state);
        if (watch_stdin && fds[2].revents) {
            char line[256];
            ssize_t got = read(STDIN_FILENO, line, sizeof line);
            if (got > 0 && memchr(line, '\n', (size_t)got))
                return 0;
            if (got <= 0) /* end of input (background run): keep serving until a signal */
                watch_stdin = false;
        }
    }
}

/*
 * Says which tier and shard this node serves in its first view, and warns when that is not
 * the role its id suggests (the shipped folders give ids 0..F-1, F the function tier's size, to
 * the function tier): roles follow join order, so nodes started out of id order swap roles.
 */
static void print_role(server_state *state) {
    dr_group *group = dr_rpc_node_group(state->node);
    int shard = dr_group_my_shard(group, CATEGORIZER_SUBGROUP, NULL);
    bool function_tier = dr_group_my_shard(group, FUNCTION_SUBGROUP, NULL) >= 0;
    if (function_tier)
        printf("This node is in the function tier.\n");
    else if (shard >= 0)
        printf("This node is in the categorizer tier, shard %d.\n", shard);
    else
        printf("This node is a spare (in no tier until a node fails).\n");
    uint64_t shards = 1, function_size = 0;
    dr_config_subgroup_u64(state->config, SD_TYPE_FUNCTION_TIER, "num_shards", &shards);
    dr_config_subgroup_u64(state->config, SD_TYPE_FUNCTION_TIER, "max_nodes", &function_size);
    function_size *= shards;
    if (function_tier && state->local_id >= function_size)
        fprintf(stderr,
                "sospdemo server: warning: node %u is in the function tier although ids 0..%llu "
                "are meant for it: nodes joined out of id order (roles follow join order)\n",
                state->local_id, (unsigned long long)function_size - 1);
    else if (shard >= 0 && state->local_id < function_size)
        fprintf(stderr,
                "sospdemo server: warning: node %u is a categorizer although ids 0..%llu are "
                "meant for the function tier: nodes joined out of id order (roles follow join "
                "order)\n",
                state->local_id, (unsigned long long)function_size - 1);
}

static void stop_server(server_state *state) {
    sd_http_stop(state->http);
    sd_function_tier_stop(state->grpc);
    sd_service_destroy(state->service);
    dr_rpc_node_destroy(state->node);
    sd_categorizer_destroy(state->categorizer);
    sd_credentials_free(&state->credentials);
    dr_config_free(state->config);
    if (state->signal_fd >= 0)
        close(state->signal_fd); /* the write end stays open: a late signal must not fail */
    if (state->view_fd >= 0)
        close(state->view_fd);
}

int sd_server_main(int argc, char **argv) {
    server_state state = {.signal_fd = install_stop_signals(), .view_fd = -1};
    int exit_code = 1;
    if (state.signal_fd < 0) {
        perror("sospdemo server: pipe");
        return 1;
    }
    if (sospdemo_load_config(argc > 2 ? argc - 2 : 0, argv + 2, false, &state.config) != 0)
        goto done;
    dr_config_apply_logging(state.config);
    if (load_credentials(&state) != 0)
        goto done;
    dr_config_get_u32(state.config, "DERECHO", "local_id", &state.local_id);
    const char *ip = dr_config_get(state.config, "DERECHO", "local_ip");
    snprintf(state.local_ip, sizeof state.local_ip, "%s", ip ? ip : "127.0.0.1");

    dr_layout_spec spec;
    if (build_spec(state.config, &spec) != 0)
        goto done;
    uint64_t max_model = 0, max_photo = 0;
    service_limits(state.config, &max_model, &max_photo);
    sd_categorizer_limits limits = {.max_model_bytes = max_model, .max_photo_bytes = max_photo};
    config_u32(state.config, "max_batch_size", &limits.max_batch_size);
    config_u32(state.config, "max_queue_delay_us", &limits.max_queue_delay_us);
    config_u32(state.config, "batch_workers", &limits.batch_workers);
    if (sd_categorizer_create(&limits, &state.categorizer) != DR_OK)
        goto done;
    dr_rpc_type types[2] = {{.name = SD_TYPE_FUNCTION_TIER}};
    sd_categorizer_rpc_type(state.categorizer, &types[1]);
    uint32_t rpc_workers = 4;
    config_u32(state.config, "rpc_workers", &rpc_workers);
    int view_pipe[2];
    if (pipe2(view_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        perror("sospdemo server: pipe");
        goto done;
    }
    state.view_fd = view_pipe[0];
    g_view_pipe_write = view_pipe[1]; /* stays open: a late upcall must not fail */
    dr_rpc_node_options options = {.p2p_workers = rpc_workers,
                                   .app_callbacks = {.on_view = on_view_installed}};
    dr_err err = {0};
    if (dr_rpc_node_create(state.config, &spec, types, 2, &options, &state.node, &err) != DR_OK) {
        fprintf(stderr, "sospdemo server: cannot start the node: %s\n", err.msg);
        goto done;
    }
    sd_categorizer_set_node(state.categorizer, state.node);
    int waited = wait_first_view(&state);
    if (waited != 0) {
        exit_code = waited > 0 ? 0 : 1;
        goto done;
    }
    dr_group *group = dr_rpc_node_group(state.node);
    if (dr_group_my_shard(group, FUNCTION_SUBGROUP, NULL) >= 0 && start_function_tier(&state) != 0)
        goto done;
    print_role(&state);
    printf("Finished constructing derecho group.\n");
    printf("Press ENTER to stop.\n");
    fflush(stdout);
    exit_code = serve_until_stopped(&state);
done:
    stop_server(&state);
    return exit_code;
}
