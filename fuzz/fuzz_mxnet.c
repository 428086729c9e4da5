/*
 * libFuzzer target: MXNet loader. Input byte 0 selects what is fuzzed: 0 = params bytes with
 * the tiny symbol, 1 = symbol JSON with the tiny params, else both (u16 split point).
 */
#include <stdint.h>

#include "fuzz_common.h"

static tiny_bytes g_sym, g_par;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dr_log_set_all_levels(DR_LOG_OFF);
    tiny_opts o = {0};
    tiny_mxnet(&o, &g_sym, &g_par);
    uint8_t *s = malloc(g_par.len + 1);
    s[0] = 0;
    memcpy(s + 1, g_par.data, g_par.len);
    fuzz_write_seed("mxnet_params", s, g_par.len + 1);
    free(s);
    s = malloc(g_sym.len + 1);
    s[0] = 1;
    memcpy(s + 1, g_sym.data, g_sym.len);
    fuzz_write_seed("mxnet_symbol", s, g_sym.len + 1);
    free(s);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    if (len < 1)
        return 0;
    dr_preprocess pre;
    fuzz_pre(&pre);
    pre.crop = 8;
    pre.resize = 8;
    const void *sym = g_sym.data, *par = g_par.data;
    size_t sl = g_sym.len, pl = g_par.len;
    if (data[0] == 0) {
        par = data + 1;
        pl = len - 1;
    } else if (data[0] == 1) {
        sym = data + 1;
        sl = len - 1;
    } else {
        if (len < 3)
            return 0;
        size_t split = (size_t)(data[1] | data[2] << 8);
        if (split > len - 3)
            split = len - 3;
        sym = data + 3;
        sl = split;
        par = data + 3 + split;
        pl = len - 3 - split;
    }
    dr_model *m = NULL;
    dr_err err;
    if (dr_model_load_mxnet(tiny_synset, strlen(tiny_synset), sym, sl, par, pl, &pre, &m, &err) ==
        0) {
        fuzz_exercise(m);
        dr_model_free(m);
    }
    return 0;
}
