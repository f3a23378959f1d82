/* evict-sim --trace: options, the runs (each policy at each size, then
 * Belady's MIN) and the report, a table or JSON. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/evict.h"
#include "sim.h"

#define MAX_SIZES    16
#define MAX_POLICIES 8

struct size_arg {
    char text[24];
    double share; /* of the distinct blocks; 0 when blocks is given */
    uint64_t blocks;
};

struct topts {
    const char *path;
    struct trace_opts trace;
    bool by_content, json, merge;
    struct size_arg sizes[MAX_SIZES];
    unsigned nsizes;
    const struct evict_ops *pols[MAX_POLICIES];
    unsigned npols;
    bool opt;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: evict-sim --trace FILE [--format F] [--disk ID] [--by-content]\n            "
               "     [--merge-devices]\n"
               "                 [--sizes LIST] [--policies LIST] [--json]\n"
               "  --format F      auto (default), msr, blkparse, vscsi, disksim, fiu\n"
               "  --disk ID       only this device (see shoal-replay --disk)\n"
               "  --by-content    content identity = the trace's MD5 (fiu): what dedup sees\n"
               "  --merge-devices one address space for all devices (as shoal-replay on one\n"
               "                  export); by default each device is its own disk\n"
               "  --sizes LIST    cache sizes, shares of the distinct blocks or block counts\n"
               "                  (default 1%%,10%%,30%%)\n"
               "  --policies LIST eviction policies and opt\n"
               "                  (default wtinylfu,lru,s3fifo,sieve,arc,opt)\n"
               "  --json          print JSON instead of the table\n");
}

static int parse_sizes(char *s, struct topts *o)
{
    o->nsizes = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct size_arg *a = &o->sizes[o->nsizes];
        if (o->nsizes == MAX_SIZES || strlen(tok) >= sizeof a->text)
            return -EINVAL;
        char *end;
        errno = 0;
        size_t n = strlen(tok);
        if (n > 1 && tok[n - 1] == '%') {
            a->share = strtod(tok, &end) / 100.0;
            if (errno || end != tok + n - 1 || !(a->share > 0 && a->share <= 1.0))
                return -EINVAL;
        } else {
            unsigned long long v = strtoull(tok, &end, 10);
            if (errno || *end || v == 0 || tok[0] == '-' || v > (1ull << 32))
                return -EINVAL;
            a->blocks = v;
        }
        strcpy(a->text, tok);
        o->nsizes++;
    }
    return o->nsizes ? 0 : -EINVAL;
}

static int parse_policies(char *s, struct topts *o)
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
            fprintf(stderr,
                    "evict-sim: unknown policy '%s' (wtinylfu, lru, s3fifo, sieve, arc, "
                    "opt)\n",
                    tok);
            return -EINVAL;
        }
        o->pols[o->npols++] = p;
    }
    return o->npols || o->opt ? 0 : -EINVAL;
}

static int parse(int argc, char **argv, struct topts *o)
{
    enum { O_TRACE = 256, O_FORMAT, O_DISK, O_BYC, O_MERGE, O_SIZES, O_POLS, O_JSON };
    static const struct option longs[] = {
        {"trace", required_argument, NULL, O_TRACE},
        {"format", required_argument, NULL, O_FORMAT},
        {"disk", required_argument, NULL, O_DISK},
        {"by-content", no_argument, NULL, O_BYC},
        {"merge-devices", no_argument, NULL, O_MERGE},
        {"sizes", required_argument, NULL, O_SIZES},
        {"policies", required_argument, NULL, O_POLS},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char def_sizes[] = "1%,10%,30%", def_pols[] = "wtinylfu,lru,s3fifo,sieve,arc,opt";
    if (parse_sizes(def_sizes, o) < 0 || parse_policies(def_pols, o) < 0)
        return -EINVAL;
    o->trace = (struct trace_opts){.format = TRACE_AUTO, .blk_action = 'Q', .max_reports = 10};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case O_TRACE:
            o->path = optarg;
            break;
        case O_FORMAT:
            if (trace_format_parse(optarg, &o->trace.format) < 0) {
                fprintf(stderr, "evict-sim: unknown trace format '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case O_DISK:
            o->trace.disk = optarg;
            break;
        case O_BYC:
            o->by_content = true;
            break;
        case O_MERGE:
            o->merge = true;
            break;
        case O_SIZES:
            if (parse_sizes(optarg, o) < 0) {
                fprintf(stderr, "evict-sim: bad --sizes '%s' (e.g. 1%%,10%%,30%% or 4096)\n",
                        optarg);
                return -EINVAL;
            }
            break;
        case O_POLS:
            if (parse_policies(optarg, o) < 0)
                return -EINVAL;
            break;
        case O_JSON:
            o->json = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (!o->path || optind != argc) {
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

static uint64_t size_blocks(const struct size_arg *a, uint64_t distinct)
{
    if (a->blocks)
        return a->blocks;
    uint64_t b = (uint64_t)(a->share * (double)distinct + 0.5);
    return b ? b : 1;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0;
}

static int run_all(const struct topts *o, const struct trace *t, const struct sim_ops *ops)
{
    json_t *root = json_object(), *results = json_array();
    json_object_set_new(root, "trace", json_string(o->path));
    json_object_set_new(root, "format", json_string(trace_format_name(t->format)));
    json_object_set_new(root, "identity", json_string(o->by_content ? "content" : "address"));
    json_object_set_new(root, "devices", json_string(o->merge ? "merged" : "separate"));
    json_object_set_new(root, "records", json_integer((json_int_t)t->n));
    json_object_set_new(root, "read_blocks", json_integer((json_int_t)ops->read_blocks));
    json_object_set_new(root, "read_bytes", json_integer((json_int_t)ops->read_bytes));
    json_object_set_new(root, "distinct_blocks", json_integer((json_int_t)ops->distinct));
    json_object_set_new(root, "miss_ratio", json_string("read bytes missed / read bytes"));
    /* The compulsory misses: a cache that never evicts (every address holds
     * at most one content at a time). */
    struct sim_result cold;
    int r = sim_run_opt(ops, ops->naddrs > ops->ncids ? ops->naddrs : ops->ncids, &cold);
    if (r < 0) {
        json_decref(root);
        json_decref(results);
        return r;
    }
    double cold_mr = ratio(cold.miss_bytes, cold.read_bytes);
    json_object_set_new(root, "cold_miss_ratio", json_real(cold_mr));
    if (!o->json) {
        printf("%s (%s): %llu records, %llu block reads, %llu distinct %s\n", o->path,
               trace_format_name(t->format), (unsigned long long)t->n,
               (unsigned long long)ops->read_blocks, (unsigned long long)ops->distinct,
               o->by_content ? "contents" : "blocks");
        printf("compulsory (cold) miss ratio, the floor at any size: %.4f\n", cold_mr);
        printf("read miss ratio (bytes), lower is better\n%-8s %9s", "size", "blocks");
        for (unsigned p = 0; p < o->npols; p++)
            printf(" %8s", o->pols[p]->name);
        printf(o->opt ? " %8s\n" : "\n", "opt");
    }
    for (unsigned s = 0; s < o->nsizes && r == 0; s++) {
        uint64_t blocks = size_blocks(&o->sizes[s], ops->distinct);
        if (!o->json)
            printf("%-8s %9llu", o->sizes[s].text, (unsigned long long)blocks);
        for (unsigned p = 0; p <= o->npols && r == 0; p++) {
            struct sim_result res;
            if (p == o->npols && !o->opt)
                break;
            const char *name = p < o->npols ? o->pols[p]->name : "opt";
            r = p < o->npols ? sim_run_store(ops, o->pols[p], blocks, &res)
                             : sim_run_opt(ops, blocks, &res);
            if (r < 0) {
                fprintf(stderr, "evict-sim: %s at %llu blocks failed: %s\n", name,
                        (unsigned long long)blocks, strerror(-r));
                break;
            }
            double mr = ratio(res.miss_bytes, res.read_bytes);
            if (!o->json)
                printf(" %8.4f", mr);
            json_t *e = json_object();
            json_object_set_new(e, "size", json_string(o->sizes[s].text));
            json_object_set_new(e, "cache_blocks", json_integer((json_int_t)blocks));
            json_object_set_new(e, "policy", json_string(name));
            json_object_set_new(e, "miss_ratio", json_real(mr));
            json_object_set_new(e, "block_miss_ratio",
                                json_real(ratio(res.miss_blocks, res.read_blocks)));
            json_object_set_new(e, "evictions", json_integer((json_int_t)res.evictions));
            json_array_append_new(results, e);
        }
        if (!o->json)
            printf("\n");
        fflush(stdout);
    }
    json_object_set_new(root, "results", results);
    if (r == 0 && o->json) {
        char *txt = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
        if (txt)
            puts(txt);
        free(txt);
    }
    json_decref(root);
    return r;
}

int sim_trace_main(int argc, char **argv)
{
    struct topts o = {0};
    if (parse(argc, argv, &o) < 0)
        return 2;
    struct trace t;
    int r = trace_load(o.path, &o.trace, &t);
    if (r < 0) {
        fprintf(stderr, "evict-sim: cannot load %s: %s\n", o.path, strerror(-r));
        return 1;
    }
    struct sim_ops ops;
    r = sim_ops_build(&t, o.by_content, o.merge, &ops);
    if (r == 0 && ops.read_blocks == 0) {
        fprintf(stderr, "evict-sim: %s has no reads\n", o.path);
        r = -EINVAL;
    }
    if (r == 0)
        r = run_all(&o, &t, &ops);
    sim_ops_free(&ops);
    trace_free(&t);
    return r < 0 ? 1 : 0;
}
