/* Operational key negotiation (RFC 7143 section 13); see params.h. */
#include "frontend/iscsi/params.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "frontend/iscsi/proto.h"

void iscsi_params_init(struct iscsi_params *p)
{
    *p = (struct iscsi_params){
        .max_connections = 1,
        .initial_r2t = true,
        .immediate_data = true,
        .max_burst = ISCSI_MAXBURST_DEFAULT,
        .first_burst = ISCSI_FIRSTBURST_DEFAULT,
        .time2wait = ISCSI_TIME2WAIT_DEFAULT,
        .time2retain = ISCSI_TIME2RETAIN_DEFAULT,
        .max_outstanding_r2t = 1,
        .data_pdu_in_order = true,
        .data_seq_in_order = true,
        .erl = 0,
        .initiator_mrdsl = ISCSI_MRDSL_DEFAULT,
        .target_mrdsl = ISCSI_MRDSL_DEFAULT,
    };
}

void iscsi_kv_add(struct iscsi_kv_out *o, const char *key, const char *val)
{
    size_t kl = strlen(key), vl = strlen(val);
    if (o->len + kl + vl + 2 > o->cap) {
        o->overflow = true;
        return;
    }
    memcpy(o->buf + o->len, key, kl);
    o->buf[o->len + kl] = '=';
    memcpy(o->buf + o->len + kl + 1, val, vl);
    o->buf[o->len + kl + 1 + vl] = '\0';
    o->len += kl + vl + 2;
}

#define KV_MAX 8192 /* longest pair we parse (a SendTargets value is short) */

int iscsi_kv_each(const char *data, size_t len,
                  int (*fn)(void *opaque, const char *key, const char *val), void *opaque)
{
    char pair[KV_MAX + 1];
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && data[end] != '\0')
            end++;
        size_t n = end - i;
        if (n > 0) {
            if (n > KV_MAX)
                n = KV_MAX; /* a key nobody defines: answered NotUnderstood or Reject */
            memcpy(pair, data + i, n);
            pair[n] = '\0';
            char *eq = strchr(pair, '=');
            if (eq)
                *eq = '\0';
            int r = fn(opaque, pair, eq ? eq + 1 : NULL);
            if (r)
                return r;
        }
        i = end + 1;
    }
    return 0;
}

/* Numbers are decimal or 0x hex (RFC 7143 section 6.1). */
static int parse_num(const char *v, uint64_t max, uint64_t *out)
{
    if (!v || !*v || *v == '-' || *v == '+')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (errno || *end || n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    if (v && !strcmp(v, "Yes"))
        *out = true;
    else if (v && !strcmp(v, "No"))
        *out = false;
    else
        return -EINVAL;
    return 0;
}

/* The first of a list of digests we support (None and CRC32C). */
static int digest(const char *v, bool *crc)
{
    char list[256];
    if (!v || strlen(v) >= sizeof list)
        return -EINVAL;
    strcpy(list, v);
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "CRC32C")) {
            *crc = true;
            return 0;
        }
        if (!strcmp(t, "None")) {
            *crc = false;
            return 0;
        }
    }
    return -ENOENT;
}

static void answer_num(struct iscsi_kv_out *out, const char *key, uint64_t n)
{
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)n);
    iscsi_kv_add(out, key, b);
}

int iscsi_params_negotiate(struct iscsi_params *p, const char *key, const char *val,
                           struct iscsi_kv_out *out)
{
    uint64_t n;
    bool b;
    if (!strcmp(key, "HeaderDigest") || !strcmp(key, "DataDigest")) {
        bool *f = key[0] == 'H' ? &p->header_digest : &p->data_digest;
        int r = digest(val, f);
        if (r == -ENOENT) {
            iscsi_kv_add(out, key, "Reject");
            return -1;
        }
        if (r < 0)
            goto bad;
        iscsi_kv_add(out, key, *f ? "CRC32C" : "None");
        return 1;
    }
    if (!strcmp(key, "MaxConnections")) {
        if (parse_num(val, 65535, &n) < 0 || n == 0)
            goto bad;
        p->max_connections = 1; /* no MC/S: one connection per session */
        answer_num(out, key, 1);
        return 1;
    }
    if (!strcmp(key, "InitialR2T")) {
        if (parse_bool(val, &b) < 0)
            goto bad;
        p->initial_r2t = b; /* OR with our No: theirs */
        iscsi_kv_add(out, key, b ? "Yes" : "No");
        return 1;
    }
    if (!strcmp(key, "ImmediateData")) {
        if (parse_bool(val, &b) < 0)
            goto bad;
        p->immediate_data = b; /* AND with our Yes: theirs */
        iscsi_kv_add(out, key, b ? "Yes" : "No");
        return 1;
    }
    if (!strcmp(key, "DataPDUInOrder") || !strcmp(key, "DataSequenceInOrder")) {
        if (parse_bool(val, &b) < 0)
            goto bad;
        /* OR with our Yes: always Yes (we take data in order only). */
        if (key[4] == 'P')
            p->data_pdu_in_order = true;
        else
            p->data_seq_in_order = true;
        iscsi_kv_add(out, key, "Yes");
        return 1;
    }
    if (!strcmp(key, "MaxRecvDataSegmentLength")) {
        if (parse_num(val, ISCSI_MRDSL_MAX, &n) < 0 || n < ISCSI_MRDSL_MIN)
            goto bad;
        p->initiator_mrdsl = (uint32_t)n; /* declarative: no answer */
        return 1;
    }
    if (!strcmp(key, "MaxBurstLength") || !strcmp(key, "FirstBurstLength")) {
        if (parse_num(val, ISCSI_BURST_MAX, &n) < 0 || n < 512)
            goto bad;
        bool max = key[0] == 'M';
        uint32_t v = (uint32_t)MIN(n, max ? ISCSI_TARGET_MAX_BURST : ISCSI_TARGET_FIRST_BURST);
        *(max ? &p->max_burst : &p->first_burst) = v;
        /* Answered by iscsi_params_settle: FirstBurstLength may not exceed
         * MaxBurstLength, which may come later in the same request. */
        *(max ? &p->answer_max_burst : &p->answer_first_burst) = true;
        return 1;
    }
    if (!strcmp(key, "DefaultTime2Wait") || !strcmp(key, "DefaultTime2Retain")) {
        if (parse_num(val, 3600, &n) < 0)
            goto bad;
        if (key[12] == 'W') {
            p->time2wait = (uint32_t)n; /* max with ours (0): theirs */
            answer_num(out, key, p->time2wait);
        } else {
            p->time2retain = 0; /* min with ours: ERL 0 keeps nothing */
            answer_num(out, key, 0);
        }
        return 1;
    }
    if (!strcmp(key, "MaxOutstandingR2T")) {
        if (parse_num(val, 65535, &n) < 0 || n == 0)
            goto bad;
        p->max_outstanding_r2t = (uint32_t)MIN(n, ISCSI_TARGET_MAX_R2T);
        answer_num(out, key, p->max_outstanding_r2t);
        return 1;
    }
    if (!strcmp(key, "ErrorRecoveryLevel")) {
        if (parse_num(val, 2, &n) < 0)
            goto bad;
        p->erl = 0;
        answer_num(out, key, 0);
        return 1;
    }
    /* RFC 3720's markers, gone from RFC 7143: we never use them. */
    if (!strcmp(key, "IFMarker") || !strcmp(key, "OFMarker")) {
        iscsi_kv_add(out, key, "No");
        return 1;
    }
    if (!strcmp(key, "IFMarkInt") || !strcmp(key, "OFMarkInt")) {
        iscsi_kv_add(out, key, "Irrelevant");
        return 1;
    }
    return 0;
bad:
    iscsi_kv_add(out, key, "Reject");
    return -1;
}

void iscsi_params_settle(struct iscsi_params *p, struct iscsi_kv_out *out)
{
    if (p->first_burst > p->max_burst)
        p->first_burst = p->max_burst;
    if (out && p->answer_max_burst)
        answer_num(out, "MaxBurstLength", p->max_burst);
    if (out && p->answer_first_burst)
        answer_num(out, "FirstBurstLength", p->first_burst);
    p->answer_max_burst = p->answer_first_burst = false;
}
