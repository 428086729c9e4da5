/* Validation and assembly of client-streamed uploads (stream rules: upload.h). */
#include "upload.h"

#include "derecho/infer.h"
#include "sospdemo.pb-c.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *sd_upload_kind_name(sd_upload_kind kind) {
    return kind == SD_UPLOAD_PHOTO ? "Whatsthis" : "InstallModel";
}

void sd_upload_init(sd_upload *upload, sd_upload_kind kind, const sd_upload_limits *limits) {
    memset(upload, 0, sizeof(*upload));
    upload->kind = kind;
    upload->limits = *limits;
    dr_buf_init(&upload->data, 1);
}

void sd_upload_free(sd_upload *upload) {
    free(upload->tags);
    upload->tags = NULL;
    upload->n_tags = 0;
    dr_buf_free(&upload->data);
}

/* Accepts the announced size: sets the data limit to exactly that many bytes. */
static void expect_bytes(sd_upload *upload, uint64_t expected_bytes) {
    upload->expected_bytes = expected_bytes;
    dr_buf_init(&upload->data, (size_t)expected_bytes);
    upload->have_metadata = true;
}

static int accept_photo_metadata(sd_upload *upload, const Sospdemo__PhotoRequest__PhotoMetadata *md,
                                 dr_err *err) {
    const char *rpc = "Whatsthis";
    if (md->photo_size == 0)
        return dr_err_set(err, DR_EINVAL, "%s: metadata announces an empty photo (photo_size 0)",
                          rpc);
    if (md->photo_size > upload->limits.max_photo_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "%s: photo_size %" PRIu32 " exceeds the limit of %" PRIu64 " bytes", rpc,
                          md->photo_size, upload->limits.max_photo_bytes);
    if (md->n_tags == 0)
        return dr_err_set(err, DR_EINVAL, "%s: metadata carries no tags", rpc);
    if (md->n_tags > upload->limits.max_tags)
        return dr_err_set(err, DR_ETOOBIG, "%s: %zu tags exceed the limit of %" PRIu32, rpc,
                          md->n_tags, upload->limits.max_tags);
    upload->tags = malloc(md->n_tags * sizeof(uint32_t));
    if (!upload->tags)
        return dr_err_set(err, DR_ENOMEM, "%s: out of memory", rpc);
    memcpy(upload->tags, md->tags, md->n_tags * sizeof(uint32_t));
    upload->n_tags = sd_dedup_tags(upload->tags, md->n_tags);
    expect_bytes(upload, md->photo_size);
    return DR_OK;
}

int sd_precision_parse(const char *text, uint8_t *out) {
    /* the values of dr_precision; parsed here so that the function tier needs no engine */
    if (!text || !text[0] || strcmp(text, "fp32") == 0)
        *out = DR_PRECISION_FP32;
    else if (strcmp(text, "bf16") == 0)
        *out = DR_PRECISION_BF16;
    else if (strcmp(text, "auto") == 0)
        *out = DR_PRECISION_AUTO;
    else
        return DR_EINVAL;
    return DR_OK;
}

static int accept_model_metadata(sd_upload *upload,
                                 const Sospdemo__InstallModelRequest__ModelMetadata *md,
                                 dr_err *err) {
    const char *rpc = "InstallModel";
    uint64_t total = (uint64_t)md->synset_size + md->symbol_size + md->params_size;
    if (md->params_size == 0)
        return dr_err_set(err, DR_EINVAL, "%s: metadata announces an empty params file", rpc);
    if (total > upload->limits.max_model_bytes)
        return dr_err_set(err, DR_ETOOBIG,
                          "%s: model size %" PRIu64 " (synset %" PRIu32 " + symbol %" PRIu32
                          " + params %" PRIu32 ") exceeds the limit of %" PRIu64 " bytes",
                          rpc, total, md->synset_size, md->symbol_size, md->params_size,
                          upload->limits.max_model_bytes);
    if (sd_precision_parse(md->precision, &upload->precision) != DR_OK)
        return dr_err_set(err, DR_EINVAL, "%s: precision must be fp32, bf16 or auto", rpc);
    upload->model_tag = md->tag;
    upload->synset_size = md->synset_size;
    upload->symbol_size = md->symbol_size;
    upload->params_size = md->params_size;
    expect_bytes(upload, total);
    return DR_OK;
}

/* Appends one file_data chunk; the running total may not pass the announced size. */
static int accept_data(sd_upload *upload, const ProtobufCBinaryData *chunk, dr_err *err) {
    const char *rpc = sd_upload_kind_name(upload->kind);
    if (!upload->have_metadata)
        return dr_err_set(err, DR_EINVAL,
                          "%s: the first message must carry metadata, got file_data", rpc);
    if (chunk->len > upload->expected_bytes - upload->data.len)
        return dr_err_set(err, DR_EINVAL,
                          "%s: received %" PRIu64 " bytes, more than the announced %" PRIu64, rpc,
                          (uint64_t)upload->data.len + chunk->len, upload->expected_bytes);
    int rc = dr_buf_put_bytes(&upload->data, chunk->data, chunk->len);
    if (rc)
        return dr_err_set(err, rc, "%s: cannot store %zu bytes: %s", rpc, chunk->len,
                          dr_strerror(rc));
    return DR_OK;
}

static int metadata_again(const sd_upload *upload, dr_err *err) {
    return dr_err_set(err, DR_EINVAL,
                      "%s: unexpected metadata after the first message (only file_data may follow)",
                      sd_upload_kind_name(upload->kind));
}

static int feed_photo(sd_upload *upload, const uint8_t *msg, size_t len, dr_err *err) {
    Sospdemo__PhotoRequest *req = sospdemo__photo_request__unpack(NULL, len, msg);
    if (!req)
        return dr_err_set(err, DR_EINVAL, "Whatsthis: message is not a valid PhotoRequest");
    int rc;
    switch (req->photo_chunk_case) {
    case SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_METADATA:
        rc = upload->have_metadata ? metadata_again(upload, err)
                                   : accept_photo_metadata(upload, req->metadata, err);
        break;
    case SOSPDEMO__PHOTO_REQUEST__PHOTO_CHUNK_FILE_DATA:
        rc = accept_data(upload, &req->file_data, err);
        break;
    default:
        rc =
            dr_err_set(err, DR_EINVAL, "Whatsthis: message carries neither metadata nor file_data");
        break;
    }
    sospdemo__photo_request__free_unpacked(req, NULL);
    return rc;
}

static int feed_model(sd_upload *upload, const uint8_t *msg, size_t len, dr_err *err) {
    Sospdemo__InstallModelRequest *req = sospdemo__install_model_request__unpack(NULL, len, msg);
    if (!req)
        return dr_err_set(err, DR_EINVAL,
                          "InstallModel: message is not a valid InstallModelRequest");
    int rc;
    switch (req->model_chunk_case) {
    case SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_METADATA:
        rc = upload->have_metadata ? metadata_again(upload, err)
                                   : accept_model_metadata(upload, req->metadata, err);
        break;
    case SOSPDEMO__INSTALL_MODEL_REQUEST__MODEL_CHUNK_FILE_DATA:
        rc = accept_data(upload, &req->file_data, err);
        break;
    default:
        rc = dr_err_set(err, DR_EINVAL,
                        "InstallModel: message carries neither metadata nor file_data");
        break;
    }
    sospdemo__install_model_request__free_unpacked(req, NULL);
    return rc;
}

int sd_upload_feed(sd_upload *upload, const uint8_t *msg, size_t len, dr_err *err) {
    if (upload->kind == SD_UPLOAD_PHOTO)
        return feed_photo(upload, msg, len, err);
    return feed_model(upload, msg, len, err);
}

int sd_upload_finish(const sd_upload *upload, dr_err *err) {
    const char *rpc = sd_upload_kind_name(upload->kind);
    if (!upload->have_metadata)
        return dr_err_set(err, DR_EINVAL, "%s: the stream ended before any metadata", rpc);
    assert(upload->data.len <= upload->expected_bytes);
    if (upload->data.len != upload->expected_bytes)
        return dr_err_set(err, DR_EINVAL,
                          "%s: the stream ended after %zu of %" PRIu64 " announced bytes", rpc,
                          upload->data.len, upload->expected_bytes);
    return DR_OK;
}

size_t sd_dedup_tags(uint32_t *tags, size_t n_tags) {
    size_t kept = 0;
    for (size_t i = 0; i < n_tags; i++) {
        bool seen = false;
        for (size_t j = 0; j < kept && !seen; j++)
            seen = tags[j] == tags[i];
        if (!seen)
            tags[kept++] = tags[i];
    }
    return kept;
}
