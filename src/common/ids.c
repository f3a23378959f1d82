/* Users, groups and modes from their spelling. See ids.h. */
#include "common/ids.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int ids_parse_mode(const char *s, mode_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 4 || strspn(s, "01234567") != n)
        return -EINVAL;
    unsigned long v = strtoul(s, NULL, 8);
    if (v > 0777)
        return -EINVAL;
    *out = (mode_t)v;
    return 0;
}

/* All digits, fitting an id that is not (id_t)-1 (which chown reads as
 * "unchanged"): a number. false for a name. -EINVAL in *err for a number
 * out of range. */
static bool parse_id(const char *s, unsigned long *out, int *err)
{
    size_t n = strlen(s);
    *err = 0;
    if (n == 0 || strspn(s, "0123456789") != n)
        return false;
    errno = 0;
    unsigned long v = strtoul(s, NULL, 10);
    if (errno || n > 10 || v >= 0xffffffffUL)
        *err = -EINVAL;
    *out = v;
    return true;
}

/* getpwnam_r/getgrnam_r want a buffer whose size sysconf only hints at. */
#define ID_BUF 16384

int ids_lookup_user(const char *s, uid_t *uid, gid_t *gid)
{
    if (!s || !s[0])
        return -EINVAL;
    unsigned long num;
    int err;
    bool numeric = parse_id(s, &num, &err);
    if (err)
        return err;
    char *buf = malloc(ID_BUF);
    if (!buf)
        return -ENOMEM;
    struct passwd pw, *res = NULL;
    int r = numeric ? getpwuid_r((uid_t)num, &pw, buf, ID_BUF, &res)
                    : getpwnam_r(s, &pw, buf, ID_BUF, &res);
    int ret = 0;
    if (res) {
        *uid = pw.pw_uid;
        *gid = pw.pw_gid;
    } else if (numeric) {
        *uid = (uid_t)num;
        *gid = (gid_t)-1;
    } else {
        ret = r ? -r : -ENOENT;
        if (ret == -ESRCH || ret == -EBADF || ret == -EPERM)
            ret = -ENOENT; /* what some NSS modules say for "not found" */
    }
    free(buf);
    return ret;
}

int ids_lookup_group(const char *s, gid_t *gid)
{
    if (!s || !s[0])
        return -EINVAL;
    unsigned long num;
    int err;
    bool numeric = parse_id(s, &num, &err);
    if (err)
        return err;
    if (numeric) {
        *gid = (gid_t)num;
        return 0;
    }
    char *buf = malloc(ID_BUF);
    if (!buf)
        return -ENOMEM;
    struct group gr, *res = NULL;
    int r = getgrnam_r(s, &gr, buf, ID_BUF, &res);
    int ret = 0;
    if (res)
        *gid = gr.gr_gid;
    else
        ret = (r && r != ESRCH && r != EBADF && r != EPERM) ? -r : -ENOENT;
    free(buf);
    return ret;
}
