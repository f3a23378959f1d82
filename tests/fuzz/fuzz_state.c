/* libFuzzer target for shoald's state file (src/daemon/state.c, with the
 * volume settings of src/daemon/vol_settings.c, which a warm move's
 * hand-over record shares): the input is the file's bytes, written as
 * state.json in a private directory that state_open then loads, as a start
 * with --state-dir does.
 *
 * The harness aborts when a result breaks what main.c relies on:
 *   - a refusal has a one-line reason naming the file, and state_open gives
 *     nothing back;
 *   - a file loaded lists volumes whose names are valid, whose backing is a
 *     non-empty string and whose settings are in range;
 *   - the settings of each volume, written by vol_settings_json (the writer
 *     the state file and a hand-over both use) and parsed back, are the
 *     same, with no reason given;
 *   - a file loaded loads again the same after a change is saved (the
 *     writer's own output is a state file).
 *
 * The directory lives in /dev/shm when it exists (a state file is fsynced
 * on save; tmpfs makes that cheap). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/engine.h"
#include "daemon/state.h"
#include "daemon/vol_settings.h"
#include "fuzz_log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VOLS 256

static char dir[64], file[96];

static void cleanup(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/state.lock", dir);
    unlink(p);
    unlink(file);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_log_setup();
    snprintf(dir, sizeof dir, "%s/shoal-fuzz-state.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(file, sizeof file, "%s/state.json", dir);
    atexit(cleanup);
    return 0;
}

static void write_file(const uint8_t *data, size_t size)
{
    FILE *f = fopen(file, "w");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

static void check_settings(const struct volume_config *c)
{
    if (c->backend.conns > 64 || c->readahead < -1 || c->readahead > VOL_READAHEAD_MAX ||
        c->backend.connect_timeout_ms > 3600000)
        abort();
    json_t *j = vol_settings_json(c);
    if (!j)
        abort();
    struct volume_config back = {0};
    if (vol_settings_parse(j, &back))
        abort();
    json_decref(j);
    if (back.disabled != c->disabled || back.backend.direct != c->backend.direct ||
        back.backend.conns != c->backend.conns || back.readahead != c->readahead ||
        back.backend.connect_timeout_ms != c->backend.connect_timeout_ms)
        abort();
}

/* The volumes of s, checked; their count. */
static size_t check_volumes(struct state *s, struct volume_config *vols)
{
    size_t n = state_volumes(s, vols, MAX_VOLS);
    for (size_t i = 0; i < n; i++) {
        const struct volume_config *c = &vols[i];
        if (!volume_name_valid(c->name) || !c->backend.spec || !c->backend.spec[0])
            abort();
        if (!state_is_api_volume(s, c->name) || state_is_removed(s, c->name))
            abort();
        check_settings(c);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    write_file(data, size);
    struct state *s = NULL;
    char err[512] = "";
    int r = state_open(dir, &s, err, sizeof err);
    if (r < 0) {
        /* One line, naming the file: what a start prints before it exits. */
        if (s || !err[0] || strchr(err, '\n') || !strstr(err, file))
            abort();
        return 0;
    }
    if (!s)
        abort();
    static struct volume_config vols[MAX_VOLS], again[MAX_VOLS];
    size_t n = check_volumes(s, vols);
    /* A save rewrites the file with the module's own writer: re-adding the
     * first volume must leave a file that loads with the same volumes. */
    if (n && n < MAX_VOLS) {
        struct volume_config first = vols[0];
        char *name = strdup(first.name), *spec = strdup(first.backend.spec);
        if (!name || !spec)
            abort();
        first.name = name;
        first.backend.spec = spec;
        if (state_note_added(s, &first, err, sizeof err) < 0)
            abort();
        state_close(s);
        s = NULL;
        if (state_open(dir, &s, err, sizeof err) < 0 || !s)
            abort();
        size_t m = check_volumes(s, again);
        bool found = false;
        for (size_t i = 0; i < m; i++) {
            if (strcmp(again[i].name, name))
                continue;
            found = true;
            if (strcmp(again[i].backend.spec, spec) || again[i].readonly != first.readonly ||
                again[i].disabled != first.disabled ||
                again[i].backend.conns != first.backend.conns ||
                again[i].backend.direct != first.backend.direct ||
                again[i].readahead != first.readahead ||
                again[i].backend.connect_timeout_ms != first.backend.connect_timeout_ms)
                abort();
        }
        if (!found || m != n)
            abort();
        free(name);
        free(spec);
    }
    state_close(s);
    return 0;
}
