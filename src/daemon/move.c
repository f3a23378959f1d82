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
#include "core/vol_fence.h"
#include "core/vol_move.h"
#include "core/volume.h"
#include "daemon/vol_settings.h"

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

/* The volume's own settings, as the hand-over carries them. */
static json_t *settings_json(struct volume *v)
{
    struct volume_settings st;
    volume_get_settings(v, &st);
    struct volume_config vc = {
        .disabled = !volume_enabled(v),
        .readahead = st.readahead,
        .backend = {.direct = st.direct,
                    .conns = st.conns,
                    .connect_timeout_ms = st.connect_timeout_ms},
    };
    return vol_settings_json(&vc);
}

/* Apply a hand-over's settings to vc; a value out of range (the record is
 * anybody's who can write etcd) is left at the default, and said. */
static void apply_settings(const char *name, const json_t *s, struct volume_config *vc)
{
    const char *why = s ? vol_settings_parse(s, vc) : NULL;
    if (why)
        log_warn(main, "volume %s: the hand-over's settings have %s; its default used", name, why);
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
    json_t *settings = r == 0 ? settings_json(v) : NULL;
    uint64_t gen = 0;
    struct tier_map_id id;
    if (r == 0 && (!spec || !settings))
        r = -ENOMEM;
    if (r == 0 && getrandom(&gen, sizeof gen, 0) != sizeof gen)
        r = -errno;
    if (r == 0)
        r = vol_move_identity(name, gen, &id);
    if (r < 0) {
        json_decref(settings);
        volume_put(v);
        return r;
    }
    uint64_t t0 = now_ns();
    volume_fence(v, VOL_FENCE_MOVE);
    /* Every write it acknowledged on stable storage before the new owner
     * opens it; and the old side's last flushes (a live migration's
     * source) can then be answered. */
    r = volume_settle(v);
    if (r < 0) {
        snprintf(err, errlen, "volume %s: its back end failed to flush (%s): it stays here", name,
                 strerror(-r));
        volume_unfence(v, VOL_FENCE_MOVE);
        json_decref(settings);
        volume_put(v);
        return r;
    }
    uint64_t blocks = 0;
    int er = volume_map_export(v, &id, EXPORT_TIMEOUT_MS, &blocks);
    if (er < 0)
        log_warn(main, "volume %s: directory not (wholly) published: %s; node %s starts colder",
                 name, strerror(-er), to);
    r = cluster_hand_over(name, to, gen, spec, settings, false, err, errlen);
    json_decref(settings);
    if (r < 0) {
        volume_unfence(v, VOL_FENCE_MOVE);
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

/* After a hand-over this node could not open: give the volume back to
 * the node it came from, which serves it again (a VM whose migration then
 * fails goes on there); a volume given back already is released instead,
 * so two nodes that cannot open it do not pass it to and fro. */
static void give_back(const struct cluster_hand_over *h)
{
    char err[512] = "";
    if (!h->returned && h->from[0] &&
        cluster_hand_over(h->volume, h->from, h->gen, h->backing, h->settings, true, err,
                          sizeof err) == 0) {
        log_warn(main, "volume %s: given back to node %s", h->volume, h->from);
        return;
    }
    if (err[0])
        log_error(main, "volume %s: cannot give it back to node %s: %s (released)", h->volume,
                  h->from, err);
    cluster_release(h->volume);
}

/* On the membership's watch thread: a volume handed to this node. */
static void adopt(void *arg, const struct cluster_hand_over *h)
{
    (void)arg;
    const char *name = h->volume, *backing = h->backing;
    struct tier_map_id id;
    if (vol_move_identity(name, h->gen, &id) < 0)
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
    apply_settings(name, h->settings, &vc);
    char err[1024] = "";
    int r = cluster_claim_moved(name, h->gen, err, sizeof err);
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
        log_error(main, "volume %s: handed to this node, but cannot open %s: %s", name, backing,
                  why[0] ? why : strerror(-r));
        give_back(h);
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
