/* Unit test of a build without the fault back end (meson -Dfault_backend=
 * false, the default): a "fault:" spec is refused with -ENOTSUP and one line
 * that says how to get the layer, and opens nothing; a file whose name
 * starts with "fault:" still opens when spelled with a directory. Registered
 * only in such builds (test_fault.c covers the layer itself). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"

static void test_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/shoal-be-nofault-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], spec[160];
    snprintf(path, sizeof path, "%s/disk.img", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    close(fd);

    /* A well-formed spec over a file that exists: still refused. */
    snprintf(spec, sizeof spec, "fault:rerror=1:%s", path);
    const char *specs[] = {spec, "fault:", "fault:x:/nonexistent"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct backend_params p = {.spec = specs[i]};
        struct backend *be = (struct backend *)1;
        assert_int_equal(backend_open(&p, &be), -ENOTSUP);
        assert_null(be);
        const char *why = backend_open_error();
        if (!strstr(why, "-Dfault_backend=true") || strchr(why, '\n'))
            fail_msg("%s: message \"%s\"", specs[i], why);
    }

    /* A file named "fault:..." is a file when spelled with its directory. */
    snprintf(spec, sizeof spec, "%s/fault:x", dir);
    assert_int_equal(rename(path, spec), 0);
    struct backend_params p = {.spec = spec};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), 0);
    assert_string_equal(be->ops->name, "file");
    assert_int_equal(be->size, 1 << 20);
    backend_close(be);
    assert_int_equal(unlink(spec), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
