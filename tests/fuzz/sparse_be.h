/* An in-memory sparse back end for the fuzz targets: volumes of several GiB
 * that cost memory only for what was written, so requests of every length
 * the NBD protocol allows (up to the export size, past it, wrapping) reach
 * the volume layer without moving gigabytes. See sparse_be.c for the
 * content model. Not registered with backend_open(): a harness makes one
 * and hands it to engine_add_volume_backend(). */
#ifndef SHOAL_TESTS_FUZZ_SPARSE_BE_H
#define SHOAL_TESTS_FUZZ_SPARSE_BE_H

#include <stdint.h>

#include "backend/backend.h"

struct sparse_be_config {
    uint64_t size;          /* bytes; any value */
    uint64_t pattern_bytes; /* non-zero base content at each end (0: all zero) */
    uint64_t max_bytes;     /* written data kept at most; past it writes fail with ENOSPC */
    uint32_t caps;          /* BE_CAN_* reported (BE_CAN_TRIM etc. choose native or fallback) */
    uint32_t min_block;     /* reported block size constraint (1 = any) */
};

/* 0 and *out, or -ENOMEM. */
int sparse_be_new(const struct sparse_be_config *cfg, struct backend **out);

#endif
