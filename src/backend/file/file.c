/* File back end: a volume's data in a regular (raw) file or a block device.
 * All I/O is positional (pread/pwrite/fallocate/ioctl on one shared fd, and
 * with --direct a second one for unaligned pieces: split_direct), so any
 * number of worker threads can use it at once without locking.
 *
 * With --backing-dir (backend_params.backing_dirs) the path is opened with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) from a descriptor of the
 * directory it is spelled under: the kernel refuses "..", absolute symlinks
 * and symlinks that lead outside during the one lookup that opens the
 * file, so there is no window between a check and the open.
 *
 * The image is locked the way QEMU locks it (lock.h): one cache that may
 * write it, in this daemon or any other process. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/file/lock.h"
#include "backend/file/probe.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

/* <linux/fs.h> has these too, but it clashes with glibc's RWF_* macros. */
#ifndef BLKDISCARD
#define BLKDISCARD _IO(0x12, 119)
#endif
#ifndef BLKZEROOUT
#define BLKZEROOUT _IO(0x12, 127)
#endif

struct file_be {
    struct backend be; /* first: be.priv points back at us */
    int fd;
    /* --direct: the same file opened without O_DIRECT, for what is not
     * aligned to be.io_align (see split_direct); -1 otherwise. */
    int bfd;
    bool blk;      /* block device (ioctls) rather than a regular file */
    bool direct;   /* fd has O_DIRECT: its transfers aligned to be.io_align */
    bool readonly; /* opened O_RDONLY */
    uint32_t lbs;  /* block device: logical block size (BLKDISCARD/BLKZEROOUT unit) */
    struct image_lock *lock;
    /* Learned at run time, so an unsupported call is tried once, not per I/O. */
    atomic_bool no_zero_range;
    atomic_bool no_punch;
    atomic_bool no_rwf_dsync;
};

static struct file_be *to_file(struct backend *be)
{
    return be->priv;
}

/* errno -> negative errno, folding the "out of space" variants so the NBD
 * front end can report ENOSPC (which guests treat specially). */
static int map_errno(int e)
{
    switch (e) {
    case EDQUOT:
    case EFBIG:
        return -ENOSPC;
    case EBADF: /* a write on an fd that turned out to be read-only */
        return -EPERM;
    case 0:
        return -EIO;
    default:
        return -e;
    }
}

/* With --direct, a request is cut into at most three pieces: the part
 * aligned to be.io_align (offset, length and memory) goes to fd, with
 * O_DIRECT; the unaligned head and tail go to bfd, the same file without it.
 * So any offset and length is served, as without --direct, and the export
 * needs no minimum block: the last partial block of an image whose size is
 * not a multiple of io_align can be read and written (O_DIRECT cannot write
 * it without growing the file), and a 512-byte write is not refused. The
 * page cache does the read-modify-write of a partial block under its page
 * lock, so two writes to different bytes of one block never undo each
 * other, which a read-modify-write here would need a lock for. The kernel
 * keeps both descriptors coherent: a direct read writes back the dirty
 * pages of its range first, and a direct write drops them. When the
 * memory does not line up with the aligned part of the file (a write
 * payload at an unaligned offset), the whole request goes to bfd. */
struct piece {
    int fd;
    uint32_t skip, len; /* from buf / offset */
};

static unsigned split_direct(const struct file_be *f, const uint8_t *buf, uint32_t count,
                             uint64_t offset, struct piece out[3])
{
    if (!f->direct) {
        out[0] = (struct piece){f->fd, 0, count};
        return 1;
    }
    uint64_t mask = f->be.io_align - 1, end = offset + count;
    uint64_t a = (offset + mask) & ~mask, b = end & ~mask;
    if (a >= b || ((uintptr_t)(buf + (a - offset)) & mask)) {
        out[0] = (struct piece){f->bfd, 0, count};
        return 1;
    }
    unsigned n = 0;
    if (a > offset)
        out[n++] = (struct piece){f->bfd, 0, (uint32_t)(a - offset)};
    out[n++] = (struct piece){f->fd, (uint32_t)(a - offset), (uint32_t)(b - a)};
    if (end > b)
        out[n++] = (struct piece){f->bfd, (uint32_t)(b - offset), (uint32_t)(end - b)};
    return n;
}

static int read_fd(struct file_be *f, int fd, uint8_t *p, uint32_t count, uint64_t offset)
{
    bool direct = f->direct && fd == f->fd;
    while (count > 0) {
        ssize_t n = pread(fd, p, count, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return map_errno(errno);
        }
        /* The file ended before the size we saw at open (it was truncated
         * behind our back): what is not there reads as zeros, like a hole.
         * With O_DIRECT a partial block also means EOF, and asking again at
         * the unaligned offset would fail. */
        if (n == 0 || (direct && ((size_t)n & (f->be.io_align - 1)))) {
            if (n > 0) {
                p += n;
                count -= (uint32_t)n;
            }
            memset(p, 0, count);
            return 0;
        }
        p += n;
        count -= (uint32_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static int file_pread(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    struct file_be *f = to_file(be);
    struct piece pc[3];
    unsigned n = split_direct(f, buf, count, offset, pc);
    for (unsigned i = 0; i < n; i++) {
        int r = read_fd(f, pc[i].fd, (uint8_t *)buf + pc[i].skip, pc[i].len, offset + pc[i].skip);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Page-cache hits only (RWF_NOWAIT): anything that would wait for the disk
 * comes back as -EAGAIN and is retried with file_pread on a worker. */
static int file_pread_nowait(struct backend *be, void *buf, uint32_t count, uint64_t offset)
{
    struct file_be *f = to_file(be);
    if (f->direct)
        return -EAGAIN; /* O_DIRECT always goes to the device */
    uint8_t *p = buf;
    while (count > 0) {
        struct iovec iov = {p, count};
        ssize_t n = preadv2(f->fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EOPNOTSUPP || errno == EINVAL)
                return -EAGAIN;
            return map_errno(errno);
        }
        if (n == 0) {
            memset(p, 0, count); /* truncated behind our back: zeros */
            return 0;
        }
        p += n;
        count -= (uint32_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static int write_fd(struct file_be *f, int fd, const uint8_t *p, uint32_t count, uint64_t offset,
                    uint32_t flags)
{
    bool fua = flags & BE_FUA;
    bool need_sync = false;
    while (count > 0) {
        ssize_t n;
        if (fua && !atomic_load_explicit(&f->no_rwf_dsync, memory_order_relaxed)) {
            /* Per-write O_DSYNC: persists just this write, not the whole
             * file's dirty pages as fdatasync would. */
            struct iovec iov = {.iov_base = (void *)p, .iov_len = count};
            n = pwritev2(fd, &iov, 1, (off_t)offset, RWF_DSYNC);
            if (n < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
                atomic_store(&f->no_rwf_dsync, true);
                continue;
            }
        } else {
            n = pwrite(fd, p, count, (off_t)offset);
            need_sync = fua;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return map_errno(errno);
        }
        if (n == 0)
            return -EIO;
        p += n;
        count -= (uint32_t)n;
        offset += (uint64_t)n;
    }
    if (need_sync && fdatasync(fd) < 0)
        return map_errno(errno);
    return 0;
}

static int file_pwrite(struct backend *be, const void *buf, uint32_t count, uint64_t offset,
                       uint32_t flags)
{
    struct file_be *f = to_file(be);
    if (f->readonly)
        return -EPERM;
    struct piece pc[3];
    unsigned n = split_direct(f, buf, count, offset, pc);
    for (unsigned i = 0; i < n; i++) {
        int r = write_fd(f, pc[i].fd, (const uint8_t *)buf + pc[i].skip, pc[i].len,
                         offset + pc[i].skip, flags);
        if (r < 0)
            return r;
    }
    return 0;
}

static int file_flush(struct backend *be)
{
    struct file_be *f = to_file(be);
    if (fdatasync(f->fd) < 0)
        return map_errno(errno);
    return 0;
}

static int do_fallocate(int fd, int mode, uint64_t offset, uint32_t count)
{
    while (fallocate(fd, mode, (off_t)offset, (off_t)count) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    return 0;
}

/* BLKDISCARD / BLKZEROOUT want logical-block-aligned ranges: shrink to the
 * aligned middle. Returns false when nothing aligned is left. */
static bool blk_align(uint64_t range[2], uint32_t count, uint64_t offset, uint32_t lbs)
{
    uint64_t start = (offset + lbs - 1) / lbs * lbs;
    uint64_t end = (offset + count) / lbs * lbs;
    if (start >= end)
        return false;
    range[0] = start;
    range[1] = end - start;
    return true;
}

static int sync_if_fua(struct file_be *f, uint32_t flags)
{
    if ((flags & BE_FUA) && fdatasync(f->fd) < 0)
        return map_errno(errno);
    return 0;
}

static int file_trim(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct file_be *f = to_file(be);
    if (f->readonly)
        return -EPERM;
    int r;
    if (f->blk) {
        uint64_t range[2];
        /* Partial blocks at the edges stay: trim is advisory. */
        if (!blk_align(range, count, offset, f->lbs))
            return 0;
        r = ioctl(f->fd, BLKDISCARD, range) < 0 ? -errno : 0;
    } else {
        if (atomic_load_explicit(&f->no_punch, memory_order_relaxed))
            return 0;
        r = do_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, count);
        if (r == -EOPNOTSUPP)
            atomic_store(&f->no_punch, true);
    }
    if (r == -EOPNOTSUPP)
        return 0; /* nothing discarded, and that is allowed */
    if (r < 0)
        return map_errno(-r);
    return sync_if_fua(f, flags);
}

static int file_zero_blk(struct file_be *f, uint32_t count, uint64_t offset, uint32_t flags)
{
    /* The kernel may implement BLKZEROOUT by writing zeros: never "fast". */
    if (flags & BE_FAST_ZERO)
        return -ENOTSUP;
    uint64_t range[2];
    if (!blk_align(range, count, offset, f->lbs) || range[0] != offset || range[1] != count)
        return -EOPNOTSUPP; /* unaligned: let backend_zero write the zeros */
    /* BLKZEROOUT never unmaps, so it honours NO_HOLE as is. */
    if (ioctl(f->fd, BLKZEROOUT, range) < 0)
        return errno == EOPNOTSUPP ? -EOPNOTSUPP : map_errno(errno);
    return sync_if_fua(f, flags);
}

static int file_zero(struct backend *be, uint32_t count, uint64_t offset, uint32_t flags)
{
    struct file_be *f = to_file(be);
    if (f->readonly)
        return -EPERM;
    if (f->blk)
        return file_zero_blk(f, count, offset, flags);

    int r = -EOPNOTSUPP;
    /* ZERO_RANGE keeps the blocks allocated (as unwritten extents), so it
     * is right with or without NO_HOLE. */
    if (!atomic_load_explicit(&f->no_zero_range, memory_order_relaxed)) {
        r = do_fallocate(f->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, count);
        if (r == -EOPNOTSUPP)
            atomic_store(&f->no_zero_range, true);
    }
    if (r == -EOPNOTSUPP && !(flags & BE_NO_HOLE) &&
        !atomic_load_explicit(&f->no_punch, memory_order_relaxed)) {
        r = do_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, count);
        if (r == -EOPNOTSUPP)
            atomic_store(&f->no_punch, true);
    }
    if (r == -EOPNOTSUPP)
        return (flags & BE_FAST_ZERO) ? -ENOTSUP : -EOPNOTSUPP;
    if (r < 0)
        return map_errno(-r);
    return sync_if_fua(f, flags);
}

static int file_extents(struct backend *be, uint32_t count, uint64_t offset, backend_extent_fn fn,
                        void *opaque)
{
    struct file_be *f = to_file(be);
    uint64_t pos = offset, end = offset + count;
    while (pos < end) {
        /* lseek moves the shared file position, but nothing here uses it:
         * all data I/O is positional. */
        off_t data = lseek(f->fd, (off_t)pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) {
                data = (off_t)end; /* no data after pos: a hole to the end */
            } else if (errno == EINVAL || errno == EOPNOTSUPP) {
                fn(opaque, pos, end - pos, 0);
                return 0;
            } else {
                return map_errno(errno);
            }
        }
        if ((uint64_t)data > pos) {
            uint64_t hole_end = MIN((uint64_t)data, end);
            if (fn(opaque, pos, hole_end - pos, BE_EXTENT_HOLE | BE_EXTENT_ZERO))
                return 0;
            pos = hole_end;
            if (pos >= end)
                break;
        }
        off_t hole = lseek(f->fd, (off_t)pos, SEEK_HOLE);
        if (hole < 0) {
            if (errno != ENXIO)
                return map_errno(errno);
            hole = (off_t)end; /* file shrank under us: call the rest a hole next round */
        }
        if ((uint64_t)hole <= pos)
            hole = (off_t)end; /* should not happen; never loop forever */
        uint64_t data_end = MIN((uint64_t)hole, end);
        if (fn(opaque, pos, data_end - pos, 0))
            return 0;
        pos = data_end;
    }
    return 0;
}

static void file_describe(struct backend *be, char *buf, size_t len)
{
    struct file_be *f = to_file(be);
    char sz[32];
    snprintf(buf, len, "file %s (%s, %s%s%s)", be->spec, f->blk ? "block device" : "raw",
             format_size(be->size, sz, sizeof(sz)), f->direct ? ", direct" : "",
             f->readonly ? ", read-only" : "");
}

static void file_close(struct backend *be)
{
    if (!be)
        return;
    struct file_be *f = to_file(be);
    if (f->bfd >= 0)
        close(f->bfd); /* holds no lock */
    if (f->fd >= 0)
        close(f->fd); /* drops the OFD locks */
    image_lock_release(f->lock);
    free(be->spec);
    free(f);
}

/* The part of `path` below `dir` ("a/b.img" for "/srv/a/b.img" under
 * "/srv"), or NULL when the path is not spelled beneath it. Directories are
 * absolute and symlink-free (the daemon resolves them at start). */
static const char *below(const char *dir, const char *path)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (strncmp(path, dir, n) != 0)
        return NULL;
    const char *rest = path + n;
    if (!(n == 1 && dir[0] == '/') && *rest != '/')
        return NULL;
    while (*rest == '/')
        rest++;
    return *rest ? rest : NULL;
}

static void refuse(const struct backend_params *p, const char *why)
{
    char dirs[200] = "";
    size_t off = 0;
    for (const char *const *d = p->backing_dirs; *d && off < sizeof dirs; d++) {
        int n = snprintf(dirs + off, sizeof dirs - off, "%s%s", off ? ", " : "", *d);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    backend_set_open_error("refused by --backing-dir (%s): '%s' %s", dirs, p->spec, why);
}

/* Open p->spec beneath one of p->backing_dirs. An fd, or a negative errno:
 * -EPERM (with the open error set) when the rule refuses the path. */
static int open_beneath(const struct backend_params *p, int flags)
{
    int err = 0;
    for (const char *const *d = p->backing_dirs; *d; d++) {
        const char *rest = below(*d, p->spec);
        if (!rest)
            continue;
        _cleanup_close_ int dfd = open(*d, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            err = -errno;
            continue;
        }
        struct open_how how = {
            .flags = (uint64_t)flags,
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dfd, rest, &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        err = -errno;
    }
    switch (err) {
    case 0:
        refuse(p, "is not beneath any of them");
        return -EPERM;
    case -EXDEV:
        refuse(p, "leaves its directory (through '..' or a symlink)");
        return -EPERM;
    case -ELOOP:
        refuse(p, "goes through a /proc magic link or a symlink loop");
        return -EPERM;
    case -ENOSYS:
        refuse(p, "cannot be checked: this kernel has no openat2 (Linux 5.6 or later needed)");
        return -EPERM;
    default:
        /* A file's own EPERM (an immutable file opened for writing) reads
         * as EACCES, so open_fd still falls back to read-only and -EPERM
         * stays the rule's answer alone. */
        return err == -EPERM ? -EACCES : err;
    }
}

static int open_path(const struct backend_params *p, int flags)
{
    if (p->backing_dirs)
        return open_beneath(p, flags);
    int fd = open(p->spec, flags);
    return fd < 0 ? -errno : fd;
}

static int open_fd(const struct backend_params *p, bool *readonly)
{
    int extra = O_CLOEXEC | (p->direct ? O_DIRECT : 0);
    if (!p->readonly) {
        int fd = open_path(p, O_RDWR | extra);
        if (fd >= 0) {
            *readonly = false;
            return fd;
        }
        /* Not writable by us (permissions, read-only media or mount):
         * serve it read-only rather than refusing it. -EPERM from
         * --backing-dir is a refusal, not a permission of the file. */
        if (fd != -EACCES && fd != -EROFS && (fd != -EPERM || p->backing_dirs))
            return fd;
        log_info(backend, "%s is not writable, opening read-only", p->spec);
    }
    int fd = open_path(p, O_RDONLY | extra);
    if (fd < 0)
        return fd;
    *readonly = true;
    return fd;
}

/* --direct: the file of fd again, without O_DIRECT (split_direct), by the
 * same path and rules. Refused unless it is the very same file: the path
 * may have been renamed over in between. An fd or a negative errno (open
 * error set). */
static int open_buffered(const struct backend_params *p, bool readonly, const struct stat *st)
{
    _cleanup_close_ int fd = open_path(p, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        if (fd != -EPERM || !p->backing_dirs)
            backend_set_open_error("cannot open it again without O_DIRECT: %s", strerror(-fd));
        return fd;
    }
    struct stat st2;
    if (fstat(fd, &st2) < 0)
        return -errno;
    if (st2.st_dev != st->st_dev || st2.st_ino != st->st_ino) {
        backend_set_open_error("the path was replaced while it was being opened");
        return -ESTALE;
    }
    return TAKE_FD(fd);
}

/* Caps that depend on the file system, found with harmless calls. */
static void probe_file_caps(struct file_be *f, uint64_t size)
{
    f->be.caps |= BE_CAN_ZERO; /* file_zero falls back by itself if needed */
    if (!f->readonly) {
        /* Punching past EOF changes nothing but says whether the file
         * system can punch; ZERO_RANGE has no such no-op form. */
        int r = do_fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, size, 4096);
        if (r == 0)
            f->be.caps |= BE_CAN_TRIM | BE_CAN_FAST_ZERO;
        else
            atomic_store(&f->no_punch, true);
    }
    if (lseek(f->fd, 0, SEEK_DATA) >= 0 || errno == ENXIO)
        f->be.caps |= BE_CAN_EXTENTS;
}

/* One pread, retried on EINTR: the byte count, or a negative errno. A
 * short count means EOF (regular files and devices return less only
 * there); asking again would need an unaligned offset, which O_DIRECT
 * refuses. */
static ssize_t read_at(int fd, uint8_t *buf, size_t len, uint64_t offset)
{
    for (;;) {
        ssize_t n = pread(fd, buf, len, (off_t)offset);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

/* Refuse an image in a container format (format=auto): exporting its bytes
 * as a raw disk would hand the guest the container, not the disk, and
 * nothing would say so. Reads the first block and, for a fixed VHD (raw
 * data followed by a footer), the last 512 bytes: two preads at open.
 * The buffer and offsets are aligned to `align` so the same fd works with
 * O_DIRECT. 0, -EMEDIUMTYPE (open error set), or the read's errno. */
static int check_raw_image(int fd, const struct backend_params *p, uint64_t size, uint32_t align)
{
    if (size == 0)
        return 0;
    size_t blk = MAX(align, 4096u);
    /* Two blocks, so a footer that straddles a block boundary (an O_DIRECT
     * file whose size is not a multiple of 512) is read whole. */
    _cleanup_free_ uint8_t *buf = NULL;
    if (posix_memalign((void **)&buf, blk, 2 * blk) != 0)
        return -ENOMEM;

    ssize_t n = read_at(fd, buf, blk, 0);
    const char *format = n >= 0 ? image_probe_start(buf, (size_t)n) : NULL;
    if (n >= 0 && !format && size >= VHD_FOOTER_SIZE) {
        uint64_t footer = size - VHD_FOOTER_SIZE;
        uint64_t start = footer / blk * blk;
        n = read_at(fd, buf, 2 * blk, start);
        if (n >= 0 && (uint64_t)n >= footer - start + 8 &&
            image_probe_vhd_footer(buf + (footer - start)))
            format = "vhd";
    }
    if (n < 0) {
        backend_set_open_error("cannot read %s to check its image format: %s (format=raw skips "
                               "the check)",
                               p->spec, strerror((int)-n));
        return (int)n;
    }
    if (!format)
        return 0;
    /* One line, saying what was found, what shoal supports instead, and
     * how to serve the bytes anyway. */
    backend_set_open_error("%s is a %s image; shoal serves raw images: serve the raw gold image "
                           "through shoal and put each VM's qcow2 overlay on top (qemu-img "
                           "create -f qcow2 -F raw -b 'nbd+unix:///gold?socket=/run/shoal.sock' "
                           "vm1.qcow2), or set format=raw to export the file's bytes as they are",
                           p->spec, format);
    return -EMEDIUMTYPE;
}

static int file_open(const struct backend_params *p, struct backend **out)
{
    bool readonly = false;
    _cleanup_close_ int fd = open_fd(p, &readonly);
    if (fd < 0) {
        if (fd != -EPERM || !p->backing_dirs)
            backend_set_open_error("%s", strerror(-fd));
        return fd;
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    bool blk = S_ISBLK(st.st_mode);
    if (!blk && !S_ISREG(st.st_mode)) {
        backend_set_open_error("not a regular file or block device");
        return -EINVAL;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint32_t lbs = 512;
    if (blk) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
            int e = errno;
            backend_set_open_error("cannot get the device size: %s", strerror(e));
            return -e;
        }
        int v = 0;
        if (ioctl(fd, BLKSSZGET, &v) == 0 && v > 0)
            lbs = (uint32_t)v;
    }
    /* O_DIRECT wants memory, offset and length aligned to the device's
     * logical block; for files 4 KiB is safe on every common file system.
     * What is not aligned goes through a second descriptor (split_direct):
     * clients may still send any offset and length. */
    uint32_t io_align = p->direct ? (blk ? lbs : 4096) : 1;
    if (p->format != BACKEND_FORMAT_RAW) {
        int r = check_raw_image(fd, p, size, io_align);
        if (r < 0)
            return r;
    }
    _cleanup_close_ int bfd = -1;
    if (p->direct) {
        bfd = open_buffered(p, readonly, &st);
        if (bfd < 0)
            return bfd;
    }

    _cleanup_free_ struct file_be *f = calloc(1, sizeof(*f));
    _cleanup_free_ char *spec = strdup(p->spec);
    if (!f || !spec)
        return -ENOMEM;
    /* Before anything is read into a cache: a writer elsewhere would make
     * it stale. On a refusal fd closes here, and its locks with it. */
    int r = image_lock_take(fd, &st, readonly, p->spec, &f->lock);
    if (r < 0)
        return r;
    f->blk = blk;
    f->lbs = lbs;
    f->direct = p->direct;
    f->readonly = readonly;
    f->be.ops = &backend_file_ops;
    f->be.priv = f;
    f->be.size = size;
    f->be.min_block = 1;
    f->be.io_align = io_align;
    f->be.caps = BE_CAN_FLUSH | BE_CAN_MULTI_CONN;
    f->fd = fd;
    f->bfd = bfd;
    if (readonly) {
        f->be.caps |= BE_READONLY;
    } else {
        f->be.caps |= BE_CAN_FUA;
        if (blk)
            f->be.caps |= BE_CAN_TRIM | BE_CAN_ZERO;
    }
    if (!blk)
        probe_file_caps(f, size);
    if (readonly)
        f->be.caps &= ~(BE_CAN_ZERO | BE_CAN_FAST_ZERO | BE_CAN_TRIM);

    f->be.spec = TAKE_PTR(spec);
    TAKE_FD(fd);
    TAKE_FD(bfd);
    *out = &TAKE_PTR(f)->be;
    return 0;
}

const struct backend_ops backend_file_ops = {
    .name = "file",
    .probe = NULL, /* anything the other kinds did not claim is a path */
    .open = file_open,
    .close = file_close,
    .pread = file_pread,
    .pread_nowait = file_pread_nowait,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .trim = file_trim,
    .zero = file_zero,
    .extents = file_extents,
    .describe = file_describe,
};
