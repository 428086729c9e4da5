/*
 * Configuration for the sospdemo binary: picks --SECTION/key=value overrides out of the
 * command line, loads derecho.cfg (+ overlay, environment), and implements `sospdemo config`.
 */
#ifndef SOSPDEMO_APP_CONFIG_H
#define SOSPDEMO_APP_CONFIG_H

#include "derecho/config.h"
#include "security.h"

/**
 * Loads the configuration with the overrides found in argv[0..argc) ("--SECTION/key=value"
 * or "--SECTION/key value"). Arguments that are not overrides are an error unless
 * allow_other_args is set. On failure prints the reason to stderr and returns non-zero.
 */
int sospdemo_load_config(int argc, char **argv, bool allow_other_args, dr_config **out);

/**
 * Reads the credential files named in [SOSPDEMO] (paths relative to the configuration file's
 * folder): a server's tls_cert_file + tls_key_file, a client's tls_ca_file, and both sides'
 * admin_token_file and inference_token_file. Unset keys leave their field NULL. Returns 0, or
 * DR_EIO / DR_EINVAL / DR_ETOOBIG / DR_ENOMEM with err naming the file and the key; *out is
 * empty then. Free with sd_credentials_free.
 */
int sospdemo_load_credentials(const dr_config *config, bool server, sd_credentials *out,
                              dr_err *err);

/**
 * The client's credentials: from $DERECHO_CONF_FILE, else ./derecho.cfg when it exists (the
 * cluster's client/ folder holds one), else none (plain TCP, no token). Returns 0, or 1 after
 * printing why to stderr.
 */
int sospdemo_client_credentials(sd_credentials *out);

/**
 * When [SOSPDEMO] names a credentials_script and the tls_cert_file it names does not exist (a
 * fresh checkout of a shipped folder: credentials are not in git), runs
 * `<credentials_script> --credentials-only <node folder>/..` (scripts/gen-cluster.sh, which
 * makes only what is missing, under a lock). Returns 0 (nothing to do, or made), or 1 after
 * printing why. Blocking (openssl runs for a fraction of a second).
 */
int sospdemo_make_missing_credentials(const dr_config *config);

/** `sospdemo config [overrides]`: prints the effective configuration; returns the exit code. */
int sospdemo_config_main(int argc, char **argv);

#endif
