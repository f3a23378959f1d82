/* Plain socket transport for client connections, and the read-exactly /
 * write-exactly helpers every transport shares (see conn_io.h). */
#include "frontend/conn_io.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/busy_poll.h"
#include "common/util.h"

/* Per sendmsg() call; larger vectors go out in several calls, so no
 * allocation is needed to track progress through a caller's const iov. */
#define SEND_IOV_WINDOW 64

int conn_io_wait_fd(int fd, short events, int timeout_ms)
{
    uint64_t deadline = timeout_ms > 0 ? now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    for (;;) {
        int wait = -1;
        if (timeout_ms > 0) {
            uint64_t now = now_ns();
            if (now >= deadline)
                return -ETIMEDOUT;
            /* Round up so we never spin on a sub-millisecond remainder. */
            wait = (int)DIV_ROUND_UP(deadline - now, 1000000u);
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, wait);
        if (r > 0)
            return 0;
        if (r == 0)
            continue; /* the deadline check above turns this into -ETIMEDOUT */
        if (errno != EINTR)
            return -errno;
    }
}

static ssize_t plain_recv(struct conn_io *io, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    for (;;) {
        /* With a timeout, poll first: SO_RCVTIMEO would also work but is
         * per-socket state the transmission phase would have to undo. */
        int tmo = conn_io_wait_budget(io);
        if (tmo < 0)
            return -ETIMEDOUT;
        if (tmo > 0) {
            int r = conn_io_wait_fd(io->fd, POLLIN, tmo);
            if (r < 0)
                return r;
        }
        ssize_t n = recv(io->fd, buf, len, tmo > 0 ? MSG_DONTWAIT : 0);
        if (n < 0 && errno == ENOTSOCK)
            n = read(io->fd, buf, len); /* pipes in tools and harnesses */
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* Spurious wakeup, or a non-blocking fd without a timeout. */
            if (tmo == 0) {
                int r = conn_io_wait_fd(io->fd, POLLIN, 0);
                if (r < 0)
                    return r;
            }
            continue;
        }
        return -errno;
    }
}

static ssize_t plain_try_recv(struct conn_io *io, void *buf, size_t len)
{
    ssize_t n = recv(io->fd, buf, len, MSG_DONTWAIT);
    if (n >= 0)
        return n;
    /* EINTR: ask again; ENOTSOCK (a pipe in a tool): the blocking recv
     * after the window reads it. */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOTSOCK)
        return -EAGAIN;
    return -errno;
}

/* Never blocks: the sockets stay blocking for recv, so every send says
 * MSG_DONTWAIT and waits (bounded) in poll instead. */
static ssize_t send_some(int fd, struct iovec *iov, int iovcnt)
{
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    /* MSG_NOSIGNAL: a vanished peer must give -EPIPE on this connection,
     * not a process-wide SIGPIPE. */
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK)
        n = writev(fd, iov, iovcnt); /* pipes in tools and harnesses */
    return n;
}

static int plain_sendv(struct conn_io *io, const struct iovec *iov, int iovcnt)
{
    int i = 0;      /* first entry of iov not yet fully sent */
    size_t off = 0; /* bytes of iov[i] already sent */

    for (;;) {
        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i == iovcnt)
            return 0;

        struct iovec win[SEND_IOV_WINDOW];
        int n = 0;
        for (int j = i; j < iovcnt && n < SEND_IOV_WINDOW; j++) {
            size_t skip = j == i ? off : 0;
            if (iov[j].iov_len == skip)
                continue;
            win[n].iov_base = (char *)iov[j].iov_base + skip;
            win[n].iov_len = iov[j].iov_len - skip;
            n++;
        }
        ssize_t w = send_some(io->fd, win, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int tmo = conn_io_send_budget(io);
                int r = tmo < 0 ? -ETIMEDOUT : conn_io_wait_fd(io->fd, POLLOUT, tmo);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        /* Advance (i, off) by w bytes over the caller's vector. */
        size_t left = (size_t)w;
        while (left > 0) {
            size_t room = iov[i].iov_len - off;
            if (left < room) {
                off += left;
                left = 0;
            } else {
                left -= room;
                i++;
                off = 0;
            }
        }
    }
}

static ssize_t plain_try_sendv(struct conn_io *io, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (;;) {
        struct iovec win[SEND_IOV_WINDOW];
        int n = MIN(iovcnt, SEND_IOV_WINDOW);
        memcpy(win, iov, (size_t)n * sizeof *win);
        ssize_t w = send_some(io->fd, win, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return (ssize_t)total;
            return total ? (ssize_t)total : -errno;
        }
        total += (size_t)w;
        /* Done when the window went out whole and it was all there was. */
        size_t win_len = 0;
        for (int j = 0; j < n; j++)
            win_len += win[j].iov_len;
        if ((size_t)w < win_len || n == iovcnt)
            return (ssize_t)total;
        iov += n;
        iovcnt -= n;
    }
}

void conn_io_iov_advance(struct iovec *iov, int *iovcnt, size_t skip)
{
    int i = 0;
    while (i < *iovcnt && skip >= iov[i].iov_len) {
        skip -= iov[i].iov_len;
        i++;
    }
    if (i < *iovcnt) {
        iov[i].iov_base = (char *)iov[i].iov_base + skip;
        iov[i].iov_len -= skip;
    }
    memmove(iov, iov + i, (size_t)(*iovcnt - i) * sizeof *iov);
    *iovcnt -= i;
}

static size_t plain_pending(struct conn_io *io)
{
    (void)io;
    return 0; /* the kernel buffers; nothing is held in user space */
}

static void plain_close(struct conn_io *io)
{
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}

static const struct conn_io_ops plain_ops = {
    .name = "plain",
    .recv = plain_recv,
    .sendv = plain_sendv,
    .try_sendv = plain_try_sendv,
    .try_recv = plain_try_recv,
    .pending = plain_pending,
    .close = plain_close,
};

void conn_io_init_plain(struct conn_io *io, int fd)
{
    *io = (struct conn_io){.ops = &plain_ops, .fd = fd};
}

struct recv_args {
    struct conn_io *io;
    void *buf;
    size_t len;
};

static ssize_t try_recv_cb(void *arg)
{
    struct recv_args *a = arg;
    return a->io->ops->try_recv(a->io, a->buf, a->len);
}

static ssize_t timed_recv(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
    }
}

ssize_t conn_io_recv_polled(struct conn_io *io, struct busy_poll *bp, void *buf, size_t len,
                            int timed_fd)
{
    bool polled = io->ops->try_recv && len > 0;
    if (polled) {
        struct recv_args a = {io, buf, len};
        ssize_t n = busy_poll_try(bp, try_recv_cb, &a);
        if (n != -EAGAIN)
            return n;
    }
    uint64_t t0 = now_ns();
    ssize_t n = timed_fd >= 0 ? timed_recv(timed_fd, buf, len) : io->ops->recv(io, buf, len);
    if (n > 0 && polled)
        busy_poll_slept(bp, now_ns() - t0);
    return n;
}

int conn_io_read_full(struct conn_io *io, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = io->ops->recv(io, p, len);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0)
            return (int)n;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int conn_io_write_full(struct conn_io *io, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return io->ops->sendv(io, &iov, 1);
}

int conn_io_writev_full(struct conn_io *io, const struct iovec *iov, int iovcnt)
{
    return io->ops->sendv(io, iov, iovcnt);
}

int conn_io_discard(struct conn_io *io, size_t len)
{
    char sink[4096];
    while (len > 0) {
        size_t chunk = MIN(len, sizeof sink);
        int r = conn_io_read_full(io, sink, chunk);
        if (r < 0)
            return r;
        len -= chunk;
    }
    return 0;
}
