/*
 * derecho-sim: runs the deterministic simulator over a range of seeds within a time budget.
 *
 *   derecho-sim [--seeds A..B | --seed S] [--time-budget-s T] [--nodes N] [--trace]
 *               [--broken-delivery] [--max-virtual-ms M]
 *
 * Prints one line per failing seed ("seed 17 FAILED: total order: ..." and the replay command)
 * and a summary with the counts. Exit status 0 if every seed run passed, 1 if any failed,
 * 2 for bad arguments. --trace prints each run's protocol decisions (use it with one seed).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "derecho/log.h"
#include "sim/sim.h"

typedef struct cli {
    uint64_t first_seed, last_seed;
    double time_budget_s;
    uint32_t nodes;
    int trace;
    int broken;
    int faults;
    int skip_trim;
    uint64_t max_virtual_us;
} cli;

/** The seed being run, for the crash handler. */
static volatile sig_atomic_t crash_seed_valid;
static volatile uint64_t crash_seed;

/** An assertion (SIGABRT) or a crash inside a run: name the seed so it can be replayed. */
static void on_crash(int signo) {
    char line[160];
    int len = snprintf(line, sizeof line,
                       "\nseed %" PRIu64 " CRASHED (signal %d, an assertion or a fault)\n"
                       "  replay: derecho-sim --seed %" PRIu64 " --trace\n",
                       crash_seed, signo, crash_seed);
    if (crash_seed_valid && len > 0)
        (void)!write(STDOUT_FILENO, line, (size_t)len);
    signal(signo, SIG_DFL);
    raise(signo);
}

static int usage(void) {
    fprintf(stderr, "usage: derecho-sim [--seeds A..B | --seed S] [--time-budget-s T] "
                    "[--nodes N] [--trace] [--broken-delivery] [--faults] [--skip-trim] "
                    "[--max-virtual-ms M]\n");
    return 2;
}

static int parse_seeds(const char *text, cli *c) {
    const char *dots = strstr(text, "..");
    if (dots == NULL)
        return -1;
    c->first_seed = strtoull(text, NULL, 10);
    c->last_seed = strtoull(dots + 2, NULL, 10);
    return c->last_seed >= c->first_seed ? 0 : -1;
}

static int parse_args(int argc, char **argv, cli *c) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--trace") == 0) {
            c->trace = 1;
        } else if (strcmp(arg, "--broken-delivery") == 0) {
            c->broken = 1;
        } else if (strcmp(arg, "--faults") == 0) {
            c->faults = 1;
        } else if (strcmp(arg, "--skip-trim") == 0) {
            c->skip_trim = 1;
        } else if (value == NULL) {
            return -1;
        } else if (strcmp(arg, "--seeds") == 0) {
            if (parse_seeds(value, c) != 0)
                return -1;
            i++;
        } else if (strcmp(arg, "--seed") == 0) {
            c->first_seed = c->last_seed = strtoull(value, NULL, 10);
            i++;
        } else if (strcmp(arg, "--time-budget-s") == 0) {
            c->time_budget_s = atof(value);
            i++;
        } else if (strcmp(arg, "--nodes") == 0) {
            c->nodes = (uint32_t)atoi(value);
            i++;
        } else if (strcmp(arg, "--max-virtual-ms") == 0) {
            c->max_virtual_us = strtoull(value, NULL, 10) * 1000u;
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

static double wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    cli c = {.first_seed = 0,
             .last_seed = 999,
             .time_budget_s = 60,
             .max_virtual_us = 30u * 1000u * 1000u};
    if (parse_args(argc, argv, &c) != 0)
        return usage();
    dr_log_set_all_levels(DR_LOG_OFF);
    if (c.trace)
        setvbuf(stdout, NULL, _IOLBF, 0); /* a crash keeps the trace up to its last line */
    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    double start = wall_seconds();
    uint64_t run = 0, failed = 0, deliveries = 0, messages = 0, frames = 0;
    double worst_settle = 0; /* fault mode: failure timeouts from the last fault to the end */
    uint64_t worst_seed = 0;
    uint64_t seed = c.first_seed;
    for (; seed <= c.last_seed; seed++) {
        if (run > 0 && wall_seconds() - start > c.time_budget_s)
            break;
        sim_config config = {.seed = seed,
                             .num_nodes = c.nodes,
                             .broken_delivery = c.broken,
                             .faults = c.faults,
                             .skip_trim = c.skip_trim,
                             .trace = c.trace ? stdout : NULL,
                             .max_virtual_us = c.max_virtual_us};
        sim_result result;
        crash_seed = seed;
        crash_seed_valid = 1;
        if (sim_run(&config, &result) != 0) {
            fprintf(stderr, "seed %" PRIu64 ": simulator setup failed\n", seed);
            return 1;
        }
        run++;
        deliveries += result.deliveries;
        messages += result.messages_sent;
        frames += result.frames;
        if (result.passed && result.timeout_us > 0 &&
            (double)result.settle_us / (double)result.timeout_us > worst_settle) {
            worst_settle = (double)result.settle_us / (double)result.timeout_us;
            worst_seed = seed;
        }
        if (!result.passed) {
            failed++;
            printf("seed %" PRIu64 " FAILED (%u nodes): %s\n  replay: derecho-sim --seed %" PRIu64
                   " --trace%s%s\n",
                   seed, result.num_nodes, result.failure, seed,
                   c.broken ? " --broken-delivery" : "",
                   c.faults ? (c.skip_trim ? " --faults --skip-trim" : " --faults") : "");
        }
    }
    double elapsed = wall_seconds() - start;
    printf("derecho-sim: %" PRIu64 " seeds run (%" PRIu64 "..%" PRIu64 ") in %.1f s: %" PRIu64
           " passed, %" PRIu64 " failed; %" PRIu64 " messages multicast, %" PRIu64
           " deliveries checked, %" PRIu64 " frames%s\n",
           run, c.first_seed, run ? c.first_seed + run - 1 : c.first_seed, elapsed, run - failed,
           failed, messages, deliveries, frames,
           seed <= c.last_seed ? " (stopped by the time budget)" : "");
    if (c.faults && worst_settle > 0)
        printf("derecho-sim: slowest settling after the last fault: %.1f failure timeouts "
               "(seed %" PRIu64 ")\n",
               worst_settle, worst_seed);
    return failed == 0 ? 0 : 1;
}
