/* Logical units: the registry (one LU per volume, shared by every session),
 * and the unit attentions each LU keeps per nexus. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "core/engine.h"
#include "frontend/scsi/scsi_int.h"

struct lu_slot {
    struct scsi_lu lu;
    struct lu_slot *next;
};

/* The registry: LUs by volume. Few volumes, rare gets (at login): a list. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lu_slot *registry;

struct scsi_lu *scsi_lu_get(struct engine *e, struct volume *v)
{
    LOCK_GUARD(&registry_lock);
    for (struct lu_slot *s = registry; s; s = s->next) {
        if (s->lu.v == v) {
            s->lu.refs++;
            return &s->lu;
        }
    }
    struct lu_slot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    struct scsi_lu *lu = &s->lu;
    if (pthread_mutex_init(&lu->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    volume_get(v);
    lu->v = v;
    lu->e = e;
    lu->refs = 1;
    lu->naa_id = scsi_naa_id(volume_name(v));
    scsi_serial(volume_name(v), lu->serial);
    s->next = registry;
    registry = s;
    return lu;
}

static void lu_free(struct scsi_lu *lu)
{
    scsi_pr_free(lu);
    scsi_copy_free(lu);
    scsi_ua_free_all(lu);
    pthread_mutex_destroy(&lu->lock);
    volume_put(lu->v);
}

void scsi_lu_put(struct scsi_lu *lu)
{
    if (!lu)
        return;
    struct lu_slot *gone = NULL;
    {
        LOCK_GUARD(&registry_lock);
        if (--lu->refs > 0)
            return;
        for (struct lu_slot **p = &registry; *p; p = &(*p)->next) {
            if (&(*p)->lu == lu) {
                gone = *p;
                *p = gone->next;
                break;
            }
        }
    }
    if (gone) {
        lu_free(&gone->lu);
        free(gone);
    }
}

struct volume *scsi_lu_volume(const struct scsi_lu *lu)
{
    return lu->v;
}

struct engine *scsi_lu_engine(const struct scsi_lu *lu)
{
    return lu->e;
}

void scsi_lu_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n)
{
    scsi_pr_nexus_gone(lu, n);
    scsi_ua_forget(lu, n->id);
}

void scsi_lu_reset(struct scsi_lu *lu, const struct scsi_nexus *by)
{
    scsi_pr_reset(lu);
    /* Every nexus, the one that asked included: SAM-5 6.3.3 (logical unit
     * reset) names every I_T nexus, and initiators (libiscsi's multipath
     * reset test among them) expect the attention on the resetting path
     * too. A nexus that asked but never sent a command is made known.
     * The sense is BUS DEVICE RESET FUNCTION OCCURRED (29h/03h), what
     * SAM-5 names for a reset task management function (29h/00h is the
     * power-on one). */
    LOCK_GUARD(&lu->lock);
    if (by)
        scsi_ua_post_locked(lu, by->id, ASC_BUS_DEVICE_RESET);
    scsi_ua_post_others_locked(lu, by ? by->id : 0, ASC_BUS_DEVICE_RESET);
}

void scsi_lu_tasks_cleared(struct scsi_lu *lu, const struct scsi_nexus *n)
{
    scsi_ua_post(lu, n->id, ASC_COMMANDS_CLEARED_BY_ANOTHER);
}
