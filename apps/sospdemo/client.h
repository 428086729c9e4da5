/*
 * The seed-compatible command-line client of the function tier (gRPC core C API):
 *
 *   sospdemo client <host:port> inference <tags> <photo>
 *   sospdemo client <host:port> installmodel <tag> <synset> <symbol> <params>
 *   sospdemo client <host:port> removemodel <tag>
 *
 * Output (stdout): "Use function tier node: <host:port>", then "photo description:<desc>" or
 * "return code:<n>" and "description:<text>". Errors go to stderr. Files are opened and
 * checked (readable regular files, at most 4 GiB - 1) before anything is sent; uploads are
 * streamed in 32 KiB chunks with a progress bar on stderr when stdout is a terminal.
 *
 * Exit codes: 0 success; 1 a failed call (RPC status not OK, non-zero return code, an
 * inference answer that is an error such as "Cannot find model for photo tag." (printed as
 * usual, and its kind on stderr), file error); 2 bad arguments (usage printed). The environment
 * variable SOSPDEMO_CLIENT_TIMEOUT_MS sets the call deadline in ms (default 60000 for inference and
 * removemodel, 600000 for installmodel).
 */
#ifndef SOSPDEMO_CLIENT_H
#define SOSPDEMO_CLIENT_H

#include "security.h"

#include <stddef.h>
#include <stdint.h>

/** Bytes of file data per streamed message (as the seed's client). */
#define SD_CLIENT_CHUNK_BYTES (32 * 1024)

/** Exit codes of sd_client_main. */
enum { SD_EXIT_OK = 0, SD_EXIT_FAILED = 1, SD_EXIT_USAGE = 2 };

/**
 * Runs the client with main's arguments, where argv[1] is "client". Returns the exit code.
 * Blocking; initialises and shuts down gRPC itself.
 */
int sd_client_main(int argc, char **argv);

/**
 * Like sd_client_main with credentials (borrowed for the run; NULL or NULL fields: plain TCP,
 * no token): TLS trusting creds->tls_ca_pem; installmodel and removemodel send
 * `authorization: Bearer <admin_token>`, inference the inference token (else the admin token).
 */
int sd_client_main_secure(int argc, char **argv, const sd_credentials *creds);

/**
 * Parses a tag list: one or more decimal uint32 values separated by single commas ("1",
 * "1,2,3"), no signs, spaces or empty items. Writes at most max_tags tags. Returns 0, or
 * DR_EINVAL for malformed text, DR_ERANGE for a value over UINT32_MAX or too many tags.
 */
int sd_parse_tags(const char *text, uint32_t *tags, size_t max_tags, size_t *n_tags_out);

#endif
