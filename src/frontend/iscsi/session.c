/* The session registry; see session.h. */
#include "frontend/iscsi/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "frontend/iscsi/conn.h"
#include "frontend/iscsi/server.h"

struct iscsi_session {
    struct iscsi_session *next;
    uint16_t tsih;
    struct iscsi_conn *conn;
    struct scsi_lu *lu; /* once active: its task table is there too */
    unsigned pins;      /* resets of other sessions using conn now */
};

static bool tsih_used_locked(struct iscsi_server *s, uint16_t tsih)
{
    for (struct iscsi_session *x = s->sessions; x; x = x->next)
        if (x->tsih == tsih)
            return true;
    return false;
}

int iscsi_session_add(struct iscsi_server *s, struct iscsi_conn *c)
{
    struct iscsi_session *n = calloc(1, sizeof *n);
    if (!n)
        return ISCSI_LOGIN_OUT_OF_RESOURCES;
    LOCK_GUARD(&s->lock);
    /* Same initiator, ISID and target: the initiator restarts that session
     * (its old connection is gone or stale), so the old one ends. */
    for (struct iscsi_session *x = s->sessions; x; x = x->next) {
        struct iscsi_conn *o = x->conn;
        if (!memcmp(o->isid, c->isid, 6) && !strcmp(o->initiator, c->initiator) &&
            o->discovery == c->discovery && !strcasecmp(o->target, c->target)) {
            log_info(iscsi, "%s: session reinstatement: closing the old session (TSIH %u)", c->peer,
                     x->tsih);
            shutdown(o->io->fd, SHUT_RDWR);
        }
    }
    do {
        s->next_tsih = (uint16_t)(s->next_tsih + 1);
    } while (s->next_tsih == 0 || tsih_used_locked(s, s->next_tsih));
    n->tsih = s->next_tsih;
    n->conn = c;
    n->next = s->sessions;
    s->sessions = n;
    c->tsih = n->tsih;
    c->sess = n;
    /* SCSI port names (SPC-5 7.7.3.4 for iSCSI): the initiator's carries
     * its ISID, the target's its portal group. */
    snprintf(c->nexus_i, sizeof c->nexus_i, "%s,i,0x%02x%02x%02x%02x%02x%02x", c->initiator,
             c->isid[0], c->isid[1], c->isid[2], c->isid[3], c->isid[4], c->isid[5]);
    snprintf(c->nexus_t, sizeof c->nexus_t, "%s,t,0x0001", c->target);
    c->nexus = (struct scsi_nexus){
        .id = ++s->next_nexus,
        .initiator = c->nexus_i,
        .target = c->nexus_t,
        .rel_tgt_port = 1,
    };
    return 0;
}

int iscsi_session_join_status(struct iscsi_server *s, uint16_t tsih)
{
    LOCK_GUARD(&s->lock);
    return tsih_used_locked(s, tsih) ? ISCSI_LOGIN_TOO_MANY_CONNS : ISCSI_LOGIN_NO_SUCH_SESSION;
}

void iscsi_session_activate(struct iscsi_server *s, struct iscsi_conn *c, bool active)
{
    LOCK_GUARD(&s->lock);
    if (c->sess)
        c->sess->lu = active ? c->lu : NULL;
}

unsigned iscsi_session_pin_peers(struct iscsi_server *s, const struct iscsi_conn *c,
                                 struct iscsi_conn **out, unsigned max)
{
    unsigned n = 0;
    LOCK_GUARD(&s->lock);
    for (struct iscsi_session *x = s->sessions; x && n < max; x = x->next) {
        if (x->conn == c || !x->lu || x->lu != c->lu)
            continue;
        x->pins++;
        out[n++] = x->conn;
    }
    return n;
}

void iscsi_session_unpin(struct iscsi_server *s, struct iscsi_conn **conns, unsigned n)
{
    LOCK_GUARD(&s->lock);
    for (unsigned i = 0; i < n; i++)
        conns[i]->sess->pins--;
    pthread_cond_broadcast(&s->unpinned);
}

void iscsi_session_remove(struct iscsi_server *s, struct iscsi_conn *c)
{
    if (!c->sess)
        return;
    LOCK_GUARD(&s->lock);
    /* A reset from another session may be looking at our tasks: it has
     * waited for them to finish, so it lets go soon. */
    while (c->sess->pins)
        pthread_cond_wait(&s->unpinned, &s->lock);
    for (struct iscsi_session **p = &s->sessions; *p; p = &(*p)->next) {
        if (*p == c->sess) {
            *p = c->sess->next;
            free(c->sess);
            break;
        }
    }
    c->sess = NULL;
}
