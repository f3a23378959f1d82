/* The management API's bearer token on disk: where it lives by default,
 * reading it with the checks that keep it secret, and creating a fresh one
 * atomically when there is none. shoald creates and reads it; shoalctl
 * reads it. Only libc is used, so shoalctl builds this file in without the
 * daemon's logger: failures come back as a negative errno plus a one-line
 * message in `err` for the caller to print or log. */
#ifndef SHOAL_MGMT_TOKEN_H
#define SHOAL_MGMT_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

/* A token shoald accepts from a file has 8..512 visible ASCII characters
 * (0x21-0x7e): it goes into an HTTP header as is. Generated tokens are 64
 * hex digits (256 bits from getrandom). */
#define TOKEN_MIN_LEN   8
#define TOKEN_MAX_LEN   512
#define TOKEN_GEN_BYTES 32

/* Where shoald keeps the token when --http-token-file is not given:
 *   euid 0:  /run/shoal/api-token
 *   else:    $XDG_RUNTIME_DIR/shoal/api-token, else (unset or not
 *            absolute) /run/user/EUID/shoal/api-token when that directory
 *            exists and is ours, else $HOME/.config/shoal/api-token.
 * 0, -ENAMETOOLONG, or -ENOENT when no candidate exists (no HOME). */
#define TOKEN_ROOT_PATH "/run/shoal/api-token"
int token_default_path(char *buf, size_t len);

/* How token_read judges the file. */
enum token_read_flags {
    /* shoald: the file must be a regular file owned by root or by us,
     * neither group- nor world-writable nor world-readable, and hold at
     * least TOKEN_MIN_LEN characters. Without it (shoalctl) any readable
     * file with one non-empty line will do. */
    TOKEN_STRICT = 1u << 0,
};

/* Read the token (its one line, surrounding whitespace dropped) into a
 * malloc'ed string. 0 or a negative errno with `err` set: -ENOENT when the
 * file does not exist, -EPERM when its owner or mode is refused, -EINVAL
 * when its content is not a token. */
int token_read(const char *path, unsigned flags, char **out, char *err, size_t errlen);

/* shoald at start: read the token file strictly, or when it does not exist
 * create its directory (mode 0700 for the parts it creates) and the file
 * (mode 0600) with a fresh token. The file appears atomically (written
 * under a temporary name, then link()ed into place), so two daemons
 * starting at once end up with the same token: the one that loses the
 * link() reads the winner's. *created tells which happened. */
int token_load_or_create(const char *path, char **out, bool *created, char *err, size_t errlen);

/* A fresh random token in `buf` (at least 2 * TOKEN_GEN_BYTES + 1 bytes). */
int token_generate(char *buf, size_t len);

#endif
