/* libFuzzer target for the iSCSI back end's URI parser
 * (src/backend/iscsi/uri.c), which reads every iscsi:// spec from the
 * command line, a config file or the management API.
 *
 * Input: the spec's bytes (a NUL ends it early, as in a C string). Beyond
 * memory safety (ASan, UBSan), the harness aborts when the parser breaks
 * what the back end relies on: the answer is 0 or -EINVAL with a one-line
 * reason; a parsed URI has a host, a target, a port and a LUN in range,
 * and a CHAP user has exactly one source of secret; the portal fits the
 * back end's buffer; the redacted form hides the password and parses to
 * the same place; and parsing is a function of the bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/iscsi/uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_parsed(const char *spec, const struct iscsi_uri *u)
{
    if (!u->host || !u->host[0] || !u->target || !u->target[0] || u->port == 0 ||
        u->lun > ISCSI_URI_MAX_LUN)
        abort();
    if (u->user && !u->password == !u->secret_file)
        abort(); /* a user needs exactly one source of secret */
    if (!u->user && (u->password || u->secret_file))
        abort();
    if (u->secret_file && u->secret_file[0] != '/')
        abort();
    char portal[300]; /* iscsi_int.h's size */
    if (iscsi_uri_portal(u, portal, sizeof portal) != 0)
        abort();

    char *red = iscsi_uri_redact(spec);
    if (!red)
        return;
    size_t ulen = u->user ? strlen(u->user) : 0;
    if (u->password && (strncmp(red + 8, u->user, ulen) || strncmp(red + 8 + ulen, "%***@", 5)))
        abort(); /* the password is not what was replaced */
    if (!u->password && strcmp(red, spec) != 0)
        abort();
    struct iscsi_uri v;
    char err[256];
    if (iscsi_uri_parse(red, &v, err, sizeof err) != 0)
        abort();
    if (!same(u->host, v.host) || !same(u->target, v.target) || u->port != v.port ||
        u->lun != v.lun || !same(u->user, v.user) || !same(u->secret_file, v.secret_file) ||
        !same(u->initiator, v.initiator))
        abort();
    iscsi_uri_clear(&v);
    free(red);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1);
    if (!spec)
        return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';

    struct iscsi_uri u, again;
    char err[256], err2[256];
    int r = iscsi_uri_parse(spec, &u, err, sizeof err);
    if (r != 0 && r != -EINVAL)
        abort();
    if (r < 0 && (!err[0] || strchr(err, '\n') || u.host || u.target || u.user))
        abort(); /* a refusal says why in one line and leaves nothing behind */
    if (iscsi_uri_parse(spec, &again, err2, sizeof err2) != r || (r < 0 && strcmp(err, err2)))
        abort();
    if (r == 0) {
        if (!same(u.host, again.host) || !same(u.target, again.target) ||
            !same(u.password, again.password))
            abort();
        check_parsed(spec, &u);
    }
    iscsi_uri_clear(&u);
    iscsi_uri_clear(&again);
    /* Redaction takes any string. */
    free(iscsi_uri_redact(spec));
    free(spec);
    return 0;
}
