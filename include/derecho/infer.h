/** @file
 * Inference engine: load a CNN image classifier (MXNet symbol JSON + params, or ONNX) from
 * bytes, and classify JPEG/PNG photos into top-k (label, softmax probability).
 *
 * The engine is independent of the group layer. A loaded dr_model is immutable except for
 * its internal pool of execution contexts (arena + compiled kernels per batch size), which is
 * guarded by a mutex: any number of threads may call dr_model_classify* / dr_model_run on the
 * same model at once. Every function returns 0 or a negative DR_E* code and, when `err` is not
 * NULL, fills it with a one-line reason (naming the operator, attribute, key or offset).
 */
#ifndef DERECHO_INFER_H
#define DERECHO_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "derecho/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How the photo is resized before the centre crop. */
typedef enum dr_resize_mode {
    DR_RESIZE_SQUARE = 0,  /**< resize to resize x resize, ignoring aspect (seed preset) */
    DR_RESIZE_SHORTER = 1, /**< scale so the shorter side is `resize` (ImageNet preset) */
} dr_resize_mode;

/**
 * Preprocessing recorded with a model. Pixel value v (0..255) of channel c becomes
 * (v / divisor - mean[c]) / std[c], laid out NCHW. Resizing is bilinear.
 */
typedef struct dr_preprocess {
    dr_resize_mode resize_mode;
    uint32_t resize; /**< target of resize_mode (256); 0 = no resize */
    uint32_t crop;   /**< centre-crop size; 0 = the model's input H/W */
    int bgr;         /**< 0: RGB channel order, 1: BGR */
    float divisor;   /**< 256 (seed), 255 (ImageNet), 1 (raw 0..255) */
    float mean[3];   /**< per channel, after dividing */
    float std[3];    /**< per channel; 0 is rejected */
} dr_preprocess;

/** Seed preset: 256x256, centre-crop 224, RGB, /256, mean 0, std 1. */
void dr_preprocess_seed(dr_preprocess *pre);
/** ImageNet preset: shorter side 256, crop 224, RGB, /255, mean (.485,.456,.406), std
 * (.229,.224,.225). */
void dr_preprocess_imagenet(dr_preprocess *pre);

/** One answer: the class's label line (owned by the model) and its softmax probability. */
typedef struct dr_class_score {
    const char *label; /**< synset / labels-file line, valid while the model lives */
    size_t index;      /**< class index */
    float score;       /**< probability in [0,1] */
} dr_class_score;

/** Execution backend for convolutions. */
typedef enum dr_infer_backend {
    DR_BACKEND_AUTO = 0,  /**< oneDNN when available, else im2col + SGEMM */
    DR_BACKEND_DNNL = 1,  /**< oneDNN 2.x convolutions */
    DR_BACKEND_SGEMM = 2, /**< portable im2col + OpenBLAS SGEMM (reference / fallback) */
} dr_infer_backend;

/** Arithmetic of the oneDNN convolutions. */
typedef enum dr_precision {
    DR_PRECISION_FP32 = 0, /**< float32 everywhere (default) */
    DR_PRECISION_BF16 = 1, /**< bfloat16 inputs and weights, float32 accumulation, bias, outputs
                                and every other operator; needs oneDNN and a CPU with native
                                bf16 (AVX512_BF16 or AMX) */
    DR_PRECISION_AUTO = 2, /**< BF16 where the CPU has native bf16, else FP32 */
} dr_precision;

/** An opaque loaded model. */
typedef struct dr_model dr_model;

/** Limits checked before anything is allocated. */
#define DR_INFER_MAX_MODEL_BYTES ((size_t)1 << 31) /* 2 GiB */
#define DR_INFER_MAX_PHOTO_BYTES ((size_t)64 << 20)
#define DR_INFER_MAX_PIXELS      ((uint64_t)64 << 20) /* decoded width*height */
#define DR_INFER_MAX_BATCH       64

/**
 * Admission limits of a model, checked when it is loaded (and so when it is installed: the
 * categorizer loads a model once before accepting it), before its weights are reordered or
 * its activation arena allocated, plus the pixel cap applied to every photo it classifies.
 * A model over a limit fails to load with DR_ETOOBIG and a message naming the limit, the
 * model's value and the cap. Defaults (dr_infer_limits_default) admit ResNet-50/VGG-class
 * ImageNet classifiers (ResNet-50: 8.2 GFLOP, a few hundred operators).
 */
typedef struct dr_infer_limits {
    double max_flops_per_image;    /**< work per image: conv/FC multiply-adds x 2, plus one per
                                        output element of other operators; 20e9 */
    uint32_t max_nodes;            /**< operators in the loaded graph; 5000 */
    uint64_t max_activation_bytes; /**< planned activation arena for one image; 1 GiB */
    uint64_t max_weight_bytes;     /**< weights read per image, counted once per operator
                                        that uses them (shared weights count each time); 2 GiB */
    uint64_t max_pixels;           /**< decoded width*height of a photo, checked from its header
                                        before any pixel buffer is allocated; 40e6, at most
                                        DR_INFER_MAX_PIXELS */
} dr_infer_limits;

/** Fills the default limits above. */
void dr_infer_limits_default(dr_infer_limits *limits);

/** Load options of the _ex loaders. */
typedef struct dr_load_options {
    const dr_preprocess *pre; /**< NULL: the loader's preset (seed for MXNet, ImageNet for ONNX) */
    dr_infer_limits limits;   /**< admission limits (dr_infer_limits_default) */
    dr_precision precision;   /**< as dr_model_set_precision (default FP32) */
    int labels_optional;      /**< MXNet: an empty synset gives labels "class N" (else an error) */
} dr_load_options;

/** Fills pre = NULL, the default limits, FP32 and labels required. */
void dr_load_options_default(dr_load_options *opts);

/**
 * Loads an MXNet model from the three byte ranges (synset.txt, NAME-symbol.json,
 * NAME-EPOCH.params), all borrowed for the call only. pre == NULL selects the seed preset.
 * The number of synset lines must equal the number of outputs of the graph.
 * Errors: DR_EINVAL / DR_ECORRUPT (malformed), DR_EUNSUPPORTED (operator/attribute, named),
 * DR_ETOOBIG (limits), DR_ENOMEM. On success *out owns the model (free with dr_model_free).
 */
int dr_model_load_mxnet(const void *synset, size_t synset_len, const void *symbol_json,
                        size_t symbol_len, const void *params, size_t params_len,
                        const dr_preprocess *pre, dr_model **out, dr_err *err);

/**
 * As dr_model_load_mxnet, with options (opts NULL = dr_load_options_default). A limit of
 * opts->limits that is 0 means the default; max_pixels over DR_INFER_MAX_PIXELS is DR_ERANGE.
 * MXNet input size: opts->pre's crop when a preprocess is given, else the data node's
 * "__shape__" attribute (N, C, H, W), else 3 x 224 x 224; with the default preset a square
 * input of another size is cropped to it and resized to 256/224 of it.
 */
int dr_model_load_mxnet_ex(const void *synset, size_t synset_len, const void *symbol_json,
                           size_t symbol_len, const void *params, size_t params_len,
                           const dr_load_options *opts, dr_model **out, dr_err *err);

/**
 * Loads an ONNX model (ModelProto bytes) with a labels file (one label per line; labels may be
 * NULL/0: then labels are "class N"). pre == NULL selects the ImageNet preset. Errors as
 * dr_model_load_mxnet.
 */
int dr_model_load_onnx(const void *onnx, size_t onnx_len, const void *labels, size_t labels_len,
                       const dr_preprocess *pre, dr_model **out, dr_err *err);

/** As dr_model_load_onnx, with options (as dr_model_load_mxnet_ex). */
int dr_model_load_onnx_ex(const void *onnx, size_t onnx_len, const void *labels, size_t labels_len,
                          const dr_load_options *opts, dr_model **out, dr_err *err);

/** Frees a model (NULL is fine). No call on it may be running. */
void dr_model_free(dr_model *model);

/**
 * Classifies one photo (JPEG or PNG bytes, borrowed). Writes up to k best classes in
 * decreasing score to top[0..*n_out). Thread-safe; blocks while computing.
 * Errors: DR_EINVAL (not an image, 0 bytes, corrupt), DR_ETOOBIG (dimensions over the model's
 * max_pixels or 65535 per side, checked from the header before decoding).
 */
int dr_model_classify(dr_model *model, const void *photo, size_t photo_len, dr_class_score *top,
                      size_t k, size_t *n_out, dr_err *err);

/**
 * Classifies n photos as one batch: photo i's answers go to top[i*k .. i*k+n_out[i]).
 * Fails as a whole if any photo fails (err names its index). Thread-safe.
 */
int dr_model_classify_batch(dr_model *model, const void *const *photos, const size_t *photo_lens,
                            size_t n, dr_class_score *top, size_t k, size_t *n_out, dr_err *err);

/**
 * Runs the graph on a preprocessed NCHW float tensor of `batch` images (each of
 * dr_model_input_shape's C*H*W floats) and writes batch * num_classes raw graph outputs
 * (logits or probabilities, as the graph ends) to out (out_len floats). Thread-safe.
 */
int dr_model_run(dr_model *model, const float *input, size_t batch, float *out, size_t out_len,
                 dr_err *err);

/** Number of classes (graph outputs per image). */
size_t dr_model_num_classes(const dr_model *model);

/** Input shape per image: channels, height, width. */
void dr_model_input_shape(const dr_model *model, uint32_t *channels, uint32_t *height,
                          uint32_t *width);

/** Label of class i (NULL when out of range); owned by the model. */
const char *dr_model_label(const dr_model *model, size_t index);

/** Total multiply-add work per image in FLOP (2 per MAC), for benchmarks. */
double dr_model_flops_per_image(const dr_model *model);

/**
 * Sets the number of threads one call uses (1 or 2 are meaningful here; 1..64 accepted).
 * Applies to later calls. With 2+ threads a batch of 2+ images is split in two halves run
 * concurrently (one helper thread per call); one image uses OpenMP/oneDNN intra-operator
 * threads. The SGEMM backend's OpenBLAS thread count is process-wide. On a shared machine run
 * the process with OMP_WAIT_POLICY=PASSIVE. Returns 0 or DR_ERANGE.
 */
int dr_model_set_threads(dr_model *model, int threads);

/**
 * Chooses the convolution backend for later calls (new execution contexts are built for it on
 * first use). Returns 0, DR_EINVAL, or DR_EUNSUPPORTED for DR_BACKEND_DNNL without oneDNN.
 * With DR_BACKEND_AUTO a model that oneDNN cannot run falls back to SGEMM.
 */
int dr_model_set_backend(dr_model *model, dr_infer_backend backend);

/** Returns 1 when the oneDNN backend is compiled in and usable. */
int dr_infer_have_dnnl(void);

/**
 * Chooses the precision of later calls (new execution contexts are built for it on first use;
 * it applies to the oneDNN backend only: SGEMM is always FP32). Returns 0, DR_EINVAL, or
 * DR_EUNSUPPORTED for DR_PRECISION_BF16 where dr_infer_have_bf16() is 0. AUTO resolves here.
 */
int dr_model_set_precision(dr_model *model, dr_precision precision);

/** The precision in effect (FP32 or BF16; AUTO is resolved when set). */
dr_precision dr_model_precision(const dr_model *model);

/** Returns 1 when oneDNN is usable and the CPU computes bf16 natively (AVX512_BF16 / AMX). */
int dr_infer_have_bf16(void);

/** "fp32", "bf16" or "auto" -> *out; 0 or DR_EINVAL. */
int dr_precision_parse(const char *text, dr_precision *out);

#ifdef __cplusplus
}
#endif
#endif
