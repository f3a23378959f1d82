/* Implementation of the small helpers in util.h. */
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

char *str_printable(char *s)
{
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return s;
}

bool buf_is_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    /* Check a short prefix byte-wise, then compare the buffer with itself
     * shifted: memcmp is vectorised and this needs no zero page. */
    size_t head = len < 16 ? len : 16;
    for (size_t i = 0; i < head; i++)
        if (b[i])
            return false;
    if (len <= 16)
        return true;
    return memcmp(b, b + 16, len - 16) == 0;
}

int parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v) || v < 0)
        return -EINVAL;
    uint64_t mult = 1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        mult = 1ull << 10;
        end++;
        break;
    case 'M':
        mult = 1ull << 20;
        end++;
        break;
    case 'G':
        mult = 1ull << 30;
        end++;
        break;
    case 'T':
        mult = 1ull << 40;
        end++;
        break;
    case 'P':
        mult = 1ull << 50;
        end++;
        break;
    default:
        break;
    }
    if (mult > 1 && (*end == 'i' || *end == 'I'))
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0')
        return -EINVAL;
    double bytes = v * (double)mult;
    if (bytes >= 18446744073709551615.0)
        return -ERANGE;
    if (bytes != floor(bytes))
        return -EINVAL; /* fractional bytes */
    *out = (uint64_t)bytes;
    return 0;
}

int parse_duration_ms(const char *s, uint64_t *out_ms)
{
    if (!s || !*s || *s == '-')
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        return -EINVAL;
    double mult = 1000;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -EINVAL;
    double ms = v * mult;
    if (ms >= 18446744073709551615.0) /* 2^64: converting would be undefined */
        return -ERANGE;
    *out_ms = (uint64_t)ms;
    return 0;
}

char *format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

uint64_t heap_in_use_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (uint64_t)mi.uordblks + (uint64_t)mi.hblkhd;
}
