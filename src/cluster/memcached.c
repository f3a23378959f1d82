/* See memcached.h. Lookups: answered on the caller's thread when one of
 * the inline slots is free (no thread hand-off: a remote hit costs about a
 * plain get), else a bounded queue of requests answered by the lookup
 * threads; puts and forgets: a bounded ring of slots, sent by one thread.
 *
 * Inline lookups: the core's callers may block (tier_lookup waits anyway),
 * so the multi-get runs in mct_lookup itself, on a slot's own handle whose
 * connect and poll timeouts are the tier's timeout_ms: the caller waits at
 * most that long for each wait on the network, and no cancel is ever
 * needed (done is called before lookup returns). A lookup that saw a
 * server fail sends the tier's lookups to its threads, where the core
 * gives up after timeout_ms and a hanging server is judged by the longer
 * io_timeout_ms, as before: until the ring's live set changes (the server
 * ejected, or back) or retry_ms passed.
 *
 * Cancel (core/tier.h: after it returns, the tier never touches the
 * request): a queued request is taken out of the queue; a request a thread
 * is answering is its `cur`, which the thread checks under its own lock
 * before every delivery and before done, and which cancel clears under that
 * lock. So cancel waits at most for one 4 KiB copy, never for the network;
 * the thread finishes the multi-get on its own and throws the rest away. */
#include "cluster/memcached.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/mc_alloc.h"
#include "cluster/mc_ring.h"
#include "cluster/memcached_stats.h"
#include "cluster/memcached_map.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/util.h"
#include "core/block.h"

#define LOOKUP_QUEUE 1024 /* lookups waiting for a thread */
#define KEY_TABLE    512  /* open addressing over a batch's keys (2 x TIER_BATCH_MAX) */
#define MAX_THREADS  64
#define INLINE_SLOTS 16 /* lookups answered on callers' threads at once */

struct mct;

struct lworker {
    struct mct *m;
    pthread_t thread;
    bool started;
    bool inline_slot; /* answers on callers' threads (no thread of its own) */
    uint8_t busy;     /* inline slot taken (atomic) */
    pthread_mutex_t lock;
    struct tier_req *cur; /* under lock: the request being answered */
    /* Under lock: when an inline lookup on conn's handle overruns the
     * tier's timeout (watch_main); 0 while none is on the network. */
    uint64_t cut_at_ns;
    struct mc_conn conn;
    /* conn's handles allocate through alloc: a one-key get's value comes
     * in spare and goes back after delivery (mc_alloc.h). Only the thread
     * answering with this worker touches them (the worker's own thread, or
     * the caller that holds the inline slot: `busy`). */
    struct mc_alloc alloc;
    _Alignas(16) unsigned char spare[MC_ALLOC_SPARE];
    /* The result buffer outlives handles (rebuilt after failures), so its
     * allocator root is a server-less handle of its own: the multi-get's
     * values are read into res, whose buffer grows once and is reused.
     * Its allocations are counted only (res_alloc has no spare: res would
     * keep it for good). */
    memcached_st *res_root;
    struct mc_alloc res_alloc;
    memcached_result_st res;
    /* one batch: its keys copied out of the request, unique keys in kp[] */
    unsigned n, nu;
    struct fpkey keys[TIER_BATCH_MAX];
    char kbuf[TIER_BATCH_MAX][TIER_MEMCACHED_KEY_LEN + 1];
    const char *kp[TIER_BATCH_MAX];
    size_t kl[TIER_BATCH_MAX];
    int16_t ufirst[TIER_BATCH_MAX]; /* unique key -> first index */
    int16_t next[TIER_BATCH_MAX];   /* index -> next index with the same key, -1 */
    int16_t table[KEY_TABLE];       /* hash slot -> unique key, -1 */
    /* first index -> delivered, for the per-server counts */
    uint64_t got[TIER_BATCH_MAX / 64];
};

enum put_op { PUT_SET, PUT_DELETE };

struct pslot {
    struct fpkey key;
    uint8_t op;
};

struct mct {
    struct tier t;
    struct mc_ring ring;
    struct mc_map *map; /* the shared block -> key map (memcached_map.c) */
    /* lookups */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    struct tier_req *queue[LOOKUP_QUEUE]; /* ring; NULL: cancelled */
    unsigned qhead, qcount;
    bool stop;
    unsigned nworkers;
    struct lworker *workers;
    struct lworker *inl; /* INLINE_SLOTS */
    /* Lookups go to the threads until then, while the ring's gen is
     * still inline_off_gen (atomics). */
    uint64_t inline_off_until_ns, inline_off_gen;
    uint32_t retry_ms;
    /* puts */
    pthread_mutex_t plock;
    pthread_cond_t pcond;      /* work for the put thread */
    pthread_cond_t pdone_cond; /* a slot was done (flush waits) */
    struct pslot *slots;
    uint8_t *data; /* cap x BLOCK_SIZE */
    unsigned cap, phead, pcount;
    uint64_t enqueued, done; /* slots ever queued / finished */
    bool pstop;
    pthread_t put_thread;
    bool put_started;
    struct mc_conn pconn;
    struct mc_alloc palloc;         /* pconn's handles': counts only (mc_alloc.h) */
    struct tier_memcached_stats st; /* relaxed atomics */
    struct mc_poll *poll;           /* the servers' own stats (memcached_stats.h) */
    /* the inline lookups' watchdog (watch_main) */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;
    bool wstop;
    unsigned armed; /* inline lookups on the network (atomic) */
    pthread_t watch_thread;
    bool watch_started;
};

void tier_memcached_key(const struct fpkey *k, char out[TIER_MEMCACHED_KEY_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "s1:", 3);
    for (unsigned i = 0; i < FPKEY_SIZE; i++) {
        out[3 + 2 * i] = hex[k->b[i] >> 4];
        out[4 + 2 * i] = hex[k->b[i] & 15];
    }
    out[TIER_MEMCACHED_KEY_LEN] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool key_parse(const char *s, size_t len, struct fpkey *k)
{
    if (len != TIER_MEMCACHED_KEY_LEN || memcmp(s, "s1:", 3) != 0)
        return false;
    for (unsigned i = 0; i < FPKEY_SIZE; i++) {
        int hi = hexval(s[3 + 2 * i]), lo = hexval(s[4 + 2 * i]);
        if (hi < 0 || lo < 0)
            return false;
        k->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

/* ---- lookups ---- */

static unsigned slot_of(const struct fpkey *k)
{
    return (unsigned)(fpkey_hash64(k) & (KEY_TABLE - 1));
}

/* Unique keys of the batch into kp[], duplicates chained behind the first. */
static void batch_prepare(struct lworker *w)
{
    memset(w->table, 0xff, sizeof w->table);
    w->nu = 0;
    for (unsigned i = 0; i < w->n; i++) {
        w->next[i] = -1;
        unsigned s = slot_of(&w->keys[i]);
        for (;; s = (s + 1) & (KEY_TABLE - 1)) {
            int u = w->table[s];
            if (u < 0) {
                w->table[s] = (int16_t)w->nu;
                w->ufirst[w->nu] = (int16_t)i;
                tier_memcached_key(&w->keys[i], w->kbuf[w->nu]);
                w->kp[w->nu] = w->kbuf[w->nu];
                w->kl[w->nu] = TIER_MEMCACHED_KEY_LEN;
                w->nu++;
                break;
            }
            unsigned first = (unsigned)w->ufirst[u];
            if (fpkey_equal(&w->keys[first], &w->keys[i])) {
                unsigned j = first;
                while (w->next[j] >= 0)
                    j = (unsigned)w->next[j];
                w->next[j] = (int16_t)i;
                break;
            }
        }
    }
}

static int batch_find(const struct lworker *w, const struct fpkey *k)
{
    for (unsigned s = slot_of(k);; s = (s + 1) & (KEY_TABLE - 1)) {
        int u = w->table[s];
        if (u < 0)
            return -1;
        if (fpkey_equal(&w->keys[w->ufirst[u]], k))
            return w->ufirst[u];
    }
}

/* Copy a found block to every position of its key, unless cancelled.
 * Returns false once the request is no longer ours. */
static bool deliver(struct lworker *w, struct tier_req *r, int first, const void *block)
{
    LOCK_GUARD(&w->lock);
    if (w->cur != r)
        return false;
    for (int i = first; i >= 0; i = w->next[i])
        tier_req_deliver(r, (unsigned)i, block);
    return true;
}

static void finish(struct lworker *w, struct tier_req *r, int status)
{
    LOCK_GUARD(&w->lock);
    if (w->cur != r)
        return;
    w->cur = NULL;
    tier_req_done(r, status);
}

/* Per server of the handle: keys asked and values delivered in this batch
 * (every position of a key counts, as the core counts them). It costs a
 * hash per key, so it runs after the request is finished; a batch whose
 * handle mc_conn_report dropped (a server failed, or the list changed) is
 * not counted: its keys no longer map to servers through it. */
static void count_servers(struct lworker *w, uint64_t rtt_ns)
{
    if (!w->conn.mc)
        return;
    unsigned keys[MC_RING_MAX_SERVERS] = {0}, hits[MC_RING_MAX_SERVERS] = {0};
    for (unsigned u = 0; u < w->nu; u++) {
        uint32_t i = memcached_generate_hash(w->conn.mc, w->kp[u], w->kl[u]);
        if (i >= w->conn.nlive)
            continue;
        unsigned n = 0;
        for (int k = w->ufirst[u]; k >= 0; k = w->next[k])
            n++;
        keys[i] += n;
        hits[i] += bitmap_test(w->got, (unsigned)w->ufirst[u]) ? n : 0;
    }
    mc_stats_count(&w->m->ring, &w->conn, keys, hits, rtt_ns);
}

/* A lookup's handle waits on the network at most the tier's timeout
 * (inline slots) or the ring's io_timeout_ms (threads): set on every use,
 * cheap field stores, which also undo the watchdog's cut (below) and give
 * a rebuilt handle the slot's own bound. The poll timeout bounds each
 * wait, not the lookup: a server that sends a byte now and then (or a
 * value it says is 2 GiB) would hold the lookup for as long as it likes,
 * an inline one's caller with it. The watchdog cuts it off then. */
static void bound_lookup(struct lworker *w)
{
    uint64_t ms = w->inline_slot ? w->m->t.timeout_ms : w->m->ring.p.io_timeout_ms;
    memcached_behavior_set(w->conn.mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
    if (w->inline_slot)
        memcached_behavior_set(w->conn.mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
    LOCK_GUARD(&w->lock);
    w->cut_at_ns = now_ns() + ms * 1000000u;
    __atomic_fetch_add(&w->m->armed, 1, __ATOMIC_RELAXED);
}

/* mc_conn_report, after the watchdog has let go of the handle (report may
 * rebuild or free it). */
static unsigned report(struct lworker *w, unsigned n)
{
    {
        LOCK_GUARD(&w->lock);
        if (w->cut_at_ns) {
            w->cut_at_ns = 0;
            __atomic_fetch_sub(&w->m->armed, 1, __ATOMIC_RELAXED);
        }
    }
    return mc_conn_report(&w->m->ring, &w->conn, w->kp, w->kl, n);
}

/* One key: a plain get (one GETK packet). libmemcached sends a multi-get's
 * closing NOOP in a packet of its own, which costs the server a second
 * wake-up: on one key that was most of the difference to a get. The get
 * hands over its value in a buffer of the handle's: w->spare (mc_alloc.h),
 * given back once delivered, so a hit allocates nothing. */
static unsigned answer_one(struct lworker *w, struct tier_req *r)
{
    struct mct *m = w->m;
    size_t len = 0;
    uint32_t flags;
    memcached_return_t rc;
    uint64_t t0 = now_ns();
    char *v = memcached_get(w->conn.mc, w->kp[0], w->kl[0], &len, &flags, &rc);
    uint64_t rtt_ns = now_ns() - t0;
    if (v && len == BLOCK_SIZE) {
        if (deliver(w, r, 0, v))
            bitmap_set(w->got, 0);
    } else if (v) {
        STAT_ADD(m->st.bad_values, 1);
    }
    mc_alloc_release(&w->alloc, v);
    unsigned failed = report(w, 1);
    finish(w, r, 0);
    count_servers(w, rtt_ns);
    return failed;
}

/* Returns the number of servers that failed in the lookup. */
static unsigned answer_batch(struct lworker *w, struct tier_req *r)
{
    struct mct *m = w->m;
    batch_prepare(w);
    memset(w->got, 0, sizeof w->got);
    int ret = mc_conn_refresh(&m->ring, &w->conn);
    if (ret < 0) {
        finish(w, r, ret == -ENOENT ? 0 : ret); /* no live server: all misses */
        return 0;
    }
    bound_lookup(w);
    if (w->nu == 1)
        return answer_one(w, r);
    memcached_st *mc = w->conn.mc;
    uint64_t t0 = now_ns();
    memcached_return_t rc = memcached_mget(mc, w->kp, w->kl, w->nu);
    if (memcached_failed(rc) && rc != MEMCACHED_SOME_ERRORS) {
        unsigned failed = report(w, w->nu);
        finish(w, r, -EIO);
        return failed ? failed : 1;
    }
    bool ours = true;
    memcached_return_t frc;
    while (memcached_fetch_result(mc, &w->res, &frc)) {
        if (!ours)
            continue; /* drain: the handle must end the batch clean */
        struct fpkey k;
        if (!key_parse(memcached_result_key_value(&w->res), memcached_result_key_length(&w->res),
                       &k))
            continue;
        int first = batch_find(w, &k);
        if (first < 0)
            continue;
        if (memcached_result_length(&w->res) != BLOCK_SIZE) {
            STAT_ADD(m->st.bad_values, 1);
            continue;
        }
        ours = deliver(w, r, first, memcached_result_value(&w->res));
        if (ours)
            bitmap_set(w->got, (unsigned)first);
    }
    uint64_t rtt_ns = now_ns() - t0;
    unsigned failed = report(w, w->nu);
    finish(w, r, 0);
    count_servers(w, rtt_ns);
    return failed;
}

/* A lookup a server failed in (a timeout within libmemcached's wait, or an
 * error) still finishes with status 0, its keys left to the back end, so
 * the core counts neither a timeout nor an error: counted here. */
static unsigned answer(struct lworker *w, struct tier_req *r)
{
    unsigned failed = answer_batch(w, r);
    if (failed)
        STAT_ADD(w->m->st.lookup_failures, 1);
    return failed;
}

/* Take the request as a worker's cur, its keys copied (the caller holds
 * whatever keeps a cancel out). */
static void take(struct lworker *w, struct tier_req *r)
{
    LOCK_GUARD(&w->lock);
    w->cur = r;
    w->n = r->n;
    memcpy(w->keys, r->keys, r->n * sizeof *r->keys);
}

static void *lookup_main(void *arg)
{
    struct lworker *w = arg;
    struct mct *m = w->m;
    for (;;) {
        struct tier_req *r = NULL;
        {
            LOCK_GUARD(&m->qlock);
            while (!m->stop && !r) {
                while (!m->stop && m->qcount == 0)
                    pthread_cond_wait(&m->qcond, &m->qlock);
                if (m->stop)
                    break;
                r = m->queue[m->qhead];
                m->qhead = (m->qhead + 1) % LOOKUP_QUEUE;
                m->qcount--;
            }
            if (!r)
                break;
            /* Taken with the queue lock held, so a cancel finds it either
             * queued or as cur; copy the keys while it cannot be cancelled. */
            take(w, r);
        }
        answer(w, r);
    }
    mc_conn_drop(&w->conn);
    return NULL;
}

/* Answer r on the caller's thread if a slot is free and no server failed
 * an inline lookup since the live set last changed. Returns false to queue
 * it instead. */
static bool lookup_inline(struct mct *m, struct tier_req *r)
{
    uint64_t gen = __atomic_load_n(&m->ring.gen, __ATOMIC_ACQUIRE);
    if (now_ns() < __atomic_load_n(&m->inline_off_until_ns, __ATOMIC_RELAXED) &&
        gen == __atomic_load_n(&m->inline_off_gen, __ATOMIC_RELAXED))
        return false;
    /* Start where this thread found a free slot last: callers rarely
     * collide. */
    static __thread unsigned hint;
    struct lworker *w = NULL;
    for (unsigned i = 0; i < INLINE_SLOTS && !w; i++) {
        struct lworker *c = &m->inl[(hint + i) % INLINE_SLOTS];
        if (!__atomic_exchange_n(&c->busy, 1, __ATOMIC_ACQUIRE)) {
            w = c;
            hint = (hint + i) % INLINE_SLOTS;
        }
    }
    if (!w)
        return false;
    take(w, r);
    STAT_ADD(m->st.lookup_inline, 1);
    if (answer(w, r) > 0) {
        /* gen from before the lookup: if this failure ejected the server,
         * the live set already changed and inline lookups go on. */
        __atomic_store_n(&m->inline_off_gen, gen, __ATOMIC_RELAXED);
        __atomic_store_n(&m->inline_off_until_ns, now_ns() + (uint64_t)m->retry_ms * 1000000u,
                         __ATOMIC_RELAXED);
    }
    __atomic_store_n(&w->busy, 0, __ATOMIC_RELEASE);
    return true;
}

/* The lookups' watchdog: one past its deadline (bound_lookup) gets a poll
 * timeout of 0, which libmemcached takes as an immediate timeout at its
 * next wait for the network: the lookup fails there (the server counts a
 * failure) and an inline lookup's caller goes on to the back end. That
 * store (one int field of the handle, memcached_behavior_set) races with
 * the lookup's own reads of it inside libmemcached, on purpose: the lookup
 * does not hold the slot's lock while on the network, and takes the new
 * value at its next wait. Everything else about the handle (cut_at_ns, a
 * rebuild in mc_conn_report) is under the slot's lock. It ticks
 * at half the tier's timeout (at least 5 ms) while lookups are on the
 * network, every 100 ms when none is: a lookup overruns by at most that. */
static void *watch_main(void *arg)
{
    struct mct *m = arg;
    uint64_t busy_ms = MAX(m->t.timeout_ms / 2, 5u);
    pthread_mutex_lock(&m->wlock);
    while (!m->wstop) {
        uint64_t ms = __atomic_load_n(&m->armed, __ATOMIC_RELAXED) ? busy_ms : 100;
        struct timespec until;
        deadline_after_ms(ms, &until);
        pthread_cond_timedwait(&m->wcond, &m->wlock, &until);
        uint64_t now = now_ns();
        for (unsigned i = 0; i < INLINE_SLOTS + m->nworkers; i++) {
            struct lworker *w = i < INLINE_SLOTS ? &m->inl[i] : &m->workers[i - INLINE_SLOTS];
            LOCK_GUARD(&w->lock);
            if (w->cut_at_ns && now >= w->cut_at_ns && w->conn.mc) {
                memcached_behavior_set(w->conn.mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 0);
                w->cut_at_ns = 0;
                __atomic_fetch_sub(&m->armed, 1, __ATOMIC_RELAXED);
                STAT_ADD(m->st.lookup_cut, 1);
            }
        }
    }
    pthread_mutex_unlock(&m->wlock);
    return NULL;
}

static void mct_lookup(struct tier *t, struct tier_req *r)
{
    struct mct *m = t->priv;
    if (lookup_inline(m, r))
        return;
    {
        LOCK_GUARD(&m->qlock);
        if (!m->stop && m->qcount < LOOKUP_QUEUE) {
            m->queue[(m->qhead + m->qcount) % LOOKUP_QUEUE] = r;
            m->qcount++;
            pthread_cond_signal(&m->qcond);
            return;
        }
    }
    STAT_ADD(m->st.lookup_busy, 1);
    tier_req_done(r, -EAGAIN);
}

static void mct_cancel(struct tier *t, struct tier_req *r)
{
    struct mct *m = t->priv;
    LOCK_GUARD(&m->qlock);
    for (unsigned i = 0; i < m->qcount; i++) {
        struct tier_req **q = &m->queue[(m->qhead + i) % LOOKUP_QUEUE];
        if (*q == r)
            *q = NULL; /* skipped by the threads (the slot still counts) */
    }
    for (unsigned i = 0; i < m->nworkers; i++) {
        struct lworker *w = &m->workers[i];
        LOCK_GUARD(&w->lock);
        if (w->cur == r)
            w->cur = NULL;
    }
}

/* ---- puts and forgets ---- */

static void send_slot(struct mct *m, const struct pslot *s, const uint8_t *data)
{
    char key[TIER_MEMCACHED_KEY_LEN + 1];
    tier_memcached_key(&s->key, key);
    if (mc_conn_refresh(&m->ring, &m->pconn) < 0) {
        STAT_ADD(m->st.put_errors, 1);
        return;
    }
    memcached_return_t rc;
    if (s->op == PUT_SET)
        rc = memcached_set(m->pconn.mc, key, TIER_MEMCACHED_KEY_LEN, (const char *)data, BLOCK_SIZE,
                           0, 0);
    else
        rc = memcached_delete(m->pconn.mc, key, TIER_MEMCACHED_KEY_LEN, 0);
    const char *kp = key;
    size_t kl = TIER_MEMCACHED_KEY_LEN;
    mc_conn_report(&m->ring, &m->pconn, &kp, &kl, 1);
    if (memcached_failed(rc) && rc != MEMCACHED_NOTFOUND)
        STAT_ADD(m->st.put_errors, 1);
    else if (s->op == PUT_SET)
        STAT_ADD(m->st.put_sent, 1);
}

static void *put_main(void *arg)
{
    struct mct *m = arg;
    pthread_mutex_lock(&m->plock);
    for (;;) {
        while (!m->pstop && m->pcount == 0) {
            /* Idle: push out what libmemcached still buffers. */
            if (m->pconn.mc) {
                pthread_mutex_unlock(&m->plock);
                memcached_flush_buffers(m->pconn.mc);
                pthread_mutex_lock(&m->plock);
                if (m->pstop || m->pcount)
                    continue;
            }
            pthread_cond_wait(&m->pcond, &m->plock);
        }
        if (m->pstop)
            break;
        unsigned i = m->phead;
        /* The producer writes only free slots: this one is stable. */
        pthread_mutex_unlock(&m->plock);
        send_slot(m, &m->slots[i], m->data + (size_t)i * BLOCK_SIZE);
        pthread_mutex_lock(&m->plock);
        m->phead = (m->phead + 1) % m->cap;
        m->pcount--;
        m->done++;
        STAT_ADD(m->st.put_queued, -(uint64_t)BLOCK_SIZE);
        pthread_cond_broadcast(&m->pdone_cond);
    }
    pthread_mutex_unlock(&m->plock);
    mc_conn_drop(&m->pconn);
    return NULL;
}

static void enqueue(struct mct *m, const struct fpkey *key, const void *block, enum put_op op)
{
    LOCK_GUARD(&m->plock);
    if (m->pstop || m->pcount == m->cap) {
        STAT_ADD(m->st.put_drops, 1);
        return;
    }
    unsigned i = (m->phead + m->pcount) % m->cap;
    m->slots[i].key = *key;
    m->slots[i].op = (uint8_t)op;
    if (block)
        memcpy(m->data + (size_t)i * BLOCK_SIZE, block, BLOCK_SIZE);
    m->pcount++;
    m->enqueued++;
    STAT_ADD(m->st.put_queued, BLOCK_SIZE);
    pthread_cond_signal(&m->pcond);
}

static void mct_put(struct tier *t, const struct fpkey *key, const void *block)
{
    enqueue(t->priv, key, block, PUT_SET);
}

static void mct_forget(struct tier *t, const struct fpkey *key)
{
    enqueue(t->priv, key, NULL, PUT_DELETE);
}

int tier_memcached_flush(struct tier *t, uint32_t timeout_ms)
{
    struct mct *m = t->priv;
    struct timespec until;
    deadline_after_ms(timeout_ms, &until);
    LOCK_GUARD(&m->plock);
    uint64_t target = m->enqueued;
    while (m->done < target)
        if (pthread_cond_timedwait(&m->pdone_cond, &m->plock, &until) == ETIMEDOUT)
            return m->done < target ? -ETIMEDOUT : 0;
    return 0;
}

/* ---- life cycle ---- */

void tier_memcached_stats(struct tier *t, struct tier_memcached_stats *out)
{
    struct mct *m = t->priv;
    /* Every field of the list, so a new one is never left out; the ring's
     * own counts and gauges replace the ones st does not keep. */
#define X(name, kind, unit, help) out->name = STAT_LOAD(m->st.name);
    MC_TIER_OWN(X)
#undef X
    out->ejections = STAT_LOAD(m->ring.ejections);
    out->revivals = STAT_LOAD(m->ring.revivals);
    char names[MC_RING_MAX_SERVERS * 280];
    int n = mc_ring_names(&m->ring, names, sizeof names);
    out->servers = n < 0 ? 0 : (unsigned)n;
    out->live = mc_ring_live(&m->ring);
}

int tier_memcached_snapshot(struct tier *t, struct mc_tier_snap *tier, struct mc_server_snap *srv,
                            unsigned max)
{
    struct mct *m = t->priv;
    struct tier_memcached_stats st;
    tier_memcached_stats(t, &st);
    int n = mc_stats_servers(&m->ring, m->poll, srv, max);
    if (n >= 0)
        mc_stats_tier(&st, srv, (unsigned)n, tier);
    return n;
}

int tier_memcached_set_servers(struct tier *t, const char *servers)
{
    struct mct *m = t->priv;
    return mc_ring_set(&m->ring, servers);
}

int tier_memcached_servers(struct tier *t, char *buf, size_t len)
{
    struct mct *m = t->priv;
    return mc_ring_names(&m->ring, buf, len);
}

int tier_memcached_server_of(struct tier *t, const struct fpkey *k)
{
    struct mct *m = t->priv;
    char key[TIER_MEMCACHED_KEY_LEN + 1];
    tier_memcached_key(k, key);
    return mc_ring_server_of(&m->ring, key, TIER_MEMCACHED_KEY_LEN);
}

static int worker_init(struct mct *m, struct lworker *w, bool inline_slot)
{
    w->m = m;
    w->inline_slot = inline_slot;
    w->conn.short_waits = inline_slot; /* bound_lookup cuts its waits */
    pthread_mutex_init(&w->lock, NULL);
    mc_alloc_init(&w->alloc, w->spare, &m->st.lookup_allocs);
    w->conn.alloc = &w->alloc;
    mc_alloc_init(&w->res_alloc, NULL, &m->st.lookup_allocs);
    w->res_root = memcached_create(NULL);
    if (!w->res_root)
        return -ENOMEM;
    if (mc_alloc_attach(&w->res_alloc, w->res_root) < 0)
        return -EINVAL;
    if (!memcached_result_create(w->res_root, &w->res))
        return -ENOMEM;
    return 0;
}

static void worker_destroy(struct lworker *w)
{
    if (!w->m)
        return; /* never initialised */
    pthread_mutex_destroy(&w->lock);
    if (w->res_root) {
        memcached_result_free(&w->res);
        memcached_free(w->res_root);
    }
}

static void mct_close(struct tier *t)
{
    struct mct *m = t->priv;
    {
        LOCK_GUARD(&m->qlock);
        m->stop = true;
        pthread_cond_broadcast(&m->qcond);
    }
    /* The watchdog goes last: it cuts a thread stuck on a server. */
    for (unsigned i = 0; i < m->nworkers; i++)
        if (m->workers[i].started)
            pthread_join(m->workers[i].thread, NULL);
    if (m->watch_started) {
        {
            LOCK_GUARD(&m->wlock);
            m->wstop = true;
            pthread_cond_signal(&m->wcond);
        }
        pthread_join(m->watch_thread, NULL);
    }
    /* No one waits any more (the engine closes tiers last); end what is
     * left anyway, so that the contract holds. */
    for (unsigned i = 0; i < m->qcount; i++) {
        struct tier_req *r = m->queue[(m->qhead + i) % LOOKUP_QUEUE];
        if (r)
            tier_req_done(r, -ESHUTDOWN);
    }
    {
        LOCK_GUARD(&m->plock);
        m->pstop = true;
        pthread_cond_broadcast(&m->pcond);
    }
    if (m->put_started)
        pthread_join(m->put_thread, NULL);
    mc_poll_stop(m->poll);
    for (unsigned i = 0; i < m->nworkers; i++)
        worker_destroy(&m->workers[i]);
    for (unsigned i = 0; m->inl && i < INLINE_SLOTS; i++) {
        mc_conn_drop(&m->inl[i].conn);
        worker_destroy(&m->inl[i]);
    }
    free(m->workers);
    free(m->inl);
    free(m->slots);
    free(m->data);
    pthread_mutex_destroy(&m->qlock);
    pthread_cond_destroy(&m->qcond);
    pthread_mutex_destroy(&m->plock);
    pthread_cond_destroy(&m->pcond);
    pthread_cond_destroy(&m->pdone_cond);
    pthread_mutex_destroy(&m->wlock);
    pthread_cond_destroy(&m->wcond);
    mc_map_close(m->map);
    mc_ring_destroy(&m->ring);
    free(m);
}

static int mct_map_lookup(struct tier *t, const struct tier_map_id *id, uint64_t first, unsigned n,
                          struct fpkey *keys, uint64_t *found)
{
    return mc_map_lookup(((struct mct *)t->priv)->map, id, first, n, keys, found);
}

static void mct_map_put(struct tier *t, const struct tier_map_id *id, uint64_t blk,
                        const struct fpkey *key)
{
    mc_map_put(((struct mct *)t->priv)->map, id, blk, key);
}

static int mct_flush(struct tier *t, uint32_t timeout_ms)
{
    int r = tier_memcached_flush(t, timeout_ms);
    return r < 0 ? r : mc_map_flush(((struct mct *)t->priv)->map, timeout_ms);
}

static bool mct_map_ready(struct tier *t)
{
    return mc_map_ready(((struct mct *)t->priv)->map);
}

void tier_memcached_set_map_secret(struct tier *t, const uint8_t *secret)
{
    mc_map_set_secret(((struct mct *)t->priv)->map, secret);
}

struct mc_map *tier_memcached_map(struct tier *t)
{
    return ((struct mct *)t->priv)->map;
}

const struct tier_ops tier_memcached_ops = {
    .name = "memcached",
    .lookup = mct_lookup,
    .cancel = mct_cancel,
    .put = mct_put,
    .forget = mct_forget,
    .close = mct_close,
    .map_lookup = mct_map_lookup,
    .map_put = mct_map_put,
    .map_ready = mct_map_ready,
    .flush = mct_flush,
};

static int check_config(const struct tier_memcached_config *c, struct tier_memcached_config *out)
{
    *out = *c;
    if (!out->timeout_ms)
        out->timeout_ms = TIER_MEMCACHED_TIMEOUT_MS;
    if (!out->io_timeout_ms) {
        uint64_t io = (uint64_t)out->timeout_ms * 4;
        out->io_timeout_ms = io < 20 ? 20 : io > 60000 ? 60000 : (uint32_t)io;
    }
    if (!out->put_queue_bytes)
        out->put_queue_bytes = TIER_MEMCACHED_PUT_QUEUE_BYTES;
    if (!out->lookup_threads)
        out->lookup_threads = TIER_MEMCACHED_LOOKUP_THREADS;
    if (!out->failure_limit)
        out->failure_limit = 2;
    if (!out->retry_ms)
        out->retry_ms = 1000;
    if (!out->retry_max_ms)
        out->retry_max_ms = 60000;
    const char *bad = NULL;
    if (out->timeout_ms > 60000 || out->io_timeout_ms > 60000)
        bad = "timeouts must be at most 60000 ms";
    else if (out->put_queue_bytes < BLOCK_SIZE ||
             out->put_queue_bytes > TIER_MEMCACHED_PUT_QUEUE_MAX)
        bad = "the put queue must hold 4 KiB .. 64 GiB";
    else if (out->lookup_threads > MAX_THREADS)
        bad = "at most 64 lookup threads";
    else if (out->failure_limit > 1000)
        bad = "the failure limit must be at most 1000";
    else if (out->retry_ms > out->retry_max_ms || out->retry_max_ms > 3600000)
        bad = "the retry back-off must grow from retry_ms to retry_max_ms (at most an hour)";
    if (bad) {
        log_error(cluster, "memcached: %s", bad);
        return -EINVAL;
    }
    return 0;
}

int tier_memcached_open(const struct tier_memcached_config *cfg, struct tier **out)
{
    struct tier_memcached_config c;
    int ret = check_config(cfg, &c);
    if (ret < 0)
        return ret;
    struct mct *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    struct mc_ring_params rp = {.io_timeout_ms = c.io_timeout_ms,
                                .failure_limit = c.failure_limit,
                                .retry_ms = c.retry_ms,
                                .retry_max_ms = c.retry_max_ms,
                                .allow_empty = c.dynamic};
    ret = mc_ring_init(&m->ring, c.servers, &rp);
    if (ret < 0) {
        free(m);
        return ret;
    }
    m->t.ops = &tier_memcached_ops;
    m->t.priv = m;
    m->t.timeout_ms = c.timeout_ms;
    snprintf(m->t.name, sizeof m->t.name, "memcached");
    pthread_mutex_init(&m->qlock, NULL);
    pthread_cond_init(&m->qcond, NULL);
    pthread_mutex_init(&m->plock, NULL);
    pthread_cond_init(&m->pcond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->pdone_cond, &ca);
    pthread_mutex_init(&m->wlock, NULL);
    pthread_cond_init(&m->wcond, &ca);
    pthread_condattr_destroy(&ca);
    m->pconn.noreply = true; /* puts are fire-and-forget (SETQ) */
    mc_alloc_init(&m->palloc, NULL, &m->st.put_allocs);
    m->pconn.alloc = &m->palloc;
    m->cap = (unsigned)(c.put_queue_bytes / BLOCK_SIZE);
    m->slots = calloc(m->cap, sizeof *m->slots);
    m->data = aligned_alloc(BLOCK_SIZE, (size_t)m->cap * BLOCK_SIZE);
    m->retry_ms = c.retry_ms;
    m->nworkers = c.lookup_threads;
    m->workers = calloc(m->nworkers, sizeof *m->workers);
    m->inl = calloc(INLINE_SLOTS, sizeof *m->inl);
    if (!m->slots || !m->data || !m->workers || !m->inl ||
        mc_map_open(&m->ring, c.timeout_ms, 0, &m->st.map_allocs, &m->map) < 0) {
        m->nworkers = 0;
        mct_close(&m->t);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < m->nworkers && ret == 0; i++)
        ret = worker_init(m, &m->workers[i], false);
    for (unsigned i = 0; i < INLINE_SLOTS && ret == 0; i++)
        ret = worker_init(m, &m->inl[i], true);
    for (unsigned i = 0; i < m->nworkers && ret == 0; i++) {
        ret = -pthread_create(&m->workers[i].thread, NULL, lookup_main, &m->workers[i]);
        m->workers[i].started = ret == 0;
    }
    if (ret == 0) {
        ret = -pthread_create(&m->put_thread, NULL, put_main, m);
        m->put_started = ret == 0;
    }
    if (ret == 0) {
        ret = -pthread_create(&m->watch_thread, NULL, watch_main, m);
        m->watch_started = ret == 0;
    }
    if (ret == 0)
        ret = mc_poll_start(&m->ring, &m->poll);
    if (ret < 0) {
        log_error(cluster, "memcached: starting threads: %s", strerror(-ret));
        mct_close(&m->t);
        return ret;
    }
    log_info(cluster,
             "memcached tier: %u server(s), timeout %u ms (I/O %u ms), put queue %u blocks",
             m->ring.n, c.timeout_ms, c.io_timeout_ms, m->cap);
    *out = &m->t;
    return 0;
}
