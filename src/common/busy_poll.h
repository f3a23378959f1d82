/* Adaptive busy polling: a thread about to sleep until its next input
 * first asks for it again and again, for a short window, and sleeps only
 * if nothing came. A client at queue depth 1 sends its next request a few
 * microseconds after our reply reached it; caught by polling, that request
 * costs no wake-up of the reader (on a VM, an interrupt to another vCPU and
 * a schedule), which was about half of a 4 KiB hit's round trip.
 *
 * The window adapts per waiter as KVM's halt polling does: a sleep short
 * enough that a longer window would have caught it doubles the window (up
 * to the maximum); a sleep longer than the maximum (an idle client, or a
 * busy machine where the gap between requests is long) halves it, down to
 * no polling at all. A sleep's length includes the wake-up it ends with,
 * which alone can exceed the maximum on a VM, so a waiter that no longer
 * polls might never see a short gap again: with the window at 0, the first
 * wait (a new connection) and every 64th after poll for the maximum once,
 * and a catch opens the window again. Polling burns a CPU, so at most
 * `max_spinners` threads poll at once (half the CPUs, at least one); a
 * waiter that finds them all polling sleeps at once; and a poller yields
 * the CPU between two asks, so on a busy machine it runs only when no
 * other thread wants it.
 *
 * Lock rules: a struct busy_poll belongs to one thread (the connection's
 * reader). The cap and the counters are process-wide relaxed atomics;
 * busy_poll_setup runs before any waiter. */
#ifndef SHOAL_COMMON_BUSY_POLL_H
#define SHOAL_COMMON_BUSY_POLL_H

#include <stdint.h>
#include <sys/types.h>

#define BUSY_POLL_DEFAULT_US 50u
#define BUSY_POLL_MAX_US     1000u

struct busy_poll {
    uint32_t window_ns; /* how long the next wait polls; 0: it sleeps at once */
    uint32_t unpolled;  /* waits at window 0 since its last probe caught one */
};

/* max_us: longest window (0: never poll). max_spinners 0: half the CPUs
 * online, at least one. */
void busy_poll_setup(uint32_t max_us, unsigned max_spinners);

/* Poll try_fn(arg) until it returns anything but -EAGAIN, for at most the
 * window: its result, or -EAGAIN when the window passed (the caller then
 * sleeps, and reports how long with busy_poll_slept). */
ssize_t busy_poll_try(struct busy_poll *bp, ssize_t (*try_fn)(void *), void *arg);

/* The wait after a poll that found nothing ended after slept_ns (the
 * sleep only): adapt the window. */
void busy_poll_slept(struct busy_poll *bp, uint64_t slept_ns);

struct busy_poll_stats {
    uint64_t caught;  /* inputs found by polling (no sleep) */
    uint64_t missed;  /* polls that ended in a sleep */
    uint64_t spin_ns; /* time spent polling */
};
void busy_poll_stats(struct busy_poll_stats *out);

#endif
