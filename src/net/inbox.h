/*
 * Inbox of the TCP transport: a FIFO of dr_net_event from the network thread (one producer) to
 * one consumer thread, which blocks on an eventfd when idle after a bounded adaptive spin.
 * The eventfd is readable while events may be waiting, so the consumer can also put it in its
 * own epoll set. The inbox counts queued payload bytes; above max_bytes it reports "over limit"
 * (the network thread then stops reading sockets) until the consumer drains it below half.
 */
#ifndef DR_NET_INBOX_H
#define DR_NET_INBOX_H

#include "net/net.h"
#include "net/spin.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct dr_net_inbox {
    pthread_mutex_t mu;       /**< guards the ring, bytes and signalled */
    dr_net_event *ring;       /**< circular buffer of events */
    size_t cap;               /**< ring capacity (power of two) */
    size_t head;              /**< index of the oldest event */
    size_t count;             /**< events in the ring */
    atomic_size_t pending;    /**< mirror of count for lock-free spinning */
    size_t bytes;             /**< payload bytes queued */
    size_t max_bytes;         /**< pause threshold */
    atomic_bool over_limit;   /**< set above max_bytes, cleared below max_bytes / 2 */
    int event_fd;             /**< eventfd the consumer waits on */
    bool signalled;           /**< event_fd holds a token */
    int wake_producer_fd;     /**< written when over_limit clears (wakes the network thread) */
    dr_spin spin;             /**< consumer's spin state */
    _Atomic uint64_t wakeups; /**< poll returns and spin rounds of the consumer (relaxed) */
} dr_net_inbox;

/** Initialises an empty inbox. Returns 0, or DR_EIO (eventfd) / DR_ENOMEM with nothing left to
 * destroy. */
int dr_net_inbox_init(dr_net_inbox *inbox, size_t max_bytes, uint32_t spin_us,
                      int wake_producer_fd);

/** Frees queued events (and their messages) and the eventfd. */
void dr_net_inbox_destroy(dr_net_inbox *inbox);

/** Appends an event (ownership of ev->msg moves in). Returns 0 or DR_ENOMEM. Producer thread. */
int dr_net_inbox_push(dr_net_inbox *inbox, const dr_net_event *ev);

/**
 * Takes the oldest event, waiting up to timeout_ms (-1 forever, 0 not at all). Returns 0,
 * DR_ETIMEDOUT, or DR_ECLOSED once *stopping is set and the inbox is empty. Each return of its
 * poll and each round of its spin adds one to inbox->wakeups. Consumer thread.
 */
int dr_net_inbox_pop(dr_net_inbox *inbox, dr_net_event *ev, int timeout_ms,
                     const atomic_bool *stopping);

/** Whether the producer should stop reading (payload bytes over the limit). Any thread. */
bool dr_net_inbox_over_limit(dr_net_inbox *inbox);

#endif
