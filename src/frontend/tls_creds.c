/* TLS server credentials: x509 directory and PSK file. See tls_creds.h. */
#include "frontend/tls_creds.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

/* TLS 1.2 and 1.3 only; PSK key exchanges are not in NORMAL. */
#define PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define PRIO_PSK  "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

#define PSK_MAX_USER 256
#define PSK_MAX_KEY  256 /* bytes */

struct psk_entry {
    char *user;
    unsigned char *key;
    size_t keylen;
};

struct tls_creds {
    gnutls_certificate_credentials_t x509; /* NULL without a certificate directory */
    gnutls_psk_server_credentials_t psk;   /* NULL without a PSK file */
    gnutls_priority_t prio;
    bool verify_peer;
    struct psk_entry *users;
    size_t nusers;
};

static int path_join(char *buf, size_t len, const char *dir, const char *file)
{
    int n = snprintf(buf, len, "%s/%s", dir, file);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parse one "username:hexkey" line into e. */
static int psk_parse_line(char *line, struct psk_entry *e)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line || (size_t)(colon - line) > PSK_MAX_USER)
        return -EINVAL;
    *colon = '\0';
    const char *hex = colon + 1;
    size_t hl = strlen(hex);
    if (hl == 0 || hl % 2 != 0 || hl / 2 > PSK_MAX_KEY)
        return -EINVAL;
    _cleanup_free_ unsigned char *key = malloc(hl / 2);
    if (!key)
        return -ENOMEM;
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    e->user = strdup(line);
    if (!e->user)
        return -ENOMEM;
    e->keylen = hl / 2;
    e->key = TAKE_PTR(key);
    return 0;
}

static int psk_load_file(struct tls_creds *t, const char *path)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        log_error(tls, "cannot open TLS PSK file %s: %s", path, strerror(e));
        return -e;
    }
    char line[PSK_MAX_USER + 2 * PSK_MAX_KEY + 8];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t l = strlen(line);
        if (l == sizeof line - 1 && line[l - 1] != '\n') {
            log_error(tls, "%s:%u: line too long", path, lineno);
            return -EINVAL;
        }
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (l == 0 || line[0] == '#')
            continue;
        struct psk_entry *n = realloc(t->users, (t->nusers + 1) * sizeof *n);
        if (!n)
            return -ENOMEM;
        t->users = n;
        int r = psk_parse_line(line, &t->users[t->nusers]);
        if (r < 0) {
            if (r == -EINVAL)
                log_error(tls, "%s:%u: want username:hexkey (as psktool writes)", path, lineno);
            return r;
        }
        t->nusers++;
    }
    if (ferror(f)) {
        log_error(tls, "cannot read TLS PSK file %s", path);
        return -EIO;
    }
    if (t->nusers == 0) {
        log_error(tls, "TLS PSK file %s has no keys", path);
        return -EINVAL;
    }
    return 0;
}

static int psk_lookup(gnutls_session_t session, const char *username, gnutls_datum_t *key)
{
    const struct tls_creds *t = gnutls_session_get_ptr(session);
    for (size_t i = 0; i < t->nusers; i++) {
        if (strcmp(t->users[i].user, username) != 0)
            continue;
        key->data = gnutls_malloc(t->users[i].keylen);
        if (!key->data)
            return -1;
        memcpy(key->data, t->users[i].key, t->users[i].keylen);
        key->size = (unsigned)t->users[i].keylen;
        return 0;
    }
    log_debug(tls, "TLS: unknown PSK identity '%s'", username);
    return -1;
}

static int x509_load(struct tls_creds *t, const char *dir, bool verify_peer)
{
    char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX], crl[PATH_MAX];
    if (path_join(cert, sizeof cert, dir, "server-cert.pem") < 0 ||
        path_join(key, sizeof key, dir, "server-key.pem") < 0 ||
        path_join(ca, sizeof ca, dir, "ca-cert.pem") < 0 ||
        path_join(crl, sizeof crl, dir, "ca-crl.pem") < 0) {
        log_error(tls, "TLS certificate directory name too long: %s", dir);
        return -ENAMETOOLONG;
    }
    const char *need[] = {cert, key};
    for (size_t i = 0; i < ARRAY_SIZE(need); i++) {
        if (access(need[i], R_OK) < 0) {
            int e = errno;
            log_error(tls, "TLS: cannot read %s: %s", need[i], strerror(e));
            return -e;
        }
    }
    bool have_ca = access(ca, R_OK) == 0;
    if (verify_peer && !have_ca) {
        log_error(tls, "TLS: verifying clients needs %s", ca);
        return -ENOENT;
    }

    int g = gnutls_certificate_allocate_credentials(&t->x509);
    if (g < 0) {
        t->x509 = NULL;
        return -ENOMEM;
    }
    if (have_ca) {
        g = gnutls_certificate_set_x509_trust_file(t->x509, ca, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
            log_error(tls, "TLS: %s: %s", ca, g < 0 ? gnutls_strerror(g) : "no certificate");
            return -EINVAL;
        }
        if (access(crl, R_OK) == 0) {
            g = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
            if (g < 0) {
                log_error(tls, "TLS: %s: %s", crl, gnutls_strerror(g));
                return -EINVAL;
            }
        }
    }
    g = gnutls_certificate_set_x509_key_file(t->x509, cert, key, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        log_error(tls, "TLS: %s / %s: %s", cert, key, gnutls_strerror(g));
        return -EINVAL;
    }
    /* DHE in TLS 1.2 uses the RFC 7919 group of this strength. */
    gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
    return 0;
}

void tls_creds_free(struct tls_creds *t)
{
    if (!t)
        return;
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    if (t->psk)
        gnutls_psk_free_server_credentials(t->psk);
    if (t->prio)
        gnutls_priority_deinit(t->prio);
    for (size_t i = 0; i < t->nusers; i++) {
        free(t->users[i].user);
        if (t->users[i].key)
            explicit_bzero(t->users[i].key, t->users[i].keylen);
        free(t->users[i].key);
    }
    free(t->users);
    free(t);
}

static void tls_creds_freep(struct tls_creds **t)
{
    tls_creds_free(*t);
}

int tls_creds_load(const struct tls_creds_config *cfg, struct tls_creds **out)
{
    if (!cfg->certificates_dir && !cfg->psk_file) {
        log_error(tls, "TLS needs a certificate directory or a PSK file");
        return -EINVAL;
    }
    __attribute__((cleanup(tls_creds_freep))) struct tls_creds *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->verify_peer = cfg->verify_peer;
    int r;
    if (cfg->certificates_dir) {
        r = x509_load(t, cfg->certificates_dir, cfg->verify_peer);
        if (r < 0)
            return r;
    }
    if (cfg->psk_file) {
        r = psk_load_file(t, cfg->psk_file);
        if (r < 0)
            return r;
        if (gnutls_psk_allocate_server_credentials(&t->psk) < 0) {
            t->psk = NULL;
            return -ENOMEM;
        }
        gnutls_psk_set_server_credentials_function(t->psk, psk_lookup);
    }
    const char *err = NULL;
    int g = gnutls_priority_init(&t->prio, t->psk ? PRIO_PSK : PRIO_X509, &err);
    if (g < 0) {
        t->prio = NULL;
        log_error(tls, "TLS priority string rejected at '%s': %s", err ? err : "?",
                  gnutls_strerror(g));
        return -EINVAL;
    }
    *out = TAKE_PTR(t);
    return 0;
}

int tls_creds_apply(const struct tls_creds *t, gnutls_session_t s)
{
    int g = gnutls_priority_set(s, t->prio);
    if (g >= 0 && t->x509) {
        g = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, t->x509);
        if (t->verify_peer) {
            gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
            /* The handshake itself fails on an untrusted client. */
            gnutls_session_set_verify_cert(s, NULL, 0);
        }
    }
    if (g >= 0 && t->psk)
        g = gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
    if (g >= 0)
        gnutls_session_set_ptr(s, (void *)t); /* for psk_lookup */
    return g < 0 ? g : 0;
}
