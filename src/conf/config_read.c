/*
 * Reading a loaded configuration: effective values with fallbacks, typed getters, the
 * effective-configuration writer and the [LOGGER] hookup (include/derecho/config.h).
 */
#include "conf/config_internal.h"
#include "derecho/log.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Normalizes names and resolves an old key name to the new one. */
static void resolve_names(const char *section_in, const char *key_in, char *section, char *key) {
    size_t i = 0;
    for (; section_in[i] && i + 1 < CONF_NAME_MAX; i++)
        section[i] = (char)toupper((unsigned char)section_in[i]);
    section[i] = '\0';
    for (i = 0; key_in[i] && i + 1 < CONF_NAME_MAX; i++)
        key[i] = (char)tolower((unsigned char)key_in[i]);
    key[i] = '\0';
    const conf_key_spec *spec = conf_find_key(conf_section_class(section), key);
    if (spec)
        snprintf(key, CONF_NAME_MAX, "%s", spec->key);
}

static bool is_module_level_key(const char *key) {
    size_t len = strlen(key);
    return len > 10 && strcmp(key + len - 10, "_log_level") == 0 &&
           strcmp(key, "default_log_level") != 0;
}

const char *dr_config_get(const dr_config *config, const char *section_in, const char *key_in) {
    if (!config || !section_in || !key_in)
        return NULL;
    char section[CONF_NAME_MAX], key[CONF_NAME_MAX];
    resolve_names(section_in, key_in, section, key);
    const conf_entry *entry = conf_find_entry(config, section, key);
    if (entry)
        return entry->value;
    const char *section_class = conf_section_class(section);
    if (section_class && strcmp(section_class, "SUBGROUP") == 0 &&
        strcmp(section, "SUBGROUP/DEFAULT") != 0) {
        entry = conf_find_entry(config, "SUBGROUP/DEFAULT", key);
        if (entry)
            return entry->value;
    }
    if (section_class && strcmp(section_class, "LOGGER") == 0 && is_module_level_key(key))
        return dr_config_get(config, "LOGGER", "default_log_level");
    const conf_key_spec *spec = conf_find_key(section_class, key);
    return spec ? spec->default_value : NULL;
}

bool dr_config_is_set(const dr_config *config, const char *section_in, const char *key_in) {
    char section[CONF_NAME_MAX], key[CONF_NAME_MAX];
    resolve_names(section_in, key_in, section, key);
    return conf_find_entry(config, section, key) != NULL;
}

int dr_config_get_u64(const dr_config *config, const char *section, const char *key,
                      uint64_t *out) {
    const char *value = dr_config_get(config, section, key);
    if (!value)
        return DR_ENOTFOUND;
    return conf_parse_u64(value, out);
}

int dr_config_get_u32(const dr_config *config, const char *section, const char *key,
                      uint32_t *out) {
    uint64_t value = 0;
    int rc = dr_config_get_u64(config, section, key, &value);
    if (rc)
        return rc;
    if (value > UINT32_MAX)
        return DR_ERANGE;
    *out = (uint32_t)value;
    return DR_OK;
}

int dr_config_get_u16(const dr_config *config, const char *section, const char *key,
                      uint16_t *out) {
    uint64_t value = 0;
    int rc = dr_config_get_u64(config, section, key, &value);
    if (rc)
        return rc;
    if (value > UINT16_MAX)
        return DR_ERANGE;
    *out = (uint16_t)value;
    return DR_OK;
}

int dr_config_get_bool(const dr_config *config, const char *section, const char *key, bool *out) {
    const char *value = dr_config_get(config, section, key);
    int flag = 0;
    if (!value)
        return DR_ENOTFOUND;
    int rc = conf_parse_bool(value, &flag);
    if (!rc)
        *out = flag != 0;
    return rc;
}

static void profile_section(const char *profile, char *section, size_t len) {
    snprintf(section, len, "SUBGROUP/%s", profile ? profile : "DEFAULT");
}

int dr_config_subgroup_u64(const dr_config *config, const char *profile, const char *key,
                           uint64_t *out) {
    char section[CONF_NAME_MAX];
    profile_section(profile, section, sizeof section);
    return dr_config_get_u64(config, section, key, out);
}

int dr_config_subgroup_u32(const dr_config *config, const char *profile, const char *key,
                           uint32_t *out) {
    char section[CONF_NAME_MAX];
    profile_section(profile, section, sizeof section);
    return dr_config_get_u32(config, section, key, out);
}

/* ---- effective configuration ------------------------------------------------------------ */

/*
 * Writes "key = value" (with " ; unknown key (origin)" when origin is given) as a line the
 * reader accepts again (at most CONF_MAX_LINE_CHARS): when it would be longer the note is left
 * out, then the spaces around '=' ("key=value" is never longer than the line it was read from;
 * a value from a command-line override may be, and is written whole).
 */
static void write_line(FILE *out, const char *key, const char *value, const char *origin) {
    size_t len = strlen(key) + strlen(value);
    size_t note = origin ? strlen(" ; unknown key ()") + strlen(origin) : 0;
    /* inih takes a ';' after whitespace for a comment: a value that starts with ';' (read from
     * "key:;..." or "key=;...") gets no space before it (fuzz_config) */
    const char *equals = value[0] == ';' ? " =" : " = ";
    if (origin && len + 3 + note <= CONF_MAX_LINE_CHARS)
        fprintf(out, "%s%s%s ; unknown key (%s)\n", key, equals, value, origin);
    else if (len + 3 <= CONF_MAX_LINE_CHARS)
        fprintf(out, "%s%s%s\n", key, equals, value);
    else
        fprintf(out, "%s=%s\n", key, value);
}

static void write_known_keys(const dr_config *config, const char *section,
                             const char *section_class, FILE *out) {
    for (size_t i = 0; i < conf_key_spec_count; i++) {
        const conf_key_spec *spec = &conf_key_specs[i];
        if (strcmp(spec->section_class, section_class) != 0)
            continue;
        const char *value = dr_config_get(config, section, spec->key);
        if (value)
            write_line(out, spec->key, value, NULL);
        else
            fprintf(out, "; %s is not set\n", spec->key);
    }
}

static void write_unknown_keys(const dr_config *config, const char *section, FILE *out) {
    for (size_t i = 0; i < config->entry_count; i++) {
        const conf_entry *entry = &config->entries[i];
        if (!entry->spec && strcmp(entry->section, section) == 0)
            write_line(out, entry->key, entry->value, entry->origin);
    }
}

static void write_section(const dr_config *config, const char *section, FILE *out) {
    const char *section_class = conf_section_class(section);
    fprintf(out, "[%s]\n", section);
    if (section_class)
        write_known_keys(config, section, section_class, out);
    write_unknown_keys(config, section, out);
    fputc('\n', out);
}

int dr_config_write_ini(const dr_config *config, FILE *out) {
    fprintf(out, "; effective configuration (main file: %s)\n", config->source);
    for (size_t c = 0; conf_section_classes[c]; c++) {
        const char *section_class = conf_section_classes[c];
        if (strcmp(section_class, "SUBGROUP") == 0) {
            for (size_t s = 0; s < config->section_count; s++) {
                /* "[SUBGROUP/]" (no profile) is an unknown section, written with those below */
                if (strncmp(config->sections[s], "SUBGROUP/", 9) == 0 &&
                    conf_section_class(config->sections[s]))
                    write_section(config, config->sections[s], out);
            }
        } else if (strcmp(section_class, "LAYOUT") != 0 ||
                   dr_config_get(config, "LAYOUT", "json_layout") ||
                   dr_config_get(config, "LAYOUT", "json_layout_file")) {
            write_section(config, section_class, out);
        }
    }
    for (size_t s = 0; s < config->section_count; s++) {
        if (!conf_section_class(config->sections[s]))
            write_section(config, config->sections[s], out);
    }
    return fflush(out) == 0 && !ferror(out) ? DR_OK : DR_EIO;
}

void dr_config_apply_logging(const dr_config *config) {
    dr_log_set_name(dr_config_get(config, "LOGGER", "default_log_name"));
    for (int module = 0; module < DR_LOGM_COUNT; module++) {
        char key[64];
        snprintf(key, sizeof key, "%s_log_level", dr_log_module_name((dr_log_module)module));
        dr_log_level level = DR_LOG_INFO;
        if (dr_log_parse_level(dr_config_get(config, "LOGGER", key), &level) == DR_OK)
            dr_log_set_level((dr_log_module)module, level);
    }
    uint32_t local_id = 0;
    if (dr_config_get_u32(config, "DERECHO", "local_id", &local_id) == DR_OK)
        dr_log_set_node_id((int)local_id);
}
