/* libcurl client for the management tests; see http_client.h. */
#include "http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct upload {
    const char *data;
    size_t len, off;
};

static size_t on_body(char *ptr, size_t size, size_t n, void *opaque)
{
    struct http_resp *r = opaque;
    size_t k = size * n;
    char *nb = realloc(r->body, r->len + k + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->len, ptr, k);
    r->body = nb;
    r->len += k;
    r->body[r->len] = '\0';
    return k;
}

static void copy_header_value(char *dst, size_t dstlen, const char *line, size_t n, size_t name_len)
{
    const char *v = line + name_len;
    size_t vn = n - name_len;
    while (vn && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
        vn--;
    snprintf(dst, dstlen, "%.*s", (int)vn, v);
}

static size_t on_header(char *line, size_t size, size_t n, void *opaque)
{
    struct http_resp *r = opaque;
    size_t k = size * n;
    if (k > 13 && strncasecmp(line, "Content-Type:", 13) == 0)
        copy_header_value(r->content_type, sizeof r->content_type, line, k, 13);
    else if (k > 6 && strncasecmp(line, "Allow:", 6) == 0)
        copy_header_value(r->allow, sizeof r->allow, line, k, 6);
    else if (k > 9 && strncasecmp(line, "Location:", 9) == 0)
        copy_header_value(r->location, sizeof r->location, line, k, 9);
    return k;
}

static size_t on_read(char *buf, size_t size, size_t n, void *opaque)
{
    struct upload *u = opaque;
    size_t k = size * n;
    if (k > u->len - u->off)
        k = u->len - u->off;
    /* Small pieces so the server sees several chunks. */
    if (k > 4096)
        k = 4096;
    memcpy(buf, u->data + u->off, k);
    u->off += k;
    return k;
}

static __thread const char *const *extra_headers;

void http_set_headers(const char *const *headers)
{
    extra_headers = headers;
}

void http_req(unsigned port, const char *method, const char *path, const char *body,
              size_t body_len, const char *token, int chunked, struct http_resp *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    if (!c)
        return;
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *hdrs = NULL;
    char auth[256];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    struct upload up = {body, body_len, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (body && chunked) {
        hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
    }
    for (const char *const *h = extra_headers; h && *h; h++)
        hdrs = curl_slist_append(hdrs, *h);
    /* No "Expect: 100-continue" round trip. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (r->body && strncmp(r->content_type, "application/json", 16) == 0)
        r->json = json_loads(r->body, 0, NULL);
}

void http_resp_free(struct http_resp *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}
