/* Unit tests for common/ids.c: octal modes, users and groups by name or
 * number, and the refusals an admin's typo gets. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>

#include "common/ids.h"

static void test_modes(void **state)
{
    (void)state;
    mode_t m = 1;
    assert_int_equal(ids_parse_mode("0660", &m), 0);
    assert_int_equal(m, 0660);
    assert_int_equal(ids_parse_mode("600", &m), 0);
    assert_int_equal(m, 0600);
    assert_int_equal(ids_parse_mode("0", &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(ids_parse_mode("0777", &m), 0);
    assert_int_equal(m, 0777);
    m = 0123;
    const char *bad[] = {"",          "0668",  "1777", "4660", "06600",
                         "rw-rw----", "0x1b0", "-660", " 660", "660 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ids_parse_mode(bad[i], &m), -EINVAL);
        assert_int_equal(m, 0123); /* untouched on a refusal */
    }
}

static void test_users(void **state)
{
    (void)state;
    uid_t uid = 1;
    gid_t gid = 1;
    assert_int_equal(ids_lookup_user("root", &uid, &gid), 0);
    assert_int_equal(uid, 0);
    assert_int_equal(gid, 0);
    assert_int_equal(ids_lookup_user("0", &uid, &gid), 0);
    assert_int_equal(uid, 0);
    assert_int_equal(gid, 0);
    /* A number without a passwd entry: the uid, no primary group. */
    assert_int_equal(ids_lookup_user("3999999", &uid, &gid), 0);
    assert_int_equal(uid, 3999999);
    assert_int_equal(gid, (gid_t)-1);
    assert_int_equal(ids_lookup_user("no-such-user-shoal-test", &uid, &gid), -ENOENT);
    assert_int_equal(ids_lookup_user("", &uid, &gid), -EINVAL);
    /* (uid_t)-1 means "unchanged" to chown: never a user. */
    assert_int_equal(ids_lookup_user("4294967295", &uid, &gid), -EINVAL);
    assert_int_equal(ids_lookup_user("99999999999", &uid, &gid), -EINVAL);
}

static void test_groups(void **state)
{
    (void)state;
    gid_t gid = 1;
    assert_int_equal(ids_lookup_group("root", &gid), 0);
    assert_int_equal(gid, 0);
    assert_int_equal(ids_lookup_group("64055", &gid), 0);
    assert_int_equal(gid, 64055);
    assert_int_equal(ids_lookup_group("no-such-group-shoal-test", &gid), -ENOENT);
    assert_int_equal(ids_lookup_group("", &gid), -EINVAL);
    assert_int_equal(ids_lookup_group("4294967295", &gid), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
