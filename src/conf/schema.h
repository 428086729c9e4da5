/*
 * The schema of derecho.cfg: every known section and key, its type, range, default and old
 * name. Internal to the conf layer (config.c, config_print.c).
 */
#ifndef DR_CONF_SCHEMA_H
#define DR_CONF_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

/** How a key's value is checked and parsed. */
typedef enum conf_kind {
    CONF_STRING,    /**< any text */
    CONF_IP,        /**< IPv4 or IPv6 literal */
    CONF_PORT,      /**< TCP port 1..65535 */
    CONF_UINT,      /**< unsigned integer within [min, max] */
    CONF_BOOL,      /**< true/false, yes/no, on/off, 1/0 */
    CONF_LOG_LEVEL, /**< trace … off */
    CONF_CHOICE,    /**< one of the '|'-separated words in `choices` */
} conf_kind;

/** One known key. */
typedef struct conf_key_spec {
    const char *section_class; /**< "DERECHO", "SUBGROUP" (every profile), "RDMA", ... */
    const char *key;           /**< canonical (new) name */
    const char *old_key;       /**< accepted older name, or NULL */
    conf_kind kind;            /**< value type */
    uint64_t min;              /**< CONF_UINT lower bound */
    uint64_t max;              /**< CONF_UINT upper bound */
    const char *default_value; /**< built-in default, or NULL (unset) */
    const char *choices;       /**< CONF_CHOICE words, "a|b|c" */
} conf_key_spec;

/** All known keys, grouped by section class in printing order. */
extern const conf_key_spec conf_key_specs[];
extern const size_t conf_key_spec_count;

/** Known section classes in printing order (NULL-terminated). */
extern const char *const conf_section_classes[];

/**
 * Returns the section class of a normalized (upper-case) section name: the name itself for
 * known plain sections, "SUBGROUP" for "SUBGROUP/<PROFILE>", NULL for unknown sections.
 */
const char *conf_section_class(const char *section);

/** Finds a key of a section class by its new or old name; NULL if unknown. */
const conf_key_spec *conf_find_key(const char *section_class, const char *key);

/**
 * Checks `value` against the spec. Returns 0, or a negative DR_E* code with a short reason
 * written to why[why_len] ("port out of range (1..65535)").
 */
int conf_check_value(const conf_key_spec *spec, const char *value, char *why, size_t why_len);

/** Parses an unsigned decimal (or 0x hex) integer, whole string. Returns 0 or DR_EINVAL/DR_ERANGE.
 */
int conf_parse_u64(const char *text, uint64_t *out);

/** Parses a boolean word. Returns 0 or DR_EINVAL. */
int conf_parse_bool(const char *text, int *out);

#endif
