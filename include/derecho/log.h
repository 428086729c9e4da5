/** @file
 * Logging: leveled, per-module, one line per call to stderr.
 *
 * Line format (close to the seed's spdlog lines):
 *   [HH:MM:SS.uuuuuu] [derecho_debug] [node 3] [thread 12345] [info] [rpc] message
 * A disabled level costs one relaxed atomic load and a compare (DR_LOG checks before it
 * formats anything). Levels come from the [LOGGER] section (dr_log_configure) or are set
 * directly. All functions are thread-safe; lines from different threads never interleave.
 */
#ifndef DERECHO_LOG_H
#define DERECHO_LOG_H

#include <stdatomic.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Severity, lowest first; DR_LOG_OFF disables a module. */
typedef enum dr_log_level {
    DR_LOG_TRACE = 0,
    DR_LOG_DEBUG,
    DR_LOG_INFO,
    DR_LOG_WARN,
    DR_LOG_ERROR,
    DR_LOG_CRITICAL,
    DR_LOG_OFF,
} dr_log_level;

/**
 * Log modules. Each has its own level; the config key is "<name>_log_level" in [LOGGER]
 * (names: general, conf, net, sst, viewmanager, rpc, persistence, store, infer, app).
 * An unset module level inherits default_log_level.
 */
typedef enum dr_log_module {
    DR_LOGM_GENERAL = 0,
    DR_LOGM_CONF,
    DR_LOGM_NET,
    DR_LOGM_SST,
    DR_LOGM_VIEWMANAGER,
    DR_LOGM_RPC,
    DR_LOGM_PERSISTENCE,
    DR_LOGM_STORE,
    DR_LOGM_INFER,
    DR_LOGM_APP,
    DR_LOGM_COUNT,
} dr_log_module;

/** Current threshold per module (internal to the macros; use dr_log_set_level). */
extern _Atomic int dr_log_thresholds[DR_LOGM_COUNT];

/** Logs a printf-style message if `level` is enabled for `module`. */
#define DR_LOG(module, level, ...)                                                                 \
    do {                                                                                           \
        if ((int)(level) >=                                                                        \
            atomic_load_explicit(&dr_log_thresholds[(module)], memory_order_relaxed))              \
            dr_log_write((module), (level), __VA_ARGS__);                                          \
    } while (0)

#define DR_TRACE(module, ...) DR_LOG(module, DR_LOG_TRACE, __VA_ARGS__)
#define DR_DEBUG(module, ...) DR_LOG(module, DR_LOG_DEBUG, __VA_ARGS__)
#define DR_INFO(module, ...)  DR_LOG(module, DR_LOG_INFO, __VA_ARGS__)
#define DR_WARN(module, ...)  DR_LOG(module, DR_LOG_WARN, __VA_ARGS__)
#define DR_ERROR(module, ...) DR_LOG(module, DR_LOG_ERROR, __VA_ARGS__)

/**
 * State of one rate-limited call site (DR_LOG_LIMITED): zero-initialised, usually static.
 * Lock-free; concurrent callers may let one extra line through at a window's edge.
 */
typedef struct dr_log_limit {
    _Atomic unsigned long long window_start_ms; /**< start of the current window */
    _Atomic unsigned int lines;                 /**< lines written in the window */
    _Atomic unsigned int suppressed;            /**< lines dropped in the window */
} dr_log_limit;

/** Lines a DR_LOG_LIMITED call site writes per window, and the window's length. */
#define DR_LOG_LIMIT_LINES     5u
#define DR_LOG_LIMIT_WINDOW_MS 10000u

/**
 * Whether a rate-limited call site may write now: at most DR_LOG_LIMIT_LINES lines per
 * DR_LOG_LIMIT_WINDOW_MS. When a new window opens, *suppressed_out receives the number of lines
 * dropped in the previous one (else 0). Thread-safe.
 */
int dr_log_limit_allow(dr_log_limit *limit, unsigned int *suppressed_out);

/**
 * As DR_LOG, but at most DR_LOG_LIMIT_LINES lines per DR_LOG_LIMIT_WINDOW_MS from this call
 * site; the first line of the next window says how many were suppressed. For lines an outside
 * peer can trigger at will (one per connection, per bad frame): a flood then costs bounded log.
 */
#define DR_LOG_LIMITED(module, level, ...)                                                         \
    do {                                                                                           \
        static dr_log_limit dr_log_limit_site_;                                                    \
        unsigned int dr_log_suppressed_ = 0;                                                       \
        if ((int)(level) >=                                                                        \
                atomic_load_explicit(&dr_log_thresholds[(module)], memory_order_relaxed) &&        \
            dr_log_limit_allow(&dr_log_limit_site_, &dr_log_suppressed_)) {                        \
            if (dr_log_suppressed_)                                                                \
                dr_log_write((module), (level), "(%u similar lines suppressed)",                   \
                             dr_log_suppressed_);                                                  \
            dr_log_write((module), (level), __VA_ARGS__);                                          \
        }                                                                                          \
    } while (0)

/** Formats and writes one line unconditionally (use the DR_LOG macros instead). */
void dr_log_write(dr_log_module module, dr_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Sets one module's level. */
void dr_log_set_level(dr_log_module module, dr_log_level level);

/** Sets every module's level. */
void dr_log_set_all_levels(dr_log_level level);

/** Sets the node id shown in each line (-1 hides it). */
void dr_log_set_node_id(int node_id);

/** Sets the logger name shown in each line (default "derecho_debug"); the string is copied. */
void dr_log_set_name(const char *name);

/**
 * Parses a level name: trace, debug, info, warn/warning, error/err, critical, off
 * (case-insensitive). Returns 0 and sets *level, or DR_EINVAL.
 */
int dr_log_parse_level(const char *text, dr_log_level *level);

/** Returns the lower-case name of a level ("info"). */
const char *dr_log_level_name(dr_log_level level);

/** Returns a module's name as used in config keys ("viewmanager"), or NULL if out of range. */
const char *dr_log_module_name(dr_log_module module);

#ifdef __cplusplus
}
#endif
#endif
