/* What the SCSI layer's unit tests share: an engine (no workers, or a pool
 * of two: g_workers) with file volumes in a temp dir,
 * LUs over them, and a command runner that plays the transport: it fills a
 * scsi_cmd, runs scsi_exec, waits for done, copies the data-in and sense,
 * calls scsi_cmd_put and waits for end. Checks of status and sense are
 * macros so cmocka reports the caller's line. */
#ifndef SHOAL_TESTS_SCSI_HARNESS_H
#define SHOAL_TESTS_SCSI_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/engine.h"
#include "frontend/scsi/scsi_int.h"

#define VOL_BYTES  (64ull << 20) /* 131072 blocks; the first DATA_BYTES hold a pattern */
#define DATA_BYTES (8u << 20)
#define VOL_BLOCKS (VOL_BYTES >> 9)
#define IN_MAX     (4u << 20) /* data-in a test looks at */
#define WAIT_MS    30000

struct env {
    char dir[64], path[128], ro_path[128];
    struct engine *e;
    struct scsi_lu *lu, *ro; /* "vol" (read-write), "ro" (read-only) */
    int fd;                  /* the backing file, to compare bytes */
    uint8_t *in;             /* the last command's data-in */
};

struct tcmd {
    struct scsi_cmd c;
    int dones, ends; /* atomics */
};

/* The result of the last run(). */
struct result {
    uint8_t status;
    uint8_t sense[SCSI_SENSE_MAX];
    uint8_t sense_len;
    uint32_t in_len, xfer_len;
};

static struct env *g_env;
static unsigned g_workers; /* the engine's pool for the group being run */
static struct result R;

static inline uint8_t pattern_byte(uint64_t off)
{
    return (uint8_t)((off * 2654435761u) >> 13) ^ (uint8_t)(off >> 9);
}

static void t_done(struct scsi_cmd *c)
{
    struct tcmd *t = (struct tcmd *)c;
    /* data_in_len bytes of the iovecs (a READ's may hold more: the
     * transport sends data_in_len). */
    uint32_t n = 0, want = c->data_in_len < IN_MAX ? c->data_in_len : IN_MAX;
    for (unsigned i = 0; i < c->niov && n < want; i++) {
        size_t len = c->iov[i].iov_len;
        if (len > want - n)
            len = want - n;
        memcpy(g_env->in + n, c->iov[i].iov_base, len);
        n += (uint32_t)len;
    }
    R.status = c->status;
    R.sense_len = c->sense_len;
    memcpy(R.sense, c->sense, sizeof R.sense);
    R.in_len = c->data_in_len;
    R.xfer_len = c->xfer_len;
    if (n != want)
        R.in_len = UINT32_MAX; /* the iovecs do not add up: fail any check */
    __atomic_add_fetch(&t->dones, 1, __ATOMIC_RELEASE);
}

static void t_end(struct scsi_cmd *c)
{
    struct tcmd *t = (struct tcmd *)c;
    __atomic_add_fetch(&t->ends, 1, __ATOMIC_RELEASE);
}

static void wait_for(int *counter)
{
    for (int i = 0; i < WAIT_MS * 10 && __atomic_load_n(counter, __ATOMIC_ACQUIRE) == 0; i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(__atomic_load_n(counter, __ATOMIC_ACQUIRE), 1);
}

static const struct scsi_nexus nexus_a = {.id = 1,
                                          .initiator = "iqn.2026-12.test:a,i,0x1",
                                          .target = "iqn.2026-12.test:t,t,0x1",
                                          .rel_tgt_port = 1};
static const struct scsi_nexus nexus_b = {.id = 2,
                                          .initiator = "iqn.2026-12.test:b,i,0x2",
                                          .target = "iqn.2026-12.test:t,t,0x1",
                                          .rel_tgt_port = 1};

/* Run one command: cdb of len bytes on lu through nexus, with data-out. */
static void run_full(struct scsi_lu *lu, const struct scsi_nexus *nx, const uint8_t *cdb,
                     unsigned len, const void *out, uint32_t out_len, uint32_t in_max)
{
    struct tcmd *t = calloc(1, sizeof *t);
    assert_non_null(t);
    memset(&R, 0, sizeof R);
    t->c.lu = lu;
    t->c.nexus = nx;
    memcpy(t->c.cdb, cdb, len);
    t->c.cdb_len = (uint8_t)len;
    t->c.data_out = out;
    t->c.data_out_len = out_len;
    t->c.data_in_max = in_max;
    t->c.done = t_done;
    t->c.end = t_end;
    scsi_exec(&t->c);
    wait_for(&t->dones);
    assert_int_equal(__atomic_load_n(&t->ends, __ATOMIC_ACQUIRE), 0);
    scsi_cmd_put(&t->c);
    wait_for(&t->ends);
    assert_int_equal(t->dones, 1);
    free(t);
}

#define run(cdb, out, out_len)                                                                     \
    run_full(g_env->lu, &nexus_a, (cdb), sizeof(cdb), (out), (out_len), IN_MAX)

#define assert_good() assert_int_equal(R.status, SCSI_STATUS_GOOD)
/* CHECK CONDITION with key and ASC/ASCQ (fixed format). */
#define assert_sense(key, asc)                                                                     \
    do {                                                                                           \
        assert_int_equal(R.status, SCSI_STATUS_CHECK_CONDITION);                                   \
        assert_int_equal(R.sense_len, SCSI_SENSE_MAX);                                             \
        assert_int_equal(R.sense[0] & 0x7f, 0x70);                                                 \
        assert_int_equal(R.sense[2] & 0x0f, (key));                                                \
        assert_int_equal(R.sense[12] << 8 | R.sense[13], (asc));                                   \
    } while (0)
/* ... with the field pointer: CDB (cd) or parameter list byte, and bit
 * (-1: none). */
#define assert_field(key, asc, cd, byte, bit)                                                      \
    do {                                                                                           \
        assert_sense((key), (asc));                                                                \
        assert_int_equal(R.sense[15],                                                              \
                         0x80 | ((cd) ? 0x40 : 0) | ((bit) >= 0 ? 0x08 | ((bit)&7) : 0));          \
        assert_int_equal(R.sense[16] << 8 | R.sense[17], (byte));                                  \
    } while (0)
#define assert_bad_cdb(byte, bit)                                                                  \
    assert_field(SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, (byte), (bit))

static inline void put64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}
static inline void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline uint32_t get32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get64be(const uint8_t *p)
{
    return (uint64_t)get32be(p) << 32 | get32be(p + 4);
}

/* The backing file's bytes at [off, +len) into buf. */
static inline void file_read(uint64_t off, void *buf, size_t len)
{
    assert_int_equal(pread(g_env->fd, buf, len, (off_t)off), (ssize_t)len);
}

static int make_file(const char *path, bool fill)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)VOL_BYTES) < 0) {
        close(fd);
        return -1;
    }
    if (fill) {
        uint8_t *b = malloc(DATA_BYTES);
        if (!b) {
            close(fd);
            return -1;
        }
        for (uint64_t i = 0; i < DATA_BYTES; i++)
            b[i] = pattern_byte(i);
        ssize_t w = pwrite(fd, b, DATA_BYTES, 0);
        free(b);
        if (w != (ssize_t)DATA_BYTES) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static int env_setup(void **state)
{
    struct env *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    snprintf(x->dir, sizeof x->dir, "/tmp/shoal-scsi-XXXXXX");
    if (!mkdtemp(x->dir))
        return -1;
    snprintf(x->path, sizeof x->path, "%s/vol.img", x->dir);
    snprintf(x->ro_path, sizeof x->ro_path, "%s/ro.img", x->dir);
    x->fd = make_file(x->path, true);
    int rofd = make_file(x->ro_path, true);
    if (x->fd < 0 || rofd < 0)
        return -1;
    close(rofd);
    x->in = malloc(IN_MAX);
    struct engine_config ec = {.cache_bytes = 64ull << 20, .workers = g_workers};
    if (!x->in || engine_create(&ec, &x->e) < 0)
        return -1;
    struct volume_config vc = {.name = "vol", .backend = {.spec = x->path}};
    struct volume_config rc = {.name = "ro", .backend = {.spec = x->ro_path}, .readonly = true};
    if (engine_add_volume(x->e, &vc) < 0 || engine_add_volume(x->e, &rc) < 0)
        return -1;
    struct volume *v = engine_get_volume(x->e, "vol");
    struct volume *r = engine_get_volume(x->e, "ro");
    x->lu = scsi_lu_get(x->e, v);
    x->ro = scsi_lu_get(x->e, r);
    volume_put(v);
    volume_put(r);
    if (!x->lu || !x->ro)
        return -1;
    g_env = x;
    *state = x;
    return 0;
}

static int env_teardown(void **state)
{
    struct env *x = *state;
    scsi_lu_put(x->lu);
    scsi_lu_put(x->ro);
    engine_remove_volume(x->e, "vol", true);
    engine_remove_volume(x->e, "ro", true);
    engine_destroy(x->e);
    close(x->fd);
    unlink(x->path);
    unlink(x->ro_path);
    rmdir(x->dir);
    free(x->in);
    free(x);
    g_env = NULL;
    return 0;
}

/* Run the tests with commands completing on the submitting thread, then
 * again on a pool of two workers. */
#define RUN_BOTH(tests)                                                                            \
    ({                                                                                             \
        g_workers = 0;                                                                             \
        int fails_ = cmocka_run_group_tests_name("inline", (tests), env_setup, env_teardown);      \
        g_workers = 2;                                                                             \
        fails_ + cmocka_run_group_tests_name("workers", (tests), env_setup, env_teardown);         \
    })

#endif
