/* The representation of a loaded configuration, shared by config.c and config_read.c. */
#ifndef DR_CONF_CONFIG_INTERNAL_H
#define DR_CONF_CONFIG_INTERNAL_H

#include "conf/schema.h"
#include "derecho/config.h"

enum {
    CONF_MAX_ENTRIES = 4096,   /* keys in one configuration (all files and overrides) */
    CONF_MAX_SECTIONS = 256,   /* distinct sections */
    CONF_NAME_MAX = 128,       /* longest section or key name */
    CONF_ORIGIN_MAX = 256,     /* longest "file:line" or "command line --X/y=z" */
    CONF_MAX_LINE_CHARS = 198, /* longest line, newline excluded (inih's 200-byte buffer) */
};

/** One key's value and where it came from. */
typedef struct conf_entry {
    char *section;                /* upper-case section name, owned */
    char *key;                    /* canonical lower-case key name, owned */
    char *value;                  /* value text, owned */
    char origin[CONF_ORIGIN_MAX]; /* "derecho.cfg:12" or "command line --DERECHO/x=y" */
    const conf_key_spec *spec;    /* NULL for unknown keys */
} conf_entry;

struct dr_config {
    conf_entry *entries;               /* CONF_MAX_ENTRIES slots */
    size_t entry_count;                /* used slots */
    char *sections[CONF_MAX_SECTIONS]; /* section names in order of appearance, owned */
    size_t section_count;              /* used slots */
    char *source;                      /* main file name, owned */
};

/** Finds the entry of a normalized section and canonical key, or NULL. */
conf_entry *conf_find_entry(const dr_config *config, const char *section, const char *key);

#endif
