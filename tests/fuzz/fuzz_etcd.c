/* libFuzzer target for the parsers of the etcd gateway's JSON answers
 * (src/cluster/etcd_json.c): what a node reads from etcd, or from anything
 * that answers on an etcd endpoint.
 *
 * Input: a first byte choosing the parser (range, txn, lease, delete,
 * watch, base64), then the answer's bytes. Beyond memory safety (ASan,
 * UBSan, LeakSanitizer: every pair parsed is freed), the harness aborts
 * when a parser breaks what membership.c relies on: a failed parse leaves
 * no pairs; a parsed pair has a NUL-terminated key and value whose
 * key_len and value_len match (a NUL inside is kept, membership.c tells
 * such a key from the one its C string spells); base64 that decodes re-encodes to the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/etcd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_kvs(int r, const struct etcd_kvs *k)
{
    if (r < 0 && (k->n || k->kv))
        abort();
    for (size_t i = 0; i < k->n; i++) {
        const struct etcd_kv *kv = &k->kv[i];
        if (!kv->key || !kv->value || kv->value[kv->value_len] != '\0' ||
            kv->key[kv->key_len] != '\0' || strlen(kv->key) > kv->key_len || kv->too_large)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 6;
    /* A copy of exactly size - 1 bytes, so ASan sees any read past the end. */
    size_t n = size - 1;
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, n);
    char err[256];
    struct etcd_kvs kvs;
    int64_t a, b;
    unsigned nev;
    bool ok;
    int r;
    switch (which) {
    case 0:
        r = etcd_parse_range(buf, n, &kvs, err, sizeof err);
        check_kvs(r, &kvs);
        etcd_kvs_free(&kvs);
        break;
    case 1:
        r = etcd_parse_txn(buf, n, &ok, &kvs, err, sizeof err);
        check_kvs(r, &kvs);
        etcd_kvs_free(&kvs);
        break;
    case 2:
        etcd_parse_lease(buf, n, &a, &b, err, sizeof err);
        break;
    case 3:
        etcd_parse_deleted(buf, n, &a, err, sizeof err);
        break;
    case 4:
        etcd_parse_watch(buf, n, &a, &nev, err, sizeof err);
        break;
    default: {
        unsigned char *dec = malloc(3 * (n / 4) + 1);
        char *enc = malloc(4 * ((3 * (n / 4) + 2) / 3) + 1);
        if (dec && enc) {
            long len = etcd_b64_decode(buf, n, dec);
            if (len >= 0) {
                etcd_b64_encode(dec, (size_t)len, enc);
                if (strlen(enc) != n || memcmp(enc, buf, n) != 0)
                    abort(); /* two spellings of one value */
            }
        }
        free(dec);
        free(enc);
    }
    }
    free(buf);
    return 0;
}
