/*
 * Small socket helpers for the TCP transport, in the spirit of Redis's anet.c: create a
 * listening socket, start a non-blocking connect, set the options every connection gets
 * (non-blocking, close-on-exec, TCP_NODELAY). IPv4 only for now.
 */
#ifndef DR_NET_SOCK_H
#define DR_NET_SOCK_H

#include "derecho/error.h"

#include <stdint.h>

/**
 * Binds and listens on ip:port (port 0: any free port). Returns 0 with *fd_out (non-blocking)
 * and *port_out (the bound port), or DR_EINVAL (bad ip) / DR_EIO (err says which call failed).
 */
int dr_sock_listen(const char *ip, uint16_t port, int backlog, int *fd_out, uint16_t *port_out,
                   dr_err *err);

/**
 * Starts a non-blocking connect to ip:port. Returns 0 with *fd_out (the connect may still be in
 * progress: wait for EPOLLOUT, then dr_sock_connect_result) or DR_EINVAL / DR_EIO.
 */
int dr_sock_connect_start(const char *ip, uint16_t port, int *fd_out, dr_err *err);

/** After EPOLLOUT on a connecting socket: 0 if connected, else the errno of the failure. */
int dr_sock_connect_result(int fd);

/** Sets TCP_NODELAY (Nagle off: small frames leave at once). Returns 0 or DR_EIO. */
int dr_sock_set_nodelay(int fd);

#endif
