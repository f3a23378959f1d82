/* A shared/exclusive gate whose shared holds may end on another thread than
 * the one that took them: an asynchronous write enters it on the thread
 * that parsed the request and leaves it on the back end's thread that read
 * the answer, which a pthread rwlock does not allow. Exclusive holders are
 * preferred: once one waits, no new shared hold starts, so a stream of
 * writes cannot starve a COMPARE AND WRITE. A mutex and a condition
 * variable; every call is short, only gate_shared and gate_excl wait. */
#ifndef SHOAL_COMMON_GATE_H
#define SHOAL_COMMON_GATE_H

#include <pthread.h>
#include <stdbool.h>

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned shared;       /* holds, under lock */
    unsigned excl_waiting; /* exclusive holders waiting, under lock */
    bool excl;             /* held exclusive, under lock */
};

void gate_init(struct gate *g);
void gate_destroy(struct gate *g);
/* Shared: wait while it is held or wanted exclusive. */
void gate_shared(struct gate *g);
/* The same without waiting: false if it would wait. */
bool gate_try_shared(struct gate *g);
/* End a shared hold (any thread). */
void gate_shared_end(struct gate *g);
/* Exclusive: wait until no one holds it. */
void gate_excl(struct gate *g);
void gate_excl_end(struct gate *g);

#endif
