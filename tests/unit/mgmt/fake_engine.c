/* Fake engine for the management tests; see fake_engine.h. */
#include "fake_engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "core/vol_fence.h"

/* The stat descriptor tables are the engine's own (src/core/stat_descs.c,
 * linked in): the fake fills snapshots, the real tables render them. */

struct volume {
    struct volume *next;
    struct engine *e;
    char name[256];
    char backend[256];
    uint64_t size;
    bool readonly, enabled, removed;
    unsigned conns;
    int refs; /* held by callers (the registry's own link is not counted) */
    struct prefetch_status pf;
    struct volume_snapshot snap;
};

struct engine {
    pthread_mutex_t lock;
    struct volume *vols; /* in insertion order */
    struct cache_snapshot cache;
    struct fake_calls calls;
    int refs;
};

static void fill_hist(struct histogram_snap *h, uint64_t base)
{
    memset(h, 0, sizeof *h);
    for (int i = 3; i < 12; i++) {
        h->buckets[i] = base * (uint64_t)(i % 4 + 1);
        h->count += h->buckets[i];
        h->sum_ns += h->buckets[i] * (1000ull << i) / 2;
    }
}

static struct volume *new_volume(struct engine *e, const char *name, const char *backend,
                                 uint64_t size)
{
    struct volume *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    v->e = e;
    snprintf(v->name, sizeof v->name, "%s", name);
    snprintf(v->backend, sizeof v->backend, "%s", backend);
    v->size = size;
    v->enabled = true;
    /* Append, keeping insertion order as the real registry does. */
    struct volume **pp = &e->vols;
    while (*pp)
        pp = &(*pp)->next;
    *pp = v;
    return v;
}

static void free_volumes_locked(struct engine *e)
{
    while (e->vols) {
        struct volume *v = e->vols;
        e->vols = v->next;
        free(v);
    }
}

void fake_engine_reset(struct engine *e)
{
    pthread_mutex_lock(&e->lock);
    free_volumes_locked(e);
    memset(&e->calls, 0, sizeof e->calls);

    struct volume *v = new_volume(e, "vm1", "file /var/lib/shoal/vm1.img", 1ull << 30);
    struct volume_snapshot *s = &v->snap;
    s->read_ops = 1000;
    s->read_bytes = 4096000;
    s->read_hit_bytes = 3072000;
    s->read_miss_bytes = 1024000;
    s->write_ops = 200;
    s->write_bytes = 819200;
    s->trim_ops = 3;
    s->zero_ops = 4;
    s->flush_ops = 5;
    s->errors = 1;
    s->cached_blocks = 750;
    s->hit_ratio = 0.75;
    s->offload_ratio = 0.75;
    fill_hist(&s->lat_read_hit, 10);
    fill_hist(&s->lat_read_miss, 3);
    fill_hist(&s->lat_write, 2);

    v = new_volume(e, "gold.base-2", "nbd nbd://array/\"gold\"\\base\nsecond line", 256ull << 20);
    v->enabled = false;
    v->readonly = true;
    v->conns = 2;
    v->snap.hit_ratio = NAN; /* no reads yet: 0/0 */
    v->snap.offload_ratio = NAN;

    struct cache_snapshot *c = &e->cache;
    memset(c, 0, sizeof *c);
    c->capacity_bytes = 1ull << 30;
    c->used_bytes = 512ull << 20;
    c->unique_blocks = 131072;
    c->logical_blocks = 393216;
    c->logical_bytes = 393216ull * 4096;
    c->metadata_bytes = 131072ull * 96;
    c->evictions = 42;
    c->dedup_ratio = 3.0;
    c->metadata_bytes_per_block = 96.0;
    c->fill_ratio = 0.5;
    pthread_mutex_unlock(&e->lock);
}

struct engine *fake_engine_new(void)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    pthread_mutex_init(&e->lock, NULL);
    fake_engine_reset(e);
    return e;
}

void fake_engine_free(struct engine *e)
{
    free_volumes_locked(e);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void fake_engine_calls(struct engine *e, struct fake_calls *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->calls;
    pthread_mutex_unlock(&e->lock);
}

int fake_engine_refs(struct engine *e)
{
    pthread_mutex_lock(&e->lock);
    int r = e->refs;
    pthread_mutex_unlock(&e->lock);
    return r;
}

/* ---- engine.h ---- */

bool volume_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static struct volume *find_locked(struct engine *e, const char *name)
{
    for (struct volume *v = e->vols; v; v = v->next)
        if (!*name || strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

/* The real ones live in src/backend/backend.c, which this test does not link. */
const char *backend_open_error(void)
{
    return "";
}

void backend_set_open_error(const char *fmt, ...)
{
    (void)fmt;
}

int engine_add_volume(struct engine *e, const struct volume_config *cfg)
{
    pthread_mutex_lock(&e->lock);
    struct fake_calls *c = &e->calls;
    c->add++;
    snprintf(c->last_add.name, sizeof c->last_add.name, "%s", cfg->name);
    snprintf(c->last_add.spec, sizeof c->last_add.spec, "%s", cfg->backend.spec);
    c->last_add.readonly = cfg->readonly;
    c->last_add.disabled = cfg->disabled;
    c->last_add.backend_readonly = cfg->backend.readonly;
    c->last_add.direct = cfg->backend.direct;
    c->last_add.conns = cfg->backend.conns;
    c->last_add.backing_dirs[0] = '\0';
    for (const char *const *d = cfg->backend.backing_dirs; d && *d; d++) {
        size_t off = strlen(c->last_add.backing_dirs);
        snprintf(c->last_add.backing_dirs + off, sizeof c->last_add.backing_dirs - off, "%s%s",
                 off ? ":" : "", *d);
    }
    int r = 0;
    if (!volume_name_valid(cfg->name))
        r = -EINVAL;
    else if (find_locked(e, cfg->name))
        r = -EEXIST;
    else if (strncmp(cfg->backend.spec, "/nonexistent", 12) == 0)
        r = -ENOENT;
    else if (strncmp(cfg->backend.spec, "/forbidden", 10) == 0)
        r = -EPERM;
    if (r == 0) {
        char desc[256];
        snprintf(desc, sizeof desc, "file %s", cfg->backend.spec);
        struct volume *v = new_volume(e, cfg->name, desc, 64ull << 20);
        v->readonly = cfg->readonly;
        v->enabled = !cfg->disabled;
    }
    pthread_mutex_unlock(&e->lock);
    return r;
}

int engine_remove_volume(struct engine *e, const char *name, bool force)
{
    pthread_mutex_lock(&e->lock);
    e->calls.remove++;
    snprintf(e->calls.remove_name, sizeof e->calls.remove_name, "%s", name);
    e->calls.remove_force = force;
    int r = 0;
    struct volume **pp = &e->vols;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    if (!*pp) {
        r = -ENOENT;
    } else if ((*pp)->conns && !force) {
        r = -EBUSY;
    } else {
        struct volume *v = *pp;
        *pp = v->next;
        v->removed = true;
        if (v->refs == 0)
            free(v);
    }
    pthread_mutex_unlock(&e->lock);
    return r;
}

struct volume *engine_get_volume(struct engine *e, const char *name)
{
    pthread_mutex_lock(&e->lock);
    struct volume *v = find_locked(e, name);
    if (v) {
        v->refs++;
        e->refs++;
    }
    pthread_mutex_unlock(&e->lock);
    return v;
}

void volume_get(struct volume *v)
{
    pthread_mutex_lock(&v->e->lock);
    v->refs++;
    v->e->refs++;
    pthread_mutex_unlock(&v->e->lock);
}

void volume_put(struct volume *v)
{
    struct engine *e = v->e;
    pthread_mutex_lock(&e->lock);
    e->refs--;
    if (--v->refs == 0 && v->removed)
        free(v);
    pthread_mutex_unlock(&e->lock);
}

int engine_for_each_volume(struct engine *e, int (*fn)(struct volume *v, void *opaque),
                           void *opaque)
{
    struct volume *list[64];
    unsigned n = 0;
    pthread_mutex_lock(&e->lock);
    for (struct volume *v = e->vols; v && n < ARRAY_SIZE(list); v = v->next) {
        v->refs++;
        e->refs++;
        list[n++] = v;
    }
    pthread_mutex_unlock(&e->lock);
    int r = 0;
    for (unsigned i = 0; i < n; i++) {
        if (r == 0)
            r = fn(list[i], opaque);
        volume_put(list[i]);
    }
    return r;
}

unsigned engine_volume_count(struct engine *e)
{
    unsigned n = 0;
    pthread_mutex_lock(&e->lock);
    for (struct volume *v = e->vols; v; v = v->next)
        n++;
    pthread_mutex_unlock(&e->lock);
    return n;
}

uint64_t engine_cache_max_bytes(struct engine *e)
{
    (void)e;
    return 64ull << 30;
}

int engine_resize_cache(struct engine *e, uint64_t bytes)
{
    pthread_mutex_lock(&e->lock);
    e->calls.resize++;
    e->calls.resize_bytes = bytes;
    int r = bytes < (1u << 20) ? -EINVAL : 0;
    if (r == 0) {
        e->cache.capacity_bytes = bytes;
        e->cache.fill_ratio = (double)e->cache.used_bytes / (double)bytes;
    }
    pthread_mutex_unlock(&e->lock);
    return r;
}

const char *volume_name(const struct volume *v)
{
    return v->name;
}

uint64_t volume_size(const struct volume *v)
{
    return v->size;
}

bool volume_readonly(const struct volume *v)
{
    return v->readonly;
}

int volume_fenced(const struct volume *v)
{
    (void)v;
    return 0;
}

bool volume_enabled(const struct volume *v)
{
    pthread_mutex_lock(&v->e->lock);
    bool on = v->enabled;
    pthread_mutex_unlock(&v->e->lock);
    return on;
}

void volume_describe_backend(const struct volume *v, char *buf, size_t len)
{
    snprintf(buf, len, "%s", v->backend);
}

/* A file volume's defaults: no read-ahead, buffered, one connection. */
void volume_get_settings(const struct volume *v, struct volume_settings *out)
{
    (void)v;
    *out = (struct volume_settings){.readahead = 0};
}

unsigned volume_connections(const struct volume *v)
{
    return v->conns;
}

int volume_set_enabled(struct volume *v, bool on)
{
    pthread_mutex_lock(&v->e->lock);
    v->e->calls.set_enabled++;
    snprintf(v->e->calls.enabled_name, sizeof v->e->calls.enabled_name, "%s", v->name);
    v->e->calls.enabled_on = on;
    v->enabled = on;
    pthread_mutex_unlock(&v->e->lock);
    return 0;
}

int volume_invalidate(struct volume *v, uint64_t offset, uint64_t length)
{
    pthread_mutex_lock(&v->e->lock);
    struct fake_calls *c = &v->e->calls;
    c->invalidate++;
    snprintf(c->invalidate_name, sizeof c->invalidate_name, "%s", v->name);
    c->invalidate_offset = offset;
    c->invalidate_length = length;
    pthread_mutex_unlock(&v->e->lock);
    return 0;
}

int volume_prefetch_start(struct volume *v, uint64_t offset, uint64_t length)
{
    pthread_mutex_lock(&v->e->lock);
    struct fake_calls *c = &v->e->calls;
    c->prefetch++;
    snprintf(c->prefetch_name, sizeof c->prefetch_name, "%s", v->name);
    c->prefetch_offset = offset;
    c->prefetch_length = length;
    int r = 0;
    if (v->pf.running) {
        r = -EBUSY;
    } else {
        v->pf = (struct prefetch_status){.running = true, .offset = offset, .length = length};
    }
    pthread_mutex_unlock(&v->e->lock);
    return r;
}

void volume_prefetch_status(struct volume *v, struct prefetch_status *out)
{
    pthread_mutex_lock(&v->e->lock);
    /* Each look advances the fake prefetch by a quarter. */
    struct prefetch_status *pf = &v->pf;
    if (pf->running) {
        pf->done_bytes += MAX(pf->length / 4, 1);
        if (pf->done_bytes >= pf->length) {
            pf->done_bytes = pf->length;
            pf->running = false;
        }
    }
    *out = *pf;
    pthread_mutex_unlock(&v->e->lock);
}

void volume_snapshot(struct volume *v, struct volume_snapshot *out)
{
    pthread_mutex_lock(&v->e->lock);
    *out = v->snap;
    out->size_bytes = v->size;
    out->connections = v->conns;
    out->enabled = v->enabled;
    pthread_mutex_unlock(&v->e->lock);
}

void cache_snapshot(struct engine *e, struct cache_snapshot *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->cache;
    pthread_mutex_unlock(&e->lock);
}

/* Miss-ratio curves: a fixed shape from the cache size, so renderers can be
 * checked (hit ratio rises with the factor; a volume's is half the cache's). */
static void fake_curve(struct engine *e, double scale, struct mrc_curve *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->lock);
    uint64_t blocks = e->cache.capacity_bytes / 4096;
    pthread_mutex_unlock(&e->lock);
    out->rate = 1.0 / 16;
    out->sampled_reads = 1000;
    out->bytes = 4096;
    for (unsigned i = 0; i < MRC_POINTS; i++) {
        out->p[i].cache_blocks = blocks * mrc_eighths[i] / 8;
        out->p[i].hit_ratio = scale * mrc_eighths[i] / 32.0;
    }
}

void engine_mrc(struct engine *e, struct mrc_curve *out)
{
    fake_curve(e, 1.0, out);
}

void volume_mrc(struct volume *v, struct mrc_curve *out)
{
    fake_curve(v->e, 0.5, out);
}
