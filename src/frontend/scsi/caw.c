/* COMPARE AND WRITE: not written yet (placeholder; see pr.c). */
#include "frontend/scsi/scsi_int.h"

const struct scsi_op scsi_ops_caw[] = {{.name = NULL}};
