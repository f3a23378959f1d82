/* See move.h. */
#include "daemon/move.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster/membership.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/vol_move.h"
#include "core/volume.h"

/* The longest the owner waits for its directory to reach memcached: a
 * move that takes longer goes on cold for what was not sent. */
#define EXPORT_TIMEOUT_MS 10000
/* How long the new owner waits for the image to be free (30 s). */
#define ADOPT_RETRY_MS 250
#define ADOPT_TRIES    120

struct move_ctx {
    struct engine *e;
    struct mgmt_hooks persist; /* the state file's hooks */
    const char *const *backing_dirs;
};

static struct move_ctx ctx;
static int stopping; /* atomic: shoald stops, adopt waits no more */

static void keep(enum mgmt_change_kind kind, const char *name, const struct volume_config *cfg)
{
    if (!ctx.persist.changed)
        return;
    char err[512] = "";
    if (ctx.persist.changed(ctx.persist.opaque, kind, name, cfg, err, sizeof err) < 0)
        log_error(main, "volume %s: change not saved in the state file: %s", name, err);
}

static int hook_move(void *opaque, const char *name, const char *to, json_t **report, char *err,
                     size_t errlen)
{
    (void)opaque;
    struct volume *v = engine_get_volume(ctx.e, name);
    if (!v || !name[0]) {
        volume_put(v);
        snprintf(err, errlen, "no such volume: %s", name);
        return -ENOENT;
    }
    if (volume_readonly(v)) {
        snprintf(err, errlen,
                 "volume %s is read-only: every node may serve it (add it on node %s; its "
                 "blocks are found through the cluster's map)",
                 name, to);
        volume_put(v);
        return -EROFS;
    }
    int r = cluster_move_check(name, to, err, errlen);
    _cleanup_free_ char *spec = r == 0 ? strdup(volume_backing_spec(v)) : NULL;
    uint64_t gen = 0;
    struct tier_map_id id;
    if (r == 0 && !spec)
        r = -ENOMEM;
    if (r == 0 && getrandom(&gen, sizeof gen, 0) != sizeof gen)
        r = -errno;
    if (r == 0)
        r = vol_move_identity(name, gen, &id);
    if (r < 0) {
        volume_put(v);
        return r;
    }
    uint64_t t0 = now_ns();
    volume_fence_writes(v);
    uint64_t blocks = 0;
    int er = volume_map_export(v, &id, EXPORT_TIMEOUT_MS, &blocks);
    if (er < 0)
        log_warn(main, "volume %s: directory not (wholly) published: %s; node %s starts colder",
                 name, strerror(-er), to);
    r = cluster_hand_over(name, to, gen, spec, err, errlen);
    if (r < 0) {
        volume_unfence_writes(v);
        volume_put(v);
        return r;
    }
    volume_put(v);
    /* Its clients are the migrated VM's old side: drop them. */
    r = engine_remove_volume(ctx.e, name, true);
    if (r < 0)
        log_error(main, "volume %s: handed to node %s but not removed here: %s", name, to,
                  strerror(-r));
    else
        keep(MGMT_VOLUME_REMOVED, name, NULL);
    uint64_t ms = (now_ns() - t0) / 1000000;
    log_info(main, "volume %s moved to node %s: %" PRIu64 " block keys published, %" PRIu64 " ms",
             name, to, blocks, ms);
    char gs[32];
    snprintf(gs, sizeof gs, "%016" PRIx64, gen);
    *report = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "name", name, "to", to, "generation", gs,
                        "published_blocks", (json_int_t)blocks, "milliseconds", (json_int_t)ms,
                        "published", er == 0);
    return *report ? 0 : -ENOMEM;
}

/* On the membership's watch thread: a volume handed to this node. */
static void adopt(void *arg, const char *name, const char *backing, uint64_t gen)
{
    (void)arg;
    struct tier_map_id id;
    if (vol_move_identity(name, gen, &id) < 0)
        return;
    struct volume_config vc = {
        .name = name,
        /* raw: the old owner served these bytes as a disk already (a guest
         * may have written an image header at offset 0: format=raw). */
        .backend = {.spec = backing,
                    .format = BACKEND_FORMAT_RAW,
                    .backing_dirs = ctx.backing_dirs},
        .import_map = &id,
    };
    char err[1024] = "";
    int r = cluster_claim_moved(name, gen, err, sizeof err);
    if (r < 0) {
        log_error(main, "volume %s: cannot take it over: %s", name, err[0] ? err : strerror(-r));
        return;
    }
    /* The old node drops its clients, and with the last one its back end
     * and the image's lock: until then the image is busy here. */
    for (unsigned tries = 0; (r = engine_add_volume(ctx.e, &vc)) == -EBUSY && tries < ADOPT_TRIES &&
                             !__atomic_load_n(&stopping, __ATOMIC_ACQUIRE);
         tries++)
        usleep(ADOPT_RETRY_MS * 1000);
    if (r < 0) {
        const char *why = backend_open_error();
        log_error(main, "volume %s: handed to this node, but cannot open %s: %s (released)", name,
                  backing, why[0] ? why : strerror(-r));
        cluster_release(name);
        return;
    }
    vc.import_map = NULL;
    keep(MGMT_VOLUME_ADDED, name, &vc);
    log_info(main, "volume %s: now served read-write here (%s)", name, backing);
}

void move_setup(struct engine *e, struct mgmt_hooks *hooks, const char *const *backing_dirs)
{
    if (!cluster_enabled())
        return;
    ctx = (struct move_ctx){.e = e, .persist = *hooks, .backing_dirs = backing_dirs};
    hooks->move = hook_move;
    cluster_on_hand_over(adopt, NULL);
}

void move_stop(void)
{
    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    cluster_on_hand_over(NULL, NULL);
}
