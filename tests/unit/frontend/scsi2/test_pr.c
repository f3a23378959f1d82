/* Reservations (pr.c, pr_in.c, pr_out.c) through the command path, with two
 * initiators on one LU: every PERSISTENT RESERVE OUT service action and
 * type, the keys and the generation counter READ KEYS reports, READ
 * RESERVATION, REPORT CAPABILITIES, READ FULL STATUS, the conflict table
 * (what a registered and an unregistered nexus may read and write under
 * each type, as libiscsi's PersistentReserve tests expect), the unit
 * attentions preempted and released registrants get, the parameter-list
 * checks with their field pointers, SPC-2 RESERVE/RELEASE and the hooks
 * (nexus gone, reset). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "frontend/scsi/pr.h"
#include "harness.h"

static struct h_vol hv;

#define TGT "iqn.2026-12.org.shoal:pr,t,0x1"
static const struct scsi_nexus N1 = {1, "iqn.2026-12.org.test:one,i,0x230000000001", TGT, 1};
static const struct scsi_nexus N2 = {2, "iqn.2026-12.org.test:two,i,0x230000000002", TGT, 1};
/* N1's initiator port through another target port */
static const struct scsi_nexus N1B = {3, "iqn.2026-12.org.test:one,i,0x230000000001",
                                      "iqn.2026-12.org.shoal:pr,t,0x2", 2};

#define K1 0x1111222233334444ull
#define K2 0x5555666677778888ull

/* SBC-like ops for the conflict table: a read, a write, TEST UNIT READY. */
static const struct scsi_op op_read = {.opcode = 0x88, .service_action = -1, .name = "READ (16)"};
static const struct scsi_op op_write = {
    .opcode = 0x8a, .service_action = -1, .flags = SCSI_OP_WRITES, .name = "WRITE (16)"};
static const struct scsi_op op_tur = {
    .opcode = 0x00, .service_action = -1, .flags = SCSI_OP_PR_ALLOW, .name = "TEST UNIT READY"};
static const struct scsi_op op_mode_sense = {
    .opcode = 0x1a, .service_action = -1, .name = "MODE SENSE (6)"};
static const struct scsi_op op_inquiry = {.opcode = 0x12, .service_action = -1, .name = "INQUIRY"};

static bool blocked(const struct scsi_nexus *n, const struct scsi_op *op)
{
    static struct scsi_cmd c;
    c.lu = &hv.lu;
    c.nexus = n;
    return scsi_pr_blocks(&c, op);
}

static uint8_t prout_p(const struct scsi_nexus *n, uint8_t sa, uint8_t type, const uint8_t *p,
                       uint32_t plen, uint32_t sent, struct h_res *r)
{
    uint8_t cdb[10] = {0x5f, sa, type};
    scsi_put32(cdb + 5, plen);
    h_run(&hv.lu, n, cdb, 10, p, sent, 0, r);
    return r->status;
}

static uint8_t prout_r(const struct scsi_nexus *n, uint8_t sa, uint8_t type, uint64_t rk,
                       uint64_t sark, uint8_t flags, struct h_res *r)
{
    uint8_t p[24] = {0};
    scsi_put64(p, rk);
    scsi_put64(p + 8, sark);
    p[20] = flags;
    return prout_p(n, sa, type, p, 24, 24, r);
}

static uint8_t prout(const struct scsi_nexus *n, uint8_t sa, uint8_t type, uint64_t rk,
                     uint64_t sark)
{
    struct h_res r;
    return prout_r(n, sa, type, rk, sark, 0, &r);
}

#define REGISTER(n, rk, sark)  prout(n, 0, 0, rk, sark)
#define IGNORE_KEY(n, sark)    prout(n, 6, 0, 0, sark)
#define RESERVE(n, k, t)       prout(n, 1, t, k, 0)
#define RELEASE(n, k, t)       prout(n, 2, t, k, 0)
#define CLEAR(n, k)            prout(n, 3, 0, k, 0)
#define PREEMPT(n, k, sark, t) prout(n, 4, t, k, sark)

static void prin(const struct scsi_nexus *n, uint8_t sa, uint16_t alloc, struct h_res *r)
{
    uint8_t cdb[10] = {0x5e, sa};
    scsi_put16(cdb + 7, alloc);
    h_run(&hv.lu, n, cdb, 10, NULL, 0, alloc, r);
}

/* READ KEYS: the generation, and the keys into keys[] (count returned). */
static unsigned read_keys(uint32_t *gen, uint64_t *keys)
{
    struct h_res r;
    prin(&N1, 0, 4096, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    *gen = scsi_get32(r.data);
    uint32_t len = scsi_get32(r.data + 4);
    assert_int_equal(len % 8, 0);
    assert_int_equal(r.data_in_len, 8 + len);
    for (uint32_t i = 0; i < len / 8; i++)
        keys[i] = scsi_get64(r.data + 8 + 8 * i);
    return len / 8;
}

/* READ RESERVATION: reserved? with the key and type. */
static bool read_reservation(uint64_t *key, uint8_t *type)
{
    struct h_res r;
    prin(&N2, 1, 4096, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    uint32_t len = scsi_get32(r.data + 4);
    if (len == 0)
        return false;
    assert_int_equal(len, 16);
    assert_int_equal(r.data_in_len, 24);
    *key = scsi_get64(r.data + 8);
    *type = r.data[21] & 0x0f;
    assert_int_equal(r.data[21] >> 4, 0); /* LU scope */
    return true;
}

static void assert_field(const struct h_res *r, uint16_t asc, bool in_cdb, uint16_t byte, int bit)
{
    assert_int_equal(r->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_key(r), SK_ILLEGAL_REQUEST);
    assert_int_equal(h_asc(r), asc);
    uint8_t sks = 0x80 | (in_cdb ? 0x40 : 0) | (bit >= 0 ? 0x08 | bit : 0);
    assert_int_equal(r->sense[15], sks);
    assert_int_equal(scsi_get16(r->sense + 16), byte);
}

static int setup_group(void **state)
{
    (void)state;
    h_start(0);
    h_vol_open(&hv, "pr", 1u << 20, 1, false);
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    h_vol_close(&hv);
    h_stop();
    return 0;
}

/* Each test starts with no registrations and no unit attentions. */
static int fresh(void **state)
{
    (void)state;
    scsi_pr_free(&hv.lu);
    h_ua_reset();
    return 0;
}

/* ---- tests ---- */

static void test_register_keys_generation(void **state)
{
    (void)state;
    uint32_t gen;
    uint64_t keys[8];
    assert_int_equal(read_keys(&gen, keys), 0);
    assert_int_equal(gen, 0);

    /* unregistered: a zero service action key registers nothing */
    assert_int_equal(REGISTER(&N1, 0, 0), SCSI_STATUS_GOOD);
    /* unregistered: REGISTER with a non-zero key conflicts */
    assert_int_equal(REGISTER(&N1, K2, K1), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(read_keys(&gen, keys), 0);
    assert_int_equal(gen, 0);

    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen, keys), 1);
    assert_true(keys[0] == K1);
    assert_int_equal(gen, 1);
    /* registered: the key given must be the registered one */
    assert_int_equal(REGISTER(&N1, 0, K1 + 1), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(REGISTER(&N1, K2, K1 + 1), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(read_keys(&gen, keys), 1);
    assert_int_equal(gen, 1);

    assert_int_equal(IGNORE_KEY(&N2, K2), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen, keys), 2);
    assert_int_equal(gen, 2);
    /* a new key for N1, then REGISTER AND IGNORE EXISTING KEY changes it */
    assert_int_equal(REGISTER(&N1, K1, K1 + 7), SCSI_STATUS_GOOD);
    assert_int_equal(IGNORE_KEY(&N1, K1), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen, keys), 2);
    assert_int_equal(gen, 4);
    assert_true((keys[0] == K1 && keys[1] == K2) || (keys[0] == K2 && keys[1] == K1));

    /* unregister */
    assert_int_equal(REGISTER(&N1, K1, 0), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen, keys), 1);
    assert_true(keys[0] == K2);
    assert_int_equal(gen, 5);
    assert_int_equal(IGNORE_KEY(&N2, 0), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen, keys), 0);
    assert_int_equal(gen, 6);

    /* READ KEYS truncated to 8 bytes still says how long the list is */
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    struct h_res r;
    prin(&N1, 0, 8, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_in_len, 8);
    assert_int_equal(scsi_get32(r.data + 4), 8);
}

/* libiscsi's PersistentReserve Access tests: what N2 may do, registered and
 * not, while N1 holds each type; N1 may always read and write. */
static void test_access_by_type(void **state)
{
    static const struct {
        uint8_t type;
        bool reg_read, reg_write, unreg_read, unreg_write;
    } rows[] = {
        {PR_EA, false, false, false, false},  {PR_WE, true, false, true, false},
        {PR_EA_RO, true, true, false, false}, {PR_WE_RO, true, true, true, false},
        {PR_EA_AR, true, true, false, false}, {PR_WE_AR, true, true, true, false},
    };
    for (unsigned i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fresh(state);
        uint8_t t = rows[i].type;
        assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
        assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
        uint32_t gen;
        uint64_t keys[4];
        read_keys(&gen, keys);
        assert_int_equal(RESERVE(&N1, K1, t), SCSI_STATUS_GOOD);
        uint64_t key;
        uint8_t type;
        assert_true(read_reservation(&key, &type));
        assert_int_equal(type, t);
        assert_true(key == (pr_all_registrants(t) ? 0 : K1));
        /* RESERVE and RELEASE do not count as generations */
        uint32_t gen2;
        read_keys(&gen2, keys);
        assert_int_equal(gen2, gen);

        assert_false(blocked(&N1, &op_read));
        assert_false(blocked(&N1, &op_write));
        assert_int_equal(blocked(&N2, &op_read), !rows[i].reg_read);
        assert_int_equal(blocked(&N2, &op_write), !rows[i].reg_write);
        /* reporting commands pass every type; MODE SENSE conflicts */
        assert_false(blocked(&N2, &op_tur));
        assert_false(blocked(&N2, &op_inquiry));
        assert_int_equal(blocked(&N2, &op_mode_sense), !rows[i].reg_write);

        /* the same type again from the holder is fine, another is not;
         * N2 cannot take it (unless it already holds it, all registrants) */
        assert_int_equal(RESERVE(&N1, K1, t), SCSI_STATUS_GOOD);
        assert_int_equal(RESERVE(&N1, K1, t == PR_WE ? PR_EA : PR_WE),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        assert_int_equal(RESERVE(&N2, K2, t), pr_all_registrants(t)
                                                  ? SCSI_STATUS_GOOD
                                                  : SCSI_STATUS_RESERVATION_CONFLICT);

        assert_int_equal(REGISTER(&N2, K2, 0), SCSI_STATUS_GOOD);
        assert_int_equal(blocked(&N2, &op_read), !rows[i].unreg_read);
        assert_int_equal(blocked(&N2, &op_write), !rows[i].unreg_write);
        /* unregistered: RESERVE conflicts, whatever the key */
        assert_int_equal(RESERVE(&N2, K2, t), SCSI_STATUS_RESERVATION_CONFLICT);
        assert_int_equal(RESERVE(&N2, 0, t), SCSI_STATUS_RESERVATION_CONFLICT);

        assert_int_equal(RELEASE(&N1, K1, t), SCSI_STATUS_GOOD);
        assert_false(read_reservation(&key, &type));
        assert_false(blocked(&N2, &op_write));
        assert_int_equal(REGISTER(&N1, K1, 0), SCSI_STATUS_GOOD);
    }
}

/* libiscsi's Ownership tests: the holder unregisters. All-registrants
 * reservations stay (N2 still holds them and may release); the others go,
 * and registrants-only types tell the other registrants. */
static void test_holder_unregisters(void **state)
{
    static const uint8_t types[] = {PR_WE, PR_EA, PR_WE_RO, PR_EA_RO, PR_WE_AR, PR_EA_AR};
    for (unsigned i = 0; i < sizeof types; i++) {
        fresh(state);
        uint8_t t = types[i];
        assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
        assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
        assert_int_equal(RESERVE(&N1, K1, t), SCSI_STATUS_GOOD);
        h_ua_reset();
        assert_int_equal(REGISTER(&N1, K1, 0), SCSI_STATUS_GOOD);
        uint64_t key;
        uint8_t type;
        if (pr_all_registrants(t)) {
            assert_true(read_reservation(&key, &type));
            assert_int_equal(type, t);
            assert_int_equal(h_ua_count(2, 0), 0);
            assert_int_equal(RELEASE(&N2, K2, t), SCSI_STATUS_GOOD);
            assert_false(read_reservation(&key, &type));
            /* the release of an all-registrants type is announced */
            assert_int_equal(h_ua_count(1, ASC_RESERVATIONS_RELEASED), 0); /* N1 left */
        } else {
            assert_false(read_reservation(&key, &type));
            unsigned want = (t == PR_WE_RO || t == PR_EA_RO) ? 1 : 0;
            assert_int_equal(h_ua_count(2, ASC_RESERVATIONS_RELEASED), want);
        }
        assert_int_equal(REGISTER(&N2, K2, 0), SCSI_STATUS_GOOD);
    }
    /* the last registrant of an all-registrants reservation takes it along */
    fresh(state);
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_EA_AR), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N1, K1, 0), SCSI_STATUS_GOOD);
    uint64_t key;
    uint8_t type;
    assert_false(read_reservation(&key, &type));
    assert_false(blocked(&N2, &op_read));
}

static void test_release(void **state)
{
    (void)state;
    struct h_res r;
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    /* releasing with nothing reserved is fine */
    assert_int_equal(RELEASE(&N1, K1, PR_WE), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_WE_RO), SCSI_STATUS_GOOD);
    /* not the holder: nothing happens */
    assert_int_equal(RELEASE(&N2, K2, PR_WE_RO), SCSI_STATUS_GOOD);
    uint64_t key;
    uint8_t type;
    assert_true(read_reservation(&key, &type));
    /* wrong key: conflict; wrong type: INVALID RELEASE OF PERSISTENT RESERVATION */
    assert_int_equal(RELEASE(&N1, K2, PR_WE_RO), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(prout_r(&N1, 2, PR_WE, K1, 0, 0, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_key(&r), SK_ILLEGAL_REQUEST);
    assert_int_equal(h_asc(&r), ASC_INVALID_RELEASE_OF_PR);
    assert_true(read_reservation(&key, &type));
    h_ua_reset();
    assert_int_equal(RELEASE(&N1, K1, PR_WE_RO), SCSI_STATUS_GOOD);
    assert_false(read_reservation(&key, &type));
    assert_int_equal(h_ua_count(2, ASC_RESERVATIONS_RELEASED), 1);
    assert_int_equal(h_ua_count(1, 0), 0);
    /* a plain Write Exclusive release tells nobody */
    assert_int_equal(RESERVE(&N1, K1, PR_WE), SCSI_STATUS_GOOD);
    h_ua_reset();
    assert_int_equal(RELEASE(&N1, K1, PR_WE), SCSI_STATUS_GOOD);
    assert_int_equal(h_ua_count(2, 0), 0);
}

static void test_clear(void **state)
{
    (void)state;
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_EA), SCSI_STATUS_GOOD);
    /* an unregistered nexus or a wrong key cannot clear */
    assert_int_equal(CLEAR(&N1B, K1), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(CLEAR(&N2, K1), SCSI_STATUS_RESERVATION_CONFLICT);
    uint32_t gen;
    uint64_t keys[4];
    read_keys(&gen, keys);
    h_ua_reset();
    assert_int_equal(CLEAR(&N2, K2), SCSI_STATUS_GOOD);
    uint32_t gen2;
    assert_int_equal(read_keys(&gen2, keys), 0);
    assert_int_equal(gen2, gen + 1);
    uint64_t key;
    uint8_t type;
    assert_false(read_reservation(&key, &type));
    assert_false(blocked(&N2, &op_write));
    assert_int_equal(h_ua_count(1, ASC_RESERVATIONS_PREEMPTED), 1);
    assert_int_equal(h_ua_count(2, 0), 0);
}

static void test_preempt(void **state)
{
    uint32_t gen, gen2;
    uint64_t keys[4], key;
    uint8_t type;
    struct h_res r;

    /* no reservation: PREEMPT removes the registrations with that key
     * (libiscsi's PersistentReserve Preempt RemoveRegistration) */
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    read_keys(&gen, keys);
    h_ua_reset();
    assert_int_equal(PREEMPT(&N2, K2, K1, PR_EA), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen2, keys), 1);
    assert_true(keys[0] == K2);
    assert_int_equal(gen2, gen + 1);
    assert_false(read_reservation(&key, &type));
    assert_int_equal(h_ua_count(1, ASC_REGISTRATIONS_PREEMPTED), 1);
    /* a key nobody has: conflict; zero with no reservation: invalid */
    assert_int_equal(PREEMPT(&N2, K2, K1, PR_EA), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(prout_r(&N2, 4, PR_EA, K2, 0, 0, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_field(&r, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 8, -1);
    /* the preempted nexus lost its registration */
    assert_int_equal(RESERVE(&N1, K1, PR_WE), SCSI_STATUS_RESERVATION_CONFLICT);

    /* the holder's key: N2 takes the reservation, with its own type */
    fresh(state);
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_WE), SCSI_STATUS_GOOD);
    assert_true(blocked(&N2, &op_write));
    h_ua_reset();
    assert_int_equal(PREEMPT(&N2, K2, K1, PR_EA), SCSI_STATUS_GOOD);
    assert_true(read_reservation(&key, &type));
    assert_true(key == K2);
    assert_int_equal(type, PR_EA);
    assert_true(blocked(&N1, &op_read));
    assert_false(blocked(&N2, &op_write));
    assert_int_equal(read_keys(&gen, keys), 1);
    assert_int_equal(h_ua_count(1, ASC_REGISTRATIONS_PREEMPTED), 1);
    /* zero key with a reservation that is not all-registrants: invalid */
    assert_int_equal(prout_r(&N2, 4, PR_EA, K2, 0, 0, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_field(&r, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 8, -1);

    /* PREEMPT AND ABORT does the same (the transport aborts the tasks) */
    fresh(state);
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_EA_RO), SCSI_STATUS_GOOD);
    h_ua_reset();
    assert_int_equal(prout(&N2, 5, PR_WE_RO, K2, K1), SCSI_STATUS_GOOD);
    assert_true(read_reservation(&key, &type));
    assert_true(key == K2);
    assert_int_equal(type, PR_WE_RO);
    assert_int_equal(h_ua_count(1, ASC_REGISTRATIONS_PREEMPTED), 1);

    /* all registrants and a zero key: everyone else goes, N2 holds the new type */
    fresh(state);
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_WE_AR), SCSI_STATUS_GOOD);
    read_keys(&gen, keys);
    h_ua_reset();
    assert_int_equal(PREEMPT(&N2, K2, 0, PR_EA), SCSI_STATUS_GOOD);
    assert_int_equal(read_keys(&gen2, keys), 1);
    assert_int_equal(gen2, gen + 1);
    assert_true(read_reservation(&key, &type));
    assert_true(key == K2);
    assert_int_equal(type, PR_EA);
    assert_int_equal(h_ua_count(1, ASC_REGISTRATIONS_PREEMPTED), 1);
    assert_true(blocked(&N1, &op_read));

    /* all registrants and a key: only those registrations go */
    fresh(state);
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_EA_AR), SCSI_STATUS_GOOD);
    assert_int_equal(PREEMPT(&N2, K2, K1, PR_EA_AR), SCSI_STATUS_GOOD);
    assert_true(read_reservation(&key, &type));
    assert_int_equal(type, PR_EA_AR);
    assert_true(blocked(&N1, &op_read));
}

static void test_param_checks(void **state)
{
    (void)state;
    struct h_res r;
    uint8_t p[32] = {0};
    /* the list is 24 bytes, no more, no less */
    assert_int_equal(prout_p(&N1, 0, 0, p, 23, 23, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_field(&r, ASC_PARAM_LIST_LENGTH_ERROR, true, 5, -1);
    assert_int_equal(prout_p(&N1, 0, 0, p, 32, 32, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_asc(&r), ASC_PARAM_LIST_LENGTH_ERROR);
    /* the CDB says 24, the initiator sent less */
    assert_int_equal(prout_p(&N1, 0, 0, p, 24, 16, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_asc(&r), ASC_PARAM_LIST_LENGTH_ERROR);
    /* APTPL (nothing persists), SPEC_I_PT */
    assert_int_equal(prout_r(&N1, 0, 0, 0, K1, 0x01, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_field(&r, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 20, 0);
    assert_int_equal(prout_r(&N1, 0, 0, 0, K1, 0x08, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_field(&r, ASC_INVALID_FIELD_IN_PARAM_LIST, false, 20, 3);
    /* REGISTER AND MOVE, REPLACE LOST RESERVATION, reserved actions */
    for (uint8_t sa = 7; sa < 0x20; sa++) {
        assert_int_equal(prout_r(&N1, sa, 0, 0, K1, 0, &r), SCSI_STATUS_CHECK_CONDITION);
        assert_field(&r, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
    }
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    /* bad type and scope */
    static const uint8_t bad_types[] = {0, 2, 4, 9, 0xf};
    for (unsigned i = 0; i < sizeof bad_types; i++) {
        assert_int_equal(prout_r(&N1, 1, bad_types[i], K1, 0, 0, &r), SCSI_STATUS_CHECK_CONDITION);
        assert_field(&r, ASC_INVALID_FIELD_IN_CDB, true, 2, 3);
    }
    assert_int_equal(prout_r(&N1, 1, 0x10 | PR_WE, K1, 0, 0, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_field(&r, ASC_INVALID_FIELD_IN_CDB, true, 2, 7);
    /* wrong key, unregistered nexus: conflict */
    assert_int_equal(RESERVE(&N1, K2, PR_WE), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(RESERVE(&N2, 0, PR_WE), SCSI_STATUS_RESERVATION_CONFLICT);
    uint64_t key;
    uint8_t type;
    assert_false(read_reservation(&key, &type));
    /* PERSISTENT RESERVE IN: service actions 4..0x1f are invalid */
    for (uint8_t sa = 0; sa < 0x20; sa++) {
        prin(&N1, sa, 1024, &r);
        if (sa < 4) {
            assert_int_equal(r.status, SCSI_STATUS_GOOD);
        } else {
            assert_int_equal(r.status, SCSI_STATUS_CHECK_CONDITION);
            assert_field(&r, ASC_INVALID_FIELD_IN_CDB, true, 1, 4);
        }
    }
}

static void test_capabilities_full_status(void **state)
{
    (void)state;
    struct h_res r;
    prin(&N1, 2, 1024, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_in_len, 8);
    assert_int_equal(scsi_get16(r.data), 8);
    assert_int_equal(r.data[2] & 0x01, 0);    /* PTPL_C: in memory only */
    assert_int_equal(r.data[2] & 0x08, 0);    /* SIP_C */
    assert_int_equal(r.data[2] & 0x04, 0x04); /* ATP_C */
    assert_int_equal(r.data[3] & 0x80, 0x80); /* TMV */
    assert_true(((r.data[3] >> 4) & 7) <= 5);
    assert_int_equal(r.data[4], 0xea);
    assert_int_equal(r.data[5], 0x01);

    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(prout_r(&N2, 0, 0, 0, K2, 0x04, &r), SCSI_STATUS_GOOD); /* ALL_TG_PT */
    assert_int_equal(RESERVE(&N1, K1, PR_WE_RO), SCSI_STATUS_GOOD);
    prin(&N1, 3, 4096, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    uint32_t len = scsi_get32(r.data + 4);
    assert_int_equal(r.data_in_len, 8 + len);
    unsigned seen = 0;
    for (uint32_t at = 8; at < 8 + len;) {
        const uint8_t *d = r.data + at;
        uint64_t k = scsi_get64(d);
        uint32_t tid_len = scsi_get32(d + 20);
        const uint8_t *tid = d + 24;
        assert_int_equal(tid[0], 0x45); /* iSCSI, with the ISID */
        assert_int_equal(scsi_get16(tid + 2) % 4, 0);
        assert_int_equal(tid_len, 4 + scsi_get16(tid + 2));
        const char *name = (const char *)tid + 4;
        if (k == K1) {
            assert_int_equal(d[12], 0x01); /* R_HOLDER */
            assert_int_equal(d[13], PR_WE_RO);
            assert_int_equal(scsi_get16(d + 18), 1);
            assert_string_equal(name, N1.initiator);
        } else {
            assert_true(k == K2);
            assert_int_equal(d[12], 0x02); /* ALL_TG_PT */
            assert_int_equal(d[13], 0);
            assert_string_equal(name, N2.initiator);
        }
        seen++;
        at += 24 + tid_len;
    }
    assert_int_equal(seen, 2);
    /* truncated: the length still counts everything */
    prin(&N1, 3, 10, &r);
    assert_int_equal(r.data_in_len, 10);
    assert_int_equal(scsi_get32(r.data + 4), len);
}

static void test_all_target_ports(void **state)
{
    (void)state;
    /* registered through port 1 for every port: port 2 is the same registrant */
    struct h_res r;
    assert_int_equal(prout_r(&N1, 0, 0, 0, K1, 0x04, &r), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1B, K1, PR_EA), SCSI_STATUS_GOOD);
    assert_false(blocked(&N1, &op_write));
    assert_false(blocked(&N1B, &op_write));
    assert_true(blocked(&N2, &op_read));
    /* without ALL_TG_PT the other port is another I_T nexus */
    fresh(state);
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1B, K1, PR_EA), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(RESERVE(&N1, K1, PR_EA), SCSI_STATUS_GOOD);
    assert_true(blocked(&N1B, &op_read));
}

static void test_registrations_full(void **state)
{
    (void)state;
    static char names[PR_MAX_REGS + 1][64];
    struct scsi_nexus n[PR_MAX_REGS + 1];
    for (unsigned i = 0; i <= PR_MAX_REGS; i++) {
        snprintf(names[i], sizeof names[i], "iqn.2026-12.org.test:many,i,0x%012x", i);
        n[i] = (struct scsi_nexus){100 + i, names[i], TGT, 1};
    }
    for (unsigned i = 0; i < PR_MAX_REGS; i++)
        assert_int_equal(REGISTER(&n[i], 0, 1000 + i), SCSI_STATUS_GOOD);
    struct h_res r;
    assert_int_equal(prout_r(&n[PR_MAX_REGS], 0, 0, 0, 7, 0, &r), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(h_key(&r), SK_ILLEGAL_REQUEST);
    assert_int_equal(h_asc(&r), ASC_INSUFFICIENT_REG_RESOURCES);
    uint32_t gen;
    static uint64_t keys[PR_MAX_REGS];
    assert_int_equal(read_keys(&gen, keys), PR_MAX_REGS);
    assert_int_equal(gen, PR_MAX_REGS);
    /* one leaves, the late one gets in */
    assert_int_equal(REGISTER(&n[5], 1005, 0), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&n[PR_MAX_REGS], 0, 7), SCSI_STATUS_GOOD);
}

/* SPC-2 RESERVE/RELEASE, as libiscsi's Reserve6 tests use them. */
static void test_reserve6(void **state)
{
    (void)state;
    struct h_res r;
    const uint8_t reserve6[6] = {0x16}, release6[6] = {0x17};
    const uint8_t reserve10[10] = {0x56}, release10[10] = {0x57};
    h_run(&hv.lu, &N1, reserve6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    h_run(&hv.lu, &N1, reserve6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    /* the other nexus: RESERVE conflicts (through the check), RELEASE is a no-op */
    h_run(&hv.lu, &N2, reserve10, 10, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    h_run(&hv.lu, &N2, release6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_true(blocked(&N2, &op_read));
    assert_true(blocked(&N2, &op_mode_sense));
    assert_false(blocked(&N2, &op_inquiry));
    assert_false(blocked(&N1, &op_write));
    /* persistent reservations cannot be used meanwhile by the other */
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_RESERVATION_CONFLICT);
    prin(&N2, 0, 1024, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    h_run(&hv.lu, &N1, release10, 10, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_false(blocked(&N2, &op_write));
    h_run(&hv.lu, &N2, reserve6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    /* the nexus goes (logout, lost connection): its reservation goes too */
    scsi_pr_nexus_gone(&hv.lu, &N2);
    h_run(&hv.lu, &N1, reserve6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    /* LOGICAL UNIT RESET releases it */
    scsi_pr_reset(&hv.lu);
    assert_false(blocked(&N2, &op_write));
    /* third-party and extent reservations are not supported */
    const uint8_t third[10] = {0x56, 0x10};
    h_run(&hv.lu, &N1, third, 10, NULL, 0, 0, &r);
    assert_field(&r, ASC_INVALID_FIELD_IN_CDB, true, 1, -1);
    /* with registrations, RESERVE conflicts and RELEASE does nothing */
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    h_run(&hv.lu, &N1, reserve6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(RESERVE(&N1, K1, PR_EA), SCSI_STATUS_GOOD);
    h_run(&hv.lu, &N1, release6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    uint64_t key;
    uint8_t type;
    assert_true(read_reservation(&key, &type));
    /* and the other nexus gets a conflict for either */
    h_run(&hv.lu, &N2, release6, 6, NULL, 0, 0, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
}

/* Registrations outlive their session; unit attentions follow the nexus
 * the registrant was last seen on. */
static void test_nexus_gone(void **state)
{
    (void)state;
    assert_int_equal(REGISTER(&N1, 0, K1), SCSI_STATUS_GOOD);
    assert_int_equal(REGISTER(&N2, 0, K2), SCSI_STATUS_GOOD);
    assert_int_equal(RESERVE(&N1, K1, PR_EA), SCSI_STATUS_GOOD);
    scsi_pr_nexus_gone(&hv.lu, &N1);
    uint64_t key;
    uint8_t type;
    assert_true(read_reservation(&key, &type));
    assert_true(key == K1);
    /* N1 logs in again (same names, new session id) and still holds it */
    const struct scsi_nexus again = {77, N1.initiator, N1.target, N1.rel_tgt_port};
    assert_false(blocked(&again, &op_write));
    /* preempted: the unit attention goes to the new session */
    h_ua_reset();
    assert_int_equal(PREEMPT(&N2, K2, K1, PR_EA), SCSI_STATUS_GOOD);
    assert_int_equal(h_ua_count(77, ASC_REGISTRATIONS_PREEMPTED), 1);
    assert_int_equal(h_ua_count(1, 0), 0);
    /* a registrant with no live session gets none */
    assert_int_equal(REGISTER(&again, 0, K1), SCSI_STATUS_GOOD);
    scsi_pr_nexus_gone(&hv.lu, &again);
    h_ua_reset();
    assert_int_equal(PREEMPT(&N2, K2, K1, PR_EA), SCSI_STATUS_GOOD);
    assert_int_equal(h_ua_count(77, 0), 0);
    assert_int_equal(h_ua_count(0, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_register_keys_generation, fresh),
        cmocka_unit_test_setup(test_access_by_type, fresh),
        cmocka_unit_test_setup(test_holder_unregisters, fresh),
        cmocka_unit_test_setup(test_release, fresh),
        cmocka_unit_test_setup(test_clear, fresh),
        cmocka_unit_test_setup(test_preempt, fresh),
        cmocka_unit_test_setup(test_param_checks, fresh),
        cmocka_unit_test_setup(test_capabilities_full_status, fresh),
        cmocka_unit_test_setup(test_all_target_ports, fresh),
        cmocka_unit_test_setup(test_registrations_full, fresh),
        cmocka_unit_test_setup(test_reserve6, fresh),
        cmocka_unit_test_setup(test_nexus_gone, fresh),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
