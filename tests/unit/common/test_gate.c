/* The write gate (common/gate.h): shared holds that end on another thread,
 * exclusive holders preferred, try_shared never waits. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "common/gate.h"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

struct excl_arg {
    struct gate *g;
    int got; /* atomic */
};

static void *excl_main(void *p)
{
    struct excl_arg *a = p;
    gate_excl(a->g);
    __atomic_store_n(&a->got, 1, __ATOMIC_RELEASE);
    sleep_ms(50);
    gate_excl_end(a->g);
    return NULL;
}

static void *end_shared_main(void *p)
{
    gate_shared_end(p);
    return NULL;
}

static void test_gate(void **state)
{
    (void)state;
    struct gate g;
    gate_init(&g);
    /* Shared holds stack; one ends on another thread. */
    assert_true(gate_try_shared(&g));
    gate_shared(&g);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, end_shared_main, &g), 0);
    pthread_join(t, NULL);

    /* An exclusive holder waits for the last shared hold; while it waits,
     * no new shared hold starts (try_shared says so at once). */
    struct excl_arg a = {.g = &g};
    assert_int_equal(pthread_create(&t, NULL, excl_main, &a), 0);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&g.lock);
        bool waiting = g.excl_waiting > 0;
        pthread_mutex_unlock(&g.lock);
        if (waiting)
            break;
        sleep_ms(1);
    }
    assert_false(gate_try_shared(&g));
    sleep_ms(20);
    assert_int_equal(__atomic_load_n(&a.got, __ATOMIC_ACQUIRE), 0);
    gate_shared_end(&g); /* the first hold, from this thread */
    gate_shared(&g);     /* waits for the exclusive hold to end */
    assert_int_equal(__atomic_load_n(&a.got, __ATOMIC_ACQUIRE), 1);
    pthread_join(t, NULL);
    gate_shared_end(&g);
    gate_excl(&g);
    assert_false(gate_try_shared(&g));
    gate_excl_end(&g);
    assert_true(gate_try_shared(&g));
    gate_shared_end(&g);
    gate_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
