/* libFuzzer targets for the NBD front end: each input is what a client
 * sends, fed through a socketpair into the real server code path
 * (nbd_serve_connection: handshake, then the transmission loop, the
 * worker pool, the volume layer, the cache and the back ends).
 *
 *   fuzz_nbd           the input starts right after the server's greeting
 *                      (client flags, options, then maybe requests);
 *   fuzz_nbd_transmit  a canned handshake (client flags, STRUCTURED_REPLY,
 *                      SET_META_CONTEXT base:allocation, GO "fuzz") is sent
 *                      first, so the input is all transmission requests.
 *
 * Exports (sizes also in craft_seeds.py and make_corpus.sh):
 *   "fuzz"    (also the default "") 5 GiB + 1 MiB + 1000 bytes on the
 *             sparse memory back end (sparse_be.c), every capability, 64 KiB
 *             read-ahead. Larger than any 32-bit length, so every length
 *             check in the transmission code is reachable: READ/WRITE past
 *             the 32 MiB cap, TRIM/WRITE_ZEROES/CACHE/BLOCK_STATUS of up to
 *             4 GiB inside the export, past its end, and offset+length
 *             wrapping 2^64; odd-sized, so the tail block is reachable too.
 *   "blk512"  40 MiB + 1536 bytes, sparse, min block 512 (unaligned requests
 *             are refused except at the end), no native FUA, trim, zero or
 *             extents: the generic fallbacks in backend.c run (zero by
 *             writing, FUA by flush); 256 KiB read-ahead.
 *   "small"   1 MiB + 1234 bytes, read-write, a file back end on a memfd.
 *   "ro"      64 KiB + 100 bytes, read-only, a file back end on a memfd.
 * The sparse volumes keep at most 64 / 16 MiB of written data (more fails
 * with ENOSPC, an ordinary back end error), so long runs stay bounded, and
 * requests over untouched ranges cost no memory. The cache (512 KiB) is
 * smaller than the data, so inputs also evict. State (cached blocks,
 * written data) carries over between inputs, as it does between a real
 * server's clients.
 *
 * A helper thread plays the client (fuzz_client.c): it writes the input,
 * shuts down its sending side and reads (and drops) everything the server
 * sends until the server closes, so neither side can block the other.
 *
 * Set SHOAL_FUZZ_LOG=debug to see the daemon's log while reproducing. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bufpool.h"
#include "common/log.h"
#include "core/engine.h"
#include "core/volume.h"
#include "frontend/frontend.h"
#include "frontend/nbd/proto.h"
#include "frontend/nbd/server.h"
#include "fuzz_client.h"
#include "fuzz_log.h"
#include "sparse_be.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BIG_SIZE    ((UINT64_C(5) << 30) + (1u << 20) + 1000)
#define B512_SIZE   ((40u << 20) + 3 * 512)
#define SMALL_SIZE  ((1u << 20) + 1234)
#define RO_SIZE     (64u * 1024 + 100)
#define CACHE_BYTES (512u * 1024)

static struct engine *engine;
static struct nbd_server *server;

static int add_memfd_volume(const char *name, size_t size, bool readonly)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        return -errno;
    /* Some non-zero content so reads and dedup have something to do. */
    for (size_t off = 0; off + 4096 <= size; off += 64 * 1024) {
        char blk[4096];
        memset(blk, (int)(off >> 16) + 1, sizeof blk);
        if (pwrite(fd, blk, sizeof blk, (off_t)off) != (ssize_t)sizeof blk)
            return -errno;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd); /* fd stays open */
    struct volume_config vc = {
        .name = name,
        .backend = {.spec = path, .readonly = readonly},
        .readonly = readonly,
    };
    return engine_add_volume(engine, &vc);
}

static int add_sparse_volume(const char *name, const struct sparse_be_config *sc, int32_t readahead)
{
    struct backend *be;
    int r = sparse_be_new(sc, &be);
    if (r < 0)
        return r;
    struct volume_config vc = {
        .name = name,
        .backend = {.spec = be->spec},
        .readahead = readahead,
    };
    return engine_add_volume_backend(engine, &vc, be);
}

static int add_volumes(void)
{
    const struct sparse_be_config big = {
        .size = BIG_SIZE,
        .pattern_bytes = 8u << 20,
        .max_bytes = 64u << 20,
        .caps = BE_CAN_FLUSH | BE_CAN_FUA | BE_CAN_TRIM | BE_CAN_ZERO | BE_CAN_FAST_ZERO |
                BE_CAN_EXTENTS | BE_CAN_MULTI_CONN,
        .min_block = 1,
    };
    const struct sparse_be_config b512 = {
        .size = B512_SIZE,
        .pattern_bytes = 1u << 20,
        .max_bytes = 16u << 20,
        .caps = BE_CAN_FLUSH,
        .min_block = 512,
    };
    int r = add_sparse_volume("fuzz", &big, 64 * 1024);
    if (r == 0)
        r = add_sparse_volume("blk512", &b512, 256 * 1024);
    if (r == 0)
        r = add_memfd_volume("small", SMALL_SIZE, false);
    if (r == 0)
        r = add_memfd_volume("ro", RO_SIZE, true);
    return r;
}

/* At exit, stop the server, then the engine (joining its worker threads)
 * before the leak check (registered after LeakSanitizer's own handler, so
 * it runs first): a worker still alive, or one the pool was just adding,
 * would otherwise be reported as leaking its per-thread scratch. The
 * daemon's order: front end, engine. */
static void stop_all(void)
{
    nbd_server_stop(server);
    server = NULL;
    engine_destroy(engine);
    engine = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    fuzz_log_setup();
    bufpool_init(64u << 20);
    struct engine_config ec = {.cache_bytes = CACHE_BYTES, .workers = 4};
    if (engine_create(&ec, &engine) < 0 || add_volumes() < 0) {
        fprintf(stderr, "fuzz: cannot create the engine or its volumes\n");
        abort();
    }
    struct nbd_options no;
    nbd_options_init(&no); /* no listeners: connections come from fuzz_serve */
    no.handshake_timeout_ms = 5000;
    struct frontend_config fc = {.opts = &no};
    if (nbd_server_start(engine, &fc, &server) < 0) {
        fprintf(stderr, "fuzz: cannot start the NBD server\n");
        abort();
    }
    atexit(stop_all);
    return 0;
}

#ifdef FUZZ_TRANSMIT
/* Client flags + STRUCTURED_REPLY + SET_META_CONTEXT("fuzz", base:allocation)
 * + GO("fuzz"). */
/* clang-format off */
static const uint8_t canned[] = {
    0, 0, 0, 3, /* FIXED_NEWSTYLE | NO_ZEROES */
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 8, 0, 0, 0, 0,
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 10, 0, 0, 0, 31,
    0, 0, 0, 4, 'f', 'u', 'z', 'z', 0, 0, 0, 1, 0, 0, 0, 15,
    'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
    'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 7, 0, 0, 0, 10,
    0, 0, 0, 4, 'f', 'u', 'z', 'z', 0, 0,
};
/* clang-format on */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_serve(server, canned, sizeof canned, data, size);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_serve(server, NULL, 0, data, size);
    return 0;
}
#endif
