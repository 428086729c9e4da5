/*
 * MXNet model loader: NDArray-list params binary and symbol JSON.
 *
 * Params file format (little endian), as written by mx.nd.save / gluon export:
 *   u64 magic 0x112, u64 reserved, u64 count, then `count` arrays, then u64 key_count
 *   (0 or count) and that many keys (u64 length + bytes, "arg:NAME" / "aux:NAME").
 *   Array V2/V3: u32 magic 0xF993FAC9 / 0xF993FACA, i32 storage type (0 = dense),
 *   u32 ndim, i64 dims[ndim]; legacy (no magic): u32 ndim, u32 dims[ndim]. An array with
 *   ndim 0 ends there. Otherwise i32 dev_type, i32 dev_id, i32 type_flag (0 f32, 1 f64,
 *   2 f16, 3 u8, 4 i32, 5 i8, 6 i64), then numel * element-size bytes of data.
 * Symbol JSON: {"nodes":[{"op","name","attrs"|"attr"|"param","inputs":[[node,out(,ver)]]}],
 *   "arg_nodes", "heads":[[node,out(,ver)]]}; attribute values are strings ("(3, 3)").
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "derecho/buffer.h"
#include "infer/loader.h"

#define ARR_V2 0xF993FAC9u
#define ARR_V3 0xF993FACAu

typedef struct raw_array {
    int ndim;
    int64_t dims[IR_MAXDIM];
    int type_flag;
    const uint8_t *data;
    int64_t numel;
} raw_array;

static int elem_size(int type_flag) {
    static const int sz[] = {4, 8, 2, 1, 4, 1, 8};
    return type_flag >= 0 && type_flag <= 6 ? sz[type_flag] : 0;
}

static float elem_to_float(const uint8_t *p, int type_flag) {
    uint64_t u;
    switch (type_flag) {
    case 0: {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    case 1: {
        double d;
        memcpy(&d, p, 8);
        return (float)d;
    }
    case 2:
        return ir_half_to_float((uint16_t)(p[0] | p[1] << 8));
    case 3:
        return (float)p[0];
    case 4:
        return (float)(int32_t)dr_load_u32le(p);
    case 5:
        return (float)(int8_t)p[0];
    default:
        u = dr_load_u64le(p);
        return (float)(int64_t)u;
    }
}

static int read_array(dr_reader *r, raw_array *a, size_t idx, dr_err *err) {
    memset(a, 0, sizeof(*a));
    if (dr_reader_remaining(r) < 4)
        return dr_err_set(err, DR_ECORRUPT, "params: truncated at array %zu", idx);
    uint32_t first = dr_load_u32le(r->data + r->pos);
    int legacy = first != ARR_V2 && first != ARR_V3;
    uint32_t ndim;
    if (!legacy) {
        dr_reader_u32(r);
        int32_t stype = (int32_t)dr_reader_u32(r);
        if (stype != 0)
            return dr_err_set(err, DR_EUNSUPPORTED, "params: array %zu has sparse storage %d", idx,
                              stype);
    }
    ndim = dr_reader_u32(r);
    if (r->failed)
        return dr_err_set(err, DR_ECORRUPT, "params: truncated at array %zu", idx);
    if (ndim > IR_MAXDIM)
        return dr_err_set(err, DR_ECORRUPT, "params: array %zu has %u dimensions", idx, ndim);
    a->ndim = (int)ndim;
    a->numel = 1;
    for (uint32_t k = 0; k < ndim; k++) {
        int64_t d = legacy ? (int64_t)dr_reader_u32(r) : (int64_t)dr_reader_u64(r);
        if (r->failed)
            return dr_err_set(err, DR_ECORRUPT, "params: truncated shape of array %zu", idx);
        if (d < 0 || d > IR_MAX_ELEMS || (d > 0 && a->numel > IR_MAX_ELEMS / d))
            return dr_err_set(err, DR_ETOOBIG, "params: array %zu dimension %lld too large", idx,
                              (long long)d);
        a->dims[k] = d;
        a->numel *= d;
    }
    if (ndim == 0) {
        a->numel = 0;
        return 0;
    }
    dr_reader_u32(r); /* dev_type */
    dr_reader_u32(r); /* dev_id */
    a->type_flag = (int32_t)dr_reader_u32(r);
    if (r->failed)
        return dr_err_set(err, DR_ECORRUPT, "params: truncated header of array %zu", idx);
    int es = elem_size(a->type_flag);
    if (!es)
        return dr_err_set(err, DR_EUNSUPPORTED, "params: array %zu has type flag %d", idx,
                          a->type_flag);
    if ((uint64_t)a->numel > dr_reader_remaining(r) / (uint64_t)es)
        return dr_err_set(err, DR_ECORRUPT, "params: array %zu needs %lld bytes, %zu left", idx,
                          (long long)a->numel * es, dr_reader_remaining(r));
    a->data = dr_reader_bytes(r, (size_t)a->numel * (size_t)es);
    return 0;
}

int mxnet_load_params(ir_graph *g, const void *params, size_t len, dr_err *err) {
    dr_reader r;
    dr_reader_init(&r, params, len);
    uint64_t magic = dr_reader_u64(&r);
    dr_reader_u64(&r);
    uint64_t count = dr_reader_u64(&r);
    if (r.failed)
        return dr_err_set(err, DR_ECORRUPT, "params: file of %zu bytes is too short", len);
    if (magic != 0x112)
        return dr_err_set(err, DR_ECORRUPT, "params: bad magic 0x%llx (want 0x112)",
                          (unsigned long long)magic);
    if (count > LOADER_MAX_ARRAYS || count > dr_reader_remaining(&r) / 8)
        return dr_err_set(err, DR_ECORRUPT, "params: array count %llu impossible",
                          (unsigned long long)count);
    raw_array *arr = calloc(count ? count : 1, sizeof(*arr));
    if (!arr)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    int rc = 0;
    for (uint64_t i = 0; i < count && !rc; i++)
        rc = read_array(&r, &arr[i], (size_t)i, err);
    if (rc)
        goto out;
    uint64_t nkeys = dr_reader_u64(&r);
    if (r.failed || nkeys != count) {
        rc = dr_err_set(err, DR_ECORRUPT, "params: %llu keys for %llu arrays",
                        (unsigned long long)nkeys, (unsigned long long)count);
        goto out;
    }
    for (uint64_t i = 0; i < count; i++) {
        uint64_t kl = dr_reader_u64(&r);
        if (r.failed || kl > LOADER_MAX_KEY || kl > dr_reader_remaining(&r)) {
            rc = dr_err_set(err, DR_ECORRUPT, "params: key %llu truncated or too long",
                            (unsigned long long)i);
            goto out;
        }
        const char *kb = (const char *)dr_reader_bytes(&r, (size_t)kl);
        char name[LOADER_MAX_KEY + 1];
        memcpy(name, kb, (size_t)kl);
        name[kl] = 0;
        const char *nm = name;
        if (!strncmp(nm, "arg:", 4) || !strncmp(nm, "aux:", 4))
            nm += 4;
        raw_array *a = &arr[i];
        if (a->numel == 0)
            continue;
        float *data = malloc(sizeof(float) * (size_t)a->numel);
        if (!data) {
            rc = dr_err_set(err, DR_ENOMEM, "out of memory for parameter %s", nm);
            goto out;
        }
        int es = elem_size(a->type_flag);
        for (int64_t k = 0; k < a->numel; k++)
            data[k] = elem_to_float(a->data + k * es, a->type_flag);
        int v = ir_add_value(g, nm, a->ndim, a->dims, data);
        if (v < 0) {
            free(data);
            rc = dr_err_set(err, v, "out of memory");
            goto out;
        }
    }
    if (dr_reader_remaining(&r) != 0)
        rc = dr_err_set(err, DR_ECORRUPT, "params: %zu trailing bytes", dr_reader_remaining(&r));
out:
    free(arr);
    return rc;
}

/* ---- symbol JSON ----------------------------------------------------------------------- */

static const char *attr_str(const cJSON *attrs, const char *key) {
    const cJSON *a = attrs ? cJSON_GetObjectItemCaseSensitive(attrs, key) : NULL;
    return cJSON_IsString(a) ? a->valuestring : NULL;
}

/* Parses "(3, 3)" / "[1,2]" / "3" into up to max ints; returns count or -1. */
static int parse_tuple(const char *s, int64_t *out, int max) {
    int n = 0;
    while (*s) {
        while (*s == ' ' || *s == '(' || *s == '[' || *s == ',' || *s == ')' || *s == ']')
            s++;
        if (!*s)
            break;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || n >= max)
            return -1;
        if (*end == 'L')
            end++;
        out[n++] = v;
        s = end;
    }
    return n;
}

static int attr_bool(const cJSON *attrs, const char *key, int def, int *out) {
    const char *s = attr_str(attrs, key);
    if (!s) {
        *out = def;
        return 0;
    }
    if (!strcmp(s, "True") || !strcmp(s, "true") || !strcmp(s, "1"))
        *out = 1;
    else if (!strcmp(s, "False") || !strcmp(s, "false") || !strcmp(s, "0"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int attr_float(const cJSON *attrs, const char *key, float def, float *out) {
    const char *s = attr_str(attrs, key);
    if (!s) {
        *out = def;
        return 0;
    }
    char *end;
    *out = strtof(s, &end);
    return end == s ? -1 : 0;
}

static int attr_int(const cJSON *attrs, const char *key, int def, int lo, int hi, int *out) {
    const char *s = attr_str(attrs, key);
    if (!s) {
        *out = def;
        return 0;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Parses a 2-tuple attribute (a single value is repeated). */
static int attr_pair(const cJSON *attrs, const char *key, int def, int lo, int hi, int *a, int *b) {
    const char *s = attr_str(attrs, key);
    if (!s) {
        *a = *b = def;
        return 0;
    }
    int64_t v[2];
    int n = parse_tuple(s, v, 2);
    if (n == 1)
        v[1] = v[0];
    else if (n != 2)
        return -1;
    if (v[0] < lo || v[0] > hi || v[1] < lo || v[1] > hi)
        return -1;
    *a = (int)v[0];
    *b = (int)v[1];
    return 0;
}

/* Checks every attribute key is in `known` (NULL-terminated) or starts with "__". */
static int check_attrs(const cJSON *attrs, const char *op, const char *name,
                       const char *const *known, dr_err *err) {
    const cJSON *a;
    cJSON_ArrayForEach(a, attrs) {
        if (!a->string || !strncmp(a->string, "__", 2))
            continue;
        int ok = 0;
        for (int i = 0; known[i]; i++)
            if (!strcmp(known[i], a->string))
                ok = 1;
        if (!ok)
            return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: unsupported attribute '%s'", op, name,
                              a->string);
    }
    return 0;
}

#define BAD_ATTR(key)                                                                              \
    dr_err_set(err, DR_EINVAL, "%s %s: bad value for attribute '%s'", op, name, key)

/*
 * The MXNet operator table: one entry per operator name with its IR kind, the attributes it
 * accepts (any other fails the load, naming it), how many inputs the IR node keeps (0: all)
 * and the function that reads its attributes into the node. A parse function sets *need_in
 * (the inputs the node must have; 1 before the call) and may narrow n->n_in.
 */
typedef int (*mx_parse_fn)(ir_node *n, const char *op, const char *name, const cJSON *attrs,
                           int n_in, int *need_in, dr_err *err);

typedef struct mx_op {
    const char *op;
    ir_op kind;
    const char *const *known;
    int max_in;
    mx_parse_fn parse;
} mx_op;

static int mx_conv(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                   int *need_in, dr_err *err) {
    int nb = 0;
    ir_conv *c = &n->conv;
    const char *layout = attr_str(attrs, "layout");
    if (layout && strcmp(layout, "NCHW"))
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: layout %s", op, name, layout);
    int64_t kt[3];
    const char *ks = attr_str(attrs, "kernel");
    if (!ks || parse_tuple(ks, kt, 3) != 2)
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: only 2-D kernels are supported", op, name);
    if (attr_pair(attrs, "kernel", 1, 1, 1024, &c->kh, &c->kw))
        return BAD_ATTR("kernel");
    if (attr_pair(attrs, "stride", 1, 1, 1024, &c->sh, &c->sw))
        return BAD_ATTR("stride");
    if (attr_pair(attrs, "pad", 0, 0, 1024, &c->pt, &c->pl))
        return BAD_ATTR("pad");
    c->pb = c->pt;
    c->pr = c->pl;
    if (attr_pair(attrs, "dilate", 1, 1, 1024, &c->dh, &c->dw))
        return BAD_ATTR("dilate");
    if (attr_int(attrs, "num_filter", 0, 1, 1 << 20, &c->cout))
        return BAD_ATTR("num_filter");
    if (attr_int(attrs, "num_group", 1, 1, 1 << 20, &c->group))
        return BAD_ATTR("num_group");
    if (attr_bool(attrs, "no_bias", 0, &nb))
        return BAD_ATTR("no_bias");
    *need_in = nb ? 2 : 3;
    if (n_in < *need_in)
        return dr_err_set(err, DR_EINVAL, "%s %s: %d inputs, need %d", op, name, n_in, *need_in);
    n->n_in = *need_in;
    return 0;
}

static int mx_bn(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                 int *need_in, dr_err *err) {
    int axis, ugs;
    (void)n_in;
    if (attr_float(attrs, "eps", 1e-3f, &n->eps) || !(n->eps >= 0))
        return BAD_ATTR("eps");
    if (attr_bool(attrs, "fix_gamma", 1, &n->fix_gamma))
        return BAD_ATTR("fix_gamma");
    if (attr_bool(attrs, "use_global_stats", 0, &ugs))
        return BAD_ATTR("use_global_stats");
    if (attr_int(attrs, "axis", 1, 1, 1, &axis))
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: only axis 1", op, name);
    *need_in = 5;
    return 0;
}

/* Activation (act_type relu, sigmoid, tanh, softrelu). */
static int mx_activation(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                         int *need_in, dr_err *err) {
    const char *t = attr_str(attrs, "act_type");
    (void)n_in;
    (void)need_in;
    if (!t)
        return BAD_ATTR("act_type");
    if (!strcmp(t, "relu"))
        n->act = IR_ACT_RELU;
    else if (!strcmp(t, "sigmoid"))
        n->act = IR_ACT_SIGMOID;
    else if (!strcmp(t, "tanh"))
        n->act = IR_ACT_TANH;
    else if (!strcmp(t, "softrelu"))
        n->act = IR_ACT_SOFTRELU;
    else
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: act_type '%s'", op, name, t);
    return 0;
}

/* LeakyReLU (act_type leaky with slope, or prelu with a slope tensor input). */
static int mx_leaky(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                    int *need_in, dr_err *err) {
    const char *t = attr_str(attrs, "act_type");
    (void)n_in;
    if (!t || !strcmp(t, "leaky")) {
        n->act = IR_ACT_LEAKY;
        if (attr_float(attrs, "slope", 0.25f, &n->alpha))
            return BAD_ATTR("slope");
    } else if (!strcmp(t, "prelu")) {
        n->act = IR_ACT_PRELU;
        *need_in = 2;
    } else {
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: act_type '%s'", op, name, t);
    }
    return 0;
}

static int mx_clip(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                   int *need_in, dr_err *err) {
    (void)n_in;
    (void)need_in;
    n->act = IR_ACT_CLIP;
    if (attr_float(attrs, "a_min", 0, &n->alpha) || !attr_str(attrs, "a_min"))
        return BAD_ATTR("a_min");
    if (attr_float(attrs, "a_max", 0, &n->beta) || !attr_str(attrs, "a_max"))
        return BAD_ATTR("a_max");
    return 0;
}

static int mx_pool(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                   int *need_in, dr_err *err) {
    ir_pool *p = &n->pool;
    const char *t = attr_str(attrs, "pool_type");
    const char *conv = attr_str(attrs, "pooling_convention");
    const char *layout = attr_str(attrs, "layout");
    (void)n_in;
    (void)need_in;
    if (layout && strcmp(layout, "NCHW"))
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: layout %s", op, name, layout);
    if (!t || !strcmp(t, "max"))
        p->is_max = 1;
    else if (strcmp(t, "avg"))
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: pool_type '%s'", op, name, t);
    if (conv && !strcmp(conv, "full"))
        p->ceil_mode = 1;
    else if (conv && strcmp(conv, "valid"))
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: pooling_convention '%s'", op, name, conv);
    if (attr_bool(attrs, "global_pool", 0, &p->global))
        return BAD_ATTR("global_pool");
    if (attr_bool(attrs, "count_include_pad", 1, &p->count_include_pad))
        return BAD_ATTR("count_include_pad");
    if (attr_pair(attrs, "kernel", 1, 1, 1024, &p->kh, &p->kw))
        return BAD_ATTR("kernel");
    if (attr_pair(attrs, "stride", 1, 1, 1024, &p->sh, &p->sw))
        return BAD_ATTR("stride");
    if (attr_pair(attrs, "pad", 0, 0, 1024, &p->pt, &p->pl))
        return BAD_ATTR("pad");
    p->pb = p->pt;
    p->pr = p->pl;
    if (!p->global && !attr_str(attrs, "kernel"))
        return BAD_ATTR("kernel");
    return 0;
}

static int mx_fc(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                 int *need_in, dr_err *err) {
    int nb, nh;
    if (attr_int(attrs, "num_hidden", 0, 1, 1 << 24, &nh))
        return BAD_ATTR("num_hidden");
    if (attr_bool(attrs, "no_bias", 0, &nb))
        return BAD_ATTR("no_bias");
    if (attr_bool(attrs, "flatten", 1, &n->flatten))
        return BAD_ATTR("flatten");
    *need_in = nb ? 2 : 3;
    if (n_in < *need_in)
        return dr_err_set(err, DR_EINVAL, "%s %s: %d inputs, need %d", op, name, n_in, *need_in);
    n->n_in = *need_in;
    return 0;
}

static int mx_reshape(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                      int *need_in, dr_err *err) {
    int rev;
    const char *s = attr_str(attrs, "shape");
    (void)n_in;
    (void)need_in;
    if (attr_bool(attrs, "reverse", 0, &rev) || rev)
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: reverse", op, name);
    if (!s || (n->shape_n = parse_tuple(s, n->shape, IR_MAXDIM)) <= 0)
        return BAD_ATTR("shape");
    return 0;
}

static int mx_concat(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                     int *need_in, dr_err *err) {
    if (attr_int(attrs, "dim", 1, -IR_MAXDIM, IR_MAXDIM - 1, &n->axis))
        return BAD_ATTR("dim");
    *need_in = n_in;
    return 0;
}

static int mx_add(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                  int *need_in, dr_err *err) {
    (void)n, (void)op, (void)name, (void)attrs, (void)err;
    *need_in = n_in < 1 ? 1 : n_in;
    return 0;
}

/* softmax (last axis only) */
static int mx_softmax(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                      int *need_in, dr_err *err) {
    (void)n_in, (void)need_in;
    if (attr_int(attrs, "axis", -1, -IR_MAXDIM, IR_MAXDIM - 1, &n->axis))
        return BAD_ATTR("axis");
    if (n->axis != -1)
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: axis other than last", op, name);
    return 0;
}

/* SoftmaxActivation: mode instance (all but the batch axis) or channel (per pixel) */
static int mx_softmax_activation(ir_node *n, const char *op, const char *name, const cJSON *attrs,
                                 int n_in, int *need_in, dr_err *err) {
    const char *m = attr_str(attrs, "mode");
    (void)n_in, (void)need_in;
    n->axis = 1;
    if (m && !strcmp(m, "channel"))
        n->flatten = 0; /* per pixel over the channels (detection nets) */
    else if (m && strcmp(m, "instance"))
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: mode '%s'", op, name, m);
    return 0;
}

/* SoftmaxOutput: inference ignores its label input (max_in 1) and training attributes */
static int mx_softmax_output(ir_node *n, const char *op, const char *name, const cJSON *attrs,
                             int n_in, int *need_in, dr_err *err) {
    int mo, ps;
    (void)n_in, (void)need_in;
    n->axis = 1;
    if (attr_bool(attrs, "multi_output", 0, &mo) || mo ||
        attr_bool(attrs, "preserve_shape", 0, &ps) || ps)
        return dr_err_set(err, DR_EUNSUPPORTED, "%s %s: multi_output/preserve_shape", op, name);
    return 0;
}

/* _plus_scalar, _minus_scalar, _mul_scalar, _div_scalar: y = x * alpha + beta */
static int mx_scalar(ir_node *n, const char *op, const char *name, const cJSON *attrs, int n_in,
                     int *need_in, dr_err *err) {
    float s;
    (void)n_in, (void)need_in;
    if (attr_float(attrs, "scalar", 0, &s) || !attr_str(attrs, "scalar"))
        return BAD_ATTR("scalar");
    n->alpha = 1;
    n->beta = 0;
    if (!strcmp(op, "_minus_scalar"))
        n->beta = -s;
    else if (!strcmp(op, "_plus_scalar"))
        n->beta = s;
    else if (!strcmp(op, "_mul_scalar"))
        n->alpha = s;
    else if (s == 0)
        return BAD_ATTR("scalar");
    else
        n->alpha = 1.0f / s;
    return 0;
}

static const char *const conv_k[] = {"kernel",     "stride",    "pad",       "dilate",
                                     "num_filter", "num_group", "no_bias",   "layout",
                                     "cudnn_tune", "cudnn_off", "workspace", NULL};
static const char *const bn_k[] = {"eps",  "momentum",        "fix_gamma", "use_global_stats",
                                   "axis", "output_mean_var", "cudnn_off", NULL};
static const char *const act_k[] = {"act_type", NULL};
static const char *const leaky_k[] = {"act_type", "slope", "lower_bound", "upper_bound", NULL};
static const char *const pool_k[] = {"kernel",      "stride",
                                     "pad",         "pool_type",
                                     "global_pool", "pooling_convention",
                                     "cudnn_off",   "count_include_pad",
                                     "layout",      NULL};
static const char *const fc_k[] = {"num_hidden", "no_bias", "flatten", NULL};
static const char *const none_k[] = {NULL};
static const char *const reshape_k[] = {"shape", "reverse", NULL};
static const char *const concat_k[] = {"dim", "num_args", NULL};
static const char *const drop_k[] = {"p", "mode", "axes", "cudnn_off", NULL};
static const char *const smo_k[] = {"grad_scale", "ignore_label",   "multi_output",
                                    "use_ignore", "preserve_shape", "normalization",
                                    "out_grad",   "smooth_alpha",   NULL};
static const char *const sm_k[] = {"axis", NULL};
static const char *const sma_k[] = {"mode", NULL};
static const char *const scalar_k[] = {"scalar", NULL};
static const char *const clip_k[] = {"a_min", "a_max", NULL};

static const mx_op mx_ops[] = {
    {"Convolution", IR_CONV, conv_k, 0, mx_conv},
    {"BatchNorm", IR_BN, bn_k, 5, mx_bn},
    {"Activation", IR_ACT, act_k, 0, mx_activation},
    {"LeakyReLU", IR_ACT, leaky_k, 0, mx_leaky},
    {"clip", IR_ACT, clip_k, 0, mx_clip},
    {"Pooling", IR_POOL, pool_k, 0, mx_pool},
    {"FullyConnected", IR_FC, fc_k, 0, mx_fc},
    {"Flatten", IR_FLATTEN, none_k, 0, NULL},
    {"Reshape", IR_RESHAPE, reshape_k, 0, mx_reshape},
    {"elemwise_add", IR_ADD, concat_k, 0, mx_add},
    {"_Plus", IR_ADD, concat_k, 0, mx_add},
    {"_plus", IR_ADD, concat_k, 0, mx_add},
    {"broadcast_add", IR_ADD, concat_k, 0, mx_add},
    {"ElementWiseSum", IR_ADD, concat_k, 0, mx_add},
    {"add_n", IR_ADD, concat_k, 0, mx_add},
    {"Concat", IR_CONCAT, concat_k, 0, mx_concat},
    {"Dropout", IR_IDENTITY, drop_k, 0, NULL},
    {"SoftmaxOutput", IR_SOFTMAX, smo_k, 1, mx_softmax_output},
    {"softmax", IR_SOFTMAX, sm_k, 0, mx_softmax},
    {"SoftmaxActivation", IR_SOFTMAX, sma_k, 0, mx_softmax_activation},
    {"_minus_scalar", IR_SCALAR, scalar_k, 0, mx_scalar},
    {"_mul_scalar", IR_SCALAR, scalar_k, 0, mx_scalar},
    {"_plus_scalar", IR_SCALAR, scalar_k, 0, mx_scalar},
    {"_div_scalar", IR_SCALAR, scalar_k, 0, mx_scalar},
};

/* Builds one operator node from the table (SliceChannel is built by build_slice_channel). */
static int build_node(ir_graph *g, const char *op, const char *name, const cJSON *attrs,
                      const int *in, int n_in, int *out_val, dr_err *err) {
    const mx_op *def = NULL;
    for (size_t k = 0; k < sizeof mx_ops / sizeof *mx_ops && !def; k++)
        if (!strcmp(op, mx_ops[k].op))
            def = &mx_ops[k];
    if (!def)
        return dr_err_set(err, DR_EUNSUPPORTED, "unsupported operator '%s' (node %s)", op, name);
    int rc = check_attrs(attrs, op, name, def->known, err);
    if (rc)
        return rc;
    int n_used = def->max_in && n_in > def->max_in ? def->max_in : n_in;
    ir_node *n;
    int idx = ir_add_node(g, def->kind, name, in, n_used, name, &n);
    if (idx < 0)
        return dr_err_set(err, idx, "out of memory");
    *out_val = n->out;
    int need_in = 1;
    if (def->parse && (rc = def->parse(n, op, name, attrs, n_in, &need_in, err)))
        return rc;
    if (n->n_in < need_in)
        return dr_err_set(err, DR_EINVAL, "%s %s: %d inputs, need %d", op, name, n->n_in, need_in);
    if (def->kind == IR_BN || (def->kind == IR_ACT && n->act == IR_ACT_PRELU))
        n->n_in = need_in;
    return 0;
}

#define MAX_NODE_OUTPUTS 256 /* SliceChannel num_outputs */

/*
 * MXNet's SliceChannel (split): num_outputs slices of equal size along axis, one IR_SLICE node
 * each; their output values are consecutive from *first_val (output k = *first_val + k).
 */
static int build_slice_channel(ir_graph *g, const char *name, const cJSON *attrs, const int *in,
                               int n_in, int *first_val, int *n_out, dr_err *err) {
    static const char *const known[] = {"num_outputs", "axis", "squeeze_axis", NULL};
    int rc = check_attrs(attrs, "SliceChannel", name, known, err);
    if (rc)
        return rc;
    int k, axis, squeeze;
    if (attr_int(attrs, "num_outputs", 0, 1, MAX_NODE_OUTPUTS, &k) || k < 1)
        return dr_err_set(err, DR_EINVAL, "SliceChannel %s: num_outputs missing or over %d", name,
                          MAX_NODE_OUTPUTS);
    if (attr_int(attrs, "axis", 1, -IR_MAXDIM, IR_MAXDIM - 1, &axis))
        return dr_err_set(err, DR_EINVAL, "SliceChannel %s: bad axis", name);
    if (attr_bool(attrs, "squeeze_axis", 0, &squeeze) || squeeze)
        return dr_err_set(err, DR_EUNSUPPORTED, "SliceChannel %s: squeeze_axis", name);
    if (n_in != 1)
        return dr_err_set(err, DR_EINVAL, "SliceChannel %s: %d inputs, need 1", name, n_in);
    /* slice sizes need the input's shape: the size of one slice is resolved at the first shape
     * inference from shape[2] = k (end = -1 marks it unresolved) */
    for (int t = 0; t < k; t++) {
        ir_node *n;
        char out_name[300];
        snprintf(out_name, sizeof out_name, "%s_output%d", name, t);
        int idx = ir_add_node(g, IR_SLICE, name, in, 1, out_name, &n);
        if (idx < 0)
            return dr_err_set(err, idx, "out of memory");
        n->axis = axis;
        n->shape[0] = t; /* part t of shape[2] equal parts (resolved by shape inference) */
        n->shape[1] = -1;
        n->shape[2] = k;
        if (t == 0)
            *first_val = n->out;
        else if (n->out != *first_val + t)
            return dr_err_set(err, DR_EINVAL, "internal: SliceChannel %s outputs", name);
    }
    *n_out = k;
    return 0;
}

static int parse_entry(const cJSON *e, int n_nodes, int *node, int *out) {
    int sz = cJSON_GetArraySize(e);
    if (!cJSON_IsArray(e) || (sz != 2 && sz != 3))
        return -1;
    const cJSON *a = e->child, *b = a->next; /* sz >= 2 */
    if (!cJSON_IsNumber(a) || !cJSON_IsNumber(b))
        return -1;
    if (a->valuedouble < 0 || a->valuedouble >= n_nodes || b->valuedouble < 0 ||
        b->valuedouble >= MAX_NODE_OUTPUTS)
        return -1;
    *node = (int)a->valuedouble;
    *out = (int)b->valuedouble;
    return 0;
}

/* The symbol being loaded: nodes indexed once, the value (first output) of each node. */
typedef struct sym_state {
    ir_graph *g;
    const cJSON **node; /* the JSON nodes by index (cJSON_GetArrayItem is linear) */
    int nn;
    int *val_of; /* value of node i's output 0, -1 for an unused null node */
    int *n_out;  /* outputs of node i (SliceChannel: several, consecutive values) */
    int *in;     /* scratch: the inputs of the node being built */
    int in_c, in_hw;
} sym_state;

/* A "null" node: a parameter (constant from the params file), else the first one is the data
 * input: its shape is the caller's (in_hw > 0), else its "__shape__" (N, C, H, W) as MXNet
 * records it, else 3 x 224 x 224. Others (a softmax label) are unused. */
static int null_node(sym_state *st, int i, const char *name, const cJSON *attrs, dr_err *err) {
    ir_graph *g = st->g;
    int v = ir_find_value(g, name);
    if (v >= 0 && g->vals[v].data) {
        st->val_of[i] = v;
        return 0;
    }
    if (g->input >= 0) {
        st->val_of[i] = -1; /* e.g. a softmax label: only legal where ignored */
        return 0;
    }
    int hw = st->in_hw > 0 ? st->in_hw : 224;
    int64_t d[4] = {1, st->in_c, hw, hw}, t[4];
    const char *shp = attr_str(attrs, "__shape__");
    if (st->in_hw <= 0 && shp && parse_tuple(shp, t, 4) == 4) {
        if (t[1] < 1 || t[1] > 4 || t[2] < 1 || t[2] > 16384 || t[3] < 1 || t[3] > 16384)
            return dr_err_set(err, DR_EINVAL, "symbol: input %s has __shape__ %s", name, shp);
        d[1] = t[1];
        d[2] = t[2];
        d[3] = t[3];
    }
    memcpy(g->in_dims, d, sizeof(d));
    v = ir_add_value(g, name, 4, d, NULL);
    if (v < 0)
        return dr_err_set(err, v, "out of memory");
    g->input = v;
    st->val_of[i] = v;
    return 0;
}

/* Resolves node i's "inputs" ([node, output(, version)] entries) into st->in. */
static int node_inputs(sym_state *st, int i, const char *op, const char *name, const cJSON *jin,
                       int *n_in_out, dr_err *err) {
    int n_in = jin ? cJSON_GetArraySize(jin) : 0;
    if (n_in > 4096)
        return dr_err_set(err, DR_ETOOBIG, "symbol: node %s has %d inputs", name, n_in);
    const cJSON *ent = jin ? jin->child : NULL;
    for (int j = 0; j < n_in; j++, ent = ent->next) {
        int src, outi;
        if (parse_entry(ent, st->nn, &src, &outi) || src >= i)
            return dr_err_set(err, DR_EINVAL, "symbol: node %s input %d is malformed", name, j);
        if (outi >= st->n_out[src])
            return dr_err_set(err, DR_EUNSUPPORTED, "symbol: node %s uses output %d of node %d",
                              name, outi, src);
        st->in[j] = st->val_of[src] < 0 ? -1 : st->val_of[src] + outi;
        int is_label = !strcmp(op, "SoftmaxOutput") && j == 1;
        if (st->in[j] < 0 && !is_label) {
            const cJSON *snm = cJSON_GetObjectItemCaseSensitive(st->node[src], "name");
            return dr_err_set(err, DR_ENOTFOUND,
                              "symbol: parameter '%s' (input of %s) missing from params",
                              cJSON_IsString(snm) ? snm->valuestring : "?", name);
        }
    }
    *n_in_out = n_in;
    return 0;
}

/* Builds symbol node i (op, name, attributes under "attrs", "attr" or "param", inputs). */
static int symbol_node(sym_state *st, int i, dr_err *err) {
    const cJSON *nd = st->node[i];
    st->n_out[i] = 1;
    const cJSON *jop = cJSON_GetObjectItemCaseSensitive(nd, "op");
    const cJSON *jname = cJSON_GetObjectItemCaseSensitive(nd, "name");
    const cJSON *jin = cJSON_GetObjectItemCaseSensitive(nd, "inputs");
    if (!cJSON_IsString(jop) || !cJSON_IsString(jname) || (jin && !cJSON_IsArray(jin)))
        return dr_err_set(err, DR_EINVAL, "symbol: node %d lacks op/name/inputs", i);
    const char *op = jop->valuestring, *name = jname->valuestring;
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(nd, "attrs");
    if (!attrs)
        attrs = cJSON_GetObjectItemCaseSensitive(nd, "attr");
    if (!attrs)
        attrs = cJSON_GetObjectItemCaseSensitive(nd, "param");
    if (attrs && !cJSON_IsObject(attrs))
        return dr_err_set(err, DR_EINVAL, "symbol: node %s has malformed attributes", name);
    if (!strcmp(op, "null"))
        return null_node(st, i, name, attrs, err);
    int n_in = 0, rc = node_inputs(st, i, op, name, jin, &n_in, err);
    if (rc)
        return rc;
    if (!strcmp(op, "SliceChannel"))
        return build_slice_channel(st->g, name, attrs, st->in, n_in, &st->val_of[i], &st->n_out[i],
                                   err);
    return build_node(st->g, op, name, attrs, st->in, n_in, &st->val_of[i], err);
}

int mxnet_load_symbol(ir_graph *g, const void *json, size_t len, int in_c, int in_hw, dr_err *err) {
    int rc = 0;
    sym_state st = {.g = g, .in_c = in_c, .in_hw = in_hw};
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return dr_err_set(err, DR_EINVAL, "symbol: not valid JSON");
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(root, "heads");
    int nn = cJSON_GetArraySize(nodes);
    if (!cJSON_IsArray(nodes) || nn <= 0 || nn > LOADER_MAX_NODES || !cJSON_IsArray(heads) ||
        cJSON_GetArraySize(heads) < 1) {
        rc = dr_err_set(err, DR_EINVAL, "symbol: missing or empty 'nodes'/'heads'");
        goto out;
    }
    st.nn = nn;
    st.val_of = malloc(sizeof(int) * (size_t)nn);
    st.in = malloc(sizeof(int) * 4096);
    st.node = malloc(sizeof(*st.node) * (size_t)nn);
    st.n_out = malloc(sizeof(int) * (size_t)nn);
    if (!st.val_of || !st.in || !st.node || !st.n_out) {
        rc = dr_err_set(err, DR_ENOMEM, "out of memory");
        goto out;
    }
    int nk = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, nodes) st.node[nk++] = it;
    for (int i = 0; i < nn && !rc; i++)
        rc = symbol_node(&st, i, err);
    if (rc)
        goto out;
    int hn, ho;
    if (parse_entry(heads->child, nn, &hn, &ho) || ho >= st.n_out[hn] || st.val_of[hn] < 0) {
        rc = dr_err_set(err, DR_EINVAL, "symbol: bad 'heads'");
        goto out;
    }
    g->output = st.val_of[hn] + ho;
    if (g->input < 0) {
        rc = dr_err_set(err, DR_EINVAL, "symbol: no data input");
        goto out;
    }
    g->in_dims[0] = 1;
out:
    free(st.val_of);
    free(st.in);
    free(st.n_out);
    free(st.node);
    cJSON_Delete(root);
    return rc;
}

int split_lines(const void *text, size_t len, char ***lines_out, size_t *n_out, char **buf_out,
                dr_err *err) {
    *lines_out = NULL;
    *n_out = 0;
    *buf_out = NULL;
    if (len > ((size_t)64 << 20))
        return dr_err_set(err, DR_ETOOBIG, "labels: %zu bytes", len);
    char *buf = malloc(len + 1);
    if (!buf)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    if (len)
        memcpy(buf, text, len);
    buf[len] = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n')
            n++;
    n++;
    if (n > LOADER_MAX_LABELS) {
        free(buf);
        return dr_err_set(err, DR_ETOOBIG, "labels: %zu lines", n);
    }
    char **lines = malloc(sizeof(char *) * n);
    if (!lines) {
        free(buf);
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    }
    size_t k = 0;
    char *p = buf;
    while (p <= buf + len) {
        char *e = memchr(p, '\n', (size_t)(buf + len - p));
        if (!e)
            e = buf + len;
        *e = 0;
        if (e > p && e[-1] == '\r')
            e[-1] = 0;
        if (*p || e < buf + len)
            lines[k++] = p;
        p = e + 1;
    }
    *lines_out = lines;
    *n_out = k;
    *buf_out = buf;
    return 0;
}
