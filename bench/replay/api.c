/* shoald management API client for shoal-replay (see api.h). */
#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"

int api_init(struct api *a, const char *url, const char *token_file)
{
    memset(a, 0, sizeof *a);
    if (strncmp(url, "http://", 7) == 0)
        url += 7;
    const char *slash = strchr(url, '/');
    size_t hostport = slash ? (size_t)(slash - url) : strlen(url);
    const char *colon = memchr(url, ':', hostport);
    if (!colon || colon == url || hostport - (size_t)(colon - url) - 1 == 0)
        return -EINVAL;
    size_t hl = (size_t)(colon - url), pl = hostport - hl - 1;
    if (hl >= sizeof a->host || pl >= sizeof a->port)
        return -EINVAL;
    memcpy(a->host, url, hl);
    memcpy(a->port, colon + 1, pl);
    if (slash) {
        size_t n = strlen(slash);
        while (n && slash[n - 1] == '/')
            n--;
        if (n >= sizeof a->prefix)
            return -EINVAL;
        memcpy(a->prefix, slash, n);
    }
    if (token_file) {
        _cleanup_fclose_ FILE *f = fopen(token_file, "r");
        if (!f)
            return -errno;
        char buf[512];
        if (!fgets(buf, sizeof buf, f))
            return -EINVAL;
        buf[strcspn(buf, "\r\n")] = '\0';
        a->token = strdup(buf);
        if (!a->token)
            return -ENOMEM;
    }
    return 0;
}

void api_free(struct api *a)
{
    free(a->token);
    a->token = NULL;
}

static int connect_to(const struct api *a)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int r = getaddrinfo(a->host, a->port, &hints, &res);
    if (r != 0)
        return -EHOSTUNREACH;
    int fd = -1, err = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd >= 0 ? fd : -err;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One request; *out gets the parsed JSON body of a 2xx answer. */
static int request(struct api *a, const char *method, const char *path, const char *body,
                   json_t **out)
{
    _cleanup_close_ int fd = connect_to(a);
    if (fd < 0)
        return fd;
    size_t blen = body ? strlen(body) : 0;
    _cleanup_free_ char *head = NULL;
    char auth[600] = "";
    if (a->token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", a->token);
    int hl = asprintf(&head,
                      "%s %s%s HTTP/1.0\r\nHost: %s:%s\r\n%sAccept: application/json\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      method, a->prefix, path, a->host, a->port, auth, blen);
    if (hl < 0)
        return -ENOMEM;
    int r = write_all(fd, head, (size_t)hl);
    if (r == 0 && blen)
        r = write_all(fd, body, blen);
    if (r < 0)
        return r;
    size_t cap = 16384, len = 0;
    _cleanup_free_ char *resp = malloc(cap);
    if (!resp)
        return -ENOMEM;
    for (;;) {
        if (len + 1 >= cap) {
            char *n = realloc(resp, cap * 2);
            if (!n)
                return -ENOMEM;
            resp = n;
            cap *= 2;
        }
        ssize_t got = read(fd, resp + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            break;
        len += (size_t)got;
    }
    resp[len] = '\0';
    int status = 0;
    if (sscanf(resp, "HTTP/%*d.%*d %d", &status) != 1)
        return -EPROTO;
    char *bodyp = strstr(resp, "\r\n\r\n");
    bodyp = bodyp ? bodyp + 4 : resp + len;
    if (status < 200 || status > 299) {
        fprintf(stderr, "shoal-replay: %s %s: HTTP %d %s\n", method, path, status, bodyp);
        return status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EIO;
    }
    if (out) {
        json_error_t jerr;
        *out = json_loads(bodyp, 0, &jerr);
        if (!*out)
            return -EPROTO;
    }
    return 0;
}

static uint64_t get_u64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (uint64_t)json_integer_value(v);
    if (json_is_real(v))
        return (uint64_t)json_real_value(v);
    return 0;
}

/* Percent-encode a volume name for a path segment. */
static void path_escape(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 4 < outlen; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || strchr("-._~", c))
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "%%%02X", c);
    }
    out[o] = '\0';
}

int api_volume_stats(struct api *a, const char *volume, struct api_vol_stats *out)
{
    char esc[512], path[600];
    path_escape(volume, esc, sizeof esc);
    snprintf(path, sizeof path, "/api/v1/stats/volumes/%s", esc);
    json_t *j = NULL;
    int r = request(a, "GET", path, NULL, &j);
    if (r < 0)
        return r;
    *out = (struct api_vol_stats){
        .read_ops = get_u64(j, "read_ops"),
        .read_bytes = get_u64(j, "read_bytes"),
        .read_hit_bytes = get_u64(j, "read_hit_bytes"),
        .read_miss_bytes = get_u64(j, "read_miss_bytes"),
        .write_ops = get_u64(j, "write_ops"),
        .write_bytes = get_u64(j, "write_bytes"),
        .backend_read_ops = get_u64(j, "backend_read_ops"),
        .backend_read_bytes = get_u64(j, "backend_read_bytes"),
        .errors = get_u64(j, "errors"),
    };
    json_decref(j);
    return 0;
}

int api_cache_capacity(struct api *a, uint64_t *bytes)
{
    json_t *j = NULL;
    int r = request(a, "GET", "/api/v1/cache", NULL, &j);
    if (r < 0)
        return r;
    *bytes = get_u64(j, "capacity_bytes");
    json_decref(j);
    return 0;
}

int api_cache_resize(struct api *a, uint64_t bytes)
{
    char body[64];
    snprintf(body, sizeof body, "{\"size\": %llu}", (unsigned long long)bytes);
    return request(a, "POST", "/api/v1/cache/resize", body, NULL);
}

int api_invalidate(struct api *a, const char *volume)
{
    char esc[512], path[600];
    path_escape(volume, esc, sizeof esc);
    snprintf(path, sizeof path, "/api/v1/volumes/%s/invalidate", esc);
    return request(a, "POST", path, "{}", NULL);
}
