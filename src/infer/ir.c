/*
 * Graph IR: construction helpers, load-time optimisation (BatchNorm folding into the
 * preceding convolution, leftover BatchNorm -> per-channel affine, activation fusion,
 * MatMul-with-constant -> FullyConnected) and shape inference for a given batch size.
 */
#include "infer/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIMS(v) (dims + (size_t)(v)*IR_MAXDIM)

void ir_init(ir_graph *g) {
    memset(g, 0, sizeof(*g));
    g->input = -1;
    g->output = -1;
}

void ir_free(ir_graph *g) {
    for (int i = 0; i < g->n_vals; i++) {
        free(g->vals[i].name);
        free(g->vals[i].data);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        free(g->nodes[i].name);
        free(g->nodes[i].in);
    }
    free(g->vals);
    free(g->nodes);
    free(g->name_idx);
    ir_init(g);
}

/* FNV-1a of a value name. */
static uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Slot of `name` in the index: the slot holding it, or the empty slot where it would go. */
static int name_slot(const ir_graph *g, const char *name) {
    uint32_t mask = (uint32_t)g->name_cap - 1, i = name_hash(name) & mask;
    while (g->name_idx[i] >= 0 && strcmp(g->vals[g->name_idx[i]].name, name) != 0)
        i = (i + 1) & mask;
    return (int)i;
}

/* Records value v under its name (replacing an older value of the same name); grows the
 * index to keep it under half full. */
static int name_insert(ir_graph *g, int v) {
    if (2 * (g->n_vals + 1) >= g->name_cap) {
        int cap = g->name_cap ? g->name_cap * 2 : 256;
        int *idx = malloc(sizeof(int) * (size_t)cap);
        if (!idx)
            return DR_ENOMEM;
        for (int i = 0; i < cap; i++)
            idx[i] = -1;
        free(g->name_idx);
        g->name_idx = idx;
        g->name_cap = cap;
        for (int k = 0; k < v; k++)
            g->name_idx[name_slot(g, g->vals[k].name)] = k;
    }
    g->name_idx[name_slot(g, g->vals[v].name)] = v;
    return 0;
}

int ir_find_value(const ir_graph *g, const char *name) {
    if (!g->name_cap)
        return -1;
    return g->name_idx[name_slot(g, name)];
}

int64_t ir_numel(const ir_value *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        n *= v->dims[i];
    return n;
}

int ir_add_value(ir_graph *g, const char *name, int ndim, const int64_t *dims, float *data) {
    if (ndim < 0 || ndim > IR_MAXDIM || g->n_vals >= (1 << 20))
        return DR_ERANGE;
    if (g->n_vals == g->cap_vals) {
        int cap = g->cap_vals ? g->cap_vals * 2 : 64;
        ir_value *v = realloc(g->vals, (size_t)cap * sizeof(*v));
        if (!v)
            return DR_ENOMEM;
        g->vals = v;
        g->cap_vals = cap;
    }
    char *copy = strdup(name ? name : "");
    if (!copy)
        return DR_ENOMEM;
    ir_value *v = &g->vals[g->n_vals];
    memset(v, 0, sizeof(*v));
    v->name = copy;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v->dims[i] = dims[i];
    v->data = data;
    v->producer = -1;
    if (name_insert(g, g->n_vals)) {
        free(copy);
        return DR_ENOMEM;
    }
    return g->n_vals++;
}

int ir_add_node(ir_graph *g, ir_op op, const char *name, const int *in, int n_in,
                const char *out_name, ir_node **node_out) {
    if (n_in < 0 || n_in > 4096 || g->n_nodes >= (1 << 20))
        return DR_ERANGE;
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
        ir_node *n = realloc(g->nodes, (size_t)cap * sizeof(*n));
        if (!n)
            return DR_ENOMEM;
        g->nodes = n;
        g->cap_nodes = cap;
    }
    int out = ir_add_value(g, out_name, 0, NULL, NULL);
    if (out < 0)
        return out;
    ir_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof(*n));
    n->name = strdup(name ? name : "");
    n->in = malloc(sizeof(int) * (size_t)(n_in > 0 ? n_in : 1));
    if (!n->name || !n->in) {
        free(n->name);
        free(n->in);
        return DR_ENOMEM;
    }
    memcpy(n->in, in, sizeof(int) * (size_t)n_in);
    n->n_in = n_in;
    n->out = out;
    n->op = op;
    n->conv.group = 1;
    n->axis = 1;
    n->flatten = 1;
    g->vals[out].producer = g->n_nodes;
    *node_out = n;
    return g->n_nodes++;
}

float ir_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal */
            float f = ldexpf((float)man, -24);
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* ---- optimisation ---------------------------------------------------------------------- */

static void count_uses(ir_graph *g) {
    for (int i = 0; i < g->n_vals; i++)
        g->vals[i].uses = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        for (int j = 0; j < n->n_in; j++)
            g->vals[n->in[j]].uses++;
    }
    if (g->output >= 0)
        g->vals[g->output].uses++;
}

static const ir_value *const_input(const ir_graph *g, const ir_node *n, int j) {
    if (j >= n->n_in)
        return NULL;
    const ir_value *v = &g->vals[n->in[j]];
    return v->data ? v : NULL;
}

/* Computes BN's per-channel scale and shift. */
static int bn_scale_shift(const ir_graph *g, const ir_node *bn, int64_t *c_out, float **scale,
                          float **shift, dr_err *err) {
    const ir_value *p[4];
    for (int j = 0; j < 4; j++) {
        p[j] = const_input(g, bn, j + 1);
        if (!p[j])
            return dr_err_set(err, DR_EINVAL, "BatchNorm %s: parameter %d is not a constant",
                              bn->name, j + 1);
    }
    int64_t c = ir_numel(p[0]);
    for (int j = 1; j < 4; j++)
        if (ir_numel(p[j]) != c)
            return dr_err_set(err, DR_EINVAL, "BatchNorm %s: parameter sizes differ", bn->name);
    float *sc = malloc(sizeof(float) * (size_t)c), *sh = malloc(sizeof(float) * (size_t)c);
    if (!sc || !sh) {
        free(sc);
        free(sh);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < c; i++) {
        float gamma = bn->fix_gamma ? 1.0f : p[0]->data[i];
        float var = p[3]->data[i];
        if (!(var + bn->eps > 0.0f))
            var = 0.0f;
        sc[i] = gamma / sqrtf(var + bn->eps);
        sh[i] = p[1]->data[i] - p[2]->data[i] * sc[i];
    }
    *c_out = c;
    *scale = sc;
    *shift = sh;
    return 0;
}

static int fold_bn_into_conv(ir_graph *g, ir_node *conv, ir_node *bn, dr_err *err) {
    int64_t c;
    float *sc, *sh;
    int rc = bn_scale_shift(g, bn, &c, &sc, &sh, err);
    if (rc)
        return rc;
    ir_value *w = &g->vals[conv->in[1]];
    if (w->ndim != 4 || w->dims[0] != c) {
        free(sc);
        free(sh);
        return dr_err_set(err, DR_EINVAL, "BatchNorm %s: %lld channels, convolution %s has %lld",
                          bn->name, (long long)c, conv->name, (long long)w->dims[0]);
    }
    /* The weights may be shared by other nodes in theory; give this conv its own copy. */
    int64_t per = ir_numel(w) / c;
    float *nw = malloc(sizeof(float) * (size_t)(per * c));
    float *nb = malloc(sizeof(float) * (size_t)c);
    if (!nw || !nb) {
        free(nw);
        free(nb);
        free(sc);
        free(sh);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    const float *ob = conv->n_in > 2 ? g->vals[conv->in[2]].data : NULL;
    for (int64_t o = 0; o < c; o++) {
        for (int64_t i = 0; i < per; i++)
            nw[o * per + i] = w->data[o * per + i] * sc[o];
        nb[o] = (ob ? ob[o] : 0.0f) * sc[o] + sh[o];
    }
    free(sc);
    free(sh);
    int64_t wd[4] = {w->dims[0], w->dims[1], w->dims[2], w->dims[3]};
    int wi = ir_add_value(g, "folded_weight", 4, wd, nw);
    if (wi < 0) {
        free(nw);
        free(nb);
        return dr_err_set(err, wi, "out of memory");
    }
    int bi = ir_add_value(g, "folded_bias", 1, &c, nb);
    if (bi < 0) {
        free(nb);
        return dr_err_set(err, bi, "out of memory");
    }
    int *in = realloc(conv->in, sizeof(int) * 3);
    if (!in)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    conv->in = in;
    conv->in[1] = wi;
    conv->in[2] = bi;
    conv->n_in = 3;
    conv->out = bn->out;
    g->vals[bn->out].producer = (int)(conv - g->nodes);
    bn->removed = 1;
    return 0;
}

static int bn_to_affine(ir_graph *g, ir_node *bn, dr_err *err) {
    int64_t c;
    float *sc, *sh;
    int rc = bn_scale_shift(g, bn, &c, &sc, &sh, err);
    if (rc)
        return rc;
    int si = ir_add_value(g, "bn_scale", 1, &c, sc);
    if (si < 0) {
        free(sc);
        free(sh);
        return dr_err_set(err, si, "out of memory");
    }
    int hi = ir_add_value(g, "bn_shift", 1, &c, sh);
    if (hi < 0) {
        free(sh);
        return dr_err_set(err, hi, "out of memory");
    }
    bn->op = IR_AFFINE;
    bn->in[1] = si;
    bn->in[2] = hi;
    bn->n_in = 3;
    return 0;
}

static int matmul_to_fc(ir_graph *g, ir_node *n, dr_err *err) {
    const ir_value *b = const_input(g, n, 1);
    if (!b || b->ndim != 2)
        return dr_err_set(err, DR_EUNSUPPORTED,
                          "MatMul %s: only a constant 2-D second input is supported", n->name);
    int64_t k = b->dims[0], m = b->dims[1];
    float *t = malloc(sizeof(float) * (size_t)(k * m));
    if (!t)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < m; j++)
            t[j * k + i] = b->data[i * m + j];
    int64_t d[2] = {m, k};
    int wi = ir_add_value(g, "matmul_weight_t", 2, d, t);
    if (wi < 0) {
        free(t);
        return dr_err_set(err, wi, "out of memory");
    }
    n->op = IR_FC;
    n->in[1] = wi;
    n->n_in = 2;
    n->flatten = 0;
    return 0;
}

/* Ensures conv has a bias input (zeros) so that in[3] can hold a residual. */
static int ensure_bias(ir_graph *g, ir_node *conv) {
    if (conv->n_in >= 3)
        return 0;
    int64_t o = g->vals[conv->in[1]].dims[0];
    float *z = calloc((size_t)o, sizeof(float));
    if (!z)
        return DR_ENOMEM;
    int bi = ir_add_value(g, "zero_bias", 1, &o, z);
    if (bi < 0) {
        free(z);
        return bi;
    }
    int *in = realloc(conv->in, sizeof(int) * 4);
    if (!in)
        return DR_ENOMEM;
    conv->in = in;
    conv->in[2] = bi;
    conv->n_in = 3;
    return 0;
}

/* Add(conv(x), r) -> conv(x) with a fused residual r, when r is computed before the conv. */
static int fuse_residual_adds(ir_graph *g, dr_err *err) {
    if (getenv("DR_INFER_NO_ADD_FUSION"))
        return 0;
    /* shapes at batch 1: only same-shape adds are fused (no broadcasting) */
    int64_t *dims = malloc(sizeof(int64_t) * IR_MAXDIM * (size_t)g->n_vals);
    int *nd = malloc(sizeof(int) * (size_t)g->n_vals);
    int rc = dims && nd ? ir_infer_shapes(g, 1, dims, nd, err) : DR_ENOMEM;
    if (rc) {
        free(dims);
        free(nd);
        return rc == DR_ENOMEM ? dr_err_set(err, rc, "out of memory") : rc;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *add = &g->nodes[i];
        if (add->removed || add->op != IR_ADD || add->n_in != 2 || add->act != IR_ACT_NONE)
            continue;
        for (int j = 0; j < 2; j++) {
            int cv = add->in[j], r = add->in[1 - j];
            int p = g->vals[cv].producer;
            if (p < 0 || cv == r || g->vals[cv].uses != 1 || g->vals[r].data)
                continue;
            ir_node *conv = &g->nodes[p];
            int rp = g->vals[r].producer;
            if (conv->op != IR_CONV || conv->removed || conv->act != IR_ACT_NONE || conv->has_sum ||
                rp >= p || !g->vals[conv->in[1]].data ||
                (conv->n_in > 2 && !g->vals[conv->in[2]].data) || nd[cv] != 4 || nd[r] != 4 ||
                memcmp(DIMS(cv), DIMS(r), sizeof(int64_t) * 4))
                continue;
            int *in4 = NULL;
            if (ensure_bias(g, conv) || !(in4 = realloc(conv->in, sizeof(int) * 4))) {
                free(dims);
                free(nd);
                return dr_err_set(err, DR_ENOMEM, "out of memory");
            }
            conv->in = in4;
            conv->in[3] = r;
            conv->n_in = 4;
            conv->has_sum = 1;
            conv->out = add->out;
            g->vals[add->out].producer = p;
            add->removed = 1;
            break;
        }
    }
    free(dims);
    free(nd);
    return 0;
}

static int fusable_act(ir_act a) {
    return a != IR_ACT_NONE && a != IR_ACT_PRELU;
}

int ir_optimize(ir_graph *g, dr_err *err) {
    int rc;
    for (int i = 0; i < g->n_nodes; i++)
        if (!g->nodes[i].removed && g->nodes[i].op == IR_MATMUL &&
            (rc = matmul_to_fc(g, &g->nodes[i], err)))
            return rc;
    count_uses(g);
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *bn = &g->nodes[i];
        if (bn->removed || bn->op != IR_BN)
            continue;
        int x = bn->in[0];
        int p = g->vals[x].producer;
        ir_node *conv = p >= 0 ? &g->nodes[p] : NULL;
        if (conv && conv->op == IR_CONV && conv->act == IR_ACT_NONE && g->vals[x].uses == 1 &&
            const_input(g, conv, 1) && (conv->n_in < 3 || const_input(g, conv, 2)))
            rc = fold_bn_into_conv(g, conv, bn, err);
        else
            rc = bn_to_affine(g, bn, err);
        if (rc)
            return rc;
    }
    count_uses(g);
    if ((rc = fuse_residual_adds(g, err)))
        return rc;
    count_uses(g);
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *act = &g->nodes[i];
        if (act->removed || act->op != IR_ACT || !fusable_act(act->act))
            continue;
        int x = act->in[0];
        int p = g->vals[x].producer;
        if (p < 0 || g->vals[x].uses != 1 || x == g->output)
            continue;
        ir_node *prod = &g->nodes[p];
        if ((prod->op != IR_CONV && prod->op != IR_AFFINE && prod->op != IR_ADD &&
             prod->op != IR_FC) ||
            prod->act != IR_ACT_NONE)
            continue;
        prod->act = act->act;
        prod->alpha = act->alpha;
        prod->beta = act->beta;
        prod->out = act->out;
        g->vals[act->out].producer = p;
        act->removed = 1;
    }
    count_uses(g);
    return 0;
}

/* ---- shape inference ------------------------------------------------------------------- */

static int64_t prod(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= d[i];
    return p;
}

static int broadcast(const ir_node *n, int64_t *dims, int *ndims, dr_err *err) {
    int nd = 0;
    for (int j = 0; j < n->n_in; j++)
        if (ndims[n->in[j]] > nd)
            nd = ndims[n->in[j]];
    int64_t *o = DIMS(n->out);
    for (int k = 0; k < nd; k++)
        o[k] = 1;
    for (int j = 0; j < n->n_in; j++) {
        int v = n->in[j], off = nd - ndims[v];
        for (int k = 0; k < ndims[v]; k++) {
            int64_t d = DIMS(v)[k];
            if (o[off + k] == 1)
                o[off + k] = d;
            else if (d != 1 && d != o[off + k])
                return dr_err_set(err, DR_EINVAL, "%s: shapes do not broadcast", n->name);
        }
    }
    ndims[n->out] = nd;
    return 0;
}

static int pool_out(int64_t in, int k, int s, int p0, int p1, int ceil_mode, int64_t *out) {
    int64_t span = in + p0 + p1 - k;
    if (span < 0 || s <= 0)
        return -1;
    int64_t o = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
    if (ceil_mode && (o - 1) * s >= in + p0) /* last window must start inside the input */
        o--;
    *out = o;
    return 0;
}

static void same_pad(int64_t in, int k, int s, int d, int lower, int *p0, int *p1) {
    int64_t out = (in + s - 1) / s;
    int64_t total = (out - 1) * s + (int64_t)(k - 1) * d + 1 - in;
    if (total < 0)
        total = 0;
    int64_t small = total / 2;
    *p0 = (int)(lower ? total - small : small);
    *p1 = (int)(total - *p0);
}

static void resolve_same_pad(ir_conv *c, int64_t h, int64_t w, int mode) {
    same_pad(h, c->kh, c->sh, c->dh, mode == 2, &c->pt, &c->pb);
    same_pad(w, c->kw, c->sw, c->dw, mode == 2, &c->pl, &c->pr);
}

/*
 * Shape inference, one function per operator (shape_of below): each reads its inputs' dims and
 * writes the output's dims and rank. SAME padding and SliceChannel parts are resolved in the
 * node the first time (the same for every batch size).
 */
typedef int (*shape_fn)(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err);

#define SHAPE_VARS                                                                                 \
    const int64_t *x = DIMS(n->in[0]);                                                             \
    int xn = ndims[n->in[0]];                                                                      \
    int64_t *o = DIMS(n->out);                                                                     \
    int *on = &ndims[n->out];                                                                      \
    (void)batch

/* The output has the input's shape. */
static int shape_same(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    (void)err;
    memcpy(o, x, sizeof(int64_t) * IR_MAXDIM);
    *on = xn;
    return 0;
}

static int shape_conv(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    const int64_t *w = DIMS(n->in[1]);
    ir_conv *c = &n->conv;
    if (xn == 4 && n->auto_pad)
        resolve_same_pad(c, x[2], x[3], n->auto_pad);
    n->auto_pad = 0;
    if (xn != 4 || ndims[n->in[1]] != 4)
        return dr_err_set(err, DR_EINVAL, "Convolution %s: needs 4-D input and weights", n->name);
    if (c->group <= 0 || w[0] % c->group || x[1] != w[1] * c->group || w[2] != c->kh ||
        w[3] != c->kw)
        return dr_err_set(err, DR_EINVAL,
                          "Convolution %s: weights [%lld,%lld,%lld,%lld] do not match input "
                          "channels %lld, group %d, kernel %dx%d",
                          n->name, (long long)w[0], (long long)w[1], (long long)w[2],
                          (long long)w[3], (long long)x[1], c->group, c->kh, c->kw);
    if (n->n_in > 2 && (ndims[n->in[2]] < 1 || prod(DIMS(n->in[2]), 0, ndims[n->in[2]]) != w[0]))
        return dr_err_set(err, DR_EINVAL, "Convolution %s: bias size mismatch", n->name);
    int64_t oh = (x[2] + c->pt + c->pb - (int64_t)c->dh * (c->kh - 1) - 1);
    int64_t ow = (x[3] + c->pl + c->pr - (int64_t)c->dw * (c->kw - 1) - 1);
    if (oh < 0 || ow < 0 || c->sh <= 0 || c->sw <= 0)
        return dr_err_set(err, DR_EINVAL, "Convolution %s: kernel larger than input", n->name);
    o[0] = x[0];
    o[1] = w[0];
    o[2] = oh / c->sh + 1;
    o[3] = ow / c->sw + 1;
    *on = 4;
    if (n->has_sum) {
        const int64_t *r = DIMS(n->in[3]);
        if (ndims[n->in[3]] != 4 || r[0] != o[0] || r[1] != o[1] || r[2] != o[2] || r[3] != o[3])
            return dr_err_set(err, DR_EINVAL, "Add after %s: shapes differ", n->name);
    }
    return 0;
}

/* BatchNorm and its per-channel affine form: one parameter per channel. */
static int shape_channelwise(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    (void)o, (void)on;
    if (xn < 2 || prod(DIMS(n->in[1]), 0, ndims[n->in[1]]) != x[1])
        return dr_err_set(err, DR_EINVAL, "BatchNorm %s: channel count mismatch", n->name);
    return shape_same(n, batch, dims, ndims, err);
}

static int shape_act(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    (void)o, (void)on;
    if (n->act == IR_ACT_PRELU) {
        int64_t s = prod(DIMS(n->in[1]), 0, ndims[n->in[1]]);
        if (xn < 2 || (s != 1 && s != x[1]))
            return dr_err_set(err, DR_EINVAL, "PRelu %s: slope size mismatch", n->name);
    }
    return shape_same(n, batch, dims, ndims, err);
}

static int shape_pool(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    const ir_pool *p = &n->pool;
    if (xn != 4)
        return dr_err_set(err, DR_EINVAL, "Pooling %s: needs 4-D input", n->name);
    o[0] = x[0];
    o[1] = x[1];
    if (p->global) {
        o[2] = o[3] = 1;
    } else if (pool_out(x[2], p->kh, p->sh, p->pt, p->pb, p->ceil_mode, &o[2]) ||
               pool_out(x[3], p->kw, p->sw, p->pl, p->pr, p->ceil_mode, &o[3])) {
        return dr_err_set(err, DR_EINVAL, "Pooling %s: window larger than input", n->name);
    }
    *on = 4;
    return 0;
}

static int shape_fc(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    const int64_t *w = DIMS(n->in[1]);
    int64_t k = n->flatten ? prod(x, 1, xn) : x[xn - 1];
    if (ndims[n->in[1]] != 2 || w[1] != k)
        return dr_err_set(err, DR_EINVAL,
                          "FullyConnected %s: weights [%lld,%lld] do not match %lld inputs",
                          n->name, (long long)w[0], (long long)w[1], (long long)k);
    if (n->n_in > 2 && prod(DIMS(n->in[2]), 0, ndims[n->in[2]]) != w[0])
        return dr_err_set(err, DR_EINVAL, "FullyConnected %s: bias size mismatch", n->name);
    if (n->flatten) {
        o[0] = x[0];
        o[1] = w[0];
        *on = 2;
    } else {
        memcpy(o, x, sizeof(int64_t) * IR_MAXDIM);
        o[xn - 1] = w[0];
        *on = xn;
    }
    return 0;
}

static int shape_flatten(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    int axis = n->axis < 0 ? n->axis + xn : n->axis;
    if (axis < 0 || axis > xn)
        return dr_err_set(err, DR_EINVAL, "Flatten %s: bad axis", n->name);
    o[0] = prod(x, 0, axis);
    o[1] = prod(x, axis, xn);
    *on = 2;
    return 0;
}

static int shape_reshape(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    int64_t total = prod(x, 0, xn), known = 1;
    int neg = -1;
    for (int i = 0; i < n->shape_n; i++) {
        int64_t d = n->shape[i];
        if (d == 0 && i < xn)
            d = x[i];
        else if (d == 0 || d < -1)
            return dr_err_set(err, DR_EUNSUPPORTED, "Reshape %s: special value %lld", n->name,
                              (long long)d);
        if (d == -1) {
            if (neg >= 0)
                return dr_err_set(err, DR_EINVAL, "Reshape %s: two -1", n->name);
            neg = i;
        } else {
            known *= d;
        }
        o[i] = d;
    }
    /* A literal batch of 1 follows the run's batch. */
    if (neg != 0 && n->shape_n > 0 && o[0] == 1 && batch > 1 && x[0] == batch) {
        o[0] = batch;
        known *= batch;
    }
    if (neg >= 0) {
        if (known <= 0 || total % known)
            return dr_err_set(err, DR_EINVAL, "Reshape %s: sizes do not divide", n->name);
        o[neg] = total / known;
        known *= o[neg];
    }
    if (known != total)
        return dr_err_set(err, DR_EINVAL, "Reshape %s: %lld elements into %lld", n->name,
                          (long long)total, (long long)known);
    *on = n->shape_n;
    return 0;
}

static int shape_broadcast(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    (void)batch;
    return broadcast(n, dims, ndims, err);
}

static int shape_slice(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    int axis = n->axis < 0 ? n->axis + xn : n->axis;
    if (axis < 0 || axis >= xn)
        return dr_err_set(err, DR_EINVAL, "Slice %s: bad axis", n->name);
    if (axis == 0) /* slices are resolved once, for every batch size */
        return dr_err_set(err, DR_EUNSUPPORTED, "Slice %s of the batch axis", n->name);
    if (n->shape[1] < 0) { /* SliceChannel: part shape[0] of shape[2] equal parts */
        if (n->shape[2] < 1 || x[axis] % n->shape[2])
            return dr_err_set(err, DR_EINVAL, "SliceChannel %s: %lld not divisible by %lld",
                              n->name, (long long)x[axis], (long long)n->shape[2]);
        int64_t part = x[axis] / n->shape[2];
        n->shape[1] = (n->shape[0] + 1) * part;
        n->shape[0] *= part;
    }
    if (n->shape[1] > x[axis] || n->shape[0] < 0 || n->shape[0] >= n->shape[1])
        return dr_err_set(err, DR_EINVAL, "Slice %s: [%lld, %lld) of %lld", n->name,
                          (long long)n->shape[0], (long long)n->shape[1], (long long)x[axis]);
    memcpy(o, x, sizeof(int64_t) * IR_MAXDIM);
    o[axis] = n->shape[1] - n->shape[0];
    *on = xn;
    return 0;
}

static int shape_concat(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    int axis = n->axis < 0 ? n->axis + xn : n->axis;
    if (axis < 0 || axis >= xn)
        return dr_err_set(err, DR_EINVAL, "Concat %s: bad axis", n->name);
    memcpy(o, x, sizeof(int64_t) * IR_MAXDIM);
    for (int j = 1; j < n->n_in; j++) {
        const int64_t *y = DIMS(n->in[j]);
        if (ndims[n->in[j]] != xn)
            return dr_err_set(err, DR_EINVAL, "Concat %s: ranks differ", n->name);
        for (int k = 0; k < xn; k++)
            if (k != axis && y[k] != x[k])
                return dr_err_set(err, DR_EINVAL, "Concat %s: shapes differ", n->name);
        o[axis] += y[axis];
    }
    *on = xn;
    return 0;
}

static int shape_softmax(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    SHAPE_VARS;
    (void)o, (void)on, (void)x;
    if (xn < 1)
        return dr_err_set(err, DR_EINVAL, "Softmax %s: scalar input", n->name);
    if (!n->flatten && xn != 2 && xn != 4)
        return dr_err_set(err, DR_EUNSUPPORTED, "Softmax %s over channels of a rank-%d tensor",
                          n->name, xn);
    return shape_same(n, batch, dims, ndims, err);
}

static int shape_matmul(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    (void)batch, (void)dims, (void)ndims;
    return dr_err_set(err, DR_EUNSUPPORTED, "MatMul %s not converted", n->name);
}

static const shape_fn shape_of[IR_NUM_OPS] = {
    [IR_CONV] = shape_conv,     [IR_BN] = shape_channelwise,  [IR_AFFINE] = shape_channelwise,
    [IR_ACT] = shape_act,       [IR_POOL] = shape_pool,       [IR_FC] = shape_fc,
    [IR_MATMUL] = shape_matmul, [IR_FLATTEN] = shape_flatten, [IR_RESHAPE] = shape_reshape,
    [IR_ADD] = shape_broadcast, [IR_MUL] = shape_broadcast,   [IR_CONCAT] = shape_concat,
    [IR_IDENTITY] = shape_same, [IR_SOFTMAX] = shape_softmax, [IR_SCALAR] = shape_same,
    [IR_SLICE] = shape_slice,
};

static int infer_node(ir_node *n, int batch, int64_t *dims, int *ndims, dr_err *err) {
    if ((unsigned)n->op >= IR_NUM_OPS || !shape_of[n->op])
        return dr_err_set(err, DR_EINVAL, "internal: node %s has operator %d", n->name, n->op);
    return shape_of[n->op](n, batch, dims, ndims, err);
}

int ir_infer_shapes(ir_graph *g, int batch, int64_t *dims, int *ndims, dr_err *err) {
    for (int v = 0; v < g->n_vals; v++) {
        ndims[v] = g->vals[v].data ? g->vals[v].ndim : -1;
        memcpy(DIMS(v), g->vals[v].dims, sizeof(int64_t) * IR_MAXDIM);
    }
    ndims[g->input] = 4;
    DIMS(g->input)[0] = batch;
    for (int k = 1; k < 4; k++)
        DIMS(g->input)[k] = g->in_dims[k];
    for (int i = 0; i < g->n_nodes; i++) {
        ir_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        for (int j = 0; j < n->n_in; j++)
            if (ndims[n->in[j]] < 0)
                return dr_err_set(err, DR_EINVAL, "node %s: input %s has no value (order?)",
                                  n->name, g->vals[n->in[j]].name);
        int rc = infer_node(n, batch, dims, ndims, err);
        if (rc)
            return rc;
        int64_t total = 1, limit = IR_MAX_ELEMS * (batch > 0 ? batch : 1);
        for (int k = 0; k < ndims[n->out]; k++) {
            int64_t d = DIMS(n->out)[k];
            if (d <= 0)
                return dr_err_set(err, DR_EINVAL, "node %s: empty output", n->name);
            if (d > limit / total)
                return dr_err_set(err, DR_ETOOBIG, "node %s: output over %lld elements", n->name,
                                  (long long)limit);
            total *= d;
        }
    }
    if (ndims[g->output] < 0)
        return dr_err_set(err, DR_EINVAL, "graph output is never computed");
    return 0;
}
