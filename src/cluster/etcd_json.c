/* The etcd gateway's JSON answers (see etcd.h): pure functions over a
 * buffer, so the fuzzer can drive them. Numbers that are int64 in the
 * protobuf come as JSON strings; an absent field is zero. */
#include "cluster/etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void etcd_b64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = b64chars[v >> 18 & 63];
        out[o++] = b64chars[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
}

static int b64val(char c)
{
    const char *p = c ? strchr(b64chars, c) : NULL;
    return p ? (int)(p - b64chars) : -1;
}

long etcd_b64_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4)
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int pad = (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=');
        if (pad && i + 4 != len)
            return -EINVAL;
        int a = b64val(in[i]), b = b64val(in[i + 1]);
        int c = pad >= 2 ? 0 : b64val(in[i + 2]), d = pad >= 1 ? 0 : b64val(in[i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0)
            return -EINVAL;
        /* Bits beyond the data must be zero: one spelling per value. */
        if ((pad == 2 && (b & 15)) || (pad == 1 && (c & 3)))
            return -EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)v;
    }
    out[o] = '\0';
    return (long)o;
}

/* A base64 JSON string into a fresh NUL-terminated buffer. */
static int b64_field(json_t *obj, const char *name, char **out, size_t *outlen)
{
    json_t *j = json_object_get(obj, name);
    const char *s = json_is_string(j) ? json_string_value(j) : "";
    if (j && !json_is_string(j))
        return -EPROTO;
    size_t len = strlen(s);
    unsigned char *buf = malloc(3 * (len / 4) + 1);
    if (!buf)
        return -ENOMEM;
    long n = etcd_b64_decode(s, len, buf);
    if (n < 0) {
        free(buf);
        return -EPROTO;
    }
    *out = (char *)buf;
    if (outlen)
        *outlen = (size_t)n;
    return 0;
}

/* An int64 given as a string (or, leniently, a number); absent: 0. */
static int i64_field(json_t *obj, const char *name, int64_t *out)
{
    json_t *j = json_object_get(obj, name);
    *out = 0;
    if (!j)
        return 0;
    if (json_is_integer(j)) {
        *out = json_integer_value(j);
        return 0;
    }
    if (!json_is_string(j))
        return -EPROTO;
    const char *s = json_string_value(j);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return -EPROTO;
    *out = v;
    return 0;
}

static int load(const char *buf, size_t len, json_t **out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "etcd answered something that is not a JSON object");
        json_decref(root);
        return -EPROTO;
    }
    json_t *e = json_object_get(root, "error");
    if (e) {
        const char *msg = json_string_value(e);
        json_t *m = json_object_get(root, "message");
        if (json_is_string(m))
            msg = json_string_value(m);
        snprintf(err, errlen, "etcd: %s", msg ? msg : "error");
        int r = msg && strstr(msg, "lease not found") ? -ENOENT : -EPROTO;
        json_decref(root);
        return r;
    }
    *out = root;
    return 0;
}

static int header_revision(json_t *obj, int64_t *rev)
{
    json_t *h = json_object_get(obj, "header");
    if (!json_is_object(h))
        return -EPROTO;
    return i64_field(h, "revision", rev);
}

void etcd_kvs_free(struct etcd_kvs *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->kv[i].key);
        free(k->kv[i].value);
    }
    free(k->kv);
    k->kv = NULL;
    k->n = 0;
}

static int parse_kv(json_t *j, struct etcd_kv *kv)
{
    if (!json_is_object(j))
        return -EPROTO;
    int r = b64_field(j, "key", &kv->key, &kv->key_len);
    if (r == 0)
        r = b64_field(j, "value", &kv->value, &kv->value_len);
    if (r == 0)
        r = i64_field(j, "create_revision", &kv->create_revision);
    if (r == 0)
        r = i64_field(j, "mod_revision", &kv->mod_revision);
    if (r == 0)
        r = i64_field(j, "lease", &kv->lease);
    return r;
}

static int parse_kvs(json_t *obj, struct etcd_kvs *out)
{
    json_t *arr = json_object_get(obj, "kvs");
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return -EPROTO;
    size_t n = json_array_size(arr);
    if (!n)
        return 0;
    out->kv = calloc(n, sizeof *out->kv);
    if (!out->kv)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        out->n = i + 1; /* so a failure frees what was filled */
        int r = parse_kv(json_array_get(arr, i), &out->kv[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static int bad(json_t *root, struct etcd_kvs *out, int r, char *err, size_t errlen,
               const char *what)
{
    json_decref(root);
    if (out)
        etcd_kvs_free(out);
    if (r == -EPROTO)
        snprintf(err, errlen, "etcd: malformed %s answer", what);
    else if (r < 0)
        snprintf(err, errlen, "etcd: %s answer: %s", what, strerror(-r));
    return r;
}

int etcd_parse_range(const char *buf, size_t len, struct etcd_kvs *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root;
    int r = load(buf, len, &root, err, errlen);
    if (r < 0)
        return r;
    r = header_revision(root, &out->revision);
    json_t *more = json_object_get(root, "more");
    if (r == 0 && more && !json_is_boolean(more))
        r = -EPROTO;
    out->more = json_is_true(more);
    if (r == 0)
        r = parse_kvs(root, out);
    if (r < 0)
        return bad(root, out, r, err, errlen, "range");
    json_decref(root);
    return 0;
}

int etcd_parse_txn(const char *buf, size_t len, bool *succeeded, struct etcd_kvs *out, char *err,
                   size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root;
    int r = load(buf, len, &root, err, errlen);
    if (r < 0)
        return r;
    r = header_revision(root, &out->revision);
    json_t *s = json_object_get(root, "succeeded");
    if (s && !json_is_boolean(s))
        r = -EPROTO;
    *succeeded = json_is_true(s);
    json_t *resps = json_object_get(root, "responses");
    if (r == 0 && resps && !json_is_array(resps))
        r = -EPROTO;
    size_t i;
    json_t *one;
    json_array_foreach(resps, i, one)
    {
        json_t *rr = json_object_get(one, "response_range");
        if (r == 0 && rr) {
            r = json_is_object(rr) ? parse_kvs(rr, out) : -EPROTO;
            break;
        }
    }
    if (r < 0)
        return bad(root, out, r, err, errlen, "txn");
    json_decref(root);
    return 0;
}

int etcd_parse_lease(const char *buf, size_t len, int64_t *id, int64_t *ttl, char *err,
                     size_t errlen)
{
    json_t *root;
    int r = load(buf, len, &root, err, errlen);
    if (r < 0)
        return r;
    json_t *obj = json_object_get(root, "result");
    if (!obj)
        obj = root;
    if (!json_is_object(obj))
        return bad(root, NULL, -EPROTO, err, errlen, "lease");
    r = i64_field(obj, "ID", id);
    if (r == 0)
        r = i64_field(obj, "TTL", ttl);
    if (r < 0)
        return bad(root, NULL, r, err, errlen, "lease");
    json_decref(root);
    return 0;
}

int etcd_parse_deleted(const char *buf, size_t len, int64_t *deleted, char *err, size_t errlen)
{
    json_t *root;
    int r = load(buf, len, &root, err, errlen);
    if (r < 0)
        return r;
    r = i64_field(root, "deleted", deleted);
    if (r < 0)
        return bad(root, NULL, r, err, errlen, "delete");
    json_decref(root);
    return 0;
}

int etcd_parse_watch(const char *buf, size_t len, int64_t *revision, unsigned *nevents, char *err,
                     size_t errlen)
{
    json_t *root;
    int r = load(buf, len, &root, err, errlen);
    if (r < 0)
        return r;
    json_t *res = json_object_get(root, "result");
    if (!json_is_object(res))
        return bad(root, NULL, -EPROTO, err, errlen, "watch");
    r = header_revision(res, revision);
    json_t *ev = json_object_get(res, "events");
    if (r == 0 && ev && !json_is_array(ev))
        r = -EPROTO;
    if (r < 0)
        return bad(root, NULL, r, err, errlen, "watch");
    *nevents = (unsigned)json_array_size(ev);
    if (json_is_true(json_object_get(res, "canceled"))) {
        json_t *why = json_object_get(res, "cancel_reason");
        snprintf(err, errlen, "etcd cancelled the watch: %s",
                 json_is_string(why) ? json_string_value(why) : "no reason given");
        json_decref(root);
        return -ECANCELED;
    }
    json_decref(root);
    return 0;
}
