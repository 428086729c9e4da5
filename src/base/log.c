/*
 * Logging to stderr (include/derecho/log.h). Each line is formatted into a local buffer and
 * written with one write(2) call, so concurrent lines never interleave and no lock is needed.
 */
#include "derecho/log.h"

#include "derecho/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

_Atomic int dr_log_thresholds[DR_LOGM_COUNT] = {
    DR_LOG_INFO, DR_LOG_INFO, DR_LOG_INFO, DR_LOG_INFO, DR_LOG_INFO,
    DR_LOG_INFO, DR_LOG_INFO, DR_LOG_INFO, DR_LOG_INFO, DR_LOG_INFO,
};

static _Atomic int log_node_id = -1;
static char log_name[64] = "derecho_debug";

static const char *const level_names[] = {"trace", "debug",    "info", "warn",
                                          "error", "critical", "off"};
static const char *const module_names[DR_LOGM_COUNT] = {
    "general", "conf", "net", "sst", "viewmanager", "rpc", "persistence", "store", "infer", "app",
};

void dr_log_set_level(dr_log_module module, dr_log_level level) {
    if ((int)module >= 0 && module < DR_LOGM_COUNT)
        atomic_store(&dr_log_thresholds[module], (int)level);
}

void dr_log_set_all_levels(dr_log_level level) {
    for (int m = 0; m < DR_LOGM_COUNT; m++)
        atomic_store(&dr_log_thresholds[m], (int)level);
}

void dr_log_set_node_id(int node_id) {
    atomic_store(&log_node_id, node_id);
}

void dr_log_set_name(const char *name) {
    snprintf(log_name, sizeof log_name, "%s", name ? name : "");
}

int dr_log_parse_level(const char *text, dr_log_level *level) {
    static const struct {
        const char *name;
        dr_log_level level;
    } names[] = {
        {"trace", DR_LOG_TRACE}, {"debug", DR_LOG_DEBUG},       {"info", DR_LOG_INFO},
        {"warn", DR_LOG_WARN},   {"warning", DR_LOG_WARN},      {"error", DR_LOG_ERROR},
        {"err", DR_LOG_ERROR},   {"critical", DR_LOG_CRITICAL}, {"off", DR_LOG_OFF},
    };
    for (size_t i = 0; text && i < sizeof names / sizeof *names; i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *level = names[i].level;
            return DR_OK;
        }
    }
    return DR_EINVAL;
}

const char *dr_log_level_name(dr_log_level level) {
    if ((int)level < 0 || level > DR_LOG_OFF)
        return "?";
    return level_names[level];
}

const char *dr_log_module_name(dr_log_module module) {
    if ((int)module < 0 || module >= DR_LOGM_COUNT)
        return NULL;
    return module_names[module];
}

int dr_log_limit_allow(dr_log_limit *limit, unsigned int *suppressed_out) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now_ms =
        (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)(ts.tv_nsec / 1000000);
    unsigned long long start = atomic_load_explicit(&limit->window_start_ms, memory_order_relaxed);
    *suppressed_out = 0;
    if (start == 0 || now_ms - start >= DR_LOG_LIMIT_WINDOW_MS) {
        if (atomic_compare_exchange_strong(&limit->window_start_ms, &start, now_ms ? now_ms : 1)) {
            *suppressed_out = atomic_exchange(&limit->suppressed, 0);
            atomic_store(&limit->lines, 1);
            return 1;
        }
    }
    if (atomic_fetch_add(&limit->lines, 1) < DR_LOG_LIMIT_LINES)
        return 1;
    atomic_fetch_add(&limit->suppressed, 1);
    return 0;
}

void dr_log_write(dr_log_module module, dr_log_level level, const char *fmt, ...) {
    char line[2048];
    struct timeval now;
    struct tm local;
    gettimeofday(&now, NULL);
    localtime_r(&now.tv_sec, &local);
    int node_id = atomic_load(&log_node_id);
    char node[24] = "";
    if (node_id >= 0)
        snprintf(node, sizeof node, "[node %d] ", node_id);
    int used = snprintf(line, sizeof line, "[%02d:%02d:%02d.%06ld] [%s] %s[thread %ld] [%s] [%s] ",
                        local.tm_hour, local.tm_min, local.tm_sec, (long)now.tv_usec, log_name,
                        node, (long)syscall(SYS_gettid), dr_log_level_name(level),
                        dr_log_module_name(module) ? dr_log_module_name(module) : "?");
    if (used < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int body = vsnprintf(line + used, sizeof line - (size_t)used - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)used + (body < 0 ? 0 : (size_t)body);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}
