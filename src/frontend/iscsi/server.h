/* The iSCSI front end (RFC 7143 transport; SCSI itself is frontend/scsi/):
 * plugs the per-connection handler (conn.c) into the shared listener and
 * keeps what every connection shares: the engine, the options, the CHAP
 * secrets, the access list and the session registry (session.c).
 *
 * Targets. Each volume is its own target, named iqn.2026-12.org.shoal:NAME
 * with the volume as LUN 0. One target per volume, not one target with a
 * LUN per volume, because a VM's disks come and go one by one: libvirt's
 * iSCSI pools and ESXi map storage per target, so a target per disk lets
 * an initiator log in to exactly the disks it was given, lets --allow and
 * CHAP-protected hosts see only what they log in to, and keeps a volume's
 * LUN stable (always 0) while other volumes are added or removed.
 *
 * Lock rules: the server is read-only once started except the session
 * registry, guarded by its lock (session.c). */
#ifndef SHOAL_FRONTEND_ISCSI_SERVER_H
#define SHOAL_FRONTEND_ISCSI_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "frontend/allow.h"
#include "frontend/frontend.h"
#include "frontend/iscsi/options.h"

struct engine;
struct listener;
struct iscsi_chap;
struct iscsi_session;

struct iscsi_server {
    struct engine *engine;
    struct iscsi_options opts;
    bool readonly;
    struct iscsi_chap *chap; /* NULL: no authentication */
    struct allow_list allow;
    struct listener *listener;
    int login_timeout_ms;
    int nop_interval_ms;     /* idle time before a NOP-In ping; 0: none */
    uint64_t nop_timeout_ms; /* an unanswered ping ends the connection; 0: never */

    pthread_mutex_t lock;    /* the session registry */
    pthread_cond_t unpinned; /* a session's last pin went (session.c) */
    struct iscsi_session *sessions;
    uint16_t next_tsih;
    uint64_t next_nexus;
};

int iscsi_server_start(struct engine *e, const struct frontend_config *cfg,
                       struct iscsi_server **out);
void iscsi_server_stop(struct iscsi_server *s);
/* Serve one connected fd on the calling thread (fuzzing). Takes the fd. */
void iscsi_serve_connection(struct iscsi_server *s, int fd);

/* The volume behind a target name (referenced), or NULL. */
struct volume *iscsi_target_volume(struct iscsi_server *s, const char *target);

#endif
