/*
 * derecho-sim: runs the deterministic simulator over a range of seeds within a time budget.
 *
 *   derecho-sim [--seeds A..B | --seed S] [--time-budget-s T] [--nodes N] [--trace]
 *               [--faults] [--no-raw] [--broken-delivery] [--skip-trim] [--max-virtual-ms M]
 *               [--tamper corrupt|view|deaf|lost-sync|skip-truncate]
 *               [--total-restart [--partial-restarts]] [--fifo-links]
 *   derecho-sim --help           what it does, every option with its default, examples
 *
 * Prints one line per failing seed ("seed 17 FAILED: total order: ..." and the replay command)
 * and a summary with the counts. Exit status 0 if every seed run passed, 1 if any failed,
 * 2 for bad arguments. --trace prints each run's protocol decisions (use it with one seed).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
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
    int no_raw;
    int total_restart;
    int partial_restarts;
    int fifo_links;
    sim_tamper tamper; /* --tamper */
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

static const char help_text[] =
    "derecho-sim: runs the deterministic simulator of the group protocol over a range of seeds\n"
    "(one simulated cluster per seed, every invariant checked after each step) within a time\n"
    "budget; prints each failing seed with the command that replays it, then a summary.\n"
    "\n"
    "usage: derecho-sim [options]\n"
    "       derecho-sim --help\n"
    "\n"
    "  --seeds A..B          run seeds A to B (default 0..999)\n"
    "  --seed S              run seed S only\n"
    "  --time-budget-s T     stop starting new seeds after T seconds, > 0 (default 60)\n"
    "  --nodes N             simulated nodes, 1..15 (default: chosen by each seed, 2..7)\n"
    "  --faults              fault mode: crashes, long pauses, leaves, partitions, joins\n"
    "  --total-restart       durable mode: logs, persistence reports, 1-3 power cuts of the\n"
    "                        whole group and total restarts from the saved views and logs\n"
    "                        (invariant 6: no globally persisted version lost)\n"
    "  --partial-restarts    with --total-restart: an earlier cut may bring back a random\n"
    "                        subset only; the others return at the next cut\n"
    "  --max-virtual-ms M    liveness deadline in virtual time, >= 1 (default 30000)\n"
    "  --trace               print each run's protocol decisions (use with one seed)\n"
    "  --broken-delivery     test switch: ordered shards deliver on receipt (must fail)\n"
    "  --skip-trim           test switch: view changes skip the ragged trim (must fail)\n"
    "  --fifo-links          every link one FIFO: control frames never overtake data (seeds\n"
    "                        recorded before the transport's urgent lane replay as they were)\n"
    "  --no-raw              fault mode: ordered subgroups only (seeds recorded before raw\n"
    "                        subgroups were part of the fault layouts replay as they were)\n"
    "  --tamper KIND         test switch: the checker sees a wrong history (must fail):\n"
    "                        corrupt (a payload byte), view (a view's id), deaf (a node hears\n"
    "                        nothing); with --total-restart: lost-sync (a crash takes a synced\n"
    "                        record), skip-truncate (a node ignores its restart trim)\n"
    "\n"
    "Exit codes: 0 every seed passed, 1 a seed failed, 2 bad arguments.\n"
    "\n"
    "examples:\n"
    "  derecho-sim --seeds 0..199 --time-budget-s 30\n"
    "  derecho-sim --faults --seeds 0..99\n"
    "  derecho-sim --total-restart --seeds 0..999\n"
    "  derecho-sim --seed 17 --trace\n";

/* Says what was wrong, then the help on stderr; returns the exit code 2. */
static int usage_error(const char *what, const char *value) {
    fprintf(stderr, "derecho-sim: %s%s%s\n\n%s", what, value ? " " : "", value ? value : "",
            help_text);
    return 2;
}

/* A whole decimal number in [min, max] into *out; false otherwise. */
static bool parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out) {
    char *end = NULL;
    if (!text || *text < '0' || *text > '9')
        return false;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end || value < min || value > max)
        return false;
    *out = value;
    return true;
}

static int parse_seeds(const char *text, cli *c) {
    const char *dots = strstr(text, "..");
    char first[32];
    if (dots == NULL || (size_t)(dots - text) >= sizeof first)
        return -1;
    memcpy(first, text, (size_t)(dots - text));
    first[dots - text] = '\0';
    if (!parse_u64(first, 0, UINT64_MAX, &c->first_seed) ||
        !parse_u64(dots + 2, 0, UINT64_MAX, &c->last_seed))
        return -1;
    return c->last_seed >= c->first_seed ? 0 : -1;
}

/* An option with a value; 0, or the exit code 2 after saying what was wrong. */
static int parse_valued(const char *arg, const char *value, cli *c) {
    uint64_t n = 0;
    if (strcmp(arg, "--seeds") == 0) {
        if (parse_seeds(value, c) != 0)
            return usage_error("--seeds wants a range A..B with A <= B, like 0..99, not", value);
    } else if (strcmp(arg, "--seed") == 0) {
        if (!parse_u64(value, 0, UINT64_MAX, &n))
            return usage_error("--seed wants a whole number, not", value);
        c->first_seed = c->last_seed = n;
    } else if (strcmp(arg, "--time-budget-s") == 0) {
        char *end = NULL;
        c->time_budget_s = strtod(value, &end);
        if (*end || !(c->time_budget_s > 0))
            return usage_error("--time-budget-s wants a number of seconds > 0, not", value);
    } else if (strcmp(arg, "--nodes") == 0) {
        if (!parse_u64(value, 1, 15, &n))
            return usage_error("--nodes wants a whole number from 1 to 15, not", value);
        c->nodes = (uint32_t)n;
    } else if (strcmp(arg, "--tamper") == 0) {
        if (strcmp(value, "corrupt") == 0)
            c->tamper = SIM_TAMPER_CORRUPT;
        else if (strcmp(value, "view") == 0)
            c->tamper = SIM_TAMPER_VIEW;
        else if (strcmp(value, "deaf") == 0)
            c->tamper = SIM_TAMPER_DEAF;
        else if (strcmp(value, "lost-sync") == 0)
            c->tamper = SIM_TAMPER_LOST_SYNC;
        else if (strcmp(value, "skip-truncate") == 0)
            c->tamper = SIM_TAMPER_SKIP_TRUNCATE;
        else
            return usage_error(
                "--tamper wants corrupt, view, deaf, lost-sync or skip-truncate, not", value);
    } else if (strcmp(arg, "--max-virtual-ms") == 0) {
        if (!parse_u64(value, 1, UINT64_MAX / 1000u, &n))
            return usage_error("--max-virtual-ms wants a whole number >= 1, not", value);
        c->max_virtual_us = n * 1000u;
    } else {
        return usage_error("unknown argument", arg);
    }
    return 0;
}

/* 0, 1 after printing the help (--help), or 2 after saying what was wrong. */
static int parse_args(int argc, char **argv, cli *c) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help_text, stdout);
            return 1;
        } else if (strcmp(arg, "--trace") == 0) {
            c->trace = 1;
        } else if (strcmp(arg, "--broken-delivery") == 0) {
            c->broken = 1;
        } else if (strcmp(arg, "--faults") == 0) {
            c->faults = 1;
        } else if (strcmp(arg, "--skip-trim") == 0) {
            c->skip_trim = 1;
        } else if (strcmp(arg, "--fifo-links") == 0) {
            c->fifo_links = 1;
        } else if (strcmp(arg, "--no-raw") == 0) {
            c->no_raw = 1;
        } else if (strcmp(arg, "--total-restart") == 0) {
            c->total_restart = 1;
        } else if (strcmp(arg, "--partial-restarts") == 0) {
            c->partial_restarts = 1;
        } else if (strncmp(arg, "--", 2) != 0 || value == NULL) {
            return usage_error(strncmp(arg, "--", 2) == 0 ? "a value is missing after"
                                                          : "unexpected argument",
                               arg);
        } else {
            int rc = parse_valued(arg, value, c);
            if (rc != 0)
                return rc;
            i++;
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
    int parsed = parse_args(argc, argv, &c);
    if (parsed != 0)
        return parsed == 1 ? 0 : parsed;
    if (c.total_restart && (c.faults || c.skip_trim))
        return usage_error("--total-restart is its own scenario: not with", "--faults/--skip-trim");
    if (c.partial_restarts && !c.total_restart)
        return usage_error("--partial-restarts needs", "--total-restart");
    if ((c.tamper == SIM_TAMPER_LOST_SYNC || c.tamper == SIM_TAMPER_SKIP_TRUNCATE) &&
        !c.total_restart)
        return usage_error("--tamper lost-sync and skip-truncate need", "--total-restart");
    dr_log_set_all_levels(DR_LOG_OFF);
    if (c.trace)
        setvbuf(stdout, NULL, _IOLBF, 0); /* a crash keeps the trace up to its last line */
    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    double start = wall_seconds();
    uint64_t run = 0, failed = 0, deliveries = 0, messages = 0, frames = 0, overtakes = 0;
    double worst_settle = 0; /* fault mode: failure timeouts from the last fault to the end */
    uint64_t both_ends = 0;  /* fault mode: runs where one broken link cost both its ends */
    uint64_t restarts = 0, rejoined = 0; /* fault mode: restarted incarnations, rejoined ones */
    uint64_t power_cuts = 0, restart_views = 0; /* durable mode */
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
                             .no_raw = c.no_raw,
                             .tamper = c.tamper,
                             .total_restart = c.total_restart,
                             .partial_restarts = c.partial_restarts,
                             .fifo_links = c.fifo_links,
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
        overtakes += result.overtakes;
        both_ends += result.link_cost_both ? 1u : 0u;
        restarts += result.restarts;
        rejoined += result.rejoined;
        power_cuts += result.power_cuts;
        restart_views += result.restart_views;
        if (result.passed && result.timeout_us > 0 &&
            (double)result.settle_us / (double)result.timeout_us > worst_settle) {
            worst_settle = (double)result.settle_us / (double)result.timeout_us;
            worst_seed = seed;
        }
        if (!result.passed) {
            failed++;
            static const char *const tampers[] = {"",
                                                  " --tamper corrupt",
                                                  " --tamper view",
                                                  " --tamper deaf",
                                                  " --tamper lost-sync",
                                                  " --tamper skip-truncate"};
            printf("seed %" PRIu64 " FAILED (%u nodes): %s\n  replay: derecho-sim --seed %" PRIu64
                   " --trace%s%s%s%s%s%s\n",
                   seed, result.num_nodes, result.failure, seed,
                   c.broken ? " --broken-delivery" : "",
                   c.faults ? (c.skip_trim ? " --faults --skip-trim" : " --faults") : "",
                   c.faults && c.no_raw ? " --no-raw" : "",
                   c.total_restart ? (c.partial_restarts ? " --total-restart --partial-restarts"
                                                         : " --total-restart")
                                   : "",
                   tampers[c.tamper], c.fifo_links ? " --fifo-links" : "");
        }
    }
    double elapsed = wall_seconds() - start;
    printf("derecho-sim: %" PRIu64 " seeds run (%" PRIu64 "..%" PRIu64 ") in %.1f s: %" PRIu64
           " passed, %" PRIu64 " failed; %" PRIu64 " messages multicast, %" PRIu64
           " deliveries checked, %" PRIu64 " frames%s\n",
           run, c.first_seed, run ? c.first_seed + run - 1 : c.first_seed, elapsed, run - failed,
           failed, messages, deliveries, frames,
           seed <= c.last_seed ? " (stopped by the time budget)" : "");
    if (!c.fifo_links)
        printf("derecho-sim: %" PRIu64 " control frames overtook data sent before them on their "
               "link\n",
               overtakes);
    if (c.faults && both_ends > 0)
        printf("derecho-sim: %" PRIu64 " runs lost both ends of one broken link (a delayed "
               "accusation by the lower end)\n",
               both_ends);
    if (c.faults)
        printf("derecho-sim: %" PRIu64
               " crashed nodes restarted with their id and address, %" PRIu64
               " of them rejoined as new members\n",
               restarts, rejoined);
    if (c.total_restart)
        printf("derecho-sim: %" PRIu64 " power cuts of the whole group, %" PRIu64
               " restart views installed\n",
               power_cuts, restart_views);
    if (c.faults && worst_settle > 0)
        printf("derecho-sim: slowest settling after the last fault: %.1f failure timeouts "
               "(seed %" PRIu64 ")\n",
               worst_settle, worst_seed);
    return failed == 0 ? 0 : 1;
}
