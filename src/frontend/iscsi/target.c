/* Targets: one per volume, named ISCSI_IQN_PREFIX + the volume's name
 * (server.h says why). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/engine.h"
#include "frontend/iscsi/proto.h"
#include "frontend/iscsi/server.h"

struct find_ctx {
    const char *name;
    struct volume *found;
    unsigned matches;
};

static int find_ci(struct volume *v, void *opaque)
{
    struct find_ctx *f = opaque;
    if (!strcasecmp(volume_name(v), f->name)) {
        f->matches++;
        if (!f->found) {
            volume_get(v);
            f->found = v;
        }
    }
    return 0;
}

struct volume *iscsi_target_volume(struct iscsi_server *s, const char *target)
{
    size_t pl = strlen(ISCSI_IQN_PREFIX);
    if (strncasecmp(target, ISCSI_IQN_PREFIX, pl) || !target[pl])
        return NULL;
    const char *name = target + pl;
    struct volume *v = engine_get_volume(s->engine, name);
    if (v)
        return v;
    /* iSCSI names are case-insensitive and initiators may lower-case them;
     * volume names are not: take a case-insensitive match only when it is
     * the only one. */
    struct find_ctx f = {name, NULL, 0};
    engine_for_each_volume(s->engine, find_ci, &f);
    if (f.found && f.matches != 1) {
        volume_put(f.found);
        return NULL;
    }
    return f.found;
}
