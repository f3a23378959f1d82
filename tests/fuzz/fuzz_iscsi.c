/* libFuzzer targets for the iSCSI front end: each input is what an
 * initiator sends, fed through a socketpair into the real connection code
 * (iscsi_serve_connection: the PDU parser, digests, login negotiation and
 * CHAP-less authentication, text, then the full feature phase with its
 * task table, R2T, the SCSI layer, the core and the back end).
 *
 *   fuzz_iscsi      the input is the whole conversation from the first
 *                   login PDU (login keys, discovery, PDUs before login);
 *   fuzz_iscsi_ffp  a canned login (normal session to target "fuzz",
 *                   ImmediateData=Yes, InitialR2T=No, CmdSN 1) goes first,
 *                   so the input is all full-feature PDUs.
 *
 * Volume "fuzz": 4 MiB + 512 bytes on a memfd (read-write), so every
 * length check of the SCSI layer against the LU's end is reachable.
 * Seeds: tests/fuzz/corpus/fuzz_iscsi{,_ffp} (make_iscsi_seeds.py).
 *
 * Set SHOAL_FUZZ_LOG=debug to see the daemon's log while reproducing. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/bufpool.h"
#include "core/engine.h"
#include "frontend/iscsi/server.h"
#include "fuzz_client.h"
#include "fuzz_log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VOL_SIZE ((4u << 20) + 512)

static struct engine *engine;
static struct iscsi_server *server;

static int add_volume(void)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, VOL_SIZE) < 0)
        return -1;
    char blk[4096];
    for (unsigned off = 0; off + sizeof blk <= VOL_SIZE; off += 64 * 1024) {
        memset(blk, (int)(off >> 16) + 1, sizeof blk);
        if (pwrite(fd, blk, sizeof blk, off) != (ssize_t)sizeof blk)
            return -1;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd); /* fd stays open */
    struct volume_config vc = {.name = "fuzz", .backend = {.spec = path}};
    return engine_add_volume(engine, &vc);
}

static void stop_all(void)
{
    iscsi_server_stop(server);
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
    struct engine_config ec = {.cache_bytes = 512u * 1024, .workers = 4};
    if (engine_create(&ec, &engine) < 0 || add_volume() < 0) {
        fprintf(stderr, "fuzz: cannot create the engine or its volume\n");
        abort();
    }
    struct iscsi_options o;
    iscsi_options_init(&o);
    o.off = true; /* no portal: connections come from fuzz_serve_plain */
    o.login_timeout_ms = 5000;
    struct frontend_config fc = {.opts = &o};
    if (iscsi_server_start(engine, &fc, &server) < 0) {
        fprintf(stderr, "fuzz: cannot start the iSCSI server\n");
        abort();
    }
    atexit(stop_all);
    return 0;
}

static void serve(void *srv, int fd)
{
    iscsi_serve_connection(srv, fd);
}

#ifdef FUZZ_FFP
#define LOGIN_KEYS                                                                                 \
    "InitiatorName=iqn.2026-12.org.shoal.fuzz:i\0SessionType=Normal\0"                             \
    "TargetName=iqn.2026-12.org.shoal:fuzz\0ImmediateData=Yes\0InitialR2T=No\0"                    \
    "MaxRecvDataSegmentLength=8192\0FirstBurstLength=65536\0MaxBurstLength=262144\0"               \
    "MaxOutstandingR2T=2\0"
static uint8_t canned[48 + ((sizeof(LOGIN_KEYS) - 1 + 3) & ~3u)];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!canned[0]) {
        uint32_t n = sizeof(LOGIN_KEYS) - 1;
        canned[0] = 0x43;                /* Login Request, immediate */
        canned[1] = 0x80 | (1 << 2) | 3; /* T, CSG operational, NSG full feature */
        canned[5] = (uint8_t)(n >> 16);
        canned[6] = (uint8_t)(n >> 8);
        canned[7] = (uint8_t)n;
        canned[8] = 0x80; /* ISID */
        canned[13] = 1;
        canned[27] = 1; /* CmdSN 1 */
        memcpy(canned + 48, LOGIN_KEYS, n);
    }
    fuzz_serve_plain(serve, server, canned, sizeof canned, data, size);
    return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_serve_plain(serve, server, NULL, 0, data, size);
    return 0;
}
#endif
