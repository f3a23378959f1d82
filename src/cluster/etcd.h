/* A small etcd v3 client over etcd's HTTP/JSON gateway (etcd 3.4: POST of
 * JSON to /v3/kv/range, /v3/kv/put, /v3/kv/deleterange, /v3/kv/txn,
 * /v3/lease/grant|keepalive|revoke and the streaming /v3/watch). Keys and
 * values travel base64-encoded; 64-bit numbers come back as JSON strings.
 *
 * Transport: libcurl, which the design brief names for the gateway and
 * shoalctl already links: it brings HTTP/1.1 with chunked streaming (the
 * watch), connect and total timeouts, and keep-alive connections, none of
 * which is worth writing again over plain sockets.
 *
 * Endpoints: "http://127.0.0.1:2379,https://host:2379": a call tries them in
 * turn, starting with the last one that answered, until one answers or all
 * have failed. Every call is bounded by the client's timeout (the watch by
 * its own stop flag). Errors: a negative errno, and one line that says why
 * in etcd_error() (per thread; the caller decides whether to log it): -ETIMEDOUT / -ECONNREFUSED /
 * -EHOSTUNREACH when no endpoint answered, -EPROTO for an answer that is not etcd's, -ENOENT for an
 * unknown lease, -EEXIST for a failed create.
 *
 * Threads: a struct etcd may be used by several threads at once (each call
 * has its own curl handle); the response parsers (etcd_parse_*) are pure. */
#ifndef SHOAL_CLUSTER_ETCD_H
#define SHOAL_CLUSTER_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_TIMEOUT_MS   2000
#define ETCD_MAX_ENDPOINT 8

struct etcd;

/* TLS for https:// endpoints (etcd's --client-cert-auth and
 * --trusted-ca-file on its side): PEM files, each NULL when not used. No
 * cacert: the system's CAs. cert and key go together. */
struct etcd_tls {
    const char *cacert, *cert, *key;
};
/* Check tls against the endpoints without opening anything: 0, or -EINVAL
 * and a sentence in err (a cert without its key, files and no https). */
int etcd_tls_check(const char *endpoints, const struct etcd_tls *tls, char *err, size_t errlen);
/* Whether this process can read each file tls names (they are read again
 * at each connection, as whoever shoald runs as): 0, or -errno with the
 * option ("--etcd-key") and path of the first it cannot read. */
int etcd_tls_readable(const struct etcd_tls *tls, const char **option, const char **path);

/* `endpoints`: comma-separated http:// or https:// URLs (no path); tls may
 * be NULL. Returns 0, or -EINVAL with one line in etcd_error(), or
 * -ENOMEM. Nothing is contacted. */
int etcd_open(const char *endpoints, uint32_t timeout_ms, const struct etcd_tls *tls,
              struct etcd **out);
void etcd_close(struct etcd *e);
/* The sentence of this thread's last failed call ("" after a success). */
const char *etcd_error(void);
/* Check an endpoint list without opening it: 0, or -EINVAL and a sentence
 * in err. */
int etcd_endpoints_check(const char *endpoints, char *err, size_t errlen);

/* One key-value pair; key and value are NUL-terminated, their lengths in
 * key_len and value_len: etcd takes any bytes, so a key or value whose
 * length is not its strlen() holds a NUL byte (a key "a\0b" is not "a"). */
struct etcd_kv {
    char *key;
    char *value;
    size_t key_len, value_len;
    int64_t create_revision, mod_revision, lease;
    /* etcd_range_prefix: the pair alone was larger than an answer may be
     * (16 MiB): its key only, value "" (anybody who can write etcd with a
     * raised --max-request-bytes can put one there). */
    bool too_large;
};

struct etcd_kvs {
    struct etcd_kv *kv;
    size_t n;
    int64_t revision; /* the store's revision when answered */
    bool more;        /* a range with a limit: pairs beyond it remain */
};
void etcd_kvs_free(struct etcd_kvs *k);

/* Every key starting with `prefix`, sorted by key. On failure *out is
 * empty (n 0, nothing to free). One request; when its answer is larger
 * than an answer may be (large values under the prefix), again in pages
 * at that revision, and a pair too large alone comes with too_large set,
 * so records around it are still read. */
int etcd_range_prefix(struct etcd *e, const char *prefix, struct etcd_kvs *out);
/* Put `value` at `key`, under `lease` (0: none). */
int etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease);
/* Delete `key`; *deleted (may be NULL) says whether it existed. */
int etcd_delete(struct etcd *e, const char *key, bool *deleted);
/* Create `key` only if it does not exist (a txn on create_revision == 0).
 * Returns 0 when created, -EEXIST when it exists (its pair in *holder, to
 * be freed with etcd_kvs_free; may be NULL). */
int etcd_create(struct etcd *e, const char *key, const char *value, int64_t lease,
                struct etcd_kvs *holder);
/* Delete `key` only if its value is still `value` (a txn): so a node
 * releases only what it holds. *deleted (may be NULL) says if it did. */
int etcd_delete_if(struct etcd *e, const char *key, const char *value, bool *deleted);

/* Put `value` (under `lease`) at `key` only if its value is still `old`
 * (a txn): a volume's ownership handed from one node to another.
 * *replaced (may be NULL) says if it did. */
int etcd_replace_if(struct etcd *e, const char *key, const char *old, const char *value,
                    int64_t lease, bool *replaced);

int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id);
/* Renew a lease: 0 and *ttl_s left, or -ENOENT when it has expired. */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_s);
int etcd_lease_revoke(struct etcd *e, int64_t id);

/* Watch every key under `prefix` from revision `start` (0: now). Blocks,
 * calling `fn` once per batch of changes with the revision it reached,
 * until `*stop` becomes true (returns 0), `fn` returns non-zero (returns
 * that), the stream ends or breaks (-ECONNRESET and the like), or
 * `max_ms` passed (0: no limit; returns 0). */
int etcd_watch(struct etcd *e, const char *prefix, int64_t start,
               int (*fn)(void *arg, int64_t revision, unsigned nevents), void *arg,
               const bool *stop, uint32_t max_ms);

/* ---- response parsing (pure; etcd_json.c; fuzzed by tests/fuzz/fuzz_etcd.c) ---- */

/* An "error" answer ({"error", "code", "message"}) becomes -EPROTO with its
 * message in err; a lease that etcd does not know, -ENOENT. */
int etcd_parse_range(const char *buf, size_t len, struct etcd_kvs *out, char *err, size_t errlen);
/* A txn: *succeeded, and the kvs of its first range response (failure). */
int etcd_parse_txn(const char *buf, size_t len, bool *succeeded, struct etcd_kvs *out, char *err,
                   size_t errlen);
/* lease grant ("ID", "TTL") and keepalive ({"result": {"ID", "TTL"}}). */
int etcd_parse_lease(const char *buf, size_t len, int64_t *id, int64_t *ttl, char *err,
                     size_t errlen);
/* deleterange: *deleted keys; put/revoke: only checks for an error. */
int etcd_parse_deleted(const char *buf, size_t len, int64_t *deleted, char *err, size_t errlen);
/* One watch message ({"result": {"header": {"revision"}, "events": [...],
 * "created"?, "canceled"?}}): its revision and event count; -ECANCELED
 * when etcd cancelled the watch (compacted, say). */
int etcd_parse_watch(const char *buf, size_t len, int64_t *revision, unsigned *nevents, char *err,
                     size_t errlen);

/* base64 (RFC 4648, padded). encode: out needs 4 * ((n + 2) / 3) + 1.
 * decode: returns the length, or -EINVAL; out needs 3 * (len / 4) + 1 and
 * is NUL-terminated. */
void etcd_b64_encode(const void *in, size_t n, char *out);
long etcd_b64_decode(const char *in, size_t len, unsigned char *out);

#endif
