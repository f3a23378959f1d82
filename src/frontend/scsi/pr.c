/* Reservations: not written yet (a placeholder so dispatch.c and lu.c link;
 * the commands below are absent from the table, so initiators get INVALID
 * COMMAND OPERATION CODE). */
#include "frontend/scsi/scsi_int.h"

const struct scsi_op scsi_ops_pr[] = {{.name = NULL}};

bool scsi_pr_blocks(struct scsi_cmd *c, const struct scsi_op *op)
{
    (void)c;
    (void)op;
    return false;
}

void scsi_pr_nexus_gone(struct scsi_lu *lu, const struct scsi_nexus *n)
{
    (void)lu;
    (void)n;
}

void scsi_pr_reset(struct scsi_lu *lu)
{
    (void)lu;
}

void scsi_pr_free(struct scsi_lu *lu)
{
    (void)lu;
}
