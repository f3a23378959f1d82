/* Unit tests for the file back end's image locks (backend/file/lock.c):
 * within one process, one read-write export of a file or any number of
 * read-only ones, refused with -EBUSY and a line naming both exports; and
 * QEMU's lock bytes, checked from a separate open file description as
 * QEMU would (tests/integration/image_lock.sh does it with QEMU itself). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "tmpdir_fixture.h"

static int setup(void **state)
{
    int r = fixture_setup(state, "lock");
    if (r == 0) {
        struct fixture *fx = *state;
        int fd = open(fx->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
            return -1;
        close(fd);
    }
    return r;
}

static int open_be(const char *spec, bool readonly, struct backend **be)
{
    struct backend_params p = {.spec = spec, .readonly = readonly, .format = BACKEND_FORMAT_RAW};
    *be = NULL;
    return backend_open(&p, be);
}

/* Whether another open file description holds a lock on byte. */
static bool byte_taken(const char *path, int byte)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    assert_int_equal(fcntl(fd, F_OFD_GETLK, &fl), 0);
    close(fd);
    return fl.l_type != F_UNLCK;
}

static void test_one_writer(void **state)
{
    struct fixture *fx = *state;
    char alias[160];
    snprintf(alias, sizeof alias, "%s/alias.img", fx->dir);
    assert_int_equal(link(fx->path, alias), 0); /* same inode, another name */

    struct backend *rw, *other;
    assert_int_equal(open_be(fx->path, false, &rw), 0);
    int r = open_be(alias, false, &other);
    assert_int_equal(r, -EBUSY);
    assert_null(other);
    const char *why = backend_open_error();
    if (!strstr(why, alias) || !strstr(why, fx->path) || !strstr(why, "read-write"))
        fail_msg("unclear refusal: %s", why);
    /* A reader beside a writer would read what the writer's cache hides. */
    assert_int_equal(open_be(alias, true, &other), -EBUSY);
    backend_close(rw);

    /* Gone with the export: the name can be served again. */
    assert_int_equal(open_be(alias, false, &rw), 0);
    backend_close(rw);
    unlink(alias);
}

static void test_readers_share(void **state)
{
    struct fixture *fx = *state;
    struct backend *a, *b, *w;
    assert_int_equal(open_be(fx->path, true, &a), 0);
    assert_int_equal(open_be(fx->path, true, &b), 0);
    assert_int_equal(open_be(fx->path, false, &w), -EBUSY);
    if (!strstr(backend_open_error(), "read-only"))
        fail_msg("unclear refusal: %s", backend_open_error());
    backend_close(a);
    assert_int_equal(open_be(fx->path, false, &w), -EBUSY); /* b still reads */
    backend_close(b);
    assert_int_equal(open_be(fx->path, false, &w), 0);
    backend_close(w);
}

/* The bytes QEMU reads: 100 + i "in use", 200 + i "not shared", i = 0
 * consistent read, 1 write, 3 resize. */
static void test_qemu_bytes(void **state)
{
    struct fixture *fx = *state;
    struct backend *be;
    assert_int_equal(open_be(fx->path, false, &be), 0);
    assert_true(byte_taken(fx->path, 100));
    assert_true(byte_taken(fx->path, 101));
    assert_false(byte_taken(fx->path, 102));
    assert_false(byte_taken(fx->path, 103));
    assert_false(byte_taken(fx->path, 200));
    assert_true(byte_taken(fx->path, 201));
    assert_false(byte_taken(fx->path, 202));
    assert_true(byte_taken(fx->path, 203));
    backend_close(be);
    for (int b = 100; b < 205; b++)
        assert_false(byte_taken(fx->path, b));

    assert_int_equal(open_be(fx->path, true, &be), 0);
    assert_true(byte_taken(fx->path, 100));
    assert_false(byte_taken(fx->path, 101));
    assert_true(byte_taken(fx->path, 201));
    assert_true(byte_taken(fx->path, 203));
    backend_close(be);
}

/* A QEMU writer holds 100 and 101: both kinds of export are refused, with
 * the file named, and the refusal leaves no byte of ours behind. */
static void test_foreign_writer(void **state)
{
    struct fixture *fx = *state;
    int q = open(fx->path, O_RDWR);
    assert_true(q >= 0);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 2};
    assert_int_equal(fcntl(q, F_OFD_SETLK, &fl), 0);

    struct backend *be;
    assert_int_equal(open_be(fx->path, false, &be), -EBUSY);
    if (!strstr(backend_open_error(), fx->path) || !strstr(backend_open_error(), "\"write\""))
        fail_msg("unclear refusal: %s", backend_open_error());
    assert_int_equal(open_be(fx->path, true, &be), -EBUSY);
    assert_false(byte_taken(fx->path, 201));
    close(q);
    assert_int_equal(open_be(fx->path, false, &be), 0);
    backend_close(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qemu_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_writer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
