/* Per-volume directory: volume block number -> content reference, plus the
 * race counters that keep the cache from ever holding stale data.
 *
 * Shape: a power of two of independent stripes (one per 64 blocks of
 * volume, 16 to DIR_STRIPES); a block belongs to stripe
 * ((blk >> DIR_GROUP_SHIFT) & (nstripes-1)), so eight neighbouring blocks
 * share a stripe and neighbouring groups do not. Each stripe has a mutex, a
 * sequence counter and its own open-addressing table that grows on demand,
 * so memory follows the number of cached blocks, not the volume size.
 * Readers take the stripe mutex for a probe (tens of nanoseconds; no lock is
 * shared by different stripes, so there is no global lock on the hit path).
 *
 * A cell's value is a 64-bit word: (generation << 32 | store index), the
 * constant DIR_ZERO for "known all-zero, no RAM", or 0 for empty. Cells whose
 * content was evicted go stale (see store.h).
 *
 * REMEMBERED BLOCKS. A block whose content left the local store keeps the
 * content's key (160 bits of SHA-256, fingerprint.h) in a second table of
 * its stripe, so a later miss can ask the other tiers for that content by
 * key before the back end. A stale cell becomes a remembered one when the
 * store's eviction log still knows the evicted content's key: on a read
 * miss (dir_remembered_key) and in the maintenance purge; otherwise it is
 * dropped. dir_lookup reports a remembered block as DIR_REMEMBERED.
 * Remembering is bounded by a budget shared by all volumes (struct
 * dir_budget): when it is full no new block is remembered until a purge
 * makes room for the blocks evicted since, forgetting whole stripes'
 * remembered blocks in rotation, so the latest evicted are the ones
 * remembered. A remembered key is
 * the block's content as long as the key stays: every write, trim, zero,
 * invalidate and disable clears it exactly like a local cell, under the same
 * race rule.
 *
 * SHARING (clones). Clones of one gold image hold the same content at the
 * same block numbers; a cell each would cost every clone 12+ bytes per
 * block for what the gold's directory already says. A directory may share
 * with a base (dir_share: another directory of the same size, itself not
 * a dependent; the engine picks the first volume of the same size). A
 * dependent's block is SHARED when it is known to hold what the base's
 * same block holds: one bit (8 bytes per group of 8 blocks). A lookup of
 * a dependent's block without a cell of its own then answers the base's
 * cell (or DIR_REMEMBERED if the base remembers its key). The bit is set
 * only by an install whose value equals the base's live cell (the content
 * store holds each content once, so equal values are equal bytes), under
 * the race rule of the dependent's tickets; it is cleared by every change
 * of the block on EITHER side (write, trim, zero, invalidate, disable:
 * the base clears its dependents' bits), by an install of a cell of the
 * dependent's own, and by the dependent's purge once the base knows
 * nothing of the block any more (so shared blocks stay bounded by what the
 * base caches and remembers). Unsharing is always safe: it only costs a
 * miss. A base removed before its dependents unshares everything and
 * stays allocated (empty) until the last dependent leaves.
 *
 * THE RACE RULE (no stale read). A read miss fetches a block from the back
 * end and wants to cache it; a write to that block may complete in between,
 * and caching the old data would serve it forever. Every stripe has a
 * sequence number `seq`; every change of a stripe's cells by a write, trim,
 * zero, invalidate or disable bumps it. The protocol:
 *
 *   write:  begin  (before the back end)  bump seq, clear cell, keep ticket=seq
 *           end    (after the back end answered, BEFORE the client is told)
 *                  clean = (seq == ticket); bump seq; clear cell; ticket=seq
 *           install(after the reply, optional) only if clean, via install_if
 *   read:   ticket = seq BEFORE asking the back end; after the data came back
 *           (and the reply went out) install_if(ticket)
 *   install_if(ticket, val): set the cell only if nothing changed THIS
 *           block since the ticket (and the cell is empty or stale); never
 *           bumps. The stripe knows which block its latest run of changes
 *           touched (stripe_bump in dir_internal.h): a neighbour's changes
 *           since the ticket do not refuse the install, anything the stripe
 *           cannot tell apart (older changes, two blocks, a range) does.
 *
 * Why it holds:
 *  - A fetch that started before a write's begin holds an older ticket: it
 *    cannot install after the begin.
 *  - A fetch that started between begin and end may carry old or new data
 *    (the write is in flight, both are allowed answers) and may install it,
 *    but end clears the cell and bumps seq before the write is acknowledged,
 *    so nothing fetched during the write survives past its acknowledgement.
 *  - A write installs its own data only if no other write/trim/invalidate
 *    touched the stripe between its begin and its end (clean) and nothing
 *    changed the block since its end (install_if). Two overlapping writes
 *    of a block therefore never install:
 *    the cache never guesses which one the back end applied last.
 *  - A failed write ends like any other (clear), so its block is refetched.
 * A write's own steps (begin, end: `clean`) still compare the whole
 * stripe's seq: an unrelated neighbour changed between them makes a write
 * spuriously unclean, which only costs a missed insert. Installs only look
 * at their block: at queue depth 1 a read's install runs after its reply,
 * when the client's next request (often the next block) may already have
 * changed the stripe.
 *
 * Lock rules: stripe->lock guards the stripe's tables (local and
 * remembered), seq and counters, and the shared bits of every dependent in
 * that stripe (a dependent's bits are guarded by its BASE's stripe lock of
 * the same index). While holding it, the only locks taken are the
 * lock-free store_ref_live, dir->rt_lock (which only allocates the
 * remembered tables' array, once, and takes nothing else) and, for a
 * dependent, its base's lock of the same stripe: the order is always
 * dependent stripe -> base stripe -> the base's deps_lock (its list of
 * dependents, changed by dir_share and a dependent's destroy with no
 * stripe lock held).
 * References to drop are returned to the caller, who calls store_unref
 * after the stripe lock is released; the store's eviction log is asked with
 * the stripe lock released too.
 */
#ifndef SHOAL_CORE_DIR_H
#define SHOAL_CORE_DIR_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dir_val.h"
#include "core/store.h"

struct dir;
struct store;

/* How many blocks the directories of an engine may remember together. */
struct dir_budget {
    uint64_t max;
    uint64_t used; /* atomic */
};
void dir_budget_init(struct dir_budget *b, uint64_t max_blocks);

/* budget: shared by the engine's directories; NULL: remember nothing. */
int dir_create(struct store *st, uint64_t nblocks, struct dir_budget *budget, struct dir **out);
/* Drops every reference the directory holds. No I/O may be running on it
 * (a base's dependents may keep running). */
void dir_destroy(struct dir *d);

/* Current value of a block's cell: a store reference, DIR_ZERO,
 * DIR_REMEMBERED, or 0 if nothing is known. */
uint64_t dir_lookup(struct dir *d, uint64_t blk);
/* Values of blocks [first, first+n) into out[]: one lock per 8-block group. */
void dir_lookup_range(struct dir *d, uint64_t first, uint32_t n, uint64_t *out);

/* Race rule: see above. A request's tickets live in a `struct dir_tickets`
 * (in the worker's scratch: too big for a request), one per stripe. A stripe
 * that some other change touched between two of this request's own steps
 * is marked dirty and nothing of this request is installed in it. */
struct dir_tickets {
    uint32_t t[DIR_STRIPES];
    uint64_t touched[DIR_STRIPES / 64];
    uint64_t dirty[DIR_STRIPES / 64];
};
/* Forget all tickets (call once per request; clears 256 bytes). */
void dir_tickets_reset(struct dir_tickets *tk);
/* Read side: take the ticket for blk before fetching it. */
void dir_read_ticket(struct dir *d, uint64_t blk, struct dir_tickets *tk);
/* After the read's tickets are taken (all of them: a ticket taken later in
 * the same stripe would cover this answer too), the key of blk's content if
 * it is remembered, or can still be learnt from the store's eviction log
 * for a stale cell (which then becomes remembered), and nothing changed the
 * stripe since the ticket: true and *fp. A copy found by that key anywhere
 * is then blk's content as of the ticket, and dir_install with the same
 * tickets caches it only if that still holds. */
bool dir_remembered_key(struct dir *d, uint64_t blk, const struct dir_tickets *tk,
                        struct fpkey *fp);
/* Seed a remembered key for blk (a volume that moved here: core/vol_move.c),
 * unless the block has a cell; within the budget. Only before any I/O on
 * the volume: it takes no ticket, so a change in flight could be undone. */
void dir_remember(struct dir *d, uint64_t blk, const struct fpkey *fp);
/* Write side (write, trim, zero): begin before the back end, end after it
 * answered and before the reply. end returns true if the block may still
 * be installed (nothing else touched its stripe since our begin). */
/* Both return the value they removed from the cell (0 if none); the caller
 * drops it with store_unref when dir_val_is_ref() (stale refs are ignored).
 * begin also says (*forgotten, may be NULL) whether it forgot a remembered
 * block, and its key (*forgot, may be NULL): a rewrite hands the old
 * content's worth on (evict.h, heat_locked) whether the maintenance purge
 * turned its stale cell into a remembered one yet or not. */
uint64_t dir_write_begin(struct dir *d, uint64_t blk, struct dir_tickets *tk, struct fpkey *forgot,
                         bool *forgotten);
uint64_t dir_write_end(struct dir *d, uint64_t blk, struct dir_tickets *tk, bool *clean);
/* Install val (a store reference or DIR_ZERO) if the stripe is not dirty for
 * this request, seq still equals our ticket, and the cell is empty or stale.
 * DIR_HELD: the directory keeps the caller's reference. DIR_SHARED: the
 * block now shares its base's cell with the same value (installed; the
 * caller drops its reference). DIR_REFUSED (0): not installed; the caller
 * drops its reference. */
enum { DIR_REFUSED = 0, DIR_HELD = 1, DIR_SHARED = 2 };
int dir_install(struct dir *d, uint64_t blk, struct dir_tickets *tk, uint64_t val);

/* Clear cells for blocks [first, first+n), bumping the seq of every stripe
 * concerned (invalidate, disable). Drops the references itself. */
void dir_invalidate(struct dir *d, uint64_t first, uint64_t n);

/* Maintenance, after evictions: remember the stale cells whose content's
 * key the store still knows, drop the others, shrink tables to fit; with
 * the budget full, forget one stripe's remembered blocks first; unshare
 * the blocks the base knows nothing of any more. */
void dir_purge(struct dir *d);

/* Counters. */
uint64_t dir_cells(struct dir *d);            /* cells in use (including stale) */
uint64_t dir_zero_cells(struct dir *d);       /* cells holding DIR_ZERO */
uint64_t dir_metadata_bytes(struct dir *d);   /* without the remembered tables */
uint64_t dir_shared(struct dir *d);           /* blocks shared with the base */
uint64_t dir_shared_zeros(struct dir *d);     /* ...of them all zeros */
uint64_t dir_remembered(struct dir *d);       /* remembered blocks */
uint64_t dir_remembered_bytes(struct dir *d); /* memory of the remembered tables */

#endif
