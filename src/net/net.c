/*
 * dr_net: the TCP transport (contract in net.h, design in docs/net.md).
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
 *   u64 cluster_id, u32 node_id, u8 role (1 member, 2 client), 3 reserved bytes (0) = 16 bytes
 * Until the peer's HELLO arrives the decoder accepts payloads of at most DR_NET_HELLO_MAX bytes,
 * so an unidentified connection cannot make the node allocate large buffers.
 */
#include "net/net.h"

#include "derecho/buffer.h"
#include "derecho/log.h"
#include "net/frame.h"
#include "net/inbox.h"
#include "net/sock.h"
#include "net/spin.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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

#define DR_NET_T_HELLO      1u
#define DR_NET_HELLO_BYTES  16u
#define DR_NET_HELLO_MAX    64u
#define DR_NET_RBUF_BYTES   (64u * 1024u)
#define DR_NET_MAX_IOV      64
#define DR_NET_READS_PER_EV 16
#define DR_NET_EPOLL_BATCH  64
#define DR_NET_NO_PEER      UINT32_MAX
#define DR_NET_SWEEP_MS     100        /* handshake deadline check period while any is pending */
#define DR_NET_HUGE_BYTES   (4u << 20) /* payloads from this size get THP-advised blocks */
#define DR_NET_HUGE_ALIGN   (2u << 20)

/** A function posted to run on the network thread (dr_net_post). */
typedef struct task {
    struct task *next; /**< FIFO link */
    dr_net_task_fn fn; /**< what to run */
    void *ctx;         /**< its argument */
} task;

/** One frame waiting in a connection's outgoing queue. */
typedef struct out_frame {
    struct out_frame *next;                /**< queue link */
    uint8_t header[DR_FRAME_HEADER_BYTES]; /**< encoded header */
    size_t header_off;                     /**< header bytes already written */
    uint8_t *payload;                      /**< payload bytes still to write start here... */
    size_t payload_len;                    /**< ...this many in total */
    size_t payload_off;                    /**< of which this many are written */
    dr_net_free_fn free_fn;                /**< releases owned payloads (NULL: none) */
    void *free_ctx;                        /**< passed to free_fn */
    void *free_arg;                        /**< the pointer given to free_fn */
} out_frame;

typedef enum conn_state {
    CONN_CONNECTING = 1, /**< outbound TCP connect in progress */
    CONN_HELLO,          /**< TCP up, waiting for the peer's HELLO */
    CONN_UP,             /**< identified; frames flow */
} conn_state;

typedef struct conn {
    dr_net *net;            /**< owner */
    int fd;                 /**< socket (-1 once closed) */
    conn_state state;       /**< lifecycle (under mu) */
    bool outbound;          /**< we dialled */
    bool closed;            /**< unlinked and closed (under mu) */
    bool want_write;        /**< EPOLLOUT in the interest set (under mu) */
    int close_reason;       /**< set by another thread to ask the network thread to close */
    uint32_t peer;          /**< peer id (outbound: expected; inbound: after HELLO) */
    dr_net_role role;       /**< peer's role once known */
    out_frame *out_head;    /**< outgoing queue (under mu) */
    out_frame *out_tail;    /**< last queued frame */
    size_t queued_bytes;    /**< unwritten bytes in the queue (under mu) */
    dr_frame_decoder dec;   /**< network thread only */
    uint8_t *rbuf;          /**< read buffer, DR_NET_RBUF_BYTES (network thread only) */
    struct conn *next;      /**< net->conns list (under mu) */
    struct conn *next_dead; /**< net->dead list (network thread only) */
    uint64_t created_ns;    /**< when the connection was opened (handshake deadline) */
    bool parked;            /**< removed from epoll: hung up while reads are paused (under mu) */
} conn;

struct dr_net {
    dr_net_config cfg;       /**< copy of the creation parameters */
    int epfd;                /**< epoll set */
    int wakefd;              /**< eventfd: wakes the network thread */
    int listenfd;            /**< listener or -1 */
    uint16_t port;           /**< bound port */
    pthread_t thread;        /**< network thread */
    bool thread_started;     /**< thread must be joined */
    atomic_bool stopping;    /**< destroy in progress */
    pthread_mutex_t mu;      /**< see the file comment */
    pthread_cond_t writable; /**< queues drained / peers gone (with mu) */
    int writable_waiters;    /**< threads in dr_net_wait_writable (under mu) */
    conn *conns;             /**< live connections (under mu) */
    conn *dead;              /**< closed, freed at the end of the loop iteration */
    uint32_t next_client_id; /**< next local client id (network thread only) */
    uint32_t *cut;           /**< cut peer ids (under mu) */
    size_t cut_count;        /**< entries in cut */
    size_t cut_cap;          /**< capacity of cut */
    int tickfd;              /**< timerfd for DR_NET_EV_TICK, or -1 */
    task *tasks_head;        /**< posted tasks, oldest first (under mu) */
    task *tasks_tail;        /**< newest posted task (under mu) */
    atomic_bool new_conns;   /**< a connection was registered: check handshake deadlines */
    bool reads_paused;       /**< EPOLLIN removed everywhere (under mu) */
    dr_spin loop_spin;       /**< network thread's spin state */
    dr_net_inbox inbox;      /**< inbox mode event queue */
    bool inbox_ready;        /**< inbox initialised (must be destroyed) */
    _Atomic uint64_t frames_sent, frames_received, frames_dropped, protocol_errors, direct_writes;
};

static int listen_marker, wake_marker, tick_marker;

/* ---------------------------------------------------------------- small helpers */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void stat_add(_Atomic uint64_t *counter, uint64_t n) {
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static void wake_thread(dr_net *net) {
    uint64_t one = 1;
    ssize_t n = write(net->wakefd, &one, sizeof one);
    (void)n; /* EAGAIN: counter saturated, already awake */
}

static bool is_cut_locked(const dr_net *net, uint32_t peer) {
    for (size_t i = 0; i < net->cut_count; i++)
        if (net->cut[i] == peer)
            return true;
    return false;
}

/* Whether c's peer id is meaningful: we dialled it, or its HELLO was accepted. */
static bool is_identified(const conn *c) {
    return c->outbound || c->state == CONN_UP;
}

static conn *find_conn_locked(dr_net *net, uint32_t peer) {
    for (conn *c = net->conns; c; c = c->next)
        if (c->peer == peer && is_identified(c) && !c->closed && c->close_reason == 0)
            return c;
    return NULL;
}

static void free_frame(out_frame *f) {
    if (f->free_fn)
        f->free_fn(f->free_ctx, f->free_arg);
    free(f);
}

static void free_frame_list(out_frame *f) {
    while (f) {
        out_frame *next = f->next;
        free_frame(f);
        f = next;
    }
}

static size_t frame_remaining(const out_frame *f) {
    return DR_FRAME_HEADER_BYTES - f->header_off + f->payload_len - f->payload_off;
}

static void emit(dr_net *net, const dr_net_event *ev) {
    if (net->cfg.on_event) {
        net->cfg.on_event(net->cfg.on_event_ctx, ev);
        return;
    }
    if (dr_net_inbox_push(&net->inbox, ev) != DR_OK) {
        DR_ERROR(DR_LOGM_NET, "no memory for an event from peer %u: dropped", ev->peer);
        free(ev->msg);
    }
}

/* ---------------------------------------------------------------- epoll interest */

static uint32_t interest_locked(const dr_net *net, const conn *c) {
    if (c->state == CONN_CONNECTING)
        return EPOLLOUT;
    uint32_t events = c->want_write ? EPOLLOUT : 0;
    if (!net->reads_paused)
        events |= EPOLLIN | EPOLLRDHUP;
    return events;
}

static void update_interest_locked(dr_net *net, conn *c) {
    if (c->parked)
        return;
    struct epoll_event ev = {.events = interest_locked(net, c), .data.ptr = c};
    if (epoll_ctl(net->epfd, EPOLL_CTL_MOD, c->fd, &ev))
        DR_ERROR(DR_LOGM_NET, "epoll_ctl MOD fd %d: %s", c->fd, strerror(errno));
}

/* ---------------------------------------------------------------- writing (under mu) */

static int build_iov(const conn *c, struct iovec *iov) {
    int n = 0;
    for (const out_frame *f = c->out_head; f && n < DR_NET_MAX_IOV - 1; f = f->next) {
        if (f->header_off < DR_FRAME_HEADER_BYTES)
            iov[n++] = (struct iovec){(void *)(f->header + f->header_off),
                                      DR_FRAME_HEADER_BYTES - f->header_off};
        if (f->payload_off < f->payload_len)
            iov[n++] = (struct iovec){f->payload + f->payload_off, f->payload_len - f->payload_off};
    }
    return n;
}

/* Consumes `n` written bytes from the queue head; finished frames move to *done. */
static void advance_queue(conn *c, size_t n, out_frame **done) {
    c->queued_bytes -= n;
    while (c->out_head) {
        out_frame *f = c->out_head;
        size_t h = DR_FRAME_HEADER_BYTES - f->header_off;
        h = h < n ? h : n;
        f->header_off += h;
        n -= h;
        size_t p = f->payload_len - f->payload_off;
        p = p < n ? p : n;
        f->payload_off += p;
        n -= p;
        if (frame_remaining(f))
            break;
        c->out_head = f->next;
        f->next = *done;
        *done = f;
        stat_add(&c->net->frames_sent, 1);
    }
    if (!c->out_head)
        c->out_tail = NULL;
    assert(n == 0);
}

static void signal_writable_locked(dr_net *net, conn *c, size_t before) {
    size_t low = net->cfg.max_queue_bytes / 2;
    if (net->writable_waiters && before >= low && c->queued_bytes < low)
        pthread_cond_broadcast(&net->writable);
}

/*
 * Writes as much of the queue as the socket takes. Returns 0 or DR_EIO (connection broken).
 * Finished frames are prepended to *done for freeing outside the lock.
 */
static int flush_locked(dr_net *net, conn *c, out_frame **done) {
    size_t before = c->queued_bytes;
    int rc = DR_OK;
    while (c->out_head) {
        struct iovec iov[DR_NET_MAX_IOV];
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)build_iov(c, iov)};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            rc = DR_EIO;
            break;
        }
        advance_queue(c, (size_t)n, done);
    }
    bool want = c->out_head != NULL && rc == DR_OK;
    if (want != c->want_write) {
        c->want_write = want;
        update_interest_locked(net, c);
    }
    signal_writable_locked(net, c, before);
    return rc;
}

/* ---------------------------------------------------------------- closing */

/* Network thread: unlinks and closes c; reports PEER_DOWN when the peer was (to be) known. */
static void close_conn(dr_net *net, conn *c, int reason, const char *why) {
    pthread_mutex_lock(&net->mu);
    if (c->closed) {
        pthread_mutex_unlock(&net->mu);
        return;
    }
    c->closed = true;
    if (reason == DR_EPROTO || reason == DR_ETOOBIG)
        stat_add(&net->protocol_errors, 1); /* before close(): a peer may look at once */
    epoll_ctl(net->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    out_frame *pending = c->out_head;
    c->out_head = c->out_tail = NULL;
    c->queued_bytes = 0;
    for (conn **p = &net->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    c->next_dead = net->dead;
    net->dead = c;
    if (net->writable_waiters)
        pthread_cond_broadcast(&net->writable);
    bool report = c->state == CONN_UP || c->outbound;
    pthread_mutex_unlock(&net->mu);

    free_frame_list(pending);
    if (reason == DR_ECLOSED)
        DR_INFO(DR_LOGM_NET, "connection to peer %d closed: %s", (int)c->peer, why);
    else
        DR_WARN(DR_LOGM_NET, "closing connection to peer %d: %s (%s)", (int)c->peer, why,
                dr_strerror(reason));
    if (report) {
        dr_net_event ev = {
            .kind = DR_NET_EV_PEER_DOWN, .peer = c->peer, .role = c->role, .reason = reason};
        emit(net, &ev);
    }
}

static void free_conn(conn *c) {
    dr_frame_decoder_free(&c->dec);
    free(c->rbuf);
    free(c);
}

static void free_dead(dr_net *net) {
    while (net->dead) {
        conn *c = net->dead;
        net->dead = c->next_dead;
        free_conn(c);
    }
}

/* ---------------------------------------------------------------- queueing */

static out_frame *new_frame(uint16_t type, uint32_t flags, size_t len, size_t copy_bytes) {
    out_frame *f = malloc(sizeof *f + copy_bytes);
    if (!f)
        return NULL;
    memset(f, 0, sizeof *f);
    dr_frame_encode_header(f->header, type, flags, (uint32_t)len);
    f->payload = (uint8_t *)(f + 1);
    f->payload_len = copy_bytes;
    return f;
}

static void append_locked(conn *c, out_frame *f) {
    f->next = NULL;
    if (c->out_tail)
        c->out_tail->next = f;
    else
        c->out_head = f;
    c->out_tail = f;
    c->queued_bytes += frame_remaining(f);
}

/* Queues the HELLO frame that opens every connection. */
static int queue_hello_locked(dr_net *net, conn *c) {
    out_frame *f = new_frame(DR_NET_T_HELLO, 0, DR_NET_HELLO_BYTES, DR_NET_HELLO_BYTES);
    if (!f)
        return DR_ENOMEM;
    dr_store_u64le(f->payload, net->cfg.cluster_id);
    dr_store_u32le(f->payload + 8, net->cfg.node_id);
    f->payload[12] = (uint8_t)net->cfg.role;
    f->payload[13] = f->payload[14] = f->payload[15] = 0;
    append_locked(c, f);
    return DR_OK;
}

/*
 * Large payloads land in fresh memory; with 4 KiB pages the page faults cost as much as the copy
 * from the socket (measured: 100 MB frames at half the raw TCP rate). Asking for transparent huge
 * pages on 2 MiB-aligned blocks cuts the faults by 512x where THP is in madvise mode.
 */
static void *alloc_block(size_t bytes) {
    if (bytes < DR_NET_HUGE_BYTES)
        return malloc(bytes);
    void *block = NULL;
    if (posix_memalign(&block, DR_NET_HUGE_ALIGN, bytes))
        return NULL;
    madvise(block, bytes & ~(size_t)(DR_NET_HUGE_ALIGN - 1), MADV_HUGEPAGE);
    return block;
}

static void *msg_alloc(void *ctx, const dr_frame_header *header, uint8_t **payload_out) {
    (void)ctx;
    size_t head = (sizeof(dr_net_msg) + 15u) & ~(size_t)15u;
    dr_net_msg *msg = alloc_block(head + header->payload_bytes);
    if (!msg)
        return NULL;
    memset(msg, 0, sizeof *msg);
    msg->type = header->type;
    msg->flags = header->flags;
    msg->payload_bytes = header->payload_bytes;
    msg->payload = (uint8_t *)msg + head;
    *payload_out = msg->payload;
    return msg;
}

static conn *new_conn(dr_net *net, int fd, bool outbound, uint32_t peer) {
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->rbuf = malloc(DR_NET_RBUF_BYTES);
    if (!c->rbuf) {
        free(c);
        return NULL;
    }
    c->net = net;
    c->fd = fd;
    c->outbound = outbound;
    c->peer = peer;
    c->role = DR_NET_ROLE_MEMBER;
    c->state = outbound ? CONN_CONNECTING : CONN_HELLO;
    c->created_ns = now_ns();
    dr_frame_decoder_init(&c->dec, DR_NET_HELLO_MAX, msg_alloc, c);
    return c;
}

/* Links c, queues its HELLO and registers it with epoll. Consumes c on failure. */
static int register_conn(dr_net *net, conn *c) {
    pthread_mutex_lock(&net->mu);
    int rc = queue_hello_locked(net, c);
    struct epoll_event ev = {.events = 0, .data.ptr = c};
    if (rc == DR_OK) {
        if (c->state == CONN_HELLO)
            c->want_write = true;
        ev.events = interest_locked(net, c);
        if (epoll_ctl(net->epfd, EPOLL_CTL_ADD, c->fd, &ev))
            rc = DR_EIO;
    }
    if (rc == DR_OK) {
        c->next = net->conns;
        net->conns = c;
    }
    pthread_mutex_unlock(&net->mu);
    if (rc == DR_OK) {
        atomic_store(&net->new_conns, true);
        wake_thread(net); /* the loop starts checking this connection's handshake deadline */
    }
    if (rc) {
        free_frame_list(c->out_head);
        close(c->fd);
        free_conn(c);
    }
    return rc;
}

/* ---------------------------------------------------------------- handshake */

static int check_hello(dr_net *net, conn *c, const dr_net_msg *msg, uint32_t *id, dr_net_role *role,
                       const char **why) {
    dr_reader r;
    dr_reader_init(&r, msg->payload, msg->payload_bytes);
    uint64_t cluster = dr_reader_u64(&r);
    *id = dr_reader_u32(&r);
    *role = (dr_net_role)dr_reader_u8(&r);
    dr_reader_bytes(&r, 3);
    if (msg->type != DR_NET_T_HELLO || r.failed || !dr_reader_done(&r))
        return *why = "first frame is not a valid HELLO", DR_EPROTO;
    if (cluster != net->cfg.cluster_id)
        return *why = "HELLO from another cluster", DR_EPROTO;
    if (*role != DR_NET_ROLE_MEMBER && *role != DR_NET_ROLE_CLIENT)
        return *why = "HELLO with an unknown role", DR_EPROTO;
    if (c->outbound && (*role != DR_NET_ROLE_MEMBER || *id != c->peer))
        return *why = "dialled node answered with another node id", DR_EPROTO;
    if (!c->outbound && *role == DR_NET_ROLE_MEMBER &&
        (*id >= DR_NET_CLIENT_ID_BASE || *id == net->cfg.node_id))
        return *why = "HELLO with an invalid member id", DR_EPROTO;
    return DR_OK;
}

/* HELLO accepted: assign the id, replace an older connection with it, report PEER_UP. */
static void complete_hello(dr_net *net, conn *c, uint32_t id, dr_net_role role) {
    if (!c->outbound && role == DR_NET_ROLE_CLIENT)
        id = DR_NET_CLIENT_ID_BASE | (net->next_client_id++ & 0x7fffffffu);
    pthread_mutex_lock(&net->mu);
    conn *older = NULL;
    for (conn *o = net->conns; o; o = o->next)
        if (o != c && o->peer == id && is_identified(o) && !o->closed)
            older = o;
    c->peer = id;
    c->role = role;
    c->state = CONN_UP;
    dr_frame_decoder_init(&c->dec, net->cfg.max_frame_bytes, msg_alloc, c);
    pthread_mutex_unlock(&net->mu);
    if (older)
        close_conn(net, older, DR_EEXIST, "replaced by a newer connection");
    DR_INFO(DR_LOGM_NET, "peer %u up (%s, %s)", id,
            role == DR_NET_ROLE_CLIENT ? "client" : "member", c->outbound ? "outbound" : "inbound");
    dr_net_event ev = {.kind = DR_NET_EV_PEER_UP, .peer = id, .role = role};
    emit(net, &ev);
}

/* ---------------------------------------------------------------- reading (network thread) */

static bool peer_is_cut(dr_net *net, uint32_t peer) {
    pthread_mutex_lock(&net->mu);
    bool cut = is_cut_locked(net, peer);
    pthread_mutex_unlock(&net->mu);
    return cut;
}

/* A whole frame arrived on c. Returns false if c was closed. */
static bool on_frame(dr_net *net, conn *c, dr_net_msg *msg) {
    if (c->state == CONN_HELLO) {
        uint32_t id = 0;
        dr_net_role role = 0;
        const char *why = "";
        int rc = check_hello(net, c, msg, &id, &role, &why);
        free(msg);
        if (rc) {
            close_conn(net, c, rc, why);
            return false;
        }
        if (peer_is_cut(net, c->outbound ? c->peer : id))
            return true; /* black hole: the handshake never completes */
        complete_hello(net, c, id, role);
        return true;
    }
    if (msg->type < DR_NET_TYPE_USER_MIN) {
        free(msg);
        close_conn(net, c, DR_EPROTO, "reserved message type after the handshake");
        return false;
    }
    if (peer_is_cut(net, c->peer)) {
        stat_add(&net->frames_dropped, 1);
        free(msg);
        return true;
    }
    msg->from = c->peer;
    stat_add(&net->frames_received, 1);
    dr_net_event ev = {.kind = DR_NET_EV_FRAME, .peer = c->peer, .role = c->role, .msg = msg};
    emit(net, &ev);
    return true;
}

/* Feeds n buffered bytes to the decoder. Returns false if c was closed. */
static bool feed_bytes(dr_net *net, conn *c, size_t n) {
    size_t pos = 0;
    while (pos < n) {
        size_t used = 0;
        dr_frame frame;
        int rc = dr_frame_decoder_feed(&c->dec, c->rbuf + pos, n - pos, &used, &frame);
        pos += used;
        if (rc < 0) {
            close_conn(net, c, rc, dr_frame_decoder_why(&c->dec));
            return false;
        }
        if (rc == 1 && !on_frame(net, c, frame.block))
            return false;
    }
    return true;
}

/* One recv into the payload (large gaps) or the read buffer. Returns bytes, 0 (EOF), -errno. */
static ssize_t read_some(conn *c, size_t *requested, bool *direct) {
    uint8_t *dst = NULL;
    size_t gap = dr_frame_decoder_payload_gap(&c->dec, &dst);
    *direct = gap >= DR_NET_RBUF_BYTES;
    if (!*direct) {
        dst = c->rbuf;
        gap = DR_NET_RBUF_BYTES;
    }
    *requested = gap;
    ssize_t n;
    do
        n = recv(c->fd, dst, gap, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static bool reads_paused(dr_net *net) {
    return !net->cfg.on_event && dr_net_inbox_over_limit(&net->inbox);
}

static void handle_readable(dr_net *net, conn *c) {
    for (int i = 0; i < DR_NET_READS_PER_EV && !reads_paused(net); i++) {
        size_t requested = 0;
        bool direct = false;
        ssize_t n = read_some(c, &requested, &direct);
        if (n == -EAGAIN || n == -EWOULDBLOCK)
            return;
        if (n == 0) {
            close_conn(net, c, DR_ECLOSED, "closed by peer");
            return;
        }
        if (n < 0) {
            close_conn(net, c, DR_EIO, strerror((int)-n));
            return;
        }
        dr_frame frame;
        if (direct && dr_frame_decoder_payload_filled(&c->dec, (size_t)n, &frame)) {
            if (!on_frame(net, c, frame.block))
                return;
        } else if (!direct && !feed_bytes(net, c, (size_t)n)) {
            return;
        }
        if (!direct && (size_t)n < requested)
            return;
    }
}

static void handle_writable(dr_net *net, conn *c) {
    out_frame *done = NULL;
    pthread_mutex_lock(&net->mu);
    if (c->state == CONN_CONNECTING) {
        int err = dr_sock_connect_result(c->fd);
        if (err) {
            pthread_mutex_unlock(&net->mu);
            close_conn(net, c, DR_EIO, strerror(err));
            return;
        }
        dr_sock_set_nodelay(c->fd);
        c->state = CONN_HELLO;
        c->want_write = c->out_head != NULL;
        update_interest_locked(net, c);
    }
    int rc = flush_locked(net, c, &done);
    pthread_mutex_unlock(&net->mu);
    free_frame_list(done);
    if (rc)
        close_conn(net, c, rc, strerror(errno));
}

/*
 * Reads are paused but the peer hung up: EPOLLHUP cannot be masked, so take the socket out of
 * epoll until reading resumes (its unread frames are still delivered then).
 */
static void park(dr_net *net, conn *c) {
    pthread_mutex_lock(&net->mu);
    if (!c->parked && !c->closed) {
        epoll_ctl(net->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->parked = true;
    }
    pthread_mutex_unlock(&net->mu);
}

static void unpark_locked(dr_net *net, conn *c) {
    struct epoll_event ev = {.events = interest_locked(net, c), .data.ptr = c};
    c->parked = false;
    if (epoll_ctl(net->epfd, EPOLL_CTL_ADD, c->fd, &ev))
        DR_ERROR(DR_LOGM_NET, "epoll_ctl ADD fd %d: %s", c->fd, strerror(errno));
}

static void handle_conn_event(dr_net *net, conn *c, uint32_t events) {
    if (c->closed)
        return;
    if (reads_paused(net) && events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP) &&
        c->state != CONN_CONNECTING) {
        park(net, c);
        return;
    }
    if (events & EPOLLOUT || (c->state == CONN_CONNECTING && events & (EPOLLERR | EPOLLHUP)))
        handle_writable(net, c);
    if (!c->closed && c->state != CONN_CONNECTING && events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        handle_readable(net, c);
}

static uint32_t count_pending_inbound(dr_net *net) {
    uint32_t pending = 0;
    pthread_mutex_lock(&net->mu);
    for (conn *c = net->conns; c; c = c->next)
        pending += !c->outbound && c->state == CONN_HELLO;
    pthread_mutex_unlock(&net->mu);
    return pending;
}

/* Closes connections whose connect or handshake is older than handshake_timeout_ms.
 * Returns whether any connection is still waiting for its handshake. */
static bool expire_handshakes(dr_net *net) {
    uint64_t limit_ns = (uint64_t)net->cfg.handshake_timeout_ms * 1000000u;
    for (;;) {
        conn *late = NULL;
        bool waiting = false;
        uint64_t now = now_ns();
        pthread_mutex_lock(&net->mu);
        for (conn *c = net->conns; c && !late; c = c->next) {
            if (c->state == CONN_UP)
                continue;
            waiting = true;
            if (now - c->created_ns > limit_ns)
                late = c;
        }
        pthread_mutex_unlock(&net->mu);
        if (!late)
            return waiting;
        close_conn(net, late, DR_ETIMEDOUT, "no handshake before the deadline");
    }
}

static void accept_all(dr_net *net) {
    for (;;) {
        int fd = accept4(net->listenfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                DR_WARN(DR_LOGM_NET, "accept: %s", strerror(errno));
            if (errno == EINTR)
                continue;
            return;
        }
        if (count_pending_inbound(net) >= net->cfg.max_pending_inbound) {
            DR_WARN(DR_LOGM_NET, "refusing a connection: %u inbound handshakes pending",
                    net->cfg.max_pending_inbound);
            close(fd);
            continue;
        }
        dr_sock_set_nodelay(fd);
        conn *c = new_conn(net, fd, false, DR_NET_NO_PEER);
        if (!c) {
            close(fd);
            DR_ERROR(DR_LOGM_NET, "no memory for an inbound connection");
            continue;
        }
        if (register_conn(net, c))
            DR_ERROR(DR_LOGM_NET, "cannot register an inbound connection");
    }
}

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
    emit(net, &ev);
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
        close_conn(net, victim, victim->close_reason,
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
                unpark_locked(net, c);
            else
                update_interest_locked(net, c);
        DR_DEBUG(DR_LOGM_NET, "reading %s (inbox limit)", want_paused ? "paused" : "resumed");
    }
    pthread_mutex_unlock(&net->mu);
}

static void dispatch(dr_net *net, struct epoll_event *events, int n) {
    for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == &listen_marker)
            accept_all(net);
        else if (events[i].data.ptr == &wake_marker)
            handle_wake(net);
        else if (events[i].data.ptr == &tick_marker)
            handle_tick(net);
        else
            handle_conn_event(net, events[i].data.ptr, events[i].events);
    }
    apply_read_pause(net);
    free_dead(net);
}

/* epoll_wait, preceded by a bounded spin of non-blocking polls when the spin state allows. */
static int wait_events(dr_net *net, struct epoll_event *events, int timeout_ms) {
    if (dr_spin_should(&net->loop_spin)) {
        uint64_t end = now_ns() + (uint64_t)net->loop_spin.budget_us * 1000u;
        do {
            int n = epoll_wait(net->epfd, events, DR_NET_EPOLL_BATCH, 0);
            if (n != 0) {
                dr_spin_spun(&net->loop_spin, n > 0);
                return n;
            }
            sched_yield(); /* a peer thread sharing this CPU gets to run */
        } while (now_ns() < end);
        dr_spin_spun(&net->loop_spin, false);
    }
    uint64_t start = now_ns();
    int n = epoll_wait(net->epfd, events, DR_NET_EPOLL_BATCH, timeout_ms);
    if (net->loop_spin.budget_us)
        dr_spin_blocked(&net->loop_spin, now_ns() - start);
    return n;
}

static void *loop(void *arg) {
    dr_net *net = arg;
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
            handshakes_pending = expire_handshakes(net);
        free_dead(net);
    }
    return NULL;
}

/* ---------------------------------------------------------------- public API */

void dr_net_config_defaults(dr_net_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->role = DR_NET_ROLE_MEMBER;
    cfg->max_frame_bytes = 128u << 20;
    cfg->max_queue_bytes = (size_t)256u << 20;
    cfg->max_inbox_bytes = (size_t)256u << 20;
    cfg->handshake_timeout_ms = 5000;
    cfg->max_pending_inbound = 64;
}

static int check_config(const dr_net_config *cfg, dr_err *err) {
    if (cfg->role != DR_NET_ROLE_MEMBER && cfg->role != DR_NET_ROLE_CLIENT)
        return dr_err_set(err, DR_EINVAL, "net: unknown role %d", (int)cfg->role);
    if (cfg->role == DR_NET_ROLE_MEMBER && cfg->node_id >= DR_NET_CLIENT_ID_BASE)
        return dr_err_set(err, DR_EINVAL, "net: node id %u out of range", cfg->node_id);
    if (cfg->max_frame_bytes == 0 || cfg->max_frame_bytes > DR_FRAME_PAYLOAD_HARD_MAX)
        return dr_err_set(err, DR_EINVAL, "net: max_frame_bytes %u out of range",
                          cfg->max_frame_bytes);
    if (cfg->handshake_timeout_ms == 0 || cfg->max_pending_inbound == 0)
        return dr_err_set(err, DR_EINVAL, "net: handshake limits must be positive");
    if (cfg->max_queue_bytes == 0 || cfg->max_inbox_bytes == 0)
        return dr_err_set(err, DR_EINVAL, "net: queue limits must be positive");
    if (cfg->spin_us > 1000 || cfg->loop_spin_us > 1000)
        return dr_err_set(err, DR_EINVAL, "net: spin over the 1000 µs bound");
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
    net->epfd = net->wakefd = net->listenfd = net->tickfd = -1;
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
    atomic_store(&net->stopping, true);
    if (net->thread_started) {
        wake_thread(net);
        pthread_join(net->thread, NULL);
    }
    pthread_mutex_lock(&net->mu);
    pthread_cond_broadcast(&net->writable);
    pthread_mutex_unlock(&net->mu);
    while (net->conns) {
        conn *c = net->conns;
        net->conns = c->next;
        free_frame_list(c->out_head);
        close(c->fd);
        free_conn(c);
    }
    free_dead(net);
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
    wake_thread(net);
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
    bool exists = find_conn_locked(net, node_id) != NULL;
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
    conn *c = new_conn(net, fd, true, node_id);
    if (!c) {
        close(fd);
        return DR_ENOMEM;
    }
    return register_conn(net, c);
}

int dr_net_disconnect(dr_net *net, uint32_t peer) {
    pthread_mutex_lock(&net->mu);
    conn *c = find_conn_locked(net, peer);
    if (c)
        c->close_reason = DR_ECLOSED;
    pthread_mutex_unlock(&net->mu);
    if (!c)
        return DR_ENOTFOUND;
    wake_thread(net);
    return DR_OK;
}

/* Writes header+payload straight to the socket; returns bytes written (0 on EAGAIN) or -1. */
static ssize_t direct_write(conn *c, const uint8_t *header, const void *payload, size_t len) {
    struct iovec iov[2] = {{(void *)header, DR_FRAME_HEADER_BYTES}, {(void *)payload, len}};
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
static out_frame *frame_for_queue(uint16_t type, uint32_t flags, const void *payload, size_t len,
                                  size_t written, bool owned) {
    size_t payload_written = written > DR_FRAME_HEADER_BYTES ? written - DR_FRAME_HEADER_BYTES : 0;
    size_t copy = owned ? 0 : len - payload_written;
    out_frame *f = new_frame(type, flags, len, copy);
    if (!f)
        return NULL;
    f->header_off = written < DR_FRAME_HEADER_BYTES ? written : DR_FRAME_HEADER_BYTES;
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
    const void *payload;    /**< payload bytes */
    size_t len;             /**< payload length */
    bool owned;             /**< payload handed over (free_fn) rather than copied */
    dr_net_free_fn free_fn; /**< owned: release callback */
    void *free_ctx;         /**< owned: its context */
} send_req;

/* Under mu with c found: direct write if possible, queue the rest. *taken: the queue now owns
 * an owned payload. */
static int send_locked(dr_net *net, conn *c, const send_req *req, bool *taken) {
    size_t written = 0;
    if (c->state != CONN_CONNECTING && !c->out_head) {
        uint8_t header[DR_FRAME_HEADER_BYTES];
        dr_frame_encode_header(header, req->type, req->flags, (uint32_t)req->len);
        ssize_t n = direct_write(c, header, req->payload, req->len);
        if (n < 0) {
            c->close_reason = DR_EIO;
            wake_thread(net);
            return DR_OK; /* lost with the connection; PEER_DOWN follows */
        }
        written = (size_t)n;
        if (written == DR_FRAME_HEADER_BYTES + req->len) {
            stat_add(&net->frames_sent, 1);
            stat_add(&net->direct_writes, 1);
            return DR_OK;
        }
    }
    out_frame *f =
        frame_for_queue(req->type, req->flags, req->payload, req->len, written, req->owned);
    if (!f) {
        if (written) { /* half a frame is on the wire: the stream cannot continue */
            c->close_reason = DR_ENOMEM;
            wake_thread(net);
        }
        return DR_ENOMEM;
    }
    if (req->owned) {
        f->free_fn = req->free_fn;
        f->free_ctx = req->free_ctx;
        f->free_arg = (void *)req->payload;
        *taken = true;
    }
    append_locked(c, f);
    if (c->state != CONN_CONNECTING && !c->want_write) {
        c->want_write = true;
        update_interest_locked(net, c);
    }
    return DR_OK;
}

static int send_frame(dr_net *net, const send_req *req, bool *taken) {
    if (req->type < DR_NET_TYPE_USER_MIN)
        return DR_EINVAL;
    if (req->len > net->cfg.max_frame_bytes)
        return DR_ETOOBIG;
    if (atomic_load(&net->stopping))
        return DR_ECLOSED;
    pthread_mutex_lock(&net->mu);
    int rc = DR_OK;
    conn *c = find_conn_locked(net, req->peer);
    if (!c)
        rc = DR_ENOTFOUND;
    else if (is_cut_locked(net, req->peer))
        stat_add(&net->frames_dropped, 1);
    else if (c->queued_bytes >= net->cfg.max_queue_bytes)
        rc = DR_EAGAIN;
    else
        rc = send_locked(net, c, req, taken);
    pthread_mutex_unlock(&net->mu);
    return rc;
}

int dr_net_send(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, const void *payload,
                size_t len) {
    send_req req = {.peer = peer, .type = type, .flags = flags, .payload = payload, .len = len};
    bool taken = false;
    return send_frame(net, &req, &taken);
}

int dr_net_send_owned(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, void *payload,
                      size_t len, dr_net_free_fn free_fn, void *free_ctx) {
    send_req req = {.peer = peer,
                    .type = type,
                    .flags = flags,
                    .payload = payload,
                    .len = len,
                    .owned = true,
                    .free_fn = free_fn,
                    .free_ctx = free_ctx};
    bool taken = false;
    int rc = send_frame(net, &req, &taken);
    if (!taken && free_fn)
        free_fn(free_ctx, payload);
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
    struct timespec deadline = deadline_after(timeout_ms < 0 ? 0 : timeout_ms);
    int rc = DR_OK;
    pthread_mutex_lock(&net->mu);
    net->writable_waiters++;
    for (;;) {
        conn *c = find_conn_locked(net, peer);
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
    conn *c = find_conn_locked(net, peer);
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
}
