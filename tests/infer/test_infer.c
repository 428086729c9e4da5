/*
 * Inference engine tests without external data: tiny models built here in MXNet and ONNX
 * format classify solid-colour PNG/JPEG photos; both backends agree; batches and concurrent
 * calls give the same answers; malformed models and photos fail with clear errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derecho/infer.h"
#include "tiny_models.h"

static void tiny_pre(dr_preprocess *p) {
    memset(p, 0, sizeof(*p));
    p->resize_mode = DR_RESIZE_SQUARE;
    p->resize = 8;
    p->crop = 8;
    p->divisor = 255.0f;
    p->std[0] = p->std[1] = p->std[2] = 1.0f;
}

static int load_mx(const tiny_opts *o, dr_model **m, dr_err *err) {
    tiny_bytes s, p;
    dr_preprocess pre;
    tiny_pre(&pre);
    assert_int_equal(tiny_mxnet(o, &s, &p), 0);
    int rc = dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), s.data, s.len, p.data, p.len,
                                 &pre, m, err);
    free(s.data);
    free(p.data);
    return rc;
}

static int load_ox(const tiny_opts *o, dr_model **m, dr_err *err) {
    tiny_bytes b;
    dr_preprocess pre;
    tiny_pre(&pre);
    assert_int_equal(tiny_onnx(o, &b), 0);
    int rc = dr_model_load_onnx(b.data, b.len, tiny_synset, strlen(tiny_synset), &pre, m, err);
    free(b.data);
    return rc;
}

static void expect_colours(dr_model *m) {
    static const uint8_t col[3][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    static const char *names[3] = {"n00000001 red", "n00000002 green", "n00000003 blue"};
    for (int c = 0; c < 3; c++) {
        for (int fmt = 0; fmt < 3; fmt++) { /* PNG, JPEG, CMYK JPEG */
            tiny_bytes photo;
            int rc = fmt == 2   ? tiny_jpeg_cmyk(col[c][0], col[c][1], col[c][2], 16, 12, &photo)
                     : fmt == 1 ? tiny_jpeg(col[c][0], col[c][1], col[c][2], 16, 12, &photo)
                                : tiny_png(col[c][0], col[c][1], col[c][2], 16, 16, &photo);
            assert_int_equal(rc, 0);
            dr_class_score top[3];
            size_t n = 0;
            dr_err err = {0};
            rc = dr_model_classify(m, photo.data, photo.len, top, 3, &n, &err);
            free(photo.data);
            assert_int_equal(rc, 0);
            assert_int_equal(n, 3);
            assert_int_equal(top[0].index, (size_t)c);
            assert_string_equal(top[0].label, names[c]);
            assert_true(top[0].score > 0.99f);
            assert_true(top[0].score >= top[1].score && top[1].score >= top[2].score);
            float sum = top[0].score + top[1].score + top[2].score;
            assert_true(sum > 0.999f && sum < 1.001f);
        }
    }
}

static void test_mxnet_colours(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    tiny_opts o = {0};
    assert_int_equal(load_mx(&o, &m, &err), 0);
    assert_int_equal(dr_model_num_classes(m), 3);
    uint32_t c, h, w;
    dr_model_input_shape(m, &c, &h, &w);
    assert_int_equal(c, 3);
    assert_int_equal(h, 8);
    assert_int_equal(w, 8);
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        assert_int_equal(dr_model_set_backend(m, (dr_infer_backend)be), 0);
        expect_colours(m);
    }
    dr_model_free(m);
}

/* Precision: parse, set, and bf16 answers where the CPU has it (else a clear refusal). */
static void test_precision(void **state) {
    (void)state;
    dr_precision p;
    assert_int_equal(dr_precision_parse("fp32", &p), 0);
    assert_int_equal(p, DR_PRECISION_FP32);
    assert_int_equal(dr_precision_parse("bf16", &p), 0);
    assert_int_equal(p, DR_PRECISION_BF16);
    assert_int_equal(dr_precision_parse("auto", &p), 0);
    assert_int_equal(p, DR_PRECISION_AUTO);
    assert_int_equal(dr_precision_parse("fp16", &p), DR_EINVAL);
    dr_model *m = NULL;
    dr_err err = {0};
    tiny_opts o = {0};
    assert_int_equal(load_ox(&o, &m, &err), 0);
    assert_int_equal(dr_model_precision(m), DR_PRECISION_FP32);
    assert_int_equal(dr_model_set_precision(m, (dr_precision)7), DR_EINVAL);
    assert_int_equal(dr_model_set_precision(m, DR_PRECISION_AUTO), 0);
    assert_int_equal(dr_model_precision(m),
                     dr_infer_have_bf16() ? DR_PRECISION_BF16 : DR_PRECISION_FP32);
    if (dr_infer_have_bf16()) {
        assert_int_equal(dr_model_set_precision(m, DR_PRECISION_BF16), 0);
        expect_colours(m);
        /* the SGEMM backend ignores it (always fp32) */
        assert_int_equal(dr_model_set_backend(m, DR_BACKEND_SGEMM), 0);
        expect_colours(m);
    } else {
        assert_int_equal(dr_model_set_precision(m, DR_PRECISION_BF16), DR_EUNSUPPORTED);
    }
    dr_model_free(m);
    /* at load: the option, refused with a clear error where bf16 is missing */
    tiny_bytes b;
    assert_int_equal(tiny_onnx(&o, &b), 0);
    dr_preprocess pre;
    tiny_pre(&pre);
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.pre = &pre;
    lo.precision = DR_PRECISION_BF16;
    int rc = dr_model_load_onnx_ex(b.data, b.len, tiny_synset, strlen(tiny_synset), &lo, &m, &err);
    if (dr_infer_have_bf16()) {
        assert_int_equal(rc, 0);
        assert_int_equal(dr_model_precision(m), DR_PRECISION_BF16);
        expect_colours(m);
        dr_model_free(m);
    } else {
        assert_int_equal(rc, DR_EUNSUPPORTED);
        assert_non_null(strstr(err.msg, "bf16"));
    }
    free(b.data);
}

/* MXNet input size from the data node's __shape__ (face/detection models are not 224), the
 * default preset fitted to it; the caller's crop wins; labels optional on request. */
static void test_mxnet_input_shape(void **state) {
    (void)state;
    tiny_opts o = {0};
    tiny_bytes s, p;
    assert_int_equal(tiny_mxnet(&o, &s, &p), 0);
    const char *from = "\"name\":\"data\",\"inputs\":[]";
    const char *to = "\"name\":\"data\",\"attrs\":{\"__shape__\":\"(1, 3, 16, 16)\"},"
                     "\"inputs\":[]";
    char *js = calloc(1, s.len + strlen(to) + 1);
    assert_non_null(js);
    const char *at = strstr((const char *)s.data, from);
    assert_non_null(at);
    size_t head = (size_t)(at - (const char *)s.data);
    memcpy(js, s.data, head);
    strcat(js, to);
    strcat(js, at + strlen(from));
    dr_model *m = NULL;
    dr_err err = {0};
    assert_int_equal(dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), js, strlen(js), p.data,
                                         p.len, NULL, &m, &err),
                     0);
    uint32_t c, h, w;
    dr_model_input_shape(m, &c, &h, &w);
    assert_int_equal(h, 16);
    assert_int_equal(w, 16);
    expect_colours(m);
    dr_model_free(m);
    /* the caller's preprocessing decides */
    dr_preprocess pre;
    tiny_pre(&pre);
    assert_int_equal(dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), js, strlen(js), p.data,
                                         p.len, &pre, &m, &err),
                     0);
    dr_model_input_shape(m, &c, &h, &w);
    assert_int_equal(h, 8);
    dr_model_free(m);
    /* a bad __shape__ is named */
    char *bad = strdup(js);
    memcpy(strstr(bad, "(1, 3, 16, 16)"), "(1, 9, 16, 16)", 14);
    assert_int_equal(dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), bad, strlen(bad), p.data,
                                         p.len, NULL, &m, &err),
                     DR_EINVAL);
    assert_non_null(strstr(err.msg, "__shape__"));
    free(bad);
    /* no synset: an error, unless labels are optional ("class N") */
    assert_int_equal(dr_model_load_mxnet(NULL, 0, js, strlen(js), p.data, p.len, NULL, &m, &err),
                     DR_EINVAL);
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.labels_optional = 1;
    assert_int_equal(dr_model_load_mxnet_ex(NULL, 0, js, strlen(js), p.data, p.len, &lo, &m, &err),
                     0);
    assert_string_equal(dr_model_label(m, 1), "class 1");
    dr_model_free(m);
    free(js);
    free(s.data);
    free(p.data);
}

/* SoftmaxActivation mode=channel (detection nets): per pixel over the channels. */
static void test_softmax_channel(void **state) {
    (void)state;
    const char *js = "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"
                     "{\"op\":\"SoftmaxActivation\",\"name\":\"prob\",\"attrs\":"
                     "{\"mode\":\"channel\"},\"inputs\":[[0,0,0]]}],"
                     "\"arg_nodes\":[0],\"heads\":[[1,0,0]]}";
    tiny_bytes params;
    assert_int_equal(tiny_params(NULL, 0, &params), 0);
    dr_preprocess pre;
    tiny_pre(&pre);
    pre.resize = pre.crop = 2;
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.pre = &pre;
    lo.labels_optional = 1;
    dr_model *m = NULL;
    dr_err err = {0};
    assert_int_equal(
        dr_model_load_mxnet_ex(NULL, 0, js, strlen(js), params.data, params.len, &lo, &m, &err), 0);
    assert_int_equal(dr_model_num_classes(m), 12);
    float in[12], out[12];
    for (int i = 0; i < 12; i++)
        in[i] = (float)((i * 7) % 5) - 2.0f; /* NCHW: channel c, pixel p at c * 4 + p */
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        assert_int_equal(dr_model_set_backend(m, (dr_infer_backend)be), 0);
        assert_int_equal(dr_model_run(m, in, 1, out, 12, &err), 0);
        for (int p = 0; p < 4; p++) {
            double sum = 0;
            for (int c = 0; c < 3; c++)
                sum += exp(in[c * 4 + p]);
            for (int c = 0; c < 3; c++)
                assert_float_equal(out[c * 4 + p], exp(in[c * 4 + p]) / sum, 1e-5);
        }
    }
    dr_model_free(m);
    free(params.data);
}

/* Loads a parameter-free MXNet symbol over a 3x2x2 input with n outputs (fails the test if it
 * cannot). The caller frees the model. */
static dr_model *load_free_symbol(const char *js, size_t n) {
    tiny_bytes params;
    assert_int_equal(tiny_params(NULL, 0, &params), 0);
    dr_preprocess pre;
    tiny_pre(&pre);
    pre.resize = pre.crop = 2;
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.pre = &pre;
    lo.labels_optional = 1;
    dr_model *m = NULL;
    dr_err err = {0};
    int rc =
        dr_model_load_mxnet_ex(NULL, 0, js, strlen(js), params.data, params.len, &lo, &m, &err);
    free(params.data);
    if (rc)
        fail_msg("load %s: %s", js, err.msg);
    assert_int_equal(dr_model_num_classes(m), n);
    return m;
}

/* Runs a parameter-free MXNet symbol on a 3x2x2 input (both backends) into out[n]. */
static void run_free_symbol(const char *js, const float *in, float *out, size_t n) {
    dr_model *m = load_free_symbol(js, n);
    dr_err err = {0};
    float first[16];
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        assert_int_equal(dr_model_set_backend(m, (dr_infer_backend)be), 0);
        assert_int_equal(dr_model_run(m, in, 1, out, n, &err), 0);
        if (be == 1)
            memcpy(first, out, sizeof(float) * n);
        else if (dr_infer_have_dnnl()) /* both backends give the same values */
            assert_memory_equal(first, out, sizeof(float) * n);
    }
    dr_model_free(m);
}

static void check_symbol_refused(const char *js, int rc, const char *what);

/* SliceChannel: outputs used by index (a concat of parts 2 and 0; a head on part 1). */
static void test_slice_channel(void **state) {
    (void)state;
    float in[12], out[16];
    for (int i = 0; i < 12; i++)
        in[i] = (float)i; /* NCHW: channel c, pixel p = c * 4 + p */
    const char *js = "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"
                     "{\"op\":\"SliceChannel\",\"name\":\"split\",\"attrs\":"
                     "{\"num_outputs\":\"3\",\"axis\":\"1\"},\"inputs\":[[0,0,0]]},"
                     "{\"op\":\"Concat\",\"name\":\"cat\",\"attrs\":{\"dim\":\"1\","
                     "\"num_args\":\"2\"},\"inputs\":[[1,2,0],[1,0,0]]}],"
                     "\"arg_nodes\":[0],\"heads\":[[2,0,0]]}";
    run_free_symbol(js, in, out, 8);
    for (int p = 0; p < 4; p++) {
        assert_float_equal(out[p], in[8 + p], 0);
        assert_float_equal(out[4 + p], in[p], 0);
    }
    const char *js1 = "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"
                      "{\"op\":\"SliceChannel\",\"name\":\"split\",\"attrs\":"
                      "{\"num_outputs\":\"3\"},\"inputs\":[[0,0,0]]}],"
                      "\"arg_nodes\":[0],\"heads\":[[1,1,0]]}";
    run_free_symbol(js1, in, out, 4);
    for (int p = 0; p < 4; p++)
        assert_float_equal(out[p], in[4 + p], 0);
    /* 3 channels do not split in 2: a clear error */
    const char *bad = "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"
                      "{\"op\":\"SliceChannel\",\"name\":\"split\",\"attrs\":"
                      "{\"num_outputs\":\"2\"},\"inputs\":[[0,0,0]]}],"
                      "\"arg_nodes\":[0],\"heads\":[[1,1,0]]}";
    check_symbol_refused(bad, DR_EINVAL, "not divisible");
}

/* A one-operator MXNet symbol over the 3x2x2 input: data -> OP(attrs) -> head. */
static void one_op_symbol(char *js, size_t cap, const char *op, const char *attrs) {
    snprintf(js, cap,
             "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"
             "{\"op\":\"%s\",\"name\":\"x\",\"attrs\":{%s},\"inputs\":[[0,0,0]]}],"
             "\"arg_nodes\":[0],\"heads\":[[1,0,0]]}",
             op, attrs);
}

/* Runs a parameter-free symbol on every backend; each output within tol of expected[]. */
static void check_symbol(const char *js, const float *in, const float *expected, size_t n,
                         double tol) {
    dr_model *m = load_free_symbol(js, n);
    dr_err err = {0};
    float out[16];
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        assert_int_equal(dr_model_set_backend(m, (dr_infer_backend)be), 0);
        assert_int_equal(dr_model_run(m, in, 1, out, n, &err), 0);
        for (size_t i = 0; i < n; i++)
            if (fabs(out[i] - expected[i]) > tol)
                fail_msg("%s backend %d: output %zu is %g, expected %g", js, be, i, out[i],
                         expected[i]);
    }
    dr_model_free(m);
}

/* Loading the symbol fails with rc and a message naming `what`. */
static void check_symbol_refused(const char *js, int rc, const char *what) {
    tiny_bytes params;
    assert_int_equal(tiny_params(NULL, 0, &params), 0);
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.labels_optional = 1;
    dr_model *m = NULL;
    dr_err err = {0};
    assert_int_equal(
        dr_model_load_mxnet_ex(NULL, 0, js, strlen(js), params.data, params.len, &lo, &m, &err),
        rc);
    if (!strstr(err.msg, what))
        fail_msg("error '%s' does not name '%s'", err.msg, what);
    free(params.data);
}

/* MXNet's elementwise activations, each against its formula on both backends. */
static void test_mxnet_activations(void **state) {
    (void)state;
    float in[12], want[12];
    for (int i = 0; i < 12; i++)
        in[i] = (float)i * 0.5f - 3.0f; /* -3 .. 2.5 */
    char js[512];
    static const char *const kinds[] = {"relu", "sigmoid", "tanh", "softrelu"};
    for (int k = 0; k < 4; k++) {
        char attrs[64];
        snprintf(attrs, sizeof attrs, "\"act_type\":\"%s\"", kinds[k]);
        one_op_symbol(js, sizeof js, "Activation", attrs);
        for (int i = 0; i < 12; i++) {
            double x = in[i];
            want[i] = (float)(k == 0   ? (x > 0 ? x : 0)
                              : k == 1 ? 1 / (1 + exp(-x))
                              : k == 2 ? tanh(x)
                                       : log1p(exp(x)));
        }
        check_symbol(js, in, want, 12, 1e-5);
    }
    one_op_symbol(js, sizeof js, "Activation", "\"act_type\":\"swish\"");
    check_symbol_refused(js, DR_EUNSUPPORTED, "act_type 'swish'");
    one_op_symbol(js, sizeof js, "Activation", "");
    check_symbol_refused(js, DR_EINVAL, "act_type");
    /* LeakyReLU: the given slope, the default 0.25; an unknown kind is named */
    one_op_symbol(js, sizeof js, "LeakyReLU", "\"act_type\":\"leaky\",\"slope\":\"0.1\"");
    for (int i = 0; i < 12; i++)
        want[i] = in[i] > 0 ? in[i] : 0.1f * in[i];
    check_symbol(js, in, want, 12, 1e-6);
    one_op_symbol(js, sizeof js, "LeakyReLU", "");
    for (int i = 0; i < 12; i++)
        want[i] = in[i] > 0 ? in[i] : 0.25f * in[i];
    check_symbol(js, in, want, 12, 1e-6);
    one_op_symbol(js, sizeof js, "LeakyReLU", "\"act_type\":\"elu\"");
    check_symbol_refused(js, DR_EUNSUPPORTED, "act_type 'elu'");
    /* clip to [-1, 1.5]; both bounds are required */
    one_op_symbol(js, sizeof js, "clip", "\"a_min\":\"-1\",\"a_max\":\"1.5\"");
    for (int i = 0; i < 12; i++)
        want[i] = in[i] < -1 ? -1 : in[i] > 1.5f ? 1.5f : in[i];
    check_symbol(js, in, want, 12, 0);
    one_op_symbol(js, sizeof js, "clip", "\"a_min\":\"-1\"");
    check_symbol_refused(js, DR_EINVAL, "a_max");
}

/* MXNet Pooling variants over the 2x2 plane of each channel. */
static void test_mxnet_pooling(void **state) {
    (void)state;
    float in[12], want[3];
    for (int i = 0; i < 12; i++)
        in[i] = (float)((i * 5) % 7); /* channel c: in[c * 4 .. c * 4 + 3] */
    char js[512];
    one_op_symbol(js, sizeof js, "Pooling",
                  "\"pool_type\":\"avg\",\"kernel\":\"(2, 2)\",\"stride\":\"(2, 2)\"");
    for (int c = 0; c < 3; c++)
        want[c] = (in[c * 4] + in[c * 4 + 1] + in[c * 4 + 2] + in[c * 4 + 3]) / 4;
    check_symbol(js, in, want, 3, 1e-6);
    one_op_symbol(js, sizeof js, "Pooling", "\"pool_type\":\"max\",\"global_pool\":\"True\"");
    for (int c = 0; c < 3; c++) {
        want[c] = in[c * 4];
        for (int p = 1; p < 4; p++)
            want[c] = in[c * 4 + p] > want[c] ? in[c * 4 + p] : want[c];
    }
    check_symbol(js, in, want, 3, 0);
    /* "full" convention: a 2x2 window at stride 2 over 2x2 still gives one output */
    one_op_symbol(js, sizeof js, "Pooling",
                  "\"kernel\":\"(2, 2)\",\"stride\":\"(2, 2)\",\"pooling_convention\":\"full\"");
    check_symbol(js, in, want, 3, 0);
    one_op_symbol(js, sizeof js, "Pooling", "\"pool_type\":\"lp\",\"kernel\":\"(2, 2)\"");
    check_symbol_refused(js, DR_EUNSUPPORTED, "pool_type 'lp'");
    one_op_symbol(js, sizeof js, "Pooling", "\"layout\":\"NHWC\",\"kernel\":\"(2, 2)\"");
    check_symbol_refused(js, DR_EUNSUPPORTED, "layout NHWC");
    one_op_symbol(js, sizeof js, "Pooling",
                  "\"pooling_convention\":\"same\",\"kernel\":\"(2, 2)\"");
    check_symbol_refused(js, DR_EUNSUPPORTED, "pooling_convention 'same'");
    one_op_symbol(js, sizeof js, "Pooling", "\"pool_type\":\"max\"");
    check_symbol_refused(js, DR_EINVAL, "kernel");
}

static void test_mxnet_legacy_f16(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    tiny_opts o = {.legacy = 1, .f16 = 1};
    assert_int_equal(load_mx(&o, &m, &err), 0);
    expect_colours(m);
    dr_model_free(m);
}

static void test_onnx_colours(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    tiny_opts o = {0};
    int rc = load_ox(&o, &m, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    for (int be = 1; be <= 2; be++) {
        if (be == DR_BACKEND_DNNL && !dr_infer_have_dnnl())
            continue;
        assert_int_equal(dr_model_set_backend(m, (dr_infer_backend)be), 0);
        expect_colours(m);
    }
    dr_model_free(m);
}

/* Both formats and both backends compute the same function on a random input. */
static void test_formats_and_backends_agree(void **state) {
    (void)state;
    dr_model *a = NULL, *b = NULL;
    dr_err err = {0};
    tiny_opts o = {0};
    assert_int_equal(load_mx(&o, &a, &err), 0);
    assert_int_equal(load_ox(&o, &b, &err), 0);
    float in[2 * 3 * 64], oa[6], ob[6], oc[6];
    srand(7);
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        in[i] = (float)rand() / (float)RAND_MAX;
    assert_int_equal(dr_model_set_backend(a, DR_BACKEND_SGEMM), 0);
    assert_int_equal(dr_model_run(a, in, 2, oa, 6, &err), 0); /* probabilities */
    assert_int_equal(dr_model_set_backend(b, DR_BACKEND_SGEMM), 0);
    assert_int_equal(dr_model_run(b, in, 2, ob, 6, &err), 0); /* logits */
    if (dr_infer_have_dnnl()) {
        assert_int_equal(dr_model_set_backend(b, DR_BACKEND_DNNL), 0);
        assert_int_equal(dr_model_run(b, in, 2, oc, 6, &err), 0);
        for (int i = 0; i < 6; i++)
            assert_true(fabsf(ob[i] - oc[i]) <= 1e-4f * (1 + fabsf(ob[i])));
    }
    for (int im = 0; im < 2; im++) {
        float mx = ob[3 * im], sum = 0, p[3];
        for (int k = 1; k < 3; k++)
            mx = fmaxf(mx, ob[3 * im + k]);
        for (int k = 0; k < 3; k++)
            sum += (p[k] = expf(ob[3 * im + k] - mx));
        for (int k = 0; k < 3; k++)
            assert_true(fabsf(p[k] / sum - oa[3 * im + k]) < 1e-4f);
    }
    /* batch 2 equals two batch-1 runs */
    float single[3];
    assert_int_equal(dr_model_run(b, in + 3 * 64, 1, single, 3, &err), 0);
    for (int k = 0; k < 3; k++)
        assert_true(fabsf(single[k] - ob[3 + k]) <= 1e-4f * (1 + fabsf(single[k])));
    /* output buffer too small */
    assert_int_equal(dr_model_run(b, in, 2, ob, 5, &err), DR_ERANGE);
    dr_model_free(a);
    dr_model_free(b);
}

static void test_batch_classify(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    tiny_opts o = {0};
    assert_int_equal(load_ox(&o, &m, &err), 0);
    tiny_bytes p[3];
    tiny_png(0, 0, 255, 8, 8, &p[0]);
    tiny_jpeg(255, 0, 0, 20, 10, &p[1]);
    tiny_png(0, 255, 0, 9, 30, &p[2]);
    const void *ph[3] = {p[0].data, p[1].data, p[2].data};
    size_t pl[3] = {p[0].len, p[1].len, p[2].len}, n[3];
    dr_class_score top[6];
    assert_int_equal(dr_model_classify_batch(m, ph, pl, 3, top, 2, n, &err), 0);
    assert_int_equal(top[0].index, 2);
    assert_int_equal(top[2].index, 0);
    assert_int_equal(top[4].index, 1);
    assert_int_equal(n[1], 2);
    /* one bad photo fails the batch and is named */
    pl[1] = 5;
    assert_int_not_equal(dr_model_classify_batch(m, ph, pl, 3, top, 2, n, &err), 0);
    assert_non_null(strstr(err.msg, "photo 1"));
    /* two threads decode the photos in parallel: the same answers; the first bad one named */
    assert_int_equal(dr_model_set_threads(m, 2), 0);
    pl[1] = p[1].len;
    for (int round = 0; round < 4; round++) {
        memset(top, 0xff, sizeof top);
        assert_int_equal(dr_model_classify_batch(m, ph, pl, 3, top, 2, n, &err), 0);
        assert_int_equal(top[0].index, 2);
        assert_int_equal(top[2].index, 0);
        assert_int_equal(top[4].index, 1);
    }
    pl[1] = 5;
    pl[2] = 7;
    assert_int_not_equal(dr_model_classify_batch(m, ph, pl, 3, top, 2, n, &err), 0);
    assert_non_null(strstr(err.msg, "photo 1"));
    for (int i = 0; i < 3; i++)
        free(p[i].data);
    dr_model_free(m);
}

typedef struct worker {
    dr_model *m;
    int colour;
    int failures;
} worker;

static void *classify_loop(void *arg) {
    worker *w = arg;
    tiny_bytes photo;
    tiny_png(w->colour == 0 ? 255 : 0, w->colour == 1 ? 255 : 0, w->colour == 2 ? 255 : 0, 12, 12,
             &photo);
    for (int i = 0; i < 50; i++) {
        dr_class_score top[1];
        size_t n;
        if (dr_model_classify(w->m, photo.data, photo.len, top, 1, &n, NULL) ||
            top[0].index != (size_t)w->colour)
            w->failures++;
    }
    free(photo.data);
    return NULL;
}

static void test_concurrent_classify(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    tiny_opts o = {0};
    assert_int_equal(load_mx(&o, &m, &err), 0);
    pthread_t t[3];
    worker w[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (worker){m, i, 0};
        pthread_create(&t[i], NULL, classify_loop, &w[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(dr_model_set_threads(m, 2), 0);
    expect_colours(m);
    assert_int_equal(dr_model_set_threads(m, 0), DR_ERANGE);
    dr_model_free(m);
}

/* ---- robustness ------------------------------------------------------------------------ */

/* A model that loaded is usable: a sane shape, and one image runs to num_classes outputs. */
static int usable_models;
static void use_and_free(dr_model *m) {
    uint32_t c = 0, h = 0, w = 0;
    dr_model_input_shape(m, &c, &h, &w);
    size_t classes = dr_model_num_classes(m);
    assert_true(c >= 1 && h >= 1 && w >= 1 && (size_t)c * h * w <= 1u << 24);
    assert_true(classes >= 1 && classes <= 1u << 20);
    float *in = calloc((size_t)c * h * w, sizeof *in), *out = calloc(classes, sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < (size_t)c * h * w; i++)
        in[i] = (float)(i % 7) / 7.0f;
    dr_err err = {0};
    if (dr_model_run(m, in, 1, out, classes, &err) != 0)
        fail_msg("a model that loaded does not run: %s", err.msg);
    free(in);
    free(out);
    dr_model_free(m);
    usable_models++;
}

static void test_truncated_models(void **state) {
    (void)state;
    tiny_opts o = {0};
    tiny_bytes s, p, x;
    tiny_mxnet(&o, &s, &p);
    tiny_onnx(&o, &x);
    dr_preprocess pre;
    tiny_pre(&pre);
    dr_model *m;
    dr_err err;
    for (size_t len = 0; len < p.len; len++) {
        err.msg[0] = 0;
        int rc = dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), s.data, s.len, p.data, len,
                                     &pre, &m, &err);
        assert_true(rc < 0);
        assert_null(m);
        assert_true(strlen(err.msg) > 0);
    }
    for (size_t len = 0; len < s.len; len += 7) {
        int rc = dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), s.data, len, p.data, p.len,
                                     &pre, &m, &err);
        assert_true(rc < 0);
    }
    for (size_t len = 0; len < x.len; len++) {
        int rc = dr_model_load_onnx(x.data, len, NULL, 0, &pre, &m, &err);
        if (rc == 0) /* a prefix can be a valid message; it must still be usable */
            use_and_free(m);
    }
    /* corrupt bytes: never crash; a success must be a usable model */
    for (size_t i = 0; i < p.len; i += 3) {
        uint8_t save = p.data[i];
        p.data[i] ^= 0xA5;
        if (dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), s.data, s.len, p.data, p.len,
                                &pre, &m, &err) == 0)
            use_and_free(m);
        p.data[i] = save;
    }
    for (size_t i = 0; i < x.len; i += 2) {
        uint8_t save = x.data[i];
        x.data[i] ^= 0x5A;
        if (dr_model_load_onnx(x.data, x.len, NULL, 0, &pre, &m, &err) == 0)
            use_and_free(m);
        x.data[i] = save;
    }
    free(s.data);
    free(p.data);
    free(x.data);
    printf("  %d corrupt or truncated models loaded; each ran\n", usable_models);
    assert_true(usable_models > 0); /* the usability check above really ran */
}

static void test_unsupported_named(void **state) {
    (void)state;
    dr_model *m;
    dr_err err;
    tiny_opts o = {.extra_op = "FancyOp"};
    assert_int_equal(load_mx(&o, &m, &err), DR_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "FancyOp"));
    assert_int_equal(load_ox(&o, &m, &err), DR_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "FancyOp"));
    tiny_opts a = {.extra_attr = "\"bogus_attr\":\"1\""};
    assert_int_equal(load_mx(&a, &m, &err), DR_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "bogus_attr"));
    tiny_opts b = {.extra_attr = "bogus_attr"};
    assert_int_equal(load_ox(&b, &m, &err), DR_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "bogus_attr"));
}

static void test_mismatched_shapes(void **state) {
    (void)state;
    dr_model *m;
    dr_err err;
    tiny_opts o = {.conv_cout = 4}; /* conv weights [4,...] vs num_filter / BN of 3 */
    assert_true(load_mx(&o, &m, &err) < 0);
    assert_true(strlen(err.msg) > 0);
    assert_true(load_ox(&o, &m, &err) < 0);
    tiny_opts f = {.fc_classes = 4}; /* 4 outputs, 3 synset lines */
    assert_int_equal(load_mx(&f, &m, &err), DR_EINVAL);
    assert_non_null(strstr(err.msg, "label"));
    /* JSON that is not a graph */
    dr_preprocess pre;
    tiny_pre(&pre);
    tiny_bytes s, p;
    tiny_opts z = {0};
    tiny_mxnet(&z, &s, &p);
    static const char head_out_of_range[] =
        "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]}],"
        "\"heads\":[[5,0,0]]}";
    const char *bad[] = {"{}", "[1,2]", "{\"nodes\":[],\"heads\":[]}", "not json",
                         head_out_of_range};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_true(dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), bad[i], strlen(bad[i]),
                                        p.data, p.len, &pre, &m, &err) < 0);
    free(s.data);
    free(p.data);
}

static void test_absurd_dims(void **state) {
    (void)state;
    /* one array claiming 2^40 x 2^20 elements, and a key count of 2^60 */
    uint8_t b[256];
    size_t n = 0;
#define PUT32(v) (memcpy(b + n, &(uint32_t){(uint32_t)(v)}, 4), n += 4)
#define PUT64(v) (memcpy(b + n, &(uint64_t){(uint64_t)(v)}, 8), n += 8)
    PUT64(0x112);
    PUT64(0);
    PUT64(1);
    PUT32(0xF993FAC9u);
    PUT32(0);
    PUT32(2);
    PUT64((uint64_t)1 << 40);
    PUT64((uint64_t)1 << 20);
    PUT32(1);
    PUT32(0);
    PUT32(0);
    dr_model *m;
    dr_err err;
    const char *js = "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]}],"
                     "\"heads\":[[0,0,0]]}";
    int rc = dr_model_load_mxnet("a\n", 2, js, strlen(js), b, n, NULL, &m, &err);
    assert_true(rc == DR_ETOOBIG || rc == DR_ECORRUPT);
    n = 16;
    PUT64((uint64_t)1 << 60);
    rc = dr_model_load_mxnet("a\n", 2, js, strlen(js), b, n, NULL, &m, &err);
    assert_int_equal(rc, DR_ECORRUPT);
    /* a V2 array with 7 dimensions */
    n = 16;
    PUT64(1);
    PUT32(0xF993FAC9u);
    PUT32(0);
    PUT32(7);
    rc = dr_model_load_mxnet("a\n", 2, js, strlen(js), b, n, NULL, &m, &err);
    assert_int_equal(rc, DR_ECORRUPT);
}

static void test_bad_photos(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err;
    tiny_opts o = {0};
    assert_int_equal(load_ox(&o, &m, &err), 0);
    dr_class_score top[1];
    size_t n;
    assert_int_equal(dr_model_classify(m, "hello world", 11, top, 1, &n, &err), DR_EINVAL);
    assert_non_null(strstr(err.msg, "not a JPEG or PNG"));
    assert_int_equal(dr_model_classify(m, "", 0, top, 1, &n, &err), DR_EINVAL);
    assert_non_null(strstr(err.msg, "0 bytes"));
    assert_int_equal(dr_model_classify(m, NULL, 0, top, 1, &n, &err), DR_EINVAL);
    /* a JPEG whose header claims 60000 x 60000 */
    tiny_bytes j;
    assert_int_equal(tiny_jpeg(10, 20, 30, 16, 16, &j), 0);
    int patched = 0;
    for (size_t i = 0; i + 8 < j.len; i++)
        if (j.data[i] == 0xFF && (j.data[i + 1] == 0xC0 || j.data[i + 1] == 0xC1)) {
            j.data[i + 5] = 60000 >> 8;
            j.data[i + 6] = 60000 & 0xFF;
            j.data[i + 7] = 60000 >> 8;
            j.data[i + 8] = 60000 & 0xFF;
            patched = 1;
            break;
        }
    assert_true(patched);
    assert_int_equal(dr_model_classify(m, j.data, j.len, top, 1, &n, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "60000x60000"));
    free(j.data);
    /* truncated and corrupted photos: an error or an answer, never a crash */
    tiny_bytes p, q;
    tiny_png(1, 2, 3, 20, 20, &p);
    tiny_jpeg(1, 2, 3, 20, 20, &q);
    for (size_t len = 0; len < p.len; len += 5)
        (void)dr_model_classify(m, p.data, len, top, 1, &n, &err);
    for (size_t len = 0; len < q.len; len += 5)
        (void)dr_model_classify(m, q.data, len, top, 1, &n, &err);
    for (size_t i = 0; i < q.len; i += 11) {
        q.data[i] ^= 0x77;
        (void)dr_model_classify(m, q.data, q.len, top, 1, &n, &err);
    }
    free(p.data);
    free(q.data);
    dr_model_free(m);
}

static void test_bad_preprocess(void **state) {
    (void)state;
    dr_preprocess pre;
    tiny_pre(&pre);
    pre.std[1] = 0;
    tiny_bytes b;
    tiny_opts o = {0};
    tiny_onnx(&o, &b);
    dr_model *m;
    dr_err err;
    assert_int_equal(dr_model_load_onnx(b.data, b.len, NULL, 0, &pre, &m, &err), DR_EINVAL);
    tiny_pre(&pre);
    pre.crop = 16; /* does not match the 8x8 input */
    pre.resize = 16;
    assert_int_equal(dr_model_load_onnx(b.data, b.len, NULL, 0, &pre, &m, &err), DR_EINVAL);
    /* no labels: "class N" */
    tiny_pre(&pre);
    assert_int_equal(dr_model_load_onnx(b.data, b.len, NULL, 0, &pre, &m, &err), 0);
    assert_string_equal(dr_model_label(m, 2), "class 2");
    assert_null(dr_model_label(m, 3));
    dr_model_free(m);
    free(b.data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mxnet_colours),     cmocka_unit_test(test_precision),
        cmocka_unit_test(test_mxnet_input_shape), cmocka_unit_test(test_softmax_channel),
        cmocka_unit_test(test_slice_channel),     cmocka_unit_test(test_mxnet_activations),
        cmocka_unit_test(test_mxnet_pooling),     cmocka_unit_test(test_mxnet_legacy_f16),
        cmocka_unit_test(test_onnx_colours),      cmocka_unit_test(test_formats_and_backends_agree),
        cmocka_unit_test(test_batch_classify),    cmocka_unit_test(test_concurrent_classify),
        cmocka_unit_test(test_truncated_models),  cmocka_unit_test(test_unsupported_named),
        cmocka_unit_test(test_mismatched_shapes), cmocka_unit_test(test_absurd_dims),
        cmocka_unit_test(test_bad_photos),        cmocka_unit_test(test_bad_preprocess),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
