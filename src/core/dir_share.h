/* Sharing a directory's blocks with a base volume's (clones of one image):
 * see dir.h, SHARING. */
#ifndef SHOAL_CORE_DIR_SHARE_H
#define SHOAL_CORE_DIR_SHARE_H

struct dir;

/* Share d's blocks with base (dir.h, SHARING): both of the same size, base
 * not a dependent itself, d new (no I/O yet) and not a base. 0, -EINVAL
 * (not a possible pair) or -ENOMEM. */
int dir_share(struct dir *d, struct dir *base);

#endif
