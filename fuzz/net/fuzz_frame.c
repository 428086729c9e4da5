/*
 * libFuzzer target for the frame decoder (src/net/frame.c). The input's first byte picks how the
 * rest is cut into reads (sizes 1..N, as partial socket reads would be) and whether large payload
 * gaps are filled through the zero-copy path. Checks: no crash or leak, consumption never exceeds
 * the input, every frame respects the configured maximum, an error is sticky.
 */
#include "derecho/error.h"
#include "fuzz_seed.h"
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

/* ---- seeds (fuzz/make-corpus.sh): valid frame streams, one cut short, one oversized -------- */

static void seed_frames(const char *name, uint8_t mode, const uint32_t *payloads, size_t n) {
    fuzz_bytes b = {0};
    fuzz_put_u8(&b, mode);
    for (size_t i = 0; i < n; i++) {
        uint8_t header[DR_FRAME_HEADER_BYTES];
        dr_frame_encode_header(header, (uint16_t)(32 + i), (uint32_t)i, payloads[i]);
        fuzz_put(&b, header, sizeof header);
        for (uint32_t k = 0; k < payloads[i] && k < MAX_PAYLOAD; k++)
            fuzz_put_u8(&b, (uint8_t)k);
    }
    fuzz_seed_done(&b, name);
    fuzz_bytes_free(&b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const uint32_t three[] = {0, 17, 300};
    seed_frames("three_frames_whole", 0x3f, three, 3);
    seed_frames("three_frames_1_byte_reads", 0x00, three, 3);
    seed_frames("three_frames_zero_copy", 0x47, three, 3);
    static const uint32_t at_limit[] = {MAX_PAYLOAD};
    seed_frames("at_limit", 0x7f, at_limit, 1);
    static const uint32_t over[] = {MAX_PAYLOAD + 1};
    seed_frames("over_limit", 0x3f, over, 1);
    return 0;
}
