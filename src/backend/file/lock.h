/* One image, one cache that may write it. A file back end takes, on the fd
 * it serves from, the same open file description (OFD) byte-range locks
 * QEMU's file driver takes (block/file-posix.c), so QEMU, qemu-img,
 * qemu-io, qemu-nbd and other shoalds see shoald as one more QEMU user of
 * the image and the other way round:
 *
 *   byte 100 + i  read-locked: "I use permission i"
 *   byte 200 + i  read-locked: "I do not let others use permission i"
 *   i: 0 consistent read, 1 write, 2 write unchanged, 3 resize
 *
 * A conflict is tested with F_OFD_GETLK for a write lock, which reports a
 * lock of any other open file description, in this process or another.
 * Read-write: uses consistent read and write; refuses write and resize to
 * others (its cache would go stale). Read-only: uses consistent read;
 * refuses write and resize. So any number of read-only users share an
 * image; a writer excludes every other user but `qemu-img -U`/`--force-share`.
 *
 * Within one shoald a registry of the open images (device + inode; for a
 * block device the device number, whatever node names it) says the same
 * in clearer words (naming the other export), and holds where the file
 * system has no OFD locks. Lock rule: the registry's own mutex, taken
 * only inside these functions. */
#ifndef SHOAL_BACKEND_FILE_LOCK_H
#define SHOAL_BACKEND_FILE_LOCK_H

#include <stdbool.h>
#include <sys/stat.h>

struct image_lock;

/* Lock the image open as fd (st: its fstat) for a read-only or read-write
 * export of spec. The OFD locks belong to fd's open file description:
 * they go when fd is closed. 0 and *out; -EBUSY with backend_open_error()
 * naming the file and the other user; or -ENOMEM. */
int image_lock_take(int fd, const struct stat *st, bool readonly, const char *spec,
                    struct image_lock **out);
/* Leave the registry; call after closing fd. NULL is a no-op. */
void image_lock_release(struct image_lock *l);

#endif
