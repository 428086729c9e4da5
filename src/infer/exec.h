/*
 * Execution of an optimised ir_graph: a pool of execution contexts (one per concurrent call
 * and batch size), each with its memory plan (tensor offsets in one arena, computed once when
 * the context is built) and, for the oneDNN backend, its compiled convolution primitives.
 */
#ifndef DR_INFER_EXEC_H
#define DR_INFER_EXEC_H

#include <pthread.h>

#include "infer/ir.h"

typedef struct exec_ctx exec_ctx;
typedef struct wcache wcache; /* oneDNN-layout weights shared by contexts (per node) */

/* Admission limits checked by exec_init (see dr_infer_limits). */
typedef struct exec_limits {
    double max_flops;              /* per image: conv/FC MACs x 2 plus element-wise work */
    uint64_t max_activation_bytes; /* arena of a batch-1 context (x batch for larger ones) */
    uint64_t max_weight_bytes;     /* weights read per image, counted per using operator */
} exec_limits;

typedef struct exec_model {
    ir_graph *g;
    wcache **wcache; /* per node, guarded by mu */
    float **conv_wt; /* per node: SGEMM-layout weights [g][kh][kw][cin_g][cout_g], or NULL; the
                        whole array NULL until the first SGEMM context (prepare_sgemm_weights) */
    pthread_mutex_t mu;
    exec_ctx *pool;
    int threads;            /* guarded by mu */
    int backend;            /* dr_infer_backend, guarded by mu */
    int bf16;               /* oneDNN convolutions in bfloat16, guarded by mu */
    int profile;            /* DR_INFER_PROFILE: log time per operator type (1) or per node (2) */
    double flops_per_image; /* conv + FC, 2 per MAC */
    int64_t out_per_image;
    uint64_t max_act_bytes; /* per image in a context's arena */
} exec_model;

/*
 * Prepares g (optimised, owned by the caller, outliving em) for execution: infers batch-1
 * shapes, checks the limits (lim NULL: only the engine's hard limits) before reordering any
 * weight or allocating an arena (DR_ETOOBIG naming the limit), then validates with a batch-1
 * plan. On error em may be partly set up: call exec_free.
 */
int exec_init(exec_model *em, ir_graph *g, const exec_limits *lim, dr_err *err);
void exec_free(exec_model *em);
/* input: batch NCHW images; out: batch * out_per_image floats (logical row-major). */
int exec_run(exec_model *em, const float *input, int batch, float *out, size_t out_len,
             dr_err *err);
void exec_set_threads(exec_model *em, int threads);
/* The thread count set by exec_set_threads (any thread). */
int exec_get_threads(exec_model *em);
void exec_set_backend(exec_model *em, int backend);
/* bf16 = 1: later oneDNN contexts compute convolutions in bfloat16 (f32 activations between
 * operators; a convolution oneDNN has no bf16 kernel for stays f32). No effect on SGEMM. */
void exec_set_bf16(exec_model *em, int bf16);
/* 1 when oneDNN is usable and the CPU has native bf16 (AVX512_BF16 or AMX). */
int exec_have_bf16(void);
int exec_have_dnnl(void);

#endif
