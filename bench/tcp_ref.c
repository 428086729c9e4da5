/* Raw loopback TCP reference measurements (tcp_ref.h). */
#include "tcp_ref.h"

#include "derecho/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t dr_bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void dr_bench_percentiles(uint64_t *samples_ns, size_t n, dr_tcp_ref_result *out) {
    if (n == 0)
        return;
    qsort(samples_ns, n, sizeof *samples_ns, cmp_u64);
    out->min_ns = samples_ns[0];
    out->p50_ns = samples_ns[n / 2];
    out->p90_ns = samples_ns[n * 9 / 10];
    out->p99_ns = samples_ns[n * 99 / 100];
    out->max_ns = samples_ns[n - 1];
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Makes a connected pair over 127.0.0.1 (listener on an ephemeral port, closed afterwards). */
static int loopback_pair(int *client_fd, int *server_fd) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    socklen_t len = sizeof addr;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 1) ||
        getsockname(lfd, (struct sockaddr *)&addr, &len))
        goto fail;
    *client_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*client_fd < 0 || connect(*client_fd, (struct sockaddr *)&addr, sizeof addr))
        goto fail;
    *server_fd = accept(lfd, NULL, NULL);
    if (*server_fd < 0)
        goto fail;
    close(lfd);
    set_nodelay(*client_fd);
    set_nodelay(*server_fd);
    return DR_OK;
fail:
    if (lfd >= 0)
        close(lfd);
    return DR_EIO;
}

/* Sends or receives exactly len bytes; busy_poll spins on EAGAIN. Returns 0 or DR_EIO. */
static int io_all(int fd, void *buf, size_t len, bool is_send, bool busy_poll) {
    uint8_t *p = buf;
    int flags = MSG_NOSIGNAL | (busy_poll ? MSG_DONTWAIT : 0);
    while (len) {
        ssize_t n = is_send ? send(fd, p, len, flags) : recv(fd, p, len, flags);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return DR_EIO;
        p += n;
        len -= (size_t)n;
    }
    return DR_OK;
}

typedef struct peer_args {
    int fd;         /**< connected socket */
    size_t bytes;   /**< message size */
    size_t count;   /**< messages to receive (bandwidth) or echo (rtt) */
    bool busy_poll; /**< spin instead of blocking */
    int rc;         /**< result */
} peer_args;

static void *sink_thread(void *arg) {
    peer_args *a = arg;
    size_t chunk = a->bytes < (8u << 20) ? a->bytes : (8u << 20);
    uint8_t *buf = malloc(chunk);
    a->rc = buf ? DR_OK : DR_ENOMEM;
    for (size_t m = 0; m < a->count && a->rc == DR_OK; m++)
        for (size_t left = a->bytes; left && a->rc == DR_OK;) {
            size_t n = left < chunk ? left : chunk;
            a->rc = io_all(a->fd, buf, n, false, false);
            left -= n;
        }
    uint8_t ack = 1;
    if (a->rc == DR_OK)
        a->rc = io_all(a->fd, &ack, 1, true, false);
    free(buf);
    return NULL;
}

int dr_tcp_ref_bandwidth(size_t msg_bytes, size_t count, dr_tcp_ref_result *out) {
    memset(out, 0, sizeof *out);
    int cfd = -1, sfd = -1;
    if (loopback_pair(&cfd, &sfd))
        return DR_EIO;
    uint8_t *buf = malloc(msg_bytes);
    if (!buf) {
        close(cfd), close(sfd);
        return DR_ENOMEM;
    }
    memset(buf, 0x5a, msg_bytes);
    peer_args sink = {.fd = sfd, .bytes = msg_bytes, .count = count};
    pthread_t thread;
    pthread_create(&thread, NULL, sink_thread, &sink);
    uint64_t start = dr_bench_now_ns();
    int rc = DR_OK;
    for (size_t m = 0; m < count && rc == DR_OK; m++)
        rc = io_all(cfd, buf, msg_bytes, true, false);
    uint8_t ack = 0;
    if (rc == DR_OK)
        rc = io_all(cfd, &ack, 1, false, false);
    uint64_t end = dr_bench_now_ns();
    shutdown(cfd, SHUT_RDWR);
    pthread_join(thread, NULL);
    close(cfd), close(sfd);
    free(buf);
    out->seconds = (double)(end - start) / 1e9;
    out->mb_per_s = (double)msg_bytes * (double)count / 1e6 / out->seconds;
    out->msgs_per_s = (double)count / out->seconds;
    return rc ? rc : sink.rc;
}

static void *echo_thread(void *arg) {
    peer_args *a = arg;
    uint8_t *buf = malloc(a->bytes);
    a->rc = buf ? DR_OK : DR_ENOMEM;
    for (size_t i = 0; i < a->count && a->rc == DR_OK; i++) {
        a->rc = io_all(a->fd, buf, a->bytes, false, a->busy_poll);
        if (a->rc == DR_OK)
            a->rc = io_all(a->fd, buf, a->bytes, true, false);
    }
    free(buf);
    return NULL;
}

int dr_tcp_ref_rtt(size_t msg_bytes, size_t iters, bool busy_poll, dr_tcp_ref_result *out) {
    memset(out, 0, sizeof *out);
    size_t warmup = iters / 10;
    int cfd = -1, sfd = -1;
    if (loopback_pair(&cfd, &sfd))
        return DR_EIO;
    uint8_t *buf = calloc(1, msg_bytes);
    uint64_t *samples = calloc(iters ? iters : 1, sizeof *samples);
    peer_args echo = {
        .fd = sfd, .bytes = msg_bytes, .count = warmup + iters, .busy_poll = busy_poll};
    pthread_t thread;
    pthread_create(&thread, NULL, echo_thread, &echo);
    int rc = buf && samples ? DR_OK : DR_ENOMEM;
    uint64_t begin = dr_bench_now_ns();
    for (size_t i = 0; i < warmup + iters && rc == DR_OK; i++) {
        uint64_t start = dr_bench_now_ns();
        rc = io_all(cfd, buf, msg_bytes, true, false);
        if (rc == DR_OK)
            rc = io_all(cfd, buf, msg_bytes, false, busy_poll);
        if (i == warmup)
            begin = start;
        if (i >= warmup)
            samples[i - warmup] = dr_bench_now_ns() - start;
    }
    uint64_t end = dr_bench_now_ns();
    shutdown(cfd, SHUT_RDWR);
    pthread_join(thread, NULL);
    close(cfd), close(sfd);
    if (rc == DR_OK) {
        dr_bench_percentiles(samples, iters, out);
        out->seconds = (double)(end - begin) / 1e9;
        out->msgs_per_s = (double)iters / out->seconds;
    }
    free(buf);
    free(samples);
    return rc ? rc : echo.rc;
}
