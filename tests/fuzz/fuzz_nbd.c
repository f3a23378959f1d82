/* libFuzzer targets for the NBD front end: each input is what a client
 * sends, fed through a socketpair into the real server code path
 * (nbd_serve_connection: handshake, then the transmission loop, the
 * worker pool, the volume layer, the cache and a file back end).
 *
 *   fuzz_nbd           the input starts right after the server's greeting
 *                      (client flags, options, then maybe requests);
 *   fuzz_nbd_transmit  a canned handshake (client flags, STRUCTURED_REPLY,
 *                      SET_META_CONTEXT base:allocation, GO "fuzz") is sent
 *                      first, so the input is all transmission requests.
 *
 * Exports: "fuzz" (1 MiB read-write, the default "" too) and "ro" (a
 * read-only export whose size is not a multiple of 4 KiB). Both live in
 * memfds; the cache (512 KiB) is smaller than the data so inputs also
 * evict. State (cached blocks, written data) carries over between inputs,
 * as it does between a real server's clients.
 *
 * A helper thread plays the client: it writes the input, shuts down its
 * sending side and reads (and drops) everything the server sends until
 * the server closes, so neither side can block the other.
 *
 * Set SHOAL_FUZZ_LOG=debug to see the daemon's log while reproducing. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bufpool.h"
#include "common/log.h"
#include "core/engine.h"
#include "frontend/frontend.h"
#include "frontend/nbd/proto.h"
#include "frontend/nbd/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VOL_SIZE    (1u << 20)
#define RO_SIZE     (64u * 1024 + 100)
#define CACHE_BYTES (512u * 1024)

static struct engine *engine;
static struct nbd_server *server;

static int add_memfd_volume(const char *name, size_t size, bool readonly)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return -errno;
    /* Some non-zero content so reads and dedup have something to do. */
    for (size_t off = 0; off + 4096 <= size; off += 64 * 1024) {
        char blk[4096];
        memset(blk, (int)(off >> 16) + 1, sizeof blk);
        if (pwrite(fd, blk, sizeof blk, (off_t)off) != (ssize_t)sizeof blk)
            return -errno;
    }
    static char paths[2][64];
    static int n;
    char *path = paths[n++ % 2];
    snprintf(path, sizeof paths[0], "/proc/self/fd/%d", fd); /* fd stays open */
    struct volume_config vc = {
        .name = name,
        .backend = {.spec = path, .readonly = readonly},
        .readonly = readonly,
    };
    return engine_add_volume(engine, &vc);
}

/* At exit, stop the server and join its worker threads before the leak
 * check (registered after LeakSanitizer's own handler, so it runs first):
 * a worker still alive, or one the pool was just adding, would otherwise
 * be reported as leaking its per-thread scratch. */
static void stop_all(void)
{
    nbd_server_stop(server);
    server = NULL;
    engine_destroy(engine);
    engine = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    const char *lvl = getenv("SHOAL_FUZZ_LOG");
    if (lvl) {
        char spec[64];
        snprintf(spec, sizeof spec, "all=%s", lvl);
        log_set_spec(spec);
    } else {
        log_set_all(-1); /* malformed input is logged at warn: too noisy */
    }
    bufpool_init(64u << 20);
    struct engine_config ec = {.cache_bytes = CACHE_BYTES};
    if (engine_create(&ec, &engine) < 0 || add_memfd_volume("fuzz", VOL_SIZE, false) < 0 ||
        add_memfd_volume("ro", RO_SIZE, true) < 0) {
        fprintf(stderr, "fuzz: cannot create the engine or its volumes\n");
        abort();
    }
    struct nbd_config nc = {.handshake_timeout_ms = 5000};
    struct frontend_config fc = {.nlisten = 0, .workers = 4, .proto = &nc};
    if (nbd_server_start(engine, &fc, &server) < 0) {
        fprintf(stderr, "fuzz: cannot start the NBD server\n");
        abort();
    }
    atexit(stop_all);
    return 0;
}

/* ---- the client side ---- */

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

static void serve(const uint8_t *prefix, size_t prefix_len, const uint8_t *data, size_t len)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    struct client c = {
        .fd = sv[1], .prefix = prefix, .prefix_len = prefix_len, .data = data, .len = len};
    pthread_t t;
    if (pthread_create(&t, NULL, client_main, &c) != 0)
        abort();
    nbd_serve_connection(server, sv[0]); /* closes sv[0] */
    pthread_join(t, NULL);
}

#ifdef FUZZ_TRANSMIT
/* Client flags + STRUCTURED_REPLY + SET_META_CONTEXT("fuzz", base:allocation)
 * + GO("fuzz"). */
/* clang-format off */
static const uint8_t canned[] = {
    0, 0, 0, 3, /* FIXED_NEWSTYLE | NO_ZEROES */
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 8, 0, 0, 0, 0,
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 10, 0, 0, 0, 31,
    0, 0, 0, 4, 'f', 'u', 'z', 'z', 0, 0, 0, 1, 0, 0, 0, 15,
    'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 7, 0, 0, 0, 10,
    0, 0, 0, 4, 'f', 'u', 'z', 'z', 0, 0,
};
/* clang-format on */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    serve(canned, sizeof canned, data, size);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    serve(NULL, 0, data, size);
    return 0;
}
#endif
