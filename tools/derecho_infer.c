/*
 * derecho-infer: command-line front end of the inference engine.
 *   derecho-infer classify --model PATH|PREFIX [--format mxnet|onnx] [--labels FILE]
 *                 [--threads N] [--backend auto|dnnl|sgemm] [--precision fp32|bf16|auto]
 *                 [--top K] [--preset seed|imagenet] photo...
 *   derecho-infer bench --model PATH|PREFIX [--format mxnet|onnx] [--labels FILE]
 *                 [--runs N] [--threads 1,2] [--backend auto|dnnl|sgemm]
 *                 [--precision fp32|bf16|auto] [photo]
 *   derecho-infer run --model PATH|PREFIX --input X.npy --output Y.npy [--threads N]
 *                 [--backend ...] [--precision ...]
 * MXNet models are named by prefix (PREFIX-symbol.json, PREFIX-0000.params or the first
 * PREFIX-*.params, synset.txt beside them unless --labels). A path ending in .onnx is ONNX.
 * --preset picks the preprocessing (default: seed for MXNet, ImageNet for ONNX).
 * bench prints ms/image at batch 1 and images/s at batch 8 (median, min and max of --runs
 * timed runs after one warm-up) and GFLOP/s, for 1 and 2 threads; it needs no synset (labels
 * "class N"); with a photo it also times whole photos (decode, preprocess, classify) at batch 1
 * and 8, the service's path. run feeds a float32 NPY tensor (N,C,H,W or C,H,W; already
 * preprocessed) to the graph and writes the raw outputs (N, classes) as float32 NPY, for
 * conformance checks against reference tensors. Unless OMP_WAIT_POLICY is set, the program
 * re-executes itself with OMP_WAIT_POLICY=PASSIVE.
 */
#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "derecho/infer.h"

/* Reads a whole file; -1 with errno set (EFBIG past the engine's model limit). */
static int read_file(const char *path, void **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || (size_t)n > DR_INFER_MAX_MODEL_BYTES) {
        fclose(f);
        errno = n < 0 ? errno : EFBIG;
        return -1;
    }
    *data = malloc((size_t)n + 1);
    if (!*data || fread(*data, 1, (size_t)n, f) != (size_t)n) {
        free(*data);
        fclose(f);
        return -1;
    }
    fclose(f);
    *len = (size_t)n;
    return 0;
}

typedef struct opts {
    const char *model, *format, *labels, *backend, *preset, *precision, *input, *output;
    bool labels_optional; /* bench, run: a missing synset gives "class N" labels */
    int threads_list[4], n_threads, runs, top;
    char **photos;
    int n_photos;
} opts;

/* Reads an MXNet model named by its prefix: symbol, params (PREFIX-0000.params or the first
 * PREFIX-*.params) and the labels (--labels, else synset.txt beside it; optional for bench and
 * run). 0, or 1 with a message (nothing left allocated). */
static int read_mxnet(const opts *o, void **sym, size_t *sl, void **par, size_t *pl, void **lab,
                      size_t *ll) {
    char path[4096], dir[4096];
    snprintf(path, sizeof(path), "%s-symbol.json", o->model);
    if (read_file(path, sym, sl)) {
        fprintf(stderr,
                "derecho-infer: cannot read %s: %s\n"
                "  (an MXNet model is named by its PREFIX, the path before -symbol.json: "
                "--model models/demo-shapes/shapes reads shapes-symbol.json and "
                "shapes-0000.params)\n",
                path, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof(path), "%s-0000.params", o->model);
    if (read_file(path, par, pl)) {
        glob_t gl;
        snprintf(path, sizeof(path), "%s-*.params", o->model);
        int found = glob(path, 0, NULL, &gl) == 0 && gl.gl_pathc > 0;
        if (!found || read_file(gl.gl_pathv[0], par, pl)) {
            fprintf(stderr, "derecho-infer: no params file %s\n", path);
            if (found)
                globfree(&gl);
            free(*sym);
            return 1;
        }
        globfree(&gl);
    }
    snprintf(dir, sizeof(dir), "%s", o->model);
    if (o->labels)
        snprintf(path, sizeof(path), "%s", o->labels);
    else
        snprintf(path, sizeof(path), "%s/synset.txt", dirname(dir));
    if (read_file(path, lab, ll)) {
        if (!o->labels_optional || o->labels) {
            fprintf(stderr,
                    "derecho-infer: cannot read the labels %s: %s (--labels names another)\n", path,
                    strerror(errno));
            free(*sym);
            free(*par);
            return 1;
        }
        *lab = NULL;
        *ll = 0;
    }
    return 0;
}

/* --backend and --precision on a loaded model; 0, or 1 with a message (model freed). */
static int apply_settings(const opts *o, dr_model *m) {
    if (o->backend) {
        dr_infer_backend be = !strcmp(o->backend, "dnnl")    ? DR_BACKEND_DNNL
                              : !strcmp(o->backend, "sgemm") ? DR_BACKEND_SGEMM
                                                             : DR_BACKEND_AUTO;
        if (dr_model_set_backend(m, be)) {
            fprintf(stderr, "backend %s unavailable\n", o->backend);
            dr_model_free(m);
            return 1;
        }
    }
    dr_precision prec;
    if (o->precision && dr_precision_parse(o->precision, &prec) == 0 &&
        dr_model_set_precision(m, prec) != 0) {
        fprintf(stderr,
                "precision %s unavailable: this CPU or build has no native bf16 "
                "(needs oneDNN and AVX512_BF16 or AMX)\n",
                o->precision);
        dr_model_free(m);
        return 1;
    }
    return 0;
}

static int load_model(const opts *o, dr_model **m) {
    dr_err err = {0};
    int is_onnx = o->format
                      ? !strcmp(o->format, "onnx")
                      : (strlen(o->model) > 5 && !strcmp(o->model + strlen(o->model) - 5, ".onnx"));
    void *a = NULL, *b = NULL, *c = NULL;
    size_t al = 0, bl = 0, cl = 0;
    int rc;
    dr_load_options lo;
    dr_load_options_default(&lo);
    lo.labels_optional = o->labels_optional;
    dr_preprocess pre;
    if (o->preset && !strcmp(o->preset, "seed")) {
        dr_preprocess_seed(&pre);
        lo.pre = &pre;
    } else if (o->preset && !strcmp(o->preset, "imagenet")) {
        dr_preprocess_imagenet(&pre);
        lo.pre = &pre;
    } else if (o->preset) {
        fprintf(stderr, "unknown preset %s (seed or imagenet)\n", o->preset);
        return 1;
    }
    if (is_onnx) {
        if (read_file(o->model, &a, &al)) {
            fprintf(stderr, "derecho-infer: cannot read %s: %s\n", o->model, strerror(errno));
            return 1;
        }
        if (o->labels && read_file(o->labels, &b, &bl)) {
            fprintf(stderr, "derecho-infer: cannot read %s: %s\n", o->labels, strerror(errno));
            free(a);
            return 1;
        }
        rc = dr_model_load_onnx_ex(a, al, b, bl, &lo, m, &err);
    } else {
        if (read_mxnet(o, &a, &al, &b, &bl, &c, &cl))
            return 1;
        rc = dr_model_load_mxnet_ex(c, cl, a, al, b, bl, &lo, m, &err);
    }
    free(a);
    free(b);
    free(c);
    if (rc) {
        fprintf(stderr, "load failed: %s (%s)\n", err.msg, dr_strerror(rc));
        return 1;
    }
    return apply_settings(o, *m);
}

static int cmd_classify(const opts *o) {
    dr_model *m;
    if (load_model(o, &m))
        return 1;
    dr_model_set_threads(m, o->threads_list[0]);
    int bad = 0;
    for (int i = 0; i < o->n_photos; i++) {
        void *p;
        size_t pl;
        dr_err err = {0};
        dr_class_score top[16];
        size_t n = 0;
        if (read_file(o->photos[i], &p, &pl)) {
            fprintf(stderr, "%s: cannot read\n", o->photos[i]);
            bad = 1;
            continue;
        }
        int rc = dr_model_classify(m, p, pl, top, (size_t)o->top, &n, &err);
        free(p);
        if (rc) {
            fprintf(stderr, "%s: %s\n", o->photos[i], err.msg);
            bad = 1;
            continue;
        }
        printf("%s\n", o->photos[i]);
        for (size_t k = 0; k < n; k++)
            printf("  %zu. %.6f  [%zu] %s\n", k + 1, top[k].score, top[k].index, top[k].label);
    }
    dr_model_free(m);
    return bad;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * bench with a photo: decode + preprocess + classify (dr_model_classify_batch, the service's
 * path) of the photo at batch 1 and as a batch of 8 copies, per thread count: the engine's own
 * rate for whole photos, to compare the service with like for like. t: --runs doubles.
 */
static int bench_photo(const opts *o, dr_model *m, double *t) {
    void *photo = NULL;
    size_t photo_len = 0;
    if (read_file(o->photos[0], &photo, &photo_len))
        return 1;
    const void *photos[8];
    size_t lens[8], n_out[8];
    dr_class_score top[8];
    for (int i = 0; i < 8; i++) {
        photos[i] = photo;
        lens[i] = photo_len;
    }
    int rc = 0;
    for (int ti = 0; ti < o->n_threads && rc == 0; ti++) {
        int th = o->threads_list[ti];
        dr_model_set_threads(m, th);
        for (int batch = 1; batch <= 8 && rc == 0; batch += 7) {
            dr_err err = {0};
            if (dr_model_classify_batch(m, photos, lens, (size_t)batch, top, 1, n_out, &err)) {
                fprintf(stderr, "%s: %s\n", o->photos[0], err.msg); /* warm-up */
                rc = 1;
                break;
            }
            for (int r = 0; r < o->runs; r++) {
                double t0 = now_s();
                dr_model_classify_batch(m, photos, lens, (size_t)batch, top, 1, n_out, &err);
                t[r] = (now_s() - t0) / batch;
            }
            qsort(t, (size_t)o->runs, sizeof(double), cmp_double);
            double med = t[o->runs / 2];
            printf("photo %s: threads %d batch %d: %.2f ms/photo (min %.2f max %.2f), "
                   "%.1f photos/s, decoding included\n",
                   o->photos[0], th, batch, med * 1e3, t[0] * 1e3, t[o->runs - 1] * 1e3, 1.0 / med);
        }
    }
    free(photo);
    return rc;
}

static int cmd_bench(const opts *o) {
    dr_model *m;
    if (load_model(o, &m))
        return 1;
    uint32_t C, H, W;
    dr_model_input_shape(m, &C, &H, &W);
    size_t per = (size_t)C * H * W, nc = dr_model_num_classes(m);
    float *in = malloc(sizeof(float) * per * 8), *out = malloc(sizeof(float) * nc * 8);
    double *t = malloc(sizeof(double) * (size_t)o->runs);
    srand(1);
    for (size_t i = 0; i < per * 8; i++)
        in[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    double gflop = dr_model_flops_per_image(m) / 1e9;
    printf("model %s: %.3f GFLOP/image, oneDNN %s, precision %s\n", o->model, gflop,
           dr_infer_have_dnnl() ? "available" : "absent",
           dr_model_precision(m) == DR_PRECISION_BF16 ? "bf16" : "fp32");
    for (int ti = 0; ti < o->n_threads; ti++) {
        int th = o->threads_list[ti];
        dr_model_set_threads(m, th);
        for (int batch = 1; batch <= 8; batch += 7) {
            dr_err err = {0};
            if (dr_model_run(m, in, (size_t)batch, out, nc * 8, &err)) { /* warm-up */
                fprintf(stderr, "run failed: %s\n", err.msg);
                return 1;
            }
            for (int r = 0; r < o->runs; r++) {
                double t0 = now_s();
                dr_model_run(m, in, (size_t)batch, out, nc * 8, &err);
                t[r] = (now_s() - t0) / batch;
            }
            qsort(t, (size_t)o->runs, sizeof(double), cmp_double);
            double med = t[o->runs / 2];
            printf("threads %d batch %d: %.2f ms/image (min %.2f max %.2f), %.1f images/s, "
                   "%.1f GFLOP/s\n",
                   th, batch, med * 1e3, t[0] * 1e3, t[o->runs - 1] * 1e3, 1.0 / med, gflop / med);
        }
    }
    int rc = o->n_photos ? bench_photo(o, m, t) : 0;
    free(in);
    free(out);
    free(t);
    dr_model_free(m);
    return rc;
}

/* ---- NPY (float32, C order) for `run` ---------------------------------------------------- */

#define NPY_MAX_HEADER 65536

/* Parses a float32 C-order NPY file: dims into shape[0..*ndim), data pointer into the buffer.
 * Returns 0 or -1 with a message on stderr. */
static int npy_parse(const char *path, const uint8_t *b, size_t len, int64_t *shape, int *ndim,
                     const float **data) {
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "derecho-infer: %s is not an NPY file\n", path);
        return -1;
    }
    size_t hl, off;
    if (b[6] == 1) {
        hl = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if ((b[6] == 2 || b[6] == 3) && len >= 12) {
        hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        fprintf(stderr, "derecho-infer: %s: NPY version %u not supported\n", path, b[6]);
        return -1;
    }
    if (hl > NPY_MAX_HEADER || hl > len - off) {
        fprintf(stderr, "derecho-infer: %s: truncated NPY header\n", path);
        return -1;
    }
    static char h[NPY_MAX_HEADER + 1];
    memcpy(h, b + off, hl);
    h[hl] = 0;
    const char *descr = strstr(h, "'descr'"), *fo = strstr(h, "'fortran_order'"),
               *sh = strstr(h, "'shape'");
    const char *colon = fo ? strchr(fo, ':') : NULL;
    if (!descr || !colon || !sh || !strstr(descr, "'<f4'") || strncmp(colon, ": False", 7)) {
        fprintf(stderr, "derecho-infer: %s: want little-endian float32 ('<f4') in C order\n", path);
        return -1;
    }
    const char *p = strchr(sh, '(');
    *ndim = 0;
    int64_t numel = 1;
    while (p && *p && *p != ')') {
        p++;
        while (*p == ' ')
            p++;
        if (*p == ')')
            break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v > (1 << 28) || *ndim >= 6) {
            fprintf(stderr, "derecho-infer: %s: bad shape\n", path);
            return -1;
        }
        shape[(*ndim)++] = v;
        numel *= v;
        if (numel > ((int64_t)1 << 28)) {
            fprintf(stderr, "derecho-infer: %s: tensor too large\n", path);
            return -1;
        }
        p = end;
        while (*p == ' ')
            p++;
        if (*p != ',' && *p != ')') {
            fprintf(stderr, "derecho-infer: %s: bad shape\n", path);
            return -1;
        }
    }
    if (!p || (size_t)numel * 4 != len - off - hl) {
        fprintf(stderr, "derecho-infer: %s: shape does not match the %zu data bytes\n", path,
                len - off - hl);
        return -1;
    }
    *data = (const float *)(b + off + hl);
    return 0;
}

/* Writes a (rows, cols) float32 NPY file (version 1.0, header padded to 64 bytes). */
static int npy_write(const char *path, const float *v, size_t rows, size_t cols) {
    char h[128];
    int n = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     rows, cols);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned hl = (unsigned)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc((int)(hl & 0xff), f);
    fputc((int)(hl >> 8), f);
    fwrite(h, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t w = fwrite(v, sizeof(float), rows * cols, f);
    return fclose(f) != 0 || w != rows * cols ? -1 : 0;
}

static int cmd_run(const opts *o) {
    void *raw = NULL;
    size_t len = 0;
    if (read_file(o->input, &raw, &len)) {
        fprintf(stderr, "derecho-infer: cannot read %s: %s\n", o->input, strerror(errno));
        return 1;
    }
    int64_t shape[6];
    int nd = 0;
    const float *data;
    dr_model *m;
    if (npy_parse(o->input, raw, len, shape, &nd, &data) || load_model(o, &m)) {
        free(raw);
        return 1;
    }
    uint32_t C, H, W;
    dr_model_input_shape(m, &C, &H, &W);
    int64_t n = nd == 4 ? shape[0] : 1;
    const int64_t *chw = nd == 4 ? shape + 1 : shape;
    int rc = 0;
    if ((nd != 3 && nd != 4) || chw[0] != C || chw[1] != H || chw[2] != W || n < 1 ||
        n > DR_INFER_MAX_BATCH) {
        fprintf(stderr,
                "derecho-infer: %s: want shape (N, %u, %u, %u) with N 1..%d, or (%u, %u, %u)\n",
                o->input, C, H, W, DR_INFER_MAX_BATCH, C, H, W);
        rc = 1;
    }
    size_t nc = dr_model_num_classes(m), per = (size_t)C * H * W;
    float *out = rc ? NULL : malloc(sizeof(float) * nc * (size_t)n);
    float *in = rc ? NULL : malloc(sizeof(float) * per * (size_t)n);
    if (!rc && (!out || !in)) {
        fprintf(stderr, "derecho-infer: out of memory\n");
        rc = 1;
    }
    if (!rc) {
        dr_err err = {0};
        memcpy(in, data, sizeof(float) * per * (size_t)n); /* the file's data may be unaligned */
        dr_model_set_threads(m, o->threads_list[0]);
        if (dr_model_run(m, in, (size_t)n, out, nc * (size_t)n, &err)) {
            fprintf(stderr, "derecho-infer: run failed: %s\n", err.msg);
            rc = 1;
        } else if (npy_write(o->output, out, (size_t)n, nc)) {
            fprintf(stderr, "derecho-infer: cannot write %s: %s\n", o->output, strerror(errno));
            rc = 1;
        } else {
            printf("%s: %lld x %zu outputs\n", o->output, (long long)n, nc);
        }
    }
    free(in);
    free(out);
    free(raw);
    dr_model_free(m);
    return rc;
}

static const char help_text[] =
    "derecho-infer: classify photos with an MXNet or ONNX model, or time the engine.\n"
    "\n"
    "usage: derecho-infer classify --model PATH|PREFIX [options] photo...\n"
    "       derecho-infer bench --model PATH|PREFIX [options] [photo]\n"
    "       derecho-infer run --model PATH|PREFIX --input X.npy --output Y.npy [options]\n"
    "       derecho-infer --help\n"
    "\n"
    "  --model PATH|PREFIX  required. A path ending in .onnx is an ONNX model; otherwise the\n"
    "                       MXNet PREFIX: PREFIX-symbol.json and PREFIX-0000.params (or the\n"
    "                       first PREFIX-*.params), labels in synset.txt beside them\n"
    "  --format mxnet|onnx  override the format guess (default: from the name)\n"
    "  --labels FILE        labels, one per line (default: synset.txt beside the model; none\n"
    "                       for ONNX)\n"
    "  --preset seed|imagenet  preprocessing (default: seed for MXNet, imagenet for ONNX)\n"
    "  --backend auto|dnnl|sgemm  convolution backend (default auto: oneDNN if built in)\n"
    "  --precision fp32|bf16|auto  oneDNN convolution arithmetic (default fp32; auto: bf16\n"
    "                       where the CPU has native bf16, AVX512_BF16 or AMX)\n"
    "  --threads N[,N...]   threads (classify: first value, default 1; bench: each value,\n"
    "                       default 1,2; at most 4 values)\n"
    "  --top K              classify: the K best classes per photo, 1..16 (default 5)\n"
    "  --runs N             bench: timed runs after one warm-up, >= 1 (default 10)\n"
    "  --input X.npy        run: float32 NPY tensor (N,C,H,W) or (C,H,W), preprocessed\n"
    "  --output Y.npy       run: where the raw graph outputs (N, classes) are written\n"
    "\n"
    "classify prints each photo's top K classes with their probabilities; bench prints\n"
    "ms/image at batch 1, images/s at batch 8 (median, min, max) and GFLOP/s per thread count;\n"
    "bench and run need no synset (labels \"class N\"); bench with a photo also times whole\n"
    "photos (decode + classify, batch 1 and 8); run writes the raw outputs.\n"
    "Exit codes: 0 done, 1 a model or photo could not be used, 2 bad arguments.\n"
    "\n"
    "examples:\n"
    "  derecho-infer classify --model models/demo-shapes/shapes "
    "models/demo-shapes/photos/red-circle.jpg\n"
    "  derecho-infer bench --model models/demo-shapes/shapes --runs 5 --threads 1\n";

static int usage_error(const char *fmt, const char *value) {
    fprintf(stderr, "derecho-infer: ");
    fprintf(stderr, fmt, value);
    fprintf(stderr, "\n\n%s", help_text);
    return 2;
}

/* A whole decimal int in [min, max], or -1. */
static int parse_int(const char *text, int min, int max) {
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return -1;
    return (int)value;
}

static bool one_of(const char *value, const char *a, const char *b, const char *c) {
    return !strcmp(value, a) || !strcmp(value, b) || (c && !strcmp(value, c));
}

/* Parses one option with its value (argv[*i], argv[*i + 1]); 0 or the exit code 2. */
static int parse_option(opts *o, char **argv, int argc, int *i) {
    const char *a = argv[*i];
    static const char *const with_value[] = {"--model",     "--format", "--labels", "--preset",
                                             "--backend",   "--runs",   "--top",    "--threads",
                                             "--precision", "--input",  "--output"};
    bool known = false;
    for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
        known |= !strcmp(a, with_value[k]);
    if (!known)
        return usage_error("unknown option '%s'", a);
    if (*i + 1 >= argc)
        return usage_error("%s needs a value", a);
    const char *v = argv[++*i];
    if (!strcmp(a, "--model"))
        o->model = v;
    else if (!strcmp(a, "--labels"))
        o->labels = v;
    else if (!strcmp(a, "--input"))
        o->input = v;
    else if (!strcmp(a, "--output"))
        o->output = v;
    else if (!strcmp(a, "--format") && one_of(v, "mxnet", "onnx", NULL))
        o->format = v;
    else if (!strcmp(a, "--preset") && one_of(v, "seed", "imagenet", NULL))
        o->preset = v;
    else if (!strcmp(a, "--backend") && one_of(v, "auto", "dnnl", "sgemm"))
        o->backend = v;
    else if (!strcmp(a, "--precision") && one_of(v, "fp32", "bf16", "auto"))
        o->precision = v;
    else if (!strcmp(a, "--runs") && (o->runs = parse_int(v, 1, 1000000)) > 0)
        return 0;
    else if (!strcmp(a, "--top") && (o->top = parse_int(v, 1, 16)) > 0)
        return 0;
    else if (!strcmp(a, "--threads")) {
        char tail = 0;
        o->n_threads = sscanf(v, "%d,%d,%d,%d%c", &o->threads_list[0], &o->threads_list[1],
                              &o->threads_list[2], &o->threads_list[3], &tail);
        for (int t = 0; t < o->n_threads && t < 4; t++)
            if (o->threads_list[t] < 1 || o->threads_list[t] > 256)
                o->n_threads = 0;
        if (o->n_threads < 1 || o->n_threads > 4)
            return usage_error("--threads wants 1 to 4 thread counts like 1,2, not '%s'", v);
    } else {
        static const char *const wants[][2] = {
            {"--format", "mxnet or onnx"},        {"--preset", "seed or imagenet"},
            {"--backend", "auto, dnnl or sgemm"}, {"--precision", "fp32, bf16 or auto"},
            {"--runs", "a whole number >= 1"},    {"--top", "a whole number from 1 to 16"}};
        for (size_t k = 0; k < sizeof wants / sizeof *wants; k++)
            if (!strcmp(a, wants[k][0])) {
                fprintf(stderr, "derecho-infer: %s wants %s, not '%s'\n\n%s", a, wants[k][1], v,
                        help_text);
                return 2;
            }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return usage_error("%s", "no command (classify or bench)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(help_text, stdout);
        return 0;
    }
    int classify = !strcmp(argv[1], "classify"), run = !strcmp(argv[1], "run");
    if (!classify && !run && strcmp(argv[1], "bench"))
        return usage_error("unknown command '%s' (classify, bench or run)", argv[1]);
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(help_text, stdout);
            return 0;
        }
    }
    /* OpenMP (oneDNN's runtime) reads its wait policy at start-up: spinning workers are
     * ruinous on a shared, oversubscribed machine, so re-run once with the passive policy. */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        execv("/proc/self/exe", argv);
    }
    opts o = {0};
    o.runs = 10;
    o.top = 5;
    o.threads_list[0] = 1;
    o.threads_list[1] = 2;
    o.n_threads = classify || run ? 1 : 2;
    o.labels_optional = !classify;
    o.photos = calloc((size_t)argc, sizeof(char *));
    int rc = 0;
    for (int i = 2; i < argc && rc == 0; i++) {
        if (argv[i][0] == '-')
            rc = parse_option(&o, argv, argc, &i);
        else
            o.photos[o.n_photos++] = argv[i];
    }
    if (rc == 0 && !o.model)
        rc = usage_error("%s", "--model is required");
    else if (rc == 0 && classify && o.n_photos == 0)
        rc = usage_error("%s", "classify needs at least one photo");
    else if (rc == 0 && run && o.n_photos > 0)
        rc = usage_error("run takes no photos ('%s')", o.photos[0]);
    else if (rc == 0 && !classify && o.n_photos > 1)
        rc = usage_error("bench takes at most one photo ('%s')", o.photos[1]);
    else if (rc == 0 && run && (!o.input || !o.output))
        rc = usage_error("%s", "run needs --input X.npy and --output Y.npy");
    if (rc == 0)
        rc = classify ? cmd_classify(&o) : run ? cmd_run(&o) : cmd_bench(&o);
    free(o.photos);
    return rc;
}
