/*
 * Connections of the TCP transport (see net.c for threads and locks): reading and decoding
 * frames on the network thread, the HELLO handshake, gathered writes of the outgoing queues,
 * epoll interest, accepting, handshake deadlines and closing. Wire format: frame.c; HELLO
 * payload: net.c.
 */
#include "net/net_int.h"

#include "derecho/buffer.h"
#include "derecho/log.h"
#include "net/sock.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- small helpers */

uint64_t dr_net__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void dr_net__stat_add(_Atomic uint64_t *counter, uint64_t n) {
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

void dr_net__wake_thread(dr_net *net) {
    uint64_t one = 1;
    ssize_t n = write(net->wakefd, &one, sizeof one);
    (void)n; /* EAGAIN: counter saturated, already awake */
}

bool dr_net__is_cut_locked(const dr_net *net, uint32_t peer) {
    for (size_t i = 0; i < net->cut_count; i++)
        if (net->cut[i] == peer)
            return true;
    return false;
}

/* Whether c's peer id is meaningful: we dialled it, or its HELLO was accepted. */
static bool is_identified(const conn *c) {
    return c->outbound || c->state == CONN_UP;
}

conn *dr_net__find_conn_locked(dr_net *net, uint32_t peer) {
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

void dr_net_free_payload(void *ctx, void *payload) {
    (void)ctx;
    free(payload);
}

void dr_net__free_frame_list(out_frame *f) {
    while (f) {
        out_frame *next = f->next;
        free_frame(f);
        f = next;
    }
}

static size_t frame_remaining(const out_frame *f) {
    return f->header_len - f->header_off + f->payload_len - f->payload_off;
}

void dr_net__emit(dr_net *net, const dr_net_event *ev) {
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

void dr_net__update_interest_locked(dr_net *net, conn *c) {
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
        if (f->header_off < f->header_len)
            iov[n++] =
                (struct iovec){(void *)(f->header + f->header_off), f->header_len - f->header_off};
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
        size_t h = f->header_len - f->header_off;
        h = h < n ? h : n;
        f->header_off += h;
        n -= h;
        size_t p = f->payload_len - f->payload_off;
        p = p < n ? p : n;
        f->payload_off += p;
        n -= p;
        if (f->urgent)
            c->urgent_bytes -= h + p;
        if (frame_remaining(f))
            break;
        if (f == c->urgent_tail)
            c->urgent_tail = NULL; /* the urgent lane is empty */
        c->out_head = f->next;
        f->next = *done;
        *done = f;
        dr_net__stat_add(&c->net->frames_sent, 1);
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
int dr_net__flush_locked(dr_net *net, conn *c, out_frame **done) {
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
        dr_net__update_interest_locked(net, c);
    }
    signal_writable_locked(net, c, before);
    return rc;
}

/* The incarnation the peer's HELLO carried (its last 8 bytes; 0 before the HELLO arrived). */
static uint64_t peer_incarnation(const conn *c) {
    return dr_load_u64le(c->peer_hello + 16 + DR_NET_NONCE_BYTES);
}

/* ---------------------------------------------------------------- closing */

/* Network thread: unlinks and closes c; reports PEER_DOWN when the peer was (to be) known. */
void dr_net__close_conn(dr_net *net, conn *c, int reason, const char *why) {
    pthread_mutex_lock(&net->mu);
    if (c->closed) {
        pthread_mutex_unlock(&net->mu);
        return;
    }
    c->closed = true;
    if (reason == DR_EPROTO || reason == DR_ETOOBIG)
        dr_net__stat_add(&net->protocol_errors, 1); /* before close(): a peer may look at once */
    epoll_ctl(net->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    out_frame *pending = c->out_head;
    out_frame *held = c->held_head;
    c->out_head = c->out_tail = NULL;
    c->held_head = c->held_tail = NULL;
    c->queued_bytes = 0;
    c->urgent_bytes = 0;
    c->urgent_tail = NULL;
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

    dr_net__free_frame_list(pending);
    dr_net__free_frame_list(held);
    /* Unidentified connections and clients come from outside at any rate: bounded log. */
    bool outsider = !report || c->role == DR_NET_ROLE_CLIENT;
    if (reason == DR_ECLOSED && outsider)
        DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_INFO, "connection to peer %d closed: %s", (int)c->peer,
                       why);
    else if (reason == DR_ECLOSED)
        DR_INFO(DR_LOGM_NET, "connection to peer %d closed: %s", (int)c->peer, why);
    else if (outsider)
        DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_WARN, "closing connection to peer %d: %s (%s)",
                       (int)c->peer, why, dr_strerror(reason));
    else
        DR_WARN(DR_LOGM_NET, "closing connection to peer %d: %s (%s)", (int)c->peer, why,
                dr_strerror(reason));
    if (report) {
        dr_net_event ev = {.kind = DR_NET_EV_PEER_DOWN,
                           .peer = c->peer,
                           .role = c->role,
                           .reason = reason,
                           .incarnation = c->state == CONN_UP ? peer_incarnation(c)
                                                              : 0}; /* proven only then */
        dr_net__emit(net, &ev);
    }
}

void dr_net__free_conn(conn *c) {
    dr_net__seal_free(c);
    dr_frame_decoder_free(&c->dec);
    free(c->rbuf);
    free(c);
}

void dr_net__free_dead(dr_net *net) {
    while (net->dead) {
        conn *c = net->dead;
        net->dead = c->next_dead;
        dr_net__free_conn(c);
    }
}

/* ---------------------------------------------------------------- queueing */

out_frame *dr_net__new_frame(uint16_t type, uint32_t flags, size_t len, size_t copy_bytes) {
    out_frame *f = malloc(sizeof *f + copy_bytes);
    if (!f)
        return NULL;
    memset(f, 0, sizeof *f);
    dr_frame_encode_header(f->header, type, flags, (uint32_t)len);
    f->header_len = DR_FRAME_HEADER_BYTES;
    f->payload = (uint8_t *)(f + 1);
    f->payload_len = copy_bytes;
    return f;
}

/* Counts f's unwritten bytes in (sign +1) or out of (-1) c's queue totals. */
static void count_frame_locked(conn *c, const out_frame *f, int sign) {
    size_t bytes = frame_remaining(f);
    c->queued_bytes = sign > 0 ? c->queued_bytes + bytes : c->queued_bytes - bytes;
    if (f->urgent)
        c->urgent_bytes = sign > 0 ? c->urgent_bytes + bytes : c->urgent_bytes - bytes;
}

void dr_net__append_locked(conn *c, out_frame *f) {
    f->next = NULL;
    if (c->out_tail)
        c->out_tail->next = f;
    else
        c->out_head = f;
    c->out_tail = f;
    count_frame_locked(c, f, +1);
}

/*
 * The queue is: [the head, possibly partly written] [urgent lane: urgent_tail ends it] [the rest,
 * in send order]. An urgent frame goes behind urgent_tail; with an empty lane, at the front
 * unless the head has bytes on the wire already (a frame is never split: the peer's decoder
 * needs whole frames one after another), then right behind the head. A frame leaves the lane
 * only by being written, and everything before urgent_tail is written before it, so urgent_tail
 * is cleared when it is written (advance_queue).
 */
void dr_net__insert_urgent_locked(conn *c, out_frame *f) {
    out_frame *after = c->urgent_tail;
    if (!after && c->out_head && (c->out_head->header_off > 0 || c->out_head->payload_off > 0))
        after = c->out_head; /* in progress: it finishes first */
    if (after) {
        f->next = after->next;
        after->next = f;
        if (c->out_tail == after)
            c->out_tail = f;
    } else {
        f->next = c->out_head;
        c->out_head = f;
        if (!c->out_tail)
            c->out_tail = f;
    }
    c->urgent_tail = f;
    count_frame_locked(c, f, +1);
}

/* Queues f on its lane; sealed frames carry their position in the IV (seal.c), so on a sealed
 * connection every frame leaves in seal order. */
static void enqueue_locked(conn *c, out_frame *f) {
    if (f->urgent && !c->seal)
        dr_net__insert_urgent_locked(c, f);
    else
        dr_net__append_locked(c, f);
}

void dr_net__queue_user_frame_locked(conn *c, out_frame *f) {
    if (c->state == CONN_UP) {
        enqueue_locked(c, f);
        return;
    }
    f->next = NULL;
    if (c->held_tail)
        c->held_tail->next = f;
    else
        c->held_head = f;
    c->held_tail = f;
    count_frame_locked(c, f, +1);
}

/* Queues the HELLO frame that opens every connection (fresh nonce; kept for the AUTH MAC). */
static int queue_hello_locked(dr_net *net, conn *c) {
    uint8_t *h = c->my_hello;
    dr_store_u64le(h, net->cfg.cluster_id);
    dr_store_u32le(h + 8, net->cfg.role == DR_NET_ROLE_MEMBER ? net->cfg.node_id : 0);
    h[12] = (uint8_t)net->cfg.role;
    h[13] = (uint8_t)net->cfg.prove_with;
    h[14] = DR_NET_HELLO_VERSION;
    h[15] = net->cfg.encrypt ? 1 : 0; /* flags: bit 0 asks for sealed frames */
    if (getrandom(h + 16, DR_NET_NONCE_BYTES, 0) != (ssize_t)DR_NET_NONCE_BYTES)
        return DR_EIO;
    dr_store_u64le(h + 16 + DR_NET_NONCE_BYTES, net->cfg.incarnation);
    out_frame *f = dr_net__new_frame(DR_NET_T_HELLO, 0, DR_NET_HELLO_BYTES, DR_NET_HELLO_BYTES);
    if (!f)
        return DR_ENOMEM;
    memcpy(f->payload, h, DR_NET_HELLO_BYTES);
    dr_net__append_locked(c, f);
    return DR_OK;
}

/* HMAC-SHA256(key, label || first || second): the AUTH of the side whose HELLO is `first`. */
static void auth_mac(const uint8_t *key, const uint8_t *first, const uint8_t *second,
                     uint8_t mac[DR_NET_MAC_BYTES]) {
    static const char label[] = "derecho-net-auth-v2";
    uint8_t transcript[sizeof label - 1 + 2 * DR_NET_HELLO_BYTES];
    memcpy(transcript, label, sizeof label - 1);
    memcpy(transcript + sizeof label - 1, first, DR_NET_HELLO_BYTES);
    memcpy(transcript + sizeof label - 1 + DR_NET_HELLO_BYTES, second, DR_NET_HELLO_BYTES);
    unsigned int len = DR_NET_MAC_BYTES;
    if (!HMAC(EVP_sha256(), key, (int)DR_NET_KEY_BYTES, transcript, sizeof transcript, mac, &len))
        memset(mac, 0, DR_NET_MAC_BYTES); /* never verifies against a real MAC */
}

/* Queues our AUTH frame right behind the HELLO (nothing else is queued before the handshake)
 * and moves c to CONN_AUTH. */
static int queue_auth(dr_net *net, conn *c) {
    out_frame *f = dr_net__new_frame(DR_NET_T_AUTH, 0, DR_NET_MAC_BYTES, DR_NET_MAC_BYTES);
    if (!f)
        return DR_ENOMEM;
    auth_mac(net->cfg.keys[c->key], c->my_hello, c->peer_hello, f->payload);
    pthread_mutex_lock(&net->mu);
    c->state = CONN_AUTH; /* state is read by senders under mu */
    dr_net__append_locked(c, f);
    if (!c->want_write) {
        c->want_write = true;
        dr_net__update_interest_locked(net, c);
    }
    pthread_mutex_unlock(&net->mu);
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

conn *dr_net__new_conn(dr_net *net, int fd, bool outbound, uint32_t peer) {
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
    c->created_ns = dr_net__now_ns();
    dr_frame_decoder_init(&c->dec, DR_NET_HELLO_MAX, msg_alloc, c);
    return c;
}

/* Links c, queues its HELLO and registers it with epoll. Consumes c on failure. */
int dr_net__register_conn(dr_net *net, conn *c) {
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
        dr_net__wake_thread(
            net); /* the loop starts checking this connection's handshake deadline */
    }
    if (rc) {
        dr_net__free_frame_list(c->out_head);
        dr_net__free_frame_list(c->held_head);
        close(c->fd);
        dr_net__free_conn(c);
    }
    return rc;
}

/* ---------------------------------------------------------------- handshake */

/*
 * Which key the connection will be authenticated with, from the peer's HELLO key field.
 * Members with a member key demand proof from everyone: members prove the member key, clients
 * the admin or the client key; members without one accept no proof (an open group). A client
 * proves its own key when the member is authenticating (the member's HELLO says MEMBER).
 */
static int choose_key(dr_net *net, conn *c, dr_net_role role, uint8_t peer_key, const char **why) {
    const dr_net_config *cfg = &net->cfg;
    c->key = DR_NET_KEY_NONE;
    if (cfg->role == DR_NET_ROLE_CLIENT) {
        if (cfg->prove_with != DR_NET_KEY_NONE && peer_key != DR_NET_KEY_MEMBER)
            return *why = "the member does not authenticate clients (it has no cluster key)",
                   DR_EPROTO;
        if (cfg->prove_with == DR_NET_KEY_NONE && peer_key != DR_NET_KEY_NONE)
            return *why = "the group requires a client credential (admin or client key)", DR_EPERM;
        c->key = cfg->prove_with;
        return DR_OK;
    }
    if (!cfg->keys[DR_NET_KEY_MEMBER]) {
        if (peer_key != DR_NET_KEY_NONE)
            return *why = "peer authenticates but this node has no cluster key", DR_EPERM;
        return DR_OK;
    }
    if (role == DR_NET_ROLE_MEMBER && peer_key != DR_NET_KEY_MEMBER)
        return *why = "member HELLO without the cluster key", DR_EPERM;
    if (role == DR_NET_ROLE_CLIENT &&
        ((peer_key != DR_NET_KEY_ADMIN && peer_key != DR_NET_KEY_CLIENT) || !cfg->keys[peer_key]))
        return *why = "client HELLO without an accepted credential", DR_EPERM;
    c->key = (dr_net_key_kind)peer_key;
    return DR_OK;
}

/* Whether one more outside client from c's address fits the caps. Network thread. */
static bool client_fits(dr_net *net, const conn *c) {
    uint32_t total = 0, same_ip = 0;
    pthread_mutex_lock(&net->mu);
    for (const conn *o = net->conns; o; o = o->next) {
        if (o == c || o->outbound || o->closed)
            continue;
        bool client = (o->state == CONN_UP && o->role == DR_NET_ROLE_CLIENT) ||
                      (o->state == CONN_AUTH && o->hello_role == DR_NET_ROLE_CLIENT);
        total += client;
        same_ip += client && o->ip == c->ip;
    }
    pthread_mutex_unlock(&net->mu);
    return total < net->cfg.max_clients && same_ip < net->cfg.max_clients_per_ip;
}

static int check_hello(dr_net *net, conn *c, const dr_net_msg *msg, uint32_t *id, dr_net_role *role,
                       const char **why) {
    if (msg->type == DR_NET_T_HELLO && msg->payload_bytes == 16)
        return *why = "peer speaks the older handshake (16-byte HELLO, no authentication)",
               DR_EPROTO;
    if (msg->type == DR_NET_T_HELLO && msg->payload_bytes == DR_NET_HELLO_V2_BYTES)
        return *why = "peer speaks the older handshake version 2 (HELLO without incarnation)",
               DR_EPROTO;
    dr_reader r;
    dr_reader_init(&r, msg->payload, msg->payload_bytes);
    uint64_t cluster = dr_reader_u64(&r);
    *id = dr_reader_u32(&r);
    *role = (dr_net_role)dr_reader_u8(&r);
    uint8_t peer_key = dr_reader_u8(&r);
    uint8_t version = dr_reader_u8(&r);
    dr_reader_bytes(&r, 1 + DR_NET_NONCE_BYTES);
    (void)dr_reader_u64(&r); /* incarnation: kept in peer_hello (peer_incarnation) */
    if (msg->type != DR_NET_T_HELLO || r.failed || !dr_reader_done(&r))
        return *why = "first frame is not a valid HELLO", DR_EPROTO;
    if (version != DR_NET_HELLO_VERSION)
        return *why = "HELLO of an unknown handshake version", DR_EPROTO;
    if (peer_key >= DR_NET_KEY_KINDS)
        return *why = "HELLO with an unknown key kind", DR_EPROTO;
    memcpy(c->peer_hello, msg->payload, DR_NET_HELLO_BYTES);
    /* Outside clients may not know the cluster id (it hashes the members' layout spec): a
     * client-role net with DR_NET_CLUSTER_ANY accepts any member, and a member accepts a client
     * HELLO carrying DR_NET_CLUSTER_ANY. Members still need the exact id from each other. */
    bool any_client_in =
        !c->outbound && *role == DR_NET_ROLE_CLIENT && cluster == DR_NET_CLUSTER_ANY;
    bool any_client_out = c->outbound && net->cfg.role == DR_NET_ROLE_CLIENT &&
                          net->cfg.cluster_id == DR_NET_CLUSTER_ANY;
    if (cluster != net->cfg.cluster_id && !any_client_in && !any_client_out)
        return *why = "HELLO from another cluster", DR_EPROTO;
    if (*role != DR_NET_ROLE_MEMBER && *role != DR_NET_ROLE_CLIENT)
        return *why = "HELLO with an unknown role", DR_EPROTO;
    if (c->outbound && (*role != DR_NET_ROLE_MEMBER ||
                        (c->peer != DR_NET_ANY_NODE && *id != c->peer) || *id >= DR_NET_ANY_NODE ||
                        (net->cfg.role == DR_NET_ROLE_MEMBER && *id == net->cfg.node_id)))
        return *why = "dialled node answered with another node id", DR_EPROTO;
    if (!c->outbound && *role == DR_NET_ROLE_MEMBER &&
        (*id >= DR_NET_ANY_NODE || *id == net->cfg.node_id))
        return *why = "HELLO with an invalid member id", DR_EPROTO;
    if (!c->outbound && *role == DR_NET_ROLE_CLIENT && !client_fits(net, c)) {
        dr_net__stat_add(&net->refused_connections, 1);
        return *why = "client connection cap reached (max_clients / max_clients_per_ip)", DR_EAGAIN;
    }
    return choose_key(net, c, *role, peer_key, why);
}

/*
 * Frames held during the handshake go out now, sealed first if the connection is sealed.
 * Returns the replaced plaintext frames for freeing without mu. Under mu.
 */
static out_frame *release_held_locked(dr_net *net, conn *c) {
    out_frame *replaced = NULL;
    /* the handshake frames still queued go first: urgent frames line up behind them */
    c->urgent_tail = c->out_tail;
    for (out_frame *f = c->held_head; f;) {
        out_frame *next = f->next, *out = f;
        count_frame_locked(c, f, -1); /* counted again as `out` */
        if (c->seal) {
            dr_frame_header header;
            size_t sealed_len = 0;
            uint8_t *sealed = NULL;
            if (dr_frame_decode_header(f->header, DR_FRAME_PAYLOAD_HARD_MAX, &header, NULL) ==
                DR_OK)
                sealed = dr_net__seal_frame(
                    c, header.type, header.flags, f->header + DR_FRAME_HEADER_BYTES,
                    f->header_len - DR_FRAME_HEADER_BYTES, f->payload, f->payload_len, &sealed_len);
            out = sealed ? dr_net__new_frame(header.type, header.flags, sealed_len, 0) : NULL;
            f->next = replaced;
            replaced = f;
            if (!out) { /* no memory: the stream cannot go on without this frame */
                free(sealed);
                c->close_reason = DR_ENOMEM;
                dr_net__wake_thread(net);
                f = next;
                continue;
            }
            out->payload = sealed;
            out->payload_len = sealed_len;
            out->free_fn = dr_net_free_payload;
            out->free_arg = sealed;
            out->urgent = f->urgent;
        }
        enqueue_locked(c, out);
        f = next;
    }
    c->held_head = c->held_tail = NULL;
    if (c->out_head && !c->want_write) {
        c->want_write = true;
        dr_net__update_interest_locked(net, c);
    }
    return replaced;
}

/*
 * A second process with a live member's id: tell it (REFUSED, DR_EEXIST) and close. Network
 * thread, without mu. The frame goes out behind whatever the handshake left in the queue.
 */
static void refuse_duplicate(dr_net *net, conn *c, uint32_t id) {
    out_frame *f = dr_net__new_frame(DR_NET_T_REFUSED, 0, 4, 4);
    out_frame *done = NULL;
    pthread_mutex_lock(&net->mu);
    if (f) {
        dr_store_u32le(f->payload, (uint32_t)DR_EEXIST);
        dr_net__append_locked(c, f);
        dr_net__flush_locked(net, c, &done);
    }
    pthread_mutex_unlock(&net->mu);
    dr_net__free_frame_list(done);
    DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_ERROR,
                   "refused a second connection claiming node id %u: node %u is connected and "
                   "alive (two processes with one id?)",
                   id, id);
    dr_net__close_conn(net, c, DR_EEXIST, "duplicate node id");
}

/* HELLO accepted: assign the id, replace an older connection with it (or refuse a duplicate),
 * report PEER_UP. Returns false if c was closed. */
static bool complete_hello(dr_net *net, conn *c, uint32_t id, dr_net_role role) {
    if (!c->outbound && role == DR_NET_ROLE_CLIENT)
        id = DR_NET_CLIENT_ID_BASE | (net->next_client_id++ & 0x7fffffffu);
    pthread_mutex_lock(&net->mu);
    conn *older = NULL;
    for (conn *o = net->conns; o; o = o->next)
        if (o != c && o->peer == id && is_identified(o) && !o->closed)
            older = o;
    uint64_t window_ns = (uint64_t)net->cfg.duplicate_window_ms * 1000000u;
    if (older && !c->outbound && role == DR_NET_ROLE_MEMBER && window_ns &&
        older->state == CONN_UP && older->close_reason == 0 &&
        dr_net__now_ns() - atomic_load_explicit(&older->last_rx_ns, memory_order_relaxed) <
            window_ns) {
        pthread_mutex_unlock(&net->mu);
        refuse_duplicate(net, c, id);
        return false;
    }
    c->peer = id;
    c->role = role;
    c->state = CONN_UP;
    atomic_store_explicit(&c->last_rx_ns, dr_net__now_ns(), memory_order_relaxed);
    bool seal = c->key != DR_NET_KEY_NONE && (net->cfg.encrypt || (c->peer_hello[15] & 1));
    if (seal && dr_net__seal_init(c, net->cfg.keys[c->key]) != DR_OK)
        c->close_reason = DR_ENOMEM;
    uint32_t limit = role == DR_NET_ROLE_CLIENT && !c->outbound ? net->cfg.max_client_frame_bytes
                                                                : net->cfg.max_frame_bytes;
    dr_frame_decoder_init(&c->dec, limit + (uint32_t)dr_net__seal_overhead(c), msg_alloc, c);
    out_frame *replaced = release_held_locked(net, c);
    pthread_mutex_unlock(&net->mu);
    dr_net__free_frame_list(replaced);
    if (older)
        dr_net__close_conn(net, older, DR_EEXIST, "replaced by a newer connection");
    if (role == DR_NET_ROLE_CLIENT)
        DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_INFO, "peer %u up (client, %s)", id,
                       c->outbound ? "outbound" : "inbound");
    else
        DR_INFO(DR_LOGM_NET, "peer %u up (member, %s%s)", id, c->outbound ? "outbound" : "inbound",
                c->key == DR_NET_KEY_NONE ? ", unauthenticated" : "");
    dr_net_event ev = {.kind = DR_NET_EV_PEER_UP,
                       .peer = id,
                       .role = role,
                       .key = c->key,
                       .incarnation = peer_incarnation(c)};
    dr_net__emit(net, &ev);
    return true;
}

/* A REFUSED frame: the peer closes the connection for the reason it carries (DR_EEXIST). */
static bool on_refused(dr_net *net, conn *c, dr_net_msg *msg) {
    int reason = msg->payload_bytes == 4 ? (int32_t)dr_load_u32le(msg->payload) : DR_EPROTO;
    free(msg);
    if (reason != DR_EEXIST)
        reason = DR_EPROTO;
    DR_ERROR(DR_LOGM_NET, "node %u refused this connection: %s", c->peer,
             reason == DR_EEXIST ? "it already has a live member with this node's id"
                                 : "malformed refusal");
    dr_net__close_conn(net, c, reason, "refused by the peer");
    return false;
}

/* ---------------------------------------------------------------- reading (network thread) */

static bool peer_is_cut(dr_net *net, uint32_t peer) {
    pthread_mutex_lock(&net->mu);
    bool cut = dr_net__is_cut_locked(net, peer);
    pthread_mutex_unlock(&net->mu);
    return cut;
}

/* A whole frame arrived on c. Returns false if c was closed. */
static bool on_frame(dr_net *net, conn *c, dr_net_msg *msg) {
    if (msg->type == DR_NET_T_REFUSED && c->outbound)
        return on_refused(net, c, msg);
    if (c->state == CONN_HELLO) {
        uint32_t id = 0;
        dr_net_role role = 0;
        const char *why = "";
        int rc = check_hello(net, c, msg, &id, &role, &why);
        free(msg);
        if (rc == DR_EPERM)
            dr_net__stat_add(&net->auth_failures, 1);
        if (rc) {
            dr_net__close_conn(net, c, rc, why);
            return false;
        }
        if (peer_is_cut(net, c->outbound ? c->peer : id))
            return true; /* black hole: the handshake never completes */
        if (c->key == DR_NET_KEY_NONE)
            return complete_hello(net, c, id, role);
        c->hello_id = id;
        c->hello_role = role;
        rc = queue_auth(net, c); /* and enters CONN_AUTH */
        if (rc) {
            dr_net__close_conn(net, c, rc, "no memory for the AUTH frame");
            return false;
        }
        return true;
    }
    if (c->state == CONN_AUTH) {
        uint8_t expected[DR_NET_MAC_BYTES];
        auth_mac(net->cfg.keys[c->key], c->peer_hello, c->my_hello, expected);
        bool valid = msg->type == DR_NET_T_AUTH && msg->payload_bytes == DR_NET_MAC_BYTES &&
                     CRYPTO_memcmp(msg->payload, expected, DR_NET_MAC_BYTES) == 0;
        free(msg);
        if (!valid) {
            dr_net__stat_add(&net->auth_failures, 1);
            dr_net__close_conn(net, c, DR_EPERM,
                               "authentication failed (the peer does not hold the key)");
            return false;
        }
        return complete_hello(net, c, c->hello_id, c->hello_role);
    }
    if (msg->type < DR_NET_TYPE_USER_MIN) {
        free(msg);
        dr_net__close_conn(net, c, DR_EPROTO, "reserved message type after the handshake");
        return false;
    }
    if (c->seal && dr_net__open_frame(c, msg) != DR_OK) {
        free(msg);
        dr_net__close_conn(
            net, c, DR_EPROTO,
            "a sealed frame failed authentication (tampered, replayed or reordered)");
        return false;
    }
    if (peer_is_cut(net, c->peer)) {
        dr_net__stat_add(&net->frames_dropped, 1);
        free(msg);
        return true;
    }
    msg->from = c->peer;
    atomic_store_explicit(&c->last_rx_ns, dr_net__now_ns(), memory_order_relaxed);
    dr_net__stat_add(&net->frames_received, 1);
    dr_net_event ev = {
        .kind = DR_NET_EV_FRAME, .peer = c->peer, .role = c->role, .msg = msg, .key = c->key};
    dr_net__emit(net, &ev);
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
            dr_net__close_conn(net, c, rc, dr_frame_decoder_why(&c->dec));
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
            dr_net__close_conn(net, c, DR_ECLOSED, "closed by peer");
            return;
        }
        if (n < 0) {
            dr_net__close_conn(net, c, DR_EIO, strerror((int)-n));
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
            dr_net__close_conn(net, c, DR_EIO, strerror(err));
            return;
        }
        dr_sock_set_nodelay(c->fd);
        c->state = CONN_HELLO;
        c->want_write = c->out_head != NULL;
        dr_net__update_interest_locked(net, c);
    }
    int rc = dr_net__flush_locked(net, c, &done);
    pthread_mutex_unlock(&net->mu);
    dr_net__free_frame_list(done);
    if (rc)
        dr_net__close_conn(net, c, rc, strerror(errno));
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

void dr_net__unpark_locked(dr_net *net, conn *c) {
    struct epoll_event ev = {.events = interest_locked(net, c), .data.ptr = c};
    c->parked = false;
    if (epoll_ctl(net->epfd, EPOLL_CTL_ADD, c->fd, &ev))
        DR_ERROR(DR_LOGM_NET, "epoll_ctl ADD fd %d: %s", c->fd, strerror(errno));
}

void dr_net__handle_conn_event(dr_net *net, conn *c, uint32_t events) {
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
        pending += !c->outbound && (c->state == CONN_HELLO || c->state == CONN_AUTH);
    pthread_mutex_unlock(&net->mu);
    return pending;
}

/* Closes connections whose connect or handshake is older than handshake_timeout_ms.
 * Returns whether any connection is still waiting for its handshake. */
bool dr_net__expire_handshakes(dr_net *net) {
    uint64_t limit_ns = (uint64_t)net->cfg.handshake_timeout_ms * 1000000u;
    for (;;) {
        conn *late = NULL;
        bool waiting = false;
        uint64_t now = dr_net__now_ns();
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
        dr_net__close_conn(net, late, DR_ETIMEDOUT, "no handshake before the deadline");
    }
}

/*
 * Out of descriptors, the listener stays readable and a level-triggered loop would spin on it.
 * Give up the spare descriptor, accept the connection and close it at once (the client sees the
 * refusal), then take the spare back.
 */
static bool shed_connection(dr_net *net) {
    if (net->spare_fd >= 0) {
        close(net->spare_fd);
        net->spare_fd = -1;
    }
    /* Linux reports EMFILE before it looks at the queue: only this accept tells whether a
     * connection was waiting at all */
    int fd = accept4(net->listenfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        dr_net__stat_add(&net->refused_connections, 1);
    }
    net->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 && net->spare_fd >= 0;
}

void dr_net__accept_all(dr_net *net) {
    for (;;) {
        struct sockaddr_in addr;
        socklen_t addr_len = sizeof addr;
        memset(&addr, 0, sizeof addr);
        int fd = accept4(net->listenfd, (struct sockaddr *)&addr, &addr_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EMFILE || e == ENFILE) {
                DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_WARN,
                               "accept: %s: connection refused (raise the descriptor limit)",
                               strerror(e));
                if (!shed_connection(net))
                    return; /* queue empty (or no spare): the next readiness brings us back */
                continue;
            }
            if (e != EAGAIN && e != EWOULDBLOCK)
                DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_WARN, "accept: %s", strerror(e));
            return;
        }
        if (count_pending_inbound(net) >= net->cfg.max_pending_inbound) {
            DR_LOG_LIMITED(DR_LOGM_NET, DR_LOG_WARN,
                           "refusing a connection: %u inbound handshakes pending",
                           net->cfg.max_pending_inbound);
            dr_net__stat_add(&net->refused_connections, 1);
            close(fd);
            continue;
        }
        dr_sock_set_nodelay(fd);
        conn *c = dr_net__new_conn(net, fd, false, DR_NET_NO_PEER);
        if (!c) {
            close(fd);
            DR_ERROR(DR_LOGM_NET, "no memory for an inbound connection");
            continue;
        }
        c->ip = addr.sin_family == AF_INET ? ntohl(addr.sin_addr.s_addr) : 0;
        if (dr_net__register_conn(net, c))
            DR_ERROR(DR_LOGM_NET, "cannot register an inbound connection");
    }
}
