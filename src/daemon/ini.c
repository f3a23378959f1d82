/* shoald's INI reader; the format is described in ini.h. */
#include "daemon/ini.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trim blanks on both sides, in place. */
static char *trim(char *s)
{
    while (blank(*s))
        s++;
    size_t n = strlen(s);
    while (n && blank(s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A value: quoted as a whole, or cut at a blank-preceded ';' or '#'. NULL
 * when a quote is not closed or text follows the closing quote. */
static char *value_of(char *v)
{
    v = trim(v);
    if (*v == '"') {
        char *end = strchr(v + 1, '"');
        if (!end)
            return NULL;
        char *rest = trim(end + 1);
        if (*rest && *rest != ';' && *rest != '#')
            return NULL;
        *end = '\0';
        return v + 1;
    }
    for (char *p = v; *p; p++) {
        if ((*p == ';' || *p == '#') && p > v && blank(p[-1])) {
            *p = '\0';
            break;
        }
    }
    return trim(v);
}

/* "[ volume   a ]" -> "volume a": blank runs squeezed to one space, so
 * the spelling of a header does not make two sections of one. */
static void squeeze(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (blank(*r)) {
            if (w > s && w[-1] != ' ')
                *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    if (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

static int syntax(unsigned line, unsigned *err_line, char *why, size_t whylen, const char *what)
{
    *err_line = line;
    snprintf(why, whylen, "%s", what);
    return -EINVAL;
}

int ini_parse_buffer(const char *buf, size_t len, ini_fn fn, void *opaque, unsigned *err_line,
                     char *why, size_t whylen)
{
    *err_line = 0;
    if (why && whylen)
        why[0] = '\0';
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) {
        buf += 3;
        len -= 3;
    }
    /* One copy of the text: lines are cut in place and the section name
     * stays valid while its keys are passed on. */
    _cleanup_free_ char *text = malloc(len + 1);
    _cleanup_free_ char *section = strdup("");
    if (!text || !section)
        return -ENOMEM;
    memcpy(text, buf, len);
    text[len] = '\0';

    unsigned line = 0;
    size_t pos = 0;
    while (pos < len) {
        line++;
        size_t n = 0;
        while (pos + n < len && text[pos + n] != '\n')
            n++;
        if (memchr(text + pos, '\0', n))
            return syntax(line, err_line, why, whylen, "a NUL byte (not a text file?)");
        char *s = text + pos;
        s[n] = '\0';
        pos += n + 1;
        s = trim(s);
        if (!*s || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end)
                return syntax(line, err_line, why, whylen, "section header without ']'");
            char *rest = trim(end + 1);
            if (*rest && *rest != ';' && *rest != '#')
                return syntax(line, err_line, why, whylen, "text after a section header");
            *end = '\0';
            squeeze(s + 1);
            if (!s[1])
                return syntax(line, err_line, why, whylen, "empty section name");
            free(section);
            section = strdup(s + 1);
            if (!section)
                return -ENOMEM;
            if (fn(opaque, line, section, NULL, NULL))
                return 1;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq)
            return syntax(line, err_line, why, whylen, "want 'key = value' or '[section]'");
        *eq = '\0';
        char *key = trim(s), *val = value_of(eq + 1);
        if (!*key)
            return syntax(line, err_line, why, whylen, "a value without a key");
        if (!val)
            return syntax(line, err_line, why, whylen, "a quoted value without its end quote");
        if (fn(opaque, line, section, key, val))
            return 1;
    }
    return 0;
}

/* What a file that is not a regular one is, for the reload's refusal. */
static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a pipe";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a regular file";
}

int ini_read_file(const char *path, bool regular_only, char **text, size_t *len, bool *regular,
                  char *why, size_t whylen)
{
    *text = NULL;
    *len = 0;
    *regular = false;
    /* O_NONBLOCK: opening a named FIFO waits for a writer, and on SIGHUP
     * that wait was on the thread that also takes SIGTERM: a config file
     * replaced by a FIFO hung the daemon for good. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    struct statfs sf;
    if (fd < 0 || fstat(fd, &st) < 0 || (S_ISFIFO(st.st_mode) && fstatfs(fd, &sf) < 0)) {
        int e = errno;
        snprintf(why, whylen, "%s", strerror(e));
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(why, whylen, "%s", strerror(EISDIR));
        return -EISDIR;
    }
    *regular = S_ISREG(st.st_mode);
    /* Checked on the open file, before a byte is read: a pipe read again
     * is empty (its text was read at start), or blocks while its writer
     * lives. */
    if (regular_only && !*regular) {
        snprintf(why, whylen, "%s, not a regular file", file_kind(st.st_mode));
        return -EINVAL;
    }
    /* A pipe (-c <(...)) has its writer already; a named FIFO may never
     * get one, and without one reads as an empty file, which a reload
     * would apply (every idle volume of the file removed). */
    if (S_ISFIFO(st.st_mode) && sf.f_type != PIPEFS_MAGIC) {
        snprintf(why, whylen, "a named FIFO, not a file");
        return -EINVAL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int e = errno;
        snprintf(why, whylen, "%s", strerror(e));
        return -e;
    }
    /* Read to the end rather than st_size: a pipe (shoald -c <(...)) has
     * none. The cap stops a device that never ends. */
    size_t cap = 0, got = 0;
    _cleanup_free_ char *buf = NULL;
    for (;;) {
        if (got > INI_MAX_FILE) {
            snprintf(why, whylen, "larger than %u MiB", INI_MAX_FILE >> 20);
            return -EFBIG;
        }
        if (got == cap) {
            cap = cap ? cap * 2 : 64 * 1024;
            if (cap > INI_MAX_FILE + 1)
                cap = INI_MAX_FILE + 1;
            char *n = realloc(buf, cap + 1);
            if (!n)
                return -ENOMEM;
            buf = n;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            snprintf(why, whylen, "%s", strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (!buf && !(buf = malloc(1)))
        return -ENOMEM;
    buf[got] = '\0';
    *text = buf;
    buf = NULL;
    *len = got;
    return 0;
}

int ini_parse_file(const char *path, ini_fn fn, void *opaque, unsigned *err_line, char *why,
                   size_t whylen)
{
    *err_line = 0;
    char *text;
    size_t len;
    bool regular;
    int r = ini_read_file(path, false, &text, &len, &regular, why, whylen);
    if (r < 0)
        return r;
    r = ini_parse_buffer(text, len, fn, opaque, err_line, why, whylen);
    free(text);
    return r;
}
