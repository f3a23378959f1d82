/* A tiny libcurl client for the management tests: one request, the status,
 * the interesting headers and the body (parsed as JSON when it is JSON). */
#ifndef SHOAL_TESTS_HTTP_CLIENT_H
#define SHOAL_TESTS_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>

struct http_resp {
    long status; /* 0 when the request could not be made */
    char *body;  /* NUL-terminated */
    size_t len;
    char content_type[128];
    char allow[128];
    char location[256];
    json_t *json; /* parsed body, or NULL */
};

/* method "GET"/"POST"/..., body may be NULL, token NULL for none. With
 * `chunked`, the body is sent with Transfer-Encoding: chunked. */
void http_req(unsigned port, const char *method, const char *path, const char *body,
              size_t body_len, const char *token, int chunked, struct http_resp *r);
void http_resp_free(struct http_resp *r);
/* Extra request headers ("Name: value", NULL-terminated) for the following
 * requests of this thread; NULL for none. */
void http_set_headers(const char *const *headers);

#endif
