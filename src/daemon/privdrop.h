/* Dropping root: shoald starts as root to bind sockets anywhere, chown
 * them, open images and write files in /run; then it runs as an ordinary
 * user (--user), so a flaw in the NBD or HTTP parsing cannot become root.
 * Whatever opens later (volumes added through the API) is opened as that
 * user. */
#ifndef SHOAL_DAEMON_PRIVDROP_H
#define SHOAL_DAEMON_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

/* Become uid with primary group gid and user's supplementary groups
 * (user: the name, or NULL for none), in every thread (glibc's setxid
 * applies the change process-wide), then check that root cannot be
 * regained. 0, or -errno with one line in err; the caller must then not
 * go on running. */
int privdrop(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen);

#endif
