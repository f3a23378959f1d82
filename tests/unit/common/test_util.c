/* Unit tests for common/util.c's str_printable: control bytes from
 * outside text become '?', the rest stays as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/util.h"

static void test_printable(void **state)
{
    (void)state;
    char a[] = "near '\"v\\\n': invalid\tescape\x1b[2J\x7f";
    assert_ptr_equal(str_printable(a), a);
    assert_string_equal(a, "near '\"v\\?': invalid?escape?[2J?");
    char b[] = "plain text, UTF-8 \xc3\xa9 kept";
    str_printable(b);
    assert_string_equal(b, "plain text, UTF-8 \xc3\xa9 kept");
    char c[] = "";
    assert_string_equal(str_printable(c), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
