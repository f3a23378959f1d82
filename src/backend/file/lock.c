/* QEMU-compatible image locks and the in-process registry. See lock.h. */
#include "backend/file/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "common/cleanup.h"
#include "common/log.h"

/* QEMU's numbers (RAW_LOCK_PERM_BASE, RAW_LOCK_SHARED_BASE and the
 * BLK_PERM_* bit indexes): part of its on-disk contract with other
 * processes, unchanged since QEMU 2.10. */
#define LOCK_USE_BASE    100
#define LOCK_REFUSE_BASE 200
enum { PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE, PERM_COUNT };

static const char *const perm_names[PERM_COUNT] = {"consistent read", "write", "write unchanged",
                                                   "resize"};

/* Which file: device and inode, or for a block device the device itself
 * (two device nodes of one disk are one disk). */
struct image_lock {
    bool blk;
    dev_t dev; /* st_dev, or a block device's st_rdev */
    ino_t ino; /* 0 for a block device */
    bool readonly;
    char *spec;
    struct image_lock *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct image_lock *registry;

static int ofd_read_lock(int fd, int byte)
{
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 when another open file description holds a lock on byte, 0 when none
 * does, or -errno. */
static int ofd_taken(int fd, int byte)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

static bool lock_unsupported(int err)
{
    return err == -EINVAL || err == -ENOLCK || err == -EOPNOTSUPP || err == -ENOSYS;
}

/* Take our bytes first, then test the others' (as QEMU does), so two
 * users starting at once both see each other rather than neither. 0,
 * -EBUSY (open error set), or an errno that says the file system has no
 * OFD locks. */
static int take_ofd_locks(int fd, bool readonly, const char *spec)
{
    unsigned use = 1u << PERM_CONSISTENT_READ | (readonly ? 0 : 1u << PERM_WRITE);
    unsigned refuse = 1u << PERM_WRITE | 1u << PERM_RESIZE;
    for (int i = 0; i < PERM_COUNT; i++) {
        int r = 0;
        if (use & (1u << i))
            r = ofd_read_lock(fd, LOCK_USE_BASE + i);
        if (r == 0 && (refuse & (1u << i)))
            r = ofd_read_lock(fd, LOCK_REFUSE_BASE + i);
        if (r == -EAGAIN || r == -EACCES) {
            /* Someone holds a write lock there: not QEMU's protocol, but
             * the image is certainly not ours to share. */
            backend_set_open_error("%s is locked by another process (byte %d)", spec,
                                   (use & (1u << i)) ? LOCK_USE_BASE + i : LOCK_REFUSE_BASE + i);
            return -EBUSY;
        }
        if (r < 0)
            return r;
    }
    for (int i = 0; i < PERM_COUNT; i++) {
        if (!(use & (1u << i)))
            continue;
        int r = ofd_taken(fd, LOCK_REFUSE_BASE + i);
        if (r < 0)
            return r;
        if (r) {
            backend_set_open_error("%s is in use by another process that does not share \"%s\" "
                                   "(QEMU, qemu-img or another shoald): stop it first",
                                   spec, perm_names[i]);
            return -EBUSY;
        }
    }
    for (int i = 0; i < PERM_COUNT; i++) {
        if (!(refuse & (1u << i)))
            continue;
        int r = ofd_taken(fd, LOCK_USE_BASE + i);
        if (r < 0)
            return r;
        if (r) {
            backend_set_open_error("%s is open for \"%s\" by another process (a VM, qemu-io, "
                                   "qemu-nbd or another shoald): a cache of it would go stale; "
                                   "stop it first",
                                   spec, perm_names[i]);
            return -EBUSY;
        }
    }
    return 0;
}

/* Drop every byte we may hold (a refusal must not leave half a set). */
static void drop_ofd_locks(int fd)
{
    struct flock fl = {.l_type = F_UNLCK,
                       .l_whence = SEEK_SET,
                       .l_start = LOCK_USE_BASE,
                       .l_len = LOCK_REFUSE_BASE + PERM_COUNT - LOCK_USE_BASE};
    fcntl(fd, F_OFD_SETLK, &fl);
}

static void file_id(const struct stat *st, struct image_lock *id)
{
    id->blk = S_ISBLK(st->st_mode);
    id->dev = id->blk ? st->st_rdev : st->st_dev;
    id->ino = id->blk ? 0 : st->st_ino;
}

/* An export of the same file in this daemon that cannot live beside a new
 * one: one writer, or any number of readers. */
static const struct image_lock *registry_conflict_locked(const struct stat *st, bool readonly)
{
    struct image_lock id;
    file_id(st, &id);
    for (const struct image_lock *l = registry; l; l = l->next)
        if (l->blk == id.blk && l->dev == id.dev && l->ino == id.ino && (!readonly || !l->readonly))
            return l;
    return NULL;
}

int image_lock_take(int fd, const struct stat *st, bool readonly, const char *spec,
                    struct image_lock **out)
{
    _cleanup_free_ struct image_lock *l = calloc(1, sizeof *l);
    _cleanup_free_ char *copy = strdup(spec);
    if (!l || !copy)
        return -ENOMEM;
    LOCK_GUARD(&registry_lock);
    const struct image_lock *other = registry_conflict_locked(st, readonly);
    if (other) {
        backend_set_open_error("%s is already exported %s by this shoald (as %s): one file "
                               "takes one read-write export or any number of read-only ones",
                               spec, other->readonly ? "read-only" : "read-write", other->spec);
        return -EBUSY;
    }
    int r = take_ofd_locks(fd, readonly, spec);
    if (r == -EBUSY) {
        drop_ofd_locks(fd);
        return r;
    }
    if (r < 0) {
        /* NFS without lock support, an old kernel: serve, as QEMU's
         * locking=auto does, but say that nothing keeps others off it. */
        drop_ofd_locks(fd);
        if (!lock_unsupported(r)) {
            backend_set_open_error("cannot lock %s: %s", spec, strerror(-r));
            return r;
        }
        log_warn(backend, "%s: no OFD locks here (%s): QEMU and other shoalds are not kept off it",
                 spec, strerror(-r));
    }
    file_id(st, l);
    l->readonly = readonly;
    l->spec = TAKE_PTR(copy);
    l->next = registry;
    registry = l;
    *out = TAKE_PTR(l);
    return 0;
}

void image_lock_release(struct image_lock *l)
{
    if (!l)
        return;
    {
        LOCK_GUARD(&registry_lock);
        for (struct image_lock **p = &registry; *p; p = &(*p)->next) {
            if (*p == l) {
                *p = l->next;
                break;
            }
        }
    }
    free(l->spec);
    free(l);
}
