/*
 * sospdemo: the photo-identification service of the SOSP'19 Derecho demo.
 *   sospdemo server                       a node of the group (derecho.cfg in the cwd)
 *   sospdemo client <host:port> ...       the command-line client
 *   sospdemo config [--SECTION/key=value] print the effective configuration
 */
#include "app_config.h"

#include <stdio.h>
#include <string.h>

static void print_usage(const char *program) {
    fprintf(stderr,
            "Usage:%s <mode> <mode specific args>\n"
            "The mode could be one of the following:\n"
            "    client - the web client.\n"
            "    server - the server node. Configuration file determines if this is a "
            "categorizer tier node or a function tier server. \n"
            "    config - print the effective configuration (derecho.cfg, derecho_node.cfg,\n"
            "             DERECHO_CONF_FILE and --SECTION/key=value overrides) and check it.\n"
            "1) to start a server node:\n"
            "    %s server \n"
            "2) to perform inference: \n"
            "    %s client <function-tier-node> inference <tags> <photo>\n"
            "    tags could be a single tag or multiple tags like 1,2,3,...\n"
            "3) to install a model: \n"
            "    %s client <function-tier-node> installmodel <tag> <synset> <symbol> <params>\n"
            "4) to remove a model: \n"
            "    %s client <function-tier-node> removemodel <tag>\n",
            program, program, program, program, program);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "config") == 0)
        return sospdemo_config_main(argc - 2, argv + 2);
    print_usage(argv[0]);
    return 1;
}
