/* iSCSI sessions of a server: the registry that gives each new session
 * its TSIH, finds the session an initiator reinstates (same initiator
 * name, ISID and target: the old one is closed, RFC 7143 section 6.3.5),
 * and refuses connections that would join an existing session (no MC/S).
 * Each session has one connection and one SCSI I_T nexus.
 *
 * A task management function that resets the LU (LOGICAL UNIT RESET,
 * TARGET WARM/COLD RESET) reaches the tasks of every session of that LU:
 * it pins them, so a session that ends meanwhile keeps its connection and
 * task table until the reset is done with them.
 *
 * Lock rules: the server's lock guards the registry (and each session's
 * lu and pins). */
#ifndef SHOAL_FRONTEND_ISCSI_SESSION_H
#define SHOAL_FRONTEND_ISCSI_SESSION_H

#include <stdbool.h>
#include <stdint.h>

struct iscsi_server;
struct iscsi_conn;

/* Register c's new session (c->tsih == 0 on entry): sets c->tsih, c->sess
 * and c->nexus. A session it reinstates has its connection shut down.
 * 0, or an iSCSI login status to refuse with. */
int iscsi_session_add(struct iscsi_server *s, struct iscsi_conn *c);
/* The login asked to join session tsih: the status to refuse with. */
int iscsi_session_join_status(struct iscsi_server *s, uint16_t tsih);
/* c's session ends (logout or connection loss). Waits while another
 * session has it pinned (iscsi_session_pin_peers). */
void iscsi_session_remove(struct iscsi_server *s, struct iscsi_conn *c);
/* c's task table and LU are ready (full feature phase): from now on a
 * reset from another session of the LU reaches c's tasks; until active is
 * false (its tasks are over, it lets go of the LU). */
void iscsi_session_activate(struct iscsi_server *s, struct iscsi_conn *c, bool active);
/* The other sessions of c's LU, each pinned (its connection and task
 * table stay until iscsi_session_unpin): up to max of them into out.
 * Returns how many. */
unsigned iscsi_session_pin_peers(struct iscsi_server *s, const struct iscsi_conn *c,
                                 struct iscsi_conn **out, unsigned max);
void iscsi_session_unpin(struct iscsi_server *s, struct iscsi_conn **conns, unsigned n);

#endif
