/* Socket helpers for the TCP transport (sock.h). */
#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_ipv4(const char *ip, uint16_t port, struct sockaddr_in *addr, dr_err *err) {
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons(port);
    if (!ip || inet_pton(AF_INET, ip, &addr->sin_addr) != 1)
        return dr_err_set(err, DR_EINVAL, "not an IPv4 address: '%s'", ip ? ip : "(null)");
    return DR_OK;
}

int dr_sock_set_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) ? DR_EIO : DR_OK;
}

int dr_sock_listen(const char *ip, uint16_t port, int backlog, int *fd_out, uint16_t *port_out,
                   dr_err *err) {
    struct sockaddr_in addr;
    int rc = parse_ipv4(ip, port, &addr, err);
    if (rc)
        return rc;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return dr_err_set(err, DR_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr)) {
        rc = dr_err_set(err, DR_EIO, "bind %s:%u: %s", ip, port, strerror(errno));
        goto fail;
    }
    if (listen(fd, backlog)) {
        rc = dr_err_set(err, DR_EIO, "listen %s:%u: %s", ip, port, strerror(errno));
        goto fail;
    }
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len)) {
        rc = dr_err_set(err, DR_EIO, "getsockname: %s", strerror(errno));
        goto fail;
    }
    *fd_out = fd;
    *port_out = ntohs(addr.sin_port);
    return DR_OK;
fail:
    close(fd);
    return rc;
}

int dr_sock_connect_start(const char *ip, uint16_t port, int *fd_out, dr_err *err) {
    struct sockaddr_in addr;
    int rc = parse_ipv4(ip, port, &addr, err);
    if (rc)
        return rc;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return dr_err_set(err, DR_EIO, "socket: %s", strerror(errno));
    dr_sock_set_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) && errno != EINPROGRESS) {
        rc = dr_err_set(err, DR_EIO, "connect %s:%u: %s", ip, port, strerror(errno));
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return DR_OK;
}

int dr_sock_connect_result(int fd) {
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len))
        return errno;
    return so_error;
}
