/* A fake function-tier backend for tests (fake_backend.h). */
#include "fake_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fake_backend_init(fake_backend *fake) {
    memset(fake, 0, sizeof(*fake));
    pthread_mutex_init(&fake->lock, NULL);
    pthread_cond_init(&fake->changed, NULL);
}

void fake_backend_destroy(fake_backend *fake) {
    pthread_cond_destroy(&fake->changed);
    pthread_mutex_destroy(&fake->lock);
}

char *fake_describe(uint32_t tag, const uint8_t *photo, size_t len) {
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = sum * 31 + photo[i];
    char *text = NULL;
    if (asprintf(&text, "tag %u: %zu bytes, sum %llu", tag, len, (unsigned long long)sum) < 0)
        return NULL;
    return text;
}

/* Enters the backend: counts, waits at the gate; returns the configured failure code. */
static int enter(fake_backend *fake) {
    pthread_mutex_lock(&fake->lock);
    fake->state.calls++;
    fake->inside++;
    if (fake->inside > fake->max_inside)
        fake->max_inside = fake->inside;
    pthread_cond_broadcast(&fake->changed);
    while (fake->gate_closed)
        pthread_cond_wait(&fake->changed, &fake->lock);
    int fail = fake->fail_code;
    pthread_mutex_unlock(&fake->lock);
    return fail;
}

static void leave(fake_backend *fake) {
    pthread_mutex_lock(&fake->lock);
    fake->inside--;
    pthread_cond_broadcast(&fake->changed);
    pthread_mutex_unlock(&fake->lock);
}

static bool is_installed(fake_backend *fake, uint32_t tag) {
    pthread_mutex_lock(&fake->lock);
    bool installed = tag < FAKE_MAX_TAGS && fake->state.installed[tag];
    pthread_mutex_unlock(&fake->lock);
    return installed;
}

static int append(char **text, const char *part) {
    size_t old = *text ? strlen(*text) : 0;
    char *grown = realloc(*text, old + strlen(part) + 5);
    if (!grown)
        return DR_ENOMEM;
    if (old)
        strcpy(grown + old, " or ");
    else
        grown[0] = '\0';
    strcat(grown, part);
    *text = grown;
    return DR_OK;
}

static int fake_whatsthis(void *user, const uint32_t *tags, size_t n_tags, const uint8_t *photo,
                          size_t photo_size_bytes, char **desc_out, dr_err *err) {
    fake_backend *fake = user;
    int fail = enter(fake);
    char *desc = NULL;
    int rc = DR_OK;
    if (fail)
        rc = dr_err_set(err, fail, "fake backend failure");
    for (size_t i = 0; i < n_tags && rc == DR_OK; i++) {
        char *one = is_installed(fake, tags[i]) ? fake_describe(tags[i], photo, photo_size_bytes)
                                                : strdup("Cannot find model for photo tag.");
        rc = one ? append(&desc, one) : DR_ENOMEM;
        free(one);
    }
    leave(fake);
    if (rc)
        free(desc);
    else
        *desc_out = desc;
    return rc;
}

static int fake_install(void *user, uint32_t tag, const uint8_t *synset, size_t synset_bytes,
                        const uint8_t *symbol, size_t symbol_bytes, const uint8_t *params,
                        size_t params_bytes, uint8_t precision, int32_t *error_code_out,
                        char **error_desc_out, dr_err *err) {
    fake_backend *fake = user;
    (void)symbol;
    (void)params;
    int fail = enter(fake);
    int rc = DR_OK;
    char *desc = NULL;
    pthread_mutex_lock(&fake->lock);
    if (fail) {
        rc = dr_err_set(err, fail, "fake backend failure");
    } else if (tag >= FAKE_MAX_TAGS || fake->state.installed[tag]) {
        *error_code_out = -1;
        if (asprintf(&desc, "install_model failed because tag (%u) has been taken.", tag) < 0)
            desc = NULL;
    } else {
        fake->state.installed[tag] = true;
        fake->state.model_bytes[tag] = synset_bytes + symbol_bytes + params_bytes;
        fake->state.last_precision = precision;
        size_t n = synset_bytes < sizeof(fake->state.last_synset) - 1
                       ? synset_bytes
                       : sizeof(fake->state.last_synset) - 1;
        memcpy(fake->state.last_synset, synset, n);
        fake->state.last_synset[n] = '\0';
        *error_code_out = 0;
        desc = strdup("install model successfully.");
    }
    pthread_mutex_unlock(&fake->lock);
    leave(fake);
    *error_desc_out = desc;
    return rc;
}

static int fake_remove(void *user, uint32_t tag, int32_t *error_code_out, char **error_desc_out,
                       dr_err *err) {
    fake_backend *fake = user;
    int fail = enter(fake);
    int rc = DR_OK;
    pthread_mutex_lock(&fake->lock);
    if (fail) {
        rc = dr_err_set(err, fail, "fake backend failure");
    } else if (tag >= FAKE_MAX_TAGS || !fake->state.installed[tag]) {
        *error_code_out = -1;
        *error_desc_out = strdup("remove_model failed because tag is not installed.");
    } else {
        fake->state.installed[tag] = false;
        *error_code_out = 0;
        *error_desc_out = strdup("remove model successfully.");
    }
    pthread_mutex_unlock(&fake->lock);
    leave(fake);
    return rc;
}

sd_backend fake_backend_interface(fake_backend *fake) {
    sd_backend backend = {
        .user = fake,
        .whatsthis = fake_whatsthis,
        .install_model = fake_install,
        .remove_model = fake_remove,
    };
    return backend;
}

void fake_backend_open_gate(fake_backend *fake) {
    pthread_mutex_lock(&fake->lock);
    fake->gate_closed = false;
    pthread_cond_broadcast(&fake->changed);
    pthread_mutex_unlock(&fake->lock);
}

bool fake_backend_wait_inside(fake_backend *fake, unsigned count, int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&fake->lock);
    int rc = 0;
    while (fake->inside < count && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&fake->changed, &fake->lock, &deadline);
    bool reached = fake->inside >= count;
    pthread_mutex_unlock(&fake->lock);
    return reached;
}

fake_state fake_snapshot(fake_backend *fake) {
    pthread_mutex_lock(&fake->lock);
    fake_state copy = fake->state;
    pthread_mutex_unlock(&fake->lock);
    return copy;
}

void fake_backend_install(fake_backend *fake, uint32_t tag) {
    pthread_mutex_lock(&fake->lock);
    if (tag < FAKE_MAX_TAGS)
        fake->state.installed[tag] = true;
    pthread_mutex_unlock(&fake->lock);
}

void fake_backend_fail_with(fake_backend *fake, int code) {
    pthread_mutex_lock(&fake->lock);
    fake->fail_code = code;
    pthread_mutex_unlock(&fake->lock);
}

void fake_backend_close_gate(fake_backend *fake) {
    pthread_mutex_lock(&fake->lock);
    fake->gate_closed = true;
    pthread_mutex_unlock(&fake->lock);
}

static int fake_list_models(void *user, char **json_out, dr_err *err) {
    fake_state state = fake_snapshot(user);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return dr_err_set(err, DR_ENOMEM, "out of memory");
    fputc('[', out);
    bool first = true;
    for (unsigned tag = 0; tag < FAKE_MAX_TAGS; tag++) {
        if (!state.installed[tag])
            continue;
        fprintf(out, "%s{\"tag\":%u,\"bytes\":%llu}", first ? "" : ",", tag,
                (unsigned long long)state.model_bytes[tag]);
        first = false;
    }
    fputc(']', out);
    fclose(out);
    *json_out = text;
    return DR_OK;
}

static int fake_cluster(void *user, char **json_out, dr_err *err) {
    (void)user;
    /* the shape of the real /v1/cluster (function_backend.c): one healthy function node, a
     * categorizer shard with a suspected replica that cannot go on */
    *json_out = strdup(
        "{\"view_id\":1,\"my_id\":0,\"fake\":true,"
        "\"members\":[{\"id\":0,\"failed\":false,\"suspected\":false},"
        "{\"id\":1,\"failed\":false,\"suspected\":false},"
        "{\"id\":2,\"failed\":false,\"suspected\":true}],"
        "\"problems\":[\"CATEGORIZER_TIER shard 0 needs 2, has 1: waiting for a node\"],"
        "\"function_tier\":[{\"shard\":0,\"members\":[{\"id\":0,\"failed\":false,"
        "\"suspected\":false,\"grpc\":\"127.0.0.1:28000\",\"http\":\"http://127.0.0.1:18000/\"}]}],"
        "\"categorizer_tier\":[{\"shard\":0,\"serves\":\"tag % 1 == 0\",\"tags\":[3],"
        "\"members\":[{\"id\":1,\"failed\":false,\"suspected\":false},"
        "{\"id\":2,\"failed\":false,\"suspected\":true}]}]}");
    return *json_out ? DR_OK : dr_err_set(err, DR_ENOMEM, "out of memory");
}

static int fake_metrics(void *user, char **text_out) {
    fake_state state = fake_snapshot(user);
    unsigned count = 0;
    for (unsigned tag = 0; tag < FAKE_MAX_TAGS; tag++)
        count += state.installed[tag];
    return asprintf(text_out, "sospdemo_models_installed %u\n", count) < 0 ? DR_ENOMEM : DR_OK;
}

sd_http_hooks fake_backend_http_hooks(fake_backend *fake) {
    sd_http_hooks hooks = {
        .user = fake,
        .list_models = fake_list_models,
        .cluster = fake_cluster,
        .metrics = fake_metrics,
    };
    return hooks;
}
