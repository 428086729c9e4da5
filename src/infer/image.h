/*
 * Photo decoding (JPEG via TurboJPEG, PNG via libpng's simplified API) into 8-bit RGB, and
 * preprocessing (bilinear resize + centre crop + scaling/normalisation) into NCHW floats.
 */
#ifndef DR_INFER_IMAGE_H
#define DR_INFER_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "derecho/infer.h"

/* Decodes JPEG/PNG bytes; *rgb (malloc'd, w*h*3) is owned by the caller. Dimensions are
 * checked against max_pixels (and 65535 per side) from the header, before any pixel buffer is
 * allocated; progressive JPEGs are limited in scans (TJFLAG_LIMITSCANS: over 500 scans fail). */
int img_decode(const void *bytes, size_t len, uint64_t max_pixels, uint8_t **rgb, int *w, int *h,
               dr_err *err);

/* Writes C x H x W floats (C 1 or 3) for one image. */
int img_preprocess(const uint8_t *rgb, int w, int h, const dr_preprocess *pre, int C, int H, int W,
                   float *out, dr_err *err);

#endif
