/* Unit tests for the iSCSI back end's URI parser (backend/iscsi/uri.c):
 * the forms qemu and libiscsi accept parse into their parts, every kind of
 * bad input is refused with -EINVAL and a one-line reason, the portal and
 * the redacted display form come out right. Through backend_open: the
 * registry sends iscsi:// to the iSCSI back end, which refuses a bad URI,
 * an unusable secret file and one outside --backing-dir before it touches
 * the network, and reports a closed port as refused. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "backend/iscsi/session.h"
#include "backend/iscsi/uri.h"
#include "common/util.h"
#include "tmpdir_fixture.h"

#define IQN "iqn.2026-12.test.shoal:disk"

static int setup(void **state)
{
    return fixture_setup(state, "iscsi");
}

static void parse_ok(const char *spec, struct iscsi_uri *u)
{
    char err[256];
    int r = iscsi_uri_parse(spec, u, err, sizeof err);
    if (r != 0)
        fail_msg("%s: %d %s", spec, r, err);
}

static void test_good(void **state)
{
    (void)state;
    struct iscsi_uri u;

    parse_ok("iscsi://127.0.0.1/" IQN "/1", &u);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 3260);
    assert_string_equal(u.target, IQN);
    assert_int_equal(u.lun, 1);
    assert_null(u.user);
    assert_null(u.password);
    assert_null(u.secret_file);
    assert_null(u.initiator);
    iscsi_uri_clear(&u);

    /* user%password, a password holding '@' and '%', a port. */
    parse_ok("iscsi://alice%se@cr%et@array.example:3261/" IQN "/0", &u);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "se@cr%et");
    assert_string_equal(u.host, "array.example");
    assert_int_equal(u.port, 3261);
    assert_int_equal(u.lun, 0);
    iscsi_uri_clear(&u);
    assert_null(u.user);

    /* IPv6, the highest LUN, eui. and naa. names. */
    parse_ok("iscsi://[::1]:65535/eui.0123456789abcdef/16383", &u);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.lun, 16383);
    char portal[64];
    assert_int_equal(iscsi_uri_portal(&u, portal, sizeof portal), 0);
    assert_string_equal(portal, "[::1]:65535");
    iscsi_uri_clear(&u);
    parse_ok("iscsi://h/naa.60014055f4a1b2c3/2", &u);
    assert_int_equal(iscsi_uri_portal(&u, portal, sizeof portal), 0);
    assert_string_equal(portal, "h:3260");
    assert_int_equal(iscsi_uri_portal(&u, portal, 4), -ENAMETOOLONG);
    iscsi_uri_clear(&u);

    /* Query: a %-encoded secret file path, an initiator name. */
    parse_ok("iscsi://bob@host/" IQN "/3?secret-file=/etc/shoal/a%20b%3fc&initiator-name=iqn."
             "2026-12.example:node1",
             &u);
    assert_string_equal(u.user, "bob");
    assert_null(u.password);
    assert_string_equal(u.secret_file, "/etc/shoal/a b?c");
    assert_string_equal(u.initiator, "iqn.2026-12.example:node1");
    assert_int_equal(u.header_digest, ISCSI_URI_DIGEST_AUTO);
    iscsi_uri_clear(&u);

    /* Header digests: required, refused, or the default. */
    parse_ok("iscsi://host/" IQN "/1?header-digest=crc32c", &u);
    assert_int_equal(u.header_digest, ISCSI_URI_DIGEST_CRC32C);
    iscsi_uri_clear(&u);
    parse_ok("iscsi://host/" IQN "/1?initiator-name=iqn.2026-12.x:y&header-digest=None", &u);
    assert_int_equal(u.header_digest, ISCSI_URI_DIGEST_NONE);
    assert_string_equal(u.initiator, "iqn.2026-12.x:y");
    iscsi_uri_clear(&u);
    parse_ok("iscsi://host/" IQN "/1?header-digest=auto", &u);
    assert_int_equal(u.header_digest, ISCSI_URI_DIGEST_AUTO);
    iscsi_uri_clear(&u);
}

static void test_bad(void **state)
{
    (void)state;
    static const struct {
        const char *spec, *why;
    } cases[] = {
        {"nbd://host/x", "not an iscsi:// URI"},
        {"iscsi://", "want iscsi://HOST"},
        {"iscsi://host", "want iscsi://HOST"},
        {"iscsi://host?x=y/" IQN "/1", "want iscsi://HOST"},
        {"iscsi:///" IQN "/1", "no host name"},
        {"iscsi://host/" IQN, "no LUN"},
        {"iscsi://host//1", "no target name"},
        {"iscsi://host/" IQN "/", "bad LUN"},
        {"iscsi://host/" IQN "/-1", "bad LUN"},
        {"iscsi://host/" IQN "/16384", "bad LUN"},
        {"iscsi://host/" IQN "/1/", "bad LUN"},
        {"iscsi://host/" IQN "/0x1", "bad LUN"},
        {"iscsi://host/" IQN "/99999999999999999999", "bad LUN"},
        {"iscsi://host/disk/1", "is not an iSCSI name"},
        {"iscsi://host/iqn.a/b/1", "bad LUN"},
        {"iscsi://host/iqn.2026-12.x;y/1", "is not an iSCSI name"},
        {"iscsi://host:0/" IQN "/1", "bad port"},
        {"iscsi://host:65536/" IQN "/1", "bad port"},
        {"iscsi://host:/" IQN "/1", "bad port"},
        {"iscsi://host:12a/" IQN "/1", "bad port"},
        {"iscsi://[::1/" IQN "/1", "without ']'"},
        {"iscsi://[]/" IQN "/1", "empty IPv6"},
        {"iscsi://[::g]/" IQN "/1", "bad character"},
        {"iscsi://[::1]x/" IQN "/1", "junk after"},
        {"iscsi://ho$t/" IQN "/1", "bad character"},
        {"iscsi://@host/" IQN "/1", "empty user"},
        {"iscsi://%pw@host/" IQN "/1", "empty user"},
        {"iscsi://al ice@host/" IQN "/1", "space or control"},
        {"iscsi://al!ce@host/" IQN "/1", "bad character"},
        {"iscsi://al/ice@host/" IQN "/1", "is not an iSCSI name"},
        {"iscsi://alice%@host/" IQN "/1", "empty password"},
        {"iscsi://alice@host/" IQN "/1", "has no CHAP secret"},
        {"iscsi://host/" IQN "/1?secret-file=/s", "needs a user"},
        {"iscsi://a%b@host/" IQN "/1?secret-file=/s", "give it once"},
        {"iscsi://a@host/" IQN "/1?secret-file=rel/s", "absolute path"},
        {"iscsi://a@host/" IQN "/1?secret-file=/s%00x", "bad %-encoding"},
        {"iscsi://a@host/" IQN "/1?secret-file=/s%4", "bad %-encoding"},
        {"iscsi://a@host/" IQN "/1?secret-file=/s%zz", "bad %-encoding"},
        {"iscsi://a@host/" IQN "/1?secret-file=/s&secret-file=/t", "given twice"},
        {"iscsi://host/" IQN "/1?foo=bar", "unknown parameter 'foo'"},
        {"iscsi://host/" IQN "/1?header-digest=crc32", "want crc32c, none or auto"},
        {"iscsi://host/" IQN "/1?header-digest=crc32c&header-digest=none", "given twice"},
        {"iscsi://host/" IQN "/1?", "empty query"},
        {"iscsi://host/" IQN "/1?&", "empty parameter"},
        {"iscsi://host/" IQN "/1?initiator-name=x&", "empty parameter"},
        {"iscsi://host/" IQN "/1?initiator-name", "wants key=value"},
        {"iscsi://host/" IQN "/1?initiator-name=", "wants key=value"},
        {"iscsi://host/" IQN "/1?=x", "wants key=value"},
        {"iscsi://host/" IQN "/1?initiator-name=shoal", "is not an iSCSI name"},
        {"iscsi://host/" IQN "/1#frag", "fragment"},
        {"iscsi://host/" IQN "/1\n", "space or control"},
        {"iscsi://h\x80st/" IQN "/1", "space or control"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct iscsi_uri u;
        char err[256] = "unset";
        int r = iscsi_uri_parse(cases[i].spec, &u, err, sizeof err);
        if (r != -EINVAL || !strstr(err, cases[i].why))
            fail_msg("'%s': got %d '%s', want -EINVAL '%s'", cases[i].spec, r, err, cases[i].why);
        assert_null(strchr(err, '\n'));
        assert_null(u.host); /* cleared on failure */
        assert_null(u.user);
    }

    /* Over-long pieces. */
    char spec[9000], name[300];
    memset(name, 'a', sizeof name);
    memcpy(name, "iqn.", 4);
    name[sizeof name - 1] = '\0';
    snprintf(spec, sizeof spec, "iscsi://host/%s/1", name);
    struct iscsi_uri u;
    char err[256];
    assert_int_equal(iscsi_uri_parse(spec, &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "is not an iSCSI name"));
    memset(spec, 'h', sizeof spec);
    memcpy(spec, "iscsi://", 8);
    spec[sizeof spec - 1] = '\0';
    assert_int_equal(iscsi_uri_parse(spec, &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "too long"));
    assert_int_equal(iscsi_uri_parse(NULL, &u, err, sizeof err), -EINVAL);
    /* No room for the reason is fine too. */
    assert_int_equal(iscsi_uri_parse("iscsi://", &u, NULL, 0), -EINVAL);
}

static void test_redact(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"iscsi://alice%secret@host/" IQN "/1", "iscsi://alice%***@host/" IQN "/1"},
        {"iscsi://alice%se@cr%et@host:3261/" IQN "/1?initiator-name=iqn.2026-12.x:y",
         "iscsi://alice%***@host:3261/" IQN "/1?initiator-name=iqn.2026-12.x:y"},
        {"iscsi://alice@host/" IQN "/1?secret-file=/s",
         "iscsi://alice@host/" IQN "/1?secret-file=/s"},
        {"iscsi://host/" IQN "/1", "iscsi://host/" IQN "/1"},
        {"iscsi://host/a%b@c/1", "iscsi://host/a%b@c/1"}, /* '@' past the authority */
        {"/var/lib/x.img", "/var/lib/x.img"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *r = iscsi_uri_redact(cases[i].in);
        assert_non_null(r);
        assert_string_equal(r, cases[i].out);
        free(r);
    }
}

static void test_sense(void **state)
{
    (void)state;
    assert_int_equal(isc_sense_errno(SCSI_SENSE_ILLEGAL_REQUEST, 0x2000), -EOPNOTSUPP);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_ILLEGAL_REQUEST, 0x2400), -EOPNOTSUPP);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_ILLEGAL_REQUEST, 0x2500), -ENXIO);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_ILLEGAL_REQUEST, 0x2100), -EINVAL);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_DATA_PROTECTION, 0x2700), -EROFS);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_DATA_PROTECTION, 0x2707), -ENOSPC);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_MEDIUM_ERROR, 0x1100), -EIO);
    assert_int_equal(isc_sense_errno(SCSI_SENSE_NOT_READY, 0x3a00), -EIO);
}

/* backend_open of spec; returns its result, the reason in why. */
static int open_spec(const char *spec, const char *const *dirs, char *why, size_t len)
{
    struct backend_params p = {.spec = spec, .backing_dirs = dirs, .connect_timeout_ms = 2000};
    struct backend *be = NULL;
    int r = backend_open(&p, &be);
    snprintf(why, len, "%s", backend_open_error());
    if (r == 0)
        backend_close(be);
    return r;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* A 127.0.0.1 port nothing listens on (bound, then closed). */
static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_open_refusals(void **state)
{
    struct fixture *fx = *state;
    char spec[1024], why[1024], secret[600], empty[600];
    snprintf(secret, sizeof secret, "%s/chap.secret", fx->dir);
    snprintf(empty, sizeof empty, "%s/empty.secret", fx->dir);
    write_file(secret, "sesame-0123456\n", 0600);
    write_file(empty, "\n", 0600);
    unsigned port = closed_port();

    /* The registry hands iscsi:// to this back end: its reason, not a
     * file's "No such file or directory". */
    assert_int_equal(open_spec("iscsi://127.0.0.1/" IQN "/1?x=y", NULL, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "unknown parameter 'x'"));

    snprintf(spec, sizeof spec, "iscsi://alice@127.0.0.1:%u/" IQN "/1?secret-file=%s", port, empty);
    assert_int_equal(open_spec(spec, NULL, why, sizeof why), -EINVAL);
    assert_non_null(strstr(why, "want the CHAP secret"));

    snprintf(spec, sizeof spec, "iscsi://alice@127.0.0.1:%u/" IQN "/1?secret-file=%s/nope", port,
             fx->dir);
    assert_int_equal(open_spec(spec, NULL, why, sizeof why), -ENOENT);
    assert_non_null(strstr(why, "secret-file"));

    /* --backing-dir: the secret file must lie beneath it. */
    const char *const elsewhere[] = {"/nonexistent-backing-dir", NULL};
    snprintf(spec, sizeof spec, "iscsi://alice@127.0.0.1:%u/" IQN "/1?secret-file=%s", port,
             secret);
    assert_int_equal(open_spec(spec, elsewhere, why, sizeof why), -EPERM);
    assert_non_null(strstr(why, "refused by --backing-dir"));

    /* Allowed secret, nothing listening: refused at once, naming the portal. */
    const char *const here[] = {fx->dir, NULL};
    uint64_t t0 = now_ns();
    int r = open_spec(spec, here, why, sizeof why);
    assert_true(r < 0);
    assert_true(now_ns() - t0 < 2000000000ull);
    char want[64];
    snprintf(want, sizeof want, "cannot connect to 127.0.0.1:%u", port);
    if (!strstr(why, want) || !strstr(why, "refused"))
        fail_msg("closed port: '%s'", why);
    unlink(secret);
    unlink(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_sense),
        cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
