/* Adaptive busy polling (common/busy_poll.h): the window follows the sleeps,
 * a poll returns what it caught, a closed window is probed, the spinner cap
 * holds, off is off. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/busy_poll.h"

#define US 1000u

/* Grows from nothing by doubling while the sleeps are short enough that a
 * window could have caught them, never past the maximum; a sleep longer
 * than the maximum halves it, down to none. */
static void test_window_adapts(void **state)
{
    (void)state;
    busy_poll_setup(50, 1);
    struct busy_poll bp = {0};
    busy_poll_slept(&bp, 5 * US);
    assert_int_equal(bp.window_ns, 8 * US);
    busy_poll_slept(&bp, 5 * US);
    assert_int_equal(bp.window_ns, 16 * US);
    busy_poll_slept(&bp, 5 * US);
    assert_int_equal(bp.window_ns, 32 * US);
    busy_poll_slept(&bp, 5 * US);
    assert_int_equal(bp.window_ns, 50 * US);
    busy_poll_slept(&bp, 0);
    assert_int_equal(bp.window_ns, 50 * US);
    /* polled 50 us, then slept 1 more: the gap was over the maximum */
    busy_poll_slept(&bp, 1 * US);
    assert_int_equal(bp.window_ns, 25 * US);
    busy_poll_slept(&bp, 1000 * US);
    assert_int_equal(bp.window_ns, 12500);
    busy_poll_slept(&bp, 1000 * US);
    assert_int_equal(bp.window_ns, 0); /* 6.25 us: below the shortest window */
    busy_poll_slept(&bp, 1000 * US);
    assert_int_equal(bp.window_ns, 0);
}

struct src {
    int left; /* -EAGAIN this many more times, then 7 */
    int calls;
    struct busy_poll *nested; /* poll this from inside the poll, once */
    ssize_t nested_r;
};

static ssize_t src_try(void *arg)
{
    struct src *s = arg;
    s->calls++;
    if (s->nested) {
        struct busy_poll *bp = s->nested;
        s->nested = NULL;
        struct src inner = {.left = 0};
        s->nested_r = busy_poll_try(bp, src_try, &inner);
    }
    if (s->left > 0) {
        s->left--;
        return -EAGAIN;
    }
    return 7;
}

static void test_poll_catches(void **state)
{
    (void)state;
    busy_poll_setup(1000, 1);
    struct busy_poll_stats a, b;
    busy_poll_stats(&a);
    struct busy_poll bp = {.window_ns = 1000 * US};
    struct src s = {.left = 3};
    ssize_t r = busy_poll_try(&bp, src_try, &s);
    busy_poll_stats(&b);
    if (r == -EAGAIN) {
        /* The poller yields between asks: on a loaded machine (CI runs
         * this beside other tests, under TSan) three yields can outlast
         * the window. Then it gave up only after the window. */
        assert_true(s.calls >= 1 && s.calls <= 4);
        assert_int_equal(b.missed - a.missed, 1);
        assert_true(b.spin_ns - a.spin_ns >= 1000 * US);
    } else {
        assert_int_equal(r, 7);
        assert_int_equal(s.calls, 4);
        assert_int_equal(b.caught - a.caught, 1);
        assert_int_equal(b.missed - a.missed, 0);
    }

    /* Nothing comes: it gives up after the window. */
    bp.window_ns = 20 * US;
    struct src never = {.left = 1 << 30};
    assert_int_equal(busy_poll_try(&bp, src_try, &never), -EAGAIN);
    assert_true(never.calls >= 1);
    busy_poll_stats(&a);
    assert_int_equal(a.missed - b.missed, 1);
    assert_true(a.spin_ns - b.spin_ns >= 20 * US);

    /* No window, and not a probe's turn: no poll at all. */
    bp = (struct busy_poll){.window_ns = 0, .unpolled = 1};
    struct src none = {.left = 0};
    assert_int_equal(busy_poll_try(&bp, src_try, &none), -EAGAIN);
    assert_int_equal(none.calls, 0);
}

/* A window at 0 is probed: the first wait, and every 64th after, polls
 * for the maximum once (a sleep that ends with a wake-up can look longer
 * than the maximum by itself, so the sleeps alone might never open it). A
 * probe that misses leaves the window at 0; one that catches opens it. */
static void test_probe(void **state)
{
    (void)state;
    busy_poll_setup(20, 1);
    struct busy_poll bp = {0};
    struct busy_poll_stats a, b;
    busy_poll_stats(&a);
    struct src never = {.left = 1 << 30};
    assert_int_equal(busy_poll_try(&bp, src_try, &never), -EAGAIN);
    assert_true(never.calls >= 1);
    busy_poll_stats(&b);
    assert_true(b.spin_ns - a.spin_ns >= 20 * US);
    busy_poll_slept(&bp, 1000 * US);
    assert_int_equal(bp.window_ns, 0);
    for (int i = 1; i < 64; i++) {
        struct src none = {.left = 0};
        assert_int_equal(busy_poll_try(&bp, src_try, &none), -EAGAIN);
        assert_int_equal(none.calls, 0);
    }
    struct src soon = {.left = 0}; /* caught at the first ask: no yield */
    assert_int_equal(busy_poll_try(&bp, src_try, &soon), 7);
    assert_int_equal(soon.calls, 1);
    assert_int_equal(bp.window_ns, 20 * US);
    /* Open again, it polls every wait. */
    struct src next = {.left = 0};
    assert_int_equal(busy_poll_try(&bp, src_try, &next), 7);
}

/* With the cap at one, a second poller (here nested in the first) sleeps
 * at once instead of polling; once the first is done it may poll again. */
static void test_cap(void **state)
{
    (void)state;
    busy_poll_setup(1000, 1);
    struct busy_poll outer = {.window_ns = 1000 * US}, inner = {.window_ns = 1000 * US};
    struct src s = {.left = 0, .nested = &inner, .nested_r = 0};
    assert_int_equal(busy_poll_try(&outer, src_try, &s), 7);
    assert_int_equal(s.nested_r, -EAGAIN);
    struct src again = {.left = 0};
    assert_int_equal(busy_poll_try(&inner, src_try, &again), 7);

    busy_poll_setup(1000, 2);
    s = (struct src){.left = 0, .nested = &inner};
    assert_int_equal(busy_poll_try(&outer, src_try, &s), 7);
    assert_int_equal(s.nested_r, 7);
}

/* --busy-poll off: no poll whatever the window, and sleeps change nothing. */
static void test_off(void **state)
{
    (void)state;
    busy_poll_setup(0, 1);
    struct busy_poll bp = {.window_ns = 1000 * US};
    struct src s = {.left = 0};
    assert_int_equal(busy_poll_try(&bp, src_try, &s), -EAGAIN);
    assert_int_equal(s.calls, 0);
    bp.window_ns = 0;
    busy_poll_slept(&bp, 1 * US);
    assert_int_equal(bp.window_ns, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_adapts), cmocka_unit_test(test_poll_catches),
        cmocka_unit_test(test_probe),         cmocka_unit_test(test_cap),
        cmocka_unit_test(test_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
