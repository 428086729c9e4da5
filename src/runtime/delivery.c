/* The delivery thread and its FIFO of upcalls (see delivery.h). */
#include "runtime/delivery.h"

#include "base/big_buffers.h"

#include "derecho/log.h"

#include <stdlib.h>
#include <string.h>

static void run_item(const dr_group_callbacks *callbacks, delivery_item *item) {
    if (item->task) {
        item->task(item->task_arg, callbacks);
    } else if (item->persisted) {
        if (callbacks->on_persisted)
            callbacks->on_persisted(callbacks->ctx, item->message.subgroup, item->message.version,
                                    item->global);
    } else if (item->view) {
        if (callbacks->on_view)
            callbacks->on_view(callbacks->ctx, item->view);
        free(item->view);
    } else {
        if (callbacks->on_deliver)
            callbacks->on_deliver(callbacks->ctx, &item->message);
        if (item->owner != NULL)
            dr_shared_bytes_release(item->owner); /* bytes are inside it */
        else
            dr_big_free((void *)item->message.bytes); /* large buffers are reused */
    }
    free(item);
}

/*
 * The batch is the application's now: its ordered messages stop counting against the windows
 * (taken, not yet run: a callback that itself sends and waits for the window never waits for
 * its own message). The queue thus holds at most about one window per sender beyond the batch.
 */
static void report_taken(delivery_queue *queue, const delivery_item *batch) {
    if (queue->taken == NULL)
        return;
    int64_t last[DR_LAYOUT_MAX_SUBGROUPS];
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        last[s] = -1;
    for (const delivery_item *item = batch; item != NULL; item = item->next) {
        const dr_message *m = &item->message;
        if (item->view == NULL && !item->persisted && !item->task && m->mode == DR_MODE_ORDERED &&
            m->version >= 0 && m->subgroup < DR_LAYOUT_MAX_SUBGROUPS &&
            m->version > last[m->subgroup])
            last[m->subgroup] = m->version;
    }
    for (uint32_t s = 0; s < DR_LAYOUT_MAX_SUBGROUPS; s++)
        if (last[s] >= 0)
            queue->taken(queue->taken_ctx, s, last[s]);
}

static void *delivery_main(void *arg) {
    delivery_queue *queue = arg;
    pthread_mutex_lock(&queue->lock);
    for (;;) {
        while (!queue->head && !queue->stopping)
            pthread_cond_wait(&queue->ready, &queue->lock);
        delivery_item *batch = queue->head;
        queue->head = queue->tail = NULL;
        if (!batch && queue->stopping)
            break;
        pthread_mutex_unlock(&queue->lock);
        report_taken(queue, batch);
        while (batch) {
            delivery_item *next = batch->next;
            run_item(&queue->callbacks, batch);
            batch = next;
        }
        pthread_mutex_lock(&queue->lock);
    }
    pthread_mutex_unlock(&queue->lock);
    return NULL;
}

int delivery_start(delivery_queue *queue, const dr_group_callbacks *callbacks,
                   delivery_taken_fn taken, void *taken_ctx) {
    memset(queue, 0, sizeof *queue);
    if (callbacks)
        queue->callbacks = *callbacks;
    queue->taken = taken;
    queue->taken_ctx = taken_ctx;
    pthread_mutex_init(&queue->lock, NULL);
    pthread_cond_init(&queue->ready, NULL);
    if (pthread_create(&queue->thread, NULL, delivery_main, queue) != 0) {
        pthread_cond_destroy(&queue->ready);
        pthread_mutex_destroy(&queue->lock);
        return DR_EIO;
    }
    pthread_setname_np(queue->thread, "dr-delivery");
    queue->started = true;
    return DR_OK;
}

static void push_item(delivery_queue *queue, delivery_item *item, bool wake) {
    pthread_mutex_lock(&queue->lock);
    if (queue->tail)
        queue->tail->next = item;
    else
        queue->head = item;
    queue->tail = item;
    if (wake)
        pthread_cond_signal(&queue->ready);
    pthread_mutex_unlock(&queue->lock);
}

void delivery_kick(delivery_queue *queue) {
    pthread_mutex_lock(&queue->lock);
    if (queue->head)
        pthread_cond_signal(&queue->ready);
    pthread_mutex_unlock(&queue->lock);
}

int delivery_push_message(delivery_queue *queue, const dr_message *message,
                          dr_shared_bytes *owner) {
    delivery_item *item = calloc(1, sizeof *item);
    if (!item) {
        DR_ERROR(DR_LOGM_GENERAL, "out of memory queueing a delivery; message dropped");
        if (owner != NULL)
            dr_shared_bytes_release(owner);
        else
            free((void *)message->bytes);
        return DR_ENOMEM;
    }
    item->message = *message;
    item->owner = owner;
    push_item(queue, item, false); /* delivery_kick wakes the thread once per batch */
    return DR_OK;
}

int delivery_push_view(delivery_queue *queue, dr_group_view *view) {
    delivery_item *item = calloc(1, sizeof *item);
    if (!item) {
        free(view);
        return DR_ENOMEM;
    }
    item->view = view;
    push_item(queue, item, true);
    return DR_OK;
}

int delivery_push_persisted(delivery_queue *queue, uint32_t subgroup, int64_t version,
                            bool global) {
    delivery_item *item = calloc(1, sizeof *item);
    if (!item) {
        DR_ERROR(DR_LOGM_GENERAL, "out of memory queueing a persistence upcall; dropped");
        return DR_ENOMEM;
    }
    item->persisted = true;
    item->global = global;
    item->message.subgroup = subgroup;
    item->message.version = version;
    push_item(queue, item, true); /* not part of a delivery pass: wake now */
    return DR_OK;
}

int delivery_push_task(delivery_queue *queue, delivery_task_fn task, void *arg) {
    delivery_item *item = calloc(1, sizeof *item);
    if (!item)
        return DR_ENOMEM;
    item->task = task;
    item->task_arg = arg;
    push_item(queue, item, true);
    return DR_OK;
}

void delivery_stop(delivery_queue *queue) {
    if (!queue->started)
        return;
    pthread_mutex_lock(&queue->lock);
    queue->stopping = true;
    pthread_cond_signal(&queue->ready);
    pthread_mutex_unlock(&queue->lock);
    pthread_join(queue->thread, NULL);
    queue->started = false;
    pthread_cond_destroy(&queue->ready);
    pthread_mutex_destroy(&queue->lock);
}
