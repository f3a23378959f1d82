/* Stat descriptors: every statistic is declared once in an X-macro list
 * (core/stats_list.h) and this header turns a list into a table of
 * descriptors that the JSON, Prometheus and CLI renderers walk. Nothing here
 * knows a stat's name. */
#ifndef SHOAL_COMMON_STATS_H
#define SHOAL_COMMON_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum stat_kind {
    STAT_COUNTER, /* monotonic uint64 */
    STAT_GAUGE,   /* instantaneous uint64 */
    STAT_RATIO,   /* derived double 0..1 (or >= 1 for dedup), computed from other fields */
    STAT_SECONDS, /* monotonic double: time spent, in seconds (Prometheus' base unit) */
};

struct stat_desc {
    const char *name; /* JSON key and Prometheus suffix */
    enum stat_kind kind;
    const char *unit; /* "bytes", "ops", "blocks", "ratio", ... */
    const char *help;
    size_t offset; /* offset of the uint64_t / double field in the snapshot struct */
};

/* Whether the stat's snapshot field is a double (else a uint64). */
static inline bool stat_is_f64(const struct stat_desc *d)
{
    return d->kind == STAT_RATIO || d->kind == STAT_SECONDS;
}
/* Whether it only grows (a Prometheus counter). */
static inline bool stat_is_monotonic(const struct stat_desc *d)
{
    return d->kind == STAT_COUNTER || d->kind == STAT_SECONDS;
}

static inline uint64_t stat_u64(const void *snap, const struct stat_desc *d)
{
    return *(const uint64_t *)((const char *)snap + d->offset);
}
static inline double stat_f64(const void *snap, const struct stat_desc *d)
{
    return *(const double *)((const char *)snap + d->offset);
}

/* Relaxed atomic counter add, for the hot path. */
/* num / den, 0 when den is 0 (ratios of counters that may still be 0). */
static inline double stat_ratio(uint64_t num, uint64_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

#define STAT_ADD(field, n) __atomic_fetch_add(&(field), (uint64_t)(n), __ATOMIC_RELAXED)
#define STAT_LOAD(field)   __atomic_load_n(&(field), __ATOMIC_RELAXED)

#endif
