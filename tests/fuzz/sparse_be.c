/* Sparse in-memory back end for the fuzz targets (see sparse_be.h).
 *
 * Content model. Every 4 KiB block starts as "base" content: a pattern (64
 * distinct blocks, so the cache has duplicates to share) in the first and
 * the last pattern_bytes of the volume, zeros (a hole) everywhere else.
 * A write keeps its blocks in pages, up to max_bytes of pages (a write
 * beyond that fails with ENOSPC: an ordinary back end error, which the
 * volume layer must pass on and must not cache). A trim or zero of whole
 * blocks frees their pages and makes them zero; a zero of part of a block
 * zeroes those bytes. So reads return exactly what a real disk would, and
 * a harness may compare.
 *
 * Layout: a two-level table, one entry per 1 MiB chunk (256 blocks),
 * allocated on first touch; a block's entry is NULL (base content), ZEROED,
 * or its page. Requests over untouched hole chunks cost O(1) per chunk, so
 * a 4 GiB trim, zero or extent walk is cheap.
 *
 * pread_nowait refuses (-EAGAIN) reads that start in an odd-numbered MiB,
 * so both the front end's inline-miss path and its worker path run.
 *
 * One mutex serialises all ops: this is a test back end. */
#include "sparse_be.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "core/block.h"

#define CHUNK_SHIFT  20
#define CHUNK_BLOCKS (1u << (CHUNK_SHIFT - BLOCK_SHIFT))
#define ZEROED       ((uint8_t *)1)

struct chunk {
    uint8_t *blk[CHUNK_BLOCKS];
};

struct sparse_be {
    struct backend be;
    pthread_mutex_t lock;
    struct chunk **chunks;
    uint64_t nchunks;
    uint64_t pattern_bytes;
    uint64_t pages, max_pages;
};

static struct sparse_be *to_sparse(struct backend *be)
{
    return (struct sparse_be *)be;
}

/* ---- base content ---- */

static bool in_pattern(const struct sparse_be *s, uint64_t blk)
{
    uint64_t start = block_start(blk);
    if (!s->pattern_bytes)
        return false;
    return start < s->pattern_bytes ||
           start + BLOCK_SIZE > s->be.size - MIN(s->be.size, s->pattern_bytes);
}

/* A chunk whose every block is a base hole (no pattern block in it). */
static bool chunk_all_hole(const struct sparse_be *s, uint64_t c)
{
    uint64_t first = c * CHUNK_BLOCKS;
    return !in_pattern(s, first) && !in_pattern(s, first + CHUNK_BLOCKS - 1);
}

static void fill_base(const struct sparse_be *s, uint64_t blk, uint8_t *dst, uint32_t lo,
                      uint32_t n)
{
    if (!in_pattern(s, blk)) {
        memset(dst, 0, n);
        return;
    }
    /* Block k of the pattern: two halves, bytes k+1 and 255-k, with the
     * pattern number at the start so no two of the 64 blocks are equal. */
    uint8_t blkbuf[BLOCK_SIZE];
    unsigned k = (unsigned)(blk % 64);
    memset(blkbuf, (int)(k + 1), BLOCK_SIZE / 2);
    memset(blkbuf + BLOCK_SIZE / 2, (int)(255 - k), BLOCK_SIZE / 2);
    blkbuf[0] = (uint8_t)k;
    memcpy(dst, blkbuf + lo, n);
}

/* ---- the table ---- */

static uint8_t **slot(struct sparse_be *s, uint64_t blk, bool create)
{
    uint64_t c = blk / CHUNK_BLOCKS;
    if (!s->chunks[c]) {
        if (!create)
            return NULL;
        s->chunks[c] = calloc(1, sizeof(struct chunk));
        if (!s->chunks[c])
            return NULL;
    }
    return &s->chunks[c]->blk[blk % CHUNK_BLOCKS];
}

static void put_page(struct sparse_be *s, uint8_t **p, uint8_t *val)
{
    if (*p && *p != ZEROED) {
        free(*p);
        s->pages--;
    }
    *p = val;
}

/* Make blk zero (whole block). */
static int zero_block(struct sparse_be *s, uint64_t blk)
{
    bool pat = in_pattern(s, blk);
    uint8_t **p = slot(s, blk, pat);
    if (!p)
        return pat ? -ENOMEM : 0; /* a base hole stays one */
    put_page(s, p, pat ? ZEROED : NULL);
    return 0;
}

/* The page of blk, created with its current content if need be. */
static int page_of(struct sparse_be *s, uint64_t blk, uint8_t **out)
{
    uint8_t **p = slot(s, blk, true);
    if (!p)
        return -ENOMEM;
    if (*p && *p != ZEROED) {
        *out = *p;
        return 0;
    }
    if (s->pages >= s->max_pages)
        return -ENOSPC;
    uint8_t *pg = malloc(BLOCK_SIZE);
    if (!pg)
        return -ENOMEM;
    if (*p == ZEROED)
        memset(pg, 0, BLOCK_SIZE);
    else
        fill_base(s, blk, pg, 0, BLOCK_SIZE);
    *p = pg;
    s->pages++;
    *out = pg;
    return 0;
}

static bool in_range(const struct sparse_be *s, uint64_t off, uint64_t count)
{
    return off <= s->be.size && count <= s->be.size - off;
}

/* ---- ops ---- */

static int sp_read_locked(struct sparse_be *s, uint8_t *dst, uint32_t count, uint64_t off)
{
    while (count > 0) {
        uint64_t blk = block_of(off);
        uint32_t lo = (uint32_t)(off & BLOCK_MASK);
        uint32_t n = MIN(BLOCK_SIZE - lo, count);
        uint8_t **p = slot(s, blk, false);
        if (p && *p == ZEROED)
            memset(dst, 0, n);
        else if (p && *p)
            memcpy(dst, *p + lo, n);
        else
            fill_base(s, blk, dst, lo, n);
        dst += n;
        off += n;
        count -= n;
    }
    return 0;
}

static int sp_pread(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    struct sparse_be *s = to_sparse(be);
    if (!in_range(s, offset, count))
        return -EIO; /* the volume layer checks bounds: a bug if we get here */
    pthread_mutex_lock(&s->lock);
    int r = sp_read_locked(s, buf, count, offset);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sp_pread_nowait(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    if ((offset >> CHUNK_SHIFT) & 1)
        return -EAGAIN; /* "not at hand": the caller retries on a worker */
    return sp_pread(be, buf, count, offset);
}

static int sp_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                     uint32_t flags)
{
    (void)flags;
    struct sparse_be *s = to_sparse(be);
    if (!in_range(s, offset, count))
        return -ENOSPC;
    const uint8_t *src = buf;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    while (count > 0 && r == 0) {
        uint64_t blk = block_of(offset);
        uint32_t lo = (uint32_t)(offset & BLOCK_MASK);
        uint32_t n = MIN(BLOCK_SIZE - lo, count);
        bool whole = n == BLOCK_SIZE || (lo == 0 && offset + n == s->be.size);
        if (whole && buf_is_zero(src, n)) {
            r = zero_block(s, blk); /* zeros cost no page */
        } else {
            uint8_t *pg;
            r = page_of(s, blk, &pg);
            if (r == 0)
                memcpy(pg + lo, src, n);
        }
        src += n;
        offset += n;
        count -= n;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sp_flush(struct backend *be)
{
    (void)be;
    return 0;
}

/* Zero [offset, offset+count): whole blocks lose their pages; with
 * partial=true the bytes of partial blocks at the ends are zeroed too
 * (zero), else they are left alone (trim is advisory). */
static int zero_range(struct sparse_be *s, uint32_t count, uint64_t offset, bool partial)
{
    if (!in_range(s, offset, count))
        return -ENOSPC;
    uint64_t end = offset + count;
    int r = 0;
    pthread_mutex_lock(&s->lock);
    uint64_t pos = offset;
    while (pos < end && r == 0) {
        uint64_t blk = block_of(pos);
        uint32_t lo = (uint32_t)(pos & BLOCK_MASK);
        uint64_t bend = MIN(block_start(blk) + BLOCK_SIZE, s->be.size);
        uint64_t n = MIN(bend, end) - pos;
        uint64_t c = blk / CHUNK_BLOCKS;
        if (lo == 0 && blk % CHUNK_BLOCKS == 0 && block_start(blk + CHUNK_BLOCKS) <= end &&
            chunk_all_hole(s, c)) {
            /* A whole hole chunk: drop it at once. */
            if (s->chunks[c]) {
                for (unsigned i = 0; i < CHUNK_BLOCKS; i++)
                    put_page(s, &s->chunks[c]->blk[i], NULL);
                free(s->chunks[c]);
                s->chunks[c] = NULL;
            }
            pos = block_start(blk + CHUNK_BLOCKS);
            continue;
        }
        if (lo == 0 && pos + n == bend) {
            r = zero_block(s, blk);
        } else if (partial) {
            uint8_t **p = slot(s, blk, false);
            bool already_zero = (p && *p == ZEROED) || ((!p || !*p) && !in_pattern(s, blk));
            if (!already_zero) {
                uint8_t *pg;
                r = page_of(s, blk, &pg);
                if (r == 0)
                    memset(pg + lo, 0, (size_t)n);
            }
        }
        pos += n;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static int sp_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    (void)flags;
    return zero_range(to_sparse(be), count, offset, false);
}

static int sp_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    (void)flags; /* FAST_ZERO: always fast; NO_HOLE: same content either way */
    return zero_range(to_sparse(be), count, offset, true);
}

/* 1 for a hole (reads as zero, no page), 0 for data. */
static int block_is_hole(struct sparse_be *s, uint64_t blk)
{
    uint8_t **p = slot(s, blk, false);
    if (p && *p == ZEROED)
        return 1;
    if (p && *p)
        return 0;
    return !in_pattern(s, blk);
}

static int sp_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                      void *opaque)
{
    struct sparse_be *s = to_sparse(be);
    if (!in_range(s, offset, count))
        return -EINVAL;
    uint64_t end = offset + count;
    uint64_t pos = offset;
    pthread_mutex_lock(&s->lock);
    while (pos < end) {
        /* One run of blocks of the same kind, from pos. */
        uint64_t blk = block_of(pos);
        int hole = block_is_hole(s, blk);
        uint64_t next = block_start(blk + 1);
        while (next < end) {
            uint64_t b = block_of(next);
            uint64_t c = b / CHUNK_BLOCKS;
            if (hole && b % CHUNK_BLOCKS == 0 && !s->chunks[c] && chunk_all_hole(s, c)) {
                next = block_start(b + CHUNK_BLOCKS);
                continue;
            }
            if (block_is_hole(s, b) != hole)
                break;
            next = block_start(b + 1);
        }
        next = MIN(next, end);
        uint32_t flags = hole ? (BE_EXTENT_HOLE | BE_EXTENT_ZERO) : 0;
        pthread_mutex_unlock(&s->lock); /* the callback may take its time */
        if (fn(opaque, pos, next - pos, flags))
            return 0;
        pthread_mutex_lock(&s->lock);
        pos = next;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void sp_describe(struct backend *be, char *buf, size_t len)
{
    struct sparse_be *s = to_sparse(be);
    pthread_mutex_lock(&s->lock);
    snprintf(buf, len, "sparse memory, %llu pages written", (unsigned long long)s->pages);
    pthread_mutex_unlock(&s->lock);
}

static void sp_close(struct backend *be)
{
    struct sparse_be *s = to_sparse(be);
    if (!s)
        return;
    for (uint64_t c = 0; c < s->nchunks; c++) {
        if (!s->chunks[c])
            continue;
        for (unsigned i = 0; i < CHUNK_BLOCKS; i++)
            put_page(s, &s->chunks[c]->blk[i], NULL);
        free(s->chunks[c]);
    }
    free(s->chunks);
    free(s->be.spec);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const struct backend_ops sparse_ops = {
    .name = "sparse",
    .close = sp_close,
    .pread = sp_pread,
    .pread_nowait = sp_pread_nowait,
    .pwrite = sp_pwrite,
    .flush = sp_flush,
    .trim = sp_trim,
    .zero = sp_zero,
    .extents = sp_extents,
    .describe = sp_describe,
};

int sparse_be_new(const struct sparse_be_config *cfg, struct backend **out)
{
    struct sparse_be *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->be.ops = &sparse_ops;
    s->be.priv = s;
    s->be.size = cfg->size;
    s->be.caps = cfg->caps;
    s->be.min_block = cfg->min_block ? cfg->min_block : 1;
    s->pattern_bytes = cfg->pattern_bytes;
    s->max_pages = cfg->max_bytes / BLOCK_SIZE;
    s->nchunks = DIV_ROUND_UP(cfg->size, (uint64_t)CHUNK_BLOCKS * BLOCK_SIZE);
    s->chunks = calloc(s->nchunks ? s->nchunks : 1, sizeof *s->chunks);
    s->be.spec = strdup("sparse:");
    pthread_mutex_init(&s->lock, NULL);
    if (!s->chunks || !s->be.spec) {
        sp_close(&s->be);
        return -ENOMEM;
    }
    *out = &s->be;
    return 0;
}
