/* A trace's records turned into per-block cache operations (sim.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/block.h"
#include "sim.h"

/* Open addressing from a 128-bit key to a 32-bit id. */
struct idmap {
    struct slot {
        uint64_t a, b;
        uint32_t id; /* SIM_NONE: empty */
    } * t;
    uint64_t mask, n;
};

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static int idmap_grow(struct idmap *m)
{
    uint64_t cap = m->t ? (m->mask + 1) * 2 : 1024;
    struct slot *t = malloc(cap * sizeof *t);
    if (!t)
        return -ENOMEM;
    for (uint64_t i = 0; i < cap; i++)
        t[i].id = SIM_NONE;
    for (uint64_t i = 0; m->t && i <= m->mask; i++) {
        if (m->t[i].id == SIM_NONE)
            continue;
        uint64_t j = mix(m->t[i].a, m->t[i].b) & (cap - 1);
        while (t[j].id != SIM_NONE)
            j = (j + 1) & (cap - 1);
        t[j] = m->t[i];
    }
    free(m->t);
    m->t = t;
    m->mask = cap - 1;
    return 0;
}

/* The id of (a, b), or the next one (*next, then incremented) if new. */
static int idmap_get(struct idmap *m, uint64_t a, uint64_t b, uint32_t *next, uint32_t *out)
{
    if ((!m->t || (m->n + 1) * 2 > m->mask + 1) && idmap_grow(m) < 0)
        return -ENOMEM;
    uint64_t j = mix(a, b) & m->mask;
    while (m->t[j].id != SIM_NONE) {
        if (m->t[j].a == a && m->t[j].b == b) {
            *out = m->t[j].id;
            return 0;
        }
        j = (j + 1) & m->mask;
    }
    if (*next == SIM_NONE)
        return -E2BIG;
    m->t[j] = (struct slot){a, b, *next};
    m->n++;
    *out = (*next)++;
    return 0;
}

struct builder {
    struct sim_ops *o;
    uint64_t cap;
    struct idmap addrs, md5s;
    uint32_t *cur; /* by address: its content id now, SIM_NONE if unknown */
    uint64_t curcap;
    uint64_t zcap;
};

static int push(struct builder *b, struct sim_op op)
{
    struct sim_ops *o = b->o;
    if (o->n == b->cap) {
        uint64_t cap = b->cap ? b->cap * 2 : 4096;
        struct sim_op *n = realloc(o->ops, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        o->ops = n;
        b->cap = cap;
    }
    o->ops[o->n++] = op;
    return 0;
}

static int new_cid(struct builder *b, bool zero, uint32_t *out)
{
    struct sim_ops *o = b->o;
    if (o->ncids == SIM_NONE)
        return -E2BIG;
    if (o->ncids == b->zcap) {
        uint64_t cap = b->zcap ? b->zcap * 2 : 4096;
        bool *z = realloc(o->zero, cap * sizeof *z);
        if (!z)
            return -ENOMEM;
        o->zero = z;
        b->zcap = cap;
    }
    o->zero[o->ncids] = zero;
    *out = o->ncids++;
    return 0;
}

static int addr_of(struct builder *b, uint16_t dev, uint64_t blk, uint32_t *out)
{
    uint32_t before = b->o->naddrs;
    int r = idmap_get(&b->addrs, dev, blk, &b->o->naddrs, out);
    if (r < 0 || b->o->naddrs == before)
        return r;
    if (b->o->naddrs > b->curcap) {
        uint64_t cap = b->curcap ? b->curcap * 2 : 4096;
        uint32_t *c = realloc(b->cur, cap * sizeof *c);
        if (!c)
            return -ENOMEM;
        b->cur = c;
        b->curcap = cap;
    }
    b->cur[*out] = SIM_NONE;
    return 0;
}

static int md5_cid(struct builder *b, const uint8_t md5[16], uint32_t *out)
{
    /* MD5 of 4096 zero bytes. */
    static const uint8_t zero_md5[16] = {0x62, 0x0f, 0x0b, 0x67, 0xa9, 0x1f, 0x7f, 0x74,
                                         0x15, 0x1b, 0xc5, 0xbe, 0x74, 0x5b, 0x71, 0x10};
    uint64_t a, c;
    memcpy(&a, md5, 8);
    memcpy(&c, md5 + 8, 8);
    uint32_t next = b->o->ncids;
    int r = idmap_get(&b->md5s, a, c, &next, out);
    if (r < 0 || next == b->o->ncids)
        return r;
    uint32_t id;
    if ((r = new_cid(b, memcmp(md5, zero_md5, 16) == 0, &id)) < 0)
        return r;
    return id == *out ? 0 : -EINVAL;
}

static int record(struct builder *b, const struct trace *t, uint64_t i, bool by_content, bool merge)
{
    const struct trace_rec *rec = &t->recs[i];
    uint64_t end = rec->offset + rec->len;
    if (by_content && (rec->offset % BLOCK_SIZE || rec->len != BLOCK_SIZE)) {
        fprintf(stderr, "evict-sim: --by-content: record %llu is not one aligned 4 KiB block\n",
                (unsigned long long)i + 1);
        return -EINVAL;
    }
    /* Bounds written so that a block ending at 2^64 does not wrap. */
    for (uint64_t blk = rec->offset / BLOCK_SIZE; blk <= (end - 1) / BLOCK_SIZE; blk++) {
        uint64_t lo = blk * BLOCK_SIZE > rec->offset ? blk * BLOCK_SIZE : rec->offset;
        uint64_t last = blk * BLOCK_SIZE + (BLOCK_SIZE - 1);
        uint64_t hi = end - 1 < last ? end : last + 1;
        uint32_t addr, cid = SIM_NONE;
        int r = addr_of(b, merge ? 0 : rec->dev, blk, &addr);
        if (r < 0)
            return r;
        bool whole = hi - lo == BLOCK_SIZE;
        if (by_content)
            r = md5_cid(b, t->md5[i], &cid);
        else if (rec->op == TRACE_WRITE && whole)
            r = new_cid(b, false, &cid); /* a new version of the block */
        else if (rec->op == TRACE_READ && b->cur[addr] == SIM_NONE)
            r = new_cid(b, false, &cid); /* first read since it changed */
        else
            cid = b->cur[addr];
        if (r < 0)
            return r;
        struct sim_op op = {.addr = addr, .cid = cid, .blk = blk};
        op.more = blk < (end - 1) / BLOCK_SIZE; /* the record goes on: one request */
        if (rec->op == TRACE_READ) {
            op.kind = SIM_READ;
            op.bytes = (uint32_t)(hi - lo);
            b->o->read_bytes += op.bytes;
            b->o->read_blocks++;
            b->cur[addr] = cid;
        } else if (whole) {
            op.kind = SIM_WRITE;
            b->cur[addr] = cid;
        } else {
            op.kind = SIM_DROP;
            op.cid = SIM_NONE;
            b->cur[addr] = SIM_NONE; /* changed in part: the next read is new content */
        }
        if ((r = push(b, op)) < 0)
            return r;
    }
    return 0;
}

int sim_ops_build(const struct trace *t, bool by_content, bool merge_devices, struct sim_ops *out)
{
    memset(out, 0, sizeof *out);
    if (by_content && !t->md5) {
        fprintf(stderr, "evict-sim: --by-content needs a trace with content hashes (fiu)\n");
        return -EINVAL;
    }
    struct builder b = {.o = out};
    int r = 0;
    for (uint64_t i = 0; i < t->n && r == 0; i++)
        r = record(&b, t, i, by_content, merge_devices);
    free(b.addrs.t);
    free(b.md5s.t);
    free(b.cur);
    if (r < 0) {
        if (r == -E2BIG)
            fprintf(stderr, "evict-sim: more than 2^32 blocks or contents\n");
        sim_ops_free(out);
        return r;
    }
    out->distinct = by_content ? out->ncids : out->naddrs;
    return 0;
}

void sim_ops_free(struct sim_ops *o)
{
    free(o->ops);
    free(o->zero);
    memset(o, 0, sizeof *o);
}
