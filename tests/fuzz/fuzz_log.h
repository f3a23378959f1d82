/* Logging for the fuzz harnesses: silent by default (malformed input is
 * logged at warn, far too often to be useful), or at the level given in
 * SHOAL_FUZZ_LOG (e.g. "debug") to follow one input (scripts/fuzz --repro). */
#ifndef SHOAL_TESTS_FUZZ_LOG_H
#define SHOAL_TESTS_FUZZ_LOG_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"

/* Returns true when SHOAL_FUZZ_LOG asked for a log. */
static inline bool fuzz_log_setup(void)
{
    const char *lvl = getenv("SHOAL_FUZZ_LOG");
    if (!lvl) {
        log_set_all(-1);
        return false;
    }
    char spec[64];
    snprintf(spec, sizeof spec, "all=%s", lvl);
    log_set_spec(spec);
    return true;
}

#endif
