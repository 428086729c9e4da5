/*
 * Builders of tiny test models shared by the inference tests: the same 3-class network in
 * MXNet (symbol JSON + params bytes) and ONNX (ModelProto packed with protobuf-c) format,
 * plus solid-colour PNG/JPEG photos. The network maps a red/green/blue 8x8 image to class
 * 0/1/2: conv3x3(identity centre tap)+BN+ReLU -> maxpool 2x2 -> conv1x1(identity) + skip add
 * -> global average pool -> flatten -> FC(10*I) [-> softmax in MXNet].
 */
#ifndef DR_TEST_TINY_MODELS_H
#define DR_TEST_TINY_MODELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tiny_bytes {
    uint8_t *data;
    size_t len;
} tiny_bytes;

/* Options to produce broken variants. */
typedef struct tiny_opts {
    const char *extra_op;   /* replaces the Flatten op name (unsupported-op tests) */
    const char *extra_attr; /* adds this attribute to the first conv */
    int fc_classes;         /* FC outputs (default 3) */
    int conv_cout;          /* first conv weight rows (default 3; other = mismatch) */
    int legacy;             /* MXNet: legacy array layout and "param" attribute key */
    int f16;                /* MXNet: float16 weights */
} tiny_opts;

int tiny_mxnet(const tiny_opts *o, tiny_bytes *symbol, tiny_bytes *params);
int tiny_onnx(const tiny_opts *o, tiny_bytes *model);
extern const char tiny_synset[];
/* Solid-colour photos (w x h). */
int tiny_png(uint8_t r, uint8_t g, uint8_t b, int w, int h, tiny_bytes *out);
int tiny_jpeg(uint8_t r, uint8_t g, uint8_t b, int w, int h, tiny_bytes *out);

/** A w x h JPEG of one colour stored as CMYK (YCCK, inverted like Adobe files). 0 or -1. */
int tiny_jpeg_cmyk(uint8_t r, uint8_t g, uint8_t b, int w, int h, tiny_bytes *out);

/** An MXNet params array: name (key "arg:NAME"), shape; values are small and deterministic. */
typedef struct tiny_array {
    char name[32];
    int ndim;
    int64_t dims[4];
} tiny_array;

/** An MXNet params file (V2 float32 arrays) of the n arrays. Returns 0. */
int tiny_params(const tiny_array *a, int n, tiny_bytes *out);

/**
 * An MXNet conv stack: data(3 x H x W) -> conv3x3 3->channels -> n_shared conv k x k (k odd,
 * padded to keep the size) channels->channels that all use one weight "w" -> global average pool ->
 * flatten -> FC 3 (the "FLOP bomb" shape of issue 12: the params hold each weight once). Symbol and
 * params are malloc'd. Returns 0.
 */
int tiny_conv_stack(int n_shared, int channels, int k, tiny_bytes *symbol, tiny_bytes *params);

#endif
