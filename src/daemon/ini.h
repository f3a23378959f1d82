/* shoald's INI reader: the config file format, with the line of every
 * section and key, so each config error can name FILE:LINE (Debian's
 * libinih does not pass line numbers to its handler).
 *
 * The format, one construct per line (leading and trailing blanks ignored):
 *   ; comment        # comment         (only as the first non-blank character,
 *                                       or after a blank at the end of a value)
 *   [section]        [volume NAME]     (blanks inside are kept, runs squeezed)
 *   key = value      (value may be empty; "value" in double quotes is taken
 *                     as is, blanks, ';' and '#' included)
 * There are no continuation lines: an indented line is a line like any
 * other. A UTF-8 byte order mark at the start is skipped. A NUL byte, a
 * line that is none of the above, or a section header without its ']' is
 * a syntax error. Keys before the first section belong to section "". */
#ifndef SHOAL_DAEMON_INI_H
#define SHOAL_DAEMON_INI_H

#include <stdbool.h>
#include <stddef.h>

/* Called for each section header (key and value NULL) and each key. Returns
 * 0 to go on, anything else to stop reading. */
typedef int (*ini_fn)(void *opaque, unsigned line, const char *section, const char *key,
                      const char *value);

/* Parse a buffer: 0 at its end, 1 when fn stopped it, or -EINVAL on a
 * syntax error with *err_line set and a short reason in why (without the
 * location). */
int ini_parse_buffer(const char *buf, size_t len, ini_fn fn, void *opaque, unsigned *err_line,
                     char *why, size_t whylen);

/* Read and parse a file (at most INI_MAX_FILE bytes). -errno when it cannot
 * be read (why says so), otherwise as ini_parse_buffer. */
#define INI_MAX_FILE (16u << 20)
int ini_parse_file(const char *path, ini_fn fn, void *opaque, unsigned *err_line, char *why,
                   size_t whylen);

/* Read a file whole (at most INI_MAX_FILE bytes) into *text (malloc'ed,
 * NUL-terminated after its *len bytes), setting *regular when it is a
 * regular file. regular_only: anything else (a pipe from -c <(...), a
 * device) is refused with -EINVAL before a byte is read, why saying what
 * it is. 0, or -errno with why. */
int ini_read_file(const char *path, bool regular_only, char **text, size_t *len, bool *regular,
                  char *why, size_t whylen);

#endif
