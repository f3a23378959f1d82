/* iscsi:// URI parser (see uri.h). Every byte of the spec is checked: it
 * comes from the command line, a config file or the management API, and
 * the pieces end up in a login PDU and in file paths. */
#include "backend/iscsi/uri.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* For "%.*s" lengths: an int, capped so a message stays one short line. */
#define MIN_INT(a, b) ((int)((size_t)(a) < (size_t)(b) ? (size_t)(a) : (size_t)(b)))

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hexval(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Printable ASCII without space: what may appear anywhere in the spec. */
static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* An iSCSI name (RFC 7143 3.2.6): iqn., eui. or naa. and then letters,
 * digits, '.', '-', ':' (and '_', which some arrays use). */
static bool valid_name(const char *s, size_t n)
{
    if (n < 5 || n > ISCSI_URI_MAX_NAME)
        return false;
    if (strncasecmp(s, "iqn.", 4) && strncasecmp(s, "eui.", 4) && strncasecmp(s, "naa.", 4))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && !strchr(".-:_", s[i]))
            return false;
    return true;
}

/* Decimal without sign or leading junk, at most max. */
static bool parse_dec(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    if (n == 0 || n > 10)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* %XX-decode n bytes into a new string; NUL and control bytes are refused
 * (a value is a path or a name). *bad is set when the encoding is wrong. */
static char *unescape(const char *s, size_t n, bool *bad)
{
    char *out = malloc(n + 1), *w = out;
    *bad = false;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int h = i + 2 < n ? hexval(s[i + 1]) : -1;
            int l = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (h < 0 || l < 0) {
                *bad = true;
                break;
            }
            c = (char)(h << 4 | l);
            i += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f) {
            *bad = true;
            break;
        }
        *w++ = c;
    }
    *w = '\0';
    if (*bad) {
        free(out);
        return NULL;
    }
    return out;
}

static char *dup_n(const char *s, size_t n)
{
    return strndup(s, n);
}

/* user[%password] of the authority. */
static int parse_userinfo(const char *s, size_t n, struct iscsi_uri *u, char *err, size_t errlen)
{
    const char *pct = memchr(s, '%', n);
    size_t ulen = pct ? (size_t)(pct - s) : n;
    if (ulen == 0)
        return fail(err, errlen, "empty user name before '@'");
    if (ulen > 255)
        return fail(err, errlen, "user name longer than 255 bytes");
    for (size_t i = 0; i < ulen; i++)
        if (!is_alnum(s[i]) && !strchr(".-_:", s[i]))
            return fail(err, errlen, "bad character '%c' in the user name", s[i]);
    if (!(u->user = dup_n(s, ulen)))
        return -ENOMEM;
    if (pct) {
        size_t plen = n - ulen - 1;
        if (plen == 0)
            return fail(err, errlen, "empty password after '%%'");
        if (plen > 255)
            return fail(err, errlen, "password longer than 255 bytes");
        if (!(u->password = dup_n(pct + 1, plen)))
            return -ENOMEM;
    }
    return 0;
}

/* host[:port], host being a name, an IPv4 address or [IPv6]. */
static int parse_hostport(const char *s, size_t n, struct iscsi_uri *u, char *err, size_t errlen)
{
    const char *host = s, *rest;
    size_t hlen;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return fail(err, errlen, "'[' without ']' around the IPv6 address");
        host = s + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0)
            return fail(err, errlen, "empty IPv6 address");
        for (size_t i = 0; i < hlen; i++)
            if (hexval(host[i]) < 0 && host[i] != ':' && host[i] != '.')
                return fail(err, errlen, "bad character '%c' in the IPv6 address", host[i]);
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        if (hlen == 0)
            return fail(err, errlen, "no host name");
        for (size_t i = 0; i < hlen; i++)
            if (!is_alnum(s[i]) && !strchr(".-_", s[i]))
                return fail(err, errlen, "bad character '%c' in the host name", s[i]);
        rest = s + hlen;
    }
    if (hlen > 253)
        return fail(err, errlen, "host name longer than 253 bytes");
    size_t rlen = n - (size_t)(rest - s);
    u->port = ISCSI_URI_DEFAULT_PORT;
    if (rlen > 0) {
        unsigned long port;
        if (rest[0] != ':')
            return fail(err, errlen, "junk after the IPv6 address (want [ADDR]:PORT)");
        if (!parse_dec(rest + 1, rlen - 1, 65535, &port) || port == 0)
            return fail(err, errlen, "bad port '%.*s' (want 1..65535)", (int)(rlen - 1), rest + 1);
        u->port = (uint16_t)port;
    }
    if (!(u->host = dup_n(host, hlen)))
        return -ENOMEM;
    return 0;
}

/* key=value&key=value */
static int parse_query(const char *q, struct iscsi_uri *u, char *err, size_t errlen)
{
    bool digest_seen = false;
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (n == 0)
            return fail(err, errlen, "empty parameter in the query");
        if (!eq || eq == q || (size_t)(eq - q) + 1 == n)
            return fail(err, errlen, "parameter '%.*s' wants key=value", (int)MIN_INT(n, 64), q);
        size_t klen = (size_t)(eq - q);
        char **slot;
        if (klen == 13 && !strncmp(q, "header-digest", klen)) {
            if (digest_seen)
                return fail(err, errlen, "parameter 'header-digest' given twice");
            digest_seen = true;
            size_t vlen = n - klen - 1;
            const char *v = eq + 1;
            if (vlen == 4 && !strncasecmp(v, "auto", 4))
                u->header_digest = ISCSI_URI_DIGEST_AUTO;
            else if (vlen == 4 && !strncasecmp(v, "none", 4))
                u->header_digest = ISCSI_URI_DIGEST_NONE;
            else if (vlen == 6 && !strncasecmp(v, "crc32c", 6))
                u->header_digest = ISCSI_URI_DIGEST_CRC32C;
            else
                return fail(err, errlen, "header-digest '%.*s': want crc32c, none or auto",
                            (int)MIN_INT(vlen, 64), v);
            goto next;
        }
        if (klen == 11 && !strncmp(q, "secret-file", klen))
            slot = &u->secret_file;
        else if (klen == 14 && !strncmp(q, "initiator-name", klen))
            slot = &u->initiator;
        else
            return fail(err, errlen,
                        "unknown parameter '%.*s' (known: secret-file, initiator-name, "
                        "header-digest)",
                        (int)MIN_INT(klen, 64), q);
        if (*slot)
            return fail(err, errlen, "parameter '%.*s' given twice", (int)klen, q);
        bool bad;
        *slot = unescape(eq + 1, n - klen - 1, &bad);
        if (bad)
            return fail(err, errlen, "bad %%-encoding or control character in '%.*s'", (int)klen,
                        q);
        if (!*slot)
            return -ENOMEM;
    next:
        q += n;
        if (*q == '&') {
            q++;
            if (!*q)
                return fail(err, errlen, "empty parameter in the query");
        }
    }
    if (u->secret_file && u->secret_file[0] != '/')
        return fail(err, errlen, "secret-file must be an absolute path");
    if (u->secret_file && strlen(u->secret_file) > 4095)
        return fail(err, errlen, "secret-file path too long");
    if (u->initiator && !valid_name(u->initiator, strlen(u->initiator)))
        return fail(err, errlen,
                    "initiator-name '%.64s' is not an iSCSI name (iqn.YYYY-MM.domain:...)",
                    u->initiator);
    return 0;
}

static int parse(const char *spec, struct iscsi_uri *u, char *err, size_t errlen)
{
    size_t plen = strlen(ISCSI_URI_PREFIX);
    if (strncmp(spec, ISCSI_URI_PREFIX, plen) != 0)
        return fail(err, errlen, "not an iscsi:// URI");
    const char *s = spec + plen;
    size_t len = strlen(s);
    if (len > 8192)
        return fail(err, errlen, "URI too long");
    if (!printable(s, len))
        return fail(err, errlen, "space or control character in the URI");
    if (strchr(s, '#'))
        return fail(err, errlen, "a fragment ('#') has no meaning in an iscsi:// URI");

    /* The authority ends at the first '/'; the user info at its last '@'
     * (a password may hold '@', a host may not). */
    const char *slash = strchr(s, '/');
    const char *query = strchr(s, '?');
    if (!slash || (query && query < slash))
        return fail(err, errlen, "want iscsi://HOST[:PORT]/TARGET-IQN/LUN");
    size_t alen = (size_t)(slash - s);
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (s[i] == '@')
            at = s + i;
    int r;
    if (at && (r = parse_userinfo(s, (size_t)(at - s), u, err, errlen)) < 0)
        return r;
    const char *hp = at ? at + 1 : s;
    if ((r = parse_hostport(hp, (size_t)(slash - hp), u, err, errlen)) < 0)
        return r;

    /* /target/lun */
    const char *t = slash + 1;
    const char *end = query ? query : s + len;
    const char *slash2 = memchr(t, '/', (size_t)(end - t));
    if (!slash2)
        return fail(err, errlen, "no LUN: want iscsi://HOST[:PORT]/TARGET-IQN/LUN");
    size_t tlen = (size_t)(slash2 - t);
    if (tlen == 0)
        return fail(err, errlen, "no target name: want iscsi://HOST[:PORT]/TARGET-IQN/LUN");
    if (!valid_name(t, tlen))
        return fail(err, errlen,
                    "target '%.*s' is not an iSCSI name (iqn.YYYY-MM.domain:..., eui. or naa.)",
                    (int)MIN_INT(tlen, 64), t);
    const char *l = slash2 + 1;
    unsigned long lun;
    if (!parse_dec(l, (size_t)(end - l), ISCSI_URI_MAX_LUN, &lun))
        return fail(err, errlen, "bad LUN '%.*s' (want 0..%d)", (int)MIN_INT(end - l, 32), l,
                    ISCSI_URI_MAX_LUN);
    u->lun = (uint32_t)lun;
    if (!(u->target = dup_n(t, tlen)))
        return -ENOMEM;

    if (query && (r = parse_query(query + 1, u, err, errlen)) < 0)
        return r;
    if (query && !query[1])
        return fail(err, errlen, "empty query after '?'");

    if (u->password && u->secret_file)
        return fail(err, errlen, "a password both in the URI and in secret-file: give it once");
    if (u->secret_file && !u->user)
        return fail(err, errlen, "secret-file needs a user: iscsi://USER@HOST/...");
    if (u->user && !u->password && !u->secret_file)
        return fail(err, errlen, "user '%s' has no CHAP secret: add ?secret-file=PATH", u->user);
    return 0;
}

int iscsi_uri_parse(const char *spec, struct iscsi_uri *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    if (err && errlen)
        err[0] = '\0';
    if (!spec)
        return fail(err, errlen, "no URI");
    int r = parse(spec, u, err, errlen);
    if (r < 0) {
        if (r == -ENOMEM)
            fail(err, errlen, "out of memory");
        iscsi_uri_clear(u);
    }
    return r;
}

void iscsi_uri_clear(struct iscsi_uri *u)
{
    if (u->password)
        explicit_bzero(u->password, strlen(u->password));
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->target);
    free(u->secret_file);
    free(u->initiator);
    memset(u, 0, sizeof(*u));
}

int iscsi_uri_portal(const struct iscsi_uri *u, char *buf, size_t len)
{
    bool v6 = strchr(u->host, ':') != NULL;
    int n = snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", u->host, (unsigned)u->port);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

char *iscsi_uri_redact(const char *spec)
{
    size_t plen = strlen(ISCSI_URI_PREFIX);
    if (strncmp(spec, ISCSI_URI_PREFIX, plen) != 0)
        return strdup(spec);
    /* The authority: up to the first '/', '?' or '#'; its last '@'. */
    const char *s = spec + plen, *at = NULL;
    for (const char *c = s; *c && *c != '/' && *c != '?' && *c != '#'; c++)
        if (*c == '@')
            at = c;
    const char *pct = at ? memchr(s, '%', (size_t)(at - s)) : NULL;
    if (!pct)
        return strdup(spec);
    char *out;
    if (asprintf(&out, "%.*s***%s", (int)(pct + 1 - spec), spec, at) < 0)
        return NULL;
    return out;
}
