/* Driving the SCSI layer's reservation and offload commands the way a
 * transport does (scsi_exec, done, scsi_cmd_put, end) without dispatch.c
 * or lu.c: a logical unit built by hand over a real engine whose volumes
 * are files in a temporary directory, a small dispatcher over pr.c's,
 * xcopy.c's and caw.c's tables (with the reservation check dispatch.c
 * makes), and a recorder for the unit attentions pr.c posts. */
#ifndef SHOAL_TESTS_SCSI2_HARNESS_H
#define SHOAL_TESTS_SCSI2_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/scsi/scsi_int.h"

struct h_vol {
    char path[128];
    struct volume *v;
    struct scsi_lu lu;
};

/* The engine (workers: 0 runs requests on the caller) and a temp dir. */
void h_start(unsigned workers);
void h_stop(void);
struct engine *h_engine(void);
/* A file-backed volume of size bytes filled with a pattern from seed,
 * registered and with its LU made. */
void h_vol_open(struct h_vol *hv, const char *name, uint64_t size, uint8_t seed, bool readonly);
void h_vol_close(struct h_vol *hv);
/* EXTENDED COPY may reach every volume (the default here), or only the
 * LU's own (no transport policy). */
void h_copy_policy(bool allow_all);
/* The backing file's bytes, read directly. */
void h_file_read(const struct h_vol *hv, uint64_t off, void *buf, uint32_t len);
/* The volume's bytes read through the core (the cache), as a client sees them. */
void h_read_volume(const struct h_vol *hv, uint64_t off, uint32_t len, void *buf);
void h_pattern(uint8_t seed, uint64_t off, void *buf, uint32_t len);

/* One command, run to its end. */
struct h_res {
    uint8_t status;
    uint8_t sense_len;
    uint8_t sense[SCSI_SENSE_MAX];
    uint32_t data_in_len;
    uint8_t data[8192];
};
void h_run(struct scsi_lu *lu, const struct scsi_nexus *n, const uint8_t *cdb, unsigned cdb_len,
           const void *out, uint32_t out_len, uint32_t in_max, struct h_res *r);

/* Sense fields. */
static inline uint8_t h_key(const struct h_res *r)
{
    return r->sense[2] & 0x0f;
}
static inline uint16_t h_asc(const struct h_res *r)
{
    return (uint16_t)(r->sense[12] << 8 | r->sense[13]);
}

/* Unit attentions posted since the last h_ua_reset: how many went to the
 * nexus with ASC asc (0: any). */
void h_ua_reset(void);
unsigned h_ua_count(uint64_t nexus, uint16_t asc);

#endif
