/* A small client for shoald's management API, enough for shoal-replay:
 * read a volume's counters, read and change the cache size, invalidate a
 * volume. Plain HTTP/1.0 over TCP (the API listens on loopback), one
 * request per connection, JSON bodies through jansson. */
#ifndef SHOAL_BENCH_API_H
#define SHOAL_BENCH_API_H

#include <stdint.h>

struct api {
    char host[256];
    char port[16];
    char prefix[256]; /* path before /api/v1, usually empty */
    char *token;      /* bearer token for changes, or NULL */
};

/* The counters shoal-replay turns into hit ratio and offload. */
struct api_vol_stats {
    uint64_t read_ops, read_bytes, read_hit_bytes, read_miss_bytes;
    uint64_t write_ops, write_bytes;
    uint64_t backend_read_ops, backend_read_bytes;
    uint64_t errors;
};

/* url: "http://HOST:PORT[/prefix]" or "HOST:PORT". token_file may be NULL.
 * 0 or -EINVAL / -errno. */
int api_init(struct api *a, const char *url, const char *token_file);
void api_free(struct api *a);

int api_volume_stats(struct api *a, const char *volume, struct api_vol_stats *out);
int api_cache_capacity(struct api *a, uint64_t *bytes);
int api_cache_resize(struct api *a, uint64_t bytes);
int api_invalidate(struct api *a, const char *volume);

#endif
