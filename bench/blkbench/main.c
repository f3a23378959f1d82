/* shoal-blkbench: one client program for both of shoal's front ends, so a
 * comparison between them is not one between two clients. See
 * bench/README.md (scenario 9). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copy.h"
#include "dev.h"
#include "lat.h"

#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define MAX_DEVS   8

static void usage(FILE *f)
{
    fputs("Usage: shoal-blkbench lat [options] URL...\n"
          "       shoal-blkbench xcopy [options] SRC-URL DST-URL\n"
          "       shoal-blkbench rwcopy [options] SRC-URL DST-URL\n"
          "URLs: nbd://, nbd+unix:// (libnbd) or iscsi:// (libiscsi, no digests).\n"
          "\n"
          "lat: synchronous random reads, one at a time, on each URL in turn (same\n"
          "offsets, same loop, same timer); prints the latency figures as JSON.\n"
          "  --bs N          bytes per read (default 4096)\n"
          "  --range BYTES   read within the first BYTES (default: the whole device)\n"
          "  --ops N         timed reads per URL (default 20000)\n"
          "  --warmup N      untimed reads per URL first (default 1000)\n"
          "  --rounds N      interleave the URLs in N slices (default 10)\n"
          "  --seed N        offsets' generator seed (default fixed)\n"
          "xcopy: copy SRC to DST (iSCSI LUs) by EXTENDED COPY, one command at a time.\n"
          "  --bytes BYTES   from offset 0 (default: the whole source)\n"
          "  --segment BYTES per segment descriptor (default 16M)\n"
          "  --segments N    segment descriptors per command (default 16)\n"
          "rwcopy: the same copy by READ(16) then WRITE(16), one command at a time.\n"
          "  --bytes BYTES   as for xcopy\n"
          "  --chunk BYTES   per command (default 1M)\n"
          "Sizes take K, M or G.\n",
          f);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -EINVAL;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *mode = argv[1];
    bool lat = strcmp(mode, "lat") == 0, xcopy = strcmp(mode, "xcopy") == 0,
         rwcopy = strcmp(mode, "rwcopy") == 0;
    if (!lat && !xcopy && !rwcopy) {
        fprintf(stderr, "shoal-blkbench: unknown mode '%s' (lat, xcopy or rwcopy)\n", mode);
        return EXIT_USAGE;
    }
    struct lat_opts lo = {.bs = 4096, .ops = 20000, .warmup = 1000, .rounds = 10};
    struct copy_opts co = {.segment = 16u << 20, .segments = 16, .chunk = 1u << 20};
    static const struct option longopts[] = {
        {"bs", required_argument, NULL, 'b'},       {"range", required_argument, NULL, 'r'},
        {"ops", required_argument, NULL, 'n'},      {"warmup", required_argument, NULL, 'w'},
        {"rounds", required_argument, NULL, 'R'},   {"seed", required_argument, NULL, 's'},
        {"bytes", required_argument, NULL, 'B'},    {"segment", required_argument, NULL, 'S'},
        {"segments", required_argument, NULL, 'N'}, {"chunk", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        uint64_t v = 0;
        if (opt == 'h') {
            usage(stdout);
            return 0;
        }
        if (opt == '?')
            return EXIT_USAGE;
        if (parse_size(optarg, &v) < 0 ||
            ((opt == 'b' || opt == 'R' || opt == 'N' || opt == 'S' || opt == 'c') &&
             (v == 0 || v > UINT32_MAX))) {
            const char *name = "?";
            for (const struct option *o = longopts; o->name; o++)
                if (o->val == opt)
                    name = o->name;
            fprintf(stderr, "shoal-blkbench: bad value '%s' for --%s\n", optarg, name);
            return EXIT_USAGE;
        }
        switch (opt) {
        case 'b':
            lo.bs = (uint32_t)v;
            break;
        case 'r':
            lo.range = v;
            break;
        case 'n':
            lo.ops = v;
            break;
        case 'w':
            lo.warmup = v;
            break;
        case 'R':
            lo.rounds = (unsigned)v;
            break;
        case 's':
            lo.seed = v;
            break;
        case 'B':
            co.bytes = v;
            break;
        case 'S':
            co.segment = (uint32_t)v;
            break;
        case 'N':
            co.segments = (unsigned)v;
            break;
        case 'c':
            co.chunk = (uint32_t)v;
            break;
        }
    }
    int ndev = argc - optind;
    if (lat ? (ndev < 1 || ndev > MAX_DEVS || lo.ops == 0) : ndev != 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    struct blkdev *devs[MAX_DEVS] = {0};
    int r = 0;
    for (int i = 0; i < ndev && r == 0; i++)
        r = blkdev_open(argv[optind + i], &devs[i]);
    if (r == 0) {
        if (lat)
            r = lat_run(devs, (unsigned)ndev, &lo, stdout);
        else if (xcopy)
            r = copy_xcopy(devs[0], devs[1], &co, stdout);
        else
            r = copy_rw(devs[0], devs[1], &co, stdout);
    }
    for (int i = 0; i < ndev; i++)
        blkdev_close(devs[i]);
    if (r < 0 && r != -EIO && r != -EINVAL)
        fprintf(stderr, "shoal-blkbench: %s: %s\n", mode, strerror(-r));
    return r < 0 ? EXIT_FAIL : 0;
}
