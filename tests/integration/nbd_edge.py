#!/usr/bin/python3
"""nbdsh-level edge cases (python3-libnbd): out-of-range, oversized and
zero-length requests, unknown flags, read-only exports, and each command
(FLUSH, FUA, TRIM, WRITE_ZEROES with NO_HOLE and FAST_ZERO, CACHE,
BLOCK_STATUS) checked against the backing file."""
import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, check, expect_error, log  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
SIZE = 8 * MiB
BIG = 40 * MiB


def file_bytes(path, off, length):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(length)


def main():
    img = os.path.join(TMP, "a.img")
    rand = os.urandom(4 * MiB)
    itlib.make_file(img, SIZE, rand)  # [0, 4M) random, [4M, 8M) hole
    big = itlib.make_file(os.path.join(TMP, "big.img"), BIG)
    d = Shoald([f"a={img}", f"big={big}"], ["-m", "64M"])

    h = d.open("a", meta=True)
    check(h.get_size() == SIZE, f"size {h.get_size()}")
    check(h.can_meta_context("base:allocation"), "base:allocation not negotiated")
    check(h.can_fast_zero(), "server does not advertise NBD_FLAG_SEND_FAST_ZERO")
    check(h.get_structured_replies_negotiated(), "structured replies not negotiated")
    h.set_strict_mode(0)  # let libnbd send what the server must refuse

    # --- out of range ---
    expect_error(lambda: h.pread(4096, SIZE), {errno.EINVAL}, "read at the end")
    expect_error(lambda: h.pread(8192, SIZE - 4096), {errno.EINVAL}, "read across the end")
    expect_error(lambda: h.pread(1, 1 << 62), {errno.EINVAL}, "read at offset 2^62")
    expect_error(lambda: h.pwrite(b"x" * 4096, SIZE), {errno.ENOSPC}, "write at the end")
    expect_error(lambda: h.pwrite(b"x" * 8192, SIZE - 4096), {errno.ENOSPC},
                 "write across the end")
    expect_error(lambda: h.pwrite(b"x", (1 << 64) - 1), {errno.ENOSPC, errno.EINVAL},
                 "write at offset 2^64-1 (offset + length overflows)")
    expect_error(lambda: h.trim(8192, SIZE - 4096), {errno.ENOSPC, errno.EINVAL},
                 "trim across the end")
    expect_error(lambda: h.zero(8192, SIZE - 4096), {errno.ENOSPC, errno.EINVAL},
                 "write zeroes across the end")
    expect_error(lambda: h.cache(8192, SIZE - 4096), {errno.EINVAL}, "cache across the end")
    check(os.path.getsize(img) == SIZE, "backing file grew")
    check(file_bytes(img, SIZE - 4096, 4096) == bytes(4096), "tail changed by refused ops")

    # --- zero-length requests: success or EINVAL, the connection lives on ---
    for what, fn in [("read", lambda: h.pread(0, 4096)),
                     ("write", lambda: h.pwrite(b"", 4096)),
                     ("trim", lambda: h.trim(0, 4096)),
                     ("zero", lambda: h.zero(0, 4096)),
                     ("cache", lambda: h.cache(0, 4096)),
                     ("read at end", lambda: h.pread(0, SIZE))]:
        try:
            fn()
        except nbd.Error as e:
            check(e.errnum == errno.EINVAL, f"zero-length {what}: errno {e.errnum} ({e.string})")
    check(h.pread(4096, 0) == rand[:4096], "read after zero-length requests")

    # --- unknown and misplaced flags ---
    expect_error(lambda: h.pread(4096, 0, flags=1 << 7), {errno.EINVAL}, "read with flag 0x80")
    expect_error(lambda: h.pwrite(b"y" * 4096, 0, flags=1 << 9), {errno.EINVAL},
                 "write with flag 0x200")
    check(file_bytes(img, 0, 4096) == rand[:4096], "refused write changed the file")
    expect_error(lambda: h.flush(flags=1 << 6), {errno.EINVAL}, "flush with flag 0x40")
    check(h.pread(4096, 0) == rand[:4096], "read after refused flags")

    # --- FLUSH and FUA ---
    before = d.vstats("a")
    h.flush()
    pat = b"\xf1" * 65536
    h.pwrite(pat, 65536, nbd.CMD_FLAG_FUA)
    check(file_bytes(img, 65536, 65536) == pat, "FUA write not in the backing file")
    after = d.vstats("a")
    check(after["flush_ops"] >= before["flush_ops"] + 1, "flush_ops did not grow")
    check(after["write_ops"] >= before["write_ops"] + 1, "write_ops did not grow")
    check(h.pread(65536, 65536) == pat, "read after FUA write")

    # --- TRIM: reads afterwards match the backing file (a punched hole) ---
    h.pread(MiB, MiB)  # cache it first, so a stale entry would show
    h.trim(MiB, MiB)
    check(h.pread(MiB, MiB) == file_bytes(img, MiB, MiB), "read after trim != backing file")
    h.trim(1000, 2 * MiB + 100)  # unaligned trim
    check(h.pread(8192, 2 * MiB) == file_bytes(img, 2 * MiB, 8192),
          "read after unaligned trim != backing file")

    # --- WRITE_ZEROES, NO_HOLE and FAST_ZERO ---
    h.pread(256 * 1024, 3 * MiB)
    h.zero(128 * 1024, 3 * MiB, nbd.CMD_FLAG_NO_HOLE)
    check(h.pread(128 * 1024, 3 * MiB) == bytes(128 * 1024), "read after zero (NO_HOLE)")
    check(file_bytes(img, 3 * MiB, 128 * 1024) == bytes(128 * 1024), "file after zero (NO_HOLE)")
    check(h.pread(4096, 3 * MiB + 128 * 1024) == rand[3 * MiB + 128 * 1024:3 * MiB + 132 * 1024],
          "zero spilled past its range")
    off = 3 * MiB + 200 * 1024 + 7
    try:
        h.zero(5000, off, nbd.CMD_FLAG_FAST_ZERO)
        check(h.pread(5000, off) == bytes(5000), "read after fast zero")
        check(file_bytes(img, off, 5000) == bytes(5000), "file after fast zero")
    except nbd.Error as e:
        check(e.errnum == errno.ENOTSUP, f"fast zero: errno {e.errnum}, expected success or ENOTSUP")
        check(h.pread(5000, off) == rand[off:off + 5000], "failed fast zero changed data")

    # --- CACHE: a prefetched range is then read from RAM ---
    s0 = d.vstats("a")
    h.cache(256 * 1024, 3 * MiB + 512 * 1024)
    s1 = d.vstats("a")
    check(s1["cache_ops"] == s0["cache_ops"] + 1, "cache_ops did not count the CACHE")
    data = h.pread(256 * 1024, 3 * MiB + 512 * 1024)
    check(data == rand[3 * MiB + 512 * 1024:3 * MiB + 768 * 1024], "read after CACHE")
    s2 = d.vstats("a")
    hit = s2["read_hit_bytes"] - s1["read_hit_bytes"]
    check(hit == 256 * 1024, f"read after CACHE: {hit} hit bytes of {256 * 1024}")

    # --- BLOCK_STATUS (base:allocation) ---
    extents = []

    def cb(ctx, offset, entries, err):
        if ctx == "base:allocation":
            pos = offset
            for i in range(0, len(entries), 2):
                extents.append((pos, entries[i], entries[i + 1]))
                pos += entries[i]
        return 0

    pos = 0
    while pos < SIZE:
        n = len(extents)
        h.block_status(SIZE - pos, pos, cb)
        check(len(extents) > n, f"block status at {pos} returned no extent")
        check(extents[n][0] == pos, f"block status at {pos} started at {extents[n][0]}")
        pos = extents[-1][0] + extents[-1][1]
    check(pos <= SIZE + 0, f"extents run past the end: {pos}")
    content = file_bytes(img, 0, SIZE)
    for start, length, flags in extents:
        if flags & nbd.STATE_ZERO:
            check(content[start:start + length] == bytes(length),
                  f"extent [{start}, +{length}) reported ZERO but holds data")
    # REQ_ONE: a single extent no longer than asked
    one = []
    h.block_status(SIZE, 0, lambda c, o, e, err: one.extend(e) or 0, nbd.CMD_FLAG_REQ_ONE)
    check(len(one) == 2, f"REQ_ONE returned {len(one) // 2} extents")
    expect_error(lambda: h.block_status(4096, SIZE, cb), {errno.EINVAL}, "block status at the end")

    # --- DF (don't fragment) read: one data chunk, same bytes ---
    chunks = []
    data = h.pread_structured(65536, 3 * MiB + 512 * 1024,
                              lambda sub, off, status, err: chunks.append((off, status)) or 0,
                              nbd.CMD_FLAG_DF)
    check(data == rand[3 * MiB + 512 * 1024:3 * MiB + 576 * 1024], "DF read data")
    check(len(chunks) == 1, f"DF read came in {len(chunks)} chunks")

    # --- oversized requests (max block size is 32 MiB) on a 40 MiB volume ---
    hb = d.open("big")
    hb.set_strict_mode(0)
    check(hb.get_block_size(nbd.SIZE_MAXIMUM) == 32 * MiB, "maximum block size")
    check(len(hb.pread(32 * MiB, 0)) == 32 * MiB, "read of exactly 32 MiB")
    expect_error(lambda: hb.pread(32 * MiB + 4096, 0), {errno.EINVAL, errno.EOVERFLOW},
                 "read of 32 MiB + 4 KiB")
    check(hb.pread(4096, 0) == bytes(4096), "read after a refused oversized read")
    hw = d.open("big")
    hw.set_strict_mode(0)
    try:
        hw.pwrite(b"\x77" * (32 * MiB + 4096), 0)
        raise itlib.TestFailure("write of 32 MiB + 4 KiB succeeded")
    except nbd.Error as e:
        # EINVAL, or a dropped connection: both are allowed by the protocol.
        log(f"oversized write refused: {e.string}")
    check(file_bytes(big, 0, 4096) == bytes(4096), "refused oversized write reached the file")
    h3 = d.open("big")
    check(h3.pread(4096, 0) == bytes(4096), "new connection after an oversized write")
    h3.shutdown()

    st = d.vstats("a")
    check(st["errors"] > 0, "refused requests were not counted in errors")
    h.shutdown()
    hb.shutdown()
    d.stop()

    # --- read-only: -r for the whole daemon ---
    d = Shoald([f"a={img}"], ["-r"])
    h = d.open("a")
    check(h.is_read_only(), "-r export is not read-only")
    h.set_strict_mode(0)
    snapshot = file_bytes(img, 0, SIZE)
    expect_error(lambda: h.pwrite(b"z" * 4096, 0), {errno.EPERM}, "write to a read-only export")
    expect_error(lambda: h.trim(4096, 0), {errno.EPERM}, "trim on a read-only export")
    expect_error(lambda: h.zero(4096, 0), {errno.EPERM}, "zero on a read-only export")
    check(h.pread(4096, 0) == snapshot[:4096], "read from a read-only export")
    h.flush()  # allowed (nothing to flush)
    check(file_bytes(img, 0, SIZE) == snapshot, "read-only export changed the file")
    h.shutdown()
    d.stop()

    # --- read-only per volume, from a config file ---
    cfg = os.path.join(TMP, "shoald.ini")
    with open(cfg, "w") as f:
        f.write(f"[shoald]\ncache-size = 32M\n\n[volume ro]\nbacking = {img}\nreadonly = true\n\n"
                f"[volume rw]\nbacking = {big}\n")
    d = Shoald([], ["-c", cfg])
    h = d.open("ro")
    check(h.is_read_only(), "config readonly=true volume is not read-only")
    h.set_strict_mode(0)
    expect_error(lambda: h.pwrite(b"z" * 4096, 0), {errno.EPERM}, "write to a read-only volume")
    h2 = d.open("rw")
    check(not h2.is_read_only(), "config volume without readonly is read-only")
    h2.pwrite(b"w" * 4096, 0)
    check(file_bytes(big, 0, 4096) == b"w" * 4096, "write to the rw volume of a config")
    check(file_bytes(img, 0, SIZE) == snapshot, "read-only volume changed the file")
    h.shutdown()
    h2.shutdown()
    d.stop()


itlib.run(main)
