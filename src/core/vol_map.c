/* See vol_map.h. */
#include "core/vol_map.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "common/log.h"
#include "core/block.h"
#include "core/volume.h"

int vol_map_identity(const char *name, uint64_t size, const char *kind, const char *detail,
                     struct tier_map_id *out)
{
    /* NUL-separated fields: no two different tuples hash the same text. */
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "shoal-map-1%c%s%c%" PRIu64 "%c%s%c%s", 0, name, 0, size, 0,
                     kind, 0, detail);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -ENAMETOOLONG;
    struct fp f;
    if (fp_compute_len(buf, (size_t)n, &f) < 0)
        return -EIO;
    memcpy(out->b, f.b, TIER_MAP_ID_SIZE);
    return 0;
}

int vol_map_backend_identity(const char *name, const struct backend *be, struct tier_map_id *out)
{
    const char *kind = be->ops->name;
    char detail[1024];
    if (!be->spec)
        return -ENOTSUP;
    if (!strcmp(kind, "file")) {
        /* Size and mtime name the image's version; the path does not
         * (hosts may mount the shared store at different places). */
        struct stat st;
        if (stat(be->spec, &st) < 0 || !S_ISREG(st.st_mode))
            return -ENOTSUP;
        snprintf(detail, sizeof detail, "%lld.%09ld %lld", (long long)st.st_mtim.tv_sec,
                 st.st_mtim.tv_nsec, (long long)st.st_size);
    } else {
        /* A network back end (nbd, iscsi): its URI names the export. */
        if (strlen(be->spec) >= sizeof detail)
            return -ENOTSUP;
        snprintf(detail, sizeof detail, "%s", be->spec);
    }
    return vol_map_identity(name, be->size, kind, detail, out);
}

void vol_map_id_hex(const struct tier_map_id *id, char out[2 * TIER_MAP_ID_SIZE + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < TIER_MAP_ID_SIZE; i++) {
        out[2 * i] = hex[id->b[i] >> 4];
        out[2 * i + 1] = hex[id->b[i] & 15];
    }
    out[2 * TIER_MAP_ID_SIZE] = '\0';
}

static struct fpkey zero_key;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_init(void)
{
    static const uint8_t zero[BLOCK_SIZE];
    struct fp f;
    if (fp_compute(zero, &f) == 0)
        zero_key = fpkey_of(&f);
}

const struct fpkey *vol_map_zero_key(void)
{
    pthread_once(&zero_once, zero_init);
    return &zero_key;
}

void vol_map_setup(struct volume *v, bool shared)
{
    struct tier *t = NULL;
    for (unsigned i = 0; i < v->ntiers && !t; i++)
        if (tier_has_map(v->tiers[i]))
            t = v->tiers[i];
    struct tier_map_id id;
    if (!t || !shared || vol_map_backend_identity(v->name, v->be, &id) < 0) {
        __atomic_store_n(&v->map_tier, NULL, __ATOMIC_RELEASE);
        return;
    }
    vol_map_zero_key();
    /* A reader may see half of a new identity: a lookup or put under an
     * identity nobody uses, which costs a miss and nothing else. */
    for (unsigned i = 0; i < TIER_MAP_ID_SIZE; i++)
        __atomic_store_n(&v->map_id.b[i], id.b[i], __ATOMIC_RELAXED);
    __atomic_store_n(&v->map_tier, t, __ATOMIC_RELEASE);
    char hex[2 * TIER_MAP_ID_SIZE + 1];
    vol_map_id_hex(&id, hex);
    log_debug(core, "volume %s: cluster map identity %s", v->name, hex);
}

void vol_map_publish(struct volume *v, uint64_t blk, const struct fpkey *key)
{
    struct tier *t = __atomic_load_n(&v->map_tier, __ATOMIC_ACQUIRE);
    if (t)
        tier_map_put(t, &v->map_id, blk, key);
}
