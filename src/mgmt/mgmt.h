/* Management server: HTTP/JSON API, Prometheus /metrics and the dashboard,
 * served by libmicrohttpd from its own thread(s). It reads stats through the
 * engine's snapshot functions and changes things only through the engine's
 * control functions, so it holds no lock of the data path.
 *
 * Safety: listens on loopback by default; mutating calls require
 * "Authorization: Bearer TOKEN" when a token is configured; starting on a
 * non-loopback address without a token is refused (mgmt_start returns
 * -EPERM with a message). */
#ifndef SHOAL_MGMT_MGMT_H
#define SHOAL_MGMT_MGMT_H

#include <stdbool.h>

struct engine;
struct mgmt;

struct mgmt_config {
    const char *listen; /* "ADDR:PORT", "[v6]:PORT"; NULL or "off" = disabled */
    const char *token;  /* bearer token for mutating calls, or NULL */
};

/* Parse "ADDR:PORT" (IPv4, [IPv6], or "localhost"), without starting anything.
 * 0 or -EINVAL. Used by the daemon to validate options early. */
int mgmt_parse_listen(const char *listen, char *host, unsigned hostlen, unsigned *port);
/* True when the address is a loopback address (127/8, ::1, localhost). */
bool mgmt_listen_is_loopback(const char *listen);

/* Start serving. With listen NULL or "off", returns 0 and sets *out to NULL
 * (mgmt_stop(NULL) is a no-op). Port 0 binds an ephemeral port (tests). */
int mgmt_start(struct engine *e, const struct mgmt_config *cfg, struct mgmt **out);
void mgmt_stop(struct mgmt *m);
/* The TCP port actually bound (differs from the configured one for port 0). */
unsigned mgmt_port(const struct mgmt *m);

#endif
