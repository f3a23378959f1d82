#!/usr/bin/python3
"""Cache resize under warm reads (issue 9, defect 2): shrinking the cache
while zero-copy replies still held cached slots sent all-zero blocks as
successful read data.

A 64 MiB volume of random data (every 4 KiB block distinct and non-zero,
so a zero block or another block's bytes can never pass) is read whole to
warm a 128 MiB cache. Then, for DURATION seconds (default 10):
  - READERS connections (default 6) each keep DEPTH reads of 64 KiB..2 MiB
    in flight (libnbd aio), mostly over the warm data, so most replies are
    zero-copy sends of cached slots;
  - the main thread resizes the cache through POST /api/v1/cache/resize
    every 20..80 ms: shrinks (to 1..32 MiB, far below what is cached) and
    grows back (to 128 MiB);
and every byte of every read is compared with the image. A mismatch names
the read, the first differing 4 KiB block and whether it was all zeros.
At the end: the whole volume reads back right, shoald counted no error
and exits 0 on SIGTERM.

  resize.py [--duration S] [--readers N] [--depth N] [--seed N]
"""
import argparse
import os
import random
import select
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reliability"))
import rlib  # noqa: E402
from rlib import TestFailure, check, log  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
BLOCK = 4096
VOL = 64 * MiB
BIG = "128M"


def describe_diff(img, got, want, off):
    """Which 4 KiB blocks of a read differ, and what they hold instead."""
    out = []
    nbad = 0
    b0 = off // BLOCK
    b1 = (off + len(want) - 1) // BLOCK
    for b in range(b0, b1 + 1):
        lo = max(b * BLOCK, off) - off
        hi = min((b + 1) * BLOCK, off + len(want)) - off
        g, w = got[lo:hi], want[lo:hi]
        if g == w:
            continue
        nbad += 1
        if len(out) >= 4:
            continue
        i = next(i for i in range(len(w)) if g[i] != w[i])
        j = max(i for i in range(len(w)) if g[i] != w[i])
        seg = bytes(g[i:j + 1])
        if not any(seg):
            what = "zeros"
        else:
            hit = img.find(seg[:32])
            what = f"bytes found at image offset {hit:#x}" if hit >= 0 else "bytes not in the image"
        out.append(f"block {b}: bytes [{off + lo + i:#x}, {off + lo + j + 1:#x}) hold {what}")
    return f"{nbad} bad block(s): " + "; ".join(out)


class Reader:
    """One connection, `depth` aio reads in flight, each checked on completion."""

    def __init__(self, d, idx, img, depth, rng):
        self.h = d.open("a", name=f"reader{idx}")
        self.idx = idx
        self.img = img
        self.depth = depth
        self.rng = rng
        self.inflight = 0
        self.reads = 0
        self.bytes = 0
        self.bad = []
        self.bufs = {}

    def issue(self):
        r = self.rng
        ln = r.choice([64 * 1024, 256 * 1024, MiB, 2 * MiB])
        # aligned mostly (whole cached blocks: zero-copy), sometimes not
        off = r.randrange(0, (VOL - ln) // BLOCK + 1) * BLOCK
        if r.random() < 0.1:
            off = r.randrange(0, VOL - ln + 1)
        pool = self.bufs.setdefault(ln, [])
        buf = pool.pop() if pool else nbd.Buffer(ln)
        self.h.aio_pread(buf, off, completion=lambda err, buf=buf, off=off, ln=ln:
                         self.done(err, buf, off, ln))
        self.inflight += 1

    def done(self, err, buf, off, ln):
        self.inflight -= 1
        e = err.value if hasattr(err, "value") else int(err)
        try:
            if e:
                self.bad.append(f"reader{self.idx}: read [{off:#x}, +{ln:#x}) failed with errno {e}")
                return 1
            got = buf.to_bytearray()
            want = self.img[off:off + ln]
            self.reads += 1
            self.bytes += ln
            if got != want:
                self.bad.append(f"reader{self.idx}: read [{off:#x}, +{ln:#x}) returned wrong data"
                                f" with status 0: {describe_diff(self.img, got, want, off)}")
        finally:
            self.bufs.setdefault(ln, []).append(buf)
        return 1


MIN_SHRINKS = 10


def main(a):
    rng = random.Random(a.seed)
    T = rlib.TMP
    img = random.Random(a.seed ^ 0x9E37).randbytes(VOL)
    path = os.path.join(T, "a.img")
    with open(path, "wb") as f:
        f.write(img)
    d = rlib.Shoald([f"a={path}"], cache=BIG)
    # warm: every block cached
    h = d.open("a")
    for off in range(0, VOL, 4 * MiB):
        check(h.pread(4 * MiB, off) == img[off:off + 4 * MiB], f"warm-up read at {off:#x} wrong")
    h.shutdown()
    used = d.stats()["cache"]["used_bytes"]
    log(f"warm: cache holds {used / MiB:.1f} MiB of the {VOL // MiB} MiB volume")
    check(used >= VOL * 0.9, f"warm-up cached only {used} bytes")

    readers = [Reader(d, i, img, a.depth, random.Random(rng.random())) for i in range(a.readers)]
    stop = threading.Event()
    failed = []
    counts = {"shrink": 0, "grow": 0}

    def resizer():
        r = random.Random(rng.random())
        try:
            while not stop.is_set():
                size = r.choice([1, 2, 4, 8, 16, 32]) * MiB
                st, body = d.api_post("/api/v1/cache/resize", {"size": size})
                if st != 200:
                    failed.append(f"resize to {size}: HTTP {st}: {body}")
                    return
                counts["shrink"] += 1
                stop.wait(r.uniform(0.02, 0.08))
                st, body = d.api_post("/api/v1/cache/resize", {"size": BIG})
                if st != 200:
                    failed.append(f"resize to {BIG}: HTTP {st}: {body}")
                    return
                counts["grow"] += 1
                stop.wait(r.uniform(0.02, 0.08))
        except OSError as e:
            failed.append(f"resize call: {e}")

    t = threading.Thread(target=resizer, daemon=True)
    t0 = time.time()
    t.start()
    try:
        # At least --duration, and on a slow machine (a sanitizer, a loaded
        # CI host) on until MIN_SHRINKS resizes happened, up to 3x as long.
        while not failed and (time.time() - t0 < a.duration or
                              (counts["shrink"] < MIN_SHRINKS and time.time() - t0 < 3 * a.duration)):
            p = select.poll()
            fds = {}
            for rd in readers:
                while rd.inflight < rd.depth:
                    rd.issue()
                ev = rlib.aio_events(rd.h)
                if ev:
                    fds[rd.h.aio_get_fd()] = (rd, ev)
                    p.register(rd.h.aio_get_fd(), ev)
            for fd, rev in p.poll(1000):
                rd, ev = fds[fd]
                if rev & select.POLLOUT or (rev & (select.POLLERR | select.POLLHUP) and ev & select.POLLOUT):
                    rd.h.aio_notify_write()
                if rev & select.POLLIN or (rev & (select.POLLERR | select.POLLHUP) and ev & select.POLLIN):
                    rd.h.aio_notify_read()
            bad = [b for rd in readers for b in rd.bad]
            if bad:
                break
            if not d.alive():
                raise TestFailure(d.death_note())
    except nbd.Error as e:
        raise TestFailure(f"a reader's connection failed: {e} {d.death_note()}")
    finally:
        stop.set()
        t.join(15)
    # drain
    deadline = time.time() + 30
    for rd in readers:
        while rd.inflight and time.time() < deadline:
            rd.h.poll(100)
    bad = [b for rd in readers for b in rd.bad]
    nreads = sum(rd.reads for rd in readers)
    log(f"{time.time() - t0:.1f} s: {nreads} reads ({sum(rd.bytes for rd in readers) / MiB:.0f} MiB)"
        f" on {len(readers)} connections, {counts['shrink']} shrinks, {counts['grow']} grows")
    if bad:
        raise TestFailure(f"{len(bad)} bad reads while the cache was resized, e.g.:\n  "
                          + "\n  ".join(bad[:10]))
    check(not failed, "; ".join(failed))
    check(counts["shrink"] >= MIN_SHRINKS, f"only {counts['shrink']} shrinks happened")
    check(nreads >= 100, f"only {nreads} reads completed")
    for rd in readers:
        rd.h.shutdown()
    # the whole volume, once more, after the last grow
    h = d.open("a")
    for off in range(0, VOL, 4 * MiB):
        check(h.pread(4 * MiB, off) == img[off:off + 4 * MiB], f"final read at {off:#x} wrong")
    h.shutdown()
    st = d.stats()
    check(st["volumes"][0]["errors"] == 0, f"shoald counted {st['volumes'][0]['errors']} errors")
    d.stop()


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--readers", type=int, default=6)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = rlib.default_seed()
    return a


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    log(f"seed {args.seed}, {args.readers} readers x depth {args.depth}, {args.duration:.0f} s")
    rlib.run(lambda: main(args))
