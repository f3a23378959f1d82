/* libFuzzer target for NBD over TLS: the input is the client side of a
 * connection to a server that requires TLS, fed through a socketpair into
 * the real server path (nbd_serve_connection: the NBD handshake, STARTTLS,
 * the GnuTLS server handshake in frontend/tls.c with the credentials of
 * frontend/tls_creds.c, then the TLS transport under the rest of the
 * handshake and the transmission phase).
 *
 * The first input byte picks the mode (byte & 3), the rest is the stream:
 *
 *   0  raw client bytes to an x509 server (--tls require): client flags,
 *      options (NBD_OPT_STARTTLS), then TLS records (a ClientHello, ...);
 *   1  the same to an x509 server that asks for and verifies client
 *      certificates (--tls-verify-peer), with TLS optional (--tls on), so
 *      options before STARTTLS are answered too;
 *   2  the same to a PSK server (--tls-psk, --tls require): PSK priorities
 *      and tls_creds.c's identity lookup;
 *   3  a real TLS client: the harness sends client flags and STARTTLS,
 *      completes a GnuTLS PSK handshake (TLS 1.3, or 1.2 when byte & 4),
 *      then sends the rest of the input as plaintext inside TLS: options
 *      after STARTTLS, then requests. This reaches the TLS transport
 *      (tls_recv/tls_sendv, close_notify, EOF) behind a finished handshake.
 *
 * In modes 0-2 a fuzzed client can never finish the handshake (it would
 * have to predict the server's random values), so those inputs exercise
 * everything up to and including GnuTLS's parsing of the client's first
 * flight and its refusals of the rest, and tls.c's callbacks and error
 * mapping. Seeds: real clients' streams recorded through record_proxy.py
 * (make_corpus.sh), a valid ClientHello after STARTTLS among them.
 *
 * Export: "fuzz", 1 MiB + 1234 bytes read-write (a file back end on a
 * memfd; the NBD targets cover the data path in depth).
 *
 * Credentials: the throw-away key set in tls_keys.h (make_tls_keys.sh),
 * written to a temp dir only while the servers load them. At exit the
 * servers and the engine are stopped before LeakSanitizer's check, as in
 * fuzz_nbd.c; every connection's threads are joined per input.
 *
 * Set SHOAL_FUZZ_LOG=debug to see the daemon's log while reproducing. */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bufpool.h"
#include "common/log.h"
#include "core/engine.h"
#include "frontend/frontend.h"
#include "frontend/nbd/server.h"
#include "fuzz_client.h"
#include "fuzz_log.h"
#include "tls_keys.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VOL_SIZE    ((1u << 20) + 1234)
#define CACHE_BYTES (512u * 1024)
/* Waits of the harness's own TLS client (the server's are 5 s). */
#define CLIENT_TIMEOUT_MS 5000

enum { MODE_X509, MODE_X509_VERIFY, MODE_PSK, MODE_CLIENT };

static struct engine *engine;
static struct nbd_server *servers[3]; /* by mode */
static gnutls_psk_client_credentials_t client_psk;

static int add_memfd_volume(const char *name, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return -errno;
    for (size_t off = 0; off + 4096 <= size; off += 64 * 1024) {
        char blk[4096];
        memset(blk, (int)(off >> 16) + 1, sizeof blk);
        if (pwrite(fd, blk, sizeof blk, (off_t)off) != (ssize_t)sizeof blk)
            return -errno;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd); /* fd stays open */
    struct volume_config vc = {.name = name, .backend = {.spec = path}};
    return engine_add_volume(engine, &vc);
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (!f)
        return -errno;
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? 0 : -EIO;
}

static int start_server(enum nbd_tls_mode tls, const char *certs, const char *psk, bool verify_peer,
                        struct nbd_server **out)
{
    struct nbd_options no;
    nbd_options_init(&no); /* no listeners: connections come from fuzz_serve */
    no.handshake_timeout_ms = 5000;
    no.tls = tls;
    no.tls_certificates = certs;
    no.tls_psk = psk;
    no.tls_verify_peer = verify_peer;
    struct frontend_config fc = {.opts = &no};
    return nbd_server_start(engine, &fc, out);
}

/* Write the credentials to a temp dir, start the three servers (they load
 * the files at start), remove the files. */
static int start_servers(void)
{
    char dir[] = "/tmp/shoal-fuzz-tls.XXXXXX";
    if (!mkdtemp(dir))
        return -errno;
    char psk[sizeof dir + 16];
    snprintf(psk, sizeof psk, "%s/keys.psk", dir);
    int r = write_file(dir, "ca-cert.pem", tls_ca_cert_pem);
    if (r == 0)
        r = write_file(dir, "server-cert.pem", tls_server_cert_pem);
    if (r == 0)
        r = write_file(dir, "server-key.pem", tls_server_key_pem);
    if (r == 0)
        r = write_file(dir, "keys.psk", TLS_PSK_USER ":" TLS_PSK_HEX "\n");
    if (r == 0)
        r = start_server(NBD_TLS_REQUIRE, dir, NULL, false, &servers[MODE_X509]);
    if (r == 0)
        r = start_server(NBD_TLS_ON, dir, NULL, true, &servers[MODE_X509_VERIFY]);
    if (r == 0)
        r = start_server(NBD_TLS_REQUIRE, NULL, psk, false, &servers[MODE_PSK]);
    const char *names[] = {"ca-cert.pem", "server-cert.pem", "server-key.pem", "keys.psk"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[sizeof dir + 32];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return r;
}

/* At exit, before the leak check: stop the servers, then the engine
 * (joining its workers); free the client's credentials. */
static void stop_all(void)
{
    for (size_t i = 0; i < 3; i++) {
        nbd_server_stop(servers[i]);
        servers[i] = NULL;
    }
    engine_destroy(engine);
    engine = NULL;
    if (client_psk)
        gnutls_psk_free_client_credentials(client_psk);
    client_psk = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    fuzz_log_setup();
    bufpool_init(16u << 20);
    /* Two workers, shared by the three servers as in shoald. */
    struct engine_config ec = {.cache_bytes = CACHE_BYTES, .workers = 2};
    if (engine_create(&ec, &engine) < 0 || add_memfd_volume("fuzz", VOL_SIZE) < 0) {
        fprintf(stderr, "fuzz: cannot create the engine or its volume\n");
        abort();
    }
    int r = start_servers();
    if (r < 0) {
        fprintf(stderr, "fuzz: cannot start the TLS servers: %s\n", strerror(-r));
        abort();
    }
    const gnutls_datum_t key = {(unsigned char *)TLS_PSK_HEX, (unsigned)strlen(TLS_PSK_HEX)};
    if (gnutls_psk_allocate_client_credentials(&client_psk) < 0 ||
        gnutls_psk_set_client_credentials(client_psk, TLS_PSK_USER, &key, GNUTLS_PSK_KEY_HEX) < 0) {
        fprintf(stderr, "fuzz: cannot set up the client's PSK\n");
        abort();
    }
    atexit(stop_all);
    return 0;
}

/* ---- mode 3: a real TLS client ---- */

struct tls_client {
    int fd;
    bool tls12;
    const uint8_t *data;
    size_t len;
    gnutls_session_t session;
};

static int send_plain(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_plain(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The plain part: greeting, client flags, STARTTLS and its ACK. */
static int plain_starttls(int fd)
{
    static const uint8_t hello[] = {
        0,   0,   0,   3, /* FIXED_NEWSTYLE | NO_ZEROES */
        'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 5, 0, 0, 0, 0,
    };
    uint8_t greeting[18], rep[20];
    if (recv_plain(fd, greeting, sizeof greeting) < 0 || memcmp(greeting, "NBDMAGIC", 8) != 0)
        return -1;
    if (send_plain(fd, hello, sizeof hello) < 0 || recv_plain(fd, rep, sizeof rep) < 0)
        return -1;
    uint32_t type = be32(rep + 12), len = be32(rep + 16);
    return type == 1 && len == 0 ? 0 : -1; /* NBD_REP_ACK, no data */
}

/* Receive and drop until the server closes (its own thread: GnuTLS allows
 * one receiving and one sending thread on a session). */
static void *tls_reader(void *arg)
{
    struct tls_client *c = arg;
    char sink[16384];
    for (;;) {
        ssize_t n = gnutls_record_recv(c->session, sink, sizeof sink);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n <= 0 && n != GNUTLS_E_REHANDSHAKE)
            break;
    }
    return NULL;
}

static void *tls_client_main(void *arg)
{
    struct tls_client *c = arg;
    c->session = NULL;
    if (plain_starttls(c->fd) < 0)
        goto out;
    if (gnutls_init(&c->session, GNUTLS_CLIENT) < 0) {
        c->session = NULL;
        goto out;
    }
    /* Pure PSK key exchange: no certificate, no ephemeral keys, so the
     * harness's handshake costs little. */
    const char *prio = c->tls12 ? "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK"
                                : "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+PSK";
    if (gnutls_priority_set_direct(c->session, prio, NULL) < 0 ||
        gnutls_credentials_set(c->session, GNUTLS_CRD_PSK, client_psk) < 0)
        goto out;
    gnutls_transport_set_int(c->session, c->fd);
    gnutls_handshake_set_timeout(c->session, CLIENT_TIMEOUT_MS);
    int g;
    do {
        g = gnutls_handshake(c->session);
    } while (g < 0 && !gnutls_error_is_fatal(g));
    if (g < 0) {
        fprintf(stderr, "fuzz_tls: the harness's TLS handshake failed: %s\n", gnutls_strerror(g));
        goto out;
    }
    gnutls_record_set_timeout(c->session, CLIENT_TIMEOUT_MS);
    pthread_t rt;
    if (pthread_create(&rt, NULL, tls_reader, c) != 0)
        abort();
    size_t sent = 0;
    while (sent < c->len) {
        ssize_t n = gnutls_record_send(c->session, c->data + sent, c->len - sent);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n <= 0)
            break; /* the server closed: done writing */
        sent += (size_t)n;
    }
    gnutls_bye(c->session, GNUTLS_SHUT_WR); /* close_notify: EOF for the server */
    shutdown(c->fd, SHUT_WR);
    pthread_join(rt, NULL);
out:
    if (c->session)
        gnutls_deinit(c->session);
    close(c->fd);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned mode = data[0] & 3;
    if (mode == MODE_CLIENT) {
        struct tls_client c = {.tls12 = data[0] & 4, .data = data + 1, .len = size - 1};
        fuzz_serve_with(servers[MODE_PSK], tls_client_main, &c, &c.fd);
    } else {
        fuzz_serve(servers[mode], NULL, 0, data + 1, size - 1);
    }
    return 0;
}
