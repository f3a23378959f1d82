/* Small helpers every module needs: byte order, sizes, time, arithmetic.
 * Nothing here allocates or locks. */
#ifndef SHOAL_COMMON_UTIL_H
#define SHOAL_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define ARRAY_SIZE(a)      (sizeof(a) / sizeof((a)[0]))
#define likely(x)          __builtin_expect(!!(x), 1)
#define unlikely(x)        __builtin_expect(!!(x), 0)
#define MIN(a, b)          ((a) < (b) ? (a) : (b))
#define MAX(a, b)          ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))
#define IS_POW2(x)         ((x) != 0 && ((x) & ((x)-1)) == 0)

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Big-endian (network order) loads and stores on unaligned buffers. */
static inline uint16_t get_be16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return __builtin_bswap16(v);
}
static inline uint32_t get_be32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint64_t get_be64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline void put_be16(void *p, uint16_t v)
{
    v = __builtin_bswap16(v);
    memcpy(p, &v, 2);
}
static inline void put_be32(void *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
}
static inline void put_be64(void *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The CLOCK_MONOTONIC time ms milliseconds from now: the deadline of a
 * pthread_cond_timedwait on a condvar set to that clock. */
static inline void deadline_after_ms(uint64_t ms, struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (ms % 1000) * 1000000ull;
    ts->tv_sec += (time_t)(ms / 1000 + ns / 1000000000ull);
    ts->tv_nsec = (long)(ns % 1000000000ull);
}

/* Bitmaps of uint64_t words: bit i of m. */
static inline bool bitmap_test(const uint64_t *m, uint32_t i)
{
    return (m[i / 64] >> (i % 64)) & 1;
}
static inline void bitmap_set(uint64_t *m, uint32_t i)
{
    m[i / 64] |= 1ull << (i % 64);
}
static inline void bitmap_clear(uint64_t *m, uint32_t i)
{
    m[i / 64] &= ~(1ull << (i % 64));
}

static inline uint64_t round_up_pow2_u64(uint64_t x)
{
    if (x <= 1)
        return 1;
    return 1ull << (64 - __builtin_clzll(x - 1));
}

/* True when `len` bytes at `p` are all zero. Fast path for 4 KiB blocks. */
bool buf_is_zero(const void *p, size_t len);

/* Parse "123", "64K", "1.5G", "2T" (binary units, optional trailing B or iB).
 * Returns 0 and the byte count, or -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

/* Parse a duration: "10" (seconds), "500ms", "2s", "1m". Returns 0, -EINVAL, or
 * -ERANGE when the milliseconds do not fit in 64 bits. */
int parse_duration_ms(const char *s, uint64_t *out_ms);

/* Replace control bytes in s (a line break, an escape sequence) with '?',
 * in place: text from outside (a server's answer, a file) quoted in a
 * one-line message or a terminal cell stays on its line. Returns s. */
char *str_printable(char *s);

/* Human-readable size into buf ("1.5 GiB"). Returns buf. */
char *format_size(uint64_t bytes, char *buf, size_t len);

/* Bytes the allocator has handed out and not had back, every arena and
 * its mmapped chunks (mallinfo2): what a leak raises, while RSS also moves
 * as the arenas settle. It locks each arena in turn and walks its free
 * lists: for a stats reply, not for an I/O path. */
uint64_t heap_in_use_bytes(void);

#endif
