/* Implementation of the latency histograms; see histogram.h. */
#include "common/histogram.h"

#include <math.h>

void hist_record(struct histogram *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    int i = us == 0 ? 0 : 64 - __builtin_clzll(us); /* us < 2^i */
    if (i > HIST_BUCKETS - 1)
        i = HIST_BUCKETS - 1;
    __atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

void hist_snapshot(const struct histogram *h, struct histogram_snap *out)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        out->buckets[i] = __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
    out->count = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
    out->sum_ns = __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
}

double hist_bucket_le_seconds(int i)
{
    if (i >= HIST_BUCKETS - 1)
        return INFINITY;
    return ldexp(1.0, i) / 1e6;
}

double hist_quantile_us(const struct histogram_snap *s, double q)
{
    uint64_t total = 0;
    for (int i = 0; i < HIST_BUCKETS; i++)
        total += s->buckets[i];
    if (total == 0)
        return 0;
    double rank = q * (double)total;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        if (s->buckets[i] == 0)
            continue;
        if ((double)(seen + s->buckets[i]) >= rank) {
            double lo = i == 0 ? 0 : ldexp(1.0, i - 1);
            double hi = ldexp(1.0, i);
            if (i == HIST_BUCKETS - 1)
                return lo; /* open-ended bucket: report its lower bound */
            double frac = (rank - (double)seen) / (double)s->buckets[i];
            return lo + (hi - lo) * frac;
        }
        seen += s->buckets[i];
    }
    return ldexp(1.0, HIST_BUCKETS - 2);
}

void hist_merge(struct histogram_snap *a, const struct histogram_snap *b)
{
    for (int i = 0; i < HIST_BUCKETS; i++)
        a->buckets[i] += b->buckets[i];
    a->count += b->count;
    a->sum_ns += b->sum_ns;
}
