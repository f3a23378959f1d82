/* shoalctl end to end: the real binary (path in $SHOALCTL) against the
 * management server on a fake engine. Checks output, exit codes and that
 * each command reached the engine with the right arguments. */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "fake_engine.h"
#include "mgmt/mgmt.h"
#include "mgmt/token.h"

#define TOKEN "cli-token"

static struct engine *eng;
static struct mgmt *srv;
static const char *shoalctl;
static char token_file[] = "/tmp/shoalctl-test-token-XXXXXX";
/* Working directory for the next run() calls; NULL = the test's own. */
static const char *run_cwd;

/* Run "shoalctl ARGS" (with --url unless `no_url`) with a clean
 * environment plus `env` (e.g. "SHOAL_TOKEN=x"). Returns the exit status;
 * *out gets stdout and stderr. */
static int run(const char *env, bool no_url, char **out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int run(const char *env, bool no_url, char **out, const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char url[64] = "";
    if (!no_url)
        snprintf(url, sizeof url, "--url http://127.0.0.1:%u", mgmt_port(srv));
    char cd[512] = "";
    if (run_cwd)
        snprintf(cd, sizeof cd, "cd '%s' && ", run_cwd);
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "%senv -u SHOAL_TOKEN -u SHOAL_URL %s '%s' %s %s 2>&1 </dev/null", cd,
             env ? env : "", shoalctl, url, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - 1 - len, p)) > 0) {
        len += n;
        if (len == cap - 1) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    int status = pclose(p);
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Assert exit code `rc` and that the output holds `needle`. */
static void expect(int got, int rc, char *out, const char *needle)
{
    if (got != rc || (needle && !strstr(out, needle))) {
        fprintf(stderr, "exit %d (want %d), output:\n%s\n(wanted \"%s\")\n", got, rc, out,
                needle ? needle : "");
        fail();
    }
    free(out);
}

static struct fake_calls calls(void)
{
    struct fake_calls c;
    fake_engine_calls(eng, &c);
    return c;
}

static int group_setup(void **state)
{
    (void)state;
    shoalctl = getenv("SHOALCTL");
    if (!shoalctl || access(shoalctl, X_OK) != 0) {
        fprintf(stderr, "SHOALCTL must name the shoalctl binary\n");
        return -1;
    }
    log_set_all(LOG_LVL_ERROR);
    eng = fake_engine_new();
    struct mgmt_config cfg = {.listen = "127.0.0.1:0", .token = TOKEN};
    if (mgmt_start(eng, &cfg, &srv) < 0)
        return -1;
    int fd = mkstemp(token_file);
    if (fd < 0)
        return -1;
    const char text[] = "  " TOKEN "\n\n";
    if (write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1))
        return -1;
    close(fd);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(token_file);
    mgmt_stop(srv);
    fake_engine_free(eng);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    fake_engine_reset(eng);
    run_cwd = NULL;
    return 0;
}

static void test_stats(void **state)
{
    (void)state;
    char *out;
    int rc = run(NULL, false, &out, "stats");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "Cache"));
    assert_non_null(strstr(out, "dedup_ratio"));
    assert_non_null(strstr(out, "3.00x"));
    assert_non_null(strstr(out, "metadata_bytes_per_block"));
    assert_non_null(strstr(out, "Volumes (2)"));
    assert_non_null(strstr(out, "HIT%"));
    assert_non_null(strstr(out, "75.0%"));
    expect(rc, 0, out, "gold.base-2");

    rc = run(NULL, false, &out, "stats vm1");
    assert_non_null(strstr(out, "read_hit_bytes"));
    expect(rc, 0, out, "latency read_hit");

    rc = run(NULL, false, &out, "stats --json");
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_object(json_object_get(j, "cache")));
    json_decref(j);
    expect(rc, 0, out, "\n  \"cache\"");

    rc = run(NULL, false, &out, "stats nope");
    expect(rc, 2, out, "shoalctl: no such volume: nope (HTTP 404)");
}

static void test_volumes(void **state)
{
    (void)state;
    char *out;
    /* Without the token the back ends are hidden, with it they show. */
    int rc = run("SHOAL_TOKEN=no", false, &out, "volumes");
    assert_null(strstr(out, "vm1.img"));
    expect(rc, 0, out, "(hidden: needs the API token)");
    rc = run("SHOAL_TOKEN=no", false, &out, "stats --json");
    assert_null(strstr(out, "vm1.img"));
    expect(rc, 0, out, "\"backend_hidden\": true");
    rc = run(NULL, false, &out, "--token-file %s volumes", token_file);
    expect(rc, 0, out, "file /var/lib/shoal/vm1.img");
    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volumes");
    assert_non_null(strstr(out, "NAME"));
    /* The newline in the back end's description must not break the table. */
    assert_null(strstr(out, "base\nsecond"));
    expect(rc, 0, out, "gold.base-2");

    rc = run(NULL, false, &out, "volumes --json");
    json_t *j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);
    expect(rc, 0, out, NULL);
}

static void test_volume_add_remove(void **state)
{
    (void)state;
    char *out;
    int rc = run(NULL, false, &out, "volume add vm7 /srv/vm7.img");
    /* One line: a token is needed, and where shoalctl looked for one. */
    assert_non_null(strstr(out, "API token"));
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    if (!strstr(out, "refused the API token from " TOKEN_ROOT_PATH))
        assert_non_null(strstr(out, "--token-file (not given), $SHOAL_TOKEN (unset)"));
    expect(rc, 2, out, "HTTP 401");
    assert_int_equal(calls().add, 0);
    rc = run("SHOAL_TOKEN=not-the-token", false, &out, "volume add vm7 /srv/vm7.img");
    expect(rc, 2, out, "refused the API token from $SHOAL_TOKEN (HTTP 401)");
    rc = run(NULL, false, &out, "--token-file %s volume add vm7 /etc/shadow --token-file /dev/null",
             token_file);
    expect(rc, 1, out, "token file /dev/null is empty");
    assert_int_equal(calls().add, 0);

    rc = run(NULL, false, &out, "--token-file %s volume add vm7 /srv/vm7.img --readonly --disabled",
             token_file);
    expect(rc, 0, out, "added volume vm7");
    struct fake_calls c = calls();
    assert_string_equal(c.last_add.name, "vm7");
    assert_string_equal(c.last_add.spec, "/srv/vm7.img");
    assert_true(c.last_add.readonly);
    assert_true(c.last_add.disabled);

    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume add vm7 /srv/vm7.img");
    expect(rc, 2, out, "already exists");
    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume add vm8 /nonexistent/x");
    expect(rc, 2, out, "No such file or directory");

    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume remove gold.base-2");
    expect(rc, 2, out, "connected clients");
    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume remove gold.base-2 --force");
    expect(rc, 0, out, "removed volume gold.base-2");
    c = calls();
    assert_string_equal(c.remove_name, "gold.base-2");
    assert_true(c.remove_force);
    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume remove vm1");
    expect(rc, 0, out, NULL);
    assert_false(calls().remove_force);
}

/* Add volume NAME with BACKING from run_cwd; return the spec the engine got. */
static const char *added_spec(const char *name, const char *backing)
{
    static struct fake_calls c;
    char *out;
    int rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume add %s '%s'", name, backing);
    expect(rc, 0, out, "added volume");
    c = calls();
    assert_string_equal(c.last_add.name, name);
    return c.last_add.spec;
}

/* A relative BACKING means a path from shoalctl's directory, not from
 * shoald's: shoalctl sends it absolute. URIs and absolute paths go as
 * typed. */
static void test_volume_add_relative(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/shoalctl-cwd-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *dir = realpath(tmpl, NULL); /* what getcwd() will say there */
    assert_non_null(dir);
    run_cwd = dir;
    char want[4200];

    snprintf(want, sizeof want, "%s/rel/disk.img", dir);
    assert_string_equal(added_spec("r1", "rel/disk.img"), want);
    snprintf(want, sizeof want, "%s/disk.img", dir);
    assert_string_equal(added_spec("r2", "./disk.img"), want);
    snprintf(want, sizeof want, "%s/../up.img", dir);
    assert_string_equal(added_spec("r3", "../up.img"), want);
    assert_string_equal(added_spec("r4", "/srv/abs.img"), "/srv/abs.img");
    assert_string_equal(added_spec("r5", "nbd://example.org:10809/exp"),
                        "nbd://example.org:10809/exp");
    assert_string_equal(added_spec("r6", "nbd+unix:///exp?socket=rel.sock"),
                        "nbd+unix:///exp?socket=rel.sock");
    /* A file whose name has a colon is still a path. */
    snprintf(want, sizeof want, "%s/a:b.img", dir);
    assert_string_equal(added_spec("r7", "a:b.img"), want);
    run_cwd = "/";
    assert_string_equal(added_spec("r8", "top.img"), "/top.img");

    /* What shoalctl prints is the daemon's view: the absolute path. */
    run_cwd = dir;
    char *out;
    int rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "volume add r9 rel/x.img");
    snprintf(want, sizeof want, "added volume r9: 64.0 MiB, file %s/rel/x.img, enabled", dir);
    expect(rc, 0, out, want);
    run_cwd = NULL;
    rmdir(tmpl);
    free(dir);
}

static void test_control(void **state)
{
    (void)state;
    char *out;
    const char *env = "SHOAL_TOKEN=" TOKEN;
    int rc = run(env, false, &out, "disable vm1");
    expect(rc, 0, out, "acceleration disabled");
    struct fake_calls c = calls();
    assert_string_equal(c.enabled_name, "vm1");
    assert_false(c.enabled_on);
    rc = run(env, false, &out, "enable vm1");
    expect(rc, 0, out, "acceleration enabled");
    assert_true(calls().enabled_on);

    rc = run(env, false, &out, "invalidate vm1 4K 1M");
    expect(rc, 0, out, "invalidated vm1");
    c = calls();
    assert_int_equal(c.invalidate_offset, 4096);
    assert_int_equal(c.invalidate_length, 1 << 20);
    rc = run(env, false, &out, "invalidate vm1");
    expect(rc, 0, out, "1.0 GiB");
    assert_int_equal(calls().invalidate_length, 0);
    rc = run(env, false, &out, "invalidate vm1 4K");
    expect(rc, 1, out, "shoalctl: ");
    rc = run(env, false, &out, "invalidate vm1 x 1");
    expect(rc, 1, out, "bad OFFSET");
    rc = run(env, false, &out, "invalidate vm1 2G 1");
    expect(rc, 2, out, "outside the volume");

    rc = run(env, false, &out, "prefetch vm1 1M 64M --wait");
    expect(rc, 0, out, "prefetch of vm1 done: 64.0 MiB");
    c = calls();
    assert_int_equal(c.prefetch_offset, 1 << 20);
    assert_int_equal(c.prefetch_length, 64 << 20);
    rc = run(env, false, &out, "prefetch vm1");
    expect(rc, 0, out, "started");
    rc = run(env, false, &out, "prefetch vm1");
    expect(rc, 2, out, "already running");

    /* Prefetch on a volume in pass-through: refused in one line, exit 2,
     * and nothing started (it would cache nothing and say "done"). */
    unsigned asked = calls().prefetch;
    rc = run(env, false, &out, "prefetch gold.base-2 --wait");
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
    expect(rc, 2, out,
           "shoalctl: volume gold.base-2: acceleration is off (pass-through): enable it before "
           "prefetching (HTTP 409)\n");
    rc = run(env, false, &out, "prefetch gold.base-2 --json");
    expect(rc, 2, out, "acceleration is off");
    assert_int_equal(calls().prefetch, asked);
    rc = run(env, false, &out, "enable gold.base-2");
    expect(rc, 0, out, NULL);
    rc = run(env, false, &out, "prefetch gold.base-2 --wait");
    expect(rc, 0, out, "prefetch of gold.base-2 done: 256.0 MiB");

    rc = run(env, false, &out, "cache resize 1.5G");
    expect(rc, 0, out, "cache capacity: 1.5 GiB");
    assert_int_equal(calls().resize_bytes, 3ull << 29);
    rc = run(env, false, &out, "cache resize lots");
    expect(rc, 1, out, "bad SIZE");
    rc = run(env, false, &out, "cache resize 1");
    expect(rc, 2, out, "at least one 4096-byte block");
}

static void test_top_version(void **state)
{
    (void)state;
    char *out;
    int rc = run(NULL, false, &out, "top --once");
    assert_non_null(strstr(out, "READ IOPS"));
    expect(rc, 0, out, "vm1");
    /* Not a terminal: one frame even without --once. */
    rc = run(NULL, false, &out, "top");
    expect(rc, 0, out, "vm1");

    rc = run(NULL, false, &out, "version");
    expect(rc, 0, out, "shoalctl " SHOAL_VERSION);
    /* --version / -V: this binary only, one line, no server needed. */
    rc = run(NULL, true, &out, "--version");
    assert_string_equal(out, "shoalctl " SHOAL_VERSION "\n");
    expect(rc, 0, out, NULL);
    rc = run(NULL, true, &out, "--url http://127.0.0.1:1 -V");
    assert_string_equal(out, "shoalctl " SHOAL_VERSION "\n");
    expect(rc, 0, out, NULL);
    rc = run(NULL, false, &out, "--help");
    expect(rc, 0, out, "--version");

    /* $SHOAL_URL replaces the default. */
    char env[64];
    snprintf(env, sizeof env, "SHOAL_URL=http://127.0.0.1:%u/", mgmt_port(srv));
    rc = run(env, true, &out, "volumes");
    expect(rc, 0, out, "vm1");
}

static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_exit_codes(void **state)
{
    (void)state;
    char *out;
    int rc = run(NULL, true, &out, "--url http://127.0.0.1:%u stats", closed_port());
    expect(rc, 3, out, "shoalctl: cannot connect to");
    rc = run(NULL, true, &out, "--url http://127.0.0.1:%u/ version", closed_port());
    expect(rc, 3, out, "shoalctl " SHOAL_VERSION);

    rc = run(NULL, false, &out, "%s", "");
    expect(rc, 1, out, "usage:");
    rc = run(NULL, false, &out, "bogus");
    expect(rc, 1, out, "shoalctl: unknown command");
    rc = run(NULL, false, &out, "volume");
    expect(rc, 1, out, "shoalctl: ");
    rc = run(NULL, false, &out, "volume frob x");
    expect(rc, 1, out, "shoalctl: ");
    rc = run(NULL, false, &out, "stats --force");
    expect(rc, 1, out, "--force");
    rc = run(NULL, false, &out, "stats --nonsense");
    expect(rc, 1, out, "unknown option");
    rc = run(NULL, false, &out, "enable");
    expect(rc, 1, out, "usage: shoalctl enable NAME");
    rc = run(NULL, false, &out, "enable a b");
    expect(rc, 1, out, "usage: shoalctl enable NAME");
    rc = run(NULL, false, &out, "--token-file /nonexistent/token enable vm1");
    expect(rc, 1, out, "cannot read token file");
    rc = run(NULL, false, &out, "--url");
    expect(rc, 1, out, "--url needs a value");

    rc = run(NULL, false, &out, "help");
    assert_non_null(strstr(out, "Exit status"));
    expect(rc, 0, out, "3  cannot connect");
    rc = run(NULL, false, &out, "--help");
    expect(rc, 0, out, "Commands:");
}

/* Parse a command's whole output as JSON (it must be nothing else). */
static json_t *run_json(const char *fmt_args)
{
    char *out;
    int rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "%s", fmt_args);
    if (rc != 0) {
        fprintf(stderr, "%s: exit %d\n%s\n", fmt_args, rc, out);
        fail();
    }
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    if (!j) {
        fprintf(stderr, "%s: not JSON (%s):\n%s\n", fmt_args, err.text, out);
        fail();
    }
    free(out);
    return j;
}

/* --json on every command that changes something: scripts get the
 * server's answer, and nothing else on stdout. */
static void test_json_everywhere(void **state)
{
    (void)state;
    json_t *j = run_json("volume add vm9 /srv/vm9.img --readonly --json");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "vm9");
    assert_true(json_is_true(json_object_get(j, "readonly")));
    json_decref(j);
    j = run_json("disable vm9 --json");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "disabled");
    json_decref(j);
    j = run_json("enable vm9 --json");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "enabled");
    json_decref(j);
    j = run_json("invalidate vm1 4K 8K --json");
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 4096);
    assert_int_equal(json_integer_value(json_object_get(j, "length")), 8192);
    json_decref(j);
    j = run_json("prefetch vm1 0 1M --wait --json");
    assert_true(json_is_false(json_object_get(j, "running")));
    assert_int_equal(json_integer_value(json_object_get(j, "done_bytes")), 1 << 20);
    json_decref(j);
    j = run_json("cache resize 2G --json");
    assert_int_equal(json_integer_value(json_object_get(j, "capacity_bytes")), 2ll << 30);
    json_decref(j);
    j = run_json("volume remove vm9 --json");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "vm9");
    assert_true(json_is_true(json_object_get(j, "removed")));
    assert_true(json_is_false(json_object_get(j, "forced")));
    json_decref(j);
    j = run_json("version --json");
    assert_string_equal(json_string_value(json_object_get(j, "shoalctl")), SHOAL_VERSION);
    assert_true(json_is_integer(json_object_get(j, "uptime_seconds")));
    json_decref(j);
    /* Errors stay on stderr with the usual exit codes. */
    char *out;
    int rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "enable nope --json");
    expect(rc, 2, out, "shoalctl: ");
    rc = run(NULL, false, &out, "top --json");
    expect(rc, 1, out, "--json does not apply");
}

/* A daemon without [cluster] etcd (fake_cluster.c): status says so, changes
 * are refused by the server (exit 2) in one line; bad usage is exit 1. */
static void test_cluster_standalone(void **state)
{
    (void)state;
    char *out;
    int rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "cluster status");
    expect(rc, 0, out, "not in a cluster");
    json_t *j = run_json("cluster status --json");
    assert_true(json_is_false(json_object_get(j, "enabled")));
    json_decref(j);
    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "cluster add 127.0.0.1:11211");
    expect(rc, 2, out, "shoalctl: this node is not in a cluster (no [cluster] etcd)");
    rc = run("SHOAL_TOKEN=" TOKEN, false, &out, "cluster remove 127.0.0.1:11211");
    expect(rc, 2, out, "not in a cluster");
    rc = run(NULL, false, &out, "cluster add");
    expect(rc, 1, out, "usage: shoalctl cluster add HOST:PORT");
    rc = run(NULL, false, &out, "cluster");
    expect(rc, 1, out, "cluster: unknown or missing subcommand");
}

#define T(fn) cmocka_unit_test_setup(fn, setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_stats),
        T(test_volumes),
        T(test_volume_add_remove),
        T(test_control),
        T(test_top_version),
        T(test_exit_codes),
        T(test_json_everywhere),
        T(test_volume_add_relative),
        T(test_cluster_standalone),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
