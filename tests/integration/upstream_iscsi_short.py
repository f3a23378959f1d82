#!/usr/bin/python3
"""The iSCSI back end against an upstream target that answers GOOD with
less data than asked (fake_iscsi_target.py): a READ(16) that comes back
short, with the residual underflow flagged (U bit) or not, and a WRITE(16)
the target says it took only half of. Each must fail the client's request
with EIO; nothing of the short read may be served or cached (the next read,
once the target behaves, returns the LUN's real bytes), and shoald stays
up."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import Shoald, check, log  # noqa: E402
from fake_iscsi_target import FakeTarget  # noqa: E402

import nbd  # noqa: E402

IQN = "iqn.2026-12.test.shoal:fake"
MiB = 1 << 20


def main():
    disk = os.urandom(1 * MiB)
    tgt = FakeTarget(disk, IQN)
    d = Shoald([f"a=iscsi://127.0.0.1:{tgt.port}/{IQN}/0"])
    h = nbd.NBD()
    h.connect_uri(d.uri("a"))
    check(h.get_size() == 1 * MiB, f"size {h.get_size()}")
    check(h.pread(4096, 0) == disk[:4096], "a normal read does not return the LUN's bytes")

    for mode, off in (("short", 64 * 1024), ("short-silent", 128 * 1024)):
        log(f"READ answered GOOD with half the data ({mode}): EIO, nothing cached")
        tgt.mode = mode
        try:
            got = h.pread(8192, off)
        except nbd.Error as e:
            check("EIO" in str(e), f"{mode}: error {e}")
        else:
            check(False, f"{mode}: a short read was served "
                  f"({'the right bytes' if got == disk[off:off + 8192] else 'wrong bytes'})")
        tgt.mode = "normal"
        check(h.pread(8192, off) == disk[off:off + 8192],
              f"{mode}: once the target behaves the read does not return the LUN's bytes")

    log("WRITE answered GOOD with an underflow (half taken): EIO")
    tgt.mode = "write-under"
    new = os.urandom(8192)
    try:
        h.pwrite(new, 256 * 1024)
    except nbd.Error as e:
        check("EIO" in str(e), f"write-under: error {e}")
    else:
        check(False, "a WRITE the target took only half of succeeded")
    tgt.mode = "normal"
    check(d.alive(), "shoald died")
    h.shutdown()
    d.stop()
    tgt.close()


itlib.run(main)
