/* Fenced writes: a volume this node may no longer be the only writer of.
 * Two reasons, bits of struct volume's `fenced`, each set and cleared on
 * its own:
 *   VOL_FENCE_MOVE   a warm move is handing the volume to another node
 *                    (core/vol_move.h): writes are refused, reads are
 *                    served as before (this node stays the only writer
 *                    until the hand-over, and nobody writes after it);
 *   VOL_FENCE_LEASE  this node's etcd lease may have expired
 *                    (cluster/membership.h): another node may take the
 *                    volume and write it, so writes are refused and reads
 *                    go to the back end, past the cache, whose blocks are
 *                    dropped (they may be stale by the time the fence
 *                    ends).
 * A fenced volume's writes fail with EPERM; its clients stay connected.
 * Only a read-write volume is fenced (a read-only one has no writes). */
#ifndef SHOAL_CORE_VOL_FENCE_H
#define SHOAL_CORE_VOL_FENCE_H

#include <stdbool.h>

struct volume;

enum { VOL_FENCE_MOVE = 1, VOL_FENCE_LEASE = 2 };

/* Set or clear one reason. Every write checks the fence under the write
 * gate, which it holds shared from before its back end call to its
 * answer: no write starts after the fence is set. A move's fence then
 * waits for the writes in flight (it takes the gate exclusive once); a
 * lease's does not (waiting keeps no write from landing, and a hung back
 * end would delay the next volumes' fences). */
void volume_fence(struct volume *v, int why);
void volume_unfence(struct volume *v, int why);

/* The reasons set now (0: none). */
int volume_fenced(const struct volume *v);

/* For a volume fenced for a move (no write runs or starts): flush its back
 * end, so every write it acknowledged is on stable storage before another
 * node opens the storage, and remember that it was. Returns 0, -EINVAL if
 * the volume is not fenced for a move, or the flush's error. */
int volume_settle(struct volume *v);
/* volume_settled (engine.h) says whether it succeeded. */

#endif
