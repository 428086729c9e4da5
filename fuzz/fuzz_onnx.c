/* libFuzzer target: ONNX loader (ModelProto bytes), then one cheap run of what loads. */
#include <stdint.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dr_log_set_all_levels(DR_LOG_OFF);
    tiny_opts o = {0};
    tiny_bytes b;
    tiny_onnx(&o, &b);
    fuzz_write_seed("onnx_tiny", b.data, b.len);
    free(b.data);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
    dr_preprocess pre;
    fuzz_pre(&pre);
    dr_model *m = NULL;
    dr_err err;
    if (dr_model_load_onnx(data, len, NULL, 0, &pre, &m, &err) == 0) {
        fuzz_exercise(m);
        dr_model_free(m);
    }
    return 0;
}
