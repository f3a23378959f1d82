/* EXTENDED COPY: not written yet (placeholder; see pr.c). */
#include "frontend/scsi/scsi_int.h"

const struct scsi_op scsi_ops_copy[] = {{.name = NULL}};

void scsi_copy_free(struct scsi_lu *lu)
{
    (void)lu;
}
