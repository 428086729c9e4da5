/*
 * Real test processes (group_node, kv_node) for the multi-process tests (tests/runtime, tests/rpc):
 * spawning with pipes on stdin (the release barrier) and stdout (the DONE line), waiting for
 * their lines, and reaping them.
 */
#include "node_procs.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Children spawned and not yet reaped (for kill_leftover_children). */
static pid_t g_live[64];
static size_t g_num_live;

static void forget_child(pid_t pid) {
    for (size_t i = 0; i < g_num_live; i++)
        if (g_live[i] == pid) {
            g_live[i] = g_live[--g_num_live];
            return;
        }
}

int kill_leftover_children(void **state) {
    (void)state;
    for (size_t i = 0; i < g_num_live; i++) {
        kill(g_live[i], SIGKILL);
        waitpid(g_live[i], NULL, 0);
    }
    g_num_live = 0;
    return 0;
}

void spawn_test_program(child *c, const char *name, const char *first_arg, char *const *args) {
    int in_pipe[2], out_pipe[2];
    /* close-on-exec: no child may hold another child's stdin open (it would never see EOF) */
    assert_int_equal(pipe2(in_pipe, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out_pipe, O_CLOEXEC), 0);
    const char *bin_dir = getenv("DR_BIN_DIR");
    assert_non_null(bin_dir);
    char program[1024];
    snprintf(program, sizeof program, "%s/tests/%s", bin_dir, name);
    char *argv[32] = {program, (char *)first_arg};
    int argc = first_arg ? 2 : 1;
    for (int i = 0; args && args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(in_pipe[0], STDIN_FILENO);   /* dup2 clears close-on-exec on the copies */
        dup2(out_pipe[1], STDOUT_FILENO);
        execv(program, argv);
        _exit(127);
    }
    if (g_num_live < sizeof g_live / sizeof *g_live)
        g_live[g_num_live++] = pid;
    close(in_pipe[0]);
    close(out_pipe[1]);
    memset(c, 0, sizeof *c);
    c->pid = pid;
    c->stdin_fd = in_pipe[1];
    c->stdout_fd = out_pipe[0];
}

/* Reads the children's output until every one printed DONE or the time runs out. */
void spawn_node(child *c, const char *config_path, char *const *args) {
    spawn_test_program(c, "group_node", config_path, args);
}

void drop_first_line(child *c) {
    char *newline = strchr(c->output, '\n');
    size_t keep = newline ? c->output_len - (size_t)(newline + 1 - c->output) : 0;
    if (newline)
        memmove(c->output, newline + 1, keep + 1);
    else
        c->output[0] = '\0';
    c->output_len = keep;
    c->done = strchr(c->output, '\n') != NULL;
}

void wait_all_done(child *children, int count, int timeout_s) {
    time_t deadline = time(NULL) + timeout_s;
    int done = 0;
    while (done < count && time(NULL) < deadline) {
        struct pollfd fds[NODE_PROCS_MAX];
        for (int i = 0; i < count; i++) {
            fds[i].fd = children[i].done ? -1 : children[i].stdout_fd;
            fds[i].events = POLLIN;
        }
        if (poll(fds, (nfds_t)count, 1000) <= 0)
            continue;
        for (int i = 0; i < count; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            child *c = &children[i];
            ssize_t n =
                read(c->stdout_fd, c->output + c->output_len, sizeof c->output - 1 - c->output_len);
            if (n > 0) {
                c->output_len += (size_t)n;
                c->output[c->output_len] = '\0';
            }
            if (n <= 0 || strchr(c->output, '\n')) {
                c->done = true;
                done++;
            }
        }
    }
}

/* Releases every child, waits for it (killing stragglers) and returns how many exited 0. */
int finish_all(child *children, int count) {
    int clean = 0;
    for (int i = 0; i < count; i++)
        close(children[i].stdin_fd);
    for (int i = 0; i < count; i++) {
        int status = 0;
        for (int tries = 0; tries < 100; tries++) {
            if (waitpid(children[i].pid, &status, WNOHANG) == children[i].pid)
                goto reaped;
            usleep(100000);
        }
        kill(children[i].pid, SIGKILL);
        waitpid(children[i].pid, &status, 0);
    reaped:
        forget_child(children[i].pid);
        close(children[i].stdout_fd);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            clean++;
    }
    return clean;
}

/* True when every port of [base, base + span) can be bound on 127.0.0.1 now. */
static bool ports_free(int base, int span) {
    for (int port = base; port < base + span; port++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int one = 1; /* as the group's listener: a port in TIME_WAIT is free */
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof address) == 0;
        if (fd >= 0)
            close(fd);
        if (!ok)
            return false;
    }
    return true;
}

int procs_free_port_base(int requested, int span) {
    /* the alternatives stay inside the thousand-port block of `requested` (the test's lock) */
    int block = requested - requested % 1000, offset = requested % 1000;
    const int candidates[] = {requested, block + (offset + 500) % 1000,
                              block + (offset + 250) % 1000, block + (offset + 750) % 1000};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        int base = candidates[i];
        if (base + span <= block + 1000 && base + span <= 65536 && ports_free(base, span)) {
            if (i > 0)
                print_message("ports %d..%d taken: using %d..\n", requested, requested + span - 1,
                              base);
            return base;
        }
    }
    return requested;
}

/* One pass over /proc/net/tcp: a LISTEN (state 0A) socket on 127.0.0.1 or 0.0.0.0 :port. */
static bool listening_now(int port) {
    FILE *file = fopen("/proc/net/tcp", "r");
    if (!file)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, file)) {
        unsigned address = 0, local_port = 0, state = 0;
        if (sscanf(line, " %*d: %8X:%4X %*8X:%*4X %2X", &address, &local_port, &state) == 3)
            found = state == 0x0A && (int)local_port == port &&
                    (address == 0 || address == 0x0100007Fu);
    }
    fclose(file);
    return found;
}

bool procs_wait_listening(int port, int timeout_ms) {
    struct timespec pause = {0, 10 * 1000000L};
    for (int waited_ms = 0; waited_ms < timeout_ms; waited_ms += 10) {
        if (listening_now(port))
            return true;
        nanosleep(&pause, NULL); /* a poll of /proc with a deadline: no event to block on */
    }
    return listening_now(port);
}

bool procs_wait_line(child *c, const char *prefix, char *line, size_t cap, int timeout_s) {
    time_t deadline = time(NULL) + timeout_s;
    for (;;) {
        char *newline;
        while ((newline = strchr(c->output, '\n')) != NULL) {
            size_t len = (size_t)(newline - c->output);
            *newline = '\0';
            bool match = strstr(c->output, prefix) != NULL;
            bool failed = !match && strncmp(c->output, "FAIL", 4) == 0;
            *newline = '\n';
            if (failed) /* the child gave up: stop here, its FAIL line first in c->output */
                break;
            if (match)
                snprintf(line, cap, "%.*s", (int)len, c->output);
            size_t keep = c->output_len - len - 1;
            memmove(c->output, newline + 1, keep + 1);
            c->output_len = keep;
            if (match) {
                c->done = strchr(c->output, '\n') != NULL;
                return true;
            }
        }
        if (newline != NULL) /* a FAIL line */
            break;
        time_t now = time(NULL);
        if (now >= deadline || c->output_len + 1 >= sizeof c->output)
            break;
        struct pollfd pfd = {.fd = c->stdout_fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(deadline - now) * 1000) <= 0)
            continue;
        ssize_t n =
            read(c->stdout_fd, c->output + c->output_len, sizeof c->output - 1 - c->output_len);
        if (n <= 0)
            break;
        c->output_len += (size_t)n;
        c->output[c->output_len] = '\0';
    }
    if (cap)
        line[0] = '\0';
    return false;
}

int procs_setup_dir(char *dir_template) {
    signal(SIGPIPE, SIG_IGN);
    return mkdtemp(dir_template) ? 0 : -1;
}

int procs_remove_dir(const char *dir) {
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    return system(command) == 0 ? 0 : -1;
}
