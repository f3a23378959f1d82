/* The client side of the front ends' fuzz targets: play a fuzz input as a client on
 * one end of a socketpair while the real server serves the other end, on
 * the calling thread, through nbd_serve_connection(). Shared by fuzz_nbd.c
 * and fuzz_tls.c. */
#ifndef SHOAL_TESTS_FUZZ_CLIENT_H
#define SHOAL_TESTS_FUZZ_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct nbd_server;

/* Serve one connection whose client sends prefix, then data, then shuts
 * down its sending side, reading (and dropping) everything the server
 * sends until the server closes. Returns when both sides are done (the
 * client thread is joined). */
void fuzz_serve(struct nbd_server *server, const uint8_t *prefix, size_t prefix_len,
                const uint8_t *data, size_t len);

/* The same, with a caller-supplied client run on its own thread with the
 * client's end of the socketpair (which it must close). */
void fuzz_serve_with(struct nbd_server *server, void *(*client)(void *arg), void *arg,
                     int *client_fd);

/* The same for any front end: serve(srv, fd) serves the server's end of
 * the socketpair on the calling thread and closes it (fuzz_iscsi.c). */
void fuzz_serve_fd(void (*serve)(void *srv, int fd), void *srv, void *(*client)(void *arg),
                   void *arg, int *client_fd);
void fuzz_serve_plain(void (*serve)(void *srv, int fd), void *srv, const uint8_t *prefix,
                      size_t prefix_len, const uint8_t *data, size_t len);

#endif
