/*
 * dr_net: framed, checked messages over TCP between the nodes of a group and its outside clients.
 *
 * One instance per process. It owns ONE network thread (epoll) that accepts, connects, performs
 * the handshake, reads and decodes frames, and flushes outgoing queues. Other threads call
 * dr_net_send*() concurrently; when a peer's queue is empty the sending thread writes to the
 * socket itself (no thread hop), otherwise the frame is queued and the network thread finishes
 * it on EPOLLOUT. Everything received is reported as ordered events (peer up, frame, peer down):
 *
 *   - callback mode (config.on_event != NULL): on_event runs on the network thread, one event at
 *     a time, in order. It must not block for long; it may call dr_net_send*() and every other
 *     function here except dr_net_destroy(), dr_net_next_event() and dr_net_wait_writable()
 *     (which returns DR_ESTATE there). Tasks posted with dr_net_post() and TICK events
 *     (config.tick_ms) run on the same thread, so a sans-IO core stepped here sees peer bytes,
 *     local requests and time in one order without locks. Lowest latency (docs/perf/net.md).
 *   - inbox mode (config.on_event == NULL): events wait in a thread-safe FIFO; ONE consumer
 *     thread (the core thread) takes them with dr_net_next_event(), which blocks when idle
 *     (after a short bounded adaptive spin), or polls dr_net_event_fd() in its own epoll set.
 *     When the inbox holds more than max_inbox_bytes of payload the network thread stops reading
 *     sockets (TCP flow control then pushes back on the senders) until it drains.
 *
 * Events are copied out by value; a FRAME's message block passes to whoever takes the event.
 * Order: for one peer connection, PEER_UP comes before its frames, frames come in the order the
 * peer sent them, and PEER_DOWN comes after the last of them. Frames a peer sends before the
 * connection breaks may be lost (TCP gives no end-to-end acknowledgement); the layer above
 * retransmits or runs a view change.
 *
 * Identity: every connection starts with a HELLO frame each way (cluster id, node id, role, the
 * key it will prove, a fresh 32-byte nonce). With keys configured, each side then sends AUTH:
 * HMAC-SHA256(key, label || its HELLO || the peer's HELLO); a connection is up only when the
 * peer's AUTH verifies, so only holders of the cluster's member key are members, and outside
 * clients hold the admin or the client key (docs/security.md). Frames sent before that wait.
 * With `encrypt` (either end), every later frame is sealed with AES-256-GCM (src/net/seal.c). A
 * member dials a member with dr_net_connect(node_id, ip, port) and the HELLO must name that
 * node id. Inbound connections are identified by their HELLO: members by their node id (must be
 * < DR_NET_CLIENT_ID_BASE), outside clients (role CLIENT) get a local id >= DR_NET_CLIENT_ID_BASE
 * assigned by the accepting node, used to reply to them. At most one connection per node id: a
 * newer one replaces an older one (the older is reported down), unless the older one is alive
 * (duplicate_window_ms): then the newcomer is refused with DR_EEXIST. The layer above should dial
 * in one direction only (e.g. the higher id dials the lower) so that two nodes never race.
 */
#ifndef DR_NET_NET_H
#define DR_NET_NET_H

#include "derecho/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Local ids >= this name outside-client connections (assigned by the accepting node). */
#define DR_NET_CLIENT_ID_BASE 0x80000000u
/**
 * dr_net_connect's node_id when the caller knows only the address (a joiner dialling its
 * contact): the peer's HELLO then names it, and PEER_UP reports that id (a failed dial reports
 * PEER_DOWN with this value). Member ids must be below it.
 */
#define DR_NET_ANY_NODE (DR_NET_CLIENT_ID_BASE - 1u)
/**
 * cluster_id of an outside client that does not know the group's cluster id: a CLIENT-role net
 * configured with it accepts members of any cluster, and members accept CLIENT HELLOs carrying
 * it (never MEMBER ones). Clients reach only the frames the layer above serves to clients.
 */
#define DR_NET_CLUSTER_ANY 0u
/** Message types below this are reserved for the transport; dr_net_send refuses them. */
#define DR_NET_TYPE_USER_MIN 16u

typedef struct dr_net dr_net;

/** Who is at the other end of a connection. */
typedef enum dr_net_role {
    DR_NET_ROLE_MEMBER = 1, /**< a group node (member or joining) with a node id */
    DR_NET_ROLE_CLIENT = 2, /**< an outside client, identified by a local id */
} dr_net_role;

/** A received frame: one heap block, payload right behind the struct. Free with free(). */
typedef struct dr_net_msg {
    struct dr_net_msg *next; /**< link for the owner's own lists (net leaves it NULL) */
    uint32_t from;           /**< sender's node id or local client id */
    uint16_t type;           /**< message type (>= DR_NET_TYPE_USER_MIN) */
    uint32_t flags;          /**< flags as sent */
    uint32_t payload_bytes;  /**< payload length */
    uint8_t *payload;        /**< payload bytes (inside the same block) */
} dr_net_msg;

/** Length of every authentication key (a 256-bit secret). */
#define DR_NET_KEY_BYTES 32u

/** Which key a connection's peer proved (HELLO key field; index of dr_net_config.keys). */
typedef enum dr_net_key_kind {
    DR_NET_KEY_NONE = 0,   /**< unauthenticated (a transport without a member key) */
    DR_NET_KEY_MEMBER = 1, /**< the cluster's member key: a group node */
    DR_NET_KEY_ADMIN = 2,  /**< an outside client with administrative rights */
    DR_NET_KEY_CLIENT = 3, /**< an outside client with ordinary rights */
    DR_NET_KEY_KINDS = 4,
} dr_net_key_kind;

/** What an event reports. */
typedef enum dr_net_event_kind {
    DR_NET_EV_PEER_UP = 1,   /**< handshake done; peer may be sent to */
    DR_NET_EV_FRAME = 2,     /**< a frame arrived; ev->msg is owned by the receiver */
    DR_NET_EV_PEER_DOWN = 3, /**< connection closed (or a connect failed); reason says why */
    DR_NET_EV_TICK = 4,      /**< config.tick_ms elapsed (periods missed while busy coalesce);
                                  peer 0 */
} dr_net_event_kind;

/** One event, handed out by value. */
typedef struct dr_net_event {
    dr_net_event_kind kind; /**< see dr_net_event_kind */
    uint32_t peer;          /**< node id or local client id */
    dr_net_role role;       /**< peer's role (PEER_UP, PEER_DOWN when known, FRAME) */
    int reason;             /**< PEER_DOWN: DR_ECLOSED (closed by peer or locally), DR_EIO,
                                 DR_ETIMEDOUT (no handshake in time),
                                 DR_EPROTO (garbage / bad handshake), DR_ETOOBIG, DR_EEXIST
                                 (replaced by a newer connection, or refused: the peer already
                                 has a live connection from a node with our id), DR_EPERM
                                 (authentication failed); 0 otherwise */
    dr_net_msg *msg;        /**< FRAME: the message (receiver frees it with free()); else NULL */
    dr_net_key_kind key;    /**< PEER_UP, FRAME: the key the peer proved (NONE: unauthenticated
                                 transport); decides what an outside client may call */
    uint64_t incarnation;   /**< PEER_UP, PEER_DOWN of a peer whose HELLO arrived: the process
                                 incarnation that HELLO carried (dr_net_config.incarnation of
                                 the peer), so a notice about a connection to an earlier process
                                 with the same id can be told from one about the current; 0:
                                 unknown (no HELLO yet, or the peer sends none) */
} dr_net_event;

/** Event callback (callback mode); runs on the network thread. `ev->msg` passes to it. */
typedef void (*dr_net_event_fn)(void *ctx, const dr_net_event *ev);

/** Creation parameters (plain values; the runtime fills them from the configuration). */
typedef struct dr_net_config {
    uint32_t node_id;         /**< this node's id (< DR_NET_CLIENT_ID_BASE); ignored for clients */
    uint64_t incarnation;     /**< this process's incarnation (distinct per process start, e.g.
                                   random; 0: none), sent in every HELLO (dr_net_event) */
    dr_net_role role;         /**< MEMBER (default) or CLIENT */
    uint64_t cluster_id;      /**< both ends of a connection must agree (e.g. a config hash) */
    const char *listen_ip;    /**< address to listen on ("0.0.0.0", "127.0.0.1"), NULL: none */
    uint16_t listen_port;     /**< port; 0 picks a free one (see dr_net_listen_port) */
    uint32_t max_frame_bytes; /**< largest payload accepted or sent (default 128 MiB) */
    size_t max_queue_bytes;   /**< per-peer outgoing queue limit (default 256 MiB) */
    size_t max_urgent_queue_bytes; /**< per-peer limit of the urgent lane (dr_net_send_lane;
                                        default 16 MiB) */
    size_t max_inbox_bytes;        /**< inbox payload bytes that pause reading (default 256 MiB) */
    uint32_t spin_us;      /**< inbox consumer: bounded spin before blocking, µs (0: none) */
    uint32_t loop_spin_us; /**< network thread: bounded epoll polling before blocking, µs */
    uint32_t handshake_timeout_ms;   /**< connect + HELLO must finish within this (default 5000);
                                          else the connection closes (PEER_DOWN DR_ETIMEDOUT if
                                          we dialled) */
    uint32_t tick_ms;                /**< period of DR_NET_EV_TICK events (0: none), so that a core
                                          stepped in on_event gets its clock on the same thread */
    uint32_t max_pending_inbound;    /**< inbound connections allowed to wait for their HELLO at
                                          once (default 64); more are closed at accept */
    uint32_t max_client_frame_bytes; /**< largest payload accepted from an outside client
                                          (default: max_frame_bytes) */
    uint32_t max_clients;            /**< outside-client connections at once (default 1024);
                                          more are closed when their HELLO arrives */
    uint32_t max_clients_per_ip;     /**< of which from one IPv4 address (default 256) */
    /**
     * Authentication keys, indexed by dr_net_key_kind (each DR_NET_KEY_BYTES, copied at create;
     * NULL: none). A member transport with keys[MEMBER] authenticates every connection: members
     * must prove the member key, clients the admin or the client key (keys[ADMIN], keys[CLIENT];
     * a client without one is refused). Without keys[MEMBER] nothing is authenticated (clients
     * then count as ordinary clients). A client transport proves keys[prove_with].
     */
    const uint8_t *keys[DR_NET_KEY_KINDS];
    dr_net_key_kind prove_with;   /**< client transports: the key to prove (NONE: none; members
                                       always prove keys[MEMBER] when they have it) */
    uint32_t duplicate_window_ms; /**< an inbound member connection claiming the id of a member
                                       whose connection delivered a frame within this window is
                                       refused (the newcomer's PEER_DOWN says DR_EEXIST) instead of
                                       replacing it: a second process with a running member's id
                                       cannot cut that member off. 0: a newer connection always
                                       replaces the older (default) */
    bool encrypt; /**< seal every frame after the handshake with AES-256-GCM (needs a key).
                       A connection is sealed when either end asks (clients follow members). */
    dr_net_event_fn on_event; /**< NULL: inbox mode */
    void *on_event_ctx;       /**< passed to on_event */
    /** Callback mode: called on the network thread (with on_event_ctx) after each batch of
     * events, i.e. after every event that one epoll_wait reported was handled, so a core stepped
     * in on_event can act once per batch (one acknowledgement covering all frames of the batch).
     * NULL: none. It may send. */
    void (*on_batch_end)(void *ctx);
} dr_net_config;

/**
 * Reads a key file: 64 hexadecimal digits (optional surrounding whitespace) into key. A relative
 * path is taken relative to the directory of `relative_to` (e.g. the configuration file; NULL:
 * the working directory). Returns 0, DR_EIO (cannot open or read) or DR_EINVAL (not a key), with
 * a message in *err naming the file. Warns when the file is readable by group or others. Pure
 * apart from the file read; any thread.
 */
int dr_net_load_key(const char *path, const char *relative_to, uint8_t key[DR_NET_KEY_BYTES],
                    dr_err *err);

/** Fills *cfg with defaults: member, no listener, limits as documented, spin 0. */
void dr_net_config_defaults(dr_net_config *cfg);

/**
 * Creates the transport: binds the listener (if any) and starts the network thread.
 * Returns 0 and *out, or DR_EINVAL (bad config), DR_EIO (bind/listen/thread; err says which),
 * DR_ENOMEM. The caller owns *out and releases it with dr_net_destroy().
 */
int dr_net_create(const dr_net_config *cfg, dr_net **out, dr_err *err);

/**
 * Stops the network thread (joined), closes every connection and frees every queued frame and
 * unconsumed event (pending outgoing data is dropped; no events are reported). Call from a
 * thread that is not the network thread (there it logs an error and does nothing), once no other
 * thread uses the handle. NULL is a no-op.
 */
void dr_net_destroy(dr_net *net);

/**
 * A function run on the network thread: status is 0 normally, DR_ECLOSED when dr_net_destroy
 * discards it (then it must only release ctx). Must not block.
 */
typedef void (*dr_net_task_fn)(void *ctx, int status);

/**
 * Runs fn(ctx, 0) on the network thread, after events already being processed, in post order
 * (FIFO with other posts). Lets a core stepped in on_event receive local requests (application
 * sends, leave) on its own thread. Returns 0, DR_ENOMEM or DR_ECLOSED (not queued). Any thread.
 */
int dr_net_post(dr_net *net, dr_net_task_fn fn, void *ctx);

/**
 * Splits an "ip:port" address (as views carry them) into ip[0..ip_len) and *port (1..65535).
 * Returns 0, or DR_EINVAL for a missing colon, an IP that does not fit or a bad port. Pure.
 */
int dr_net_split_address(const char *address, char *ip, size_t ip_len, uint16_t *port);

/** The port actually listened on (useful with listen_port = 0), or 0 without a listener. */
uint16_t dr_net_listen_port(const dr_net *net);

/**
 * Starts connecting to node `node_id` at ip:port (IPv4 dotted). Non-blocking: PEER_UP follows
 * when the handshake succeeds, PEER_DOWN (reason DR_EIO/DR_EPROTO) when it fails. Frames sent
 * before PEER_UP are queued. Returns 0, DR_EEXIST (a connection to that id exists), DR_EINVAL,
 * DR_EIO, DR_ENOMEM, DR_ECLOSED (shutting down). Any thread.
 */
int dr_net_connect(dr_net *net, uint32_t node_id, const char *ip, uint16_t port);

/**
 * Closes the connection to `peer` (queued frames are dropped); PEER_DOWN with DR_ECLOSED follows.
 * Returns 0 or DR_ENOTFOUND. Any thread.
 */
int dr_net_disconnect(dr_net *net, uint32_t peer);

/**
 * Sends one frame to `peer` (node id or local client id); the payload is copied, so the caller
 * keeps its buffer. Never blocks: the bytes go out now or wait in the peer's queue.
 * Returns 0; DR_EAGAIN when the peer's queue already holds max_queue_bytes (nothing queued: wait
 * with dr_net_wait_writable and retry); DR_ENOTFOUND (no connection to peer); DR_ETOOBIG
 * (len > max_frame_bytes); DR_EINVAL (reserved type); DR_ENOMEM; DR_ECLOSED. Any thread.
 * Frames to a peer cut by dr_net_test_cut_link are dropped and 0 is returned. This and the other
 * dr_net_send* functions queue on the normal lane (dr_net_send_lane).
 */
int dr_net_send(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, const void *payload,
                size_t len);

/** The largest head of a dr_net_send_split frame. */
#define DR_NET_MAX_HEAD_BYTES 128u

/** Releases a payload given to dr_net_send_owned once it is sent or dropped (any thread). */
typedef void (*dr_net_free_fn)(void *ctx, void *payload);

/** A dr_net_free_fn for malloc'd payloads: free(payload); ctx unused. */
void dr_net_free_payload(void *ctx, void *payload);

/**
 * As dr_net_send, but without copying: the transport takes `payload` and calls
 * free_fn(free_ctx, payload) when done with it (on whichever thread finishes with it; also when
 * this call fails). free_fn NULL means the caller keeps the payload alive until the frame is
 * sent, which is unobservable, so only use NULL for static data.
 */
int dr_net_send_owned(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, void *payload,
                      size_t len, dr_net_free_fn free_fn, void *free_ctx);

/**
 * As dr_net_send_owned, for a payload in two parts: head[0..head_len) is copied (at most
 * DR_NET_MAX_HEAD_BYTES, else DR_EINVAL) and body[0..body_len) is sent without copying, then
 * released with free_fn(free_ctx, body) (also when this call fails). The peer receives one
 * frame whose payload is head followed by body (a header before a slice of a shared buffer).
 */
int dr_net_send_split(dr_net *net, uint32_t peer, uint16_t type, uint32_t flags, const void *head,
                      size_t head_len, void *body, size_t body_len, dr_net_free_fn free_fn,
                      void *free_ctx);

/** The lane of a frame in its peer's outgoing queue (dr_net_send_lane). */
typedef enum dr_net_lane {
    DR_NET_LANE_NORMAL = 0, /**< in send order behind everything queued (every other send) */
    DR_NET_LANE_URGENT = 1, /**< ahead of the queued normal frames (control traffic) */
} dr_net_lane;

/**
 * As dr_net_send_split (head copied, may be NULL with head_len 0; body taken and released with
 * free_fn, also when this call fails), on a chosen lane. An URGENT frame leaves before every
 * NORMAL frame still waiting in the peer's queue, but after the frame whose bytes are partly on
 * the wire (frames are never split or interleaved) and after the urgent frames queued before it.
 * Order within each lane is send order; the peer may thus receive an urgent frame before normal
 * frames sent earlier, never a normal frame before an urgent one sent earlier. Exceptions, where
 * frames keep plain send order: before the handshake completes (PEER_UP) held frames are
 * released urgent lane first, and on a sealed connection (encrypt) every frame keeps send order
 * (the seal's IV counts frames). Corking holds both lanes alike.
 * Limits: a NORMAL frame gets DR_EAGAIN when the peer's queue (both lanes) holds max_queue_bytes,
 * an URGENT frame only when the urgent lane holds max_urgent_queue_bytes, so control traffic
 * still goes out while data fills the queue; nothing is queued then (nothing is ever dropped
 * while the connection stays up). Other returns as dr_net_send_split, DR_EINVAL also for an
 * unknown lane. Any thread (the network thread included).
 */
int dr_net_send_lane(dr_net *net, uint32_t peer, dr_net_lane lane, uint16_t type, uint32_t flags,
                     const void *head, size_t head_len, void *body, size_t body_len,
                     dr_net_free_fn free_fn, void *free_ctx);

/**
 * As dr_net_send_lane, except that a body the transport does not keep stays the caller's:
 * *taken is true when the transport keeps it (queued: it is released later with free_fn), false
 * when it does not, and then free_fn is not called: the frame was refused (any error), dropped
 * on a link cut by dr_net_test_cut_link (returns 0) or written to the socket at once (returns
 * 0). For a caller that still needs the body after a refusal (the runtime copies it into a
 * backlog when the peer has no connection yet).
 */
int dr_net_send_lane_taken(dr_net *net, uint32_t peer, dr_net_lane lane, uint16_t type,
                           uint32_t flags, const void *head, size_t head_len, void *body,
                           size_t body_len, dr_net_free_fn free_fn, void *free_ctx, bool *taken);

/**
 * Holds writes (any thread; counted: every dr_net_cork needs one dr_net_uncork). While a cork is
 * held, dr_net_send* queue frames instead of writing them, so the frames of many sends leave in
 * one gathered sendmsg (up to 64 iovecs) when the last cork is released; a connection whose
 * corked bytes reach 256 KiB is written at once (large relayed blocks are not held back). Frames
 * of every thread wait for the release, so hold a cork only for a bounded burst of sends.
 */
void dr_net_cork(dr_net *net);

/**
 * Releases a cork; the last one writes every connection's queued frames (what the socket does
 * not take waits for EPOLLOUT as usual). A write error marks the connection for closing by the
 * network thread (PEER_DOWN follows). Any thread.
 */
void dr_net_uncork(dr_net *net);

/**
 * Blocks until the peer's queue is below half of max_queue_bytes (returns 0), the peer is gone
 * (DR_ENOTFOUND), the transport shuts down (DR_ECLOSED) or timeout_ms passes (DR_ETIMEDOUT;
 * -1 waits forever). Any thread but the network thread (there it returns DR_ESTATE at once:
 * a callback that meets DR_EAGAIN must defer the send, e.g. until the queue drains).
 */
int dr_net_wait_writable(dr_net *net, uint32_t peer, int timeout_ms);

/** Bytes queued for `peer` (both lanes) and not yet written to its socket (0 if unknown). Any
 * thread. */
size_t dr_net_queued_bytes(dr_net *net, uint32_t peer);

/**
 * Inbox mode: takes the next event. Waits up to timeout_ms (0: don't wait, -1: forever); spins
 * up to config.spin_us first (adaptive: the spin is skipped after repeated misses). Returns 0
 * and *ev, DR_ETIMEDOUT, DR_ECLOSED (shut down), DR_ESTATE (callback mode). One consumer thread.
 */
int dr_net_next_event(dr_net *net, dr_net_event *ev, int timeout_ms);

/**
 * Inbox mode: a file descriptor that polls readable while events may be waiting (spurious
 * readiness is possible; dr_net_next_event with timeout 0 then returns DR_ETIMEDOUT and rearms).
 * Owned by net.
 */
int dr_net_event_fd(const dr_net *net);

/**
 * Test only: while `cut` is true, frames to `peer` are dropped and frames from it are discarded
 * on arrival, both silently (a black-holed link; connections stay up). Any thread.
 */
void dr_net_test_cut_link(dr_net *net, uint32_t peer, bool cut);

/** Counters for tests and benchmarks (monotonic since creation). */
typedef struct dr_net_stats {
    uint64_t frames_sent;         /**< frames fully written to sockets */
    uint64_t frames_received;     /**< frames decoded and reported */
    uint64_t frames_dropped;      /**< frames dropped by a link cut */
    uint64_t protocol_errors;     /**< connections closed for garbage / bad handshake */
    uint64_t direct_writes;       /**< frames written completely by the sending thread */
    uint64_t auth_failures;       /**< connections refused for a missing or wrong key */
    uint64_t refused_connections; /**< closed at accept or HELLO by a connection cap or EMFILE */
    /** Returns of the network thread's epoll_wait: each blocking wait that ended (an event, a
     * wake-up, a tick, the 100 ms timeout of the sweep while a handshake is pending) and each
     * non-blocking poll of its bounded spin (loop_spin_us). An idle transport with no handshake
     * pending and no tick adds none, while a busy-waiting thread adds hundreds per millisecond
     * of CPU it gets (measured 200,000-670,000 a second), even when load starves it. */
    uint64_t loop_wakeups;
    /** Inbox mode: returns of dr_net_next_event's blocking poll and rounds of its bounded spin
     * (spin_us; one round = 64 checks, then sched_yield), so a busy-waiting consumer shows too. */
    uint64_t consumer_wakeups;
} dr_net_stats;

/** Copies the counters. Any thread. */
void dr_net_get_stats(dr_net *net, dr_net_stats *out);

#endif
