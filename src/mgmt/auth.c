/* Bearer-token check for mutating calls. The comparison takes the same time
 * whatever prefix of the token a guess gets right, so the token cannot be
 * found byte by byte from response times. */
#include <string.h>
#include <strings.h>

#include "mgmt/mgmt_internal.h"

/* Constant-time in the contents of both strings: time depends only on the
 * length of the guess, which the attacker knows anyway. */
static bool token_equal(const char *want, size_t want_len, const char *got, size_t got_len)
{
    unsigned diff = want_len != got_len;
    for (size_t i = 0; i < got_len; i++)
        diff |= (unsigned char)got[i] ^ (unsigned char)want[i % want_len];
    return diff == 0;
}

bool auth_check(const struct mgmt *m, const char *authorization)
{
    if (!m->token)
        return true;
    if (!authorization)
        return false;
    /* RFC 7235: the scheme is case-insensitive, then one or more spaces. */
    if (strncasecmp(authorization, "Bearer", 6) != 0 ||
        (authorization[6] != ' ' && authorization[6] != '\t'))
        return false;
    const char *tok = authorization + 6;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t len = strlen(tok);
    while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    return token_equal(m->token, m->token_len, tok, len);
}
