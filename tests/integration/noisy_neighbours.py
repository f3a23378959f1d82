#!/usr/bin/python3
"""Hostile clients beside well-behaved ones, all at once, in one daemon
(issue 9, defects 1, 4 and 5; design brief guarantee 5: "never ... a slow
client delaying other clients").

shoald: --max-connections 7, --handshake-timeout 2s, two volumes:
  - "big": 4 GiB - 4 KiB, sparse file (the hostile clients' volume);
  - "good": 64 MiB of random data (the well-behaved clients' volume).

At the same time:
  (a) slow readers: three raw-socket clients each queue 128 READs of 1 MiB
      on "big" and never read a byte of the replies;
  (b) an option flood: a raw client sends NBD_OPT_LIST over and over
      without reading the replies, until its own sends block (the server
      has stopped reading it), then sits there. The connection slots are
      now all taken; a new client must get its greeting within the
      handshake timeout + a margin (the flooder must be dropped by then);
  (c) a huge TRIM and WRITE_ZEROES on "big" through libnbd: 1 GiB each,
      then each of the whole export in one request;
  (d) two well-behaved libnbd clients on "good": 4 KiB writes and reads in
      a loop for RUN seconds, each read compared with what they wrote.
Checks: every well-behaved request completes within BOUND (2 s; 6 s in a
sanitizer build) and reads back the right bytes; the huge requests succeed
within 30 s; the new client's greeting comes in time; afterwards "good"
reads back whole and right, "big" reads zeros, shoald counted no error
and exits 0 on SIGTERM. Every problem seen is reported, not only the first.
"""
import os
import random
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reliability"))
import rlib  # noqa: E402
from rlib import TestFailure, check, log  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
BIG = 4 * GiB - 4096
GOOD = 64 * MiB
HS_TIMEOUT = 2.0
RUN = 8.0
SAN = rlib.sanitized()
BOUND = 6.0 if SAN else 2.0
MARGIN = 6.0 if SAN else 3.0
MAXCONN = 7  # 3 slow readers + flooder + 2 good clients + the trimmer

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
OPT_LIST, OPT_GO, OPT_EXPORT_NAME = 3, 7, 1
CMD_READ = 0


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += c
    return bytes(buf)


def raw_connect(d, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(d.sock)
    return s


def greeting(s):
    magic, opt, _flags = struct.unpack(">QQH", recv_exact(s, 18))
    check(magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting")


def raw_session(d, name):
    """A transmission-phase raw socket (NBD_OPT_EXPORT_NAME, no zeroes)."""
    s = raw_connect(d)
    greeting(s)
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, len(name)) + name)
    size, _tflags = struct.unpack(">QH", recv_exact(s, 10))
    return s, size


def send_until_blocked(s, chunks, stall=1.0, total_limit=30.0):
    """Send the byte strings in chunks without blocking for long: stop when
    nothing more could be sent for `stall` s. Returns the number sent whole;
    a closed connection ends it too."""
    s.setblocking(False)
    sent = 0
    pending = b""
    it = iter(chunks)
    last = time.time()
    t0 = last
    while time.time() - t0 < total_limit:
        if not pending:
            try:
                pending = next(it)
            except StopIteration:
                break
        try:
            n = s.send(pending)
        except BlockingIOError:
            if time.time() - last > stall:
                break
            time.sleep(0.005)
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        pending = pending[n:]
        last = time.time()
        if not pending:
            sent += 1
    return sent


class Result:
    def __init__(self):
        self.problems = []
        self.lock = threading.Lock()

    def add(self, msg):
        with self.lock:
            self.problems.append(msg)
        log("PROBLEM: " + msg)


def good_client(h, idx, region, res, stop, stats):
    """4 KiB writes and reads in its own region of "good"; every request timed."""
    rng = random.Random(1000 + idx)
    lo, hi = region
    model = {}
    img = stats["img"]
    n = worst = 0
    slow = 0
    while not stop.is_set():
        blk = rng.randrange(lo, hi)
        if rng.random() < 0.5:
            data = rng.randbytes(4096)
            t = time.monotonic()
            try:
                h.pwrite(data, blk * 4096)
            except nbd.Error as e:
                res.add(f"good{idx}: write of block {blk} failed: {e}")
                return
            el = time.monotonic() - t
            model[blk] = data
            what = f"write of block {blk}"
        else:
            t = time.monotonic()
            try:
                got = h.pread(4096, blk * 4096)
            except nbd.Error as e:
                res.add(f"good{idx}: read of block {blk} failed: {e}")
                return
            el = time.monotonic() - t
            want = model.get(blk, img[blk * 4096:(blk + 1) * 4096])
            if got != want:
                res.add(f"good{idx}: read of block {blk} returned wrong data")
                return
            what = f"read of block {blk}"
        n += 1
        worst = max(worst, el)
        if el > BOUND:
            slow += 1
            if slow <= 3:
                res.add(f"good{idx}: a 4 KiB {what} took {el:.2f} s (bound {BOUND} s)")
    stats[f"good{idx}"] = (n, worst, model)
    h.shutdown()


def trimmer(d, h, res, stats):
    for what, fn in (("trim of 1 GiB at 512 MiB", lambda: h.trim(GiB, 512 * MiB)),
                     ("write_zeroes of 1 GiB at 2 GiB + 512", lambda: h.zero(GiB, 2 * GiB + 512)),
                     ("trim of the whole export", lambda: h.trim(BIG, 0)),
                     ("write_zeroes of the whole export", lambda: h.zero(BIG, 0))):
        t = time.monotonic()
        try:
            fn()
        except nbd.Error as e:
            res.add(f"trimmer: {what} failed: {e} {d.death_note()}")
            return
        el = time.monotonic() - t
        stats.setdefault("trims", []).append(f"{what} {el:.2f} s")
        if el > 30:
            res.add(f"trimmer: {what} took {el:.1f} s")
    h.shutdown()


def main():
    T = rlib.TMP
    res = Result()
    rng = random.Random(7)
    big = os.path.join(T, "big.img")
    with open(big, "wb") as f:
        f.truncate(BIG)
        for off in (0, GiB, 3 * GiB):  # some data among the holes
            f.seek(off)
            f.write(rng.randbytes(MiB))
    img = rng.randbytes(GOOD)
    good = os.path.join(T, "good.img")
    with open(good, "wb") as f:
        f.write(img)
    d = rlib.Shoald([f"big={big}", f"good={good}"], cache="64M",
                    extra=["--max-connections", str(MAXCONN),
                           "--handshake-timeout", f"{HS_TIMEOUT:g}s"])
    log(f"bounds: well-behaved requests {BOUND} s, greeting within {HS_TIMEOUT} + {MARGIN} s"
        f"{' (sanitizer build)' if SAN else ''}")
    stats = {"img": img}
    stop = threading.Event()

    # the well-behaved clients and the trimmer connect first (they are
    # legitimate holders of their slots)
    goods = []
    for i in range(2):
        h = d.open("good", name=f"good{i}")
        goods.append(threading.Thread(target=good_client, daemon=True,
                                      args=(h, i, (i * GOOD // 8192, (i + 1) * GOOD // 8192),
                                            res, stop, stats)))
    tr = threading.Thread(target=trimmer, args=(d, d.open("big", name="trimmer"), res, stats),
                          daemon=True)

    # (a) slow readers
    slow = []
    for i in range(3):
        s, size = raw_session(d, b"big")
        check(size == BIG, f"slow reader {i}: export size {size}")
        reqs = [struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 0x5000 + k,
                            rng.randrange(0, (BIG - MiB) // 4096) * 4096, MiB) for k in range(128)]
        n = send_until_blocked(s, reqs, stall=1.0)
        slow.append(s)
        log(f"slow reader {i}: {n} of 128 READs of 1 MiB sent, reading nothing")
    # (b) the option flood; the flooder takes the last free slot
    fl = raw_connect(d)
    greeting(fl)
    fl.sendall(struct.pack(">I", 3))
    t_flood = time.time()
    lst = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0)
    nl = send_until_blocked(fl, (lst * 64 for _ in range(2000)), stall=0.5)
    log(f"flooder: {nl * 64} NBD_OPT_LIST sent without reading a reply")
    t_run = time.time()
    for g in goods:
        g.start()
    time.sleep(0.3)
    tr.start()

    # (b) a new client, beyond --max-connections while the flooder holds its
    # slot: it must get a greeting once the handshake deadline dropped it
    deadline = t_flood + HS_TIMEOUT + MARGIN
    tries = 0
    got_greeting = None
    while time.time() < deadline + 1 and got_greeting is None:
        tries += 1
        try:
            s = raw_connect(d, timeout=max(0.1, deadline - time.time()))
            greeting(s)
            got_greeting = time.time() - t_flood
            s.close()
        except (OSError, EOFError, socket.timeout):
            if tries == 1:
                log("new client: refused while every slot is taken (as it should be)")
            time.sleep(0.1)
    if got_greeting is None or got_greeting > HS_TIMEOUT + MARGIN:
        res.add(f"option flood: no greeting for a new client within {HS_TIMEOUT} s (handshake"
                f" timeout) + {MARGIN} s of the flood ({tries} tries; the flooder still holds its slot)")
    else:
        log(f"new client greeted {got_greeting:.2f} s after the flood started ({tries} tries)")

    time.sleep(max(0, RUN - (time.time() - t_run)))
    stop.set()
    stuck = False
    for i, g in enumerate(goods):
        g.join(max(0.1, BOUND + 5 - (time.time() - t_run - RUN)))
        if g.is_alive():
            stuck = True
            res.add(f"good{i} is still stuck in a request {BOUND + 5:.0f} s after the end of the run")
    tr.join(max(0.1, 30 - (time.time() - t_run)))
    if tr.is_alive():
        stuck = True
        res.add("the huge trims/zeroes did not finish within 30 s")
    for i in range(2):
        if f"good{i}" in stats:
            n, worst, _ = stats[f"good{i}"]
            log(f"good{i}: {n} requests, slowest {worst * 1000:.0f} ms")
    log("huge requests: " + ", ".join(stats.get("trims", [])))

    # hostile clients leave (the flooder may already be gone)
    fl.setblocking(False)
    state = "still open"
    try:
        while True:
            if not fl.recv(65536):
                state = "closed by shoald"
                break
    except BlockingIOError:
        pass
    except OSError:
        state = "closed by shoald"
    log(f"flooder connection at the end: {state}")
    for s in slow + [fl]:
        s.close()
    if not d.alive():
        res.add(d.death_note())
    elif stuck:
        log("final data checks skipped: a client is still stuck")
    else:
        # the data
        try:
            h = d.open("good")
            want = bytearray(img)
            for i in range(2):
                for blk, data in stats.get(f"good{i}", (0, 0, {}))[2].items():
                    want[blk * 4096:(blk + 1) * 4096] = data
            for off in range(0, GOOD, 4 * MiB):
                if h.pread(4 * MiB, off) != want[off:off + 4 * MiB]:
                    res.add(f"good: final read-back of [{off:#x}, +4 MiB) is wrong")
                    break
            h.shutdown()
            if len(stats.get("trims", [])) == 4:
                h = d.open("big")
                for off in (0, GiB, 3 * GiB, BIG - MiB):
                    if h.pread(MiB, off) != bytes(MiB):
                        res.add(f"big: [{off:#x}, +1 MiB) is not zeros after the whole-export zero")
                h.shutdown()
            errs = {v["name"]: v["errors"] for v in d.stats()["volumes"]}
            if any(errs.values()):
                res.add(f"shoald counted error replies: {errs}")
        except (nbd.Error, OSError) as e:
            res.add(f"final checks: {e} {d.death_note()}")
    if d.alive():
        try:
            d.stop(timeout=20)
        except TestFailure as e:
            res.add(str(e))
    if res.problems:
        raise TestFailure(f"{len(res.problems)} problem(s):\n  " + "\n  ".join(res.problems))


if __name__ == "__main__":
    rlib.run(main)
