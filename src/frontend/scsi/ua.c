/* Unit attentions (SAM-5 5.14): a small queue per I_T nexus that used the
 * LU, under lu->lock; dispatch.c reports the oldest before any command
 * that does not pass through them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
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

void scsi_ua_forget(struct scsi_lu *lu, uint64_t nexus_id)
{
    LOCK_GUARD(&lu->lock);
    for (struct scsi_ua **p = &lu->ua; *p; p = &(*p)->next) {
        if ((*p)->nexus == nexus_id) {
            struct scsi_ua *u = *p;
            *p = u->next;
            free(u);
            return;
        }
    }
}

void scsi_ua_free_all(struct scsi_lu *lu)
{
    for (struct scsi_ua *u = lu->ua, *next; u; u = next) {
        next = u->next;
        free(u);
    }
    lu->ua = NULL;
}
