/* The browser side: "/", "/dashboard" and "/dashboard/...". For now a
 * placeholder page; the dashboard will replace this file (its assets are
 * served from here too), so nothing else in mgmt knows about HTML. */
#include <string.h>

#include "mgmt/mgmt_internal.h"

static const char placeholder_html[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\">\n"
    "<head><meta charset=\"utf-8\"><title>shoal</title></head>\n"
    "<body>\n"
    "<h1>shoal</h1>\n"
    "<p>The dashboard comes later. Meanwhile:</p>\n"
    "<ul>\n"
    "<li><a href=\"/api/v1/stats\">/api/v1/stats</a> (JSON)</li>\n"
    "<li><a href=\"/api/v1/volumes\">/api/v1/volumes</a> (JSON)</li>\n"
    "<li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>\n"
    "</ul>\n"
    "</body>\n"
    "</html>\n";

void static_serve(const char *path, struct mgmt_reply *rep)
{
    if (strcmp(path, "/") != 0 && strcmp(path, "/dashboard") != 0 &&
        strcmp(path, "/dashboard/") != 0) {
        reply_error(rep, 404, "not found");
        return;
    }
    char *body = strdup(placeholder_html);
    if (!body) {
        reply_json(rep, 500, NULL);
        return;
    }
    reply_text(rep, 200, "text/html; charset=utf-8", body, sizeof placeholder_html - 1);
}
