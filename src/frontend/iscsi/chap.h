/* CHAP for iSCSI logins (RFC 7143 section 12.1.3, RFC 1994 with MD5):
 * the secrets file and the MD5 arithmetic. The login (login.c) runs the
 * exchange.
 *
 * The secrets file (--iscsi-chap FILE) must be mode 0600 or stricter (it
 * holds clear-text secrets, as CHAP needs them) and holds one entry a
 * line; blank lines and lines starting with # are ignored:
 *
 *   user NAME SECRET     an initiator may log in as NAME (its CHAP_N) with
 *                        SECRET; with any user line every login must
 *                        authenticate
 *   target NAME SECRET   mutual CHAP: what the target answers an
 *                        initiator's challenge with (at most one line)
 *
 * Secrets are 12 to 255 characters without blanks (RFC 7143 requires at
 * least 96 bits of secret), and the target's must differ from every user's.
 *
 * Read-only once loaded; used from any connection thread. */
#ifndef SHOAL_FRONTEND_ISCSI_CHAP_H
#define SHOAL_FRONTEND_ISCSI_CHAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISCSI_CHAP_SECRET_MIN 12
#define ISCSI_CHAP_SECRET_MAX 255
#define ISCSI_CHAP_NAME_MAX   255
#define ISCSI_CHAP_MD5_ALG    5 /* CHAP_A value of MD5 */
#define ISCSI_CHAP_DIGEST_LEN 16
#define ISCSI_CHAP_CHAL_LEN   16 /* our challenges */
#define ISCSI_CHAP_CHAL_MAX   1024

struct iscsi_chap;

/* Load and check the file. 0, or -errno with one line in err. */
int iscsi_chap_load(const char *path, struct iscsi_chap **out, char *err, size_t errlen);
void iscsi_chap_free(struct iscsi_chap *c);

/* The secret of user name, or NULL. */
const char *iscsi_chap_user_secret(const struct iscsi_chap *c, const char *name);
/* Mutual CHAP: the target's name and secret, or false if none is set. */
bool iscsi_chap_target(const struct iscsi_chap *c, const char **name, const char **secret);

/* MD5(id || secret || challenge) (RFC 1994). 0 or -errno. */
int iscsi_chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len,
                   uint8_t out[ISCSI_CHAP_DIGEST_LEN]);

/* CHAP binary values: "0x" + hex digits or "0b" + base64 (RFC 7143
 * section 6.1). Decodes into out (max bytes). 0 and *len, or -EINVAL. */
int iscsi_chap_decode(const char *s, uint8_t *out, size_t max, size_t *len);
/* "0x" + lowercase hex of n bytes into out (2n + 3 bytes). */
void iscsi_chap_encode(const uint8_t *in, size_t n, char *out);

#endif
