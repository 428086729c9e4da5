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

/* ---- --help: what each mode does, every option with its default, examples ---------------- */

static const char help_overview[] =
    "sospdemo: the photo-identification service of the SOSP'19 Derecho demo. Every node of the\n"
    "group runs `sospdemo server`; the function tier (the first nodes to join) answers gRPC\n"
    "and HTTP, and the categorizer tier (sharded by tag) holds the models and classifies.\n"
    "\n"
    "usage: sospdemo <mode> [args]        sospdemo <mode> --help for the mode's details\n"
    "\n"
    "modes:\n"
    "  server   join the group as one node, configured by ./derecho.cfg (or\n"
    "           $DERECHO_CONF_FILE) and --SECTION/key=value overrides\n"
    "  client   the command-line client of the function tier's gRPC service: inference,\n"
    "           installmodel, removemodel\n"
    "  config   print the configuration a server here would use (file + overrides)\n"
    "\n"
    "A function-tier node serves gRPC on local_ip:(28000 + local_id) and the HTTP API and web\n"
    "page on local_ip:(18000 + local_id) ([SOSPDEMO] function_tier_base_port, http_base_port).\n"
    "Exit codes: 0 success, 1 failure, 2 bad arguments.\n"
    "\n"
    "examples:\n"
    "  cd test-2-nodes/n0 && sospdemo server          (and n1 in another terminal)\n"
    "  sospdemo client 127.0.0.1:28000 installmodel 1 synset.txt shapes-symbol.json "
    "shapes-0000.params\n"
    "  sospdemo client 127.0.0.1:28000 inference 1 red-circle.jpg\n"
    "  curl -F photo=@red-circle.jpg 'http://127.0.0.1:18000/v1/whatsthis?tags=1'\n";

static const char help_server[] =
    "sospdemo server: run one node of the service until ENTER, SIGINT or SIGTERM.\n"
    "\n"
    "usage: sospdemo server [--SECTION/key=value | --SECTION/key value]...\n"
    "\n"
    "Reads derecho.cfg from the working directory ($DERECHO_CONF_FILE names another, then\n"
    "derecho_node.cfg or $DERECHO_NODE_CONF_FILE), applies the overrides, joins the group at\n"
    "[DERECHO] leader_ip:leader_gms_port and takes the role the first view gives it: function\n"
    "tier (gRPC on function_tier_base_port + local_id, default 28000 + id; HTTP on\n"
    "http_base_port + local_id, default 18000 + id, 0 turns it off), categorizer shard\n"
    "(tag % num_shards), or spare. It prints its role, then `Finished constructing derecho\n"
    "group.` and `Press ENTER to stop.`. A node the group excluded, or that stopped as a\n"
    "minority, says so and exits 1; start it again to rejoin.\n"
    "\n"
    "Keys that matter most (`sospdemo config` prints them all with their values):\n"
    "  [DERECHO] local_id, local_ip, gms_port, leader_ip, leader_gms_port\n"
    "  [DERECHO] timeout_ms (= heartbeat_ms, default 100): a silent node is suspected\n"
    "            after 5 periods\n"
    "  [SUBGROUP/FUNCTION_TIER], [SUBGROUP/CATEGORIZER_TIER] num_shards, min_nodes, max_nodes\n"
    "  [SOSPDEMO] function_tier_base_port (28000), http_base_port (18000), grpc_workers (4),\n"
    "            rpc_workers (4)\n"
    "\n"
    "examples:\n"
    "  cd test-4-nodes/n0 && sospdemo server\n"
    "  sospdemo server --DERECHO/local_id=3 --SOSPDEMO/http_base_port=0\n";

static const char help_client[] =
    "sospdemo client: call a function-tier node's gRPC service (the seed's client).\n"
    "\n"
    "usage: sospdemo client <host:port> inference <tags> <photo>\n"
    "       sospdemo client <host:port> installmodel <tag> <synset> <symbol> <params> "
    "[precision]\n"
    "       sospdemo client <host:port> removemodel <tag>\n"
    "\n"
    "  <host:port>  a function-tier node's gRPC address (28000 + its id by default)\n"
    "  <tags>       one tag or several separated by commas (1 or 1,2,3): decimal uint32\n"
    "  <photo>      a JPEG or PNG file\n"
    "  <synset> <symbol> <params>  an MXNet model (synset.txt, X-symbol.json, X-0000.params);\n"
    "               for ONNX: the labels file, an empty file, the .onnx file\n"
    "  [precision]  fp32 (default), bf16 or auto: the arithmetic of the model's engine\n"
    "\n"
    "Prints `Use function tier node: <host:port>`, then `photo description:<answer>` or\n"
    "`return code:<n>` and `description:<text>`. Exit codes: 0 success; 1 a failed call, a\n"
    "refused install or remove, an answer that is an error (\"Cannot find model for photo\n"
    "tag.\"), an unreadable file; 2 bad arguments. $SOSPDEMO_CLIENT_TIMEOUT_MS sets the call\n"
    "deadline in ms (default 60000; installmodel 600000).\n"
    "\n"
    "examples:\n"
    "  sospdemo client 127.0.0.1:28000 installmodel 1 models/demo-shapes/synset.txt \\\n"
    "      models/demo-shapes/shapes-symbol.json models/demo-shapes/shapes-0000.params\n"
    "  sospdemo client 127.0.0.1:28000 inference 1 models/demo-shapes/photos/red-circle.jpg\n"
    "  sospdemo client 127.0.0.1:28000 removemodel 1\n";

static const char help_config[] =
    "sospdemo config: print the configuration `sospdemo server` would use here: every section\n"
    "and key with its resolved value (file, node overlay, overrides, defaults). A bad value\n"
    "stops it with the file, line, key and problem (exit 1).\n"
    "\n"
    "usage: sospdemo config [--SECTION/key=value | --SECTION/key value]...\n"
    "\n"
    "examples:\n"
    "  cd test-4-nodes/n1 && sospdemo config\n"
    "  sospdemo config --DERECHO/local_id=3 --SUBGROUP/CATEGORIZER_TIER/max_nodes=3\n";

bool sd_is_help_arg(const char *arg) {
    return arg &&
           (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0);
}

void sd_print_help(FILE *out, const char *mode) {
    if (mode && strcmp(mode, "server") == 0)
        fputs(help_server, out);
    else if (mode && strcmp(mode, "client") == 0)
        fputs(help_client, out);
    else if (mode && strcmp(mode, "config") == 0)
        fputs(help_config, out);
    else
        fputs(help_overview, out);
}
