/* Inbox of the TCP transport (inbox.h): ring buffer + eventfd + bounded adaptive spin. */
#include "net/inbox.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int dr_net_inbox_init(dr_net_inbox *inbox, size_t max_bytes, uint32_t spin_us,
                      int wake_producer_fd) {
    memset(inbox, 0, sizeof *inbox);
    inbox->cap = 64;
    inbox->ring = calloc(inbox->cap, sizeof *inbox->ring);
    inbox->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&inbox->mu, NULL);
    inbox->max_bytes = max_bytes;
    inbox->wake_producer_fd = wake_producer_fd;
    dr_spin_init(&inbox->spin, spin_us);
    if (inbox->ring && inbox->event_fd >= 0)
        return DR_OK;
    int rc = inbox->ring ? DR_EIO : DR_ENOMEM;
    dr_net_inbox_destroy(inbox);
    return rc;
}

void dr_net_inbox_destroy(dr_net_inbox *inbox) {
    for (size_t i = 0; i < inbox->count; i++)
        free(inbox->ring[(inbox->head + i) & (inbox->cap - 1)].msg);
    free(inbox->ring);
    inbox->ring = NULL;
    inbox->count = 0;
    inbox->head = 0;
    if (inbox->event_fd >= 0)
        close(inbox->event_fd);
    inbox->event_fd = -1;
    pthread_mutex_destroy(&inbox->mu);
}

static int grow_locked(dr_net_inbox *inbox) {
    size_t cap = inbox->cap * 2;
    dr_net_event *ring = malloc(cap * sizeof *ring);
    if (!ring)
        return DR_ENOMEM;
    for (size_t i = 0; i < inbox->count; i++)
        ring[i] = inbox->ring[(inbox->head + i) & (inbox->cap - 1)];
    free(inbox->ring);
    inbox->ring = ring;
    inbox->cap = cap;
    inbox->head = 0;
    return DR_OK;
}

static void signal_fd(int fd) {
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n; /* EAGAIN only when the counter is saturated: already readable */
}

int dr_net_inbox_push(dr_net_inbox *inbox, const dr_net_event *ev) {
    pthread_mutex_lock(&inbox->mu);
    int rc = inbox->count == inbox->cap ? grow_locked(inbox) : 0;
    if (rc == 0) {
        inbox->ring[(inbox->head + inbox->count) & (inbox->cap - 1)] = *ev;
        inbox->count++;
        atomic_store_explicit(&inbox->pending, inbox->count, memory_order_release);
        inbox->bytes += ev->msg ? ev->msg->payload_bytes : 0;
        if (inbox->bytes > inbox->max_bytes)
            atomic_store(&inbox->over_limit, true);
        if (!inbox->signalled) {
            inbox->signalled = true;
            signal_fd(inbox->event_fd);
        }
    }
    pthread_mutex_unlock(&inbox->mu);
    return rc;
}

/* Takes one event if any; otherwise consumes the eventfd token so the next wait blocks. */
static bool try_pop(dr_net_inbox *inbox, dr_net_event *ev) {
    bool got = false;
    bool resume = false;
    pthread_mutex_lock(&inbox->mu);
    if (inbox->count) {
        *ev = inbox->ring[inbox->head];
        inbox->head = (inbox->head + 1) & (inbox->cap - 1);
        inbox->count--;
        atomic_store_explicit(&inbox->pending, inbox->count, memory_order_relaxed);
        inbox->bytes -= ev->msg ? ev->msg->payload_bytes : 0;
        if (atomic_load(&inbox->over_limit) && inbox->bytes < inbox->max_bytes / 2) {
            atomic_store(&inbox->over_limit, false);
            resume = true;
        }
        got = true;
    } else if (inbox->signalled) {
        uint64_t value;
        ssize_t n = read(inbox->event_fd, &value, sizeof value);
        (void)n;
        inbox->signalled = false;
    }
    pthread_mutex_unlock(&inbox->mu);
    if (resume)
        signal_fd(inbox->wake_producer_fd);
    return got;
}

static void count_wakeup(dr_net_inbox *inbox) {
    atomic_fetch_add_explicit(&inbox->wakeups, 1, memory_order_relaxed);
}

static bool spin_for_event(dr_net_inbox *inbox) {
    uint64_t end = now_ns() + (uint64_t)inbox->spin.budget_us * 1000u;
    do {
        count_wakeup(inbox); /* one per round */
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&inbox->pending, memory_order_acquire))
                return true;
            dr_spin_pause();
        }
        sched_yield(); /* a producer sharing this CPU gets to run */
    } while (now_ns() < end);
    return false;
}

int dr_net_inbox_pop(dr_net_inbox *inbox, dr_net_event *ev, int timeout_ms,
                     const atomic_bool *stopping) {
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ns() + (uint64_t)timeout_ms * 1000000u;
    bool spun = false;
    for (;;) {
        if (try_pop(inbox, ev))
            return 0;
        if (atomic_load(stopping))
            return DR_ECLOSED;
        uint64_t now = now_ns();
        if (now >= deadline)
            return DR_ETIMEDOUT;
        if (!spun && dr_spin_should(&inbox->spin)) {
            spun = true;
            bool hit = spin_for_event(inbox);
            dr_spin_spun(&inbox->spin, hit);
            if (hit)
                continue;
        }
        int wait_ms = -1;
        if (deadline != UINT64_MAX)
            wait_ms = (int)((deadline - now + 999999u) / 1000000u);
        struct pollfd pfd = {.fd = inbox->event_fd, .events = POLLIN};
        uint64_t start = now_ns();
        int n = poll(&pfd, 1, wait_ms);
        count_wakeup(inbox);
        if (n < 0 && errno != EINTR)
            return DR_EIO;
        if (inbox->spin.budget_us)
            dr_spin_blocked(&inbox->spin, now_ns() - start);
    }
}

bool dr_net_inbox_over_limit(dr_net_inbox *inbox) {
    return atomic_load_explicit(&inbox->over_limit, memory_order_relaxed);
}
