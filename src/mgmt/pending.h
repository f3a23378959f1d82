/* Volumes added with "wait": false while their back end opens, and those
 * whose open failed (kept, with the back end's error, until DELETE or a new
 * POST of the name). One background thread per add: it opens the volume in
 * the engine, persists it like a synchronous add (the daemon's
 * hooks.changed), then drops the entry, or marks it failed.
 *
 * Threads: the table has its own mutex. pending_free joins every thread;
 * each one is bounded by the back end's connect timeout, so mgmt_stop waits
 * at most that long and no thread outlives the server. */
#ifndef SHOAL_MGMT_PENDING_H
#define SHOAL_MGMT_PENDING_H

#include <jansson.h>
#include <stdbool.h>

struct mgmt;
struct pending;
struct volume_config;

struct pending *pending_new(void);
/* Join every background open, then free. NULL is a no-op. */
void pending_free(struct pending *p);

/* Start opening cfg (deep-copied) on a new thread. -EBUSY when that name
 * is opening already, -ENOMEM, -EAGAIN (no thread); a failed entry of the
 * same name is replaced. */
int pending_begin(struct mgmt *m, const struct volume_config *cfg);
/* -EBUSY when the name is opening; else forgets a failed entry of that
 * name (a new synchronous POST replaces it) and returns 0. */
int pending_claim(struct pending *p, const char *name);
/* DELETE: 0 after dropping a failed entry, -EBUSY while opening, -ENOENT. */
int pending_remove(struct pending *p, const char *name);
/* The entry as JSON ({"name","state","error"?}), or NULL when there is
 * none. The error is shown only to a request with the token (it may name
 * the backing path, which is hidden without it). */
json_t *pending_json(struct pending *p, const char *name, bool authorized);
/* Append every entry to arr. */
void pending_list(struct pending *p, json_t *arr, bool authorized);

#endif
