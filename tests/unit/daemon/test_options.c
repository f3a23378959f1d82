/* shoald's config file through the option parser (src/daemon/options.c):
 * what a good file sets, and the one FILE:LINE line of each bad one. The
 * files are parsed with options_reparse, which returns the error instead
 * of printing it (a reload's path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/options.h"

static char path[] = "/tmp/test_options.XXXXXX";
static struct daemon_options *running, *out;
static char err[1024];

static int setup(void **state)
{
    (void)state;
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    running = calloc(1, sizeof *running);
    out = calloc(1, sizeof *out);
    if (!running || !out)
        return -1;
    running->config_files[0] = path;
    running->nconfig_files = 1;
    running->start_dir = "/tmp";
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    free(running);
    options_free(out);
    free(out);
    return 0;
}

/* Parse text as the config file, with argv after "shoald". */
static int parse_with(const char *text, char **args)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    char *argv[16] = {"shoald"};
    int argc = 1;
    for (; args && args[argc - 1]; argc++)
        argv[argc] = args[argc - 1];
    argv[argc] = NULL;
    options_free(out);
    return options_reparse(argc, argv, running, out, err, sizeof err);
}

static int parse(const char *text)
{
    return parse_with(text, NULL);
}

/* The error of text, as shoald prints it after "shoald: ". */
static void assert_error(const char *text, const char *at_line_and_msg)
{
    assert_int_equal(parse(text), -1);
    char want[1024];
    snprintf(want, sizeof want, "%s:%s", path, at_line_and_msg);
    assert_string_equal(err, want);
}

static void test_good_file(void **state)
{
    (void)state;
    assert_int_equal(parse("# shoald.conf\n"
                           "[shoald]\n"
                           "cache-size = 64M\n"
                           "backing-dir = /tmp\n"
                           "backing-dir = /\n"
                           "debug = nbd=debug\n"
                           "debug = core=warn\n"
                           "state-dir = /var/lib/shoal\n"
                           "[nbd]\n"
                           "listen = 127.0.0.1:10809\n"
                           "listen = unix:/run/shoal.sock\n"
                           "[volume a]\n"
                           "backing = /tmp/a.img\n"
                           "enabled = no\n"
                           "readahead = 64K\n"
                           "[volume b]\n"
                           "uri = nbd://localhost/b\n"
                           "connections = 4\n"),
                     0);
    assert_int_equal(out->cache_bytes, 64u << 20);
    assert_int_equal(out->nbacking_dirs, 2);
    assert_int_equal(out->ndebug_specs, 2);
    assert_string_equal(out->debug_specs[1], "core=warn");
    assert_string_equal(out->state_dir, "/var/lib/shoal");
    assert_int_equal(out->nvolumes, 2);
    assert_int_equal(out->nfile_volumes, 2);
    assert_string_equal(out->volumes[0].name, "a");
    assert_true(out->volumes[0].disabled);
    assert_int_equal(out->volumes[0].readahead, 64 * 1024);
    assert_int_equal(out->volume_line[0], 12);
    assert_string_equal(out->volumes[1].backend.spec, "nbd://localhost/b");
    assert_int_equal(out->volumes[1].backend.conns, 4);
    assert_int_equal(out->volume_line[1], 16);
    assert_string_equal(out->config_files[0], path);
}

static void test_command_line_wins(void **state)
{
    (void)state;
    char *args[] = {"-m", "32M", "c=/tmp/c.img,format=raw", NULL};
    assert_int_equal(
        parse_with("[shoald]\ncache-size = 64M\n[volume a]\nbacking = /tmp/a.img\n", args), 0);
    assert_int_equal(out->cache_bytes, 32u << 20);
    assert_int_equal(out->nvolumes, 2);
    assert_int_equal(out->nfile_volumes, 1);
    assert_string_equal(out->volumes[1].name, "c");
    assert_string_equal(out->volumes[1].backend.spec, "/tmp/c.img");
    assert_int_equal(out->volumes[1].backend.format, BACKEND_FORMAT_RAW);
    /* argv is left as given (ps shows it). */
    assert_string_equal(args[2], "c=/tmp/c.img,format=raw");

    char *dup[] = {"a=/tmp/x.img", NULL};
    assert_int_equal(parse_with("\n[volume a]\nbacking = /tmp/a.img\n", dup), -1);
    char want[512];
    snprintf(want, sizeof want, "volume a is defined twice (first at %s:2)", path);
    assert_string_equal(err, want);
}

static void test_errors(void **state)
{
    (void)state;
    assert_error("[shoald]\ncache-size = 12Q\n",
                 "2: invalid cache size '12Q': want a size like 512M or 2G (at least 4K)");
    assert_error("[shoald]\nfrobnicate = 1\n", "2: unknown setting 'frobnicate' in [shoald]");
    assert_error("frobnicate = 1\n", "1: unknown setting 'frobnicate' in [shoald]");
    assert_error("[nbd]\nthreads = 3\n", "2: unknown setting 'threads' in [nbd]");
    assert_error("[volume a]\nbacking = /a\nsize = 3\n", "3: unknown setting 'size' in [volume a]");
    assert_error("[volume a]\nbacking = /a\n\n[volume a]\nbacking = /a\n",
                 "4: [volume a] appears twice (first on line 1)");
    assert_error("[shoald]\n[nbd]\n[shoald]\n", "3: [shoald] appears twice (first on line 1)");
    assert_error("[volume a]\nbacking = /a\npath = /b\n",
                 "3: 'path' is set twice (first on line 2)");
    assert_error("[shoald]\nthreads = 4\nthreads = 4\n",
                 "3: 'threads' is set twice (first on line 2)");
    assert_error("[shoald]\ncache-size = 1G\ncache_size = 1G\n",
                 "3: 'cache_size' is set twice (first on line 2)");
    assert_error("[nbd]\nmax-connections = 4\n[shoald]\nmax-connections = 5\n",
                 "4: 'max-connections' is set twice (first on line 2)");
    assert_error("[volume a]\nbacking = /a\n[volume b]\nreadonly = yes\n",
                 "3: [volume b] has no backing");
    assert_error("[volume a]\n", "1: [volume a] has no backing");
    assert_error("[volume a]\nbacking =\n", "2: invalid backing '': empty");
    assert_error("[volume]\nbacking = /a\n", "1: [volume] needs a name: [volume NAME]");
    assert_error("[volume a/b]\n", "1: invalid volume name 'a/b': use 1-255 characters from A-Z "
                                   "a-z 0-9 . _ - (not starting with .)");
    assert_error("[bogus]\n", "1: unknown section [bogus]");
    assert_error("[volume a]\nbacking = /a\nreadahead = 3K\n",
                 "3: invalid readahead '3K': want off or a size from 4K to 256K");
    assert_error("[shoald]\ndebug = nbd=loud\n",
                 "2: invalid debug setting 'nbd=loud': want COMPONENT=LEVEL, e.g. nbd=debug");
    assert_error(
        "[shoald]\nlisten = 127.0.0.1:99999\n",
        "2: invalid listen address '127.0.0.1:99999': want ADDR:PORT, [IPv6]:PORT or unix:PATH");
    assert_error("\n\n[shoald\n", "3: section header without ']'");
    /* Checked once both sources are in, still named by their line. */
    assert_int_equal(parse("[shoald]\nthreads = 2\ncache-size = 1024T\n"), -1);
    char want[1024];
    snprintf(want, sizeof want, "%s:3: cache size 1.0 PiB is more than this machine's RAM (", path);
    assert_memory_equal(err, want, strlen(want));
    assert_error("[shoald]\nuser = no-such-user-here\n",
                 "2: invalid --user 'no-such-user-here': no such user");
    assert_error("\ngroup = kvm\n", "2: --group needs --user");
    assert_error("[shoald]\ncache-size 1G\n", "2: want 'key = value' or '[section]'");
}

/* The memcached tier's put queue: a size in [cluster] (or [shoald]) or on
 * the command line, 0 (the tier's default) when not given; out of 4K..64G
 * or not a size, one line naming it. */
static void test_memcached_put_queue(void **state)
{
    (void)state;
    assert_int_equal(parse("[cluster]\nmemcached = 127.0.0.1:11211\n"), 0);
    assert_int_equal(out->memcached_put_queue_bytes, 0);
    assert_int_equal(parse("[cluster]\nmemcached = 127.0.0.1:11211\nmemcached-put-queue = 64M\n"),
                     0);
    assert_int_equal(out->memcached_put_queue_bytes, 64u << 20);
    assert_int_equal(parse("[shoald]\nmemcached-put-queue = 4K\n"), 0);
    assert_int_equal(out->memcached_put_queue_bytes, 4096);
    assert_int_equal(parse("[cluster]\nmemcached-put-queue = 64G\n"), 0);
    assert_int_equal(out->memcached_put_queue_bytes, 64ull << 30);
    char *args[] = {"--memcached-put-queue", "1G", NULL};
    assert_int_equal(parse_with("[cluster]\nmemcached-put-queue = 64M\n", args), 0);
    assert_int_equal(out->memcached_put_queue_bytes, 1u << 30);

    assert_error("[cluster]\nmemcached-put-queue = 1K\n",
                 "2: invalid --memcached-put-queue '1K': want a size like 16M (4K to 64G)");
    assert_error("[cluster]\nmemcached-put-queue = 65G\n",
                 "2: invalid --memcached-put-queue '65G': want a size like 16M (4K to 64G)");
    assert_error("\n[cluster]\nmemcached-put-queue = lots\n",
                 "3: invalid --memcached-put-queue 'lots': want a size like 16M (4K to 64G)");
    assert_error("[cluster]\nmemcached-put-queue = -16M\n",
                 "2: invalid --memcached-put-queue '-16M': want a size like 16M (4K to 64G)");
    assert_error("[cluster]\nmemcached-put-queue = 16M\nmemcached-put-queue = 32M\n",
                 "3: 'memcached-put-queue' is set twice (first on line 2)");
    assert_error("[cluster]\nput-queue = 16M\n",
                 "2: unknown setting 'put-queue' in [cluster] (want memcached, memcached-timeout, "
                 "memcached-put-queue, etcd, node-name, etcd-lease, etcd-cacert, etcd-cert or "
                 "etcd-key)");
    char *bad_args[] = {"--memcached-put-queue", "0", NULL};
    assert_int_equal(parse_with("", bad_args), -1);
    assert_string_equal(err, "invalid --memcached-put-queue '0': want a size like 16M (4K to 64G)");
}

/* etcd over TLS: https endpoints, the three files from the command line or
 * [cluster], and the combinations refused. */
static void test_etcd_tls(void **state)
{
    (void)state;
    assert_int_equal(parse("[cluster]\netcd = https://127.0.0.1:2379,http://127.0.0.1:2380\n"
                           "etcd-cacert = /etc/ca.pem\netcd-cert = /etc/c.pem\n"
                           "etcd-key = /etc/k.pem\n"),
                     0);
    assert_string_equal(out->etcd, "https://127.0.0.1:2379,http://127.0.0.1:2380");
    assert_string_equal(out->etcd_tls.cacert, "/etc/ca.pem");
    assert_string_equal(out->etcd_tls.cert, "/etc/c.pem");
    assert_string_equal(out->etcd_tls.key, "/etc/k.pem");
    char *args[] = {"--etcd", "https://127.0.0.1:2379", "--etcd-cacert", "ca2.pem", NULL};
    assert_int_equal(parse_with("", args), 0);
    assert_string_equal(out->etcd_tls.cacert, "ca2.pem");
    assert_null(out->etcd_tls.cert);

    /* Checked once everything is read: named by the line of the last
     * etcd TLS file set. */
    assert_error("[cluster]\netcd = https://127.0.0.1:2379\netcd-cert = /etc/c.pem\n",
                 "3: a client certificate for etcd needs both --etcd-cert and --etcd-key");
    assert_error("[cluster]\netcd = http://127.0.0.1:2379\netcd-cacert = /etc/ca.pem\n",
                 "3: etcd TLS files given, but no etcd endpoint is https:// (they would not be "
                 "used)");
    assert_error("[cluster]\netcd-key = /etc/k.pem\netcd-cert = /etc/c.pem\n",
                 "3: etcd TLS files given, but no etcd endpoint is https:// (they would not be "
                 "used)");
    /* From the command line: no line to point at. */
    char *cli[] = {"--etcd-cert", "/etc/c.pem", NULL};
    assert_int_equal(parse_with("[cluster]\netcd = https://127.0.0.1:2379\n", cli), -1);
    assert_string_equal(err, "a client certificate for etcd needs both --etcd-cert and --etcd-key");
    assert_error("[cluster]\netcd = https://127.0.0.1:2379\netcd-cacert =\n",
                 "3: invalid --etcd-cacert '': empty path");
    assert_error("[cluster]\netcd = ftp://127.0.0.1:2379\n",
                 "2: invalid --etcd 'ftp://127.0.0.1:2379': bad etcd endpoint "
                 "\"ftp://127.0.0.1:2379\" (want http://HOST:PORT or https://HOST:PORT)");
}

/* The front ends' keys: a bad value is refused with the FILE:LINE it was
 * read at, whichever section it is in, as the daemon's own keys are; a
 * check across options names the line of the option it is about. */
static void test_frontend_value_lines(void **state)
{
    (void)state;
    assert_error("[nbd]\nlisten = unix:/tmp/s.sock\nsocket-mode = rw\n",
                 "3: invalid --socket-mode 'rw': want an octal mode like 0660");
    assert_error("[shoald]\nlisten = unix:/tmp/s.sock\nsocket-mode = 4770\n",
                 "3: invalid --socket-mode '4770': want an octal mode like 0660");
    assert_error("[nbd]\nlisten = unix:/tmp/s.sock\n\nsocket-owner = no-such-user-here\n",
                 "4: invalid --socket-owner 'no-such-user-here': no such user");
    assert_error("[nbd]\nlisten = unix:/tmp/s.sock\nsocket-group = no-such-group-here\n",
                 "3: invalid --socket-group 'no-such-group-here': no such group");
    /* The bad entry's own line, not the list's last. */
    assert_error("[nbd]\nallow = 127.0.0.1\nallow = 127.0.0.0/33\nallow = unix\n",
                 "3: invalid --allow '127.0.0.0/33': want an IPv4/IPv6 address, ADDR/PREFIX, or "
                 "unix");
    assert_error("[shoald]\nallow = example.com\n",
                 "2: invalid --allow 'example.com': want an IPv4/IPv6 address, ADDR/PREFIX, or "
                 "unix");
    assert_error("[iscsi]\nallow = 1.2.3.4/x\n",
                 "2: invalid --iscsi-allow '1.2.3.4/x': want an IPv4/IPv6 address, ADDR/PREFIX, "
                 "or unix");
    assert_error("[iscsi]\nlisten = unix:/tmp/i.sock\n",
                 "2: invalid --iscsi 'unix:/tmp/i.sock': iSCSI listens on TCP (want ADDR:PORT)");
    /* Across options. */
    assert_error("[nbd]\nlisten = 127.0.0.1:10809\n\nsocket-group = root\n",
                 "4: --socket-group applies to unix: listeners, and --listen has none");
    assert_error("[nbd]\ntls = on\n", "2: --tls=on needs --tls-certificates DIR or --tls-psk FILE");
    assert_error("[iscsi]\nlisten = off\nlisten = 127.0.0.1:3260\n",
                 "3: --iscsi off cannot be combined with an address");
    /* Set on the command line: nothing to point at. */
    char *args[] = {"--socket-mode", "rw", NULL};
    assert_int_equal(parse_with("[nbd]\nlisten = unix:/tmp/s.sock\n", args), -1);
    assert_string_equal(err, "invalid --socket-mode 'rw': want an octal mode like 0660");
    char *tls[] = {"--tls", "require", NULL};
    assert_int_equal(parse_with("[nbd]\nlisten = unix:/tmp/s.sock\n", tls), -1);
    assert_string_equal(err, "--tls=require needs --tls-certificates DIR or --tls-psk FILE");
    /* Good values still pass. */
    assert_int_equal(parse("[nbd]\nlisten = unix:/tmp/s.sock\nsocket-mode = 0600\n"
                           "socket-owner = root\nsocket-group = root\nallow = unix\n"
                           "allow = 127.0.0.0/8\n[iscsi]\nlisten = 127.0.0.1:3260\n"),
                     0);
}

/* A refused -D in the file leaves the log levels as they were. */
static void test_debug_not_applied(void **state)
{
    (void)state;
    log_set_all(LOG_LVL_INFO);
    assert_int_equal(parse("[shoald]\ndebug = nbd=debug\nthreads = 0\n"), -1);
    assert_int_equal(log_level(LOG_C_nbd), LOG_LVL_INFO);
    assert_int_equal(parse("[shoald]\ndebug = nbd=debug\n"), 0);
    assert_int_equal(log_level(LOG_C_nbd), LOG_LVL_INFO);
    options_apply_logging(out);
    assert_int_equal(log_level(LOG_C_nbd), LOG_LVL_DEBUG);
    log_set_all(LOG_LVL_INFO);
}

static void test_unreadable(void **state)
{
    (void)state;
    struct daemon_options *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->config_files[0] = "/nonexistent/shoald.conf";
    r->nconfig_files = 1;
    char *argv[] = {"shoald", NULL};
    options_free(out);
    assert_int_equal(options_reparse(1, argv, r, out, err, sizeof err), -1);
    assert_string_equal(err, "cannot read config file '/nonexistent/shoald.conf': No such file or "
                             "directory");
    free(r);
}

/* The start's text is what the reloader parses (options_reparse_same):
 * a file changed since reads as it was; a pipe (-c <(...)), empty when
 * read again, is refused by a reload's options_reparse with one line. */
static void test_start_text(void **state)
{
    (void)state;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("[shoald]\ncache-size = 64M\n[volume a]\nbacking = /tmp/a.img\n", f);
    fclose(f);
    struct daemon_options *start = calloc(1, sizeof *start);
    assert_non_null(start);
    char *argv[] = {"shoald", "-c", path, NULL};
    assert_int_equal(options_parse(3, argv, start), 0);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("[shoald]\ncache-size = 32M\n", f);
    fclose(f);
    options_free(out);
    assert_int_equal(options_reparse_same(3, argv, start, out, err, sizeof err), 0);
    assert_int_equal(out->cache_bytes, 64u << 20);
    assert_int_equal(out->nfile_volumes, 1);
    assert_string_equal(out->volumes[0].name, "a");
    options_free(out);
    assert_int_equal(options_reparse(3, argv, start, out, err, sizeof err), 0);
    assert_int_equal(out->cache_bytes, 32u << 20);
    assert_int_equal(out->nfile_volumes, 0);
    options_free(start);

    /* The same from a pipe. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    const char *text = "[shoald]\ncache-size = 64M\n[volume a]\nbacking = /tmp/a.img\n";
    assert_int_equal(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
    close(p[1]);
    char fd_path[64];
    snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", p[0]);
    char *pargv[] = {"shoald", "-c", fd_path, NULL};
    memset(start, 0, sizeof *start);
    assert_int_equal(options_parse(3, pargv, start), 0);
    assert_int_equal(start->nfile_volumes, 1);
    options_free(out);
    assert_int_equal(options_reparse_same(3, pargv, start, out, err, sizeof err), 0);
    assert_int_equal(out->nfile_volumes, 1);
    assert_int_equal(out->cache_bytes, 64u << 20);
    options_free(out);
    assert_int_equal(options_reparse(3, pargv, start, out, err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want,
             "config file '%s' is a pipe, not a regular file: it cannot be read again", fd_path);
    assert_memory_equal(err, want, strlen(want));
    assert_null(strchr(err, '\n'));
    close(p[0]);
    options_free(start);
    free(start);
}

int main(void)
{
    log_set_all(LOG_LVL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),  cmocka_unit_test(test_command_line_wins),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_debug_not_applied),
        cmocka_unit_test(test_unreadable), cmocka_unit_test(test_memcached_put_queue),
        cmocka_unit_test(test_etcd_tls),   cmocka_unit_test(test_frontend_value_lines),
        cmocka_unit_test(test_start_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
