/* Unit tests for the file back end's image format check (format=auto):
 * files that start with a qcow2, qed, vmdk, vhdx, vhd, vdi or luks header
 * (or end with a VHD footer) are refused with -EMEDIUMTYPE and a one-line
 * backend_open_error() naming the file and the format; format=raw opens
 * them as bytes; raw files, near misses and tiny files open as before.
 * Headers are written by hand (every format, always), and also made by
 * qemu-img when it is installed (the real thing, not our idea of it). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "common/util.h"
#include "tmpdir_fixture.h"

static int setup(void **state)
{
    return fixture_setup(state, "fmt");
}

/* A sparse file of `size` bytes with `len` bytes of `data` at `offset`. */
static void write_image(const char *path, uint64_t size, uint64_t offset, const void *data,
                        size_t len)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    if (len)
        assert_int_equal(pwrite(fd, data, len, (off_t)offset), (ssize_t)len);
    close(fd);
}

static int open_fmt(const char *path, enum backend_format format, bool direct, struct backend **be)
{
    struct backend_params p = {.spec = path, .format = format, .direct = direct};
    *be = NULL;
    return backend_open(&p, be);
}

/* format=auto refuses the file as `format`, in one line that names the
 * file, the format, the supported layout and the way out; format=raw
 * serves its bytes, all of them. */
static void check_refused(const char *path, const char *format)
{
    struct backend *be;
    int r = open_fmt(path, BACKEND_FORMAT_AUTO, false, &be);
    if (r != -EMEDIUMTYPE)
        fail_msg("%s (%s): %d (%s)", path, format, r, backend_open_error());
    assert_null(be);
    const char *why = backend_open_error();
    char want[256];
    snprintf(want, sizeof want, "%s is a %s image; shoal serves raw images", path, format);
    if (strncmp(why, want, strlen(want)) != 0)
        fail_msg("want \"%s...\", got \"%s\"", want, why);
    assert_non_null(strstr(why, "qemu-img create -f qcow2 -F raw -b 'nbd+unix:///"));
    assert_non_null(strstr(why, "set format=raw"));
    assert_null(strchr(why, '\n'));

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(open_fmt(path, BACKEND_FORMAT_RAW, false, &be), 0);
    assert_int_equal(be->size, (uint64_t)st.st_size);
    assert_string_equal(backend_open_error(), "");
    backend_close(be);

    /* O_DIRECT reads the header (and the footer, at any file size)
     * through aligned buffers and offsets. Where the file system has no
     * O_DIRECT (tmpfs), format=raw fails to open too: nothing to check. */
    r = open_fmt(path, BACKEND_FORMAT_RAW, true, &be);
    backend_close(be);
    if (r == -EINVAL)
        return;
    assert_int_equal(r, 0);
    r = open_fmt(path, BACKEND_FORMAT_AUTO, true, &be);
    if (r != -EMEDIUMTYPE)
        fail_msg("%s (%s) with O_DIRECT: %d (%s)", path, format, r, backend_open_error());
    assert_null(be);
}

static void check_opens(const char *path)
{
    struct backend *be;
    int r = open_fmt(path, BACKEND_FORMAT_AUTO, false, &be);
    if (r != 0)
        fail_msg("%s: %d (%s)", path, r, backend_open_error());
    backend_close(be);
}

static void test_headers_by_hand(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *format;
        const char *magic;
        size_t len;
    } cases[] = {
        {"qcow2", "QFI\xfb\0\0\0\x03", 8}, {"qcow2", "QFI\xfb\0\0\0\x02", 8},
        {"qcow", "QFI\xfb\0\0\0\x01", 8},  {"qed", "QED\0", 4},
        {"vmdk", "KDMV\x01\0\0\0", 8},     {"vmdk", "# Disk DescriptorFile\nversion=1\n", 32},
        {"vhdx", "vhdxfile", 8},           {"vhd", "conectix", 8},
        {"luks", "LUKS\xba\xbe\0\x01", 8},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        write_image(fx->path, 1 << 20, 0, cases[i].magic, cases[i].len);
        check_refused(fx->path, cases[i].format);
    }

    /* VDI: a text banner, then the signature 0xbeda107f (LE) at 0x40. */
    uint8_t vdi[0x48] = {0};
    memcpy(vdi, "<<< Oracle VM VirtualBox Disk Image >>>\n", 40);
    memcpy(vdi + 0x40, "\x7f\x10\xda\xbe", 4);
    write_image(fx->path, 1 << 20, 0, vdi, sizeof vdi);
    check_refused(fx->path, "vdi");
    /* The banner without the signature is just bytes. */
    memset(vdi + 0x40, 0, 4);
    write_image(fx->path, 1 << 20, 0, vdi, sizeof vdi);
    check_opens(fx->path);

    /* Fixed VHD: raw data, then a 512-byte footer at the very end; also at
     * a size that is not a multiple of 512, and smaller than a block. */
    static const uint64_t sizes[] = {(1 << 20) + 512, (1 << 20) + 700, 4096 + 100, 512, 600};
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        write_image(fx->path, sizes[i], sizes[i] - 512, "conectix", 8);
        check_refused(fx->path, "vhd");
    }
    /* "conectix" anywhere else in the last block is data. */
    write_image(fx->path, 1 << 20, (1 << 20) - 1024, "conectix", 8);
    check_opens(fx->path);
}

static void test_raw_files_open(void **state)
{
    struct fixture *fx = *state;
    write_image(fx->path, 0, 0, NULL, 0); /* empty */
    check_opens(fx->path);
    write_image(fx->path, 1 << 20, 0, NULL, 0); /* zeros */
    check_opens(fx->path);
    write_image(fx->path, 2, 0, "QF", 2); /* shorter than any magic */
    check_opens(fx->path);
    write_image(fx->path, 1 << 20, 0, "QFI\xfa", 4); /* near miss */
    check_opens(fx->path);
    write_image(fx->path, 1 << 20, 1, "QFI\xfb", 4); /* not at offset 0 */
    check_opens(fx->path);
    /* An MBR, as most raw disks start. */
    uint8_t mbr[512] = {0};
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    write_image(fx->path, 1 << 20, 0, mbr, sizeof mbr);
    check_opens(fx->path);
}

/* The images qemu-img itself makes, when it is installed. */
static void test_qemu_img_images(void **state)
{
    struct fixture *fx = *state;
    if (system("qemu-img --version >/dev/null 2>&1") != 0)
        skip();
    static const struct {
        const char *qemu_fmt, *opts, *format;
    } cases[] = {
        {"qcow2", "", "qcow2"},
        {"qed", "", "qed"},
        {"vmdk", "", "vmdk"},
        {"vhdx", "", "vhdx"},
        {"vdi", "", "vdi"},
        {"vpc", "", "vhd"},
        {"vpc", "-o subformat=fixed", "vhd"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char cmd[512];
        unlink(fx->path);
        snprintf(cmd, sizeof cmd, "qemu-img create -q -f %s %s '%s' 8M >/dev/null 2>&1",
                 cases[i].qemu_fmt, cases[i].opts, fx->path);
        if (system(cmd) != 0) {
            /* A qemu built without this format: nothing to compare. */
            print_message("qemu-img cannot create %s %s, not checked\n", cases[i].qemu_fmt,
                          cases[i].opts);
            continue;
        }
        check_refused(fx->path, cases[i].format);
    }
    unlink(fx->path);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "qemu-img create -q -f raw '%s' 8M", fx->path);
    assert_int_equal(system(cmd), 0);
    check_opens(fx->path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_headers_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_files_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qemu_img_images, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
