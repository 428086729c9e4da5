/*
 * fake_function_tier: the function tier's gRPC server with the fake backend of the tests, for
 * trying the client by hand and measuring the front end alone.
 *
 *   fake_function_tier <ip:port> [max_model_bytes [http_port]]
 *
 * Serves until stdin reaches end of file or SIGINT/SIGTERM arrives, then stops cleanly.
 */
#include "fake_backend.h"
#include "function_tier.h"
#include "http_api.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv) {
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
    sd_function_tier_config config = {.listen_address = argv[1]};
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
                                      .grpc = server};
        sd_http_hooks hooks = fake_backend_http_hooks(&fake);
        if (sd_http_start(&http_config, &backend, &hooks, &http, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            sd_function_tier_stop(server);
            return 1;
        }
    }
    printf("fake function tier listening on %s\n", argv[1]);
    fflush(stdout);
    wait_for_stop();
    sd_http_stop(http);
    sd_function_tier_stop(server);
    fake_backend_destroy(&fake);
    return 0;
}
