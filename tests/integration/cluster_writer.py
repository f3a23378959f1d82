#!/usr/bin/env python3
"""Acknowledged writes, for cluster_netns.sh's node kill.

  cluster_writer.py write URI LOG SLOTS PAUSE_MS   write slot 0, 1, ... (16 KiB each,
      at offset slot * 16 KiB, a pattern naming the slot) through libnbd
      at QD1, PAUSE_MS apart (so the test can kill mid-way); after each write is acknowledged, its slot is appended to
      LOG. Runs until every slot is written or the server goes away (the
      test kills it): exit 0 either way, 1 if nothing was acknowledged.
  cluster_writer.py check IMAGE LOG       every slot in LOG reads back
      with its pattern from IMAGE (a copy of the volume read later,
      through another node). Exit 0, or 1 naming the first bad slot.

Slots are never written twice, so a write that was in flight when the
server died (not acknowledged, maybe stored) cannot hide an acknowledged
one."""
import os
import sys
import time

SLOT = 16384


def pattern(slot):
    unit = b"slot%08d-acked;" % slot
    return (unit * (SLOT // len(unit) + 1))[:SLOT]


def write(uri, log, slots, pause):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    done = 0
    with open(log, "a") as f:
        try:
            for slot in range(slots):
                h.pwrite(pattern(slot), slot * SLOT)
                f.write("%d\n" % slot)
                f.flush()
                os.fsync(f.fileno())
                done += 1
                time.sleep(pause)
        except nbd.Error as e:
            print("cluster_writer.py: write stopped after %d slots: %s" % (done, e),
                  file=sys.stderr)
    return 0 if done else 1


def check(image, log):
    with open(log) as f:
        slots = [int(x) for x in f.read().split()]
    with open(image, "rb") as f:
        for slot in slots:
            f.seek(slot * SLOT)
            if f.read(SLOT) != pattern(slot):
                print("cluster_writer.py: acknowledged slot %d (offset %d) was lost"
                      % (slot, slot * SLOT), file=sys.stderr)
                return 1
    print("%d acknowledged writes read back" % len(slots))
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "write":
        return write(argv[2], argv[3], int(argv[4]), int(argv[5]) / 1000)
    if len(argv) == 4 and argv[1] == "check":
        return check(argv[2], argv[3])
    print("usage: see cluster_writer.py's docstring", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
