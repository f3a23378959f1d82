#!/usr/bin/python3
"""Multi-connection consistency (python3-libnbd).

1. Four connections write disjoint regions, flush, and each reads what
   the others wrote (CAN_MULTI_CONN: a flush on one connection makes
   every acknowledged write visible on all of them).
2. Writers and readers on one volume at once, each on its own connection.
   Every 4 KiB block carries (block, version) in each 512-byte sector.
   For every block of every read, let lo = the last version acknowledged
   before the read was sent and hi = the last version sent before it
   completed:
   - no write in flight (lo == hi): the block must be exactly version lo
     (anything else is a stale or wrong read);
   - a write in flight (lo < hi): every byte must come from a version in
     lo..hi (old or new data, nothing older, no garbage).
   A torn block (old and new mixed) is allowed in the second case: the NBD
   protocol does not make overlapping requests atomic, and the file back
   end cannot (buffered pread racing pwrite tears even inside a sector;
   `nbdkit file` shows the same). SHOAL_IT_STRICT_ATOMIC=1 requires one
   whole version per 4 KiB block anyway, for work on that.
   At the end, the volume (read twice: from the back end and from RAM) and
   the backing file hold the last version of every block.
"""
import os
import random
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, check, log  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
BS = 4096
SECTOR = 512


def block_data(blk, ver):
    out = bytearray()
    for sec in range(BS // SECTOR):
        head = struct.pack("<QQQ", 0x5348_4F41_4C21, blk, ver) + struct.pack("<Q", sec)
        out += head + bytes([(blk + ver + sec) & 0xFF]) * (SECTOR - len(head))
    return bytes(out)


STRICT_ATOMIC = os.environ.get("SHOAL_IT_STRICT_ATOMIC") == "1"


def version_bytes(blk, ver):
    return block_data(blk, ver) if ver else bytes(BS)


def check_block(got, blk, first_sec, lo, hi):
    """None if the bytes of block blk (from sector first_sec on) are
    acceptable for a read that raced versions lo..hi, else a reason."""
    start = first_sec * SECTOR
    if got == version_bytes(blk, lo)[start:]:
        return None
    if lo == hi:
        return f"no write in flight, expected version {lo}: " + describe_block(got, blk, start, lo, hi)
    refs = [version_bytes(blk, v)[start:] for v in range(lo, hi + 1)]
    if STRICT_ATOMIC:
        if any(got == r for r in refs):
            return None
        return f"not one whole version of {lo}..{hi}: " + describe_block(got, blk, start, lo, hi)
    for i, byte in enumerate(got):
        if not any(r[i] == byte for r in refs):
            return (f"byte {start + i} is from no version in {lo}..{hi}: "
                    + describe_block(got, blk, start, lo, hi))
    return None


def describe_block(got, blk, start, lo, hi):
    parts = []
    for v in range(max(0, lo - 1), hi + 2):
        ref = version_bytes(blk, v)[start:]
        parts.append(f"v{v}:{sum(1 for a, b in zip(got, ref) if a == b)}/{len(got)}")
    return f"header {got[:32].hex()}, bytes matching " + " ".join(parts)


def multi_writers(d, img):
    hs = [d.open("a") for _ in range(4)]
    for h in hs:
        check(h.can_multi_conn(), "server does not advertise CAN_MULTI_CONN")
    region = 2 * MiB
    pats = [os.urandom(region) for _ in hs]
    # Warm every connection's view first, so stale cached data would show.
    for i, h in enumerate(hs):
        for j in range(len(hs)):
            h.pread(region, j * region)

    def writer(i):
        h = hs[i]
        for off in range(0, region, 128 * 1024):
            h.pwrite(pats[i][off:off + 128 * 1024], i * region + off)
        h.flush()

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(len(hs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i, h in enumerate(hs):
        for j in range(len(hs)):
            got = h.pread(region, j * region)
            check(got == pats[j], f"connection {i} reads stale data in region of writer {j}")
    with open(img, "rb") as f:
        for j in range(len(hs)):
            check(f.read(region) == pats[j], f"backing file region {j} after flush")
    for h in hs:
        h.shutdown()


def readers_and_writers(d, img, base, nblocks, seconds):
    # base: a never-written (all zero = version 0) area past the multi-writer regions
    nwriters, nreaders = 3, 3
    sent = [0] * nblocks   # highest version whose write was sent
    acked = [0] * nblocks  # highest version whose write was acknowledged
    errors = []
    stop = threading.Event()
    counts = {"reads": 0, "writes": 0, "checked": 0, "raced": 0, "torn": 0}
    lock = threading.Lock()

    def writer(wid):
        h = d.open("a")
        rnd = random.Random(wid)
        mine = [b for b in range(nblocks) if b % nwriters == wid]
        try:
            while not stop.is_set():
                # 1-4 contiguous blocks of this writer's, each with its own version
                first = rnd.choice(mine)
                run = [b for b in range(first, min(first + 4 * nwriters, nblocks), nwriters)]
                run = run[:rnd.randint(1, 4)]
                for b in run:
                    v = sent[b] + 1
                    sent[b] = v
                    flags = nbd.CMD_FLAG_FUA if rnd.random() < 0.1 else 0
                    h.pwrite(block_data(b, v), base + b * BS, flags)
                    acked[b] = v
                with lock:
                    counts["writes"] += len(run)
                if rnd.random() < 0.05:
                    h.flush()
        except Exception as e:  # noqa: BLE001
            errors.append(f"writer {wid}: {e!r}")
        finally:
            h.shutdown()

    def reader(rid):
        h = d.open("a")
        rnd = random.Random(100 + rid)
        try:
            while not stop.is_set():
                first = rnd.randrange(nblocks)
                n = rnd.randint(1, min(16, nblocks - first))
                # sometimes sector-aligned but not block-aligned
                s_off = rnd.randrange(BS // SECTOR) if rnd.random() < 0.3 else 0
                off = base + first * BS + s_off * SECTOR
                length = n * BS - s_off * SECTOR
                lo = acked[first:first + n]
                buf = h.pread(length, off)
                hi = sent[first:first + n]
                for i in range(n):
                    blk = first + i
                    first_sec = s_off if i == 0 else 0
                    p = i * BS - s_off * SECTOR + first_sec * SECTOR
                    got = buf[p:p + BS - first_sec * SECTOR]
                    why = check_block(got, blk, first_sec, lo[i], hi[i])
                    if why:
                        errors.append(f"reader {rid}: block {blk}: {why}")
                        return
                    if lo[i] < hi[i]:
                        with lock:
                            counts["raced"] += 1
                            if all(got != version_bytes(blk, v)[first_sec * SECTOR:]
                                   for v in range(lo[i], hi[i] + 1)):
                                counts["torn"] += 1
                with lock:
                    counts["reads"] += 1
                    counts["checked"] += n
        except Exception as e:  # noqa: BLE001
            errors.append(f"reader {rid}: {e!r}")
        finally:
            h.shutdown()

    ts = [threading.Thread(target=writer, args=(i,)) for i in range(nwriters)]
    ts += [threading.Thread(target=reader, args=(i,)) for i in range(nreaders)]
    for t in ts:
        t.start()
    deadline = time.time() + seconds
    while time.time() < deadline and not errors:
        time.sleep(0.1)
    stop.set()
    for t in ts:
        t.join(60)
        check(not t.is_alive(), "a client thread hung")
    # Final state, checked even after a failed read, to tell a transient
    # torn read from wrong data left in the cache: through NBD (twice: the
    # second is served from RAM) and in the backing file.
    h = d.open("a")
    got1 = h.pread(nblocks * BS, base)
    got2 = h.pread(nblocks * BS, base)
    h.shutdown()
    with open(img, "rb") as f:
        f.seek(base)
        disk = f.read(nblocks * BS)
    final = []
    for b in range(nblocks):
        want = block_data(b, acked[b]) if acked[b] else bytes(BS)
        for what, buf in (("first read", got1), ("second read", got2), ("backing file", disk)):
            if buf[b * BS:(b + 1) * BS] != want:
                final.append(f"{what}: block {b} is not version {acked[b]}")
    check(not errors and not final,
          "; ".join(errors[:5] + final[:5]) +
          ("" if final else " (final state correct: the bad data was not kept)"))
    log(f"concurrent: {counts['writes']} block writes, {counts['reads']} reads "
        f"({counts['checked']} blocks checked, {counts['raced']} raced a write, "
        f"{counts['torn']} of those torn)")
    check(counts["reads"] > 50 and counts["writes"] > 50, f"too little I/O: {counts}")
    check(d.vstats("a")["read_hit_bytes"] > 0, "no read was served from RAM")


def main():
    img = itlib.make_file(os.path.join(TMP, "a.img"), 32 * MiB, os.urandom(8 * MiB))
    d = Shoald([f"a={img}"], ["-m", "64M"])
    multi_writers(d, img)
    readers_and_writers(d, img, base=16 * MiB, nblocks=256, seconds=float(os.environ.get("SHOAL_IT_SECONDS", 6)))
    d.stop()
    # Again with a tiny cache (256 KiB for 2 MiB of blocks): evictions race too.
    d = Shoald([f"a={img}"], ["-m", "256K"])
    readers_and_writers(d, img, base=20 * MiB, nblocks=512, seconds=float(os.environ.get("SHOAL_IT_SECONDS", 4)))
    check(d.stats()["cache"]["evictions"] > 0, "no evictions with a 256K cache")
    d.stop()


itlib.run(main)
