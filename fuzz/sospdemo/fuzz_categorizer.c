/*
 * libFuzzer target for the categorizer tier (apps/sospdemo/categorizer.c), called through its
 * public rpc type exactly as the rpc layer calls it, on a categorizer without a node (the p2p
 * install/remove then stop at the multicast with DR_EAGAIN, after decoding and, for install,
 * loading the model once):
 *   the method argument decoders (ordered_install, ordered_remove, install, remove, inference,
 *   list_models), the state-transfer snapshot decoder (restore) and encoder (serialize), and
 *   the reply decoders the function tier runs on a categorizer's answers
 *   (sd_inference_reply_decode, sd_model_reply_decode, sd_model_list_decode).
 *
 * Input: a sequence of operations, each u8 op + u16 LE length + that many bytes (cut short at
 * the end). op % 10: 0 ordered_install, 1 ordered_remove, 2 install, 3 remove, 4 inference,
 * 5 list_models, 6 restore, 7 decode an inference reply, 8 decode a model reply, 9 decode a
 * model list. Limits: models up to 64 KiB, photos up to 64 KiB.
 *
 * Checks on every operation: handlers return 0 or a DR_E* code, and their reply never exceeds
 * the reply limit; after each one list_models answers a list that decodes, is in strictly
 * increasing tag order, and has as many entries as sd_categorizer_model_count; a snapshot that
 * restores equals the models' own serialization when serialized again, restores into a second
 * categorizer and serializes to the same bytes there (state transfer is lossless).
 */
#include "categorizer.h"
#include "derecho/log.h"
#include "fuzz_seed.h"
#include "tiny_models.h"

#include <string.h>

enum { MAX_BYTES = 64 * 1024, REPLY_LIMIT = 1 << 20 };

enum {
    OP_ORDERED_INSTALL,
    OP_ORDERED_REMOVE,
    OP_INSTALL,
    OP_REMOVE,
    OP_INFERENCE,
    OP_LIST,
    OP_RESTORE,
    OP_DECODE_INFERENCE,
    OP_DECODE_MODEL_REPLY,
    OP_DECODE_LIST,
    OP_COUNT
};

static const char *const method_of_op[] = {
    SD_METHOD_ORDERED_INSTALL, SD_METHOD_ORDERED_REMOVE, SD_METHOD_INSTALL,
    SD_METHOD_REMOVE,          SD_METHOD_INFERENCE,      SD_METHOD_LIST_MODELS,
};

static sd_categorizer *make(dr_rpc_type *type) {
    sd_categorizer_limits limits = {.max_model_bytes = MAX_BYTES, .max_photo_bytes = MAX_BYTES};
    sd_categorizer *cat = NULL;
    FUZZ_CHECK(sd_categorizer_create(&limits, &cat) == DR_OK);
    sd_categorizer_rpc_type(cat, type);
    return cat;
}

static int call(const dr_rpc_type *type, const char *method, const uint8_t *args, size_t len,
                dr_buf *reply) {
    for (size_t i = 0; i < type->num_methods; i++) {
        if (strcmp(type->methods[i].name, method) != 0)
            continue;
        dr_rpc_call_info info = {.caller_id = 1, .shard = 0, .version = -1};
        info.ordered = type->methods[i].kind == DR_RPC_ORDERED;
        dr_buf_init(reply, REPLY_LIMIT);
        int rc = type->methods[i].handler(type->ctx, &info, args, len, reply);
        FUZZ_CHECK(rc <= 0 && reply->len <= REPLY_LIMIT);
        return rc;
    }
    FUZZ_CHECK(!"the categorizer lacks a method");
    return DR_EINVAL;
}

/* list_models decodes, is sorted by tag and counts the models. */
static void check_list(const dr_rpc_type *type, sd_categorizer *cat) {
    dr_buf reply;
    FUZZ_CHECK(call(type, SD_METHOD_LIST_MODELS, NULL, 0, &reply) == DR_OK);
    sd_model_info *infos = NULL;
    size_t count = 0;
    FUZZ_CHECK(sd_model_list_decode(reply.data, reply.len, &infos, &count) == DR_OK);
    FUZZ_CHECK(count == sd_categorizer_model_count(cat));
    for (size_t i = 1; i < count; i++)
        FUZZ_CHECK(infos[i - 1].tag < infos[i].tag);
    free(infos);
    dr_buf_free(&reply);
}

static void serialize(const dr_rpc_type *type, dr_buf *out) {
    dr_buf_init(out, 0);
    FUZZ_CHECK(type->serialize(type->ctx, 0, out) == DR_OK);
}

static void same_bytes(const dr_buf *a, const dr_buf *b) {
    FUZZ_CHECK(a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0));
}

static void restore(const dr_rpc_type *type, sd_categorizer *cat, const uint8_t *bytes,
                    size_t len) {
    dr_buf before;
    serialize(type, &before);
    int rc = type->restore(type->ctx, 0, bytes, len);
    if (rc != DR_OK) {
        FUZZ_CHECK(rc == DR_ECORRUPT || rc == DR_ENOMEM);
        dr_buf after;
        serialize(type, &after);
        same_bytes(&before, &after); /* a refused snapshot changes nothing */
        dr_buf_free(&after);
    } else {
        dr_buf mine, theirs;
        serialize(type, &mine);
        /* the format byte is re-detected, so the bytes may differ there: compare the round trip */
        dr_rpc_type type2;
        sd_categorizer *cat2 = make(&type2);
        FUZZ_CHECK(type2.restore(type2.ctx, 0, mine.data, mine.len) == DR_OK);
        serialize(&type2, &theirs);
        same_bytes(&mine, &theirs);
        FUZZ_CHECK(sd_categorizer_model_count(cat2) == sd_categorizer_model_count(cat));
        sd_categorizer_destroy(cat2);
        dr_buf_free(&mine);
        dr_buf_free(&theirs);
    }
    dr_buf_free(&before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dr_log_set_all_levels(DR_LOG_OFF);
    dr_rpc_type type;
    sd_categorizer *cat = make(&type);
    while (size >= 3) {
        unsigned op = data[0] % OP_COUNT;
        size_t len = (size_t)(data[1] | data[2] << 8);
        data += 3, size -= 3;
        if (len > size)
            len = size;
        const uint8_t *args = data;
        data += len, size -= len;
        if (op <= OP_LIST) {
            dr_buf reply;
            (void)call(&type, method_of_op[op], args, len, &reply);
            dr_buf_free(&reply);
        } else if (op == OP_RESTORE) {
            restore(&type, cat, args, len);
        } else if (op == OP_DECODE_INFERENCE) {
            sd_tag_answer answer = {.tag = 1};
            if (sd_inference_reply_decode(args, len, &answer) == DR_OK) {
                FUZZ_CHECK(answer.desc != NULL && answer.n_top <= SD_MAX_TOP);
                sd_tag_answer_clear(&answer);
            }
        } else if (op == OP_DECODE_MODEL_REPLY) {
            int32_t code = 0;
            char *desc = NULL;
            if (sd_model_reply_decode(args, len, &code, &desc) == DR_OK)
                FUZZ_CHECK(desc != NULL && strlen(desc) + 8 <= len);
            free(desc);
        } else {
            sd_model_info *infos = NULL;
            size_t count = 0;
            if (sd_model_list_decode(args, len, &infos, &count) == DR_OK) {
                FUZZ_CHECK(4 + count * 22 == len);
                free(infos);
            }
        }
        check_list(&type, cat);
    }
    sd_categorizer_destroy(cat);
    return 0;
}

/* ---- seeds: the tiny models of tests/infer installed, used, snapshotted ------------------- */

static void put_op(fuzz_bytes *b, uint8_t op, const uint8_t *args, size_t len) {
    fuzz_put_u8(b, op);
    fuzz_put_u16(b, (uint16_t)len);
    fuzz_put(b, args, len);
}

static void put_op_buf(fuzz_bytes *b, uint8_t op, dr_buf *args) {
    put_op(b, op, args->data, args->len);
    dr_buf_free(args);
}

static void put_tag(fuzz_bytes *b, uint8_t op, uint32_t tag) {
    uint8_t bytes[4] = {(uint8_t)tag, (uint8_t)(tag >> 8), (uint8_t)(tag >> 16),
                        (uint8_t)(tag >> 24)};
    put_op(b, op, bytes, 4);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (!getenv("DR_FUZZ_SEED_DIR"))
        return 0;
    tiny_opts o = {0};
    tiny_bytes onnx = {0}, sym = {0}, par = {0}, png = {0};
    if (tiny_onnx(&o, &onnx) || tiny_mxnet(&o, &sym, &par) || tiny_png(200, 10, 30, 9, 7, &png))
        abort(); /* seed generation only */
    const uint8_t *synset = (const uint8_t *)tiny_synset;
    size_t synset_len = strlen(tiny_synset);
    fuzz_bytes b = {0};
    dr_buf args;

    /* install ONNX (ordered), classify a PNG with top 3, list, remove, list */
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 5, synset, synset_len, NULL, 0, onnx.data, onnx.len);
    put_op_buf(&b, OP_ORDERED_INSTALL, &args);
    dr_buf_init(&args, 0);
    sd_inference_args_encode(&args, 5, png.data, png.len, 3);
    put_op_buf(&b, OP_INFERENCE, &args);
    put_op(&b, OP_LIST, NULL, 0);
    put_tag(&b, OP_ORDERED_REMOVE, 5);
    fuzz_seed_done(&b, "onnx_install_classify_remove");

    /* install MXNet under two tags, a third twice, classify with a missing tag, snapshot */
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 2, synset, synset_len, sym.data, sym.len, par.data, par.len);
    put_op_buf(&b, OP_ORDERED_INSTALL, &args);
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 1, synset, synset_len, sym.data, sym.len, par.data, par.len);
    put_op_buf(&b, OP_ORDERED_INSTALL, &args);
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 1, synset, synset_len, NULL, 0, onnx.data, onnx.len);
    put_op_buf(&b, OP_ORDERED_INSTALL, &args);
    dr_buf_init(&args, 0);
    sd_inference_args_encode(&args, 9, png.data, png.len, 0);
    put_op_buf(&b, OP_INFERENCE, &args);
    dr_buf_init(&args, 0);
    sd_inference_args_encode(&args, 2, png.data, png.len, 1);
    put_op_buf(&b, OP_INFERENCE, &args);
    fuzz_seed_done(&b, "mxnet_two_tags");

    /* a snapshot of two models (serialized by a real categorizer), restored */
    {
        dr_rpc_type type;
        sd_categorizer *cat = make(&type);
        dr_buf reply;
        dr_buf_init(&args, 0);
        sd_model_args_encode(&args, 3, synset, synset_len, NULL, 0, onnx.data, onnx.len);
        call(&type, SD_METHOD_ORDERED_INSTALL, args.data, args.len, &reply);
        dr_buf_free(&reply);
        dr_buf_free(&args);
        dr_buf_init(&args, 0);
        sd_model_args_encode(&args, 4, (const uint8_t *)"a\nb\n", 4, (const uint8_t *)"{}", 2,
                             (const uint8_t *)"xyz", 3);
        call(&type, SD_METHOD_ORDERED_INSTALL, args.data, args.len, &reply);
        dr_buf_free(&reply);
        dr_buf_free(&args);
        dr_buf snap;
        serialize(&type, &snap);
        put_op(&b, OP_RESTORE, snap.data, snap.len);
        dr_buf_init(&args, 0);
        sd_inference_args_encode(&args, 3, png.data, png.len, 2);
        put_op_buf(&b, OP_INFERENCE, &args);
        dr_buf_init(&args, 0);
        sd_inference_args_encode(&args, 4, png.data, png.len, 0);
        put_op_buf(&b, OP_INFERENCE, &args);
        fuzz_seed_done(&b, "snapshot_restore");
        put_op(&b, OP_RESTORE, snap.data, snap.len > 40 ? 40 : snap.len);
        fuzz_seed_done(&b, "snapshot_truncated");
        dr_buf_free(&snap);
        sd_categorizer_destroy(cat);
    }

    /* the p2p install (model loaded once, then DR_EAGAIN without a node), a broken model, remove */
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 6, synset, synset_len, NULL, 0, onnx.data, onnx.len);
    put_op_buf(&b, OP_INSTALL, &args);
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 6, synset, synset_len, sym.data, sym.len, par.data,
                         par.len > 64 ? 64 : par.len);
    put_op_buf(&b, OP_INSTALL, &args);
    put_tag(&b, OP_REMOVE, 6);
    fuzz_seed_done(&b, "p2p_install_remove");

    /* malformed arguments: short header, sizes past the data, over the limit, top_k 11 */
    put_op(&b, OP_ORDERED_INSTALL, (const uint8_t *)"\1\0\0\0\2\0\0\0", 8);
    dr_buf_init(&args, 0);
    sd_model_args_encode(&args, 7, synset, synset_len, NULL, 0, (const uint8_t *)"abc", 3);
    args.len -= 1;
    put_op_buf(&b, OP_ORDERED_INSTALL, &args);
    {
        uint8_t big[16] = {1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0};
        put_op(&b, OP_ORDERED_INSTALL, big, sizeof big);
    }
    dr_buf_init(&args, 0);
    sd_inference_args_encode(&args, 1, png.data, png.len, 11);
    put_op_buf(&b, OP_INFERENCE, &args);
    put_op(&b, OP_ORDERED_REMOVE, (const uint8_t *)"\1\0\0", 3);
    fuzz_seed_done(&b, "malformed_args");

    /* the reply decoders: each kind of reply as a real encoder writes it */
    {
        sd_class top[2] = {{.score = 0.75f, .label = "n01 one"}, {.score = 0.25f, .label = "two"}};
        dr_buf_init(&args, 0);
        sd_inference_reply_encode(&args, SD_ANSWER_OK, 0.75f, "n01 one", top, 2);
        put_op_buf(&b, OP_DECODE_INFERENCE, &args);
        dr_buf_init(&args, 0);
        sd_model_reply_encode(&args, -17, "install_model failed because tag (1) has been taken.");
        put_op_buf(&b, OP_DECODE_MODEL_REPLY, &args);
        dr_buf_init(&args, 0);
        dr_buf_put_u32(&args, 2);
        for (uint32_t t = 1; t <= 2; t++) {
            dr_buf_put_u32(&args, t);
            dr_buf_put_u8(&args, (uint8_t)(t - 1));
            dr_buf_put_u64(&args, 1000 * t);
            dr_buf_put_u64(&args, 0x0123456789abcdefull * t);
        }
        put_op_buf(&b, OP_DECODE_LIST, &args);
        fuzz_seed_done(&b, "reply_decoders");
    }
    fuzz_bytes_free(&b);
    free(onnx.data);
    free(sym.data);
    free(par.data);
    free(png.data);
    return 0;
}
