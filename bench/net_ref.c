/* Point-to-point measurements through dr_net (net_ref.h). */
#include "net_ref.h"

#include "derecho/error.h"
#include "net/net.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define T_DATA 16
#define T_ACK  17

/* Callback-mode state of one node. */
typedef struct node_cb {
    dr_net *net;        /**< this node's transport (set after creation) */
    bool echo;          /**< node 2 of an rtt: echo frames back */
    bool sink;          /**< node 2 of a bandwidth run: count frames, ack the last */
    size_t expected;    /**< frames the sink waits for */
    size_t seen;        /**< frames seen */
    pthread_mutex_t mu; /**< guards the fields below */
    pthread_cond_t cv;  /**< signalled on every event */
    int ups;            /**< PEER_UP events */
    bool driver;        /**< node 1 of a callback rtt: next ping sent from on_event */
    size_t rounds;      /**< driver: round trips to run (warm-up included) */
    size_t round;       /**< driver: round trips done */
    size_t warmup;      /**< driver: rounds not sampled */
    uint64_t sent_ns;   /**< driver: when the current ping left */
    uint64_t *samples;  /**< driver: rtt per sampled round */
    uint8_t *ping;      /**< driver: payload */
    size_t ping_bytes;  /**< driver: its length */
    bool done;          /**< driver: all rounds finished */
    dr_net_msg *last;   /**< node 1: last frame received (taken by the waiter) */
} node_cb;

typedef struct pair {
    dr_net *a;        /**< node 1: the measuring side */
    dr_net *b;        /**< node 2: sink or echo */
    node_cb cb[2];    /**< callback-mode state of a and b */
    bool callbacks;   /**< callback mode */
    size_t msg_bytes; /**< message size */
    size_t count;     /**< messages the consumer handles before it stops */
    int rc;           /**< consumer's result */
} pair;

static void on_event(void *ctx, const dr_net_event *ev) {
    node_cb *n = ctx;
    if (ev->kind == DR_NET_EV_FRAME && n->echo) {
        dr_net_send(n->net, ev->peer, T_DATA, 0, ev->msg->payload, ev->msg->payload_bytes);
        free(ev->msg);
        return;
    }
    if (ev->kind == DR_NET_EV_FRAME && n->sink) {
        free(ev->msg);
        if (++n->seen == n->expected) {
            uint8_t ack = 1;
            dr_net_send(n->net, ev->peer, T_ACK, 0, &ack, 1);
        }
        return;
    }
    if (ev->kind == DR_NET_EV_FRAME && n->driver) {
        uint64_t now = dr_bench_now_ns();
        free(ev->msg);
        if (n->round >= n->warmup)
            n->samples[n->round - n->warmup] = now - n->sent_ns;
        if (++n->round < n->rounds) {
            n->sent_ns = dr_bench_now_ns();
            dr_net_send(n->net, ev->peer, T_DATA, 0, n->ping, n->ping_bytes);
            return;
        }
        pthread_mutex_lock(&n->mu);
        n->done = true;
        pthread_cond_signal(&n->cv);
        pthread_mutex_unlock(&n->mu);
        return;
    }
    pthread_mutex_lock(&n->mu);
    if (ev->kind == DR_NET_EV_PEER_UP)
        n->ups++;
    if (ev->kind == DR_NET_EV_FRAME) {
        free(n->last);
        n->last = ev->msg;
    }
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

/* Callback mode, node 1: waits for the next frame handed over by on_event. */
static dr_net_msg *cb_wait_frame(node_cb *n) {
    pthread_mutex_lock(&n->mu);
    while (!n->last)
        pthread_cond_wait(&n->cv, &n->mu);
    dr_net_msg *msg = n->last;
    n->last = NULL;
    pthread_mutex_unlock(&n->mu);
    return msg;
}

static int create_node(pair *p, int index, const dr_net_ref_opts *opts) {
    dr_net_config cfg;
    dr_net_config_defaults(&cfg);
    cfg.cluster_id = 0xbe7c;
    cfg.listen_ip = "127.0.0.1";
    cfg.spin_us = opts->spin_us;
    cfg.loop_spin_us = opts->loop_spin_us;
    cfg.node_id = (uint32_t)index + 1;
    node_cb *n = &p->cb[index];
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    if (opts->callback_mode) {
        cfg.on_event = on_event;
        cfg.on_event_ctx = n;
    }
    /* n->net is written before any event can arrive: no connection exists yet */
    int rc = dr_net_create(&cfg, index ? &p->b : &p->a, NULL);
    n->net = index ? p->b : p->a;
    return rc;
}

static int wait_up(pair *p, int index) {
    if (p->callbacks) {
        node_cb *n = &p->cb[index];
        pthread_mutex_lock(&n->mu);
        while (!n->ups)
            pthread_cond_wait(&n->cv, &n->mu);
        pthread_mutex_unlock(&n->mu);
        return DR_OK;
    }
    dr_net_event ev;
    int rc = dr_net_next_event(index ? p->b : p->a, &ev, 5000);
    return rc ? rc : ev.kind == DR_NET_EV_PEER_UP ? DR_OK : DR_EIO;
}

static int make_pair(pair *p, const dr_net_ref_opts *opts) {
    p->callbacks = opts->callback_mode;
    int rc = create_node(p, 0, opts);
    if (rc == DR_OK)
        rc = create_node(p, 1, opts);
    if (rc == DR_OK)
        rc = dr_net_connect(p->a, 2, "127.0.0.1", dr_net_listen_port(p->b));
    for (int i = 0; rc == DR_OK && i < 2; i++)
        rc = wait_up(p, i);
    return rc;
}

static void free_pair(pair *p) {
    dr_net_destroy(p->a);
    dr_net_destroy(p->b);
    for (int i = 0; i < 2; i++) {
        free(p->cb[i].last);
        pthread_cond_destroy(&p->cb[i].cv);
        pthread_mutex_destroy(&p->cb[i].mu);
    }
}

/* Inbox mode: waits for the next frame on net; returns it (caller frees) or NULL. */
static dr_net_msg *next_frame(dr_net *net) {
    dr_net_event ev;
    for (;;) {
        if (dr_net_next_event(net, &ev, 30000))
            return NULL;
        if (ev.kind == DR_NET_EV_FRAME)
            return ev.msg;
        if (ev.kind == DR_NET_EV_PEER_DOWN)
            return NULL;
    }
}

static dr_net_msg *node1_frame(pair *p) {
    return p->callbacks ? cb_wait_frame(&p->cb[0]) : next_frame(p->a);
}

static int send_retry(dr_net *net, uint32_t to, uint16_t type, void *payload, size_t len,
                      bool owned) {
    for (;;) {
        int rc = owned ? dr_net_send_owned(net, to, type, 0, payload, len, NULL, NULL)
                       : dr_net_send(net, to, type, 0, payload, len);
        if (rc != DR_EAGAIN)
            return rc;
        rc = dr_net_wait_writable(net, to, 30000);
        if (rc)
            return rc;
    }
}

static void *sink_thread(void *arg) {
    pair *p = arg;
    p->rc = DR_OK;
    for (size_t i = 0; i < p->count && p->rc == DR_OK; i++) {
        dr_net_msg *msg = next_frame(p->b);
        if (!msg || msg->payload_bytes != p->msg_bytes)
            p->rc = DR_EIO;
        free(msg);
    }
    uint8_t ack = 1;
    if (p->rc == DR_OK)
        p->rc = send_retry(p->b, 1, T_ACK, &ack, 1, false);
    return NULL;
}

static void *echo_thread(void *arg) {
    pair *p = arg;
    p->rc = DR_OK;
    for (size_t i = 0; i < p->count && p->rc == DR_OK; i++) {
        dr_net_msg *msg = next_frame(p->b);
        p->rc = msg ? send_retry(p->b, 1, T_DATA, msg->payload, msg->payload_bytes, false) : DR_EIO;
        free(msg);
    }
    return NULL;
}

int dr_net_ref_bandwidth(size_t msg_bytes, size_t count, const dr_net_ref_opts *opts,
                         dr_tcp_ref_result *out) {
    memset(out, 0, sizeof *out);
    pair p = {.msg_bytes = msg_bytes, .count = count};
    p.cb[1].sink = true;
    p.cb[1].expected = count;
    uint8_t *buf = malloc(msg_bytes);
    int rc = buf ? make_pair(&p, opts) : DR_ENOMEM;
    pthread_t thread;
    bool started = rc == DR_OK && (p.callbacks || !pthread_create(&thread, NULL, sink_thread, &p));
    if (buf)
        memset(buf, 0x5a, msg_bytes);
    uint64_t start = dr_bench_now_ns();
    for (size_t i = 0; started && i < count && rc == DR_OK; i++)
        rc = send_retry(p.a, 2, T_DATA, buf, msg_bytes, true);
    dr_net_msg *ack = started && rc == DR_OK ? node1_frame(&p) : NULL;
    uint64_t end = dr_bench_now_ns();
    if (!ack && rc == DR_OK)
        rc = DR_EIO;
    free(ack);
    if (started && !p.callbacks)
        pthread_join(thread, NULL);
    free_pair(&p); /* before free(buf): queued frames reference it */
    free(buf);
    out->seconds = (double)(end - start) / 1e9;
    out->mb_per_s = (double)msg_bytes * (double)count / 1e6 / out->seconds;
    out->msgs_per_s = (double)count / out->seconds;
    return rc ? rc : p.rc;
}

/* Callback rtt: node 1's on_event sends each next ping itself; this thread only waits. */
static int drive_from_callbacks(pair *p, uint8_t *buf, uint64_t *samples, size_t warmup,
                                uint64_t *begin) {
    node_cb *n = &p->cb[0];
    pthread_mutex_lock(&n->mu);
    n->samples = samples;
    n->ping = buf;
    n->ping_bytes = p->msg_bytes;
    n->warmup = warmup;
    n->rounds = p->count;
    n->round = 0;
    n->driver = true;
    n->sent_ns = *begin = dr_bench_now_ns();
    pthread_mutex_unlock(&n->mu);
    int rc = dr_net_send(p->a, 2, T_DATA, 0, buf, p->msg_bytes);
    pthread_mutex_lock(&n->mu);
    while (rc == DR_OK && !n->done)
        pthread_cond_wait(&n->cv, &n->mu);
    pthread_mutex_unlock(&n->mu);
    return rc;
}

int dr_net_ref_rtt(size_t msg_bytes, size_t iters, const dr_net_ref_opts *opts,
                   dr_tcp_ref_result *out) {
    memset(out, 0, sizeof *out);
    size_t warmup = iters / 10;
    pair p = {.msg_bytes = msg_bytes, .count = warmup + iters};
    p.cb[1].echo = true;
    uint8_t *buf = calloc(1, msg_bytes);
    uint64_t *samples = calloc(iters ? iters : 1, sizeof *samples);
    int rc = buf && samples ? make_pair(&p, opts) : DR_ENOMEM;
    pthread_t thread;
    bool started = rc == DR_OK && (p.callbacks || !pthread_create(&thread, NULL, echo_thread, &p));
    uint64_t begin = dr_bench_now_ns();
    if (started && p.callbacks)
        rc = drive_from_callbacks(&p, buf, samples, warmup, &begin);
    for (size_t i = 0; started && !p.callbacks && i < warmup + iters && rc == DR_OK; i++) {
        uint64_t start = dr_bench_now_ns();
        rc = send_retry(p.a, 2, T_DATA, buf, msg_bytes, false);
        dr_net_msg *echo = rc == DR_OK ? node1_frame(&p) : NULL;
        if (!echo && rc == DR_OK)
            rc = DR_EIO;
        free(echo);
        if (i == warmup)
            begin = start;
        if (i >= warmup)
            samples[i - warmup] = dr_bench_now_ns() - start;
    }
    uint64_t end = dr_bench_now_ns();
    if (started && !p.callbacks)
        pthread_join(thread, NULL);
    if (rc == DR_OK) {
        dr_bench_percentiles(samples, iters, out);
        out->seconds = (double)(end - begin) / 1e9;
        out->msgs_per_s = (double)iters / out->seconds;
    }
    free_pair(&p);
    free(buf);
    free(samples);
    return rc ? rc : p.rc;
}
