/* The iSCSI back end's URI: where a LUN lives and how to log in to it.
 *
 *   iscsi://[user[%password]@]host[:port]/target-iqn/lun[?key=value&...]
 *
 * the form qemu and libiscsi use (the password follows a '%', not a ':';
 * it may hold '@' and '%' but not '/', '?' or '#': use secret-file).
 * host is a name, an IPv4 address or a bracketed IPv6 one; port defaults
 * to 3260. Query keys:
 *   secret-file=PATH     CHAP secret: the first line of PATH (absolute), so
 *                        the password is in neither ps output nor logs;
 *   initiator-name=IQN   our iSCSI name (default: ISCSI_URI_INITIATOR_PREFIX
 *                        and the host name, what an array's ACL names);
 *   header-digest=D      CRC32C header digests: crc32c requires them (the
 *                        login fails if the target refuses), none refuses
 *                        them, auto (default) uses them if the target
 *                        insists.
 * Values are %XX-decoded. Pure string handling: no libiscsi, no I/O, so the
 * unit tests and the fuzzer run it alone. */
#ifndef SHOAL_BACKEND_ISCSI_URI_H
#define SHOAL_BACKEND_ISCSI_URI_H

#include <stddef.h>
#include <stdint.h>

#define ISCSI_URI_PREFIX           "iscsi://"
#define ISCSI_URI_DEFAULT_PORT     3260
#define ISCSI_URI_MAX_LUN          16383 /* flat space addressing (SAM) */
#define ISCSI_URI_MAX_NAME         223   /* an iSCSI name, RFC 7143 */
#define ISCSI_URI_INITIATOR_PREFIX "iqn.2026-12.shoal:"

enum iscsi_uri_digest {
    ISCSI_URI_DIGEST_AUTO, /* offer None, accept CRC32C */
    ISCSI_URI_DIGEST_NONE,
    ISCSI_URI_DIGEST_CRC32C,
};

struct iscsi_uri {
    char *user;        /* CHAP user, or NULL */
    char *password;    /* from the URI, or NULL (see secret_file) */
    char *host;        /* without brackets */
    char *target;      /* the target's iSCSI name */
    char *secret_file; /* NULL unless given */
    char *initiator;   /* NULL unless given */
    enum iscsi_uri_digest header_digest;
    uint16_t port;
    uint32_t lun;
};

/* Parse spec into *u (owned strings; iscsi_uri_clear frees them). 0, or
 * -EINVAL with a one-line reason in err, or -ENOMEM. *u is cleared on
 * failure. */
int iscsi_uri_parse(const char *spec, struct iscsi_uri *u, char *err, size_t errlen);
/* Free the strings (the password's bytes are wiped first) and zero *u. */
void iscsi_uri_clear(struct iscsi_uri *u);
/* "host:port", or "[v6]:port", as libiscsi's portal. 0 or -ENAMETOOLONG. */
int iscsi_uri_portal(const struct iscsi_uri *u, char *buf, size_t len);
/* A malloc'ed copy of spec with the password of user%password@ replaced by
 * "***", for display and logs; NULL when out of memory. */
char *iscsi_uri_redact(const char *spec);

#endif
