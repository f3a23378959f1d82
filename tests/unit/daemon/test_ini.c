/* The config file reader (src/daemon/ini.c): what it passes on, with which
 * line, and the line and reason of each syntax error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/ini.h"

/* Every callback as "LINE [SECTION] KEY=VALUE|" (or "LINE [SECTION]|"). */
struct log {
    char text[2048];
    int stop_at; /* stop when this many entries were seen (0: never) */
    int n;
};

static int record(void *opaque, unsigned line, const char *section, const char *key,
                  const char *value)
{
    struct log *l = opaque;
    size_t len = strlen(l->text);
    if (key)
        snprintf(l->text + len, sizeof l->text - len, "%u [%s] %s=%s|", line, section, key, value);
    else
        snprintf(l->text + len, sizeof l->text - len, "%u [%s]|", line, section);
    return ++l->n == l->stop_at;
}

static int parse(const char *text, struct log *l, unsigned *line, char *why, size_t whylen)
{
    memset(l, 0, sizeof *l);
    return ini_parse_buffer(text, strlen(text), record, l, line, why, whylen);
}

static void test_ini_entries(void **state)
{
    (void)state;
    struct log l;
    unsigned line;
    char why[128];
    const char *text = "\xef\xbb\xbf"
                       "top = 1\r\n"
                       "; comment\n"
                       "  # indented comment\n"
                       "\n"
                       "[ volume   a ]  ; the first\n"
                       "backing=/x/y.img\n"
                       "  readonly =  yes  # no\n"
                       "path = \"/with ; and # kept\" ; cut\n"
                       "empty =\n"
                       "hash=a#b\n"
                       "[nbd]\n"
                       "listen = unix:/run/s.sock";
    assert_int_equal(parse(text, &l, &line, why, sizeof why), 0);
    assert_string_equal(l.text, "1 [] top=1|"
                                "5 [volume a]|"
                                "6 [volume a] backing=/x/y.img|"
                                "7 [volume a] readonly=yes|"
                                "8 [volume a] path=/with ; and # kept|"
                                "9 [volume a] empty=|"
                                "10 [volume a] hash=a#b|"
                                "11 [nbd]|"
                                "12 [nbd] listen=unix:/run/s.sock|");
}

static void test_ini_stop(void **state)
{
    (void)state;
    struct log l;
    unsigned line;
    char why[128];
    memset(&l, 0, sizeof l);
    l.stop_at = 2;
    const char *text = "[a]\nk = v\nj = w\n";
    assert_int_equal(ini_parse_buffer(text, strlen(text), record, &l, &line, why, sizeof why), 1);
    assert_string_equal(l.text, "1 [a]|2 [a] k=v|");
}

static void test_ini_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        unsigned line;
        const char *why;
    } cases[] = {
        {"[shoald]\ncache-size 1G\n", 2, "want 'key = value' or '[section]'"},
        {"[shoald\n", 1, "section header without ']'"},
        {"a = 1\n[x] y\n", 2, "text after a section header"},
        {"[ ]\n", 1, "empty section name"},
        {"\n\n = v\n", 3, "a value without a key"},
        {"k = \"open\n", 1, "a quoted value without its end quote"},
        {"k = \"a\" b\n", 1, "a quoted value without its end quote"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct log l;
        unsigned line = 0;
        char why[128] = "";
        assert_int_equal(parse(cases[i].text, &l, &line, why, sizeof why), -EINVAL);
        assert_int_equal(line, cases[i].line);
        assert_string_equal(why, cases[i].why);
    }
    /* A NUL byte is an error of its line, not the end of the file. */
    struct log l;
    unsigned line = 0;
    char why[128] = "";
    memset(&l, 0, sizeof l);
    const char nul[] = "a = 1\nb = 2\0tail\nc = 3\n";
    assert_int_equal(ini_parse_buffer(nul, sizeof nul - 1, record, &l, &line, why, sizeof why),
                     -EINVAL);
    assert_int_equal(line, 2);
    assert_string_equal(why, "a NUL byte (not a text file?)");
}

static void test_ini_file(void **state)
{
    (void)state;
    struct log l;
    unsigned line = 7;
    char why[128] = "";
    memset(&l, 0, sizeof l);
    assert_int_equal(ini_parse_file("/nonexistent/shoald.conf", record, &l, &line, why, sizeof why),
                     -ENOENT);
    assert_int_equal(line, 0);
    assert_string_equal(why, strerror(ENOENT));
    /* Devices and pipes are read to their end (shoald -c <(...)), up to a cap. */
    assert_int_equal(ini_parse_file("/dev/null", record, &l, &line, why, sizeof why), 0);
    assert_int_equal(ini_parse_file("/dev/zero", record, &l, &line, why, sizeof why), -EFBIG);
    assert_string_equal(why, "larger than 16 MiB");
    assert_int_equal(ini_parse_file("/tmp", record, &l, &line, why, sizeof why), -EISDIR);
    /* A pipe is read (its writer is there); a named FIFO without a writer
     * is refused at once: opening it used to wait for one, forever. */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    const char *ptext = "[shoald]\n";
    assert_int_equal(write(pfd[1], ptext, strlen(ptext)), (ssize_t)strlen(ptext));
    close(pfd[1]);
    char ppath[64];
    snprintf(ppath, sizeof ppath, "/proc/self/fd/%d", pfd[0]);
    assert_int_equal(ini_parse_file(ppath, record, &l, &line, why, sizeof why), 0);
    close(pfd[0]);
    char fifo[] = "/tmp/test_ini_fifo.XXXXXX";
    assert_non_null(mkdtemp(fifo));
    char fpath[64];
    snprintf(fpath, sizeof fpath, "%s/conf", fifo);
    assert_int_equal(mkfifo(fpath, 0600), 0);
    alarm(10); /* the old open blocked: fail rather than hang */
    assert_int_equal(ini_parse_file(fpath, record, &l, &line, why, sizeof why), -EINVAL);
    alarm(0);
    assert_string_equal(why, "a named FIFO, not a file");
    unlink(fpath);
    rmdir(fifo);
    memset(&l, 0, sizeof l);

    char path[] = "/tmp/test_ini.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[shoald]\nthreads = 4\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(ini_parse_file(path, record, &l, &line, why, sizeof why), 0);
    assert_string_equal(l.text, "1 [shoald]|2 [shoald] threads=4|");

    /* ini_read_file: the text whole, and whether the file is regular. */
    char *got = NULL;
    size_t len = 0;
    bool regular = false;
    assert_int_equal(ini_read_file(path, true, &got, &len, &regular, why, sizeof why), 0);
    assert_true(regular);
    assert_int_equal(len, strlen(text));
    assert_string_equal(got, text);
    free(got);
    unlink(path);
    assert_int_equal(ini_read_file("/dev/null", false, &got, &len, &regular, why, sizeof why), 0);
    assert_false(regular);
    assert_int_equal(len, 0);
    assert_string_equal(got, "");
    free(got);
    /* regular_only (a reload): refused before a byte is read, so a pipe's
     * text stays in it and a live writer cannot block the reload. */
    assert_int_equal(ini_read_file("/dev/null", true, &got, &len, &regular, why, sizeof why),
                     -EINVAL);
    assert_null(got);
    assert_string_equal(why, "a character device, not a regular file");
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], ptext, strlen(ptext)), (ssize_t)strlen(ptext));
    snprintf(ppath, sizeof ppath, "/proc/self/fd/%d", pfd[0]);
    alarm(10); /* the writer is open: a read would wait for it */
    assert_int_equal(ini_read_file(ppath, true, &got, &len, &regular, why, sizeof why), -EINVAL);
    alarm(0);
    assert_string_equal(why, "a pipe, not a regular file");
    char left[16] = "";
    assert_int_equal(read(pfd[0], left, sizeof left), (ssize_t)strlen(ptext));
    close(pfd[0]);
    close(pfd[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ini_entries),
        cmocka_unit_test(test_ini_stop),
        cmocka_unit_test(test_ini_errors),
        cmocka_unit_test(test_ini_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
