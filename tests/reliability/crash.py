#!/usr/bin/python3
"""Crash safety (guarantee 2 of the design brief: no lost write; kill -9 of a
node loses no acknowledged write).

A writer process (this script with --writer) keeps a steady load on one
volume through python3-libnbd: several writes in flight, a share of them
FUA, WRITE_ZEROES now and then, a FLUSH every few dozen requests. It appends
to a log it fsyncs: "S id off len kind" before a request is sent, "A id"
once the daemon acknowledged it, "F id errno" if it failed, "FS n" / "FA n"
when flush n is sent / acknowledged, "C" at every (re)connect. Every 512-byte
sector a write covers carries (write id, sector number) and a filler derived
from the id, so the back end file says which write each sector holds. No two
requests in flight overlap, so for each sector the acknowledged writes are
ordered by id.

The test kills shoald with SIGKILL at seeded random moments (20 times by
default) and after each kill checks the back end file against the log:
every sector must hold the last acknowledged write that covered it, or a
later write that was sent but never acknowledged (it may or may not have
reached the file). Then it restarts shoald on the same socket and file;
the writer reconnects by itself. At the end the whole volume is read back
through the restarted daemon and checked the same way.

Variants:
  --backend file          shoald's file back end (the default)
  --backend nbd           nbdkit's file plugin (+ log filter: every
                          acknowledged FUA write and every flush must show
                          up at nbdkit)
  --backend nbd-writeback nbdkit's file plugin behind the cache filter with
                          cache=writeback: writes reach the file only on a
                          flush or as FUA writes, so FUA and FLUSH really
                          have to be passed on. Each kill is a kill -9 of
                          both shoald and nbdkit; the rule becomes: every
                          sector holds its last *durable* write (acknowledged
                          FUA, or acknowledged on the same connection before
                          a FLUSH that was acknowledged was sent) or a later
                          one; acknowledged writes that were never flushed
                          may be lost.
  --negative-control      the test-only fault back end lies, and the checker
                          MUST find lost acknowledged writes after a kill,
                          else the test fails (a checker that cannot see a
                          lost write proves nothing). On the file back end:
                          fault:ackfirst=300ms (writes acknowledged at once,
                          done 300 ms later); with nbd-writeback:
                          fault:noflush=1 (FLUSH and FUA never reach
                          nbdkit's volatile cache).

  crash.py [--seed N] [--kills N] [--backend file|nbd|nbd-writeback] [--negative-control]
Environment: SHOALD.
"""
import argparse
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time

import nbd  # noqa: E402

if "--writer" not in sys.argv:
    # the test itself; the writer process needs none of this (temp dir,
    # signal handlers, child cleanup)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import rlib  # noqa: E402
    from rlib import TestFailure, check, log  # noqa: E402

SECTOR = 512
GOLD = 0x9E3779B97F4A7C15


def sector_bytes(wid, s):
    fill = ((wid * GOLD + 0x1234567) & (2**64 - 1)).to_bytes(8, "little") * 62
    return struct.pack("<QQ", wid, s) + fill


def write_bytes(wid, off, ln):
    first = off // SECTOR
    return b"".join(sector_bytes(wid, s) for s in range(first, first + ln // SECTOR))


# ---- the writer process ----------------------------------------------------


def writer_main(a):
    rng = random.Random(a.seed)
    size = a.size
    nsec = size // SECTOR
    logf = open(a.log, "a", buffering=1)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    wid = 1 + a.first_id
    inflight = {}  # id -> (off, len)
    state = {"h": None, "dead": False, "acked": 0}

    def connect():
        deadline = time.time() + 30
        while not stop[0]:
            try:
                h = nbd.NBD()
                h.connect_uri(a.uri)
                logf.write("C\n")
                return h
            except nbd.Error:
                if time.time() > deadline:
                    print("writer: could not reconnect for 30 s", file=sys.stderr)
                    sys.exit(2)
                time.sleep(0.02)
        return None

    def done(op_id, err):
        e = err.value
        inflight.pop(op_id, None)
        if op_id < 0:  # flush
            if e:
                state["dead"] = True
            else:
                logf.write(f"FA {-op_id}\n")
            return 1
        if e:
            logf.write(f"F {op_id} {e}\n")
            state["dead"] = True
        else:
            logf.write(f"A {op_id}\n")
            state["acked"] += 1
            state["need_sync"] = True
        return 1

    def pump(h, ms):
        d = h.aio_get_direction()
        ev = 0
        if d & nbd.AIO_DIRECTION_READ:
            ev |= select.POLLIN
        if d & nbd.AIO_DIRECTION_WRITE:
            ev |= select.POLLOUT
        if not ev:
            return
        p = select.poll()
        p.register(h.aio_get_fd(), ev)
        bad = select.POLLERR | select.POLLHUP
        for _, rev in p.poll(ms):
            # notify only in the directions libnbd waits for: a hang-up
            # must reach notify_read, which then sees EOF
            try:
                if (rev & select.POLLOUT) or ((rev & bad) and (ev & select.POLLOUT)):
                    h.aio_notify_write()
                if (rev & select.POLLIN) or ((rev & bad) and (ev & select.POLLIN)):
                    h.aio_notify_read()
            except nbd.Error:
                state["dead"] = True
        if state.pop("need_sync", False):
            logf.flush()
            os.fsync(logf.fileno())

    flush_id = -1
    nextop = None
    while not stop[0]:
        h = state["h"]
        if h is None or state["dead"]:
            # drain what is left on the dead handle (all of it fails)
            t0 = time.time()
            if h is not None:
                while inflight and time.time() - t0 < 10:
                    pump(h, 50)
                    if h.aio_is_dead() or h.aio_is_closed():
                        break
                for op_id in list(inflight):
                    if op_id > 0:
                        logf.write(f"F {op_id} lost\n")
                inflight.clear()
                logf.flush()
                os.fsync(logf.fileno())
            state["h"] = None
            state["dead"] = False
            t1 = time.time()
            h = connect()
            if h is None:
                break
            print(f"writer: {time.strftime('%T')} drained in {t1 - t0:.2f} s,"
                  f" reconnected in {time.time() - t1:.2f} s", file=sys.stderr, flush=True)
            state["h"] = h
            continue
        if nextop is None:
            x = rng.random()
            if x < 0.04:
                nextop = ("flush", 0, 0)
            else:
                y = rng.random()
                ln = (rng.randint(1, 8) if y < 0.7 else rng.randint(9, 256) if y < 0.98
                      else rng.randint(257, 2048)) * SECTOR
                off = rng.randrange(0, nsec) * SECTOR
                ln = min(ln, size - off)
                kind = "z" if x < 0.12 else "f" if x < 0.40 else "w"
                nextop = (kind, off, ln)
        kind, off, ln = nextop
        busy = len(inflight) >= a.depth or (kind != "flush" and any(
            o < off + ln and off < o + n for (o, n) in inflight.values()))
        if busy:
            pump(h, 50)
            continue
        nextop = None
        i = None
        try:
            if kind == "flush":
                i = flush_id
                flush_id -= 1
                logf.write(f"FS {-i}\n")
                inflight[i] = (0, 0)
                h.aio_flush(completion=lambda e, i=i: done(i, e))
            else:
                i = wid
                wid += 1
                logf.write(f"S {i} {off} {ln} {kind}\n")
                logf.flush()  # in the file before the request can reach the daemon
                inflight[i] = (off, ln)
                cb = lambda e, i=i: done(i, e)  # noqa: E731
                if kind == "z":
                    h.aio_zero(ln, off, completion=cb)
                else:
                    # bytes, not nbd.Buffer: python3-libnbd 1.14 leaks Buffers
                    h.aio_pwrite(write_bytes(i, off, ln), off, completion=cb,
                                 flags=nbd.CMD_FLAG_FUA if kind == "f" else 0)
        except nbd.Error:
            # refused at submission (the handle is dead): libnbd will not
            # call the completion callback for it
            if i is not None and inflight.pop(i, None) is not None and i > 0:
                logf.write(f"F {i} notsent\n")
            state["dead"] = True
            continue
        pump(h, 0)
    # stop: let what is in flight finish (or fail), then leave
    h = state["h"]
    t0 = time.time()
    while h is not None and inflight and time.time() - t0 < 10 and not state["dead"]:
        pump(h, 50)
    logf.flush()
    os.fsync(logf.fileno())
    return 0


# ---- checking ----------------------------------------------------------------


def read_log(path):
    writes = {}  # id -> [off, len, kind, status]
    with open(path) as f:
        for line in f:
            p = line.split()
            if not line.endswith("\n") or not p:
                break  # a torn last line (read while the writer appends)
            if p[0] == "S":
                writes[int(p[1])] = [int(p[2]), int(p[3]), p[4], "S"]
            elif p[0] == "A":
                writes[int(p[1])][3] = "A"
            elif p[0] == "F":
                writes[int(p[1])][3] = "F"
    return writes


def read_durable(path, writes):
    """The acknowledged writes a back end with a volatile cache must still
    hold after a crash: FUA writes, and writes acknowledged on a connection
    before a flush on that same connection was sent, once that flush was
    acknowledged. (A flush on a new connection -- to a restarted daemon --
    says nothing about writes the old one acknowledged.)"""
    durable = {wid for wid, w in writes.items() if w[2] == "f" and w[3] == "A"}
    gen = 0
    acked = {0: []}  # connection generation -> ids acknowledged on it, in order
    cover = {}  # flush n -> (generation, how many of its acks it covers)
    with open(path) as f:
        for line in f:
            p = line.split()
            if not line.endswith("\n") or not p:
                break
            if p[0] == "C":
                gen += 1
                acked[gen] = []
            elif p[0] == "A":
                acked[gen].append(int(p[1]))
            elif p[0] == "FS":
                cover[int(p[1])] = (gen, len(acked[gen]))
            elif p[0] == "FA" and int(p[1]) in cover:
                g, n = cover[int(p[1])]
                durable.update(acked[g][:n])
    return durable, gen, acked


def count_flush_acks(path):
    with open(path) as f:
        return sum(1 for line in f if line.startswith("FA "))


def check_backend_log(kitlog, writes, flushes):
    """FUA and FLUSH reach the back end: every acknowledged FUA write shows
    up at nbdkit as a FUA write of the same range, and nbdkit saw at least
    as many flushes as the client had acknowledged."""
    fua = set()
    nflush = 0
    with open(kitlog) as f:
        for line in f:
            if " Write id=" in line and " fua=1" in line:
                kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
                fua.add((int(kv["offset"], 16), int(kv["count"], 16)))
            elif " Flush id=" in line:
                nflush += 1
    missing = [(wid, w[0], w[1]) for wid, w in writes.items()
               if w[2] == "f" and w[3] == "A" and (w[0], w[1]) not in fua]
    if missing:
        raise TestFailure(f"{len(missing)} acknowledged FUA writes never reached the back end"
                          f" as FUA writes, e.g. {missing[:5]} (id, offset, length)")
    if nflush < flushes:
        raise TestFailure(f"the client had {flushes} flushes acknowledged, the back end saw {nflush}")
    return len(fua), nflush


def verify(data, size, writes, what, durable=None):
    """data: the volume's bytes. Each sector must hold its last acknowledged
    write, or a later write that was never acknowledged. With `durable` (a
    set of ids: a back end with a volatile write cache), its last durable
    write or any later write, acknowledged or not."""
    nsec = size // SECTOR
    last = [0] * nsec  # id 0: the initial pattern

    def must_hold(wid, st):
        return st == "A" and (durable is None or wid in durable)

    newest = [0] * nsec  # the last acknowledged write, durable or not
    for wid in sorted(writes):
        off, ln, kind, st = writes[wid]
        a, b = off // SECTOR, (off + ln) // SECTOR
        if must_hold(wid, st):
            last[a:b] = [wid] * (b - a)
        if st == "A":
            newest[a:b] = [wid] * (b - a)
    maybe = {}
    for wid, (off, ln, kind, st) in writes.items():
        if not must_hold(wid, st):
            for s in range(off // SECTOR, (off + ln) // SECTOR):
                if wid > last[s]:
                    maybe.setdefault(s, []).append(wid)
    acked = sum(1 for w in writes.values() if w[3] == "A")
    bad = []
    older = 0
    for s in range(nsec):
        got = data[s * SECTOR:(s + 1) * SECTOR]
        allowed = [last[s]] + maybe.get(s, [])
        ok = False
        for wid in allowed:
            kind = writes[wid][2] if wid else "w"
            if kind == "z":
                ok = got == bytes(SECTOR)
            else:
                ok = got == sector_bytes(wid, s)
            if ok:
                if wid < newest[s]:
                    older += 1  # an acknowledged, unflushed write was lost (allowed)
                break
        if not ok:
            gid, gs = struct.unpack("<QQ", bytes(got[:16]))
            held = "zeros" if got == bytes(SECTOR) else f"write #{gid} (tagged sector {gs})"
            bad.append(f"sector {s} (offset {s * SECTOR}): holds {held}, expected write"
                       f" #{last[s]} ({writes[last[s]][3] if last[s] else 'initial'}"
                       f"{', ' + writes[last[s]][2] if last[s] else ''})"
                       + (f" or {'unacknowledged' if durable is None else 'later'}"
                          f" {maybe[s][:6]}" if s in maybe else ""))
            if len(bad) >= 10:
                break
    if bad:
        raise TestFailure(f"{what}: {len(bad)}+ sectors lost acknowledged writes:\n  "
                          + "\n  ".join(bad))
    return acked, older


def test_main(a):
    nbd_kinds = ("nbd", "nbd-writeback")
    if a.backend in nbd_kinds:
        rlib.need("nbdkit")
    writeback = a.backend == "nbd-writeback"
    rng = random.Random(a.seed)
    T = rlib.TMP
    img = os.path.join(T, "a.img")
    with open(img, "wb") as f:
        for s0 in range(0, a.size // SECTOR, 2048):
            f.write(b"".join(sector_bytes(0, s) for s in range(s0, min(s0 + 2048, a.size // SECTOR))))
    logpath = os.path.join(T, "writes.log")
    open(logpath, "w").close()
    sock = os.path.join(T, "nbd.sock")
    kit = None
    if a.backend in nbd_kinds:
        kitlog = os.path.join(T, "nbdkit-requests.log")
        filters = ["log"] + (["cache"] if writeback else [])
        args = ["file", img, f"logfile={kitlog}", "logappend=true"]
        if writeback:
            args.append("cache=writeback")
        kit = rlib.Nbdkit(os.path.join(T, "kit.sock"), args, filters=filters)
        spec = f"a={kit.uri()}"
    else:
        spec = f"a={img}"
    lie = ""
    if a.negative_control:
        # ackfirst: writes acknowledged 300 ms before they are done;
        # noflush: FLUSH and FUA never reach the back end's volatile cache
        lie = "noflush=1" if writeback else "ackfirst=300ms"
        spec = f"a=fault:{lie}:{spec[2:]}"

    def start():
        return rlib.Shoald([spec], sock=sock, cache=a.cache)

    def durable_now():
        if not writeback:
            return None
        return read_durable(logpath, read_log(logpath))[0]

    d = start()
    wargs = [sys.executable, os.path.abspath(__file__), "--writer", "--seed", str(a.seed),
             "--uri", d.uri("a"), "--log", logpath, "--size", str(a.size), "--depth", str(a.depth)]
    wlog = open(os.path.join(T, "writer.log"), "ab")
    writer = subprocess.Popen(wargs, stdout=wlog, stderr=wlog, stdin=subprocess.DEVNULL)
    rlib._procs.append((writer, "writer"))
    t0 = time.time()
    total_kills = 0
    prev_acked = 0
    detected = None
    lost_unflushed = 0
    for k in range(a.kills):
        # let the load run a seeded random while (and at least some writes)
        time.sleep(rng.uniform(0.05, a.max_gap))
        deadline = time.time() + 20
        while len(read_log(logpath)) < prev_acked + 20:
            check(writer.poll() is None, f"writer exited (status {writer.returncode})")
            check(time.time() < deadline, "the writer made no progress for 20 s")
            time.sleep(0.05)
        check(d.alive(), f"shoald died by itself before kill {k + 1}")
        if kit is not None:
            check(kit.proc.poll() is None, f"nbdkit died by itself before kill {k + 1}")
        d.proc.kill()
        if writeback:
            kit.proc.kill()  # and the back end's volatile cache with it
            kit.proc.wait()
        d.proc.wait()
        total_kills += 1
        writes = read_log(logpath)
        what = f"after kill {k + 1} (seed {a.seed})"
        try:
            acked, older = verify(open(img, "rb").read(), a.size, writes, what, durable_now())
        except TestFailure as e:
            if not a.negative_control:
                raise
            detected = (k + 1, str(e))
            break
        prev_acked = len(writes)
        t1 = time.time()
        if writeback:
            kit.start()
        d = start()
        if writeback:
            lost_unflushed += older
            state = (f"{len(durable_now())} of them durable and all of those on the back end;"
                     f" {older} sectors lost an unflushed write (allowed)")
        else:
            state = "all on the back end"
        log(f"kill {k + 1} at {t1 - t0:.1f} s: {len(writes)} writes logged, {acked} acknowledged,"
            f" {state}; restarted in {time.time() - t1:.2f} s")
    if a.negative_control:
        writer.send_signal(signal.SIGTERM)
        try:
            writer.wait(30)
        except subprocess.TimeoutExpired:
            writer.kill()
        if detected is None:
            raise TestFailure(f"negative control: shoald ran on a lying back end (fault:{lie}), and"
                              f" the checker found no lost write in {total_kills} kill -9: it"
                              f" cannot see a lost write")
        first = detected[1].splitlines()
        log(f"negative control: the checker caught the lying back end (fault:{lie}) at kill"
            f" {detected[0]}:"
            f" {first[0]}")
        for line in first[1:4]:
            log("  " + line.strip())
        if d.alive():
            d.stop()
        return 0
    # a last stretch of load, then stop the writer and check everything
    time.sleep(0.3)
    writer.send_signal(signal.SIGTERM)
    try:
        rc = writer.wait(30)
    except subprocess.TimeoutExpired:
        writer.kill()
        raise TestFailure("the writer did not stop within 30 s")
    check(rc == 0, f"writer exited with status {rc}: {open(os.path.join(T, 'writer.log')).read()[-500:]}")
    writes = read_log(logpath)
    durable = None
    if writeback:
        # a flush of our own: everything the running daemon acknowledged
        # (the writer's last connection) is now durable too
        h = d.open("a")
        h.flush()
        h.shutdown()
        durable, gen, acked_by_gen = read_durable(logpath, writes)
        durable.update(acked_by_gen[gen])
    acked, _ = verify(open(img, "rb").read(), a.size, writes, "back end file at the end", durable)
    # and through the (restarted) daemon
    h = d.open("a")
    buf = bytearray()
    for off in range(0, a.size, 4 << 20):
        buf += h.pread(min(4 << 20, a.size - off), off)
    h.shutdown()
    verify(memoryview(buf), a.size, writes, "read back through shoald at the end", durable)
    flushes = count_flush_acks(logpath)
    if a.backend in nbd_kinds:
        nf, nfl = check_backend_log(kitlog, writes, flushes)
        log(f"back end saw all acknowledged FUA writes as FUA ({nf} distinct) and {nfl} flushes"
            f" (client: {flushes} acknowledged)")
    fua = sum(1 for w in writes.values() if w[2] == "f" and w[3] == "A")
    zero = sum(1 for w in writes.values() if w[2] == "z" and w[3] == "A")
    lost = sum(1 for w in writes.values() if w[3] != "A")
    extra = ""
    if durable is not None:
        extra = f", {len(durable)} durable by FUA or flush"
        check(lost_unflushed > 0 or a.kills < 5,
              "no kill lost an unflushed write: the back end's cache did not hold any back")
        log(f"unflushed acknowledged writes lost over all kills (allowed): {lost_unflushed} sectors")
    log(f"seed {a.seed}: {total_kills} kill -9 in {time.time() - t0:.1f} s; {len(writes)} writes sent,"
        f" {acked} acknowledged ({fua} FUA, {zero} zero{extra}) all where they must be;"
        f" {lost} unacknowledged; {flushes} flushes acknowledged")
    d.stop()
    return 0


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--max-gap", type=float, default=1.2, help="max seconds between kills")
    p.add_argument("--size", type=int, default=16 << 20)
    p.add_argument("--cache", default="2M")
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--backend", choices=["file", "nbd", "nbd-writeback"], default="file")
    p.add_argument("--negative-control", action="store_true",
                   help="run on a back end that acknowledges writes before doing them;"
                   " pass only if the checker notices")
    p.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    p.add_argument("--first-id", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = int(os.environ.get("SHOAL_SEED", time.time_ns() % 1000000007))
    return a


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    if args.writer:
        sys.exit(writer_main(args))
    log(f"seed {args.seed}, {args.kills} kills, {args.size} bytes, back end {args.backend}"
        + (" (negative control)" if args.negative_control else ""))
    rlib.run(lambda: test_main(args))
