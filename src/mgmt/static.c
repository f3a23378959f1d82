/* The browser side: "/", "/dashboard" and "/dashboard/FILE" serve the
 * dashboard (src/mgmt/dashboard/), whose files are compiled into the binary
 * (dashboard/assets.h). Nothing else in mgmt knows about HTML. Any other
 * path under /dashboard/ is a 404 with the usual JSON error body. */
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "mgmt/dashboard/assets.h"
#include "mgmt/mgmt_internal.h"

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".json", "application/json"},
};

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < ARRAY_SIZE(content_types); i++)
        if (strcmp(dot, content_types[i].ext) == 0)
            return content_types[i].type;
    return "application/octet-stream";
}

static const struct dashboard_asset *find_asset(const char *name)
{
    for (size_t i = 0; i < dashboard_asset_count; i++)
        if (strcmp(dashboard_assets[i].name, name) == 0)
            return &dashboard_assets[i];
    return NULL;
}

void static_serve(const char *path, struct mgmt_reply *rep)
{
    const char *name = NULL;
    if (!strcmp(path, "/") || !strcmp(path, "/dashboard") || !strcmp(path, "/dashboard/"))
        name = "index.html";
    else if (!strncmp(path, "/dashboard/", 11))
        name = path + 11;
    const struct dashboard_asset *a = name ? find_asset(name) : NULL;
    if (!a) {
        reply_error(rep, 404, "not found");
        return;
    }
    /* The reply owns its body; a copy of a few tens of KiB per page load
     * is cheaper than a second ownership mode in the transport. */
    char *body = malloc(a->len ? a->len : 1);
    if (!body) {
        reply_json(rep, 500, NULL);
        return;
    }
    memcpy(body, a->data, a->len);
    reply_text(rep, 200, content_type(a->name), body, a->len);
    rep->page = true;
}
