/*
 * libFuzzer target for the frame decoder (src/net/frame.c). The input's first byte picks how the
 * rest is cut into reads (sizes 1..N, as partial socket reads would be) and whether large payload
 * gaps are filled through the zero-copy path. Checks: no crash or leak, consumption never exceeds
 * the input, every frame respects the configured maximum, an error is sticky.
 */
#include "derecho/error.h"
#include "net/frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAYLOAD 4096u

static void check(int condition) {
    if (!condition)
        __builtin_trap();
}

static void on_frame(const dr_frame *frame) {
    check(frame->header.payload_bytes <= MAX_PAYLOAD);
    free(frame->block);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] & 0x3f) + 1;
    int use_gap = data[0] & 0x40;
    data++, size--;
    dr_frame_decoder dec;
    dr_frame_decoder_init(&dec, MAX_PAYLOAD, NULL, NULL);
    size_t pos = 0;
    int failed = 0;
    while (pos < size && !failed) {
        size_t len = size - pos < chunk ? size - pos : chunk;
        uint8_t *dst = NULL;
        size_t gap = use_gap ? dr_frame_decoder_payload_gap(&dec, &dst) : 0;
        if (gap) {
            size_t n = len < gap ? len : gap;
            memcpy(dst, data + pos, n);
            dr_frame frame;
            if (dr_frame_decoder_payload_filled(&dec, n, &frame) == 1)
                on_frame(&frame);
            pos += n;
            continue;
        }
        size_t used = 0;
        dr_frame frame;
        int rc = dr_frame_decoder_feed(&dec, data + pos, len, &used, &frame);
        check(used <= len);
        pos += used;
        if (rc == 1)
            on_frame(&frame);
        else if (rc < 0) {
            failed = 1;
            check(rc == DR_EPROTO || rc == DR_ETOOBIG || rc == DR_ENOMEM);
            check(dr_frame_decoder_why(&dec)[0] != '\0');
            check(dr_frame_decoder_feed(&dec, data, size, &used, &frame) == rc && used == 0);
        } else {
            check(used == len);
        }
    }
    dr_frame_decoder_free(&dec);
    return 0;
}
