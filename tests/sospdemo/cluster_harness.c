/* End-to-end test support: real local clusters (see cluster_harness.h). */
#include "cluster_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

char *harness_run(const char *command, int *exit_code) {
    char *full = NULL;
    if (asprintf(&full, "%s 2>&1", command) < 0)
        return NULL;
    FILE *pipe = popen(full, "r");
    free(full);
    if (!pipe)
        return NULL;
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    size_t got;
    while (out && (got = fread(out + len, 1, cap - len - 1, pipe)) > 0) {
        len += got;
        if (cap - len < 1024) {
            cap *= 2;
            out = realloc(out, cap);
        }
    }
    int status = pclose(pipe);
    if (out)
        out[len] = '\0';
    if (exit_code)
        *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return out;
}

void harness_grpc_address(const harness_cluster *cluster, int node, char *buf, size_t cap) {
    snprintf(buf, cap, "127.0.0.1:%d", cluster->port_base + 80 + node);
}

void harness_http_base(const harness_cluster *cluster, int node, char *buf, size_t cap) {
    snprintf(buf, cap, "http://127.0.0.1:%d", cluster->port_base + 90 + node);
}

void harness_source_path(const harness_cluster *cluster, const char *relative, char *buf,
                         size_t cap) {
    snprintf(buf, cap, "%s/%s", cluster->source_dir, relative);
}

static char *client_with_timeout(const harness_cluster *cluster, int node, const char *args,
                                 int timeout_ms, int *exit_code) {
    char address[64];
    harness_grpc_address(cluster, node, address, sizeof address);
    char *command = NULL;
    if (asprintf(&command, "SOSPDEMO_CLIENT_TIMEOUT_MS=%d '%s' client %s %s", timeout_ms,
                 cluster->bin, address, args) < 0)
        return NULL;
    char *out = harness_run(command, exit_code);
    free(command);
    return out;
}

char *harness_client(const harness_cluster *cluster, int node, const char *args, int *exit_code) {
    return client_with_timeout(cluster, node, args, 120000, exit_code);
}

bool harness_log_contains(const harness_cluster *cluster, int node, const char *text) {
    char path[700];
    snprintf(path, sizeof path, "%s/n%d/server.log", cluster->dir, node);
    FILE *in = fopen(path, "r");
    if (!in)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, in))
        found = strstr(line, text) != NULL;
    fclose(in);
    return found;
}

static pid_t start_node(harness_cluster *cluster, int node) {
    char folder[700], log[760];
    snprintf(folder, sizeof folder, "%s/n%d", cluster->dir, node);
    snprintf(log, sizeof log, "%s/server.log", folder);
    int stdin_pipe[2];
    if (pipe2(stdin_pipe, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid != 0) {
        close(stdin_pipe[0]);
        cluster->stdin_fds[node] = stdin_pipe[1];
        return pid;
    }
    int log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log_fd < 0 || chdir(folder) != 0)
        _exit(126);
    dup2(stdin_pipe[0], STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execl(cluster->bin, "sospdemo", "server", (char *)NULL);
    _exit(127);
}

static bool node_alive(harness_cluster *cluster, int node) {
    if (cluster->pids[node] == 0)
        return false;
    int status = 0;
    pid_t done = waitpid(cluster->pids[node], &status, WNOHANG);
    if (done == 0)
        return true;
    cluster->exit_codes[node] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    cluster->pids[node] = 0;
    return false;
}

void harness_enter(harness_cluster *cluster, int node) {
    if (cluster->stdin_fds[node] >= 0 && write(cluster->stdin_fds[node], "\n", 1) != 1)
        fprintf(stderr, "harness: cannot write to node %d's stdin\n", node);
}

int harness_wait_exit(harness_cluster *cluster, int node, int timeout_s) {
    time_t deadline = time(NULL) + timeout_s;
    while (node_alive(cluster, node)) {
        if (time(NULL) >= deadline)
            return -1;
        sleep_ms(50);
    }
    return cluster->exit_codes[node];
}

/* True when every port of [base, base + 100) can be bound on 127.0.0.1 right now. */
static bool ports_free(int base) {
    for (int port = base; port < base + 100; port++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof address) == 0;
        if (fd >= 0)
            close(fd);
        if (!ok)
            return false;
    }
    return true;
}

/*
 * The requested base, or base + 300 / + 600 when one of its ports is taken (26000-26999 is below
 * Linux's ephemeral range, but a leftover process of an earlier run may still hold one).
 */
static int choose_port_base(int requested) {
    for (int shift = 0; shift <= 600; shift += 300) {
        int base = requested + shift;
        if (base + 100 <= 27000 && ports_free(base))
            return base;
    }
    return requested;
}

static int start_attempt(harness_cluster *cluster, const harness_options *options, int port_base,
                         int timeout_s) {
    memset(cluster, 0, sizeof *cluster);
    const char *source = getenv("DR_SOURCE_DIR"), *bin = getenv("DR_BIN_DIR");
    if (!source || !bin || options->nodes > HARNESS_MAX_NODES) {
        fprintf(stderr, "harness: DR_SOURCE_DIR / DR_BIN_DIR not set\n");
        return -1;
    }
    snprintf(cluster->source_dir, sizeof cluster->source_dir, "%s", source);
    snprintf(cluster->bin, sizeof cluster->bin, "%s/sospdemo", bin);
    snprintf(cluster->dir, sizeof cluster->dir, "%s/../e2e/%s", bin, options->name);
    cluster->nodes = options->nodes;
    for (int i = 0; i < HARNESS_MAX_NODES; i++)
        cluster->stdin_fds[i] = -1;
    cluster->port_base = port_base;
    char command[2048];
    /* --insecure: these tests drive plain gRPC and HTTP; test_security.py covers TLS/tokens.
     * min_nodes 0: the shard size (the seed's rule; gen-cluster.sh's own default is 1) */
    int shards = options->shards > 0 ? options->shards : 1;
    int per_shard = (options->nodes - options->function_nodes - options->spares) / shards;
    char min_nodes[32];
    snprintf(min_nodes, sizeof min_nodes, "--min-nodes %d",
             options->min_nodes ? options->min_nodes : per_shard);
    snprintf(command, sizeof command,
             "rm -rf '%s' && '%s/scripts/gen-cluster.sh' '%s' %d --function-nodes %d --shards %d "
             "--spares %d %s --port-base %d --heartbeat-ms %d --launch-binary '%s' --insecure "
             "--volatile",
             cluster->dir, source, cluster->dir, options->nodes, options->function_nodes,
             options->shards, options->spares, min_nodes, cluster->port_base,
             options->heartbeat_ms ? options->heartbeat_ms : 10000, cluster->bin);
    int rc = 0;
    free(harness_run(command, &rc));
    if (rc != 0) {
        fprintf(stderr, "harness: gen-cluster.sh failed (%d)\n", rc);
        return -1;
    }
    for (int i = 0; options->extra_config && i < options->nodes; i++) {
        char path[760];
        snprintf(path, sizeof path, "%s/n%d/derecho.cfg", cluster->dir, i);
        FILE *cfg = fopen(path, "a");
        if (!cfg || fprintf(cfg, "\n%s", options->extra_config) < 0 || fclose(cfg) != 0) {
            fprintf(stderr, "harness: cannot append to %s\n", path);
            return -1;
        }
    }
    /*
     * Shards take members in join order (the seed's rule), so nodes are started one by one,
     * each once the leader queued the previous one's join request (its log line): nodes
     * 0..F-1 form the function tier.
     */
    for (int i = 0; i < options->nodes; i++) {
        cluster->pids[i] = start_node(cluster, i);
        char joined[64];
        snprintf(joined, sizeof joined, i == 0 ? "contact 127.0.0.1" : "queued joiner %d at ", i);
        for (int waited_ms = 0; waited_ms < 5000 && !harness_log_contains(cluster, 0, joined);
             waited_ms += 20)
            sleep_ms(20);
    }
    char photo[700];
    harness_source_path(cluster, "models/demo-shapes/photos/red-circle.jpg", photo, sizeof photo);
    char args[800];
    snprintf(args, sizeof args, "inference 0 '%s'", photo);
    time_t deadline = time(NULL) + timeout_s;
    int ready = 0; /* function-tier nodes 0..ready-1 answered */
    while (time(NULL) < deadline) {
        /* a short deadline: a call made while the group is still starting may be lost */
        char *out = client_with_timeout(cluster, ready, args, 3000, &rc);
        /* tag 0 has no model: "Cannot find model for photo tag." (exit 1) is the answer */
        bool answered = out && strstr(out, "photo description:") != NULL;
        free(out);
        if (answered && ++ready == options->function_nodes)
            return 0;
        if (answered)
            continue;
        for (int i = 0; i < options->nodes; i++) {
            if (!node_alive(cluster, i)) {
                fprintf(stderr, "harness: node %d exited (code %d) during start; see %s/n%d\n", i,
                        cluster->exit_codes[i], cluster->dir, i);
                harness_stop(cluster);
                return -1;
            }
        }
        sleep_ms(300);
    }
    fprintf(stderr, "harness: the function tier did not answer in %d s\n", timeout_s);
    harness_stop(cluster);
    return -1;
}

void harness_kill9(harness_cluster *cluster, int node) {
    if (cluster->pids[node] == 0)
        return;
    kill(cluster->pids[node], SIGKILL);
    int status = 0;
    waitpid(cluster->pids[node], &status, 0);
    cluster->exit_codes[node] = 128 + SIGKILL;
    cluster->pids[node] = 0;
}

int harness_restart(harness_cluster *cluster, int node) {
    if (node_alive(cluster, node))
        return -1;
    if (cluster->stdin_fds[node] >= 0)
        close(cluster->stdin_fds[node]);
    cluster->stdin_fds[node] = -1;
    pid_t pid = start_node(cluster, node);
    if (pid < 0)
        return -1;
    cluster->pids[node] = pid;
    return 0;
}

bool harness_wait_log(const harness_cluster *cluster, int node, const char *text, int timeout_s) {
    for (int waited_ms = 0; waited_ms < timeout_s * 1000; waited_ms += 100) {
        if (harness_log_contains(cluster, node, text))
            return true;
        sleep_ms(100);
    }
    return harness_log_contains(cluster, node, text);
}

void harness_stop(harness_cluster *cluster) {
    for (int i = cluster->nodes - 1; i >= 0; i--) {
        if (cluster->pids[i])
            kill(cluster->pids[i], SIGTERM);
    }
    time_t deadline = time(NULL) + 20;
    for (int i = 0; i < cluster->nodes; i++) {
        while (node_alive(cluster, i) && time(NULL) < deadline)
            sleep_ms(50);
        if (cluster->pids[i]) {
            fprintf(stderr, "harness: node %d did not stop in 20 s; killing it\n", i);
            kill(cluster->pids[i], SIGKILL);
            int status = 0;
            waitpid(cluster->pids[i], &status, 0);
            cluster->exit_codes[i] = 128 + SIGKILL;
            cluster->pids[i] = 0;
        }
    }
    for (int i = 0; i < cluster->nodes; i++) {
        if (cluster->stdin_fds[i] >= 0)
            close(cluster->stdin_fds[i]);
        cluster->stdin_fds[i] = -1;
    }
}

static bool any_log_contains(const harness_cluster *cluster, const char *text) {
    for (int i = 0; i < cluster->nodes; i++) {
        if (harness_log_contains(cluster, i, text))
            return true;
    }
    return false;
}

int harness_start(harness_cluster *cluster, const harness_options *options, int timeout_s) {
    int base = options->port_base;
    for (int attempt = 0; attempt < 3; attempt++) {
        base = choose_port_base(base);
        if (base != options->port_base)
            printf("harness: ports %d.. busy, using %d..\n", options->port_base, base);
        if (start_attempt(cluster, options, base, timeout_s) == 0)
            return 0;
        if (!any_log_contains(cluster, "Address already in use"))
            return -1;
        /* a port was taken between the check and the bind (ephemeral ports of others) */
        base = options->port_base + 300 * (attempt + 1);
        if (base + 100 > 27000)
            base = options->port_base;
    }
    return -1;
}
