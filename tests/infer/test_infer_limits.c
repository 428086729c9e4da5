/*
 * Admission limits of the inference engine (issue 12 items 7 and 8): a FLOP-bomb model (one
 * shared 256->256 weight used by many convolutions) is refused at load with a message naming
 * the limit; node, activation and weight caps are configurable; a 100k-node symbol is parsed in
 * linear time; an 8192x8192 PNG over the pixel cap is refused from its header, before decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "derecho/infer.h"
#include "tiny_models.h"

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* ---- the FLOP bomb ---------------------------------------------------------------------- */

static const char synset3[] = "a\nb\nc\n";

/* The FLOP bomb: tiny_conv_stack with 256 channels at hw x hw. Each shared conv costs
 * 2*hw*hw*2304*256 FLOP (3.7 GFLOP at 56x56) while the params file holds the weight once. */
static int load_bomb(int n_shared, int hw, const dr_infer_limits *lim, dr_model **m, dr_err *err) {
    tiny_bytes js, params;
    assert_int_equal(tiny_conv_stack(n_shared, 256, 3, &js, &params), 0);
    dr_preprocess pre;
    dr_preprocess_seed(&pre);
    pre.resize = pre.crop = (uint32_t)hw;
    dr_load_options o;
    dr_load_options_default(&o);
    o.pre = &pre;
    if (lim)
        o.limits = *lim;
    int rc = dr_model_load_mxnet_ex(synset3, strlen(synset3), js.data, js.len, params.data,
                                    params.len, &o, m, err);
    free(js.data);
    free(params.data);
    return rc;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_flop_bomb_refused(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    /* 40 shared convs at 56x56: ~150 GFLOP per photo from a 2.4 MB params file */
    double t0 = cpu_seconds();
    int rc = load_bomb(40, 56, NULL, &m, &err);
    double spent = cpu_seconds() - t0;
    assert_int_equal(rc, DR_ETOOBIG);
    assert_null(m);
    print_message("refused in %.3f s CPU: %s\n", spent, err.msg);
    assert_non_null(strstr(err.msg, "max_flops_per_image"));
    assert_non_null(strstr(err.msg, "GFLOP per image"));
    assert_true(spent < 2.0); /* refused before any weight is reordered or arena allocated */

    /* one shared conv (3.7 GFLOP) is an ordinary model under the default limits */
    assert_int_equal(load_bomb(1, 56, NULL, &m, &err), 0);
    assert_true(dr_model_flops_per_image(m) > 3.6e9 && dr_model_flops_per_image(m) < 4e9);
    dr_model_free(m);
    m = NULL;

    /* a lower cap refuses it; a higher cap admits the 6-conv model refused by the default */
    dr_infer_limits lim;
    dr_infer_limits_default(&lim);
    lim.max_flops_per_image = 3e9;
    assert_int_equal(load_bomb(1, 56, &lim, &m, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_flops_per_image"));
    assert_int_equal(load_bomb(6, 56, NULL, &m, &err), DR_ETOOBIG);
    lim.max_flops_per_image = 30e9;
    assert_int_equal(load_bomb(6, 56, &lim, &m, &err), 0);
    dr_model_free(m);
}

static void test_other_caps(void **state) {
    (void)state;
    dr_model *m = NULL;
    dr_err err = {0};
    dr_infer_limits lim;
    /* node cap: the 40-conv model has 45 operators */
    dr_infer_limits_default(&lim);
    lim.max_nodes = 20;
    lim.max_flops_per_image = 1e15;
    assert_int_equal(load_bomb(40, 8, &lim, &m, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_nodes"));
    /* weights read per image: 4 shared convs read the 2.4 MB weight 4 times */
    dr_infer_limits_default(&lim);
    lim.max_weight_bytes = 8000000;
    assert_int_equal(load_bomb(4, 8, &lim, &m, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_weight_bytes"));
    assert_int_equal(load_bomb(3, 8, &lim, &m, &err), 0);
    dr_model_free(m);
    m = NULL;
    /* activations: two 56x56x256 tensors live at once (~6.4 MB) */
    dr_infer_limits_default(&lim);
    lim.max_activation_bytes = 4 << 20;
    assert_int_equal(load_bomb(1, 56, &lim, &m, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_activation_bytes"));
    lim.max_activation_bytes = 16 << 20;
    assert_int_equal(load_bomb(1, 56, &lim, &m, &err), 0);
    dr_model_free(m);
    m = NULL;
    /* the default node cap */
    dr_infer_limits_default(&lim);
    assert_int_equal(lim.max_nodes, 5000);
    lim.max_flops_per_image = 1e15;
    lim.max_weight_bytes = (uint64_t)1 << 40;
    assert_int_equal(load_bomb(5001, 1, &lim, &m, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "max_nodes"));
    /* a pixel cap over the engine's own is a range error */
    dr_infer_limits_default(&lim);
    lim.max_pixels = DR_INFER_MAX_PIXELS + 1;
    assert_int_equal(load_bomb(1, 8, &lim, &m, &err), DR_ERANGE);
    assert_null(m);
}

/* 100,000 symbol nodes naming 99,999 parameters: parsing and lookups are linear (this took
 * tens of seconds when each node was found by walking the JSON list and the value list). */
static void test_symbol_100k_nodes_linear(void **state) {
    (void)state;
    enum { N = 100000 };
    tiny_array *a = calloc(N - 1, sizeof(*a));
    assert_non_null(a);
    for (int i = 0; i < N - 1; i++) {
        snprintf(a[i].name, sizeof a[i].name, "p%d", i);
        a[i].ndim = 1;
        a[i].dims[0] = 1;
    }
    tiny_bytes params;
    assert_int_equal(tiny_params(a, N - 1, &params), 0);
    bytes js = {0};
    put(&js, "{\"nodes\":[{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]}", 50);
    char tmp[96];
    for (int i = 0; i < N - 1; i++) {
        int l = snprintf(tmp, sizeof tmp, ",{\"op\":\"null\",\"name\":\"p%d\",\"inputs\":[]}", i);
        put(&js, tmp, (size_t)l);
    }
    int l = snprintf(tmp, sizeof tmp, "],\"arg_nodes\":[0],\"heads\":[[%d,0,0]]}", N - 1);
    put(&js, tmp, (size_t)l);
    dr_model *m = NULL;
    dr_err err = {0};
    double t0 = cpu_seconds();
    int rc = dr_model_load_mxnet(synset3, strlen(synset3), js.p, js.len, params.data, params.len,
                                 NULL, &m, &err);
    double spent = cpu_seconds() - t0;
    print_message("100k-node symbol: rc %d in %.3f s CPU: %s\n", rc, spent, err.msg);
    assert_int_not_equal(rc, 0);
    assert_null(m);
    assert_true(spent < 5.0);
    free(js.p);
    free(params.data);
    free(a);
}

/* ---- photos over the pixel cap ----------------------------------------------------------- */

static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_png_bomb_refused(void **state) {
    (void)state;
    /* an 8192x8192 grey PNG compresses to ~200 KB and would decode into 201 MB of RGB */
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = img.height = 8192;
    img.format = PNG_FORMAT_GRAY;
    uint8_t *grey = calloc((size_t)8192 * 8192, 1);
    assert_non_null(grey);
    png_alloc_size_t len = 0;
    assert_true(png_image_write_to_memory(&img, NULL, &len, 0, grey, 0, NULL));
    uint8_t *png = malloc(len);
    assert_non_null(png);
    assert_true(png_image_write_to_memory(&img, png, &len, 0, grey, 0, NULL));
    free(grey);
    print_message("8192x8192 PNG: %zu bytes\n", (size_t)len);

    tiny_bytes onnx;
    tiny_opts o = {0};
    assert_int_equal(tiny_onnx(&o, &onnx), 0);
    dr_preprocess pre;
    dr_preprocess_seed(&pre);
    pre.resize = pre.crop = 8;
    dr_model *m = NULL;
    dr_err err = {0};
    assert_int_equal(
        dr_model_load_onnx(onnx.data, onnx.len, tiny_synset, strlen(tiny_synset), &pre, &m, &err),
        0);
    dr_class_score top[1];
    size_t n = 0;
    long rss0 = maxrss_kb();
    double t0 = cpu_seconds();
    assert_int_equal(dr_model_classify(m, png, len, top, 1, &n, &err), DR_ETOOBIG);
    double spent = cpu_seconds() - t0;
    long grew_kb = maxrss_kb() - rss0;
    print_message("refused in %.3f s CPU, peak RSS +%ld KB: %s\n", spent, grew_kb, err.msg);
    assert_non_null(strstr(err.msg, "8192x8192"));
    assert_non_null(strstr(err.msg, "max_pixels"));
    assert_true(grew_kb < 50 * 1024); /* the 201 MB pixel buffer was never allocated */
    dr_model_free(m);

    /* control: with the cap at the engine's maximum (64 Mi pixels) the same photo is decoded,
     * costing its 201 MB, which is what the check above shows did not happen */
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.pre = &pre;
    lo.limits.max_pixels = DR_INFER_MAX_PIXELS;
    assert_int_equal(
        dr_model_load_onnx_ex(onnx.data, onnx.len, tiny_synset, strlen(tiny_synset), &lo, &m, &err),
        0);
    rss0 = maxrss_kb();
    assert_int_equal(dr_model_classify(m, png, len, top, 1, &n, &err), 0);
    grew_kb = maxrss_kb() - rss0;
    print_message("control: decoded with peak RSS +%ld KB\n", grew_kb);
    assert_true(grew_kb > 100 * 1024);
    dr_model_free(m);

    /* a per-model cap: 100 pixels refuses a 16x16 photo that the default admits */
    tiny_bytes small;
    assert_int_equal(tiny_png(255, 0, 0, 16, 16, &small), 0);
    dr_load_options_default(&lo);
    assert_int_equal(lo.limits.max_pixels, 40000000);
    lo.pre = &pre;
    lo.limits.max_pixels = 100;
    assert_int_equal(
        dr_model_load_onnx_ex(onnx.data, onnx.len, tiny_synset, strlen(tiny_synset), &lo, &m, &err),
        0);
    assert_int_equal(dr_model_classify(m, small.data, small.len, top, 1, &n, &err), DR_ETOOBIG);
    assert_non_null(strstr(err.msg, "16x16"));
    dr_model_free(m);
    lo.limits.max_pixels = 0; /* the default */
    assert_int_equal(
        dr_model_load_onnx_ex(onnx.data, onnx.len, tiny_synset, strlen(tiny_synset), &lo, &m, &err),
        0);
    assert_int_equal(dr_model_classify(m, small.data, small.len, top, 1, &n, &err), 0);
    assert_string_equal(top[0].label, "n00000001 red");
    dr_model_free(m);
    free(small.data);
    free(onnx.data);
    free(png);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flop_bomb_refused),
        cmocka_unit_test(test_other_caps),
        cmocka_unit_test(test_symbol_100k_nodes_linear),
        cmocka_unit_test(test_png_bomb_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
