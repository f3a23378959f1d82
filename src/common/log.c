/* Implementation of the one logger; see log.h. */
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

int log_levels[LOG_C__COUNT] = {
#define X(name) [LOG_C_##name] = LOG_LVL_INFO,
    SHOAL_LOG_COMPONENTS(X)
#undef X
};

static const char *const component_names[LOG_C__COUNT] = {
#define X(name) [LOG_C_##name] = #name,
    SHOAL_LOG_COMPONENTS(X)
#undef X
};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static bool use_syslog;
static bool timestamps = true;

/* syslog priorities by level; also the "<N>" prefix journald reads
 * (sd-daemon.h's SD_ERR... are the same numbers). */
static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

/* stderr is a journald stream: systemd sets $JOURNAL_STREAM to its
 * "dev:ino" (systemd.exec(5)); compared with stderr itself, since a child
 * whose stderr was redirected inherits the variable. journald adds the
 * time and reads the priority from a "<N>" prefix. */
static bool to_journal;
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;

static void detect_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return;
    to_journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_all(int level)
{
    for (int i = 0; i < LOG_C__COUNT; i++)
        log_set_level((enum log_component)i, level);
}

static int parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0')
        return s[0] - '0';
    return -1;
}

int log_set_spec(const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return -EINVAL;
    int lvl = parse_level(eq + 1);
    if (lvl < 0)
        return -EINVAL;
    size_t n = (size_t)(eq - spec);
    if (n == 3 && strncmp(spec, "all", 3) == 0) {
        log_set_all(lvl);
        return 0;
    }
    for (int i = 0; i < LOG_C__COUNT; i++) {
        if (strlen(component_names[i]) == n && strncmp(spec, component_names[i], n) == 0) {
            log_set_level((enum log_component)i, lvl);
            return 0;
        }
    }
    return -EINVAL;
}

void log_use_syslog(const char *ident)
{
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    use_syslog = true;
}

void log_set_timestamps(bool on)
{
    timestamps = on;
}

void log_msg(enum log_component c, enum log_level lvl, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int saved = errno;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    pthread_once(&journal_once, detect_journal);
    if (use_syslog) {
        syslog(prio[lvl], "%s: %s", component_names[c], msg);
    } else if (to_journal) {
        fprintf(stderr, "<%d>%s: %s\n", prio[lvl], component_names[c], msg);
    } else {
        char ts[32] = "";
        if (timestamps) {
            struct timespec now;
            struct tm tm;
            clock_gettime(CLOCK_REALTIME, &now);
            localtime_r(&now.tv_sec, &tm);
            size_t k = strftime(ts, sizeof ts, "%H:%M:%S", &tm);
            snprintf(ts + k, sizeof ts - k, ".%03ld ", now.tv_nsec / 1000000);
        }
        /* One fprintf per line keeps lines from different threads whole. */
        fprintf(stderr, "%sshoald[%s] %s: %s\n", ts, component_names[c], level_names[lvl], msg);
    }
    errno = saved;
}
