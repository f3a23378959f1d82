/* One logger for the whole daemon: leveled messages tagged with a component,
 * with a level per component so `-D nbd=debug` turns on one part only.
 * Messages go to stderr (foreground, tests) or syslog (daemonized). */
#ifndef SHOAL_COMMON_LOG_H
#define SHOAL_COMMON_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LVL_ERROR = 0,
    LOG_LVL_WARN = 1,
    LOG_LVL_INFO = 2,
    LOG_LVL_DEBUG = 3,
};

/* Every component that logs, once. */
#define SHOAL_LOG_COMPONENTS(X)                                                                    \
    X(main)                                                                                        \
    X(core)                                                                                        \
    X(store)                                                                                       \
    X(dir)                                                                                         \
    X(net)                                                                                         \
    X(tls)                                                                                         \
    X(nbd)                                                                                         \
    X(iscsi)                                                                                       \
    X(backend)                                                                                     \
    X(mgmt)                                                                                        \
    X(cluster)

enum log_component {
#define X(name) LOG_C_##name,
    SHOAL_LOG_COMPONENTS(X)
#undef X
        LOG_C__COUNT
};

/* Per-component threshold, read on every call and changed at run time (a
 * reload, the API): relaxed atomics, as a level change only has to show
 * within a message or two. Through log_level / log_set_level only. */
extern int log_levels[LOG_C__COUNT];

static inline int log_level(enum log_component c)
{
    return __atomic_load_n(&log_levels[c], __ATOMIC_RELAXED);
}

static inline void log_set_level(enum log_component c, int level)
{
    __atomic_store_n(&log_levels[c], level, __ATOMIC_RELAXED);
}

void log_set_all(int level);
/* "COMPONENT=LEVEL" where LEVEL is error|warn|info|debug or 0..3;
 * COMPONENT may be "all". Returns 0 or -EINVAL. */
int log_set_spec(const char *spec);
/* Switch output to syslog (after daemonizing). */
void log_use_syslog(const char *ident);
/* Prefix each line with a timestamp (on by default for stderr). */
void log_set_timestamps(bool on);

void log_msg(enum log_component c, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_enabled(comp, lvl) ((lvl) <= log_level(LOG_C_##comp))
#define LOG(comp, lvl, ...)                                                                        \
    do {                                                                                           \
        if (log_enabled(comp, lvl))                                                                \
            log_msg(LOG_C_##comp, lvl, __VA_ARGS__);                                               \
    } while (0)
#define log_error(comp, ...) LOG(comp, LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(comp, ...)  LOG(comp, LOG_LVL_WARN, __VA_ARGS__)
#define log_info(comp, ...)  LOG(comp, LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(comp, ...) LOG(comp, LOG_LVL_DEBUG, __VA_ARGS__)

#endif
