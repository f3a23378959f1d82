/* Unit tests for the test-only fault back end: spec parsing, layering over a
 * file, injected errors (always, by probability, switched by a file),
 * injected delays, and the ackfirst lie (acknowledge now, apply later or
 * never) used as the crash tests' negative control. */
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
#include "common/util.h"

struct fixture {
    char dir[64];
    char path[128];    /* the inner file */
    char switch_[128]; /* file= switch */
    char spec[512];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/shoal-be-fault-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/disk.img", fx->dir);
    snprintf(fx->switch_, sizeof(fx->switch_), "%s/faults-on", fx->dir);
    int fd = open(fx->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 1 << 20) < 0)
        return -1;
    close(fd);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    unlink(fx->path);
    unlink(fx->switch_);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static struct backend *open_fault(struct fixture *fx, const char *opts)
{
    snprintf(fx->spec, sizeof(fx->spec), "fault:%s:%s", opts, fx->path);
    struct backend_params p = {.spec = fx->spec};
    struct backend *be = NULL;
    int r = backend_open(&p, &be);
    assert_int_equal(r, 0);
    return be;
}

static void test_layering(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "seed=3");
    assert_string_equal(be->ops->name, "fault");
    assert_non_null(be->next);
    assert_string_equal(be->next->ops->name, "file");
    assert_string_equal(be->next->spec, fx->path);
    assert_int_equal(be->size, 1 << 20);
    assert_int_equal(be->caps, be->next->caps);
    assert_int_equal(be->min_block, be->next->min_block);

    /* With no faults configured everything passes through. */
    uint8_t w[5000], r[5000];
    for (size_t i = 0; i < sizeof(w); i++)
        w[i] = (uint8_t)(i * 7);
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 999, BE_FUA), 0);
    assert_int_equal(be->ops->pread(be, r, sizeof(r), 999), 0);
    assert_memory_equal(w, r, sizeof(w));
    assert_int_equal(backend_zero(be, 1000, 1000, 0), 0);
    assert_int_equal(be->next->ops->pread(be->next, r, 1000, 1000), 0);
    assert_true(buf_is_zero(r, 1000));
    assert_int_equal(backend_trim(be, 4096, 65536, 0), 0);
    assert_int_equal(be->ops->flush(be), 0);

    char desc[512];
    be->ops->describe(be, desc, sizeof(desc));
    assert_non_null(strstr(desc, "fault(seed=3)"));
    assert_non_null(strstr(desc, fx->path));
    backend_close(be);
}

static void test_empty_options(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "");
    uint8_t b[16];
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    backend_close(be);
}

static void test_bad_specs(void **state)
{
    struct fixture *fx = *state;
    char spec[512];
    const char *bad[] = {"bogus=1",         "rerror=2",        "rerror=-0.1", "rerror=x",
                         "rdelay=5parsecs", "error=EWHATEVER", "seed=abc",    "rdelay",
                         "file=",           "ackfirst=soon",   "ackfirst=",   "noflush=yes"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        snprintf(spec, sizeof(spec), "fault:%s:%s", bad[i], fx->path);
        struct backend_params p = {.spec = spec};
        struct backend *be = NULL;
        assert_int_equal(backend_open(&p, &be), -EINVAL);
        assert_null(be);
    }
    /* No inner spec at all. */
    struct backend_params p = {.spec = "fault:rerror=1"};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), -EINVAL);
    p.spec = "fault:rerror=1:";
    assert_int_equal(backend_open(&p, &be), -EINVAL);
    /* Inner spec that fails to open: its error comes through. */
    snprintf(spec, sizeof(spec), "fault:rerror=1:%s/missing", fx->dir);
    p.spec = spec;
    assert_int_equal(backend_open(&p, &be), -ENOENT);
}

static void test_read_errors(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "rerror=1");
    uint8_t b[512] = {0};
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), -EIO);
    /* Writes are unaffected by rerror. */
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), 0);
    assert_int_equal(be->ops->flush(be), 0);
    backend_close(be);
}

static void test_write_errors(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "werror=1,error=ENOSPC");
    uint8_t b[512] = {0};
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), -ENOSPC);
    assert_int_equal(backend_pwrite(be, b, sizeof(b), 0, BE_FUA), -ENOSPC);
    assert_int_equal(be->ops->flush(be), -ENOSPC);
    assert_int_equal(backend_zero(be, 512, 0, 0), -ENOSPC);
    assert_int_equal(be->ops->trim(be, 512, 0, 0), -ENOSPC);
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    backend_close(be);

    be = open_fault(fx, "werror=1,error=eperm");
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), -EPERM);
    backend_close(be);
}

static void test_switch_file(void **state)
{
    struct fixture *fx = *state;
    char opts[256];
    snprintf(opts, sizeof(opts), "rerror=1,werror=1,file=%s", fx->switch_);
    struct backend *be = open_fault(fx, opts);
    uint8_t b[512] = {0};
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), 0);

    int fd = open(fx->switch_, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), -EIO);
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), -EIO);

    assert_int_equal(unlink(fx->switch_), 0);
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), 0);
    backend_close(be);
}

static void test_probability(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "rerror=0.5,seed=42");
    uint8_t b[16];
    int failed = 0;
    for (int i = 0; i < 1000; i++) {
        int r = be->ops->pread(be, b, sizeof(b), 0);
        assert_true(r == 0 || r == -EIO);
        failed += r < 0;
    }
    /* Seeded, so this is deterministic; the bounds are just sanity. */
    assert_in_range(failed, 350, 650);
    backend_close(be);

    be = open_fault(fx, "rerror=0,werror=0");
    for (int i = 0; i < 100; i++)
        assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    backend_close(be);
}

static void test_delay(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "rdelay=50ms,wdelay=20000us");
    uint8_t b[512] = {0};
    uint64_t t0 = now_ns();
    assert_int_equal(be->ops->pread(be, b, sizeof(b), 0), 0);
    uint64_t t1 = now_ns();
    assert_true(t1 - t0 >= 50000000ull);
    assert_int_equal(be->ops->pwrite(be, b, sizeof(b), 0, 0), 0);
    uint64_t t2 = now_ns();
    assert_true(t2 - t1 >= 20000000ull);
    assert_int_equal(be->ops->flush(be), 0);
    assert_true(now_ns() - t2 >= 20000000ull);
    backend_close(be);
}

/* The inner file's bytes, read past the fault layer. */
static void read_inner(struct fixture *fx, void *buf, size_t len, off_t off)
{
    int fd = open(fx->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

static void test_ackfirst_later(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "ackfirst=300ms");
    uint8_t w[8192], r[8192];
    memset(w, 0xa5, sizeof(w));
    uint64_t t0 = now_ns();
    /* Acknowledged at once, FUA and flush included, but not done yet. */
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 4096, BE_FUA), 0);
    assert_int_equal(backend_zero(be, 4096, 65536, 0), 0);
    assert_int_equal(be->ops->flush(be), 0);
    assert_true(now_ns() - t0 < 200000000ull);
    read_inner(fx, r, sizeof(r), 4096);
    assert_true(buf_is_zero(r, sizeof(r)));
    /* ... then applied, in order, after the delay. */
    for (int i = 0; i < 300; i++) {
        read_inner(fx, r, sizeof(r), 4096);
        if (r[0] == 0xa5)
            break;
        usleep(10000);
    }
    assert_true(now_ns() - t0 >= 300000000ull);
    assert_memory_equal(r, w, sizeof(w));
    backend_close(be);

    /* A clean close applies what is still queued. */
    be = open_fault(fx, "ackfirst=100s");
    memset(w, 0x3c, sizeof(w));
    assert_int_equal(be->ops->pwrite(be, w, sizeof(w), 0, 0), 0);
    read_inner(fx, r, sizeof(r), 0);
    assert_true(buf_is_zero(r, 4096)); /* [0, 4096) was never written */
    backend_close(be);
    read_inner(fx, r, sizeof(r), 0);
    assert_memory_equal(r, w, sizeof(w));
}

static void test_ackfirst_never(void **state)
{
    struct fixture *fx = *state;
    struct backend *be = open_fault(fx, "ackfirst=never");
    uint8_t w[4096], r[4096];
    memset(w, 0x77, sizeof(w));
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 0, BE_FUA), 0);
    assert_int_equal(be->ops->flush(be), 0);
    backend_close(be);
    read_inner(fx, r, sizeof(r), 0);
    assert_true(buf_is_zero(r, sizeof(r)));
}

/* noflush: writes are done at once, but FLUSH never reaches the inner back
 * end and FUA is dropped. Seen through an inner fault layer that fails
 * every flush while the switch file exists: the outer one must not pass
 * flushes on. */
static void test_noflush(void **state)
{
    struct fixture *fx = *state;
    snprintf(fx->spec, sizeof(fx->spec), "fault:noflush=1:fault:werror=1,file=%s:%s", fx->switch_,
             fx->path);
    struct backend_params p = {.spec = fx->spec};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), 0);
    uint8_t w[4096], r[4096];
    memset(w, 0x42, sizeof(w));
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 0, BE_FUA), 0);
    read_inner(fx, r, sizeof(r), 0);
    assert_memory_equal(r, w, sizeof(w)); /* done at once */
    int fd = open(fx->switch_, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(be->ops->flush(be), 0);                /* never passed on */
    assert_int_equal(be->next->ops->flush(be->next), -EIO); /* it would fail */
    unlink(fx->switch_);
    backend_close(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_specs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ackfirst_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ackfirst_never, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noflush, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
