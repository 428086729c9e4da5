/*
 * The delivery thread: runs the application's delivery and view callbacks one at a time, in
 * the order the core produced them, off the network and application threads.
 */
#ifndef DR_RUNTIME_DELIVERY_H
#define DR_RUNTIME_DELIVERY_H

#include "base/shared_bytes.h"
#include "derecho/group.h"

#include <pthread.h>
#include <stdbool.h>

/**
 * A task queued on the delivery thread (e.g. a total restart's replay of a log): runs in FIFO
 * order with the upcalls, with the application's callbacks at hand, and owns `arg` (frees it).
 */
typedef void (*delivery_task_fn)(void *arg, const dr_group_callbacks *callbacks);

/** One queued upcall: a message (bytes owned), a view (owned) or a task. */
typedef struct delivery_item {
    struct delivery_item *next; /* FIFO link */
    dr_message message;         /* when view == NULL; message.bytes is owned (malloc), or... */
    dr_shared_bytes *owner;     /* ...inside this shared buffer (one reference held), if set */
    dr_group_view *view;        /* a view upcall, owned */
    bool persisted;             /* a persistence upcall: message.subgroup and .version */
    bool global;                /* ...for the shard's frontier (else local) */
    delivery_task_fn task;      /* a task: task(task_arg, callbacks) */
    void *task_arg;             /* owned by the task */
} delivery_item;

/**
 * Told (on the delivery thread, no lock held) that the application took every ordered message
 * of `subgroup` up to `version` off the queue; the runtime reports it to the core, which counts
 * messages against the senders' windows until then (a bounded queue).
 */
typedef void (*delivery_taken_fn)(void *ctx, uint32_t subgroup, int64_t version);

/** The queue and its thread. */
typedef struct delivery_queue {
    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t ready;         /* signalled when items arrive or on stop */
    delivery_item *head, *tail;   /* FIFO */
    bool stopping;                /* the thread drains and exits */
    bool started;                 /* thread is running */
    pthread_t thread;             /* the delivery thread */
    dr_group_callbacks callbacks; /* copied at start */
    delivery_taken_fn taken;      /* may be NULL */
    void *taken_ctx;
} delivery_queue;

/**
 * Initializes the queue and starts its thread; `taken` (may be NULL) hears of each batch the
 * thread takes, before its callbacks run. Returns 0 or DR_EIO/DR_ENOMEM.
 */
int delivery_start(delivery_queue *queue, const dr_group_callbacks *callbacks,
                   delivery_taken_fn taken, void *taken_ctx);

/**
 * Queues a message; takes ownership of message->bytes (freed after the callback), or, if
 * owner is set, of the reference on owner that holds them (released after the callback).
 * Does not wake the delivery thread: call delivery_kick after a run of pushes (one wake-up per
 * batch, not per message). Returns 0 or DR_ENOMEM (the bytes are then freed). Any thread.
 */
int delivery_push_message(delivery_queue *queue, const dr_message *message, dr_shared_bytes *owner);

/** Wakes the delivery thread if anything is queued. Any thread. */
void delivery_kick(delivery_queue *queue);

/** Queues a view upcall; takes ownership of view. Returns 0 or DR_ENOMEM. Any thread. */
int delivery_push_view(delivery_queue *queue, dr_group_view *view);

/**
 * Queues a persistence upcall (on_persisted(subgroup, version, global)), run after everything
 * queued before it. Returns 0 or DR_ENOMEM (the upcall is dropped, logged). Any thread.
 */
int delivery_push_persisted(delivery_queue *queue, uint32_t subgroup, int64_t version, bool global);

/**
 * Queues `task` to run on the delivery thread after everything queued before it (and before
 * anything queued after it); wakes the thread. The task owns `arg`. Returns 0, or DR_ENOMEM (the
 * task then runs nowhere: `arg` is the caller's again). Any thread.
 */
int delivery_push_task(delivery_queue *queue, delivery_task_fn task, void *arg);

/**
 * Stops the thread after it has run every queued upcall, joins it and frees the queue.
 * Not from the delivery thread.
 */
void delivery_stop(delivery_queue *queue);

#endif
