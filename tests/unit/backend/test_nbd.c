/* Unit tests for the NBD back end against a real nbdkit started by the test:
 * the data path, splitting, concurrency, read-only exports, and what happens
 * when the upstream dies, hangs or comes back. Skipped without nbdkit. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "common/util.h"

#define MAX_ARGS 16

struct fixture {
    char dir[64];
    char sock[96];
    char file[128];
    char pidfile[128];
    char uri[256];
    pid_t pid;
    const char *args[MAX_ARGS]; /* nbdkit arguments after -U SOCK */
};

static bool have_nbdkit(void)
{
    return system("nbdkit --version >/dev/null 2>&1") == 0;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/shoal-be-nbd-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->sock, sizeof(fx->sock), "%s/nbd.sock", fx->dir);
    snprintf(fx->file, sizeof(fx->file), "%s/disk.img", fx->dir);
    snprintf(fx->pidfile, sizeof(fx->pidfile), "%s/nbdkit.pid", fx->dir);
    snprintf(fx->uri, sizeof(fx->uri), "nbd+unix:///?socket=%s", fx->sock);
    fx->pid = -1;
    /* Bound every wait in these tests, even if something regresses. */
    setenv("SHOAL_NBD_TIMEOUT_MS", "10000", 1);
    *state = fx;
    return 0;
}

static void stop_nbdkit(struct fixture *fx, int sig)
{
    if (fx->pid <= 0)
        return;
    kill(fx->pid, sig);
    waitpid(fx->pid, NULL, 0);
    fx->pid = -1;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx->pid > 0) {
        kill(fx->pid, SIGCONT);
        stop_nbdkit(fx, SIGKILL);
    }
    unlink(fx->sock);
    unlink(fx->file);
    unlink(fx->pidfile);
    rmdir(fx->dir);
    free(fx);
    unsetenv("SHOAL_NBD_TIMEOUT_MS");
    return 0;
}

/* Start nbdkit on fx->sock with fx->args and wait until it accepts: it
 * writes the pid file once the socket is listening. */
static void start_nbdkit(struct fixture *fx)
{
    unlink(fx->sock); /* left behind by a SIGKILLed nbdkit */
    unlink(fx->pidfile);
    const char *argv[MAX_ARGS + 8];
    int n = 0;
    argv[n++] = "nbdkit";
    argv[n++] = "-f";
    argv[n++] = "--exit-with-parent";
    argv[n++] = "-P";
    argv[n++] = fx->pidfile;
    argv[n++] = "-U";
    argv[n++] = fx->sock;
    for (int i = 0; fx->args[i]; i++)
        argv[n++] = fx->args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execvp("nbdkit", (char *const *)argv);
        _exit(127);
    }
    fx->pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (access(fx->pidfile, F_OK) == 0)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fx->pid = -1;
            fail_msg("nbdkit exited early (status %d)", status);
        }
        usleep(10000);
    }
    fail_msg("nbdkit did not start listening on %s", fx->sock);
}

static void make_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static struct backend *open_nbd(struct fixture *fx, unsigned conns)
{
    struct backend_params p = {.spec = fx->uri, .conns = conns};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), 0);
    assert_non_null(be);
    assert_string_equal(be->ops->name, "nbd");
    return be;
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((seed * 131 + i) * 2654435761u >> 11);
}

#define REQUIRE_NBDKIT()                                                                           \
    do {                                                                                           \
        if (!have_nbdkit())                                                                        \
            skip();                                                                                \
    } while (0)

/* ---- extents helpers */

struct extent_log {
    unsigned n;
    uint64_t off[256], len[256];
    uint32_t flags[256];
};

static int log_extent(void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
    struct extent_log *l = opaque;
    assert_true(l->n < 256);
    l->off[l->n] = offset;
    l->len[l->n] = length;
    l->flags[l->n] = flags;
    l->n++;
    return 0;
}

static uint32_t flags_at(const struct extent_log *l, uint64_t at)
{
    for (unsigned i = 0; i < l->n; i++)
        if (at >= l->off[i] && at < l->off[i] + l->len[i])
            return l->flags[i];
    fail_msg("offset %llu not covered", (unsigned long long)at);
    return 0;
}

/* ---- tests */

static void test_basic(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    const char *args[] = {"memory", "64M", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);

    struct backend *be = open_nbd(fx, 0);
    assert_int_equal(be->size, 64 << 20);
    assert_int_equal(be->min_block, 1);
    uint32_t want = BE_CAN_FLUSH | BE_CAN_FUA | BE_CAN_TRIM | BE_CAN_ZERO | BE_CAN_FAST_ZERO |
                    BE_CAN_EXTENTS | BE_CAN_MULTI_CONN;
    assert_int_equal(be->caps & want, want);
    assert_false(be->caps & BE_READONLY);
    char desc[512];
    be->ops->describe(be, desc, sizeof(desc));
    assert_non_null(strstr(desc, "nbd nbd+unix://"));
    assert_non_null(strstr(desc, "64.0 MiB"));

    static uint8_t w[1 << 20], r[1 << 20];
    /* Unaligned read/write round trip. */
    fill_pattern(w, sizeof(w), 1);
    assert_int_equal(be->ops->pwrite(be, w, 77777, 12345, 0), 0);
    assert_int_equal(be->ops->pread(be, r, 77777, 12345), 0);
    assert_memory_equal(w, r, 77777);
    /* FUA write, then flush. */
    fill_pattern(w, sizeof(w), 2);
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 3 << 20, BE_FUA), 0);
    assert_int_equal(be->ops->flush(be), 0);
    assert_int_equal(be->ops->pread(be, r, sizeof(r), 3 << 20), 0);
    assert_memory_equal(w, r, sizeof(r));
    /* Zero, with and without NO_HOLE, and fast. */
    assert_int_equal(backend_zero(be, 4096, (3 << 20) + 100, 0), 0);
    assert_int_equal(backend_zero(be, 8192, (3 << 20) + 65536, BE_NO_HOLE), 0);
    assert_int_equal(backend_zero(be, 4096, (3 << 20) + 200000, BE_FAST_ZERO | BE_FUA), 0);
    assert_int_equal(be->ops->pread(be, r, sizeof(r), 3 << 20), 0);
    assert_true(buf_is_zero(r + 100, 4096));
    assert_int_equal(r[99], w[99]);
    assert_int_equal(r[100 + 4096], w[100 + 4096]);
    assert_true(buf_is_zero(r + 65536, 8192));
    assert_true(buf_is_zero(r + 200000, 4096));
    assert_memory_equal(r + 300000, w + 300000, 1000);
    /* Trim: the memory plugin really discards, so it reads back zeros. */
    assert_int_equal(backend_trim(be, 64 << 10, (3 << 20) + (512 << 10), 0), 0);
    assert_int_equal(be->ops->pread(be, r, 64 << 10, (3 << 20) + (512 << 10)), 0);
    assert_true(buf_is_zero(r, 64 << 10));

    /* Extents: never-written memory is a hole, written memory is data. */
    struct extent_log l = {0};
    assert_int_equal(backend_extents(be, 16 << 20, 0, log_extent, &l), 0);
    assert_true(l.n >= 2);
    assert_int_equal(l.off[0], 0);
    uint64_t pos = 0;
    for (unsigned i = 0; i < l.n; i++) {
        assert_int_equal(l.off[i], pos);
        pos += l.len[i];
    }
    assert_int_equal(pos, 16 << 20);
    assert_int_equal(flags_at(&l, 3 << 20) & BE_EXTENT_HOLE, 0);
    assert_true(flags_at(&l, 10 << 20) & BE_EXTENT_HOLE);
    backend_close(be);
}

static void test_split_and_min_block(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    /* The server refuses anything over 64 KiB or not 512-aligned. */
    const char *args[] = {"--filter=blocksize-policy",
                          "memory",
                          "16M",
                          "blocksize-minimum=512",
                          "blocksize-preferred=4096",
                          "blocksize-maximum=65536",
                          "blocksize-error-policy=error",
                          NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);

    struct backend *be = open_nbd(fx, 1);
    assert_int_equal(be->min_block, 512);
    static uint8_t w[3 << 20], r[3 << 20];
    fill_pattern(w, sizeof(w), 5);
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 1 << 20, BE_FUA), 0);
    assert_int_equal(be->ops->pread(be, r, sizeof(r), 1 << 20), 0);
    assert_memory_equal(w, r, sizeof(r));
    assert_int_equal(backend_zero(be, 1 << 20, 1 << 20, 0), 0);
    assert_int_equal(be->ops->pread(be, r, 1 << 20, 1 << 20), 0);
    assert_true(buf_is_zero(r, 1 << 20));
    assert_int_equal(backend_trim(be, 1 << 20, 2 << 20, 0), 0);
    /* Unaligned requests are the caller's job; they fail, never hang. */
    assert_int_equal(be->ops->pread(be, r, 100, 0), -EINVAL);
    backend_close(be);
}

struct worker {
    struct backend *be;
    unsigned id;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    const uint64_t region = 1 << 20, base = (uint64_t)wk->id * region;
    uint8_t *w = malloc(region), *r = malloc(region);
    unsigned seed = wk->id * 7919 + 1;
    for (unsigned it = 0; it < 150 && w && r; it++) {
        uint32_t len = 1 + (uint32_t)(rand_r(&seed) % (256 << 10));
        uint64_t off = (uint64_t)rand_r(&seed) % (region - len);
        fill_pattern(w, len, wk->id * 100000 + it);
        if (backend_pwrite(wk->be, w, len, base + off, (it % 10 == 0) ? BE_FUA : 0) < 0 ||
            wk->be->ops->pread(wk->be, r, len, base + off) < 0 || memcmp(w, r, len) != 0)
            wk->failures++;
    }
    free(w);
    free(r);
    return NULL;
}

static void test_concurrency(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    const char *args[] = {"memory", "16M", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);

    struct backend *be = open_nbd(fx, 0);
    pthread_t th[8];
    struct worker wk[8];
    for (unsigned i = 0; i < 8; i++) {
        wk[i] = (struct worker){.be = be, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &wk[i]), 0);
    }
    for (unsigned i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(wk[i].failures, 0);
    }
    backend_close(be);
}

static void test_readonly(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    const char *args[] = {"-r", "memory", "1M", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);

    struct backend *be = open_nbd(fx, 0);
    assert_true(be->caps & BE_READONLY);
    uint8_t b[4096];
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), -EPERM);
    assert_int_equal(backend_zero(be, 4096, 0, 0), -EPERM);
    backend_close(be);
}

static void test_connect_failure(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    struct backend_params p = {.spec = fx->uri};
    struct backend *be = NULL;
    uint64_t t0 = now_ns();
    assert_true(backend_open(&p, &be) < 0);
    assert_null(be);
    assert_true(now_ns() - t0 < 5000000000ull);
}

struct bg_read {
    struct backend *be;
    int result;
    uint64_t elapsed_ns;
};

static void *bg_read_main(void *arg)
{
    struct bg_read *b = arg;
    uint8_t buf[4096];
    uint64_t t0 = now_ns();
    b->result = b->be->ops->pread(b->be, buf, sizeof(buf), 0);
    b->elapsed_ns = now_ns() - t0;
    return NULL;
}

/* Commands from different threads overlap on one connection: with a 300 ms
 * read delay, 8 concurrent reads take about 300 ms, not 8 x 300 ms. */
static void test_not_serialised(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    const char *args[] = {"--filter=delay", "memory", "1M", "rdelay=300ms", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);
    struct backend *be = open_nbd(fx, 1);
    pthread_t th[8];
    struct bg_read bg[8];
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < 8; i++) {
        bg[i] = (struct bg_read){.be = be};
        assert_int_equal(pthread_create(&th[i], NULL, bg_read_main, &bg[i]), 0);
    }
    for (unsigned i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(bg[i].result, 0);
        assert_true(bg[i].elapsed_ns >= 300000000ull);
    }
    assert_true(now_ns() - t0 < 1500000000ull);
    backend_close(be);
}

static void test_reconnect(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    make_file(fx->file, 4 << 20);
    /* Reads take 3 s, so one is surely in flight when the server dies. */
    const char *args[] = {"--filter=delay", "file", fx->file, "rdelay=3", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);

    struct backend *be = open_nbd(fx, 2);
    uint8_t w[8192], r[8192];
    fill_pattern(w, sizeof(w), 77);
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 0, BE_FUA), 0);

    struct bg_read bg = {.be = be};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_read_main, &bg), 0);
    usleep(300000);
    stop_nbdkit(fx, SIGKILL);
    pthread_join(th, NULL);
    assert_int_equal(bg.result, -EIO);
    assert_true(bg.elapsed_ns < 2500000000ull); /* failed, did not wait for the reply */

    /* With the server gone, requests fail promptly on every connection. */
    for (int i = 0; i < 4; i++) {
        uint64_t t0 = now_ns();
        assert_int_equal(be->ops->pread(be, r, sizeof(r), 0), -EIO);
        assert_true(now_ns() - t0 < 3000000000ull);
    }

    /* The server comes back (without the delay); after the 1 s reconnect
     * throttle the next request reconnects and sees the data. */
    const char *args2[] = {"file", fx->file, NULL};
    memset(fx->args, 0, sizeof(fx->args));
    memcpy(fx->args, args2, sizeof(args2));
    start_nbdkit(fx);
    usleep(1100000);
    for (int i = 0; i < 2; i++) { /* both connections */
        memset(r, 0, sizeof(r));
        assert_int_equal(be->ops->pread(be, r, sizeof(r), 0), 0);
        assert_memory_equal(w, r, sizeof(r));
    }
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 65536, 0), 0);
    backend_close(be);
}

struct hammer {
    struct backend *be;
    unsigned id;
    atomic_bool *stop;
    unsigned ok, eio, other;
};

static void *hammer_main(void *arg)
{
    struct hammer *hm = arg;
    static __thread uint8_t buf[64 << 10];
    unsigned seed = hm->id + 1;
    while (!atomic_load(hm->stop)) {
        uint64_t off = (uint64_t)(rand_r(&seed) % 64) * sizeof(buf);
        int r = (rand_r(&seed) & 1) ? hm->be->ops->pread(hm->be, buf, sizeof(buf), off)
                                    : backend_pwrite(hm->be, buf, sizeof(buf), off, 0);
        if (r == 0)
            hm->ok++;
        else if (r == -EIO)
            hm->eio++;
        else
            hm->other++;
    }
    return NULL;
}

/* The upstream dies under load: every request still returns (0 or -EIO),
 * and the back end recovers once the server is back. */
static void test_kill_under_load(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    make_file(fx->file, 4 << 20);
    const char *args[] = {"file", fx->file, NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);
    struct backend *be = open_nbd(fx, 4);

    atomic_bool stop = false;
    pthread_t th[8];
    struct hammer hm[8];
    for (unsigned i = 0; i < 8; i++) {
        hm[i] = (struct hammer){.be = be, .id = i, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &hm[i]), 0);
    }
    usleep(300000);
    stop_nbdkit(fx, SIGKILL);
    usleep(300000);
    uint64_t t0 = now_ns();
    atomic_store(&stop, true);
    unsigned ok = 0, eio = 0;
    for (unsigned i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(hm[i].other, 0);
        ok += hm[i].ok;
        eio += hm[i].eio;
    }
    assert_true(now_ns() - t0 < 3000000000ull); /* nobody was stuck */
    assert_true(ok > 0);
    assert_true(eio > 0);

    start_nbdkit(fx);
    usleep(1100000);
    uint8_t b[4096];
    for (int i = 0; i < 4; i++)
        assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    backend_close(be);
}

static void test_timeout(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    const char *args[] = {"memory", "1M", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);
    setenv("SHOAL_NBD_TIMEOUT_MS", "1000", 1);
    struct backend *be = open_nbd(fx, 1);

    /* A server that stops answering: the request gives up after ~1 s. */
    kill(fx->pid, SIGSTOP);
    int status;
    assert_int_equal(waitpid(fx->pid, &status, WUNTRACED), fx->pid);
    assert_true(WIFSTOPPED(status));
    uint8_t b[4096];
    uint64_t t0 = now_ns();
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), -EIO);
    uint64_t el = now_ns() - t0;
    assert_true(el >= 900000000ull);
    assert_true(el < 5000000000ull);

    /* It wakes up; the dropped connection is re-established. */
    kill(fx->pid, SIGCONT);
    usleep(1100000);
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    backend_close(be);
}

/* ---- pread_async */

/* n reads in flight at once; each records its status and thread. */
struct async_set {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned left;
    struct async_one {
        struct be_aio a;
        int status, done_calls;
        bool on_caller;
    } one[64];
    pthread_t caller;
};

/* For a read that must be refused: done must never run. */
static void async_never(struct be_aio *a, int status)
{
    (void)a;
    (void)status;
    fail_msg("done called for a read pread_async refused");
}

/* The set being run (done has no other way to it), and its done. */
static struct async_set *g_set;
static void async_done_counted(struct be_aio *a, int status)
{
    struct async_set *set = g_set;
    struct async_one *o = (struct async_one *)((char *)a - offsetof(struct async_one, a));
    pthread_mutex_lock(&set->lock);
    o->status = status;
    o->done_calls++;
    o->on_caller = pthread_equal(pthread_self(), set->caller);
    set->left--;
    pthread_cond_broadcast(&set->cond);
    pthread_mutex_unlock(&set->lock);
}

/* Start n requests of 4 KiB, request i at base + i * stride from bufs +
 * i * 4 KiB (writes: every other one FUA); wait (up to wait_s) until done
 * was called for each started one; returns how many finished. */
static unsigned async_run(struct backend *be, struct async_set *set, unsigned n, uint8_t *bufs,
                          bool write, uint64_t base, uint64_t stride, unsigned wait_s,
                          unsigned *started)
{
    memset(set, 0, sizeof *set);
    pthread_mutex_init(&set->lock, NULL);
    pthread_cond_init(&set->cond, NULL);
    set->caller = pthread_self();
    g_set = set;
    *started = 0;
    pthread_mutex_lock(&set->lock);
    for (unsigned i = 0; i < n; i++) {
        set->one[i].a.done = async_done_counted;
        set->one[i].status = 1;
        set->left++;
        pthread_mutex_unlock(&set->lock);
        uint8_t *buf = bufs + (size_t)i * 4096;
        uint64_t off = base + i * stride;
        int r =
            write ? be->ops->pwrite_async(be, buf, 4096, off, (i & 1) ? BE_FUA : 0, &set->one[i].a)
                  : be->ops->pread_async(be, buf, 4096, off, &set->one[i].a);
        pthread_mutex_lock(&set->lock);
        if (r == 0) {
            (*started)++;
        } else {
            set->left--;
            set->one[i].status = r;
        }
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_s;
    while (set->left > 0)
        if (pthread_cond_timedwait(&set->cond, &set->lock, &ts) == ETIMEDOUT)
            break;
    unsigned fin = *started - set->left;
    pthread_mutex_unlock(&set->lock);
    return fin;
}

/* n reads, request i of [i * 8 KiB, +4 KiB). */
static unsigned async_reads(struct backend *be, struct async_set *set, unsigned n, uint8_t *bufs,
                            unsigned wait_s, unsigned *started)
{
    return async_run(be, set, n, bufs, false, 0, 8192, wait_s, started);
}

static void test_async(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    make_file(fx->file, 1 << 20);
    const char *args[] = {"file", fx->file, NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);
    setenv("SHOAL_NBD_TIMEOUT_MS", "1000", 1);
    struct backend *be = open_nbd(fx, 2);
    assert_non_null(be->ops->pread_async);
    static uint8_t w[1 << 20], bufs[64 * 4096];
    fill_pattern(w, sizeof(w), 5);
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 0, BE_FUA), 0);

    /* 64 reads in flight over 2 connections: each answered once, on a
     * back end thread, with the bytes. */
    static struct async_set set;
    unsigned started;
    assert_int_equal(async_reads(be, &set, 64, bufs, 10, &started), 64);
    assert_int_equal(started, 64);
    for (unsigned i = 0; i < 64; i++) {
        assert_int_equal(set.one[i].status, 0);
        assert_int_equal(set.one[i].done_calls, 1);
        assert_false(set.one[i].on_caller);
        assert_memory_equal(bufs + (size_t)i * 4096, w + (size_t)i * 8192, 4096);
    }
    /* Writes: 8 in flight (every other one FUA), then read back. */
    static uint8_t w2[8 * 4096];
    fill_pattern(w2, sizeof(w2), 9);
    {
        static struct async_set ws;
        unsigned wstarted;
        assert_int_equal(async_run(be, &ws, 8, w2, true, 512u << 10, 4096, 10, &wstarted), 8);
        assert_int_equal(wstarted, 8);
        for (unsigned i = 0; i < 8; i++) {
            assert_int_equal(ws.one[i].status, 0);
            assert_int_equal(ws.one[i].done_calls, 1);
        }
        uint8_t back[sizeof(w2)];
        assert_int_equal(be->ops->pread(be, back, sizeof(back), 512u << 10), 0);
        assert_memory_equal(back, w2, sizeof(back));
        memcpy(w + (512u << 10), w2, sizeof(w2));
    }

    /* Too large for one command: refused, for a worker. */
    uint8_t *big = malloc(64u << 20);
    struct be_aio a = {.done = async_never};
    assert_int_equal(be->ops->pread_async(be, big, 64u << 20, 0, &a), -EAGAIN);
    free(big);

    /* A server that stops answering: every read in flight fails after the
     * timeout (1 s), none hangs. */
    kill(fx->pid, SIGSTOP);
    int status;
    assert_int_equal(waitpid(fx->pid, &status, WUNTRACED), fx->pid);
    uint64_t t0 = now_ns();
    unsigned fin = async_reads(be, &set, 16, bufs, 10, &started);
    assert_int_equal(fin, started); /* none hangs */
    uint64_t el = now_ns() - t0;
    assert_true(started > 0);
    for (unsigned i = 0; i < 16; i++)
        assert_true(set.one[i].status == -EIO || set.one[i].status == -EAGAIN);
    assert_true(el >= 900000000ull);
    assert_true(el < 5000000000ull);
    /* nbdkit 1.32 may abort when continued after its clients left: a
     * fresh one. */
    kill(fx->pid, SIGCONT);
    stop_nbdkit(fx, SIGKILL);
    start_nbdkit(fx);

    /* Killed with reads in flight: they fail at once; after a reconnect
     * (a blocking read does it) asynchronous reads work again. */
    usleep(1100000);
    uint8_t b[4096];
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0); /* both connections */
    stop_nbdkit(fx, SIGKILL);
    fin = async_reads(be, &set, 16, bufs, 5, &started);
    assert_int_equal(fin, started);
    for (unsigned i = 0; i < 16; i++)
        assert_true(set.one[i].status == -EIO || set.one[i].status == -EAGAIN);
    start_nbdkit(fx);
    usleep(1100000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    memset(bufs, 0, sizeof bufs);
    assert_int_equal(async_reads(be, &set, 8, bufs, 10, &started), 8);
    assert_int_equal(started, 8);
    for (unsigned i = 0; i < 8; i++) {
        assert_int_equal(set.one[i].status, 0);
        assert_memory_equal(bufs + (size_t)i * 4096, w + (size_t)i * 8192, 4096);
    }
    backend_close(be);
}

/* How many "Read" commands nbdkit's log filter saw at offsets [lo, hi)
 * on each connection (by nbdkit's connection number, 1-based). */
static void reads_per_conn(const char *log, uint64_t lo, uint64_t hi, unsigned per[8])
{
    memset(per, 0, 8 * sizeof *per);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        const char *c = strstr(line, "connection="), *r = strstr(line, " Read id=");
        const char *o = r ? strstr(r, "offset=") : NULL;
        if (!c || !o)
            continue;
        unsigned conn = (unsigned)strtoul(c + 11, NULL, 10);
        uint64_t off = strtoull(o + 7, NULL, 16);
        if (off >= lo && off < hi && conn < 8)
            per[conn]++;
    }
    fclose(f);
}

/* Which connection a command takes (pick_conn, pick_conn_rr), seen from
 * the server's side: asynchronous reads one at a time stay on one
 * connection (the least busy, the first of equals); 16 in flight at once
 * spread 8 and 8; blocking reads take the connections in turn. */
static void test_least_busy(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    char log[160];
    snprintf(log, sizeof log, "%s/nbdkit.log", fx->dir);
    char logarg[180];
    snprintf(logarg, sizeof logarg, "logfile=%s", log);
    /* The delay keeps all 16 in flight while they are sent. */
    const char *args[] = {"--filter=log", "--filter=delay", "memory", "4M",
                          "rdelay=50ms",  logarg,           NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);
    struct backend *be = open_nbd(fx, 2);
    static uint8_t bufs[16 * 4096];
    static struct async_set set;
    unsigned started, per[8];

    for (unsigned i = 0; i < 8; i++) /* [0, 64 KiB): one at a time */
        assert_int_equal(async_run(be, &set, 1, bufs, false, (uint64_t)i * 8192, 0, 10, &started),
                         1);
    assert_int_equal(async_run(be, &set, 16, bufs, false, 1u << 20, 8192, 10, &started), 16);
    uint8_t b[4096];
    for (unsigned i = 0; i < 4; i++) /* blocking, [2 MiB, +32 KiB) */
        assert_int_equal(be->ops->pread(be, b, sizeof b, (2u << 20) + (uint64_t)i * 8192), 0);
    backend_close(be);
    stop_nbdkit(fx, SIGTERM); /* the log is complete */

    reads_per_conn(log, 0, 1u << 20, per);
    unsigned on = 0, most = 0;
    for (unsigned i = 0; i < 8; i++) {
        on += per[i] > 0;
        most = per[i] > most ? per[i] : most;
    }
    assert_int_equal(most, 8);
    assert_int_equal(on, 1);
    reads_per_conn(log, 1u << 20, 2u << 20, per);
    assert_int_equal(per[1] + per[2], 16);
    assert_int_equal(per[1], 8);
    assert_int_equal(per[2], 8);
    reads_per_conn(log, 2u << 20, 3u << 20, per);
    assert_int_equal(per[1], 2);
    assert_int_equal(per[2], 2);
    unlink(log);
}

static void test_fault_over_nbd(void **state)
{
    REQUIRE_NBDKIT();
    struct fixture *fx = *state;
    const char *args[] = {"memory", "1M", NULL};
    memcpy(fx->args, args, sizeof(args));
    start_nbdkit(fx);
    char spec[400];
    /* The inner spec has colons of its own. */
    snprintf(spec, sizeof(spec), "fault:rerror=1,error=ENOSPC:%s", fx->uri);
    struct backend_params p = {.spec = spec};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), 0);
    assert_string_equal(be->next->ops->name, "nbd");
    uint8_t b[512] = {0};
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), -ENOSPC);
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), 0);
    backend_close(be);
}

/* ---- a hostile upstream
 *
 * A minimal NBD server (fixed newstyle, structured replies, multi-conn) on
 * fx->sock, in threads of the test; its replies to reads follow `mode`. Byte o of its export is
 * hostile_byte(o). libnbd checks each chunk's framing and range but not that a read's chunks cover
 * it exactly once; the back end must, or a short reply leaves stale bytes in the buffer and they
 * are served (and cached) as data. */

enum hostile_mode {
    HM_GOOD,         /* one data chunk */
    HM_OUT_OF_ORDER, /* second half, then first half: allowed */
    HM_HOLE,         /* a hole for the second half, then the data: allowed */
    HM_HALF,         /* only the first half, then done */
    HM_NOTHING,      /* done with no data at all */
    HM_OVERLAP,      /* the first half twice: as many bytes as asked */
    HM_DROP,         /* the connection is closed instead of a reply */
    HM_SIZES,        /* connections after the first see a 2 MiB export */
};

#define HOSTILE_MAX_CONNS 8

struct hostile {
    int lfd;
    pthread_t thread;
    atomic_int mode;
    unsigned nconns;
    struct hostile_conn {
        struct hostile *hs;
        int fd;
        pthread_t thread;
    } conn[HOSTILE_MAX_CONNS];
};

static uint8_t hostile_byte(uint64_t o)
{
    return (uint8_t)(o * 7 + (o >> 9) + 1);
}

static bool h_write(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool h_read(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = read(fd, b, n);
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

static void put_be(uint8_t *p, uint64_t v, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

static bool h_optreply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    uint8_t h[20];
    put_be(h, 0x3e889045565a9ull, 8);
    put_be(h + 8, opt, 4);
    put_be(h + 12, type, 4);
    put_be(h + 16, len, 4);
    return h_write(fd, h, sizeof(h)) && h_write(fd, data, len);
}

/* A structured reply chunk: OFFSET_DATA (type 1) of [off, off + len) or
 * OFFSET_HOLE (type 2), or NONE (type 0); DONE when last. */
static bool h_chunk(int fd, uint64_t cookie, uint16_t type, bool last, uint64_t off, uint32_t len)
{
    uint8_t h[32];
    uint32_t plen = type == 0 ? 0 : type == 1 ? 8 + len : 12;
    put_be(h, 0x668e33ef, 4);
    put_be(h + 4, last ? 1 : 0, 2);
    put_be(h + 6, type, 2);
    put_be(h + 8, cookie, 8);
    put_be(h + 16, plen, 4);
    put_be(h + 20, off, 8);
    put_be(h + 28, len, 4);
    if (!h_write(fd, h, type == 0 ? 20 : type == 1 ? 28 : 32))
        return false;
    if (type != 1)
        return true;
    uint8_t *d = malloc(len ? len : 1);
    for (uint32_t i = 0; i < len; i++)
        d[i] = hostile_byte(off + i);
    bool ok = h_write(fd, d, len);
    free(d);
    return ok;
}

static bool h_read_reply(int fd, int mode, uint64_t cookie, uint64_t off, uint32_t len)
{
    uint32_t half = len / 2;
    switch (mode) {
    case HM_OUT_OF_ORDER:
        return h_chunk(fd, cookie, 1, false, off + half, len - half) &&
               h_chunk(fd, cookie, 1, true, off, half);
    case HM_HOLE:
        return h_chunk(fd, cookie, 2, false, off + half, len - half) &&
               h_chunk(fd, cookie, 1, true, off, half);
    case HM_HALF:
        return h_chunk(fd, cookie, 1, true, off, half);
    case HM_NOTHING:
        return h_chunk(fd, cookie, 0, true, 0, 0);
    case HM_OVERLAP:
        return h_chunk(fd, cookie, 1, false, off, half) &&
               h_chunk(fd, cookie, 1, true, off, len - half);
    default:
        return h_chunk(fd, cookie, 1, true, off, len);
    }
}

static void *hostile_conn_main(void *arg)
{
    struct hostile_conn *hc = arg;
    struct hostile *hs = hc->hs;
    int fd = hc->fd;
    uint8_t b[4096];
    memcpy(b, "NBDMAGICIHAVEOPT\0\3", 18); /* fixed newstyle, no zeroes */
    if (!h_write(fd, b, 18) || !h_read(fd, b, 4))
        goto out;
    for (;;) { /* options until GO */
        if (!h_read(fd, b, 16))
            goto out;
        uint32_t opt = (uint32_t)get_be(b + 8, 4), len = (uint32_t)get_be(b + 12, 4);
        if (len > sizeof(b) || !h_read(fd, b, len))
            goto out;
        if (opt == 7) { /* GO: export info (1 MiB, flush), then ack */
            uint8_t info[12];
            put_be(info, 0, 2);
            bool later = hc != &hs->conn[0] && atomic_load(&hs->mode) == HM_SIZES;
            put_be(info + 2, later ? 2 << 20 : 1 << 20, 8);
            put_be(info + 10, 1 | 4 | 256, 2); /* flags: flush, multi-conn */
            if (!h_optreply(fd, opt, 3, info, sizeof(info)) || !h_optreply(fd, opt, 1, NULL, 0))
                goto out;
            break;
        }
        /* STRUCTURED_REPLY: ack; anything else: unsupported */
        if (!h_optreply(fd, opt, opt == 8 ? 1 : 0x80000001u, NULL, 0))
            goto out;
    }
    for (;;) {
        if (!h_read(fd, b, 28))
            break;
        uint16_t type = (uint16_t)get_be(b + 6, 2);
        uint64_t cookie = get_be(b + 8, 8), off = get_be(b + 16, 8);
        uint32_t len = (uint32_t)get_be(b + 24, 4);
        if (type == 2 || (type == 0 && atomic_load(&hs->mode) == HM_DROP)) /* DISC */
            break;
        bool ok = type == 0 ? h_read_reply(fd, atomic_load(&hs->mode), cookie, off, len)
                            : h_chunk(fd, cookie, 0, true, 0, 0);
        if (!ok)
            break;
    }
out:
    close(fd);
    return NULL;
}

/* Accept connections (each served by its own thread) until lfd is shut. */
static void *hostile_main(void *arg)
{
    struct hostile *hs = arg;
    while (hs->nconns < HOSTILE_MAX_CONNS) {
        struct hostile_conn *hc = &hs->conn[hs->nconns];
        hc->hs = hs;
        hc->fd = accept(hs->lfd, NULL, NULL);
        if (hc->fd < 0)
            break;
        if (pthread_create(&hc->thread, NULL, hostile_conn_main, hc) != 0) {
            close(hc->fd);
            break;
        }
        hs->nconns++;
    }
    return NULL;
}

/* After the back end is closed: stop accepting, wait for every connection. */
static void hostile_stop(struct hostile *hs)
{
    shutdown(hs->lfd, SHUT_RDWR);
    pthread_join(hs->thread, NULL);
    for (unsigned i = 0; i < hs->nconns; i++)
        pthread_join(hs->conn[i].thread, NULL);
    close(hs->lfd);
}

static void hostile_start(struct fixture *fx, struct hostile *hs)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx->sock);
    hs->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(hs->lfd >= 0);
    assert_int_equal(bind(hs->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(hs->lfd, 4), 0);
    atomic_store(&hs->mode, HM_GOOD);
    hs->nconns = 0;
    assert_int_equal(pthread_create(&hs->thread, NULL, hostile_main, hs), 0);
}

/* What a read of [off, off + len) must return under mode (a good one). */
static void hostile_expect(int mode, uint8_t *want, uint64_t off, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        want[i] = mode == HM_HOLE && i >= len / 2 ? 0 : hostile_byte(off + i);
}

static void async_one_done(struct be_aio *a, int status);
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int status;
    bool done;
} g_one = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false};

static void async_one_done(struct be_aio *a, int status)
{
    (void)a;
    pthread_mutex_lock(&g_one.lock);
    g_one.status = status;
    g_one.done = true;
    pthread_cond_signal(&g_one.cond);
    pthread_mutex_unlock(&g_one.lock);
}

/* One pread_async, waited for: its status. */
static int async_read_one(struct backend *be, void *buf, uint32_t len, uint64_t off)
{
    struct be_aio a = {.done = async_one_done};
    g_one.done = false;
    int r = be->ops->pread_async(be, buf, len, off, &a);
    if (r < 0)
        return r;
    pthread_mutex_lock(&g_one.lock);
    while (!g_one.done)
        pthread_cond_wait(&g_one.cond, &g_one.lock);
    r = g_one.status;
    pthread_mutex_unlock(&g_one.lock);
    return r;
}

/* A server whose second connection answers another export size: the open
 * fails (every connection must serve what the first one learnt, as a
 * reconnect must), naming both sizes. */
static void test_sizes_differ(void **state)
{
    struct fixture *fx = *state;
    struct hostile hs;
    hostile_start(fx, &hs);
    atomic_store(&hs.mode, HM_SIZES);
    struct backend_params p = {.spec = fx->uri, .conns = 2};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), -EIO);
    assert_null(be);
    assert_non_null(
        strstr(backend_open_error(), "answered 2097152 bytes on connection 2, 1048576"));
    hostile_stop(&hs);
}

static void test_hostile_read_replies(void **state)
{
    struct fixture *fx = *state;
    struct hostile hs;
    hostile_start(fx, &hs);
    struct backend *be = open_nbd(fx, 1);
    enum { LEN = 12288 };
    static uint8_t buf[LEN], want[LEN];
    static const struct {
        int mode;
        bool ok;
    } cases[] = {
        {HM_GOOD, true},     {HM_OUT_OF_ORDER, true}, {HM_HOLE, true}, {HM_HALF, false},
        {HM_NOTHING, false}, {HM_OVERLAP, false},     {HM_GOOD, true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        atomic_store(&hs.mode, cases[i].mode);
        for (int async = 0; async < 2; async++) {
            uint64_t off = 4096 * (1 + 8 * i + 4 * (uint64_t)async) + 512;
            memset(buf, 0xa5, sizeof(buf));
            int r = async ? async_read_one(be, buf, LEN, off) : be->ops->pread(be, buf, LEN, off);
            if (!cases[i].ok) {
                if (r != -EIO)
                    fail_msg("mode %d (%s): read gave %d, not -EIO", cases[i].mode,
                             async ? "pread_async" : "pread", r);
                continue;
            }
            assert_int_equal(r, 0);
            hostile_expect(cases[i].mode, want, off, LEN);
            assert_memory_equal(buf, want, LEN);
        }
    }
    backend_close(be);
    hostile_stop(&hs);
}

/* One connection of two is lost (the upstream closed it) less than the
 * reconnect interval after it was made, so it cannot be reconnected yet:
 * the requests that round robin would give it go to the other one, which
 * works, instead of failing with EIO. */
static void test_lost_conn_failover(void **state)
{
    struct fixture *fx = *state;
    struct hostile hs;
    hostile_start(fx, &hs);
    struct backend *be = open_nbd(fx, 2);
    uint8_t buf[4096], want[4096];
    atomic_store(&hs.mode, HM_DROP);
    assert_int_equal(be->ops->pread(be, buf, sizeof(buf), 0), -EIO);
    atomic_store(&hs.mode, HM_GOOD);
    for (uint64_t i = 1; i <= 6; i++) {
        uint64_t off = i * 65536;
        int r = be->ops->pread(be, buf, sizeof(buf), off);
        if (r != 0)
            fail_msg("read %" PRIu64 " after one connection was lost: %d", i, r);
        hostile_expect(HM_GOOD, want, off, sizeof(buf));
        assert_memory_equal(buf, want, sizeof(buf));
    }
    backend_close(be);
    hostile_stop(&hs);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_and_min_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_serialised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_over_nbd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_read_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes_differ, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_conn_failover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
