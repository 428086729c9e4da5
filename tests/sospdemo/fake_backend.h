/*
 * A fake function-tier backend for tests: an in-memory table of installed tags and answers
 * that show what the server passed on ("tag 1: 123 bytes, sum 4567"). It can hold calls at a
 * gate (to prove calls run concurrently) and can fail every call with a chosen code.
 */
#ifndef TESTS_SOSPDEMO_FAKE_BACKEND_H
#define TESTS_SOSPDEMO_FAKE_BACKEND_H

#include "function_tier.h"
#include "http_api.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum { FAKE_MAX_TAGS = 64 };

/* What the fake has seen and holds (read it with fake_snapshot). */
typedef struct fake_state {
    bool installed[FAKE_MAX_TAGS];       /* tag < FAKE_MAX_TAGS installed */
    uint64_t model_bytes[FAKE_MAX_TAGS]; /* synset+symbol+params bytes of each */
    char last_synset[256];               /* the synset text of the last install */
    uint8_t last_precision;              /* the dr_precision of the last install */
    unsigned calls;                      /* calls seen */
} fake_state;

typedef struct fake_backend {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    fake_state state;    /* guarded by lock */
    int fail_code;       /* != 0: every call returns it (DR_E*) */
    bool gate_closed;    /* calls wait while true */
    unsigned inside;     /* calls running now */
    unsigned max_inside; /* most calls running at once */
} fake_backend;

void fake_backend_init(fake_backend *fake);
void fake_backend_destroy(fake_backend *fake);

/** The sd_backend that forwards to fake. */
sd_backend fake_backend_interface(fake_backend *fake);

/** A copy of the state, taken under the lock (tests read it while the server runs). */
fake_state fake_snapshot(fake_backend *fake);

/** Marks a tag installed. */
void fake_backend_install(fake_backend *fake, uint32_t tag);

/** Makes every later call fail with code (0: succeed again). */
void fake_backend_fail_with(fake_backend *fake, int code);

/** Closes the gate: later calls wait inside the backend until it opens. */
void fake_backend_close_gate(fake_backend *fake);

/**
 * HTTP hooks for the fake: /v1/models lists the installed tags with their sizes, /v1/cluster
 * a fixed one-node view, /metrics adds sospdemo_models_installed.
 */
sd_http_hooks fake_backend_http_hooks(fake_backend *fake);

/** Opens the gate (waking held calls). */
void fake_backend_open_gate(fake_backend *fake);

/** Waits until `count` calls are inside the backend at once (or timeout_ms passes). */
bool fake_backend_wait_inside(fake_backend *fake, unsigned count, int timeout_ms);

/** The description the fake gives for one tag and photo (caller frees). */
char *fake_describe(uint32_t tag, const uint8_t *photo, size_t len);

#endif
