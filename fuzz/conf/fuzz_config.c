/*
 * libFuzzer target for the configuration layer (src/conf): INI text through
 * dr_config_load_string (inih, key checks, whole-configuration validation), the typed getters,
 * dr_config_write_ini, and a reload of what was written.
 *
 * Input: the INI text up to the first NUL byte; each further NUL-separated piece (at most 4)
 * is a command-line override "SECTION/key=value".
 *
 * Checks on every input: a refusal is a DR_E* code with a message; a configuration that loads
 * (without overrides or continuation lines) is written as INI that loads again and writes the
 * same text (the effective configuration is a fixed point, up to the comments that name where
 * a key came from); getters never crash on any key.
 */
#include "derecho/config.h"
#include "derecho/log.h"
#include "fuzz_seed.h"

#include <stdbool.h>
#include <string.h>

enum { MAX_OVERRIDES = 4 };

/* The written INI without the lines that depend on the origin (header, "unknown key" notes). */
static char *normalized(const char *text) {
    size_t len = strlen(text);
    char *out = malloc(len + 1);
    FUZZ_CHECK(out != NULL);
    size_t o = 0;
    const char *line = text;
    int first = 1;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (!first) {
            const char *note = strstr(line, " ; unknown key (");
            size_t keep = note && note < line + n ? (size_t)(note - line) : n;
            memcpy(out + o, line, keep);
            o += keep;
            out[o++] = '\n';
        }
        first = 0;
        line += n + (end ? 1 : 0);
    }
    out[o] = '\0';
    return out;
}

/*
 * Whether text has an indented line with content: inih (INI_ALLOW_MULTILINE) takes it as a
 * continuation of the previous key's value, without stripping its inline comment, so such a
 * value does not survive a write and read (known, not fixed: fuzz/README.md).
 */
static bool has_continuation_line(const char *text) {
    for (const char *line = text; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (*line != ' ' && *line != '\t')
            continue;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p && *p != '\n' && *p != '\r' && *p != ';' && *p != '#')
            return true;
    }
    return false;
}

static char *write_ini(const dr_config *config) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(dr_config_write_ini(config, f) == DR_OK);
    fclose(f);
    return text;
}

static void read_everything(const dr_config *config) {
    static const char *const sections[] = {
        "DERECHO",  "LAYOUT", "LOGGER", "SUBGROUP/DEFAULT", "SUBGROUP/FUNCTION_TIER",
        "SOSPDEMO", "RDMA"};
    static const char *const keys[] = {"local_id",       "gms_port",         "leader_ip",
                                       "contact_port",   "max_payload_size", "window_size",
                                       "heartbeat_ms",   "json_layout",      "default_log_level",
                                       "core_log_level", "max_node_id",      "block_size"};
    for (size_t s = 0; s < sizeof sections / sizeof *sections; s++)
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            uint64_t u64;
            uint32_t u32;
            uint16_t u16;
            bool b;
            (void)dr_config_get(config, sections[s], keys[k]);
            (void)dr_config_is_set(config, sections[s], keys[k]);
            (void)dr_config_get_u64(config, sections[s], keys[k], &u64);
            (void)dr_config_get_u32(config, sections[s], keys[k], &u32);
            (void)dr_config_get_u16(config, sections[s], keys[k], &u16);
            (void)dr_config_get_bool(config, sections[s], keys[k], &b);
        }
    uint64_t u64;
    uint32_t u32;
    (void)dr_config_subgroup_u64(config, "FUNCTION_TIER", "max_payload_size", &u64);
    (void)dr_config_subgroup_u32(config, NULL, "window_size", &u32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dr_log_set_all_levels(DR_LOG_OFF);
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    const char *overrides[MAX_OVERRIDES];
    size_t n_overrides = 0;
    size_t pos = strlen(text);
    while (pos < size && n_overrides < MAX_OVERRIDES) {
        overrides[n_overrides++] = text + pos + 1;
        pos += 1 + strlen(text + pos + 1);
    }
    dr_config *config = NULL;
    dr_err err;
    dr_err_clear(&err);
    int rc = dr_config_load_string(text, "fuzz.cfg", overrides, n_overrides, &config, &err);
    if (rc != DR_OK) {
        FUZZ_CHECK(rc < 0 && config == NULL && err.msg[0] != '\0');
    } else {
        FUZZ_CHECK(config != NULL);
        read_everything(config);
        char *written = write_ini(config);
        if (n_overrides == 0 && !has_continuation_line(text)) {
            dr_config *again = NULL;
            dr_err_clear(&err);
            rc = dr_config_load_string(written, "effective.cfg", NULL, 0, &again, &err);
            if (rc != DR_OK)
                fprintf(stderr, "the written configuration does not load: %s\n%s\n", err.msg,
                        written);
            FUZZ_CHECK(rc == DR_OK);
            char *rewritten = write_ini(again);
            char *a = normalized(written), *b = normalized(rewritten);
            if (strcmp(a, b) != 0)
                fprintf(stderr, "written:\n%s\nrewritten:\n%s\n", a, b);
            FUZZ_CHECK(strcmp(a, b) == 0);
            free(a);
            free(b);
            free(rewritten);
            dr_config_free(again);
        }
        free(written);
        dr_config_free(config);
    }
    free(text);
    return 0;
}

/* ---- seeds: the seed's sample, the repository's configurations, near-valid variants ------- */

static void seed_text(const char *name, const char *text) {
    fuzz_write_seed(name, text, strlen(text));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    seed_text("minimal", "[DERECHO]\nlocal_id = 0\n");
    seed_text("seed_sample",
              "[DERECHO]\nleader_ip = 127.0.0.1\nleader_gms_port = 23580\nlocal_id = 1\n"
              "local_ip = 127.0.0.1\ngms_port = 23581\nrpc_port = 28367\nsst_port = 37684\n"
              "rdmc_port = 31676\ntimeout_ms = 10000\n\n[SUBGROUP/DEFAULT]\n"
              "max_payload_size = 10240\nmax_smc_payload_size = 10240\nblock_size = 1048576\n"
              "window_size = 16\nrdmc_send_algorithm = binomial_send\n\n"
              "[SUBGROUP/FUNCTION_TIER]\nmax_payload_size = 8192\nwindow_size = 8\n\n"
              "[LAYOUT]\njson_layout = '[{\"type_alias\":\"FUNCTION_TIER\",\"layout\":"
              "[{\"min_nodes_by_shard\":[1],\"max_nodes_by_shard\":[1],"
              "\"reserved_node_ids_by_shard\":[[0]],\"delivery_modes_by_shard\":[\"Ordered\"],"
              "\"profiles_by_shard\":[\"FUNCTION_TIER\"]}]}]'\n\n"
              "[LOGGER]\ndefault_log_level = info\ncore_log_level = debug\n");
    seed_text("bad_port", "[DERECHO]\nlocal_id = 0\ngms_port = 99999\n");
    seed_text("unknown_keys", "[DERECHO]\nlocal_id = 2\nno_such_key = 1 ; comment\n[EXTRA]\nx=y\n");
    seed_text("bad_syntax", "[DERECHO\nlocal_id 0\n= 5\n");
    seed_text("bool_and_ranges", "[DERECHO]\nlocal_id = 3\nmax_node_id = 2\n"
                                 "[SUBGROUP/DEFAULT]\nmax_reply_payload_size = 12\n");
    static const char with_override[] = "[DERECHO]\nlocal_id = 0\n\0DERECHO/gms_port=23000\0"
                                        "SUBGROUP/DEFAULT/window_size=4";
    fuzz_write_seed("with_overrides", with_override, sizeof with_override - 1);
    return 0;
}
