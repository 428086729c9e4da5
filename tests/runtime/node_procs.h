/*
 * Real test processes (group_node, kv_node) for the multi-process tests: spawn, wait for their
 * output line, release and reap. Test-only code (asserts with cmocka).
 */
#ifndef DR_TESTS_NODE_PROCS_H
#define DR_TESTS_NODE_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum { NODE_PROCS_MAX = 16 }; /* children one wait may watch */

/** One group_node process. */
typedef struct child {
    pid_t pid;
    int stdin_fd;     /* write end of the child's stdin: closing it releases the child */
    int stdout_fd;    /* read end of the child's stdout */
    char output[512]; /* what it printed */
    size_t output_len;
    bool done; /* printed its DONE line */
} child;

/**
 * Starts $DR_BIN_DIR/tests/NAME [FIRST_ARG] ARGS... (first_arg may be NULL; args is
 * NULL-terminated or NULL) with pipes on its stdin and stdout.
 */
void spawn_test_program(child *c, const char *name, const char *first_arg, char *const *args);

/** Starts $DR_BIN_DIR/tests/group_node CONFIG_PATH ARGS... (args NULL-terminated or NULL). */
void spawn_node(child *c, const char *config_path, char *const *args);

/** Reads the children's output until each printed a line (or closed it) or timeout_s passed. */
void wait_all_done(child *children, int count, int timeout_s);

/**
 * Removes the first line from c->output (what wait_all_done waited for), keeping anything read
 * after it, so that the next wait_all_done waits for the child's next line.
 */
void drop_first_line(child *c);

/** Releases every child (closes its stdin), reaps it (SIGKILL after 10 s); returns how many
 * exited with status 0. */
int finish_all(child *children, int count);

/**
 * Kills and reaps every child spawned and not yet reaped by finish_all: a per-test teardown, so
 * that a test that failed half-way (a cmocka assertion jumps past its finish_all) leaves no
 * process holding the next test's ports. Children also die with the test process
 * (PR_SET_PDEATHSIG) and inherit no other child's pipes (O_CLOEXEC).
 */
int kill_leftover_children(void **state);

/**
 * Group setup of a multi-process test: ignores SIGPIPE (a child that died must not kill the
 * test through a write to its stdin) and creates the test's scratch folder from `dir_template`
 * (a mkdtemp template, filled in place). Returns 0, or -1 if the folder cannot be made.
 */
int procs_setup_dir(char *dir_template);

/** Group teardown: removes `dir` and everything in it. Returns 0, or -1 on failure. */
int procs_remove_dir(const char *dir);

/**
 * A free block of `span` ports for a test: `requested` when every port of
 * [requested, requested + span) can be bound on 127.0.0.1 right now (SO_REUSEADDR, as the
 * group's listener), else the same offset +500, +250 or +750 modulo 1000 inside requested's
 * thousand-port block (a leftover process or another run may hold one). Each test owns the
 * whole thousand-port block of its requested base (CTest RESOURCE_LOCK ports_<block>, see
 * tests/runtime/CMakeLists.txt), so the shifted block never meets another test of the suite.
 * Returns `requested` when none is free (the test then fails on "address in use").
 */
int procs_free_port_base(int requested, int span);

/**
 * Waits until a socket listens on 127.0.0.1:port (or the wildcard address), read from
 * /proc/net/tcp without connecting, or timeout_ms passed. Returns true when it listens. Used to
 * start joiners only once the leader listens, instead of a fixed pause.
 */
bool procs_wait_listening(int port, int timeout_ms);

/**
 * Reads c's output until it holds a complete line containing `prefix` (lines before it are
 * dropped) or timeout_s passed; the line (without newline) goes to line[0..cap). Returns true
 * when found. Unlike wait_all_done, keeps what was read after that line in c->output. A line
 * starting with "FAIL" (the test programs' way to give up) ends the wait at once: false, with
 * that line first in c->output for the caller's failure message.
 */
bool procs_wait_line(child *c, const char *prefix, char *line, size_t cap, int timeout_s);

#endif
