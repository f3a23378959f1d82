/* CHAP secrets file and MD5 responses; see chap.h. */
#include "frontend/iscsi/chap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/cleanup.h"

struct chap_user {
    char name[ISCSI_CHAP_NAME_MAX + 1];
    char secret[ISCSI_CHAP_SECRET_MAX + 1];
};

struct iscsi_chap {
    struct chap_user *users;
    unsigned nusers;
    bool has_target;
    struct chap_user target;
};

void iscsi_chap_free(struct iscsi_chap *c)
{
    if (!c)
        return;
    /* Secrets do not linger in freed memory. */
    if (c->users)
        explicit_bzero(c->users, c->nusers * sizeof *c->users);
    explicit_bzero(&c->target, sizeof c->target);
    free(c->users);
    free(c);
}

static int parse_line(struct iscsi_chap *c, char *line, unsigned lineno, const char *path,
                      char *err, size_t errlen)
{
    char *save = NULL;
    char *kind = strtok_r(line, " \t\r\n", &save);
    if (!kind || kind[0] == '#')
        return 0;
    char *name = strtok_r(NULL, " \t\r\n", &save);
    char *secret = strtok_r(NULL, " \t\r\n", &save);
    char *extra = strtok_r(NULL, " \t\r\n", &save);
    bool user = !strcmp(kind, "user"), target = !strcmp(kind, "target");
    if ((!user && !target) || !name || !secret || extra) {
        snprintf(err, errlen, "%s:%u: want 'user NAME SECRET' or 'target NAME SECRET'", path,
                 lineno);
        return -EINVAL;
    }
    size_t sl = strlen(secret);
    if (strlen(name) > ISCSI_CHAP_NAME_MAX || sl < ISCSI_CHAP_SECRET_MIN ||
        sl > ISCSI_CHAP_SECRET_MAX) {
        snprintf(err, errlen,
                 "%s:%u: the name must be at most %d characters and the secret %d to %d", path,
                 lineno, ISCSI_CHAP_NAME_MAX, ISCSI_CHAP_SECRET_MIN, ISCSI_CHAP_SECRET_MAX);
        return -EINVAL;
    }
    struct chap_user *u;
    if (target) {
        if (c->has_target) {
            snprintf(err, errlen, "%s:%u: a second target line", path, lineno);
            return -EINVAL;
        }
        c->has_target = true;
        u = &c->target;
    } else {
        if (iscsi_chap_user_secret(c, name)) {
            snprintf(err, errlen, "%s:%u: user '%s' twice", path, lineno, name);
            return -EINVAL;
        }
        struct chap_user *n = realloc(c->users, (c->nusers + 1) * sizeof *n);
        if (!n)
            return -ENOMEM;
        c->users = n;
        u = &c->users[c->nusers++];
    }
    snprintf(u->name, sizeof u->name, "%s", name);
    snprintf(u->secret, sizeof u->secret, "%s", secret);
    return 0;
}

int iscsi_chap_load(const char *path, struct iscsi_chap **out, char *err, size_t errlen)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open the CHAP secrets file %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "the CHAP secrets file %s is not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "the CHAP secrets file %s is mode %04o: it must be 0600 (chmod 600)",
                 path, (unsigned)(st.st_mode & 07777));
        return -EPERM;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    fd = -1; /* the FILE owns it */
    struct iscsi_chap *c = calloc(1, sizeof *c);
    if (!c) {
        fclose(f);
        return -ENOMEM;
    }
    char line[1024];
    unsigned lineno = 0;
    int r = 0;
    while (r == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            r = -EINVAL;
            break;
        }
        r = parse_line(c, line, lineno, path, err, errlen);
    }
    explicit_bzero(line, sizeof line);
    fclose(f);
    for (unsigned i = 0; r == 0 && c->has_target && i < c->nusers; i++) {
        if (!strcmp(c->users[i].secret, c->target.secret)) {
            /* RFC 7143 12.1.3: the same secret both ways invites reflection. */
            snprintf(err, errlen, "%s: the target secret must differ from user '%s''s", path,
                     c->users[i].name);
            r = -EINVAL;
        }
    }
    if (r == 0 && c->nusers == 0) {
        snprintf(err, errlen, "%s: no 'user NAME SECRET' line", path);
        r = -EINVAL;
    }
    if (r < 0) {
        if (r == -ENOMEM)
            snprintf(err, errlen, "out of memory reading %s", path);
        iscsi_chap_free(c);
        return r;
    }
    *out = c;
    return 0;
}

const char *iscsi_chap_user_secret(const struct iscsi_chap *c, const char *name)
{
    for (unsigned i = 0; c && i < c->nusers; i++)
        if (!strcmp(c->users[i].name, name))
            return c->users[i].secret;
    return NULL;
}

bool iscsi_chap_target(const struct iscsi_chap *c, const char **name, const char **secret)
{
    if (!c || !c->has_target)
        return false;
    *name = c->target.name;
    *secret = c->target.secret;
    return true;
}

int iscsi_chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
                   uint8_t out[ISCSI_CHAP_DIGEST_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, &id, 1) &&
             EVP_DigestUpdate(ctx, secret, strlen(secret)) &&
             EVP_DigestUpdate(ctx, chal, chal_len) && EVP_DigestFinal_ex(ctx, out, &len) &&
             len == ISCSI_CHAP_DIGEST_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -EIO;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int iscsi_chap_decode(const char *s, uint8_t *out, size_t max, size_t *len)
{
    if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X' && s[1] != 'b' && s[1] != 'B'))
        return -EINVAL;
    const char *p = s + 2;
    size_t n = strlen(p);
    if (s[1] == 'x' || s[1] == 'X') {
        /* An odd count has an implied leading zero. */
        size_t bytes = (n + 1) / 2;
        if (n == 0 || bytes > max)
            return -EINVAL;
        size_t i = 0, o = 0;
        if (n & 1) {
            int v = hexval(p[i++]);
            if (v < 0)
                return -EINVAL;
            out[o++] = (uint8_t)v;
        }
        for (; i < n; i += 2) {
            int hi = hexval(p[i]), lo = hexval(p[i + 1]);
            if (hi < 0 || lo < 0)
                return -EINVAL;
            out[o++] = (uint8_t)(hi << 4 | lo);
        }
        *len = o;
        return 0;
    }
    if (n == 0 || n % 4 || n / 4 * 3 > max + 2)
        return -EINVAL;
    uint8_t tmp[ISCSI_CHAP_CHAL_MAX + 3];
    if (n / 4 * 3 > sizeof tmp)
        return -EINVAL;
    int dl = EVP_DecodeBlock(tmp, (const unsigned char *)p, (int)n);
    if (dl < 0)
        return -EINVAL;
    size_t pad = (p[n - 1] == '=') + (p[n - 2] == '=');
    size_t real = (size_t)dl - pad;
    if (real > max || real == 0)
        return -EINVAL;
    memcpy(out, tmp, real);
    *len = real;
    return 0;
}

void iscsi_chap_encode(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = '0';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        out[2 + 2 * i] = hex[in[i] >> 4];
        out[3 + 2 * i] = hex[in[i] & 15];
    }
    out[2 + 2 * n] = '\0';
}
