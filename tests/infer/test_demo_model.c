/*
 * The bundled demo model (models/demo-shapes, made by tools/demo-model) through the C engine:
 * every sample photo gets its expected class, and the top score agrees with the numpy
 * reference of the same files (reference.txt, OpenCV-style resize) within 5e-3 — the engine's
 * own bilinear resize differs slightly from the reference's. Needs nothing outside the repo.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "derecho/infer.h"

static char *read_file(const char *path, size_t *len) {
    FILE *file = fopen(path, "rb");
    if (!file)
        fail_msg("cannot open %s", path);
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *bytes = malloc((size_t)size + 1);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)size, file), (size_t)size);
    bytes[size] = '\0';
    fclose(file);
    *len = (size_t)size;
    return bytes;
}

/* The reference top-1 score of `photo` (cv resize), or -1. */
static double reference_score(const char *reference, const char *photo) {
    char key[256];
    snprintf(key, sizeof key, "\n%s cv 1 ", photo);
    const char *line = strstr(reference, key);
    if (!line)
        return -1;
    int index = 0;
    double score = -1;
    if (sscanf(line + strlen(key), "%d %lf", &index, &score) != 2)
        return -1;
    return score;
}

static void test_demo_model_classifies_sample_photos(void **state) {
    (void)state;
    const char *source = getenv("DR_SOURCE_DIR");
    assert_non_null(source);
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/models/demo-shapes", source);
    size_t synset_len, symbol_len, params_len, expected_len, reference_len;
    snprintf(path, sizeof path, "%s/synset.txt", dir);
    char *synset = read_file(path, &synset_len);
    snprintf(path, sizeof path, "%s/shapes-symbol.json", dir);
    char *symbol = read_file(path, &symbol_len);
    snprintf(path, sizeof path, "%s/shapes-0000.params", dir);
    char *params = read_file(path, &params_len);
    snprintf(path, sizeof path, "%s/photos/expected.txt", dir);
    char *expected = read_file(path, &expected_len);
    snprintf(path, sizeof path, "%s/reference.txt", dir);
    char *reference = read_file(path, &reference_len);

    dr_model *model = NULL;
    dr_err err = {0};
    if (dr_model_load_mxnet(synset, synset_len, symbol, symbol_len, params, params_len, NULL,
                            &model, &err))
        fail_msg("load: %s", err.msg);
    int checked = 0;
    for (char *line = strtok(expected, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        if (line[0] == '#' || !tab)
            continue;
        *tab = '\0';
        const char *photo = line, *want = tab + 1;
        size_t photo_len = 0;
        snprintf(path, sizeof path, "%s/photos/%s", dir, photo);
        char *bytes = read_file(path, &photo_len);
        dr_class_score top[3];
        size_t n = 0;
        if (dr_model_classify(model, bytes, photo_len, top, 3, &n, &err))
            fail_msg("%s: %s", photo, err.msg);
        assert_true(n >= 1);
        if (strcmp(top[0].label, want) != 0)
            fail_msg("%s: got '%s', want '%s'", photo, top[0].label, want);
        double score = reference_score(reference, photo);
        assert_true(score > 0);
        if (top[0].score < score - 5e-3 || top[0].score > score + 5e-3)
            fail_msg("%s: score %.6f, reference %.6f", photo, top[0].score, score);
        free(bytes);
        checked++;
    }
    assert_int_equal(checked, 8);
    dr_model_free(model);
    free(synset);
    free(symbol);
    free(params);
    free(expected);
    free(reference);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_model_classifies_sample_photos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
