/* See api_cluster.h. etcd answers within its client's timeout, so these
 * run on the API's thread like every other handler. */
#include "mgmt/api_cluster.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/membership.h"
#include "common/log.h"

static unsigned status_of(int r)
{
    switch (-r) {
    case EINVAL:
        return 400;
    case ENOENT:
        return 404;
    case ENOTCONN:
        return 409;
    default:
        return 503; /* etcd out of reach */
    }
}

/* Each node: "state" and the volumes it serves read-write. A node is
 * listed while its lease lives (its key goes with it), so a listed node is
 * alive; its owner keys share the lease. */
static void add_node_details(json_t *out)
{
    json_t *owners = json_object_get(out, "owners");
    size_t i, k;
    json_t *node, *o;
    json_array_foreach(json_object_get(out, "nodes"), i, node)
    {
        const char *name = json_string_value(json_object_get(node, "name"));
        json_t *vols = json_array();
        json_array_foreach(owners, k, o)
        {
            const char *on = json_string_value(json_object_get(o, "node"));
            if (name && on && !strcmp(name, on))
                json_array_append(vols, json_object_get(o, "volume"));
        }
        json_object_set_new(node, "state", json_string("alive"));
        json_object_set_new(node, "volumes", vols);
    }
}

/* The servers of this node's tier, with their figures: merged into the
 * entries etcd lists (by name), or the list itself without etcd. A server
 * of the ring that etcd no longer lists (a change on its way) is listed
 * too; "in_ring" says which of etcd's are in this node's ring yet. */
static int add_memcached(struct mgmt *m, json_t *out)
{
    struct mgmt_snap s = {0};
    int r = mgmt_snap_take_mc(m, &s);
    if (r < 0 || !s.has_mc) {
        mgmt_snap_free(&s);
        return r;
    }
    json_t *listed = json_object_get(out, "memcached");
    json_t *list = json_is_array(listed) ? listed : json_array();
    bool *used = calloc(s.nmcs + 1, sizeof *used);
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "server"));
        bool in = false;
        for (unsigned k = 0; name && k < s.nmcs && !in; k++) {
            if (strcmp(s.mcs[k].name, name) != 0)
                continue;
            json_object_update_missing_new(e, render_mc_server_json(&s.mcs[k]));
            in = true;
            if (used)
                used[k] = true;
        }
        json_object_set_new(e, "in_ring", json_boolean(in));
    }
    for (unsigned k = 0; k < s.nmcs; k++) {
        if (used && used[k])
            continue;
        json_t *one = render_mc_server_json(&s.mcs[k]);
        json_object_set_new(one, "in_ring", json_true());
        json_array_append_new(list, one);
    }
    free(used);
    if (list != listed)
        json_object_set_new(out, "memcached", list);
    json_object_set_new(out, "tier", render_mc_tier_json(&s.mc));
    mgmt_snap_free(&s);
    return 0;
}

void api_cluster_get(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    (void)req;
    json_t *out = NULL;
    int r = cluster_status(&out);
    if (r < 0) {
        reply_error(rep, 500, "cannot render the cluster: %s", strerror(-r));
        return;
    }
    add_node_details(out);
    r = add_memcached(m, out);
    if (r < 0) {
        json_decref(out);
        reply_error(rep, 500, "cannot read the memcached tier: %s", strerror(-r));
        return;
    }
    reply_json(rep, 200, out);
}

void api_cluster_mc_add(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    (void)m;
    json_error_t je;
    _cleanup_json_ json_t *body =
        req->body_len ? json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je) : NULL;
    json_t *server = json_object_get(body, "server");
    if (!json_is_object(body) || !json_is_string(server) || json_object_size(body) != 1) {
        reply_error(rep, 400, "want a JSON object {\"server\": \"HOST:PORT\"}");
        return;
    }
    char canon[300] = "", err[1024] = "";
    int r = cluster_memcached_add(json_string_value(server), canon, sizeof canon, err, sizeof err);
    if (r < 0) {
        reply_error(rep, status_of(r), "%s", err[0] ? err : strerror(-r));
        return;
    }
    reply_json(rep, 201, json_pack("{s:s}", "server", canon));
}

void api_cluster_mc_remove(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    (void)m;
    char canon[300] = "", err[1024] = "";
    int r = cluster_memcached_remove(req->name, canon, sizeof canon, err, sizeof err);
    if (r < 0) {
        reply_error(rep, status_of(r), "%s", err[0] ? err : strerror(-r));
        return;
    }
    reply_empty(rep, 204);
}
