#!/usr/bin/python3
"""Big ranges from real clients: TRIM and WRITE_ZEROES of 512 MiB, 1 GiB
and of the whole export in one request (issue 9, defect 1: a per-worker
bitmap sized for 32 MiB overflowed on a longer trim or zero).

Two volumes of 4 GiB - 4 KiB (the largest size whose whole extent still
fits the 32-bit length of one NBD request), sparse files:
  - "f": shoald's file back end;
  - "k": an upstream NBD export, nbdkit's file plugin.
Both back ends punch holes on TRIM (fallocate PUNCH_HOLE, exact to the
byte), so a trimmed range must read back as zeros, like a zeroed one.

Marks: 64 KiB of random data at chosen places, several straddling the
edges of the ranges about to change (512 MiB, 1 GiB, unaligned starts) and
one at the very end of the volume. Before each step the marks are written
fresh through shoald and read back (so they are cached: a stale cached copy
would show); then one big request:
  1. qemu-io "discard 0 512M"
  2. qemu-io "write -z 0 1G"
  3. libnbd trim of 1 GiB at an unaligned offset
  4. libnbd zero of 1 GiB at an unaligned offset (FUA)
  5. libnbd trim of the whole export in one request
  6. libnbd zero of the whole export in one request
After each step: every mark reads back through shoald as expected (zeros
inside the range, the data outside it intact, to the byte at the edges),
a few 1 MiB windows inside the range read zeros, the backing file holds the
same, and every data extent of the backing file (SEEK_DATA) outside the
marks is zeros. shoald must stay up and exit 0 on SIGTERM (in the ASan
build: no sanitizer report).
"""
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reliability"))
import rlib  # noqa: E402
from rlib import TestFailure, check, log  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
SIZE = 4 * GiB - 4096
MARK = 64 * 1024


def marks_for(size):
    m = sorted({0, 128 * 1024 + 100, 256 * MiB - 32768, 512 * MiB - 32768, 768 * MiB,
                GiB - 32768, GiB + 100000, 1792 * MiB - 1000, 2 * GiB - 32768 + 100 - 5000,
                3 * GiB + 77, 3 * GiB + GiB // 2, size - MARK})
    assert all(a + MARK <= b for a, b in zip(m, m[1:])), "marks overlap"
    return m


class Vol:
    def __init__(self, name, path, d, size):
        self.name = name
        self.path = path
        self.d = d
        self.size = size
        self.marks = marks_for(size)
        self.want = {}
        self.rng = random.Random(ord(name[0]))
        self.h = d.open(name)

    def rewrite_marks(self):
        """Fresh random data in every mark, read back (cached)."""
        for m in self.marks:
            data = self.rng.randbytes(MARK)
            self.h.pwrite(data, m)
            self.want[m] = bytearray(data)
        self.h.flush()
        for m in self.marks:
            got = self.h.pread(MARK, m)
            check(got == self.want[m], f"{self.name}: mark {m:#x} does not read back right after write")

    def apply_zero(self, lo, hi):
        for m in self.marks:
            a, b = max(lo, m), min(hi, m + MARK)
            if a < b:
                self.want[m][a - m:b - m] = bytes(b - a)

    def first_diff(self, got, want):
        for i in range(len(want)):
            if got[i] != want[i]:
                return i
        return None

    def check_all(self, step, lo, hi):
        """Through shoald (a fresh connection and the old one) and in the file."""
        h2 = self.d.open(self.name)
        with open(self.path, "rb") as f:
            for m in self.marks:
                w = bytes(self.want[m])
                for who, getter in (("shoald", lambda: self.h.pread(MARK, m)),
                                    ("shoald (new connection)", lambda: h2.pread(MARK, m)),
                                    ("backing file", lambda: os.pread(f.fileno(), MARK, m))):
                    got = getter()
                    i = self.first_diff(got, w)
                    if i is not None:
                        x = m + i
                        where = "inside" if lo <= x < hi else "outside"
                        raise TestFailure(
                            f"{step}: volume {self.name}, {who}: byte {x} ({x:#x}, {where} the range"
                            f" [{lo:#x}, {hi:#x})) is {got[i]:#04x}, expected {w[i]:#04x}")
            # windows inside the range, away from the marks: zeros
            r = random.Random(lo ^ hi)
            for _ in range(6):
                if hi - lo < 2 * MiB:
                    break
                off = r.randrange(lo // 4096 + 1, (hi - MiB) // 4096) * 4096
                if any(off < m + MARK and m < off + MiB for m in self.marks):
                    continue
                got = h2.pread(MiB, off)
                check(got == bytes(MiB), f"{step}: volume {self.name}: [{off:#x}, +1 MiB) inside the"
                      f" range does not read as zeros through shoald")
                check(os.pread(f.fileno(), MiB, off) == bytes(MiB),
                      f"{step}: volume {self.name}: backing file [{off:#x}, +1 MiB) is not zeros")
            self.check_extents(step, f)
        h2.shutdown()

    def check_extents(self, step, f):
        """Every data extent of the backing file outside the marks is zeros
        (the file started empty: nothing else was ever written). A file
        system that reports zeroed (unwritten) ranges as data would make
        this a read of gigabytes: the scan stops after 512 MiB."""
        fd = f.fileno()
        off = 0
        scanned = 0
        while off < self.size:
            try:
                a = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break  # ENXIO: no data after off
            b = os.lseek(fd, a, os.SEEK_HOLE)
            x = a
            while x < b:
                n = min(MiB, b - x)
                buf = bytearray(os.pread(fd, n, x))
                for m in self.marks:
                    p, q = max(x, m), min(x + n, m + MARK)
                    if p < q:
                        buf[p - x:q - x] = bytes(q - p)
                if any(buf):
                    i = next(i for i, c in enumerate(buf) if c)
                    raise TestFailure(f"{step}: volume {self.name}: backing file byte {x + i:#x}"
                                      f" (outside every mark) is {buf[i]:#04x}, expected 0")
                x += n
                scanned += n
                if scanned >= 512 * MiB:
                    log(f"  {self.name}: over 512 MiB of data extents (zeroed ranges reported as"
                        " data?): extent scan stopped")
                    return
            off = b


def qemu_io(d, vol, cmd):
    out = subprocess.run(["qemu-io", "-f", "raw", "-c", cmd, d.uri(vol)], capture_output=True,
                         text=True, timeout=300)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "error" in text.lower() or "failed" in text.lower():
        raise TestFailure(f"qemu-io -c '{cmd}' on {vol}: exit {out.returncode}: {text.strip()[:500]}")
    log(f"  qemu-io {cmd!r} on {vol}: {text.strip().splitlines()[-1] if text.strip() else 'ok'}")


def steps(size):
    u1 = 768 * MiB + 512
    u2 = 2 * GiB - 32768 + 100
    return [
        ("qemu-io discard 0 512M", 0, 512 * MiB, ("qemu", "discard 0 512M")),
        ("qemu-io write -z 0 1G", 0, GiB, ("qemu", "write -z 0 1G")),
        ("libnbd trim 1 GiB at an unaligned offset", u1, u1 + GiB, ("trim", GiB, u1, 0)),
        ("libnbd zero 1 GiB at an unaligned offset (FUA)", u2, u2 + GiB,
         ("zero", GiB, u2, nbd.CMD_FLAG_FUA)),
        ("libnbd trim of the whole export in one request", 0, size, ("trim", size, 0, 0)),
        ("libnbd zero of the whole export in one request", 0, size, ("zero", size, 0, 0)),
    ]


def main():
    rlib.need("qemu-io", "nbdkit")
    T = rlib.TMP
    fpath = os.path.join(T, "f.img")
    kpath = os.path.join(T, "k.img")
    for p in (fpath, kpath):
        with open(p, "wb") as f:
            f.truncate(SIZE)
    kit = rlib.Nbdkit(os.path.join(T, "kit.sock"), ["file", kpath])
    d = rlib.Shoald([f"f={fpath}", f"k={kit.uri()}"], cache="64M")
    vols = [Vol("f", fpath, d, SIZE), Vol("k", kpath, d, SIZE)]
    for v in vols:
        check(v.h.get_size() == SIZE, f"{v.name}: export size {v.h.get_size()} != {SIZE}")
        check(v.h.can_trim() and v.h.can_zero(), f"{v.name}: trim/zero not offered")
    for step, lo, hi, how in steps(SIZE):
        for v in vols:
            try:
                v.rewrite_marks()
                log(f"{step} on {v.name}: [{lo:#x}, {hi:#x})")
                if how[0] == "qemu":
                    qemu_io(d, v.name, how[1])
                elif how[0] == "trim":
                    v.h.trim(how[1], how[2], flags=how[3])
                else:
                    v.h.zero(how[1], how[2], flags=how[3])
                check(d.alive(), "shoald died")
                v.apply_zero(lo, hi)
                v.check_all(f"after {step}", lo, hi)
            except (nbd.Error, TestFailure) as e:
                note = d.death_note()
                raise TestFailure(f"{step} on {v.name}: {e}" + (f" ({note})" if note else ""))
    for v in vols:
        v.h.shutdown()
    st = d.stats()
    errs = {v["name"]: v["errors"] for v in st["volumes"]}
    check(not any(errs.values()), f"shoald counted error replies: {errs}")
    d.stop(timeout=30)
    kit.stop()


if __name__ == "__main__":
    log(f"volumes of {SIZE} bytes (4 GiB - 4 KiB), file and nbdkit back ends")
    rlib.run(main)
