/* A cmocka fixture shared by the file back end's tests: a fresh temp dir
 * and the path of a disk image in it (not created), removed afterwards. */
#ifndef SHOAL_TESTS_BACKEND_TMPDIR_FIXTURE_H
#define SHOAL_TESTS_BACKEND_TMPDIR_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char path[128];
};

/* A setup for cmocka: *state becomes a struct fixture; tag names the dir. */
static inline int fixture_setup(void **state, const char *tag)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/shoal-be-%s-XXXXXX", tag);
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof(fx->path), "%s/disk.img", fx->dir);
    *state = fx;
    return 0;
}

static inline int teardown(void **state)
{
    struct fixture *fx = *state;
    unlink(fx->path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

#endif
