/* The operational parameters of an iSCSI connection and session, and
 * their negotiation as key=value text (RFC 7143 sections 6 and 13): the
 * initiator offers, this target answers each key with what both sides
 * will use. Values start at the RFC's defaults, so a key never mentioned
 * keeps its default. */
#ifndef SHOAL_FRONTEND_ISCSI_PARAMS_H
#define SHOAL_FRONTEND_ISCSI_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What this target supports or prefers in each negotiation. */
#define ISCSI_TARGET_MRDSL       262144u /* our MaxRecvDataSegmentLength */
#define ISCSI_TARGET_MAX_BURST   16776192u
#define ISCSI_TARGET_FIRST_BURST 262144u
#define ISCSI_TARGET_MAX_R2T     4u

struct iscsi_params {
    bool header_digest, data_digest;
    uint32_t max_connections;
    bool initial_r2t, immediate_data;
    uint32_t max_burst, first_burst;
    uint32_t time2wait, time2retain;
    uint32_t max_outstanding_r2t;
    bool data_pdu_in_order, data_seq_in_order;
    uint32_t erl;
    /* Declarative: the largest data segment the initiator takes (what we
     * send), and the one we take (what we declared; the default until we
     * do). */
    uint32_t initiator_mrdsl, target_mrdsl;
    bool declared_mrdsl; /* we told the initiator ours */
    /* MaxBurstLength / FirstBurstLength offered in this request, answered
     * by iscsi_params_settle once every key of it is read. */
    bool answer_max_burst, answer_first_burst;
};

void iscsi_params_init(struct iscsi_params *p);

/* A growing key=value\0 answer, truncated safely at cap. */
struct iscsi_kv_out {
    char *buf;
    size_t len, cap;
    bool overflow;
};
void iscsi_kv_add(struct iscsi_kv_out *o, const char *key, const char *val);

/* Split a data segment into key=value pairs: calls fn for each (value
 * NULL when the '=' is missing). Returns 0, or the callback's non-zero
 * result. A segment not ending in NUL is accepted (the last pair ends at
 * the segment's end). */
int iscsi_kv_each(const char *data, size_t len,
                  int (*fn)(void *opaque, const char *key, const char *val), void *opaque);

/* Negotiate one operational key: 1 if it is one (answer written to out,
 * or none for declarative keys), 0 if it is not an operational key, -1
 * for a bad value (answered "Reject"). */
int iscsi_params_negotiate(struct iscsi_params *p, const char *key, const char *val,
                           struct iscsi_kv_out *out);

/* After each request's keys: values that depend on each other
 * (FirstBurstLength <= MaxBurstLength, whichever order the keys came in),
 * and the answers to the burst keys, which say the settled values so both
 * sides use the same ones (out may be NULL: nothing to answer). */
void iscsi_params_settle(struct iscsi_params *p, struct iscsi_kv_out *out);

#endif
