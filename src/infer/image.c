/*
 * Photo decoding and preprocessing (see image.h). Resize is bilinear with half-pixel centres
 * (OpenCV INTER_LINEAR without anti-aliasing), evaluated only for the pixels of the centre
 * crop. "Shorter side" sizes follow torchvision: long = int(resize * long / short).
 */
#include "infer/image.h"

#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* A progressive JPEG of many tiny scans costs CPU far beyond its size (the "progressive JPEG
 * bomb"): TJFLAG_LIMITSCANS makes libjpeg-turbo stop at 500 scans. */
#ifdef TJFLAG_LIMITSCANS
#define TJ_FLAGS TJFLAG_LIMITSCANS
#else
#error "libturbojpeg without TJFLAG_LIMITSCANS (need libjpeg-turbo >= 2.1)"
#endif

static int check_dims(int64_t w, int64_t h, uint64_t max_pixels, dr_err *err) {
    if (w <= 0 || h <= 0)
        return dr_err_set(err, DR_EINVAL, "photo: empty image %lldx%lld", (long long)w,
                          (long long)h);
    if (max_pixels > DR_INFER_MAX_PIXELS)
        max_pixels = DR_INFER_MAX_PIXELS;
    if ((uint64_t)w * (uint64_t)h > max_pixels || w > 65535 || h > 65535)
        return dr_err_set(err, DR_ETOOBIG,
                          "photo: %lldx%lld pixels exceeds the limit of %llu pixels (max_pixels) "
                          "or 65535 per side",
                          (long long)w, (long long)h, (unsigned long long)max_pixels);
    return 0;
}

/*
 * A CMYK (or YCCK) JPEG, as print workflows write them: turbojpeg decodes it to CMYK only, so
 * convert here. Such files come from Adobe software with inverted channels (255 = no ink), as
 * libjpeg hands them over, so R = C * K / 255 and likewise for G (M) and B (Y).
 */
static int decode_cmyk(tjhandle tj, const uint8_t *b, size_t len, int w, int h, uint8_t **rgb,
                       dr_err *err) {
    size_t pixels = (size_t)w * (size_t)h;
    uint8_t *cmyk = malloc(pixels * 4);
    *rgb = malloc(pixels * 3);
    if (!cmyk || !*rgb) {
        free(cmyk);
        free(*rgb);
        *rgb = NULL;
        return dr_err_set(err, DR_ENOMEM, "photo: out of memory");
    }
    if (tjDecompress2(tj, b, (unsigned long)len, cmyk, w, 0, h, TJPF_CMYK, TJ_FLAGS) != 0 &&
        tjGetErrorCode(tj) != TJERR_WARNING) {
        int rc =
            dr_err_set(err, DR_EINVAL, "photo: CMYK JPEG decoding failed: %s", tjGetErrorStr2(tj));
        free(cmyk);
        free(*rgb);
        *rgb = NULL;
        return rc;
    }
    for (size_t i = 0; i < pixels; i++) {
        unsigned k = cmyk[4 * i + 3];
        for (int c = 0; c < 3; c++)
            (*rgb)[3 * i + (size_t)c] = (uint8_t)((cmyk[4 * i + (size_t)c] * k + 127) / 255);
    }
    free(cmyk);
    return 0;
}

static int decode_jpeg(const uint8_t *b, size_t len, uint64_t max_pixels, uint8_t **rgb, int *w,
                       int *h, dr_err *err) {
    int rc = 0, sub = 0, cs = 0;
    *w = *h = 0;
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return dr_err_set(err, DR_ENOMEM, "photo: cannot create a JPEG decoder");
    if (tjDecompressHeader3(tj, b, (unsigned long)len, w, h, &sub, &cs) != 0) {
        rc = dr_err_set(err, DR_EINVAL, "photo: bad JPEG header: %s", tjGetErrorStr2(tj));
        goto out;
    }
    if ((rc = check_dims(*w, *h, max_pixels, err)))
        goto out;
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        rc = decode_cmyk(tj, b, len, *w, *h, rgb, err);
        goto out;
    }
    *rgb = malloc((size_t)*w * (size_t)*h * 3);
    if (!*rgb) {
        rc = dr_err_set(err, DR_ENOMEM, "photo: out of memory");
        goto out;
    }
    if (tjDecompress2(tj, b, (unsigned long)len, *rgb, *w, 0, *h, TJPF_RGB, TJ_FLAGS) != 0 &&
        tjGetErrorCode(tj) != TJERR_WARNING) {
        rc = dr_err_set(err, DR_EINVAL, "photo: JPEG decoding failed: %s", tjGetErrorStr2(tj));
        free(*rgb);
        *rgb = NULL;
    }
out:
    tjDestroy(tj);
    return rc;
}

static int decode_png(const uint8_t *b, size_t len, uint64_t max_pixels, uint8_t **rgb, int *w,
                      int *h, dr_err *err) {
    png_image img;
    memset(&img, 0, sizeof(img));
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, b, len))
        return dr_err_set(err, DR_EINVAL, "photo: bad PNG: %s", img.message);
    int rc = check_dims(img.width, img.height, max_pixels, err);
    if (rc) {
        png_image_free(&img);
        return rc;
    }
    img.format = PNG_FORMAT_RGB;
    *w = (int)img.width;
    *h = (int)img.height;
    *rgb = malloc(PNG_IMAGE_SIZE(img));
    if (!*rgb) {
        png_image_free(&img);
        return dr_err_set(err, DR_ENOMEM, "photo: out of memory");
    }
    /* background NULL: alpha is composited on black */
    if (!png_image_finish_read(&img, NULL, *rgb, 0, NULL)) {
        rc = dr_err_set(err, DR_EINVAL, "photo: PNG decoding failed: %s", img.message);
        free(*rgb);
        *rgb = NULL;
        png_image_free(&img);
        return rc;
    }
    return 0;
}

int img_decode(const void *bytes, size_t len, uint64_t max_pixels, uint8_t **rgb, int *w, int *h,
               dr_err *err) {
    const uint8_t *b = bytes;
    *rgb = NULL;
    if (!bytes || len == 0)
        return dr_err_set(err, DR_EINVAL, "photo: 0 bytes");
    if (len > DR_INFER_MAX_PHOTO_BYTES)
        return dr_err_set(err, DR_ETOOBIG, "photo: %zu bytes exceeds the limit", len);
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return decode_jpeg(b, len, max_pixels, rgb, w, h, err);
    if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return decode_png(b, len, max_pixels, rgb, w, h, err);
    return dr_err_set(err, DR_EINVAL, "photo: not a JPEG or PNG image");
}

int img_preprocess(const uint8_t *rgb, int w, int h, const dr_preprocess *pre, int C, int H, int W,
                   float *out, dr_err *err) {
    double rw, rh; /* size of the (virtual) resized image */
    if (pre->resize == 0) {
        rw = w >= W && h >= H ? w : W;
        rh = w >= W && h >= H ? h : H;
    } else if (pre->resize_mode == DR_RESIZE_SQUARE) {
        rw = rh = pre->resize;
    } else if (w <= h) {
        rw = pre->resize;
        rh = floor((double)pre->resize * h / w);
    } else {
        rh = pre->resize;
        rw = floor((double)pre->resize * w / h);
    }
    if (rw < W || rh < H)
        return dr_err_set(err, DR_EINVAL, "preprocess: resized %gx%g is smaller than crop %dx%d",
                          rw, rh, W, H);
    double top = round((rh - H) / 2.0), left = round((rw - W) / 2.0);
    double sx = w / rw, sy = h / rh;
    float inv = 1.0f / pre->divisor;
    for (int y = 0; y < H; y++) {
        double fy = (y + top + 0.5) * sy - 0.5;
        if (fy < 0)
            fy = 0;
        int y0 = (int)fy;
        if (y0 > h - 1)
            y0 = h - 1;
        int y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        float wy = (float)(fy - y0);
        for (int x = 0; x < W; x++) {
            double fx = (x + left + 0.5) * sx - 0.5;
            if (fx < 0)
                fx = 0;
            int x0 = (int)fx;
            if (x0 > w - 1)
                x0 = w - 1;
            int x1 = x0 + 1 < w ? x0 + 1 : w - 1;
            float wx = (float)(fx - x0);
            float px[3];
            for (int k = 0; k < 3; k++) {
                float a = rgb[((size_t)y0 * w + x0) * 3 + k],
                      b = rgb[((size_t)y0 * w + x1) * 3 + k];
                float c = rgb[((size_t)y1 * w + x0) * 3 + k],
                      d = rgb[((size_t)y1 * w + x1) * 3 + k];
                px[k] = (a * (1 - wx) + b * wx) * (1 - wy) + (c * (1 - wx) + d * wx) * wy;
            }
            if (C == 1) {
                float v = 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2];
                out[(size_t)y * W + x] = (v * inv - pre->mean[0]) / pre->std[0];
            } else {
                for (int k = 0; k < 3; k++) {
                    float v = px[pre->bgr ? 2 - k : k];
                    out[((size_t)k * H + y) * W + x] = (v * inv - pre->mean[k]) / pre->std[k];
                }
            }
        }
    }
    return 0;
}
