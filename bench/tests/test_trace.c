/* shoal-replay's trace parsers (bench/replay/trace.c): the DiskSim ASCII
 * and FIU formats with good and hostile lines (bad fields, huge sizes,
 * overflowing sectors and times), format detection, and strict loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../replay/trace.h"

static char path[64];

/* Write text to a fresh temp file (path) and load it. */
static int load(const char *text, enum trace_format fmt, bool strict, const char *disk,
                struct trace *t)
{
    strcpy(path, "/tmp/shoal-test-trace-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    struct trace_opts o = {
        .format = fmt, .strict = strict, .blk_action = 'Q', .disk = disk, .max_reports = 0};
    int r = trace_load(path, &o, t);
    unlink(path);
    return r;
}

static void test_format_names(void **state)
{
    (void)state;
    enum trace_format f;
    assert_int_equal(trace_format_parse("disksim", &f), 0);
    assert_int_equal(f, TRACE_DISKSIM);
    assert_int_equal(trace_format_parse("fiu", &f), 0);
    assert_int_equal(f, TRACE_FIU);
    assert_string_equal(trace_format_name(TRACE_DISKSIM), "disksim");
    assert_string_equal(trace_format_name(TRACE_FIU), "fiu");
    assert_int_equal(trace_format_parse("disksim2", &f), -EINVAL);
}

static void test_disksim_good(void **state)
{
    (void)state;
    struct trace t;
    assert_int_equal(load("# comment\n"
                          "938513000 4 264719034 16 0\n"
                          "\n"
                          "938828000 3 197570570 16 1\n"
                          "938900000 3 100 0 1\n" /* empty: ignored */
                          "12.5 7 8 8 1\n",       /* DiskSim's milliseconds */
                          TRACE_AUTO, true, NULL, &t),
                     0);
    assert_int_equal(t.format, TRACE_DISKSIM);
    assert_int_equal(t.n, 3);
    assert_null(t.md5);
    assert_int_equal(t.writes, 1);
    assert_int_equal(t.reads, 2);
    assert_int_equal(t.ignored, 3);
    /* Times relative to the earliest: 12.5 ms. */
    assert_int_equal(t.recs[2].ts_ns, 0);
    assert_int_equal(t.recs[0].ts_ns, 938513000ull - 12500000ull);
    assert_int_equal(t.recs[0].offset, 264719034ull * 512);
    assert_int_equal(t.recs[0].len, 16 * 512);
    assert_int_equal(t.recs[0].op, TRACE_WRITE);
    assert_int_equal(t.recs[0].dev, 4);
    assert_int_equal(t.recs[1].op, TRACE_READ);
    assert_int_equal(t.recs[2].dev, 7);
    trace_free(&t);

    /* --disk keeps one device. */
    assert_int_equal(load("1 4 8 8 1\n2 3 8 8 1\n3 4 16 8 0\n", TRACE_DISKSIM, true, "4", &t), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.filtered, 1);
    trace_free(&t);
}

static void test_disksim_hostile(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1 2 3\n",                          /* too few fields */
        "1 2 3 4 1 6\n",                    /* too many */
        "x 0 8 8 1\n",                      /* time */
        "1.2.3 0 8 8 1\n",                  /* time */
        ".5 0 8 8 1\n",                     /* time */
        "1.1234567 0 8 8 1\n",              /* more than ns precision */
        "18446744073709551615.5 0 8 8 1\n", /* time overflow */
        "1 65536 8 8 1\n",                  /* device */
        "1 -1 8 8 1\n",                     /* device */
        "1 0 8 8 2\n",                      /* type */
        "1 0 8 8 r\n",                      /* type */
        "1 0 8x 8 1\n",                     /* sector */
        "1 0 8 99999999999 1\n",            /* size beyond TRACE_MAX_IO_LEN */
        "1 0 18446744073709551615 8 1\n",   /* sector overflow */
        "1 0 36028797018963960 8 1\n",      /* sector + size overflows bytes */
        "1 0 99999999999999999999 8 1\n",   /* not a u64 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct trace t;
        char text[256];
        /* One good line then the bad one: skipped, or failing a strict load. */
        snprintf(text, sizeof text, "5 0 8 8 1\n%s", bad[i]);
        assert_int_equal(load(text, TRACE_DISKSIM, false, NULL, &t), 0);
        if (t.malformed != 1 || t.n != 1)
            fail_msg("line %zu (%s): %llu malformed, %llu records", i, bad[i],
                     (unsigned long long)t.malformed, (unsigned long long)t.n);
        trace_free(&t);
        assert_int_equal(load(text, TRACE_DISKSIM, true, NULL, &t), -EINVAL);
        assert_null(t.recs);
    }
}

#define FIU_HDR "\t0\t1\t2\t3\t4\t5\t6\t7\t8\n"
#define MD5A    "2c4787c7671c2f638777c4ab72859ce1"
#define MD5B    "88B93B628D84082186026D9DA044F173"

static void test_fiu_good(void **state)
{
    (void)state;
    struct trace t;
    assert_int_equal(load(FIU_HDR "0\t89966811921625\t4257\tnfsd\t488846200\t8\tW\t6\t0\t" MD5A "\n"
                                  "1\t89967003980393\t4253\tnfsd\t508455704\t8\tR\t6\t0\t" MD5B
                                  "\n",
                          TRACE_AUTO, true, NULL, &t),
                     0);
    assert_int_equal(t.format, TRACE_FIU);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.ignored, 1);
    assert_non_null(t.md5);
    assert_int_equal(t.recs[0].op, TRACE_WRITE);
    assert_int_equal(t.recs[0].offset, 488846200ull * 512);
    assert_int_equal(t.recs[0].len, 4096);
    assert_int_equal(t.recs[1].ts_ns, 89967003980393ull - 89966811921625ull);
    static const uint8_t a[16] = {0x2c, 0x47, 0x87, 0xc7, 0x67, 0x1c, 0x2f, 0x63,
                                  0x87, 0x77, 0xc4, 0xab, 0x72, 0x85, 0x9c, 0xe1};
    assert_memory_equal(t.md5[0], a, 16);
    assert_int_equal(t.md5[1][0], 0x88);
    assert_int_equal(t.md5[1][15], 0x73);
    trace_free(&t);

    /* The raw form (no index column, blanks) and a maj,min filter. */
    assert_int_equal(load("100 1 p 8 8 R 6 0 " MD5A "\n200 1 p 16 8 R 8 0 " MD5A "\n", TRACE_AUTO,
                          true, "8,0", &t),
                     0);
    assert_int_equal(t.format, TRACE_FIU);
    assert_int_equal(t.n, 1);
    assert_int_equal(t.filtered, 1);
    assert_int_equal(t.recs[0].offset, 16 * 512);
    trace_free(&t);
}

static void test_fiu_hostile(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1 2 p 8 8 R 6 0\n",                                 /* no MD5 */
        "1 2 p 8 8 R 6 0 " MD5A " extra more\n",             /* too many */
        "1 2 p 8 8 R 6 0 2c4787c7671c2f638777c4ab72859ce\n", /* short MD5 */
        "1 2 p 8 8 R 6 0 2c4787c7671c2f638777c4ab72859cez\n",
        "1 2 p 8 16 R 6 0 " MD5A "\n",                   /* not one block */
        "1 2 p 8 0 R 6 0 " MD5A "\n",                    /* empty */
        "1 2 p 8 99999999999999 R 6 0 " MD5A "\n",       /* huge */
        "1 2 p 8 8 X 6 0 " MD5A "\n",                    /* op */
        "1 2 p 8 8 RW 6 0 " MD5A "\n",                   /* op */
        "1 2 p 18446744073709551615 8 R 6 0 " MD5A "\n", /* sector overflow */
        "1 2 p 36028797018963960 8 R 6 0 " MD5A "\n",    /* sector + 8 overflows bytes */
        "t 2 p 8 8 R 6 0 " MD5A "\n",                    /* time */
        "1 2 p 8 8 R x 0 " MD5A "\n",                    /* device */
        "x 1 2 p 8 8 R 6 0 " MD5A "\n",                  /* row index */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct trace t;
        char text[512];
        snprintf(text, sizeof text, "5 2 p 8 8 R 6 0 " MD5A "\n%s", bad[i]);
        assert_int_equal(load(text, TRACE_FIU, false, NULL, &t), 0);
        if (t.malformed != 1 || t.n != 1)
            fail_msg("line %zu (%s): %llu malformed, %llu records", i, bad[i],
                     (unsigned long long)t.malformed, (unsigned long long)t.n);
        trace_free(&t);
        assert_int_equal(load(text, TRACE_FIU, true, NULL, &t), -EINVAL);
        assert_null(t.recs);
        assert_null(t.md5);
    }
}

/* The other formats are not mistaken for the new ones and vice versa. */
static void test_detection(void **state)
{
    (void)state;
    struct trace t;
    assert_int_equal(
        load("128166372003061629,hm,0,Read,4096,4096,100\n", TRACE_AUTO, true, NULL, &t), 0);
    assert_int_equal(t.format, TRACE_MSR);
    trace_free(&t);
    assert_int_equal(load("  8,0    0     1     0.000000001  42  Q   R 8 + 8 [fio]\n", TRACE_AUTO,
                          true, NULL, &t),
                     0);
    assert_int_equal(t.format, TRACE_BLKPARSE);
    trace_free(&t);
    /* Five numbers but a type of 2: not DiskSim, nothing else either. */
    assert_int_equal(load("1 2 3 4 2\n", TRACE_AUTO, true, NULL, &t), -EINVAL);
    /* A DiskSim trace read as FIU is malformed, not silently accepted. */
    assert_int_equal(load("1 0 8 8 1\n", TRACE_FIU, true, NULL, &t), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_names),    cmocka_unit_test(test_disksim_good),
        cmocka_unit_test(test_disksim_hostile), cmocka_unit_test(test_fiu_good),
        cmocka_unit_test(test_fiu_hostile),     cmocka_unit_test(test_detection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
