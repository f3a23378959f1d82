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

static void print_status(json_t *j)
{
    if (!json_is_true(json_object_get(j, "enabled"))) {
        printf("not in a cluster (shoald has no [cluster] etcd)\n");
        return;
    }
    printf("node %s, etcd %s, lease %" JSON_INTEGER_FORMAT " s\n", str(j, "node", "?"),
           str(j, "etcd", "?"), json_integer_value(json_object_get(j, "lease_ttl")));
    size_t i;
    json_t *e;
    static const char *const nh[] = {"NODE", "MEMCACHED", "API", "STARTED"};
    struct table *t = table_new(4, nh, "llll");
    json_array_foreach(json_object_get(j, "nodes"), i, e)
    {
        char started[32] = "-", name[300];
        time_t s = (time_t)json_integer_value(json_object_get(e, "started"));
        struct tm tm;
        if (s && gmtime_r(&s, &tm))
            strftime(started, sizeof started, "%Y-%m-%d %H:%M:%SZ", &tm);
        snprintf(name, sizeof name, "%s%s", str(e, "name", "?"),
                 json_is_true(json_object_get(e, "self")) ? " (this)" : "");
        const char *row[] = {name, str(e, "memcached", "-"), str(e, "api", "-"), started};
        if (t)
            table_add(t, row);
    }
    if (t) {
        table_print(t, stdout);
        table_free(t);
    }
    printf("\n");
    static const char *const mh[] = {"MEMCACHED", "OF NODE", "IN THIS NODE'S RING"};
    t = table_new(3, mh, "lll");
    json_t *ring = json_object_get(j, "ring");
    json_array_foreach(json_object_get(j, "memcached"), i, e)
    {
        const char *server = str(e, "server", "?");
        bool in = false;
        size_t k;
        json_t *r;
        json_array_foreach(ring, k, r) in = in || !strcmp(json_string_value(r), server);
        const char *row[] = {server, str(e, "node", "(added)"), in ? "yes" : "not yet"};
        if (t)
            table_add(t, row);
    }
    if (t) {
        table_print(t, stdout);
        table_free(t);
    }
    printf("\n");
    static const char *const oh[] = {"VOLUME", "READ-WRITE ON"};
    t = table_new(2, oh, "ll");
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
