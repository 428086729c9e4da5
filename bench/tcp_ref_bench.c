/*
 * tcp-ref-bench: raw loopback TCP reference (bandwidth for 1 MB and 100 MB messages, 64 B and
 * 1 KB round trips, blocking and busy-polling) and, unless --raw-only, the same measurements
 * through dr_net (inbox and callback mode, with and without
 * bounded spinning). Each measurement runs --runs times; prints median and [min, max], and the
 * process's CPU use during the run (100% = one core busy; the machine has 2).
 *
 *   tcp-ref-bench [--runs N] [--rtt-iters N] [--raw-only | --paired] [--filter TEXT]
 */
#include "net_ref.h"
#include "tcp_ref.h"

#include "derecho/error.h"
#include "derecho/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { MAX_RUNS = 64 };

/* One measurement: sizes, what to call, how the transport is set up. */
typedef struct job {
    const char *label;    /**< printed name */
    bool raw;             /**< raw TCP (tcp_ref) instead of dr_net */
    bool latency;         /**< rtt (else bandwidth) */
    size_t bytes;         /**< message size */
    size_t count;         /**< messages (bandwidth) */
    bool busy_poll;       /**< raw rtt: spin on MSG_DONTWAIT */
    dr_net_ref_opts opts; /**< dr_net configuration */
} job;

static int run_job(const job *j, size_t rtt_iters, dr_tcp_ref_result *res) {
    if (j->raw)
        return j->latency ? dr_tcp_ref_rtt(j->bytes, rtt_iters, j->busy_poll, res)
                          : dr_tcp_ref_bandwidth(j->bytes, j->count, res);
    return j->latency ? dr_net_ref_rtt(j->bytes, rtt_iters, &j->opts, res)
                      : dr_net_ref_bandwidth(j->bytes, j->count, &j->opts, res);
}

/* CPU time (user + system) of the whole process, all threads. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs a job `runs` times; prints median [min, max] of MB/s (bandwidth) or p50/p99 µs (rtt). */
static int report(const job *j, size_t rtt_iters, int runs) {
    double main_v[MAX_RUNS], tail_v[MAX_RUNS], cpu_v[MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        dr_tcp_ref_result res;
        double cpu_start = cpu_seconds(), wall_start = (double)dr_bench_now_ns() / 1e9;
        int rc = run_job(j, rtt_iters, &res);
        cpu_v[r] =
            100.0 * (cpu_seconds() - cpu_start) / ((double)dr_bench_now_ns() / 1e9 - wall_start);
        if (rc) {
            fprintf(stderr, "%s: %s\n", j->label, dr_strerror(rc));
            return rc;
        }
        main_v[r] = j->latency ? (double)res.p50_ns / 1e3 : res.mb_per_s;
        tail_v[r] = j->latency ? (double)res.p99_ns / 1e3 : res.msgs_per_s;
    }
    qsort(main_v, (size_t)runs, sizeof(double), cmp_double);
    qsort(tail_v, (size_t)runs, sizeof(double), cmp_double);
    qsort(cpu_v, (size_t)runs, sizeof(double), cmp_double);
    if (j->latency)
        printf("%-40s p50 %6.1f us [%.1f, %.1f]  p99 %7.1f us [%.1f, %.1f]  cpu %3.0f%%\n",
               j->label, main_v[runs / 2], main_v[0], main_v[runs - 1], tail_v[runs / 2], tail_v[0],
               tail_v[runs - 1], cpu_v[runs / 2]);
    else
        printf("%-40s %7.1f MB/s [%.1f, %.1f]  %7.1f msg/s  cpu %3.0f%%\n", j->label,
               main_v[runs / 2], main_v[0], main_v[runs - 1], tail_v[runs / 2], cpu_v[runs / 2]);
    fflush(stdout);
    return 0;
}

#define MB (1u << 20)
#define RAW_BW(l, b, c)                                                                            \
    {                                                                                              \
        l, true, false, b, c, false, {                                                             \
            0                                                                                      \
        }                                                                                          \
    }
#define RAW_RTT(l, b, poll)                                                                        \
    {                                                                                              \
        l, true, true, b, 0, poll, {                                                               \
            0                                                                                      \
        }                                                                                          \
    }
#define NET_BW(l, b, c, cb)                                                                        \
    {                                                                                              \
        l, false, false, b, c, false, {                                                            \
            0, 0, cb                                                                               \
        }                                                                                          \
    }
#define NET_RTT(l, b, s, ls, cb)                                                                   \
    {                                                                                              \
        l, false, true, b, 0, false, {                                                             \
            s, ls, cb                                                                              \
        }                                                                                          \
    }

static const job jobs[] = {
    RAW_BW("raw tcp bw 1 MB x 200", MB, 200),
    RAW_BW("raw tcp bw 100 MB x 4", 100 * MB, 4),
    RAW_RTT("raw tcp rtt 64 B blocking", 64, false),
    RAW_RTT("raw tcp rtt 1 KB blocking", 1024, false),
    RAW_RTT("raw tcp rtt 64 B busy-poll", 64, true),
    RAW_RTT("raw tcp rtt 1 KB busy-poll", 1024, true),
    NET_BW("dr_net bw 1 MB x 200 inbox", MB, 200, false),
    NET_BW("dr_net bw 100 MB x 4 inbox", 100 * MB, 4, false),
    NET_BW("dr_net bw 1 MB x 200 callback", MB, 200, true),
    NET_BW("dr_net bw 100 MB x 4 callback", 100 * MB, 4, true),
    NET_RTT("dr_net rtt 64 B inbox", 64, 0, 0, false),
    NET_RTT("dr_net rtt 1 KB inbox", 1024, 0, 0, false),
    NET_RTT("dr_net rtt 64 B inbox spin 20", 64, 20, 0, false),
    NET_RTT("dr_net rtt 64 B inbox loop-spin 20", 64, 0, 20, false),
    NET_RTT("dr_net rtt 64 B inbox both-spin 50", 64, 50, 50, false),
    NET_RTT("dr_net rtt 64 B callback", 64, 0, 0, true),
    NET_RTT("dr_net rtt 1 KB callback", 1024, 0, 0, true),
    NET_RTT("dr_net rtt 64 B callback loop-spin 20", 64, 0, 20, true),
    NET_RTT("dr_net rtt 1 KB callback loop-spin 20", 1024, 0, 20, true),
    NET_RTT("dr_net rtt 64 B callback loop-spin 50", 64, 0, 50, true),
};

/*
 * Paired mode: the machine is shared, so absolute figures drift by 2x within minutes. Each group
 * runs raw TCP, dr_net inbox and dr_net callback back to back (order rotated every run) and
 * reports each one's median plus the median of the per-run ratio to raw, which cancels most of
 * the drift.
 */
static const job *const paired_groups[][3] = {
    {&jobs[0], &jobs[6], &jobs[8]},   /* bw 1 MB */
    {&jobs[1], &jobs[7], &jobs[9]},   /* bw 100 MB */
    {&jobs[2], &jobs[10], &jobs[15]}, /* rtt 64 B */
    {&jobs[3], &jobs[11], &jobs[16]}, /* rtt 1 KB */
    {&jobs[2], &jobs[14], &jobs[17]}, /* rtt 64 B with bounded spinning */
};

static double metric(const job *j, const dr_tcp_ref_result *res) {
    return j->latency ? (double)res->p50_ns / 1e3 : res->mb_per_s;
}

static int run_paired_group(const job *const group[3], size_t rtt_iters, int runs) {
    double v[3][MAX_RUNS], ratio[3][MAX_RUNS];
    for (int r = 0; r < runs; r++) {
        for (int k = 0; k < 3; k++) {
            int m = (k + r) % 3;
            dr_tcp_ref_result res;
            int rc = run_job(group[m], rtt_iters, &res);
            if (rc) {
                fprintf(stderr, "%s: %s\n", group[m]->label, dr_strerror(rc));
                return rc;
            }
            v[m][r] = metric(group[m], &res);
        }
        for (int m = 0; m < 3; m++)
            ratio[m][r] = v[m][r] / v[0][r];
    }
    for (int m = 0; m < 3; m++) {
        qsort(v[m], (size_t)runs, sizeof(double), cmp_double);
        qsort(ratio[m], (size_t)runs, sizeof(double), cmp_double);
        printf("%-40s %s %8.1f %s [%.1f, %.1f]  x raw %.2f [%.2f, %.2f]\n", group[m]->label,
               group[m]->latency ? "p50" : "   ", v[m][runs / 2],
               group[m]->latency ? "us  " : "MB/s", v[m][0], v[m][runs - 1], ratio[m][runs / 2],
               ratio[m][0], ratio[m][runs - 1]);
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    int runs = 5;
    size_t rtt_iters = 20000;
    bool raw_only = false, paired = false;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rtt-iters") && i + 1 < argc)
            rtt_iters = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--raw-only"))
            raw_only = true;
        else if (!strcmp(argv[i], "--paired"))
            paired = true;
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            filter = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--runs N] [--rtt-iters N] [--raw-only | --paired] "
                    "[--filter TEXT]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || rtt_iters < 10)
        return 2;
    dr_log_set_all_levels(DR_LOG_WARN);
    printf("# %d runs each, %zu round trips per rtt run; median [min, max]\n", runs, rtt_iters);
    int rc = 0;
    for (size_t g = 0; paired && g < sizeof paired_groups / sizeof paired_groups[0]; g++)
        if (!filter || strstr(paired_groups[g][0]->label, filter))
            rc |= run_paired_group(paired_groups[g], rtt_iters, runs);
    for (size_t i = 0; !paired && i < sizeof jobs / sizeof jobs[0]; i++) {
        if ((raw_only && !jobs[i].raw) || (filter && !strstr(jobs[i].label, filter)))
            continue;
        rc |= report(&jobs[i], rtt_iters, runs);
    }
    return rc ? 1 : 0;
}
