/*
 * Execution engine: memory planning, reference kernels (im2col + OpenBLAS SGEMM convolution,
 * pooling, fully connected, element-wise ops) and the oneDNN 2.x convolution fast path.
 *
 * Physical layouts: a rank-4 activation is stored NHWC; everything else (rank != 4, and all
 * constants) row-major in its logical shape. Each context plans its arena once: values are
 * placed in blocks reused after their last reader (best fit); no-op nodes alias their input.
 * Threads: kernels use OpenMP with the model's thread count; oneDNN (OpenMP runtime) follows
 * omp_set_num_threads of the calling thread; OpenBLAS's count is process-wide.
 */
#include "infer/exec.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "derecho/infer.h"
#include "derecho/log.h"

#ifdef DR_HAVE_DNNL
#include <dnnl.h>
#endif

void openblas_set_num_threads(int num_threads);

#define NO_OFFSET       ((size_t)-1)
#define MAX_ARENA_BYTES ((size_t)2 << 30)

/* 64-byte aligned allocation of at least `bytes` (aligned_alloc needs a multiple). */
static void *alloc64(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
}

typedef struct dconv dconv;

struct exec_ctx {
    int batch, backend, in_use;
    int threads;   /* oneDNN fixes a primitive's thread count when it is created: contexts are
                      per (batch, backend, threads), or 2 threads would run 1-thread kernels */
    int bf16;      /* oneDNN convolutions compute in bfloat16 (activations stay f32) */
    int64_t *dims; /* IR_MAXDIM per value */
    int *ndims;
    size_t *off; /* float offset in arena per value, NO_OFFSET for constants */
    float *arena;
    size_t arena_floats;
    float *scratch; /* im2col / layout conversion */
    size_t scratch_floats;
    void *src16;         /* bf16 copy of a convolution's input (bf16 contexts) */
    dconv **dc;          /* per node */
    unsigned char *nthr; /* per node: threads it runs with (1 for small operators) */
#ifdef DR_HAVE_DNNL
    dnnl_stream_t stream;
#endif
    exec_ctx *next;
};

#define DIMS(c, v) ((c)->dims + (size_t)(v)*IR_MAXDIM)

static int64_t prod(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= d[i];
    return p;
}

/* Whether value v's NHWC storage differs from its logical row-major order. */
static int nhwc_differs(const exec_ctx *c, const ir_graph *g, int v) {
    const int64_t *d = DIMS(c, v);
    return !g->vals[v].data && c->ndims[v] == 4 && d[1] > 1 && d[2] * d[3] > 1;
}

static int is_nhwc(const exec_ctx *c, const ir_graph *g, int v) {
    return !g->vals[v].data && c->ndims[v] == 4;
}

static float *ptr(const exec_ctx *c, const ir_graph *g, int v) {
    return g->vals[v].data ? g->vals[v].data : c->arena + c->off[v];
}

/* ---- oneDNN ---------------------------------------------------------------------------- */

#ifdef DR_HAVE_DNNL
struct dconv {
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bias, dst, scratch;
    void *wei_buf;
    /* bf16: the f32 input in the arena (src32) is converted into the context's src16 buffer
     * (src) by src_reorder before the convolution */
    dnnl_primitive_t src_reorder;
    dnnl_memory_t src32;
};

struct wcache {
    dnnl_memory_desc_t md;
    void *buf;
    wcache *next;
};

static dnnl_engine_t g_engine;
static pthread_once_t g_engine_once = PTHREAD_ONCE_INIT;
static void engine_init(void) {
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success)
        g_engine = NULL;
}

int exec_have_dnnl(void) {
    pthread_once(&g_engine_once, engine_init);
    return g_engine != NULL;
}

static void dconv_free(dconv *d) {
    if (!d)
        return;
    if (d->prim)
        dnnl_primitive_destroy(d->prim);
    if (d->src_reorder)
        dnnl_primitive_destroy(d->src_reorder);
    dnnl_memory_t m[6] = {d->src, d->wei, d->bias, d->dst, d->scratch, d->src32};
    for (int i = 0; i < 6; i++)
        if (m[i])
            dnnl_memory_destroy(m[i]);
    free(d->wei_buf);
    free(d);
}

static int act_alg(ir_act a, float alpha, float beta, dnnl_alg_kind_t *alg, float *da, float *db) {
    *da = 0;
    *db = 0;
    switch (a) {
    case IR_ACT_RELU:
        *alg = dnnl_eltwise_relu;
        return 1;
    case IR_ACT_LEAKY:
        *alg = dnnl_eltwise_relu;
        *da = alpha;
        return 1;
    case IR_ACT_SIGMOID:
        *alg = dnnl_eltwise_logistic;
        return 1;
    case IR_ACT_TANH:
        *alg = dnnl_eltwise_tanh;
        return 1;
    case IR_ACT_SOFTRELU:
        *alg = dnnl_eltwise_soft_relu;
        return 1;
    case IR_ACT_CLIP:
        *alg = dnnl_eltwise_clip;
        *da = alpha;
        *db = beta;
        return 1;
    default:
        return 0;
    }
}

#define DN(call)                                                                                   \
    do {                                                                                           \
        if ((call) != dnnl_success) {                                                              \
            rc = dr_err_set(err, DR_EUNSUPPORTED, "oneDNN: %s failed for %s", #call, n->name);     \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/*
 * The weights of convolution node_idx in the layout `want`: from the model's cache when some
 * context already reordered them so, else reordered here from the f32 OIHW (or GOIHW) constant
 * (wmd) and handed to the cache.
 */
static int dconv_weights(exec_model *em, int node_idx, exec_ctx *c, dconv *d,
                         const dnnl_memory_desc_t *want, const dnnl_memory_desc_t *wmd,
                         dr_err *err) {
    int rc = 0;
    const ir_node *n = &em->g->nodes[node_idx];
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t user_w = NULL;
    pthread_mutex_lock(&em->mu);
    wcache *wc = em->wcache[node_idx];
    while (wc && !dnnl_memory_desc_equal(&wc->md, want))
        wc = wc->next;
    pthread_mutex_unlock(&em->mu);
    if (wc) {
        DN(dnnl_memory_create(&d->wei, want, g_engine, wc->buf));
        return 0;
    }
    d->wei_buf = alloc64(dnnl_memory_desc_get_size(want));
    if (!d->wei_buf)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    DN(dnnl_memory_create(&d->wei, want, g_engine, d->wei_buf));
    DN(dnnl_memory_create(&user_w, wmd, g_engine, em->g->vals[n->in[1]].data));
    DN(dnnl_reorder_primitive_desc_create(&rpd, wmd, g_engine, want, g_engine, NULL));
    DN(dnnl_primitive_create(&reorder, rpd));
    dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, user_w}, {DNNL_ARG_TO, d->wei}};
    DN(dnnl_primitive_execute(reorder, c->stream, 2, rargs));
    DN(dnnl_stream_wait(c->stream));
    wcache *nw = malloc(sizeof(*nw));
    if (nw) { /* hand the buffer to the model's cache (else this context keeps it) */
        nw->md = *want;
        nw->buf = d->wei_buf;
        d->wei_buf = NULL;
        pthread_mutex_lock(&em->mu);
        nw->next = em->wcache[node_idx];
        em->wcache[node_idx] = nw;
        pthread_mutex_unlock(&em->mu);
    }
out:
    if (reorder)
        dnnl_primitive_destroy(reorder);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (user_w)
        dnnl_memory_destroy(user_w);
    return rc;
}

/* bf16 input of a convolution: the f32 arena tensor (src32) and its reorder into the
 * context's src16 buffer (set before each run). */
static int dconv_src16(const ir_node *n, float *src, dconv *d, const dnnl_memory_desc_t *smd,
                       const dnnl_memory_desc_t *smd16, dr_err *err) {
    int rc = 0;
    dnnl_primitive_desc_t rpd = NULL;
    DN(dnnl_memory_create(&d->src32, smd, g_engine, src));
    DN(dnnl_memory_create(&d->src, smd16, g_engine, DNNL_MEMORY_NONE));
    DN(dnnl_reorder_primitive_desc_create(&rpd, smd, g_engine, smd16, g_engine, NULL));
    DN(dnnl_primitive_create(&d->src_reorder, rpd));
out:
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    return rc;
}

/* The attributes of node n's convolution: user scratchpad, the fused sum and activation
 * post-ops. The caller destroys *attr and *po (set even on failure, or NULL). */
static int dconv_attr(const ir_node *n, dnnl_primitive_attr_t *attr, dnnl_post_ops_t *po,
                      dr_err *err) {
    int rc = 0;
    DN(dnnl_primitive_attr_create(attr));
    DN(dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user));
    dnnl_alg_kind_t alg;
    float da, db;
    int has_act = act_alg(n->act, n->alpha, n->beta, &alg, &da, &db);
    if (has_act || n->has_sum) {
        DN(dnnl_post_ops_create(po));
        if (n->has_sum) /* dst = conv(src) + dst, where dst holds the residual */
            DN(dnnl_post_ops_append_sum(*po, 1.0f));
        if (has_act)
            DN(dnnl_post_ops_append_eltwise(*po, 1.0f, alg, da, db));
        DN(dnnl_primitive_attr_set_post_ops(*attr, *po));
    }
out:
    return rc;
}

/*
 * Builds the oneDNN convolution of node n in context c; scratchpad size goes to *scratch.
 * bf16: bfloat16 input and weights, f32 bias and output (the input is converted before each
 * run; *src16_bytes is the size of that copy); fails where oneDNN has no such kernel.
 */
static int dconv_build(exec_model *em, int node_idx, exec_ctx *c, int bf16, dconv **out,
                       size_t *scratch_bytes, size_t *src16_bytes, dr_err *err) {
    int rc = 0;
    const ir_graph *g = em->g;
    const ir_node *n = &g->nodes[node_idx];
    dconv *d = calloc(1, sizeof(*d));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if (!d)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    const int64_t *x = DIMS(c, n->in[0]), *y = DIMS(c, n->out);
    const ir_value *w = &g->vals[n->in[1]];
    const ir_conv *cv = &n->conv;
    int grp = cv->group;
    dnnl_dims_t sd = {x[0], x[1], x[2], x[3]}, dd = {y[0], y[1], y[2], y[3]};
    dnnl_dims_t wd = {grp, w->dims[0] / grp, w->dims[1], w->dims[2], w->dims[3]};
    dnnl_dims_t wd4 = {w->dims[0], w->dims[1], w->dims[2], w->dims[3]};
    dnnl_dims_t bd = {w->dims[0]};
    dnnl_dims_t strides = {cv->sh, cv->sw}, dil = {cv->dh - 1, cv->dw - 1};
    dnnl_dims_t pl = {cv->pt, cv->pl}, pr = {cv->pb, cv->pr};
    dnnl_memory_desc_t smd, smd16, dmd, wmd, wany, bmd;
    dnnl_convolution_desc_t cd;
    dnnl_data_type_t cdt = bf16 ? dnnl_bf16 : dnnl_f32;
    DN(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_nhwc));
    DN(dnnl_memory_desc_init_by_tag(&smd16, 4, sd, dnnl_bf16, dnnl_nhwc));
    DN(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dnnl_nhwc));
    if (grp > 1) {
        DN(dnnl_memory_desc_init_by_tag(&wmd, 5, wd, dnnl_f32, dnnl_goihw));
        DN(dnnl_memory_desc_init_by_tag(&wany, 5, wd, cdt, dnnl_format_tag_any));
    } else {
        DN(dnnl_memory_desc_init_by_tag(&wmd, 4, wd4, dnnl_f32, dnnl_oihw));
        DN(dnnl_memory_desc_init_by_tag(&wany, 4, wd4, cdt, dnnl_format_tag_any));
    }
    DN(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
    DN(dnnl_dilated_convolution_forward_desc_init(
        &cd, dnnl_forward_inference, dnnl_convolution_direct, bf16 ? &smd16 : &smd, &wany,
        n->n_in > 2 ? &bmd : NULL, &dmd, strides, dil, pl, pr));
    if ((rc = dconv_attr(n, &attr, &po, err)))
        goto out;
    DN(dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, NULL));
    DN(dnnl_primitive_create(&d->prim, pd));
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *scratch_bytes = spmd ? dnnl_memory_desc_get_size(spmd) : 0;
    if ((rc = dconv_weights(em, node_idx, c, d, want, &wmd, err)))
        goto out;
    if (bf16) {
        *src16_bytes = dnnl_memory_desc_get_size(&smd16);
        if ((rc = dconv_src16(n, ptr(c, g, n->in[0]), d, &smd, &smd16, err)))
            goto out;
    } else {
        DN(dnnl_memory_create(&d->src, &smd, g_engine, ptr(c, g, n->in[0])));
    }
    DN(dnnl_memory_create(&d->dst, &dmd, g_engine, ptr(c, g, n->out)));
    if (n->n_in > 2)
        DN(dnnl_memory_create(&d->bias, &bmd, g_engine, g->vals[n->in[2]].data));
    if (spmd && *scratch_bytes)
        DN(dnnl_memory_create(&d->scratch, spmd, g_engine, DNNL_MEMORY_NONE));
out:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (rc) {
        dconv_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

static int dconv_run(exec_ctx *c, dconv *d) {
    dnnl_exec_arg_t args[5];
    int na = 0;
    if (d->src_reorder) {
        dnnl_memory_set_data_handle(d->src, c->src16);
        dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, d->src32}, {DNNL_ARG_TO, d->src}};
        if (dnnl_primitive_execute(d->src_reorder, c->stream, 2, rargs) != dnnl_success)
            return DR_EINVAL;
    }
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, d->src};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, d->wei};
    args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, d->dst};
    if (d->bias)
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, d->bias};
    if (d->scratch) {
        dnnl_memory_set_data_handle(d->scratch, c->scratch);
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, d->scratch};
    }
    if (dnnl_primitive_execute(d->prim, c->stream, na, args) != dnnl_success)
        return DR_EINVAL;
    return dnnl_stream_wait(c->stream) == dnnl_success ? 0 : DR_EINVAL;
}
#else
struct dconv {
    int unused;
};
struct wcache {
    void *buf;
    wcache *next;
};
int exec_have_dnnl(void) {
    return 0;
}
static void dconv_free(dconv *d) {
    free(d);
}
#endif

/* ---- planning -------------------------------------------------------------------------- */

static int is_alias(const exec_ctx *c, const ir_graph *g, const ir_node *n) {
    if (g->vals[n->in[0]].data)
        return 0; /* a constant input is copied into the arena */
    if (n->op == IR_IDENTITY)
        return 1;
    if (n->op == IR_FLATTEN || n->op == IR_RESHAPE)
        return !nhwc_differs(c, g, n->in[0]) && !nhwc_differs(c, g, n->out);
    return 0;
}

typedef struct block {
    size_t off, size;
    int free;
} block;

/*
 * Alias classes (root: a no-op node's output shares its input's storage) and the last reader
 * of each class (last, by node index). Pass 0 without residual aliasing; pass 1: a fused conv
 * that is the last reader of its residual's class writes in place over it (dst = conv + dst),
 * and the class then lives until the last reader of the conv's output.
 */
static int plan_classes(const exec_ctx *c, const ir_graph *g, int *root, int *last, dr_err *err) {
    int *last0 = malloc(sizeof(int) * (size_t)g->n_vals);
    int *mlast = malloc(sizeof(int) * (size_t)g->n_vals);
    if (!last0 || !mlast) {
        free(last0);
        free(mlast);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    for (int v = 0; v < g->n_vals; v++)
        last[v] = -1;
    for (int pass = 0; pass < 2; pass++) {
        for (int v = 0; v < g->n_vals; v++) {
            if (pass == 1) {
                last0[v] = last[v]; /* pass-0 roots are pass-1 roots until merged */
                mlast[v] = last[v];
            }
            root[v] = v;
            last[v] = -1;
        }
        for (int i = 0; i < g->n_nodes; i++) {
            const ir_node *n = &g->nodes[i];
            if (n->removed)
                continue;
            if (is_alias(c, g, n))
                root[n->out] = root[n->in[0]];
            for (int j = 0; j < n->n_in; j++)
                last[root[n->in[j]]] = i;
            if (pass == 1 && n->op == IR_CONV && n->has_sum) {
                int r = root[n->in[3]];
                if (mlast[r] == i && r != root[g->input] && r != root[g->output] &&
                    !g->vals[r].data) {
                    root[n->out] = r;
                    if (last0[n->out] > mlast[r])
                        mlast[r] = last0[n->out];
                }
            }
        }
    }
    free(last0);
    free(mlast);
    last[root[g->output]] = g->n_nodes;
    last[root[g->input]] = last[root[g->input]] < 0 ? 0 : last[root[g->input]];
    return 0;
}

/* Places each class in a block of the arena (best fit among blocks freed after their class's
 * last reader; the input first); returns the arena size in floats. */
static size_t plan_place(exec_ctx *c, const ir_graph *g, const int *root, const int *last, int *blk,
                         block *b) {
    int nb = 0;
    size_t total = 0;
    for (int step = -1; step < g->n_nodes; step++) {
        const ir_node *n = step < 0 ? NULL : &g->nodes[step];
        if (n && n->removed)
            continue;
        int v = n ? n->out : g->input;
        if (!n || root[n->out] == n->out) {
            size_t need = ((size_t)prod(DIMS(c, v), 0, c->ndims[v]) + 15) / 16 * 16;
            int best = -1;
            for (int k = 0; k < nb; k++)
                if (b[k].free && b[k].size >= need && (best < 0 || b[k].size < b[best].size))
                    best = k;
            if (best < 0) { /* a new block at the end */
                best = nb++;
                b[best].off = total;
                b[best].size = need;
                total += need;
            }
            b[best].free = 0;
            blk[v] = best;
            c->off[v] = b[best].off;
        }
        for (int j = 0; n && j < n->n_in; j++) {
            int r = root[n->in[j]];
            if (last[r] == step && blk[r] >= 0)
                b[blk[r]].free = 1;
        }
    }
    return total;
}

/* The memory plan of context c: an arena offset for every activation (c->off). */
static int plan(exec_ctx *c, const ir_graph *g, dr_err *err) {
    int rc = 0;
    int *root = malloc(sizeof(int) * (size_t)g->n_vals);
    int *last = malloc(sizeof(int) * (size_t)g->n_vals);
    int *blk = malloc(sizeof(int) * (size_t)g->n_vals);
    block *b = malloc(sizeof(block) * (size_t)(g->n_nodes + 2));
    if (!root || !last || !blk || !b) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto out;
    }
    for (int v = 0; v < g->n_vals; v++) {
        blk[v] = -1;
        c->off[v] = NO_OFFSET;
    }
    if ((rc = plan_classes(c, g, root, last, err)))
        goto out;
    c->arena_floats = plan_place(c, g, root, last, blk, b);
    for (int v = 0; v < g->n_vals; v++)
        if (!g->vals[v].data && c->ndims[v] >= 0 && root[v] != v)
            c->off[v] = c->off[root[v]];
out:
    free(root);
    free(last);
    free(blk);
    free(b);
    return rc;
}

static size_t scratch_need(const exec_ctx *c, const ir_graph *g, const ir_node *n) {
    switch (n->op) {
    case IR_CONV: {
        const int64_t *x = DIMS(c, n->in[0]), *y = DIMS(c, n->out);
        const ir_conv *cv = &n->conv;
        int one = cv->kh == 1 && cv->kw == 1 && cv->sh == 1 && cv->sw == 1 && !cv->pt && !cv->pl &&
                  !cv->pb && !cv->pr;
        size_t k = (size_t)cv->kh * (size_t)cv->kw * (size_t)(x[1] / cv->group), need;
        if (__builtin_mul_overflow((size_t)(y[2] * y[3]), k, &need))
            return SIZE_MAX;
        return one ? 0 : need;
    }
    case IR_FC:
    case IR_FLATTEN:
    case IR_RESHAPE:
    case IR_SOFTMAX:
        return (size_t)prod(DIMS(c, n->in[0]), 0, c->ndims[n->in[0]]);
    default:
        (void)g;
        return 0;
    }
}

static void ctx_free(exec_ctx *c, const ir_graph *g) {
    if (!c)
        return;
    if (c->dc) {
        for (int i = 0; i < g->n_nodes; i++)
            dconv_free(c->dc[i]);
        free(c->dc);
    }
    free(c->nthr);
#ifdef DR_HAVE_DNNL
    if (c->stream)
        dnnl_stream_destroy(c->stream);
#endif
    free(c->dims);
    free(c->ndims);
    free(c->off);
    free(c->arena);
    free(c->scratch);
    free(c->src16);
    free(c);
}

/*
 * ThreadSanitizer cannot see libgomp's barriers (libgomp is not instrumented), so every OpenMP
 * region looks like a race to it. The TSan build (DR_INFER_SERIAL_KERNELS) runs kernels and
 * oneDNN on the calling thread; the engine's own threading (context pool, batch split) is
 * still checked.
 */
static int kernel_threads(int threads) {
#ifdef DR_INFER_SERIAL_KERNELS
    (void)threads;
    return 1;
#else
    return threads;
#endif
}

/*
 * Work below which an operator runs on the calling thread alone, in FLOP-equivalents (about
 * 75 us of one core). With passive OpenMP waiting every parallel region wakes the sleeping
 * worker (a futex wake and a reschedule, tens of microseconds, more on a loaded machine): for
 * SqueezeNet's 1x1 convolutions (~6 MFLOP, ~35 us) that costs more than half the work saves.
 * DR_INFER_SERIAL_WORK overrides it (0: every operator uses all threads, the old behaviour).
 */
#define SERIAL_WORK_DEFAULT 15e6
/* A conv/FC FLOP is ~25x cheaper than one output element of the memory-bound kernels. */
#define ELEMENT_WORK 25.0

static double serial_work_limit(void) {
    const char *e = getenv("DR_INFER_SERIAL_WORK");
    char *end;
    double v = e ? strtod(e, &end) : SERIAL_WORK_DEFAULT;
    return e && (end == e || !(v >= 0)) ? SERIAL_WORK_DEFAULT : v;
}

/* Estimated work of node n in context c (its whole batch), in FLOP-equivalents. */
static double node_work(const exec_ctx *c, const ir_graph *g, const ir_node *n) {
    double out_n = (double)prod(DIMS(c, n->out), 0, c->ndims[n->out]);
    if (n->op == IR_CONV || n->op == IR_FC) {
        const ir_value *w = &g->vals[n->in[1]];
        return 2.0 * out_n * (double)(ir_numel(w) / (w->dims[0] ? w->dims[0] : 1));
    }
    if (n->op == IR_POOL)
        return ELEMENT_WORK * (n->pool.global ? (double)prod(DIMS(c, n->in[0]), 0, 4)
                                              : out_n * n->pool.kh * n->pool.kw);
    return ELEMENT_WORK * out_n * (n->n_in > 1 ? n->n_in : 1);
}

/* Sets c->nthr: `threads` for each node, 1 for those whose work is under the serial limit. */
static int ctx_node_threads(exec_ctx *c, const ir_graph *g, int threads, dr_err *err) {
    c->nthr = malloc((size_t)g->n_nodes);
    if (!c->nthr)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    double limit = serial_work_limit();
    int serial = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        int small = threads > 1 && !n->removed && node_work(c, g, n) < limit;
        c->nthr[i] = (unsigned char)(small ? 1 : threads);
        serial += small;
    }
    if (threads > 1)
        DR_DEBUG(DR_LOGM_INFER, "context batch %d: %d small operators on one thread", c->batch,
                 serial);
    return 0;
}

/* Checks what the kernels cannot run and returns the largest scratch a node needs. */
static int ctx_check_nodes(const exec_ctx *c, const ir_graph *g, size_t *scratch, dr_err *err) {
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        size_t s = scratch_need(c, g, n);
        if (s > *scratch)
            *scratch = s;
        int const4 = g->vals[n->in[0]].data && g->vals[n->in[0]].ndim == 4;
        for (int j = 1; n->op == IR_CONCAT && j < n->n_in; j++)
            if (g->vals[n->in[j]].data && g->vals[n->in[j]].ndim == 4)
                const4 = 1;
        if (const4 && n->op != IR_ADD && n->op != IR_MUL && n->op != IR_IDENTITY &&
            n->op != IR_FLATTEN && n->op != IR_RESHAPE)
            return dr_err_set(err, DR_EUNSUPPORTED, "node %s: operator on a constant 4-D tensor",
                              n->name);
        if (n->op == IR_SOFTMAX && nhwc_differs(c, g, n->in[0]) &&
            !(n->flatten == 0 && n->axis == 1))
            return dr_err_set(err, DR_EUNSUPPORTED, "Softmax %s over a spatial tensor", n->name);
        if (n->op == IR_FC && !n->flatten && nhwc_differs(c, g, n->in[0]))
            return dr_err_set(err, DR_EUNSUPPORTED, "MatMul/FC %s on a 4-D spatial tensor",
                              n->name);
    }
    return 0;
}

/* Builds the oneDNN stream and convolutions of context c (bf16 where asked and available);
 * raises *scratch to their scratchpads and allocates the bf16 input buffer. */
static int ctx_build_dnnl(exec_model *em, exec_ctx *c, int threads, int bf16, size_t *scratch,
                          dr_err *err) {
#ifdef DR_HAVE_DNNL
    const ir_graph *g = em->g;
    if (!exec_have_dnnl())
        return dr_err_set(err, DR_EUNSUPPORTED, "oneDNN engine unavailable");
    if (dnnl_stream_create(&c->stream, g_engine, dnnl_stream_default_flags) != dnnl_success)
        return dr_err_set(err, DR_EUNSUPPORTED, "oneDNN stream");
    (void)threads; /* per node: c->nthr */
    size_t src16 = 0;
    int n_bf16 = 0, n_conv = 0, rc;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->removed || n->op != IR_CONV)
            continue;
        size_t sb = 0, s16 = 0;
        n_conv++;
        /* oneDNN takes a primitive's thread count from OpenMP when it is created */
        omp_set_num_threads(c->nthr[i]);
        /* bf16 where oneDNN has the kernel, else this convolution stays f32 */
        if (bf16 && dconv_build(em, i, c, 1, &c->dc[i], &sb, &s16, NULL) == 0)
            n_bf16++;
        else if ((rc = dconv_build(em, i, c, 0, &c->dc[i], &sb, &s16, err)))
            return rc;
        if (sb / sizeof(float) + 1 > *scratch)
            *scratch = sb / sizeof(float) + 1;
        if (s16 > src16)
            src16 = s16;
    }
    if (bf16)
        DR_INFO(DR_LOGM_INFER, "context batch %d: %d of %d convolutions in bf16", c->batch, n_bf16,
                n_conv);
    if (src16 && !(c->src16 = alloc64(src16)))
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    return 0;
#else
    (void)em, (void)c, (void)threads, (void)bf16, (void)scratch;
    return dr_err_set(err, DR_EUNSUPPORTED, "built without oneDNN");
#endif
}

/* A context for `batch` images: shapes, memory plan (checked against the activation limit),
 * arena, kernels' scratch, and the oneDNN primitives for that backend and thread count. */
static int ctx_create_locked(exec_model *em, int batch, int backend, int threads, int bf16,
                             exec_ctx **out, dr_err *err) {
    ir_graph *g = em->g;
    int rc;
    exec_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    c->batch = batch;
    c->backend = backend;
    c->threads = threads;
    c->bf16 = bf16;
    c->dims = malloc(sizeof(int64_t) * IR_MAXDIM * (size_t)g->n_vals);
    c->ndims = malloc(sizeof(int) * (size_t)g->n_vals);
    c->off = malloc(sizeof(size_t) * (size_t)g->n_vals);
    c->dc = calloc((size_t)g->n_nodes, sizeof(dconv *));
    size_t scratch = 0;
    if (!c->dims || !c->ndims || !c->off || !c->dc) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = ir_infer_shapes(g, batch, c->dims, c->ndims, err)) || (rc = plan(c, g, err)) ||
        (rc = ctx_check_nodes(c, g, &scratch, err)) ||
        (rc = ctx_node_threads(c, g, kernel_threads(threads), err)))
        goto fail;
    uint64_t act_limit = em->max_act_bytes * (uint64_t)batch;
    if (act_limit > MAX_ARENA_BYTES)
        act_limit = MAX_ARENA_BYTES;
    if (c->arena_floats > act_limit / sizeof(float)) {
        rc = dr_err_set(err, DR_ETOOBIG,
                        "activations of a batch of %d need %zu bytes, over the limit of %llu "
                        "(max_activation_bytes per image)",
                        batch, c->arena_floats * sizeof(float), (unsigned long long)act_limit);
        goto fail;
    }
    c->arena = alloc64(c->arena_floats * sizeof(float));
    if (!c->arena) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory for a %zu-byte arena",
                        c->arena_floats * sizeof(float));
        goto fail;
    }
    if (backend == DR_BACKEND_DNNL && (rc = ctx_build_dnnl(em, c, threads, bf16, &scratch, err)))
        goto fail;
    c->scratch_floats = scratch;
    if (scratch > MAX_ARENA_BYTES / sizeof(float)) {
        rc = dr_err_set(err, DR_ETOOBIG, "scratch of %zu bytes over the limit", scratch * 4);
        goto fail;
    }
    c->scratch = alloc64(scratch * sizeof(float));
    if (!c->scratch) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto fail;
    }
    DR_DEBUG(DR_LOGM_INFER, "context batch %d: arena %zu bytes, scratch %zu bytes", batch,
             c->arena_floats * sizeof(float), scratch * sizeof(float));
    *out = c;
    return 0;
fail:
    ctx_free(c, g);
    return rc;
}

static int prepare_sgemm_weights(exec_model *em, dr_err *err);

/*
 * Creating a context infers shapes on the model's shared graph (which resolves SAME padding
 * in place the first time) and builds oneDNN primitives: one creation at a time, whatever the
 * model (found by TSan: two halves of a batch created their contexts concurrently).
 */
static pthread_mutex_t ctx_create_mu = PTHREAD_MUTEX_INITIALIZER;

static int ctx_create(exec_model *em, int batch, int backend, int threads, int bf16, exec_ctx **out,
                      dr_err *err) {
    pthread_mutex_lock(&ctx_create_mu);
    int rc = backend == DR_BACKEND_SGEMM ? prepare_sgemm_weights(em, err) : 0;
    if (rc == 0)
        rc = ctx_create_locked(em, batch, backend, threads, bf16, out, err);
    pthread_mutex_unlock(&ctx_create_mu);
    return rc;
}

/* ---- kernels --------------------------------------------------------------------------- */

static inline float act_apply(ir_act a, float v, float alpha, float beta) {
    switch (a) {
    case IR_ACT_RELU:
        return v > 0 ? v : 0;
    case IR_ACT_LEAKY:
        return v > 0 ? v : alpha * v;
    case IR_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-v));
    case IR_ACT_TANH:
        return tanhf(v);
    case IR_ACT_SOFTRELU:
        return v > 20 ? v : log1pf(expf(v));
    case IR_ACT_CLIP:
        return v < alpha ? alpha : (v > beta ? beta : v);
    default:
        return v;
    }
}

/* Applies bias (per channel, channel = index % C) and a fused activation over rows x C. */
static void bias_act(float *y, int64_t rows, int64_t ch, const float *bias, ir_act a, float alpha,
                     float beta, int threads) {
    if (!bias && a == IR_ACT_NONE)
        return;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *p = y + r * ch;
        for (int64_t k = 0; k < ch; k++) {
            float v = p[k] + (bias ? bias[k] : 0.0f);
            p[k] = act_apply(a, v, alpha, beta);
        }
    }
}

static void conv_sgemm(const exec_model *em, exec_ctx *c, const ir_node *n, int node_idx,
                       int threads) {
    const ir_graph *g = em->g;
    const int64_t *x = DIMS(c, n->in[0]), *y = DIMS(c, n->out);
    const ir_conv *cv = &n->conv;
    int64_t C = x[1], H = x[2], W = x[3], O = y[1], OH = y[2], OW = y[3];
    int64_t cg = C / cv->group, og = O / cv->group, K = cv->kh * cv->kw * cg, P = OH * OW;
    const float *wt = em->conv_wt[node_idx];
    const float *bias = n->n_in > 2 ? g->vals[n->in[2]].data : NULL;
    int one = cv->kh == 1 && cv->kw == 1 && cv->sh == 1 && cv->sw == 1 && !cv->pt && !cv->pl &&
              !cv->pb && !cv->pr;
    for (int64_t b = 0; b < x[0]; b++) {
        const float *in = ptr(c, g, n->in[0]) + b * H * W * C;
        float *out = ptr(c, g, n->out) + b * P * O;
        for (int grp = 0; grp < cv->group; grp++) {
            const float *a;
            int64_t lda;
            if (one) {
                a = in + grp * cg;
                lda = C;
            } else {
                float *col = c->scratch;
#pragma omp parallel for num_threads(threads) schedule(static)
                for (int64_t oh = 0; oh < OH; oh++) {
                    for (int64_t ow = 0; ow < OW; ow++) {
                        float *row = col + (oh * OW + ow) * K;
                        for (int ki = 0; ki < cv->kh; ki++) {
                            int64_t ih = oh * cv->sh - cv->pt + ki * cv->dh;
                            for (int kj = 0; kj < cv->kw; kj++) {
                                int64_t iw = ow * cv->sw - cv->pl + kj * cv->dw;
                                float *dst = row + (ki * cv->kw + kj) * cg;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    memset(dst, 0, sizeof(float) * (size_t)cg);
                                else
                                    memcpy(dst, in + (ih * W + iw) * C + grp * cg,
                                           sizeof(float) * (size_t)cg);
                            }
                        }
                    }
                }
                a = col;
                lda = K;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)P, (int)og, (int)K, 1.0f, a,
                        (int)lda, wt + grp * K * og, (int)og, n->has_sum ? 1.0f : 0.0f,
                        out + grp * og, (int)O);
        }
        bias_act(out, P, O, bias, n->act, n->alpha, n->beta, threads);
    }
}

/*
 * One output row (oh) of a windowed pooling over one image (NHWC, `in` and `row` distinct).
 * Compiled for AVX-512 and AVX2 as well as the baseline and chosen at load (the build is
 * portable, -O3 without -march): the channel loops are what vectorises.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void
pool_row(const ir_pool *p, const float *restrict in, float *restrict row, int64_t oh, int64_t OW,
         int64_t H, int64_t W, int64_t C) {
    for (int64_t ow = 0; ow < OW; ow++) {
        float *restrict o = row + ow * C;
        int64_t h0 = oh * p->sh - p->pt, w0 = ow * p->sw - p->pl;
        int64_t h1 = h0 + p->kh, w1 = w0 + p->kw;
        int64_t count_pad = (h1 < H + p->pb ? h1 : H + p->pb) - h0;
        count_pad *= (w1 < W + p->pr ? w1 : W + p->pr) - w0;
        int64_t hs = h0 < 0 ? 0 : h0, ws = w0 < 0 ? 0 : w0;
        int64_t he = h1 > H ? H : h1, we = w1 > W ? W : w1;
        for (int64_t k = 0; k < C; k++)
            o[k] = p->is_max ? -INFINITY : 0.0f;
        for (int64_t ih = hs; ih < he; ih++)
            for (int64_t iw = ws; iw < we; iw++) {
                const float *restrict i0 = in + (ih * W + iw) * C;
                if (p->is_max)
                    for (int64_t k = 0; k < C; k++)
                        o[k] = i0[k] > o[k] ? i0[k] : o[k];
                else
                    for (int64_t k = 0; k < C; k++)
                        o[k] += i0[k];
            }
        if (!p->is_max) {
            int64_t cnt = p->count_include_pad ? count_pad : (he - hs) * (we - ws);
            float inv = cnt > 0 ? 1.0f / (float)cnt : 0.0f;
            for (int64_t k = 0; k < C; k++)
                o[k] *= inv;
        } else if (he <= hs || we <= ws) {
            for (int64_t k = 0; k < C; k++)
                o[k] = 0.0f;
        }
    }
}

static void pool_run(exec_ctx *c, const ir_graph *g, const ir_node *n, int threads) {
    const int64_t *x = DIMS(c, n->in[0]), *y = DIMS(c, n->out);
    const ir_pool *p = &n->pool;
    int64_t N = x[0], C = x[1], H = x[2], W = x[3], OH = y[2], OW = y[3];
    const float *in = ptr(c, g, n->in[0]);
    float *out = ptr(c, g, n->out);
    if (p->global) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t b = 0; b < N; b++) {
            float *o = out + b * C;
            const float *i0 = in + b * H * W * C;
            for (int64_t k = 0; k < C; k++)
                o[k] = p->is_max ? -INFINITY : 0.0f;
            for (int64_t s = 0; s < H * W; s++)
                for (int64_t k = 0; k < C; k++)
                    o[k] = p->is_max ? fmaxf(o[k], i0[s * C + k]) : o[k] + i0[s * C + k];
            if (!p->is_max)
                for (int64_t k = 0; k < C; k++)
                    o[k] /= (float)(H * W);
        }
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < N * OH; r++) {
        int64_t b = r / OH, oh = r % OH;
        pool_row(p, in + b * H * W * C, out + (b * OH + oh) * OW * C, oh, OW, H, W, C);
    }
}

/* Copies value v into dst in logical row-major order. */
static void to_logical(const exec_ctx *c, const ir_graph *g, int v, float *dst) {
    const float *src = ptr(c, g, v);
    const int64_t *d = DIMS(c, v);
    if (!nhwc_differs(c, g, v)) {
        memcpy(dst, src, sizeof(float) * (size_t)prod(d, 0, c->ndims[v]));
        return;
    }
    int64_t N = d[0], C = d[1], HW = d[2] * d[3];
    for (int64_t b = 0; b < N; b++)
        for (int64_t s = 0; s < HW; s++)
            for (int64_t k = 0; k < C; k++)
                dst[(b * C + k) * HW + s] = src[(b * HW + s) * C + k];
}

/* Writes logical row-major src into value v's storage. */
static void from_logical(const exec_ctx *c, const ir_graph *g, int v, const float *src) {
    float *dst = ptr(c, g, v);
    const int64_t *d = DIMS(c, v);
    if (!nhwc_differs(c, g, v)) {
        memcpy(dst, src, sizeof(float) * (size_t)prod(d, 0, c->ndims[v]));
        return;
    }
    int64_t N = d[0], C = d[1], HW = d[2] * d[3];
    for (int64_t b = 0; b < N; b++)
        for (int64_t s = 0; s < HW; s++)
            for (int64_t k = 0; k < C; k++)
                dst[(b * HW + s) * C + k] = src[(b * C + k) * HW + s];
}

static void fc_run(exec_ctx *c, const ir_graph *g, const ir_node *n, int threads) {
    const int64_t *x = DIMS(c, n->in[0]);
    int xn = c->ndims[n->in[0]];
    const ir_value *w = &g->vals[n->in[1]];
    int64_t Nout = w->dims[0], K = w->dims[1];
    int64_t M = prod(x, 0, xn) / K;
    const float *a = ptr(c, g, n->in[0]);
    if (nhwc_differs(c, g, n->in[0])) {
        to_logical(c, g, n->in[0], c->scratch);
        a = c->scratch;
    }
    float *out = ptr(c, g, n->out);
#ifdef DR_HAVE_DNNL
    /* oneDNN's SGEMM threads with OpenMP (passive waiting); OpenBLAS's own workers spin-yield
     * for a long while after each call, which costs a shared machine a core */
    if (c->backend == DR_BACKEND_DNNL &&
        dnnl_sgemm('N', 'T', M, Nout, K, 1.0f, a, K, w->data, K, 0.0f, out, Nout) == dnnl_success) {
        bias_act(out, M, Nout, n->n_in > 2 ? g->vals[n->in[2]].data : NULL, n->act, n->alpha,
                 n->beta, threads);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Nout, (int)K, 1.0f, a, (int)K,
                w->data, (int)K, 0.0f, out, (int)Nout);
    bias_act(out, M, Nout, n->n_in > 2 ? g->vals[n->in[2]].data : NULL, n->act, n->alpha, n->beta,
             threads);
}

/* Channel index helper: element i of a value (physical order) belongs to channel ch(i). */
typedef struct chan_map {
    int64_t C, inner;
} chan_map;

static chan_map chan_of(const exec_ctx *c, const ir_graph *g, int v) {
    const int64_t *d = DIMS(c, v);
    chan_map m = {c->ndims[v] >= 2 ? d[1] : 1, 1};
    if (!is_nhwc(c, g, v) && c->ndims[v] > 2)
        m.inner = prod(d, 2, c->ndims[v]);
    return m;
}

static void per_channel_run(exec_ctx *c, const ir_graph *g, const ir_node *n, int threads) {
    const float *in = ptr(c, g, n->in[0]);
    float *out = ptr(c, g, n->out);
    int64_t total = prod(DIMS(c, n->out), 0, c->ndims[n->out]);
    chan_map m = chan_of(c, g, n->in[0]);
    int64_t C = m.C, inner = m.inner, outer = total / (C * inner);
    const float *s0 = n->n_in > 1 ? g->vals[n->in[1]].data : NULL;
    const float *s1 = n->n_in > 2 ? g->vals[n->in[2]].data : NULL;
    int64_t slope_n = n->n_in > 1 ? ir_numel(&g->vals[n->in[1]]) : 0;
    ir_act act = n->act;
    float alpha = n->alpha, beta = n->beta;
    /* Work items: a channels-last row of C values (inner == 1) or one channel plane. */
    int64_t items = inner == 1 ? outer : outer * C, len = inner == 1 ? C : inner;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t it = 0; it < items; it++) {
        int64_t k = inner == 1 ? 0 : it % C;
        const float *x = in + it * len;
        float *y = out + it * len;
        if (n->op == IR_AFFINE) {
            if (inner == 1 && act == IR_ACT_RELU) {
                for (int64_t j = 0; j < len; j++) {
                    float v = x[j] * s0[j] + s1[j];
                    y[j] = v > 0 ? v : 0;
                }
            } else if (inner == 1) {
                for (int64_t j = 0; j < len; j++)
                    y[j] = act_apply(act, x[j] * s0[j] + s1[j], alpha, beta);
            } else {
                float a = s0[k], b = s1[k];
                for (int64_t j = 0; j < len; j++)
                    y[j] = act_apply(act, x[j] * a + b, alpha, beta);
            }
        } else if (act == IR_ACT_PRELU) {
            for (int64_t j = 0; j < len; j++) {
                float sl = s0[slope_n == 1 ? 0 : (inner == 1 ? j : k)];
                y[j] = x[j] > 0 ? x[j] : sl * x[j];
            }
        } else if (n->op == IR_SCALAR) {
            for (int64_t j = 0; j < len; j++)
                y[j] = x[j] * alpha + beta;
        } else if (act == IR_ACT_RELU) {
            for (int64_t j = 0; j < len; j++)
                y[j] = x[j] > 0 ? x[j] : 0;
        } else {
            for (int64_t j = 0; j < len; j++)
                y[j] = act_apply(act, x[j], alpha, beta);
        }
    }
}

/* Physical offset of logical index idx[] (of rank nd) in value v broadcast to out rank. */
static int64_t bcast_offset(const exec_ctx *c, const ir_graph *g, int v, const int64_t *idx,
                            int out_nd) {
    int nd = c->ndims[v];
    const int64_t *d = g->vals[v].data ? g->vals[v].dims : DIMS(c, v);
    int64_t li[IR_MAXDIM];
    for (int k = 0; k < nd; k++) {
        int64_t i = idx[out_nd - nd + k];
        li[k] = d[k] == 1 ? 0 : i;
    }
    if (is_nhwc(c, g, v))
        return ((li[0] * d[2] + li[2]) * d[3] + li[3]) * d[1] + li[1];
    int64_t off = 0;
    for (int k = 0; k < nd; k++)
        off = off * d[k] + li[k];
    return off;
}

static void eltwise_run(exec_ctx *c, const ir_graph *g, const ir_node *n, int threads) {
    float *out = ptr(c, g, n->out);
    const int64_t *od = DIMS(c, n->out);
    int ond = c->ndims[n->out];
    int64_t total = prod(od, 0, ond);
    int same = 1;
    for (int j = 0; j < n->n_in; j++) {
        int v = n->in[j];
        if (c->ndims[v] != ond || is_nhwc(c, g, v) != is_nhwc(c, g, n->out) ||
            memcmp(DIMS(c, v), od, sizeof(int64_t) * (size_t)ond))
            same = 0;
    }
    if (same) {
        const float *a = ptr(c, g, n->in[0]);
        int mul = n->op == IR_MUL;
        for (int j = 1; j < n->n_in; j++) {
            const float *b = ptr(c, g, n->in[j]);
            int last = j == n->n_in - 1;
            ir_act act = last ? n->act : IR_ACT_NONE;
            if (!mul && act == IR_ACT_NONE) {
#pragma omp parallel for num_threads(threads) schedule(static)
                for (int64_t i = 0; i < total; i++)
                    out[i] = a[i] + b[i];
            } else if (!mul && act == IR_ACT_RELU) {
#pragma omp parallel for num_threads(threads) schedule(static)
                for (int64_t i = 0; i < total; i++) {
                    float v = a[i] + b[i];
                    out[i] = v > 0 ? v : 0;
                }
            } else {
#pragma omp parallel for num_threads(threads) schedule(static)
                for (int64_t i = 0; i < total; i++) {
                    float v = mul ? a[i] * b[i] : a[i] + b[i];
                    out[i] = act_apply(act, v, n->alpha, n->beta);
                }
            }
            a = out;
        }
        if (n->n_in == 1)
            memcpy(out, a, sizeof(float) * (size_t)total);
        return;
    }
    int out_nhwc = is_nhwc(c, g, n->out);
    for (int64_t i = 0; i < total; i++) {
        int64_t idx[IR_MAXDIM], r = i;
        if (out_nhwc) { /* physical i -> logical n,c,h,w */
            idx[1] = r % od[1];
            r /= od[1];
            idx[3] = r % od[3];
            r /= od[3];
            idx[2] = r % od[2];
            idx[0] = r / od[2];
        } else {
            for (int k = ond - 1; k >= 0; k--) {
                idx[k] = r % od[k];
                r /= od[k];
            }
        }
        float v = ptr(c, g, n->in[0])[bcast_offset(c, g, n->in[0], idx, ond)];
        for (int j = 1; j < n->n_in; j++) {
            float b = ptr(c, g, n->in[j])[bcast_offset(c, g, n->in[j], idx, ond)];
            v = n->op == IR_MUL ? v * b : v + b;
        }
        out[i] = act_apply(n->act, v, n->alpha, n->beta);
    }
}

/* Physical dims of value v (NHWC for rank 4, where the layouts coincide when H = W = 1) and
 * the physical position of logical axis `axis`. */
static int phys_dims(const exec_ctx *c, const ir_graph *g, int v, int axis, int64_t *pd) {
    int nd = c->ndims[v];
    const int64_t *d = DIMS(c, v);
    for (int k = 0; k < nd; k++)
        pd[k] = d[k];
    if (!is_nhwc(c, g, v))
        return axis;
    static const int phys_of[4] = {0, 3, 1, 2};
    pd[1] = d[2];
    pd[2] = d[3];
    pd[3] = d[1];
    return phys_of[axis];
}

static void slice_run(exec_ctx *c, const ir_graph *g, const ir_node *n) {
    int nd = c->ndims[n->in[0]];
    int axis = n->axis < 0 ? n->axis + nd : n->axis;
    int64_t pd[IR_MAXDIM];
    int pa = phys_dims(c, g, n->in[0], axis, pd);
    int64_t outer = prod(pd, 0, pa), inner = prod(pd, pa + 1, nd);
    int64_t len = (n->shape[1] - n->shape[0]) * inner;
    const float *in = ptr(c, g, n->in[0]) + n->shape[0] * inner;
    float *out = ptr(c, g, n->out);
    for (int64_t o = 0; o < outer; o++)
        memcpy(out + o * len, in + o * pd[pa] * inner, sizeof(float) * (size_t)len);
}

static void concat_run(exec_ctx *c, const ir_graph *g, const ir_node *n) {
    int nd = c->ndims[n->out];
    int axis = n->axis < 0 ? n->axis + nd : n->axis;
    int64_t pd[IR_MAXDIM], pa = axis;
    const int64_t *od = DIMS(c, n->out);
    for (int k = 0; k < nd; k++)
        pd[k] = od[k];
    if (is_nhwc(c, g, n->out)) {
        static const int phys_of[4] = {0, 3, 1, 2};
        pd[0] = od[0];
        pd[1] = od[2];
        pd[2] = od[3];
        pd[3] = od[1];
        pa = phys_of[axis];
    }
    int64_t outer = prod(pd, 0, (int)pa), inner = prod(pd, (int)pa + 1, nd);
    float *out = ptr(c, g, n->out);
    int64_t pos = 0;
    for (int j = 0; j < n->n_in; j++) {
        int64_t len = DIMS(c, n->in[j])[axis] * inner;
        const float *in = ptr(c, g, n->in[j]);
        for (int64_t o = 0; o < outer; o++)
            memcpy(out + o * pd[pa] * inner + pos, in + o * len, sizeof(float) * (size_t)len);
        pos += len;
    }
}

static void softmax_run(exec_ctx *c, const ir_graph *g, const ir_node *n) {
    int nd = c->ndims[n->in[0]];
    int axis = n->axis < 0 ? n->axis + nd : n->axis;
    if (axis < 0 || axis >= nd)
        axis = nd - 1;
    const int64_t *d = DIMS(c, n->in[0]);
    int64_t inner = prod(d, axis, nd), outer = prod(d, 0, axis);
    if (!n->flatten && nd == 4 && axis == 1) {
        /* over the channels of each pixel: rows of C in the NHWC layout (also in NCHW when
         * H = W = 1, the only case where a rank-4 value is stored NCHW) */
        inner = d[1];
        outer = d[0] * d[2] * d[3];
    }
    const float *in = ptr(c, g, n->in[0]);
    float *out = ptr(c, g, n->out);
    for (int64_t o = 0; o < outer; o++) {
        const float *x = in + o * inner;
        float *y = out + o * inner, mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < inner; k++)
            mx = fmaxf(mx, x[k]);
        for (int64_t k = 0; k < inner; k++)
            sum += (y[k] = expf(x[k] - mx));
        for (int64_t k = 0; k < inner; k++)
            y[k] /= sum;
    }
}

static int node_run(exec_model *em, exec_ctx *c, int i, int threads, dr_err *err) {
    const ir_graph *g = em->g;
    const ir_node *n = &g->nodes[i];
    switch (n->op) {
    case IR_CONV:
        if (n->has_sum && ptr(c, g, n->out) != ptr(c, g, n->in[3]))
            memcpy(ptr(c, g, n->out), ptr(c, g, n->in[3]),
                   sizeof(float) * (size_t)prod(DIMS(c, n->out), 0, 4));
#ifdef DR_HAVE_DNNL
        if (c->dc[i]) {
            if (dconv_run(c, c->dc[i]))
                return dr_err_set(err, DR_EINVAL, "oneDNN convolution %s failed", n->name);
            return 0;
        }
#endif
        conv_sgemm(em, c, n, i, threads);
        return 0;
    case IR_POOL:
        pool_run(c, g, n, threads);
        return 0;
    case IR_FC:
        fc_run(c, g, n, threads);
        return 0;
    case IR_AFFINE:
    case IR_ACT:
    case IR_SCALAR:
        per_channel_run(c, g, n, threads);
        return 0;
    case IR_ADD:
    case IR_MUL:
        eltwise_run(c, g, n, threads);
        return 0;
    case IR_CONCAT:
        concat_run(c, g, n);
        return 0;
    case IR_SOFTMAX:
        softmax_run(c, g, n);
        return 0;
    case IR_SLICE:
        slice_run(c, g, n);
        return 0;
    case IR_FLATTEN:
    case IR_RESHAPE:
    case IR_IDENTITY:
        if (is_alias(c, g, n))
            return 0;
        to_logical(c, g, n->in[0], c->scratch);
        from_logical(c, g, n->out, c->scratch);
        return 0;
    case IR_BN:
    case IR_MATMUL:
        break;
    }
    return dr_err_set(err, DR_EINVAL, "internal: node %s not lowered", n->name);
}

/* ---- model-level ----------------------------------------------------------------------- */

/* Every convolution's weights (and bias) must be constants: checked at load. */
static int check_conv_weights(const ir_graph *g, dr_err *err) {
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->removed || n->op != IR_CONV)
            continue;
        const ir_value *w = &g->vals[n->in[1]];
        if (!w->data || w->ndim != 4)
            return dr_err_set(err, DR_EUNSUPPORTED, "Convolution %s: weights must be constant",
                              n->name);
        if (n->n_in > 2 && !g->vals[n->in[2]].data)
            return dr_err_set(err, DR_EUNSUPPORTED, "Convolution %s: bias must be constant",
                              n->name);
    }
    return 0;
}

/*
 * The SGEMM backend's convolution weights, transposed to [group][K][og] (conv_sgemm), made by
 * the first SGEMM context (caller holds ctx_create_mu; published whole or not at all): a model
 * run by oneDNN never needs them, and a load that only validates (the categorizer checks every
 * model it is asked to install) does not pay for a transposed copy of every weight.
 */
static int prepare_sgemm_weights(exec_model *em, dr_err *err) {
    if (em->conv_wt)
        return 0;
    ir_graph *g = em->g;
    float **conv_wt = calloc((size_t)g->n_nodes, sizeof(float *));
    if (!conv_wt)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->removed || n->op != IR_CONV)
            continue;
        const ir_value *w = &g->vals[n->in[1]];
        int64_t O = w->dims[0], cg = w->dims[1], kh = w->dims[2], kw = w->dims[3];
        int64_t G = n->conv.group, og = O / G, K = kh * kw * cg;
        float *t = malloc(sizeof(float) * (size_t)(O * K));
        if (!t) {
            for (int j = 0; j < i; j++)
                free(conv_wt[j]);
            free(conv_wt);
            return dr_err_set(err, DR_ENOMEM, "out of memory");
        }
        for (int64_t gi = 0; gi < G; gi++)
            for (int64_t o = 0; o < og; o++)
                for (int64_t ci = 0; ci < cg; ci++)
                    for (int64_t a = 0; a < kh; a++)
                        for (int64_t b = 0; b < kw; b++)
                            t[gi * K * og + ((a * kw + b) * cg + ci) * og + o] =
                                w->data[(((gi * og + o) * cg + ci) * kh + a) * kw + b];
        conv_wt[i] = t;
    }
    em->conv_wt = conv_wt;
    return 0;
}

/*
 * Work and weights of one image from batch-1 shapes: conv/FC multiply-adds (2 FLOP each) in
 * *mac_flops; *work adds one operation per output element of every other operator (times the
 * window for pooling, the input count for sums) so that a graph of cheap operators is counted.
 */
static int measure(const ir_graph *g, double *mac_flops, double *work, double *weight_bytes,
                   dr_err *err) {
    int64_t *dims = malloc(sizeof(int64_t) * IR_MAXDIM * (size_t)g->n_vals);
    int *nd = malloc(sizeof(int) * (size_t)g->n_vals);
    int rc = 0;
    if (!dims || !nd) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = ir_infer_shapes((ir_graph *)g, 1, dims, nd, err)))
        goto out;
    *mac_flops = *work = *weight_bytes = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->removed)
            continue;
        const int64_t *y = dims + (size_t)n->out * IR_MAXDIM;
        double out_n = (double)prod(y, 0, nd[n->out]);
        if (n->op == IR_CONV || n->op == IR_FC) {
            const ir_value *w = &g->vals[n->in[1]];
            double macs = out_n * (double)(ir_numel(w) / (w->dims[0] ? w->dims[0] : 1));
            *mac_flops += 2.0 * macs;
            *work += 2.0 * macs;
            *weight_bytes += (double)ir_numel(w) * sizeof(float);
        } else if (n->op == IR_POOL) {
            const int64_t *x = dims + (size_t)n->in[0] * IR_MAXDIM;
            *work +=
                n->pool.global ? (double)prod(x, 0, nd[n->in[0]]) : out_n * n->pool.kh * n->pool.kw;
        } else {
            *work += out_n * (n->n_in > 1 ? n->n_in : 1);
        }
    }
out:
    free(dims);
    free(nd);
    return rc;
}

/* Checks the admission limits before anything large is allocated. */
static int admit(exec_model *em, const exec_limits *lim, dr_err *err) {
    double work = 0, wbytes = 0;
    int rc = measure(em->g, &em->flops_per_image, &work, &wbytes, err);
    if (rc || !lim)
        return rc;
    if (work > lim->max_flops)
        return dr_err_set(err, DR_ETOOBIG,
                          "model needs %.2f GFLOP per image, over the limit of %.2f GFLOP "
                          "(max_flops_per_image)",
                          work / 1e9, lim->max_flops / 1e9);
    if (wbytes > (double)lim->max_weight_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "operators read %.0f MB of weights per image, over the limit of %.0f MB "
                          "(max_weight_bytes)",
                          wbytes / 1e6, (double)lim->max_weight_bytes / 1e6);
    return 0;
}

int exec_init(exec_model *em, ir_graph *g, const exec_limits *lim, dr_err *err) {
    memset(em, 0, sizeof(*em));
    em->g = g;
    em->threads = 1;
    em->backend = DR_BACKEND_AUTO;
    em->max_act_bytes = lim && lim->max_activation_bytes < MAX_ARENA_BYTES
                            ? lim->max_activation_bytes
                            : MAX_ARENA_BYTES;
    const char *prof = getenv("DR_INFER_PROFILE"); /* 1: per operator type, 2: per node */
    em->profile = prof ? (prof[0] == '2' ? 2 : 1) : 0;
    pthread_mutex_init(&em->mu, NULL);
    int rc = admit(em, lim, err);
    if (rc)
        return rc;
    em->wcache = calloc((size_t)g->n_nodes, sizeof(wcache *));
    if (!em->wcache)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    if ((rc = check_conv_weights(g, err)))
        return rc;
    /* Validate with a batch-1 context: shapes, memory plan, kernels (no weights prepared) */
    exec_ctx *c;
    pthread_mutex_lock(&ctx_create_mu);
    rc = ctx_create_locked(em, 1, DR_BACKEND_SGEMM, 1, 0, &c, err);
    pthread_mutex_unlock(&ctx_create_mu);
    if (rc)
        return rc;
    em->out_per_image = prod(DIMS(c, g->output), 0, c->ndims[g->output]);
    ctx_free(c, g); /* validation only: contexts are built per backend and batch on use */
    return 0;
}

void exec_free(exec_model *em) {
    if (!em->g)
        return;
    exec_ctx *c = em->pool;
    while (c) {
        exec_ctx *next = c->next;
        ctx_free(c, em->g);
        c = next;
    }
    if (em->conv_wt)
        for (int i = 0; i < em->g->n_nodes; i++)
            free(em->conv_wt[i]);
    if (em->wcache)
        for (int i = 0; i < em->g->n_nodes; i++)
            for (wcache *w = em->wcache[i], *next; w; w = next) {
                next = w->next;
                free(w->buf);
                free(w);
            }
    free(em->wcache);
    free(em->conv_wt);
    pthread_mutex_destroy(&em->mu);
    memset(em, 0, sizeof(*em));
}

void exec_set_threads(exec_model *em, int threads) {
    pthread_mutex_lock(&em->mu);
    em->threads = threads;
    pthread_mutex_unlock(&em->mu);
}

void exec_set_bf16(exec_model *em, int bf16) {
    pthread_mutex_lock(&em->mu);
    em->bf16 = bf16;
    pthread_mutex_unlock(&em->mu);
}

int exec_have_bf16(void) {
#ifdef DR_HAVE_DNNL
    if (!exec_have_dnnl())
        return 0;
    /* native bf16 dot products (AVX512_BF16; AMX adds to it): without them oneDNN emulates
     * bf16 and is slower than f32 */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
           (unsigned)dnnl_cpu_isa_avx512_core_bf16;
#else
    return 0;
#endif
}

int exec_get_threads(exec_model *em) {
    pthread_mutex_lock(&em->mu);
    int threads = em->threads;
    pthread_mutex_unlock(&em->mu);
    return threads;
}

void exec_set_backend(exec_model *em, int backend) {
    pthread_mutex_lock(&em->mu);
    em->backend = backend;
    pthread_mutex_unlock(&em->mu);
}

static int effective_backend(int b) {
    if (b == DR_BACKEND_AUTO)
        return exec_have_dnnl() ? DR_BACKEND_DNNL : DR_BACKEND_SGEMM;
    return b;
}

/* Runs `batch` images on one context with `threads` threads in the calling thread. */
static int run_part(exec_model *em, const float *input, int batch, float *out, int threads,
                    dr_err *err) {
    threads = kernel_threads(threads);
    const ir_graph *g = em->g;
    pthread_mutex_lock(&em->mu);
    int backend = effective_backend(em->backend);
    int auto_backend = em->backend == DR_BACKEND_AUTO;
    int bf16 = backend == DR_BACKEND_DNNL && em->bf16;
    exec_ctx *c = em->pool;
    while (c && (c->in_use || c->batch != batch || c->backend != backend || c->threads != threads ||
                 c->bf16 != bf16))
        c = c->next;
    if (c)
        c->in_use = 1;
    pthread_mutex_unlock(&em->mu);
    int rc;
    if (!c) {
        rc = ctx_create(em, batch, backend, threads, bf16, &c, err);
        if (rc == DR_EUNSUPPORTED && backend == DR_BACKEND_DNNL && auto_backend) {
            /* oneDNN rejected some convolution: AUTO falls back to im2col + SGEMM for good */
            DR_WARN(DR_LOGM_INFER, "oneDNN unusable for this model (%s); using SGEMM",
                    err ? err->msg : "");
            pthread_mutex_lock(&em->mu);
            if (em->backend == DR_BACKEND_AUTO)
                em->backend = DR_BACKEND_SGEMM;
            pthread_mutex_unlock(&em->mu);
            backend = DR_BACKEND_SGEMM;
            rc = ctx_create(em, batch, backend, threads, bf16, &c, err);
        }
        if (rc)
            return rc;
        c->in_use = 1;
        pthread_mutex_lock(&em->mu);
        c->next = em->pool;
        em->pool = c;
        pthread_mutex_unlock(&em->mu);
    }
    omp_set_num_threads(threads);
    /* OpenBLAS runs only the SGEMM backend's convolutions (its thread count is process-wide) */
    if (backend == DR_BACKEND_SGEMM)
        openblas_set_num_threads(threads);
    from_logical(c, g, g->input, input);
    rc = 0;
    int profile = em->profile, cur_thr = threads;
    double op_s[IR_NUM_OPS] = {0};
    for (int i = 0; i < g->n_nodes && !rc; i++) {
        if (g->nodes[i].removed)
            continue;
        double t0 = profile ? omp_get_wtime() : 0;
        if (c->nthr[i] != cur_thr) /* what oneDNN's SGEMM (FC) takes from OpenMP */
            omp_set_num_threads(cur_thr = c->nthr[i]);
        rc = node_run(em, c, i, c->nthr[i], err);
        if (profile) {
            op_s[g->nodes[i].op] += omp_get_wtime() - t0;
            if (profile == 2)
                DR_INFO(DR_LOGM_INFER, "node %s op %d act %d: %lld elements %.3f ms",
                        g->nodes[i].name, g->nodes[i].op, g->nodes[i].act,
                        (long long)prod(DIMS(c, g->nodes[i].out), 0, c->ndims[g->nodes[i].out]),
                        (omp_get_wtime() - t0) * 1e3);
        }
    }
    if (profile)
        for (int k = 0; k < IR_NUM_OPS; k++)
            if (op_s[k] > 0)
                DR_INFO(DR_LOGM_INFER, "profile batch %d: op %d %.3f ms", batch, k, op_s[k] * 1e3);
    if (!rc)
        to_logical(c, g, g->output, out);
    pthread_mutex_lock(&em->mu);
    c->in_use = 0;
    pthread_mutex_unlock(&em->mu);
    return rc;
}

typedef struct part_job {
    exec_model *em;
    const float *input;
    float *out;
    int batch, rc;
    dr_err err;
} part_job;

static void *part_main(void *arg) {
    part_job *j = arg;
    j->rc = run_part(j->em, j->input, j->batch, j->out, 1, &j->err);
    return NULL;
}

/*
 * With 2+ threads and 2+ images the batch is split in two halves run concurrently, each on
 * its own single-threaded context (no per-operator barriers; scales well on a busy machine).
 * A single image uses intra-operator parallelism (OpenMP / oneDNN).
 */
int exec_run(exec_model *em, const float *input, int batch, float *out, size_t out_len,
             dr_err *err) {
    if (batch <= 0 || batch > DR_INFER_MAX_BATCH)
        return dr_err_set(err, DR_ERANGE, "batch %d outside 1..%d", batch, DR_INFER_MAX_BATCH);
    if (out_len < (size_t)em->out_per_image * (size_t)batch)
        return dr_err_set(err, DR_ERANGE, "output buffer of %zu floats, need %lld", out_len,
                          (long long)(em->out_per_image * batch));
    pthread_mutex_lock(&em->mu);
    int threads = em->threads;
    pthread_mutex_unlock(&em->mu);
    if (threads < 2 || batch < 2)
        return run_part(em, input, batch, out, threads, err);
    int first = (batch + 1) / 2;
    size_t per_in = (size_t)(em->g->in_dims[1] * em->g->in_dims[2] * em->g->in_dims[3]);
    part_job job = {em,
                    input + per_in * (size_t)first,
                    out + (size_t)em->out_per_image * first,
                    batch - first,
                    0,
                    {0}};
    pthread_t helper;
    if (pthread_create(&helper, NULL, part_main, &job) != 0)
        return run_part(em, input, batch, out, threads, err);
    int rc = run_part(em, input, first, out, 1, err);
    pthread_join(helper, NULL);
    if (!rc && job.rc) {
        rc = job.rc;
        if (err)
            *err = job.err;
    }
    return rc;
}
