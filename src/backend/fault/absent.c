/* The "fault" registry entry of a build without the fault back end (the
 * default; meson -Dfault_backend=true compiles fault.c instead). The fault
 * layer lies about writes on request, so it has no place in a user's shoald;
 * the entry stays so that a "fault:" spec meant for that layer is refused
 * with one line saying why, instead of being taken for a relative file path
 * that then "does not exist". A file whose name starts with "fault:" is
 * still reachable as "./fault:..." or by its absolute path. */
#include <errno.h>
#include <string.h>

#include "backend/backend.h"

#define FAULT_PREFIX "fault:"

static bool absent_probe(const char *spec)
{
    return strncmp(spec, FAULT_PREFIX, strlen(FAULT_PREFIX)) == 0;
}

static int absent_open(const struct backend_params *p, struct backend **out)
{
    (void)p;
    *out = NULL;
    backend_set_open_error("the fault: back end is a test-only layer, not built into this"
                           " shoald (meson setup -Dfault_backend=true)");
    return -ENOTSUP;
}

const struct backend_ops backend_fault_ops = {
    .name = "fault",
    .probe = absent_probe,
    .open = absent_open,
};
