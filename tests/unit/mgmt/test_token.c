/* The API token file (src/mgmt/token.c): default paths, the checks that
 * keep the token secret, creation with safe modes, and two daemons that
 * start at once agreeing on one token. Runs in a private temp dir; the
 * owner checks need root (they are skipped otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mgmt/token.h"

static char dir[] = "/tmp/shoal-token-test.XXXXXX";

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Write `text` to dir/name with `mode` (exactly: no umask). */
static void put(const char *name, const char *text, mode_t mode)
{
    char p[256];
    path_of(p, sizeof p, name);
    unlink(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int read_strict(const char *name, char **tok, char *err, size_t errlen)
{
    char p[256];
    path_of(p, sizeof p, name);
    err[0] = '\0';
    return token_read(p, TOKEN_STRICT, tok, err, errlen);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_generate(void **state)
{
    (void)state;
    char a[2 * TOKEN_GEN_BYTES + 1], b[sizeof a];
    assert_int_equal(token_generate(a, sizeof a), 0);
    assert_int_equal(token_generate(b, sizeof b), 0);
    assert_int_equal(strlen(a), 64); /* 256 bits, hex */
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_string_not_equal(a, b);
    assert_int_equal(token_generate(a, 64), -ENOBUFS);
}

static void test_read_rules(void **state)
{
    (void)state;
    char err[512], *tok;

    put("ok", "  0123456789abcdef\n\n", 0600);
    assert_int_equal(read_strict("ok", &tok, err, sizeof err), 0);
    assert_string_equal(tok, "0123456789abcdef");
    free(tok);
    /* Group-readable is allowed (an admin group may read it). */
    put("group-read", "0123456789abcdef\n", 0640);
    assert_int_equal(read_strict("group-read", &tok, err, sizeof err), 0);
    free(tok);

    static const struct {
        mode_t mode;
        const char *why;
    } modes[] = {
        {0644, "world-readable"},           {0604, "world-readable"},
        {0620, "group- or world-writable"}, {0602, "group- or world-writable"},
        {0666, "group- or world-writable"},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        put("loose", "0123456789abcdef\n", modes[i].mode);
        tok = (char *)1;
        assert_int_equal(read_strict("loose", &tok, err, sizeof err), -EPERM);
        assert_null(tok);
        if (!strstr(err, modes[i].why) || !strstr(err, "loose") || strchr(err, '\n'))
            fail_msg("mode %04o: %s", (unsigned)modes[i].mode, err);
    }

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"", "empty"},
        {"\n  \n", "empty"},
        {"short\n", "too short"},
        {"two words here\n", "visible ASCII"},
        {"line-one-long\nline-two-long\n", "visible ASCII"},
        {"caf\xc3\xa9-token-x\n", "visible ASCII"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put("bad", bad[i].text, 0600);
        assert_int_equal(read_strict("bad", &tok, err, sizeof err), -EINVAL);
        if (!strstr(err, bad[i].why))
            fail_msg("\"%s\": %s", bad[i].text, err);
    }
    char big[TOKEN_MAX_LEN + 10];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put("long", big, 0600);
    assert_int_equal(read_strict("long", &tok, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "too long"));
    /* A NUL byte ends nothing silently. */
    char p[256];
    path_of(p, sizeof p, "nul");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_int_equal(write(fd, "0123456789\0abcdef", 17), 17);
    close(fd);
    assert_int_equal(read_strict("nul", &tok, err, sizeof err), -EINVAL);

    /* Not a regular file: a FIFO would block a plain open. */
    path_of(p, sizeof p, "fifo");
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(read_strict("fifo", &tok, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(read_strict("missing", &tok, err, sizeof err), -ENOENT);
    assert_non_null(strstr(err, "missing"));

    /* shoalctl's lenient read takes what the user points it at. */
    put("lenient", "  tok\n", 0644);
    path_of(p, sizeof p, "lenient");
    assert_int_equal(token_read(p, 0, &tok, err, sizeof err), 0);
    assert_string_equal(tok, "tok");
    free(tok);
}

/* Whoever owns the file could write their own token into it. */
static void test_owner(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    struct passwd *pw = getpwnam("nobody");
    if (!pw)
        skip();
    char p[256], err[512], *tok;
    put("theirs", "0123456789abcdef\n", 0600);
    path_of(p, sizeof p, "theirs");
    assert_int_equal(chown(p, pw->pw_uid, pw->pw_gid), 0);
    assert_int_equal(read_strict("theirs", &tok, err, sizeof err), -EPERM);
    assert_non_null(strstr(err, "owned by uid"));
    /* And a symlink to such a file is judged by the file. */
    char link_path[256];
    path_of(link_path, sizeof link_path, "link");
    assert_int_equal(symlink(p, link_path), 0);
    assert_int_equal(read_strict("link", &tok, err, sizeof err), -EPERM);
}

static void test_create(void **state)
{
    (void)state;
    char p[256], err[512], *tok, *again;
    bool created;
    path_of(p, sizeof p, "new/sub/api-token");
    /* A umask that would make files world-readable changes nothing. */
    mode_t old = umask(0);
    assert_int_equal(token_load_or_create(p, &tok, &created, err, sizeof err), 0);
    umask(old);
    assert_true(created);
    assert_int_equal(strlen(tok), 64);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    char d[256];
    path_of(d, sizeof d, "new/sub");
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    path_of(d, sizeof d, "new");
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    assert_int_equal(token_load_or_create(p, &again, &created, err, sizeof err), 0);
    assert_false(created);
    assert_string_equal(tok, again);
    free(tok);
    free(again);

    /* An existing file that fails the checks is refused, not replaced. */
    put("loose-existing", "0123456789abcdef\n", 0644);
    path_of(p, sizeof p, "loose-existing");
    assert_int_equal(token_load_or_create(p, &tok, &created, err, sizeof err), -EPERM);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    /* A directory in the way is an error with a message. */
    put("file-not-dir", "x", 0600);
    path_of(p, sizeof p, "file-not-dir/api-token");
    assert_true(token_load_or_create(p, &tok, &created, err, sizeof err) < 0);
    assert_true(err[0] != '\0');
}

/* Eight "daemons" start at once on one missing file: exactly one creates
 * it, all end up with its token, and no temp file is left behind. */
static void test_race(void **state)
{
    (void)state;
    enum { N = 8 };
    char p[256];
    path_of(p, sizeof p, "race/api-token");
    int fds[N][2];
    for (int i = 0; i < N; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char err[512], *tok = NULL;
            bool created = false;
            int r = token_load_or_create(p, &tok, &created, err, sizeof err);
            char out[600];
            int n = snprintf(out, sizeof out, "%d %d %s", r, created, r == 0 ? tok : err);
            if (write(fds[i][1], out, (size_t)n) != n)
                _exit(2);
            _exit(0);
        }
        close(fds[i][1]);
    }
    char first[600] = "";
    int creators = 0;
    for (int i = 0; i < N; i++) {
        char out[600] = "";
        ssize_t n = read(fds[i][0], out, sizeof out - 1);
        close(fds[i][0]);
        assert_true(n > 0);
        int r, created;
        char tok[600];
        assert_int_equal(sscanf(out, "%d %d %599s", &r, &created, tok), 3);
        if (r != 0)
            fail_msg("process %d: %s", i, out);
        creators += created;
        if (!first[0])
            snprintf(first, sizeof first, "%s", tok);
        assert_string_equal(tok, first);
    }
    for (int i = 0; i < N; i++) {
        int status;
        assert_true(wait(&status) > 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(creators, 1);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s/race' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
}

/* The defaults, computed in a child that takes another uid when root. */
static void test_default_path(void **state)
{
    (void)state;
    char buf[4096];
    if (geteuid() == 0) {
        assert_int_equal(token_default_path(buf, sizeof buf), 0);
        assert_string_equal(buf, TOKEN_ROOT_PATH);
        assert_string_equal(buf, "/run/shoal/api-token");
    }
    assert_int_equal(token_default_path(buf, 4), -ENAMETOOLONG);
    if (geteuid() != 0)
        return;
    struct passwd *pw = getpwnam("nobody");
    if (!pw)
        skip();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
            _exit(10);
        char b[4096];
        setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
        if (token_default_path(b, sizeof b) != 0 || strcmp(b, "/run/user/4242/shoal/api-token"))
            _exit(11);
        /* Not absolute: ignored, like XDG says. */
        setenv("XDG_RUNTIME_DIR", "relative", 1);
        setenv("HOME", "/home/somebody", 1);
        if (token_default_path(b, sizeof b) != 0 ||
            strcmp(b, "/home/somebody/.config/shoal/api-token"))
            _exit(12);
        unsetenv("XDG_RUNTIME_DIR");
        unsetenv("HOME");
        char want[4200];
        snprintf(want, sizeof want, "%s/.config/shoal/api-token", pw->pw_dir);
        if (token_default_path(b, sizeof b) != 0 || strcmp(b, want))
            _exit(13);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate), cmocka_unit_test(test_read_rules),
        cmocka_unit_test(test_owner),    cmocka_unit_test(test_create),
        cmocka_unit_test(test_race),     cmocka_unit_test(test_default_path),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
