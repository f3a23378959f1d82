/* The plain transport every front end uses (frontend/conn_io.h): whole
 * reads and writes over partial sends, timeouts and deadlines, EOF, EPIPE,
 * resuming a partial non-blocking send, and pipes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "frontend/conn_io.h"

struct pair {
    int fd[2];
};

static void pair_open(struct pair *p)
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
}

static void pair_close(struct pair *p)
{
    for (int i = 0; i < 2; i++)
        if (p->fd[i] >= 0)
            close(p->fd[i]);
}

struct writer {
    struct conn_io *io;
    const struct iovec *iov;
    int iovcnt;
    int ret;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    w->ret = conn_io_writev_full(w->io, w->iov, w->iovcnt);
    return NULL;
}

/* A vector longer than one sendmsg() window, bigger than the socket buffer
 * (so writes are partial), with empty entries mixed in. */
static void test_conn_io_writev_partial(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    int sz = 4096;
    setsockopt(p.fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    /* Non-blocking, so sendmsg() really returns short counts and EAGAIN. */
    assert_int_equal(fcntl(p.fd[0], F_SETFL, O_NONBLOCK), 0);

    enum { N = 300 };
    static uint8_t data[N * 1000];
    static struct iovec iov[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        size_t len = i % 7 == 3 ? 0 : (size_t)(i * 37 % 1000) + 1;
        iov[i] = (struct iovec){data + total, len};
        for (size_t j = 0; j < len; j++)
            data[total + j] = (uint8_t)(total + j);
        total += len;
    }

    struct conn_io wio, rio;
    conn_io_init_plain(&wio, p.fd[0]);
    conn_io_init_plain(&rio, p.fd[1]);
    assert_string_equal(wio.ops->name, "plain");
    struct writer w = {&wio, iov, N, 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);

    uint8_t *got = malloc(total);
    assert_non_null(got);
    /* Read in odd-sized pieces, with a discard in the middle. */
    size_t pos = 0;
    while (pos < total) {
        size_t chunk = MIN(total - pos, (size_t)777);
        if (pos == 7770) {
            assert_int_equal(conn_io_discard(&rio, chunk), 0);
            memcpy(got + pos, data + pos, chunk);
        } else {
            assert_int_equal(conn_io_read_full(&rio, got + pos, chunk), 0);
        }
        pos += chunk;
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.ret, 0);
    assert_memory_equal(got, data, total);
    assert_int_equal(rio.ops->pending(&rio), 0);
    free(got);
    pair_close(&p);
}

static void test_conn_io_timeout_and_eof(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    struct conn_io io;
    conn_io_init_plain(&io, p.fd[0]);
    io.timeout_ms = 50;
    char buf[8];
    uint64_t t0 = now_ns();
    assert_int_equal(conn_io_read_full(&io, buf, sizeof buf), -ETIMEDOUT);
    assert_true(now_ns() - t0 >= 40000000ull);

    /* Part of a message, then EOF: -ECONNRESET. */
    assert_int_equal(write(p.fd[1], "abc", 3), 3);
    shutdown(p.fd[1], SHUT_WR);
    assert_int_equal(conn_io_read_full(&io, buf, sizeof buf), -ECONNRESET);
    assert_int_equal(io.ops->recv(&io, buf, sizeof buf), 0); /* plain EOF */

    /* Without a timeout, blocking reads work too. */
    io.timeout_ms = 0;
    assert_int_equal(conn_io_read_full(&io, buf, 1), -ECONNRESET);
    pair_close(&p);
}

/* Sends give up after the send budget when the peer takes no data. */
static void test_conn_io_send_timeout(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    struct conn_io io;
    conn_io_init_plain(&io, p.fd[0]);
    io.send_timeout_ms = 50;
    static uint8_t big[8u << 20];
    uint64_t t0 = now_ns();
    assert_int_equal(conn_io_write_full(&io, big, sizeof big), -ETIMEDOUT);
    assert_true(now_ns() - t0 >= 40000000ull);
    /* A deadline that has passed: at once. */
    io.send_timeout_ms = 0;
    io.deadline_ns = now_ns();
    assert_int_equal(conn_io_write_full(&io, big, sizeof big), -ETIMEDOUT);
    pair_close(&p);
}

/* try_sendv sends what fits and says how much; the rest resumes with
 * conn_io_iov_advance, and the peer sees the bytes once, in order. */
static void test_conn_io_try_sendv_resume(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    int sz = 4096;
    setsockopt(p.fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    enum { N = 3, LEN = 300000 };
    static uint8_t data[N * LEN];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + i / 251);
    struct iovec iov[N];
    for (int i = 0; i < N; i++)
        iov[i] = (struct iovec){data + (size_t)i * LEN, LEN};
    struct conn_io wio, rio;
    conn_io_init_plain(&wio, p.fd[0]);
    conn_io_init_plain(&rio, p.fd[1]);
    ssize_t w = wio.ops->try_sendv(&wio, iov, N);
    assert_true(w > 0 && (size_t)w < sizeof data); /* partial, and did not block */
    int n = N;
    conn_io_iov_advance(iov, &n, (size_t)w);
    size_t left = 0;
    for (int i = 0; i < n; i++)
        left += iov[i].iov_len;
    assert_int_equal(left, sizeof data - (size_t)w);
    struct writer wr = {&wio, iov, n, 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &wr), 0);
    uint8_t *got = malloc(sizeof data);
    assert_int_equal(conn_io_read_full(&rio, got, sizeof data), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(wr.ret, 0);
    assert_memory_equal(got, data, sizeof data);
    free(got);
    pair_close(&p);
}

static void test_conn_io_epipe(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    struct conn_io io;
    conn_io_init_plain(&io, p.fd[0]);
    close(p.fd[1]);
    p.fd[1] = -1;
    /* Would kill the test with SIGPIPE without MSG_NOSIGNAL. */
    assert_int_equal(conn_io_write_full(&io, "x", 1), -EPIPE);
    io.ops->close(&io);
    assert_int_equal(io.fd, -1);
    p.fd[0] = -1;
    pair_close(&p);
}

/* Pipes are not sockets: the transport falls back to read()/writev(). */
static void test_conn_io_pipe(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct conn_io r, w;
    conn_io_init_plain(&r, fds[0]);
    conn_io_init_plain(&w, fds[1]);
    r.timeout_ms = 1000;
    struct iovec iov[2] = {{"hello ", 6}, {"pipe", 4}};
    assert_int_equal(conn_io_writev_full(&w, iov, 2), 0);
    char buf[11] = {0};
    assert_int_equal(conn_io_read_full(&r, buf, 10), 0);
    assert_string_equal(buf, "hello pipe");
    w.ops->close(&w);
    r.ops->close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_io_writev_partial),
        cmocka_unit_test(test_conn_io_timeout_and_eof),
        cmocka_unit_test(test_conn_io_epipe),
        cmocka_unit_test(test_conn_io_send_timeout),
        cmocka_unit_test(test_conn_io_try_sendv_resume),
        cmocka_unit_test(test_conn_io_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
