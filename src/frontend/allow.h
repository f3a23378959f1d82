/* Client access list (NBD's --allow; any front end's): which peer
 * addresses may connect. The listener (listener.h) checks it right after
 * accept(), before the protocol sends a byte; a client that does not match
 * is closed at once.
 *
 * An entry is one of
 *   ADDR          an IPv4 or IPv6 address (one host)
 *   ADDR/PREFIX   an IPv4 or IPv6 network in CIDR form ("10.0.0.0/8",
 *                 "fd00::/8"; brackets around IPv6 are accepted)
 *   unix, local   clients on a unix-domain socket listener
 * With no entries every client is allowed. With entries, only matching
 * clients are: unix-socket clients too must be listed ("unix"). A client
 * reaching an IPv6 listener from an IPv4-mapped address (::ffff:a.b.c.d)
 * matches IPv4 entries. Names are not resolved (no DNS at accept time).
 *
 * Read-only after parsing; matched from any accept thread without locks. */
#ifndef SHOAL_FRONTEND_ALLOW_H
#define SHOAL_FRONTEND_ALLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct allow_rule {
    int family;       /* AF_INET, AF_INET6 or AF_UNIX */
    uint8_t addr[16]; /* network byte order; 4 bytes used for AF_INET */
    unsigned prefix;  /* significant leading bits */
};

struct allow_list {
    struct allow_rule *rules;
    unsigned n;
};

/* What an entry may be, for error messages. */
#define ALLOW_SYNTAX "an IPv4/IPv6 address, ADDR/PREFIX, or unix"

/* Parse entries. 0; -EINVAL with *bad set to the first invalid entry (the
 * caller says which option it came from); -ENOMEM. */
int allow_parse(const char *const *specs, unsigned n, struct allow_list *out, const char **bad);
/* One entry checked as it is read (frontend_option.check): 0, or -1 with
 * what an entry may be in why. */
int allow_check_entry(const char *spec, char *why, size_t whylen);
void allow_free(struct allow_list *a);

/* True when the peer sa may connect (always when the list is empty). */
bool allow_match(const struct allow_list *a, const struct sockaddr *sa, socklen_t len);

/* "1.2.3.4", "::1", "unix" for log messages. */
void allow_format_peer(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);

#endif
