/*
 * Configuration for the sospdemo binary: picks --SECTION/key=value overrides out of the
 * command line, loads derecho.cfg (+ overlay, environment), and implements `sospdemo config`.
 */
#ifndef SOSPDEMO_APP_CONFIG_H
#define SOSPDEMO_APP_CONFIG_H

#include "derecho/config.h"

/**
 * Loads the configuration with the overrides found in argv[0..argc) ("--SECTION/key=value"
 * or "--SECTION/key value"). Arguments that are not overrides are an error unless
 * allow_other_args is set. On failure prints the reason to stderr and returns non-zero.
 */
int sospdemo_load_config(int argc, char **argv, bool allow_other_args, dr_config **out);

/** `sospdemo config [overrides]`: prints the effective configuration; returns the exit code. */
int sospdemo_config_main(int argc, char **argv);

#endif
