/*
 * Small durable objects replaced as a whole: the last installed view and the ragged trims that
 * total restart needs (Derecho saves them by temp-file-and-rename, derecho-internals §6.2), or any
 * other state the runtime must find again after a crash. A save writes `name.tmp`, fdatasyncs it,
 * renames it over `name` and fsyncs the directory: after a crash, `name` holds either the old
 * object or the new one, whole. The file is checksummed, so damage is an error, not a misread.
 *
 * File format (little-endian): magic u32 "DRPB" (0x42505244) | format u32 = 1 | len u64 |
 * crc32 u32 of the payload | crc32 u32 of bytes 0..19 | payload (len bytes).
 *
 * Threading: no shared state; two saves of the same name at once are the caller's to prevent.
 */
#ifndef DR_PERSIST_BLOB_H
#define DR_PERSIST_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "derecho/error.h"
#include "persist/plog.h"

/**
 * Saves bytes[0..len) as `dir/name` durably (see above). io NULL: the real system calls (tests
 * pass a hook, as for dr_plog). name: letters, digits, '.', '-', '_'.
 * Errors: DR_EINVAL (bad name), DR_EIO (a system call failed: `name` still holds the previous
 * object, if any). Blocks on disk I/O.
 */
int dr_blob_save(const char *dir, const char *name, const void *bytes, size_t len,
                 const dr_plog_io *io, dr_err *err);

/**
 * Loads `dir/name` into a malloc'd buffer (*bytes, caller frees; NULL when *len is 0). The stored
 * length is checked against max_len before anything is allocated.
 * Errors: DR_ENOTFOUND (no such object), DR_ETOOBIG (longer than max_len), DR_ECORRUPT (bad magic,
 * checksum or size), DR_EIO, DR_ENOMEM, DR_EINVAL (bad name).
 */
int dr_blob_load(const char *dir, const char *name, size_t max_len, uint8_t **bytes, size_t *len,
                 dr_err *err);

#endif
