#!/usr/bin/python3
"""A reduced stale-read checker for cluster events (issue 11, test (f)).

One client keeps up to --depth requests in flight on one volume over NBD
(libnbd's asynchronous API), never two overlapping ones at once, so the
model of the volume is exact: every byte has one expected value, except
the ranges of writes whose outcome the client never learnt (the server
dropped the connection while they were in flight: a move). A read must
return the model's bytes; over an unknown range either the old or the
new bytes, after which the range is known again. A mismatch is a stale
(or wrong) read: the checker prints the op and exits 1.

Runs in segments sharing a state file (the model), so a test can move the
volume or kill a memcached server between them or during one:
  --init IMAGE         start the model from the image's bytes
  --ops N              requests in this segment
  --during CMD         a shell command started after a third of the ops,
                       while requests are in flight; the segment ends
                       after N ops once it exited (or when the server
                       drops the connection: the volume moved away)
  --verify FILE        read the volume whole (resolving unknown ranges) and
                       compare it and FILE (the back end) with the model
Exit: 0 fine, 1 a wrong read, 2 usage or a failed command.
"""
import argparse
import os
import pickle
import random
import subprocess
import sys

import nbd

BS = 4096


class Model:
    def __init__(self, data):
        self.data = bytearray(data)
        self.unknown = []  # [offset, old bytes, new bytes]
        self.reads = self.writes = self.stale = 0

    def changed(self, off, data):
        """A change completed: its range is known again (it came after the
        writes whose outcome is unknown: they were sent on an older
        connection)."""
        n = len(data)
        self.data[off:off + n] = data
        keep = []
        for uo, old, new in self.unknown:
            if off + n <= uo or uo + len(old) <= off:
                keep.append([uo, old, new])
                continue
            if uo < off:
                keep.append([uo, old[:off - uo], new[:off - uo]])
            if off + n < uo + len(old):
                keep.append([off + n, old[off + n - uo:], new[off + n - uo:]])
        self.unknown = keep
        self.writes += 1

    def check_read(self, off, got, what):
        n = len(got)
        want = bytearray(self.data[off:off + n])
        keep = []
        for u in self.unknown:
            uo, old, new = u
            lo, hi = max(off, uo), min(off + n, uo + len(old))
            if lo >= hi:
                keep.append(u)
                continue
            seg = got[lo - off:hi - off]
            if seg not in (old[lo - uo:hi - uo], new[lo - uo:hi - uo]):
                fail(f"{what}: bytes [{lo}, {hi}) of a write with unknown outcome "
                     f"[{uo}, +{len(old)}) are neither the old nor the new data: got "
                     f"{bytes(seg[:8]).hex()}.., old {old[lo - uo:lo - uo + 8].hex()}.., "
                     f"new {new[lo - uo:lo - uo + 8].hex()}..")
            want[lo - off:hi - off] = seg
            self.data[lo:hi] = seg
            # the rest of that write stays unknown
            if uo < lo:
                keep.append([uo, old[:lo - uo], new[:lo - uo]])
            if hi < uo + len(old):
                keep.append([hi, old[hi - uo:], new[hi - uo:]])
        self.unknown = keep
        if bytes(got) != bytes(want):
            first = next(i for i in range(n) if got[i] != want[i])
            fail(f"{what}: STALE OR WRONG READ at byte {off + first} (block "
                 f"{(off + first) // BS}): got {got[first]:#04x}, want {want[first]:#04x}")
        self.reads += 1


def fail(msg):
    print(f"cluster_checker: {msg}", file=sys.stderr)
    sys.exit(1)


def random_op(rng, size, busy):
    """(kind, offset, length) not overlapping any range in busy."""
    for _ in range(100):
        kind = rng.choices(["read", "write", "zero", "reread"], [40, 35, 5, 20])[0]
        if rng.random() < 0.7:
            blk = rng.randrange(size // BS)
            nblk = rng.choice([1, 1, 2, 4, 16])
            off, ln = blk * BS, min(nblk * BS, size - blk * BS)
        else:  # unaligned
            off = rng.randrange(size - 1)
            ln = min(rng.randrange(1, 3 * BS), size - off)
        if all(off + ln <= b or b + bl <= off for b, bl in busy):
            return kind, off, ln
    return None


def run_segment(args, m, rng):
    h = nbd.NBD()
    try:
        h.connect_uri(args.uri)
    except nbd.Error as e:
        print(f"cluster_checker: cannot connect to {args.uri}: {e}", file=sys.stderr)
        sys.exit(2)
    size = h.get_size()
    if size != len(m.data):
        fail(f"volume size {size}, model {len(m.data)}")
    inflight = {}  # cookie -> (kind, off, len, buf, old)
    during = None
    sent = 0
    lost = False
    last = {}  # recently written offsets, for rereads
    while True:
        if args.during and during is None and sent >= args.ops // 3:
            during = subprocess.Popen(args.during, shell=True)
        running = during is not None and during.poll() is None
        want_more = not lost and (sent < args.ops or running)
        if want_more and len(inflight) < args.depth:
            busy = [(o, ln) for (_, o, ln, _, _) in inflight.values()]
            op = random_op(rng, size, busy)
            if op and op[0] == "reread" and last:
                o, ln = rng.choice(list(last.items()))
                if all(o + ln <= b or b + bl <= o for b, bl in busy):
                    op = ("read", o, ln)
                else:
                    op = None
            elif op and op[0] == "reread":
                op = ("read", op[1], op[2])
            if op:
                kind, off, ln = op
                old = bytes(m.data[off:off + ln])
                try:
                    if kind == "read":
                        buf = nbd.Buffer(ln)
                        c = h.aio_pread(buf, off)
                    elif kind == "write":
                        data = rng.randbytes(ln) if rng.random() < 0.8 else bytes([rng.randrange(256)]) * ln
                        buf = nbd.Buffer.from_bytearray(bytearray(data))
                        c = h.aio_pwrite(buf, off)
                    else:
                        buf = None
                        c = h.aio_zero(ln, off)
                    inflight[c] = (kind, off, ln, buf, old)
                    sent += 1
                    continue
                except nbd.Error:
                    lost = True
        if not inflight:
            if not want_more:
                break
            if lost:
                break
            continue
        try:
            h.poll(-1)
        except nbd.Error:
            lost = True
        for c in list(inflight):
            kind, off, ln, buf, old = inflight[c]
            try:
                if not h.aio_command_completed(c):
                    continue
                ok = True
            except nbd.Error:
                ok = False
            if not ok and h.aio_is_dead():
                lost = True
            if lost and not ok:
                # the answer never came: a change may or may not have landed
                if kind == "write":
                    m.unknown.append([off, old, bytes(buf.to_bytearray())])
                elif kind == "zero":
                    m.unknown.append([off, old, bytes(ln)])
                del inflight[c]
                continue
            del inflight[c]
            if not ok:
                # refused (EPERM after the move fenced writes): nothing changed
                continue
            if kind == "read":
                m.check_read(off, buf.to_bytearray(), f"read [{off}, +{ln})")
            elif kind == "write":
                m.changed(off, buf.to_bytearray())
                last[off] = ln
            else:
                m.changed(off, bytes(ln))
                last[off] = ln
            if len(last) > 256:
                last.pop(next(iter(last)))
        if lost and not inflight:
            break
    if during is not None and during.wait() != 0:
        print(f"cluster_checker: '{args.during}' failed", file=sys.stderr)
        sys.exit(2)
    if not lost:
        h.shutdown()
    print(f"cluster_checker: {sent} requests sent, {m.reads} reads checked, {m.writes} changes, "
          f"{len(m.unknown)} unknown ranges{', connection dropped' if lost else ''}")


def verify(args, m):
    h = nbd.NBD()
    h.connect_uri(args.uri)
    size = h.get_size()
    for off in range(0, size, 1 << 20):
        ln = min(1 << 20, size - off)
        m.check_read(off, h.pread(ln, off), f"final read [{off}, +{ln})")
    h.shutdown()
    with open(args.verify, "rb") as f:
        disk = f.read()
    if disk != bytes(m.data):
        first = next(i for i in range(len(disk)) if disk[i] != m.data[i])
        fail(f"the back end file differs from the model at byte {first} (a lost write)")
    print("cluster_checker: volume and back end match the model")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--uri", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--init")
    p.add_argument("--ops", type=int, default=2000)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--during")
    p.add_argument("--verify")
    args = p.parse_args()
    if args.init:
        with open(args.init, "rb") as f:
            m = Model(f.read())
    else:
        with open(args.state, "rb") as f:
            m = pickle.load(f)
    rng = random.Random(args.seed)
    if args.verify:
        verify(args, m)
    else:
        run_segment(args, m, rng)
    with open(args.state + ".tmp", "wb") as f:
        pickle.dump(m, f)
    os.replace(args.state + ".tmp", args.state)


if __name__ == "__main__":
    main()
