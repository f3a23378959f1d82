/* See api_cluster.h. etcd answers within its client's timeout, so these
 * run on the API's thread like every other handler. */
#include "mgmt/api_cluster.h"

#include <errno.h>
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

void api_cluster_get(struct mgmt *m, const struct mgmt_req *req, struct mgmt_reply *rep)
{
    (void)m, (void)req;
    json_t *out = NULL;
    char err[1024] = "";
    int r = cluster_status(&out, err, sizeof err);
    if (r < 0) {
        reply_error(rep, status_of(r), "cannot read the cluster from etcd: %s",
                    err[0] ? err : strerror(-r));
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
