/* The server side every front end shares: listening sockets (netaddr.h),
 * one accept thread per socket, the access list check (allow.h), one
 * thread per client connection counted against a limit, and the graceful
 * stop. A front end gives a handler that speaks its protocol on one
 * connection; nothing here knows a protocol.
 *
 * Threads: one accept thread per listening socket; one thread per client
 * connection, which runs the handler (the handler may start more, e.g.
 * NBD's sender thread, and must end them before it returns).
 *
 * Stop (listener_stop): sets the stop flag (handlers read it to refuse new
 * work), closes the listening sockets, shuts down the receiving side of
 * every connection, so its handler sees EOF, finishes what is in flight and
 * returns; after LISTENER_STOP_GRACE_S the sending side is cut too, for
 * clients that do not read their replies. It returns once every handler
 * has returned and every connection is closed, so whatever the handlers
 * used (credentials, the worker pool) may go afterwards.
 *
 * Lock rules: l->lock guards the connection list and the counters;
 * handlers run without it. */
#ifndef SHOAL_FRONTEND_LISTENER_H
#define SHOAL_FRONTEND_LISTENER_H

#include <stddef.h>

#include "frontend/conn_io.h"
#include "frontend/netaddr.h"

#define LISTENER_DEFAULT_MAX_CONNECTIONS 1024
#define LISTENER_STOP_GRACE_S            5 /* for in-flight replies at stop */

struct allow_list;
struct listener;

/* One client connection, as its handler sees it. */
struct listener_conn {
    /* The plain socket transport. The handler may upgrade it (tls.h) and
     * leaves it open: the listener closes it after the handler returned. */
    struct conn_io io;
    const int *stopping; /* non-zero once the listener stops; read atomically */
};

struct listener_config {
    const char *proto; /* "nbd": names the server in log messages */
    /* Listen addresses (netaddr.h). With none, connections come only
     * through listener_serve_fd (tests, fuzzing). */
    const char *const *listen;
    unsigned nlisten;
    const char *default_port; /* for an address without one */
    /* Mode, owner and group of every unix socket among them (netaddr.h);
     * NULL: mode 0660, the daemon's user and group. */
    const struct netaddr_unix_perms *unix_perms;
    unsigned max_connections;       /* 0: LISTENER_DEFAULT_MAX_CONNECTIONS */
    const struct allow_list *allow; /* NULL or empty: every client; outlives the listener */
    /* Serve one connection on the calling thread until it ends. */
    void (*serve)(void *opaque, struct listener_conn *c);
    void *opaque;
    /* Optional: when start fails, one line saying what failed (e.g. which
     * address could not be bound) goes here instead of to the log. */
    char *err;
    size_t errlen;
};

/* Open every address and start accepting (the handler may run before this
 * returns). 0, or -errno with nothing left open. */
int listener_start(const struct listener_config *cfg, struct listener **out);
/* Stop as described above and free. NULL is a no-op. */
void listener_stop(struct listener *l);
/* Live connections. */
unsigned listener_connections(struct listener *l);
/* Serve an already-connected fd (one end of a socketpair in the fuzz
 * harnesses) on the calling thread, as if it had been accepted: counted,
 * stopped by listener_stop, closed at the end. Takes ownership of fd. */
void listener_serve_fd(struct listener *l, int fd);

#endif
