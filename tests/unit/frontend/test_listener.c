/* The server plumbing every front end shares: listen addresses
 * (frontend/netaddr.h), the access list (frontend/allow.h) and the listener
 * (frontend/listener.h) with a toy protocol: accept, the connection limit,
 * refusals, unix socket permissions, serving a given fd, and both stages of
 * the graceful stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "frontend/allow.h"
#include "frontend/listener.h"
#include "frontend/netaddr.h"

/* ---- listen addresses ---- */

static void expect_hostport(const char *spec, const char *host, const char *port)
{
    char h[64], p[16];
    int r = netaddr_parse_hostport(spec, "10809", h, sizeof h, p, sizeof p);
    if (!host) {
        assert_int_equal(r, -EINVAL);
        return;
    }
    assert_int_equal(r, 0);
    assert_string_equal(h, host);
    assert_string_equal(p, port);
}

static void test_hostport(void **state)
{
    (void)state;
    expect_hostport("127.0.0.1:10810", "127.0.0.1", "10810");
    expect_hostport("localhost", "localhost", "10809");
    expect_hostport("7000", "", "7000");
    expect_hostport(":7000", "", "7000");
    expect_hostport("[::1]:5", "::1", "5");
    expect_hostport("[::1]", "::1", "10809");
    expect_hostport("::1", NULL, NULL);         /* IPv6 needs brackets */
    expect_hostport("[::1", NULL, NULL);        /* unclosed */
    expect_hostport("[]:1", NULL, NULL);        /* no host */
    expect_hostport("[::1]x", NULL, NULL);      /* junk after ] */
    expect_hostport("host:", NULL, NULL);       /* empty port */
    expect_hostport("host:65536", NULL, NULL);  /* out of range */
    expect_hostport("host:123456", NULL, NULL); /* too long */
    expect_hostport("host:12a", NULL, NULL);    /* not a number */
    char h[4], p[16];
    assert_int_equal(netaddr_parse_hostport("toolong:1", "1", h, sizeof h, p, sizeof p), -EINVAL);
}

static void test_check_listen(void **state)
{
    (void)state;
    assert_string_equal(netaddr_check_listen("", "10809"), NETADDR_SYNTAX);
    assert_string_equal(netaddr_check_listen("::1", "10809"), NETADDR_SYNTAX);
    assert_string_equal(netaddr_check_listen("unix:", "10809"), "empty unix socket path");
    assert_null(netaddr_check_listen("unix:/tmp/x.sock", "10809"));
    assert_null(netaddr_check_listen("127.0.0.1:0", "10809"));
    assert_null(netaddr_check_listen("127.0.0.1", "10809"));
    assert_null(netaddr_check_listen("[::1]:1", "10809"));
}

/* ---- access list ---- */

static bool allowed(const struct allow_list *a, const char *ip)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        len = sizeof *s6;
    } else if (strcmp(ip, "unix") == 0) {
        ss.ss_family = AF_UNIX;
        len = sizeof(sa_family_t);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
        len = sizeof *s4;
    }
    return allow_match(a, (struct sockaddr *)&ss, len);
}

static void test_allow(void **state)
{
    (void)state;
    struct allow_list a;
    const char *bad = NULL;
    assert_int_equal(allow_parse(NULL, 0, &a, &bad), 0);
    assert_true(allowed(&a, "192.0.2.1")); /* empty: everyone */
    assert_true(allowed(&a, "unix"));
    allow_free(&a);

    const char *specs[] = {"127.0.0.0/30", "fd00::/8", "[2001:db8::1]", "192.0.2.3"};
    assert_int_equal(allow_parse(specs, ARRAY_SIZE(specs), &a, &bad), 0);
    assert_true(allowed(&a, "127.0.0.3"));
    assert_false(allowed(&a, "127.0.0.4"));
    assert_true(allowed(&a, "192.0.2.3"));
    assert_false(allowed(&a, "192.0.2.4"));
    assert_true(allowed(&a, "fd12::1"));
    assert_false(allowed(&a, "fe80::1"));
    assert_true(allowed(&a, "2001:db8::1"));
    assert_true(allowed(&a, "::ffff:127.0.0.1")); /* IPv4-mapped matches IPv4 entries */
    assert_false(allowed(&a, "unix"));            /* must be listed */
    char who[64];
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    allow_format_peer((struct sockaddr *)&s4, sizeof s4, who, sizeof who);
    assert_string_equal(who, "127.0.0.1");
    allow_free(&a);

    const char *local[] = {"unix"};
    assert_int_equal(allow_parse(local, 1, &a, &bad), 0);
    assert_true(allowed(&a, "unix"));
    assert_false(allowed(&a, "127.0.0.1"));
    allow_free(&a);

    const char *bads[] = {"127.0.0.1/33", "::1/129", "example.com", "192.0.2.0/",
                          "1.2.3.4/x",    "",        "300.1.1.1",   "1.2.3.4/1234"};
    for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
        const char *two[] = {"127.0.0.1", bads[i]};
        bad = NULL;
        assert_int_equal(allow_parse(two, 2, &a, &bad), -EINVAL);
        assert_ptr_equal(bad, bads[i]);
        assert_null(a.rules);
    }
}

/* ---- the listener, with a toy protocol ---- */

/* Each connection: read one byte; 'e' echoes it back and ends, 'h' holds
 * until EOF, 'w' writes until the write fails (a client that never reads). */
struct toy {
    pthread_mutex_t lock;
    int served, ended, saw_stop;
};

static void toy_serve(void *opaque, struct listener_conn *c)
{
    struct toy *t = opaque;
    pthread_mutex_lock(&t->lock);
    t->served++;
    pthread_mutex_unlock(&t->lock);
    char b;
    if (conn_io_read_full(&c->io, &b, 1) == 0) {
        if (b == 'e') {
            conn_io_write_full(&c->io, &b, 1);
        } else if (b == 'h') {
            char sink[64];
            while (c->io.ops->recv(&c->io, sink, sizeof sink) > 0)
                ;
        } else if (b == 'w') {
            static char buf[65536];
            while (conn_io_write_full(&c->io, buf, sizeof buf) == 0)
                ;
        }
    }
    pthread_mutex_lock(&t->lock);
    t->ended++;
    if (__atomic_load_n(c->stopping, __ATOMIC_ACQUIRE))
        t->saw_stop++;
    pthread_mutex_unlock(&t->lock);
}

static int toy_count(struct toy *t, int *field)
{
    pthread_mutex_lock(&t->lock);
    int v = *field;
    pthread_mutex_unlock(&t->lock);
    return v;
}

struct env {
    char dir[40];
    char path[64];
    char spec[80];
    struct toy toy;
    struct listener *l;
};

static void env_init(struct env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/shoal-listener.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->path, sizeof e->path, "%s/s.sock", e->dir);
    snprintf(e->spec, sizeof e->spec, "unix:%s", e->path);
    pthread_mutex_init(&e->toy.lock, NULL);
}

static int env_start(struct env *e, unsigned max_conns, const struct allow_list *allow)
{
    const char *listen[] = {e->spec};
    struct listener_config cfg = {
        .proto = "toy",
        .listen = listen,
        .nlisten = 1,
        .default_port = "1",
        .max_connections = max_conns,
        .allow = allow,
        .serve = toy_serve,
        .opaque = &e->toy,
    };
    return listener_start(&cfg, &e->l);
}

static void env_done(struct env *e)
{
    listener_stop(e->l);
    struct stat st;
    assert_int_equal(stat(e->path, &st), -1); /* the socket file is gone */
    rmdir(e->dir);
    pthread_mutex_destroy(&e->toy.lock);
}

static int connect_to(struct env *e)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", e->path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* True when the server closed fd within ms (EOF or reset). */
static bool closed_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return false;
    char b;
    return recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

static void wait_for(struct toy *t, int *field, int want)
{
    for (int i = 0; i < 2000 && toy_count(t, field) < want; i++)
        usleep(1000);
    assert_int_equal(toy_count(t, field), want);
}

static void test_listener_serves(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    assert_int_equal(env_start(&e, 0, NULL), 0);
    struct stat st;
    assert_int_equal(stat(e.path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660); /* whatever the umask */

    int fd = connect_to(&e);
    assert_int_equal(send(fd, "e", 1, 0), 1);
    char b = 0;
    assert_int_equal(recv(fd, &b, 1, MSG_WAITALL), 1);
    assert_int_equal(b, 'e');
    assert_true(closed_within(fd, 2000));
    close(fd);
    wait_for(&e.toy, &e.toy.ended, 1);
    for (int i = 0; i < 2000 && listener_connections(e.l) > 0; i++)
        usleep(1000);
    assert_int_equal(listener_connections(e.l), 0);
    env_done(&e);
    assert_int_equal(e.toy.saw_stop, 0);
}

/* Beyond the limit a client is closed before the protocol sees it. */
static void test_listener_limit(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    assert_int_equal(env_start(&e, 1, NULL), 0);
    int a = connect_to(&e);
    assert_int_equal(send(a, "h", 1, 0), 1);
    wait_for(&e.toy, &e.toy.served, 1);
    assert_int_equal(listener_connections(e.l), 1);
    int b = connect_to(&e);
    assert_true(closed_within(b, 2000));
    close(b);
    assert_int_equal(toy_count(&e.toy, &e.toy.served), 1);
    /* The slot comes back when the first one ends. */
    close(a);
    wait_for(&e.toy, &e.toy.ended, 1);
    for (int i = 0; i < 2000 && listener_connections(e.l) > 0; i++)
        usleep(1000);
    int c = connect_to(&e);
    assert_int_equal(send(c, "e", 1, 0), 1);
    char x = 0;
    assert_int_equal(recv(c, &x, 1, MSG_WAITALL), 1);
    close(c);
    env_done(&e);
}

/* A unix client refused by the access list gets no byte and no handler. */
static void test_listener_allow(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct allow_list a;
    const char *only[] = {"127.0.0.1"}, *bad = NULL;
    assert_int_equal(allow_parse(only, 1, &a, &bad), 0);
    assert_int_equal(env_start(&e, 0, &a), 0);
    int fd = connect_to(&e);
    assert_true(closed_within(fd, 2000));
    close(fd);
    assert_int_equal(toy_count(&e.toy, &e.toy.served), 0);
    env_done(&e);
    allow_free(&a);
}

/* Stop: a connected client's handler sees EOF and the stop flag, and stop
 * waits for it. */
static void test_listener_stop_ends_connections(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    assert_int_equal(env_start(&e, 0, NULL), 0);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = connect_to(&e);
        assert_int_equal(send(fds[i], "h", 1, 0), 1);
    }
    wait_for(&e.toy, &e.toy.served, 3);
    uint64_t t0 = now_ns();
    env_done(&e);
    assert_true(now_ns() - t0 < 2000000000ull); /* no grace period needed */
    assert_int_equal(e.toy.ended, 3);
    assert_int_equal(e.toy.saw_stop, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(closed_within(fds[i], 2000));
        close(fds[i]);
    }
}

/* A client that never reads: after the grace period its sends are cut. */
static void test_listener_stop_grace(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    assert_int_equal(env_start(&e, 0, NULL), 0);
    int fd = connect_to(&e);
    assert_int_equal(send(fd, "w", 1, 0), 1);
    wait_for(&e.toy, &e.toy.served, 1);
    usleep(50 * 1000); /* let it fill the socket buffers */
    uint64_t t0 = now_ns();
    env_done(&e);
    uint64_t took = now_ns() - t0;
    assert_true(took >= (LISTENER_STOP_GRACE_S - 1) * 1000000000ull);
    assert_true(took < (LISTENER_STOP_GRACE_S + 5) * 1000000000ull);
    assert_int_equal(e.toy.ended, 1);
    close(fd);
}

/* A given fd is served on the calling thread, and counted meanwhile. */
struct fd_client {
    int fd;
    struct listener *l;
    unsigned seen;
};

static void *fd_client_main(void *arg)
{
    struct fd_client *c = arg;
    for (int i = 0; i < 2000 && listener_connections(c->l) == 0; i++)
        usleep(1000);
    c->seen = listener_connections(c->l);
    char b = 'e';
    if (send(c->fd, &b, 1, 0) == 1 && recv(c->fd, &b, 1, MSG_WAITALL) == 1)
        c->seen += 10;
    close(c->fd);
    return NULL;
}

static void test_listener_serve_fd(void **state)
{
    (void)state;
    struct toy toy = {0};
    pthread_mutex_init(&toy.lock, NULL);
    struct listener_config cfg = {.proto = "toy", .serve = toy_serve, .opaque = &toy};
    struct listener *l;
    assert_int_equal(listener_start(&cfg, &l), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct fd_client c = {.fd = sv[1], .l = l};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fd_client_main, &c), 0);
    listener_serve_fd(l, sv[0]);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(c.seen, 11);
    assert_int_equal(listener_connections(l), 0);
    assert_int_equal(fcntl(sv[0], F_GETFD), -1); /* closed by the listener */
    listener_stop(l);
    pthread_mutex_destroy(&toy.lock);
}

/* A failure to listen is one line in the caller's buffer, and nothing
 * stays open or bound. */
static void test_listener_start_errors(void **state)
{
    (void)state;
    struct toy toy = {0};
    char err[320] = "";
    char dir[] = "/tmp/shoal-listener.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char good[128], missing[160];
    snprintf(good, sizeof good, "unix:%s/ok.sock", dir);
    snprintf(missing, sizeof missing, "unix:%s/no/such/dir.sock", dir);
    const char *listen[] = {good, missing};
    struct listener_config cfg = {
        .proto = "toy",
        .listen = listen,
        .nlisten = 2,
        .default_port = "1",
        .serve = toy_serve,
        .opaque = &toy,
        .err = err,
        .errlen = sizeof err,
    };
    struct listener *l = NULL;
    assert_int_equal(listener_start(&cfg, &l), -ENOENT);
    assert_non_null(strstr(err, "cannot listen on unix:"));
    assert_non_null(strstr(err, "no/such/dir.sock"));
    assert_null(strchr(err, '\n'));
    struct stat st;
    assert_int_equal(stat(good + 5, &st), -1); /* the first one was removed */

    const char *bad[] = {"::1"};
    cfg.listen = bad;
    cfg.nlisten = 1;
    assert_int_equal(listener_start(&cfg, &l), -EINVAL);
    assert_non_null(strstr(err, "invalid listen address '::1'"));

    /* TCP on an ephemeral port works, and stops. */
    const char *tcp[] = {"127.0.0.1:0"};
    cfg.listen = tcp;
    assert_int_equal(listener_start(&cfg, &l), 0);
    listener_stop(l);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_check_listen),
        cmocka_unit_test(test_allow),
        cmocka_unit_test(test_listener_serves),
        cmocka_unit_test(test_listener_limit),
        cmocka_unit_test(test_listener_allow),
        cmocka_unit_test(test_listener_stop_ends_connections),
        cmocka_unit_test(test_listener_stop_grace),
        cmocka_unit_test(test_listener_serve_fd),
        cmocka_unit_test(test_listener_start_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
