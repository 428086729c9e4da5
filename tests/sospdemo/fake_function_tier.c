/*
 * fake_function_tier: the function tier's gRPC server with the fake backend of the tests, for
 * trying the client by hand and measuring the front end alone.
 *
 *   fake_function_tier <ip:port> [max_model_bytes [http_port]] [options]
 *     --cluster DIR          TLS with DIR/tls/server.pem + server.key, admin token
 *                            DIR/secrets/admin.token (scripts/gen-cluster.sh makes them)
 *     --inference-token F    inference needs the token in file F
 *     --http-per-ip N, --http-max-connections N, --http-timeout-s S, --max-upload-bytes B,
 *     --call-timeout-ms T    the servers' limits (0: their defaults)
 *
 * Port 0 picks a free port; the ports in use are printed: "ports grpc <g> http <h>".
 * Serves until stdin reaches end of file or SIGINT/SIGTERM arrives, then stops cleanly.
 */
#include "fake_backend.h"
#include "function_tier.h"
#include "http_api.h"

#include "security.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

/* Blocks until stdin closes or SIGINT/SIGTERM (taken through a signalfd). */
static void wait_for_stop(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    char buf[256];
    for (;;) {
        if (poll(fds, 2, -1) < 0)
            continue;
        if (fds[1].revents)
            break;
        if (fds[0].revents && read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
            break;
    }
    close(sfd);
}

typedef struct options {
    const char *cluster, *inference_token;
    unsigned per_ip, max_connections, timeout_s, call_timeout_ms;
    unsigned long long max_upload;
} options;

/* Takes "--name value" options from argv[first..argc); returns the count of positionals. */
static int parse_options(int argc, char **argv, options *o) {
    int positional = argc;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0)
            continue;
        if (positional == argc)
            positional = i;
        if (i + 1 >= argc)
            return -1;
        const char *name = argv[i] + 2, *value = argv[++i];
        if (strcmp(name, "cluster") == 0)
            o->cluster = value;
        else if (strcmp(name, "inference-token") == 0)
            o->inference_token = value;
        else if (strcmp(name, "http-per-ip") == 0)
            o->per_ip = (unsigned)atoi(value);
        else if (strcmp(name, "http-max-connections") == 0)
            o->max_connections = (unsigned)atoi(value);
        else if (strcmp(name, "http-timeout-s") == 0)
            o->timeout_s = (unsigned)atoi(value);
        else if (strcmp(name, "call-timeout-ms") == 0)
            o->call_timeout_ms = (unsigned)atoi(value);
        else if (strcmp(name, "max-upload-bytes") == 0)
            o->max_upload = strtoull(value, NULL, 10);
        else
            return -1;
    }
    return positional;
}

static int load_cluster(const options *o, sd_credentials *creds) {
    dr_err err = {0};
    char path[4096];
    int rc = 0;
    if (o->cluster) {
        snprintf(path, sizeof path, "%s/tls/server.pem", o->cluster);
        rc = sd_read_small_file(path, "certificate", SD_MAX_PEM_BYTES, &creds->tls_cert_pem, &err);
        snprintf(path, sizeof path, "%s/tls/server.key", o->cluster);
        if (!rc)
            rc = sd_read_small_file(path, "key", SD_MAX_PEM_BYTES, &creds->tls_key_pem, &err);
        snprintf(path, sizeof path, "%s/secrets/admin.token", o->cluster);
        if (!rc)
            rc = sd_read_token_file(path, "admin token", &creds->admin_token, &err);
    }
    if (!rc && o->inference_token)
        rc = sd_read_token_file(o->inference_token, "inference token", &creds->inference_token,
                                &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    return rc;
}

int main(int argc, char **argv) {
    options opts = {0};
    int positional = parse_options(argc, argv, &opts);
    if (positional < 0) {
        fprintf(stderr, "bad options\n");
        return 2;
    }
    argc = positional;
    if (argc < 2) {
        fprintf(stderr, "usage: %s <ip:port> [max_model_bytes [http_port]]\n", argv[0]);
        return 2;
    }
    /* Block the stop signals before any thread starts, so only the signalfd sees them. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    fake_backend fake;
    fake_backend_init(&fake);
    sd_credentials creds = {0};
    if (load_cluster(&opts, &creds) != 0)
        return 1;
    sd_function_tier_config config = {
        .listen_address = argv[1], .credentials = &creds, .call_timeout_ms = opts.call_timeout_ms};
    if (argc > 2)
        config.limits.max_model_bytes = strtoull(argv[2], NULL, 10);
    sd_backend backend = fake_backend_interface(&fake);
    sd_function_tier *server = NULL;
    dr_err err;
    if (sd_function_tier_start(&config, &backend, &server, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    sd_http_api *http = NULL;
    if (argc > 3) {
        sd_http_config http_config = {.listen_ip = "127.0.0.1",
                                      .port = (uint16_t)atoi(argv[3]),
                                      .limits = config.limits,
                                      .max_connections = opts.max_connections,
                                      .max_connections_per_ip = opts.per_ip,
                                      .connection_timeout_s = opts.timeout_s,
                                      .max_upload_bytes = opts.max_upload,
                                      .credentials = &creds,
                                      .grpc = server};
        sd_http_hooks hooks = fake_backend_http_hooks(&fake);
        if (sd_http_start(&http_config, &backend, &hooks, &http, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            sd_function_tier_stop(server);
            return 1;
        }
    }
    printf("fake function tier listening on %s\n", argv[1]);
    printf("ports grpc %d http %d\n", sd_function_tier_port(server), http ? sd_http_port(http) : 0);
    fflush(stdout);
    wait_for_stop();
    sd_http_stop(http);
    sd_function_tier_stop(server);
    fake_backend_destroy(&fake);
    sd_credentials_free(&creds);
    return 0;
}
