/* Listen addresses as every front end spells them, and the listening
 * sockets made from them:
 *   ADDR:PORT, [IPv6]:PORT   one address (a name is resolved)
 *   :PORT, PORT              every address
 *   ADDR                     the front end's default port
 *   unix:PATH                a unix-domain socket, mode 0660 unless told
 * The daemon checks them while it reads its options, so a typo is one line
 * before anything starts; the listener (listener.h) opens them. */
#ifndef SHOAL_FRONTEND_NETADDR_H
#define SHOAL_FRONTEND_NETADDR_H

#include <stddef.h>
#include <sys/types.h>

/* What a listen address may be, for error messages. */
#define NETADDR_SYNTAX "want ADDR:PORT, [IPv6]:PORT or unix:PATH"

/* Split a TCP address into host ("" for every address) and port. 0 or
 * -EINVAL (bare IPv6 without brackets, a bad port, too long). */
int netaddr_parse_hostport(const char *spec, const char *default_port, char *host, size_t hostlen,
                           char *port, size_t portlen);

/* Check a listen address without opening anything (names are resolved):
 * NULL when it is usable, else why not (static text, not to be freed). */
const char *netaddr_check_listen(const char *spec, const char *default_port);

#define NETADDR_UNIX_MODE 0660

/* Who may connect to a unix socket (connecting needs write permission on
 * the socket file): its mode, and the owner and group to give it. */
struct netaddr_unix_perms {
    mode_t mode; /* e.g. 0660 */
    uid_t uid;   /* (uid_t)-1: the daemon's */
    gid_t gid;   /* (gid_t)-1: the daemon's */
};

/* Open a listening socket for spec. A unix socket gets perms (NULL: mode
 * 0660, the daemon's user and group: other local users cannot reach the
 * volumes) whatever the umask, set between bind() and listen(), so no
 * client ever connects to it with other permissions. An existing socket
 * file is replaced only when nothing answers on it (stale, from a daemon
 * that died); when a server answers (another shoald), the socket is left
 * alone and -EADDRINUSE returned. *unix_path is then the path (malloc'd)
 * to unlink at stop, else NULL. 0 and *fd, or -errno with one line saying
 * what failed in err. */
int netaddr_listen(const char *spec, const char *default_port,
                   const struct netaddr_unix_perms *perms, int *fd, char **unix_path, char *err,
                   size_t errlen);

#endif
