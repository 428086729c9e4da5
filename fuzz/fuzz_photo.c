/* libFuzzer target: photo path (JPEG/PNG decode, limits, preprocessing, classify) on the tiny
 * ONNX model. Seeds: a small PNG and JPEG. */
#include <stdint.h>

#include "fuzz_common.h"

static dr_model *g_model;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dr_log_set_all_levels(DR_LOG_OFF);
    tiny_opts o = {0};
    tiny_bytes b, p, j;
    tiny_onnx(&o, &b);
    dr_preprocess pre;
    fuzz_pre(&pre);
    pre.resize = 8;
    pre.crop = 8;
    if (dr_model_load_onnx(b.data, b.len, tiny_synset, strlen(tiny_synset), &pre, &g_model, NULL))
        abort(); /* fuzz harness setup only */
    dr_model_set_backend(g_model, DR_BACKEND_SGEMM);
    free(b.data);
    tiny_png(200, 10, 30, 13, 7, &p);
    tiny_jpeg(20, 200, 30, 9, 17, &j);
    fuzz_write_seed("photo_png", p.data, p.len);
    fuzz_write_seed("photo_jpeg", j.data, j.len);
    free(p.data);
    free(j.data);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    dr_class_score top[3];
    size_t n;
    dr_err err;
    (void)dr_model_classify(g_model, data, len, top, 3, &n, &err);
    return 0;
}
