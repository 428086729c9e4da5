/*
 * ONNX model loader: ModelProto (protobuf, parsed by protoc-c code generated at build time
 * from Debian's /usr/include/onnx/onnx.proto) into the IR. Initializers become constants
 * (float32/float16/float64/int32/int64, raw_data or typed fields); the single graph input that
 * is not an initializer is the image, rank 4 NCHW.
 */
#include <stdlib.h>
#include <string.h>

#include "derecho/buffer.h"
#include "infer/loader.h"
#include "onnx/onnx.pb-c.h"

typedef Onnx__TensorProto tensor_pb;
typedef Onnx__AttributeProto attr_pb;
typedef Onnx__NodeProto node_pb;

enum { T_FLOAT = 1, T_INT32 = 6, T_INT64 = 7, T_FLOAT16 = 10, T_DOUBLE = 11 };

static int tensor_to_float(const tensor_pb *t, const char *what, int *ndim, int64_t *dims,
                           float **out, dr_err *err) {
    if (t->n_dims > IR_MAXDIM)
        return dr_err_set(err, DR_EUNSUPPORTED, "tensor %s: %zu dimensions", what, t->n_dims);
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        int64_t d = t->dims[i];
        if (d < 0 || d > IR_MAX_ELEMS || (d > 0 && n > IR_MAX_ELEMS / d))
            return dr_err_set(err, DR_ETOOBIG, "tensor %s: dimension %lld", what, (long long)d);
        dims[i] = d;
        n *= d;
    }
    *ndim = (int)t->n_dims;
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return dr_err_set(err, DR_EUNSUPPORTED, "tensor %s: external data", what);
    int type = t->has_data_type ? t->data_type : 0;
    size_t es = type == T_FLOAT || type == T_INT32    ? 4
                : type == T_INT64 || type == T_DOUBLE ? 8
                : type == T_FLOAT16                   ? 2
                                                      : 0;
    if (!es)
        return dr_err_set(err, DR_EUNSUPPORTED, "tensor %s: data type %d", what, type);
    size_t have;
    if (t->has_raw_data)
        have = t->raw_data.len / es;
    else if (type == T_FLOAT)
        have = t->n_float_data;
    else if (type == T_INT32 || type == T_FLOAT16)
        have = t->n_int32_data;
    else if (type == T_INT64)
        have = t->n_int64_data;
    else
        have = t->n_double_data;
    if ((t->has_raw_data && t->raw_data.len != (size_t)n * es) || have != (size_t)n)
        return dr_err_set(err, DR_ECORRUPT, "tensor %s: %zu values for %lld elements", what, have,
                          (long long)n);
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!f)
        return dr_err_set(err, DR_ENOMEM, "out of memory for tensor %s", what);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *r = t->has_raw_data ? t->raw_data.data + (size_t)i * es : NULL;
        float v;
        switch (type) {
        case T_FLOAT:
            if (r)
                memcpy(&v, r, 4);
            else
                v = t->float_data[i];
            break;
        case T_INT32:
            v = r ? (float)(int32_t)dr_load_u32le(r) : (float)t->int32_data[i];
            break;
        case T_FLOAT16:
            v = ir_half_to_float(r ? (uint16_t)(r[0] | r[1] << 8) : (uint16_t)t->int32_data[i]);
            break;
        case T_INT64:
            v = r ? (float)(int64_t)dr_load_u64le(r) : (float)t->int64_data[i];
            break;
        default: {
            double d;
            if (r)
                memcpy(&d, r, 8);
            else
                d = t->double_data[i];
            v = (float)d;
        }
        }
        f[i] = v;
    }
    *out = f;
    return 0;
}

static int add_tensor(ir_graph *g, const tensor_pb *t, const char *name, dr_err *err) {
    int nd = 0;
    int64_t dims[IR_MAXDIM];
    float *data = NULL;
    int rc = tensor_to_float(t, name, &nd, dims, &data, err);
    if (rc)
        return rc;
    int v = ir_add_value(g, name, nd, dims, data);
    if (v < 0) {
        free(data);
        return dr_err_set(err, v, "out of memory");
    }
    return 0;
}

static const attr_pb *find_attr(const node_pb *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && !strcmp(n->attribute[i]->name, name))
            return n->attribute[i];
    return NULL;
}

static int check_attrs(const node_pb *n, const char *const *known, dr_err *err) {
    for (size_t i = 0; i < n->n_attribute; i++) {
        const char *a = n->attribute[i]->name ? n->attribute[i]->name : "";
        int ok = 0;
        for (int k = 0; known[k]; k++)
            if (!strcmp(known[k], a))
                ok = 1;
        if (!ok)
            return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: unsupported attribute '%s'", n->op_type,
                              n->name ? n->name : "", a);
    }
    return 0;
}

static int64_t attr_i(const node_pb *n, const char *name, int64_t def) {
    const attr_pb *a = find_attr(n, name);
    return a && a->has_i ? a->i : def;
}

static float attr_f(const node_pb *n, const char *name, float def) {
    const attr_pb *a = find_attr(n, name);
    return a && a->has_f ? a->f : def;
}

/* Reads an ints attribute of exactly `want` values (0 = any up to max) into out. */
static int attr_ints(const node_pb *n, const char *name, int64_t *out, size_t want, size_t *got) {
    const attr_pb *a = find_attr(n, name);
    *got = 0;
    if (!a)
        return 0;
    if ((want && a->n_ints != want) || a->n_ints > IR_MAXDIM)
        return -1;
    for (size_t i = 0; i < a->n_ints; i++)
        out[i] = a->ints[i];
    *got = a->n_ints;
    return 0;
}

#define BAD(attr)                                                                                  \
    dr_err_set(err, DR_EUNSUPPORTED, "%s %s: unsupported value of attribute '%s'", op, nm, attr)

static int window_attrs(const node_pb *pn, const char *op, const char *nm, int *kh, int *kw,
                        int *sh, int *sw, int *pads, int *dh, int *dw, int kernel_required,
                        int *auto_pad, dr_err *err) {
    int64_t v[IR_MAXDIM];
    size_t got;
    if (attr_ints(pn, "kernel_shape", v, 2, &got) || (kernel_required && got != 2))
        return BAD("kernel_shape");
    if (got == 2) {
        if (v[0] < 1 || v[0] > 1024 || v[1] < 1 || v[1] > 1024)
            return BAD("kernel_shape");
        *kh = (int)v[0];
        *kw = (int)v[1];
    }
    *sh = *sw = 1;
    if (attr_ints(pn, "strides", v, 2, &got))
        return BAD("strides");
    if (got) {
        if (v[0] < 1 || v[0] > 1024 || v[1] < 1 || v[1] > 1024)
            return BAD("strides");
        *sh = (int)v[0];
        *sw = (int)v[1];
    }
    pads[0] = pads[1] = pads[2] = pads[3] = 0;
    if (attr_ints(pn, "pads", v, 4, &got))
        return BAD("pads");
    for (size_t i = 0; i < got; i++) {
        if (v[i] < 0 || v[i] > 1024)
            return BAD("pads");
        pads[i] = (int)v[i];
    }
    if (dh) {
        *dh = *dw = 1;
        if (attr_ints(pn, "dilations", v, 2, &got))
            return BAD("dilations");
        if (got) {
            if (v[0] < 1 || v[0] > 1024 || v[1] < 1 || v[1] > 1024)
                return BAD("dilations");
            *dh = (int)v[0];
            *dw = (int)v[1];
        }
    } else {
        if (attr_ints(pn, "dilations", v, 2, &got))
            return BAD("dilations");
        if (got && (v[0] != 1 || v[1] != 1))
            return BAD("dilations");
    }
    const attr_pb *ap = find_attr(pn, "auto_pad");
    *auto_pad = 0;
    if (ap && ap->has_s) {
        char s[32] = {0};
        memcpy(s, ap->s.data, ap->s.len < 31 ? ap->s.len : 31);
        if (!strcmp(s, "SAME_UPPER"))
            *auto_pad = 1;
        else if (!strcmp(s, "SAME_LOWER"))
            *auto_pad = 2;
        else if (!strcmp(s, "VALID"))
            pads[0] = pads[1] = pads[2] = pads[3] = 0;
        else if (strcmp(s, "NOTSET"))
            return BAD("auto_pad");
    }
    return 0;
}

static int const_in(const ir_graph *g, const int *in, int n_in, int j) {
    return j < n_in && g->vals[in[j]].data != NULL;
}

/*
 * The ONNX operator table: one entry per operator type with its IR kind (and activation), the
 * attributes it accepts (any other fails the load, naming it), the inputs it needs and keeps
 * (0: all), and the function that reads its attributes and constant inputs into node idx.
 */
typedef struct ox_ctx {
    ir_graph *g;
    int idx; /* the node (g->nodes may not move while values are added; re-read by index) */
    const node_pb *pn;
    int opset;
    const int *in;
    int n_in;
    const char *op, *nm;
} ox_ctx;

typedef int (*ox_parse_fn)(const ox_ctx *x, dr_err *err);

typedef struct ox_op {
    const char *op;
    ir_op kind;
    ir_act act;
    const char *const *known;
    int min_in, max_in;
    ox_parse_fn parse;
} ox_op;

#define OX_NODE(x) (&(x)->g->nodes[(x)->idx])
#define OX_BAD(attr)                                                                               \
    dr_err_set(err, DR_EUNSUPPORTED, "%s %s: unsupported value of attribute '%s'", x->op, x->nm,   \
               attr)

static int ox_conv(const ox_ctx *x, dr_err *err) {
    ir_node *n = OX_NODE(x);
    ir_conv *c = &n->conv;
    int pads[4], ap;
    const ir_value *w = &x->g->vals[x->in[1]];
    if (!w->data || w->ndim != 4)
        return dr_err_set(err, DR_EUNSUPPORTED, "Conv %s: weights must be a 4-D initializer",
                          x->nm);
    c->kh = (int)w->dims[2];
    c->kw = (int)w->dims[3];
    int rc = window_attrs(x->pn, x->op, x->nm, &c->kh, &c->kw, &c->sh, &c->sw, pads, &c->dh, &c->dw,
                          0, &ap, err);
    if (rc)
        return rc;
    c->pt = pads[0];
    c->pl = pads[1];
    c->pb = pads[2];
    c->pr = pads[3];
    c->group = (int)attr_i(x->pn, "group", 1);
    if (c->group < 1 || c->group > (1 << 20))
        return OX_BAD("group");
    n->auto_pad = ap; /* SAME_*: pads resolved by the first shape inference */
    n->n_in = x->n_in >= 3 ? 3 : 2;
    return 0;
}

static int ox_bn(const ox_ctx *x, dr_err *err) {
    ir_node *n = OX_NODE(x);
    n->eps = attr_f(x->pn, "epsilon", 1e-5f);
    if (attr_i(x->pn, "spatial", 1) != 1)
        return OX_BAD("spatial");
    n->n_in = 5;
    return 0;
}

static int ox_leaky(const ox_ctx *x, dr_err *err) {
    (void)err;
    OX_NODE(x)->alpha = attr_f(x->pn, "alpha", 0.01f);
    return 0;
}

static int ox_prelu(const ox_ctx *x, dr_err *err) {
    if (!const_in(x->g, x->in, x->n_in, 1))
        return dr_err_set(err, DR_EUNSUPPORTED, "PRelu %s: slope must be constant", x->nm);
    return 0;
}

/* Clip: min/max attributes (opset < 11) or constant scalar inputs (opset 11+). */
static int ox_clip(const ox_ctx *x, dr_err *err) {
    ir_node *n = OX_NODE(x);
    n->alpha = attr_f(x->pn, "min", -3.4e38f);
    n->beta = attr_f(x->pn, "max", 3.4e38f);
    for (int j = 1; j <= 2; j++) {
        if (x->n_in <= j || x->in[j] < 0)
            continue;
        if (!const_in(x->g, x->in, x->n_in, j) || ir_numel(&x->g->vals[x->in[j]]) != 1)
            return dr_err_set(err, DR_EUNSUPPORTED, "Clip %s: %s is not a constant", x->nm,
                              j == 1 ? "min" : "max");
        *(j == 1 ? &n->alpha : &n->beta) = x->g->vals[x->in[j]].data[0];
    }
    return 0;
}

static int ox_pool(const ox_ctx *x, dr_err *err) {
    ir_pool *p = &OX_NODE(x)->pool;
    int pads[4], ap;
    p->is_max = !strcmp(x->op, "MaxPool") || !strcmp(x->op, "GlobalMaxPool");
    if (!strncmp(x->op, "Global", 6)) {
        p->global = 1;
        return 0;
    }
    int rc = window_attrs(x->pn, x->op, x->nm, &p->kh, &p->kw, &p->sh, &p->sw, pads, NULL, NULL, 1,
                          &ap, err);
    if (rc)
        return rc;
    if (ap)
        return OX_BAD("auto_pad");
    p->pt = pads[0];
    p->pl = pads[1];
    p->pb = pads[2];
    p->pr = pads[3];
    p->ceil_mode = (int)attr_i(x->pn, "ceil_mode", 0);
    p->count_include_pad = (int)attr_i(x->pn, "count_include_pad", 0);
    if (attr_i(x->pn, "storage_order", 0) != 0)
        return OX_BAD("storage_order");
    return 0;
}

/* Add, Sum, Mul: numpy broadcasting only (no legacy axis). */
static int ox_eltwise(const ox_ctx *x, dr_err *err) {
    return find_attr(x->pn, "axis") ? OX_BAD("axis") : 0;
}

static int ox_concat(const ox_ctx *x, dr_err *err) {
    if (!find_attr(x->pn, "axis"))
        return OX_BAD("axis");
    OX_NODE(x)->axis = (int)attr_i(x->pn, "axis", 1);
    return 0;
}

/* Flatten (axis default 1) and Softmax (axis default 1, or -1 from opset 13). */
static int ox_axis(const ox_ctx *x, dr_err *err) {
    ir_node *n = OX_NODE(x);
    int def = n->op == IR_SOFTMAX && x->opset >= 13 ? -1 : 1;
    n->axis = (int)attr_i(x->pn, "axis", def);
    if (n->axis < -IR_MAXDIM || n->axis > IR_MAXDIM)
        return OX_BAD("axis");
    return 0;
}

/* Reshape: the target shape from a constant second input (opset 5+) or the attribute. */
static int ox_reshape(const ox_ctx *x, dr_err *err) {
    ir_node *n = OX_NODE(x);
    if (attr_i(x->pn, "allowzero", 0))
        return OX_BAD("allowzero");
    int64_t v[IR_MAXDIM];
    size_t got = 0;
    if (x->n_in >= 2) {
        const ir_value *s = &x->g->vals[x->in[1]];
        if (!s->data || s->ndim != 1 || s->dims[0] < 1 || s->dims[0] > IR_MAXDIM)
            return dr_err_set(err, DR_EUNSUPPORTED, "Reshape %s: shape must be a constant", x->nm);
        got = (size_t)s->dims[0];
        for (size_t i = 0; i < got; i++)
            v[i] = (int64_t)s->data[i];
    } else if (attr_ints(x->pn, "shape", v, 0, &got) || got == 0) {
        return OX_BAD("shape");
    }
    for (size_t i = 0; i < got; i++)
        n->shape[i] = v[i];
    n->shape_n = (int)got;
    return 0;
}

/* Gemm with constant B (and C): W = alpha * B (as [N, K]), bias = beta * C. */
static int ox_gemm(const ox_ctx *x, dr_err *err) {
    ir_graph *g = x->g;
    if (attr_i(x->pn, "transA", 0))
        return OX_BAD("transA");
    float alpha = attr_f(x->pn, "alpha", 1), beta = attr_f(x->pn, "beta", 1);
    int transb = (int)attr_i(x->pn, "transB", 0);
    if (!const_in(g, x->in, x->n_in, 1) || g->vals[x->in[1]].ndim != 2)
        return dr_err_set(err, DR_EUNSUPPORTED, "Gemm %s: B must be a 2-D initializer", x->nm);
    const ir_value *b = &g->vals[x->in[1]];
    int64_t K = transb ? b->dims[1] : b->dims[0], N = transb ? b->dims[0] : b->dims[1];
    float *w = malloc(sizeof(float) * (size_t)(K * N));
    if (!w)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < K; k++)
            w[i * K + k] = alpha * (transb ? b->data[i * K + k] : b->data[k * N + i]);
    int64_t wd[2] = {N, K};
    int wi = ir_add_value(g, "gemm_weight", 2, wd, w);
    if (wi < 0) {
        free(w);
        return dr_err_set(err, wi, "out of memory");
    }
    ir_node *n = OX_NODE(x); /* the values array may have moved; nodes did not */
    n->in[1] = wi;
    n->n_in = 2;
    n->flatten = 1;
    if (x->n_in < 3)
        return 0;
    const ir_value *cb = &g->vals[x->in[2]];
    if (!cb->data || ir_numel(cb) != N)
        return dr_err_set(err, DR_EUNSUPPORTED, "Gemm %s: C must be a constant of %lld", x->nm,
                          (long long)N);
    float *bias = malloc(sizeof(float) * (size_t)N);
    if (!bias)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    for (int64_t i = 0; i < N; i++)
        bias[i] = beta * cb->data[i];
    int bi = ir_add_value(g, "gemm_bias", 1, &N, bias);
    if (bi < 0) {
        free(bias);
        return dr_err_set(err, bi, "out of memory");
    }
    n->in[2] = bi;
    n->n_in = 3;
    return 0;
}

static const char *const conv_k[] = {"kernel_shape", "strides",  "pads", "dilations",
                                     "group",        "auto_pad", NULL};
static const char *const bn_k[] = {"epsilon", "momentum",        "spatial",
                                   "is_test", "consumed_inputs", NULL};
static const char *const none_k[] = {NULL};
static const char *const leaky_k[] = {"alpha", NULL};
static const char *const clip_k[] = {"min", "max", NULL};
static const char *const pool_k[] = {"kernel_shape", "strides",           "pads",
                                     "auto_pad",     "ceil_mode",         "storage_order",
                                     "dilations",    "count_include_pad", NULL};
static const char *const axis_k[] = {"axis", NULL};
static const char *const reshape_k[] = {"shape", "allowzero", NULL};
static const char *const gemm_k[] = {"alpha", "beta", "transA", "transB", "broadcast", NULL};
static const char *const drop_k[] = {"ratio", "is_test", "seed", NULL};
static const char *const add_k[] = {"broadcast", "axis", "consumed_inputs", NULL};

static const ox_op ox_ops[] = {
    {"Conv", IR_CONV, IR_ACT_NONE, conv_k, 2, 0, ox_conv},
    {"BatchNormalization", IR_BN, IR_ACT_NONE, bn_k, 5, 0, ox_bn},
    {"Relu", IR_ACT, IR_ACT_RELU, none_k, 1, 0, NULL},
    {"Sigmoid", IR_ACT, IR_ACT_SIGMOID, none_k, 1, 0, NULL},
    {"Tanh", IR_ACT, IR_ACT_TANH, none_k, 1, 0, NULL},
    {"Softplus", IR_ACT, IR_ACT_SOFTRELU, none_k, 1, 0, NULL},
    {"LeakyRelu", IR_ACT, IR_ACT_LEAKY, leaky_k, 1, 0, ox_leaky},
    {"PRelu", IR_ACT, IR_ACT_PRELU, none_k, 2, 0, ox_prelu},
    {"Clip", IR_ACT, IR_ACT_CLIP, clip_k, 1, 1, ox_clip},
    {"MaxPool", IR_POOL, IR_ACT_NONE, pool_k, 1, 0, ox_pool},
    {"AveragePool", IR_POOL, IR_ACT_NONE, pool_k, 1, 0, ox_pool},
    {"GlobalAveragePool", IR_POOL, IR_ACT_NONE, none_k, 1, 0, ox_pool},
    {"GlobalMaxPool", IR_POOL, IR_ACT_NONE, none_k, 1, 0, ox_pool},
    {"Add", IR_ADD, IR_ACT_NONE, add_k, 2, 0, ox_eltwise},
    {"Sum", IR_ADD, IR_ACT_NONE, add_k, 1, 0, ox_eltwise},
    {"Mul", IR_MUL, IR_ACT_NONE, add_k, 2, 0, ox_eltwise},
    {"Concat", IR_CONCAT, IR_ACT_NONE, axis_k, 1, 0, ox_concat},
    {"Flatten", IR_FLATTEN, IR_ACT_NONE, axis_k, 1, 0, ox_axis},
    {"Reshape", IR_RESHAPE, IR_ACT_NONE, reshape_k, 1, 1, ox_reshape},
    {"Gemm", IR_FC, IR_ACT_NONE, gemm_k, 2, 0, ox_gemm},
    {"MatMul", IR_MATMUL, IR_ACT_NONE, none_k, 2, 0, NULL},
    {"Dropout", IR_IDENTITY, IR_ACT_NONE, drop_k, 1, 1, NULL},
    {"Identity", IR_IDENTITY, IR_ACT_NONE, none_k, 1, 1, NULL},
    {"Softmax", IR_SOFTMAX, IR_ACT_NONE, axis_k, 1, 0, ox_axis},
};

/* Builds one node from the operator table. */
static int build(ir_graph *g, const node_pb *pn, int opset, const int *in, int n_in, dr_err *err) {
    const char *op = pn->op_type ? pn->op_type : "";
    const char *nm = pn->name && *pn->name ? pn->name : (pn->n_output ? pn->output[0] : "");
    const ox_op *def = NULL;
    for (size_t k = 0; k < sizeof ox_ops / sizeof *ox_ops && !def; k++)
        if (!strcmp(op, ox_ops[k].op))
            def = &ox_ops[k];
    if (!def)
        return dr_err_set(err, DR_EUNSUPPORTED, "unsupported operator '%s' (node %s)", op, nm);
    int rc = check_attrs(pn, def->known, err);
    if (rc)
        return rc;
    if (pn->n_output < 1 || !pn->output[0])
        return dr_err_set(err, DR_EINVAL, "%s %s: no output", op, nm);
    if (pn->n_output > 1 && def->kind != IR_IDENTITY) /* Dropout's mask is unused */
        for (size_t i = 1; i < pn->n_output; i++)
            if (pn->output[i] && *pn->output[i])
                return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: extra outputs", op, nm);
    if (n_in < def->min_in)
        return dr_err_set(err, DR_EINVAL, "%s %s: %d inputs, need %d", op, nm, n_in, def->min_in);
    int n_used = def->max_in && n_in > def->max_in ? def->max_in : n_in;
    ir_node *n;
    int idx = ir_add_node(g, def->kind, nm, in, n_used, pn->output[0], &n);
    if (idx < 0)
        return dr_err_set(err, idx, "out of memory");
    n->act = def->act;
    ox_ctx x = {g, idx, pn, opset, in, n_in, op, nm};
    return def->parse ? def->parse(&x, err) : 0;
}

/* Reshape of an initializer by a constant shape becomes a new constant. Returns 1 if folded. */
static int fold_reshape(ir_graph *g, const node_pb *pn, const int *in, int n_in, dr_err *err) {
    if (!pn->op_type || strcmp(pn->op_type, "Reshape") || n_in != 2 || pn->n_output != 1 ||
        !g->vals[in[0]].data || !g->vals[in[1]].data)
        return 0;
    const ir_value *x = &g->vals[in[0]], *s = &g->vals[in[1]];
    if (s->ndim != 1 || s->dims[0] < 1 || s->dims[0] > IR_MAXDIM)
        return dr_err_set(err, DR_EUNSUPPORTED, "Reshape %s: bad shape", pn->output[0]);
    int64_t d[IR_MAXDIM], total = ir_numel(x), known = 1;
    int neg = -1, nd = (int)s->dims[0];
    for (int i = 0; i < nd; i++) {
        d[i] = (int64_t)s->data[i];
        if (d[i] == 0 && i < x->ndim)
            d[i] = x->dims[i];
        if (d[i] == -1 && neg < 0)
            neg = i;
        else if (d[i] <= 0)
            return dr_err_set(err, DR_EINVAL, "Reshape %s: bad shape", pn->output[0]);
        else
            known *= d[i];
    }
    if (neg >= 0 && known > 0 && total % known == 0)
        d[neg] = total / known, known *= d[neg];
    if (known != total)
        return dr_err_set(err, DR_EINVAL, "Reshape %s: %lld elements into %lld", pn->output[0],
                          (long long)total, (long long)known);
    float *copy = malloc(sizeof(float) * (size_t)(total ? total : 1));
    if (!copy)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    memcpy(copy, x->data, sizeof(float) * (size_t)total);
    int v = ir_add_value(g, pn->output[0], nd, d, copy);
    if (v < 0) {
        free(copy);
        return dr_err_set(err, v, "out of memory");
    }
    return 1;
}

/* The graph's data input (the one input that is not an initializer): N x C x H x W float,
 * its C/H/W from the declared shape where given (3 x 224 x 224 otherwise). */
static int load_input(ir_graph *g, const Onnx__ValueInfoProto *vi, dr_err *err) {
    int v = ir_find_value(g, vi->name);
    if (v >= 0 && g->vals[v].data)
        return 0; /* IR 3: initializers are listed as inputs */
    if (g->input >= 0)
        return dr_err_set(err, DR_EUNSUPPORTED, "onnx: more than one data input ('%s')", vi->name);
    int64_t d[4] = {1, 3, 224, 224};
    const Onnx__TypeProto *tp = vi->type;
    const Onnx__TypeProto__Tensor *tt = tp ? tp->tensor_type : NULL;
    if (tt && tt->shape) {
        if (tt->shape->n_dim != 4)
            return dr_err_set(err, DR_EUNSUPPORTED, "onnx: input '%s' has rank %zu, need 4",
                              vi->name, tt->shape->n_dim);
        for (int k = 1; k < 4; k++) {
            const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[k];
            if (dm->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
                continue;
            if (dm->dim_value < 1 || dm->dim_value > 16384)
                return dr_err_set(err, DR_ETOOBIG, "onnx: input dimension %lld",
                                  (long long)dm->dim_value);
            d[k] = dm->dim_value;
        }
    }
    if (tt && tt->has_elem_type && tt->elem_type != T_FLOAT)
        return dr_err_set(err, DR_EUNSUPPORTED, "onnx: input '%s' has element type %d", vi->name,
                          tt->elem_type);
    v = ir_add_value(g, vi->name, 4, d, NULL);
    if (v < 0)
        return dr_err_set(err, v, "out of memory");
    g->input = v;
    memcpy(g->in_dims, d, sizeof(d));
    return 0;
}

/* Resolves a node's input names into in[] (-1 for an optional input left out, legal only for
 * Clip's min/max). */
static int node_inputs(const ir_graph *g, const node_pb *pn, int *in, int *n_in_out, dr_err *err) {
    const char *nm = pn->name ? pn->name : "";
    if (pn->n_input > 4096)
        return dr_err_set(err, DR_ETOOBIG, "onnx: node with %zu inputs", pn->n_input);
    if (pn->n_input == 0)
        return dr_err_set(err, DR_EINVAL, "onnx: node %s has no inputs", nm);
    int n_in = 0;
    for (size_t j = 0; j < pn->n_input; j++) {
        const char *iname = pn->input[j];
        if (!iname || !*iname) { /* optional input left out */
            in[n_in++] = -1;
            continue;
        }
        int v = ir_find_value(g, iname);
        if (v < 0)
            return dr_err_set(err, DR_EINVAL, "onnx: node %s reads unknown value '%s'", nm, iname);
        in[n_in++] = v;
    }
    for (int j = 0; j < n_in; j++)
        if (in[j] < 0 && (j == 0 || !(pn->op_type && !strcmp(pn->op_type, "Clip"))))
            return dr_err_set(err, DR_EUNSUPPORTED, "onnx: node %s has an empty input %d", nm, j);
    *n_in_out = n_in;
    return 0;
}

/* One graph node: a Constant becomes a value, a Reshape of constants is folded, any other
 * goes through the operator table. in: scratch for 4096 inputs. */
static int load_node(ir_graph *g, const node_pb *pn, int opset, int *in, dr_err *err) {
    if (pn->domain && *pn->domain && strcmp(pn->domain, "ai.onnx"))
        return dr_err_set(err, DR_EUNSUPPORTED, "onnx: operator domain '%s' (node %s)", pn->domain,
                          pn->name ? pn->name : "");
    if (pn->op_type && !strcmp(pn->op_type, "Constant")) {
        const attr_pb *a = find_attr(pn, "value");
        if (!a || !a->t || pn->n_output != 1 || pn->n_attribute != 1)
            return dr_err_set(err, DR_EUNSUPPORTED, "Constant %s: only 'value' tensors",
                              pn->name ? pn->name : "");
        return add_tensor(g, a->t, pn->output[0], err);
    }
    int n_in = 0, rc = node_inputs(g, pn, in, &n_in, err);
    if (rc)
        return rc;
    if ((rc = fold_reshape(g, pn, in, n_in, err)) != 0)
        return rc < 0 ? rc : 0;
    return build(g, pn, opset, in, n_in, err);
}

int onnx_load(ir_graph *g, const void *bytes, size_t len, dr_err *err) {
    int rc = 0;
    int *in = NULL;
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, bytes);
    if (!m)
        return dr_err_set(err, DR_EINVAL, "onnx: not a valid ModelProto (%zu bytes)", len);
    const Onnx__GraphProto *gr = m->graph;
    if (!gr || gr->n_node == 0 || gr->n_output < 1) {
        rc = dr_err_set(err, DR_EINVAL, "onnx: model has no graph, nodes or outputs");
        goto out;
    }
    if (gr->n_node > LOADER_MAX_NODES) {
        rc = dr_err_set(err, DR_ETOOBIG, "onnx: %zu nodes", gr->n_node);
        goto out;
    }
    int opset = 7;
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if ((!o->domain || !*o->domain) && o->has_version)
            opset = (int)o->version;
    }
    for (size_t i = 0; i < gr->n_initializer && !rc; i++) {
        const tensor_pb *t = gr->initializer[i];
        rc = !t->name || !*t->name ? dr_err_set(err, DR_EINVAL, "onnx: unnamed initializer %zu", i)
                                   : add_tensor(g, t, t->name, err);
    }
    for (size_t i = 0; i < gr->n_input && !rc; i++)
        if (gr->input[i]->name)
            rc = load_input(g, gr->input[i], err);
    if (rc)
        goto out;
    if (g->input < 0) {
        rc = dr_err_set(err, DR_EINVAL, "onnx: no data input");
        goto out;
    }
    in = malloc(sizeof(int) * 4096);
    if (!in) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < gr->n_node && !rc; i++)
        rc = load_node(g, gr->node[i], opset, in, err);
    if (rc)
        goto out;
    g->output = gr->output[0]->name ? ir_find_value(g, gr->output[0]->name) : -1;
    if (g->output < 0 || (g->vals[g->output].data && g->vals[g->output].producer < 0))
        rc = dr_err_set(err, DR_EINVAL, "onnx: graph output is not computed by any node");
out:
    free(in);
    onnx__model_proto__free_unpacked(m, NULL);
    return rc;
}
