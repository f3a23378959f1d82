/* See harness.h. Everything here fails loudly (abort) rather than through
 * cmocka: callbacks may run on engine workers. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/engine.h"
#include "frontend/scsi/pr.h"
#include "frontend/scsi/xcopy.h"
#include "harness.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #x);                         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct engine *g_e;
static char g_dir[64];

struct engine *h_engine(void)
{
    return g_e;
}

/* ---- what lu.c and dispatch.c would provide (weak: theirs win once
 * they are in the library and pulled in) ---- */

__attribute__((weak)) struct engine *scsi_lu_engine(const struct scsi_lu *lu)
{
    (void)lu;
    return g_e;
}

static pthread_mutex_t ua_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    uint64_t nexus;
    uint16_t asc;
} ua_log[256];
static unsigned ua_n;

__attribute__((weak)) void scsi_ua_post_locked(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc)
{
    (void)lu;
    pthread_mutex_lock(&ua_lock);
    if (ua_n < 256)
        ua_log[ua_n++] = (typeof(ua_log[0])){nexus_id, asc};
    pthread_mutex_unlock(&ua_lock);
}

void h_ua_reset(void)
{
    pthread_mutex_lock(&ua_lock);
    ua_n = 0;
    pthread_mutex_unlock(&ua_lock);
}

unsigned h_ua_count(uint64_t nexus, uint16_t asc)
{
    unsigned n = 0;
    pthread_mutex_lock(&ua_lock);
    for (unsigned i = 0; i < ua_n; i++)
        n += ua_log[i].nexus == nexus && (!asc || ua_log[i].asc == asc);
    pthread_mutex_unlock(&ua_lock);
    return n;
}

static const struct scsi_op *find_op(uint8_t opcode, int sa)
{
    const struct scsi_op *const tables[] = {scsi_ops_pr, scsi_ops_copy, scsi_ops_caw};
    for (unsigned t = 0; t < 3; t++)
        for (const struct scsi_op *op = tables[t]; op->name; op++)
            if (op->opcode == opcode && (op->service_action < 0 || op->service_action == sa))
                return op;
    return NULL;
}

/* lu.c's registry: the LUs of the volumes h_vol_open made. */
static struct h_vol *g_vols[8];

__attribute__((weak)) struct scsi_lu *scsi_lu_get(struct engine *e, struct volume *v)
{
    CHECK(e == g_e);
    for (unsigned i = 0; i < 8; i++)
        if (g_vols[i] && g_vols[i]->v == v)
            return &g_vols[i]->lu;
    return NULL;
}

__attribute__((weak)) void scsi_lu_put(struct scsi_lu *lu)
{
    (void)lu;
}

/* dispatch.c's checks that matter here: the op, the CDB length, the
 * reservation check, a read-only medium. */
__attribute__((weak)) enum scsi_exec_result scsi_dispatch(struct scsi_cmd *c)
{
    const struct scsi_op *op = find_op(c->cdb[0], c->cdb[1] & 0x1f);
    if (!op)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
    if (c->cdb_len < op->cdb_len)
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_IN_CDB, true, 0, -1);
    if (!(op->flags & SCSI_OP_PR_ALLOW) && c->nexus && scsi_pr_blocks(c, op))
        return scsi_conflict(c);
    if ((op->flags & SCSI_OP_WRITES) && volume_readonly(c->lu->v))
        return scsi_check(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    return op->exec(c);
}

/* ---- engine and volumes ---- */

static bool allow_all(const struct scsi_nexus *n, const struct volume *v)
{
    (void)n;
    (void)v;
    return true;
}

void h_copy_policy(bool all)
{
    scsi_copy_set_access(all ? allow_all : NULL);
}

void h_start(unsigned workers)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/shoal-scsi2.XXXXXX");
    CHECK(mkdtemp(g_dir));
    struct engine_config ec = {.cache_bytes = 32u << 20, .workers = workers};
    CHECK(engine_create(&ec, &g_e) == 0);
    scsi_copy_set_access(allow_all);
    h_ua_reset();
}

void h_stop(void)
{
    engine_destroy(g_e);
    g_e = NULL;
    rmdir(g_dir);
    scsi_copy_set_access(NULL);
}

void h_pattern(uint8_t seed, uint64_t off, void *buf, uint32_t len)
{
    uint8_t *b = buf;
    for (uint32_t i = 0; i < len; i++) {
        uint64_t x = (off + i) * 2654435761u + seed * 97u;
        b[i] = (uint8_t)(x >> 11 ^ x >> 3);
    }
}

void h_vol_open(struct h_vol *hv, const char *name, uint64_t size, uint8_t seed, bool readonly)
{
    memset(hv, 0, sizeof *hv);
    snprintf(hv->path, sizeof hv->path, "%s/%s.img", g_dir, name);
    int fd = open(hv->path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    CHECK(fd >= 0);
    uint8_t *buf = malloc(1u << 16);
    CHECK(buf);
    for (uint64_t off = 0; off < size; off += 1u << 16) {
        uint32_t n = size - off < (1u << 16) ? (uint32_t)(size - off) : (1u << 16);
        h_pattern(seed, off, buf, n);
        CHECK(pwrite(fd, buf, n, (off_t)off) == (ssize_t)n);
    }
    free(buf);
    close(fd);
    struct volume_config cfg = {.name = name, .readonly = readonly};
    cfg.backend.spec = hv->path;
    cfg.backend.readonly = readonly;
    CHECK(engine_add_volume(g_e, &cfg) == 0);
    hv->v = engine_get_volume(g_e, name);
    CHECK(hv->v);
    hv->lu.v = hv->v;
    CHECK(pthread_mutex_init(&hv->lu.lock, NULL) == 0);
    hv->lu.naa_id = scsi_naa_id(name);
    scsi_serial(name, hv->lu.serial);
    for (unsigned i = 0; i < 8; i++) {
        if (!g_vols[i]) {
            g_vols[i] = hv;
            return;
        }
    }
    CHECK(!"too many volumes");
}

void h_vol_close(struct h_vol *hv)
{
    char name[256];
    snprintf(name, sizeof name, "%s", volume_name(hv->v));
    for (unsigned i = 0; i < 8; i++)
        if (g_vols[i] == hv)
            g_vols[i] = NULL;
    scsi_pr_free(&hv->lu);
    scsi_copy_free(&hv->lu);
    pthread_mutex_destroy(&hv->lu.lock);
    volume_put(hv->v);
    CHECK(engine_remove_volume(g_e, name, false) == 0);
    unlink(hv->path);
}

void h_file_read(const struct h_vol *hv, uint64_t off, void *buf, uint32_t len)
{
    int fd = open(hv->path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(pread(fd, buf, len, (off_t)off) == (ssize_t)len);
    close(fd);
}

struct rd {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done, ended;
    uint8_t *buf;
};

static void rd_done(struct vol_io *io)
{
    struct rd *x = io->opaque;
    CHECK(io->status == 0);
    uint64_t at = 0;
    for (unsigned i = 0; i < io->niov; i++) {
        memcpy(x->buf + at, io->iov[i].iov_base, io->iov[i].iov_len);
        at += io->iov[i].iov_len;
    }
    CHECK(at == io->length);
    pthread_mutex_lock(&x->m);
    x->done = 1;
    pthread_mutex_unlock(&x->m);
    vol_io_put(io);
}

static void rd_end(struct vol_io *io)
{
    struct rd *x = io->opaque;
    pthread_mutex_lock(&x->m);
    x->ended = 1;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->m);
}

void h_read_volume(const struct h_vol *hv, uint64_t off, uint32_t len, void *buf)
{
    struct rd x = {.buf = buf};
    pthread_mutex_init(&x.m, NULL);
    pthread_cond_init(&x.cv, NULL);
    struct vol_io *io = calloc(1, sizeof *io);
    CHECK(io);
    io->v = hv->v;
    io->op = VOL_IO_READ;
    io->offset = off;
    io->length = len;
    io->done = rd_done;
    io->end = rd_end;
    io->opaque = &x;
    vol_submit(io);
    pthread_mutex_lock(&x.m);
    while (!x.ended)
        pthread_cond_wait(&x.cv, &x.m);
    pthread_mutex_unlock(&x.m);
    CHECK(x.done);
    free(io);
    pthread_cond_destroy(&x.cv);
    pthread_mutex_destroy(&x.m);
}

/* ---- commands ---- */

struct tcmd {
    struct scsi_cmd c;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done, ended;
};

static void t_done(struct scsi_cmd *c)
{
    struct tcmd *t = (struct tcmd *)c;
    pthread_mutex_lock(&t->m);
    CHECK(!t->done);
    t->done = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->m);
}

static void t_end(struct scsi_cmd *c)
{
    struct tcmd *t = (struct tcmd *)c;
    pthread_mutex_lock(&t->m);
    CHECK(t->done && !t->ended);
    t->ended = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->m);
}

static void wait_for(struct tcmd *t, int *flag)
{
    pthread_mutex_lock(&t->m);
    while (!*flag)
        pthread_cond_wait(&t->cv, &t->m);
    pthread_mutex_unlock(&t->m);
}

void h_run(struct scsi_lu *lu, const struct scsi_nexus *n, const uint8_t *cdb, unsigned cdb_len,
           const void *out, uint32_t out_len, uint32_t in_max, struct h_res *r)
{
    struct tcmd *t = calloc(1, sizeof *t);
    CHECK(t);
    pthread_mutex_init(&t->m, NULL);
    pthread_cond_init(&t->cv, NULL);
    struct scsi_cmd *c = &t->c;
    c->lu = lu;
    c->nexus = n;
    memcpy(c->cdb, cdb, cdb_len);
    c->cdb_len = (uint8_t)cdb_len;
    c->write_dir = out_len > 0;
    c->read_dir = in_max > 0;
    /* the transport's copy, poisoned after end to catch late use */
    void *copy = out_len ? malloc(out_len) : NULL;
    if (out_len)
        memcpy(copy, out, out_len);
    c->data_out = copy;
    c->data_out_len = out_len;
    c->data_in_max = in_max;
    c->done = t_done;
    c->end = t_end;
    scsi_exec(c);
    wait_for(t, &t->done);
    memset(r, 0, sizeof *r);
    r->status = c->status;
    r->sense_len = c->sense_len;
    memcpy(r->sense, c->sense, c->sense_len);
    uint32_t at = 0;
    for (unsigned i = 0; i < c->niov; i++) {
        uint32_t k = (uint32_t)c->iov[i].iov_len;
        CHECK(at + k <= sizeof r->data);
        memcpy(r->data + at, c->iov[i].iov_base, k);
        at += k;
    }
    CHECK(at == c->data_in_len);
    CHECK(c->data_in_len <= in_max);
    r->data_in_len = c->data_in_len;
    scsi_cmd_put(c);
    wait_for(t, &t->ended);
    if (copy) {
        memset(copy, 0xa5, out_len);
        free(copy);
    }
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->m);
    free(t);
}
