/* shoald's state file: the volume changes made through the API (added,
 * removed, enabled, disabled), kept in DIR/state.json so they survive a
 * restart. Loaded at start after the config file; rewritten whole on each
 * change, atomically (temp file, fsync, rename, fsync of the directory),
 * so a crash leaves the old file or the new one, never half of one.
 *
 * What it holds, by volume name:
 *   "volumes": volumes added through the API, with their settings;
 *   "removed": config-file or command-line volumes removed through the API
 *              (not started again);
 *   "enabled": enable/disable of config-file or command-line volumes.
 * A config file edit that changes a volume's "enabled" (applied by a
 * reload) wins over the API's choice for that volume.
 *
 * DIR is --state-dir (or state-dir in [shoald]); without it, $STATE_DIRECTORY
 * (systemd's StateDirectory=); without either, STATE_DIR_DEFAULT. "off"
 * turns it off: API changes last until the daemon stops. DIR/state.lock
 * keeps a second shoald off the same directory. A directory not asked for
 * by name ($STATE_DIRECTORY or the default) may be unusable (not root, or
 * another shoald holds it): the daemon then runs without a state file and
 * says so; a --state-dir that cannot be used stops the start.
 *
 * Thread safety: every function takes the state's own lock; a NULL state
 * (no state dir) makes each a no-op that answers "nothing recorded". */
#ifndef SHOAL_DAEMON_STATE_H
#define SHOAL_DAEMON_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/engine.h"

struct state;

#define STATE_DIR_DEFAULT "/var/lib/shoal"

/* The directory to use: given ("off": NULL), else $STATE_DIRECTORY's first
 * entry, else STATE_DIR_DEFAULT; *implicit when not given. */
const char *state_dir_choose(const char *given, bool *implicit);

/* Create DIR if missing (mode 0700), lock it and load DIR/state.json when
 * it exists. A file that is not the JSON this module writes is refused:
 * starting without it would overwrite it on the next change. 0 or -errno
 * with one line in err (naming the file). */
int state_open(const char *dir, struct state **out, char *err, size_t errlen);
/* What state_open would refuse in DIR, found without creating, locking or
 * keeping anything: a reload checks a changed --state-dir with it. 0 or
 * -errno with one line in err. */
int state_check(const char *dir, char *err, size_t errlen);
void state_close(struct state *s);
/* Before dropping root to uid:gid (--user): a state dir this start created
 * becomes theirs, so they can write the state file. One that existed is
 * left as it is (a warning says if it is not writable). 0 or -errno. */
int state_give_to(struct state *s, uid_t uid, gid_t gid);
const char *state_file(const struct state *s); /* "" for NULL */

/* Startup and reload queries. */
bool state_is_removed(struct state *s, const char *name);
bool state_is_api_volume(struct state *s, const char *name);
/* -1: nothing recorded; 0: disabled; 1: enabled through the API. */
int state_enabled(struct state *s, const char *name);
/* The volumes added through the API: each as a volume_config whose
 * strings live until the next change or state_close. */
size_t state_volumes(struct state *s, struct volume_config *out, size_t max);

/* Record a change made through the API (and write the file). 0 or -errno
 * with one line in err; the change stays in memory either way. */
int state_note_added(struct state *s, const struct volume_config *cfg, char *err, size_t errlen);
int state_note_removed(struct state *s, const char *name, char *err, size_t errlen);
int state_note_enabled(struct state *s, const char *name, bool on, char *err, size_t errlen);
/* Drop what is recorded about name (the config file now decides). */
int state_forget(struct state *s, const char *name, char *err, size_t errlen);

#endif
