/*
 * End-to-end test support: a local sospdemo cluster of real `sospdemo server` processes on
 * 127.0.0.1, generated with scripts/gen-cluster.sh into the build tree with ports from a
 * test's own base (46000-46999), and helpers that run the client binary and curl.
 */
#ifndef TESTS_SOSPDEMO_CLUSTER_HARNESS_H
#define TESTS_SOSPDEMO_CLUSTER_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#define HARNESS_MAX_NODES 10

typedef struct harness_cluster {
    char dir[512];                     /* the generated cluster folder */
    char bin[512];                     /* build/bin/sospdemo */
    char source_dir[512];              /* DR_SOURCE_DIR */
    int nodes;                         /* processes */
    int port_base;                     /* gen-cluster.sh --port-base */
    pid_t pids[HARNESS_MAX_NODES];     /* 0 when not running */
    int exit_codes[HARNESS_MAX_NODES]; /* after harness_stop: exit code, or 128 + signal */
    int stdin_fds[HARNESS_MAX_NODES];  /* write end of each node's stdin (-1 when closed) */
} harness_cluster;

/** Options of a cluster (gen-cluster.sh arguments). */
typedef struct harness_options {
    const char *name;         /* folder name under the build tree */
    int nodes;                /* processes */
    int function_nodes;       /* function tier size */
    int spares;               /* unassigned nodes at the end (gen-cluster.sh --spares) */
    int shards;               /* categorizer shards */
    int min_nodes;            /* categorizer shard minimum (0: shard size, the seed's rule) */
    int port_base;            /* 46000-46999, 100 ports used */
    int heartbeat_ms;         /* 0: 10000 */
    const char *extra_config; /* appended to every node's derecho.cfg (e.g. "[SOSPDEMO]\nkey =
                                 value\n"); NULL: none */
} harness_options;

/**
 * Generates the folder, starts every node (node 0 first) and waits up to timeout_s until
 * every function-tier node answers a Whatsthis call. Returns 0, or -1 (message on stderr; nodes
 * stopped).
 */
int harness_start(harness_cluster *cluster, const harness_options *options, int timeout_s);

/** SIGTERM to every running node, waits (SIGKILL after 20 s); fills exit_codes. */
void harness_stop(harness_cluster *cluster);

/** Writes a newline to node i's stdin (the seed's ENTER). */
void harness_enter(harness_cluster *cluster, int node);

/** Waits up to timeout_s for node i to exit; returns its exit code or -1 if still running. */
int harness_wait_exit(harness_cluster *cluster, int node, int timeout_s);

/** kill -9 of node i (exit code 128 + 9 recorded). */
void harness_kill9(harness_cluster *cluster, int node);

/** Starts node i again (same folder and id) after it exited or was killed. Returns 0 or -1. */
int harness_restart(harness_cluster *cluster, int node);

/** Polls node i's server.log up to timeout_s for a line containing text. */
bool harness_wait_log(const harness_cluster *cluster, int node, const char *text, int timeout_s);

/** "127.0.0.1:<grpc port of node>" into buf. */
void harness_grpc_address(const harness_cluster *cluster, int node, char *buf, size_t cap);

/** "http://127.0.0.1:<http port of node>" into buf. */
void harness_http_base(const harness_cluster *cluster, int node, char *buf, size_t cap);

/** Runs a shell command, returns its stdout+stderr (malloc'd) and *exit_code. */
char *harness_run(const char *command, int *exit_code);

/**
 * Runs `sospdemo client <node's address> <args>` and returns its output (malloc'd);
 * *exit_code receives the client's exit code.
 */
char *harness_client(const harness_cluster *cluster, int node, const char *args, int *exit_code);

/** The path of a source-tree file (static buffer per call site is not needed: writes buf). */
void harness_source_path(const harness_cluster *cluster, const char *relative, char *buf,
                         size_t cap);

/** True when the log of node i contains text. */
bool harness_log_contains(const harness_cluster *cluster, int node, const char *text);

#endif
