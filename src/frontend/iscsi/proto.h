/* iSCSI wire constants (RFC 7143): opcodes, Basic Header Segment field
 * offsets and flags, login and reject codes, and the defaults the
 * negotiation starts from. Everything here is a fact of the protocol; the
 * rest of the front end builds on it. */
#ifndef SHOAL_FRONTEND_ISCSI_PROTO_H
#define SHOAL_FRONTEND_ISCSI_PROTO_H

#define ISCSI_BHS_SIZE    48
#define ISCSI_DIGEST_SIZE 4

/* Initiator opcodes (BHS byte 0, low 6 bits). */
#define ISCSI_OP_NOP_OUT   0x00
#define ISCSI_OP_SCSI_CMD  0x01
#define ISCSI_OP_TMF_REQ   0x02
#define ISCSI_OP_LOGIN_REQ 0x03
#define ISCSI_OP_TEXT_REQ  0x04
#define ISCSI_OP_DATA_OUT  0x05
#define ISCSI_OP_LOGOUT    0x06
#define ISCSI_OP_SNACK     0x10
/* Target opcodes. */
#define ISCSI_OP_NOP_IN     0x20
#define ISCSI_OP_SCSI_RSP   0x21
#define ISCSI_OP_TMF_RSP    0x22
#define ISCSI_OP_LOGIN_RSP  0x23
#define ISCSI_OP_TEXT_RSP   0x24
#define ISCSI_OP_DATA_IN    0x25
#define ISCSI_OP_LOGOUT_RSP 0x26
#define ISCSI_OP_R2T        0x31
#define ISCSI_OP_ASYNC      0x32
#define ISCSI_OP_REJECT     0x3f

#define ISCSI_OPCODE_MASK 0x3f
#define ISCSI_FLAG_I      0x40 /* byte 0: immediate delivery */
#define ISCSI_FLAG_F      0x80 /* byte 1: final */

/* BHS offsets common to most PDUs. */
#define ISCSI_BHS_AHSLEN  4 /* TotalAHSLength, in 4-byte words */
#define ISCSI_BHS_DSL     5 /* DataSegmentLength, 3 bytes */
#define ISCSI_BHS_LUN     8
#define ISCSI_BHS_ITT     16
#define ISCSI_BHS_TTT     20
#define ISCSI_BHS_CMDSN   24 /* initiator PDUs */
#define ISCSI_BHS_EXPSTAT 28
#define ISCSI_BHS_STATSN  24 /* target PDUs */
#define ISCSI_BHS_EXPCMD  28
#define ISCSI_BHS_MAXCMD  32

#define ISCSI_RESERVED_TAG 0xffffffffu

/* SCSI Command (byte 1) and its fields. */
#define ISCSI_CMD_R        0x40
#define ISCSI_CMD_W        0x20
#define ISCSI_CMD_EDTL     20
#define ISCSI_CMD_CDB      32
#define ISCSI_CMD_CDB_SIZE 16

/* SCSI Response / Data-In flags (byte 1). */
#define ISCSI_RSP_BIDI_OVER  0x10
#define ISCSI_RSP_BIDI_UNDER 0x08
#define ISCSI_RSP_OVER       0x04
#define ISCSI_RSP_UNDER      0x02
#define ISCSI_DATAIN_A       0x40
#define ISCSI_DATAIN_S       0x01
#define ISCSI_RSP_EXPDATASN  36
#define ISCSI_RSP_BIDI_RESID 40
#define ISCSI_RSP_RESID      44
#define ISCSI_DATA_DATASN    36
#define ISCSI_DATA_OFFSET    40
#define ISCSI_R2T_R2TSN      36
#define ISCSI_R2T_OFFSET     40
#define ISCSI_R2T_LENGTH     44

/* SCSI Response byte 2. */
#define ISCSI_RESPONSE_COMPLETED 0x00
#define ISCSI_RESPONSE_FAILURE   0x01

/* AHS types. */
#define ISCSI_AHS_EXT_CDB   1
#define ISCSI_AHS_BIDI_READ 2

/* Login (byte 1): transit, continue, current and next stage. */
#define ISCSI_LOGIN_T        0x80
#define ISCSI_LOGIN_C        0x40
#define ISCSI_LOGIN_CSG(b)   (((b) >> 2) & 3)
#define ISCSI_LOGIN_NSG(b)   ((b)&3)
#define ISCSI_STAGE_SECURITY 0
#define ISCSI_STAGE_OP       1
#define ISCSI_STAGE_FFP      3
#define ISCSI_LOGIN_VMAX     2
#define ISCSI_LOGIN_VMIN     3
#define ISCSI_LOGIN_ISID     8  /* 6 bytes */
#define ISCSI_LOGIN_TSIH     14 /* 2 bytes */
#define ISCSI_LOGIN_CID      20 /* 2 bytes */
#define ISCSI_LOGIN_STATUS   36 /* class, detail */

/* Login status (class << 8 | detail). */
#define ISCSI_LOGIN_OK                0x0000
#define ISCSI_LOGIN_INITIATOR_ERROR   0x0200
#define ISCSI_LOGIN_AUTH_FAILED       0x0201
#define ISCSI_LOGIN_FORBIDDEN         0x0202
#define ISCSI_LOGIN_NOT_FOUND         0x0203
#define ISCSI_LOGIN_TARGET_REMOVED    0x0204
#define ISCSI_LOGIN_BAD_VERSION       0x0205
#define ISCSI_LOGIN_TOO_MANY_CONNS    0x0206
#define ISCSI_LOGIN_MISSING_PARAM     0x0207
#define ISCSI_LOGIN_NO_SESSION_SPAN   0x0208
#define ISCSI_LOGIN_SESSION_TYPE      0x0209
#define ISCSI_LOGIN_NO_SUCH_SESSION   0x020a
#define ISCSI_LOGIN_INVALID_REQUEST   0x020b
#define ISCSI_LOGIN_TARGET_ERROR      0x0300
#define ISCSI_LOGIN_SERVICE_UNAVAIL   0x0301
#define ISCSI_LOGIN_OUT_OF_RESOURCES  0x0302
#define ISCSI_LOGIN_INITIATOR_ERR(st) (((st) >> 8) == 2)

/* Text request/response byte 1. */
#define ISCSI_TEXT_C 0x40

/* Task management functions (byte 1 & 0x7f) and responses (byte 2). */
#define ISCSI_TMF_ABORT_TASK        1
#define ISCSI_TMF_ABORT_TASK_SET    2
#define ISCSI_TMF_CLEAR_ACA         3
#define ISCSI_TMF_CLEAR_TASK_SET    4
#define ISCSI_TMF_LUN_RESET         5
#define ISCSI_TMF_TARGET_WARM_RESET 6
#define ISCSI_TMF_TARGET_COLD_RESET 7
#define ISCSI_TMF_TASK_REASSIGN     8
#define ISCSI_TMF_RTT               20
#define ISCSI_TMF_REFCMDSN          32
#define ISCSI_TMF_COMPLETE          0
#define ISCSI_TMF_NO_TASK           1
#define ISCSI_TMF_NO_LUN            2
#define ISCSI_TMF_NOT_SUPPORTED     5
#define ISCSI_TMF_REJECTED          255

/* Logout: reason (byte 1 & 0x7f), response (byte 2). */
#define ISCSI_LOGOUT_SESSION     0
#define ISCSI_LOGOUT_CONNECTION  1
#define ISCSI_LOGOUT_RECOVERY    2
#define ISCSI_LOGOUT_CID         20
#define ISCSI_LOGOUT_OK          0
#define ISCSI_LOGOUT_NO_CID      1
#define ISCSI_LOGOUT_NO_RECOVERY 2
#define ISCSI_LOGOUT_TIME2WAIT   40
#define ISCSI_LOGOUT_TIME2RETAIN 42

/* Reject reasons (byte 2). */
#define ISCSI_REJECT_DIGEST        0x02
#define ISCSI_REJECT_SNACK         0x03
#define ISCSI_REJECT_PROTOCOL      0x04
#define ISCSI_REJECT_UNSUPPORTED   0x05
#define ISCSI_REJECT_IMMEDIATE     0x06
#define ISCSI_REJECT_TASK_BUSY     0x07
#define ISCSI_REJECT_INVALID_FIELD 0x09
#define ISCSI_REJECT_WAIT_LOGOUT   0x0c

/* Async message events (byte 36). */
#define ISCSI_ASYNC_LOGOUT_REQUEST 1

/* RFC 7143 limits and defaults of the operational keys (section 13). */
#define ISCSI_MRDSL_MIN           512
#define ISCSI_MRDSL_MAX           16777215
#define ISCSI_MRDSL_DEFAULT       8192
#define ISCSI_BURST_MAX           16777215
#define ISCSI_MAXBURST_DEFAULT    262144
#define ISCSI_FIRSTBURST_DEFAULT  65536
#define ISCSI_TIME2WAIT_DEFAULT   2
#define ISCSI_TIME2RETAIN_DEFAULT 20

/* The names this target gives its volumes: one target per volume. */
#define ISCSI_IQN_PREFIX "iqn.2026-12.org.shoal:"
#define ISCSI_NAME_MAX   223 /* RFC 7143 section 4.2.7.1 */

#endif
