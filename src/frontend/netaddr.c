/* Listen addresses and listening sockets. See netaddr.h. */
#include "frontend/netaddr.h"

#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"

#define UNIX_PREFIX "unix:"

static bool is_unix(const char *spec)
{
    return strncmp(spec, UNIX_PREFIX, strlen(UNIX_PREFIX)) == 0;
}

int netaddr_parse_hostport(const char *spec, const char *default_port, char *host, size_t hostlen,
                           char *port, size_t portlen)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || (rb[1] != ':' && rb[1] != '\0'))
            return -EINVAL;
        size_t n = (size_t)(rb - spec - 1);
        if (n == 0 || n >= hostlen)
            return -EINVAL;
        memcpy(host, spec + 1, n);
        host[n] = '\0';
        colon = rb[1] ? rb + 1 : NULL;
    } else {
        colon = strrchr(spec, ':');
        if (colon && strchr(spec, ':') != colon)
            return -EINVAL; /* bare IPv6 needs brackets */
        size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
        bool all_digits = !colon && n > 0 && strspn(spec, "0123456789") == n;
        if (all_digits) {
            n = 0; /* just a port */
            colon = spec - 1;
        }
        if (n >= hostlen)
            return -EINVAL;
        memcpy(host, spec, n);
        host[n] = '\0';
    }
    const char *p = colon ? colon + 1 : default_port;
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5 || pl >= portlen || strspn(p, "0123456789") != pl || atoi(p) > 65535)
        return -EINVAL;
    memcpy(port, p, pl + 1);
    return 0;
}

const char *netaddr_check_listen(const char *spec, const char *default_port)
{
    /* netaddr_parse_hostport reads "" as the default port on every
     * address: an empty value (an unset variable in a template) must not
     * do that. */
    if (!spec[0])
        return NETADDR_SYNTAX;
    if (is_unix(spec))
        return spec[strlen(UNIX_PREFIX)] ? NULL : "empty unix socket path";
    char h[256], p[16];
    if (netaddr_parse_hostport(spec, default_port, h, sizeof h, p, sizeof p) < 0)
        return NETADDR_SYNTAX;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(h[0] ? h : NULL, p, &hints, &res);
    if (g != 0)
        return gai_strerror(g);
    freeaddrinfo(res);
    return NULL;
}

/* An existing socket file at path: 0 when it was stale (nothing listens;
 * removed), else -errno with the reason in err and the file left alone. A
 * non-blocking connect: a live server with a full backlog says EAGAIN
 * rather than making us wait. */
static int replace_stale(const char *path, const struct sockaddr_un *sa, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0; /* nothing there, or not a socket: bind says what is wrong */
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(e));
        return -e;
    }
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS) {
        snprintf(err, errlen,
                 "cannot listen on unix:%s: a server answers on it (another shoald?); "
                 "left as it is",
                 path);
        return -EADDRINUSE;
    }
    int e = errno;
    if (e != ECONNREFUSED && e != ENOENT) {
        snprintf(err, errlen,
                 "cannot listen on unix:%s: cannot tell whether a server answers on it (%s); "
                 "left as it is",
                 path, strerror(e));
        return -e;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        e = errno;
        snprintf(err, errlen, "cannot replace the stale socket unix:%s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

/* Mode and owner are set before listen(): until then a connect() is
 * refused whatever the file's permissions, so no client ever gets in
 * through the ones bind() left (the umask's). fchmod on a socket fd would
 * change the socket's inode, not the file; lchown does not follow a
 * symlink put in its place. 0 or -errno, *what naming the failed step. */
static int perms_then_listen(int fd, const char *path, const struct netaddr_unix_perms *perms,
                             const char **what)
{
    mode_t mode = perms ? perms->mode : NETADDR_UNIX_MODE;
    uid_t uid = perms ? perms->uid : (uid_t)-1;
    gid_t gid = perms ? perms->gid : (gid_t)-1;
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) && lchown(path, uid, gid) < 0) {
        *what = "chown: ";
        return -errno;
    }
    if (chmod(path, mode) < 0) {
        *what = "chmod: ";
        return -errno;
    }
    if (listen(fd, SOMAXCONN) < 0)
        return -errno;
    return 0;
}

static int listen_unix(const char *path, const struct netaddr_unix_perms *perms, int *out,
                       char **unix_path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "unix socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(e));
        return -e;
    }
    int r = replace_stale(path, &sa, err, errlen);
    if (r < 0)
        return r;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(e));
        return -e;
    }
    const char *what = "";
    r = perms_then_listen(fd, path, perms, &what);
    if (r < 0) {
        unlink(path);
        snprintf(err, errlen, "cannot listen on unix:%s: %s%s", path, what, strerror(-r));
        return r;
    }
    *unix_path = strdup(path);
    *out = TAKE_FD(fd);
    return 0;
}

static int listen_tcp(const char *spec, const char *default_port, int *out, char *err,
                      size_t errlen)
{
    char host[256], port[16];
    if (netaddr_parse_hostport(spec, default_port, host, sizeof host, port, sizeof port) < 0) {
        snprintf(err, errlen, "invalid listen address '%s' (" NETADDR_SYNTAX ")", spec);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", spec, gai_strerror(g));
        return -EINVAL;
    }
    int r = -EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        _cleanup_close_ int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
            r = -errno;
            continue;
        }
        *out = TAKE_FD(fd);
        r = 0;
        break;
    }
    freeaddrinfo(res);
    if (r < 0)
        snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(-r));
    return r;
}

int netaddr_listen(const char *spec, const char *default_port,
                   const struct netaddr_unix_perms *perms, int *fd, char **unix_path, char *err,
                   size_t errlen)
{
    *fd = -1;
    *unix_path = NULL;
    if (is_unix(spec))
        return listen_unix(spec + strlen(UNIX_PREFIX), perms, fd, unix_path, err, errlen);
    return listen_tcp(spec, default_port, fd, err, errlen);
}
