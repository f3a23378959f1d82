/* Reads by key (core-internal, used by volume.c): the read's misses whose
 * content's key the directory remembers are looked for in the local store
 * and then in the engine's tiers before the back end. */
#ifndef SHOAL_CORE_VOL_KEY_H
#define SHOAL_CORE_VOL_KEY_H

#include <stdbool.h>
#include <stdint.h>

struct volume;
struct vol_scratch;

/* Called with the read's tickets all taken, its misses in s->todo (at
 * todo_pos) and the ones the directory had a key hint for in s->keyed.
 * Every block found is copied whole into buf (request-relative, BLOCK_SIZE
 * each), has its todo bit cleared and is recorded for vol_key_finish.
 * *key_blocks / *tier_blocks: how many came from the local store / the
 * tiers. Returns 0, or -EAGAIN with nothing kept when nowait and a tier
 * would have to be asked (tiers may take their timeout: not on a reader
 * thread). */
int vol_key_resolve(struct volume *v, struct vol_scratch *s, uint8_t *buf, uint64_t first,
                    uint32_t nb, bool nowait, uint64_t *key_blocks, uint64_t *tier_blocks);

/* After the reply: cache what vol_key_resolve found (install), or just
 * release it (a failed read, a disabled volume). */
void vol_key_finish(struct volume *v, struct vol_scratch *s, const uint8_t *buf, uint64_t first,
                    bool install);

#endif
