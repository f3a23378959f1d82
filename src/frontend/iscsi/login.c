/* The login phase (RFC 7143 sections 6 and 11.12-11.13): stages, ISID and
 * TSIH, the key=value negotiation, CHAP, and the login status codes.
 * Runs on the connection's reader before any other thread exists for it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "common/log.h"
#include "common/util.h"
#include "core/engine.h"
#include "frontend/iscsi/chap.h"
#include "frontend/iscsi/conn.h"
#include "frontend/iscsi/server.h"
#include "frontend/iscsi/session.h"

enum chap_state { CHAP_NONE, CHAP_WAIT_A, CHAP_WAIT_R, CHAP_DONE };

struct login {
    struct iscsi_conn *c;
    bool first;   /* no request seen yet */
    uint32_t itt; /* of the current request */
    bool have_initiator, have_type, have_target;
    bool auth_offered; /* AuthMethod seen */
    bool auth_none;    /* None was agreed (no secrets configured) */
    bool tpgt_sent;
    enum chap_state chap;
    uint8_t chap_id;
    uint8_t chap_chal[ISCSI_CHAP_CHAL_LEN];
    /* CHAP keys of the current request, checked once all are read. */
    char chap_n[ISCSI_CHAP_NAME_MAX + 1];
    char *chap_r, *chap_i, *chap_c;
    bool chap_a_seen;
    char chap_a[64];
    uint16_t status; /* refusal decided while reading keys, or OK */
    struct iscsi_kv_out out;
    uint8_t stage;    /* CSG of the request */
    int agreed_stage; /* the stage our last answer left the login in (-1: none yet) */
    uint32_t offered; /* once_keys already offered in this login (bit per index) */
};

/* The operational keys: each is negotiated once per login. RFC 7143 6.1
 * has a target answer a renegotiation with a Login reject (initiator
 * error) rather than let the last offer win. */
static const char *const once_keys[] = {
    "HeaderDigest",
    "DataDigest",
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "DataPDUInOrder",
    "DataSequenceInOrder",
    "MaxRecvDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "DefaultTime2Wait",
    "DefaultTime2Retain",
    "MaxOutstandingR2T",
    "ErrorRecoveryLevel",
    "IFMarker",
    "OFMarker",
    "IFMarkInt",
    "OFMarkInt",
};

static char *dup_val(const char *v)
{
    return v ? strdup(v) : NULL;
}

static void chap_keys_free(struct login *l)
{
    free(l->chap_r);
    free(l->chap_i);
    free(l->chap_c);
    l->chap_r = l->chap_i = l->chap_c = NULL;
    l->chap_n[0] = '\0';
    l->chap_a_seen = false;
}

static void fail(struct login *l, uint16_t status)
{
    if (l->status == ISCSI_LOGIN_OK)
        l->status = status;
}

/* A name value (InitiatorName, TargetName): 1..223 bytes, no control
 * characters. */
static bool name_ok(const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (n == 0 || n > ISCSI_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x21 || v[i] == 0x7f)
            return false;
    return true;
}

static bool list_has(const char *list, const char *item)
{
    char buf[256];
    if (!list || strlen(list) >= sizeof buf)
        return false;
    strcpy(buf, list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (!strcmp(t, item))
            return true;
    return false;
}

static int on_key(void *opaque, const char *key, const char *val)
{
    struct login *l = opaque;
    struct iscsi_conn *c = l->c;
    if (!val) {
        log_info(iscsi, "%s: login key '%.64s' without a value", c->peer, key);
        fail(l, ISCSI_LOGIN_INVALID_REQUEST);
        return 0;
    }
    if (!strcmp(key, "InitiatorName")) {
        if (!name_ok(val)) {
            fail(l, ISCSI_LOGIN_INVALID_REQUEST);
            return 0;
        }
        /* Sent again in a later stage (libiscsi does): the same name. */
        if (l->have_initiator && strcasecmp(val, c->initiator)) {
            fail(l, ISCSI_LOGIN_INVALID_REQUEST);
            return 0;
        }
        snprintf(c->initiator, sizeof c->initiator, "%s", val);
        l->have_initiator = true;
        return 0;
    }
    if (!strcmp(key, "InitiatorAlias"))
        return 0;
    if (!strcmp(key, "SessionType")) {
        if (!strcmp(val, "Discovery"))
            c->discovery = true;
        else if (!strcmp(val, "Normal"))
            c->discovery = false;
        else {
            iscsi_kv_add(&l->out, key, "Reject");
            fail(l, ISCSI_LOGIN_SESSION_TYPE);
            return 0;
        }
        l->have_type = true;
        return 0;
    }
    if (!strcmp(key, "TargetName")) {
        if (!name_ok(val)) {
            fail(l, ISCSI_LOGIN_NOT_FOUND);
            return 0;
        }
        if (l->have_target && strcasecmp(val, c->target)) {
            fail(l, ISCSI_LOGIN_INVALID_REQUEST);
            return 0;
        }
        snprintf(c->target, sizeof c->target, "%s", val);
        l->have_target = true;
        return 0;
    }
    if (!strcmp(key, "TargetAlias") || !strcmp(key, "TargetPortalGroupTag") ||
        !strcmp(key, "TargetAddress")) {
        iscsi_kv_add(&l->out, key, "Irrelevant"); /* only targets declare these */
        return 0;
    }
    if (!strcmp(key, "AuthMethod")) {
        if (l->stage != ISCSI_STAGE_SECURITY) {
            fail(l, ISCSI_LOGIN_INVALID_REQUEST);
            return 0;
        }
        l->auth_offered = true;
        if (c->srv->chap) {
            if (!list_has(val, "CHAP")) {
                log_info(iscsi, "%s: CHAP is required and the initiator offers '%.64s'", c->peer,
                         val);
                iscsi_kv_add(&l->out, key, "Reject");
                fail(l, ISCSI_LOGIN_AUTH_FAILED);
                return 0;
            }
            iscsi_kv_add(&l->out, key, "CHAP");
            l->chap = CHAP_WAIT_A;
        } else {
            if (!list_has(val, "None")) {
                iscsi_kv_add(&l->out, key, "Reject");
                fail(l, ISCSI_LOGIN_AUTH_FAILED);
                return 0;
            }
            iscsi_kv_add(&l->out, key, "None");
            l->auth_none = true;
        }
        return 0;
    }
    if (!strncmp(key, "CHAP_", 5)) {
        if (l->stage != ISCSI_STAGE_SECURITY || !c->srv->chap) {
            fail(l, ISCSI_LOGIN_INVALID_REQUEST);
            return 0;
        }
        if (!strcmp(key, "CHAP_A")) {
            l->chap_a_seen = true;
            snprintf(l->chap_a, sizeof l->chap_a, "%s", val);
        } else if (!strcmp(key, "CHAP_N")) {
            snprintf(l->chap_n, sizeof l->chap_n, "%s", val);
        } else if (!strcmp(key, "CHAP_R")) {
            free(l->chap_r);
            l->chap_r = dup_val(val);
        } else if (!strcmp(key, "CHAP_I")) {
            free(l->chap_i);
            l->chap_i = dup_val(val);
        } else if (!strcmp(key, "CHAP_C")) {
            free(l->chap_c);
            l->chap_c = dup_val(val);
        } else {
            fail(l, ISCSI_LOGIN_INVALID_REQUEST);
        }
        return 0;
    }
    if (!strcmp(key, "SendTargets")) {
        fail(l, ISCSI_LOGIN_INVALID_REQUEST); /* a Text request's key */
        return 0;
    }
    for (unsigned i = 0; i < ARRAY_SIZE(once_keys); i++) {
        if (strcmp(key, once_keys[i]))
            continue;
        if (l->offered & (1u << i)) {
            log_info(iscsi, "%s: login key %s offered twice", c->peer, key);
            fail(l, ISCSI_LOGIN_INITIATOR_ERROR);
            return 0;
        }
        l->offered |= 1u << i;
    }
    int r = iscsi_params_negotiate(&c->p, key, val, &l->out);
    if (r == 0)
        iscsi_kv_add(&l->out, key, "NotUnderstood");
    return 0;
}

/* Answer CHAP_A with our challenge. */
static void chap_challenge(struct login *l)
{
    char list[64];
    snprintf(list, sizeof list, "%s", l->chap_a);
    bool md5 = false;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        md5 |= atoi(t) == ISCSI_CHAP_MD5_ALG;
    if (!md5) {
        iscsi_kv_add(&l->out, "CHAP_A", "Reject");
        fail(l, ISCSI_LOGIN_AUTH_FAILED);
        return;
    }
    uint8_t rnd[1 + ISCSI_CHAP_CHAL_LEN];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        fail(l, ISCSI_LOGIN_TARGET_ERROR);
        return;
    }
    l->chap_id = rnd[0];
    memcpy(l->chap_chal, rnd + 1, sizeof l->chap_chal);
    char id[8], chal[2 * ISCSI_CHAP_CHAL_LEN + 3];
    snprintf(id, sizeof id, "%u", l->chap_id);
    iscsi_chap_encode(l->chap_chal, sizeof l->chap_chal, chal);
    iscsi_kv_add(&l->out, "CHAP_A", "5");
    iscsi_kv_add(&l->out, "CHAP_I", id);
    iscsi_kv_add(&l->out, "CHAP_C", chal);
    l->chap = CHAP_WAIT_R;
}

/* Check CHAP_N/CHAP_R, and answer a mutual challenge. */
static void chap_verify(struct login *l)
{
    struct iscsi_conn *c = l->c;
    const char *secret = iscsi_chap_user_secret(c->srv->chap, l->chap_n);
    uint8_t want[ISCSI_CHAP_DIGEST_LEN], got[ISCSI_CHAP_DIGEST_LEN];
    size_t got_len = 0;
    if (!secret || iscsi_chap_md5(l->chap_id, secret, l->chap_chal, sizeof l->chap_chal, want) ||
        iscsi_chap_decode(l->chap_r, got, sizeof got, &got_len) || got_len != sizeof got ||
        memcmp(want, got, sizeof want)) {
        log_warn(iscsi, "%s: CHAP authentication of '%s' failed", c->peer,
                 l->chap_n[0] ? l->chap_n : "(no name)");
        fail(l, ISCSI_LOGIN_AUTH_FAILED);
        return;
    }
    if (l->chap_i || l->chap_c) {
        const char *tname, *tsecret;
        uint8_t chal[ISCSI_CHAP_CHAL_MAX];
        size_t chal_len = 0;
        char *end = NULL;
        unsigned long id = l->chap_i ? strtoul(l->chap_i, &end, 0) : 256;
        if (!l->chap_i || !l->chap_c || !end || *end || id > 255 ||
            !iscsi_chap_target(c->srv->chap, &tname, &tsecret) ||
            iscsi_chap_decode(l->chap_c, chal, sizeof chal, &chal_len) ||
            (chal_len == sizeof l->chap_chal && !memcmp(chal, l->chap_chal, chal_len))) {
            /* No target secret, a malformed challenge, or ours reflected. */
            log_warn(iscsi, "%s: mutual CHAP refused for '%s'", c->peer, l->chap_n);
            fail(l, ISCSI_LOGIN_AUTH_FAILED);
            return;
        }
        uint8_t resp[ISCSI_CHAP_DIGEST_LEN];
        char hex[2 * ISCSI_CHAP_DIGEST_LEN + 3];
        if (iscsi_chap_md5((uint8_t)id, tsecret, chal, chal_len, resp)) {
            fail(l, ISCSI_LOGIN_TARGET_ERROR);
            return;
        }
        iscsi_chap_encode(resp, sizeof resp, hex);
        iscsi_kv_add(&l->out, "CHAP_N", tname);
        iscsi_kv_add(&l->out, "CHAP_R", hex);
    }
    log_debug(iscsi, "%s: CHAP user '%s' authenticated", c->peer, l->chap_n);
    l->chap = CHAP_DONE;
}

/* The security stage's CHAP step once all keys of a request are read. */
static void chap_step(struct login *l)
{
    if (l->status != ISCSI_LOGIN_OK)
        return;
    if (l->chap == CHAP_WAIT_A && l->chap_a_seen)
        chap_challenge(l);
    else if (l->chap == CHAP_WAIT_R && l->chap_r)
        chap_verify(l);
    else if (l->chap_a_seen || l->chap_r || l->chap_n[0])
        fail(l, ISCSI_LOGIN_AUTH_FAILED); /* out of turn */
}

static void send_response(struct login *l, const uint8_t *req, bool transit, uint8_t nsg)
{
    struct iscsi_conn *c = l->c;
    uint8_t bhs[ISCSI_BHS_SIZE] = {0};
    bhs[0] = ISCSI_OP_LOGIN_RSP;
    uint8_t csg = ISCSI_LOGIN_CSG(req[1]);
    if (l->status == ISCSI_LOGIN_OK) {
        bhs[1] = (uint8_t)(csg << 2);
        if (transit)
            bhs[1] |= ISCSI_LOGIN_T | nsg;
    }
    bhs[ISCSI_LOGIN_VMAX] = 0;
    bhs[ISCSI_LOGIN_VMAX + 1] = 0; /* version active */
    memcpy(bhs + ISCSI_LOGIN_ISID, req + ISCSI_LOGIN_ISID, 6);
    put_be16(bhs + ISCSI_LOGIN_TSIH, l->status == ISCSI_LOGIN_OK ? c->tsih : 0);
    put_be32(bhs + ISCSI_BHS_ITT, get_be32(req + ISCSI_BHS_ITT));
    bhs[ISCSI_LOGIN_STATUS] = (uint8_t)(l->status >> 8);
    bhs[ISCSI_LOGIN_STATUS + 1] = (uint8_t)l->status;
    struct iovec iov = {l->out.buf, l->out.len};
    uint32_t dlen = l->status == ISCSI_LOGIN_OK ? (uint32_t)l->out.len : 0;
    iscsi_conn_send(c, bhs, &iov, 1, dlen, STATSN_ADVANCE);
}

static const char *status_text(uint16_t st)
{
    switch (st) {
    case ISCSI_LOGIN_INITIATOR_ERROR:
        return "initiator error";
    case ISCSI_LOGIN_AUTH_FAILED:
        return "authentication failure";
    case ISCSI_LOGIN_FORBIDDEN:
        return "authorization failure";
    case ISCSI_LOGIN_NOT_FOUND:
        return "target not found";
    case ISCSI_LOGIN_TARGET_REMOVED:
        return "target removed";
    case ISCSI_LOGIN_BAD_VERSION:
        return "unsupported version";
    case ISCSI_LOGIN_TOO_MANY_CONNS:
        return "too many connections (no MC/S)";
    case ISCSI_LOGIN_MISSING_PARAM:
        return "missing parameter";
    case ISCSI_LOGIN_SESSION_TYPE:
        return "session type not supported";
    case ISCSI_LOGIN_NO_SUCH_SESSION:
        return "session does not exist";
    case ISCSI_LOGIN_INVALID_REQUEST:
        return "invalid login request";
    case ISCSI_LOGIN_SERVICE_UNAVAIL:
        return "service unavailable";
    case ISCSI_LOGIN_OUT_OF_RESOURCES:
        return "out of resources";
    default:
        return "target error";
    }
}

/* The leading login PDU's fields, and the checks on later ones. */
static void check_header(struct login *l, const uint8_t *bhs)
{
    struct iscsi_conn *c = l->c;
    uint8_t csg = ISCSI_LOGIN_CSG(bhs[1]), nsg = ISCSI_LOGIN_NSG(bhs[1]);
    if (bhs[ISCSI_LOGIN_VMAX + 1] > 0) { /* version-min */
        fail(l, ISCSI_LOGIN_BAD_VERSION);
        return;
    }
    if (l->first) {
        memcpy(c->isid, bhs + ISCSI_LOGIN_ISID, 6);
        c->tsih = get_be16(bhs + ISCSI_LOGIN_TSIH);
        c->cid = get_be16(bhs + ISCSI_LOGIN_CID);
        pthread_mutex_lock(&c->lock);
        c->exp_cmdsn = get_be32(bhs + ISCSI_BHS_CMDSN);
        pthread_mutex_unlock(&c->lock);
        l->first = false;
    } else if (memcmp(c->isid, bhs + ISCSI_LOGIN_ISID, 6) ||
               c->cid != get_be16(bhs + ISCSI_LOGIN_CID)) {
        fail(l, ISCSI_LOGIN_INVALID_REQUEST);
        return;
    }
    if (csg == 2 || csg == ISCSI_STAGE_FFP ||
        ((bhs[1] & ISCSI_LOGIN_T) && (nsg == 2 || nsg <= csg)) ||
        ((bhs[1] & ISCSI_LOGIN_T) && (bhs[1] & ISCSI_LOGIN_C)))
        fail(l, ISCSI_LOGIN_INVALID_REQUEST);
    /* Stages change only where our answer said (T and NSG): never back to
     * one already left, never ahead without a transit we agreed to. */
    if (l->agreed_stage >= 0 && csg != l->agreed_stage) {
        log_info(iscsi, "%s: login request in stage %u, the login is in stage %d", c->peer, csg,
                 l->agreed_stage);
        fail(l, ISCSI_LOGIN_INVALID_REQUEST);
    }
}

/* Entering full feature phase: the session's target and registry entry. */
static void finish(struct login *l)
{
    struct iscsi_conn *c = l->c;
    if (!l->have_initiator || (!c->discovery && !l->have_target)) {
        log_info(iscsi, "%s: login without %s", c->peer,
                 !l->have_initiator ? "InitiatorName" : "TargetName");
        fail(l, ISCSI_LOGIN_MISSING_PARAM);
        return;
    }
    if (c->tsih != 0) {
        fail(l, iscsi_session_join_status(c->srv, c->tsih));
        return;
    }
    int st = iscsi_session_add(c->srv, c);
    if (st)
        fail(l, (uint16_t)st);
}

/* A Normal session's target, as soon as its name is known: an unknown
 * target is refused at once. */
static void find_target(struct login *l)
{
    struct iscsi_conn *c = l->c;
    if (c->discovery || !l->have_target || c->v)
        return;
    c->v = iscsi_target_volume(c->srv, c->target);
    if (!c->v) {
        log_info(iscsi, "%s: login to unknown target '%s'", c->peer, c->target);
        fail(l, ISCSI_LOGIN_NOT_FOUND);
    }
}

/* Read one login request (with its C-bit continuations) into text. */
static int read_request(struct iscsi_conn *c, struct iscsi_pdu *pdu, char *text, size_t *len)
{
    int err = 0;
    enum iscsi_hdr_error h = iscsi_pdu_recv_hdr(&c->rx, false, ISCSI_MRDSL_DEFAULT, pdu, &err);
    switch (h) {
    case ISCSI_HDR_OK:
        break;
    case ISCSI_HDR_EOF:
        return -ECONNRESET;
    case ISCSI_HDR_IO:
        return err;
    default:
        log_info(iscsi, "%s: malformed login PDU (opcode 0x%02x, %u data bytes): closing", c->peer,
                 iscsi_pdu_opcode(pdu), pdu->dlen);
        return -EPROTO;
    }
    if (iscsi_pdu_opcode(pdu) != ISCSI_OP_LOGIN_REQ) {
        log_info(iscsi, "%s: opcode 0x%02x before login completed: closing", c->peer,
                 iscsi_pdu_opcode(pdu));
        return -EPROTO;
    }
    if (*len + pdu->dlen > ISCSI_TEXT_MAX) {
        log_info(iscsi, "%s: login text over %u bytes: closing", c->peer, ISCSI_TEXT_MAX);
        return -EPROTO;
    }
    int r = iscsi_pdu_recv_data(&c->rx, false, pdu, text + *len);
    if (r < 0)
        return r;
    *len += pdu->dlen;
    return 0;
}

int iscsi_login(struct iscsi_conn *c)
{
    struct login l = {.c = c, .first = true, .agreed_stage = -1};
    char *text = malloc(ISCSI_TEXT_MAX);
    char *out = malloc(ISCSI_TEXT_MAX);
    struct iscsi_pdu *pdu = malloc(sizeof *pdu);
    int ret = -ENOMEM;
    if (!text || !out || !pdu)
        goto done;
    iscsi_params_init(&c->p);
    size_t len = 0;
    for (;;) {
        ret = read_request(c, pdu, text, &len);
        if (ret < 0)
            goto done;
        const uint8_t *bhs = pdu->bhs;
        l.out = (struct iscsi_kv_out){.buf = out, .cap = ISCSI_TEXT_MAX};
        l.status = ISCSI_LOGIN_OK;
        check_header(&l, bhs);
        if (l.status == ISCSI_LOGIN_OK && (bhs[1] & ISCSI_LOGIN_C)) {
            /* More text follows: an empty answer asks for it. */
            send_response(&l, bhs, false, 0);
            l.agreed_stage = ISCSI_LOGIN_CSG(bhs[1]);
            continue;
        }
        l.stage = ISCSI_LOGIN_CSG(bhs[1]);
        bool transit = bhs[1] & ISCSI_LOGIN_T;
        uint8_t nsg = ISCSI_LOGIN_NSG(bhs[1]);
        if (l.status == ISCSI_LOGIN_OK)
            iscsi_kv_each(text, len, on_key, &l);
        iscsi_params_settle(&c->p, &l.out);
        len = 0;
        if (l.status == ISCSI_LOGIN_OK && !l.have_initiator && !c->initiator[0])
            fail(&l, ISCSI_LOGIN_MISSING_PARAM); /* RFC 7143: in the first request */
        find_target(&l);
        if (l.stage == ISCSI_STAGE_SECURITY)
            chap_step(&l);
        chap_keys_free(&l);
        bool authed = !c->srv->chap || l.chap == CHAP_DONE;
        if (l.status == ISCSI_LOGIN_OK && transit && !authed) {
            if (l.stage != ISCSI_STAGE_SECURITY || !l.auth_offered)
                fail(&l, ISCSI_LOGIN_AUTH_FAILED); /* skipping authentication */
            else
                transit = false; /* the CHAP exchange goes on */
        }
        if (l.status == ISCSI_LOGIN_OK && !c->discovery && c->v && !l.tpgt_sent) {
            /* A normal session learns its portal group in the first answer. */
            iscsi_kv_add(&l.out, "TargetPortalGroupTag", "1");
            l.tpgt_sent = true;
        }
        if (l.status == ISCSI_LOGIN_OK && l.stage == ISCSI_STAGE_OP && !c->p.declared_mrdsl) {
            char v[16];
            snprintf(v, sizeof v, "%u", ISCSI_TARGET_MRDSL);
            iscsi_kv_add(&l.out, "MaxRecvDataSegmentLength", v);
            c->p.declared_mrdsl = true;
        }
        if (l.status == ISCSI_LOGIN_OK && l.out.overflow)
            fail(&l, ISCSI_LOGIN_OUT_OF_RESOURCES);
        if (l.status == ISCSI_LOGIN_OK && transit && nsg == ISCSI_STAGE_FFP)
            finish(&l);
        send_response(&l, bhs, transit, nsg);
        l.agreed_stage = transit ? nsg : l.stage;
        if (l.status != ISCSI_LOGIN_OK) {
            log_info(iscsi, "%s: login of '%s' refused: %s (0x%04x)", c->peer,
                     c->initiator[0] ? c->initiator : "?", status_text(l.status), l.status);
            ret = -EACCES;
            goto done;
        }
        if (iscsi_conn_broken(c)) {
            ret = -EPIPE;
            goto done;
        }
        if (transit && nsg == ISCSI_STAGE_FFP)
            break;
    }
    if (c->p.declared_mrdsl)
        c->p.target_mrdsl = ISCSI_TARGET_MRDSL;
    iscsi_params_settle(&c->p, NULL);
    log_debug(iscsi, "%s: %s session of '%s'%s%s (TSIH %u, digests %s/%s, burst %u/%u)", c->peer,
              c->discovery ? "discovery" : "normal", c->initiator, c->discovery ? "" : " to ",
              c->discovery ? "" : c->target, c->tsih, c->p.header_digest ? "CRC32C" : "None",
              c->p.data_digest ? "CRC32C" : "None", c->p.first_burst, c->p.max_burst);
    ret = 0;
done:
    chap_keys_free(&l);
    explicit_bzero(&l.chap_chal, sizeof l.chap_chal);
    free(pdu);
    free(out);
    free(text);
    return ret;
}
