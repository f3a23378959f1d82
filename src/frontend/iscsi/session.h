/* iSCSI sessions of a server: the registry that gives each new session
 * its TSIH, finds the session an initiator reinstates (same initiator
 * name, ISID and target: the old one is closed, RFC 7143 section 6.3.5),
 * and refuses connections that would join an existing session (no MC/S).
 * Each session has one connection and one SCSI I_T nexus.
 *
 * Lock rules: the server's lock guards the registry. */
#ifndef SHOAL_FRONTEND_ISCSI_SESSION_H
#define SHOAL_FRONTEND_ISCSI_SESSION_H

#include <stdint.h>

struct iscsi_server;
struct iscsi_conn;

/* Register c's new session (c->tsih == 0 on entry): sets c->tsih, c->sess
 * and c->nexus. A session it reinstates has its connection shut down.
 * 0, or an iSCSI login status to refuse with. */
int iscsi_session_add(struct iscsi_server *s, struct iscsi_conn *c);
/* The login asked to join session tsih: the status to refuse with. */
int iscsi_session_join_status(struct iscsi_server *s, uint16_t tsih);
/* c's session ends (logout or connection loss). */
void iscsi_session_remove(struct iscsi_server *s, struct iscsi_conn *c);

#endif
