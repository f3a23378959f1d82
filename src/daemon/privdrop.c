/* Dropping root. See privdrop.h. */
#include "daemon/privdrop.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privdrop(const char *user, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (geteuid() == uid && getegid() == gid)
        return 0; /* started as that user already */
    if (geteuid() != 0) {
        snprintf(err, errlen, "--user needs shoald to start as root (it runs as uid %u)",
                 (unsigned)geteuid());
        return -EPERM;
    }
    /* Supplementary groups first, while we may still set them: root's
     * (e.g. disk) must not survive, the user's own (e.g. kvm) should. */
    struct passwd *pw = user ? getpwnam(user) : NULL;
    int r = pw ? initgroups(user, gid) : setgroups(0, NULL);
    if (r < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot set the groups of %s: %s", user ? user : "--user",
                 strerror(e));
        return -e;
    }
    if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot switch to uid %u gid %u: %s", (unsigned)uid, (unsigned)gid,
                 strerror(e));
        return -e;
    }
    /* Proof, not hope: every id is the new one and root is gone for good. */
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != uid || eu != uid ||
        su != uid || rg != gid || eg != gid || sg != gid) {
        snprintf(err, errlen, "the switch to uid %u gid %u did not take", (unsigned)uid,
                 (unsigned)gid);
        return -EPERM;
    }
    if (setuid(0) == 0 || seteuid(0) == 0) {
        snprintf(err, errlen, "root could be regained after switching to uid %u", (unsigned)uid);
        return -EPERM;
    }
    return 0;
}
