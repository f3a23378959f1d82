/* QD1 random-read latency. Every device sees the same offsets (one
 * generator per device, seeded alike), each read is timed alone with
 * CLOCK_MONOTONIC around the synchronous call, and the devices take turns
 * in slices (rotated each round) so a burst of load from elsewhere on a
 * shared machine falls on all of them. */
#include "lat.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct side {
    struct blkdev *d;
    uint64_t rng;
    uint64_t slots; /* bs-sized slots in the range */
    uint32_t *ns;   /* one latency per timed read */
    uint64_t n;
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int one_read(struct side *s, uint32_t bs, void *buf, uint32_t *ns)
{
    uint64_t off = (xorshift(&s->rng) % s->slots) * bs;
    uint64_t t0 = now_ns();
    int r = blkdev_pread(s->d, buf, bs, off);
    uint64_t t1 = now_ns();
    if (ns)
        *ns = (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
    return r;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint32_t *sorted, uint64_t n, double q)
{
    uint64_t i = (uint64_t)(q / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i] / 1000.0;
}

static void report(FILE *out, const struct side *s, const struct lat_opts *o, bool last)
{
    double sum = 0, sq = 0;
    for (uint64_t i = 0; i < s->n; i++)
        sum += s->ns[i];
    double mean = sum / (double)s->n;
    for (uint64_t i = 0; i < s->n; i++)
        sq += (s->ns[i] - mean) * (s->ns[i] - mean);
    qsort(s->ns, s->n, sizeof *s->ns, cmp_u32);
    fprintf(out,
            "    {\"url\": \"%s\", \"protocol\": \"%s\", \"bs\": %u, \"range_bytes\": %llu, "
            "\"ops\": %llu, \"mean_us\": %.3f, \"stdev_us\": %.3f, \"min_us\": %.3f, "
            "\"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f}%s\n",
            s->d->url, s->d->ops->name, o->bs, (unsigned long long)(s->slots * o->bs),
            (unsigned long long)s->n, mean / 1000.0, sqrt(sq / (double)s->n) / 1000.0,
            s->ns[0] / 1000.0, pct_us(s->ns, s->n, 50), pct_us(s->ns, s->n, 90),
            pct_us(s->ns, s->n, 99), s->ns[s->n - 1] / 1000.0, last ? "" : ",");
}

int lat_run(struct blkdev **devs, unsigned ndev, const struct lat_opts *o, FILE *out)
{
    struct side *sides = calloc(ndev, sizeof *sides);
    void *buf = NULL;
    int r = 0;
    if (!sides || posix_memalign(&buf, 4096, o->bs) != 0) {
        free(sides);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < ndev && r == 0; i++) {
        struct side *s = &sides[i];
        s->d = devs[i];
        s->rng = o->seed ? o->seed : 0x9e3779b97f4a7c15ull;
        uint64_t range = o->range && o->range < s->d->size ? o->range : s->d->size;
        s->slots = range / o->bs;
        s->ns = malloc(o->ops * sizeof *s->ns);
        if (!s->ns)
            r = -ENOMEM;
        else if (s->slots == 0) {
            fprintf(stderr, "shoal-blkbench: %s: smaller than one %u-byte read\n", s->d->url,
                    o->bs);
            r = -EINVAL;
        }
    }
    for (unsigned i = 0; i < ndev && r == 0; i++)
        for (uint64_t k = 0; k < o->warmup && r == 0; k++)
            r = one_read(&sides[i], o->bs, buf, NULL);
    unsigned rounds = o->rounds ? o->rounds : 1;
    for (unsigned round = 0; round < rounds && r == 0; round++) {
        uint64_t end = o->ops * (round + 1) / rounds;
        for (unsigned j = 0; j < ndev && r == 0; j++) {
            struct side *s = &sides[(j + round) % ndev];
            while (s->n < end && r == 0) {
                r = one_read(s, o->bs, buf, &s->ns[s->n]);
                s->n++;
            }
        }
    }
    if (r == 0) {
        fprintf(out, "{\n  \"mode\": \"lat\", \"queue_depth\": 1, \"rounds\": %u, \"devices\": [\n",
                rounds);
        for (unsigned i = 0; i < ndev; i++)
            report(out, &sides[i], o, i + 1 == ndev);
        fprintf(out, "  ]\n}\n");
    }
    for (unsigned i = 0; i < ndev; i++)
        free(sides[i].ns);
    free(sides);
    free(buf);
    return r;
}
