/* TLS for any front end: credentials (frontend/tls_creds.h: the PSK file
 * format and what is refused at load) and the transport (frontend/tls.h:
 * a GnuTLS server session under conn_io), against a GnuTLS PSK client on
 * the other end of a socketpair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "frontend/conn_io.h"
#include "frontend/tls.h"
#include "frontend/tls_creds.h"

#define USER "alice"
#define KEY  "00112233445566778899aabbccddeeff"

static char dir[] = "/tmp/shoal-tls.XXXXXX";
static char path[128];

static const char *write_psk(const char *text)
{
    snprintf(path, sizeof path, "%s/keys.psk", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    return path;
}

static int load_psk(const char *text, struct tls_creds **out)
{
    struct tls_creds_config cfg = {.psk_file = write_psk(text)};
    return tls_creds_load(&cfg, out);
}

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    log_set_all(-1); /* the refusals below log errors on purpose */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void test_creds_refused(void **state)
{
    (void)state;
    struct tls_creds *c = NULL;
    struct tls_creds_config none = {0};
    assert_int_equal(tls_creds_load(&none, &c), -EINVAL);

    struct tls_creds_config missing = {.psk_file = "/nonexistent/keys.psk"};
    assert_int_equal(tls_creds_load(&missing, &c), -ENOENT);
    struct tls_creds_config nocert = {.certificates_dir = "/nonexistent"};
    assert_int_equal(tls_creds_load(&nocert, &c), -ENOENT);

    const char *bad[] = {
        "",                        /* no keys */
        "# only a comment\n\n",    /* no keys */
        "alice\n",                 /* no colon */
        ":" KEY "\n",              /* no user */
        "alice:\n",                /* no key */
        "alice:abc\n",             /* odd length */
        "alice:zz\n",              /* not hex */
        USER ":" KEY "\nbob:0g\n", /* a bad second line */
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        c = NULL;
        assert_int_equal(load_psk(bad[i], &c), -EINVAL);
        assert_null(c);
    }
    /* A line longer than any valid one. */
    char *longline = malloc(4096);
    assert_non_null(longline);
    memset(longline, 'a', 4094);
    longline[3] = ':';
    strcpy(longline + 4094, "\n");
    assert_int_equal(load_psk(longline, &c), -EINVAL);
    free(longline);
}

static void test_creds_psk_file(void **state)
{
    (void)state;
    struct tls_creds *c = NULL;
    assert_int_equal(load_psk("# psktool output\n\nbob:0a0b\r\n" USER ":" KEY "\n", &c), 0);
    assert_non_null(c);
    tls_creds_free(c);
    tls_creds_free(NULL);
}

/* ---- a session ---- */

struct client {
    int fd;
    const char *key; /* hex */
    int handshake;   /* gnutls result */
    char echo[6];
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    gnutls_psk_client_credentials_t psk;
    gnutls_session_t s;
    assert_int_equal(gnutls_psk_allocate_client_credentials(&psk), 0);
    const gnutls_datum_t key = {(unsigned char *)c->key, (unsigned)strlen(c->key)};
    assert_int_equal(gnutls_psk_set_client_credentials(psk, USER, &key, GNUTLS_PSK_KEY_HEX), 0);
    assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT), 0);
    assert_int_equal(gnutls_priority_set_direct(s, "NORMAL:-KX-ALL:+PSK", NULL), 0);
    assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_PSK, psk), 0);
    gnutls_transport_set_int(s, c->fd);
    gnutls_handshake_set_timeout(s, 5000);
    do {
        c->handshake = gnutls_handshake(s);
    } while (c->handshake < 0 && !gnutls_error_is_fatal(c->handshake));
    if (c->handshake == 0) {
        gnutls_record_set_timeout(s, 5000);
        assert_int_equal(gnutls_record_send(s, "hello", 5), 5);
        size_t got = 0;
        while (got < 5) {
            ssize_t n = gnutls_record_recv(s, c->echo + got, 5 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        char b;
        /* The server's close sends close_notify: a clean end. */
        assert_int_equal(gnutls_record_recv(s, &b, 1), 0);
    }
    gnutls_deinit(s);
    gnutls_psk_free_client_credentials(psk);
    close(c->fd);
    return NULL;
}

/* Server side on this thread: upgrade, echo 5 bytes, close. */
static int serve_once(struct tls_creds *creds, struct client *c)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c->fd = sv[1];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, c), 0);
    struct conn_io io;
    conn_io_init_plain(&io, sv[0]);
    io.timeout_ms = 5000;
    int r = tls_server_start(&io, creds);
    if (r == 0) {
        assert_string_equal(io.ops->name, "tls");
        assert_null(io.ops->try_sendv); /* TLS records cannot resume a partial send */
        char buf[5];
        assert_int_equal(conn_io_read_full(&io, buf, 5), 0);
        struct iovec iov[2] = {{buf, 2}, {buf + 2, 3}};
        assert_int_equal(conn_io_writev_full(&io, iov, 2), 0);
        assert_int_equal(io.ops->pending(&io), 0);
    } else {
        assert_string_equal(io.ops->name, "plain"); /* left as it was */
    }
    io.ops->close(&io);
    assert_int_equal(pthread_join(t, NULL), 0);
    return r;
}

static void test_session_echo(void **state)
{
    (void)state;
    struct tls_creds *creds = NULL;
    assert_int_equal(load_psk(USER ":" KEY "\n", &creds), 0);
    struct client c = {.key = KEY};
    assert_int_equal(serve_once(creds, &c), 0);
    assert_int_equal(c.handshake, 0);
    assert_string_equal(c.echo, "hello");
    tls_creds_free(creds);
}

static void test_session_wrong_key(void **state)
{
    (void)state;
    struct tls_creds *creds = NULL;
    assert_int_equal(load_psk(USER ":" KEY "\n", &creds), 0);
    struct client c = {.key = "ffeeddccbbaa99887766554433221100"};
    assert_true(serve_once(creds, &c) < 0);
    assert_true(c.handshake < 0);
    tls_creds_free(creds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creds_refused),
        cmocka_unit_test(test_creds_psk_file),
        cmocka_unit_test(test_session_echo),
        cmocka_unit_test(test_session_wrong_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
