/* The API token file; see token.h. */
#include "mgmt/token.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

#define TOKEN_NAME "shoal/api-token"

static int fail(int err, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(int err, char *buf, size_t len, const char *fmt, ...)
{
    if (buf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return err;
}

static int put_path(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int token_default_path(char *buf, size_t len)
{
    uid_t euid = geteuid();
    if (euid == 0)
        return snprintf(buf, len, "%s", TOKEN_ROOT_PATH) >= (int)len ? -ENAMETOOLONG : 0;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && xdg[0] == '/')
        return put_path(buf, len, xdg, TOKEN_NAME);
    /* pam_systemd makes /run/user/UID for a login session even when the
     * variable got lost (su, sudo -u, cron). */
    char run[64];
    struct stat st;
    snprintf(run, sizeof run, "/run/user/%u", (unsigned)euid);
    if (stat(run, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == euid)
        return put_path(buf, len, run, TOKEN_NAME);
    const char *home = getenv("HOME");
    if (!home || home[0] != '/') {
        struct passwd *pw = getpwuid(euid);
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home || home[0] != '/')
        return -ENOENT;
    return put_path(buf, len, home, ".config/" TOKEN_NAME);
}

/* The one line of a token file, trimmed, checked and copied. */
static int parse_token(const char *path, char *text, unsigned flags, char **out, char *err,
                       size_t errlen)
{
    char *s = text;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    if (n == 0)
        return fail(-EINVAL, err, errlen, "token file %s is empty", path);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return fail(-EINVAL, err, errlen,
                        "token file %s must hold one line of visible ASCII characters (no spaces)",
                        path);
    }
    if ((flags & TOKEN_STRICT) && n < TOKEN_MIN_LEN)
        return fail(-EINVAL, err, errlen, "token in %s is too short (want at least %d characters)",
                    path, TOKEN_MIN_LEN);
    if (n > TOKEN_MAX_LEN)
        return fail(-EINVAL, err, errlen, "token in %s is too long (at most %d characters)", path,
                    TOKEN_MAX_LEN);
    *out = strdup(s);
    return *out ? 0 : fail(-ENOMEM, err, errlen, "out of memory");
}

/* The checks are made on the opened file (fstat), so a symlink or a rename
 * between a check and the read changes nothing. */
static int check_file(const char *path, int fd, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fail(-errno, err, errlen, "cannot stat token file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(-EPERM, err, errlen, "token file %s is not a regular file", path);
    /* Whoever owns the file can chmod it and write their own token. */
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return fail(
            -EPERM, err, errlen,
            "refusing token file %s: it is owned by uid %u (only root or uid %u may own it)", path,
            (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return fail(-EPERM, err, errlen,
                    "refusing token file %s: it is group- or world-writable (mode %04o; chmod "
                    "600 it)",
                    path, (unsigned)(st.st_mode & 07777));
    if (st.st_mode & S_IROTH)
        return fail(-EPERM, err, errlen,
                    "refusing token file %s: it is world-readable, so any local user could read "
                    "the token (mode %04o; chmod 600 it)",
                    path, (unsigned)(st.st_mode & 07777));
    return 0;
}

int token_read(const char *path, unsigned flags, char **out, char *err, size_t errlen)
{
    *out = NULL;
    /* O_NONBLOCK: a FIFO put in its place must not hang the daemon. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fail(-errno, err, errlen, "cannot read token file %s: %s", path, strerror(errno));
    if (flags & TOKEN_STRICT) {
        int r = check_file(path, fd, err, errlen);
        if (r < 0)
            return r;
    }
    char buf[TOKEN_MAX_LEN + 64];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail(-errno, err, errlen, "cannot read token file %s: %s", path,
                        strerror(errno));
        if (n == 0 || (len += (size_t)n) == sizeof buf - 1)
            break;
    }
    buf[len] = '\0';
    if (strlen(buf) != len)
        return fail(-EINVAL, err, errlen, "token file %s holds a NUL byte", path);
    int r = parse_token(path, buf, flags, out, err, errlen);
    explicit_bzero(buf, sizeof buf);
    return r;
}

int token_generate(char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TOKEN_GEN_BYTES];
    if (len < 2 * sizeof raw + 1)
        return -ENOBUFS;
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        buf[2 * i] = hex[raw[i] >> 4];
        buf[2 * i + 1] = hex[raw[i] & 15];
    }
    buf[2 * sizeof raw] = '\0';
    explicit_bzero(raw, sizeof raw);
    return 0;
}

/* mkdir -p for the token's directory; parts that exist are left alone. */
static int make_dirs(char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : fail(-ENOTDIR, err, errlen, "%s is not a directory", dir);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int r = make_dirs(dir, err, errlen);
        *slash = '/';
        if (r < 0)
            return r;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return fail(-errno, err, errlen, "cannot create directory %s for the token: %s", dir,
                    strerror(errno));
    return 0;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write a new token under a temporary name and link it to `path`: 0 when
 * ours is in place, -EEXIST when another file got there first. */
static int create_token(const char *path, char *err, size_t errlen)
{
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return fail(-ENOMEM, err, errlen, "out of memory");
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int r = make_dirs(dir, err, errlen);
        if (r < 0)
            return r;
        *slash = '/';
    }
    _cleanup_free_ char *tmp = NULL;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        return fail(-ENOMEM, err, errlen, "out of memory");
    /* mkostemp creates the file with mode 0600 whatever the umask. */
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return fail(-errno, err, errlen, "cannot create token file %s: %s", path, strerror(errno));
    char token[2 * TOKEN_GEN_BYTES + 2];
    int r = token_generate(token, sizeof token);
    if (r == 0) {
        strcat(token, "\n");
        r = fchmod(fd, 0600) < 0 ? -errno : write_all(fd, token, strlen(token));
        if (r == 0 && fsync(fd) < 0)
            r = -errno;
        explicit_bzero(token, sizeof token);
    }
    if (r == 0 && link(tmp, path) < 0)
        r = -errno;
    unlink(tmp);
    if (r < 0 && r != -EEXIST)
        return fail(r, err, errlen, "cannot create token file %s: %s", path, strerror(-r));
    return r;
}

int token_load_or_create(const char *path, char **out, bool *created, char *err, size_t errlen)
{
    *created = false;
    int r = token_read(path, TOKEN_STRICT, out, err, errlen);
    if (r != -ENOENT)
        return r;
    r = create_token(path, err, errlen);
    if (r < 0 && r != -EEXIST)
        return r;
    *created = r == 0;
    return token_read(path, TOKEN_STRICT, out, err, errlen);
}
