/* See fake_be.h. */
#include "fake_be.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/block.h"

static int fk_pread(struct backend *be, void *buf, uint32_t n, uint64_t off)
{
    struct fake *f = be->priv;
    pthread_mutex_lock(&f->lock);
    f->preads++;
    if (f->fail_reads) {
        pthread_mutex_unlock(&f->lock);
        return -EIO;
    }
    if (off % be->min_block || n % be->min_block) { /* as iSCSI and O_DIRECT refuse it */
        pthread_mutex_unlock(&f->lock);
        return -EINVAL;
    }
    memcpy(buf, f->data + off, n);
    if (f->pause_armed && off <= f->pause_off && f->pause_off < off + n) {
        f->pause_armed = 0;
        f->paused = 1;
        pthread_cond_broadcast(&f->cond);
        while (!f->released)
            pthread_cond_wait(&f->cond, &f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static int fk_pwrite(struct backend *be, const void *buf, uint32_t n, uint64_t off, uint32_t fl)
{
    (void)fl;
    struct fake *f = be->priv;
    pthread_mutex_lock(&f->lock);
    f->pwrites++;
    int r = f->fail_writes ? -EIO : 0;
    if (!r)
        memcpy(f->data + off, buf, n);
    pthread_mutex_unlock(&f->lock);
    return r;
}

static int fk_flush(struct backend *be)
{
    (void)be;
    return 0;
}

static int fk_zero(struct backend *be, uint32_t n, uint64_t off, uint32_t fl)
{
    (void)fl;
    struct fake *f = be->priv;
    pthread_mutex_lock(&f->lock);
    memset(f->data + off, 0, n);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static int fk_trim(struct backend *be, uint32_t n, uint64_t off, uint32_t fl)
{
    /* A trim that leaves garbage: the cache must not assume zeros. */
    (void)fl;
    struct fake *f = be->priv;
    pthread_mutex_lock(&f->lock);
    memset(f->data + off, 0xEE, n);
    pthread_mutex_unlock(&f->lock);
    return 0;
}

static void fk_close(struct backend *be)
{
    struct fake *f = be->priv;
    free(f->data);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
}

static const struct backend_ops fake_ops = {
    .name = "fake",
    .pread = fk_pread,
    .pwrite = fk_pwrite,
    .flush = fk_flush,
    .trim = fk_trim,
    .zero = fk_zero,
    .close = fk_close,
};

struct fake *fake_new(uint64_t size, uint8_t fill_seed)
{
    struct fake *f = calloc(1, sizeof *f);
    f->data = malloc(size);
    for (uint64_t i = 0; i < size; i++)
        f->data[i] = (uint8_t)(i / BLOCK_SIZE * 31 + fill_seed + (i % 251));
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->cond, NULL);
    f->be.ops = &fake_ops;
    f->be.priv = f;
    f->be.size = size;
    f->be.caps = BE_CAN_FLUSH | BE_CAN_FUA | BE_CAN_TRIM | BE_CAN_ZERO;
    f->be.min_block = 1;
    return f;
}

void fake_pause(struct fake *f, uint64_t off)
{
    pthread_mutex_lock(&f->lock);
    f->pause_armed = 1;
    f->pause_off = off;
    f->paused = 0;
    f->released = 0;
    pthread_mutex_unlock(&f->lock);
}

void fake_wait_paused(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    while (!f->paused)
        pthread_cond_wait(&f->cond, &f->lock);
    pthread_mutex_unlock(&f->lock);
}

void fake_release(struct fake *f)
{
    pthread_mutex_lock(&f->lock);
    f->released = 1;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}
