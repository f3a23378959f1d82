/* shoald's state file; see state.h. */
#include "daemon/state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/vol_settings.h"

#define STATE_VERSION 1

struct state {
    pthread_mutex_t lock;
    char *dir, *file;
    int lock_fd;
    bool created; /* the directory is ours: made by state_open */
    json_t *root; /* {"version", "volumes": {}, "removed": {}, "enabled": {}} */
};

const char *state_dir_choose(const char *given, bool *implicit)
{
    *implicit = !given;
    if (given)
        return strcmp(given, "off") ? given : NULL;
    /* systemd: StateDirectory=shoal sets it; several are ':'-separated and
     * the first is ours. */
    static char first[4096];
    const char *env = getenv("STATE_DIRECTORY");
    if (!env || !env[0]) {
        return STATE_DIR_DEFAULT;
    }
    snprintf(first, sizeof first, "%.*s", (int)strcspn(env, ":"), env);
    return first;
}

int state_give_to(struct state *s, uid_t uid, gid_t gid)
{
    if (!s || !s->created)
        return 0;
    /* Made by this start, so nobody else's: the user shoald runs as must
     * write it (state.json is made on the first change). */
    if (chown(s->dir, uid, gid) < 0 || fchown(s->lock_fd, uid, gid) < 0)
        return -errno;
    return 0;
}

const char *state_file(const struct state *s)
{
    return s ? s->file : "";
}

static json_t *section(struct state *s, const char *name)
{
    return json_object_get(s->root, name);
}

/* The file as this module writes it, else a reason. */
static const char *check_shape(json_t *root)
{
    if (!json_is_object(root))
        return "not a JSON object";
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != STATE_VERSION)
        return "no \"version\": 1";
    const char *const sections[] = {"volumes", "removed", "enabled"};
    for (size_t i = 0; i < 3; i++)
        if (!json_is_object(json_object_get(root, sections[i])))
            return "a section (volumes, removed, enabled) is missing or not an object";
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(root, "volumes"), name, v)
    {
        if (!volume_name_valid(name) || !json_is_object(v))
            return "a volume that is not NAME: {...}";
        json_t *b = json_object_get(v, "backing");
        if (!json_is_string(b) || !json_string_value(b)[0])
            return "a volume without \"backing\"";
        json_t *ro = json_object_get(v, "readonly");
        if (ro && !json_is_boolean(ro))
            return "a volume flag that is not true or false";
        struct volume_config scratch = {0};
        const char *why = vol_settings_parse(v, &scratch);
        if (why)
            return why;
        json_t *f = json_object_get(v, "format");
        enum backend_format fmt;
        if (f && (!json_is_string(f) || backend_format_parse(json_string_value(f), &fmt) < 0))
            return "a volume's \"format\" is not auto or raw";
    }
    json_object_foreach(json_object_get(root, "removed"), name, v)
    {
        if (!volume_name_valid(name) || !json_is_true(v))
            return "a removed volume that is not NAME: true";
        /* This module never writes a name in both (an add clears its
         * removal, a removal its add): which one would hold? */
        if (json_object_get(json_object_get(root, "volumes"), name))
            return "a volume both in \"volumes\" and in \"removed\"";
    }
    json_object_foreach(json_object_get(root, "enabled"), name, v)
    {
        if (!volume_name_valid(name) || !json_is_boolean(v))
            return "an enabled entry that is not NAME: true|false";
    }
    return NULL;
}

/* DIR/state.json (file) as the start loads it: JSON of the shape this
 * module writes, else refused. 0 or -errno with one line in err. */
static int load_file(const char *file, json_t **out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        /* jansson quotes the text near the error: a line break or other
         * control byte in it would break the one-line message. */
        str_printable(je.text);
        if (je.line > 0)
            snprintf(err, errlen, "%s:%d: %s (fix or remove the file)", file, je.line, je.text);
        else
            snprintf(err, errlen, "%s: %s", file, je.text);
        return -EINVAL;
    }
    const char *why = check_shape(root);
    if (why) {
        snprintf(err, errlen, "%s: not a shoald state file: %s (fix or remove the file)", file,
                 why);
        json_decref(root);
        return -EINVAL;
    }
    *out = root;
    return 0;
}

int state_check(const char *dir, char *err, size_t errlen)
{
    if (dir[0] != '/') {
        snprintf(err, errlen, "state dir '%s': not an absolute path", dir);
        return -EINVAL;
    }
    struct stat st;
    if (stat(dir, &st) < 0) {
        /* state_open creates the directory itself, not its parents. */
        int e = errno;
        _cleanup_free_ char *parent = strdup(dir);
        char *slash = parent ? strrchr(parent, '/') : NULL;
        if (slash)
            slash[slash == parent] = '\0';
        if (e != ENOENT || !parent || access(parent, W_OK | X_OK) < 0) {
            e = e != ENOENT || !parent ? e : errno;
            snprintf(err, errlen, "cannot create state dir '%s': %s", dir, strerror(e));
            return -e;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "state dir '%s': not a directory", dir);
        return -ENOTDIR;
    }
    _cleanup_free_ char *file = NULL;
    if (asprintf(&file, "%s/state.json", dir) < 0) {
        file = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (access(file, F_OK) < 0 && errno == ENOENT)
        return 0;
    json_t *root = NULL;
    int r = load_file(file, &root, err, errlen);
    json_decref(root);
    return r;
}

int state_open(const char *dir, struct state **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!dir)
        return 0;
    if (dir[0] != '/') {
        snprintf(err, errlen, "state dir '%s': not an absolute path", dir);
        return -EINVAL;
    }
    bool created = mkdir(dir, 0700) == 0;
    if (!created && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create state dir '%s': %s", dir, strerror(e));
        return -e;
    }
    struct state *s = calloc(1, sizeof *s);
    if (!s || asprintf(&s->file, "%s/state.json", dir) < 0 || !(s->dir = strdup(dir))) {
        if (s)
            free(s->file);
        free(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->lock_fd = -1;
    s->created = created;
    int r = 0;
    _cleanup_free_ char *lock = NULL;
    if (asprintf(&lock, "%s/state.lock", dir) < 0) {
        lock = NULL;
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open '%s': %s", lock, strerror(-r));
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        snprintf(err, errlen, "state dir '%s' is in use by another shoald (%s is locked)", dir,
                 lock);
        goto fail;
    }
    if (access(s->file, F_OK) < 0 && errno == ENOENT) {
        s->root = json_pack("{s:i, s:{}, s:{}, s:{}}", "version", STATE_VERSION, "volumes",
                            "removed", "enabled");
        if (!s->root) {
            r = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        *out = s;
        return 0;
    }
    r = load_file(s->file, &s->root, err, errlen);
    if (r < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    state_close(s);
    return r;
}

void state_close(struct state *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    json_decref(s->root);
    pthread_mutex_destroy(&s->lock);
    free(s->dir);
    free(s->file);
    free(s);
}

/* Write the whole state: temp file in the same directory, fsync, rename
 * over the old one, fsync the directory (the rename itself). Called with
 * the lock held. */
static int save_locked(struct state *s, char *err, size_t errlen)
{
    _cleanup_free_ char *text = json_dumps(s->root, JSON_INDENT(2) | JSON_SORT_KEYS);
    _cleanup_free_ char *tmp = NULL;
    if (!text || asprintf(&tmp, "%s/.state.json.XXXXXX", s->dir) < 0) {
        tmp = NULL;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot write the state file in %s: %s", s->dir, strerror(e));
        return -e;
    }
    size_t len = strlen(text), done = 0;
    int r = 0;
    while (done < len && r == 0) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno != EINTR)
            r = -errno;
        else if (n > 0)
            done += (size_t)n;
    }
    if (r == 0 && write(fd, "\n", 1) != 1)
        r = -EIO;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, s->file) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot write %s: %s", s->file, strerror(-r));
        return r;
    }
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot sync %s: %s", s->dir, strerror(-r));
    }
    if (dfd >= 0)
        close(dfd);
    return r;
}

bool state_is_removed(struct state *s, const char *name)
{
    if (!s)
        return false;
    LOCK_GUARD(&s->lock);
    return json_object_get(section(s, "removed"), name) != NULL;
}

bool state_is_api_volume(struct state *s, const char *name)
{
    if (!s)
        return false;
    LOCK_GUARD(&s->lock);
    return json_object_get(section(s, "volumes"), name) != NULL;
}

int state_enabled(struct state *s, const char *name)
{
    if (!s)
        return -1;
    LOCK_GUARD(&s->lock);
    json_t *e = json_object_get(section(s, "enabled"), name);
    return e ? json_is_true(e) : -1;
}

size_t state_volumes(struct state *s, struct volume_config *out, size_t max)
{
    if (!s)
        return 0;
    LOCK_GUARD(&s->lock);
    size_t n = 0;
    const char *name;
    json_t *v;
    json_object_foreach(section(s, "volumes"), name, v)
    {
        if (n == max)
            break;
        struct volume_config *c = &out[n++];
        memset(c, 0, sizeof *c);
        c->name = name;
        c->backend.spec = json_string_value(json_object_get(v, "backing"));
        c->readonly = json_is_true(json_object_get(v, "readonly"));
        c->backend.readonly = c->readonly;
        (void)vol_settings_parse(v, c); /* checked when loaded */
        json_t *f = json_object_get(v, "format");
        if (f)
            backend_format_parse(json_string_value(f), &c->backend.format);
    }
    return n;
}

int state_note_added(struct state *s, const struct volume_config *cfg, char *err, size_t errlen)
{
    if (!s)
        return 0;
    LOCK_GUARD(&s->lock);
    json_t *v = vol_settings_json(cfg);
    if (v && (json_object_set_new(v, "backing", json_string(cfg->backend.spec)) < 0 ||
              json_object_set_new(v, "readonly", json_boolean(cfg->readonly)) < 0 ||
              json_object_set_new(
                  v, "format",
                  json_string(cfg->backend.format == BACKEND_FORMAT_RAW ? "raw" : "auto")) < 0)) {
        json_decref(v);
        v = NULL;
    }
    if (!v || json_object_set_new(section(s, "volumes"), cfg->name, v) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    json_object_del(section(s, "removed"), cfg->name);
    json_object_del(section(s, "enabled"), cfg->name);
    return save_locked(s, err, errlen);
}

int state_note_removed(struct state *s, const char *name, char *err, size_t errlen)
{
    if (!s)
        return 0;
    LOCK_GUARD(&s->lock);
    json_object_del(section(s, "enabled"), name);
    if (json_object_del(section(s, "volumes"), name) < 0 &&
        json_object_set_new(section(s, "removed"), name, json_true()) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return save_locked(s, err, errlen);
}

int state_note_enabled(struct state *s, const char *name, bool on, char *err, size_t errlen)
{
    if (!s)
        return 0;
    LOCK_GUARD(&s->lock);
    json_t *v = json_object_get(section(s, "volumes"), name);
    int r = v ? json_object_set_new(v, "enabled", json_boolean(on))
              : json_object_set_new(section(s, "enabled"), name, json_boolean(on));
    if (r < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return save_locked(s, err, errlen);
}

int state_forget(struct state *s, const char *name, char *err, size_t errlen)
{
    if (!s)
        return 0;
    LOCK_GUARD(&s->lock);
    int n = !json_object_del(section(s, "volumes"), name);
    n += !json_object_del(section(s, "removed"), name);
    n += !json_object_del(section(s, "enabled"), name);
    return n ? save_locked(s, err, errlen) : 0;
}
