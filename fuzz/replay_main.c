/*
 * Standalone driver for the fuzz targets in builds without libFuzzer (gcc, the normal and
 * sanitizer builds): runs every file named on the command line, and every regular file of
 * every directory named there (in name order), once through the target's
 * LLVMFuzzerTestOneInput. This is how CTest replays fuzz/corpus/<target>/ (label `fuzz`).
 *
 * LLVMFuzzerInitialize is called first when the target defines it (some targets write their
 * seed inputs to $DR_FUZZ_SEED_DIR there: fuzz/make-corpus.sh).
 *
 * Exit status: 0 when at least one input ran and the target returned from every one; 2 for a
 * usage error, an unreadable input or an empty corpus (a replay that ran nothing must not
 * pass). A crash, sanitizer report or failed check in the target ends the process as the
 * target makes it (abort, trap), which CTest reports as a failure.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Largest input replayed; libFuzzer's own -max_len for these targets is far smaller. */
#define REPLAY_MAX_INPUT_BYTES (64u * 1024u * 1024u)

static int run_file(const char *path, size_t *count) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 ||
        (uint64_t)st.st_size > REPLAY_MAX_INPUT_BYTES) {
        fprintf(stderr, "replay: %s: cannot size it, or over %u bytes\n", path,
                REPLAY_MAX_INPUT_BYTES);
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    /* an exact-size copy, so that reads past the input are seen by ASan */
    uint8_t *data = malloc(size ? size : 1);
    if (!data || fread(data, 1, size, f) != size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    (void)LLVMFuzzerTestOneInput(data, size);
    free(data);
    (*count)++;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, size_t *count) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open directory %s\n", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) {
                rc = -1;
                break;
            }
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (names)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = run_file(path, count);
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s FILE_OR_DIR...\n"
                "Runs each input once through the fuzz target (no fuzzing: build with\n"
                "clang and -DDR_FUZZ=ON for that).\n",
                argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            return 2;
        }
        if ((S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count)) != 0)
            return 2;
    }
    if (count == 0) {
        fprintf(stderr, "replay: no input found\n");
        return 2;
    }
    fprintf(stderr, "replay: %zu inputs ran without a failure\n", count);
    return 0;
}
