#include "common/busy_poll.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/util.h"

/* The shortest window worth polling: below it a poll rarely catches
 * anything a sleep would not have, so the window drops to none. */
#define MIN_WINDOW_NS 8000u
/* With the window at 0, one wait in this many polls for the maximum. */
#define BUSY_POLL_PROBE 64u

static uint32_t max_ns;
static unsigned cap = 1;
static _Atomic unsigned spinners;
static _Atomic uint64_t n_caught, n_missed, n_spin_ns;

void busy_poll_setup(uint32_t max_us, unsigned max_spinners)
{
    if (max_us > BUSY_POLL_MAX_US)
        max_us = BUSY_POLL_MAX_US;
    max_ns = max_us * 1000u;
    if (max_spinners == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        max_spinners = n >= 4 ? (unsigned)(n / 2) : 1u;
    }
    cap = max_spinners;
}

ssize_t busy_poll_try(struct busy_poll *bp, ssize_t (*try_fn)(void *), void *arg)
{
    if (max_ns == 0)
        return -EAGAIN;
    uint32_t window = bp->window_ns;
    if (window == 0) {
        if (bp->unpolled++ % BUSY_POLL_PROBE != 0)
            return -EAGAIN;
        window = max_ns; /* the probe (busy_poll.h) */
    }
    unsigned s = atomic_load_explicit(&spinners, memory_order_relaxed);
    do {
        if (s >= cap)
            return -EAGAIN;
    } while (!atomic_compare_exchange_weak_explicit(&spinners, &s, s + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    uint64_t t0 = now_ns(), t;
    ssize_t r;
    for (;;) {
        r = try_fn(arg);
        t = now_ns();
        if (r != -EAGAIN || t - t0 >= window)
            break;
        /* Poll with the CPU nobody else wants: on a busy machine the
         * threads waiting for it run first (the client among them). */
        sched_yield();
    }
    atomic_fetch_sub_explicit(&spinners, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&n_spin_ns, t - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(r == -EAGAIN ? &n_missed : &n_caught, 1, memory_order_relaxed);
    if (r != -EAGAIN && bp->window_ns == 0) {
        bp->window_ns = max_ns; /* the probe caught one: poll again */
        bp->unpolled = 0;
    }
    return r;
}

void busy_poll_slept(struct busy_poll *bp, uint64_t slept_ns)
{
    if (max_ns == 0)
        return;
    if (bp->window_ns + slept_ns <= max_ns) {
        /* A window this much longer would have caught it. */
        uint32_t w = bp->window_ns * 2;
        bp->window_ns = MIN(MAX(w, MIN_WINDOW_NS), max_ns);
    } else {
        bp->window_ns /= 2;
        if (bp->window_ns < MIN_WINDOW_NS)
            bp->window_ns = 0;
    }
}

void busy_poll_stats(struct busy_poll_stats *out)
{
    out->caught = atomic_load_explicit(&n_caught, memory_order_relaxed);
    out->missed = atomic_load_explicit(&n_missed, memory_order_relaxed);
    out->spin_ns = atomic_load_explicit(&n_spin_ns, memory_order_relaxed);
}
