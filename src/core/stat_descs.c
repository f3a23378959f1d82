/* The stat descriptor tables, generated from the one list (stats_list.h).
 * Renderers (JSON, Prometheus, shoalctl) walk them; the management tests'
 * fake engine links this file too, so both render from the same tables. */
#include <stddef.h>

#include "common/util.h"
#include "core/engine.h"

const struct stat_desc volume_stat_descs[] = {
#define X(n, k, u, h) {#n, k, u, h, offsetof(struct volume_snapshot, n)},
    VOLUME_COUNTERS(X) VOLUME_GAUGES(X) VOLUME_RATIOS(X)
#undef X
};
const unsigned volume_stat_count = ARRAY_SIZE(volume_stat_descs);

const struct stat_desc cache_stat_descs[] = {
#define X(n, k, u, h) {#n, k, u, h, offsetof(struct cache_snapshot, n)},
    CACHE_GAUGES(X) CACHE_SECONDS(X) CACHE_RATIOS(X)
#undef X
};
const unsigned cache_stat_count = ARRAY_SIZE(cache_stat_descs);
