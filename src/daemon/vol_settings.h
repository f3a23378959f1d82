/* A volume's settings beyond its name, back end spec, format and
 * read-only flag, as JSON: one shape for the state file (daemon/state.c)
 * and a warm move's hand-over record (daemon/move.c), so what one writes
 * the other reads. Keys: "enabled", "direct", "conns", and "readahead" and
 * "connect_timeout_ms" when not the default (older state files have
 * neither). */
#ifndef SHOAL_DAEMON_VOL_SETTINGS_H
#define SHOAL_DAEMON_VOL_SETTINGS_H

#include <jansson.h>

#include "core/engine.h"

/* The settings of c as a new object, or NULL (out of memory). */
json_t *vol_settings_json(const struct volume_config *c);
/* Apply each key of v that holds a valid value to c (keys absent leave c
 * as it is). NULL, or the first bad key's reason (that value not applied:
 * a state file with one is refused, a hand-over keeps the default). */
const char *vol_settings_parse(const json_t *v, struct volume_config *c);

#endif
