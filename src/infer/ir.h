/*
 * Internal graph IR of the inference engine: values (tensors) and nodes (operators) in
 * topological order, filled by the MXNet and ONNX loaders, then optimised (BatchNorm folding,
 * activation fusion, aliasing of no-op nodes), shape-checked and executed.
 *
 * Layout convention: shapes are logical (NCHW for rank 4). At run time rank-4 activations are
 * stored NHWC (channels last), every other tensor row-major. Constants keep their logical
 * row-major layout (conv weights OIHW).
 */
#ifndef DR_INFER_IR_H
#define DR_INFER_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "derecho/error.h"

#define IR_MAXDIM    6
#define IR_MAX_ELEMS ((int64_t)1 << 28) /* per tensor (1 GiB of floats) */

typedef enum ir_op {
    IR_CONV,     /* in: x, W[O,I/g,kh,kw], [bias]; fused act */
    IR_BN,       /* in: x, gamma, beta, mean, var (removed by ir_optimize) */
    IR_AFFINE,   /* in: x, scale[C], shift[C]  (per-channel a*x+b); fused act */
    IR_ACT,      /* in: x [, slope for prelu] */
    IR_POOL,     /* max/avg, global */
    IR_FC,       /* in: x (flattened to [N,K]), W[Nout,K], [bias]; y = x W^T + b */
    IR_MATMUL,   /* in: x[...,K], B[K,N] constant -> converted to FC at load */
    IR_FLATTEN,  /* axis */
    IR_RESHAPE,  /* target shape */
    IR_ADD,      /* broadcasting add of 2+ inputs (Sum) */
    IR_MUL,      /* broadcasting mul of 2 inputs */
    IR_CONCAT,   /* axis */
    IR_IDENTITY, /* Dropout, Identity */
    IR_SOFTMAX,  /* axis (last) */
    IR_SCALAR,   /* y = x * mul + add */
    IR_SLICE,    /* y = x[begin:end) along axis: shape[0] = begin, shape[1] = end (one output
                    of MXNet's SliceChannel) */
} ir_op;

#define IR_NUM_OPS (IR_SLICE + 1)

typedef enum ir_act {
    IR_ACT_NONE = 0,
    IR_ACT_RELU,
    IR_ACT_SIGMOID,
    IR_ACT_TANH,
    IR_ACT_SOFTRELU,
    IR_ACT_LEAKY, /* alpha */
    IR_ACT_PRELU, /* slope tensor input */
    IR_ACT_CLIP,  /* alpha = min, beta = max */
} ir_act;

typedef struct ir_value {
    char *name;
    int ndim;
    int64_t dims[IR_MAXDIM]; /* constants: real dims; activations: filled per batch */
    float *data;             /* constant data (owned) or NULL */
    int producer;            /* node index, -1 for inputs and constants */
    int uses;                /* number of node inputs referencing it */
} ir_value;

typedef struct ir_conv {
    int kh, kw, sh, sw, dh, dw;
    int pt, pl, pb, pr; /* pads top, left, bottom, right */
    int group, cout;
} ir_conv;

typedef struct ir_pool {
    int is_max, global, ceil_mode, count_include_pad;
    int kh, kw, sh, sw, pt, pl, pb, pr;
} ir_pool;

typedef struct ir_node {
    ir_op op;
    char *name;
    int *in;
    int n_in;
    int out;
    ir_act act; /* IR_ACT: the activation; CONV/AFFINE/FC/ADD: fused activation */
    float alpha, beta;
    ir_conv conv;
    ir_pool pool;
    int axis;
    int64_t shape[IR_MAXDIM]; /* reshape target */
    int shape_n;
    float eps;
    int fix_gamma;
    int flatten;  /* FC: flatten input to 2D (else apply on last axis); SOFTMAX: over all axes
                     from `axis` (else over `axis` only: MXNet's mode=channel on rank 4) */
    int removed;  /* eliminated by ir_optimize */
    int has_sum;  /* CONV: in[3] is a residual added before the activation (fused Add) */
    int auto_pad; /* CONV: 1 SAME_UPPER, 2 SAME_LOWER (resolved by the first shape inference) */
} ir_node;

typedef struct ir_graph {
    ir_value *vals;
    int n_vals, cap_vals;
    ir_node *nodes;
    int n_nodes, cap_nodes;
    int input;          /* value index of the image input */
    int output;         /* value index of the graph output */
    int64_t in_dims[4]; /* declared input N,C,H,W (N ignored) */
    int *name_idx;      /* open-addressing hash of value names -> newest value index (-1 empty) */
    int name_cap;       /* slots in name_idx (a power of two, > 2 * n_vals) */
} ir_graph;

void ir_init(ir_graph *g);
void ir_free(ir_graph *g);
/* Returns the index of the newest value called `name`, or -1. O(1) expected (hash index). */
int ir_find_value(const ir_graph *g, const char *name);
/* Adds a value; data (owned, may be NULL) with dims. Returns index or negative error. */
int ir_add_value(ir_graph *g, const char *name, int ndim, const int64_t *dims, float *data);
/* Adds a node (copies in[]); returns node index or negative error. Output value is created. */
int ir_add_node(ir_graph *g, ir_op op, const char *name, const int *in, int n_in,
                const char *out_name, ir_node **node_out);
/* Element count of a value's dims. */
int64_t ir_numel(const ir_value *v);

/* Folds BN into convs, converts leftover BN to AFFINE, fuses activations, checks constants. */
int ir_optimize(ir_graph *g, dr_err *err);

/* Shape inference for batch `batch`: fills dims of every activation. dims_out[v*IR_MAXDIM]. */
int ir_infer_shapes(ir_graph *g, int batch, int64_t *dims, int *ndims, dr_err *err);

/* Half-precision to float. */
float ir_half_to_float(uint16_t h);

#endif
