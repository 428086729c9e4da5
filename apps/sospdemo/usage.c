/*
 * The usage text of the seed demo, kept byte for byte (trailing spaces included); only the
 * program name follows the binary's name.
 */
#include "usage.h"

#include <string.h>

void sd_print_usage(FILE *out, const char *argv0) {
    const char *name = "sospdemo";
    if (argv0 && *argv0) {
        const char *slash = strrchr(argv0, '/');
        name = slash ? slash + 1 : argv0;
    }
    fprintf(out,
            "Usage:./%s <mode> <mode specific args>\n"
            "The mode could be one of the following:\n"
            "    client - the web client.\n"
            "    server - the server node. Configuration file determines if this is a "
            "categorizer tier node or a function tier server. \n"
            "1) to start a server node:\n"
            "    ./%s server \n"
            "2) to perform inference: \n"
            "    ./%s client <function-tier-node> inference <tags> <photo>\n"
            "    tags could be a single tag or multiple tags like 1,2,3,...\n"
            "3) to install a model: \n"
            "    ./%s client <function-tier-node> installmodel <tag> <synset> <symbol> "
            "<params>\n"
            "4) to remove a model: \n"
            "    ./%s client <function-tier-node> removemodel <tag>\n",
            name, name, name, name, name);
}
