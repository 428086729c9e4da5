/*
 * Loading and reading derecho.cfg (include/derecho/config.h).
 *
 * A configuration is a list of entries (section, canonical key, value, origin). Files are
 * parsed with libinih through a reader that counts lines, so every entry knows its
 * "file:line" origin and every message can name it. Setting a key that is already present
 * replaces it (later layers win). Known keys are checked when set; cross-key rules are checked
 * once everything is loaded (validate_config).
 */
#include "derecho/config.h"

#include "conf/config_internal.h"
#include "conf/schema.h"
#include "derecho/log.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { MAX_LINE_CHARS = CONF_MAX_LINE_CHARS };

/* ---- entries ---------------------------------------------------------------------------- */

static void normalize_section(const char *in, char *out, size_t out_len) {
    size_t i = 0;
    for (; in[i] && i + 1 < out_len; i++)
        out[i] = (char)toupper((unsigned char)in[i]);
    out[i] = '\0';
}

static void normalize_key(const char *in, char *out, size_t out_len) {
    size_t i = 0;
    for (; in[i] && i + 1 < out_len; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

conf_entry *conf_find_entry(const dr_config *config, const char *section, const char *key) {
    for (size_t i = 0; i < config->entry_count; i++) {
        conf_entry *entry = &config->entries[i];
        if (strcmp(entry->section, section) == 0 && strcmp(entry->key, key) == 0)
            return entry;
    }
    return NULL;
}

static int remember_section(dr_config *config, const char *section) {
    for (size_t i = 0; i < config->section_count; i++) {
        if (strcmp(config->sections[i], section) == 0)
            return DR_OK;
    }
    if (config->section_count == CONF_MAX_SECTIONS)
        return DR_ETOOBIG;
    config->sections[config->section_count] = strdup(section);
    if (!config->sections[config->section_count])
        return DR_ENOMEM;
    config->section_count++;
    return DR_OK;
}

static int store_entry(dr_config *config, const char *section, const char *key, const char *value,
                       const char *origin, const conf_key_spec *spec) {
    conf_entry *entry = conf_find_entry(config, section, key);
    if (!entry) {
        if (config->entry_count == CONF_MAX_ENTRIES)
            return DR_ETOOBIG;
        entry = &config->entries[config->entry_count];
        memset(entry, 0, sizeof *entry);
        entry->section = strdup(section);
        entry->key = strdup(key);
        if (!entry->section || !entry->key) {
            free(entry->section);
            free(entry->key);
            return DR_ENOMEM;
        }
        config->entry_count++;
    }
    char *copy = strdup(value);
    if (!copy)
        return DR_ENOMEM;
    free(entry->value);
    entry->value = copy;
    entry->spec = spec;
    snprintf(entry->origin, sizeof entry->origin, "%s", origin);
    return DR_OK;
}

/*
 * Sets section/key = value from `origin` ("derecho.cfg:12", "command line --X/y=z").
 * Known keys are checked; unknown ones are warned about and kept.
 */
static int set_value(dr_config *config, const char *raw_section, const char *raw_key,
                     const char *value, const char *origin, dr_err *err) {
    char section[CONF_NAME_MAX], key[CONF_NAME_MAX];
    /* refused, not cut: a cut name could end in a space that the next read trims (fuzz_config) */
    if (strlen(raw_section) >= CONF_NAME_MAX || strlen(raw_key) >= CONF_NAME_MAX)
        return dr_err_set(err, DR_EINVAL, "%s: a section or key name longer than %d characters",
                          origin, CONF_NAME_MAX - 1);
    normalize_section(raw_section, section, sizeof section);
    normalize_key(raw_key, key, sizeof key);
    /* "= value" has no key name; kept, it would be written back as a continuation line */
    if (key[0] == '\0')
        return dr_err_set(err, DR_EINVAL, "%s: [%s] a value without a key name", origin, section);
    const char *section_class = conf_section_class(section);
    const conf_key_spec *spec = conf_find_key(section_class, key);
    if (!section_class)
        DR_WARN(DR_LOGM_CONF, "%s: unknown section [%s] (kept, not used)", origin, section);
    else if (!spec)
        DR_WARN(DR_LOGM_CONF, "%s: unknown key %s in [%s] (kept, not used)", origin, key, section);
    if (spec) {
        char why[160];
        int rc = conf_check_value(spec, value, why, sizeof why);
        if (rc)
            return dr_err_set(err, rc, "%s: [%s] %s = %s: %s", origin, section, raw_key, value,
                              why);
    }
    int rc = remember_section(config, section);
    if (!rc)
        rc = store_entry(config, section, spec ? spec->key : key, value, origin, spec);
    if (rc)
        return dr_err_set(err, rc, "%s: cannot store [%s] %s: %s", origin, section, key,
                          dr_strerror(rc));
    return DR_OK;
}

/* ---- INI parsing with line numbers ------------------------------------------------------ */

typedef struct ini_source {
    dr_config *config;
    const char *name;   /* file name shown in messages */
    const char *text;   /* whole file */
    size_t len;         /* bytes in text */
    size_t pos;         /* next byte to hand to inih */
    int lines_done;     /* complete lines handed out */
    int current_line;   /* line of the chunk inih is parsing */
    bool line_too_long; /* a line exceeded MAX_LINE_CHARS */
    int rc;             /* first error of ours, 0 if none */
    int rc_line;        /* the line of that error */
    dr_err *err;        /* where that error is described */
} ini_source;

/* inih reader: hands out one line at a time and tracks its number. */
static char *read_line(char *line, int line_cap, void *stream) {
    ini_source *source = stream;
    if (source->pos >= source->len || line_cap < 2)
        return NULL;
    size_t n = 0;
    source->current_line = source->lines_done + 1;
    while (source->pos < source->len && n + 1 < (size_t)line_cap) {
        char c = source->text[source->pos++];
        line[n++] = c;
        if (c == '\n')
            break;
    }
    line[n] = '\0';
    if (n > 0 && line[n - 1] == '\n')
        source->lines_done++;
    else if ((source->pos < source->len || n + 1 == (size_t)line_cap) &&
             !source->line_too_long) { /* the buffer is full: the same limit on the last line */
        source->line_too_long = true;
        source->rc = dr_err_set(source->err, DR_EINVAL, "%s:%d: line longer than %d characters",
                                source->name, source->current_line, MAX_LINE_CHARS);
        source->rc_line = 0; /* reported before anything inih says about the pieces */
    }
    return line;
}

static int on_ini_value(void *user, const char *section, const char *key, const char *value) {
    ini_source *source = user;
    if (source->rc)
        return 0;
    char origin[CONF_ORIGIN_MAX];
    snprintf(origin, sizeof origin, "%s:%d", source->name, source->current_line);
    if (!section || !*section) {
        source->rc =
            dr_err_set(source->err, DR_EINVAL, "%s: key %s outside of any [SECTION]", origin, key);
        source->rc_line = source->current_line;
        return 0;
    }
    source->rc = set_value(source->config, section, key, value, origin, source->err);
    source->rc_line = source->current_line;
    return source->rc == DR_OK;
}

static int parse_ini_text(dr_config *config, const char *name, const char *text, size_t len,
                          dr_err *err) {
    ini_source source = {.config = config, .name = name, .text = text, .len = len, .err = err};
    int line = ini_parse_stream(read_line, &source, on_ini_value, &source);
    /* inih reports the first line it could not parse; ours may come later (a key after a
     * broken [SECTION line): report whichever comes first. */
    if (source.rc && (line <= 0 || source.rc_line <= line))
        return source.rc;
    if (line > 0)
        return dr_err_set(err, DR_EINVAL, "%s:%d: syntax error (expected [SECTION] or key = value)",
                          name, line);
    if (line < 0)
        return dr_err_set(err, DR_ENOMEM, "%s: out of memory while parsing", name);
    return DR_OK;
}

/* Reads a whole file (at most DR_CONFIG_MAX_FILE_BYTES) into a NUL-terminated buffer. */
static int read_file(const char *path, char **text_out, size_t *len_out, dr_err *err) {
    FILE *file = fopen(path, "rb");
    if (!file)
        return dr_err_set(err, DR_EIO, "%s: cannot open configuration file: %s", path,
                          strerror(errno));
    int rc = DR_OK;
    char *text = malloc(DR_CONFIG_MAX_FILE_BYTES + 1);
    size_t len = text ? fread(text, 1, DR_CONFIG_MAX_FILE_BYTES + 1, file) : 0;
    if (!text)
        rc = dr_err_set(err, DR_ENOMEM, "%s: out of memory", path);
    else if (ferror(file))
        rc = dr_err_set(err, DR_EIO, "%s: read error: %s", path, strerror(errno));
    else if (len > DR_CONFIG_MAX_FILE_BYTES)
        rc =
            dr_err_set(err, DR_ETOOBIG, "%s: larger than %u bytes", path, DR_CONFIG_MAX_FILE_BYTES);
    fclose(file);
    if (rc) {
        free(text);
        return rc;
    }
    text[len] = '\0';
    *text_out = text;
    *len_out = len;
    return DR_OK;
}

static int parse_ini_file(dr_config *config, const char *path, dr_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, err);
    if (!rc)
        rc = parse_ini_text(config, path, text, len, err);
    free(text);
    return rc;
}

/* ---- overrides ---------------------------------------------------------------------------- */

bool dr_config_is_override_arg(const char *arg) {
    if (!arg || strncmp(arg, "--", 2) != 0)
        return false;
    const char *slash = strchr(arg + 2, '/');
    return slash && slash > arg + 2 && slash[1] && slash[1] != '=';
}

/* Applies one "SECTION/key=value" (the section may itself contain a slash: SUBGROUP/X/key). */
static int apply_override(dr_config *config, const char *override, dr_err *err) {
    char origin[CONF_ORIGIN_MAX];
    snprintf(origin, sizeof origin, "command line --%s", override);
    const char *equals = strchr(override, '=');
    const char *slash = NULL;
    for (const char *p = override; *p && (!equals || p < equals); p++) {
        if (*p == '/')
            slash = p;
    }
    if (!equals || !slash || slash == override || slash + 1 == equals)
        return dr_err_set(err, DR_EINVAL, "%s: expected --SECTION/key=value", origin);
    char section[CONF_NAME_MAX], key[CONF_NAME_MAX];
    size_t section_len = (size_t)(slash - override), key_len = (size_t)(equals - slash - 1);
    if (section_len >= sizeof section || key_len >= sizeof key)
        return dr_err_set(err, DR_ETOOBIG, "%s: section or key name too long", origin);
    memcpy(section, override, section_len);
    section[section_len] = '\0';
    memcpy(key, slash + 1, key_len);
    key[key_len] = '\0';
    return set_value(config, section, key, equals + 1, origin, err);
}

/* ---- validation across keys --------------------------------------------------------------- */

static const char *origin_of(const dr_config *config, const char *section, const char *key) {
    const conf_entry *entry = conf_find_entry(config, section, key);
    if (!entry && strncmp(section, "SUBGROUP/", 9) == 0)
        entry = conf_find_entry(config, "SUBGROUP/DEFAULT", key);
    return entry ? entry->origin : "default";
}

static int validate_profile(const dr_config *config, const char *section, dr_err *err) {
    const char *profile = section + strlen("SUBGROUP/");
    uint32_t min_nodes = 0, max_nodes = 0, num_shards = 0;
    int has_min = dr_config_subgroup_u32(config, profile, "min_nodes", &min_nodes) == DR_OK;
    int has_max = dr_config_subgroup_u32(config, profile, "max_nodes", &max_nodes) == DR_OK;
    int has_shards = dr_config_subgroup_u32(config, profile, "num_shards", &num_shards) == DR_OK;
    if (has_min && has_max && min_nodes > max_nodes)
        return dr_err_set(err, DR_EINVAL, "%s: [%s] min_nodes = %u is greater than max_nodes = %u",
                          origin_of(config, section, "min_nodes"), section, min_nodes, max_nodes);
    if (has_shards && (!has_min || !has_max))
        return dr_err_set(err, DR_EINVAL,
                          "%s: [%s] num_shards is set but %s is missing (a shard profile needs "
                          "num_shards, min_nodes and max_nodes)",
                          origin_of(config, section, "num_shards"), section,
                          has_min ? "max_nodes" : "min_nodes");
    return DR_OK;
}

static int validate_config(const dr_config *config, dr_err *err) {
    uint32_t local_id = 0, max_node_id = 0;
    if (dr_config_get_u32(config, "DERECHO", "local_id", &local_id) != DR_OK)
        return dr_err_set(err, DR_EINVAL,
                          "%s: [DERECHO] local_id is missing (every node needs a unique id)",
                          config->source);
    dr_config_get_u32(config, "DERECHO", "max_node_id", &max_node_id);
    if (local_id >= max_node_id)
        return dr_err_set(err, DR_ERANGE,
                          "%s: [DERECHO] local_id = %u must be below max_node_id = %u",
                          origin_of(config, "DERECHO", "local_id"), local_id, max_node_id);
    for (size_t i = 0; i < config->section_count; i++) {
        if (strncmp(config->sections[i], "SUBGROUP/", 9) == 0) {
            int rc = validate_profile(config, config->sections[i], err);
            if (rc)
                return rc;
        }
    }
    if (dr_config_is_set(config, "LAYOUT", "json_layout") &&
        dr_config_is_set(config, "LAYOUT", "json_layout_file"))
        return dr_err_set(err, DR_EINVAL,
                          "%s: [LAYOUT] json_layout and json_layout_file are both set",
                          origin_of(config, "LAYOUT", "json_layout_file"));
    return DR_OK;
}

/* ---- load --------------------------------------------------------------------------------- */

static dr_config *config_new(const char *source) {
    dr_config *config = calloc(1, sizeof *config);
    if (!config)
        return NULL;
    config->entries = calloc(CONF_MAX_ENTRIES, sizeof *config->entries);
    config->source = strdup(source);
    if (!config->entries || !config->source || remember_section(config, "SUBGROUP/DEFAULT")) {
        dr_config_free(config);
        return NULL;
    }
    return config;
}

static int apply_overrides(dr_config *config, const char *const *overrides, size_t count,
                           dr_err *err) {
    for (size_t i = 0; i < count; i++) {
        int rc = apply_override(config, overrides[i], err);
        if (rc)
            return rc;
    }
    return DR_OK;
}

static int load_overlay(dr_config *config, const char *explicit_path, dr_err *err) {
    const char *env_path = getenv("DERECHO_NODE_CONF_FILE");
    const char *path = explicit_path ? explicit_path : env_path;
    if (!path) {
        FILE *probe = fopen("derecho_node.cfg", "rb");
        if (!probe)
            return DR_OK; /* the default overlay is optional */
        fclose(probe);
        path = "derecho_node.cfg";
    }
    return parse_ini_file(config, path, err);
}

static int finish_load(dr_config *config, const char *const *overrides, size_t override_count,
                       dr_config **out, dr_err *err) {
    int rc = apply_overrides(config, overrides, override_count, err);
    if (!rc)
        rc = validate_config(config, err);
    if (rc) {
        dr_config_free(config);
        return rc;
    }
    *out = config;
    return DR_OK;
}

int dr_config_load(const dr_config_options *options, dr_config **out, dr_err *err) {
    static const dr_config_options no_options;
    if (!options)
        options = &no_options;
    const char *path = options->file_path ? options->file_path : getenv("DERECHO_CONF_FILE");
    if (!path)
        path = "derecho.cfg";
    dr_config *config = config_new(path);
    if (!config)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc = parse_ini_file(config, path, err);
    if (!rc)
        rc = load_overlay(config, options->node_file_path, err);
    if (rc) {
        dr_config_free(config);
        return rc;
    }
    return finish_load(config, options->overrides, options->override_count, out, err);
}

int dr_config_load_string(const char *ini_text, const char *origin_name,
                          const char *const *overrides, size_t override_count, dr_config **out,
                          dr_err *err) {
    if (!ini_text)
        return dr_err_set(err, DR_EINVAL, "no configuration text");
    const char *name = origin_name ? origin_name : "<string>";
    size_t len = strlen(ini_text);
    if (len > DR_CONFIG_MAX_FILE_BYTES)
        return dr_err_set(err, DR_ETOOBIG, "%s: larger than %u bytes", name,
                          DR_CONFIG_MAX_FILE_BYTES);
    dr_config *config = config_new(name);
    if (!config)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc = parse_ini_text(config, name, ini_text, len, err);
    if (rc) {
        dr_config_free(config);
        return rc;
    }
    return finish_load(config, overrides, override_count, out, err);
}

void dr_config_free(dr_config *config) {
    if (!config)
        return;
    for (size_t i = 0; config->entries && i < config->entry_count; i++) {
        free(config->entries[i].section);
        free(config->entries[i].key);
        free(config->entries[i].value);
    }
    for (size_t i = 0; i < config->section_count; i++)
        free(config->sections[i]);
    free(config->entries);
    free(config->source);
    free(config);
}

const char *dr_config_source(const dr_config *config) {
    return config->source;
}
