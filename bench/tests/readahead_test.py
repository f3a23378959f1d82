#!/usr/bin/env python3
"""Read-ahead pays for itself (issue 13, item 3), checked on two generated
DiskSim traces replayed through a real shoald at QD1 over nbdkit (the way
bench/readahead-check replays the shared traces), with the NBD default
read-ahead (64K) and with --readahead off:

- short streams: 1000 runs of 5 sequential 4 KiB reads at random places,
  each run's fourth miss qualifying for read-ahead and the blocks it
  fetches beyond the fifth going unread. With the budget
  (core/ra_budget.h) the array serves at most the first window's 4 blocks,
  1/1024 block per sequential miss and 1/64 per block read ahead and used
  more than without read-ahead.
- one long stream: 4096 sequential 4 KiB reads. Read-ahead must cut the
  back end requests at least in half, for at most one largest window
  (16 blocks) of extra bytes, and the replay's bytes must be right (the
  replay checks nothing; the daemon's counters are compared with the
  trace's own totals).

Environment: SHOALD, SHOAL_REPLAY (set by bench/meson.build). Exit 77 only
when nbdkit or a binary is missing."""
import json
import os
import random
import shutil
import sys
import tempfile
from importlib.machinery import SourceFileLoader

SHOALD = os.environ.get("SHOALD", "")
REPLAY = os.environ.get("SHOAL_REPLAY", "")
HERE = os.path.dirname(os.path.abspath(__file__))
FAILS = 0
BLOCK = 4096


def check(cond, what):
    global FAILS
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS += 1


def write_trace(path, blocks):
    """Reads of the given 4 KiB block numbers, in order (DiskSim ASCII)."""
    with open(path, "w") as f:
        for i, b in enumerate(blocks):
            f.write("%d 0 %d 8 1\n" % (i * 1000, b * 8))


def main():
    if not (os.access(SHOALD, os.X_OK) and os.access(REPLAY, os.X_OK)):
        print("SKIP: SHOALD or SHOAL_REPLAY not built")
        return 77
    if not shutil.which("nbdkit"):
        print("SKIP: nbdkit is missing")
        return 77
    rac = SourceFileLoader("readahead_check",
                           os.path.join(HERE, "..", "readahead-check")).load_module()
    # readahead-check finds src/shoald and bench/shoal-replay in a build tree.
    build = os.path.dirname(os.path.dirname(os.path.abspath(SHOALD)))
    if os.path.realpath(os.path.join(build, "bench", "shoal-replay")) != os.path.realpath(REPLAY):
        print("SKIP: shoald and shoal-replay are not in one build tree")
        return 77

    rnd = random.Random(13)
    short = []
    for _ in range(1000):
        start = rnd.randrange(0, 1 << 18) * 16 + rnd.randrange(0, 8)
        short += range(start, start + 5)
    long_stream = list(range(1 << 20, (1 << 20) + 4096))

    with tempfile.TemporaryDirectory(prefix="shoal-ra-test.") as work:
        for name, blocks in (("short streams", short), ("long stream", long_stream)):
            path = os.path.join(work, name.replace(" ", "-") + ".disksim")
            write_trace(path, blocks)
            on = rac.replay(build, work, path, "disksim", 16, True)
            off = rac.replay(build, work, path, "disksim", 16, False)
            client = len(blocks) * BLOCK
            print(f"{name}: back end bytes {on['backend_read_bytes']} with read-ahead, "
                  f"{off['backend_read_bytes']} without; requests {on['backend_read_ops']} / "
                  f"{off['backend_read_ops']}; hit ratio {on['hit_ratio']:.3f} / "
                  f"{off['hit_ratio']:.3f}", flush=True)
            check(on["read_bytes"] == client and off["read_bytes"] == client,
                  f"{name}: the daemon saw every client byte ({client})")
            check(off["backend_read_bytes"] <= client,
                  f"{name}: without read-ahead the back end served at most the client bytes")
            extra = on["backend_read_bytes"] - off["backend_read_bytes"]
            if name == "short streams":
                used = int(on["hit_ratio"] * client)  # at most what read-ahead brought
                bound = 4 * BLOCK + client // 1024 + used // 64
                check(extra <= bound,
                      f"{name}: read-ahead cost at most {bound} more back end bytes ({extra})")
            else:
                check(on["backend_read_ops"] * 2 <= off["backend_read_ops"],
                      f"{name}: read-ahead at least halved the back end requests "
                      f"({on['backend_read_ops']} vs {off['backend_read_ops']})")
                check(0 <= extra <= 16 * BLOCK,
                      f"{name}: at most one window of extra bytes ({extra})")
    print(f"{FAILS} failure(s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
