/* evict-sim's trace mode: a block trace turned into the cache operations
 * the daemon performs for it, replayed through the real content store with
 * each eviction policy (run.c) and through Belady's optimum (opt.c).
 *
 * The daemon's semantics (src/core/volume.c), per 4 KiB block:
 *   - a read of the block is a hit when its directory cell holds a live
 *     reference (or knows the content's key and the store holds it);
 *     otherwise a miss, and the content fetched is inserted. A block known
 *     to be all zeroes is a hit without the store.
 *   - a write inserts the content of each block it covers whole (dropping
 *     the block's old content) and drops the blocks it covers in part.
 * Content identity is (device, block, version) where the version changes
 * at every write of the block, or with --by-content the trace's MD5 (what
 * the daemon's dedup sees: one copy for many blocks). */
#ifndef SHOAL_BENCH_SIM_H
#define SHOAL_BENCH_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "../replay/trace.h"

struct evict_ops;

enum sim_kind { SIM_READ, SIM_WRITE, SIM_DROP };

#define SIM_NONE UINT32_MAX

struct sim_op {
    uint32_t addr;  /* block address index, 0 .. naddrs-1 */
    uint32_t cid;   /* content id (read, write), 0 .. ncids-1 */
    uint32_t bytes; /* read: bytes of the request within this block */
    uint8_t kind;
    bool more;    /* the next operation is a block of the same request */
    uint64_t blk; /* the block's number in the trace (core/partial.h's table) */
};

struct sim_ops {
    struct sim_op *ops;
    uint64_t n;
    uint32_t naddrs, ncids;
    bool *zero;        /* by cid: the all-zero block */
    uint64_t distinct; /* what sizes are shares of: distinct addresses (or contents) */
    uint64_t read_bytes, read_blocks;
};

/* Build the operations. by_content needs a trace with MD5s (fiu);
 * merge_devices puts every device's blocks in one address space, as
 * shoal-replay does when it replays a multi-device trace on one export.
 * 0, -EINVAL (by_content without MD5s; a message says so), -ENOMEM. */
int sim_ops_build(const struct trace *t, bool by_content, bool merge_devices, struct sim_ops *out);
void sim_ops_free(struct sim_ops *o);

struct sim_result {
    uint64_t read_bytes, miss_bytes;
    uint64_t read_blocks, miss_blocks;
    uint64_t evictions;
};

/* Replay through a real store of cache_blocks with the policy, a request
 * at a time in the daemon's order (volume.c): a read looks every block up,
 * then by key the ones that missed, then installs what it fetched; a write
 * drops every block's old content, then installs the new ones. */
int sim_run_store(const struct sim_ops *o, const struct evict_ops *policy, uint64_t cache_blocks,
                  struct sim_result *res);

/* Belady's MIN: on a miss with the cache full, evict the content whose next
 * read is furthest away, with the same operations and reference counting. */
int sim_run_opt(const struct sim_ops *o, uint64_t cache_blocks, struct sim_result *res);

/* evict-sim --trace ...: parse, run, report (report.c). The exit code. */
int sim_trace_main(int argc, char **argv);

#endif
