/* Unit tests for the file back end, the back-end registry and the generic
 * helpers (FUA, zero, trim and extents emulation) in backend.c. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "common/util.h"

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/shoal-be-file-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/disk.img", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    unlink(fx->path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void make_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

static struct backend *open_be(const char *spec, bool readonly, bool direct)
{
    struct backend_params p = {.spec = spec, .readonly = readonly, .direct = direct};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), 0);
    assert_non_null(be);
    return be;
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((seed + i) * 2654435761u >> 13);
}

static void test_open_size_caps(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, (1 << 20) + 123);
    struct backend *be = open_be(fx->path, false, false);
    assert_string_equal(be->ops->name, "file");
    assert_int_equal(be->size, (1 << 20) + 123);
    assert_int_equal(be->min_block, 1);
    assert_true(be->caps & BE_CAN_FLUSH);
    assert_true(be->caps & BE_CAN_FUA);
    assert_true(be->caps & BE_CAN_ZERO);
    assert_true(be->caps & BE_CAN_MULTI_CONN);
    assert_false(be->caps & BE_READONLY);
    assert_string_equal(be->spec, fx->path);
    char desc[256];
    be->ops->describe(be, desc, sizeof(desc));
    assert_non_null(strstr(desc, "file "));
    assert_non_null(strstr(desc, "raw"));
    assert_non_null(strstr(desc, "1.0 MiB"));
    backend_close(be);
}

static void test_open_missing(void **state)
{
    struct fixture *fx = *state;
    struct backend_params p = {.spec = fx->path};
    struct backend *be = (struct backend *)1;
    assert_int_equal(backend_open(&p, &be), -ENOENT);
    assert_null(be);
    p.spec = fx->dir; /* a directory is not a disk */
    assert_true(backend_open(&p, &be) < 0);
    p.spec = "";
    assert_int_equal(backend_open(&p, &be), -EINVAL);
}

static void test_registry_probe(void **state)
{
    (void)state;
    assert_true(backend_nbd_ops.probe("nbd://host/export"));
    assert_true(backend_nbd_ops.probe("nbds://host/export"));
    assert_true(backend_nbd_ops.probe("nbd+unix:///?socket=/x"));
    assert_true(backend_nbd_ops.probe("nbds+unix:///?socket=/x"));
    assert_true(backend_nbd_ops.probe("nbd+vsock:///"));
    assert_false(backend_nbd_ops.probe("/var/lib/disk.img"));
    assert_false(backend_nbd_ops.probe("nbdfile"));
    assert_true(backend_fault_ops.probe("fault:rerror=1:/x"));
    assert_false(backend_fault_ops.probe("/fault:"));
    assert_null(backend_file_ops.probe);
    backend_close(NULL); /* allowed, like free(NULL) */
}

static void test_rw_unaligned(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 4 << 20);
    struct backend *be = open_be(fx->path, false, false);
    static uint8_t wbuf[300000], rbuf[300000];
    fill_pattern(wbuf, sizeof(wbuf), 7);
    assert_int_equal(be->ops->pwrite(be, wbuf, 77777, 12345, 0), 0);
    assert_int_equal(be->ops->pread(be, rbuf, 77777, 12345), 0);
    assert_memory_equal(wbuf, rbuf, 77777);
    /* A read straddling written and never-written bytes. */
    assert_int_equal(be->ops->pread(be, rbuf, 100, 12345 + 77777 - 50), 0);
    assert_memory_equal(rbuf, wbuf + 77777 - 50, 50);
    assert_true(buf_is_zero(rbuf + 50, 50));
    /* Odd sizes at odd offsets, up to the end of the disk. */
    assert_int_equal(backend_pwrite(be, wbuf, 299999, (4 << 20) - 299999, 0), 0);
    assert_int_equal(be->ops->pread(be, rbuf, 299999, (4 << 20) - 299999), 0);
    assert_memory_equal(wbuf, rbuf, 299999);
    assert_int_equal(be->ops->flush(be), 0);
    backend_close(be);
}

static void test_fua(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 1 << 20);
    struct backend *be = open_be(fx->path, false, false);
    uint8_t wbuf[8192], rbuf[8192];
    fill_pattern(wbuf, sizeof(wbuf), 11);
    /* Native FUA (pwritev2 RWF_DSYNC). */
    assert_int_equal(backend_pwrite(be, wbuf, 5000, 333, BE_FUA), 0);
    assert_int_equal(be->ops->pread(be, rbuf, 5000, 333), 0);
    assert_memory_equal(wbuf, rbuf, 5000);
    /* Emulated FUA: backend_pwrite writes, then flushes. */
    be->caps &= ~BE_CAN_FUA;
    fill_pattern(wbuf, sizeof(wbuf), 12);
    assert_int_equal(backend_pwrite(be, wbuf, 8192, 65536, BE_FUA), 0);
    assert_int_equal(be->ops->pread(be, rbuf, 8192, 65536), 0);
    assert_memory_equal(wbuf, rbuf, 8192);
    backend_close(be);
}

/* Write a pattern one byte wider than the range on each side, zero the
 * range, and check it reads back as zeros while its neighbours survive. */
static void write_and_zero(struct backend *be, uint32_t count, uint64_t off, uint32_t flags)
{
    static uint8_t buf[(3 << 20) + 2], want[(3 << 20) + 2];
    assert_true(off >= 1 && count + 2 <= sizeof(buf));
    fill_pattern(want, count + 2, off);
    assert_int_equal(backend_pwrite(be, want, count + 2, off - 1, 0), 0);
    assert_int_equal(backend_zero(be, count, off, flags), 0);
    assert_int_equal(be->ops->pread(be, buf, count + 2, off - 1), 0);
    assert_int_equal(buf[0], want[0]);
    assert_int_equal(buf[count + 1], want[count + 1]);
    assert_true(buf_is_zero(buf + 1, count));
}

static void test_zero(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 8 << 20);
    struct backend *be = open_be(fx->path, false, false);
    write_and_zero(be, 100000, 4097, 0);
    write_and_zero(be, 65536, 1 << 20, BE_NO_HOLE);
    write_and_zero(be, 4096, 2 << 20, BE_FUA);
    if (be->caps & BE_CAN_FAST_ZERO)
        write_and_zero(be, 8192, 3 << 20, BE_FAST_ZERO);

    /* NO_HOLE keeps the blocks allocated: the range is not a hole. */
    struct stat st1, st2;
    assert_int_equal(stat(fx->path, &st1), 0);
    assert_int_equal(backend_zero(be, 1 << 20, 5 << 20, BE_NO_HOLE), 0);
    assert_int_equal(stat(fx->path, &st2), 0);
    assert_true(st2.st_blocks >= st1.st_blocks);

    /* Without efficient zeroing, backend_zero writes zeros (more than its
     * 1 MiB buffer, so in several chunks) and refuses FAST_ZERO. */
    be->caps &= ~(BE_CAN_ZERO | BE_CAN_FAST_ZERO);
    write_and_zero(be, (2 << 20) + 5, 5 << 20, 0);
    assert_int_equal(backend_zero(be, 4096, 0, BE_FAST_ZERO), -ENOTSUP);
    write_and_zero(be, 4096, 1, BE_FUA);
    backend_close(be);
}

static void test_trim(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 4 << 20);
    struct backend *be = open_be(fx->path, false, false);
    static uint8_t buf[1 << 20];
    fill_pattern(buf, sizeof(buf), 3);
    assert_int_equal(backend_pwrite(be, buf, sizeof(buf), 1 << 20, 0), 0);
    assert_int_equal(backend_trim(be, 256 << 10, (1 << 20) + 4096, 0), 0);
    if (be->caps & BE_CAN_TRIM) {
        /* Punched on a file: reads as zeros. */
        assert_int_equal(be->ops->pread(be, buf, 256 << 10, (1 << 20) + 4096), 0);
        assert_true(buf_is_zero(buf, 256 << 10));
    }
    assert_int_equal(backend_trim(be, 4096, 0, BE_FUA), 0);
    /* Trim is advisory: without the capability it succeeds doing nothing. */
    be->caps &= ~BE_CAN_TRIM;
    assert_int_equal(backend_trim(be, 4096, 1 << 20, 0), 0);
    assert_int_equal(be->ops->pread(be, buf, 4096, 1 << 20), 0);
    uint8_t want[4096];
    fill_pattern(want, sizeof(want), 3);
    assert_memory_equal(buf, want, 4096);
    backend_close(be);
}

struct extent_log {
    unsigned n;
    uint64_t off[64], len[64];
    uint32_t flags[64];
    unsigned stop_after; /* 0 = never */
};

static int log_extent(void *opaque, uint64_t offset, uint64_t length, uint32_t flags)
{
    struct extent_log *l = opaque;
    assert_true(l->n < 64);
    l->off[l->n] = offset;
    l->len[l->n] = length;
    l->flags[l->n] = flags;
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static void check_contiguous(const struct extent_log *l, uint64_t off, uint64_t count)
{
    assert_true(l->n > 0);
    uint64_t pos = off;
    for (unsigned i = 0; i < l->n; i++) {
        assert_int_equal(l->off[i], pos);
        assert_true(l->len[i] > 0);
        pos += l->len[i];
    }
    assert_int_equal(pos, off + count);
}

/* Flags covering `at` in the log. */
static uint32_t flags_at(const struct extent_log *l, uint64_t at)
{
    for (unsigned i = 0; i < l->n; i++)
        if (at >= l->off[i] && at < l->off[i] + l->len[i])
            return l->flags[i];
    fail_msg("offset %llu not covered", (unsigned long long)at);
    return 0;
}

static void test_extents_sparse(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 8 << 20);
    struct backend *be = open_be(fx->path, false, false);
    if (!(be->caps & BE_CAN_EXTENTS)) {
        backend_close(be);
        skip();
    }
    static uint8_t buf[256 << 10];
    fill_pattern(buf, sizeof(buf), 5);
    assert_int_equal(backend_pwrite(be, buf, sizeof(buf), 2 << 20, 0), 0);

    struct extent_log l = {0};
    assert_int_equal(backend_extents(be, 8 << 20, 0, log_extent, &l), 0);
    check_contiguous(&l, 0, 8 << 20);
    assert_int_equal(flags_at(&l, 0), BE_EXTENT_HOLE | BE_EXTENT_ZERO);
    assert_int_equal(flags_at(&l, (2 << 20) + 1000), 0);
    assert_int_equal(flags_at(&l, (2 << 20) + (256 << 10) - 1), 0);
    assert_int_equal(flags_at(&l, 7 << 20), BE_EXTENT_HOLE | BE_EXTENT_ZERO);

    /* A window starting inside the data, ending inside the hole after it. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(backend_extents(be, 1 << 20, (2 << 20) + 4096, log_extent, &l), 0);
    check_contiguous(&l, (2 << 20) + 4096, 1 << 20);
    assert_int_equal(l.flags[0], 0);
    assert_int_equal(l.flags[l.n - 1], BE_EXTENT_HOLE | BE_EXTENT_ZERO);

    /* The callback can stop the walk. */
    memset(&l, 0, sizeof(l));
    l.stop_after = 1;
    assert_int_equal(backend_extents(be, 8 << 20, 0, log_extent, &l), 0);
    assert_int_equal(l.n, 1);

    /* Without the capability: one data extent for the whole range. */
    be->caps &= ~BE_CAN_EXTENTS;
    memset(&l, 0, sizeof(l));
    assert_int_equal(backend_extents(be, 12345, 678, log_extent, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.off[0], 678);
    assert_int_equal(l.len[0], 12345);
    assert_int_equal(l.flags[0], 0);
    backend_close(be);
}

static void test_readonly(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 1 << 20);
    struct backend *be = open_be(fx->path, true, false);
    assert_true(be->caps & BE_READONLY);
    assert_false(be->caps & (BE_CAN_TRIM | BE_CAN_ZERO | BE_CAN_FAST_ZERO));
    uint8_t buf[4096] = {1};
    assert_int_equal(be->ops->pwrite(be, buf, 4096, 0, 0), -EPERM);
    assert_int_equal(backend_pwrite(be, buf, 4096, 0, BE_FUA), -EPERM);
    assert_int_equal(backend_zero(be, 4096, 0, 0), -EPERM);
    assert_int_equal(be->ops->zero(be, 4096, 0, 0), -EPERM);
    assert_int_equal(be->ops->trim(be, 4096, 0, 0), -EPERM);
    assert_int_equal(be->ops->pread(be, buf, 4096, 0), 0);
    assert_true(buf_is_zero(buf, 4096));
    char desc[256];
    be->ops->describe(be, desc, sizeof(desc));
    assert_non_null(strstr(desc, "read-only"));
    backend_close(be);
}

static void test_short_file(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 1 << 20);
    struct backend *be = open_be(fx->path, false, false);
    static uint8_t buf[200 << 10];
    fill_pattern(buf, sizeof(buf), 9);
    assert_int_equal(be->ops->pwrite(be, buf, 100 << 10, 0, 0), 0);
    /* Someone truncates the file behind our back. */
    assert_int_equal(truncate(fx->path, 90 << 10), 0);
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(be->ops->pread(be, buf, 20 << 10, 80 << 10), 0);
    uint8_t want[10 << 10];
    uint8_t full[90 << 10];
    fill_pattern(full, sizeof(full), 9);
    memcpy(want, full + (80 << 10), sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_true(buf_is_zero(buf + (10 << 10), 10 << 10));
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(be->ops->pread(be, buf, 4096, 512 << 10), 0);
    assert_true(buf_is_zero(buf, 4096));
    backend_close(be);
}

static void test_direct(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 1 << 20);
    struct backend_params p = {.spec = fx->path, .direct = true};
    struct backend *be = NULL;
    int r = backend_open(&p, &be);
    if (r == -EINVAL)
        skip(); /* file system without O_DIRECT (tmpfs) */
    assert_int_equal(r, 0);
    assert_int_equal(be->min_block, 4096);
    uint8_t *buf = aligned_alloc(4096, 64 << 10);
    assert_non_null(buf);
    fill_pattern(buf, 64 << 10, 1);
    assert_int_equal(be->ops->pwrite(be, buf, 64 << 10, 8192, BE_FUA), 0);
    memset(buf, 0, 64 << 10);
    assert_int_equal(be->ops->pread(be, buf, 64 << 10, 8192), 0);
    uint8_t *want = malloc(64 << 10);
    fill_pattern(want, 64 << 10, 1);
    assert_memory_equal(buf, want, 64 << 10);
    /* Misaligned offset, length or memory. */
    assert_int_equal(be->ops->pread(be, buf, 4096, 100), -EINVAL);
    assert_int_equal(be->ops->pread(be, buf, 1000, 0), -EINVAL);
    assert_int_equal(be->ops->pread(be, buf + 1, 4096, 0), -EINVAL);
    assert_int_equal(be->ops->pwrite(be, buf, 4096, 100, 0), -EINVAL);
    /* Zeroing by writing uses the aligned shared zero buffer. */
    be->caps &= ~BE_CAN_ZERO;
    assert_int_equal(backend_zero(be, 16384, 8192, 0), 0);
    assert_int_equal(be->ops->pread(be, buf, 16384, 8192), 0);
    assert_true(buf_is_zero(buf, 16384));
    free(want);
    free(buf);
    backend_close(be);
}

/* Block devices go through ioctls (BLKGETSIZE64, BLKDISCARD, BLKZEROOUT).
 * Creating one needs root, so this runs only when SHOAL_TEST_BLOCKDEV names a
 * scratch device (e.g. a loop device) whose contents may be destroyed. */
static void test_block_device(void **state)
{
    (void)state;
    const char *dev = getenv("SHOAL_TEST_BLOCKDEV");
    if (!dev || !*dev)
        skip();
    struct backend *be = open_be(dev, false, false);
    assert_true(be->size >= (4 << 20));
    assert_true(be->caps & BE_CAN_TRIM);
    assert_true(be->caps & BE_CAN_ZERO);
    assert_false(be->caps & BE_CAN_FAST_ZERO);
    char desc[256];
    be->ops->describe(be, desc, sizeof(desc));
    assert_non_null(strstr(desc, "block device"));
    static uint8_t w[1 << 20], r[1 << 20];
    fill_pattern(w, sizeof(w), 21);
    assert_int_equal(backend_pwrite(be, w, sizeof(w), 1 << 20, BE_FUA), 0);
    assert_int_equal(be->ops->pread(be, r, sizeof(r), 1 << 20), 0);
    assert_memory_equal(w, r, sizeof(r));
    /* Aligned zero uses BLKZEROOUT, unaligned falls back to writing. */
    write_and_zero(be, 64 << 10, (1 << 20) + 4096, 0);
    write_and_zero(be, 1000, (1 << 20) + 3, BE_NO_HOLE);
    assert_int_equal(backend_zero(be, 4096, 0, BE_FAST_ZERO), -ENOTSUP);
    assert_int_equal(backend_trim(be, 64 << 10, 2 << 20, 0), 0);
    assert_int_equal(backend_trim(be, 100, 3, 0), 0); /* nothing aligned inside */
    assert_int_equal(be->ops->flush(be), 0);
    backend_close(be);

    struct backend_params p = {.spec = dev, .direct = true};
    assert_int_equal(backend_open(&p, &be), 0);
    assert_true(be->min_block >= 512 && IS_POW2(be->min_block));
    assert_int_equal(be->ops->pread(be, r, 100, 0), -EINVAL);
    backend_close(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_size_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_missing, setup, teardown),
        cmocka_unit_test(test_registry_probe),
        cmocka_unit_test_setup_teardown(test_rw_unaligned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extents_sparse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct, setup, teardown),
        cmocka_unit_test(test_block_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
