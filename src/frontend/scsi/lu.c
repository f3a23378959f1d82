/* Logical units: the registry (one LU per volume, shared by every session),
 * and the unit attentions each LU keeps per nexus. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "core/engine.h"
#include "frontend/scsi/scsi_int.h"

/* Pending unit attentions of one nexus: a short FIFO. When it is full the
 * oldest is dropped (SAM-5 lets a device server report fewer). */
#define UA_QUEUE 4

struct scsi_ua {
    uint64_t nexus;
    uint16_t asc[UA_QUEUE];
    unsigned n;
    struct scsi_ua *next;
};

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
    for (struct scsi_ua *u = lu->ua, *next; u; u = next) {
        next = u->next;
        free(u);
    }
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

/* ---- unit attentions ---- */

static struct scsi_ua *ua_find_locked(struct scsi_lu *lu, uint64_t nexus, bool make)
{
    for (struct scsi_ua *u = lu->ua; u; u = u->next)
        if (u->nexus == nexus)
            return u;
    if (!make)
        return NULL;
    struct scsi_ua *u = calloc(1, sizeof *u);
    if (!u)
        return NULL; /* the attention is lost; nothing else can be done */
    u->nexus = nexus;
    u->next = lu->ua;
    lu->ua = u;
    return u;
}

static void ua_push(struct scsi_ua *u, uint16_t asc)
{
    for (unsigned i = 0; i < u->n; i++)
        if (u->asc[i] == asc)
            return; /* already pending: report it once */
    if (u->n == UA_QUEUE) {
        memmove(u->asc, u->asc + 1, (UA_QUEUE - 1) * sizeof u->asc[0]);
        u->n--;
    }
    u->asc[u->n++] = asc;
}

void scsi_ua_post_locked(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc)
{
    struct scsi_ua *u = ua_find_locked(lu, nexus_id, true);
    if (u)
        ua_push(u, asc);
}

void scsi_ua_post_others_locked(struct scsi_lu *lu, uint64_t except, uint16_t asc)
{
    for (struct scsi_ua *u = lu->ua; u; u = u->next)
        if (u->nexus != except)
            ua_push(u, asc);
}

void scsi_ua_post(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc)
{
    LOCK_GUARD(&lu->lock);
    scsi_ua_post_locked(lu, nexus_id, asc);
}

void scsi_ua_post_others(struct scsi_lu *lu, uint64_t except, uint16_t asc)
{
    LOCK_GUARD(&lu->lock);
    scsi_ua_post_others_locked(lu, except, asc);
}

int scsi_ua_take(struct scsi_lu *lu, const struct scsi_nexus *n, uint16_t *asc)
{
    LOCK_GUARD(&lu->lock);
    /* Knowing every nexus that used the LU is what lets a reset reach the
     * others; one small allocation per nexus, at its first command. */
    struct scsi_ua *u = ua_find_locked(lu, n->id, true);
    if (!u || u->n == 0)
        return -ENOENT;
    *asc = u->asc[0];
    memmove(u->asc, u->asc + 1, (u->n - 1) * sizeof u->asc[0]);
    u->n--;
    return 0;
}

void scsi_lu_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n)
{
    scsi_pr_nexus_gone(lu, n);
    LOCK_GUARD(&lu->lock);
    for (struct scsi_ua **p = &lu->ua; *p; p = &(*p)->next) {
        if ((*p)->nexus == n->id) {
            struct scsi_ua *u = *p;
            *p = u->next;
            free(u);
            return;
        }
    }
}

void scsi_lu_reset(struct scsi_lu *lu, const struct scsi_nexus *by)
{
    scsi_pr_reset(lu);
    /* Every nexus, the one that asked included: SAM-5 6.3.3 (logical unit
     * reset) names every I_T nexus, and initiators (libiscsi's multipath
     * reset test among them) expect the attention on the resetting path
     * too. A nexus that asked but never sent a command is made known. */
    LOCK_GUARD(&lu->lock);
    if (by)
        scsi_ua_post_locked(lu, by->id, ASC_POWER_ON_RESET);
    scsi_ua_post_others_locked(lu, by ? by->id : 0, ASC_POWER_ON_RESET);
}
