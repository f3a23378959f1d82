"""The CAW counter of torture_iscsi.py (issue 12): COMPARE AND WRITE must
be atomic against every other CAW and every NBD write of the volume.

Several iSCSI sessions increment a 64-bit counter in one 512-byte block by
CAW retry loops (MISCOMPARE -> READ(16) -> CAW again) while NBD connections
write the rest of its 4 KiB cache block and the blocks around it
(unaligned, one write in flight each, so each writer's last write is what
must remain) and another reads the counter. Checks: a MISCOMPARE names a
byte of the counter; an NBD read lies between the GOOD CAWs completed
before it was sent and the CAWs sent before it completed; at the end the
counter equals the GOOD CAWs through NBD, through iSCSI and in the backing
file, and the neighbours hold the writers' last writes.
"""
import random
import select
import struct
import time

import iscsi_initiator as ii
import rlib
from rlib import TestFailure, log
from torture import BLOCK

import nbd

IQN = "iqn.2026-12.org.shoal:"
LB = ii.LBA


class CawCounter:
    """A counter in block CLBA of volume vcount, incremented by CAW retry
    loops from several iSCSI sessions while NBD writes hammer the rest of
    its 4 KiB cache block and the blocks around it."""

    CLBA = 9  # the second 512-byte block of cache block 1
    AREA = 4 * BLOCK

    def __init__(self, t):
        self.t = t
        self.a = t.a
        self.rng = random.Random(self.a.seed ^ 0xCA3)
        self.pattern = self.rng.randbytes(LB - 8)
        self.good = 0  # GOOD CAWs completed
        self.sent = 0  # CAWs sent
        self.miscompares = 0
        self.reads = 0

    def enc(self, n):
        return struct.pack("<Q", n) + self.pattern

    def dec(self, b, who):
        b = bytes(b)
        if b[8:] != self.pattern:
            raise TestFailure(f"CAW counter: {who} read the counter block with its fixed bytes"
                              " changed (a neighbour's write or a torn CAW)")
        return struct.unpack("<Q", b[:8])[0]

    def run(self):
        t, a = self.t, self.a
        coff = self.CLBA * LB
        log(f"CAW counter: {a.counter_conns} iSCSI sessions x CAW loops to [{coff:#x}, +512)"
            f" of vcount, 3 NBD writers around it, up to {a.counter_incs} increments")
        nb = [t.d.open("vcount", name=f"count-nbd{i}") for i in range(4)]
        init = bytearray(self.rng.randbytes(self.AREA))
        init[coff:coff + LB] = self.enc(0)
        nb[0].pwrite(bytes(init), 0, nbd.CMD_FLAG_FUA)
        self.expect = bytearray(init)
        ic = []
        for i in range(a.counter_conns):
            c = ii.Conn("127.0.0.1", t.iport, IQN + "vcount", immediate=i % 2 == 0,
                        initial_r2t=i % 4 < 2).login()
            c.cur = 0
            ic.append(c)
        # writers: [0, coff) (unaligned, ends at the counter), the rest of
        # cache block 1 after the counter, and cache blocks 2-3; one write in
        # flight each, so the last one of each is what must remain
        regions = [(0, coff), (coff + LB, 2 * BLOCK), (2 * BLOCK, self.AREA)]
        wstate = [None] * 3
        rstate = [None]
        deadline = time.time() + a.counter_secs
        stop = [False]

        def caw(c):
            self.sent += 1
            c.submit(ii.compare_and_write(self.CLBA, 1), lambda task, c=c: caw_done(c, task),
                     data_out=self.enc(c.cur) + self.enc(c.cur + 1))

        def caw_done(c, task):
            if task.ok():
                self.good += 1
                c.cur += 1
            elif task.sense is not None and task.sense.key == ii.SK_MISCOMPARE:
                self.miscompares += 1
                if task.sense.info is None or not 0 <= task.sense.info < 8:
                    raise TestFailure(f"CAW counter: MISCOMPARE at offset {task.sense.info}:"
                                      " only the counter's 8 bytes can differ")
                c.submit(ii.read16(self.CLBA, 1), lambda rt, c=c: reread(c, rt), data_in=LB)
                return
            else:
                raise TestFailure(f"CAW counter: COMPARE AND WRITE: {task.describe()}")
            if not stop[0]:
                caw(c)

        def reread(c, task):
            if not task.ok():
                raise TestFailure(f"CAW counter: READ(16): {task.describe()}")
            n = self.dec(task.data_in, "an iSCSI session")
            if n < c.cur:
                raise TestFailure(f"CAW counter: read {n} after this session's own CAW made it"
                                  f" {c.cur}")
            c.cur = n
            if not stop[0]:
                caw(c)

        for c in ic:
            caw(c)
        buf = nbd.Buffer(LB)
        while True:
            if not stop[0] and (time.time() > deadline or self.good >= a.counter_incs):
                stop[0] = True
            busy = any(c.tasks for c in ic)
            for i, (lo, hi) in enumerate(regions):
                w = wstate[i]
                if w is not None and nb[i].aio_command_completed(w[0]):
                    self.expect[w[1]:w[1] + len(w[2])] = w[2]
                    wstate[i] = w = None
                if w is None and not stop[0]:
                    off = self.rng.randrange(lo, hi)
                    data = self.rng.randbytes(self.rng.randint(1, hi - off))
                    wstate[i] = (nb[i].aio_pwrite(data, off), off, data)
            if rstate[0] is not None and nb[3].aio_command_completed(rstate[0][0]):
                n = self.dec(buf.to_bytearray(), "NBD")
                lo_ok, hi_ok = rstate[0][1], self.sent
                if not lo_ok <= n <= hi_ok:
                    raise TestFailure(f"CAW counter: an NBD read saw {n}; {lo_ok} CAWs had"
                                      f" returned GOOD before it was sent and {hi_ok} were sent"
                                      " before it completed")
                self.reads += 1
                rstate[0] = None
            if rstate[0] is None and not stop[0]:
                rstate[0] = (nb[3].aio_pread(buf, coff), self.good)
            if stop[0] and not busy and all(w is None for w in wstate) and rstate[0] is None:
                break
            if time.time() > deadline + 30:
                raise TestFailure("CAW counter: commands did not complete in 30 s (hang?)")
            p = select.poll()
            fds = {}
            for c in ic:
                p.register(c.fileno(), c.events())
                fds[c.fileno()] = c
            for h in nb:
                ev = rlib.aio_events(h)
                if ev:
                    p.register(h.aio_get_fd(), ev)
                    fds[h.aio_get_fd()] = h
            for fd, rev in p.poll(50):
                o = fds[fd]
                if isinstance(o, ii.Conn):
                    if rev & select.POLLOUT:
                        o.on_writable()
                    if rev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                        o.on_readable()
                else:
                    if rev & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                        o.aio_notify_write()
                    if rev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                        o.aio_notify_read()
        # the end: NBD, iSCSI and the file all say `good`
        for h in nb:
            h.flush()
        got = nb[0].pread(self.AREA, 0)
        n = self.dec(got[coff:coff + LB], "the final NBD read")
        rlib.check(n == self.good, f"CAW counter: the counter reads {n} through NBD,"
                   f" {self.good} COMPARE AND WRITEs returned GOOD")
        self.expect[coff:coff + LB] = self.enc(self.good)
        rlib.check(got == bytes(self.expect), "CAW counter: the blocks around the counter do"
                   " not hold the NBD writers' last writes")
        t2 = ic[0].sync(ii.read16(0, self.AREA // LB), data_in=self.AREA)
        rlib.check(t2.ok() and bytes(t2.data_in) == bytes(self.expect),
                   "CAW counter: iSCSI reads other bytes than NBD")
        ic[0].flush()
        with open(t.cpath, "rb") as f:
            disk = f.read(self.AREA)
        rlib.check(disk == bytes(self.expect), "CAW counter: the back end file differs")
        for c in ic:
            c.close()
        for h in nb:
            h.shutdown()
        log(f"CAW counter: {self.good} increments by {self.sent} CAWs ({self.miscompares}"
            f" MISCOMPAREs with the offset in the counter), {self.reads} NBD reads in"
            " bounds, final value equal through NBD, iSCSI and on disk")
