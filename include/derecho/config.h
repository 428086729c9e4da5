/** @file
 * Configuration: derecho.cfg (INI) + derecho_node.cfg overlay + environment + command-line
 * overrides, resolved into one immutable-after-load dr_config with typed getters.
 *
 * Load order (later wins):
 *   1. the main file: options.file_path, else $DERECHO_CONF_FILE, else ./derecho.cfg
 *      (it must exist);
 *   2. the per-node overlay: options.node_file_path, else $DERECHO_NODE_CONF_FILE, else
 *      ./derecho_node.cfg (optional unless named explicitly or by the environment);
 *   3. overrides "SECTION/key=value" (the command line's --SECTION/key=value, without "--").
 *
 * Every known key is checked as it is read (type, range) and the whole configuration is
 * checked after loading (local_id present and below max_node_id, min_nodes <= max_nodes,
 * reply sizes >= 128, ...). Errors name the file, line, key and problem, e.g.
 *   derecho.cfg:14: [DERECHO] gms_port = 99999: port out of range (1..65535)
 * Unknown sections and keys are warned about (DR_LOGM_CONF) and kept, not fatal.
 *
 * Old and new key names are both accepted and resolve to the new name: leader_ip/contact_ip,
 * leader_gms_port/contact_port, rpc_port/state_transfer_port, timeout_ms/heartbeat_ms.
 * Section names are case-insensitive and stored upper-case; keys are stored lower-case.
 * `[SUBGROUP/<PROFILE>]` keys fall back to [SUBGROUP/DEFAULT], then to the built-in default.
 * [LOGGER] `<module>_log_level` falls back to default_log_level.
 *
 * A loaded dr_config is read-only and may be read from any thread concurrently.
 */
#ifndef DERECHO_CONFIG_H
#define DERECHO_CONFIG_H

#include "derecho/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Largest configuration file accepted, in bytes. */
#define DR_CONFIG_MAX_FILE_BYTES (1u << 20)

/** Opaque, loaded configuration. */
typedef struct dr_config dr_config;

/** Where to load from. Zero-initialise and set what you need. */
typedef struct dr_config_options {
    const char *file_path;      /**< main file; NULL: $DERECHO_CONF_FILE or ./derecho.cfg */
    const char *node_file_path; /**< overlay; NULL: $DERECHO_NODE_CONF_FILE or ./derecho_node.cfg */
    const char *const *overrides; /**< "SECTION/key=value" strings (borrowed during the call) */
    size_t override_count;        /**< number of overrides */
} dr_config_options;

/**
 * Loads, overlays, overrides and validates a configuration. On success *out owns a new
 * dr_config (free with dr_config_free). On failure returns a negative code (DR_EIO for a
 * missing or unreadable file, DR_EINVAL for syntax or validation errors, DR_ERANGE for a
 * value out of range, DR_ETOOBIG for an oversized file) with a message in *err (may be NULL).
 * Reads the environment; call from one thread at a time.
 */
int dr_config_load(const dr_config_options *options, dr_config **out, dr_err *err);

/**
 * Like dr_config_load but parses INI text held in memory (named `origin_name` in messages);
 * no overlay file and no environment are read. For tests and embedded configurations.
 */
int dr_config_load_string(const char *ini_text, const char *origin_name,
                          const char *const *overrides, size_t override_count, dr_config **out,
                          dr_err *err);

/** Frees a configuration (NULL is fine). */
void dr_config_free(dr_config *config);

/**
 * Returns the effective value of section/key as a string (borrowed, valid until
 * dr_config_free), applying the fallbacks above; NULL when unset without default.
 * Old key names are accepted.
 */
const char *dr_config_get(const dr_config *config, const char *section, const char *key);

/** Returns true if section/key was set explicitly (by a file or an override). */
bool dr_config_is_set(const dr_config *config, const char *section, const char *key);

/**
 * Typed getters: parse the effective value. Return 0 and set *out, DR_ENOTFOUND when the
 * value is unset without default, DR_EINVAL when it does not parse as the type, DR_ERANGE
 * when it does not fit. Booleans accept true/false, yes/no, on/off, 1/0.
 */
int dr_config_get_u64(const dr_config *config, const char *section, const char *key, uint64_t *out);
int dr_config_get_u32(const dr_config *config, const char *section, const char *key, uint32_t *out);
int dr_config_get_u16(const dr_config *config, const char *section, const char *key, uint16_t *out);
int dr_config_get_bool(const dr_config *config, const char *section, const char *key, bool *out);

/**
 * Subgroup profile getters: read `key` of `[SUBGROUP/<profile>]` (profile case-insensitive,
 * NULL means DEFAULT), falling back to [SUBGROUP/DEFAULT] and the built-in default.
 */
int dr_config_subgroup_u64(const dr_config *config, const char *profile, const char *key,
                           uint64_t *out);
int dr_config_subgroup_u32(const dr_config *config, const char *profile, const char *key,
                           uint32_t *out);

/** The file the main configuration came from ("<string>" names for load_string). Borrowed. */
const char *dr_config_source(const dr_config *config);

/**
 * Writes the effective configuration as INI: every known section and key with its resolved
 * value (new key names), subgroup profiles with their fallbacks applied, unknown keys at the
 * end of their section marked as such. Returns 0 or DR_EIO.
 */
int dr_config_write_ini(const dr_config *config, FILE *out);

/**
 * Applies [LOGGER] to the logging module: default_log_name, per-module levels and the node
 * id (local_id) shown in each line. Not thread-safe against concurrent logging setup.
 */
void dr_config_apply_logging(const dr_config *config);

/**
 * Returns true if `arg` has the form of a command-line override "--SECTION/key=value" or
 * "--SECTION/key" (the value then being the next argument). Applications use it to pick
 * overrides out of argv before passing them (without the "--") to dr_config_load.
 */
bool dr_config_is_override_arg(const char *arg);

#ifdef __cplusplus
}
#endif
#endif
