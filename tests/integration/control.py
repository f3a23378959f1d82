#!/usr/bin/python3
"""Live control is correct: disable, enable and invalidate while clients
read and write, and invalidate after an out-of-band change.

Part 1. Two python3-libnbd clients each own half of a volume and loop over
random (often unaligned) reads and writes, checking every read against
their own model of the data. Meanwhile the test disables acceleration,
enables it, invalidates the whole volume and a range, several times. After
each step, with the clients held between two requests, the whole volume
read through a third connection must equal the backing file on disk and
the clients' models. No client may see an error or lose its connection.
While disabled, the stats must show pass-through: hit bytes do not grow,
nothing is cached, and every read byte comes from the back end.

Part 2. The backing file is changed behind the cache (as another host or a
storage-side snapshot revert would). A read then returns the old, cached
data: that is why `invalidate` exists. After invalidating just that range
the read returns the new data, while the rest of the cache stays warm.
"""
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, TestFailure, check, log, make_file  # noqa: E402

import nbd  # noqa: E402

MiB = 1 << 20
BLOCK = 4096
SIZE = 8 * MiB


def post(d, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(d.url + path, data=data, method="POST")
    req.add_header("Authorization", f"Bearer {d.token}")
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        raise TestFailure(f"POST {path}: {e.code} {e.read()[:200]!r}")


def vstats(d, name="vol"):
    return d.stats(f"/api/v1/stats/volumes/{name}")


def wait_until(fn, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.05)
    raise TestFailure(f"timed out after {secs} s waiting for {what}")


class Client(threading.Thread):
    """Reads and writes its own region [lo, hi) and checks every read
    against its model. `gate` lets the test hold it between requests."""

    def __init__(self, d, idx, lo, hi, model, gate):
        super().__init__(daemon=True)
        self.h = d.open("vol")
        self.idx = idx
        self.lo, self.hi = lo, hi
        self.model = model  # shared bytearray; this client owns [lo, hi)
        self.gate = gate
        self.stop = threading.Event()
        self.error = None
        self.reads = self.writes = 0
        self.rng = random.Random(1000 + idx)

    def one(self):
        rng = self.rng
        # Mostly block-aligned reads of a hot subset (so the cache is used),
        # some unaligned; writes are small and often unaligned.
        if rng.random() < 0.75:
            if rng.random() < 0.7:
                nblk = rng.randint(1, 16)
                hot = self.lo + rng.randrange(0, (self.hi - self.lo) // 4 // BLOCK) * BLOCK
                off = min(hot, self.hi - nblk * BLOCK)
                n = nblk * BLOCK
            else:
                n = rng.randint(1, 20000)
                off = rng.randrange(self.lo, self.hi - n)
            got = self.h.pread(n, off)
            self.reads += 1
            if got != self.model[off:off + n]:
                bad = next(i for i in range(n) if got[i] != self.model[off + i])
                raise TestFailure(f"client {self.idx}: stale or wrong read at {off + bad} "
                                  f"(read {n} at {off}): got {got[bad]:#x}, want {self.model[off + bad]:#x}")
        else:
            n = rng.choice([512, 1000, 4096, 4097, 8192, 12000])
            off = rng.randrange(self.lo, self.hi - n)
            if rng.random() < 0.5:
                off &= ~(BLOCK - 1)
            data = bytes([rng.randrange(256)]) * n if rng.random() < 0.3 else rng.randbytes(n)
            self.h.pwrite(data, off)
            self.model[off:off + n] = data
            self.writes += 1

    def run(self):
        try:
            while not self.stop.is_set():
                with self.gate:
                    self.one()
        except nbd.Error as e:
            self.error = f"client {self.idx}: NBD error {e.string} (errno {e.errnum})"
        except TestFailure as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001  (report anything as a failure)
            self.error = f"client {self.idx}: {e!r}"

    def finish(self):
        self.stop.set()
        self.join(30)
        check(not self.is_alive(), f"client {self.idx} hung")
        check(self.error is None, self.error or "")
        self.h.flush()
        self.h.shutdown()


def quiesced(gates, fn):
    for g in gates:
        g.acquire()
    try:
        return fn()
    finally:
        for g in gates:
            g.release()


def verify_all(d, path, model, gates, what):
    """With every client held between requests, the volume read through a
    fresh connection equals the backing file and the models."""
    for g in gates:
        g.acquire()
    try:
        h = d.open("vol")
        try:
            got = bytearray()
            for off in range(0, SIZE, 4 * MiB):
                got += h.pread(min(4 * MiB, SIZE - off), off)
        finally:
            h.shutdown()
        with open(path, "rb") as f:
            disk = f.read()
        check(disk == model, f"{what}: backing file differs from what clients wrote (lost write?)")
        if got != disk:
            bad = next(i for i in range(SIZE) if got[i] != disk[i])
            raise TestFailure(f"{what}: read through shoald differs from the backing file at byte {bad}")
    finally:
        for g in gates:
            g.release()


def hits_grow(d, secs):
    a = vstats(d)["read_hit_bytes"]
    deadline = time.time() + secs
    while time.time() < deadline:
        if vstats(d)["read_hit_bytes"] > a:
            return True
        time.sleep(0.05)
    return False


def part1(d, path, model):
    gates = [threading.Lock(), threading.Lock()]
    half = SIZE // 2
    clients = [Client(d, i, i * half, (i + 1) * half, model, gates[i]) for i in range(2)]
    for c in clients:
        c.start()
    try:
        wait_until(lambda: vstats(d)["cached_blocks"] > 64 and vstats(d)["read_hit_bytes"] > 0, 20,
                   "the cache to warm up under the clients")
        verify_all(d, path, model, gates, "warm")
        for rnd in range(3):
            # Disable: pass-through, contents dropped, clients stay.
            st, v = post(d, "/api/v1/volumes/vol/disable")
            check(v["state"] == "disabled", f"disable answered {v}")
            # Counters are taken with the clients held between requests, so
            # no read is half counted (pass-through counts read_bytes before
            # the back end answers).
            a = quiesced(gates, lambda: vstats(d))
            check(a["state"] == "disabled" and a["enabled"] is False, "stats state after disable")
            time.sleep(1.0)
            b = quiesced(gates, lambda: vstats(d))
            check(b["read_bytes"] > a["read_bytes"], "clients did not read while disabled")
            check(b["read_hit_bytes"] == a["read_hit_bytes"],
                  f"round {rnd}: hit bytes grew while disabled ({a['read_hit_bytes']} -> {b['read_hit_bytes']})")
            check(b["cached_blocks"] == 0, f"round {rnd}: {b['cached_blocks']} blocks cached while disabled")
            check(b["backend_read_bytes"] - a["backend_read_bytes"] >= b["read_bytes"] - a["read_bytes"],
                  f"round {rnd}: reads while disabled did not all go to the back end")
            check(b["connections"] == 2, f"connections while disabled: {b['connections']}")
            verify_all(d, path, model, gates, f"round {rnd}, disabled")

            st, v = post(d, "/api/v1/volumes/vol/enable")
            check(v["state"] == "enabled", f"enable answered {v}")
            check(hits_grow(d, 10), f"round {rnd}: no hits after enable")
            verify_all(d, path, model, gates, f"round {rnd}, enabled")

            # Whole-volume invalidate under load.
            before = vstats(d)["cached_blocks"]
            st, v = post(d, "/api/v1/volumes/vol/invalidate")
            check(v["invalidated"] and v["length"] == SIZE, f"invalidate answered {v}")
            check(vstats(d)["cached_blocks"] <= before, "cached blocks grew across an invalidate")
            verify_all(d, path, model, gates, f"round {rnd}, after invalidate")
            check(hits_grow(d, 10), f"round {rnd}: no hits after invalidate")

            # A range, unaligned at both ends.
            st, v = post(d, "/api/v1/volumes/vol/invalidate", {"offset": 3 * MiB + 100, "length": 2 * MiB})
            check(v["offset"] == 3 * MiB + 100 and v["length"] == 2 * MiB, f"range invalidate answered {v}")
            verify_all(d, path, model, gates, f"round {rnd}, after a range invalidate")
            log(f"round {rnd}: disable, enable, invalidate under load OK")
        for c in clients:
            check(c.error is None, c.error or "")
            check(c.is_alive(), f"client {c.idx} stopped")
    finally:
        for c in clients:
            c.stop.set()
    for c in clients:
        c.finish()
    s = vstats(d)
    check(s["errors"] == 0 and s["backend_errors"] == 0, f"errors counted: {s['errors']}/{s['backend_errors']}")
    log(f"clients: {sum(c.reads for c in clients)} reads, {sum(c.writes for c in clients)} writes, "
        f"no error; insert races {s['insert_races']}")
    verify_all(d, path, model, [], "after the clients")


def part2(d, path, model):
    st, v = post(d, "/api/v1/volumes/vol/invalidate")
    h = d.open("vol")
    x_off, x_len = 1 * MiB, 64 * 1024  # the range that will change behind the cache
    y_off, y_len = 5 * MiB, 64 * 1024  # a range that stays warm
    h.pread(x_len, x_off)
    h.pread(y_len, y_off)
    wait_until(lambda: vstats(d)["cached_blocks"] >= (x_len + y_len) // BLOCK, 10, "both ranges cached")
    old = bytes(model[x_off:x_off + x_len])

    # Out-of-band: write the file directly, as another host would.
    new = bytes((b ^ 0x5A) for b in old)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, new, x_off)
        os.fsync(fd)
    finally:
        os.close(fd)
    model[x_off:x_off + x_len] = new

    got = h.pread(x_len, x_off)
    check(got == old, "after an out-of-band change the cached range did not read stale "
                      "(expected the old cached data: nothing tells shoald about the change)")
    log("out-of-band change: the cached range still reads the OLD data (stale, as documented)")

    hits = vstats(d)["read_hit_bytes"]
    st, v = post(d, "/api/v1/volumes/vol/invalidate", {"offset": x_off, "length": x_len})
    check(v["offset"] == x_off and v["length"] == x_len, f"invalidate answered {v}")
    got = h.pread(x_len, x_off)
    check(got == new, "after invalidating the changed range the read is still stale")
    # Y stayed cached: reading it is all hits.
    hits = vstats(d)["read_hit_bytes"]
    check(h.pread(y_len, y_off) == bytes(model[y_off:y_off + y_len]), "range Y content")
    check(vstats(d)["read_hit_bytes"] - hits == y_len, "a range invalidate dropped blocks outside its range")
    log("invalidate of the changed range: the read returns the NEW data; other ranges stay cached")

    # An unaligned invalidate covers the whole blocks it touches.
    wait_until(lambda: vstats(d)["cached_blocks"] >= (x_len + y_len) // BLOCK, 10, "X cached again")
    off = x_off + 3 * BLOCK + 1000
    newer = b"\xEE" * 10
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, newer, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    model[off:off + 10] = newer
    check(h.pread(BLOCK, x_off + 3 * BLOCK) != bytes(model[x_off + 3 * BLOCK:x_off + 4 * BLOCK]),
          "the block was not cached before the unaligned invalidate")
    post(d, "/api/v1/volumes/vol/invalidate", {"offset": off, "length": 10})
    check(h.pread(BLOCK, x_off + 3 * BLOCK) == bytes(model[x_off + 3 * BLOCK:x_off + 4 * BLOCK]),
          "a 10-byte invalidate inside a block did not drop that block")

    # Disabling (which drops the contents) also answers an out-of-band change.
    wait_until(lambda: vstats(d)["cached_blocks"] > 0, 10, "something cached")
    h.pread(y_len, y_off)
    wait_until(lambda: vstats(d)["cached_blocks"] >= y_len // BLOCK, 10, "Y cached")
    newest = bytes(model[y_off:y_off + y_len])[::-1]
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, newest, y_off)
        os.fsync(fd)
    finally:
        os.close(fd)
    model[y_off:y_off + y_len] = newest
    post(d, "/api/v1/volumes/vol/disable")
    post(d, "/api/v1/volumes/vol/enable")
    check(h.pread(y_len, y_off) == newest, "disable + enable did not drop the stale range")
    h.shutdown()
    verify_all(d, path, model, [], "end of part 2")
    log("disable + enable also drops stale data")


def prefetch_lifetime():
    """`control.py prefetch-lifetime` (registered as an expected failure):
    a background prefetch must not outlive its volume. Today the prefetch
    thread only checks for removal between 16 MiB steps and engine_destroy
    neither stops nor joins it, so after DELETE it keeps reading the back
    end and inserting into the store, and at shutdown it can run into the
    freed store (a SIGSEGV after "stopped" was caught in api.py's auth
    daemon: prefetch_main -> vol_prefetch -> install_block -> fp_equal
    while the main thread was in store_destroy)."""
    import shutil
    import subprocess
    if not shutil.which("nbdkit"):
        print("[control] SKIP: nbdkit is not installed")
        sys.exit(itlib.SKIP)
    sock = os.path.join(TMP, "slow.sock")
    pidfile = os.path.join(TMP, "nbdkit.pid")
    # 1 MiB chunks at 150 ms each: one 16 MiB step takes about 2.4 s.
    nk = subprocess.Popen(["nbdkit", "--exit-with-parent", "-f", "-U", sock, "-P", pidfile,
                           "--filter=delay", "random", "256M", "rdelay=150ms"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(pidfile), 10, "nbdkit")
        d = Shoald([f"slow=nbd+unix:///?socket={sock}"], extra=["-m", "64M"])
        post(d, "/api/v1/volumes/slow/prefetch")
        wait_until(lambda: d.stats("/api/v1/cache")["inserts"] > 0, 10, "the prefetch to insert")
        req = urllib.request.Request(d.url + "/api/v1/volumes/slow", method="DELETE",
                                     headers={"Authorization": f"Bearer {d.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            check(r.status == 204, f"DELETE slow: {r.status}")
        time.sleep(0.5)  # a request in flight may finish
        a = d.stats("/api/v1/cache")["inserts"]
        time.sleep(1.5)
        b = d.stats("/api/v1/cache")["inserts"]
        check(b == a, f"the prefetch of a removed volume still runs: {b - a} blocks inserted "
                      "into the cache 0.5-2 s after DELETE returned")
        # And a prefetch running at shutdown must not crash the daemon.
        path = make_file(os.path.join(TMP, "v.img"), 64 * MiB, random.Random(3).randbytes(64 * MiB))
        post(d, "/api/v1/volumes", {"name": "v", "backing": path})
        post(d, "/api/v1/volumes/v/prefetch")
        d.stop()
    finally:
        nk.terminate()
        nk.wait(10)


def main():
    if sys.argv[1:] == ["prefetch-lifetime"]:
        prefetch_lifetime()
        return
    rng = random.Random(7)
    model = bytearray(rng.randbytes(SIZE))
    # Some zero and repeated blocks too (zero constant, dedup).
    model[2 * MiB:2 * MiB + 256 * 1024] = bytes(256 * 1024)
    model[6 * MiB:6 * MiB + 64 * 1024] = b"\x11" * (64 * 1024)
    path = make_file(os.path.join(TMP, "vol.img"), SIZE, bytes(model))
    d = Shoald([f"vol={path}"], extra=["-m", "64M"])
    part1(d, path, model)
    part2(d, path, model)
    check(d.alive(), "shoald died")
    d.stop()


itlib.run(main)
