/* The sospdemo command's usage text, as printed by the seed demo. */
#ifndef SOSPDEMO_USAGE_H
#define SOSPDEMO_USAGE_H

#include <stdio.h>

/**
 * Prints the seed's usage text to out. The program is named "./<basename of argv0>" as the
 * seed's README shows it ("./sospdemo"). argv0 may be NULL.
 */
void sd_print_usage(FILE *out, const char *argv0);

#endif
