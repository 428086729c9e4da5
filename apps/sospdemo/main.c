/*
 * sospdemo: the photo-identification service's single binary (seed command line).
 *
 *   sospdemo server                      join the group from ./derecho.cfg (server.h)
 *   sospdemo client <host:port> ...      the function tier's client (client.h); TLS and token
 *                                        from ./derecho.cfg [SOSPDEMO] when it exists
 *   sospdemo config [--SECTION/key=value] print the effective configuration (app_config.h)
 *
 * No mode, an unknown mode or missing arguments print the seed's usage text and exit 2 (an
 * unknown mode is named on stderr first). `sospdemo --help` and `sospdemo <mode> --help` print
 * the help and exit 0.
 */
#include "app_config.h"
#include "client.h"
#include "usage.h"

#include <stdio.h>
#include <string.h>

#ifdef SD_HAVE_SERVER
#include "server.h"
static int server_main(int argc, char **argv) {
    return sd_server_main(argc, argv);
}
#else
/* Builds without the rpc layer (src/rpc) have no server. */
static int server_main(int argc, char **argv) {
    (void)argc;
    fprintf(stderr, "sospdemo server: not available in this build (no rpc layer)\n");
    sd_print_usage(stdout, argv[0]);
    return SD_EXIT_USAGE;
}
#endif

static bool known_mode(const char *mode) {
    return strcmp(mode, "client") == 0 || strcmp(mode, "server") == 0 ||
           strcmp(mode, "config") == 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && sd_is_help_arg(argv[1])) {
        sd_print_help(stdout, NULL);
        return 0;
    }
    if (argc >= 3 && known_mode(argv[1]) && sd_is_help_arg(argv[2])) {
        sd_print_help(stdout, argv[1]);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "client") == 0) {
        sd_credentials creds;
        if (sospdemo_client_credentials(&creds) != 0)
            return 1;
        int rc = sd_client_main_secure(argc, argv, &creds);
        sd_credentials_free(&creds);
        return rc;
    }
    if (argc >= 2 && strcmp(argv[1], "server") == 0)
        return server_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "config") == 0)
        return sospdemo_config_main(argc - 2, argv + 2);
    if (argc >= 2)
        fprintf(stderr, "sospdemo: unknown mode '%s' (server, client or config; --help explains)\n",
                argv[1]);
    else
        fprintf(stderr, "sospdemo: no mode given (server, client or config; --help explains)\n");
    sd_print_usage(stdout, argc > 0 ? argv[0] : NULL);
    return SD_EXIT_USAGE;
}
