/*
 * Private structures and cross-file functions of the TCP transport, shared by net.c (event
 * loop, public API, send path) and conn.c (per-connection I/O, handshake, closing). Not for use
 * outside src/net/. Locking rules: see the comment at the top of net.c.
 */
#ifndef DR_NET_NET_INT_H
#define DR_NET_NET_INT_H

#include "net/frame.h"
#include "net/inbox.h"
#include "net/net.h"
#include "net/spin.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_NET_T_HELLO        1u
#define DR_NET_T_AUTH         2u
#define DR_NET_T_REFUSED      3u /* i32 reason (DR_EEXIST), then the sender closes */
#define DR_NET_HELLO_VERSION  3u /* 1: 16-byte HELLO (no key, nonce); 2: 48 (no incarnation) */
#define DR_NET_HELLO_V2_BYTES 48u
/* cluster u64, id u32, role u8, key u8, version u8, flags u8, nonce[32], incarnation u64 */
#define DR_NET_HELLO_BYTES  56u
#define DR_NET_NONCE_BYTES  32u
#define DR_NET_MAC_BYTES    32u /* HMAC-SHA256 */
#define DR_NET_HELLO_MAX    64u
#define DR_NET_RBUF_BYTES   (64u * 1024u)
#define DR_NET_MAX_IOV      64
#define DR_NET_CORK_BYTES   (256u << 10) /* corked bytes of one connection written at once */
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
    struct out_frame *next;                                        /**< queue link */
    uint8_t header[DR_FRAME_HEADER_BYTES + DR_NET_MAX_HEAD_BYTES]; /**< encoded header, then
                                                                        a copied head (split) */
    size_t header_len;      /**< DR_FRAME_HEADER_BYTES + the head's length */
    size_t header_off;      /**< header bytes already written */
    uint8_t *payload;       /**< payload bytes still to write start here... */
    size_t payload_len;     /**< ...this many in total */
    size_t payload_off;     /**< of which this many are written */
    dr_net_free_fn free_fn; /**< releases owned payloads (NULL: none) */
    void *free_ctx;         /**< passed to free_fn */
    void *free_arg;         /**< the pointer given to free_fn */
    bool urgent;            /**< sent on the urgent lane (counts in conn.urgent_bytes) */
} out_frame;

typedef enum conn_state {
    CONN_CONNECTING = 1, /**< outbound TCP connect in progress */
    CONN_HELLO,          /**< TCP up, waiting for the peer's HELLO */
    CONN_AUTH,           /**< HELLOs exchanged, waiting for the peer's AUTH */
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
    size_t queued_bytes;    /**< unwritten bytes in the queue, both lanes (under mu) */
    size_t urgent_bytes;    /**< of which in urgent frames (under mu) */
    out_frame *urgent_tail; /**< the end of the queue's urgent lane (the urgent frames behind
                                 the possibly partly written head): urgent frames are inserted
                                 after it; NULL: the lane is empty; while handshake frames are
                                 queued it may be the last of them (under mu) */
    dr_frame_decoder dec;   /**< network thread only */
    uint8_t *rbuf;          /**< read buffer, DR_NET_RBUF_BYTES (network thread only) */
    struct conn *next;      /**< net->conns list (under mu) */
    struct conn *next_dead; /**< net->dead list (network thread only) */
    uint64_t created_ns;    /**< when the connection was opened (handshake deadline) */
    bool parked;            /**< removed from epoll: hung up while reads are paused (under mu) */
    out_frame *held_head;   /**< frames sent before the handshake finished (under mu) */
    out_frame *held_tail;   /**< last held frame */
    dr_net_key_kind key;    /**< key the peer proved or will prove (NONE: unauthenticated) */
    uint32_t hello_id;      /**< CONN_AUTH: the id the peer's HELLO claimed */
    dr_net_role hello_role; /**< CONN_AUTH: the role the peer's HELLO claimed */
    uint32_t ip;            /**< inbound: the peer's IPv4 address, host order (per-IP caps) */
    _Atomic uint64_t last_rx_ns; /**< when the last frame arrived (relaxed; written by the
                                      network thread) */
    struct conn_seal *seal;      /**< AES-256-GCM state once the handshake sealed it, else NULL */
    uint8_t my_hello[DR_NET_HELLO_BYTES];   /**< the HELLO we sent (AUTH transcript) */
    uint8_t peer_hello[DR_NET_HELLO_BYTES]; /**< the HELLO the peer sent */
} conn;

struct dr_net {
    dr_net_config cfg;        /**< copy of the creation parameters */
    int epfd;                 /**< epoll set */
    int wakefd;               /**< eventfd: wakes the network thread */
    int listenfd;             /**< listener or -1 */
    uint16_t port;            /**< bound port */
    pthread_t thread;         /**< network thread */
    bool thread_started;      /**< thread must be joined */
    pthread_t loop_thread;    /**< the network thread's own id (valid once loop_running) */
    atomic_bool loop_running; /**< loop_thread is set (written by the network thread) */
    atomic_bool stopping;     /**< destroy in progress */
    pthread_mutex_t mu;       /**< see the file comment */
    pthread_cond_t writable;  /**< queues drained / peers gone (with mu) */
    int writable_waiters;     /**< threads in dr_net_wait_writable (under mu) */
    conn *conns;              /**< live connections (under mu) */
    conn *dead;               /**< closed, freed at the end of the loop iteration */
    uint32_t next_client_id;  /**< next local client id (network thread only) */
    uint32_t *cut;            /**< cut peer ids (under mu) */
    size_t cut_count;         /**< entries in cut */
    size_t cut_cap;           /**< capacity of cut */
    int tickfd;               /**< timerfd for DR_NET_EV_TICK, or -1 */
    task *tasks_head;         /**< posted tasks, oldest first (under mu) */
    task *tasks_tail;         /**< newest posted task (under mu) */
    atomic_bool new_conns;    /**< a connection was registered: check handshake deadlines */
    bool reads_paused;        /**< EPOLLIN removed everywhere (under mu) */
    uint32_t corks;           /**< dr_net_cork holds: frames are queued, not written (under mu) */
    dr_spin loop_spin;        /**< network thread's spin state */
    dr_net_inbox inbox;       /**< inbox mode event queue */
    bool inbox_ready;         /**< inbox initialised (must be destroyed) */
    uint8_t key_store[DR_NET_KEY_KINDS][DR_NET_KEY_BYTES]; /**< copies of cfg.keys */
    int spare_fd; /**< a reserved descriptor, given up to shed a connection at EMFILE */
    _Atomic uint64_t frames_sent, frames_received, frames_dropped, protocol_errors, direct_writes;
    _Atomic uint64_t auth_failures, refused_connections;
    _Atomic uint64_t loop_wakeups; /**< epoll_wait returns of the network thread (its own) */
};

/** Under mu: writes as much of c's queue as the socket takes; finished frames go to *done (free
 * them outside the lock). Returns 0 or DR_EIO (the connection broke). */
int dr_net__flush_locked(dr_net *net, conn *c, out_frame **done);

/** Monotonic clock, nanoseconds. */
uint64_t dr_net__now_ns(void);
/** Adds n to a statistics counter (relaxed). */
void dr_net__stat_add(_Atomic uint64_t *counter, uint64_t n);
/** Wakes the network thread (wake eventfd). Any thread. */
void dr_net__wake_thread(dr_net *net);
/** Whether a test link cut drops traffic of peer. Under mu. */
bool dr_net__is_cut_locked(const dr_net *net, uint32_t peer);
/** The live, identified connection of peer, or NULL. Under mu. */
conn *dr_net__find_conn_locked(dr_net *net, uint32_t peer);
/** Frees queued frames (owned payloads through their free_fn). Without mu. */
void dr_net__free_frame_list(out_frame *f);
/** Reports an event (callback or inbox). Network thread, without mu. */
void dr_net__emit(dr_net *net, const dr_net_event *ev);
/** Re-registers c with epoll for its current interest. Under mu. */
void dr_net__update_interest_locked(dr_net *net, conn *c);
/** Closes and unlinks c, reports PEER_DOWN if its peer was (to be) known. Network thread, without
 * mu. */
void dr_net__close_conn(dr_net *net, conn *c, int reason, const char *why);
/** Frees a closed connection. Network thread (or destroy). */
void dr_net__free_conn(conn *c);
/** Frees connections closed during this loop iteration. Network thread. */
void dr_net__free_dead(dr_net *net);
/** Allocates a queued frame with room for copy_bytes of payload. Returns NULL on no memory. */
out_frame *dr_net__new_frame(uint16_t type, uint32_t flags, size_t len, size_t copy_bytes);
/** Appends f to c's outgoing queue. Under mu. */
void dr_net__append_locked(conn *c, out_frame *f);
/** Queues f on c's urgent lane: behind the frame being written and the urgent frames already
 * queued, ahead of every other normal frame. Under mu, connection up and not sealed. */
void dr_net__insert_urgent_locked(conn *c, out_frame *f);
/** Allocates a connection around fd (not yet registered). NULL on no memory. */
conn *dr_net__new_conn(dr_net *net, int fd, bool outbound, uint32_t peer);
/** Starts sealing c's frames with keys derived from `key` and both HELLOs (seal.c). Returns 0 or
 * DR_ENOMEM. Network thread, under mu. */
int dr_net__seal_init(conn *c, const uint8_t *key);
/** Releases c's sealing state (NULL-safe). */
void dr_net__seal_free(conn *c);
/** Bytes sealing adds to a frame's payload on c (0 when not sealed). */
size_t dr_net__seal_overhead(const conn *c);
/** Seals head || body as one frame payload (malloc'd, *sealed_len bytes including the tag), or
 * NULL without memory. Under mu, in the order the frames are written. */
uint8_t *dr_net__seal_frame(conn *c, uint16_t type, uint32_t flags, const uint8_t *head,
                            size_t head_len, const uint8_t *body, size_t body_len,
                            size_t *sealed_len);
/** Opens a sealed frame in place (payload_bytes shrinks by the tag). Returns 0 or DR_EPROTO
 * (tampered, replayed or out of order). Network thread. */
int dr_net__open_frame(conn *c, dr_net_msg *msg);
/** Queues f behind the handshake: held until the connection is up (in send order, lanes
 * ignored), else appended, or put on the urgent lane when f->urgent and c is not sealed. Under
 * mu. */
void dr_net__queue_user_frame_locked(conn *c, out_frame *f);
/** Links c, queues its HELLO, adds it to epoll; consumes c on failure. Any thread. */
int dr_net__register_conn(dr_net *net, conn *c);
/** Puts a parked connection back into epoll. Under mu. */
void dr_net__unpark_locked(dr_net *net, conn *c);
/** Handles one epoll event of a connection. Network thread. */
void dr_net__handle_conn_event(dr_net *net, conn *c, uint32_t events);
/** Closes connections past their handshake deadline; returns whether any still waits. Network
 * thread. */
bool dr_net__expire_handshakes(dr_net *net);
/** Accepts every pending inbound connection. Network thread. */
void dr_net__accept_all(dr_net *net);

#endif
