/* libcurl-based client for shoalctl; see client.h. */
#include "cli/client.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/util.h"

/* Responses are small JSON documents; /api/v1/stats grows with volumes
 * but stays far below this. */
#define MAX_RESPONSE (64u << 20)

struct client {
    CURL *curl;
    char *base;
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    char *token_source;
    char *cacert;
    uint64_t timeout_ms; /* 0: no limit */
};

struct buf {
    char *data;
    size_t len, cap;
    bool overflow;
};

static size_t on_data(char *ptr, size_t size, size_t n, void *opaque)
{
    struct buf *b = opaque;
    size_t k = size * n;
    if (b->len + k > MAX_RESPONSE) {
        b->overflow = true;
        return 0; /* aborts the transfer */
    }
    /* Doubling: a realloc per 16 KiB chunk copied a 64 MiB answer about
     * 4000 times (minutes under ASan, whose realloc always copies). */
    if (b->len + k + 1 > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + k + 1);
        cap = MIN(cap, (size_t)MAX_RESPONSE + 1);
        char *nd = realloc(b->data, cap);
        if (!nd)
            return 0;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, k);
    b->len += k;
    b->data[b->len] = '\0';
    return k;
}

struct client *client_new(const char *base_url, const struct client_options *o)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->curl = curl_easy_init();
    c->base = strdup(base_url);
    c->token_source = strdup(o->token_source ? o->token_source : "nowhere");
    c->cacert = o->cacert ? strdup(o->cacert) : NULL;
    c->timeout_ms = o->timeout_ms;
    if (o->token && asprintf(&c->auth_header, "Authorization: Bearer %s", o->token) < 0)
        c->auth_header = NULL;
    if (!c->curl || !c->base || !c->token_source || (o->cacert && !c->cacert) ||
        (o->token && !c->auth_header)) {
        client_free(c);
        return NULL;
    }
    size_t n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    return c;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->base);
    free(c->auth_header);
    free(c->token_source);
    free(c->cacert);
    free(c);
}

void client_set_timeout(struct client *c, uint64_t timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

char *client_escape(struct client *c, const char *segment)
{
    char *e = curl_easy_escape(c->curl, segment, 0);
    if (!e)
        return NULL;
    char *copy = strdup(e); /* callers free() rather than curl_free() */
    curl_free(e);
    return copy;
}

/* The server's {"error": "..."} message, or the raw body's first line:
 * one line whatever the server sent, control characters (a newline, a
 * terminal escape) shown as '?'. */
static void print_server_error(long status, struct buf *b)
{
    json_t *j = b->data ? json_loads(b->data, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(j, "error"));
    _cleanup_free_ char *clean = msg ? strdup(msg) : NULL;
    if (clean) {
        fprintf(stderr, "shoalctl: %s (HTTP %ld)\n", str_printable(clean), status);
    } else if (b->data && b->len) {
        size_t n = MIN(strcspn(b->data, "\r\n"), (size_t)200);
        b->data[n] = '\0';
        fprintf(stderr, "shoalctl: server error (HTTP %ld): %s\n", status, str_printable(b->data));
    } else {
        fprintf(stderr, "shoalctl: server error (HTTP %ld)\n", status);
    }
    json_decref(j);
}

int client_call(struct client *c, const char *method, const char *path, json_t *body, json_t **out)
{
    *out = NULL;
    _cleanup_free_ char *url = NULL;
    if (asprintf(&url, "%s%s", c->base, path) < 0) {
        fprintf(stderr, "shoalctl: out of memory\n");
        return EXIT_CONNECT;
    }
    _cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct buf resp = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    bool get = strcmp(method, "GET") == 0;

    struct curl_slist *hdrs = NULL;
    if (c->auth_header)
        hdrs = curl_slist_append(hdrs, c->auth_header);
    if (payload)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */

    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* The overall limit covers connecting too: the connect limit is never
     * the longer one. libcurl takes a long (ms past LONG_MAX: no limit). */
    long total = c->timeout_ms > (uint64_t)LONG_MAX ? 0 : (long)c->timeout_ms;
    long connect = total ? MIN(total, (long)CLIENT_CONNECT_TIMEOUT_MS) : CLIENT_CONNECT_TIMEOUT_MS;
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total);
    /* A local daemon must not be reached through $http_proxy. */
    curl_easy_setopt(h, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "shoalctl");
    /* The token must not follow a redirect to another host. */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (c->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    if (payload) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    } else if (!get && strcmp(method, "DELETE") != 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }

    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) {
        /* Out of time once connected: the server took the connection (a
         * hung shoald, or something else on that port) but did not answer;
         * "cannot connect" would send the user looking at the wrong thing. */
        curl_off_t connected_us = 0;
        if (rc == CURLE_OPERATION_TIMEDOUT &&
            curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connected_us) != CURLE_OK)
            connected_us = 0;
        if (resp.overflow)
            fprintf(stderr, "shoalctl: response from %s is too large\n", c->base);
        else if (rc == CURLE_OPERATION_TIMEDOUT && connected_us > 0)
            fprintf(stderr, "shoalctl: no answer from %s within %g s (see --timeout)\n", c->base,
                    (double)c->timeout_ms / 1000.0);
        else
            fprintf(stderr, "shoalctl: cannot connect to %s: %s\n", c->base,
                    errbuf[0] ? errbuf : curl_easy_strerror(rc));
        free(resp.data);
        return resp.overflow ? EXIT_SERVER : EXIT_CONNECT;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status == 401) {
        if (c->auth_header)
            fprintf(stderr,
                    "shoalctl: the server refused the API token from %s (HTTP 401): it is not "
                    "the one in shoald's --http-token-file\n",
                    c->token_source);
        else
            fprintf(stderr,
                    "shoalctl: the server needs the API token for this (HTTP 401), and none was "
                    "found; looked at: %s\n",
                    c->token_source);
        free(resp.data);
        return EXIT_SERVER;
    }
    if (status < 200 || status > 299) {
        print_server_error(status, &resp);
        free(resp.data);
        return EXIT_SERVER;
    }
    if (resp.len) {
        json_error_t err;
        *out = json_loadb(resp.data, resp.len, 0, &err);
        if (!*out) {
            /* err.text quotes the server's bytes: keep them on one line. */
            fprintf(stderr, "shoalctl: the server sent invalid JSON: %s\n",
                    str_printable(err.text));
            free(resp.data);
            return EXIT_SERVER;
        }
    }
    free(resp.data);
    return EXIT_OK;
}
