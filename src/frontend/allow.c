/* Client access list. See allow.h. */
#include "frontend/allow.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_one(const char *spec, struct allow_rule *r)
{
    if (!strcmp(spec, "unix") || !strcmp(spec, "local")) {
        *r = (struct allow_rule){.family = AF_UNIX};
        return 0;
    }
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(spec) >= sizeof buf)
        return -EINVAL;
    strcpy(buf, spec);

    char *slash = strchr(buf, '/');
    const char *plen = NULL;
    if (slash) {
        *slash = '\0';
        plen = slash + 1;
    }
    char *host = buf;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        host++;
    }

    unsigned maxbits;
    if (inet_pton(AF_INET, host, r->addr) == 1) {
        r->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, host, r->addr) == 1) {
        r->family = AF_INET6;
        maxbits = 128;
    } else {
        return -EINVAL;
    }
    r->prefix = maxbits;
    if (plen) {
        size_t n = strlen(plen);
        if (n == 0 || n > 3 || strspn(plen, "0123456789") != n)
            return -EINVAL;
        unsigned p = (unsigned)atoi(plen);
        if (p > maxbits)
            return -EINVAL;
        r->prefix = p;
    }
    return 0;
}

int allow_check_entry(const char *spec, char *why, size_t whylen)
{
    struct allow_rule r;
    if (parse_one(spec, &r) == 0)
        return 0;
    snprintf(why, whylen, "want %s", ALLOW_SYNTAX);
    return -1;
}

int allow_parse(const char *const *specs, unsigned n, struct allow_list *out, const char **bad)
{
    *out = (struct allow_list){0};
    if (n == 0)
        return 0;
    struct allow_rule *rules = calloc(n, sizeof *rules);
    if (!rules)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (parse_one(specs[i], &rules[i]) < 0) {
            *bad = specs[i];
            free(rules);
            return -EINVAL;
        }
    }
    out->rules = rules;
    out->n = n;
    return 0;
}

void allow_free(struct allow_list *a)
{
    free(a->rules);
    *a = (struct allow_list){0};
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

static bool rule_match(const struct allow_rule *r, int family, const uint8_t *addr)
{
    return r->family == family && (family == AF_UNIX || prefix_equal(r->addr, addr, r->prefix));
}

bool allow_match(const struct allow_list *a, const struct sockaddr *sa, socklen_t len)
{
    if (a->n == 0)
        return true;
    int family = AF_UNSPEC;
    const uint8_t *addr = NULL;
    const uint8_t *mapped4 = NULL; /* IPv4 inside an IPv4-mapped IPv6 address */
    if (sa->sa_family == AF_UNIX) {
        family = AF_UNIX;
    } else if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        family = AF_INET;
        addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        family = AF_INET6;
        addr = a6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6))
            mapped4 = a6->s6_addr + 12;
    } else {
        return false;
    }
    for (unsigned i = 0; i < a->n; i++) {
        if (rule_match(&a->rules[i], family, addr))
            return true;
        if (mapped4 && rule_match(&a->rules[i], AF_INET, mapped4))
            return true;
    }
    return false;
}

void allow_format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
    const void *src = NULL;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        src = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))
        src = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (src && inet_ntop(sa->sa_family, src, buf, (socklen_t)buflen))
        return;
    snprintf(buf, buflen, "%s", sa->sa_family == AF_UNIX ? "unix" : "?");
}
