/* The operations replayed through the real content store (src/core/store.c)
 * with one eviction policy: the same calls the daemon's data path makes
 * (store_read for a cell's reference, store_find for a remembered key,
 * store_get_or_insert for a fetched or written block, store_unref for a
 * block dropped or overwritten), so the policy code is the daemon's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "core/block.h"
#include "core/evict.h"
#include "core/fingerprint.h"
#include "core/partial.h"
#include "core/store.h"
#include "sim.h"

/* A block's directory cell: its reference, the content it had (the key
 * the daemon remembers), and whether that content is the zero block. */
struct cell {
    struct store_ref ref;
    uint32_t cid;
    bool zero;
};

struct run {
    struct store *s;
    const struct sim_ops *o;
    struct fpkey *keys; /* by cid, computed at first use */
    bool *have_key;
    uint8_t blk[BLOCK_SIZE];
    uint64_t partial_seen[PARTIAL_SEEN]; /* as a volume's (core/partial.h) */
    bool *miss;                          /* by block of the request */
    unsigned *heat;
};

/* The bytes of content cid: distinct for every cid. */
static const uint8_t *content(struct run *r, uint32_t cid)
{
    static const char tag[] = "evict-sim content";
    memset(r->blk, 0, sizeof r->blk);
    memcpy(r->blk, tag, sizeof tag);
    memcpy(r->blk + sizeof tag, &cid, sizeof cid);
    return r->blk;
}

static const struct fpkey *key_of(struct run *r, uint32_t cid)
{
    if (!r->have_key[cid]) {
        struct fp fp;
        fp_compute(content(r, cid), &fp);
        r->keys[cid] = fpkey_of(&fp);
        r->have_key[cid] = true;
    }
    return &r->keys[cid];
}

static void cell_insert(struct run *r, struct cell *c, uint32_t cid, unsigned heat)
{
    const struct fpkey *k = key_of(r, cid);
    if (store_get_or_insert_heat(r->s, k, content(r, cid), heat, &c->ref) < 0)
        c->ref = (struct store_ref){0, 0};
    c->cid = cid;
    c->zero = false;
}

/* Returns the dropped content's heat (store_unref_heat). A block whose
 * content was evicted keeps its key in the daemon once the maintenance
 * purge made it a remembered one (core/dir.h), after the eviction log
 * forgot it: its heat is still found by that key. */
static unsigned cell_drop(struct run *r, struct cell *c)
{
    bool stale = c->cid != SIM_NONE && !c->zero && !store_ref_live(r->s, c->ref);
    unsigned heat = store_unref_heat(r->s, c->ref);
    if (stale && !heat)
        heat = store_key_heat(r->s, key_of(r, c->cid));
    c->ref = (struct store_ref){0, 0};
    c->cid = SIM_NONE;
    c->zero = false;
    return heat;
}

/* A read of cid at c that the daemon serves from RAM at once: a known zero
 * block or the cell's live reference. */
static bool read_live(struct run *r, struct cell *c, uint32_t cid)
{
    uint8_t b;
    if (r->o->zero[cid])
        return c->zero && c->cid == cid;
    return c->cid == cid && store_read(r->s, c->ref, &b, 0, 1) == 0;
}

/* A miss whose content the cell remembers, found again by its key. */
static bool read_by_key(struct run *r, struct cell *c, uint32_t cid)
{
    struct store_ref ref;
    if (r->o->zero[cid] || c->cid != cid || store_find(r->s, key_of(r, cid), &ref) < 0)
        return false;
    c->ref = ref;
    return true;
}

/* A miss fetched whole: cached, or a zero block, a constant from now on. */
static void read_miss(struct run *r, struct cell *c, uint32_t cid)
{
    cell_drop(r, c);
    if (r->o->zero[cid]) {
        c->cid = cid;
        c->zero = true;
        return;
    }
    cell_insert(r, c, cid, 0);
}

/* One read request, ops[0 .. n), in vol_read's order: every block looked
 * up (the hits are uses before anything is installed), then the misses by
 * their remembered key (vol_key.c), then the rest fetched and installed in
 * order (finish_read): a block's install cannot evict a later block of the
 * same request before it was looked up. */
static void read_request(struct run *r, struct cell *cells, const struct sim_op *ops, uint64_t n,
                         struct sim_result *res)
{
    for (uint64_t i = 0; i < n; i++) {
        res->read_bytes += ops[i].bytes;
        res->read_blocks++;
        r->miss[i] = !read_live(r, &cells[ops[i].addr], ops[i].cid);
    }
    for (uint64_t i = 0; i < n; i++)
        if (r->miss[i] && read_by_key(r, &cells[ops[i].addr], ops[i].cid))
            r->miss[i] = false;
    for (uint64_t i = 0; i < n; i++) {
        const struct sim_op *op = &ops[i];
        if (!r->miss[i])
            continue;
        res->miss_bytes += op->bytes;
        res->miss_blocks++;
        /* A partly read block that misses is read exactly, not cached,
         * unless it was partly read lately (volume.c, core/partial.h). */
        if (op->bytes < BLOCK_SIZE && !partial_seen(r->partial_seen, op->blk))
            partial_note(r->partial_seen, op->blk);
        else
            read_miss(r, &cells[op->addr], op->cid);
    }
}

/* One write request, ops[0 .. n), in the order of the daemon's write path
 * (volume.c): every block's old content dropped first (begin_range), its
 * worth kept; then the blocks written whole installed with it
 * (finish_change): a rewrite hands the old content's worth on. */
static void write_request(struct run *r, struct cell *cells, const struct sim_op *ops, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        r->heat[i] = cell_drop(r, &cells[ops[i].addr]);
    for (uint64_t i = 0; i < n; i++) {
        const struct sim_op *op = &ops[i];
        struct cell *c = &cells[op->addr];
        if (op->kind != SIM_WRITE)
            continue;
        if (r->o->zero[op->cid]) {
            c->cid = op->cid;
            c->zero = true;
        } else {
            cell_insert(r, c, op->cid, r->heat[i]);
        }
    }
}

/* The operations of the request that starts at ops[i]. */
static uint64_t request_len(const struct sim_ops *o, uint64_t i)
{
    uint64_t n = 1;
    while (o->ops[i + n - 1].more && i + n < o->n)
        n++;
    return n;
}

int sim_run_store(const struct sim_ops *o, const struct evict_ops *policy, uint64_t cache_blocks,
                  struct sim_result *res)
{
    memset(res, 0, sizeof *res);
    /* The longest request sizes the per-request scratch. */
    uint64_t longest = 1;
    for (uint64_t i = 0, n; i < o->n; i += n)
        if ((n = request_len(o, i)) > longest)
            longest = n;
    _cleanup_free_ struct cell *cells = malloc((size_t)o->naddrs * sizeof *cells + 1);
    _cleanup_free_ struct fpkey *keys = malloc((size_t)o->ncids * sizeof *keys + 1);
    _cleanup_free_ bool *have_key = calloc((size_t)o->ncids + 1, sizeof *have_key);
    _cleanup_free_ bool *miss = malloc(longest * sizeof *miss);
    _cleanup_free_ unsigned *heat = malloc(longest * sizeof *heat);
    if (!cells || !keys || !have_key || !miss || !heat)
        return -ENOMEM;
    struct run r = {.o = o, .keys = keys, .have_key = have_key, .miss = miss, .heat = heat};
    int ret = store_create(cache_blocks * BLOCK_SIZE, 0, policy, &r.s);
    if (ret < 0)
        return ret;
    /* The eviction log stays on as in the daemon (engine.c): a rewrite of
     * a block whose content was evicted learns the old key's heat from it
     * (store_unref_heat). */
    for (uint32_t i = 0; i < o->naddrs; i++)
        cells[i] = (struct cell){{0, 0}, SIM_NONE, false};
    for (uint64_t i = 0, n; i < o->n; i += n) {
        n = request_len(o, i);
        if (o->ops[i].kind == SIM_READ)
            read_request(&r, cells, &o->ops[i], n, res);
        else
            write_request(&r, cells, &o->ops[i], n);
    }
    struct store_stats st;
    store_get_stats(r.s, &st);
    res->evictions = st.evictions;
    ret = store_check(r.s);
    store_destroy(r.s);
    return ret;
}
