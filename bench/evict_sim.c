/* evict-sim: replay block workloads through the real content store with
 * each eviction policy and report miss ratios. This is the measurement behind
 * the default policy choice (bench/README.md, "Policy simulator").
 *
 *   evict-sim [--accesses N] [--cache BLOCKS] [--seed S]
 *             [--workloads LIST] [--policies LIST]          synthetic
 *   evict-sim --trace FILE [--format F] [--sizes 1%,10%,30%] [--json] ...
 *             a real trace with the daemon's semantics, and Belady's MIN
 *             (bench/sim/, --trace --help for the options)
 *
 * The synthetic workloads (bench/sim/synth.c) are built as the operations
 * a trace becomes, so they run with the same semantics and beside MIN:
 *   zipf      Zipf(0.9) over 8192 hot blocks
 *   zipf+scan half Zipf(0.9) hot reads, half a sequential scan over 65536
 *             cold blocks (a backup or image copy running beside the VMs)
 *   loop      a loop over 1.25x the cache (LRU's worst case)
 *   storm     16 clones booting from one shared directory: each reads the
 *             same 6000-block boot set in a shuffled order, plus 300
 *             private blocks, in turn
 *   vdi       12 full clones of a gold image (dedup: one content, many
 *             volumes) booting overlapped, then logging in with writes
 *   write-mix 59% writes (like the held-out production trace), Zipf and
 *             sequential, whole and partial writes
 *   shift     a Zipf hot set that moves every 4x the cache accesses */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "core/evict.h"
#include "sim/sim.h"
#include "sim/synth.h"

#define MAX_POLICIES 8

static const char *const default_policies = "wtinylfu,s3fifo,lru,sieve,arc";

struct syn_opts {
    uint64_t accesses, seed;
    unsigned cache;
    bool want[SYNTH__COUNT];
    const struct evict_ops *pols[MAX_POLICIES];
    unsigned npols;
    bool opt;
};

static int parse_workloads(char *s, struct syn_opts *o)
{
    memset(o->want, 0, sizeof o->want);
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int w = 0;
        while (w < SYNTH__COUNT && strcmp(synth_names[w], tok) != 0)
            w++;
        if (w == SYNTH__COUNT) {
            fprintf(stderr, "evict-sim: unknown workload '%s'\n", tok);
            return -EINVAL;
        }
        o->want[w] = true;
    }
    return 0;
}

static int parse_policies(char *s, struct syn_opts *o)
{
    o->npols = 0;
    o->opt = false;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "opt") == 0) {
            o->opt = true;
            continue;
        }
        const struct evict_ops *p = evict_find(tok);
        if (!p || o->npols == MAX_POLICIES) {
            fprintf(stderr, "evict-sim: unknown policy '%s'\n", tok);
            return -EINVAL;
        }
        o->pols[o->npols++] = p;
    }
    return o->npols || o->opt ? 0 : -EINVAL;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: evict-sim [--accesses N] [--cache BLOCKS] [--seed S]\n"
               "                 [--workloads LIST] [--policies LIST]\n"
               "       evict-sim --trace FILE ... (--trace x --help: the options)\n"
               "workloads: zipf, zipf+scan, loop, storm, vdi, write-mix, shift (default all)\n"
               "policies: wtinylfu, s3fifo, lru, sieve, arc and opt (Belady's MIN)\n");
}

static int parse(int argc, char **argv, struct syn_opts *o)
{
    char pols[64];
    strcpy(pols, default_policies);
    *o = (struct syn_opts){.accesses = 2000000, .seed = 1, .cache = 4096};
    for (int w = 0; w < SYNTH__COUNT; w++)
        o->want[w] = true;
    if (parse_policies(pols, o) < 0)
        return -EINVAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (i + 1 >= argc) {
            usage(stderr);
            return -EINVAL;
        }
        char *v = argv[++i];
        errno = 0;
        if (!strcmp(a, "--accesses"))
            o->accesses = strtoull(v, &end, 10);
        else if (!strcmp(a, "--cache"))
            o->cache = (unsigned)strtoul(v, &end, 10);
        else if (!strcmp(a, "--seed"))
            o->seed = strtoull(v, &end, 10);
        else if (!strcmp(a, "--workloads")) {
            if (parse_workloads(v, o) < 0)
                return -EINVAL;
            continue;
        } else if (!strcmp(a, "--policies")) {
            if (parse_policies(v, o) < 0)
                return -EINVAL;
            continue;
        } else {
            usage(stderr);
            return -EINVAL;
        }
        if (errno || !end || *end || *v == '-' || !*v) {
            fprintf(stderr, "evict-sim: bad number '%s' for %s\n", v, a);
            return -EINVAL;
        }
    }
    if (o->cache == 0 || o->cache > (1u << 24) || o->accesses == 0) {
        fprintf(stderr, "evict-sim: --cache wants 1 .. 16777216 blocks, --accesses at least 1\n");
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--trace") || !strncmp(argv[i], "--trace=", 8))
            return sim_trace_main(argc, argv);
    struct syn_opts o;
    if (parse(argc, argv, &o) < 0)
        return 2;
    printf("cache %u blocks, %llu accesses per run, seed %llu\n", o.cache,
           (unsigned long long)o.accesses, (unsigned long long)o.seed);
    printf("%-10s", "workload");
    for (unsigned p = 0; p < o.npols; p++)
        printf(" %10s", o.pols[p]->name);
    if (o.opt)
        printf(" %10s", "opt");
    printf("   (miss ratio, lower is better)\n");
    for (int w = 0; w < SYNTH__COUNT; w++) {
        if (!o.want[w])
            continue;
        struct sim_ops ops;
        int r = synth_build((enum synth)w, o.cache, o.accesses, o.seed, &ops);
        if (r < 0) {
            fprintf(stderr, "evict-sim: %s: %s\n", synth_names[w], strerror(-r));
            return 1;
        }
        printf("%-10s", synth_names[w]);
        for (unsigned p = 0; p <= o.npols && r == 0; p++) {
            struct sim_result res;
            if (p == o.npols && !o.opt)
                break;
            r = p < o.npols ? sim_run_store(&ops, o.pols[p], o.cache, &res)
                            : sim_run_opt(&ops, o.cache, &res);
            if (r == 0)
                printf(" %10.4f",
                       res.read_bytes ? (double)res.miss_bytes / (double)res.read_bytes : 0.0);
        }
        printf("\n");
        fflush(stdout);
        sim_ops_free(&ops);
        if (r < 0) {
            fprintf(stderr, "evict-sim: %s: %s\n", synth_names[w], strerror(-r));
            return 1;
        }
    }
    return 0;
}
