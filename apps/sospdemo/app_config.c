/* sospdemo's configuration loading and the `sospdemo config` mode (see app_config.h). */
#include "app_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_OVERRIDES = 256 };

/* Collects overrides, joining "--X/y value" pairs into "X/y=value" strings (owned). */
static int collect_overrides(int argc, char **argv, bool allow_other_args, char **overrides,
                             size_t *count) {
    *count = 0;
    for (int i = 0; i < argc; i++) {
        if (!dr_config_is_override_arg(argv[i])) {
            if (allow_other_args)
                continue;
            fprintf(stderr, "sospdemo: unexpected argument '%s' (expected --SECTION/key=value)\n",
                    argv[i]);
            return 1;
        }
        if (*count == MAX_OVERRIDES) {
            fprintf(stderr, "sospdemo: more than %d configuration overrides\n", MAX_OVERRIDES);
            return 1;
        }
        const char *text = argv[i] + 2;
        char *joined = NULL;
        if (strchr(text, '=')) {
            joined = strdup(text);
        } else if (i + 1 < argc) {
            size_t len = strlen(text) + strlen(argv[i + 1]) + 2;
            joined = malloc(len);
            if (joined)
                snprintf(joined, len, "%s=%s", text, argv[++i]);
        } else {
            fprintf(stderr, "sospdemo: %s needs a value\n", argv[i]);
            return 1;
        }
        if (!joined) {
            fprintf(stderr, "sospdemo: out of memory\n");
            return 1;
        }
        overrides[(*count)++] = joined;
    }
    return 0;
}

int sospdemo_load_config(int argc, char **argv, bool allow_other_args, dr_config **out) {
    char *overrides[MAX_OVERRIDES];
    size_t count = 0;
    int rc = collect_overrides(argc, argv, allow_other_args, overrides, &count);
    if (rc == 0) {
        dr_config_options options = {.overrides = (const char *const *)overrides,
                                     .override_count = count};
        dr_err err = {0};
        if (dr_config_load(&options, out, &err) != DR_OK) {
            fprintf(stderr, "sospdemo: configuration error: %s\n", err.msg);
            rc = 1;
        }
    }
    for (size_t i = 0; i < count; i++)
        free(overrides[i]);
    return rc;
}

int sospdemo_config_main(int argc, char **argv) {
    dr_config *config = NULL;
    if (sospdemo_load_config(argc, argv, false, &config) != 0)
        return 1;
    int rc = dr_config_write_ini(config, stdout);
    dr_config_free(config);
    return rc == DR_OK ? 0 : 1;
}
