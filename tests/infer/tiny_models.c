/* Tiny test models and photos (see tiny_models.h). */
#include "tiny_models.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "derecho/buffer.h"
#include "onnx/onnx.pb-c.h"

const char tiny_synset[] = "n00000001 red\nn00000002 green\nn00000003 blue\n";

/* Weights, OIHW. */
static void conv3_w(float *w, int cout) {
    memset(w, 0, sizeof(float) * (size_t)cout * 27);
    for (int o = 0; o < cout && o < 3; o++)
        w[(o * 3 + o) * 9 + 4] = 1.0f;
}
static void eye(float *w, int n, int m, float s) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            w[i * m + j] = i == j ? s : 0.0f;
}

typedef struct param {
    const char *key;
    int ndim;
    int64_t dims[4];
    float *data;
} param;

static uint16_t f2h(float f) { /* exact for the small values used here */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) == 0)
        return (uint16_t)(u >> 16);
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    return (uint16_t)((u >> 16 & 0x8000) | (uint32_t)e << 10 | (u >> 13 & 0x3ff));
}

static void put_params(dr_buf *b, const param *p, int n, const tiny_opts *o) {
    dr_buf_put_u64(b, 0x112);
    dr_buf_put_u64(b, 0);
    dr_buf_put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        if (!o->legacy) {
            dr_buf_put_u32(b, 0xF993FAC9u);
            dr_buf_put_u32(b, 0);
        }
        dr_buf_put_u32(b, (uint32_t)p[i].ndim);
        for (int k = 0; k < p[i].ndim; k++) {
            if (o->legacy)
                dr_buf_put_u32(b, (uint32_t)p[i].dims[k]);
            else
                dr_buf_put_u64(b, (uint64_t)p[i].dims[k]);
            numel *= p[i].dims[k];
        }
        dr_buf_put_u32(b, 1);
        dr_buf_put_u32(b, 0);
        dr_buf_put_u32(b, o->f16 ? 2 : 0);
        for (int64_t k = 0; k < numel; k++) {
            if (o->f16) {
                dr_buf_put_u16(b, f2h(p[i].data[k]));
            } else {
                uint32_t u;
                memcpy(&u, &p[i].data[k], 4);
                dr_buf_put_u32(b, u);
            }
        }
    }
    dr_buf_put_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        dr_buf_put_u64(b, strlen(p[i].key));
        dr_buf_put_bytes(b, p[i].key, strlen(p[i].key));
    }
}

int tiny_mxnet(const tiny_opts *o, tiny_bytes *symbol, tiny_bytes *params) {
    int cout = o->conv_cout ? o->conv_cout : 3, ncls = o->fc_classes ? o->fc_classes : 3;
    static float w1[3 * 27 * 2], g1[3] = {2, 2, 2}, b1[3] = {0, 0, 0}, m1[3] = {0, 0, 0},
                                 v1[3] = {4, 4, 4}, w2[9], fc[30], fcb[10];
    conv3_w(w1, cout);
    eye(w2, 3, 3, 1.0f);
    eye(fc, ncls, 3, 10.0f);
    memset(fcb, 0, sizeof(fcb));
    param p[] = {
        {"arg:c1_weight", 4, {cout, 3, 3, 3}, w1},
        {"arg:bn_gamma", 1, {3}, g1},
        {"arg:bn_beta", 1, {3}, b1},
        {"aux:bn_running_mean", 1, {3}, m1},
        {"aux:bn_running_var", 1, {3}, v1},
        {"arg:c2_weight", 4, {3, 3, 1, 1}, w2},
        {"arg:fc_weight", 2, {ncls, 3}, fc},
        {"arg:fc_bias", 1, {ncls}, fcb},
    };
    dr_buf b;
    dr_buf_init(&b, 0);
    put_params(&b, p, 8, o);
    params->data = dr_buf_steal(&b, &params->len);
    const char *ak = o->legacy ? "param" : "attrs";
    char *js = malloc(8192);
    if (!js || !params->data)
        return -1;
    /* Older files write two-element inputs; use them in the legacy variant. */
    const char *v = o->legacy ? "" : ", 0";
    snprintf(
        js, 8192,
        "{\"nodes\": ["
        "{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"      /*0*/
        "{\"op\":\"null\",\"name\":\"c1_weight\",\"inputs\":[]}," /*1*/
        "{\"op\":\"Convolution\",\"name\":\"c1\",\"%s\":{\"kernel\":\"(3, 3)\",\"pad\":\"(1, "
        "1)\",\"num_filter\":\"%d\",\"no_bias\":\"True\"%s%s},\"inputs\":[[0,0%s],[1,0%s]]}," /*2*/
        "{\"op\":\"null\",\"name\":\"bn_gamma\",\"inputs\":[]},"                              /*3*/
        "{\"op\":\"null\",\"name\":\"bn_beta\",\"inputs\":[]},"                               /*4*/
        "{\"op\":\"null\",\"name\":\"bn_running_mean\",\"inputs\":[]},"                       /*5*/
        "{\"op\":\"null\",\"name\":\"bn_running_var\",\"inputs\":[]},"                        /*6*/
        "{\"op\":\"BatchNorm\",\"name\":\"bn\",\"%s\":{\"eps\":\"0\",\"fix_gamma\":\"False\"},"
        "\"inputs\":[[2,0%s],[3,0%s],[4,0%s],[5,0%s],[6,0%s]]}," /*7*/
        "{\"op\":\"Activation\",\"name\":\"relu\",\"%s\":{\"act_type\":\"relu\"},\"inputs\":[[7,0%"
        "s]]},"
        "{\"op\":\"Pooling\",\"name\":\"pool\",\"%s\":{\"kernel\":\"(2, 2)\",\"stride\":\"(2, "
        "2)\",\"pool_type\":\"max\",\"pooling_convention\":\"valid\"},\"inputs\":[[8,0%s]]}," /*9*/
        "{\"op\":\"null\",\"name\":\"c2_weight\",\"inputs\":[]},"                             /*10*/
        "{\"op\":\"Convolution\",\"name\":\"c2\",\"%s\":{\"kernel\":\"(1, 1)\",\"num_filter\":"
        "\"3\",\"no_bias\":\"True\"},\"inputs\":[[9,0%s],[10,0%s]]},"                /*11*/
        "{\"op\":\"elemwise_add\",\"name\":\"plus\",\"inputs\":[[11,0%s],[9,0%s]]}," /*12*/
        "{\"op\":\"Pooling\",\"name\":\"gap\",\"%s\":{\"global_pool\":\"True\",\"kernel\":\"(1, "
        "1)\",\"pool_type\":\"avg\"},\"inputs\":[[12,0%s]]},"      /*13*/
        "{\"op\":\"%s\",\"name\":\"flat\",\"inputs\":[[13,0%s]]}," /*14*/
        "{\"op\":\"null\",\"name\":\"fc_weight\",\"inputs\":[]},"  /*15*/
        "{\"op\":\"null\",\"name\":\"fc_bias\",\"inputs\":[]},"    /*16*/
        "{\"op\":\"FullyConnected\",\"name\":\"fc\",\"%s\":{\"num_hidden\":\"%d\"},"
        "\"inputs\":[[14,0%s],[15,0%s],[16,0%s]]},"                                      /*17*/
        "{\"op\":\"null\",\"name\":\"softmax_label\",\"inputs\":[]},"                    /*18*/
        "{\"op\":\"SoftmaxOutput\",\"name\":\"softmax\",\"inputs\":[[17,0%s],[18,0%s]]}" /*19*/
        "], \"arg_nodes\": [0,1,3,4,5,6,10,15,16,18], \"heads\": [[19,0%s]],"
        " \"attrs\": {\"mxnet_version\": [\"int\", 10600]}}",
        ak, cout, o->extra_attr ? "," : "", o->extra_attr ? o->extra_attr : "", v, v, ak, v, v, v,
        v, v, ak, v, ak, v, ak, v, v, v, v, ak, v, o->extra_op ? o->extra_op : "Flatten", v, ak,
        ncls, v, v, v, v, v, v);
    symbol->data = (uint8_t *)js;
    symbol->len = strlen(js);
    return 0;
}

/* ---- ONNX ------------------------------------------------------------------------------ */

static Onnx__TensorProto *tensor(const char *name, int ndim, const int64_t *dims, const float *data,
                                 int mode /*0 typed, 1 raw, 2 f16 raw*/) {
    Onnx__TensorProto *t = calloc(1, sizeof(*t));
    onnx__tensor_proto__init(t);
    t->name = strdup(name);
    t->n_dims = (size_t)ndim;
    t->dims = malloc(sizeof(int64_t) * 4);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (t->dims[i] = dims[i]);
    t->has_data_type = 1;
    if (mode == 0) {
        t->data_type = 1;
        t->n_float_data = (size_t)n;
        t->float_data = malloc(sizeof(float) * (size_t)n);
        memcpy(t->float_data, data, sizeof(float) * (size_t)n);
    } else if (mode == 1) {
        t->data_type = 1;
        t->has_raw_data = 1;
        t->raw_data.len = sizeof(float) * (size_t)n;
        t->raw_data.data = malloc(t->raw_data.len);
        memcpy(t->raw_data.data, data, t->raw_data.len);
    } else {
        t->data_type = 10;
        t->has_raw_data = 1;
        t->raw_data.len = 2 * (size_t)n;
        t->raw_data.data = malloc(t->raw_data.len);
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = f2h(data[i]);
            memcpy(t->raw_data.data + 2 * i, &h, 2);
        }
    }
    return t;
}

static Onnx__AttributeProto *attr_ints(const char *name, int n, const int64_t *v) {
    Onnx__AttributeProto *a = calloc(1, sizeof(*a));
    onnx__attribute_proto__init(a);
    a->name = strdup(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)n;
    a->ints = malloc(sizeof(int64_t) * (size_t)n);
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)n);
    return a;
}

static Onnx__AttributeProto *attr_int(const char *name, int64_t v) {
    Onnx__AttributeProto *a = calloc(1, sizeof(*a));
    onnx__attribute_proto__init(a);
    a->name = strdup(name);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    return a;
}

static Onnx__NodeProto *node(const char *op, const char *name, int n_in, const char **in,
                             const char *out, int n_attr, Onnx__AttributeProto **attrs) {
    Onnx__NodeProto *n = calloc(1, sizeof(*n));
    onnx__node_proto__init(n);
    n->op_type = strdup(op);
    n->name = strdup(name);
    n->n_input = (size_t)n_in;
    n->input = malloc(sizeof(char *) * (size_t)n_in);
    for (int i = 0; i < n_in; i++)
        n->input[i] = strdup(in[i]);
    n->n_output = 1;
    n->output = malloc(sizeof(char *));
    n->output[0] = strdup(out);
    n->n_attribute = (size_t)n_attr;
    n->attribute = malloc(sizeof(void *) * (size_t)(n_attr ? n_attr : 1));
    for (int i = 0; i < n_attr; i++)
        n->attribute[i] = attrs[i];
    return n;
}

static Onnx__ValueInfoProto *value_info(const char *name, int ndim, const int64_t *dims) {
    Onnx__ValueInfoProto *v = calloc(1, sizeof(*v));
    onnx__value_info_proto__init(v);
    v->name = strdup(name);
    v->type = calloc(1, sizeof(*v->type));
    onnx__type_proto__init(v->type);
    v->type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    v->type->tensor_type = calloc(1, sizeof(*v->type->tensor_type));
    onnx__type_proto__tensor__init(v->type->tensor_type);
    v->type->tensor_type->has_elem_type = 1;
    v->type->tensor_type->elem_type = 1;
    Onnx__TensorShapeProto *s = calloc(1, sizeof(*s));
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)ndim;
    s->dim = malloc(sizeof(void *) * (size_t)ndim);
    for (int i = 0; i < ndim; i++) {
        s->dim[i] = calloc(1, sizeof(*s->dim[i]));
        onnx__tensor_shape_proto__dimension__init(s->dim[i]);
        s->dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        s->dim[i]->dim_value = dims[i];
    }
    v->type->tensor_type->shape = s;
    return v;
}

int tiny_onnx(const tiny_opts *o, tiny_bytes *out) {
    int cout = o->conv_cout ? o->conv_cout : 3, ncls = o->fc_classes ? o->fc_classes : 3;
    float w1[3 * 27 * 2], g1[3] = {2, 2, 2}, b1[3] = {0, 0, 0}, m1[3] = {0, 0, 0},
                          v1[3] = {4, 4, 4}, w2[9], fc[30], fcb[10] = {0};
    conv3_w(w1, cout);
    eye(w2, 3, 3, 1.0f);
    eye(fc, ncls, 3, 10.0f);
    int64_t d_w1[4] = {cout, 3, 3, 3}, d3[1] = {3}, d_w2[4] = {3, 3, 1, 1}, d_fc[2] = {ncls, 3},
            d_fcb[1] = {ncls}, d_in[4] = {1, 3, 8, 8}, d_out[2] = {1, ncls};
    Onnx__GraphProto *g = calloc(1, sizeof(*g));
    onnx__graph_proto__init(g);
    g->name = strdup("tiny");
    g->n_initializer = 8;
    g->initializer = malloc(sizeof(void *) * 8);
    g->initializer[0] = tensor("w1", 4, d_w1, w1, 1);
    g->initializer[1] = tensor("g1", 1, d3, g1, 0);
    g->initializer[2] = tensor("b1", 1, d3, b1, 0);
    g->initializer[3] = tensor("m1", 1, d3, m1, 1);
    g->initializer[4] = tensor("v1", 1, d3, v1, 1);
    g->initializer[5] = tensor("w2", 4, d_w2, w2, 2); /* float16 */
    g->initializer[6] = tensor("fc", 2, d_fc, fc, 0);
    g->initializer[7] = tensor("fcb", 1, d_fcb, fcb, 1);
    /* IR 3 style: data plus two initializers listed as inputs */
    g->n_input = 3;
    g->input = malloc(sizeof(void *) * 3);
    g->input[0] = value_info("w1", 4, d_w1);
    g->input[1] = value_info("data", 4, d_in);
    g->input[2] = value_info("fc", 2, d_fc);
    g->n_output = 1;
    g->output = malloc(sizeof(void *));
    g->output[0] = value_info("logits", 2, d_out);
    int64_t k3[2] = {3, 3}, p1[4] = {1, 1, 1, 1}, k2[2] = {2, 2};
    Onnx__AttributeProto *ca[3] = {attr_ints("kernel_shape", 2, k3), attr_ints("pads", 4, p1),
                                   NULL};
    int nca = 2;
    if (o->extra_attr)
        ca[nca++] = attr_int(o->extra_attr, 1);
    Onnx__AttributeProto *pa[2] = {attr_ints("kernel_shape", 2, k2), attr_ints("strides", 2, k2)};
    Onnx__AttributeProto *ga[1] = {attr_int("transB", 1)};
    const char *i_c1[] = {"data", "w1"}, *i_bn[] = {"c1", "g1", "b1", "m1", "v1"}, *i_r[] = {"bn"},
               *i_p[] = {"relu"}, *i_c2[] = {"pool", "w2"}, *i_add[] = {"c2", "pool"},
               *i_gap[] = {"plus"}, *i_fl[] = {"gap"}, *i_fc[] = {"flat", "fc", "fcb"};
    g->n_node = 9;
    g->node = malloc(sizeof(void *) * 9);
    g->node[0] = node("Conv", "c1", 2, i_c1, "c1", nca, ca);
    g->node[1] = node("BatchNormalization", "bn", 5, i_bn, "bn", 0, NULL);
    g->node[2] = node("Relu", "relu", 1, i_r, "relu", 0, NULL);
    g->node[3] = node("MaxPool", "pool", 1, i_p, "pool", 2, pa);
    g->node[4] = node("Conv", "c2", 2, i_c2, "c2", 0, NULL);
    g->node[5] = node("Add", "plus", 2, i_add, "plus", 0, NULL);
    g->node[6] = node("GlobalAveragePool", "gap", 1, i_gap, "gap", 0, NULL);
    g->node[7] = node(o->extra_op ? o->extra_op : "Flatten", "flat", 1, i_fl, "flat", 0, NULL);
    g->node[8] = node("Gemm", "fc", 3, i_fc, "logits", 1, ga);
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto op = ONNX__OPERATOR_SET_ID_PROTO__INIT, *ops[1] = {&op};
    op.has_version = 1;
    op.version = 9;
    m.has_ir_version = 1;
    m.ir_version = 3;
    m.n_opset_import = 1;
    m.opset_import = ops;
    m.graph = g;
    out->len = onnx__model_proto__get_packed_size(&m);
    out->data = malloc(out->len);
    onnx__model_proto__pack(&m, out->data);
    /* free the graph: protobuf-c's free_unpacked works on malloc'd trees with default allocator */
    onnx__graph_proto__free_unpacked(g, NULL);
    return 0;
}

/* ---- photos ---------------------------------------------------------------------------- */

int tiny_png(uint8_t r, uint8_t g, uint8_t b, int w, int h, tiny_bytes *out) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        px[3 * i] = r;
        px[3 * i + 1] = g;
        px[3 * i + 2] = b;
    }
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = PNG_FORMAT_RGB;
    png_alloc_size_t len = 0;
    png_image_write_to_memory(&img, NULL, &len, 0, px, 0, NULL);
    out->data = malloc(len);
    out->len = len;
    int ok = png_image_write_to_memory(&img, out->data, &len, 0, px, 0, NULL);
    free(px);
    return ok ? 0 : -1;
}

int tiny_jpeg(uint8_t r, uint8_t g, uint8_t b, int w, int h, tiny_bytes *out) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h; i++) {
        px[3 * i] = r;
        px[3 * i + 1] = g;
        px[3 * i + 2] = b;
    }
    tjhandle tj = tjInitCompress();
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    int rc = tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jb, &jl, TJSAMP_444, 95, 0);
    tjDestroy(tj);
    free(px);
    if (rc)
        return -1;
    out->data = malloc(jl);
    memcpy(out->data, jb, jl);
    out->len = jl;
    tjFree(jb);
    return 0;
}

int tiny_jpeg_cmyk(uint8_t r, uint8_t g, uint8_t b, int w, int h, tiny_bytes *out) {
    /* the inverted CMYK of Adobe files (255 = no ink), as libjpeg-turbo's own rgb_to_cmyk */
    double ink[3] = {1.0 - r / 255.0, 1.0 - g / 255.0, 1.0 - b / 255.0};
    double k = fmin(ink[0], fmin(ink[1], ink[2]));
    uint8_t cmyk[4];
    for (int c = 0; c < 3; c++)
        cmyk[c] = (uint8_t)(255.0 - (k >= 1.0 ? 0.0 : (ink[c] - k) / (1.0 - k)) * 255.0 + 0.5);
    cmyk[3] = (uint8_t)(255.0 - k * 255.0 + 0.5);
    uint8_t *px = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++)
        memcpy(px + 4 * i, cmyk, 4);
    tjhandle tj = tjInitCompress();
    unsigned char *jb = NULL;
    unsigned long jl = 0;
    int rc = tjCompress2(tj, px, w, 0, h, TJPF_CMYK, &jb, &jl, TJSAMP_444, 95, 0);
    tjDestroy(tj);
    free(px);
    if (rc)
        return -1;
    out->data = malloc(jl);
    memcpy(out->data, jb, jl);
    out->len = jl;
    tjFree(jb);
    return 0;
}

/* ---- the conv stack (its own params writer: values need no array) ------------------------ */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put32(bytes *b, uint32_t v) {
    put(b, &v, 4);
}

static void put64(bytes *b, uint64_t v) {
    put(b, &v, 8);
}

typedef tiny_array arr;

/* V2 arrays of small deterministic float32 values, then the "arg:" keys. */
static bytes params_file(const arr *a, int n) {
    bytes b = {0};
    put64(&b, 0x112);
    put64(&b, 0);
    put64(&b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        put32(&b, 0xF993FAC9u);
        put32(&b, 0);
        put32(&b, (uint32_t)a[i].ndim);
        int64_t numel = 1;
        for (int k = 0; k < a[i].ndim; k++) {
            put64(&b, (uint64_t)a[i].dims[k]);
            numel *= a[i].dims[k];
        }
        put32(&b, 1);
        put32(&b, 0);
        put32(&b, 0);
        for (int64_t k = 0; k < numel; k++) {
            float f = (float)((k * 7919) % 17 - 8) / 1024.0f;
            put(&b, &f, 4);
        }
    }
    put64(&b, (uint64_t)n);
    for (int i = 0; i < n; i++) {
        char key[48];
        int kl = snprintf(key, sizeof key, "arg:%s", a[i].name);
        put64(&b, (uint64_t)kl);
        put(&b, key, (size_t)kl);
    }
    return b;
}

int tiny_params(const tiny_array *a, int n, tiny_bytes *out) {
    bytes b = params_file(a, n);
    out->data = b.p;
    out->len = b.len;
    return 0;
}

int tiny_conv_stack(int n_shared, int channels, int k, tiny_bytes *symbol, tiny_bytes *params) {
    arr a[] = {{"w0", 4, {channels, 3, 3, 3}},
               {"w", 4, {channels, channels, k, k}},
               {"fc_weight", 2, {3, channels}},
               {"fc_bias", 1, {3}}};
    bytes pf = params_file(a, 4);
    bytes js = {0};
    char tmp[512], conv_attrs[160], conv0_attrs[160];
    snprintf(conv0_attrs, sizeof conv0_attrs,
             "\"attrs\":{\"kernel\":\"(3, 3)\",\"pad\":\"(1, 1)\","
             "\"num_filter\":\"%d\",\"no_bias\":\"True\"}",
             channels);
    snprintf(conv_attrs, sizeof conv_attrs,
             "\"attrs\":{\"kernel\":\"(%d, %d)\",\"pad\":\"(%d, %d)\","
             "\"num_filter\":\"%d\",\"no_bias\":\"True\"}",
             k, k, k / 2, k / 2, channels);
    int n = 0;
#define NODE(...)                                                                                  \
    do {                                                                                           \
        int l_ = snprintf(tmp, sizeof tmp, __VA_ARGS__);                                           \
        put(&js, tmp, (size_t)l_);                                                                 \
        n++;                                                                                       \
    } while (0)
    put(&js, "{\"nodes\":[", 10);
    NODE("{\"op\":\"null\",\"name\":\"data\",\"inputs\":[]},"); /* 0 */
    NODE("{\"op\":\"null\",\"name\":\"w0\",\"inputs\":[]},");   /* 1 */
    NODE("{\"op\":\"null\",\"name\":\"w\",\"inputs\":[]},");    /* 2 */
    NODE("{\"op\":\"Convolution\",\"name\":\"c0\",%s,\"inputs\":[[0,0,0],[1,0,0]]},", conv0_attrs);
    int prev = n - 1;
    for (int i = 0; i < n_shared; i++) {
        NODE("{\"op\":\"Convolution\",\"name\":\"c%d\",%s,\"inputs\":[[%d,0,0],[2,0,0]]},", i + 1,
             conv_attrs, prev);
        prev = n - 1;
    }
    NODE("{\"op\":\"Pooling\",\"name\":\"gp\",\"attrs\":{\"global_pool\":\"True\","
         "\"kernel\":\"(1, 1)\",\"pool_type\":\"avg\"},\"inputs\":[[%d,0,0]]},",
         prev);
    NODE("{\"op\":\"Flatten\",\"name\":\"fl\",\"inputs\":[[%d,0,0]]},", n - 1);
    NODE("{\"op\":\"null\",\"name\":\"fc_weight\",\"inputs\":[]},");
    NODE("{\"op\":\"null\",\"name\":\"fc_bias\",\"inputs\":[]},");
    NODE("{\"op\":\"FullyConnected\",\"name\":\"fc\",\"attrs\":{\"num_hidden\":\"3\"},"
         "\"inputs\":[[%d,0,0],[%d,0,0],[%d,0,0]]}",
         n - 3, n - 2, n - 1);
    snprintf(tmp, sizeof tmp, "],\"arg_nodes\":[0],\"heads\":[[%d,0,0]]}", n - 1);
    put(&js, tmp, strlen(tmp));
#undef NODE
    symbol->data = js.p;
    symbol->len = js.len;
    params->data = pf.p;
    params->len = pf.len;
    return 0;
}
