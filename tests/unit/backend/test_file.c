/* Unit tests for the file back end, the back-end registry and the generic
 * helpers (FUA, zero, trim and extents emulation) in backend.c, and the
 * --backing-dir rule (file paths, and the nbd+unix socket check). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "common/util.h"
#include "tmpdir_fixture.h"

static int setup(void **state)
{
    return fixture_setup(state, "file");
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

/* The fixture's file opened with O_DIRECT; skips where the file system
 * has none (tmpfs). */
static struct backend *open_direct(struct fixture *fx)
{
    struct backend_params p = {.spec = fx->path, .direct = true};
    struct backend *be = NULL;
    int r = backend_open(&p, &be);
    if (r == -EINVAL)
        skip();
    assert_int_equal(r, 0);
    return be;
}

static void test_direct(void **state)
{
    struct fixture *fx = *state;
    make_file(fx->path, 1 << 20);
    struct backend *be = open_direct(fx);
    /* Any offset and length (split_direct), 4 KiB the unit it prefers. */
    assert_int_equal(be->min_block, 1);
    assert_int_equal(be->io_align, 4096);
    uint8_t *buf = aligned_alloc(4096, 64 << 10);
    assert_non_null(buf);
    fill_pattern(buf, 64 << 10, 1);
    assert_int_equal(be->ops->pwrite(be, buf, 64 << 10, 8192, BE_FUA), 0);
    memset(buf, 0, 64 << 10);
    assert_int_equal(be->ops->pread(be, buf, 64 << 10, 8192), 0);
    uint8_t *want = malloc(64 << 10);
    fill_pattern(want, 64 << 10, 1);
    assert_memory_equal(buf, want, 64 << 10);
    /* Misaligned offset, length or memory: served, not refused. */
    assert_int_equal(be->ops->pread(be, buf, 4096, 8192 + 100), 0);
    assert_memory_equal(buf, want + 100, 4096);
    assert_int_equal(be->ops->pread(be, buf, 1000, 8192), 0);
    assert_memory_equal(buf, want, 1000);
    assert_int_equal(be->ops->pread(be, buf + 1, 4096, 8192), 0);
    assert_memory_equal(buf + 1, want, 4096);
    /* Head, aligned middle (memory lined up) and tail in one request. */
    assert_int_equal(be->ops->pread(be, buf + 100, 3 * 4096, 8192 + 100), 0);
    assert_memory_equal(buf + 100, want + 100, 3 * 4096);
    /* Unaligned writes change exactly their bytes. */
    fill_pattern(buf, 64 << 10, 2);
    assert_int_equal(be->ops->pwrite(be, buf + 100, 2 * 4096, 8192 + 100, 0), 0);
    memcpy(want + 100, buf + 100, 2 * 4096);
    assert_int_equal(be->ops->pwrite(be, buf, 3, 8192 + 9000, BE_FUA), 0);
    memcpy(want + 9000, buf, 3);
    memset(buf, 0, 64 << 10);
    assert_int_equal(be->ops->pread(be, buf, 64 << 10, 8192), 0);
    assert_memory_equal(buf, want, 64 << 10);
    int fd = open(fx->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, 64 << 10, 8192), 64 << 10);
    close(fd);
    assert_memory_equal(buf, want, 64 << 10);
    /* Zeroing by writing uses the aligned shared zero buffer. */
    be->caps &= ~BE_CAN_ZERO;
    assert_int_equal(backend_zero(be, 16384, 8192, 0), 0);
    assert_int_equal(be->ops->pread(be, buf, 16384, 8192), 0);
    assert_true(buf_is_zero(buf, 16384));
    free(want);
    free(buf);
    backend_close(be);
}

/* An O_DIRECT image whose size is not a multiple of 4 KiB: its last bytes
 * are read and written like any others (O_DIRECT alone can neither read
 * the last partial block at an unaligned length nor write it without
 * growing the file), so the export needs no minimum block that would put
 * them out of clients' reach. */
static void test_direct_odd_tail(void **state)
{
    struct fixture *fx = *state;
    const uint64_t size = (64 << 10) + 1536;
    uint8_t *want = malloc(size);
    assert_non_null(want);
    fill_pattern(want, size, 7);
    int fd = open(fx->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, want, size, 0), (ssize_t)size);
    close(fd);
    struct backend *be = open_direct(fx);
    assert_int_equal(be->size, size);
    uint8_t *buf = aligned_alloc(4096, 16384);
    assert_non_null(buf);
    /* The last block alone, and with the block before it. */
    memset(buf, 0xee, 16384);
    assert_int_equal(be->ops->pread(be, buf, 1536, 64 << 10), 0);
    assert_memory_equal(buf, want + (64 << 10), 1536);
    assert_true(buf[1536] == 0xee); /* nothing written past count */
    memset(buf, 0xee, 16384);
    assert_int_equal(be->ops->pread(be, buf, 4096 + 1536, (64 << 10) - 4096), 0);
    assert_memory_equal(buf, want + (64 << 10) - 4096, 4096 + 1536);
    assert_true(buf[4096 + 1536] == 0xee);
    /* Unaligned, in the last block, and across its start. */
    assert_int_equal(be->ops->pread(be, buf, 1000, 64 << 10), 0);
    assert_memory_equal(buf, want + (64 << 10), 1000);
    assert_int_equal(be->ops->pread(be, buf, 1536 - 512, (64 << 10) + 512), 0);
    assert_memory_equal(buf, want + (64 << 10) + 512, 1024);
    assert_int_equal(be->ops->pread(be, buf + 512, 1536, 64 << 10), 0);
    assert_memory_equal(buf + 512, want + (64 << 10), 1536);
    assert_int_equal(be->ops->pread(be, buf, 1, size - 1), 0);
    assert_int_equal(buf[0], want[size - 1]);
    assert_int_equal(be->ops->pread(be, buf, 300, (64 << 10) - 100), 0);
    assert_memory_equal(buf, want + (64 << 10) - 100, 300);
    /* Writes: the whole last block, its last byte, across its start. */
    fill_pattern(buf, 16384, 8);
    assert_int_equal(be->ops->pwrite(be, buf, 1536, 64 << 10, 0), 0);
    memcpy(want + (64 << 10), buf, 1536);
    assert_int_equal(be->ops->pwrite(be, buf + 7, 1, size - 1, BE_FUA), 0);
    want[size - 1] = buf[7];
    assert_int_equal(be->ops->pwrite(be, buf + 33, 3000, (64 << 10) - 2000, 0), 0);
    memcpy(want + (64 << 10) - 2000, buf + 33, 3000);
    assert_int_equal(be->ops->flush(be), 0);
    backend_close(be);
    /* The file: the same size, exactly those bytes. */
    uint8_t *got = malloc(size + 1);
    assert_non_null(got);
    fd = open(fx->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, size + 1, 0), (ssize_t)size);
    close(fd);
    assert_memory_equal(got, want, size);
    free(got);
    free(buf);
    free(want);
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
    assert_int_equal(be->min_block, 1);
    assert_true(be->io_align >= 512 && IS_POW2(be->io_align));
    assert_int_equal(be->ops->pread(be, r + 1, 100, (1 << 20) + 3), 0); /* split_direct */
    assert_memory_equal(r + 1, w + 3, 100);
    backend_close(be);
}

/* ---- --backing-dir ---- */

struct tree {
    char root[64];        /* /tmp/shoal-be-bdir-XXXXXX */
    char d[128], d2[128]; /* the backing directories: ROOT/d, ROOT/d2 */
    char out[128];        /* ROOT/out: not a backing directory */
};

static void tree_path(char *buf, size_t len, const struct tree *t, const char *rel)
{
    snprintf(buf, len, "%s/%s", t->root, rel);
}

static void make_tree(struct tree *t)
{
    snprintf(t->root, sizeof t->root, "/tmp/shoal-be-bdir-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    char p[256], q[256];
    static const char *const dirs[] = {"d", "d/sub", "d2", "dx", "out"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        tree_path(p, sizeof p, t, dirs[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    tree_path(t->d, sizeof t->d, t, "d");
    tree_path(t->d2, sizeof t->d2, t, "d2");
    tree_path(t->out, sizeof t->out, t, "out");
    static const char *const files[] = {"d/inside.img", "d/sub/deep.img", "d2/other.img",
                                        "dx/prefix.img", "out/outside.img"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        tree_path(p, sizeof p, t, files[i]);
        make_file(p, 64 << 10);
        /* Each file says which one it is in its first bytes. */
        int fd = open(p, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, files[i], strlen(files[i]), 0), (ssize_t)strlen(files[i]));
        close(fd);
    }
    /* Symlinks: out absolute, out relative, in relative, a loop, /proc. */
    tree_path(q, sizeof q, t, "out/outside.img");
    tree_path(p, sizeof p, t, "d/abs-out");
    assert_int_equal(symlink(q, p), 0);
    tree_path(p, sizeof p, t, "d/rel-out");
    assert_int_equal(symlink("../out/outside.img", p), 0);
    tree_path(p, sizeof p, t, "d/rel-in");
    assert_int_equal(symlink("sub/deep.img", p), 0);
    tree_path(p, sizeof p, t, "d/loop");
    assert_int_equal(symlink("loop", p), 0);
    tree_path(p, sizeof p, t, "d/proc");
    assert_int_equal(symlink("/proc/self/root/etc/passwd", p), 0);
    tree_path(p, sizeof p, t, "d/etc-passwd");
    assert_int_equal(symlink("/etc/passwd", p), 0);
}

static void remove_tree(struct tree *t)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->root);
    assert_int_equal(system(cmd), 0);
}

/* Open `spec` beneath the tree's backing directories; 0 or -errno. On
 * success the file's first bytes must name `want`. */
static int open_beneath_tree(const struct tree *t, const char *spec, const char *want,
                             bool readonly)
{
    const char *dirs[] = {t->d, t->d2, NULL};
    struct backend_params p = {.spec = spec, .readonly = readonly, .backing_dirs = dirs};
    struct backend *be = NULL;
    int r = backend_open(&p, &be);
    if (r < 0) {
        assert_null(be);
        return r;
    }
    char buf[64] = "";
    assert_int_equal(be->ops->pread(be, buf, (uint32_t)strlen(want), 0), 0);
    if (memcmp(buf, want, strlen(want)) != 0)
        fail_msg("%s opened a file holding \"%.*s\", not %s", spec, (int)strlen(want), buf, want);
    backend_close(be);
    return 0;
}

static void test_backing_dir(void **state)
{
    (void)state;
    struct tree t;
    make_tree(&t);
    char spec[300];
    static const struct {
        const char *rel, *want; /* want NULL: refused by the rule */
        const char *why;
    } cases[] = {
        {"d/inside.img", "d/inside.img", NULL},
        {"d//sub/./deep.img", "d/sub/deep.img", NULL},
        {"d/sub/../inside.img", "d/inside.img", NULL},
        {"d/rel-in", "d/sub/deep.img", NULL},
        {"d2/other.img", "d2/other.img", NULL},
        {"d/../out/outside.img", NULL, "leaves its directory"},
        {"d/sub/../../out/outside.img", NULL, "leaves its directory"},
        {"d/../d2/other.img", NULL, "leaves its directory"},
        {"d/abs-out", NULL, "leaves its directory"},
        {"d/rel-out", NULL, "leaves its directory"},
        {"d/etc-passwd", NULL, "leaves its directory"},
        {"d/proc", NULL, "leaves its directory"},
        {"d/loop", NULL, "magic link or a symlink loop"},
        {"out/outside.img", NULL, "is not beneath any of them"},
        {"dx/prefix.img", NULL, "is not beneath any of them"}, /* "d" is no prefix of "dx" */
        {"d", NULL, "is not beneath any of them"},
        {"d/", NULL, "is not beneath any of them"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        tree_path(spec, sizeof spec, &t, cases[i].rel);
        for (int ro = 0; ro < 2; ro++) {
            int r = open_beneath_tree(&t, spec, cases[i].want ? cases[i].want : "", ro);
            if (cases[i].want && r != 0)
                fail_msg("%s (%s): refused: %d %s", cases[i].rel, ro ? "ro" : "rw", r,
                         backend_open_error());
            if (!cases[i].want) {
                if (r != -EPERM)
                    fail_msg("%s (%s): got %d, want -EPERM", cases[i].rel, ro ? "ro" : "rw", r);
                const char *why = backend_open_error();
                if (!strstr(why, cases[i].why) || !strstr(why, "--backing-dir") ||
                    !strstr(why, spec) || strchr(why, '\n'))
                    fail_msg("%s: message \"%s\"", cases[i].rel, why);
            }
        }
    }
    /* Relative paths are not beneath anything. */
    assert_int_equal(open_beneath_tree(&t, "d/inside.img", "", false), -EPERM);
    /* A file that is not there is a plain error, not the rule's. */
    tree_path(spec, sizeof spec, &t, "d/missing.img");
    assert_int_equal(open_beneath_tree(&t, spec, "", false), -ENOENT);
    /* The fault layer passes the rule down to the back end it wraps. */
    char fspec[400];
    snprintf(fspec, sizeof fspec, "fault:rdelay=0:%s/d/../out/outside.img", t.root);
    assert_int_equal(open_beneath_tree(&t, fspec, "", false), -EPERM);
    snprintf(fspec, sizeof fspec, "fault:rdelay=0:%s/d/inside.img", t.root);
    assert_int_equal(open_beneath_tree(&t, fspec, "d/inside.img", false), 0);
    /* Without a list every path opens, as before. */
    tree_path(spec, sizeof spec, &t, "d/../out/outside.img");
    struct backend *be = open_be(spec, true, false);
    backend_close(be);
    remove_tree(&t);
}

/* nbd+unix:// back ends: the socket's realpath must lie beneath a backing
 * directory. Checked before anything connects, so no server is needed:
 * an allowed socket with nobody listening fails with a connection error,
 * a refused one with -EPERM. */
static void test_backing_dir_socket(void **state)
{
    (void)state;
    struct tree t;
    make_tree(&t);
    char in_sock[256], out_sock[256], link[256];
    tree_path(in_sock, sizeof in_sock, &t, "d/s.sock");
    tree_path(out_sock, sizeof out_sock, &t, "out/s.sock");
    tree_path(link, sizeof link, &t, "d/link.sock");
    for (int i = 0; i < 2; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        const char *path = i ? out_sock : in_sock;
        assert_true(strlen(path) < sizeof sa.sun_path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd); /* the socket file stays; connecting is refused */
    }
    assert_int_equal(symlink(out_sock, link), 0);
    setenv("SHOAL_NBD_TIMEOUT_MS", "2000", 1);

    char spec[600];
    static const struct {
        const char *fmt;
        bool refused;
    } cases[] = {
        {"nbd+unix:///?socket=%s/d/s.sock", false},
        {"nbd+unix:///export?socket=%s/d/sub/../s.sock", false},
        {"nbd+unix:///?socket=%s/out/s.sock", true},
        {"nbd+unix:///?socket=%s/d/../out/s.sock", true},
        {"nbd+unix:///?socket=%s/d/%%2e%%2e/out/s.sock", true},
        {"nbd+unix:///?socket=%s/d/link.sock", true},
        {"nbd+unix:///?%%73ocket=%s/out/s.sock", true},
        {"nbd+unix:///?socket=%s/d/s.sock&socket=/etc/passwd", true},
        {"nbds+unix:///?tls=on&socket=%s/out/s.sock", true},
    };
    const char *dirs[] = {t.d, NULL};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        snprintf(spec, sizeof spec, cases[i].fmt, t.root);
        struct backend_params p = {.spec = spec, .backing_dirs = dirs};
        struct backend *be = NULL;
        int r = backend_open(&p, &be);
        assert_null(be);
        if ((r == -EPERM) != cases[i].refused)
            fail_msg("%s: %d (%s)", spec, r, backend_open_error());
        if (cases[i].refused)
            assert_non_null(strstr(backend_open_error(), "--backing-dir"));
    }
    /* A unix URI without a socket to check is refused; TCP is not a path. */
    struct backend_params p = {.spec = "nbd+unix:///export", .backing_dirs = dirs};
    struct backend *be = NULL;
    assert_int_equal(backend_open(&p, &be), -EPERM);
    p.spec = "nbd://127.0.0.1:1/x";
    assert_true(backend_open(&p, &be) != -EPERM);
    assert_null(be);
    unsetenv("SHOAL_NBD_TIMEOUT_MS");
    remove_tree(&t);
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
        cmocka_unit_test_setup_teardown(test_direct_odd_tail, setup, teardown),
        cmocka_unit_test(test_block_device),
        cmocka_unit_test(test_backing_dir),
        cmocka_unit_test(test_backing_dir_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
