/* See mc_server.h. */
#include "mc_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libmemcached/memcached.h>

static const char *const memcached_paths[] = {"/usr/bin/memcached", "/usr/local/bin/memcached",
                                              "/usr/sbin/memcached"};

static const char *memcached_path(void)
{
    for (size_t i = 0; i < sizeof memcached_paths / sizeof memcached_paths[0]; i++)
        if (access(memcached_paths[i], X_OK) == 0)
            return memcached_paths[i];
    return NULL;
}

bool mc_server_available(void)
{
    return memcached_path() != NULL;
}

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static bool can_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int start_at(struct mc_server_proc *s, uint16_t port)
{
    char p[8];
    snprintf(p, sizeof p, "%u", port);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* Never outlive the test, even one that fails half-way. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const char *argv[] = {memcached_path(),
                              "-U",
                              "0",
                              "-l",
                              "127.0.0.1",
                              "-p",
                              p,
                              "-m",
                              "64",
                              "-t",
                              "2",
                              "-c",
                              "256",
                              NULL,
                              NULL,
                              NULL};
        if (geteuid() == 0) {
            argv[13] = "-u";
            argv[14] = "root";
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (can_connect(port)) {
            s->pid = pid;
            s->port = port;
            return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -EADDRINUSE; /* it exited: most likely the port was taken */
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -ETIMEDOUT;
}

int mc_server_start(struct mc_server_proc *s, uint16_t port)
{
    if (!memcached_path())
        return -ENOENT;
    if (port)
        return start_at(s, port);
    int ret = -EADDRINUSE;
    for (int tries = 0; tries < 5 && ret == -EADDRINUSE; tries++) {
        uint16_t free_port = 0;
        int fd = listen_any(&free_port);
        if (fd < 0)
            return fd;
        close(fd); /* a small race with other users of the port: retried */
        ret = start_at(s, free_port);
    }
    return ret;
}

void mc_server_kill(struct mc_server_proc *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    s->pid = 0;
}

static memcached_st *one_server(uint16_t port)
{
    memcached_st *mc = memcached_create(NULL);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
    memcached_behavior_set(mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 2000);
    memcached_server_add(mc, "127.0.0.1", port);
    return mc;
}

int64_t mc_server_stat(uint16_t port, const char *name)
{
    memcached_st *mc = one_server(port);
    memcached_return_t rc;
    memcached_stat_st *st = memcached_stat(mc, NULL, &rc);
    int64_t v = -1;
    if (st && memcached_success(rc)) {
        char *s = memcached_stat_get_value(mc, st, name, &rc);
        if (s) {
            v = strtoll(s, NULL, 10);
            free(s);
        }
    }
    if (st)
        memcached_stat_free(mc, st);
    memcached_free(mc);
    return v;
}

int mc_server_wait_items(const uint16_t *ports, unsigned n, int64_t want)
{
    int64_t sum = 0;
    for (int i = 0; i < 1000; i++) {
        sum = 0;
        for (unsigned j = 0; j < n; j++)
            sum += mc_server_stat(ports[j], "curr_items");
        if (sum == want)
            return 0;
        usleep(10000);
    }
    fprintf(stderr, "memcached holds %lld items, want %lld\n", (long long)sum, (long long)want);
    return -ETIMEDOUT;
}

int mc_server_set(uint16_t port, const char *key, const void *value, size_t len)
{
    memcached_st *mc = one_server(port);
    memcached_return_t rc = memcached_set(mc, key, strlen(key), value, len, 0, 0);
    memcached_free(mc);
    return memcached_success(rc) ? 0 : -EIO;
}

struct mc_hang {
    int lfd;
    pthread_t thread;
    bool partial;
    bool trickle;      /* the rest of the value follows, a byte per 10 ms */
    unsigned answered; /* atomic */
    int fds[64];
    unsigned left[64]; /* trickle: bytes of the value still to send */
    unsigned nfds;
};

/* A whole binary request at the head of fd's queue: answer it as a hit
 * whose value is 4096 bytes, of which only the first 1000 follow. Returns
 * false while the request is still incomplete (peeked, nothing read). */
static bool answer_partially(struct mc_hang *h, unsigned i)
{
    int fd = h->fds[i];
    uint8_t req[24 + 256];
    ssize_t n = recv(fd, req, sizeof req, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0 || req[0] != 0x80)
        return n != -1 || errno != EAGAIN; /* closed, or not for us */
    if (n < 24)
        return false;
    uint16_t keylen = (uint16_t)(req[2] << 8 | req[3]);
    uint32_t body =
        (uint32_t)req[8] << 24 | (uint32_t)req[9] << 16 | (uint32_t)req[10] << 8 | req[11];
    if (keylen > 200 || body != (uint32_t)keylen + req[4])
        return true; /* not a get */
    if ((size_t)n < 24 + body)
        return false;
    if (recv(fd, req, 24 + body, MSG_DONTWAIT) != (ssize_t)(24 + body))
        return true;
    uint8_t res[24 + 4 + 256 + 1000] = {0};
    uint32_t rbody = 4 + keylen + 4096;
    res[0] = 0x81;
    res[1] = req[1]; /* GETK (or GETKQ) */
    res[2] = req[2];
    res[3] = req[3];
    res[4] = 4; /* the flags */
    res[8] = (uint8_t)(rbody >> 24);
    res[9] = (uint8_t)(rbody >> 16);
    res[10] = (uint8_t)(rbody >> 8);
    res[11] = (uint8_t)rbody;
    memcpy(res + 12, req + 12, 4); /* opaque */
    memcpy(res + 28, req + 24 + req[4], keylen);
    memset(res + 28 + keylen, 'v', 1000);
    size_t len = 28 + (size_t)keylen + 1000;
    if (send(fd, res, len, MSG_NOSIGNAL) == (ssize_t)len)
        __atomic_fetch_add(&h->answered, 1, __ATOMIC_RELAXED);
    if (h->trickle)
        h->left[i] = 4096 - 1000;
    return true;
}

static void *hang_main(void *arg)
{
    struct mc_hang *h = arg;
    /* Partial: connections still waiting for their first request. */
    bool waiting[sizeof h->fds / sizeof h->fds[0]] = {false};
    for (;;) {
        struct pollfd p[1 + sizeof h->fds / sizeof h->fds[0]];
        unsigned np = 0;
        p[np++] = (struct pollfd){.fd = h->lfd, .events = POLLIN};
        unsigned idx[sizeof h->fds / sizeof h->fds[0]];
        for (unsigned i = 0; i < h->nfds; i++) {
            if (waiting[i]) {
                idx[np - 1] = i;
                p[np++] = (struct pollfd){.fd = h->fds[i], .events = POLLIN};
            }
        }
        bool trickling = false;
        for (unsigned i = 0; i < h->nfds; i++)
            trickling |= h->left[i] > 0;
        if (poll(p, np, trickling ? 10 : -1) < 0 && errno != EINTR)
            return NULL;
        for (unsigned i = 0; i < h->nfds; i++)
            if (h->left[i] > 0 && send(h->fds[i], "v", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                h->left[i]--;
        for (unsigned k = 1; k < np; k++)
            if (p[k].revents && answer_partially(h, idx[k - 1]))
                waiting[idx[k - 1]] = false;
        if (!p[0].revents)
            continue;
        int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return NULL; /* the listener was shut down */
        if (h->nfds < sizeof h->fds / sizeof h->fds[0]) {
            waiting[h->nfds] = h->partial;
            h->fds[h->nfds++] = fd; /* kept open, never read (again) */
        } else {
            close(fd);
        }
    }
}

static struct mc_hang *hang_start(uint16_t *port, bool partial, bool trickle)
{
    struct mc_hang *h = calloc(1, sizeof *h);
    *port = 0;
    h->partial = partial;
    h->trickle = trickle;
    h->lfd = listen_any(port);
    if (h->lfd < 0 || pthread_create(&h->thread, NULL, hang_main, h) != 0) {
        free(h);
        return NULL;
    }
    return h;
}

struct mc_hang *mc_hang_start(uint16_t *port)
{
    return hang_start(port, false, false);
}

struct mc_hang *mc_hang_start_partial(uint16_t *port)
{
    return hang_start(port, true, false);
}

struct mc_hang *mc_hang_start_trickle(uint16_t *port)
{
    return hang_start(port, true, true);
}

unsigned mc_hang_answered(struct mc_hang *h)
{
    return __atomic_load_n(&h->answered, __ATOMIC_RELAXED);
}

void mc_hang_stop(struct mc_hang *h)
{
    shutdown(h->lfd, SHUT_RDWR);
    pthread_join(h->thread, NULL);
    close(h->lfd);
    for (unsigned i = 0; i < h->nfds; i++)
        close(h->fds[i]);
    free(h);
}
