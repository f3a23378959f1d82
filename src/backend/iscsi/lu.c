/* What the iSCSI back end's LUN is, asked once at open: a disk (standard
 * INQUIRY), its size and logical block size (READ CAPACITY(16)), transfer
 * and unmap limits (VPD page B0), thin provisioning (VPD page B2), write
 * protection and FUA support (MODE SENSE's device-specific parameter). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backend/iscsi/iscsi_int.h"
#include "common/log.h"
#include "common/util.h"

/* The largest data transfer of one READ/WRITE, whatever the target allows:
 * it must finish well inside the command timeout. */
#define ISC_MAX_XFER (8u << 20)
/* The most one WRITE SAME or UNMAP may cover: no data moves, but the
 * target does the work before it answers. */
#define ISC_MAX_RANGE (256u << 20)

#define MS_WP     0x80 /* MODE SENSE device-specific parameter: write protected */
#define MS_DPOFUA 0x10 /* ... DPO and FUA bits are supported */

/* Run one data-in command on session 0 and unmarshall its answer; the
 * caller frees *task. */
static int ask(struct isc_be *ib, const struct isc_cmd *c, struct scsi_task **task, void **data)
{
    struct isc_session *s = &ib->sess[0];
    pthread_mutex_lock(&s->lock);
    int r = isc_session_run_locked(&ib->login, s, c, ib->login.connect_timeout_ms, task);
    pthread_mutex_unlock(&s->lock);
    if (r < 0)
        return r;
    *data = scsi_datain_unmarshall(*task);
    if (!*data) {
        scsi_free_scsi_task(*task);
        *task = NULL;
        return -EPROTO;
    }
    return 0;
}

/* INQUIRY's identification fields are padded with spaces. */
static void copy_trimmed(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
    size_t n = strlen(dst);
    while (n > 0 && dst[n - 1] == ' ')
        dst[--n] = '\0';
}

static int learn_inquiry(struct isc_be *ib)
{
    struct isc_cmd c = {.kind = ISC_INQUIRY, .alloc = 96};
    struct scsi_task *t;
    struct scsi_inquiry_standard *inq;
    int r = ask(ib, &c, &t, (void **)&inq);
    if (r < 0) {
        backend_set_open_error("LUN %u of %s: INQUIRY failed (%s)", ib->uri.lun, ib->uri.target,
                               strerror(-r));
        return r;
    }
    bool disk = inq->qualifier == 0 &&
                inq->device_type == SCSI_INQUIRY_PERIPHERAL_DEVICE_TYPE_DIRECT_ACCESS;
    int type = inq->device_type, qual = inq->qualifier;
    copy_trimmed(ib->vendor, sizeof ib->vendor, inq->vendor_identification);
    copy_trimmed(ib->product, sizeof ib->product, inq->product_identification);
    scsi_free_scsi_task(t);
    if (qual != 0) {
        backend_set_open_error("target %s has no LUN %u", ib->uri.target, ib->uri.lun);
        return -ENXIO;
    }
    if (!disk) {
        backend_set_open_error("LUN %u of %s is not a disk (SCSI peripheral device type 0x%02x)",
                               ib->uri.lun, ib->uri.target, type);
        return -EMEDIUMTYPE;
    }
    return 0;
}

static int learn_capacity(struct isc_be *ib)
{
    struct isc_cmd c = {.kind = ISC_READ_CAPACITY16};
    struct scsi_task *t;
    struct scsi_readcapacity16 *rc;
    int r = ask(ib, &c, &t, (void **)&rc);
    if (r < 0) {
        backend_set_open_error("LUN %u of %s: READ CAPACITY(16) failed (%s)", ib->uri.lun,
                               ib->uri.target, strerror(-r));
        return r;
    }
    uint32_t block = rc->block_length;
    uint64_t last = rc->returned_lba;
    ib->lbpme = rc->lbpme;
    ib->lbprz = rc->lbprz;
    scsi_free_scsi_task(t);
    /* 512 (and 512e) or 4096 native; 520/528-byte formats carry
     * protection or vendor data a raw image has no room for. */
    if (block != 512 && block != 1024 && block != 2048 && block != 4096) {
        backend_set_open_error("LUN %u of %s has %u-byte blocks; shoal serves 512 to 4096-byte "
                               "blocks",
                               ib->uri.lun, ib->uri.target, block);
        return -EMEDIUMTYPE;
    }
    if (last == UINT64_MAX || (last + 1) > UINT64_MAX / block) {
        backend_set_open_error("LUN %u of %s reports an impossible size", ib->uri.lun,
                               ib->uri.target);
        return -EPROTO;
    }
    ib->block = block;
    ib->be.size = (last + 1) * block;
    ib->be.min_block = block;
    return 0;
}

static bool has_page(const struct scsi_inquiry_supported_pages *sp, uint8_t page)
{
    for (int i = 0; i < sp->num_pages; i++)
        if (sp->pages[i] == page)
            return true;
    return false;
}

/* VPD pages B0 and B2, when the target has them. Missing pages only mean
 * defaults: no limits but ours, no UNMAP. */
static void learn_vpd(struct isc_be *ib)
{
    struct isc_cmd c = {.kind = ISC_INQUIRY, .evpd = true, .page = 0x00, .alloc = 255};
    struct scsi_task *t;
    void *data;
    bool b0 = false, b2 = false;
    if (ask(ib, &c, &t, &data) == 0) {
        b0 = has_page(data, SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS);
        b2 = has_page(data, SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING);
        scsi_free_scsi_task(t);
    }
    uint32_t max_xfer_blocks = 0, max_unmap = 0, max_unmap_bdc = 0;
    uint64_t max_ws = 0;
    if (b0) {
        c.page = SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS;
        c.alloc = 64;
        if (ask(ib, &c, &t, &data) == 0) {
            struct scsi_inquiry_block_limits *bl = data;
            max_xfer_blocks = bl->max_xfer_len;
            max_unmap = bl->max_unmap;
            max_unmap_bdc = bl->max_unmap_bdc;
            max_ws = bl->max_ws_len;
            scsi_free_scsi_task(t);
        }
    }
    bool lbpu = false;
    if (b2 && ib->lbpme) {
        c.page = SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING;
        c.alloc = 64;
        if (ask(ib, &c, &t, &data) == 0) {
            struct scsi_inquiry_logical_block_provisioning *lbp = data;
            lbpu = lbp->lbpu;
            ib->lbpws = lbp->lbpws;
            scsi_free_scsi_task(t);
        }
    }

    uint64_t xfer = ISC_MAX_XFER;
    if (max_xfer_blocks)
        xfer = MIN(xfer, (uint64_t)max_xfer_blocks * ib->block);
    ib->max_xfer = (uint32_t)MAX(xfer - xfer % ib->block, ib->block);

    uint32_t range = ISC_MAX_RANGE / ib->block;
    ib->max_unmap = lbpu && max_unmap && max_unmap_bdc ? MIN(max_unmap, range) : 0;
    ib->max_ws = max_ws ? (uint32_t)MIN(max_ws, range) : range;
}

static void learn_mode(struct isc_be *ib)
{
    struct isc_cmd c = {.kind = ISC_MODE_SENSE6, .alloc = 255};
    struct scsi_task *t;
    struct scsi_mode_sense *ms;
    if (ask(ib, &c, &t, (void **)&ms) < 0) {
        /* Optional for a disk: then neither write protect nor FUA. */
        log_info(backend, "iscsi: %s: no MODE SENSE; FUA is emulated with SYNCHRONIZE CACHE",
                 ib->be.spec);
        return;
    }
    uint8_t dsp = ms->device_specific_parameter;
    scsi_free_scsi_task(t);
    if (dsp & MS_WP) {
        if (!ib->readonly)
            log_info(backend, "iscsi: %s: the LUN is write-protected: serving it read-only",
                     ib->be.spec);
        ib->readonly = true;
    }
    ib->fua = dsp & MS_DPOFUA;
}

int isc_learn_lu(struct isc_be *ib, const struct backend_params *p)
{
    ib->readonly = p->readonly;
    int r = learn_inquiry(ib);
    if (r == 0)
        r = learn_capacity(ib);
    if (r < 0)
        return r;
    learn_vpd(ib);
    learn_mode(ib);

    uint32_t caps = BE_REMOTE | BE_CAN_FLUSH;
    /* SYNCHRONIZE CACHE covers the whole LUN whichever session sends it. */
    caps |= BE_CAN_MULTI_CONN;
    if (ib->readonly) {
        caps |= BE_READONLY;
    } else {
        caps |= ib->fua ? BE_CAN_FUA : 0;
        caps |= ib->max_unmap ? BE_CAN_TRIM : 0;
        caps |= BE_CAN_ZERO; /* WRITE SAME(16); if refused, zeros are written */
    }
    caps |= ib->lbpme ? BE_CAN_EXTENTS : 0;
    ib->be.caps = caps;
    return 0;
}
