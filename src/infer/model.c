/*
 * Public API of the inference engine (include/derecho/infer.h): model loading from bytes,
 * classification of photos (single and batch), raw tensor runs, accessors and settings.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derecho/infer.h"
#include "derecho/log.h"
#include "infer/exec.h"
#include "infer/image.h"
#include "infer/loader.h"

struct dr_model {
    ir_graph g;
    exec_model em;
    dr_preprocess pre;
    char **labels;
    char *label_buf;
    size_t n_labels;
    char **gen_labels; /* "class N" when no labels file */
    int C, H, W;
    size_t num_classes;
    int ends_in_softmax;
    dr_infer_limits limits;
    dr_precision precision; /* FP32 or BF16 */
};

void dr_infer_limits_default(dr_infer_limits *l) {
    memset(l, 0, sizeof(*l));
    l->max_flops_per_image = 20e9;
    l->max_nodes = 5000;
    l->max_activation_bytes = (uint64_t)1 << 30;
    l->max_weight_bytes = (uint64_t)2 << 30;
    l->max_pixels = 40000000;
}

void dr_load_options_default(dr_load_options *o) {
    memset(o, 0, sizeof(*o));
    dr_infer_limits_default(&o->limits);
}

/* Copies opts' limits into m, replacing zeros by the defaults. */
static int set_limits(dr_model *m, const dr_load_options *opts, dr_err *err) {
    dr_infer_limits d;
    dr_infer_limits_default(&d);
    m->limits = d;
    if (!opts)
        return 0;
    const dr_infer_limits *l = &opts->limits;
    if (!(l->max_flops_per_image >= 0))
        return dr_err_set(err, DR_ERANGE, "limits: max_flops_per_image must be >= 0");
    if (l->max_pixels > DR_INFER_MAX_PIXELS)
        return dr_err_set(err, DR_ERANGE, "limits: max_pixels %llu over the engine's %llu",
                          (unsigned long long)l->max_pixels,
                          (unsigned long long)DR_INFER_MAX_PIXELS);
    if (l->max_flops_per_image > 0)
        m->limits.max_flops_per_image = l->max_flops_per_image;
    if (l->max_nodes)
        m->limits.max_nodes = l->max_nodes;
    if (l->max_activation_bytes)
        m->limits.max_activation_bytes = l->max_activation_bytes;
    if (l->max_weight_bytes)
        m->limits.max_weight_bytes = l->max_weight_bytes;
    if (l->max_pixels)
        m->limits.max_pixels = l->max_pixels;
    return 0;
}

void dr_preprocess_seed(dr_preprocess *pre) {
    memset(pre, 0, sizeof(*pre));
    pre->resize_mode = DR_RESIZE_SQUARE;
    pre->resize = 256;
    pre->crop = 224;
    pre->divisor = 256.0f;
    for (int k = 0; k < 3; k++)
        pre->std[k] = 1.0f;
}

void dr_preprocess_imagenet(dr_preprocess *pre) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memset(pre, 0, sizeof(*pre));
    pre->resize_mode = DR_RESIZE_SHORTER;
    pre->resize = 256;
    pre->crop = 224;
    pre->divisor = 255.0f;
    memcpy(pre->mean, mean, sizeof(mean));
    memcpy(pre->std, std, sizeof(std));
}

static int check_pre(const dr_preprocess *p, dr_err *err) {
    if (p->resize_mode != DR_RESIZE_SQUARE && p->resize_mode != DR_RESIZE_SHORTER)
        return dr_err_set(err, DR_EINVAL, "preprocess: unknown resize mode %d", p->resize_mode);
    if (p->resize > 16384 || p->crop > 16384)
        return dr_err_set(err, DR_ERANGE, "preprocess: resize/crop over 16384");
    if (p->resize && p->crop > p->resize)
        return dr_err_set(err, DR_EINVAL, "preprocess: crop %u larger than resize %u", p->crop,
                          p->resize);
    if (!(p->divisor > 0) || !isfinite(p->divisor))
        return dr_err_set(err, DR_EINVAL, "preprocess: divisor must be positive");
    for (int k = 0; k < 3; k++)
        if (!(p->std[k] != 0) || !isfinite(p->std[k]) || !isfinite(p->mean[k]))
            return dr_err_set(err, DR_EINVAL, "preprocess: std must be non-zero and finite");
    return 0;
}

void dr_model_free(dr_model *m) {
    if (!m)
        return;
    exec_free(&m->em);
    ir_free(&m->g);
    if (m->gen_labels)
        for (size_t i = 0; i < m->num_classes; i++)
            free(m->gen_labels[i]);
    free(m->gen_labels);
    free(m->labels);
    free(m->label_buf);
    free(m);
}

/* Common tail of both loaders: optimise, plan, check labels. */
static int finish_load(dr_model *m, const void *labels, size_t labels_len, int labels_required,
                       dr_err *err) {
    if ((uint64_t)m->g.n_nodes > m->limits.max_nodes)
        return dr_err_set(err, DR_ETOOBIG,
                          "model has %d operators, over the limit of %u (max_nodes)", m->g.n_nodes,
                          m->limits.max_nodes);
    int rc = ir_optimize(&m->g, err);
    if (rc)
        return rc;
    exec_limits el = {m->limits.max_flops_per_image, m->limits.max_activation_bytes,
                      m->limits.max_weight_bytes};
    if ((rc = exec_init(&m->em, &m->g, &el, err)))
        return rc;
    m->C = (int)m->g.in_dims[1];
    m->H = (int)m->g.in_dims[2];
    m->W = (int)m->g.in_dims[3];
    if (m->C != 1 && m->C != 3)
        return dr_err_set(err, DR_EUNSUPPORTED, "model input has %d channels (need 1 or 3)", m->C);
    if (m->pre.crop && (m->pre.crop != (uint32_t)m->H || m->pre.crop != (uint32_t)m->W))
        return dr_err_set(err, DR_EINVAL, "preprocess crop %u does not match model input %dx%d",
                          m->pre.crop, m->H, m->W);
    m->num_classes = (size_t)m->em.out_per_image;
    int p = m->g.vals[m->g.output].producer;
    m->ends_in_softmax = p >= 0 && m->g.nodes[p].op == IR_SOFTMAX;
    if (labels && labels_len) {
        if ((rc = split_lines(labels, labels_len, &m->labels, &m->n_labels, &m->label_buf, err)))
            return rc;
        if (m->n_labels != m->num_classes)
            return dr_err_set(err, DR_EINVAL, "%zu label lines for %zu model outputs", m->n_labels,
                              m->num_classes);
    } else if (labels_required) {
        return dr_err_set(err, DR_EINVAL, "synset is empty");
    } else {
        m->gen_labels = calloc(m->num_classes, sizeof(char *));
        if (!m->gen_labels)
            return dr_err_set(err, DR_ENOMEM, "out of memory");
        for (size_t i = 0; i < m->num_classes; i++) {
            char tmp[32];
            snprintf(tmp, sizeof(tmp), "class %zu", i);
            if (!(m->gen_labels[i] = strdup(tmp)))
                return dr_err_set(err, DR_ENOMEM, "out of memory");
        }
    }
    DR_INFO(DR_LOGM_INFER, "model loaded: %d nodes, input %dx%dx%d, %zu classes, %.2f GFLOP/image",
            m->g.n_nodes, m->C, m->H, m->W, m->num_classes, m->em.flops_per_image / 1e9);
    return 0;
}

/*
 * A model whose input is not 224 x 224 (face models at 112, detection nets at 12/24/48) with
 * the default preset: crop to its input and resize in proportion (256/224 of it), as the
 * preset does for 224. A caller's own preprocessing is kept as given.
 */
static int fit_preset(dr_model *m, int caller_pre, dr_err *err) {
    int64_t h = m->g.in_dims[2], w = m->g.in_dims[3];
    if (caller_pre || (h == 224 && w == 224))
        return 0;
    if (h != w)
        return dr_err_set(err, DR_EUNSUPPORTED,
                          "model input %lldx%lld is not square: pass a preprocess with crop 0 "
                          "and resize 0",
                          (long long)h, (long long)w);
    m->pre.crop = (uint32_t)h;
    if (m->pre.resize)
        m->pre.resize = (uint32_t)((h * 256 + 112) / 224);
    return 0;
}

/* Applies opts->precision to a loaded model. */
static int load_precision(dr_model *m, const dr_load_options *opts, dr_err *err) {
    dr_precision p = opts ? opts->precision : DR_PRECISION_FP32;
    int rc = dr_model_set_precision(m, p);
    if (rc == DR_EUNSUPPORTED)
        return dr_err_set(err, rc,
                          "precision bf16: this CPU or build has no native bf16 "
                          "(needs oneDNN and AVX512_BF16 or AMX)");
    if (rc)
        return dr_err_set(err, rc, "unknown precision %d", (int)p);
    return 0;
}

static int new_model(const dr_load_options *opts, int seed, dr_model **out, dr_err *err) {
    dr_model *m = calloc(1, sizeof(*m));
    if (!m)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    ir_init(&m->g);
    if (opts && opts->pre)
        m->pre = *opts->pre;
    else if (seed)
        dr_preprocess_seed(&m->pre);
    else
        dr_preprocess_imagenet(&m->pre);
    int rc = check_pre(&m->pre, err);
    if (!rc)
        rc = set_limits(m, opts, err);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int dr_model_load_mxnet(const void *synset, size_t synset_len, const void *symbol_json,
                        size_t symbol_len, const void *params, size_t params_len,
                        const dr_preprocess *pre, dr_model **out, dr_err *err) {
    dr_load_options o;
    dr_load_options_default(&o);
    o.pre = pre;
    return dr_model_load_mxnet_ex(synset, synset_len, symbol_json, symbol_len, params, params_len,
                                  &o, out, err);
}

int dr_model_load_mxnet_ex(const void *synset, size_t synset_len, const void *symbol_json,
                           size_t symbol_len, const void *params, size_t params_len,
                           const dr_load_options *opts, dr_model **out, dr_err *err) {
    dr_model *m;
    int rc;
    if (!out || !symbol_json || !params)
        return dr_err_set(err, DR_EINVAL, "dr_model_load_mxnet: NULL argument");
    *out = NULL;
    if (symbol_len > DR_INFER_MAX_MODEL_BYTES || params_len > DR_INFER_MAX_MODEL_BYTES)
        return dr_err_set(err, DR_ETOOBIG, "model bytes exceed the limit");
    if ((rc = new_model(opts, 1, &m, err)))
        return rc;
    /* the input size: the caller's crop, else the symbol's __shape__, else 224 */
    int caller_pre = opts && opts->pre;
    int hw = caller_pre && m->pre.crop ? (int)m->pre.crop : 0;
    int labels_required = !(opts && opts->labels_optional);
    if ((rc = mxnet_load_params(&m->g, params, params_len, err)) ||
        (rc = mxnet_load_symbol(&m->g, symbol_json, symbol_len, 3, hw, err)) ||
        (rc = fit_preset(m, caller_pre, err)) ||
        (rc = finish_load(m, synset, synset_len, labels_required, err)) ||
        (rc = load_precision(m, opts, err))) {
        DR_WARN(DR_LOGM_INFER, "MXNet model rejected: %s", err ? err->msg : dr_strerror(rc));
        dr_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int dr_model_load_onnx(const void *onnx, size_t onnx_len, const void *labels, size_t labels_len,
                       const dr_preprocess *pre, dr_model **out, dr_err *err) {
    dr_load_options o;
    dr_load_options_default(&o);
    o.pre = pre;
    return dr_model_load_onnx_ex(onnx, onnx_len, labels, labels_len, &o, out, err);
}

int dr_model_load_onnx_ex(const void *onnx, size_t onnx_len, const void *labels, size_t labels_len,
                          const dr_load_options *opts, dr_model **out, dr_err *err) {
    dr_model *m;
    int rc;
    if (!out || !onnx)
        return dr_err_set(err, DR_EINVAL, "dr_model_load_onnx: NULL argument");
    *out = NULL;
    if (onnx_len > DR_INFER_MAX_MODEL_BYTES)
        return dr_err_set(err, DR_ETOOBIG, "model bytes exceed the limit");
    if ((rc = new_model(opts, 0, &m, err)))
        return rc;
    if ((rc = onnx_load(&m->g, onnx, onnx_len, err)) ||
        (rc = finish_load(m, labels, labels_len, 0, err)) || (rc = load_precision(m, opts, err))) {
        DR_WARN(DR_LOGM_INFER, "ONNX model rejected: %s", err ? err->msg : dr_strerror(rc));
        dr_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

size_t dr_model_num_classes(const dr_model *m) {
    return m->num_classes;
}

void dr_model_input_shape(const dr_model *m, uint32_t *c, uint32_t *h, uint32_t *w) {
    *c = (uint32_t)m->C;
    *h = (uint32_t)m->H;
    *w = (uint32_t)m->W;
}

const char *dr_model_label(const dr_model *m, size_t i) {
    if (i >= m->num_classes)
        return NULL;
    return m->labels ? m->labels[i] : m->gen_labels[i];
}

double dr_model_flops_per_image(const dr_model *m) {
    return m->em.flops_per_image;
}

int dr_model_set_threads(dr_model *m, int threads) {
    if (threads < 1 || threads > 64)
        return DR_ERANGE;
    exec_set_threads(&m->em, threads);
    return 0;
}

int dr_model_set_backend(dr_model *m, dr_infer_backend backend) {
    if (backend != DR_BACKEND_AUTO && backend != DR_BACKEND_DNNL && backend != DR_BACKEND_SGEMM)
        return DR_EINVAL;
    if (backend == DR_BACKEND_DNNL && !exec_have_dnnl())
        return DR_EUNSUPPORTED;
    exec_set_backend(&m->em, backend);
    return 0;
}

int dr_infer_have_dnnl(void) {
    return exec_have_dnnl();
}

int dr_infer_have_bf16(void) {
    return exec_have_bf16();
}

int dr_precision_parse(const char *text, dr_precision *out) {
    if (!text)
        return DR_EINVAL;
    if (!strcmp(text, "fp32"))
        *out = DR_PRECISION_FP32;
    else if (!strcmp(text, "bf16"))
        *out = DR_PRECISION_BF16;
    else if (!strcmp(text, "auto"))
        *out = DR_PRECISION_AUTO;
    else
        return DR_EINVAL;
    return 0;
}

int dr_model_set_precision(dr_model *m, dr_precision p) {
    if (p != DR_PRECISION_FP32 && p != DR_PRECISION_BF16 && p != DR_PRECISION_AUTO)
        return DR_EINVAL;
    if (p == DR_PRECISION_AUTO)
        p = exec_have_bf16() ? DR_PRECISION_BF16 : DR_PRECISION_FP32;
    if (p == DR_PRECISION_BF16 && !exec_have_bf16())
        return DR_EUNSUPPORTED;
    m->precision = p;
    exec_set_bf16(&m->em, p == DR_PRECISION_BF16);
    return 0;
}

dr_precision dr_model_precision(const dr_model *m) {
    return m->precision;
}

int dr_model_run(dr_model *m, const float *input, size_t batch, float *out, size_t out_len,
                 dr_err *err) {
    if (!m || !input || !out)
        return dr_err_set(err, DR_EINVAL, "dr_model_run: NULL argument");
    if (batch == 0 || batch > DR_INFER_MAX_BATCH)
        return dr_err_set(err, DR_ERANGE, "batch %zu outside 1..%d", batch, DR_INFER_MAX_BATCH);
    return exec_run(&m->em, input, (int)batch, out, out_len, err);
}

/* Softmax (unless the graph ends in one) and top-k selection for one image. */
static void top_k(const dr_model *m, float *scores, dr_class_score *top, size_t k, size_t *n_out) {
    size_t n = m->num_classes;
    if (!m->ends_in_softmax) {
        float mx = -INFINITY;
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            mx = fmaxf(mx, scores[i]);
        for (size_t i = 0; i < n; i++)
            sum += (scores[i] = expf(scores[i] - mx));
        for (size_t i = 0; i < n; i++)
            scores[i] = (float)(scores[i] / sum);
    }
    if (k > n)
        k = n;
    for (size_t j = 0; j < k; j++) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
            int taken = 0;
            for (size_t t = 0; t < j; t++)
                if (top[t].index == i)
                    taken = 1;
            if (!taken && (best == SIZE_MAX || scores[i] > scores[best]))
                best = i;
        }
        top[j].index = best;
        top[j].score = scores[best];
        top[j].label = dr_model_label(m, best);
    }
    *n_out = k;
}

/* Decodes and preprocesses one photo into dst (C*H*W floats). */
static int decode_one(const dr_model *m, const void *photo, size_t len, float *dst, dr_err *err) {
    uint8_t *rgb;
    int w, h;
    int rc = img_decode(photo, len, m->limits.max_pixels, &rgb, &w, &h, err);
    if (rc)
        return rc;
    rc = img_preprocess(rgb, w, h, &m->pre, m->C, m->H, m->W, dst, err);
    free(rgb);
    return rc;
}

/*
 * Decodes the n photos of a batch into in (n * C*H*W floats), on the model's threads: each
 * photo is one task (decoding is the larger part of a small model's time per photo, and a
 * batch's photos are independent). On failure, err names the first bad photo's index.
 */
static int decode_batch(dr_model *m, const void *const *photos, const size_t *photo_lens, size_t n,
                        float *in, dr_err *err) {
    size_t per = (size_t)m->C * m->H * m->W;
    if (n == 1)
        return decode_one(m, photos[0], photo_lens[0], in, err);
    int *rcs = calloc(n, sizeof *rcs);
    dr_err *errs = calloc(n, sizeof *errs);
    if (!rcs || !errs) {
        free(rcs);
        free(errs);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    int threads = exec_get_threads(&m->em);
    if (threads > (int)n)
        threads = (int)n;
#ifdef DR_INFER_SERIAL_KERNELS /* TSan build: it cannot see libgomp's barriers (exec.c) */
    threads = 1;
#endif
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1)
    for (long i = 0; i < (long)n; i++)
        rcs[i] = decode_one(m, photos[i], photo_lens[i], in + per * (size_t)i, &errs[i]);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (rcs[i]) {
            rc = rcs[i];
            dr_err_set(err, rc, "photo %zu: %s", i, errs[i].msg);
        }
    free(rcs);
    free(errs);
    return rc;
}

int dr_model_classify_batch(dr_model *m, const void *const *photos, const size_t *photo_lens,
                            size_t n, dr_class_score *top, size_t k, size_t *n_out, dr_err *err) {
    if (!m || !photos || !photo_lens || !top || !n_out || k == 0)
        return dr_err_set(err, DR_EINVAL, "dr_model_classify_batch: bad argument");
    if (n == 0 || n > DR_INFER_MAX_BATCH)
        return dr_err_set(err, DR_ERANGE, "batch of %zu photos outside 1..%d", n,
                          DR_INFER_MAX_BATCH);
    size_t per = (size_t)m->C * m->H * m->W;
    float *in = malloc(sizeof(float) * per * n);
    float *out = malloc(sizeof(float) * m->num_classes * n);
    int rc = 0;
    if (!in || !out) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto out;
    }
    rc = decode_batch(m, photos, photo_lens, n, in, err);
    if (rc)
        goto out;
    if ((rc = exec_run(&m->em, in, (int)n, out, m->num_classes * n, err)))
        goto out;
    for (size_t i = 0; i < n; i++)
        top_k(m, out + m->num_classes * i, top + k * i, k, &n_out[i]);
out:
    free(in);
    free(out);
    return rc;
}

int dr_model_classify(dr_model *m, const void *photo, size_t photo_len, dr_class_score *top,
                      size_t k, size_t *n_out, dr_err *err) {
    const void *p[1] = {photo};
    size_t l[1] = {photo_len};
    if (!photo && photo_len == 0)
        return dr_err_set(err, DR_EINVAL, "photo: 0 bytes");
    return dr_model_classify_batch(m, p, l, 1, top, k, n_out, err);
}
