#!/usr/bin/python3
"""The torture test with NBD and iSCSI clients on the same volumes at once
(issue 12: cross-protocol coherence, COMPARE AND WRITE and EXTENDED COPY
included), checked by torture.py's model (imported, not copied).

Each volume gets torture.py's NBD connections plus --iscsi-conns iSCSI
sessions (iscsi_initiator.py, each with its own ImmediateData / InitialR2T
choice, several tasks in flight), all driven from one poll loop, so
requests of both protocols overlap in the daemon. The op stream is
torture.py's; an op drawn for an iSCSI connection becomes its SCSI form on
the 512-byte blocks that cover its range:
  read, cache     -> READ(16), some with FUA
  write           -> WRITE(16) (+FUA), or WRITE SAME(16) of a non-zero block
  zero            -> WRITE SAME(16) of zeros, with or without the UNMAP bit, or UNMAP
  trim            -> UNMAP (one or two descriptors) or WRITE SAME(16) UNMAP
  flush           -> SYNCHRONIZE CACHE(16)
UNMAP and WRITE SAME with UNMAP are modelled as zeros (LBPRZ=1).

Besides, --caw-pct of the ops are COMPARE AND WRITEs and --xcopy-pct
EXTENDED COPYs (LID1, one block-to-block segment or two from different
sources into one destination range, within a volume or between volumes of
this shoald, the volumes named by their VPD 0x83 NAA designators). The model stays simple and sound:
  - a CAW goes only to blocks whose value the checker knows exactly (one
    candidate, no change in flight), compares that value and must return
    GOOD; its write is then a change like any write. A third of them
    compare a value with one byte changed and must return MISCOMPARE with
    that byte's offset in the sense's INFORMATION field, and change nothing;
  - an XCOPY's source ranges must be known the same way; the destination
    then takes those values (a change, in flight until the copy completes);
  - while a CAW or an XCOPY is in flight, no change is sent to its range
    (its source range for XCOPY): one drawn there becomes a FLUSH;
  - where no range is known, a racing CAW: it compares the newest allowed
    value or the data of a write in flight, with changes racing it. GOOD:
    its compare data is checked like a read's data, and its write is a
    change; MISCOMPARE: it changed nothing, the bytes before the offset
    must be allowed values and some allowed value must differ at it.
After the op stream, the CAW counter: --counter-conns iSCSI sessions
increment a counter in one 512-byte block of a separate volume by CAW retry
loops (MISCOMPARE -> READ -> CAW again) while NBD connections write the
other blocks of the same 4 KiB cache block and its neighbours and read the
counter; every read must lie between the GOOD CAWs completed before it was
sent and the CAWs sent before it completed, and the final count (through
NBD, iSCSI and on disk) must equal the GOOD CAWs.

  torture_iscsi.py                      CI run (6000 ops)
  torture_iscsi.py --seed N --ops N ... any torture.py option, plus the above
  torture_iscsi.py --negative-control   corrupt one iSCSI read in the client:
                                        the checker must fail (exit 1)

A run is not replayed exactly by its seed: whether a CAW or XCOPY finds a
known range depends on when replies arrive.
"""
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
import torture  # noqa: E402
import iscsi_initiator as ii  # noqa: E402
from caw_counter import CawCounter  # noqa: E402
from rlib import log  # noqa: E402
from torture import BLOCK, CHANGES, Conn, Op, Src, Torture, _Abort  # noqa: E402

import nbd  # noqa: E402

IQN = "iqn.2026-12.org.shoal:"
LB = ii.LBA
MAX_RW = 65536 * LB  # VPD 0xB0 MAXIMUM TRANSFER LENGTH
EIO = 5


class IOp(Op):
    """An op on an iSCSI connection: its SCSI command and what to expect."""
    __slots__ = ("cmd", "cmp", "expect_off", "task", "segs", "racy")

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cmd = ""
        self.cmp = None
        self.expect_off = None
        self.task = None
        self.segs = None  # XCOPY: [(source volume, offset, length)]
        self.racy = False


class IConn(Conn):
    """An iSCSI session to a volume's target; .h is the initiator."""

    def __init__(self, idx, vol, depth, immediate, initial_r2t):
        super().__init__(idx, vol, depth)
        self.immediate = immediate
        self.initial_r2t = initial_r2t


def blocks_of(off, ln, size):
    """The 512-byte blocks covering [off, off + ln), inside the addressable
    part of a volume of `size` bytes: (byte offset, byte length)."""
    end = size // LB * LB
    lo = min(off // LB * LB, end - LB)
    hi = min(max(lo + LB, -(-(off + ln) // LB) * LB), end)
    return lo, hi - lo


class ITorture(Torture):
    def __init__(self, args):
        super().__init__(args)
        self.iport = rlib.free_port()
        self.locks = []  # (volume name, lo, hi, op): no change may go there
        self.naa = {}
        self.iscsi_reads = 0

    def daemon_extra(self):
        # the counter's own volume: outside the model, checked by itself
        self.cpath = os.path.join(rlib.TMP, "vcount.img")
        with open(self.cpath, "wb") as f:
            f.write(os.urandom(1 << 20))
        return ["--iscsi", f"127.0.0.1:{self.iport}", f"vcount={self.cpath}"]

    def setup(self):
        super().setup()
        a = self.a
        combos = [(True, True), (False, True), (True, False), (False, False)]
        for i, v in enumerate(self.vols):
            for j in range(a.iscsi_conns):
                imm, r2t = combos[(i + j) % 4]
                c = IConn(len(self.conns), v, self.rng.randint(1, a.depth), imm, r2t)
                self.conns.append(c)
                self.connect(c)
            t = c.h.sync(ii.inquiry(0x83), data_in=255)
            rlib.check(t.ok(), f"INQUIRY VPD 0x83 of {v.name}: {t.describe()}")
            self.naa[v.name] = ii.naa_designator(t.data_in)
        rlib.check(len(set(self.naa.values())) == len(self.vols),
                   f"volumes share an NAA designator: {self.naa}")
        self.iconns = [c for c in self.conns if isinstance(c, IConn)]

    def connect(self, c):
        if not isinstance(c, IConn):
            return super().connect(c)
        c.h = ii.Conn("127.0.0.1", self.iport, IQN + c.vol.name, immediate=c.immediate,
                      initial_r2t=c.initial_r2t, first_burst=self.rng.choice([4096, 65536]),
                      max_burst=self.rng.choice([65536, 262144])).login()
        c.inflight = 0

    # -- the op stream -----------------------------------------------------

    def locked(self, vname, lo, hi):
        return any(n == vname and lo < h and l < hi for n, l, h, _ in self.locks)

    def known(self, v, lo, hi):
        """The bytes of [lo, hi) if the model knows them exactly (one
        candidate everywhere, no change in flight), else None."""
        if self.locked(v.name, lo, hi):
            return None
        if any(w.off < hi and lo < w.off + w.len for w in v.inflight_changes):
            return None
        out = []
        for a, b, cands in v.model.get(lo, hi):
            if len(cands) != 1 or cands[0].kind == "U":
                return None
            out.append(bytes(cands[0].slice(a, b)))
        return b"".join(out)

    def gen_op(self, idx):
        a, r = self.a, self.rng
        x = r.random() * 100
        if x < a.caw_pct + a.xcopy_pct:
            op = self.special_op(idx, x < a.caw_pct)
            if op is not None:
                return op
        op = super().gen_op(idx)
        if op.conn >= 0 and isinstance(self.conns[op.conn], IConn):
            op = self.to_scsi(op)
        if op.kind in CHANGES and self.locked(op.vol, op.off, op.off + op.len):
            self.stats["change over a CAW/XCOPY range -> flush"] += 1
            cls = IOp if isinstance(op, IOp) else Op
            op = cls(op.idx, op.conn, op.vol, "flush", note="(drawn over a CAW/XCOPY range)")
            if cls is IOp:
                op.cmd = "SYNCHRONIZE CACHE(16)"
        return op

    def to_scsi(self, op):
        """torture.py's op for an iSCSI connection, in SCSI terms."""
        r = self.rng
        v = self.vol(op.vol)
        if op.kind in ("pause", "reconnect"):
            return op
        if op.kind == "flush":
            n = IOp(op.idx, op.conn, op.vol, "flush")
            n.cmd = "SYNCHRONIZE CACHE(16)"
            return n
        off, ln = blocks_of(op.off, op.len, v.size)
        kind = op.kind
        n = IOp(op.idx, op.conn, op.vol, kind, off, ln)
        if kind in ("read", "cache"):
            n.kind = "read"
            n.len = min(ln, MAX_RW)
            n.cmd = "READ(16)" + (" FUA" if r.random() < 0.1 else "")
        elif kind == "write":
            if r.random() < 0.1 and ln <= (1 << 20):
                blk = r.choice(self.pool[:-1])[:LB]
                n.data = blk * (ln // LB)
                n.cmd = "WRITE SAME(16) pattern"
            else:
                n.len = ln = min(ln, MAX_RW)
                n.data = self.write_data(off, ln, off % BLOCK == 0)
                n.cmd = "WRITE(16)" + (" FUA" if op.flags & nbd.CMD_FLAG_FUA else "")
        else:
            n.kind = "zero"
            y = r.random()
            if kind == "zero" and y < 0.5:
                n.cmd = "WRITE SAME(16) zeros"
            elif y < 0.7:
                n.cmd = "WRITE SAME(16) UNMAP"
            else:
                n.cmd = "UNMAP" + (" 2 descriptors" if ln >= 2 * LB and r.random() < 0.5 else "")
        n.note = n.cmd
        return n

    def special_op(self, idx, caw):
        r = self.rng
        c = r.choice(self.iconns)
        v = c.vol
        off, ln = self.pick_range(v, True)
        if caw:
            off, ln = blocks_of(off, r.randint(1, 8) * LB, v.size)
            cur = self.known(v, off, off + ln)
            if cur is None:
                self.stats["caw: no known range"] += 1
                return self.racy_caw(idx, c, v, off, ln)
            bad = r.random() < 1 / 3
            op = IOp(idx, c.idx, v.name, "caw-bad" if bad else "caw", off, ln)
            if bad:
                p = r.randrange(ln)
                cmp = bytearray(cur)
                cmp[p] ^= 1 << r.randrange(8)
                op.cmp, op.expect_off = bytes(cmp), p
                op.data = r.randbytes(ln)
                op.note = f"COMPARE AND WRITE, compare data wrong at byte {p}: MISCOMPARE expected"
            else:
                op.cmp = cur
                op.data = self.write_data(off, ln, off % BLOCK == 0)
                op.note = "COMPARE AND WRITE" + (" FUA" if r.random() < 0.3 else "")
            op.cmd = op.note
            return op
        return self.xcopy_op(idx, c)

    def xcopy_op(self, idx, c):
        """EXTENDED COPY: one segment, or two from sources in any volumes
        into one destination range. Each source range must be known, and is
        locked while the copy runs; the destination may be raced."""
        r = self.rng
        srcs = []
        for k in range(2 if r.random() < 0.3 else 1):
            v = c.vol if k == 0 else r.choice(self.vols)
            off, ln = self.pick_range(v, True)
            off, ln = blocks_of(off, min(ln, 256 * LB), v.size)
            if any(sv is v and off < so + sl and so < off + ln for sv, so, sl, _ in srcs):
                return None
            cur = self.known(v, off, off + ln)
            if cur is None:
                self.stats["xcopy: no known source"] += 1
                return None
            srcs.append((v, off, ln, cur))
        total = sum(sl for _, _, sl, _ in srcs)
        d = srcs[0][0] if r.random() < 0.5 else r.choice(self.vols)
        for _ in range(4):
            doff, _ = self.pick_range(d, True)
            doff, _ = blocks_of(doff, total, d.size)
            if doff + total > d.size // LB * LB:
                continue
            if any(sv is d and doff < so + sl and so < doff + total for sv, so, sl, _ in srcs):
                continue
            if self.locked(d.name, doff, doff + total):
                continue
            op = IOp(idx, c.idx, d.name, "xcopy", doff, total)
            op.data = b"".join(cur for _, _, _, cur in srcs)
            op.segs = [(sv.name, so, sl) for sv, so, sl, _ in srcs]
            op.note = op.cmd = "EXTENDED COPY from " + " + ".join(
                f"{sv.name} [{so:#x}, +{sl})" for sv, so, sl, _ in srcs)
            if len(srcs) > 1:
                self.stats["xcopy: two segments"] += 1
            return op
        self.stats["xcopy: no destination"] += 1
        return None

    def racy_caw(self, idx, c, v, off, ln):
        """A CAW on blocks that changes may be racing: it compares a value
        the checker allows (the newest candidate, or the data of a write in
        flight over the whole range) and may return GOOD or MISCOMPARE.
        GOOD: its compare data must be a value the blocks could hold while
        it ran (checked like a read), and its write is a change. MISCOMPARE:
        nothing changed, and the offset must be plausible (see complete)."""
        if self.locked(v.name, off, off + ln):
            return None
        r = self.rng
        full = [w for w in v.inflight_changes
                if w.src is not None and w.src.kind != "U" and w.off <= off
                and off + ln <= w.off + w.len]
        if full and r.random() < 0.5:
            cmp = bytes(r.choice(full).src.slice(off, off + ln))
            how = "an in-flight change's data"
        else:
            parts = []
            for a, b, cands in v.model.get(off, off + ln):
                if cands[0].kind == "U":
                    return None
                parts.append(bytes(cands[0].slice(a, b)))
            cmp = b"".join(parts)
            how = "the newest allowed value"
        op = IOp(idx, c.idx, v.name, "caw", off, ln)
        op.racy = True
        op.cmp = cmp
        op.data = self.write_data(off, ln, off % BLOCK == 0)
        op.note = op.cmd = f"COMPARE AND WRITE, racing, comparing {how}"
        self.stats["caw racing"] += 1
        return op

    # -- sending -------------------------------------------------------------

    def send(self, op):
        c = self.conns[op.conn]
        if not isinstance(c, IConn):
            return super().send(op)
        v = self.vol(op.vol)
        op.sent = self.tick()
        lba, nb = op.off // LB, op.len // LB
        cb = lambda t, op=op: self.iscsi_done(op, t)  # noqa: E731
        h = c.h
        if op.kind == "read":
            self.track_read(op, v)
            h.submit(ii.read16(lba, nb, "FUA" in op.cmd), cb, data_in=op.len)
        elif op.kind in CHANGES:
            if op.kind == "zero":
                op.src = Src("Z", op)
            else:
                op.src = Src("D", op, memoryview(op.data), op.off)
            if op.racy:
                self.track_read(op, v)  # what its compare may have met
            self.track_change(op, v)
            if op.kind == "caw":
                if not op.racy:
                    self.locks.append((v.name, op.off, op.off + op.len, op))
                h.submit(ii.compare_and_write(lba, nb, "FUA" in op.cmd), cb,
                         data_out=op.cmp + op.data)
            elif op.kind == "xcopy":
                names = []  # the CSCD list: each volume once
                for n in [sv for sv, _, _ in op.segs] + [op.vol]:
                    if n not in names:
                        names.append(n)
                segs, dlba = [], lba
                for sv, so, sl in op.segs:
                    self.locks.append((sv, so, so + sl, op))
                    segs.append((names.index(sv), names.index(op.vol), sl // LB, so // LB, dlba))
                    dlba += sl // LB
                cdb, pl = ii.extended_copy([self.naa[n] for n in names], segs)
                h.submit(cdb, cb, data_out=pl)
            elif op.cmd.startswith("WRITE SAME"):
                blk = op.data[:LB] if op.kind == "write" else bytes(LB)
                h.submit(ii.write_same16(lba, nb, "UNMAP" in op.cmd), cb, data_out=blk)
            elif op.cmd.startswith("UNMAP"):
                half = nb // 2 if "2 desc" in op.cmd else nb
                ranges = [(lba, half)] + ([(lba + half, nb - half)] if half < nb else [])
                cdb, pl = ii.unmap(ranges)
                h.submit(cdb, cb, data_out=pl)
            else:
                h.submit(ii.write16(lba, nb, "FUA" in op.cmd), cb, data_out=op.data)
        elif op.kind == "caw-bad":
            self.locks.append((v.name, op.off, op.off + op.len, op))
            h.submit(ii.compare_and_write(lba, nb), cb, data_out=op.cmp + op.data)
        elif op.kind == "flush":
            h.submit(ii.sync_cache16(), cb)
        else:
            raise AssertionError(op.kind)
        c.inflight += 1
        self.inflight += 1
        self.maxinflight = max(self.maxinflight, self.inflight)

    def iscsi_done(self, op, t):
        op.task = t
        if op.kind in ("caw", "caw-bad", "xcopy"):
            self.locks = [lk for lk in self.locks if lk[3] is not op]
        what = op.cmd.split(",")[0].split(" from")[0].replace(" FUA", "")
        self.stats["iscsi " + (what or op.kind)] += 1
        if t.ok():
            err = 0
        elif op.kind == "caw-bad" or (op.racy and t.sense is not None
                                      and t.sense.key == ii.SK_MISCOMPARE):
            err = 0  # judged in complete()
        else:
            op.note += f" [{t.describe()}]"
            err = EIO
        self.on_done(op, err)

    def complete(self, op, v):
        if not isinstance(op, IOp):
            return super().complete(op, v)
        if op.kind == "xcopy":
            v = self.vol(op.vol)
        if op.kind == "read":
            v.inflight_reads.discard(op)
            if op.err:
                self.fail_op(op, "read failed")
            data = op.task.data_in
            self.iscsi_reads += 1
            if self.a.negative_control and self.iscsi_reads >= 200:
                # what a stale or torn read would look like; every read from
                # here on, in case one flip happens to hit an allowed value
                data[len(data) // 2] ^= 0x5A
                op.note += " (corrupted in the client: --negative-control)"
            op.task = None
            self.check_read(op, v, memoryview(data))
            op.snap = op.conc = None
            return
        if op.kind == "caw-bad":
            t = op.task
            s = t.sense
            if t.status != ii.CHECK_CONDITION or s is None or s.key != ii.SK_MISCOMPARE \
                    or (s.asc, s.ascq) != (0x1D, 0x00):
                self.fail_op(op, f"COMPARE AND WRITE with wrong compare data: {t.describe()},"
                             " not MISCOMPARE")
            if s.info != op.expect_off:
                self.fail_op(op, f"MISCOMPARE at offset {s.info}, the compare data differed"
                             f" first at byte {op.expect_off}")
            self.stats["caw miscompare (expected)"] += 1
            return
        if op.racy:
            v.inflight_reads.discard(op)
            if not op.err and not op.task.ok():
                return self.racy_miscompare(op, v)
            if not op.err:
                self.stats["caw racing: GOOD"] += 1
                # it saw its compare data, all of it at one instant
                self.check_read(op, v, memoryview(op.cmp))
            op.snap = op.conc = None
        elif op.kind == "caw" and op.err:
            self.fail_op(op, "COMPARE AND WRITE of the known value did not return GOOD")
        super().complete(op, v)

    def racy_miscompare(self, op, v):
        """A racing CAW said MISCOMPARE at byte p: it wrote nothing; bytes
        before p matched the compare data, so each must be a value the
        model allowed meanwhile; and at p some allowed value must differ
        from the compare data, or no target could have seen a difference."""
        v.inflight_changes.discard(op)
        self.stats["caw racing: MISCOMPARE"] += 1
        p = op.task.sense.info
        if p is None or not 0 <= p < op.len:
            self.fail_op(op, f"MISCOMPARE at offset {p}, outside the {op.len} bytes compared")
        x = op.off + p
        cmp = memoryview(op.cmp)
        for a, b, cands, _ in self.read_segments(op):
            if a < x:
                torture.match_runs(cands, cmp, op.off, a, min(b, x))
            if a <= x < b and all(c.kind != "U" and c.byte(x) == cmp[p] for c in cands):
                self.fail_op(op, f"MISCOMPARE at byte {p}, where every value allowed equals"
                             f" the compare data ({cmp[p]:#04x})")
        op.snap = op.conc = None
        op.src = None

    # -- the poll loop ---------------------------------------------------------

    def pump(self, timeout_ms):
        fds, evs = {}, {}
        poller = select.poll()
        for c in self.conns:
            if c.pause_end is not None or c.h is None:
                continue
            if isinstance(c, IConn):
                ev = c.h.events()
                fd = c.h.fileno()
            else:
                ev = rlib.aio_events(c.h)
                if not ev:
                    continue
                fd = c.h.aio_get_fd()
            fds[fd], evs[fd] = c, ev
            poller.register(fd, ev)
        if not fds:
            return
        bad = select.POLLERR | select.POLLHUP
        try:
            for fd, rev in poller.poll(timeout_ms):
                c, ev = fds[fd], evs[fd]
                if isinstance(c, IConn):
                    if rev & select.POLLOUT:
                        c.h.on_writable()
                    if rev & (select.POLLIN | bad):
                        c.h.on_readable()
                    continue
                if (rev & select.POLLOUT) or ((rev & bad) and (ev & select.POLLOUT)):
                    c.h.aio_notify_write()
                if (rev & select.POLLIN) or ((rev & bad) and (ev & select.POLLIN)):
                    c.h.aio_notify_read()
        except ii.IscsiError as e:
            self.failures.append(f"iSCSI connection {c.idx} ({c.vol.name}): {e}")
            raise _Abort() from None
        self.last_progress = time.time() if self.completed != self._seen else self.last_progress
        self._seen = self.completed
        if self.aborted:
            raise _Abort()

    def run_ops(self, nops):
        super().run_ops(nops)
        log("iSCSI: " + ", ".join(f"{k} {n}" for k, n in sorted(self.stats.items())
                                  if k.startswith(("iscsi", "caw", "xcopy", "change over"))))
        rlib.check(self.stats["iscsi COMPARE AND WRITE"] > 0 and self.stats["iscsi EXTENDED COPY"] > 0,
                   "the run sent no COMPARE AND WRITE or no EXTENDED COPY")
        if self.a.counter_incs:
            CawCounter(self).run()

    def repro_args(self):
        a = self.a
        return super().repro_args() + [
            "--iscsi-conns", str(a.iscsi_conns), "--caw-pct", str(a.caw_pct),
            "--xcopy-pct", str(a.xcopy_pct), "--counter-incs", str(a.counter_incs)] + \
            (["--negative-control"] if a.negative_control else [])


def options(p):
    g = p.add_argument_group("iSCSI")
    g.add_argument("--iscsi-conns", type=int, default=2, help="iSCSI sessions per volume")
    g.add_argument("--caw-pct", type=float, default=2.0,
                   help="percent of ops that try a COMPARE AND WRITE")
    g.add_argument("--xcopy-pct", type=float, default=1.0,
                   help="percent of ops that try an EXTENDED COPY")
    g.add_argument("--counter-incs", type=int, default=300,
                   help="CAW counter: increments to reach (0: no counter phase)")
    g.add_argument("--counter-conns", type=int, default=4, help="CAW counter: iSCSI sessions")
    g.add_argument("--counter-secs", type=float, default=20.0,
                   help="CAW counter: at most this long")
    g.add_argument("--negative-control", action="store_true",
                   help="corrupt iSCSI reads in the client from the 200th on: the checker"
                   " must fail (exit 0 when it does)")


if __name__ == "__main__":
    args = torture.parse(sys.argv[1:], options, default_ops=6000, doc=__doc__)
    if args.iscsi_conns < 1:
        sys.exit("torture_iscsi: --iscsi-conns must be at least 1")
    if args.negative_control:
        # the checker must catch the corrupted read: that failure is a pass
        t = ITorture(args)
        rc = t.main()
        # the first failure must be about a read we corrupted, not another
        if rc == 1 and t.failures and "corrupted in the client" in t.failures[0]:
            log("negative control: the checker found the corrupted read (as it must)")
            rlib.run(lambda: 0)
            sys.exit(0)
        print("[torture_iscsi] FAIL: negative control: a corrupted read went unnoticed",
              file=sys.stderr)
        sys.exit(1)
    rlib.run(lambda: ITorture(args).main())
