/*
 * libFuzzer target for the function tier's gRPC upload assembly (apps/sospdemo/upload.c): the
 * stream of serialized PhotoRequest / InstallModelRequest messages a Whatsthis or InstallModel
 * call receives, fed to sd_upload_feed one by one, then sd_upload_finish.
 *
 * Input: byte 0 bit 0 picks the kind (0 photo, 1 model); then messages, each u16 LE length +
 * that many bytes (cut short at the end of the input). Limits are small (photo 4096 bytes,
 * model 8192 bytes, 8 tags) so that they are reached.
 *
 * Checks on every input: an error is DR_EINVAL / DR_ETOOBIG / DR_ENOMEM with a message naming
 * the RPC, and the upload is not fed after it; the bytes held never pass the announced size or
 * the limit, and the buffer grows with the bytes received (not with the announced size); the
 * tags are 1..max_tags; a model's three parts add up to the announced size; finish succeeds
 * exactly when metadata arrived and every announced byte did.
 */
#include "fuzz_seed.h"
#include "sospdemo.pb-c.h"
#include "upload.h"

#include <string.h>

enum { MAX_PHOTO = 4096, MAX_MODEL = 8192, MAX_TAGS = 8 };

static void check_state(const sd_upload *up) {
    if (!up->have_metadata) {
        FUZZ_CHECK(up->data.len == 0 && up->n_tags == 0);
        return;
    }
    FUZZ_CHECK(up->data.len <= up->expected_bytes);
    FUZZ_CHECK(up->data.cap <= up->expected_bytes);
    FUZZ_CHECK(up->data.cap <= 2 * up->data.len + 64);
    if (up->kind == SD_UPLOAD_PHOTO) {
        FUZZ_CHECK(up->expected_bytes >= 1 && up->expected_bytes <= MAX_PHOTO);
        FUZZ_CHECK(up->n_tags >= 1 && up->n_tags <= MAX_TAGS && up->tags != NULL);
    } else {
        FUZZ_CHECK(up->expected_bytes <= MAX_MODEL && up->params_size >= 1);
        FUZZ_CHECK((uint64_t)up->synset_size + up->symbol_size + up->params_size ==
                   up->expected_bytes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    sd_upload_kind kind = (data[0] & 1) ? SD_UPLOAD_MODEL : SD_UPLOAD_PHOTO;
    const char *rpc = sd_upload_kind_name(kind);
    data++, size--;
    sd_upload_limits limits = {
        .max_photo_bytes = MAX_PHOTO, .max_model_bytes = MAX_MODEL, .max_tags = MAX_TAGS};
    sd_upload up;
    sd_upload_init(&up, kind, &limits);
    size_t received = 0;
    int failed = 0;
    while (size >= 2 && !failed) {
        size_t len = (size_t)(data[0] | data[1] << 8);
        data += 2, size -= 2;
        if (len > size)
            len = size;
        bool had_metadata = up.have_metadata;
        size_t before = up.data.len;
        dr_err err;
        dr_err_clear(&err);
        int rc = sd_upload_feed(&up, data, len, &err);
        data += len, size -= len;
        if (rc != DR_OK) {
            FUZZ_CHECK(rc == DR_EINVAL || rc == DR_ETOOBIG || rc == DR_ENOMEM);
            FUZZ_CHECK(strncmp(err.msg, rpc, strlen(rpc)) == 0);
            FUZZ_CHECK(up.data.len == before); /* a refused chunk is not kept */
            failed = 1;
        } else if (had_metadata) {
            FUZZ_CHECK(up.data.len >= before);
            received += up.data.len - before;
        }
        check_state(&up);
    }
    FUZZ_CHECK(up.data.len == received);
    if (!failed) {
        dr_err err;
        dr_err_clear(&err);
        int rc = sd_upload_finish(&up, &err);
        FUZZ_CHECK((rc == DR_OK) == (up.have_metadata && up.data.len == up.expected_bytes));
        if (rc != DR_OK)
            FUZZ_CHECK(rc == DR_EINVAL && strncmp(err.msg, rpc, strlen(rpc)) == 0);
    }
    sd_upload_free(&up);
    return 0;
}

/* ---- seeds: valid streams and near-valid ones (each rule broken once) --------------------- */

static void put_msg(fuzz_bytes *b, const uint8_t *msg, size_t len) {
    fuzz_put_u16(b, (uint16_t)len);
    fuzz_put(b, msg, len);
}

static void put_photo_md(fuzz_bytes *b, uint32_t photo_size, const uint32_t *tags, size_t n) {
    Sospdemo__PhotoRequest__PhotoMetadata md = SOSPDEMO__PHOTO_REQUEST__PHOTO_METADATA__INIT;
    md.photo_size = photo_size;
    md.n_tags = n;
    md.tags = (uint32_t *)tags;
    Sospdemo__PhotoRequest req = SOSPDEMO__PHOTO_REQUEST__INIT;
    req.photo_chunk_case = SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_METADATA;
    req.metadata = &md;
    uint8_t buf[512];
    put_msg(b, buf, sospdemo__photo_request__pack(&req, buf));
}

static void put_photo_data(fuzz_bytes *b, size_t len, uint8_t fill) {
    uint8_t chunk[2048], buf[2100];
    memset(chunk, fill, len);
    Sospdemo__PhotoRequest req = SOSPDEMO__PHOTO_REQUEST__INIT;
    req.photo_chunk_case = SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_FILE_DATA;
    req.file_data.data = chunk;
    req.file_data.len = len;
    put_msg(b, buf, sospdemo__photo_request__pack(&req, buf));
}

static void put_model_md(fuzz_bytes *b, uint32_t tag, uint32_t synset, uint32_t symbol,
                         uint32_t params) {
    Sospdemo__InstallModelRequest__ModelMetadata md =
        SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_METADATA__INIT;
    md.tag = tag;
    md.synset_size = synset;
    md.symbol_size = symbol;
    md.params_size = params;
    Sospdemo__InstallModelRequest req = SOSPDEMO__INSTALL_MODEL_REQUEST__INIT;
    req.model_chunk_case = SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_METADATA;
    req.metadata = &md;
    uint8_t buf[512];
    put_msg(b, buf, sospdemo__install_model_request__pack(&req, buf));
}

static void put_model_data(fuzz_bytes *b, size_t len, uint8_t fill) {
    uint8_t chunk[2048], buf[2100];
    memset(chunk, fill, len);
    Sospdemo__InstallModelRequest req = SOSPDEMO__INSTALL_MODEL_REQUEST__INIT;
    req.model_chunk_case = SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_FILE_DATA;
    req.file_data.data = chunk;
    req.file_data.len = len;
    put_msg(b, buf, sospdemo__install_model_request__pack(&req, buf));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_bytes b = {0};
    static const uint32_t tags[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    /* photo: valid (metadata, two chunks) */
    fuzz_put_u8(&b, 0), put_photo_md(&b, 300, tags, 2), put_photo_data(&b, 200, 0xff),
        put_photo_data(&b, 100, 0xd8);
    fuzz_seed_done(&b, "photo_valid");
    /* photo: one byte short, one byte over, data first, metadata twice, empty message */
    fuzz_put_u8(&b, 0), put_photo_md(&b, 300, tags, 1), put_photo_data(&b, 299, 1);
    fuzz_seed_done(&b, "photo_short");
    fuzz_put_u8(&b, 0), put_photo_md(&b, 300, tags, 1), put_photo_data(&b, 200, 1),
        put_photo_data(&b, 101, 2);
    fuzz_seed_done(&b, "photo_over");
    fuzz_put_u8(&b, 0), put_photo_data(&b, 10, 1), put_photo_md(&b, 10, tags, 1);
    fuzz_seed_done(&b, "photo_data_first");
    fuzz_put_u8(&b, 0), put_photo_md(&b, 10, tags, 1), put_photo_md(&b, 10, tags, 1);
    fuzz_seed_done(&b, "photo_metadata_twice");
    fuzz_put_u8(&b, 0), fuzz_put_u16(&b, 0);
    fuzz_seed_done(&b, "photo_empty_message");
    /* photo: limits (size, tags), zero size, no tags */
    fuzz_put_u8(&b, 0), put_photo_md(&b, MAX_PHOTO + 1, tags, 1);
    fuzz_seed_done(&b, "photo_too_big");
    fuzz_put_u8(&b, 0), put_photo_md(&b, MAX_PHOTO, tags, MAX_TAGS), put_photo_data(&b, 2048, 7),
        put_photo_data(&b, 2048, 8);
    fuzz_seed_done(&b, "photo_at_limits");
    fuzz_put_u8(&b, 0), put_photo_md(&b, 10, tags, MAX_TAGS + 1);
    fuzz_seed_done(&b, "photo_too_many_tags");
    fuzz_put_u8(&b, 0), put_photo_md(&b, 0, tags, 1);
    fuzz_seed_done(&b, "photo_size_zero");
    fuzz_put_u8(&b, 0), put_photo_md(&b, 10, tags, 0), put_photo_data(&b, 10, 1);
    fuzz_seed_done(&b, "photo_no_tags");
    /* model: valid, short, over, limit, empty params, photo messages on the model stream */
    fuzz_put_u8(&b, 1), put_model_md(&b, 7, 10, 20, 30), put_model_data(&b, 25, 's'),
        put_model_data(&b, 35, 'p');
    fuzz_seed_done(&b, "model_valid");
    fuzz_put_u8(&b, 1), put_model_md(&b, 7, 10, 20, 30), put_model_data(&b, 59, 's');
    fuzz_seed_done(&b, "model_short");
    fuzz_put_u8(&b, 1), put_model_md(&b, 7, 0, 0, 30), put_model_data(&b, 31, 's');
    fuzz_seed_done(&b, "model_over");
    fuzz_put_u8(&b, 1), put_model_md(&b, 7, 1, 1, MAX_MODEL - 1);
    fuzz_seed_done(&b, "model_too_big");
    fuzz_put_u8(&b, 1), put_model_md(&b, 7, 0xffffffffu, 0xffffffffu, 0xffffffffu);
    fuzz_seed_done(&b, "model_sizes_overflow");
    fuzz_put_u8(&b, 1), put_model_md(&b, 7, 10, 10, 0);
    fuzz_seed_done(&b, "model_no_params");
    fuzz_put_u8(&b, 1), put_photo_md(&b, 10, tags, 2), put_photo_data(&b, 10, 1);
    fuzz_seed_done(&b, "model_given_photo_messages");
    fuzz_bytes_free(&b);
    return 0;
}
