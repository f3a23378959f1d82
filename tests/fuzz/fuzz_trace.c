/* libFuzzer target for shoal-replay's trace parser (bench/replay/trace.c):
 * MSR CSV, blkparse text, vSCSI v1/v2 binary, DiskSim ASCII, FIU (with MD5s)
 * and the format detection.
 *
 * Input: one option byte, then the trace file's bytes. The option byte:
 *   bits 0-1  format with bit 3: 0 auto, 1 msr, 2 blkparse, 3 vscsi,
 *             4 disksim, 5 fiu, 6 auto, 7 blkparse (6 and 7: action 'C')
 *   bit  2    strict
 *   bits 4-5  disk filter: none, "0", "8,0", "1"
 *   bits 6-7  limit: 0 (all), 1, 2, 7
 * The trace is written to a memfd and loaded through /proc/self/fd/N, the
 * way the replayer opens a path. The parser's reports go to stderr; the
 * harness points `stderr` at /dev/null around the call (libFuzzer and the
 * sanitizers write to fd 2 directly, so their reports still show).
 *
 * After a load the harness checks what trace.h promises and what the
 * replayer relies on, and aborts when something does not hold: counters
 * agree with the records, every record is a read or a write of 1 byte to
 * TRACE_MAX_REC_LEN, offset + len does not wrap and stays within max_end,
 * times are relative to the earliest record, a failed load leaves nothing
 * allocated, a strict load that succeeded skipped nothing. --limit counts
 * trace lines: a long line split into several records may take the count
 * past the limit, but only with the pieces of that last line.
 *
 * Set SHOAL_FUZZ_LOG=1 to see the parser's messages while reproducing. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "trace.h" /* bench/replay */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    memfd = memfd_create("trace", MFD_CLOEXEC);
    if (memfd < 0)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", memfd);
    if (!getenv("SHOAL_FUZZ_LOG")) {
        devnull = fopen("/dev/null", "w");
        if (!devnull)
            abort();
    }
    return 0;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_trace: invariant failed: %s (%s:%d)\n", #cond, __FILE__,         \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_trace(const struct trace_opts *o, const struct trace *t)
{
    CHECK(t->format != TRACE_AUTO);
    CHECK(o->format == TRACE_AUTO || t->format == o->format);
    CHECK(t->n <= t->cap);
    CHECK(t->n == 0 || t->recs);
    CHECK(t->reads + t->writes == t->n);
    CHECK(!o->strict || t->malformed == 0);
    CHECK(!t->md5 || t->format == TRACE_FIU);
    CHECK(t->format != TRACE_FIU || t->n == 0 || t->md5);
    uint64_t reads = 0, rbytes = 0, wbytes = 0, max_len = 0, max_end = 0;
    uint64_t min_ts = UINT64_MAX;
    for (uint64_t i = 0; i < t->n; i++) {
        const struct trace_rec *r = &t->recs[i];
        CHECK(r->op == TRACE_READ || r->op == TRACE_WRITE);
        CHECK(t->format != TRACE_FIU || r->len == 4096);
        CHECK(t->format == TRACE_DISKSIM || r->dev == 0);
        CHECK(r->len > 0 && r->len <= TRACE_MAX_REC_LEN);
        CHECK(r->offset <= UINT64_MAX - r->len);
        CHECK(r->offset + r->len <= t->max_end);
        if (r->op == TRACE_READ) {
            reads++;
            rbytes += r->len;
        } else {
            wbytes += r->len;
        }
        if (r->len > max_len)
            max_len = r->len;
        if (r->offset + r->len > max_end)
            max_end = r->offset + r->len;
        if (r->ts_ns < min_ts)
            min_ts = r->ts_ns;
    }
    CHECK(reads == t->reads);
    CHECK(rbytes == t->read_bytes && wbytes == t->write_bytes);
    CHECK(max_len == t->max_len && max_end == t->max_end);
    CHECK(t->n == 0 || min_ts == 0);
    if (o->limit && t->n > o->limit) {
        /* Only the pieces of the line that reached the limit. */
        for (uint64_t i = o->limit; i < t->n; i++) {
            const struct trace_rec *a = &t->recs[i - 1], *b = &t->recs[i];
            CHECK(a->len == TRACE_MAX_REC_LEN && b->offset == a->offset + a->len &&
                  b->op == a->op && b->ts_ns == a->ts_ns);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const disks[] = {NULL, "0", "8,0", "1"};
    static const uint64_t limits[] = {0, 1, 2, 7};
    static const enum trace_format formats[] = {TRACE_AUTO,  TRACE_MSR,     TRACE_BLKPARSE,
                                                TRACE_VSCSI, TRACE_DISKSIM, TRACE_FIU,
                                                TRACE_AUTO,  TRACE_BLKPARSE};
    uint8_t b = data[0];
    unsigned fi = (b & 3) | ((b >> 1) & 4);
    struct trace_opts o = {
        .format = formats[fi],
        .strict = b & 4,
        .blk_action = fi >= 6 ? 'C' : 'Q',
        .disk = disks[(b >> 4) & 3],
        .limit = limits[(b >> 6) & 3],
        .max_reports = 2,
    };
    data++;
    size--;
    if (ftruncate(memfd, 0) < 0 || (size && pwrite(memfd, data, size, 0) != (ssize_t)size))
        abort();

    struct trace t;
    FILE *saved = stderr;
    if (devnull)
        stderr = devnull;
    int r = trace_load(path, &o, &t);
    stderr = saved;
    if (r < 0) {
        CHECK(r == -EINVAL || r == -ENOMEM);
        CHECK(t.recs == NULL && t.n == 0);
        return 0;
    }
    check_trace(&o, &t);
    trace_free(&t);
    return 0;
}
