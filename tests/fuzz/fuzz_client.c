/* Plays a fuzz input as an NBD client; see fuzz_client.h. */
#include "fuzz_client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frontend/nbd/server.h"

struct client {
    int fd;
    const uint8_t *prefix;
    size_t prefix_len;
    const uint8_t *data;
    size_t len;
};

/* Send prefix then data without blocking on a server that is itself
 * blocked sending; read and drop whatever comes back until EOF. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    size_t sent = 0, total = c->prefix_len + c->len;
    bool wr_open = true;
    if (total == 0) {
        shutdown(c->fd, SHUT_WR);
        wr_open = false;
    }
    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN | (wr_open ? POLLOUT : 0)};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char sink[65536];
            ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break; /* the server closed the connection */
        }
        if (wr_open && (p.revents & (POLLOUT | POLLERR))) {
            const uint8_t *src;
            size_t avail;
            if (sent < c->prefix_len) {
                src = c->prefix + sent;
                avail = c->prefix_len - sent;
            } else {
                src = c->data + (sent - c->prefix_len);
                avail = total - sent;
            }
            ssize_t n = send(c->fd, src, avail, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                sent = total; /* the server stopped reading: done writing */
            if (sent == total) {
                shutdown(c->fd, SHUT_WR);
                wr_open = false;
            }
        }
    }
    close(c->fd);
    return NULL;
}

void fuzz_serve_fd(void (*serve)(void *srv, int fd), void *srv, void *(*client)(void *arg),
                   void *arg, int *client_fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    *client_fd = sv[1];
    pthread_t t;
    if (pthread_create(&t, NULL, client, arg) != 0)
        abort();
    serve(srv, sv[0]); /* closes sv[0] */
    pthread_join(t, NULL);
}

static void serve_nbd(void *srv, int fd)
{
    nbd_serve_connection(srv, fd);
}

void fuzz_serve_with(struct nbd_server *server, void *(*client)(void *arg), void *arg,
                     int *client_fd)
{
    fuzz_serve_fd(serve_nbd, server, client, arg, client_fd);
}

void fuzz_serve_plain(void (*serve)(void *srv, int fd), void *srv, const uint8_t *prefix,
                      size_t prefix_len, const uint8_t *data, size_t len)
{
    struct client c = {.prefix = prefix, .prefix_len = prefix_len, .data = data, .len = len};
    fuzz_serve_fd(serve, srv, client_main, &c, &c.fd);
}

void fuzz_serve(struct nbd_server *server, const uint8_t *prefix, size_t prefix_len,
                const uint8_t *data, size_t len)
{
    struct client c = {.prefix = prefix, .prefix_len = prefix_len, .data = data, .len = len};
    fuzz_serve_with(server, client_main, &c, &c.fd);
}
