/* Scope-bound cleanup with __attribute__((cleanup)): free, close, unlock.
 * Use these instead of goto ladders so every early return releases what the
 * scope took. */
#ifndef SHOAL_COMMON_CLEANUP_H
#define SHOAL_COMMON_CLEANUP_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
static inline void cleanup_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}
static inline void cleanup_unlockp(pthread_mutex_t **m)
{
    if (*m)
        pthread_mutex_unlock(*m);
}

#define _cleanup_free_   __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_  __attribute__((cleanup(cleanup_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(cleanup_fclosep)))

#define CLEANUP_CONCAT2(a, b) a##b
#define CLEANUP_CONCAT(a, b)  CLEANUP_CONCAT2(a, b)

/* Hold `mutex` until the end of the enclosing scope. */
#define LOCK_GUARD(mutex)                                                                          \
    __attribute__((cleanup(cleanup_unlockp), unused)) pthread_mutex_t *CLEANUP_CONCAT(             \
        lock_guard_, __LINE__) = (pthread_mutex_lock(mutex), (mutex))

/* Hand ownership out of a cleanup variable (returns the value, clears the variable). */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) take_ptr_tmp_ = (p);                                                         \
        (p) = NULL;                                                                                \
        take_ptr_tmp_;                                                                             \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int take_fd_tmp_ = (fd);                                                                   \
        (fd) = -1;                                                                                 \
        take_fd_tmp_;                                                                              \
    })

#endif
