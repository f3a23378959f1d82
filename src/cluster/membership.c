/* See membership.h. Threads: one renews the lease (and, if it was lost
 * while etcd was out of reach, takes a new one and registers everything
 * again), one watches the memcached list and hands it to the tier, one
 * the owners (hand-overs), and one fences the owned volumes' writes when
 * the lease has not been renewed for long enough that it may expire. */
#include "cluster/membership.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster/etcd.h"
#include "cluster/mc_ring.h"
#include "cluster/memcached.h"
#include "cluster/memcached_map.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"

#define NODES_PREFIX  CLUSTER_PREFIX "nodes/"
#define MC_PREFIX     CLUSTER_PREFIX "memcached/"
#define OWNERS_PREFIX CLUSTER_PREFIX "owners/"
#define SECRET_KEY    CLUSTER_PREFIX "map-secret"
#define WATCH_MAX_MS  30000 /* resync the list this often even without events */
#define MAX_OWNED     4096
#define HANDOVER_SEEN 64 /* hand-overs remembered, so each is adopted once */
#define PENDING_MAX   64 /* hand-overs from this node not claimed yet */
#define BAD_SEEN      64 /* bad records logged already, so each is said once */

struct cluster {
    struct etcd *etcd;
    char *endpoints;
    char name[256];
    char *memcached; /* own servers, canonical, comma-separated ("" none) */
    char *api;
    uint32_t ttl;
    struct tier *tier;
    time_t started;

    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;  /* stop */
    bool stop;
    int64_t lease;
    char *owned[MAX_OWNED]; /* volumes whose owner key this node holds */
    unsigned nowned;

    pthread_t keepalive, watch, owners_watch;
    bool keepalive_started, watch_started, owners_started;

    /* Volumes handed to this node (warm moves): who adopts them, and the
     * hand-overs seen already (under lock). */
    cluster_hand_over_fn on_hand_over;
    void *on_hand_over_arg;
    /* Self-fencing (cluster_on_fence): when the last renewal etcd answered
     * was sent (monotonic ms), whether the owned volumes are fenced, and
     * the handler (all under lock). fence_lock (taken before lock) keeps
     * the handler's calls in the order their decisions were made. */
    uint64_t renewed_ms;
    bool fenced;
    bool reclaim; /* a relet's claims failed: renewed() tries them again */
    cluster_fence_fn on_fence;
    void *on_fence_arg;
    pthread_mutex_t fence_lock;
    pthread_t fencer;
    bool fencer_started;
    char *seen[HANDOVER_SEEN];
    unsigned seen_next;
    /* Hand-overs from this node that their new owner has not claimed yet:
     * the record as written, and when this node takes the volume back.
     * One is listed before its record is written (armed once it is), so
     * the owners' watch, woken by that very write, already sees it
     * pending and shortens its next wait to the deadline. */
    struct pending {
        char *volume, *record;
        uint64_t deadline_ms, id;
        bool armed;
    } pending[PENDING_MAX];
    unsigned npending;
    uint64_t pending_ids;
    /* Records under shoal's prefix that are not shoal's (their key and
     * revision, hashed), logged already: each scan finds them again. */
    uint64_t bad_seen[BAD_SEEN];
    unsigned bad_next;
};

static struct cluster *g;

bool cluster_enabled(void)
{
    return g != NULL;
}

const char *cluster_node_name(void)
{
    return g ? g->name : "";
}

static int put_node(struct cluster *c, int64_t lease, bool create);

int cluster_set_api(const char *api)
{
    struct cluster *c = g;
    if (!c)
        return -ENOTCONN;
    char *copy = strdup(api);
    if (!copy)
        return -ENOMEM;
    int64_t lease;
    {
        LOCK_GUARD(&c->lock);
        free(c->api);
        c->api = copy;
        lease = c->lease;
    }
    return put_node(c, lease, false);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleep up to ms unless stopped; true when stopped. */
static bool wait_stop(struct cluster *c, uint64_t ms)
{
    struct timespec until;
    deadline_after_ms(ms, &until);
    LOCK_GUARD(&c->lock);
    while (!c->stop)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
            break;
    return c->stop;
}

static int64_t lease_of(struct cluster *c)
{
    LOCK_GUARD(&c->lock);
    return c->lease;
}

static char *key_of(const char *prefix, const char *name)
{
    char *k = NULL;
    if (asprintf(&k, "%s%s", prefix, name) < 0)
        return NULL;
    return k;
}

/* The owner value: the lease tells this run from an earlier one of the
 * same name. */
static char *owner_value(struct cluster *c, int64_t lease)
{
    char l[32];
    snprintf(l, sizeof l, "%" PRIx64, (uint64_t)lease);
    json_t *v = json_pack("{s:s, s:s}", "node", c->name, "lease", l);
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    return s;
}

static const char *json_str(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- records that are not shoal's ---- */

/* A record's key for a log line: a NUL (etcd takes any bytes in a key)
 * and control bytes as '?', cut at len - 1 bytes. */
static void key_text(const struct etcd_kv *kv, char *buf, size_t len)
{
    size_t n = MIN(kv->key_len, len - 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = kv->key[i] ? kv->key[i] : '?';
    buf[n] = '\0';
    str_printable(buf);
    if (kv->key_len > n && n >= 3)
        memcpy(buf + n - 3, "...", 3);
}

/* The key holds a NUL: its C string would name another record. */
static bool key_has_nul(const struct etcd_kv *kv)
{
    return strlen(kv->key) != kv->key_len;
}

/* Anyone who can write etcd can put anything under shoal's prefix: a
 * record that is not as shoal writes it is ignored (the good ones around
 * it still count) and said in one line naming its key, once per version
 * of it rather than at every scan. */
static void bad_record(struct cluster *c, const struct etcd_kv *kv, const char *why)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the key, then the revision */
    for (size_t i = 0; i < kv->key_len; i++)
        h = (h ^ (unsigned char)kv->key[i]) * 0x100000001b3ull;
    h = (h ^ (uint64_t)kv->mod_revision) * 0x100000001b3ull;
    {
        LOCK_GUARD(&c->lock);
        for (unsigned i = 0; i < BAD_SEEN; i++)
            if (c->bad_seen[i] == h)
                return;
        c->bad_seen[c->bad_next] = h;
        c->bad_next = (c->bad_next + 1) % BAD_SEEN;
    }
    char key[256];
    key_text(kv, key, sizeof key);
    log_error(cluster, "etcd: ignoring %s (revision %" PRId64 "): %s", key, kv->mod_revision, why);
}

/* NULL when rec is an owner record as shoal writes it ({"node", "lease"},
 * or a hand-over: "gen" of 16 hex digits, "backing", "from"), else why
 * not. */
static const char *owner_record_why(json_t *rec)
{
    if (!json_is_object(rec))
        return "not a JSON object";
    const char *node = json_str(rec, "node");
    if (!node || !node[0])
        return "no \"node\" string";
    json_t *gen = json_object_get(rec, "gen");
    if (!gen)
        return NULL;
    const char *gs = json_string_value(gen), *backing = json_str(rec, "backing");
    if (!gs || strlen(gs) != 16 || strspn(gs, "0123456789abcdef") != 16)
        return "a hand-over whose \"gen\" is not 16 hex digits";
    if (!backing || !backing[0])
        return "a hand-over without a \"backing\" string";
    json_t *from = json_object_get(rec, "from");
    if (from && !json_is_string(from))
        return "a hand-over whose \"from\" is not a string";
    return NULL;
}

/* ---- registration ---- */

static int put_node(struct cluster *c, int64_t lease, bool create)
{
    _cleanup_free_ char *api = NULL;
    {
        LOCK_GUARD(&c->lock); /* cluster_set_api may replace it */
        api = strdup(c->api);
    }
    if (!api)
        return -ENOMEM;
    json_t *v = json_pack("{s:s, s:s?, s:s?, s:I, s:I}", "name", c->name, "memcached",
                          c->memcached[0] ? c->memcached : NULL, "api", api, "started",
                          (json_int_t)c->started, "pid", (json_int_t)getpid());
    _cleanup_free_ char *val = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    _cleanup_free_ char *key = key_of(NODES_PREFIX, c->name);
    if (!val || !key)
        return -ENOMEM;
    return create ? etcd_create(c->etcd, key, val, lease, NULL)
                  : etcd_put(c->etcd, key, val, lease);
}

static int put_own_memcached(struct cluster *c, int64_t lease)
{
    json_t *v = json_pack("{s:s}", "node", c->name);
    _cleanup_free_ char *val = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!val)
        return -ENOMEM;
    for (const char *s = c->memcached; *s;) {
        size_t len = strcspn(s, ",");
        char *one = strndup(s, len);
        _cleanup_free_ char *key = one ? key_of(MC_PREFIX, one) : NULL;
        free(one);
        if (!key)
            return -ENOMEM;
        int r = etcd_put(c->etcd, key, val, lease);
        if (r < 0)
            return r;
        s += len + (s[len] == ',');
    }
    return 0;
}

/* ---- the memcached list ---- */

/* Whether the comma-separated list holds name. */
static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !memcmp(p, name, n))
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

static int resync(struct cluster *c, int64_t *revision)
{
    struct etcd_kvs kvs;
    int r = etcd_range_prefix(c->etcd, MC_PREFIX, &kvs);
    if (r < 0)
        return r;
    enum { NAME_MAX_LEN = 300 };
    _cleanup_free_ char *list = malloc((size_t)MC_RING_MAX_SERVERS * (NAME_MAX_LEN + 1) + 1);
    if (!list) {
        etcd_kvs_free(&kvs);
        return -ENOMEM;
    }
    list[0] = '\0';
    unsigned n = 0;
    /* A bad key must not take the good ones with it (the tier refuses a
     * list with a bad or a repeated server whole). Keys spelled as their
     * canonical name go first, so of two keys for one server ("h:11211",
     * "h:011211") the one shoal writes is kept and the other is said. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < kvs.n; i++) {
            const struct etcd_kv *kv = &kvs.kv[i];
            const char *server = kv->key + strlen(MC_PREFIX);
            char name[NAME_MAX_LEN], why[200];
            if (key_has_nul(kv) || kv->too_large ||
                mc_ring_check_why(server, name, sizeof name, why, sizeof why)) {
                if (pass == 0)
                    bad_record(c, kv,
                               key_has_nul(kv) ? "a NUL byte in the key"
                               : kv->too_large ? "a value too large to read"
                                               : why);
                continue;
            }
            if ((pass == 0) != !strcmp(server, name))
                continue;
            if (listed(list, name)) {
                bad_record(c, kv, "another key names the same memcached server");
                continue;
            }
            if (n == MC_RING_MAX_SERVERS) {
                bad_record(c, kv, "more memcached servers than a ring takes");
                continue;
            }
            if (n++)
                strcat(list, ",");
            strcat(list, name);
        }
    }
    if (revision)
        *revision = kvs.revision;
    etcd_kvs_free(&kvs);
    if (c->tier)
        r = tier_memcached_set_servers(c->tier, list);
    return r;
}

static int on_change(void *arg, int64_t revision, unsigned nevents)
{
    struct cluster *c = arg;
    log_debug(cluster, "etcd: %u change(s) to the memcached list at revision %" PRId64, nevents,
              revision);
    int r = resync(c, NULL);
    if (r < 0)
        log_warn(cluster, "cannot read the memcached list: %s", etcd_error());
    return 0;
}

static void *watch_main(void *arg)
{
    struct cluster *c = arg;
    bool failing = false;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        int64_t rev = 0;
        int r = resync(c, &rev);
        if (r == 0)
            r = etcd_watch(c->etcd, MC_PREFIX, rev + 1, on_change, c, &c->stop, WATCH_MAX_MS);
        if (r < 0 && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
            if (!failing)
                log_warn(cluster, "watching the memcached list: %s (retrying)", etcd_error());
            failing = true;
            wait_stop(c, 1000);
        } else if (r == 0 && failing) {
            log_info(cluster, "watching the memcached list again");
            failing = false;
        }
    }
    return NULL;
}

/* ---- volumes handed to this node (warm moves) ---- */

static cluster_hand_over_fn hand_over_handler(struct cluster *c, void **arg)
{
    LOCK_GUARD(&c->lock);
    *arg = c->on_hand_over_arg;
    return c->on_hand_over;
}

/* A hand-over record, {"node", "from", "gen", "backing", "returned"} and
 * "settings" when given (opaque here), or NULL. */
static json_t *handover_json(const char *node, const char *from, const char *gen,
                             const char *backing, const json_t *settings, bool returned)
{
    json_t *v = json_pack("{s:s, s:s, s:s, s:s, s:b}", "node", node, "from", from, "gen", gen,
                          "backing", backing, "returned", returned);
    if (v && json_is_object(settings) && json_object_set(v, "settings", (json_t *)settings) < 0) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* The hand-over a record describes, for the handler (valid while rec
 * lives): its "gen", or NULL when the record is no hand-over. */
static const char *handover_of(json_t *rec, const char *volume, struct cluster_hand_over *h)
{
    const char *gen = json_str(rec, "gen"), *backing = json_str(rec, "backing");
    const char *from = json_str(rec, "from");
    json_t *settings = json_object_get(rec, "settings");
    *h = (struct cluster_hand_over){
        .volume = volume,
        .backing = backing,
        .from = from ? from : "",
        .gen = gen ? strtoull(gen, NULL, 16) : 0,
        .settings = json_is_object(settings) ? settings : NULL,
        .returned = json_is_true(json_object_get(rec, "returned")),
    };
    return gen && backing ? gen : NULL;
}

static void pending_drop_locked(struct cluster *c, unsigned i)
{
    free(c->pending[i].volume);
    free(c->pending[i].record);
    c->pending[i] = c->pending[--c->npending];
}

/* List a hand-over about to be written, unarmed. Returns its id for
 * pending_arm, or 0 when it could not be listed (no memory): the move
 * still happens, only without a take-back. */
static uint64_t pending_add(struct cluster *c, const char *volume, const char *record)
{
    LOCK_GUARD(&c->lock);
    if (c->npending == PENDING_MAX)
        pending_drop_locked(c, 0); /* one goes: it then waits for the lease */
    struct pending *p = &c->pending[c->npending];
    *p = (struct pending){
        .volume = strdup(volume),
        .record = strdup(record),
        .deadline_ms = now_ms() + 3000ull * c->ttl,
        .id = ++c->pending_ids,
    };
    if (!p->volume || !p->record) {
        free(p->volume);
        free(p->record);
        return 0;
    }
    c->npending++;
    return p->id;
}

/* The hand-over listed as `id` was written (armed) or not (dropped). */
static void pending_arm(struct cluster *c, uint64_t id, bool written)
{
    LOCK_GUARD(&c->lock);
    for (unsigned i = 0; id && i < c->npending; i++) {
        if (c->pending[i].id != id)
            continue;
        if (written)
            c->pending[i].armed = true;
        else
            pending_drop_locked(c, i);
        return;
    }
}

/* One hand-over from this node whose new owner did not claim it in time:
 * the record, if it is still the one written, becomes a hand-over back
 * to this node ("returned"), which adopts it at once. */
static void take_back(struct cluster *c, const char *volume, const char *record)
{
    json_t *v = json_loads(record, 0, NULL);
    struct cluster_hand_over h;
    const char *to = json_str(v, "node"), *gen = handover_of(v, volume, &h);
    json_t *back = to && gen ? handover_json(c->name, to, gen, h.backing, h.settings, true) : NULL;
    _cleanup_free_ char *val = back ? json_dumps(back, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    _cleanup_free_ char *key = key_of(OWNERS_PREFIX, volume);
    bool replaced = false;
    if (val && key && etcd_replace_if(c->etcd, key, record, val, lease_of(c), &replaced) == 0 &&
        replaced) {
        log_warn(cluster, "volume %s: node %s did not take it over within %u s: taken back", volume,
                 to, 3 * c->ttl);
        void *arg;
        cluster_hand_over_fn fn = hand_over_handler(c, &arg);
        handover_of(back, volume, &h);
        if (fn)
            fn(arg, &h);
    }
    json_decref(back);
    json_decref(v);
}

/* Hand-overs from this node (kvs: every owner record): one whose record
 * changed is no longer pending (claimed, or its lease ended); one still
 * unclaimed after 3 lease TTLs (its new owner is stopped, or cannot reach
 * etcd) is taken back, so the volume is served again rather than waiting
 * for that node or for this node's lease. */
static void take_back_stale(struct cluster *c, const struct etcd_kvs *kvs)
{
    uint64_t now = now_ms();
    for (;;) {
        char *volume = NULL, *record = NULL;
        {
            LOCK_GUARD(&c->lock);
            for (unsigned i = 0; i < c->npending && !volume; i++) {
                struct pending *p = &c->pending[i];
                if (!p->armed)
                    continue; /* its record is being written */
                const char *cur = NULL;
                for (size_t k = 0; k < kvs->n && !cur; k++)
                    if (!key_has_nul(&kvs->kv[k]) &&
                        !strncmp(kvs->kv[k].key, OWNERS_PREFIX, strlen(OWNERS_PREFIX)) &&
                        !strcmp(kvs->kv[k].key + strlen(OWNERS_PREFIX), p->volume))
                        cur = kvs->kv[k].value;
                if (!cur || strcmp(cur, p->record)) {
                    pending_drop_locked(c, i--);
                } else if (now >= p->deadline_ms) {
                    volume = p->volume;
                    record = p->record;
                    p->volume = p->record = NULL;
                    pending_drop_locked(c, i--);
                }
            }
        }
        if (!volume)
            return;
        take_back(c, volume, record);
        free(volume);
        free(record);
    }
}

/* Adopt each hand-over to this node once: the handler opens the volume
 * (which claims it under this node's lease, cluster_claim). Returns the
 * revision the records were read at (0: not read), for the next watch to
 * start after it: a change between this read and a watch from "now" would
 * be missed until the next change or WATCH_MAX_MS. */
static int64_t scan_owners(struct cluster *c)
{
    struct etcd_kvs kvs;
    if (etcd_range_prefix(c->etcd, OWNERS_PREFIX, &kvs) < 0)
        return 0;
    int64_t lease = lease_of(c);
    for (size_t i = 0; i < kvs.n; i++) {
        const struct etcd_kv *kv = &kvs.kv[i];
        const char *volume = kv->key + strlen(OWNERS_PREFIX);
        if (key_has_nul(kv) || !volume_name_valid(volume) || kv->too_large) {
            bad_record(c, kv,
                       kv->too_large ? "a value too large to read"
                                     : "not a volume's name after " OWNERS_PREFIX);
            continue;
        }
        /* The value's bytes: a NUL in them is no JSON either. */
        json_t *v = json_loadb(kv->value, kv->value_len, 0, NULL);
        const char *why = owner_record_why(v);
        if (why) {
            bad_record(c, kv, why);
            json_decref(v);
            continue;
        }
        struct cluster_hand_over h;
        const char *node = json_str(v, "node"), *gen = handover_of(v, volume, &h);
        if (!node || strcmp(node, c->name) || !gen || kvs.kv[i].lease == lease) {
            json_decref(v);
            continue;
        }
        char id[512];
        snprintf(id, sizeof id, "%s@%s", volume, gen);
        cluster_hand_over_fn fn = NULL;
        void *arg = NULL;
        {
            LOCK_GUARD(&c->lock);
            bool seen = false;
            for (unsigned k = 0; k < HANDOVER_SEEN && !seen; k++)
                seen = c->seen[k] && !strcmp(c->seen[k], id);
            if (!seen && c->on_hand_over) {
                free(c->seen[c->seen_next]);
                c->seen[c->seen_next] = strdup(id);
                c->seen_next = (c->seen_next + 1) % HANDOVER_SEEN;
                fn = c->on_hand_over;
                arg = c->on_hand_over_arg;
            }
        }
        if (fn) {
            log_info(cluster, "volume %s: %s this node by %s (move %s)", volume,
                     h.returned ? "given back to" : "handed to", h.from[0] ? h.from : "?", gen);
            fn(arg, &h);
        }
        json_decref(v);
    }
    take_back_stale(c, &kvs);
    int64_t rev = kvs.revision;
    etcd_kvs_free(&kvs);
    return rev;
}

/* While hand-overs are pending, a watch lasts only until the next one is
 * due (and a change ends it, to start the next with a new deadline). */
static uint32_t owners_watch_ms(struct cluster *c)
{
    uint64_t now = now_ms(), ms = WATCH_MAX_MS;
    LOCK_GUARD(&c->lock);
    for (unsigned i = 0; i < c->npending; i++) {
        uint64_t d = c->pending[i].deadline_ms;
        ms = MIN(ms, d > now ? d - now + 50 : 50);
    }
    return (uint32_t)ms;
}

static int on_owners_change(void *arg, int64_t revision, unsigned nevents)
{
    (void)revision, (void)nevents;
    struct cluster *c = arg;
    scan_owners(c);
    LOCK_GUARD(&c->lock);
    return c->npending ? 1 : 0;
}

static void *owners_main(void *arg)
{
    struct cluster *c = arg;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        int64_t rev = scan_owners(c);
        int r = etcd_watch(c->etcd, OWNERS_PREFIX, rev ? rev + 1 : 0, on_owners_change, c, &c->stop,
                           owners_watch_ms(c));
        if (r < 0 && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            wait_stop(c, 1000);
    }
    return NULL;
}

void cluster_on_hand_over(cluster_hand_over_fn fn, void *arg)
{
    struct cluster *c = g;
    if (!c)
        return;
    LOCK_GUARD(&c->lock);
    c->on_hand_over = fn;
    c->on_hand_over_arg = arg;
}

void cluster_on_fence(cluster_fence_fn fn, void *arg)
{
    struct cluster *c = g;
    if (!c)
        return;
    LOCK_GUARD(&c->lock);
    c->on_fence = fn;
    c->on_fence_arg = arg;
}

static bool owned_locked(struct cluster *c, const char *volume)
{
    for (unsigned i = 0; i < c->nowned; i++)
        if (!strcmp(c->owned[i], volume))
            return true;
    return false;
}

/* The volume is no longer ours; false if it was not. */
static bool owned_drop_locked(struct cluster *c, const char *volume)
{
    for (unsigned i = 0; i < c->nowned; i++)
        if (!strcmp(c->owned[i], volume)) {
            free(c->owned[i]);
            c->owned[i] = c->owned[--c->nowned];
            return true;
        }
    return false;
}

int cluster_move_check(const char *volume, const char *to, char *err, size_t errlen)
{
    struct cluster *c = g;
    if (!c) {
        snprintf(err, errlen, "this node is not in a cluster (no [cluster] etcd)");
        return -ENOTCONN;
    }
    if (!strcmp(to, c->name)) {
        snprintf(err, errlen, "volume %s is served by node %s already", volume, to);
        return -EINVAL;
    }
    {
        LOCK_GUARD(&c->lock);
        if (!owned_locked(c, volume)) {
            snprintf(err, errlen, "volume %s is not served read-write by this node", volume);
            return -ENOENT;
        }
    }
    _cleanup_free_ char *key = key_of(NODES_PREFIX, to);
    if (!key)
        return -ENOMEM;
    struct etcd_kvs kvs;
    int r = etcd_range_prefix(c->etcd, key, &kvs);
    if (r < 0) {
        snprintf(err, errlen, "cannot read the nodes from etcd: %s", etcd_error());
        return r;
    }
    bool found = false;
    for (size_t i = 0; i < kvs.n; i++)
        found = found || !strcmp(kvs.kv[i].key, key);
    etcd_kvs_free(&kvs);
    if (!found) {
        snprintf(err, errlen, "no node %s in the cluster", to);
        return -ENOENT;
    }
    return 0;
}

int cluster_hand_over(const char *volume, const char *to, uint64_t gen, const char *backing,
                      const json_t *settings, bool returned, char *err, size_t errlen)
{
    struct cluster *c = g;
    if (!c) {
        snprintf(err, errlen, "this node is not in a cluster (no [cluster] etcd)");
        return -ENOTCONN;
    }
    int64_t lease = lease_of(c);
    _cleanup_free_ char *key = key_of(OWNERS_PREFIX, volume);
    _cleanup_free_ char *old = owner_value(c, lease);
    char gs[32];
    snprintf(gs, sizeof gs, "%016" PRIx64, gen);
    /* Under this node's lease until the new owner takes it under its own:
     * if this node dies first, the record goes and anyone may claim. */
    json_t *v = handover_json(to, c->name, gs, backing, settings, returned);
    _cleanup_free_ char *val = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(v);
    if (!key || !old || !val)
        return -ENOMEM;
    uint64_t pid = pending_add(c, volume, val);
    bool replaced = false;
    int r = etcd_replace_if(c->etcd, key, old, val, lease, &replaced);
    if (r == 0 && replaced) {
        LOCK_GUARD(&c->lock);
        owned_drop_locked(c, volume);
    }
    pending_arm(c, pid, r == 0 && replaced);
    if (r < 0) {
        snprintf(err, errlen, "volume %s: cannot hand it over in etcd: %s", volume, etcd_error());
        return r;
    }
    if (!replaced) {
        snprintf(err, errlen, "volume %s: its ownership record changed meanwhile", volume);
        return -ESTALE;
    }
    log_info(cluster, "volume %s: handed over to node %s (move %s)", volume, to, gs);
    return 0;
}

/* ---- the map's secret ---- */

/* The cluster's secret for the memcached map's MACs (memcached_map.h):
 * made by the first node that starts, in etcd without a lease, read by
 * every other one. */
static int map_secret(struct cluster *c)
{
    if (!c->tier)
        return 0;
    uint8_t s[MC_MAP_SECRET];
    char hex[2 * MC_MAP_SECRET + 1];
    if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s)
        return -errno;
    for (unsigned i = 0; i < sizeof s; i++)
        snprintf(hex + 2 * i, 3, "%02x", s[i]);
    struct etcd_kvs holder = {0};
    int r = etcd_create(c->etcd, SECRET_KEY, hex, 0, &holder);
    if (r == -EEXIST) {
        const char *v = holder.n ? holder.kv[0].value : "";
        /* Hex digits only: sscanf's %x would also take a sign or "0x". */
        r = holder.n && holder.kv[0].value_len == 2 * MC_MAP_SECRET &&
                    strspn(v, "0123456789abcdefABCDEF") == 2 * MC_MAP_SECRET
                ? 0
                : -EPROTO;
        for (unsigned i = 0; r == 0 && i < sizeof s; i++) {
            unsigned b;
            if (sscanf(v + 2 * i, "%2x", &b) != 1)
                r = -EPROTO;
            s[i] = (uint8_t)b;
        }
        etcd_kvs_free(&holder);
    }
    if (r == 0)
        tier_memcached_set_map_secret(c->tier, s);
    explicit_bzero(s, sizeof s);
    explicit_bzero(hex, sizeof hex);
    return r;
}

/* ---- the lease ---- */

/* Owned volumes' names, copied under the lock (no network call or handler
 * runs under it); *n of them. NULL and 0 when none or out of memory. */
static char **owned_names_locked(struct cluster *c, unsigned *n)
{
    *n = 0;
    char **names = calloc(c->nowned + 1, sizeof *names);
    for (unsigned i = 0; names && i < c->nowned; i++)
        if ((names[*n] = strdup(c->owned[i])))
            (*n)++;
    return names;
}

static void names_free(char **names, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Call the fence handler for each name (under fence_lock, not lock). */
static void fence_call(struct cluster *c, char **names, unsigned n, bool fenced)
{
    cluster_fence_fn fn;
    void *arg;
    {
        LOCK_GUARD(&c->lock);
        fn = c->on_fence;
        arg = c->on_fence_arg;
    }
    for (unsigned i = 0; fn && i < n; i++)
        fn(arg, names[i], fenced);
}

/* How long after the last renewal's send the owned volumes are fenced: a
 * quarter of the TTL before etcd can expire the lease (etcd counts from
 * when it got the renewal, which is later), so their writes have stopped
 * before another node can take them. */
static uint64_t fence_after_ms(const struct cluster *c)
{
    return (uint64_t)c->ttl * 1000 - (uint64_t)c->ttl * 1000 / 4;
}

static int reclaim_fenced(struct cluster *c);

/* The lease was renewed: renewals sent at `sent` are answered. If the
 * volumes were fenced and the lease never lapsed (etcd still knew it), no
 * other node could take them: the fence is lifted. After a relet whose
 * claims failed, they are tried again first. */
static void renewed(struct cluster *c, uint64_t sent)
{
    LOCK_GUARD(&c->fence_lock);
    char **names = NULL;
    unsigned n = 0;
    {
        LOCK_GUARD(&c->lock);
        if (sent > c->renewed_ms)
            c->renewed_ms = sent;
        if (!c->fenced)
            return;
        if (!c->reclaim) {
            c->fenced = false;
            names = owned_names_locked(c, &n);
        }
    }
    if (!names) {
        (void)reclaim_fenced(c);
        return;
    }
    log_info(cluster, "etcd lease renewed in time: %u volume(s) no longer fenced", n);
    fence_call(c, names, n, false);
    names_free(names, n);
}

/* The fencer: once the lease has gone unrenewed for fence_after_ms, the
 * owned volumes' writes are fenced (the handler), until renewed() or
 * relet() lifts it. */
static void *fencer_main(void *arg)
{
    struct cluster *c = arg;
    for (;;) {
        uint64_t due, now = now_ms();
        {
            LOCK_GUARD(&c->lock);
            if (c->stop)
                return NULL;
            due = c->fenced ? now + 1000 : c->renewed_ms + fence_after_ms(c);
        }
        if (now < due) {
            if (wait_stop(c, due - now))
                return NULL;
            continue;
        }
        LOCK_GUARD(&c->fence_lock);
        char **names = NULL;
        unsigned n = 0;
        uint64_t ago;
        {
            LOCK_GUARD(&c->lock);
            if (c->fenced || now_ms() < c->renewed_ms + fence_after_ms(c))
                continue; /* renewed meanwhile */
            c->fenced = true;
            ago = now_ms() - c->renewed_ms;
            names = owned_names_locked(c, &n);
        }
        log_warn(cluster,
                 "etcd lease not renewed for %" PRIu64 " ms (TTL %u s): fencing the writes of "
                 "%u volume(s) owned here until it is",
                 ago, c->ttl, n);
        fence_call(c, names, n, true);
        names_free(names, n);
    }
}

/* Claim every owned volume again under the current lease and lift the
 * fence of each one claimed; one that another node took meanwhile stays
 * fenced here (its writes refused, its reads from the back end) and is no
 * longer ours. Under fence_lock. 0, or an etcd error: then the node stays
 * fenced and the next renewal tries again (c->reclaim). */
static int reclaim_fenced(struct cluster *c)
{
    char **names = NULL;
    unsigned n = 0;
    int64_t lease;
    {
        LOCK_GUARD(&c->lock);
        lease = c->lease;
        names = owned_names_locked(c, &n);
    }
    _cleanup_free_ char *val = owner_value(c, lease);
    int r = val && (names || n == 0) ? 0 : -ENOMEM;
    for (unsigned i = 0; r == 0 && i < n; i++) {
        _cleanup_free_ char *key = key_of(OWNERS_PREFIX, names[i]);
        struct etcd_kvs holder = {0};
        int e = key ? etcd_create(c->etcd, key, val, lease, &holder) : -ENOMEM;
        if (e == -EEXIST && holder.n && holder.kv[0].lease == lease)
            e = 0; /* claimed in an earlier try */
        if (e == -EEXIST) {
            json_t *hv = holder.n ? json_loads(holder.kv[0].value, 0, NULL) : NULL;
            log_error(cluster,
                      "volume %s: node %s took its ownership while this node's lease had "
                      "expired; its writes stay fenced here (remove it here)",
                      names[i], json_str(hv, "node") ? json_str(hv, "node") : "?");
            json_decref(hv);
            LOCK_GUARD(&c->lock);
            owned_drop_locked(c, names[i]);
        } else if (e < 0) {
            log_error(cluster, "volume %s: cannot claim it again: %s (fenced until it is)",
                      names[i], etcd_error());
            r = e;
        } else {
            fence_call(c, &names[i], 1, false);
        }
        etcd_kvs_free(&holder);
    }
    {
        LOCK_GUARD(&c->lock);
        c->reclaim = r < 0;
        c->fenced = r < 0;
    }
    names_free(names, n);
    return r;
}

/* The lease expired (etcd was out of reach for a TTL): take a new one,
 * register again and claim the volumes again (reclaim_fenced). */
static int relet(struct cluster *c)
{
    int64_t lease;
    uint64_t sent = now_ms();
    int r = etcd_lease_grant(c->etcd, c->ttl, &lease);
    if (r < 0)
        return r;
    if ((r = put_node(c, lease, false)) < 0 || (r = put_own_memcached(c, lease)) < 0) {
        etcd_lease_revoke(c->etcd, lease);
        return r;
    }
    LOCK_GUARD(&c->fence_lock);
    char **names = NULL;
    unsigned n = 0;
    {
        LOCK_GUARD(&c->lock);
        c->lease = lease;
        c->renewed_ms = sent;
        /* Fenced already: the fencer acts before etcd can expire the
         * lease. If it had not run, the fence comes now, before a claim
         * can find another owner. */
        if (!c->fenced)
            names = owned_names_locked(c, &n);
        c->fenced = true;
        c->reclaim = true;
    }
    fence_call(c, names, n, true);
    names_free(names, n);
    return reclaim_fenced(c);
}

static void *keepalive_main(void *arg)
{
    struct cluster *c = arg;
    bool failing = false;
    uint64_t period = (uint64_t)c->ttl * 1000 / 3;
    while (!wait_stop(c, period)) {
        int64_t ttl = 0;
        uint64_t sent = now_ms();
        int r = etcd_lease_keepalive(c->etcd, lease_of(c), &ttl);
        if (r == 0)
            renewed(c, sent);
        if (r == -ENOENT) {
            log_warn(cluster, "etcd lease expired: registering node %s again", c->name);
            r = relet(c);
        }
        if (r < 0 && !failing)
            log_warn(cluster, "cannot renew the etcd lease: %s (retrying)", etcd_error());
        else if (r == 0 && failing)
            log_info(cluster, "etcd lease renewed again");
        failing = r < 0;
        /* Retry sooner while failing: the lease runs out meanwhile. */
        period = failing ? 1000 : (uint64_t)c->ttl * 1000 / 3;
    }
    return NULL;
}

/* ---- start, stop ---- */

static void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nowned; i++)
        free(c->owned[i]);
    for (unsigned i = 0; i < HANDOVER_SEEN; i++)
        free(c->seen[i]);
    for (unsigned i = 0; i < c->npending; i++) {
        free(c->pending[i].volume);
        free(c->pending[i].record);
    }
    etcd_close(c->etcd);
    free(c->endpoints);
    free(c->memcached);
    free(c->api);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->fence_lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

static int canon_list(const char *in, char **out, char *err, size_t errlen)
{
    size_t cap = (in ? strlen(in) : 0) * 2 + 64;
    char *list = calloc(1, cap);
    if (!list)
        return -ENOMEM;
    for (const char *s = in ? in : ""; *s;) {
        size_t len = strcspn(s, ",");
        char one[300], name[300];
        snprintf(one, sizeof one, "%.*s", (int)len, s);
        if (len >= sizeof one || mc_ring_check(one, name, sizeof name) < 0) {
            snprintf(err, errlen, "bad memcached server \"%s\" (want HOST:PORT)", one);
            free(list);
            return -EINVAL;
        }
        if (strlen(list) + strlen(name) + 2 > cap) {
            free(list);
            return -ENOMEM;
        }
        if (*list)
            strcat(list, ",");
        strcat(list, name);
        s += len + (s[len] == ',');
    }
    *out = list;
    return 0;
}

/* Register the node's name; an earlier run's registration (killed, its
 * lease not yet expired) is waited out. */
static int register_node(struct cluster *c, char *err, size_t errlen)
{
    uint64_t until = now_ms() + (uint64_t)c->ttl * 1500 + 1000;
    bool said = false;
    for (;;) {
        int r = put_node(c, c->lease, true);
        if (r != -EEXIST)
            return r;
        if (now_ms() >= until) {
            snprintf(err, errlen,
                     "node name %s is registered in etcd by a running shoald (give this one "
                     "another --node-name)",
                     c->name);
            return -EADDRINUSE;
        }
        if (!said)
            log_info(cluster,
                     "node %s is still registered in etcd (an earlier run?): waiting up to %u s "
                     "for its lease to expire",
                     c->name, c->ttl * 3 / 2 + 1);
        said = true;
        usleep(500 * 1000);
        /* Our own lease, granted before the wait, lives no longer than the
         * old one (the keepalive thread starts after registration): kept
         * alive here, or, once lost, taken again. Without this a restart
         * right after a crash failed: both leases ran out together and
         * the registration named a lease etcd no longer knew. */
        int64_t ttl;
        uint64_t sent = now_ms();
        r = etcd_lease_keepalive(c->etcd, c->lease, &ttl);
        if (r == 0)
            c->renewed_ms = sent; /* the fencer counts from there */
        if (r == -ENOENT) {
            c->renewed_ms = now_ms();
            r = etcd_lease_grant(c->etcd, c->ttl, &c->lease);
            if (r < 0)
                return r;
        }
    }
}

int cluster_start(const struct cluster_config *cfg, char *err, size_t errlen)
{
    if (g) {
        snprintf(err, errlen, "the cluster is started already");
        return -EALREADY;
    }
    struct cluster *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->fence_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->ttl = cfg->lease_ttl_s ? cfg->lease_ttl_s : CLUSTER_LEASE_TTL_S;
    c->tier = cfg->tier;
    c->started = time(NULL);
    if (cfg->node_name && *cfg->node_name)
        snprintf(c->name, sizeof c->name, "%s", cfg->node_name);
    else if (gethostname(c->name, sizeof c->name - 1) < 0 || !c->name[0])
        snprintf(c->name, sizeof c->name, "localhost");
    c->endpoints = strdup(cfg->etcd ? cfg->etcd : "");
    c->api = strdup(cfg->api ? cfg->api : "");
    int r =
        !c->endpoints || !c->api ? -ENOMEM : canon_list(cfg->memcached, &c->memcached, err, errlen);
    if (r == 0 && (r = etcd_open(c->endpoints, 0, &cfg->tls, &c->etcd)) < 0)
        snprintf(err, errlen, "%s", etcd_error());
    c->renewed_ms = now_ms();
    if (r == 0 && (r = etcd_lease_grant(c->etcd, c->ttl, &c->lease)) < 0)
        snprintf(err, errlen, "cannot take a lease in etcd: %s", etcd_error());
    if (r < 0) {
        cluster_free(c);
        return r;
    }
    r = register_node(c, err, errlen);
    if (r < 0 && r != -EADDRINUSE)
        snprintf(err, errlen, "cannot register node %s in etcd: %s", c->name, etcd_error());
    if (r == 0 && (r = put_own_memcached(c, c->lease)) < 0)
        snprintf(err, errlen, "cannot register memcached %s in etcd: %s", c->memcached,
                 etcd_error());
    if (r == 0 && (r = resync(c, NULL)) < 0)
        snprintf(err, errlen, "cannot read the memcached list from etcd: %s", etcd_error());
    if (r == 0 && (r = map_secret(c)) < 0)
        snprintf(err, errlen, "cannot read the map's secret from etcd (%s): %s", SECRET_KEY,
                 r == -EPROTO ? "not 64 hex digits" : etcd_error());
    if (r == 0) {
        r = -pthread_create(&c->keepalive, NULL, keepalive_main, c);
        c->keepalive_started = r == 0;
    }
    if (r == 0) {
        r = -pthread_create(&c->watch, NULL, watch_main, c);
        c->watch_started = r == 0;
    }
    if (r == 0) {
        r = -pthread_create(&c->owners_watch, NULL, owners_main, c);
        c->owners_started = r == 0;
    }
    if (r == 0) {
        r = -pthread_create(&c->fencer, NULL, fencer_main, c);
        c->fencer_started = r == 0;
    }
    if (r < 0) {
        if (!err[0])
            snprintf(err, errlen, "cannot start the cluster threads: %s", strerror(-r));
        g = c;
        cluster_stop();
        return r;
    }
    log_info(cluster, "node %s joined the cluster (etcd %s, lease %" PRIx64 ", TTL %u s%s%s)",
             c->name, c->endpoints, (uint64_t)c->lease, c->ttl,
             c->memcached[0] ? ", memcached " : "", c->memcached);
    g = c;
    return 0;
}

void cluster_stop(void)
{
    struct cluster *c = g;
    if (!c)
        return;
    {
        LOCK_GUARD(&c->lock);
        __atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&c->cond);
    }
    if (c->keepalive_started)
        pthread_join(c->keepalive, NULL);
    if (c->watch_started)
        pthread_join(c->watch, NULL);
    if (c->owners_started)
        pthread_join(c->owners_watch, NULL);
    if (c->fencer_started)
        pthread_join(c->fencer, NULL);
    /* Revoking the lease deletes every key under it at once. */
    if (c->lease && etcd_lease_revoke(c->etcd, c->lease) < 0)
        log_warn(cluster, "cannot revoke the etcd lease (its keys go when it expires): %s",
                 etcd_error());
    else
        log_info(cluster, "node %s left the cluster", c->name);
    g = NULL;
    cluster_free(c);
}

/* ---- ownership ---- */

/* gen: a hand-over's generation (hex) the claim must find, or NULL. */
static int claim(const char *volume, bool readonly, const char *gen, char *err, size_t errlen)
{
    struct cluster *c = g;
    if (!c || readonly)
        return 0;
    _cleanup_free_ char *key = key_of(OWNERS_PREFIX, volume);
    int64_t lease = lease_of(c);
    _cleanup_free_ char *val = owner_value(c, lease);
    if (!key || !val)
        return -ENOMEM;
    struct etcd_kvs holder = {0};
    /* A hand-over is taken only as the record it was seen in: its keys
     * were published under its generation. */
    int r = gen ? -EEXIST : etcd_create(c->etcd, key, val, lease, &holder);
    if (gen && etcd_range_prefix(c->etcd, key, &holder) < 0) {
        snprintf(err, errlen, "volume %s: cannot read its ownership: %s", volume, etcd_error());
        return -EIO;
    }
    if (gen) {
        /* The prefix also finds longer names: keep the exact one first. */
        size_t k = 0;
        while (k < holder.n && (strcmp(holder.kv[k].key, key) || key_has_nul(&holder.kv[k])))
            k++;
        if (k == holder.n) {
            etcd_kvs_free(&holder);
            snprintf(err, errlen, "volume %s: its hand-over is gone", volume);
            return -EBUSY;
        }
        struct etcd_kv t = holder.kv[0];
        holder.kv[0] = holder.kv[k];
        holder.kv[k] = t;
    }
    if (r == -EEXIST) {
        json_t *hv =
            holder.n ? json_loadb(holder.kv[0].value, holder.kv[0].value_len, 0, NULL) : NULL;
        const char *node = json_str(hv, "node"), *why = holder.n ? owner_record_why(hv) : NULL;
        if (why) {
            /* Not shoal's: whose it is cannot be told, so it is not taken. */
            snprintf(err, errlen,
                     "volume %s: its ownership record %s in etcd is not shoal's (%s): delete it "
                     "if no node serves %s",
                     volume, key, why, volume);
        } else if (holder.n && holder.kv[0].lease == lease && node && !strcmp(node, c->name)) {
            r = 0; /* ours already (added again after a failed add, say) */
        } else if (holder.n && node && !strcmp(node, c->name) && json_str(hv, "gen") &&
                   (!gen || !strcmp(gen, json_str(hv, "gen")))) {
            /* Handed to this node by its owner (a warm move): take it
             * under this node's lease, if it is still the record seen. */
            bool taken = false;
            r = etcd_replace_if(c->etcd, key, holder.kv[0].value, val, lease, &taken);
            if (r == 0 && !taken)
                r = -EBUSY;
            if (r < 0)
                snprintf(err, errlen, "volume %s: its hand-over changed meanwhile", volume);
        } else {
            snprintf(err, errlen, "volume %s is served read-write by node %s", volume,
                     node ? node : "(unknown)");
        }
        json_decref(hv);
        etcd_kvs_free(&holder);
        if (r < 0)
            return -EBUSY;
    } else if (r < 0) {
        snprintf(err, errlen, "volume %s: cannot take its ownership in etcd: %s", volume,
                 etcd_error());
        return r;
    }
    LOCK_GUARD(&c->lock);
    for (unsigned i = 0; i < c->nowned; i++)
        if (!strcmp(c->owned[i], volume))
            return 0;
    if (c->nowned == MAX_OWNED || !(c->owned[c->nowned] = strdup(volume))) {
        snprintf(err, errlen, "volume %s: too many volumes to track", volume);
        return -ENOMEM;
    }
    c->nowned++;
    log_info(cluster, "volume %s: owned read-write by node %s", volume, c->name);
    return 0;
}

int cluster_claim(const char *volume, bool readonly, char *err, size_t errlen)
{
    return claim(volume, readonly, NULL, err, errlen);
}

int cluster_claim_moved(const char *volume, uint64_t gen, char *err, size_t errlen)
{
    char gs[32];
    snprintf(gs, sizeof gs, "%016" PRIx64, gen);
    return claim(volume, false, gs, err, errlen);
}

void cluster_release(const char *volume)
{
    struct cluster *c = g;
    if (!c)
        return;
    {
        LOCK_GUARD(&c->lock);
        if (!owned_drop_locked(c, volume))
            return;
    }
    _cleanup_free_ char *key = key_of(OWNERS_PREFIX, volume);
    _cleanup_free_ char *val = owner_value(c, lease_of(c));
    bool deleted = false;
    if (!key || !val || etcd_delete_if(c->etcd, key, val, &deleted) < 0)
        log_warn(cluster, "volume %s: cannot release its ownership (it goes with the lease): %s",
                 volume, etcd_error());
    else if (deleted)
        log_info(cluster, "volume %s: ownership released", volume);
}

/* ---- status and the memcached list ---- */

/* What this node knows without etcd: whether it is fenced, the volumes
 * whose owner keys it holds, and how long ago etcd last answered a
 * renewal (the fencer's clock). Shown also when etcd cannot be read,
 * which is when an admin asks why writes fail. */
static json_t *own_view(struct cluster *c)
{
    json_t *owned = json_array();
    LOCK_GUARD(&c->lock);
    for (unsigned i = 0; i < c->nowned; i++)
        json_array_append_new(owned, json_string(c->owned[i]));
    uint64_t now = now_ms();
    double ago = now > c->renewed_ms ? (double)(now - c->renewed_ms) / 1000.0 : 0.0;
    return json_pack("{s:b, s:o, s:f}", "fenced", c->fenced, "owned", owned,
                     "lease_renewed_seconds_ago", ago);
}

int cluster_status(json_t **out)
{
    struct cluster *c = g;
    if (!c) {
        *out = json_pack("{s:b}", "enabled", 0);
        return *out ? 0 : -ENOMEM;
    }
    json_t *nodes = json_array(), *mc = json_array(), *owners = json_array(), *ring = json_array();
    struct etcd_kvs kvs; /* empty when etcd cannot be read */
    int r = etcd_range_prefix(c->etcd, CLUSTER_PREFIX, &kvs);
    json_t *etcd_err = r < 0 ? json_string(etcd_error()) : json_null();
    for (size_t i = 0; i < kvs.n; i++) {
        const char *k = kvs.kv[i].key;
        /* A key with a NUL would be shown as another one (nodes/A\0x as A). */
        if (key_has_nul(&kvs.kv[i]) || kvs.kv[i].too_large)
            continue;
        json_t *v = json_loadb(kvs.kv[i].value, kvs.kv[i].value_len, 0, NULL);
        json_t *name = NULL;
        if (!strncmp(k, NODES_PREFIX, strlen(NODES_PREFIX)) && json_is_object(v) &&
            (name = json_string(k + strlen(NODES_PREFIX)))) { /* NULL: not UTF-8 */
            json_object_set_new(v, "name", name);
            json_object_set_new(v, "self",
                                json_boolean(!strcmp(k + strlen(NODES_PREFIX), c->name)));
            json_array_append(nodes, v);
        } else if (!strncmp(k, MC_PREFIX, strlen(MC_PREFIX))) {
            const char *node = json_str(v, "node");
            json_array_append_new(mc, json_pack("{s:s, s:s?, s:b}", "server", k + strlen(MC_PREFIX),
                                                "node", node, "leased", kvs.kv[i].lease != 0));
        } else if (!strncmp(k, OWNERS_PREFIX, strlen(OWNERS_PREFIX)) &&
                   volume_name_valid(k + strlen(OWNERS_PREFIX)) && !owner_record_why(v)) {
            /* Only those the nodes honour (scan_owners says the others). */
            const char *node = json_str(v, "node");
            json_array_append_new(owners, json_pack("{s:s, s:s?}", "volume",
                                                    k + strlen(OWNERS_PREFIX), "node", node));
        }
        json_decref(v);
    }
    etcd_kvs_free(&kvs);
    char list[MC_RING_MAX_SERVERS * 280] = "";
    if (c->tier && tier_memcached_servers(c->tier, list, sizeof list) >= 0)
        for (const char *s = list; *s;) {
            size_t len = strcspn(s, ",");
            json_array_append_new(ring, json_stringn(s, len));
            s += len + (s[len] == ',');
        }
    /* Without etcd the lists are empty and etcd_error says why: the
     * node's own view (own_view) and its tier's figures still answer. */
    *out = json_pack("{s:b, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:o}", "enabled", 1, "node", c->name,
                     "etcd", c->endpoints, "lease_ttl", (int)c->ttl, "etcd_error", etcd_err, "ring",
                     ring, "nodes", nodes, "memcached", mc, "owners", owners);
    if (*out)
        json_object_update_new(*out, own_view(c));
    return *out ? 0 : -ENOMEM;
}

static int mc_key(const char *server, char *canon, size_t canonlen, char **key, char *err,
                  size_t errlen)
{
    if (!g) {
        snprintf(err, errlen, "this node is not in a cluster (no [cluster] etcd)");
        return -ENOTCONN;
    }
    if (mc_ring_check(server, canon, canonlen) < 0) {
        snprintf(err, errlen, "bad memcached server \"%s\" (want HOST:PORT)", server);
        return -EINVAL;
    }
    *key = key_of(MC_PREFIX, canon);
    return *key ? 0 : -ENOMEM;
}

int cluster_memcached_add(const char *server, char *canon, size_t canonlen, char *err,
                          size_t errlen)
{
    _cleanup_free_ char *key = NULL;
    int r = mc_key(server, canon, canonlen, &key, err, errlen);
    if (r < 0)
        return r;
    r = etcd_put(g->etcd, key, "{\"node\":null}", 0);
    if (r < 0)
        snprintf(err, errlen, "%s", etcd_error());
    else
        log_info(cluster, "memcached %s added to the cluster", canon);
    return r;
}

int cluster_memcached_remove(const char *server, char *canon, size_t canonlen, char *err,
                             size_t errlen)
{
    _cleanup_free_ char *key = NULL;
    int r = mc_key(server, canon, canonlen, &key, err, errlen);
    if (r < 0)
        return r;
    bool deleted = false;
    r = etcd_delete(g->etcd, key, &deleted);
    if (r < 0) {
        snprintf(err, errlen, "%s", etcd_error());
        return r;
    }
    if (!deleted) {
        snprintf(err, errlen, "memcached %s is not in the cluster", canon);
        return -ENOENT;
    }
    log_info(cluster, "memcached %s removed from the cluster", canon);
    return 0;
}
