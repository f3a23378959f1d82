/* libFuzzer target for the SCSI layer's parameter-list parsers: the
 * EXTENDED COPY (LID1) list (xcopy_parse) and PERSISTENT RESERVE OUT
 * with the reservation state it changes (pr_out.c), read back with
 * PERSISTENT RESERVE IN (pr_in.c) and checked by the conflict test.
 *
 * Input: byte 0 picks the mode (even: EXTENDED COPY, odd: reservations).
 *   EXTENDED COPY: the rest is one parameter list.
 *   Reservations: the rest is a series of records
 *     [nexus 1][CDB byte 1, byte 2 2][PARAMETER LIST LENGTH 1][list 24]
 *   run as PERSISTENT RESERVE OUT from one of four nexuses (two initiators,
 *   two target ports) on one LU, each followed by a PERSISTENT RESERVE IN
 *   (the service action from the nexus byte's high bits).
 *
 * Checks (anything else aborts): a parse either fails with ILLEGAL REQUEST
 * and a field pointer inside the list, or returns descriptors within the
 * limits and inside the list; every command finishes at once with GOOD,
 * CHECK CONDITION or RESERVATION CONFLICT and data-in within its buffer;
 * READ KEYS lists exactly the registrations, at most PR_MAX_REGS; the
 * generation never goes back; a reservation that is not all-registrants
 * has a registered holder, and the holder is never blocked. The LU has no
 * volume: none of these commands touch one. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/scsi/pr.h"
#include "frontend/scsi/xcopy_int.h"
#include "fuzz_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* lu.c's, not in this build's LU: unit attentions are dropped, copies
 * find no engine. */
__attribute__((weak)) void scsi_ua_post_locked(struct scsi_lu *lu, uint64_t nexus_id, uint16_t asc)
{
    (void)lu;
    if (!nexus_id || !(asc >> 8 == 0x2a))
        abort();
}

__attribute__((weak)) struct engine *scsi_lu_engine(const struct scsi_lu *lu)
{
    (void)lu;
    return NULL;
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void fuzz_xcopy(const uint8_t *p, size_t len)
{
    if (len > 8192)
        return;
    static struct xcopy_list l;
    struct xcopy_error e;
    if (xcopy_parse(p, (uint32_t)len, &l, &e) < 0) {
        CHECK(e.key == SK_ILLEGAL_REQUEST);
        CHECK(e.in_cdb ? e.field == 10 && len < 16 : e.field < (int)len);
        CHECK(e.asc == ASC_PARAM_LIST_LENGTH_ERROR || e.asc == ASC_INVALID_FIELD_IN_PARAM_LIST ||
              (e.asc >> 8) == 0x26);
        return;
    }
    CHECK(len >= 16);
    CHECK(l.ntargets <= XCOPY_MAX_TARGETS && l.nsegments <= XCOPY_MAX_SEGMENTS);
    for (unsigned i = 0; i < l.ntargets; i++)
        CHECK(l.t[i].at + 32u <= len);
    for (unsigned i = 0; i < l.nsegments; i++)
        CHECK(l.s[i].at + 28u <= len && l.s[i].blocks <= 0xffff);
}

static struct scsi_lu lu;
static struct scsi_cmd c;

static const struct scsi_nexus nexus[4] = {
    {1, "iqn.2026-12.org.fuzz:a,i,0x230000000001", "iqn.2026-12.org.shoal:f,t,0x1", 1},
    {2, "iqn.2026-12.org.fuzz:b,i,0x230000000002", "iqn.2026-12.org.shoal:f,t,0x1", 1},
    {3, "iqn.2026-12.org.fuzz:a,i,0x230000000001", "iqn.2026-12.org.shoal:f,t,0x2", 2},
    {4, "eui.0123456789abcdef", "iqn.2026-12.org.shoal:f,t,0x2", 2},
};

static void start(const struct scsi_nexus *n, const uint8_t *cdb, const void *out, uint32_t len)
{
    memset(&c, 0, offsetof(struct scsi_cmd, priv));
    c.lu = &lu;
    c.nexus = n;
    memcpy(c.cdb, cdb, 10);
    c.cdb_len = 10;
    c.data_out = out;
    c.data_out_len = len;
    c.data_in_max = SCSI_SMALL_DATA_MAX;
}

static void check_result(void)
{
    CHECK(c.status == SCSI_STATUS_GOOD || c.status == SCSI_STATUS_CHECK_CONDITION ||
          c.status == SCSI_STATUS_RESERVATION_CONFLICT);
    CHECK(c.data_in_len <= SCSI_SMALL_DATA_MAX);
}

/* The state as a client sees it, against the state itself. */
static void check_state(uint32_t *last_gen)
{
    const uint8_t cdb[10] = {0x5e, 0x00, 0, 0, 0, 0, 0, 0x10, 0x00, 0};
    start(&nexus[0], cdb, NULL, 0);
    CHECK(scsi_exec_pr_in(&c) == SCSI_DONE);
    CHECK(c.status == SCSI_STATUS_GOOD);
    uint32_t gen = scsi_get32(c.priv.small), len = scsi_get32(c.priv.small + 4);
    CHECK(gen >= *last_gen);
    *last_gen = gen;
    struct scsi_pr *pr = lu.pr;
    unsigned regs = 0;
    for (int i = 0; i < PR_MAX_REGS; i++)
        regs += pr->regs[i].used;
    CHECK(len == 8 * regs && regs <= PR_MAX_REGS);
    if (pr->reserved) {
        CHECK(pr_type_valid(pr->type));
        if (!pr_all_registrants(pr->type)) {
            CHECK(pr->holder >= 0 && pr->regs[pr->holder].used);
        } else {
            CHECK(regs > 0);
        }
    }
    static const struct scsi_op write_op = {
        .opcode = 0x8a, .service_action = -1, .flags = SCSI_OP_WRITES, .name = "WRITE (16)"};
    for (unsigned i = 0; i < 4; i++) {
        c.lu = &lu;
        c.nexus = &nexus[i];
        bool holder;
        pthread_mutex_lock(&lu.lock);
        holder = pr_is_holder_locked(pr, &nexus[i]);
        pthread_mutex_unlock(&lu.lock);
        if (holder)
            CHECK(!scsi_pr_blocks(&c, &write_op));
    }
}

static void fuzz_pr(const uint8_t *p, size_t len)
{
    uint32_t gen = 0;
    while (len >= 5) {
        uint8_t sel = p[0];
        const struct scsi_nexus *n = &nexus[sel & 3];
        uint8_t cdb[10] = {0x5f, p[1], p[2]};
        uint32_t plen = p[3];
        scsi_put32(cdb + 5, plen);
        p += 4;
        len -= 4;
        uint32_t have = len < 24 ? (uint32_t)len : 24;
        /* the transport's copy: exactly what was sent */
        uint8_t *out = malloc(have ? have : 1);
        memcpy(out, p, have);
        start(n, cdb, out, have);
        CHECK(scsi_exec_pr_out(&c) == SCSI_DONE);
        check_result();
        free(out);
        p += have;
        len -= have;
        /* read it back in one of the four ways */
        const uint8_t in[10] = {0x5e, (uint8_t)((sel >> 2) & 0x1f), 0, 0, 0, 0, 0, 0x10, 0x00, 0};
        start(n, in, NULL, 0);
        CHECK(scsi_exec_pr_in(&c) == SCSI_DONE);
        check_result();
        if (lu.pr)
            check_state(&gen);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        fuzz_log_setup();
        pthread_mutex_init(&lu.lock, NULL);
        init = true;
    }
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        fuzz_xcopy(data + 1, size - 1);
    else
        fuzz_pr(data + 1, size - 1);
    scsi_pr_free(&lu);
    scsi_copy_free(&lu);
    return 0;
}
