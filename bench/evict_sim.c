/* evict-sim: replay block traces through the real content store with each
 * eviction policy and report miss ratios. This is the measurement behind
 * the default policy choice (see src/core/evict_s3fifo.c).
 *
 *   evict-sim [--accesses N] [--cache BLOCKS] [--seed S]    synthetic
 *   evict-sim --trace FILE [--format F] [--sizes 1%,10%,30%] [--json] ...
 *             a real trace with the daemon's semantics, and Belady's MIN
 *             (bench/sim/, --trace --help for the options)
 *
 * Workloads (block ids; each id is a distinct 4 KiB content):
 *   zipf      Zipf(0.9) over 8192 hot blocks
 *   zipf+scan half Zipf(0.9) hot reads, half a sequential scan over 65536
 *             cold blocks (a backup or image copy running beside the VMs)
 *   loop      a loop over 1.25x the cache (LRU's worst case)
 *   storm     16 clones booting: each clone reads the same 6000-block boot
 *             set in a shuffled order, plus 300 private blocks, in turn */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "core/block.h"
#include "core/evict.h"
#include "core/fingerprint.h"
#include "core/store.h"
#include "sim/sim.h"

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

struct zipf {
    double *cdf;
    unsigned n;
};

static void zipf_init(struct zipf *z, unsigned n, double s)
{
    z->n = n;
    z->cdf = malloc(n * sizeof *z->cdf);
    double sum = 0;
    for (unsigned i = 0; i < n; i++)
        sum += 1.0 / pow(i + 1, s);
    double acc = 0;
    for (unsigned i = 0; i < n; i++) {
        acc += 1.0 / pow(i + 1, s) / sum;
        z->cdf[i] = acc;
    }
}

static unsigned zipf_next(struct zipf *z)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0;
    unsigned lo = 0, hi = z->n - 1;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Scatter ranks over ids so popularity is not correlated with id. */
    return (lo * 2654435761u) % z->n;
}

struct sim {
    struct store *s;
    struct store_ref *refs; /* by id */
    unsigned nids;
    uint64_t accesses, misses;
};

static void access_id(struct sim *m, unsigned id)
{
    uint8_t buf[16];
    m->accesses++;
    if (store_read(m->s, m->refs[id], buf, 0, sizeof buf) == 0)
        return;
    m->misses++;
    uint8_t blk[BLOCK_SIZE];
    memset(blk, 0, sizeof blk);
    memcpy(blk, &id, sizeof id);
    struct fp fp;
    fp_compute(blk, &fp);
    if (store_get_or_insert(m->s, &fp, blk, &m->refs[id]) < 0)
        m->refs[id] = (struct store_ref){0, 0};
}

enum workload { W_ZIPF, W_ZIPF_SCAN, W_LOOP, W_STORM, W__COUNT };
static const char *const wname[] = {"zipf", "zipf+scan", "loop", "storm"};

static double run(const struct evict_ops *pol, enum workload w, unsigned cache, uint64_t accesses,
                  uint64_t seed)
{
    struct sim m = {0};
    const unsigned hot = 8192, cold = 65536, boot = 6000, priv = 300, clones = 16;
    m.nids = hot + cold + boot + clones * priv + 2 * cache + 16;
    m.refs = calloc(m.nids, sizeof *m.refs);
    if (store_create((uint64_t)cache * BLOCK_SIZE, 0, pol, &m.s) < 0) {
        fprintf(stderr, "store_create failed\n");
        exit(1);
    }
    rng_state = seed * 2654435761u + 1;
    struct zipf z;
    zipf_init(&z, hot, 0.9);
    uint64_t scan = 0, loop = 0;
    unsigned *order = malloc(boot * sizeof *order);
    for (uint64_t i = 0; i < accesses;) {
        switch (w) {
        case W_ZIPF:
            access_id(&m, zipf_next(&z));
            i++;
            break;
        case W_ZIPF_SCAN:
            if (rnd() & 1)
                access_id(&m, zipf_next(&z));
            else
                access_id(&m, hot + (unsigned)(scan++ % cold));
            i++;
            break;
        case W_LOOP:
            access_id(&m, (unsigned)(loop++ % (cache + cache / 4)));
            i++;
            break;
        case W_STORM:
            for (unsigned c = 0; c < clones && i < accesses; c++) {
                for (unsigned k = 0; k < boot; k++)
                    order[k] = k;
                for (unsigned k = boot - 1; k > 0; k--) {
                    unsigned j = (unsigned)(rnd() % (k + 1));
                    unsigned t = order[k];
                    order[k] = order[j];
                    order[j] = t;
                }
                for (unsigned k = 0; k < boot && i < accesses; k++, i++) {
                    access_id(&m, hot + cold + order[k]);
                    if (k % 20 == 0)
                        access_id(&m, hot + cold + boot + c * priv + (k / 20) % priv);
                }
            }
            break;
        default:
            i++;
        }
    }
    double ratio = m.accesses ? (double)m.misses / (double)m.accesses : 0;
    free(order);
    free(z.cdf);
    free(m.refs);
    store_destroy(m.s);
    return ratio;
}

int main(int argc, char **argv)
{
    uint64_t accesses = 2000000, seed = 1;
    unsigned cache = 4096;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--trace") || !strncmp(argv[i], "--trace=", 8)) {
            int r = sim_trace_main(argc, argv);
            return r;
        }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--accesses") && i + 1 < argc)
            accesses = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--cache") && i + 1 < argc)
            cache = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: evict-sim [--accesses N] [--cache BLOCKS] [--seed S]\n"
                            "       evict-sim --trace FILE ... (--trace x --help: the options)\n");
            return 2;
        }
    }
    const struct evict_ops *pols[] = {&evict_s3fifo_ops, &evict_lru_ops, &evict_sieve_ops,
                                      &evict_arc_ops};
    printf("cache %u blocks, %llu accesses per run, seed %llu\n", cache,
           (unsigned long long)accesses, (unsigned long long)seed);
    printf("%-10s", "workload");
    for (size_t p = 0; p < ARRAY_SIZE(pols); p++)
        printf(" %10s", pols[p]->name);
    printf("   (miss ratio, lower is better)\n");
    for (int w = 0; w < W__COUNT; w++) {
        printf("%-10s", wname[w]);
        for (size_t p = 0; p < ARRAY_SIZE(pols); p++)
            printf(" %10.4f", run(pols[p], (enum workload)w, cache, accesses, seed));
        printf("\n");
    }
    return 0;
}
