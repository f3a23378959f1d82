/* shoalctl's HTTP client: one libcurl handle (kept alive across the
 * requests of `top` and `prefetch --wait`), JSON in and out, and the
 * mapping of failures to shoalctl's exit codes. It prints the one-line
 * error itself, so commands only pass the exit code on. */
#ifndef SHOAL_CLI_CLIENT_H
#define SHOAL_CLI_CLIENT_H

#include <jansson.h>
#include <stdint.h>

/* shoalctl exit codes (also documented in `shoalctl help`). */
enum {
    EXIT_OK = 0,
    EXIT_USAGE = 1,   /* bad command line */
    EXIT_SERVER = 2,  /* the server answered with an error */
    EXIT_CONNECT = 3, /* the server could not be reached */
};

struct client;

struct client_options {
    const char *token; /* bearer token, or NULL */
    /* Where the token came from, or every place looked at without finding
     * one ("--token-file X", "$SHOAL_TOKEN", ...): the 401 message says it. */
    const char *token_source;
    const char *cacert; /* CA bundle to verify an https:// server, or NULL (system's) */
    /* The longest a request may take, connecting included, in ms (0: no
     * limit). A server that accepts and never answers is given up on then. */
    uint64_t timeout_ms;
};

/* Request timeouts when neither --timeout nor $SHOAL_TIMEOUT gives one:
 * most requests, and those that wait on server-side work (volume add
 * waiting for its back end to open, volume move: flush, publish, hand
 * over), which shoald bounds by the back end's connect timeout (10 s by
 * default) and its own steps' limits. */
#define CLIENT_TIMEOUT_MS      30000
#define CLIENT_LONG_TIMEOUT_MS 120000
/* Connecting alone (the TCP handshake, TLS's): a reachable server answers
 * a SYN in milliseconds. */
#define CLIENT_CONNECT_TIMEOUT_MS 5000

/* base_url: "http://host:port" or "https://host:port" (a trailing '/' is
 * ignored). NULL on allocation failure. */
struct client *client_new(const char *base_url, const struct client_options *opts);
void client_free(struct client *c);

/* Send a request. `body` (may be NULL) is serialised as JSON; the token is
 * sent on every request (GETs show backing paths only with it). A 401
 * gets one line saying a token is needed and where shoalctl looked for
 * it. On a 2xx answer returns EXIT_OK and
 * *out is the parsed JSON (NULL when there is no body, e.g. 204).
 * Otherwise prints "shoalctl: ..." to stderr and returns EXIT_SERVER or
 * EXIT_CONNECT. */
int client_call(struct client *c, const char *method, const char *path, json_t *body, json_t **out);

/* Change the request timeout for the calls that follow (0: no limit). */
void client_set_timeout(struct client *c, uint64_t timeout_ms);

/* "name" escaped for use as one path segment; free() the result. */
char *client_escape(struct client *c, const char *segment);

#endif
