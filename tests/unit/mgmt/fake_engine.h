/* A fake engine for the management tests: implements the part of
 * core/engine.h that mgmt calls, with canned volumes and stats, and records
 * every control call so tests can check what the API asked for.
 *
 * Canned state after fake_engine_reset():
 *   "vm1"         1 GiB, file back end, enabled, read-write, no clients,
 *                 traffic and latency samples
 *   "gold.base-2" 256 MiB, nbd back end whose description holds a quote, a
 *                 backslash and a newline (label escaping), disabled,
 *                 read-only, 2 clients (so a plain remove is refused),
 *                 no reads (hit_ratio is NaN: renderers must cope)
 * Behaviour:
 *   add: -EEXIST for a taken name, -EINVAL for a bad name, -ENOENT when the
 *        spec starts with "/nonexistent", -EPERM (what the back ends say
 *        for a path outside --backing-dir) when it starts with
 *        "/forbidden", else a 64 MiB volume;
 *   remove: -ENOENT, -EBUSY when clients are connected and !force;
 *   prefetch: each status call advances it by a quarter; until it is done
 *             a second start is -EBUSY;
 *   resize: -EINVAL below 1 MiB. */
#ifndef SHOAL_TESTS_FAKE_ENGINE_H
#define SHOAL_TESTS_FAKE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/engine.h"

struct fake_calls {
    unsigned add, remove, set_enabled, invalidate, prefetch, resize;
    struct {
        char name[256], spec[256];
        bool readonly, disabled, backend_readonly, direct;
        unsigned conns;
        char backing_dirs[256]; /* the backing_dirs list joined with ':' */
    } last_add;
    char remove_name[256];
    bool remove_force;
    char enabled_name[256];
    bool enabled_on;
    char invalidate_name[256];
    uint64_t invalidate_offset, invalidate_length;
    char prefetch_name[256];
    uint64_t prefetch_offset, prefetch_length;
    uint64_t resize_bytes;
};

struct engine *fake_engine_new(void);
void fake_engine_free(struct engine *e);
/* Restore the canned volumes and clear the recorded calls. */
void fake_engine_reset(struct engine *e);
/* Copy of the calls recorded so far (taken under the fake's lock). */
void fake_engine_calls(struct engine *e, struct fake_calls *out);
/* Volume references currently held by callers (must be 0 between requests). */
int fake_engine_refs(struct engine *e);

#endif
