/* EXTENDED COPY (LID1, SPC-4 6.3): the copy manager for block-to-block
 * segments between volumes of this node, each segment one or more core
 * VOL_IO_COPY requests (at most VOL_MAX_IO each) chained through
 * scsi_submit's next. The source is read through its cache and the
 * destination written like a write, so both stay coherent with every
 * other front end. Volumes are named by the NAA designator of VPD 0x83
 * (scsi_naa_id) and held referenced for the copy's duration.
 *
 * Errors in the parameter list are ILLEGAL REQUEST with the field pointer;
 * errors met while processing a segment (a descriptor index or range that
 * does not fit, an unreachable volume, an I/O error) are COPY ABORTED with
 * the segment's offset in the field pointer and its number in the
 * COMMAND-SPECIFIC INFORMATION field; segments before it were copied. A
 * segment that reads or writes a volume whose LU another initiator has
 * reserved against this one ends the command with RESERVATION CONFLICT. */
#include <errno.h>
#include <string.h>

#include "core/engine.h"
#include "frontend/scsi/pr.h"
#include "frontend/scsi/xcopy_int.h"

/* The command's state, in its small buffer (EXTENDED COPY has no
 * data-in). */
struct xjob {
    struct xcopy_list list;
    struct volume *vol[XCOPY_MAX_TARGETS]; /* referenced; NULL: unreachable */
    int slot;                              /* held results, or -1 */
    uint64_t bytes;
};

_Static_assert(sizeof(struct xjob) <= SCSI_SMALL_DATA_MAX, "the job lives in priv.small");

static struct xjob *job(struct scsi_cmd *c)
{
    return (struct xjob *)(void *)c->priv.small;
}

/* ---- finding volumes ---- */

struct find {
    uint64_t id;
    struct volume *v;
};

static int match(struct volume *v, void *opaque)
{
    struct find *f = opaque;
    if (scsi_naa_id(volume_name(v)) != f->id)
        return 0;
    volume_get(v);
    f->v = v;
    return 1;
}

/* The volume a target descriptor names, referenced, or NULL. */
static struct volume *resolve(struct scsi_cmd *c, const struct xcopy_target *t)
{
    struct scsi_lu *lu = c->lu;
    if (!t->naa)
        return NULL;
    if (t->id == scsi_naa_id(volume_name(lu->v))) {
        volume_get(lu->v);
        return lu->v;
    }
    struct engine *e = scsi_lu_engine(lu);
    struct find f = {.id = t->id};
    if (!e || engine_for_each_volume(e, match, &f) == 0)
        return NULL;
    if (!xcopy_may_reach(lu, c->nexus, f.v)) {
        volume_put(f.v);
        return NULL;
    }
    return f.v;
}

/* ---- running ---- */

static enum scsi_exec_result finish(struct scsi_cmd *c)
{
    struct xjob *j = job(c);
    for (unsigned i = 0; i < j->list.ntargets; i++) {
        if (j->vol[i])
            volume_put(j->vol[i]);
        j->vol[i] = NULL;
    }
    if (j->slot >= 0)
        copy_result_end(c->lu, j->slot, c, (uint16_t)c->priv.step, j->bytes);
    return SCSI_DONE;
}

static enum scsi_exec_result aborted(struct scsi_cmd *c, uint8_t key, uint16_t asc)
{
    const struct xcopy_segment *s = &job(c)->list.s[c->priv.step];
    scsi_check_field(c, key, asc, false, s->at, -1);
    scsi_put32(c->sense + 8, c->priv.step); /* COMMAND-SPECIFIC INFORMATION */
    return finish(c);
}

static bool in_range(const struct volume *v, uint64_t lba, uint32_t blocks)
{
    uint64_t n = volume_size(v) >> SCSI_LBA_SHIFT;
    return lba <= n && blocks <= n - lba;
}

/* What the copy does to another volume, for that volume's reservations:
 * READ (16) for a source, WRITE (16) for a destination. */
static const struct scsi_op read_op = {.opcode = 0x88, .service_action = -1, .name = "READ"};
static const struct scsi_op write_op = {
    .opcode = 0x8a, .service_action = -1, .flags = SCSI_OP_WRITES, .name = "WRITE"};

/* A reservation on another volume's LU that forbids c's nexus this access.
 * The command's own LU was checked by dispatch (EXTENDED COPY conflicts
 * like a write there). Without this, a fenced initiator could still write
 * a reserved volume by copying into it through a LU it may use. */
static bool reserved_elsewhere(struct scsi_cmd *c, struct volume *v, bool write)
{
    struct engine *e = scsi_lu_engine(c->lu);
    if (v == c->lu->v || !c->nexus || !e)
        return false;
    struct scsi_lu *other = scsi_lu_get(e, v);
    if (!other)
        return false; /* no LU yet means no reservation either */
    bool blocked = pr_blocks(other, c->nexus, write ? &write_op : &read_op);
    scsi_lu_put(other);
    return blocked;
}

static enum scsi_exec_result copy_next(struct scsi_cmd *c, const struct vol_io *io);

/* Start the next piece of the current segment, or the next segment, or
 * end the command. */
static enum scsi_exec_result step(struct scsi_cmd *c)
{
    struct xjob *j = job(c);
    while (c->priv.step < j->list.nsegments) {
        const struct xcopy_segment *s = &j->list.s[c->priv.step];
        if (c->priv.cursor == 0) {
            if (s->src >= j->list.ntargets || s->dst >= j->list.ntargets || !j->vol[s->src] ||
                !j->vol[s->dst])
                return aborted(c, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
            if (!in_range(j->vol[s->src], s->src_lba, s->blocks) ||
                !in_range(j->vol[s->dst], s->dst_lba, s->blocks))
                return aborted(c, SK_COPY_ABORTED, XC_ASC_NO_ADDITIONAL_SENSE);
            if (reserved_elsewhere(c, j->vol[s->src], false) ||
                reserved_elsewhere(c, j->vol[s->dst], true)) {
                scsi_conflict(c);
                return finish(c);
            }
        }
        uint64_t total = (uint64_t)s->blocks << SCSI_LBA_SHIFT;
        if (c->priv.cursor >= total) {
            c->priv.step++;
            c->priv.cursor = 0;
            continue;
        }
        uint64_t n = total - c->priv.cursor;
        struct vol_io *io = &c->priv.io;
        io->op = VOL_IO_COPY;
        io->flags = 0;
        io->offset = (s->dst_lba << SCSI_LBA_SHIFT) + c->priv.cursor;
        io->length = n < VOL_MAX_IO ? n : VOL_MAX_IO;
        io->payload = NULL;
        io->src = j->vol[s->src];
        io->src_offset = (s->src_lba << SCSI_LBA_SHIFT) + c->priv.cursor;
        return scsi_submit(c, j->vol[s->dst], NULL, copy_next);
    }
    scsi_good(c);
    return finish(c);
}

static enum scsi_exec_result copy_next(struct scsi_cmd *c, const struct vol_io *io)
{
    switch (io->status) {
    case 0:
        c->priv.cursor += io->length;
        job(c)->bytes += io->length;
        return step(c);
    case -EPERM:
    case -EROFS:
    case -EACCES:
        return aborted(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
    case -ENOMEM:
        return aborted(c, SK_ABORTED_COMMAND, ASC_INSUFFICIENT_RESOURCES);
    case -ESHUTDOWN: /* a volume was removed with force */
        return aborted(c, SK_COPY_ABORTED, ASC_UNREACHABLE_COPY_TARGET);
    default:
        return aborted(c, SK_COPY_ABORTED, XC_ASC_NO_ADDITIONAL_SENSE);
    }
}

enum scsi_exec_result scsi_exec_xcopy(struct scsi_cmd *c)
{
    uint32_t plen = scsi_get32(c->cdb + 10);
    c->xfer_len = plen;
    if (plen == 0)
        return scsi_good(c);    /* nothing to do is no error (SPC-4 6.3.1) */
    if (c->data_out_len < plen) /* the CDB says more than was sent */
        return scsi_check_field(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH_ERROR, true, 10, -1);
    struct xjob *j = job(c);
    memset(j, 0, sizeof *j);
    j->slot = -1;
    struct xcopy_error e;
    if (xcopy_parse(c->data_out, plen, &j->list, &e) < 0) {
        if (e.field < 0)
            return scsi_check(c, e.key, e.asc);
        return scsi_check_field(c, e.key, e.asc, e.in_cdb, (uint16_t)e.field, e.bit);
    }
    if (j->list.usage != XCOPY_LIST_NONE) {
        uint64_t nexus = c->nexus ? c->nexus->id : 0;
        int slot = copy_result_begin(c->lu, nexus, j->list.list_id);
        if (slot == -EBUSY)
            return scsi_check(c, SK_ILLEGAL_REQUEST, XC_ASC_OPERATION_IN_PROGRESS);
        if (slot < 0)
            return scsi_check(c, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_RESOURCES);
        j->slot = slot;
    }
    for (unsigned i = 0; i < j->list.ntargets; i++)
        j->vol[i] = resolve(c, &j->list.t[i]);
    return step(c);
}

const struct scsi_op scsi_ops_copy[] = {
    {.opcode = 0x83,
     .service_action = 0x00,
     .cdb_len = 16,
     .usage = {0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0},
     .name = "EXTENDED COPY (LID1)",
     .exec = scsi_exec_xcopy},
    {.opcode = 0x84,
     .service_action = 0x00,
     .cdb_len = 16,
     .usage = {0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0},
     .name = "RECEIVE COPY RESULTS (COPY STATUS)",
     .exec = scsi_exec_copy_results},
    {.opcode = 0x84,
     .service_action = 0x01,
     .cdb_len = 16,
     .usage = {0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0},
     .name = "RECEIVE COPY RESULTS (RECEIVE DATA)",
     .exec = scsi_exec_copy_results},
    {.opcode = 0x84,
     .service_action = 0x03,
     .cdb_len = 16,
     .usage = {0x84, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0},
     .name = "RECEIVE COPY RESULTS (OPERATING PARAMETERS)",
     .exec = scsi_exec_copy_results},
    {.opcode = 0x84,
     .service_action = 0x04,
     .cdb_len = 16,
     .usage = {0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0},
     .name = "RECEIVE COPY RESULTS (FAILED SEGMENT DETAILS)",
     .exec = scsi_exec_copy_results},
    {.name = NULL},
};
