/* Users, groups and file modes as an admin spells them on the command line
 * or in the config file ("shoal", "64055", "0660"), turned into ids before
 * anything starts, so a typo is one line and nothing is half-started. Used
 * by the unix listeners' --socket-owner/--socket-group/--socket-mode and by
 * the daemon's --user/--group. Nothing here keeps state. */
#ifndef SHOAL_COMMON_IDS_H
#define SHOAL_COMMON_IDS_H

#include <sys/types.h>

/* An octal mode such as "0660" or "660": octal digits only, at most 0777
 * (no setuid, setgid or sticky bit: none means anything on a socket).
 * 0 or -EINVAL. */
int ids_parse_mode(const char *s, mode_t *out);

/* A user by name or number: its uid and primary group. A number need not
 * have a passwd entry (then *gid is (gid_t)-1). 0, -ENOENT (no such user),
 * or -EINVAL (empty, or a number out of range). */
int ids_lookup_user(const char *s, uid_t *uid, gid_t *gid);

/* A group by name or number (a number need not have a group entry). 0,
 * -ENOENT or -EINVAL. */
int ids_lookup_group(const char *s, gid_t *gid);

#endif
