/*
 * dr_net: the TCP transport (contract in net.h, design in docs/net.md). This file: the event
 * loop, posted tasks and ticks, the public API and the send path; conn.c: per-connection I/O,
 * handshake and closing; net_int.h: the private structures both share.
 *
 * Threads and locks:
 *   - the network thread runs loop(): epoll over the listener, a wake eventfd and every
 *     connection. It alone reads sockets, runs decoders, closes and frees connections.
 *   - net->mu guards the connection list, peer ids, outgoing queues, epoll interest updates,
 *     the cut set and the writable condition. Every socket WRITE happens under it (by the sending
 *     thread when the queue is empty, else by the network thread on EPOLLOUT), so frames of one
 *     connection never interleave. Reads happen without it (only the network thread reads).
 *   - a connection is freed only by the network thread, at the end of a loop iteration, so
 *     pointers in the current epoll batch stay valid; other threads find connections only under
 *     net->mu, where closed ones are already unlinked.
 *   - events are emitted (callback or inbox) only without net->mu held, so callbacks may send.
 *
 * Handshake: on connect/accept each side queues a HELLO frame (type 1) first:
 *   u64 cluster_id, u32 node_id, u8 role (1 member, 2 client), u8 key (dr_net_key_kind it will
 *   prove, 0: none), u8 version (2), u8 0, 32-byte random nonce = 48 bytes
 * With a key, each side answers the peer's HELLO with AUTH (type 2): 32 bytes
 *   HMAC-SHA256(key, "derecho-net-auth-v2" || sender's HELLO || receiver's HELLO)
 * and the connection is up when the peer's AUTH verifies (conn.c). Both nonces are fresh, so a
 * recorded AUTH proves nothing on another connection, and the order of the HELLOs in the MAC
 * stops a reflected AUTH. Until the connection is up the decoder accepts payloads of at most
 * DR_NET_HELLO_MAX bytes, so an unidentified connection cannot make the node allocate large
 * buffers, and frames the layer above sends are held back (never written before the AUTH).
 */
#include "net/net_int.h"

#include "derecho/buffer.h"
#include "derecho/log.h"
#include "net/sock.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int listen_marker, wake_marker, tick_marker;

/* Takes every posted task and runs it, oldest first, with `status`. */
static void run_tasks(dr_net *net, int status) {
    pthread_mutex_lock(&net->mu);
    task *t = net->tasks_head;
    net->tasks_head = net->tasks_tail = NULL;
    pthread_mutex_unlock(&net->mu);
    while (t) {
        task *next = t->next;
        t->fn(t->ctx, status);
        free(t);
        t = next;
    }
}

static void handle_tick(dr_net *net) {
    uint64_t expirations = 0;
    if (read(net->tickfd, &expirations, sizeof expirations) != (ssize_t)sizeof expirations)
        return;
    dr_net_event ev = {.kind = DR_NET_EV_TICK};
    dr_net__emit(net, &ev);
}

/* Wake-ups: closes connections other threads asked to close, runs posted tasks. */
static void handle_wake(dr_net *net) {
    uint64_t count;
    ssize_t n = read(net->wakefd, &count, sizeof count);
    (void)n;
    run_tasks(net, DR_OK);
    for (;;) {
        conn *victim = NULL;
        pthread_mutex_lock(&net->mu);
        for (conn *c = net->conns; c && !victim; c = c->next)
            if (c->close_reason)
                victim = c;
        pthread_mutex_unlock(&net->mu);
        if (!victim)
            break;
        dr_net__close_conn(net, victim, victim->close_reason,
                           victim->close_reason == DR_ECLOSED ? "closed locally" : "write failed");
    }
}

static void apply_read_pause(dr_net *net) {
    if (net->cfg.on_event)
        return;
    bool want_paused = dr_net_inbox_over_limit(&net->inbox);
    pthread_mutex_lock(&net->mu);
    if (want_paused != net->reads_paused) {
        net->reads_paused = want_paused;
        for (conn *c = net->conns; c; c = c->next)
            if (c->parked && !want_paused)
                dr_net__unpark_locked(net, c);
            else
                dr_net__update_interest_locked(net, c);
        DR_DEBUG(DR_LOGM_NET, "reading %s (inbox limit)", want_paused ? "paused" : "resumed");
    }
    pthread_mutex_unlock(&net->mu);
}

static void dispatch(dr_net *net, struct epoll_event *events, int n) {
    for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == &listen_marker)
            dr_net__accept_all(net);
        else if (events[i].data.ptr == &wake_marker)
            handle_wake(net);
        else if (events[i].data.ptr == &tick_marker)
            handle_tick(net);
        else
            dr_net__handle_conn_event(net, events[i].data.ptr, events[i].events);
    }
    if (net->cfg.on_event && net->cfg.on_batch_end)
        net->cfg.on_batch_end(net->cfg.on_event_ctx);
    apply_read_pause(net);
    dr_net__free_dead(net);
}

/* epoll_wait, preceded by a bounded spin of non-blocking polls when the spin state allows.
 * Every return of epoll_wait, spin polls included, counts in loop_wakeups. */
static int wait_events(dr_net *net, struct epoll_event *events, int timeout_ms) {
    if (dr_spin_should(&net->loop_spin)) {
        uint64_t end = dr_net__now_ns() + (uint64_t)net->loop_spin.budget_us * 1000u;
        do {
            int n = epoll_wait(net->epfd, events, DR_NET_EPOLL_BATCH, 0);
            dr_net__stat_add(&net->loop_wakeups, 1);
            if (n != 0) {
                dr_spin_spun(&net->loop_spin, n > 0);
                return n;
            }
            sched_yield(); /* a peer thread sharing this CPU gets to run */
        } while (dr_net__now_ns() < end);
        dr_spin_spun(&net->loop_spin, false);
    }
    uint64_t start = dr_net__now_ns();
    int n = epoll_wait(net->epfd, events, DR_NET_EPOLL_BATCH, timeout_ms);
    dr_net__stat_add(&net->loop_wakeups, 1);
    if (net->loop_spin.budget_us)
        dr_spin_blocked(&net->loop_spin, dr_net__now_ns() - start);
    return n;
}

static void *loop(void *arg) {
    dr_net *net = arg;
    net->loop_thread = pthread_self();
    atomic_store_explicit(&net->loop_running, true, memory_order_release);
    struct epoll_event events[DR_NET_EPOLL_BATCH];
    bool handshakes_pending = false;
    while (!atomic_load(&net->stopping)) {
        int n = wait_events(net, events, handshakes_pending ? DR_NET_SWEEP_MS : -1);
        if (n < 0 && errno != EINTR) {
            DR_ERROR(DR_LOGM_NET, "epoll_wait: %s", strerror(errno));
            break;
        }
        if (n > 0)
            dispatch(net, events, n);
        if (handshakes_pending || atomic_exchange(&net->new_conns, false))
            handshakes_pending = dr_net__expire_handshakes(net);
        dr_net__free_dead(net);
    }
    return NULL;
}

/* ---------------------------------------------------------------- public API */

static bool on_network_thread(const dr_net *net) {
    return atomic_load_explicit(&net->loop_running, memory_order_acquire) &&
           pthread_equal(pthread_self(), net->loop_thread);
}

void dr_net_config_defaults(dr_net_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->role = DR_NET_ROLE_MEMBER;
    cfg->max_frame_bytes = 128u << 20;
    cfg->max_queue_bytes = (size_t)256u << 20;
    cfg->max_urgent_queue_bytes = (size_t)16u << 20;
    cfg->max_inbox_bytes = (size_t)256u << 20;
    cfg->handshake_timeout_ms = 5000;
    cfg->max_pending_inbound = 64;
    cfg->max_clients = 1024;
    cfg->max_clients_per_ip = 256;
}

static int check_config(const dr_net_config *cfg, dr_err *err) {
    if (cfg->role != DR_NET_ROLE_MEMBER && cfg->role != DR_NET_ROLE_CLIENT)
        return dr_err_set(err, DR_EINVAL, "net: unknown role %d", (int)cfg->role);
    if (cfg->role == DR_NET_ROLE_MEMBER && cfg->node_id >= DR_NET_ANY_NODE)
        return dr_err_set(err, DR_EINVAL, "net: node id %u out of range", cfg->node_id);
    if (cfg->max_frame_bytes == 0 || cfg->max_frame_bytes > DR_FRAME_PAYLOAD_HARD_MAX)
        return dr_err_set(err, DR_EINVAL, "net: max_frame_bytes %u out of range",
                          cfg->max_frame_bytes);
    if (cfg->handshake_timeout_ms == 0 || cfg->max_pending_inbound == 0)
        return dr_err_set(err, DR_EINVAL, "net: handshake limits must be positive");
    if (cfg->max_queue_bytes == 0 || cfg->max_urgent_queue_bytes == 0 || cfg->max_inbox_bytes == 0)
        return dr_err_set(err, DR_EINVAL, "net: queue limits must be positive");
    if (cfg->spin_us > 1000 || cfg->loop_spin_us > 1000)
        return dr_err_set(err, DR_EINVAL, "net: spin over the 1000 µs bound");
    if (cfg->max_client_frame_bytes > cfg->max_frame_bytes)
        return dr_err_set(err, DR_EINVAL, "net: max_client_frame_bytes over max_frame_bytes");
    if (cfg->role == DR_NET_ROLE_CLIENT && cfg->prove_with != DR_NET_KEY_NONE &&
        (cfg->prove_with >= DR_NET_KEY_KINDS || !cfg->keys[cfg->prove_with]))
        return dr_err_set(err, DR_EINVAL, "net: a client proving a key needs that key");
    if (cfg->role == DR_NET_ROLE_MEMBER && !cfg->keys[DR_NET_KEY_MEMBER] &&
        (cfg->keys[DR_NET_KEY_ADMIN] || cfg->keys[DR_NET_KEY_CLIENT]))
        return dr_err_set(err, DR_EINVAL, "net: client keys without a member key");
    if (cfg->encrypt && (cfg->role == DR_NET_ROLE_MEMBER ? !cfg->keys[DR_NET_KEY_MEMBER]
                                                         : cfg->prove_with == DR_NET_KEY_NONE))
        return dr_err_set(err, DR_EINVAL, "net: encryption needs a key");
    return DR_OK;
}

static int add_marker(dr_net *net, int fd, void *marker, dr_err *err) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = marker};
    if (epoll_ctl(net->epfd, EPOLL_CTL_ADD, fd, &ev))
        return dr_err_set(err, DR_EIO, "net: epoll_ctl: %s", strerror(errno));
    return DR_OK;
}

static int open_tick(dr_net *net, dr_err *err) {
    net->tickfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (net->tickfd < 0)
        return dr_err_set(err, DR_EIO, "net: timerfd: %s", strerror(errno));
    struct timespec period = {.tv_sec = net->cfg.tick_ms / 1000,
                              .tv_nsec = (long)(net->cfg.tick_ms % 1000) * 1000000L};
    struct itimerspec spec = {.it_interval = period, .it_value = period};
    if (timerfd_settime(net->tickfd, 0, &spec, NULL))
        return dr_err_set(err, DR_EIO, "net: timerfd_settime: %s", strerror(errno));
    return add_marker(net, net->tickfd, &tick_marker, err);
}

static int open_fds(dr_net *net, const char *listen_ip, dr_err *err) {
    net->epfd = epoll_create1(EPOLL_CLOEXEC);
    net->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (net->epfd < 0 || net->wakefd < 0)
        return dr_err_set(err, DR_EIO, "net: epoll/eventfd: %s", strerror(errno));
    int rc = add_marker(net, net->wakefd, &wake_marker, err);
    if (rc == DR_OK && net->cfg.tick_ms)
        rc = open_tick(net, err);
    if (rc || !listen_ip)
        return rc;
    rc = dr_sock_listen(listen_ip, net->cfg.listen_port, 128, &net->listenfd, &net->port, err);
    return rc ? rc : add_marker(net, net->listenfd, &listen_marker, err);
}

static void init_sync(dr_net *net) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&net->writable, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&net->mu, NULL);
}

int dr_net_create(const dr_net_config *cfg, dr_net **out, dr_err *err) {
    int rc = check_config(cfg, err);
    if (rc)
        return rc;
    dr_net *net = calloc(1, sizeof *net);
    if (!net)
        return dr_err_set(err, DR_ENOMEM, "net: no memory");
    net->cfg = *cfg;
    net->cfg.listen_ip = NULL; /* the caller's string is not kept */
    if (!net->cfg.max_client_frame_bytes)
        net->cfg.max_client_frame_bytes = net->cfg.max_frame_bytes;
    for (int k = 0; k < (int)DR_NET_KEY_KINDS; k++) {
        if (!cfg->keys[k])
            continue;
        memcpy(net->key_store[k], cfg->keys[k], DR_NET_KEY_BYTES);
        net->cfg.keys[k] = net->key_store[k];
    }
    if (net->cfg.role == DR_NET_ROLE_MEMBER)
        net->cfg.prove_with =
            net->cfg.keys[DR_NET_KEY_MEMBER] ? DR_NET_KEY_MEMBER : DR_NET_KEY_NONE;
    net->epfd = net->wakefd = net->listenfd = net->tickfd = -1;
    net->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    init_sync(net);
    dr_spin_init(&net->loop_spin, cfg->loop_spin_us);
    rc = open_fds(net, cfg->listen_ip, err);
    if (rc == DR_OK &&
        dr_net_inbox_init(&net->inbox, cfg->max_inbox_bytes, cfg->spin_us, net->wakefd) != DR_OK)
        rc = dr_err_set(err, DR_EIO, "net: cannot create the inbox");
    net->inbox_ready = rc == DR_OK;
    if (rc == DR_OK && pthread_create(&net->thread, NULL, loop, net))
        rc = dr_err_set(err, DR_EIO, "net: cannot start the network thread");
    if (rc) {
        dr_net_destroy(net);
        return rc;
    }
    net->thread_started = true;
    *out = net;
    return DR_OK;
}

void dr_net_destroy(dr_net *net) {
    if (!net)
        return;
    if (on_network_thread(net)) {
        DR_ERROR(DR_LOGM_NET, "dr_net_destroy called on the network thread: ignored");
        return;
    }
    atomic_store(&net->stopping, true);
    if (net->thread_started) {
        dr_net__wake_thread(net);
        pthread_join(net->thread, NULL);
    }
    pthread_mutex_lock(&net->mu);
    pthread_cond_broadcast(&net->writable);
    pthread_mutex_unlock(&net->mu);
    while (net->conns) {
        conn *c = net->conns;
        net->conns = c->next;
        dr_net__free_frame_list(c->out_head);
        dr_net__free_frame_list(c->held_head);
        close(c->fd);
        dr_net__free_conn(c);
    }
    dr_net__free_dead(net);
    if (net->spare_fd >= 0)
        close(net->spare_fd);
    run_tasks(net, DR_ECLOSED);
    if (net->tickfd >= 0)
        close(net->tickfd);
    if (net->inbox_ready)
        dr_net_inbox_destroy(&net->inbox);
    if (net->listenfd >= 0)
        close(net->listenfd);
    if (net->wakefd >= 0)
        close(net->wakefd);
    if (net->epfd >= 0)
        close(net->epfd);
    free(net->cut);
    pthread_cond_destroy(&net->writable);
    pthread_mutex_destroy(&net->mu);
    free(net);
}

int dr_net_post(dr_net *net, dr_net_task_fn fn, void *ctx) {
    if (atomic_load(&net->stopping))
        return DR_ECLOSED;
    task *t = malloc(sizeof *t);
    if (!t)
        return DR_ENOMEM;
    *t = (task){.fn = fn, .ctx = ctx};
    pthread_mutex_lock(&net->mu);
    if (net->tasks_tail)
        net->tasks_tail->next = t;
    else
        net->tasks_head = t;
    net->tasks_tail = t;
    pthread_mutex_unlock(&net->mu);
    dr_net__wake_thread(net);
    return DR_OK;
}

int dr_net_split_address(const char *address, char *ip, size_t ip_len, uint16_t *port) {
    const char *colon = address ? strrchr(address, ':') : NULL;
    if (!colon || (size_t)(colon - address) >= ip_len)
        return DR_EINVAL;
    char *end = NULL;
    unsigned long value = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end || value == 0 || value > 65535)
        return DR_EINVAL;
    memcpy(ip, address, (size_t)(colon - address));
    ip[colon - address] = '\0';
    *port = (uint16_t)value;
    return DR_OK;
}

uint16_t dr_net_listen_port(const dr_net *net) {
    return net->port;
}

int dr_net_connect(dr_net *net, uint32_t node_id, const char *ip, uint16_t port) {
    if (atomic_load(&net->stopping))
        return DR_ECLOSED;
    if (node_id >= DR_NET_CLIENT_ID_BASE)
        return DR_EINVAL;
    pthread_mutex_lock(&net->mu);
    bool exists = node_id != DR_NET_ANY_NODE && dr_net__find_conn_locked(net, node_id) != NULL;
    pthread_mutex_unlock(&net->mu);
    if (exists)
        return DR_EEXIST;
    int fd = -1;
    dr_err err;
    int rc = dr_sock_connect_start(ip, port, &fd, &err);
    if (rc) {
        DR_WARN(DR_LOGM_NET, "connect to node %u: %s", node_id, err.msg);
        return rc;
    }
    conn *c = dr_net__new_conn(net, fd, true, node_id);
    if (!c) {
        close(fd);
        return DR_ENOMEM;
    }
    return dr_net__register_conn(net, c);
}

int dr_net_disconnect(dr_net *net, uint32_t peer) {
    pthread_mutex_lock(&net->mu);
    conn *c = dr_net__find_conn_locked(net, peer);
    if (c)
        c->close_reason = DR_ECLOSED;
    pthread_mutex_unlock(&net->mu);
    if (!c)
        return DR_ENOTFOUND;
    dr_net__wake_thread(net);
    return DR_OK;
}

/* Writes header (with any head) + payload straight to the socket; returns bytes written (0 on
 * EAGAIN) or -1. */
static ssize_t direct_write(conn *c, const uint8_t *header, size_t header_len, const void *payload,
                            size_t len) {
    struct iovec iov[2] = {{(void *)header, header_len}, {(void *)payload, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    ssize_t n;
    do
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return n;
}

/* Queues what direct_write left: copies the unsent payload part, or references an owned one. */
static out_frame *frame_for_queue(uint16_t type, uint32_t flags, const uint8_t *head,
                                  size_t head_len, const void *payload, size_t len, size_t written,
                                  bool owned) {
    size_t header_len = DR_FRAME_HEADER_BYTES + head_len;
    size_t payload_written = written > header_len ? written - header_len : 0;
    size_t copy = owned ? 0 : len - payload_written;
    out_frame *f = dr_net__new_frame(type, flags, head_len + len, copy);
    if (!f)
        return NULL;
    if (head_len > 0)
        memcpy(f->header + DR_FRAME_HEADER_BYTES, head, head_len);
    f->header_len = header_len;
    f->header_off = written < header_len ? written : header_len;
    if (owned) {
        f->payload = (uint8_t *)payload;
        f->payload_len = len;
        f->payload_off = payload_written;
    } else if (copy) {
        memcpy(f->payload, (const uint8_t *)payload + payload_written, copy);
    }
    return f;
}

typedef struct send_req {
    uint32_t peer;          /**< destination */
    uint16_t type;          /**< message type */
    uint32_t flags;         /**< frame flags */
    const uint8_t *head;    /**< split: copied part before payload (NULL: none) */
    size_t head_len;        /**< its length (<= DR_NET_MAX_HEAD_BYTES) */
    const void *payload;    /**< payload bytes */
    size_t len;             /**< payload length */
    bool owned;             /**< payload handed over (free_fn) rather than copied */
    dr_net_free_fn free_fn; /**< owned: release callback */
    void *free_ctx;         /**< owned: its context */
    bool urgent;            /**< DR_NET_LANE_URGENT */
} send_req;

static int send_plain_locked(dr_net *net, conn *c, const send_req *req, bool *taken,
                             out_frame **done);

/* Under mu with c found: direct write if possible, queue the rest. *taken: the queue now owns
 * an owned payload. A sealed connection sends a sealed copy (the caller keeps its payload). */
static int send_locked(dr_net *net, conn *c, const send_req *req, bool *taken, out_frame **done) {
    if (!c->seal || c->state != CONN_UP)
        return send_plain_locked(net, c, req, taken, done);
    size_t sealed_len = 0;
    uint8_t *sealed = dr_net__seal_frame(c, req->type, req->flags, req->head, req->head_len,
                                         req->payload, req->len, &sealed_len);
    if (!sealed)
        return DR_ENOMEM;
    send_req sealed_req = {.peer = req->peer,
                           .type = req->type,
                           .flags = req->flags,
                           .payload = sealed,
                           .len = sealed_len,
                           .owned = true,
                           .free_fn = dr_net_free_payload,
                           .urgent = req->urgent};
    bool sealed_taken = false;
    int rc = send_plain_locked(net, c, &sealed_req, &sealed_taken, done);
    if (!sealed_taken)
        free(sealed);
    return rc;
}

/* Corked (dr_net_cork): c's queue is written once the last cork goes, or now when it holds
 * DR_NET_CORK_BYTES. A write error marks c for closing by the network thread. */
static void corked_locked(dr_net *net, conn *c, out_frame **done) {
    if (c->queued_bytes < DR_NET_CORK_BYTES)
        return;
    if (dr_net__flush_locked(net, c, done) != DR_OK) {
        c->close_reason = DR_EIO;
        dr_net__wake_thread(net);
    }
}

static int send_plain_locked(dr_net *net, conn *c, const send_req *req, bool *taken,
                             out_frame **done) {
    size_t written = 0;
    size_t header_len = DR_FRAME_HEADER_BYTES + req->head_len;
    bool corked = net->corks > 0 && c->state == CONN_UP;
    if (c->state == CONN_UP && !c->out_head && !corked) {
        uint8_t header[DR_FRAME_HEADER_BYTES + DR_NET_MAX_HEAD_BYTES];
        dr_frame_encode_header(header, req->type, req->flags, (uint32_t)(req->head_len + req->len));
        if (req->head_len > 0)
            memcpy(header + DR_FRAME_HEADER_BYTES, req->head, req->head_len);
        ssize_t n = direct_write(c, header, header_len, req->payload, req->len);
        if (n < 0) {
            c->close_reason = DR_EIO;
            dr_net__wake_thread(net);
            return DR_OK; /* lost with the connection; PEER_DOWN follows */
        }
        written = (size_t)n;
        if (written == header_len + req->len) {
            dr_net__stat_add(&net->frames_sent, 1);
            dr_net__stat_add(&net->direct_writes, 1);
            return DR_OK;
        }
    }
    out_frame *f = frame_for_queue(req->type, req->flags, req->head, req->head_len, req->payload,
                                   req->len, written, req->owned);
    if (!f) {
        if (written) { /* half a frame is on the wire: the stream cannot continue */
            c->close_reason = DR_ENOMEM;
            dr_net__wake_thread(net);
        }
        return DR_ENOMEM;
    }
    f->urgent = req->urgent;
    if (req->owned) {
        f->free_fn = req->free_fn;
        f->free_ctx = req->free_ctx;
        f->free_arg = (void *)req->payload;
        *taken = true;
    }
    dr_net__queue_user_frame_locked(c, f);
    if (corked && !c->want_write) {
        corked_locked(net, c, done); /* written at the last uncork, or now if large */
        return DR_OK;
    }
    if (c->state == CONN_UP && !c->want_write) {
        c->want_write = true;
        dr_net__update_interest_locked(net, c);
    }
    return DR_OK;
}

static int send_frame(dr_net *net, const send_req *req, bool *taken) {
    if (req->type < DR_NET_TYPE_USER_MIN)
        return DR_EINVAL;
    if (req->head_len > DR_NET_MAX_HEAD_BYTES)
        return DR_EINVAL;
    if (req->len > net->cfg.max_frame_bytes || req->head_len + req->len > net->cfg.max_frame_bytes)
        return DR_ETOOBIG;
    if (atomic_load(&net->stopping))
        return DR_ECLOSED;
    pthread_mutex_lock(&net->mu);
    int rc = DR_OK;
    out_frame *done = NULL;
    conn *c = dr_net__find_conn_locked(net, req->peer);
    if (!c)
        rc = DR_ENOTFOUND;
    else if (dr_net__is_cut_locked(net, req->peer))
        dr_net__stat_add(&net->frames_dropped, 1);
    else if (req->urgent ? c->urgent_bytes >= net->cfg.max_urgent_queue_bytes
                         : c->queued_bytes >= net->cfg.max_queue_bytes)
        rc = DR_EAGAIN;
    else
        rc = send_locked(net, c, req, taken, &done);
    pthread_mutex_unlock(&net->mu);
    dr_net__free_frame_list(done);
    return rc;
}

void dr_net_cork(dr_net *net) {
    pthread_mutex_lock(&net->mu);
    net->corks++;
    pthread_mutex_unlock(&net->mu);
}

void dr_net_uncork(dr_net *net) {
    out_frame *done = NULL;
    pthread_mutex_lock(&net->mu);
    if (net->corks > 0 && --net->corks == 0) {
        for (conn *c = net->conns; c; c = c->next) {
            if (c->closed || c->state != CONN_UP || !c->out_head || c->want_write)
                continue; /* nothing corked (a queue waiting for EPOLLOUT goes on its own) */
            if (dr_net__flush_locked(net, c, &done) != DR_OK) {
                c->close_reason = DR_EIO;
                dr_net__wake_thread(net);
            }
        }
    }
    pthread_mutex_unlock(&net->mu);
    dr_net__free_frame_list(done);
}

int dr_net_send(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, const void *payload,
                size_t len) {
    send_req req = {.peer = peer, .type = type, .flags = flags, .payload = payload, .len = len};
    bool taken = false;
    return send_frame(net, &req, &taken);
}

int dr_net_send_owned(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, void *payload,
                      size_t len, dr_net_free_fn free_fn, void *free_ctx) {
    return dr_net_send_split(net, peer, type, flags, NULL, 0, payload, len, free_fn, free_ctx);
}

int dr_net_send_split(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, const void *head,
                      size_t head_len, void *body, size_t body_len, dr_net_free_fn free_fn,
                      void *free_ctx) {
    return dr_net_send_lane(net, peer, DR_NET_LANE_NORMAL, type, flags, head, head_len, body,
                            body_len, free_fn, free_ctx);
}

int dr_net_send_lane_taken(dr_net *net, uint32_t peer, dr_net_lane lane, uint16_t type,
                           uint32_t flags, const void *head, size_t head_len, void *body,
                           size_t body_len, dr_net_free_fn free_fn, void *free_ctx, bool *taken) {
    *taken = false;
    if (lane != DR_NET_LANE_NORMAL && lane != DR_NET_LANE_URGENT)
        return DR_EINVAL;
    send_req req = {.peer = peer,
                    .urgent = lane == DR_NET_LANE_URGENT,
                    .type = type,
                    .flags = flags,
                    .head = head,
                    .head_len = head_len,
                    .payload = body,
                    .len = body_len,
                    .owned = true,
                    .free_fn = free_fn,
                    .free_ctx = free_ctx};
    return send_frame(net, &req, taken);
}

int dr_net_send_lane(dr_net *net, uint32_t peer, dr_net_lane lane, uint16_t type, uint32_t flags,
                     const void *head, size_t head_len, void *body, size_t body_len,
                     dr_net_free_fn free_fn, void *free_ctx) {
    bool taken = false;
    int rc = dr_net_send_lane_taken(net, peer, lane, type, flags, head, head_len, body, body_len,
                                    free_fn, free_ctx, &taken);
    if (!taken && free_fn)
        free_fn(free_ctx, body);
    return rc;
}

static struct timespec deadline_after(int timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int dr_net_wait_writable(dr_net *net, uint32_t peer, int timeout_ms) {
    if (on_network_thread(net))
        return DR_ESTATE; /* it would wait for itself */
    struct timespec deadline = deadline_after(timeout_ms < 0 ? 0 : timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&net->mu);
    net->writable_waiters++;
    for (;;) {
        conn *c = dr_net__find_conn_locked(net, peer);
        if (atomic_load(&net->stopping)) {
            rc = DR_ECLOSED;
            break;
        }
        if (!c) {
            rc = DR_ENOTFOUND;
            break;
        }
        if (c->queued_bytes < net->cfg.max_queue_bytes / 2)
            break;
        int wrc = timeout_ms < 0 ? pthread_cond_wait(&net->writable, &net->mu)
                                 : pthread_cond_timedwait(&net->writable, &net->mu, &deadline);
        if (wrc == ETIMEDOUT) {
            rc = DR_ETIMEDOUT;
            break;
        }
    }
    net->writable_waiters--;
    pthread_mutex_unlock(&net->mu);
    return rc;
}

size_t dr_net_queued_bytes(dr_net *net, uint32_t peer) {
    pthread_mutex_lock(&net->mu);
    conn *c = dr_net__find_conn_locked(net, peer);
    size_t bytes = c ? c->queued_bytes : 0;
    pthread_mutex_unlock(&net->mu);
    return bytes;
}

int dr_net_next_event(dr_net *net, dr_net_event *ev, int timeout_ms) {
    if (net->cfg.on_event)
        return DR_ESTATE;
    return dr_net_inbox_pop(&net->inbox, ev, timeout_ms, &net->stopping);
}

int dr_net_event_fd(const dr_net *net) {
    return net->inbox.event_fd;
}

void dr_net_test_cut_link(dr_net *net, uint32_t peer, bool cut) {
    pthread_mutex_lock(&net->mu);
    for (size_t i = 0; i < net->cut_count; i++)
        if (net->cut[i] == peer) {
            if (!cut)
                net->cut[i] = net->cut[--net->cut_count];
            cut = false; /* already present */
            break;
        }
    if (cut && net->cut_count == net->cut_cap) {
        size_t cap = net->cut_cap ? net->cut_cap * 2 : 8;
        uint32_t *grown = realloc(net->cut, cap * sizeof *grown);
        if (grown) {
            net->cut = grown;
            net->cut_cap = cap;
        }
    }
    if (cut && net->cut_count < net->cut_cap)
        net->cut[net->cut_count++] = peer;
    pthread_mutex_unlock(&net->mu);
}

void dr_net_get_stats(dr_net *net, dr_net_stats *out) {
    out->frames_sent = atomic_load_explicit(&net->frames_sent, memory_order_relaxed);
    out->frames_received = atomic_load_explicit(&net->frames_received, memory_order_relaxed);
    out->frames_dropped = atomic_load_explicit(&net->frames_dropped, memory_order_relaxed);
    out->protocol_errors = atomic_load_explicit(&net->protocol_errors, memory_order_relaxed);
    out->direct_writes = atomic_load_explicit(&net->direct_writes, memory_order_relaxed);
    out->auth_failures = atomic_load_explicit(&net->auth_failures, memory_order_relaxed);
    out->refused_connections =
        atomic_load_explicit(&net->refused_connections, memory_order_relaxed);
    out->loop_wakeups = atomic_load_explicit(&net->loop_wakeups, memory_order_relaxed);
    out->consumer_wakeups = atomic_load_explicit(&net->inbox.wakeups, memory_order_relaxed);
}
