/* The management listen address: "ADDR:PORT" with a numeric IPv4 address,
 * "[IPv6]:PORT", or "localhost:PORT". Host names other than localhost are
 * refused on purpose: whether the address is loopback (plain HTTP elsewhere
 * sends the token in clear, which mgmt_start warns about) must be decidable
 * from the string, without DNS. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/mgmt.h"

static int parse_port(const char *s, unsigned *port)
{
    if (!*s || strlen(s) > 5)
        return -EINVAL;
    unsigned v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = v;
    return 0;
}

int mgmt_parse_listen(const char *listen, char *host, unsigned hostlen, unsigned *port)
{
    if (!listen || !host || hostlen == 0 || !port)
        return -EINVAL;
    const char *h, *colon;
    size_t hlen;
    bool v6 = false;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h = listen + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        v6 = true;
    } else {
        colon = strrchr(listen, ':');
        /* A second colon means an IPv6 address without brackets. */
        if (!colon || memchr(listen, ':', (size_t)(colon - listen)))
            return -EINVAL;
        h = listen;
        hlen = (size_t)(colon - listen);
    }
    if (hlen == 0 || hlen >= hostlen || hlen >= INET6_ADDRSTRLEN)
        return -EINVAL;

    char buf[INET6_ADDRSTRLEN];
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    unsigned char addr[sizeof(struct in6_addr)];
    if (v6) {
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return -EINVAL;
    } else if (strcmp(buf, "localhost") != 0 && inet_pton(AF_INET, buf, addr) != 1) {
        return -EINVAL;
    }
    unsigned p;
    if (parse_port(colon + 1, &p) < 0)
        return -EINVAL;
    memcpy(host, buf, hlen + 1);
    *port = p;
    return 0;
}

bool mgmt_listen_is_loopback(const char *listen)
{
    char host[INET6_ADDRSTRLEN];
    unsigned port;
    if (mgmt_parse_listen(listen, host, sizeof host, &port) < 0)
        return false;
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6))
        return true;
    /* ::ffff:127.x.y.z reaches the IPv4 loopback. */
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}
