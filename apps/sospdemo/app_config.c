/* sospdemo's configuration loading, its credentials and the `sospdemo config` mode (see
 * app_config.h). */
#include "app_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* A path from the configuration: relative paths are relative to the configuration file's folder. */
static char *resolve_path(const dr_config *config, const char *path) {
    const char *source = dr_config_source(config);
    const char *slash = source ? strrchr(source, '/') : NULL;
    if (path[0] == '/' || !slash)
        return strdup(path);
    size_t dir_len = (size_t)(slash - source);
    size_t len = dir_len + 1 + strlen(path) + 1;
    char *joined = malloc(len);
    if (joined)
        snprintf(joined, len, "%.*s/%s", (int)dir_len, source, path);
    return joined;
}

/* Reads [SOSPDEMO] key's file (if the key is set) with reader into *out. */
static int load_named_file(const dr_config *config, const char *key, const char *what, bool token,
                           char **out, dr_err *err) {
    const char *value = dr_config_get(config, "SOSPDEMO", key);
    if (!value || !*value)
        return DR_OK;
    char *path = resolve_path(config, value);
    if (!path)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc = token ? sd_read_token_file(path, what, out, err)
                   : sd_read_small_file(path, what, SD_MAX_PEM_BYTES, out, err);
    if (rc)
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                 " ([SOSPDEMO] %s; scripts/gen-cluster.sh makes a cluster's credentials)", key);
    free(path);
    return rc;
}

int sospdemo_load_credentials(const dr_config *config, bool server, sd_credentials *out,
                              dr_err *err) {
    memset(out, 0, sizeof *out);
    int rc = DR_OK;
    if (server) {
        rc = load_named_file(config, "tls_cert_file", "TLS certificate", false, &out->tls_cert_pem,
                             err);
        if (!rc)
            rc = load_named_file(config, "tls_key_file", "TLS key", false, &out->tls_key_pem, err);
        if (!rc && (out->tls_cert_pem != NULL) != (out->tls_key_pem != NULL))
            rc = dr_err_set(err, DR_EINVAL,
                            "[SOSPDEMO] tls_cert_file and tls_key_file go together (one is unset)");
    } else {
        rc = load_named_file(config, "tls_ca_file", "TLS CA certificate", false, &out->tls_ca_pem,
                             err);
    }
    if (!rc)
        rc = load_named_file(config, "admin_token_file", "admin token", true, &out->admin_token,
                             err);
    if (!rc)
        rc = load_named_file(config, "inference_token_file", "inference token", true,
                             &out->inference_token, err);
    if (rc)
        sd_credentials_free(out);
    return rc;
}

int sospdemo_client_credentials(sd_credentials *out) {
    memset(out, 0, sizeof *out);
    const char *path = getenv("DERECHO_CONF_FILE");
    if (!path || !*path) {
        if (access("derecho.cfg", F_OK) != 0)
            return 0; /* no configuration here: plain TCP, no token (a seed folder) */
        path = "derecho.cfg";
    }
    /* A client's file holds [SOSPDEMO] alone: the node keys it lacks are not its business. */
    static const char *const client_defaults[] = {"DERECHO/local_id=0"};
    dr_config_options options = {
        .file_path = path, .overrides = client_defaults, .override_count = 1};
    dr_config *config = NULL;
    dr_err err = {0};
    if (dr_config_load(&options, &config, &err) != DR_OK) {
        fprintf(stderr, "sospdemo client: configuration error: %s\n", err.msg);
        return 1;
    }
    int rc = sospdemo_load_credentials(config, false, out, &err);
    dr_config_free(config);
    if (rc) {
        fprintf(stderr, "sospdemo client: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int sospdemo_make_missing_credentials(const dr_config *config) {
    const char *script = dr_config_get(config, "SOSPDEMO", "credentials_script");
    const char *cert = dr_config_get(config, "SOSPDEMO", "tls_cert_file");
    if (!script || !*script || !cert || !*cert)
        return 0;
    char *cert_path = resolve_path(config, cert);
    char *script_path = resolve_path(config, script);
    char *node_dir = resolve_path(config, ".");
    int rc = 0;
    if (!cert_path || !script_path || !node_dir) {
        rc = 1;
    } else if (access(cert_path, F_OK) != 0) {
        /* The cluster folder is the node folder's parent (DIR/nI/derecho.cfg). */
        size_t len = strlen(node_dir) + 4;
        char *cluster_dir = malloc(len);
        if (cluster_dir)
            snprintf(cluster_dir, len, "%s/..", node_dir);
        fprintf(stderr,
                "sospdemo server: %s is missing; making the cluster's credentials with %s "
                "--credentials-only %s ([SOSPDEMO] credentials_script)\n",
                cert_path, script_path, cluster_dir ? cluster_dir : "?");
        pid_t pid = cluster_dir ? fork() : -1;
        if (pid == 0) {
            execl(script_path, script_path, "--credentials-only", cluster_dir, (char *)NULL);
            _exit(127);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            fprintf(stderr, "sospdemo server: %s failed\n", script_path);
            rc = 1;
        }
        free(cluster_dir);
    }
    free(cert_path);
    free(script_path);
    free(node_dir);
    return rc;
}
