/*
 * ResNet-50 V2 cross-format check: ../shared/tools/make_resnet50_v2.py writes the same random
 * network in MXNet and ONNX format into a temporary directory; both loaders must compute the
 * same outputs (1e-3 relative, same arg-max) on the same input, on both backends, and equal
 * the SGEMM run of the network without residual-add fusion. Skipped (CTest: "Skipped") when
 * the script, python3-numpy or python3-onnx is missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/skip.h"
#include "derecho/infer.h"

/* Reads a whole file into *data (caller frees): 0, or -1 (*data stays NULL when the file
 * cannot be opened or the memory allocated). */
static int read_file(const char *path, void **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n + 1);
    if (*data == NULL) {
        fclose(f);
        return -1;
    }
    size_t got = fread(*data, 1, (size_t)n, f);
    fclose(f);
    *len = got;
    return got == (size_t)n ? 0 : -1;
}

static void test_resnet_cross_format(void **state) {
    (void)state;
    const char *src = getenv("DR_SOURCE_DIR");
    char script[4096], cmd[20000], dir[4096] = "/tmp/dr_resnet_XXXXXX", p[8192];
    snprintf(script, sizeof(script), "%s/../shared/tools/make_resnet50_v2.py", src ? src : ".");
    /* Debian's interpreter has python3-numpy/python3-onnx; a pyenv shim may not */
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    snprintf(cmd, sizeof(cmd), "%s -c 'import numpy, onnx' >/dev/null 2>&1", py);
    if (access(script, R_OK) != 0 || system(cmd) != 0) {
        DR_SKIP("%s or python3-numpy/python3-onnx missing", script);
    }
    /* Generated once per build tree (the script needs 15-45 s here), then reused. */
    const char *bin = getenv("DR_BIN_DIR");
    if (bin)
        snprintf(dir, sizeof(dir), "%s/../infer-testdata/resnet50_v2", bin);
    else
        assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/resnet50_v2.onnx", dir);
    if (access(p, R_OK) != 0) {
        int n = snprintf(cmd, sizeof(cmd),
                         "mkdir -p %s && %s %s --format both --classes 1000 --synset "
                         "--out-dir %s.tmp && rm -rf %s && mv %s.tmp %s",
                         dir, py, script, dir, dir, dir, dir);
        assert_true(n > 0 && (size_t)n < sizeof(cmd)); /* a cut command would run half */
        assert_int_equal(system(cmd), 0);
    } else {
        printf("  reusing %s\n", dir);
    }
    void *sy, *js, *pa, *ox;
    size_t a, b, c, d;
    snprintf(p, sizeof(p), "%s/synset.txt", dir);
    assert_int_equal(read_file(p, &sy, &a), 0);
    snprintf(p, sizeof(p), "%s/resnet50_v2-symbol.json", dir);
    assert_int_equal(read_file(p, &js, &b), 0);
    snprintf(p, sizeof(p), "%s/resnet50_v2-0000.params", dir);
    assert_int_equal(read_file(p, &pa, &c), 0);
    snprintf(p, sizeof(p), "%s/resnet50_v2.onnx", dir);
    assert_int_equal(read_file(p, &ox, &d), 0);
    if (!bin) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
    }
    dr_model *mx = NULL, *on = NULL;
    dr_err err = {0};
    if (dr_model_load_mxnet(sy, a, js, b, pa, c, NULL, &mx, &err))
        fail_msg("mxnet: %s", err.msg);
    if (dr_model_load_onnx(ox, d, sy, a, NULL, &on, &err))
        fail_msg("onnx: %s", err.msg);
    /* the same network without the residual-add fusion, as a reference for it */
    dr_model *plain = NULL;
    setenv("DR_INFER_NO_ADD_FUSION", "1", 1);
    if (dr_model_load_onnx(ox, d, sy, a, NULL, &plain, &err))
        fail_msg("onnx (no fusion): %s", err.msg);
    unsetenv("DR_INFER_NO_ADD_FUSION");
    free(sy);
    free(js);
    free(pa);
    free(ox);
    printf("  ResNet-50 V2: %.2f GFLOP/image\n", dr_model_flops_per_image(mx) / 1e9);
    size_t per = 3 * 224 * 224;
    float *in = malloc(sizeof(float) * per * 2), *o1 = malloc(4000 * 2), *o2 = malloc(4000 * 2);
    srand(3);
    for (size_t i = 0; i < per * 2; i++)
        in[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    dr_model_set_threads(mx, 2);
    dr_model_set_threads(on, 2);
    float *o3 = malloc(4000 * 2);
    dr_model_set_backend(plain, DR_BACKEND_SGEMM);
    assert_int_equal(dr_model_run(plain, in, 2, o3, 2000, &err), 0);
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        dr_model_set_backend(on, (dr_infer_backend)be);
        assert_int_equal(dr_model_run(mx, in, 2, o1, 2000, &err), 0);
        assert_int_equal(dr_model_run(on, in, 2, o2, 2000, &err), 0);
        for (int im = 0; im < 2; im++) {
            double worst = 0;
            size_t a1 = 0, a2 = 0;
            for (size_t k = 0; k < 1000; k++) {
                float x = o1[im * 1000 + k], y = o2[im * 1000 + k], z = o3[im * 1000 + k];
                worst = fmax(worst, fabs((double)x - y) / fmax(fabs((double)y), 1.0));
                worst = fmax(worst, fabs((double)z - y) / fmax(fabs((double)z), 1.0));
                if (x > o1[im * 1000 + a1])
                    a1 = k;
                if (y > o2[im * 1000 + a2])
                    a2 = k;
            }
            printf("  image %d backend %s: max rel diff %.2e, argmax %zu / %zu\n", im,
                   be == 1 ? "dnnl" : "sgemm", worst, a1, a2);
            assert_true(worst <= 1e-3);
            assert_int_equal(a1, a2);
        }
    }
    free(in);
    free(o1);
    free(o2);
    free(o3);
    dr_model_free(plain);
    dr_model_free(mx);
    dr_model_free(on);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_resnet_cross_format)};
    return dr_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
