#!/usr/bin/python3
"""Odd-sized images over --direct (O_DIRECT) are served byte for byte as
without it.

An image whose size is not a multiple of 4096 used to lose its last
partial block over --direct: the export's minimum block became 4096, so
libnbd (and qemu, nbdcopy) refused or clamped away the final bytes. For
each size class (size % 4096 in 1, 511, 512, 513, 4095, and the tiny
images of 1, 511 and 4097 bytes) and with and without --direct, through
python3-libnbd with its default strict alignment checks:
  - the export advertises minimum block 1 and preferred 4096;
  - the whole export, its tail and unaligned ranges across the last 4 KiB
    boundary read as the file's bytes;
  - writes (some FUA) and a write-zeroes over the tail, across the last
    boundary, at the first and last byte read back at once, and after a
    flush the file holds exactly what was written;
  - after an invalidate (reads come from the file again) and with the
    volume's acceleration off (reads and writes go straight to the back
    end, unaligned), the same;
  - nbdcopy copies the whole export (when installed);
  - over iSCSI (qemu-io, when it has the iscsi driver), the LU holds the
    image's whole 512-byte blocks and a 512-byte write that is not 4 KiB
    aligned lands in the file (O_DIRECT alone refused it).
The images live where O_DIRECT works (tmpfs may refuse it)."""
import atexit
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, TestFailure, check, log  # noqa: E402

import nbd  # noqa: E402

KiB = 1 << 10
BLK = 4096
SIZES = [64 * KiB + 1, 64 * KiB + 511, 64 * KiB + 512, 64 * KiB + 513, 64 * KiB + 4095,
         1, 511, 4097]


def direct_dir():
    """A directory whose files O_DIRECT can open: TMP, else /var/tmp, else
    the build directory (removed at exit)."""
    cands = [TMP, "/var/tmp", os.environ.get("BUILDDIR", "")]
    for base in cands:
        if not base or not os.path.isdir(base):
            continue
        d = TMP if base == TMP else tempfile.mkdtemp(prefix="shoal-it-direct_odd.", dir=base)
        probe = os.path.join(d, "probe")
        try:
            itlib.make_file(probe, BLK)
            os.close(os.open(probe, os.O_RDWR | os.O_DIRECT))
            os.unlink(probe)
            if d != TMP:
                atexit.register(shutil.rmtree, d, True)
            return d
        except OSError as e:
            log(f"note: no O_DIRECT in {base}: {e}")
            if d != TMP:
                shutil.rmtree(d, True)
    raise TestFailure("no directory here supports O_DIRECT (tried %s)"
                      % ", ".join(c for c in cands if c))


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def same(what, got, want):
    if got == want:
        return
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), n)
    raise TestFailure(f"{what}: {len(got)} bytes, want {len(want)}; first difference at {first}")


def ranges(size):
    """(offset, length) pairs over the tail and across the last 4 KiB
    boundary, clamped to the image."""
    b = size & ~(BLK - 1)  # start of the last partial block
    out = [(b, size - b), (size - 1, 1), (0, min(size, 3)),
           (max(0, b - 300), min(size, b + 300) - max(0, b - 300)),
           (max(0, b - BLK - 5), size - max(0, b - BLK - 5)),
           (max(0, size - 513), min(size, 513))]
    if b >= BLK:
        out.append((b - 1, min(size, b + 1) - (b - 1)))
        out.append((b - BLK + 100, min(BLK, size - (b - BLK + 100))))  # unaligned, into the tail
    return [(o, n) for o, n in out if n > 0]


def check_reads(h, model, what):
    size = len(model)
    same(f"{what}: whole export", h.pread(size, 0), bytes(model))
    for off, n in ranges(size):
        same(f"{what}: read {n} at {off}", h.pread(n, off), bytes(model[off:off + n]))


def exercise(d, vol, path, model, rng, direct):
    size = len(model)
    what = f"{vol} ({size} bytes, {'--direct' if direct else 'buffered'})"
    h = d.open(vol)
    check(h.get_size() == size, f"{what}: size {h.get_size()}")
    mn = h.get_block_size(nbd.SIZE_MINIMUM)
    check(mn == 1, f"{what}: minimum block {mn}, want 1 (the tail must be reachable)")
    check(h.get_block_size(nbd.SIZE_PREFERRED) == BLK, f"{what}: preferred block")
    check_reads(h, model, what)

    for i, (off, n) in enumerate(ranges(size)):
        data = rng.randbytes(n)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA if i % 2 else 0)
        model[off:off + n] = data
        same(f"{what}: read back write {n} at {off}", h.pread(n, off), data)
    h.flush()
    same(f"{what}: file after writes and flush", file_bytes(path), bytes(model))
    check_reads(h, model, f"{what} after writes")
    b = size & ~(BLK - 1)
    zo = max(0, b - 100)
    h.zero(size - zo, zo)
    model[zo:size] = bytes(size - zo)
    h.flush()
    same(f"{what}: file after write zeroes", file_bytes(path), bytes(model))
    check_reads(h, model, f"{what} after write zeroes")

    # From the file again, block by block.
    d.api("POST", f"/api/v1/volumes/{vol}/invalidate", {})
    check_reads(h, model, f"{what} after invalidate")

    # Acceleration off: every request goes to the back end as it came.
    d.api("POST", f"/api/v1/volumes/{vol}/disable")
    check_reads(h, model, f"{what} disabled")
    for off, n in ranges(size)[:3]:
        data = rng.randbytes(n)
        h.pwrite(data, off)
        model[off:off + n] = data
    h.flush()
    same(f"{what}: file after disabled writes", file_bytes(path), bytes(model))
    check_reads(h, model, f"{what} disabled, after writes")
    d.api("POST", f"/api/v1/volumes/{vol}/enable")
    check_reads(h, model, f"{what} enabled again")
    h.shutdown()

    if shutil.which("nbdcopy"):
        out = os.path.join(TMP, f"{vol}.copy")
        subprocess.run(["nbdcopy", d.uri(vol), out], check=True, timeout=30)
        same(f"{what}: nbdcopy of the export", file_bytes(out), bytes(model))
        os.unlink(out)


def has_iscsi_client():
    if not shutil.which("qemu-io") or not shutil.which("qemu-img"):
        return False
    r = subprocess.run(["qemu-img", "--help"], capture_output=True, text=True)
    return " iscsi " in r.stdout


def iscsi_check(d, port, vol, path, model, rng, direct):
    """SCSI counts 512-byte blocks: the LU holds the whole ones (the
    last size % 512 bytes are out of an initiator's reach, with or
    without --direct), and a 512-byte write that is not 4 KiB-aligned,
    which O_DIRECT alone refused, lands in the file."""
    size = len(model)
    if size < 1024:
        return
    what = f"{vol} over iSCSI ({size} bytes, {'--direct' if direct else 'buffered'})"
    url = f"iscsi://127.0.0.1:{port}/iqn.2026-12.org.shoal:{vol}/0"
    r = subprocess.run(["qemu-img", "info", "--output=json", url], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 0, f"{what}: qemu-img info: {r.stderr.strip()}")
    vsize = json.loads(r.stdout)["virtual-size"]
    check(vsize == size // 512 * 512, f"{what}: {vsize} bytes, want {size // 512 * 512}")
    off = vsize - 512 if vsize % BLK else 512  # the last whole sector, or one not 4 KiB-aligned
    pat = rng.randint(1, 255)
    r = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pat} {off} 512", "-c", "flush",
                        "-c", f"read -P {pat} {off} 512", url],
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "wrote 512/512" in out and "read 512/512" in out
          and "Pattern verification failed" not in out, f"{what}: qemu-io: {out.strip()}")
    model[off:off + 512] = bytes([pat]) * 512
    same(f"{what}: file after a 512-byte write at {off}", file_bytes(path), bytes(model))
    h = d.open(vol)
    check_reads(h, model, what)
    h.shutdown()


def main():
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    ddir = direct_dir()
    iscsi = has_iscsi_client()
    if not iscsi:
        log("note: no qemu-io/qemu-img with an iscsi driver: the iSCSI checks are skipped")
    for direct in (True, False):
        vols, models = [], {}
        for i, size in enumerate(SIZES):
            vol = f"{'d' if direct else 'b'}{i}"
            path = os.path.join(ddir, vol + ".img")
            data = bytearray(rng.randbytes(size))
            itlib.make_file(path, size, bytes(data))
            vols.append(f"{vol}={path}")
            models[vol] = (path, data)
        port = itlib.free_port()
        d = Shoald(vols, ["-m", "16M", "--iscsi", f"127.0.0.1:{port}"] +
                   (["--direct"] if direct else []))
        for vol, (path, data) in models.items():
            exercise(d, vol, path, data, rng, direct)
            if iscsi:
                iscsi_check(d, port, vol, path, data, rng, direct)
        check(d.alive(), "shoald died")
        d.stop()
        log(f"{'--direct' if direct else 'buffered'}: {len(SIZES)} sizes ok")


itlib.run(main)
