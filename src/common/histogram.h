/* Lock-free latency histograms: log2 buckets from 1 us to ~16 s, updated
 * with relaxed atomics on the I/O path and summarised (p50/p99, Prometheus
 * buckets) by the management side. */
#ifndef SHOAL_COMMON_HISTOGRAM_H
#define SHOAL_COMMON_HISTOGRAM_H

#include <stdint.h>

/* Bucket i counts samples with latency < 2^i microseconds (i = 0..HIST_BUCKETS-2);
 * the last bucket is +Inf. */
#define HIST_BUCKETS 26

struct histogram {
    uint64_t buckets[HIST_BUCKETS]; /* atomic, relaxed */
    uint64_t count;
    uint64_t sum_ns;
};

/* Plain copy for rendering. */
struct histogram_snap {
    uint64_t buckets[HIST_BUCKETS];
    uint64_t count;
    uint64_t sum_ns;
};

void hist_record(struct histogram *h, uint64_t ns);
void hist_snapshot(const struct histogram *h, struct histogram_snap *out);
/* Upper bound of bucket i in seconds (+Inf for the last). */
double hist_bucket_le_seconds(int i);
/* Estimated quantile q (0..1) in microseconds, interpolated within the bucket; 0 if empty. */
double hist_quantile_us(const struct histogram_snap *s, double q);
/* Element-wise a += b. */
void hist_merge(struct histogram_snap *a, const struct histogram_snap *b);

#endif
