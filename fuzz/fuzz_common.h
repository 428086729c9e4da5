/*
 * Shared helpers of the inference fuzz targets: the tiny test models (tests/infer) as fixed
 * parts and seeds. Set DR_FUZZ_SEED_DIR to have LLVMFuzzerInitialize write a seed input there.
 */
#ifndef DR_FUZZ_COMMON_H
#define DR_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derecho/infer.h"
#include "derecho/log.h"
#include "fuzz_seed.h"
#include "tiny_models.h"

static inline void fuzz_pre(dr_preprocess *p) {
    memset(p, 0, sizeof(*p));
    p->resize_mode = DR_RESIZE_SQUARE;
    p->divisor = 255.0f;
    p->std[0] = p->std[1] = p->std[2] = 1.0f;
}

/* Runs a loaded model once on zeros when it is cheap, to exercise planning and kernels. */
static inline void fuzz_exercise(dr_model *m) {
    if (dr_model_flops_per_image(m) > 2e7 || dr_model_num_classes(m) > 100000)
        return;
    uint32_t c, h, w;
    dr_model_input_shape(m, &c, &h, &w);
    if ((size_t)c * h * w > 1u << 20)
        return;
    float *in = calloc((size_t)c * h * w, sizeof(float));
    float *out = calloc(dr_model_num_classes(m), sizeof(float));
    if (in && out) {
        dr_model_set_backend(m, DR_BACKEND_SGEMM);
        (void)dr_model_run(m, in, 1, out, dr_model_num_classes(m), NULL);
    }
    free(in);
    free(out);
}

#endif
