/* `shoalctl top`: a refreshing per-volume view. Rates (IOPS, throughput,
 * hit ratio of the last interval) are deltas between two /api/v1/stats
 * samples, so the server keeps no per-client state. On a terminal it
 * redraws every second until q or Ctrl-C; with --once, or when stdout is
 * not a terminal, it takes two samples a second apart, prints one frame and
 * exits. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/shoalctl.h"
#include "cli/table.h"
#include "common/util.h"

#define INTERVAL_MS 1000

struct sample {
    uint64_t t_ns;
    json_t *stats; /* the whole /api/v1/stats answer */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int take_sample(struct cli *cli, struct sample *s)
{
    s->stats = NULL;
    int r = client_call(cli->client, "GET", "/api/v1/stats", NULL, &s->stats);
    s->t_ns = now_ns();
    return r;
}

static uint64_t counter(json_t *vol, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(vol, key));
}

static json_t *find_volume(json_t *stats, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(stats, "volumes"), i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && strcmp(n, name) == 0)
            return v;
    }
    return NULL;
}

/* Rate of a counter between two samples; false when it cannot be known
 * (no previous sample, or the counter went back: volume re-added). *out is
 * always set (0 when false): gcc -O3 cannot see that callers read it only
 * after a true, and warns. */
static bool rate(json_t *prev, json_t *cur, const char *key, double secs, double *out)
{
    *out = 0;
    if (!prev || secs <= 0)
        return false;
    uint64_t a = counter(prev, key), b = counter(cur, key);
    if (b < a)
        return false;
    *out = (double)(b - a) / secs;
    return true;
}

static void fmt_rate_ops(bool ok, double v, char *buf, size_t len)
{
    if (ok)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "-");
}

static void fmt_rate_bytes(bool ok, double v, char buf[32], size_t len)
{
    if (!ok) {
        snprintf(buf, len, "-");
        return;
    }
    char s[24];
    fmt_size_short(v, s, sizeof s);
    snprintf(buf, len, "%s/s", s);
}

static void render(struct cli *cli, const struct sample *prev, const struct sample *cur,
                   bool interactive)
{
    json_t *cache = json_object_get(cur->stats, "cache");
    char used[32], cap[32], fill[32], dedup[32], clock[16];
    fmt_stat("used_bytes", json_object_get(cache, "used_bytes"), used, sizeof used);
    fmt_stat("capacity_bytes", json_object_get(cache, "capacity_bytes"), cap, sizeof cap);
    fmt_stat("fill_ratio", json_object_get(cache, "fill_ratio"), fill, sizeof fill);
    fmt_stat("dedup_ratio", json_object_get(cache, "dedup_ratio"), dedup, sizeof dedup);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(clock, sizeof clock, "%H:%M:%S", &tm);

    if (interactive)
        fputs("\033[H\033[2J", stdout); /* home + clear screen */
    printf("shoal top  %s  %s%s\n", cli->url, clock, interactive ? "  (q to quit)" : "");
    printf("cache: %s of %s used (%s), dedup %s, %" JSON_INTEGER_FORMAT " evictions\n\n", used, cap,
           fill, dedup, json_integer_value(json_object_get(cache, "evictions")));

    static const char *const headers[] = {"VOLUME", "STATE", "CONNS", "READ IOPS", "WRITE IOPS",
                                          "READ",   "WRITE", "HIT%",  "HIT% ALL"};
    struct table *t = table_new(9, headers, "llrrrrrrr");
    double secs = prev ? (double)(cur->t_ns - prev->t_ns) / 1e9 : 0;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(cur->stats, "volumes"), i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *pv = prev && name ? find_volume(prev->stats, name) : NULL;
        double rops, wops, rbytes, wbytes, hbytes;
        bool ok_r = rate(pv, v, "read_ops", secs, &rops);
        bool ok_w = rate(pv, v, "write_ops", secs, &wops);
        bool ok_rb = rate(pv, v, "read_bytes", secs, &rbytes);
        bool ok_wb = rate(pv, v, "write_bytes", secs, &wbytes);
        bool ok_hb = rate(pv, v, "read_hit_bytes", secs, &hbytes);
        char c_conns[16], c_r[32], c_w[32], c_rb[32], c_wb[32], c_hit[32], c_all[32];
        fmt_stat("connections", json_object_get(v, "connections"), c_conns, sizeof c_conns);
        fmt_rate_ops(ok_r, rops, c_r, sizeof c_r);
        fmt_rate_ops(ok_w, wops, c_w, sizeof c_w);
        fmt_rate_bytes(ok_rb, rbytes, c_rb, sizeof c_rb);
        fmt_rate_bytes(ok_wb, wbytes, c_wb, sizeof c_wb);
        if (ok_rb && ok_hb && rbytes > 0)
            snprintf(c_hit, sizeof c_hit, "%.1f%%", 100.0 * MIN(hbytes / rbytes, 1.0));
        else
            snprintf(c_hit, sizeof c_hit, "-");
        fmt_stat("hit_ratio", json_object_get(v, "hit_ratio"), c_all, sizeof c_all);
        const char *row[] = {name,    json_string_value(json_object_get(v, "state")),
                             c_conns, c_r,
                             c_w,     c_rb,
                             c_wb,    c_hit,
                             c_all};
        table_add(t, row);
    }
    table_print(t, stdout);
    table_free(t);
    fflush(stdout);
}

/* Wait up to `ms` for a key; true when the user asked to quit. */
static bool wait_for_quit(unsigned ms, bool keyboard)
{
    uint64_t end = now_ns() + (uint64_t)ms * 1000000;
    while (!stop_requested) {
        uint64_t now = now_ns();
        if (now >= end)
            return false;
        int timeout = (int)((end - now) / 1000000) + 1;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&pfd, keyboard ? 1 : 0, timeout);
        if (r < 0 && errno != EINTR)
            return false;
        if (r > 0) {
            char ch;
            ssize_t n = read(STDIN_FILENO, &ch, 1);
            if (n == 1 && (ch == 'q' || ch == 'Q'))
                return true;
            if (n == 0)
                keyboard = false; /* stdin closed: keep going on the timer */
        }
    }
    return true;
}

static int top_once(struct cli *cli)
{
    struct sample a, b;
    int r = take_sample(cli, &a);
    if (r)
        return r;
    wait_for_quit(INTERVAL_MS, false);
    r = take_sample(cli, &b);
    if (r == 0) {
        render(cli, &a, &b, false);
        json_decref(b.stats);
    }
    json_decref(a.stats);
    return r;
}

int cmd_top(struct cli *cli)
{
    if ((cli->flags & F_ONCE) || !isatty(STDOUT_FILENO))
        return top_once(cli);

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: wake poll() */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Keys without Enter and without echo; Ctrl-C still raises SIGINT. */
    bool keyboard = isatty(STDIN_FILENO);
    struct termios saved;
    if (keyboard && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        keyboard = false;
    }
    fputs("\033[?25l", stdout); /* hide the cursor */

    struct sample prev = {0}, cur;
    int r = EXIT_OK;
    for (;;) {
        r = take_sample(cli, &cur);
        if (r)
            break;
        render(cli, prev.stats ? &prev : NULL, &cur, true);
        json_decref(prev.stats);
        prev = cur;
        if (wait_for_quit(INTERVAL_MS, keyboard))
            break;
    }
    json_decref(prev.stats);

    fputs("\033[?25h", stdout); /* show the cursor again */
    fflush(stdout);
    if (keyboard)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    return r;
}
