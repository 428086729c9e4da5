/*
 * The service end to end: a real 6-node cluster on 127.0.0.1 (ports 26000-26099): nodes 0-1
 * function tier, nodes 2-5 the categorizer tier in two shards of two replicas. Driven with the
 * `sospdemo client` binary, curl for the HTTP API, and a raw gRPC client for bad streams.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster_harness.h"
#include "common/skip.h"
#include "stream_helpers.h"

#include <cjson/cJSON.h>
#include <grpc/grpc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PORT_BASE 26000

static harness_cluster g_cluster;
static char g_model[3][700]; /* synset, symbol, params of the demo model */

static int setup(void **state) {
    (void)state;
    harness_options options = {
        .name = "service", .nodes = 6, .function_nodes = 2, .shards = 2, .port_base = PORT_BASE};
    if (harness_start(&g_cluster, &options, 60) != 0)
        return -1;
    grpc_init();
    harness_source_path(&g_cluster, "models/demo-shapes/synset.txt", g_model[0],
                        700); /* set: grpc_init done */
    harness_source_path(&g_cluster, "models/demo-shapes/shapes-symbol.json", g_model[1], 700);
    harness_source_path(&g_cluster, "models/demo-shapes/shapes-0000.params", g_model[2], 700);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (g_model[0][0])
        grpc_shutdown();
    harness_stop(&g_cluster);
    /* every node left cleanly on SIGTERM */
    for (int i = 0; i < g_cluster.nodes; i++) {
        if (g_cluster.exit_codes[i] != 0) {
            fprintf(stderr, "node %d exited with %d\n", i, g_cluster.exit_codes[i]);
            return -1;
        }
    }
    return 0;
}

/* Runs the client on function-tier node `node` and checks its exit code and output. */
static void expect_client(int node, const char *args, int exit_code, const char *contains) {
    int rc = -1;
    char *out = harness_client(&g_cluster, node, args, &rc);
    assert_non_null(out);
    if (rc != exit_code || !strstr(out, contains))
        fprintf(stderr, "client %s -> %d:\n%s(expected %d and '%s')\n", args, rc, out, exit_code,
                contains);
    assert_int_equal(rc, exit_code);
    assert_non_null(strstr(out, contains));
    free(out);
}

static void install_demo(int node, uint32_t tag, int exit_code, const char *contains) {
    char args[4000];
    snprintf(args, sizeof args, "installmodel %u '%s' '%s' '%s'", tag, g_model[0], g_model[1],
             g_model[2]);
    expect_client(node, args, exit_code, contains);
}

static void classify(int node, const char *tags, const char *photo_relative,
                     const char *expected_line) {
    char photo[700], args[900];
    harness_source_path(&g_cluster, photo_relative, photo, sizeof photo);
    snprintf(args, sizeof args, "inference %s '%s'", tags, photo);
    /* an answer that is an error ("Cannot ...") exits 1 (issue 18), the seed's line unchanged */
    expect_client(node, args, strstr(expected_line, "Cannot ") ? 1 : 0, expected_line);
}

/* curl on node 0's HTTP API: the status code, then the body, in one string (malloc'd). */
static char *http_status_body(const char *curl_args, const char *path) {
    char base[64], command[1200];
    harness_http_base(&g_cluster, 0, base, sizeof base);
    snprintf(command, sizeof command, "curl -sS -w ' %%{http_code}' %s '%s%s'", curl_args, base,
             path);
    int rc = -1;
    char *out = harness_run(command, &rc);
    assert_int_equal(rc, 0);
    return out;
}

static void expect_http(const char *curl_args, const char *path, const char *status,
                        const char *contains) {
    char *out = http_status_body(curl_args, path);
    size_t len = strlen(out);
    if (len < 4 || strcmp(out + len - 4, status) != 0 || !strstr(out, contains))
        fprintf(stderr, "curl %s %s -> %s (expected%s and '%s')\n", curl_args, path, out, status,
                contains);
    assert_true(len >= 4 && strcmp(out + len - 4, status) == 0);
    assert_non_null(strstr(out, contains));
    free(out);
}

/* GET on node 0's HTTP API, parsed. */
static cJSON *http_get_json(const char *path) {
    char base[64], command[256];
    harness_http_base(&g_cluster, 0, base, sizeof base);
    snprintf(command, sizeof command, "curl -sS '%s%s'", base, path);
    int rc = -1;
    char *out = harness_run(command, &rc);
    assert_int_equal(rc, 0);
    cJSON *json = cJSON_Parse(out);
    if (!json)
        fprintf(stderr, "not JSON: %s\n", out);
    free(out);
    assert_non_null(json);
    return json;
}

/* Every installed model is held by both replicas of its shard, with the same bytes. */
static void assert_replicas_hold(int expected_models) {
    cJSON *models = http_get_json("/v1/models");
    assert_true(cJSON_IsArray(models));
    assert_int_equal(cJSON_GetArraySize(models), expected_models);
    cJSON *model = NULL;
    cJSON_ArrayForEach(model, models) {
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(model, "consistent")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(model, "replicas")), 2);
        /* the install's version in the shard and its time, the same at both replicas */
        const cJSON *version = cJSON_GetObjectItem(model, "version");
        const cJSON *view = cJSON_GetObjectItem(model, "view");
        const cJSON *installed = cJSON_GetObjectItem(model, "installed");
        assert_true(cJSON_IsNumber(version) && cJSON_IsNumber(view) && cJSON_IsString(installed));
        assert_true(version->valuedouble > 0);
        assert_int_equal((int64_t)version->valuedouble >> 32, (int64_t)view->valuedouble);
        assert_int_equal(strlen(installed->valuestring), strlen("2026-12-07T04:10:02.123456Z"));
        assert_true(strncmp(installed->valuestring, "20", 2) == 0);
    }
    cJSON_Delete(models);
}

static void test_install_inference_remove(void **state) {
    (void)state;
    classify(0, "2", "models/demo-shapes/photos/red-circle.jpg",
             "photo description:Cannot find model for photo tag.");
    install_demo(0, 2, 0, "return code:0\ndescription:install model successfully.");
    static const char *const photos[][2] = {
        {"red-circle.jpg", "n00000001 red circle"},
        {"red-square.png", "n00000002 red square"},
        {"green-triangle.jpg", "n00000003 green triangle"},
        {"green-star.png", "n00000004 green star"},
        {"blue-circle.jpg", "n00000005 blue circle"},
        {"blue-triangle.png", "n00000006 blue triangle"},
        {"yellow-star.jpg", "n00000007 yellow star"},
        {"yellow-square.png", "n00000008 yellow square"},
    };
    for (size_t i = 0; i < sizeof photos / sizeof *photos; i++) {
        char photo[128], line[128];
        snprintf(photo, sizeof photo, "models/demo-shapes/photos/%s", photos[i][0]);
        snprintf(line, sizeof line, "photo description:%s\n", photos[i][1]);
        classify((int)(i % 2), "2", photo, line); /* both function-tier nodes */
    }
    assert_replicas_hold(1);
    expect_client(1, "removemodel 2", 0, "return code:0\ndescription:remove model successfully.");
    classify(0, "2", "models/demo-shapes/photos/red-circle.jpg",
             "photo description:Cannot find model for photo tag.");
    expect_client(0, "removemodel 2", 1,
                  "description:remove_model failed because tag (2) is not installed.");
    assert_replicas_hold(0);
}

static void test_duplicate_install(void **state) {
    (void)state;
    install_demo(0, 4, 0, "description:install model successfully.");
    install_demo(1, 4, 1, "description:install_model failed because tag (4) has been taken.");
    assert_replicas_hold(1);
    expect_client(0, "removemodel 4", 0, "remove model successfully.");
}

static void test_multi_tag_across_shards(void **state) {
    (void)state;
    install_demo(0, 6, 0, "install model successfully."); /* shard 0 */
    install_demo(1, 7, 0, "install model successfully."); /* shard 1 */
    classify(0, "6,7", "models/demo-shapes/photos/green-star.png",
             "photo description:n00000004 green star or n00000004 green star\n");
    classify(1, "7,9,6", "models/demo-shapes/photos/blue-circle.jpg",
             "photo description:n00000005 blue circle or Cannot find model for photo tag. or "
             "n00000005 blue circle\n");
    /* the cluster view shows which shard holds which tag */
    cJSON *cluster = http_get_json("/v1/cluster");
    cJSON *shards = cJSON_GetObjectItem(cluster, "categorizer_tier");
    assert_int_equal(cJSON_GetArraySize(shards), 2);
    for (int s = 0; s < 2; s++) {
        cJSON *tags = cJSON_GetObjectItem(cJSON_GetArrayItem(shards, s), "tags");
        assert_int_equal(cJSON_GetArraySize(tags), 1);
        assert_int_equal(cJSON_GetArrayItem(tags, 0)->valueint, s == 0 ? 6 : 7);
    }
    cJSON_Delete(cluster);
    assert_replicas_hold(2);
    expect_client(0, "removemodel 6", 0, "remove model successfully.");
    expect_client(0, "removemodel 7", 0, "remove model successfully.");
}

static void test_onnx_model(void **state) {
    (void)state;
    char dir[700], command[2000];
    snprintf(dir, sizeof dir, "%s/onnx", g_cluster.dir);
    snprintf(command, sizeof command,
             "/usr/bin/python3 '%s/tests/sospdemo/make_colour_onnx.py' '%s' && : > '%s/empty'",
             g_cluster.source_dir, dir, dir);
    int rc = -1;
    char *out = harness_run(command, &rc);
    if (rc != 0) {
        static char reason[2000];
        snprintf(reason, sizeof reason, "%s", out);
        free(out);
        DR_SKIP("cannot make the ONNX test model (python3-onnx, python3-pil): %s", reason);
    }
    free(out);
    char args[4000];
    snprintf(args, sizeof args,
             "installmodel 10 '%s/colour-labels.txt' '%s/empty' '%s/colour.onnx'", dir, dir, dir);
    expect_client(0, args, 0, "install model successfully.");
    snprintf(args, sizeof args, "inference 10 '%s/red.png'", dir);
    expect_client(1, args, 0, "photo description:red\n");
    snprintf(args, sizeof args, "inference 10 '%s/blue.jpg'", dir);
    expect_client(0, args, 0, "photo description:blue\n");
    cJSON *models = http_get_json("/v1/models");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(models, 0), "format")->valuestring,
                        "onnx");
    /* installed without a precision: fp32, shown by /v1/models */
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(models, 0), "precision")->valuestring, "fp32");
    cJSON_Delete(models);
    expect_client(0, "removemodel 10", 0, "remove model successfully.");
}

static void test_model_that_cannot_load(void **state) {
    (void)state;
    char bad_symbol[760];
    snprintf(bad_symbol, sizeof bad_symbol, "%s/bad-symbol.json", g_cluster.dir);
    FILE *out = fopen(bad_symbol, "w");
    assert_non_null(out);
    fputs("{\"nodes\": [{\"op\": \"NoSuchOp\", \"name\": \"x\", \"inputs\": []}]}", out);
    fclose(out);
    char args[4000];
    snprintf(args, sizeof args, "installmodel 12 '%s' '%s' '%s'", g_model[0], bad_symbol,
             g_model[2]);
    /* loaded once at install: refused with the loader's reason, nothing installed */
    expect_client(0, args, 1,
                  "description:install_model failed because the model of tag (12) cannot be "
                  "loaded: ");
    classify(1, "12", "models/demo-shapes/photos/red-circle.jpg",
             "photo description:Cannot find model for photo tag.\n");
    /* over HTTP: 422 with the reason */
    char form[3000];
    snprintf(form, sizeof form, "-X PUT -F 'synset=@%s' -F 'symbol=@%s' -F 'params=@%s'",
             g_model[0], bad_symbol, g_model[2]);
    expect_http(form, "/v1/models/12", " 422", "cannot be loaded: ");
    expect_http("", "/v1/models/12", " 404", "no model is installed under tag 12");
}

/* HTTP answers errors as errors, takes curl -F uploads, gives the score. */
static void test_http_errors_are_errors(void **state) {
    (void)state;
    install_demo(0, 14, 0, "install model successfully.");
    char photo[700], args[1000];
    harness_source_path(&g_cluster, "models/demo-shapes/photos/red-circle.jpg", photo,
                        sizeof photo);
    snprintf(args, sizeof args, "-F 'photo=@%s'", photo);
    expect_http(args, "/v1/whatsthis?tags=14", " 200", "\"score\":");
    expect_http(args, "/v1/whatsthis?tags=14&top=3", " 200",
                "\"top\":[{\"label\":\"n00000001 red circle\",\"score\":");
    expect_http(args, "/v1/whatsthis?tags=15", " 404", "Cannot find model for photo tag.");
    snprintf(args, sizeof args, "-F 'photo=@%s'", g_model[0]); /* a text file */
    expect_http(args, "/v1/whatsthis?tags=14", " 415", "Cannot classify photo");
    snprintf(args, sizeof args, "-X PUT --data-binary '@%s'", g_model[0]);
    expect_http(args, "/v1/models/16", " 415", "needs multipart/form-data");
    expect_http("", "/v1/models/14", " 200", "\"tag\":14");
    /* the harness's categorizer tier is volatile: no history to read a model back from */
    expect_http("", "/v1/models/14?version=1", " 409", "the categorizer shard is not durable");
    expect_http("", "/metrics", " 200", "sospdemo_http_errors_by_kind_total{kind=\"not_found\"}");
    expect_client(0, "removemodel 14", 0, "remove model successfully.");
}

static void test_bad_streams(void **state) {
    (void)state;
    char address[64];
    harness_grpc_address(&g_cluster, 0, address, sizeof address);
    uint32_t tags[] = {1};
    uint8_t bytes[1000] = {0};
    call_result result;

    /* truncated photo stream: 1000 of 5000 announced bytes */
    packed_msg truncated[] = {photo_metadata_msg(5000, tags, 1), photo_data_msg(bytes, 1000)};
    raw_call(address, "/sospdemo.FunctionTierService/Whatsthis", truncated, 2, &result);
    assert_int_equal(result.status, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(result.details, "the stream ended after 1000 of 5000"));
    call_result_free(&result);

    /* a photo over the service's limit (from max_p2p_request_payload_size) */
    packed_msg big[] = {photo_metadata_msg(0xfffffff0u, tags, 1)};
    raw_call(address, "/sospdemo.FunctionTierService/Whatsthis", big, 1, &result);
    assert_int_equal(result.status, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(result.details, "exceeds the limit"));
    call_result_free(&result);

    /* a model over the categorizer's max_payload_size */
    packed_msg model[] = {model_metadata_msg(1, 10, 10, 200u * 1024u * 1024u)};
    raw_call(address, "/sospdemo.FunctionTierService/InstallModel", model, 1, &result);
    assert_int_equal(result.status, GRPC_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(result.details, "exceeds the limit"));
    call_result_free(&result);

    /* truncated model stream */
    packed_msg short_model[] = {model_metadata_msg(1, 10, 10, 100), model_data_msg(bytes, 50)};
    raw_call(address, "/sospdemo.FunctionTierService/InstallModel", short_model, 2, &result);
    assert_int_equal(result.status, GRPC_STATUS_INVALID_ARGUMENT);
    call_result_free(&result);

    /* data before metadata */
    packed_msg no_metadata[] = {photo_data_msg(bytes, 10)};
    raw_call(address, "/sospdemo.FunctionTierService/Whatsthis", no_metadata, 1, &result);
    assert_int_equal(result.status, GRPC_STATUS_INVALID_ARGUMENT);
    call_result_free(&result);

    /* nothing reached the categorizers; the service still answers */
    assert_replicas_hold(0);
    classify(1, "1", "models/demo-shapes/photos/red-circle.jpg",
             "photo description:Cannot find model for photo tag.");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_inference_remove),
        cmocka_unit_test(test_duplicate_install),
        cmocka_unit_test(test_multi_tag_across_shards),
        cmocka_unit_test(test_onnx_model),
        cmocka_unit_test(test_model_that_cannot_load),
        cmocka_unit_test(test_http_errors_are_errors),
        cmocka_unit_test(test_bad_streams),
    };
    return dr_test_exit(cmocka_run_group_tests(tests, setup, teardown));
}
