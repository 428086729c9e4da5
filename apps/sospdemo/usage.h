/* The sospdemo command's usage text, as printed by the seed demo, and its --help texts. */
#ifndef SOSPDEMO_USAGE_H
#define SOSPDEMO_USAGE_H

#include <stdbool.h>
#include <stdio.h>

/**
 * Prints the seed's usage text to out. The program is named "./<basename of argv0>" as the
 * seed's README shows it ("./sospdemo"). argv0 may be NULL.
 */
void sd_print_usage(FILE *out, const char *argv0);

/** True for "--help", "-h" and "help". */
bool sd_is_help_arg(const char *arg);

/**
 * Prints the help of a mode ("server", "client", "config") or, for NULL or anything else, of
 * the whole program: what it does, every option with its default, examples.
 */
void sd_print_help(FILE *out, const char *mode);

#endif
