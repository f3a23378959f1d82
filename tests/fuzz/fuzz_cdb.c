/* libFuzzer target for the SCSI layer (src/frontend/scsi): arbitrary CDBs
 * and data-out, run through scsi_exec as a transport would, on a small
 * sparse volume (16 MiB + 1000 bytes, every capability, at most 32 MiB of
 * written data kept) and a read-only one (1 MiB). The engine has no
 * workers, so every command completes before scsi_exec returns.
 *
 * Input: a sequence of commands, each
 *   flags       1 byte: bit 0 no LU, bit 1 the read-only LU, bit 2 nexus B
 *               (else A), bits 4-5 the data-in maximum (1 MiB, 0, 255,
 *               64 KiB), bit 6 a LUN reset by the other nexus first, bit 7
 *               nexus gone first
 *   cdb_len     1 byte (any value: the layer must refuse bad lengths)
 *   cdb         min(cdb_len, 32) bytes
 *   out_len     2 bytes, big-endian, then that many bytes of data-out (or
 *               what is left)
 * State (LU unit attentions, written data, the cache) carries over.
 *
 * Beyond memory safety (ASan, UBSan; every data-in byte is read), the
 * harness aborts when a command breaks what a transport relies on: done
 * exactly once, end exactly once and only after scsi_cmd_put; a status
 * SAM-5 defines; sense data (fixed format, 18 bytes) exactly with CHECK
 * CONDITION; data-in within data_in_max and covered by the iovecs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bufpool.h"
#include "core/engine.h"
#include "core/volume.h"
#include "frontend/scsi/scsi.h"
#include "fuzz_log.h"
#include "sparse_be.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct engine *engine;
static struct scsi_lu *lu_rw, *lu_ro;

static const struct scsi_nexus nexus[2] = {
    {.id = 1,
     .initiator = "iqn.2026-12.fuzz:a,i,0x1",
     .target = "iqn.2026-12.fuzz:t,t,0x1",
     .rel_tgt_port = 1},
    {.id = 2,
     .initiator = "iqn.2026-12.fuzz:b,i,0x2",
     .target = "iqn.2026-12.fuzz:t,t,0x1",
     .rel_tgt_port = 2},
};

static int add(const char *name, uint64_t size, uint64_t pattern, bool ro, struct scsi_lu **out)
{
    const struct sparse_be_config sc = {
        .size = size,
        .pattern_bytes = pattern,
        .max_bytes = 32u << 20,
        .caps = BE_CAN_FLUSH | BE_CAN_FUA | BE_CAN_TRIM | BE_CAN_ZERO | BE_CAN_FAST_ZERO |
                BE_CAN_EXTENTS | BE_CAN_MULTI_CONN,
        .min_block = 1,
    };
    struct backend *be;
    int r = sparse_be_new(&sc, &be);
    if (r < 0)
        return r;
    struct volume_config vc = {.name = name, .backend = {.spec = be->spec}, .readonly = ro};
    r = engine_add_volume_backend(engine, &vc, be);
    if (r < 0)
        return r;
    struct volume *v = engine_get_volume(engine, name);
    if (!v)
        return -1;
    *out = scsi_lu_get(engine, v);
    volume_put(v);
    return *out ? 0 : -1;
}

static void stop_all(void)
{
    scsi_lu_put(lu_rw);
    scsi_lu_put(lu_ro);
    engine_remove_volume(engine, "fuzz", true);
    engine_remove_volume(engine, "ro", true);
    engine_destroy(engine);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_log_setup();
    bufpool_init(64u << 20);
    struct engine_config ec = {.cache_bytes = 4u << 20, .workers = 0};
    if (engine_create(&ec, &engine) < 0 ||
        add("fuzz", (16u << 20) + 1000, 4u << 20, false, &lu_rw) < 0 ||
        add("ro", 1u << 20, 1u << 20, true, &lu_ro) < 0) {
        fprintf(stderr, "fuzz: cannot create the engine or its volumes\n");
        abort();
    }
    atexit(stop_all);
    return 0;
}

struct fcmd {
    struct scsi_cmd c;
    int dones, ends;
};

static volatile uint8_t sink;

static void f_done(struct scsi_cmd *c)
{
    struct fcmd *f = (struct fcmd *)c;
    if (f->dones++ || f->ends)
        abort();
    switch (c->status) {
    case 0x00:
    case 0x02:
    case 0x04:
    case 0x08:
    case 0x18:
    case 0x28:
    case 0x40:
        break;
    default:
        abort();
    }
    if ((c->status == 0x02) != (c->sense_len != 0))
        abort();
    if (c->sense_len && (c->sense_len != 18 || (c->sense[0] & 0x7f) != 0x70))
        abort();
    if (c->data_in_len > c->data_in_max)
        abort();
    uint64_t covered = 0;
    uint8_t x = 0;
    for (unsigned i = 0; i < c->niov && covered < c->data_in_len; i++) {
        const uint8_t *p = c->iov[i].iov_base;
        size_t n = c->iov[i].iov_len;
        if (n > c->data_in_len - covered)
            n = c->data_in_len - covered;
        for (size_t k = 0; k < n; k++)
            x ^= p[k];
        covered += n;
    }
    sink = x;
    if (covered != c->data_in_len)
        abort();
}

static void f_end(struct scsi_cmd *c)
{
    struct fcmd *f = (struct fcmd *)c;
    if (f->ends++ || f->dones != 1)
        abort();
}

static const uint32_t in_max[4] = {1u << 20, 0, 255, 64u << 10};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (pos + 2 <= size) {
        uint8_t flags = data[pos], cdb_len = data[pos + 1];
        pos += 2;
        size_t clen = cdb_len < 32 ? cdb_len : 32;
        struct fcmd *f = calloc(1, sizeof *f);
        if (!f)
            return 0;
        size_t take = size - pos < clen ? size - pos : clen;
        memcpy(f->c.cdb, data + pos, take);
        pos += take;
        uint32_t out_len = 0;
        if (pos + 2 <= size) {
            out_len = (uint32_t)data[pos] << 8 | data[pos + 1];
            pos += 2;
        }
        if (out_len > size - pos)
            out_len = (uint32_t)(size - pos);
        /* A copy of exactly out_len bytes, so ASan sees reads past it. */
        uint8_t *out = malloc(out_len ? out_len : 1);
        if (!out) {
            free(f);
            return 0;
        }
        memcpy(out, data + pos, out_len);
        pos += out_len;

        struct scsi_lu *lu = (flags & 1) ? NULL : (flags & 2) ? lu_ro : lu_rw;
        const struct scsi_nexus *nx = &nexus[(flags >> 2) & 1];
        if (lu && (flags & 0x40))
            scsi_lu_reset(lu, &nexus[!((flags >> 2) & 1)]);
        if (lu && (flags & 0x80))
            scsi_lu_nexus_gone(lu, nx);
        f->c.lu = lu;
        f->c.nexus = nx;
        f->c.lun = 0;
        f->c.cdb_len = cdb_len;
        f->c.data_out = out;
        f->c.data_out_len = out_len;
        f->c.data_in_max = in_max[(flags >> 4) & 3];
        f->c.done = f_done;
        f->c.end = f_end;
        scsi_exec(&f->c);
        if (f->dones != 1 || f->ends)
            abort(); /* no workers: done before scsi_exec returns, end not yet */
        scsi_cmd_put(&f->c);
        if (f->ends != 1)
            abort();
        free(out);
        free(f);
    }
    return 0;
}
