/* Test helpers around real memcached servers: start one on 127.0.0.1 at a
 * free port, kill it, read its stats, store a raw value in it; and a
 * "hanging" server that accepts connections and never answers, or answers
 * a get with part of a value. */
#ifndef SHOAL_TESTS_MC_SERVER_H
#define SHOAL_TESTS_MC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mc_server_proc {
    pid_t pid;
    uint16_t port;
};

/* Is the memcached binary there? (Tests exit 77 without it.) */
bool mc_server_available(void);

/* Start memcached (-m 64, TCP only) on a free port, or on `port` if it is
 * non-zero; returns once it accepts connections. 0 or a negative errno. */
int mc_server_start(struct mc_server_proc *s, uint16_t port);
/* SIGKILL and reap. */
void mc_server_kill(struct mc_server_proc *s);

/* A stat of the server ("curr_items"), or -1. */
int64_t mc_server_stat(uint16_t port, const char *name);
/* Wait until the servers' curr_items add up to `want` (up to 10 s). */
int mc_server_wait_items(const uint16_t *ports, unsigned n, int64_t want);
/* Store value under key in the server at port (binary protocol). */
int mc_server_set(uint16_t port, const char *key, const void *value, size_t len);

/* A listener on 127.0.0.1 that accepts and then never reads or writes. */
struct mc_hang;
struct mc_hang *mc_hang_start(uint16_t *port);
void mc_hang_stop(struct mc_hang *h);
/* The same, except that on each connection it reads one binary get and
 * answers it with the start of a 4 KiB value: the client has taken a
 * buffer for the value when the rest never comes. */
struct mc_hang *mc_hang_start_partial(uint16_t *port);
/* The same, and then the rest of the value a byte every 10 ms: every wait
 * for the network is short, the whole answer takes 31 s. */
struct mc_hang *mc_hang_start_trickle(uint16_t *port);
/* How many gets it answered so. */
unsigned mc_hang_answered(struct mc_hang *h);

#endif
