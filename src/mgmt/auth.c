/* Bearer-token check, and the browser rules that keep other web sites from
 * making changes through an admin's browser. The token comparison takes the
 * same time whatever prefix of the token a guess gets right, so the token
 * cannot be found byte by byte from response times. */
#include <string.h>
#include <strings.h>

#include "mgmt/mgmt.h"
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
    /* No token configured is a programming error (mgmt_start refuses it):
     * it must not read as "everyone may". */
    if (!m->token || !m->token_len || !authorization)
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

/* Browsers send POST with a text/plain body to any address without asking
 * first, and they would send a token only if a page of ours put it there.
 * A browser's change must come from a page served by this server (Origin
 * matches Host, Sec-Fetch-Site is not cross-site), so a stored token is
 * never spent by another site's script. Clients that are not browsers
 * (shoalctl, curl) send neither header. */
const char *auth_browser_refusal(const char *host, const char *origin, const char *fetch_site)
{
    if (fetch_site && strcmp(fetch_site, "same-origin") != 0 && strcmp(fetch_site, "none") != 0)
        return "cross-site request refused: changes are accepted only from this server's own "
               "dashboard or from non-browser clients";
    if (origin) {
        const char *sep = strstr(origin, "://");
        if (!host || !sep || strcasecmp(sep + 3, host) != 0)
            return "cross-origin request refused: the Origin header does not match the Host";
    }
    return NULL;
}
