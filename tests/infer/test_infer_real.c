/*
 * Real-model conformance (needs $DR_SOURCE_DIR/../shared/testdata; CTest shows "Skipped" without
 * it): SqueezeNet 1.1 ONNX and MXNet against the three reference outputs and the photo references
 * (1e-3 relative, same arg-max), end-to-end photo top-1, MNIST-8's three digits. Each model
 * is checked with the oneDNN and the SGEMM backend. bf16 (where the CPU has it): the same top-1
 * as fp32 on every photo of testdata/photos, both loaders, and the largest probability
 * difference printed and bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/skip.h"
#include "derecho/infer.h"
#include "onnx/onnx.pb-c.h"

static char g_data[4096];

static int read_file(const char *path, void **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n + 1);
    size_t got = fread(*data, 1, (size_t)n, f);
    fclose(f);
    *len = got;
    return got == (size_t)n ? 0 : -1;
}

static void *slurp(const char *rel, size_t *len) {
    char path[8192];
    void *d = NULL;
    snprintf(path, sizeof(path), "%s/%s", g_data, rel);
    if (read_file(path, &d, len)) {
        fail_msg("cannot read %s", path);
    }
    return d;
}

/* Reads a TensorProto .pb into floats; returns the element count. */
static size_t read_pb(const char *rel, float **out) {
    size_t len;
    void *d = slurp(rel, &len);
    Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, d);
    free(d);
    assert_non_null(t);
    size_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++)
        n *= (size_t)t->dims[i];
    *out = malloc(sizeof(float) * n);
    if (t->has_raw_data) {
        assert_int_equal(t->raw_data.len, n * 4);
        memcpy(*out, t->raw_data.data, n * 4);
    } else {
        assert_int_equal(t->n_float_data, n);
        memcpy(*out, t->float_data, n * 4);
    }
    onnx__tensor_proto__free_unpacked(t, NULL);
    return n;
}

static size_t argmax(const float *v, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

/* Compares within 1e-3 relative (of max(|ref|, 1)) and the same arg-max. */
static void compare(const float *got, const float *ref, size_t n, const char *what) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double rel = fabs((double)got[i] - ref[i]) / fmax(fabs((double)ref[i]), 1.0);
        if (rel > worst)
            worst = rel;
    }
    printf("  %s: max relative difference %.2e, argmax %zu (ref %zu)\n", what, worst,
           argmax(got, n), argmax(ref, n));
    assert_true(worst <= 1e-3);
    assert_int_equal(argmax(got, n), argmax(ref, n));
}

/* Sets g_data; skips the calling test (CTest: "Skipped") when the test data is missing. */
static void need_data(void) {
    const char *src = getenv("DR_SOURCE_DIR");
    snprintf(g_data, sizeof(g_data), "%s/../shared/testdata", src ? src : ".");
    FILE *f = fopen(strcat(strcpy((char[4200]){0}, g_data), "/README.md"), "r");
    if (!f)
        DR_SKIP("%s not found; real-model checks skipped", g_data);
    fclose(f);
}

static dr_model *load_squeeze(int mxnet) {
    dr_model *m = NULL;
    dr_err err = {0};
    dr_preprocess pre;
    dr_preprocess_imagenet(&pre);
    size_t a, b, c;
    int rc;
    if (mxnet) {
        void *sy = slurp("mxnet/squeezenet1.1/synset.txt", &a);
        void *js = slurp("mxnet/squeezenet1.1/squeezenet1.1-symbol.json", &b);
        void *pa = slurp("mxnet/squeezenet1.1/squeezenet1.1-0000.params", &c);
        rc = dr_model_load_mxnet(sy, a, js, b, pa, c, &pre, &m, &err);
        free(sy);
        free(js);
        free(pa);
    } else {
        void *ox = slurp("onnx/squeezenet1.1/squeezenet1.1.onnx", &a);
        void *lb = slurp("labels/imagenet_categories.txt", &b);
        rc = dr_model_load_onnx(ox, a, lb, b, &pre, &m, &err);
        free(ox);
        free(lb);
    }
    if (rc)
        fail_msg("load: %s", err.msg);
    return m;
}

static void check_squeeze_refs(dr_model *m, const char *tag) {
    static const char *photos[] = {"kitten_224", "fish", "dog_winml", "dog2", "cat"};
    float out[1000];
    dr_err err = {0};
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        dr_model_set_backend(m, (dr_infer_backend)be);
        for (int set = 0; set < 3; set++) {
            char p[256], what[128];
            float *in, *ref;
            snprintf(p, sizeof(p), "onnx/squeezenet1.1/test_data_set_%d/input_0.pb", set);
            assert_int_equal(read_pb(p, &in), 3 * 224 * 224);
            snprintf(p, sizeof(p), "onnx/squeezenet1.1/test_data_set_%d/output_0.pb", set);
            assert_int_equal(read_pb(p, &ref), 1000);
            assert_int_equal(dr_model_run(m, in, 1, out, 1000, &err), 0);
            snprintf(what, sizeof(what), "%s %s set %d", tag, be == 1 ? "dnnl" : "sgemm", set);
            compare(out, ref, 1000, what);
            assert_int_equal(argmax(out, 1000), 490);
            free(in);
            free(ref);
        }
        for (int i = 0; i < 5; i++) {
            char p[256], what[128];
            float *in, *ref;
            snprintf(p, sizeof(p), "onnx/squeezenet1.1/photo_ref/%s/input_0.pb", photos[i]);
            read_pb(p, &in);
            snprintf(p, sizeof(p), "onnx/squeezenet1.1/photo_ref/%s/output_0.pb", photos[i]);
            read_pb(p, &ref);
            assert_int_equal(dr_model_run(m, in, 1, out, 1000, &err), 0);
            snprintf(what, sizeof(what), "%s %s photo_ref %s", tag, be == 1 ? "dnnl" : "sgemm",
                     photos[i]);
            compare(out, ref, 1000, what);
            /* softmax scores within 1e-3 */
            double mg = out[0], mr = ref[0], sg = 0, sr = 0;
            for (int k = 0; k < 1000; k++) {
                mg = fmax(mg, out[k]);
                mr = fmax(mr, ref[k]);
            }
            for (int k = 0; k < 1000; k++) {
                sg += exp(out[k] - mg);
                sr += exp(ref[k] - mr);
            }
            size_t t = argmax(ref, 1000);
            double pg = exp(out[t] - mg) / sg, pr = exp(ref[t] - mr) / sr;
            printf("    top-1 %zu score %.4f (ref %.4f)\n", t, pg, pr);
            assert_true(fabs(pg - pr) <= 1e-3);
            free(in);
            free(ref);
        }
    }
}

static void test_squeezenet_onnx(void **state) {
    (void)state;
    need_data();
    dr_model *m = load_squeeze(0);
    check_squeeze_refs(m, "onnx");
    dr_model_free(m);
}

static void test_squeezenet_mxnet(void **state) {
    (void)state;
    need_data();
    dr_model *m = load_squeeze(1);
    check_squeeze_refs(m, "mxnet");
    dr_model_free(m);
}

/* Decoding + preprocessing + network from the photo files: same top-1 as TOP5.txt. */
static void test_photo_top1(void **state) {
    (void)state;
    need_data();
    static const char *files[] = {"kitten_224.png", "fish.png", "dog_winml.jpg", "dog2.jpg",
                                  "cat.jpg"};
    static const size_t want[] = {281, 389, 207, 208, 285};
    dr_model *m = load_squeeze(0);
    for (int i = 0; i < 5; i++) {
        char p[256];
        size_t len, n;
        snprintf(p, sizeof(p), "photos/%s", files[i]);
        void *ph = slurp(p, &len);
        dr_class_score top[5];
        dr_err err = {0};
        assert_int_equal(dr_model_classify(m, ph, len, top, 5, &n, &err), 0);
        printf("  %s: %zu %s %.4f\n", files[i], top[0].index, top[0].label, top[0].score);
        assert_int_equal(top[0].index, want[i]);
        free(ph);
    }
    dr_model_free(m);
}

/* Every probability of every photo: fp32 vs bf16 on the same model (precision switched). */
static void test_bf16_agreement(void **state) {
    (void)state;
    need_data();
    if (!dr_infer_have_bf16())
        DR_SKIP("no native bf16 here (oneDNN with AVX512_BF16 or AMX needed); bf16 agreement "
                "not measured");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/photos", g_data);
    static dr_class_score p32[1000], p16[1000];
    for (int mx = 0; mx < 2; mx++) {
        dr_model *m = load_squeeze(mx);
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *e;
        int photos = 0, agree = 0;
        double worst = 0;
        while ((e = readdir(d))) {
            const char *dot = strrchr(e->d_name, '.');
            if (!dot || (strcmp(dot, ".png") && strcmp(dot, ".jpg") && strcmp(dot, ".jpeg")))
                continue;
            char p[300];
            size_t len, n32, n16;
            snprintf(p, sizeof p, "photos/%s", e->d_name);
            void *ph = slurp(p, &len);
            dr_err err = {0};
            assert_int_equal(dr_model_set_precision(m, DR_PRECISION_FP32), 0);
            assert_int_equal(dr_model_classify(m, ph, len, p32, 1000, &n32, &err), 0);
            assert_int_equal(dr_model_set_precision(m, DR_PRECISION_BF16), 0);
            assert_int_equal(dr_model_precision(m), DR_PRECISION_BF16);
            assert_int_equal(dr_model_classify(m, ph, len, p16, 1000, &n16, &err), 0);
            assert_int_equal(n32, 1000);
            assert_int_equal(n16, 1000);
            /* the answers are sorted: compare class by class */
            static float by_class[1000];
            for (size_t k = 0; k < n32; k++)
                by_class[p32[k].index] = p32[k].score;
            double diff = 0;
            for (size_t k = 0; k < n16; k++)
                diff = fmax(diff, fabs((double)by_class[p16[k].index] - p16[k].score));
            printf("  %s %s: fp32 top-1 %zu (%.4f), bf16 top-1 %zu (%.4f), max |dp| %.4f\n",
                   mx ? "mxnet" : "onnx", e->d_name, p32[0].index, p32[0].score, p16[0].index,
                   p16[0].score, diff);
            photos++;
            agree += p32[0].index == p16[0].index;
            worst = fmax(worst, diff);
            free(ph);
        }
        closedir(d);
        printf("%s bf16: top-1 agreement %d/%d photos, largest probability difference %.4f\n",
               mx ? "MXNet" : "ONNX", agree, photos, worst);
        assert_true(photos >= 5);
        assert_int_equal(agree, photos);
        assert_true(worst < 0.05);
        dr_model_free(m);
    }
}

static void test_mnist(void **state) {
    (void)state;
    need_data();
    size_t len;
    void *ox = slurp("onnx/mnist-8/model.onnx", &len);
    dr_model *m = NULL;
    dr_err err = {0};
    dr_preprocess pre;
    memset(&pre, 0, sizeof(pre));
    pre.divisor = 1;
    pre.std[0] = pre.std[1] = pre.std[2] = 1;
    int rc = dr_model_load_onnx(ox, len, NULL, 0, &pre, &m, &err);
    free(ox);
    if (rc)
        fail_msg("mnist: %s", err.msg);
    assert_int_equal(dr_model_num_classes(m), 10);
    static const size_t digits[] = {2, 0, 9};
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        dr_model_set_backend(m, (dr_infer_backend)be);
        for (int set = 0; set < 3; set++) {
            char p[256];
            float *in, *ref, out[10];
            snprintf(p, sizeof(p), "onnx/mnist-8/test_data_set_%d/input_0.pb", set);
            assert_int_equal(read_pb(p, &in), 28 * 28);
            snprintf(p, sizeof(p), "onnx/mnist-8/test_data_set_%d/output_0.pb", set);
            assert_int_equal(read_pb(p, &ref), 10);
            assert_int_equal(dr_model_run(m, in, 1, out, 10, &err), 0);
            compare(out, ref, 10, "mnist");
            assert_int_equal(argmax(out, 10), digits[set]);
            free(in);
            free(ref);
        }
    }
    dr_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_squeezenet_onnx), cmocka_unit_test(test_squeezenet_mxnet),
        cmocka_unit_test(test_photo_top1),      cmocka_unit_test(test_bf16_agreement),
        cmocka_unit_test(test_mnist),
    };
    return dr_test_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
