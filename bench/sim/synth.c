/* evict-sim's synthetic workloads, built as the same per-block operations
 * a trace becomes (sim.h), so they replay with the daemon's semantics
 * (cells, writes, dedup by content) and beside Belady's MIN. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "synth.h"

#define VDI_CLONES 12u
#define VDI_GOLD   8192u
#define VDI_PRIV   600u

const char *const synth_names[SYNTH__COUNT] = {"zipf", "zipf+scan", "loop", "storm",
                                               "vdi",  "write-mix", "shift"};

struct gen {
    struct sim_ops *o;
    uint64_t cap, zcap;
    uint32_t *cur; /* by address: its content now (SIM_NONE: unknown) */
    uint64_t rng;
    int err;
};

static uint64_t rnd(struct gen *g)
{
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static double unit(struct gen *g)
{
    return (double)(rnd(g) >> 11) / 9007199254740992.0;
}

struct zipf {
    double *cdf;
    unsigned n;
};

static int zipf_init(struct zipf *z, unsigned n, double s)
{
    z->n = n;
    z->cdf = malloc(n * sizeof *z->cdf);
    if (!z->cdf)
        return -ENOMEM;
    double sum = 0, acc = 0;
    for (unsigned i = 0; i < n; i++)
        sum += 1.0 / pow(i + 1, s);
    for (unsigned i = 0; i < n; i++) {
        acc += 1.0 / pow(i + 1, s) / sum;
        z->cdf[i] = acc;
    }
    return 0;
}

/* A rank drawn from the distribution, scattered over 0..n-1 so popularity
 * is not correlated with the block number. */
static unsigned zipf_next(struct gen *g, const struct zipf *z)
{
    double u = unit(g);
    unsigned lo = 0, hi = z->n - 1;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (unsigned)((lo * 2654435761ull) % z->n);
}

static void push(struct gen *g, struct sim_op op)
{
    struct sim_ops *o = g->o;
    if (g->err)
        return;
    if (o->n == g->cap) {
        uint64_t cap = g->cap ? g->cap * 2 : 65536;
        struct sim_op *n = realloc(o->ops, cap * sizeof *n);
        if (!n) {
            g->err = -ENOMEM;
            return;
        }
        o->ops = n;
        g->cap = cap;
    }
    o->ops[o->n++] = op;
}

static uint32_t new_cid(struct gen *g)
{
    struct sim_ops *o = g->o;
    if (o->ncids == g->zcap) {
        uint64_t cap = g->zcap ? g->zcap * 2 : 65536;
        bool *z = realloc(o->zero, cap * sizeof *z);
        if (!z) {
            g->err = -ENOMEM;
            return 0;
        }
        o->zero = z;
        g->zcap = cap;
    }
    o->zero[o->ncids] = false;
    return o->ncids++;
}

/* A read of address a: its current content, or a new one when unknown. */
static void rd(struct gen *g, uint32_t a)
{
    if (g->err)
        return;
    if (g->cur[a] == SIM_NONE)
        g->cur[a] = new_cid(g);
    push(g, (struct sim_op){.addr = a, .cid = g->cur[a], .bytes = 4096, .kind = SIM_READ});
    g->o->read_blocks++;
    g->o->read_bytes += 4096;
}

/* A read of a block whose content is shared: address a holds content cid
 * until the address is written. */
static void rd_shared(struct gen *g, uint32_t a, uint32_t cid)
{
    if (g->cur[a] == SIM_NONE)
        g->cur[a] = cid;
    rd(g, a);
}

static void wr(struct gen *g, uint32_t a)
{
    if (g->err)
        return;
    g->cur[a] = new_cid(g);
    push(g, (struct sim_op){.addr = a, .cid = g->cur[a], .kind = SIM_WRITE});
}

static void drop(struct gen *g, uint32_t a)
{
    g->cur[a] = SIM_NONE;
    push(g, (struct sim_op){.addr = a, .cid = SIM_NONE, .kind = SIM_DROP});
}

static void shuffle(struct gen *g, unsigned *v, unsigned n)
{
    for (unsigned k = n; k > 1; k--) {
        unsigned j = (unsigned)(rnd(g) % k), t = v[k - 1];
        v[k - 1] = v[j];
        v[j] = t;
    }
}

/* The four workloads evict-sim has always had, with their old random
 * sequences: addresses are the old block ids, read only. */
static void classic(struct gen *g, enum synth w, unsigned cache, uint64_t accesses)
{
    const unsigned hot = 8192, cold = 65536, boot = 6000, priv = 300, clones = 16;
    struct zipf z;
    _cleanup_free_ unsigned *order = malloc(boot * sizeof *order);
    if (!order || zipf_init(&z, hot, 0.9) < 0) {
        g->err = -ENOMEM;
        return;
    }
    uint64_t scan = 0, loop = 0;
    for (uint64_t i = 0; i < accesses && !g->err;) {
        if (w == SYNTH_ZIPF) {
            rd(g, zipf_next(g, &z));
            i++;
        } else if (w == SYNTH_ZIPF_SCAN) {
            if (rnd(g) & 1)
                rd(g, zipf_next(g, &z));
            else
                rd(g, hot + (unsigned)(scan++ % cold));
            i++;
        } else if (w == SYNTH_LOOP) {
            rd(g, (unsigned)(loop++ % (cache + cache / 4)));
            i++;
        } else {
            for (unsigned c = 0; c < clones && i < accesses; c++) {
                for (unsigned k = 0; k < boot; k++)
                    order[k] = k;
                /* The old generator's shuffle, draw for draw. */
                for (unsigned k = boot - 1; k > 0; k--) {
                    unsigned j = (unsigned)(rnd(g) % (k + 1)), t = order[k];
                    order[k] = order[j];
                    order[j] = t;
                }
                for (unsigned k = 0; k < boot && i < accesses; k++, i++) {
                    rd(g, hot + cold + order[k]);
                    if (k % 20 == 0)
                        rd(g, hot + cold + boot + c * priv + (k / 20) % priv);
                }
            }
        }
    }
    free(z.cdf);
}

/* VDI: full clones of one gold image (each its own volume, the same
 * contents: what dedup keeps once) boot one after another, overlapping:
 * each reads its boot set in runs of 8 blocks in a shuffled order, then
 * logs in (Zipf re-reads of the boot set) while writing private blocks
 * (logs, page file) and reading some back. A clone's first read of a block
 * misses (its cell does not know the content) even when a sibling brought
 * it in; what the cache keeps decides its later reads. */
static void vdi(struct gen *g, unsigned cache, uint64_t accesses)
{
    const unsigned clones = VDI_CLONES, gold = VDI_GOLD, bootset = 5000, priv = VDI_PRIV,
                   runs = bootset / 8;
    (void)cache;
    struct zipf z;
    _cleanup_free_ unsigned *order = malloc(runs * sizeof *order);
    _cleanup_free_ uint64_t *step = calloc(clones, sizeof *step);
    if (!order || !step || zipf_init(&z, bootset, 0.8) < 0) {
        g->err = -ENOMEM;
        return;
    }
    const uint64_t login = 3 * bootset, script = bootset + login;
    /* Each clone's boot order, drawn as it starts; position by step. */
    _cleanup_free_ unsigned *orders = malloc((size_t)clones * runs * sizeof *orders);
    if (!orders) {
        free(z.cdf);
        g->err = -ENOMEM;
        return;
    }
    for (unsigned c = 0; c < clones; c++) {
        for (unsigned k = 0; k < runs; k++)
            orders[c * runs + k] = k;
        shuffle(g, &orders[c * runs], runs);
    }
    uint64_t n = 0;
    /* Clone c starts when clone c-1 is a third through its script; bursts
     * of 16 operations in turn among the clones that are running. */
    while (n < accesses && !g->err) {
        bool any = false;
        for (unsigned c = 0; c < clones && n < accesses; c++) {
            if (c > 0 && step[c - 1] < script / 3)
                break;
            for (unsigned b = 0; b < 16 && step[c] < script; b++, step[c]++, n++) {
                uint32_t base = c * (gold + priv);
                uint64_t s = step[c];
                any = true;
                if (s < bootset) {
                    unsigned blk = orders[c * runs + s / 8] * 8 + (unsigned)(s % 8);
                    rd_shared(g, base + blk, blk);
                } else if (rnd(g) % 10 < 2) {
                    uint32_t p = base + gold + (unsigned)(rnd(g) % priv);
                    if (rnd(g) & 1)
                        wr(g, p);
                    else
                        rd(g, p);
                } else {
                    unsigned blk = zipf_next(g, &z);
                    rd_shared(g, base + blk, blk);
                }
            }
        }
        if (!any)
            memset(step, 0, clones * sizeof *step); /* the next storm */
    }
    free(z.cdf);
}

/* A write-heavy virtual disk like the held-out production trace: 59% of
 * the requests write, 1 to 8 blocks each. 80% of the requests go to a
 * Zipf-popular region 4x the cache that is both read and written (a
 * database or mail store: a hot block is rewritten and read back), 20% are
 * sequential: a log that is written and not read back, and a reader going
 * through cold data once. 10% of the writes are partial (they drop the
 * blocks they touch). Calibrated on the one ordering known of that trace:
 * S3-FIFO misses less than LRU there. */
static void write_mix(struct gen *g, unsigned cache, uint64_t accesses)
{
    const unsigned region = 4 * cache, seqspan = 16 * cache;
    struct zipf z;
    if (zipf_init(&z, region, 0.9) < 0) {
        g->err = -ENOMEM;
        return;
    }
    uint64_t seq_w = 0, seq_r = seqspan / 2;
    for (uint64_t n = 0; n < accesses && !g->err;) {
        bool write = unit(g) < 0.59;
        unsigned len = rnd(g) % 10 < 6 ? 1 : 2 + (unsigned)(rnd(g) % 7);
        uint32_t a;
        if (rnd(g) % 10 < 8) {
            a = zipf_next(g, &z);
        } else if (write) {
            a = region + (uint32_t)(seq_w % seqspan);
            seq_w += len;
        } else {
            a = region + (uint32_t)(seq_r % seqspan);
            seq_r += len;
        }
        bool partial = write && rnd(g) % 10 == 0;
        for (unsigned k = 0; k < len && n < accesses; k++, n++) {
            uint32_t b = a + k < region + seqspan ? a + k : a;
            if (k > 0 && !g->err)
                g->o->ops[g->o->n - 1].more = true; /* one request (run.c) */
            if (!write)
                rd(g, b);
            else if (partial)
                drop(g, b);
            else
                wr(g, b);
        }
    }
    free(z.cdf);
}

/* A hot set that moves: Zipf(0.9) over 4x the cache, the popular blocks
 * shifting to new ones every 4x the cache accesses (a new job starts):
 * frequency learnt in one phase must not hold the next one out. */
static void shift(struct gen *g, unsigned cache, uint64_t accesses)
{
    const unsigned span = 4 * cache;
    struct zipf z;
    if (zipf_init(&z, span, 0.9) < 0) {
        g->err = -ENOMEM;
        return;
    }
    for (uint64_t n = 0; n < accesses && !g->err; n++) {
        uint64_t phase = n / (4ull * cache);
        rd(g, (uint32_t)((zipf_next(g, &z) + phase * (span / 8)) % (4 * span)));
    }
    free(z.cdf);
}

static uint32_t naddrs(enum synth w, unsigned cache)
{
    switch (w) {
    case SYNTH_VDI:
        return VDI_CLONES * (VDI_GOLD + VDI_PRIV);
    case SYNTH_WRITE_MIX:
        return 20 * cache + 16;
    case SYNTH_SHIFT:
        return 16 * cache;
    default:
        return 8192 + 65536 + 6000 + 16 * 300 + 2 * cache + 16;
    }
}

int synth_build(enum synth w, unsigned cache, uint64_t accesses, uint64_t seed, struct sim_ops *out)
{
    memset(out, 0, sizeof *out);
    struct gen g = {.o = out, .rng = seed * 2654435761u + 1};
    out->naddrs = naddrs(w, cache);
    g.cur = malloc((size_t)out->naddrs * sizeof *g.cur);
    if (!g.cur)
        return -ENOMEM;
    memset(g.cur, 0xff, (size_t)out->naddrs * sizeof *g.cur);
    if (w == SYNTH_VDI) {
        /* Contents 0 .. VDI_GOLD-1 are the gold image's blocks. */
        out->zero = calloc(VDI_GOLD, sizeof *out->zero);
        if (!out->zero)
            g.err = -ENOMEM;
        g.zcap = out->ncids = out->zero ? VDI_GOLD : 0;
    }
    switch (w) {
    case SYNTH_VDI:
        vdi(&g, cache, accesses);
        break;
    case SYNTH_WRITE_MIX:
        write_mix(&g, cache, accesses);
        break;
    case SYNTH_SHIFT:
        shift(&g, cache, accesses);
        break;
    default:
        classic(&g, w, cache, accesses);
    }
    free(g.cur);
    if (g.err) {
        sim_ops_free(out);
        return g.err;
    }
    out->distinct = out->ncids;
    return 0;
}
