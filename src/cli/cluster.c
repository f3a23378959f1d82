/* shoalctl cluster status|add|remove: the cluster's nodes, memcached
 * servers and volume owners as etcd holds them (GET /api/v1/cluster), and
 * changes to the memcached list (every node's ring follows); shoalctl
 * volume move NAME --to NODE: a warm move (POST /api/v1/volumes/NAME/move). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/shoalctl.h"
#include "cli/table.h"
#include "common/cleanup.h"

static const char *str(json_t *o, const char *k, const char *dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static void print_table(struct table *t)
{
    if (!t)
        return;
    table_print(t, stdout);
    table_free(t);
    printf("\n");
}

static void cell(json_t *o, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        snprintf(buf, len, "-");
    else if (json_is_integer(v) && strstr(key, "bytes"))
        fmt_size_short((double)json_integer_value(v), buf, len);
    else
        fmt_stat(key, v, buf, len);
}

/* The strings of a JSON array, comma-separated, into buf ("" if none). */
static const char *join(json_t *arr, char *buf, size_t len)
{
    size_t i;
    json_t *v;
    buf[0] = '\0';
    json_array_foreach(arr, i, v)
    {
        size_t o = strlen(buf);
        snprintf(buf + o, len - o, "%s%s", o ? "," : "", json_string_value(v));
    }
    return buf;
}

static void print_nodes(json_t *j)
{
    static const char *const nh[] = {"NODE", "STATE", "MEMCACHED", "API", "STARTED", "VOLUMES"};
    struct table *t = table_new(6, nh, "llllll");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "nodes"), i, e)
    {
        char started[32] = "-", name[300], vols[512];
        time_t s = (time_t)json_integer_value(json_object_get(e, "started"));
        struct tm tm;
        if (s && gmtime_r(&s, &tm))
            strftime(started, sizeof started, "%Y-%m-%d %H:%M:%SZ", &tm);
        snprintf(name, sizeof name, "%s%s", str(e, "name", "?"),
                 json_is_true(json_object_get(e, "self")) ? " (this)" : "");
        join(json_object_get(e, "volumes"), vols, sizeof vols);
        const char *row[] = {
            name,    str(e, "state", "-"), str(e, "memcached", "-"), str(e, "api", "-"),
            started, vols[0] ? vols : "-"};
        if (t)
            table_add(t, row);
    }
    print_table(t);
}

/* Every figure of the servers in this node's ring (those with a state):
 * one row per key, one column per server, up to 16 of them. */
static void print_figures(json_t *list)
{
    enum { MAXCOL = 16 };
    static const char *const skip[] = {"server", "node", "leased", "in_ring", "state"};
    json_t *srv[MAXCOL];
    const char *heads[MAXCOL + 1] = {"FIGURE"};
    char align[MAXCOL + 2] = "l";
    unsigned n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (!json_object_get(e, "state"))
            continue; /* listed in etcd, not in this node's ring yet */
        if (n == MAXCOL) {
            printf("(more than %d servers: --json has every figure of each)\n\n", MAXCOL);
            return;
        }
        heads[n + 1] = str(e, "server", "?");
        align[n + 1] = 'r';
        srv[n++] = e;
    }
    if (!n)
        return;
    align[n + 1] = '\0';
    struct table *t = table_new(n + 1, heads, align);
    const char *key;
    json_t *val;
    json_object_foreach(srv[0], key, val)
    {
        bool skipped = false;
        for (size_t k = 0; k < sizeof skip / sizeof *skip; k++)
            skipped = skipped || !strcmp(key, skip[k]);
        if (skipped)
            continue;
        char cells[MAXCOL][64];
        const char *row[MAXCOL + 1] = {key};
        for (unsigned c = 0; c < n; c++) {
            cell(srv[c], key, cells[c], sizeof cells[c]);
            row[c + 1] = cells[c];
        }
        if (t)
            table_add(t, row);
    }
    print_table(t);
}

/* The servers: a summary line each, then every figure of the list (keys
 * as the API names them, so a figure added there shows here). */
static void print_memcached(json_t *j, bool etcd)
{
    json_t *list = json_object_get(j, "memcached");
    if (!json_array_size(list))
        return;
    static const char *const mh[] = {"MEMCACHED", "OF NODE", "IN RING", "STATE", "RING",
                                     "HITS",      "HIT%",    "P50",     "ITEMS", "BYTES"};
    struct table *t = table_new(10, mh, "llllrrrrrr");
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        char c[6][32], state[64];
        cell(e, "ring_share", c[0], sizeof c[0]);
        cell(e, "hit_share", c[1], sizeof c[1]);
        cell(e, "hit_ratio", c[2], sizeof c[2]);
        cell(e, "latency_p50_seconds", c[3], sizeof c[3]);
        cell(e, "curr_items", c[4], sizeof c[4]);
        cell(e, "bytes", c[5], sizeof c[5]);
        const char *st = str(e, "state", "-");
        if (!strcmp(st, "ejected"))
            snprintf(state, sizeof state, "ejected (retry in %.1f s)",
                     json_number_value(json_object_get(e, "retry_in_seconds")));
        else
            snprintf(state, sizeof state, "%s", st);
        const char *row[] = {str(e, "server", "?"),
                             etcd ? str(e, "node", "(added)") : "-",
                             json_is_true(json_object_get(e, "in_ring")) ? "yes" : "not yet",
                             state,
                             c[0],
                             c[1],
                             c[2],
                             c[3],
                             c[4],
                             c[5]};
        if (t)
            table_add(t, row);
    }
    print_table(t);

    print_figures(list);
    json_t *tier = json_object_get(j, "tier");
    const char *key;
    json_t *val;
    printf("memcached tier:");
    json_object_foreach(tier, key, val)
    {
        char buf[64];
        cell(tier, key, buf, sizeof buf);
        printf(" %s %s", key, buf);
    }
    printf("\n\n");
}

/* The node's own view, which holds without etcd: fenced or not, the
 * volumes whose owner keys it holds, etcd's last answer to a renewal. */
static void print_own_view(json_t *j)
{
    const char *e = str(j, "etcd_error", NULL);
    if (e)
        printf("etcd cannot be read: %s (nodes, servers and owners unknown; this node's view:)\n",
               e);
    char owned[512];
    join(json_object_get(j, "owned"), owned, sizeof owned);
    bool fenced = json_is_true(json_object_get(j, "fenced"));
    printf("%s: read-write here %s; etcd last renewed the lease %.1f s ago\n\n",
           fenced ? "FENCED (writes refused, reads past the cache)" : "not fenced",
           owned[0] ? owned : "(none)",
           json_number_value(json_object_get(j, "lease_renewed_seconds_ago")));
}

static void print_status(json_t *j)
{
    bool etcd = json_is_true(json_object_get(j, "enabled"));
    if (!etcd) {
        printf("not in a cluster (shoald has no [cluster] etcd)\n");
        if (json_array_size(json_object_get(j, "memcached")))
            printf("\n");
        print_memcached(j, false);
        return;
    }
    printf("node %s, etcd %s, lease %" JSON_INTEGER_FORMAT " s\n", str(j, "node", "?"),
           str(j, "etcd", "?"), json_integer_value(json_object_get(j, "lease_ttl")));
    print_own_view(j);
    print_nodes(j);
    print_memcached(j, !json_is_string(json_object_get(j, "etcd_error")));
    static const char *const oh[] = {"VOLUME", "READ-WRITE ON"};
    struct table *t = table_new(2, oh, "ll");
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "owners"), i, e)
    {
        const char *row[] = {str(e, "volume", "?"), str(e, "node", "?")};
        if (t)
            table_add(t, row);
    }
    if (t) {
        table_print(t, stdout);
        table_free(t);
    }
}

int cmd_cluster_status(struct cli *cli)
{
    json_t *j;
    int r = client_call(cli->client, "GET", "/api/v1/cluster", NULL, &j);
    if (r)
        return r;
    if (cli->flags & F_JSON)
        puts_json(j);
    else
        print_status(j);
    json_decref(j);
    return 0;
}

int cmd_cluster_add(struct cli *cli)
{
    _cleanup_json_ json_t *body = json_pack("{s:s}", "server", cli->args[0]);
    json_t *j;
    int r = client_call(cli->client, "POST", "/api/v1/cluster/memcached", body, &j);
    if (r)
        return r;
    if (cli->flags & F_JSON)
        puts_json(j);
    else
        printf("memcached %s added to the cluster\n", str(j, "server", cli->args[0]));
    json_decref(j);
    return 0;
}

int cmd_cluster_remove(struct cli *cli)
{
    _cleanup_free_ char *esc = client_escape(cli->client, cli->args[0]);
    _cleanup_free_ char *path = NULL;
    if (!esc || asprintf(&path, "/api/v1/cluster/memcached/%s", esc) < 0)
        return 3;
    json_t *j = NULL;
    int r = client_call(cli->client, "DELETE", path, NULL, &j);
    json_decref(j);
    if (r)
        return r;
    if (cli->flags & F_JSON) {
        _cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "server", cli->args[0], "removed", 1);
        puts_json(o);
    } else {
        printf("memcached %s removed from the cluster\n", cli->args[0]);
    }
    return 0;
}

int cmd_volume_move(struct cli *cli)
{
    _cleanup_free_ char *enc = client_escape(cli->client, cli->args[0]);
    _cleanup_free_ char *path = NULL;
    if (!enc || asprintf(&path, "/api/v1/volumes/%s/move", enc) < 0)
        path = NULL;
    _cleanup_json_ json_t *body = json_pack("{s:s}", "to", cli->to);
    json_t *j = NULL;
    int r = path && body ? client_call(cli->client, "POST", path, body, &j) : EXIT_CONNECT;
    if (r)
        return r;
    if (cli->flags & F_JSON)
        puts_json(j);
    else
        printf("volume %s moved to node %s (%" JSON_INTEGER_FORMAT " block keys published%s)\n",
               cli->args[0], str(j, "to", "?"),
               json_integer_value(json_object_get(j, "published_blocks")),
               json_is_true(json_object_get(j, "published")) ? "" : ", not all");
    json_decref(j);
    return EXIT_OK;
}
