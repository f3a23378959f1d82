/* The front door of the management API: one thread that accepts the
 * connections and holds each one until its request head (request line and
 * header fields) is in, then hands it to libmicrohttpd (http.c). See
 * gate.c for why. */
#ifndef SHOAL_MGMT_GATE_H
#define SHOAL_MGMT_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A request head must be complete this long after the connection was
 * accepted, however slowly its bytes trickle in: 408 and closed. */
#define GATE_HEAD_DEADLINE_MS 5000
/* Connections waiting for their request head; when full, the oldest goes. */
#define GATE_MAX_WAITING 128
/* The largest request head (request line and header fields): 431 above. */
#define GATE_MAX_HEAD 8192
/* The longest request target (path and query): 414 above. */
#define GATE_MAX_TARGET 4096

struct gate;
struct MHD_Daemon;

enum gate_result {
    GATE_MORE,   /* the head is not complete yet, nothing wrong so far */
    GATE_PASS,   /* a complete, well-formed head: hand the connection over */
    GATE_REFUSE, /* answer status with message and close */
};

struct gate_verdict {
    unsigned status;
    char message[160];
};

/* Check the first n bytes a client sent (n <= GATE_MAX_HEAD). Pure: the
 * unit tests call it directly. */
enum gate_result gate_check_head(const char *buf, size_t n, struct gate_verdict *v);

/* Bind and listen (errors here are the daemon's start errors), without
 * accepting yet. *port is the bound port (for port 0). */
int gate_open(const struct sockaddr *addr, socklen_t len, unsigned *port, struct gate **out);

/* Start accepting and handing connections to mhd, at most limit of them
 * at once (gate_release counts one down). inspect false (HTTPS: the head
 * is encrypted) hands every connection over as soon as it is accepted. */
int gate_start(struct gate *g, struct MHD_Daemon *mhd, unsigned limit, bool inspect);

/* libmicrohttpd is closing a connection that gate handed over (fd: its
 * socket, still open). */
void gate_release(struct gate *g, int fd);

/* The request head of the connection on fd reached the handler: over
 * HTTPS, the end of its deadline. */
void gate_head_done(struct gate *g, int fd);

/* Stop the thread, close the listening socket and waiting connections.
 * Call before MHD_stop_daemon, so nothing is handed over meanwhile. */
void gate_stop(struct gate *g);

/* Stop, and free: after MHD_stop_daemon, whose threads call gate_release
 * until then. */
void gate_free(struct gate *g);

#endif
