/* Where the daemon's volumes come from at start, and how the API's
 * changes reach the state file and the reloader: the glue between
 * options, state.h, reload.h and the management server's hooks. */
#ifndef SHOAL_DAEMON_PERSIST_H
#define SHOAL_DAEMON_PERSIST_H

#include "core/engine.h"
#include "daemon/options.h"
#include "daemon/reload.h"
#include "daemon/state.h"
#include "mgmt/mgmt.h"

/* Add the volumes of the config files and the command line (but those the
 * state file says were removed through the API, with the API's
 * enable/disable applied), then those added through the API. A volume
 * that cannot be opened stops the start: one line on stderr naming it
 * (and the state file for the API's). 0 or -1. */
int persist_start_volumes(struct engine *e, struct daemon_options *o, struct state *st);

/* The management server's hooks: changes to st, reloads through rl. */
struct mgmt_hooks persist_hooks(struct state *st, struct reloader *rl);

#endif
