/* The replay loop of shoal-replay: issues a loaded trace's records on one
 * NBD connection with libnbd's asynchronous API, keeping up to a queue depth
 * of commands in flight, either as fast as possible or at the trace's
 * recorded times, and measures each command's client-side latency.
 *
 * Offsets beyond the export: OFF_WRAP takes the offset modulo the export
 * size and, when the request would then cross the end, moves it back so it
 * ends at the end (counted as `moved`); OFF_CLIP drops a request that starts
 * past the end and truncates one that crosses it (counted as `clipped`).
 * A request longer than the export is cut to the export size either way.
 *
 * Writes carry generated content: a xorshift stream seeded from the seed,
 * the offset and the op number, so no two written 4 KiB blocks repeat
 * (they neither dedup against each other nor against the image). */
#ifndef SHOAL_BENCH_ENGINE_H
#define SHOAL_BENCH_ENGINE_H

#include <libnbd.h>
#include <stdbool.h>
#include <stdint.h>

#include "trace.h"

enum off_mode { OFF_WRAP, OFF_CLIP };

struct replay_opts {
    unsigned qd;
    bool timing;  /* issue at recorded times */
    double speed; /* with timing: 2.0 = twice as fast */
    enum off_mode offsets;
    bool reads_only;           /* skip the trace's writes */
    unsigned repeat;           /* passes over the trace */
    const char *progress_path; /* append "unix_s read_bytes write_bytes ops" lines */
    double progress_interval;  /* seconds */
    uint64_t seed;
    double start_at; /* unix time to start at (0: now): lines up several replayers */
};

struct lat_set {
    uint64_t *ns;
    uint64_t n;
};

struct replay_result {
    uint64_t ops, read_ops, write_ops;
    uint64_t read_bytes, write_bytes;
    uint64_t errors;  /* commands that failed */
    uint64_t dropped; /* OFF_CLIP: started past the end */
    uint64_t clipped; /* OFF_CLIP: truncated */
    uint64_t moved;   /* OFF_WRAP: moved back to fit */
    uint64_t skipped; /* writes skipped by reads_only */
    uint64_t late;    /* timing: issued more than 1 ms after their time */
    double seconds;
    double start_unix, end_unix; /* wall clock at the first issue and the last completion */
    struct lat_set lat[2];       /* by trace_op */
};

/* Replay t on h (connected; export_size its size). 0, or a negative errno
 * when the connection failed (res still holds what was done). Command
 * errors do not stop the replay; they are counted. */
int replay_run(struct nbd_handle *h, uint64_t export_size, const struct trace *t,
               const struct replay_opts *o, struct replay_result *res);
void replay_result_free(struct replay_result *res);

/* Nearest-rank percentile (0..100) of a sorted set, in microseconds. */
double lat_pct_us(const struct lat_set *l, double p);
double lat_mean_us(const struct lat_set *l);
/* Sort both sets (done by replay_run before it returns). */
void lat_sort(struct lat_set *l);

#endif
