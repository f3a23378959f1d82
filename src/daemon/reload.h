/* Reload: re-read the config file(s) given with -c (SIGHUP, POST
 * /api/v1/reload, `shoalctl reload`) and bring the running daemon in line,
 * without dropping a client.
 *
 * The new file is parsed and checked whole first (with the same command
 * line, which still wins over it); an error changes nothing and is
 * reported as FILE:LINE. Then, by comparing with the file as last applied:
 *   - a new [volume] is added; one no longer in the file is removed when
 *     no client is connected, else kept and reported (a reload once the
 *     clients are gone removes it: clients are never dropped);
 *   - enabled = true|false is applied live;
 *   - a changed backing, format, readonly, direct, connections or
 *     readahead means a new export: done when the volume is idle, else
 *     kept as it was and reported (applied by a later reload);
 *   - cache-size is applied live (the engine's resize); debug levels too;
 *   - any other changed setting (listeners, TLS, threads, http...) is
 *     reported as needing a restart.
 * Volumes from the command line and those added through the API are left
 * alone; a [volume] whose name one of them holds is an error of that
 * volume only. Reloads are serialised. */
#ifndef SHOAL_DAEMON_RELOAD_H
#define SHOAL_DAEMON_RELOAD_H

#include <jansson.h>
#include <stddef.h>

#include "core/engine.h"
#include "daemon/options.h"
#include "daemon/state.h"

struct reloader;

/* argv must stay valid (main's). running: the options the daemon started
 * with. 0 or -errno (err says why). */
int reloader_new(int argc, char **argv, const struct daemon_options *running, struct engine *engine,
                 struct state *state, struct reloader **out, char *err, size_t errlen);
void reloader_free(struct reloader *r);

/* Reload now. 0 with *report: {"config": [files], "applied": [...],
 * "pending": [...], "restart_needed": [...], "errors": [...]}, each a list
 * of one-line sentences (also logged). -EINVAL with err = "FILE:LINE: ..."
 * when the file is wrong, -ENOENT when shoald has no config file: nothing
 * changed. */
int reloader_run(struct reloader *r, json_t **report, char *err, size_t errlen);

#endif
