/* Content store implementation; see store.h for the model and lock rules. */
#include "core/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/block.h"
#include "core/evict.h"

#define MIN_BUCKETS 16u
/* Aim for shards of at least this many blocks so each has a useful queue. */
#define BLOCKS_PER_SHARD_MIN 1024u
#define MAX_SHARDS           64u

struct shard {
    pthread_mutex_t lock;
    uint32_t base;      /* global index of local entry 0 */
    uint32_t max;       /* reserved entries */
    uint32_t limit;     /* capacity in entries */
    uint32_t used;      /* live entries */
    uint32_t hwm;       /* local entries [0, hwm) have been touched */
    uint32_t free_head; /* global index; chain through hnext */
    uint32_t *buckets;
    uint32_t bucket_mask;
    uint64_t logical; /* sum of references */
    uint64_t evictions, inserts, dedup_hits, insert_failures;
    uint64_t evictions_told; /* evictions at the last store_set_evict_notify call */
    void *pstate;
    /* The keys of the shard's most recent evictions (evlog_*). */
    struct evrec *ev;
    uint32_t *ev_index; /* 4-way buckets by slot hash: ring position + 1, 0 = none */
    uint32_t ev_bits;   /* the ring holds 1 << ev_bits, the index twice that */
    uint32_t ev_next;
    /* One victim whose key is not computed yet (struct victims): its
     * block's copy, slot and generation. The copy is block data in
     * transit, like an I/O buffer, not metadata per cached block: one
     * block a shard (at most 64), not in metadata_bytes. */
    uint8_t *park;
    uint32_t park_idx, park_gen;
    bool parked;
    /* Pairs being hashed outside the lock (struct victims, on their
     * evictors' stacks), so a lookup in that window still finds them. */
    struct victims *hashing;
} __attribute__((aligned(64)));

/* One eviction: the slot, the generation its references carry, the key. */
struct evrec {
    uint32_t idx;
    uint32_t gen;
    struct fpkey key;
};

/* Ring size: a sixteenth of the shard's capacity (at least 256), so a
 * stale directory cell can still learn its content's key for about the
 * next sixteenth of the cache's turnover; the engine's purge runs twice as
 * often (engine.c).
 * The index has twice as many cells as the ring, in buckets of 4, so a
 * record is lost to an index collision only when 5 recent evictions hash
 * to one bucket. */
#define EVLOG_MIN_BITS 8
#define EVLOG_WAYS     4

/* pins[] word (16 bits a slot): count of pins in the low bits; PIN_DEAD
 * set when the entry died while pinned, so the last unpin releases the
 * slot. A slot pinned PIN_COUNT times refuses more (store_pin: -EBUSY; the
 * reader copies instead). */
#define PIN_DEAD  0x8000u
#define PIN_COUNT 0x7fffu

struct store {
    struct store_entry *entries;
    size_t entries_len;
    uint16_t *pins;
    size_t pins_len;
    uint8_t *data;
    size_t data_len;
    uint32_t nshards;
    unsigned shard_bits;
    uint32_t per_shard;
    struct shard *shards;
    const struct evict_ops *policy;
    uint64_t capacity_blocks;
    uint64_t max_blocks;
    bool evlog_on; /* atomic */
    pthread_mutex_t resize_lock;
    void (*evict_notify)(void *); /* set before the store is shared */
    void *evict_notify_arg;
};

/* The entry's 64-bit key picks the shard (top bits) and the bucket (low
 * bits). */
static inline struct shard *shard_of_key(struct store *s, uint64_t k)
{
    if (s->shard_bits == 0)
        return &s->shards[0];
    return &s->shards[k >> (64 - s->shard_bits)];
}

static inline struct shard *shard_of_idx(struct store *s, uint32_t idx)
{
    return &s->shards[idx / s->per_shard];
}

static inline uint8_t *slot_data(struct store *s, uint32_t idx)
{
    return s->data + (size_t)idx * BLOCK_SIZE;
}

/* A new content's bytes into its slot, past the CPU caches: a miss's
 * block is sent from the I/O buffer it came in, so the slot is next read
 * by a hit much later (after whole requests' copies flushed the caches),
 * and a cached write would first fetch the slot's 64 lines from memory
 * only to overwrite them (on a cold pass the copy was 5% of the daemon's
 * samples). The fence orders the streamed stores before the entry is
 * published under the shard lock. */
static void slot_fill(uint8_t *dst, const uint8_t *src)
{
#if defined(__SSE2__)
    for (size_t i = 0; i < BLOCK_SIZE; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(src + i + 32));
        __m128i d = _mm_loadu_si128((const __m128i *)(src + i + 48));
        _mm_stream_si128((__m128i *)(dst + i), a);
        _mm_stream_si128((__m128i *)(dst + i + 16), b);
        _mm_stream_si128((__m128i *)(dst + i + 32), c);
        _mm_stream_si128((__m128i *)(dst + i + 48), d);
    }
    _mm_sfence();
#else
    memcpy(dst, src, BLOCK_SIZE);
#endif
}

static inline uint32_t load_gen(const struct store_entry *e)
{
    return __atomic_load_n(&e->gen, __ATOMIC_ACQUIRE);
}

static inline void store_gen(struct store_entry *e, uint32_t gen)
{
    __atomic_store_n(&e->gen, gen, __ATOMIC_RELEASE);
}

/* ---- hash table (chained through store_entry.hnext) ---- */

/* The entry holding exactly these bytes (data), or with this whole key
 * (full, a remembered block's: its data is rehashed to compare all 160
 * bits). The entry's 32-bit key tag narrows the search; the byte compare makes a false
 * dedup match impossible rather than merely unlikely, and costs a 4 KiB
 * memcmp only when the keys agree. */
static uint32_t hash_find_locked(struct store *s, struct shard *sh, uint64_t k, const void *data,
                                 const struct fpkey *full)
{
    uint32_t idx = sh->buckets[k & sh->bucket_mask];
    while (idx != STORE_NONE) {
        if (s->entries[idx].key == (uint32_t)k &&
            (data ? memcmp(slot_data(s, idx), data, BLOCK_SIZE) == 0
                  : fpkey_verify(full, slot_data(s, idx))))
            return idx;
        idx = s->entries[idx].hnext;
    }
    return STORE_NONE;
}

static void hash_insert_locked(struct store *s, struct shard *sh, uint32_t idx)
{
    uint32_t *b = &sh->buckets[s->entries[idx].key & sh->bucket_mask];
    s->entries[idx].hnext = *b;
    *b = idx;
}

static void hash_remove_locked(struct store *s, struct shard *sh, uint32_t idx)
{
    uint32_t *p = &sh->buckets[s->entries[idx].key & sh->bucket_mask];
    while (*p != STORE_NONE) {
        if (*p == idx) {
            *p = s->entries[idx].hnext;
            return;
        }
        p = &s->entries[*p].hnext;
    }
}

/* Buckets grow with the entries held (doubled at 4 entries a bucket), not
 * sized for the shard's capacity, so a cache that is partly full pays for
 * what it holds. Chains of 2-4 are cheap here: the table is walked on
 * inserts and finds by key, never on a hit. 1-2 bytes per cached block. */
static int buckets_resize_locked(struct store *s, struct shard *sh, uint32_t want)
{
    uint32_t n = (uint32_t)round_up_pow2_u64(MAX(want / 4, MIN_BUCKETS));
    if (sh->buckets && n == sh->bucket_mask + 1)
        return 0;
    uint32_t *nb = malloc((size_t)n * sizeof *nb);
    if (!nb)
        return -ENOMEM;
    memset(nb, 0xff, (size_t)n * sizeof *nb);
    uint32_t *old = sh->buckets;
    uint32_t old_n = old ? sh->bucket_mask + 1 : 0;
    sh->buckets = nb;
    sh->bucket_mask = n - 1;
    for (uint32_t i = 0; i < old_n; i++) {
        uint32_t idx = old[i];
        while (idx != STORE_NONE) {
            uint32_t next = s->entries[idx].hnext;
            hash_insert_locked(s, sh, idx);
            idx = next;
        }
    }
    free(old);
    return 0;
}

/* ---- entry lifecycle ---- */

/* Put a dead entry's slot on the free list. A slot a shrink left beyond the
 * shard's high-water mark is not reused; its page goes back to the kernel
 * (the shrink could not do that while a reply still pinned it). */
static void slot_release_locked(struct store *s, struct shard *sh, uint32_t idx)
{
    if (idx - sh->base >= sh->hwm) {
        madvise(slot_data(s, idx), BLOCK_SIZE, MADV_DONTNEED);
        return;
    }
    s->entries[idx].hnext = sh->free_head;
    sh->free_head = idx;
}

static inline bool slot_pinned(struct store *s, uint32_t idx)
{
    return __atomic_load_n(&s->pins[idx], __ATOMIC_ACQUIRE) & PIN_COUNT;
}

/* Unlink a live entry everywhere but the policy. Every reference to it goes
 * stale here; its slot is released now, or by the last unpin. Returns true
 * if the slot was released. */
static bool entry_kill_locked(struct store *s, struct shard *sh, uint32_t idx)
{
    struct store_entry *e = &s->entries[idx];
    hash_remove_locked(s, sh, idx);
    sh->logical -= entry_refs(e);
    e->refs = 0;
    uint32_t g = e->gen + 1;
    store_gen(e, g ? g : 1);
    sh->used--;
    uint16_t old = __atomic_fetch_or(&s->pins[idx], (uint16_t)PIN_DEAD, __ATOMIC_ACQ_REL);
    if (old & PIN_COUNT)
        return false; /* the last store_unpin releases it */
    __atomic_store_n(&s->pins[idx], 0, __ATOMIC_RELAXED);
    slot_release_locked(s, sh, idx);
    return true;
}

/* ---- eviction log (store_evicted_key) ---- */

/* The first index cell of the bucket of (idx, gen) (ev_bits - 1 bits of
 * bucket number: 2 << ev_bits cells / 4 ways). By slot and generation, not
 * slot alone: a policy that refuses new blocks (W-TinyLFU's window) evicts
 * the same few slots over and over, and a bucket per slot kept only their
 * last four evictions. */
static inline uint32_t *evlog_bucket(const struct shard *sh, uint32_t idx, uint32_t gen)
{
    uint32_t b = (uint32_t)((idx ^ gen * 0x9e3779b9u) * 2654435761u) >> (32 - (sh->ev_bits - 1));
    return &sh->ev_index[b * EVLOG_WAYS];
}

/* log2 of a shard's eviction log records: a sixteenth of its limit, at
 * least 1 << EVLOG_MIN_BITS. */
static uint32_t evlog_bits(uint32_t limit)
{
    uint32_t bits = EVLOG_MIN_BITS;
    while (bits < 30 && (1u << bits) < limit / 16)
        bits++;
    return bits;
}

/* Allocated at the first eviction: a cache that never fills never pays. A
 * failed allocation only means evicted blocks are forgotten. */
static void evlog_push_locked(struct shard *sh, uint32_t idx, uint32_t gen, const struct fpkey *key)
{
    if (!sh->ev) {
        uint32_t bits = evlog_bits(sh->limit);
        sh->ev = calloc((size_t)1 << bits, sizeof *sh->ev);
        sh->ev_index = calloc((size_t)2 << bits, sizeof *sh->ev_index);
        if (!sh->ev || !sh->ev_index) {
            free(sh->ev);
            free(sh->ev_index);
            sh->ev = NULL;
            sh->ev_index = NULL;
            return;
        }
        sh->ev_bits = bits;
    }
    uint32_t mask = (1u << sh->ev_bits) - 1;
    uint32_t pos = sh->ev_next++ & mask;
    struct evrec *r = &sh->ev[pos];
    if (r->gen) {
        /* Overwriting the oldest record: unindex it. */
        uint32_t *b = evlog_bucket(sh, r->idx, r->gen);
        for (unsigned w = 0; w < EVLOG_WAYS; w++)
            if (b[w] == pos + 1)
                b[w] = 0;
    }
    *r = (struct evrec){idx, gen, *key};
    /* An empty way, else the oldest record's (the ring position furthest
     * behind the next one). */
    uint32_t *b = evlog_bucket(sh, idx, gen);
    unsigned victim = 0;
    uint32_t oldest_age = 0;
    for (unsigned w = 0; w < EVLOG_WAYS; w++) {
        if (b[w] == 0) {
            victim = w;
            break;
        }
        uint32_t age = (pos - (b[w] - 1)) & mask;
        if (age > oldest_age) {
            oldest_age = age;
            victim = w;
        }
    }
    b[victim] = pos + 1;
}

/* Victims of eviction whose whole keys (for the eviction log) are
 * computed after the shard's lock is released, two at a time
 * (fp_compute2): under the lock a victim's block is only copied, since its
 * slot is reused at once. The first victim waits in the shard (park), the
 * next one takes it along: so a thread that evicts one block per insert
 * still hashes pairs. A lookup of the parked victim's key computes it on
 * the spot; so does a lookup of a pair while its evictor hashes it (the
 * pair is on the shard's hashing list until victims_log takes the lock,
 * so its copies stay valid under the lock). Without that, the maintenance
 * purge, asking in that window, forgot both blocks for good. On the
 * caller's stack (8 KiB). */
struct victims {
    struct victims *next; /* on the shard's hashing list while n == 2 */
    unsigned n;
    struct {
        uint32_t idx, gen;
        bool logged; /* by a lookup (victims_find_locked) */
        uint8_t data[BLOCK_SIZE];
    } v[2];
};

static bool evlog_hash_push_locked(struct shard *sh, uint32_t idx, uint32_t gen, const void *data,
                                   struct fpkey *key);

/* A victim being hashed by its evictor: hash it here and log it (the
 * evictor then skips it). */
static bool victims_find_locked(struct shard *sh, uint32_t idx, uint32_t gen, struct fpkey *key)
{
    for (struct victims *o = sh->hashing; o; o = o->next)
        for (unsigned w = 0; w < 2; w++)
            if (!o->v[w].logged && o->v[w].idx == idx && o->v[w].gen == gen) {
                o->v[w].logged = true;
                return evlog_hash_push_locked(sh, idx, gen, o->v[w].data, key);
            }
    return false;
}

/* Hash one victim's block now and log its key; false if hashing failed. */
static bool evlog_hash_push_locked(struct shard *sh, uint32_t idx, uint32_t gen, const void *data,
                                   struct fpkey *key)
{
    struct fp fp;
    if (fp_compute(data, &fp) < 0)
        return false;
    *key = fpkey_of(&fp);
    evlog_push_locked(sh, idx, gen, key);
    return true;
}

static bool evlog_find_locked(struct shard *sh, uint32_t idx, uint32_t gen, struct fpkey *key)
{
    if (sh->parked && sh->park_idx == idx && sh->park_gen == gen) {
        /* Asked for before a second victim came to pair it with. */
        sh->parked = false;
        return evlog_hash_push_locked(sh, idx, gen, sh->park, key);
    }
    if (victims_find_locked(sh, idx, gen, key))
        return true;
    if (!sh->ev)
        return false;
    const uint32_t *b = evlog_bucket(sh, idx, gen);
    for (unsigned w = 0; w < EVLOG_WAYS; w++) {
        uint32_t p = b[w];
        if (p && sh->ev[p - 1].idx == idx && sh->ev[p - 1].gen == gen) {
            *key = sh->ev[p - 1].key;
            return true;
        }
    }
    return false;
}

/* A victim of eviction (not of its last unref: nobody maps that one). Its
 * whole key, for the eviction log, comes from its data (still intact: the
 * slot is reused only after this): parked or handed to out (above), or
 * without out (or room) computed here. */
static void evict_kill_locked(struct store *s, struct shard *sh, uint32_t idx, struct victims *out)
{
    struct store_entry *e = &s->entries[idx];
    const uint8_t *data = slot_data(s, idx);
    bool log = __atomic_load_n(&s->evlog_on, __ATOMIC_RELAXED);
    bool defer = log && out && out->n == 0;
    if (defer && !sh->park)
        sh->park = malloc(BLOCK_SIZE); /* once a shard; without it, hash here */
    if (log && !(defer && sh->park)) {
        struct fpkey key;
        (void)evlog_hash_push_locked(sh, idx, e->gen, data, &key);
    } else if (defer && !sh->parked) {
        memcpy(sh->park, data, BLOCK_SIZE);
        sh->park_idx = idx;
        sh->park_gen = e->gen;
        sh->parked = true;
    } else if (defer) {
        out->v[0].idx = sh->park_idx;
        out->v[0].gen = sh->park_gen;
        out->v[0].logged = false;
        memcpy(out->v[0].data, sh->park, BLOCK_SIZE);
        out->v[1].idx = idx;
        out->v[1].gen = e->gen;
        out->v[1].logged = false;
        memcpy(out->v[1].data, data, BLOCK_SIZE);
        out->n = 2;
        out->next = sh->hashing;
        sh->hashing = out;
        sh->parked = false;
    }
    entry_kill_locked(s, sh, idx);
    sh->evictions++;
}

/* After the shard's lock was released: hash what evict_kill_locked handed
 * over and log it. */
static void victims_log(struct shard *sh, struct victims *out)
{
    if (out->n != 2)
        return;
    struct fp f[2];
    bool ok = fp_compute2(out->v[0].data, out->v[1].data, &f[0], &f[1]) == 0;
    LOCK_GUARD(&sh->lock);
    struct victims **pp = &sh->hashing;
    while (*pp != out)
        pp = &(*pp)->next;
    *pp = out->next;
    for (unsigned w = 0; ok && w < 2; w++)
        if (!out->v[w].logged) {
            struct fpkey k = fpkey_of(&f[w]);
            evlog_push_locked(sh, out->v[w].idx, out->v[w].gen, &k);
        }
}

/* Victims tried per allocation: pinned ones die but free no slot yet. */
#define ALLOC_TRIES 64

static uint32_t slot_alloc_locked(struct store *s, struct shard *sh, struct victims *out)
{
    for (int tries = 0;; tries++) {
        if (sh->free_head != STORE_NONE) {
            uint32_t idx = sh->free_head;
            sh->free_head = s->entries[idx].hnext;
            return idx;
        }
        while (sh->hwm < sh->limit) {
            uint32_t idx = sh->base + sh->hwm++;
            /* A slot that died pinned beyond an earlier shrink's mark is
             * still being sent: now below the mark, its last unpin puts it
             * on the free list. */
            if (slot_pinned(s, idx))
                continue;
            /* Fresh pages read as gen 0; real generations start at 1. Pages
             * touched before a shrink keep their generation. */
            if (s->entries[idx].gen == 0)
                store_gen(&s->entries[idx], 1);
            return idx;
        }
        if (tries == ALLOC_TRIES)
            return STORE_NONE;
        uint32_t victim = s->policy->evict_locked(sh->pstate);
        if (victim == STORE_NONE)
            return STORE_NONE;
        evict_kill_locked(s, sh, victim, out);
    }
}

/* One more directory reference on a held content (a dedup match). */
static int ref_existing_locked(struct store *s, struct shard *sh, uint32_t idx,
                               struct store_ref *ref)
{
    struct store_entry *e = &s->entries[idx];
    if (entry_refs(e) >= STORE_REFS_MAX) {
        sh->insert_failures++;
        return -EOVERFLOW;
    }
    e->refs++;
    sh->logical++;
    sh->dedup_hits++;
    *ref = (struct store_ref){idx, e->gen};
    return 0;
}

int store_get_or_insert(struct store *s, const struct fp *fp, const void *data,
                        struct store_ref *ref)
{
    struct fpkey key = fpkey_of(fp);
    return store_get_or_insert_key(s, &key, data, ref);
}

int store_get_or_insert_key(struct store *s, const struct fpkey *keyp, const void *data,
                            struct store_ref *ref)
{
    return store_get_or_insert_heat(s, keyp, data, 0, ref);
}

static int get_or_insert(struct store *s, const struct fpkey *keyp, const void *data, unsigned heat,
                         bool ahead, struct store_ref *ref);

int store_get_or_insert_heat(struct store *s, const struct fpkey *keyp, const void *data,
                             unsigned heat, struct store_ref *ref)
{
    return get_or_insert(s, keyp, data, heat, false, ref);
}

int store_get_or_insert_ahead(struct store *s, const struct fpkey *keyp, const void *data,
                              struct store_ref *ref)
{
    return get_or_insert(s, keyp, data, 0, true, ref);
}

static int get_or_insert_locked(struct store *s, struct shard *sh, uint64_t key, const void *data,
                                unsigned heat, bool ahead, struct store_ref *ref,
                                struct victims *out)
{
    uint32_t idx = hash_find_locked(s, sh, key, data, NULL);
    if (idx != STORE_NONE) {
        int r = ref_existing_locked(s, sh, idx, ref);
        if (r == 0 && heat && s->policy->inherit_locked)
            s->policy->inherit_locked(sh->pstate, idx, heat);
        return r;
    }
    idx = slot_alloc_locked(s, sh, out);
    if (idx == STORE_NONE) {
        sh->insert_failures++;
        return -ENOSPC;
    }
    struct store_entry *e = &s->entries[idx];
    slot_fill(slot_data(s, idx), data);
    e->key = (uint32_t)key;
    e->refs = 1;
    hash_insert_locked(s, sh, idx);
    if (sh->used + 1 > 4 * (sh->bucket_mask + 1)) /* load 4: double (else longer chains) */
        (void)buckets_resize_locked(s, sh, 8 * (sh->bucket_mask + 1));
    if (ahead && s->policy->prefetch_locked)
        s->policy->prefetch_locked(sh->pstate, idx);
    else
        s->policy->insert_locked(sh->pstate, idx);
    if (heat && s->policy->inherit_locked)
        s->policy->inherit_locked(sh->pstate, idx, heat);
    sh->used++;
    sh->inserts++;
    sh->logical++;
    *ref = (struct store_ref){idx, e->gen};
    return 0;
}

static int get_or_insert(struct store *s, const struct fpkey *keyp, const void *data, unsigned heat,
                         bool ahead, struct store_ref *ref)
{
    uint64_t key = fpkey_hash64(keyp);
    struct shard *sh = shard_of_key(s, key);
    struct victims out;
    out.n = 0;
    int r;
    bool tell = false;
    {
        LOCK_GUARD(&sh->lock);
        r = get_or_insert_locked(s, sh, key, data, heat, ahead, ref, &out);
        /* Half the shard's log evicted since the reader was last told. */
        if (s->evict_notify && sh->ev &&
            sh->evictions - sh->evictions_told >= ((uint64_t)1 << sh->ev_bits) / 2) {
            sh->evictions_told = sh->evictions;
            tell = true;
        }
    }
    victims_log(sh, &out);
    if (tell)
        s->evict_notify(s->evict_notify_arg);
    return r;
}

/* Under its shard's lock: ref still names a held content (ref.idx is in
 * range: callers check with ref_in_range before taking the lock). */
static bool ref_live_locked(const struct store *s, struct store_ref ref)
{
    const struct store_entry *e = &s->entries[ref.idx];
    return e->gen == ref.gen && entry_refs(e) != 0;
}

static bool ref_in_range(const struct store *s, struct store_ref ref)
{
    return ref.idx < s->nshards * s->per_shard;
}

int store_ref_dup(struct store *s, struct store_ref ref, struct store_ref *out)
{
    if (!ref_in_range(s, ref))
        return -ENOENT;
    struct shard *sh = shard_of_idx(s, ref.idx);
    LOCK_GUARD(&sh->lock);
    if (!ref_live_locked(s, ref))
        return -ENOENT;
    return ref_existing_locked(s, sh, ref.idx, out);
}

int store_find(struct store *s, const struct fpkey *key, struct store_ref *ref)
{
    uint64_t k = fpkey_hash64(key);
    struct shard *sh = shard_of_key(s, k);
    LOCK_GUARD(&sh->lock);
    uint32_t idx = hash_find_locked(s, sh, k, NULL, key);
    if (idx == STORE_NONE)
        return -ENOENT;
    int r = ref_existing_locked(s, sh, idx, ref);
    if (r == 0)
        s->policy->hit_locked(sh->pstate, idx); /* a use: it was asked for */
    return r;
}

void store_set_eviction_log(struct store *s, bool on)
{
    __atomic_store_n(&s->evlog_on, on, __ATOMIC_RELAXED);
}

uint64_t store_evlog_records(struct store *s)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        LOCK_GUARD(&sh->lock);
        n += sh->ev ? (uint64_t)1 << sh->ev_bits : (uint64_t)1 << evlog_bits(sh->limit);
    }
    return n;
}

void store_set_evict_notify(struct store *s, void (*fn)(void *), void *arg)
{
    s->evict_notify = fn;
    s->evict_notify_arg = arg;
}

bool store_evicted_key(struct store *s, struct store_ref ref, struct fpkey *key)
{
    if (ref.idx >= s->nshards * s->per_shard)
        return false;
    struct shard *sh = shard_of_idx(s, ref.idx);
    LOCK_GUARD(&sh->lock);
    return evlog_find_locked(sh, ref.idx, ref.gen, key);
}

unsigned store_key_heat(struct store *s, const struct fpkey *keyp)
{
    if (!s->policy->heat_locked)
        return 0;
    uint64_t key = fpkey_hash64(keyp);
    struct shard *sh = shard_of_key(s, key);
    LOCK_GUARD(&sh->lock);
    return s->policy->heat_locked(sh->pstate, (uint32_t)key);
}

void store_unref(struct store *s, struct store_ref ref)
{
    (void)store_unref_heat(s, ref);
}

unsigned store_unref_heat(struct store *s, struct store_ref ref)
{
    if (ref.idx >= s->nshards * s->per_shard)
        return 0;
    struct shard *sh = shard_of_idx(s, ref.idx);
    struct fpkey evicted;
    {
        LOCK_GUARD(&sh->lock);
        struct store_entry *e = &s->entries[ref.idx];
        if (e->gen != ref.gen || entry_refs(e) == 0) {
            /* Stale: evicted or freed since. Its key, if the eviction log
             * still has it, still has a count (asked with this lock
             * released: no two shard locks at once). */
            if (!s->policy->heat_locked || !evlog_find_locked(sh, ref.idx, ref.gen, &evicted))
                return 0;
        } else {
            unsigned heat = s->policy->heat_locked ? s->policy->heat_locked(sh->pstate, e->key) : 0;
            e->refs--;
            sh->logical--;
            if (entry_refs(e) == 0) {
                s->policy->remove_locked(sh->pstate, ref.idx);
                entry_kill_locked(s, sh, ref.idx);
            }
            return heat;
        }
    }
    return store_key_heat(s, &evicted);
}

/* store_pin's work, under the lock of ref's shard (ref in range). */
static int pin_locked(struct store *s, struct store_ref ref, const uint8_t **data)
{
    if (!ref_live_locked(s, ref))
        return -ENOENT;
    if ((__atomic_load_n(&s->pins[ref.idx], __ATOMIC_ACQUIRE) & PIN_COUNT) == PIN_COUNT)
        return -EBUSY;
    __atomic_fetch_add(&s->pins[ref.idx], (uint16_t)1, __ATOMIC_ACQ_REL);
    *data = slot_data(s, ref.idx);
    return 0;
}

int store_pin(struct store *s, struct store_ref ref, const uint8_t **data)
{
    if (!ref_in_range(s, ref))
        return -ENOENT;
    LOCK_GUARD(&shard_of_idx(s, ref.idx)->lock);
    return pin_locked(s, ref, data);
}

/* One shard's part of a batch grouped by shard: positions order[begin..end). */
struct shard_run {
    uint32_t shard, begin, end;
};

/* Below this many entries a batch is grouped by insertion sort: a read of
 * a few blocks then costs a few steps, not a pass over every shard. */
#define GROUP_SORT_MAX 16u

/* Group m (>= 1) entries by shard, each shard's in their order (stable),
 * shard_of[i] being entry i's shard: on return order[] lists the positions
 * shard by shard, in increasing shard order, and runs[0..return) say where
 * each shard's begins and ends (the callers hold one shard lock at a time,
 * so the order of the shards does not matter to them). */
static uint32_t group_by_shard(const uint8_t *shard_of, uint32_t m, uint32_t *order,
                               struct shard_run *runs)
{
    if (m <= GROUP_SORT_MAX) {
        for (uint32_t i = 0; i < m; i++) {
            uint32_t j = i;
            for (; j > 0 && shard_of[order[j - 1]] > shard_of[i]; j--)
                order[j] = order[j - 1];
            order[j] = i;
        }
    } else {
        uint32_t start[MAX_SHARDS + 1] = {0};
        for (uint32_t i = 0; i < m; i++)
            start[shard_of[i] + 1]++;
        for (uint32_t k = 0; k < MAX_SHARDS; k++)
            start[k + 1] += start[k];
        for (uint32_t i = 0; i < m; i++)
            order[start[shard_of[i]]++] = i;
    }
    uint32_t nr = 0;
    for (uint32_t j = 0; j < m; j++) {
        uint32_t k = shard_of[order[j]];
        if (nr == 0 || runs[nr - 1].shard != k)
            runs[nr++] = (struct shard_run){.shard = k, .begin = j};
        runs[nr - 1].end = j + 1;
    }
    return nr;
}

int store_pin_many(struct store *s, const struct store_ref *refs, uint32_t n, const uint8_t **data)
{
    uint8_t shard_of[STORE_PIN_MANY_MAX];
    uint32_t order[STORE_PIN_MANY_MAX];
    struct shard_run runs[STORE_PIN_MANY_MAX];
    if (n > STORE_PIN_MANY_MAX)
        return -EINVAL;
    if (n == 0)
        return 0;
    /* Every entry and pin count is asked for before any is needed: on a
     * large cache each is a cache miss, and one after another they cost
     * more than the lookups themselves. */
    for (uint32_t i = 0; i < n; i++) {
        if (!ref_in_range(s, refs[i]))
            return -ENOENT;
        __builtin_prefetch(&s->entries[refs[i].idx]);
        __builtin_prefetch(&s->pins[refs[i].idx], 1);
        shard_of[i] = (uint8_t)(refs[i].idx / s->per_shard);
    }
    uint32_t nr = group_by_shard(shard_of, n, order, runs);
    int ret = 0;
    uint32_t pinned = 0; /* order[0..pinned) hold a pin */
    for (uint32_t r = 0; r < nr && ret == 0; r++) {
        LOCK_GUARD(&s->shards[runs[r].shard].lock);
        for (uint32_t j = runs[r].begin; j < runs[r].end && ret == 0; j++) {
            ret = pin_locked(s, refs[order[j]], &data[order[j]]);
            pinned += ret == 0;
        }
    }
    /* Unpinned outside the shard locks: the last pin of an entry that died
     * meanwhile takes its shard's lock (store_unpin). */
    for (uint32_t j = 0; ret < 0 && j < pinned; j++)
        store_unpin(s, refs[order[j]].idx);
    return ret;
}

/* The batch grouped by shard, each shard's blocks in their order: one lock
 * per shard touched instead of one per block. Shards are independent, so
 * only the order within one matters. Then the policy's put-off work, shard
 * by shard again: by then the loads that the hits of every shard asked for
 * are in, not only those of one shard. */
void store_used(struct store *s, const uint32_t *idx, uint32_t n)
{
    enum { CHUNK = 256 };
    uint8_t shard_of[CHUNK];
    uint32_t order[CHUNK];
    struct shard_run runs[CHUNK];
    for (uint32_t base = 0; base < n; base += CHUNK) {
        const uint32_t *in = idx + base;
        uint32_t m = MIN(n - base, (uint32_t)CHUNK);
        for (uint32_t i = 0; i < m; i++)
            shard_of[i] = (uint8_t)(in[i] / s->per_shard);
        uint32_t nr = group_by_shard(shard_of, m, order, runs);
        for (uint32_t r = 0; r < nr; r++) {
            struct shard *sh = &s->shards[runs[r].shard];
            LOCK_GUARD(&sh->lock);
            for (uint32_t j = runs[r].begin; j < runs[r].end; j++)
                s->policy->hit_locked(sh->pstate, in[order[j]]);
        }
        for (uint32_t r = 0; s->policy->flush_locked && r < nr; r++) {
            struct shard *sh = &s->shards[runs[r].shard];
            LOCK_GUARD(&sh->lock);
            s->policy->flush_locked(sh->pstate);
        }
    }
}

void store_unpin(struct store *s, uint32_t idx)
{
    /* Lock-free unless this is the last pin of a dead entry. That one drops
     * its pin under the shard lock: otherwise a shrink rebuilding the free
     * list between our decrement and our release would see an unpinned
     * dead slot, list it, and we would list it a second time (two contents
     * sharing a slot). A dead entry gains no pins (store_pin checks the
     * generation under the lock), so PIN_DEAD|1 stays ours. */
    uint16_t v = __atomic_load_n(&s->pins[idx], __ATOMIC_ACQUIRE);
    while (v != (PIN_DEAD | 1)) {
        if (__atomic_compare_exchange_n(&s->pins[idx], &v, (uint16_t)(v - 1), true,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return;
    }
    struct shard *sh = shard_of_idx(s, idx);
    LOCK_GUARD(&sh->lock);
    __atomic_store_n(&s->pins[idx], 0, __ATOMIC_RELEASE);
    slot_release_locked(s, sh, idx);
}

void store_unpin_many(struct store *s, const uint32_t *idx, uint32_t n)
{
    /* The pin counts first, all of them (see store_pin_many). */
    for (uint32_t i = 0; i < n; i++)
        __builtin_prefetch(&s->pins[idx[i]], 1);
    for (uint32_t i = 0; i < n; i++)
        store_unpin(s, idx[i]);
}

int store_read(struct store *s, struct store_ref ref, void *dst, uint32_t off, uint32_t len)
{
    uint32_t key;
    return store_read_key(s, ref, dst, off, len, &key);
}

uint32_t store_pinned_key(const struct store *s, uint32_t idx)
{
    return s->entries[idx].key; /* set before the pin, under the shard lock */
}

int store_read_key(struct store *s, struct store_ref ref, void *dst, uint32_t off, uint32_t len,
                   uint32_t *key)
{
    if (!ref_in_range(s, ref) || off + len > BLOCK_SIZE)
        return -ENOENT;
    struct shard *sh = shard_of_idx(s, ref.idx);
    LOCK_GUARD(&sh->lock);
    if (!ref_live_locked(s, ref))
        return -ENOENT;
    memcpy(dst, slot_data(s, ref.idx) + off, len);
    s->policy->hit_locked(sh->pstate, ref.idx);
    *key = s->entries[ref.idx].key;
    return 0;
}

bool store_ref_live(const struct store *s, struct store_ref ref)
{
    if (ref.idx >= s->nshards * s->per_shard)
        return false;
    return load_gen(&s->entries[ref.idx]) == ref.gen;
}

/* ---- sizing ---- */

static uint32_t shard_limit(uint64_t blocks, uint32_t nshards, uint32_t i)
{
    return (uint32_t)(blocks / nshards + (i < blocks % nshards ? 1 : 0));
}

static void shard_shrink_locked(struct store *s, struct shard *sh, uint32_t limit)
{
    while (sh->used > limit) {
        uint32_t victim = s->policy->evict_locked(sh->pstate);
        if (victim == STORE_NONE)
            break;
        evict_kill_locked(s, sh, victim, NULL);
    }
    /* Entries above the new limit must go even if the policy kept them. */
    for (uint32_t i = limit; i < sh->hwm; i++) {
        uint32_t idx = sh->base + i;
        if (entry_refs(&s->entries[idx]) != 0) {
            s->policy->remove_locked(sh->pstate, idx);
            evict_kill_locked(s, sh, idx, NULL);
        }
    }
    uint32_t old_hwm = sh->hwm;
    if (sh->hwm > limit)
        sh->hwm = limit;
    /* Rebuild the free list from the slots that remain (pinned dead slots
     * are released by their last unpin). */
    sh->free_head = STORE_NONE;
    for (uint32_t i = sh->hwm; i-- > 0;) {
        uint32_t idx = sh->base + i;
        if (entry_refs(&s->entries[idx]) == 0 && !slot_pinned(s, idx)) {
            s->entries[idx].hnext = sh->free_head;
            sh->free_head = idx;
        }
    }
    /* Return the pages beyond the new mark, except those a reply is still
     * sending from (zero-copy): their data must stay intact until the last
     * unpin, which returns the page then. */
    uint32_t run = sh->hwm;
    for (uint32_t i = sh->hwm; i <= old_hwm; i++) {
        if (i < old_hwm && !slot_pinned(s, sh->base + i))
            continue;
        if (i > run)
            madvise(slot_data(s, sh->base + run), (size_t)(i - run) * BLOCK_SIZE, MADV_DONTNEED);
        run = i + 1;
    }
}

int store_resize(struct store *s, uint64_t capacity)
{
    uint64_t blocks = capacity / BLOCK_SIZE;
    if (blocks == 0 || blocks > s->max_blocks)
        return -EINVAL;
    LOCK_GUARD(&s->resize_lock);
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        uint32_t limit = shard_limit(blocks, s->nshards, i);
        LOCK_GUARD(&sh->lock);
        if (limit < sh->limit) {
            shard_shrink_locked(s, sh, limit);
            /* Buckets grow with use; after a shrink, give back the excess. */
            if (sh->bucket_mask + 1 > MAX(sh->used, MIN_BUCKETS))
                (void)buckets_resize_locked(s, sh, 2 * sh->used);
        }
        sh->limit = limit;
        s->policy->resize_locked(sh->pstate, limit);
    }
    __atomic_store_n(&s->capacity_blocks, blocks, __ATOMIC_RELAXED);
    log_info(store, "cache capacity now %llu blocks", (unsigned long long)blocks);
    return 0;
}

/* ---- lifecycle ---- */

int store_create(uint64_t capacity, uint64_t max, const struct evict_ops *policy,
                 struct store **out)
{
    uint64_t blocks = capacity / BLOCK_SIZE;
    uint64_t max_blocks = MAX(max, capacity) / BLOCK_SIZE;
    if (blocks == 0)
        return -EINVAL;
    if (!policy)
        policy = evict_find(NULL);

    uint32_t nshards = 1;
    while (nshards < MAX_SHARDS && blocks / (nshards * 2) >= BLOCKS_PER_SHARD_MIN)
        nshards *= 2;
    uint64_t per = DIV_ROUND_UP(max_blocks, nshards);
    if (per * nshards >= UINT32_MAX - 1)
        return -EINVAL; /* beyond 16 TiB of content */

    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->policy = policy;
    s->nshards = nshards;
    s->shard_bits = (unsigned)__builtin_ctz(nshards);
    s->per_shard = (uint32_t)per;
    s->capacity_blocks = blocks;
    s->max_blocks = max_blocks;
    s->evlog_on = true;
    pthread_mutex_init(&s->resize_lock, NULL);

    s->entries_len = (size_t)per * nshards * sizeof(struct store_entry);
    s->data_len = (size_t)per * nshards * BLOCK_SIZE;
    s->entries = mmap(NULL, s->entries_len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    s->pins_len = (size_t)per * nshards * sizeof *s->pins;
    s->pins = mmap(NULL, s->pins_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    s->data = mmap(NULL, s->data_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    s->shards = aligned_alloc(64, sizeof(struct shard) * nshards);
    if (s->entries == MAP_FAILED || s->data == MAP_FAILED || s->pins == MAP_FAILED || !s->shards) {
        if (s->entries == MAP_FAILED)
            s->entries = NULL;
        if (s->pins == MAP_FAILED)
            s->pins = NULL;
        if (s->data == MAP_FAILED)
            s->data = NULL;
        store_destroy(s);
        return -ENOMEM;
    }
    memset(s->shards, 0, sizeof(struct shard) * nshards);
    for (uint32_t i = 0; i < nshards; i++) {
        struct shard *sh = &s->shards[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->base = i * s->per_shard;
        sh->max = s->per_shard;
        sh->limit = shard_limit(blocks, nshards, i);
        sh->free_head = STORE_NONE;
        sh->pstate = calloc(1, policy->state_size);
        int r = sh->pstate ? 0 : -ENOMEM;
        if (r == 0)
            r = buckets_resize_locked(s, sh, 0);
        if (r == 0)
            r = policy->init(sh->pstate, s->entries, sh->limit, sh->max);
        if (r < 0) {
            s->nshards = i + 1;
            store_destroy(s);
            return r;
        }
    }
    log_debug(store, "content store: %llu blocks (%u shards, policy %s, max %llu blocks)",
              (unsigned long long)blocks, nshards, policy->name, (unsigned long long)max_blocks);
    *out = s;
    return 0;
}

void store_destroy(struct store *s)
{
    if (!s)
        return;
    if (s->shards) {
        for (uint32_t i = 0; i < s->nshards; i++) {
            struct shard *sh = &s->shards[i];
            if (sh->pstate) {
                s->policy->fini(sh->pstate);
                free(sh->pstate);
            }
            free(sh->buckets);
            free(sh->ev);
            free(sh->ev_index);
            free(sh->park);
            pthread_mutex_destroy(&sh->lock);
        }
        free(s->shards);
    }
    if (s->entries)
        munmap(s->entries, s->entries_len);
    if (s->pins)
        munmap(s->pins, s->pins_len);
    if (s->data)
        munmap(s->data, s->data_len);
    pthread_mutex_destroy(&s->resize_lock);
    free(s);
}

static int check_fail(uint32_t shard, const char *what, uint32_t idx)
{
    log_error(store, "store check: shard %u: %s (slot %u)", shard, what, idx);
    return -EUCLEAN;
}

static int shard_check_locked(struct store *s, struct shard *sh, uint32_t si, uint8_t *seen)
{
    uint32_t live = 0;
    for (uint32_t i = 0; i < sh->hwm; i++) {
        uint32_t idx = sh->base + i;
        if (entry_refs(&s->entries[idx]) == 0)
            continue;
        live++;
        uint32_t j = sh->buckets[s->entries[idx].key & sh->bucket_mask];
        while (j != STORE_NONE && j != idx)
            j = s->entries[j].hnext;
        if (j != idx)
            return check_fail(si, "live entry not in its hash chain", idx);
    }
    if (live != sh->used)
        return check_fail(si, "live count differs from the shard's", live);
    for (uint32_t idx = sh->free_head, n = 0; idx != STORE_NONE; idx = s->entries[idx].hnext) {
        if (idx - sh->base >= sh->hwm)
            return check_fail(si, "free slot beyond the high-water mark", idx);
        if (seen[idx - sh->base]++)
            return check_fail(si, "slot on the free list twice", idx);
        if (entry_refs(&s->entries[idx]) != 0)
            return check_fail(si, "live entry on the free list", idx);
        if (slot_pinned(s, idx))
            return check_fail(si, "pinned slot on the free list", idx);
        if (++n > sh->hwm)
            return check_fail(si, "free list longer than the shard", idx);
    }
    return 0;
}

int store_check(struct store *s)
{
    uint8_t *seen = malloc(s->per_shard);
    if (!seen)
        return -ENOMEM;
    int r = 0;
    for (uint32_t i = 0; i < s->nshards && r == 0; i++) {
        struct shard *sh = &s->shards[i];
        memset(seen, 0, s->per_shard);
        LOCK_GUARD(&sh->lock);
        r = shard_check_locked(s, sh, i, seen);
    }
    free(seen);
    return r;
}

void store_get_stats(struct store *s, struct store_stats *out)
{
    memset(out, 0, sizeof *out);
    out->capacity_blocks = __atomic_load_n(&s->capacity_blocks, __ATOMIC_RELAXED);
    out->metadata_bytes = sizeof *s + sizeof(struct shard) * s->nshards;
    for (uint32_t i = 0; i < s->nshards; i++) {
        struct shard *sh = &s->shards[i];
        LOCK_GUARD(&sh->lock);
        out->unique_blocks += sh->used;
        out->logical_blocks += sh->logical;
        out->evictions += sh->evictions;
        out->inserts += sh->inserts;
        out->dedup_hits += sh->dedup_hits;
        out->insert_failures += sh->insert_failures;
        out->metadata_bytes += (uint64_t)sh->hwm * (sizeof(struct store_entry) + sizeof *s->pins) +
                               ((uint64_t)sh->bucket_mask + 1) * sizeof(uint32_t) +
                               s->policy->metadata_bytes_locked(sh->pstate);
        if (sh->ev)
            out->metadata_bytes +=
                ((uint64_t)1 << sh->ev_bits) * (sizeof *sh->ev + 2 * sizeof *sh->ev_index);
    }
}

uint64_t store_capacity_bytes(const struct store *s)
{
    return __atomic_load_n(&s->capacity_blocks, __ATOMIC_RELAXED) * BLOCK_SIZE;
}

uint64_t store_max_bytes(const struct store *s)
{
    return s->max_blocks * BLOCK_SIZE;
}

const char *store_policy_name(const struct store *s)
{
    return s->policy->name;
}
