#!/usr/bin/python3
"""Model-checked torture test for shoald (guarantees 1 and 2 of the design
brief: no stale read, no lost write).

A seeded random stream of NBD requests -- READ, WRITE (block-aligned and
byte-unaligned, with and without FUA), TRIM, WRITE_ZEROES (plain, NO_HOLE,
FUA, FAST_ZERO), FLUSH, CACHE -- goes out over several connections per volume
with libnbd's asynchronous API, several requests in flight per connection,
so requests of different connections really overlap in the daemon. A small
share of the trims and zeroes are huge: up to the whole export in one
request. Mixed in: live management calls (disable / enable / invalidate of
a range or a whole volume, cache resizes that shrink and grow the cache),
connection churn, and connections that stop reading their replies for a
few hundred requests (they keep queueing requests) while the others go on. The volumes start from identical images (so
dedup links their blocks), the pool of 4 KiB blocks written is shared by
all volumes, and the cache is far smaller than the data, so eviction never
stops. The default set-up has two file-backed volumes and one upstream NBD
volume served by nbdkit's file plugin: two kinds of back end.

The checker keeps, for every byte of every volume, the set of values a
linearizable execution allows (an interval map of candidate "sources"):
  - a change (write/zero/trim) that completes at time d replaces the set by
    itself plus the old candidates that may be ordered after it (those that
    completed after the change was sent);
  - a read may return, per byte, any candidate of the set at the time it was
    sent, or the value of any change that was in flight at some point while
    the read was (sent before the read completed, completed after it was
    sent);
  - TRIM: what the back end guarantees. Both back ends here (shoald's file
    back end, nbdkit's file plugin) punch holes, exact to the byte, so where
    the file system can punch (probed at start) a trim is a zero; where it
    cannot, each byte keeps its previous value or becomes zero
    (--trim-model prev-or-zero). --trim-model any is the NBD spec's floor:
    anything, until the first quiet read observes what the back end holds;
  - a read that no change overlapped narrows the set to what it observed
    (a later read that disagrees is a flip-flop: a stale copy somewhere).
Times are a logical clock over the client's own events (send, completion
seen), which brackets the server's real order from outside.

At the end every volume is read back whole through shoald and the back end
files are compared with the model (write-through: they must already hold
every completed write). On a failure it prints the seed, the op index, the
allowed values and the log of the ops that touched the failing block, and
exits 1.

  torture.py                 CI run: 20000 ops (about 10 s)
  torture.py --long          1,000,000 ops on 64 MiB volumes (see docs/reliability.md)
  torture.py --seed N --ops N --backend mixed|file|nbd ...

Environment: SHOALD (path of shoald; default ../../build-rel/src/shoald).
"""
import argparse
import bisect
import collections
import os
import random
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlib  # noqa: E402
from rlib import TestFailure, log  # noqa: E402

import nbd  # noqa: E402

BLOCK = 4096
ZEROS = bytes(1 << 20)


def parse_size(s):
    s = str(s).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def zeros(n):
    return ZEROS[:n] if n <= len(ZEROS) else bytes(n)


# ---- sources: where a byte's value may come from ------------------------


class Src:
    """A possible origin of bytes: D(ata of a write), Z(ero: a zero, or a trim
    on a back end that punches holes), U(nknown: after a trim, with
    --trim-model any), I(nitial image), O(bserved after a U trim).
    byte(x) = buf[x-base]."""
    __slots__ = ("kind", "buf", "base", "op", "done")

    def __init__(self, kind, op, buf=None, base=0, done=-1):
        self.kind = kind
        self.op = op
        self.buf = buf
        self.base = base
        self.done = done  # logical time its op's completion was seen

    def slice(self, a, b):
        if self.kind == "Z":
            return zeros(b - a)
        if self.kind == "U":
            return None
        return self.buf[a - self.base:b - self.base]

    def byte(self, x):
        if self.kind == "Z":
            return 0
        return self.buf[x - self.base]

    def name(self):
        if self.kind == "I":
            return "initial image"
        if self.kind == "O":
            return f"observed after trim #{self.op.idx}"
        return f"#{self.op.idx} {self.op.kind}"


class IMap:
    """Interval map over [0, size): starts[i] .. starts[i+1] -> vals[i],
    a tuple of candidate Srcs."""

    def __init__(self, size, val):
        self.size = size
        self.starts = [0]
        self.vals = [val]

    def _split(self, x):
        if x >= self.size:
            return len(self.starts)
        i = bisect.bisect_right(self.starts, x) - 1
        if self.starts[i] == x:
            return i
        self.starts.insert(i + 1, x)
        self.vals.insert(i + 1, self.vals[i])
        return i + 1

    def get(self, lo, hi):
        out = []
        i = bisect.bisect_right(self.starts, lo) - 1
        n = len(self.starts)
        while i < n and self.starts[i] < hi:
            a = max(self.starts[i], lo)
            b = min(self.starts[i + 1] if i + 1 < n else self.size, hi)
            out.append([a, b, self.vals[i]])
            i += 1
        return out

    def update(self, lo, hi, fn):
        i = self._split(lo)
        j = self._split(hi)
        n = len(self.starts)
        for k in range(i, j):
            e = self.starts[k + 1] if k + 1 < n else self.size
            self.vals[k] = fn(self.starts[k], e, self.vals[k])
        # merge equal neighbours in [i-1, j]
        k = max(i - 1, 0)
        end = min(j + 1, len(self.starts))
        while k + 1 < end:
            if self.vals[k] == self.vals[k + 1]:
                del self.starts[k + 1]
                del self.vals[k + 1]
                end -= 1
            else:
                k += 1

    def assign(self, lo, hi, val):
        i = self._split(lo)
        j = self._split(hi)
        del self.starts[i + 1:j]
        del self.vals[i + 1:j]
        self.vals[i] = val
        self.update(lo, hi, lambda a, b, v: v)  # merges


# ---- ops ----------------------------------------------------------------

# caw, xcopy: iSCSI's COMPARE AND WRITE (one that returned GOOD) and the
# destination of an EXTENDED COPY segment (torture_iscsi.py)
CHANGES = ("write", "zero", "trim", "caw", "xcopy")


class Op:
    __slots__ = ("idx", "conn", "vol", "kind", "off", "len", "flags", "sent", "done", "err",
                 "src", "buf", "snap", "conc", "data", "note")

    def __init__(self, idx, conn, vol, kind, off=0, length=0, flags=0, data=None, note=""):
        self.idx = idx
        self.conn = conn
        self.vol = vol
        self.kind = kind
        self.off = off
        self.len = length
        self.flags = flags
        self.data = data
        self.note = note
        self.sent = self.done = None
        self.err = None
        self.src = None
        self.buf = None
        self.snap = None
        self.conc = None

    def flagstr(self):
        f = []
        if self.flags & nbd.CMD_FLAG_FUA:
            f.append("FUA")
        if self.flags & nbd.CMD_FLAG_NO_HOLE:
            f.append("NO_HOLE")
        if self.flags & nbd.CMD_FLAG_FAST_ZERO:
            f.append("FAST_ZERO")
        return "|".join(f)

    def __str__(self):
        s = f"#{self.idx:<7} t={self.sent}..{self.done} conn{self.conn} vol {self.vol} {self.kind}"
        if self.kind in ("read", "cache", "invalidate", "caw-bad") + CHANGES:
            s += f" [{self.off}, +{self.len}) = [{self.off:#x}, {self.off + self.len:#x})"
        if self.flags:
            s += " " + self.flagstr()
        if self.note:
            s += " " + self.note
        if self.err:
            s += f" -> errno {self.err}"
        return s


class Mismatch(Exception):
    def __init__(self, off, got, allowed, what):
        super().__init__(what)
        self.off = off
        self.got = got
        self.allowed = allowed
        self.what = what


def match_runs(cands, data, dbase, a, b):
    """Which candidates explain data[a-dbase : b-dbase] (volume offsets a..b)?
    Returns [(a, b, matched_tuple)] covering a..b; raises Mismatch at the
    first byte no candidate explains."""
    seg = data[a - dbase:b - dbase]
    whole = tuple(c for c in cands if c.kind == "U" or c.slice(a, b) == seg)
    if whole:
        return [(a, b, whole)]
    runs = []
    CH = 512
    x = a
    while x < b:
        y = min(b, (x // CH + 1) * CH)
        s = data[x - dbase:y - dbase]
        m = tuple(c for c in cands if c.kind == "U" or c.slice(x, y) == s)
        if m:
            runs.append((x, y, m))
        else:
            for z in range(x, y):
                v = data[z - dbase]
                mb = tuple(c for c in cands if c.kind == "U" or c.byte(z) == v)
                if not mb:
                    raise Mismatch(z, v, cands, "value not allowed")
                runs.append((z, z + 1, mb))
        x = y
    # coalesce
    out = []
    for r in runs:
        if out and out[-1][2] == r[2] and out[-1][1] == r[0]:
            out[-1] = (out[-1][0], r[1], r[2])
        else:
            out.append(r)
    return out


class Volume:
    def __init__(self, name, kind, path, size, init_src):
        self.name = name
        self.kind = kind  # "file" or "nbd"
        self.path = path
        self.size = size
        self.model = IMap(size, (init_src,))
        self.inflight_changes = set()
        self.inflight_reads = set()
        self.enabled = True


class Conn:
    def __init__(self, idx, vol, depth):
        self.idx = idx
        self.vol = vol
        self.depth = depth
        self.h = None
        self.inflight = 0
        # a paused connection queues requests but nobody reads its replies
        # (or sends what libnbd could not send at once) until op pause_end
        self.pause_end = None
        self.depth_before_pause = depth


class Torture:
    def __init__(self, args):
        self.a = args
        self.rng = random.Random(args.seed)
        self.t = 0
        self.ops_log = collections.deque(maxlen=args.log_ring)
        self.completed = 0
        self.failures = []
        self.stats = collections.Counter()
        self.maxinflight = 0
        self.aborted = False
        self.reenable_at = {}
        self.cache_bytes = parse_size(args.cache)

    def tick(self):
        self.t += 1
        return self.t

    # -- set-up ------------------------------------------------------------

    def make_image(self):
        """Initial image: unique random blocks, blocks repeated from a small
        pool (dedup inside a volume) and zero blocks; odd-sized tail."""
        r = random.Random(self.a.seed ^ 0x5A5A)
        size = self.a.vol_size
        nb = (size + BLOCK - 1) // BLOCK
        pool = [r.randbytes(BLOCK) for _ in range(16)]
        parts = []
        for _ in range(nb):
            x = r.random()
            if x < 0.70:
                parts.append(r.randbytes(BLOCK))
            elif x < 0.85:
                parts.append(pool[r.randrange(16)])
            else:
                parts.append(zeros(BLOCK))
        img = b"".join(parts)[:size]
        return img

    def setup(self):
        a = self.a
        # Unaligned lengths come from a seeded menu of 384 values rather than
        # from the whole range: read buffers are recycled per length because
        # python3-libnbd 1.14 never frees the memory of an nbd.Buffer once it
        # was handed to aio_pread (a 1M-op run grew to 10 GiB without this).
        mr = random.Random(a.seed ^ 0x1E57)
        self.ulen_small = sorted({mr.randint(1, 600) for _ in range(128)})
        self.ulen_mid = sorted({mr.randint(1, 3 * BLOCK) for _ in range(192)})
        self.ulen_big = sorted({mr.randint(1, 64 * 1024) for _ in range(64)})
        self.rbufs = collections.defaultdict(list)
        img = self.make_image()
        self.init_src = Src("I", None, memoryview(img), 0)
        self.pool = [self.rng.randbytes(BLOCK) for _ in range(24)] + [zeros(BLOCK)]
        kinds = {"file": ["file"] * a.volumes, "nbd": ["nbd"] * a.volumes,
                 "mixed": ["file" if i % 3 != 2 else "nbd" for i in range(a.volumes)]}[a.backend]
        if "nbd" in kinds:
            rlib.need("nbdkit")
        if a.trim_model == "auto":
            a.trim_model = "zero" if rlib.punch_zeroes() else "prev-or-zero"
        self.vols = []
        specs = []
        self.nbdkits = []
        for i, k in enumerate(kinds):
            name = "v" + chr(ord("a") + i)
            path = os.path.join(rlib.TMP, f"{name}.img")
            with open(path, "wb") as f:
                f.write(img)
            if k == "nbd":
                sock = os.path.join(rlib.TMP, f"kit-{name}.sock")
                self.nbdkits.append(rlib.Nbdkit(sock, ["file", path], tag=name))
                specs.append(f"{name}=nbd+unix:///?socket={sock}")
            else:
                specs.append(f"{name}={path}")
            self.vols.append(Volume(name, k, path, a.vol_size, self.init_src))
        extra = self.daemon_extra()
        if a.threads:
            extra += ["--threads", str(a.threads)]
        self.d = rlib.Shoald(specs, extra=extra, cache=a.cache)
        self.conns = []
        for i in range(a.volumes * a.conns):
            v = self.vols[i % a.volumes]
            c = Conn(i, v, self.rng.randint(1, a.depth))
            self.conns.append(c)
            self.connect(c)
        self.poller = select.poll()

    def daemon_extra(self):
        """More shoald arguments (a subclass adds its front ends)."""
        return []

    def connect(self, c):
        c.h = self.d.open(c.vol.name, name=f"conn{c.idx}")
        c.inflight = 0

    # -- the op stream -----------------------------------------------------

    def pick_range(self, v, aligned):
        """A request range: most go to a small hot spot that every connection
        of the volume hammers (races), some to the odd-sized tail, the rest
        spread out (misses and eviction)."""
        r = self.rng
        size = v.size
        hot = self.a.hot
        x = r.random()
        small = True
        if x < 0.45:
            lo, hi = 0, min(size, hot)
        elif x < 0.55:
            lo, hi = max(0, size - hot), size
        elif x < 0.75:
            lo, hi = 0, min(size, 2 << 20)
        else:
            lo, hi = 0, size
            small = False
        if aligned:
            y = r.random()
            if small and x < 0.45 and y < 0.12:
                # a long read or write over the hot spot and beyond: its
                # reply takes a while to send, which widens the window
                # between a miss's fetch and its insert
                nb = r.randint(16, 64)
            elif small or y < 0.6:
                nb = r.randint(1, 4)
            elif y < 0.97:
                nb = r.randint(5, 32)
            else:
                nb = r.randint(33, 256)
            ln = nb * BLOCK
            first = lo // BLOCK
            last = max(first, (hi - 1) // BLOCK)
            off = r.randint(first, last) * BLOCK
        else:
            y = r.random()
            # lengths from a fixed seeded menu (see unaligned_lengths)
            menu = self.ulen_small if y < 0.3 else self.ulen_mid if y < 0.9 or small \
                else self.ulen_big
            ln = menu[r.randrange(len(menu))]
            off = r.randint(lo, max(lo, hi - 1))
        off = min(off, size - 1)
        ln = max(1, min(ln, size - off))
        return off, ln

    def write_data(self, off, ln, aligned):
        r = self.rng
        if aligned and r.random() < 0.6:
            # pool blocks: the same contents in every volume -> dedup
            nb = (ln + BLOCK - 1) // BLOCK
            return b"".join(self.pool[r.randrange(len(self.pool))] for _ in range(nb))[:ln]
        return r.randbytes(ln)

    def gen_op(self, idx):
        a, r = self.a, self.rng
        ci = r.randrange(len(self.conns))
        c = self.conns[ci]
        v = c.vol
        x = r.random() * 100
        if x < 38:
            aligned = r.random() < 0.5
            off, ln = self.pick_range(v, aligned)
            return Op(idx, ci, v.name, "read", off, ln)
        if x < 62:
            aligned = r.random() < 0.6
            off, ln = self.pick_range(v, aligned)
            flags = nbd.CMD_FLAG_FUA if r.random() < 0.25 else 0
            return Op(idx, ci, v.name, "write", off, ln, flags, data=self.write_data(off, ln, aligned))
        if x < 70:
            off, ln = self.pick_range(v, r.random() < 0.5)
            if r.random() < a.huge_pct / 100:
                off, ln = self.huge_range(v)
            flags = r.choice([0, 0, nbd.CMD_FLAG_NO_HOLE, nbd.CMD_FLAG_FUA, nbd.CMD_FLAG_FAST_ZERO])
            return Op(idx, ci, v.name, "zero", off, ln, flags)
        if x < 76:
            off, ln = self.pick_range(v, r.random() < 0.6)
            if r.random() < a.huge_pct / 100:
                off, ln = self.huge_range(v)
            flags = nbd.CMD_FLAG_FUA if r.random() < 0.2 else 0
            return Op(idx, ci, v.name, "trim", off, ln, flags)
        if x < 81:
            return Op(idx, ci, v.name, "flush")
        if x < 86:
            off, ln = self.pick_range(v, r.random() < 0.5)
            return Op(idx, ci, v.name, "cache", off, ln)
        if x < 100 - a.api_pct - 0.3 - a.pause_pct:
            aligned = r.random() < 0.5
            off, ln = self.pick_range(v, aligned)
            return Op(idx, ci, v.name, "read", off, ln)
        if x < 100 - a.api_pct - 0.3:
            # stop reading this connection's replies for a while; it keeps
            # queueing requests (up to a deeper queue than usual)
            if c.pause_end is None:
                n = r.randint(200, 1200)
                return Op(idx, ci, v.name, "pause", length=n, note=f"(for {n} ops)")
            return Op(idx, ci, v.name, "flush")
        if x < 100 - a.api_pct:
            return Op(idx, ci, v.name, "reconnect")
        y = r.random()
        vi = r.randrange(len(self.vols))
        vn = self.vols[vi].name
        if y < 0.25:
            # pass-through for a while, then back on (an op scheduled ahead)
            if vn not in self.reenable_at:
                self.reenable_at[vn] = idx + r.randint(10, 400)
                return Op(idx, -1, vn, "disable")
        if y < 0.45:
            # a live cache resize: shrink below or grow above the configured
            # size (cached content is dropped while requests are in flight)
            size = max(4096, int(self.cache_bytes * r.choice([0.1, 0.25, 0.5, 1, 2, 4])) // 4096 * 4096)
            return Op(idx, -1, "*", "resize", length=size, note=f"to {size} bytes")
        if y < 0.85:
            off, ln = self.pick_range(self.vols[vi], r.random() < 0.5)
            return Op(idx, -1, vn, "invalidate", off, ln)
        return Op(idx, -1, vn, "invalidate", 0, 0, note="(whole volume)")

    def huge_range(self, v):
        """A trim/zero of any length up to the whole export, in one request."""
        r = self.rng
        y = r.random()
        self.stats["huge trim/zero"] += 1
        if y < 0.4:
            self.stats["whole-export trim/zero"] += 1
            return 0, v.size
        if y < 0.7:
            off = r.randrange(0, v.size // BLOCK) * BLOCK
        else:
            off = r.randrange(0, v.size)
        return off, r.randint(1, v.size - off)

    def next_op(self, idx):
        for vn, at in sorted(self.reenable_at.items()):
            if at <= idx:
                del self.reenable_at[vn]
                return Op(idx, -1, vn, "enable")
        return self.gen_op(idx)

    # -- sending -------------------------------------------------------------

    def vol(self, name):
        for v in self.vols:
            if v.name == name:
                return v
        raise KeyError(name)

    def send(self, op):
        c = self.conns[op.conn]
        v = c.vol
        op.sent = self.tick()
        cb = lambda err, op=op: self.on_done(op, err)  # noqa: E731
        if op.kind == "read":
            pool = self.rbufs[op.len]
            op.buf = pool.pop() if pool else nbd.Buffer(op.len)
            self.track_read(op, v)
            c.h.aio_pread(op.buf, op.off, completion=cb)
        elif op.kind in CHANGES:
            if op.kind == "write":
                assert len(op.data) == op.len
                op.src = Src("D", op, memoryview(op.data), op.off)
            elif op.kind == "zero" or self.a.trim_model != "any":
                op.src = Src("Z", op)
            else:
                op.src = Src("U", op)
            self.track_change(op, v)
            if op.kind == "write":
                c.h.aio_pwrite(op.data, op.off, completion=cb, flags=op.flags)
            elif op.kind == "zero":
                c.h.aio_zero(op.len, op.off, completion=cb, flags=op.flags)
            else:
                c.h.aio_trim(op.len, op.off, completion=cb, flags=op.flags)
        elif op.kind == "flush":
            c.h.aio_flush(completion=cb)
        elif op.kind == "cache":
            c.h.aio_cache(op.len, op.off, completion=cb)
        else:
            raise AssertionError(op.kind)
        c.inflight += 1
        self.inflight += 1
        self.maxinflight = max(self.maxinflight, self.inflight)

    def track_read(self, op, v):
        """A read is sent: what the model allows now, and the changes in
        flight that it may see."""
        op.snap = v.model.get(op.off, op.off + op.len)
        op.conc = [w.src for w in v.inflight_changes
                   if w.off < op.off + op.len and op.off < w.off + w.len]
        v.inflight_reads.add(op)

    def track_change(self, op, v):
        """A change (op.src set) is sent: reads in flight may see it."""
        for rd in v.inflight_reads:
            if rd.off < op.off + op.len and op.off < rd.off + rd.len:
                rd.conc.append(op.src)
        v.inflight_changes.add(op)

    def on_done(self, op, err):
        op.done = self.tick()
        e = err.value if hasattr(err, "value") else int(err)
        op.err = e or None
        c = self.conns[op.conn]
        c.inflight -= 1
        self.inflight -= 1
        self.completed += 1
        self.stats[op.kind] += 1
        v = c.vol
        # Never let an exception escape into libnbd: park it for the loop.
        try:
            try:
                self.complete(op, v)
            except Mismatch as m:
                self.report(op, v, m)
        except _Abort:
            self.aborted = True
        except BaseException as e:  # noqa: B902
            self.failures.append(f"checker crashed on op #{op.idx}: {e!r}")
            import traceback
            traceback.print_exc()
            self.aborted = True
        return 1

    def complete(self, op, v):
        if op.kind == "read":
            v.inflight_reads.discard(op)
            if op.err:
                self.fail_op(op, f"read failed with errno {op.err}")
                return
            data = memoryview(op.buf.to_bytearray())
            self.rbufs[op.len].append(op.buf)
            op.buf = None
            self.check_read(op, v, data)
            op.snap = op.conc = None
        elif op.kind in CHANGES:
            v.inflight_changes.discard(op)
            if op.err:
                if op.kind == "zero" and op.flags & nbd.CMD_FLAG_FAST_ZERO and op.err in (95,):
                    self.stats["fast_zero_refused"] += 1
                    op.src = None
                    return  # refused before changing anything
                self.fail_op(op, f"{op.kind} failed with errno {op.err}")
                return
            src = op.src
            src.done = op.done
            sent = op.sent
            if op.kind == "trim" and self.a.trim_model == "prev-or-zero":
                # the back end may keep each byte: every old candidate stays
                v.model.update(op.off, op.off + op.len,
                               lambda a, b, old: (src,) + old)
            else:
                v.model.update(op.off, op.off + op.len,
                               lambda a, b, old: (src,) + tuple(x for x in old if x.done > sent))
            # the model (and reads still in flight) keep the Src and its
            # bytes as long as they need them; the op log must not
            op.data = None
            op.src = None
        else:
            if op.err:
                self.fail_op(op, f"{op.kind} failed with errno {op.err}")

    def fail_op(self, op, msg):
        self.failures.append(f"op #{op.idx}: {msg}: {op}")
        raise _Abort()

    # -- checking ----------------------------------------------------------

    def check_read(self, op, v, data):
        for a, b, cands, q in self.read_segments(op):
            match_runs(cands, data, op.off, a, b)
            if q or (len(cands) == 1 and cands[0].kind != "U"):
                continue
            # quiet segment (no change overlapped the read): the model
            # narrows to what was observed
            self.narrow(op, v, data, a, b)

    def read_segments(self, op):
        """What a read (track_read) may return: [a, b, candidates,
        did a change overlap it?] over its range."""
        lo, hi = op.off, op.off + op.len
        segs = [[a, b, c, False] for a, b, c in op.snap]
        for src in op.conc:
            w = src.op
            wl, wh = max(lo, w.off), min(hi, w.off + w.len)
            if wl >= wh:
                continue
            out = []
            for a, b, c, q in segs:
                if b <= wl or a >= wh:
                    out.append([a, b, c, q])
                    continue
                if a < wl:
                    out.append([a, wl, c, q])
                out.append([max(a, wl), min(b, wh), c + (src,), True])
                if b > wh:
                    out.append([wh, b, c, q])
            segs = out
        return segs

    def narrow(self, op, v, data, lo, hi):
        def fn(a, b, cur):
            if len(cur) == 1 and cur[0].kind != "U":
                keep = cur
                runs = match_runs(cur, data, op.off, a, b)  # still must hold
            else:
                try:
                    runs = match_runs(cur, data, op.off, a, b)
                except Mismatch as m:
                    raise Mismatch(m.off, m.got, cur,
                                   "flip-flop: an earlier quiet read saw another value")
                if len(runs) != 1:
                    return cur  # a per-byte mix: leave it
                keep = runs[0][2]
            concrete = tuple(c for c in keep if c.kind != "U")
            if concrete:
                return concrete
            u = keep[0]
            return (Src("O", u.op, memoryview(bytes(data[a - op.off:b - op.off])), a, u.done),)
        v.model.update(lo, hi, fn)

    def report(self, op, v, m):
        blk = m.off // BLOCK * BLOCK
        lines = []
        lines.append(f"{m.what}: volume {v.name} byte {m.off} ({m.off:#x}, block {m.off // BLOCK})"
                     f" read {m.got:#04x} in op #{op.idx}")
        lines.append(f"  failing op: {op}")
        allowed = []
        for c in m.allowed:
            val = "any" if c.kind == "U" else f"{c.byte(m.off):#04x}"
            allowed.append(f"{c.name()} -> {val}")
        lines.append("  allowed: " + "; ".join(allowed))
        hint = []
        if self.init_src.buf[m.off] == m.got:
            hint.append("the initial image")
        if m.got == 0:
            hint.append("zero")
        if hint:
            lines.append("  the value read equals the byte of: " + " / ".join(hint))

        def touches(o):
            return o.off < blk + BLOCK and blk < o.off + o.len

        ring = [o for o in self.ops_log if o.vol == v.name or o.kind == "resize"]
        # The window: from the last change of this block sent before the
        # allowed values' ops (where an old value would come from) to now.
        t_from = min([c.op.sent for c in m.allowed if c.op is not None and c.op.sent is not None]
                     + [op.sent if op.sent is not None else 0])
        # Only ops already sent: a queued op (sent None) cannot be where an old value came from,
        # and its None would become the window's start.
        prev = [o for o in ring if o.kind in CHANGES and touches(o)
                and o.sent is not None and o.sent < t_from]
        t_start = prev[-1].sent if prev else 0
        rel = [o for o in ring
               if ((o.kind in CHANGES or o.kind in ("read", "cache")) and touches(o)
                   and (o.done is None or o.done >= t_start))
               or (o.kind in ("disable", "enable", "reconnect", "resize", "pause")
                   and (o.sent or 0) >= t_start)
               or (o.kind == "invalidate" and (o.sent or 0) >= t_start
                   and (o.len == 0 or touches(o)))]
        for c in m.allowed:
            if c.op is not None and c.op not in rel:
                rel.append(c.op)
        if op not in rel:
            rel.append(op)
        rel.sort(key=lambda o: o.idx)
        lines.append(f"  minimal op log: ops on block [{blk:#x}, {blk + BLOCK:#x}) of {v.name},"
                     f" and API calls/reconnects of the volume, from t={t_start}"
                     f" (the change before the allowed ones) on:")
        shown = rel[-self.a.report_ops:]
        if len(shown) < len(rel):
            lines.append(f"    ... {len(rel) - len(shown)} older ops left out (--report-ops)")
        for o in shown:
            mark = "  <== failing read" if o is op else ""
            lines.append("    " + str(o) + mark)
        lines.append("  (t = logical clock of the client: sent..completion seen)")
        self.failures.append("\n".join(lines))
        raise _Abort()

    # -- the main loop -------------------------------------------------------

    def pump(self, timeout_ms):
        fds = {}
        evs = {}
        self.poller = select.poll()
        for c in self.conns:
            if c.pause_end is not None:
                continue
            h = c.h
            ev = rlib.aio_events(h)
            if ev:
                fd = h.aio_get_fd()
                fds[fd] = c
                evs[fd] = ev
                self.poller.register(fd, ev)
        if not fds:
            return
        bad = select.POLLERR | select.POLLHUP
        for fd, rev in self.poller.poll(timeout_ms):
            c = fds[fd]
            ev = evs[fd]
            # notify only in the directions libnbd waits for
            if (rev & select.POLLOUT) or ((rev & bad) and (ev & select.POLLOUT)):
                c.h.aio_notify_write()
            if (rev & select.POLLIN) or ((rev & bad) and (ev & select.POLLIN)):
                c.h.aio_notify_read()
        self.last_progress = time.time() if self.completed != self._seen else self.last_progress
        self._seen = self.completed
        if self.aborted:
            raise _Abort()

    def pause(self, c, op, idx):
        op.sent = self.tick()
        c.pause_end = idx + op.len
        c.depth_before_pause = c.depth
        c.depth = max(c.depth, self.a.pause_depth)
        op.done = self.tick()
        self.stats["pause"] += 1

    def unpause(self, c):
        if c.pause_end is not None:
            c.pause_end = None
            c.depth = c.depth_before_pause

    def wait_conn_idle(self, c):
        self.unpause(c)
        deadline = time.time() + self.a.op_timeout
        while c.inflight:
            self.pump(100)
            if time.time() > deadline:
                raise TestFailure(f"conn{c.idx}: requests did not complete in {self.a.op_timeout} s")

    def api(self, op):
        if op.kind == "resize":
            op.sent = self.tick()
            st, body = self.d.api_post("/api/v1/cache/resize", {"size": op.len})
            op.done = self.tick()
            self.stats["resize"] += 1
            if st != 200:
                self.failures.append(f"op #{op.idx}: API resize to {op.len} returned HTTP {st}: {body}")
                raise _Abort()
            return
        v = self.vol(op.vol)
        op.sent = self.tick()
        if op.kind in ("disable", "enable"):
            st, body = self.d.api_post(f"/api/v1/volumes/{v.name}/{op.kind}")
            v.enabled = op.kind == "enable"
        else:
            body = {"offset": op.off, "length": op.len} if op.len else None
            st, body = self.d.api_post(f"/api/v1/volumes/{v.name}/invalidate", body)
        op.done = self.tick()
        self.stats[op.kind] += 1
        if st != 200:
            self.failures.append(f"op #{op.idx}: API {op.kind} returned HTTP {st}: {body}")
            raise _Abort()

    def run_ops(self, nops):
        self.inflight = 0
        self._seen = 0
        self.last_progress = time.time()
        t0 = time.time()
        next_report = t0 + 30
        for idx in range(nops):
            for c in self.conns:
                if c.pause_end is not None and c.pause_end <= idx:
                    self.unpause(c)
            op = self.next_op(idx)
            self.ops_log.append(op)
            if op.conn < 0:
                self.api(op)
                continue
            c = self.conns[op.conn]
            if op.kind == "pause":
                self.pause(c, op, idx)
                continue
            if op.kind == "reconnect":
                op.sent = self.tick()
                self.wait_conn_idle(c)
                c.h.shutdown()
                c.h = None
                self.connect(c)
                c.depth = self.rng.randint(1, self.a.depth)
                op.note = f"(new depth {c.depth})"
                op.done = self.tick()
                self.stats["reconnect"] += 1
                continue
            if c.inflight >= c.depth:
                # the loop cannot go on without this connection: it
                # reads again
                self.unpause(c)
            while c.inflight >= c.depth:
                self.pump(100)
                if time.time() - self.last_progress > self.a.op_timeout:
                    raise TestFailure(f"no request completed for {self.a.op_timeout} s (hang?);"
                                      f" {self.inflight} in flight")
            self.send(op)
            # let the sockets move without waiting
            self.pump(0)
            if time.time() > next_report:
                next_report += 30
                el = time.time() - t0
                log(f"{idx + 1} ops sent in {el:.0f} s ({(idx + 1) / el:.0f}/s),"
                    f" intervals {sum(len(v.model.starts) for v in self.vols)}")
        for c in self.conns:
            self.unpause(c)
        deadline = time.time() + self.a.op_timeout
        while self.inflight:
            self.pump(100)
            if time.time() > deadline:
                raise TestFailure(f"{self.inflight} requests did not complete (hang?)")

    def final_checks(self):
        # Everything back on, a last flush, then read every volume whole
        # through shoald (one quiet read per MiB) and compare the back end.
        for v in self.vols:
            if not v.enabled:
                st, body = self.d.api_post(f"/api/v1/volumes/{v.name}/enable")
                rlib.check(st == 200, f"enable {v.name}: HTTP {st}")
                v.enabled = True
        idx = self.a.ops
        for c in self.conns:
            c.h.flush()
        for v in self.vols:
            c = next(c for c in self.conns if c.vol is v)
            step = 1 << 20
            for off in range(0, v.size, step):
                ln = min(step, v.size - off)
                op = Op(idx, c.idx, v.name, "read", off, ln, note="(final read-back)")
                idx += 1
                self.ops_log.append(op)
                self.send(op)
                while self.inflight:
                    self.pump(100)
            # write-through: the back end file holds the model's values
            with open(v.path, "rb") as f:
                disk = memoryview(f.read())
            rlib.check(len(disk) == v.size, f"{v.path}: size {len(disk)} != {v.size}")
            for a, b, cands in v.model.get(0, v.size):
                try:
                    match_runs(cands, disk, 0, a, b)
                except Mismatch as m:
                    op = Op(idx, -1, v.name, "backend-file-compare", a, b - a)
                    self.failures.append(f"back end file of {v.name} ({v.kind}) differs from the model:")
                    try:
                        self.report(op, v, m)
                    except _Abort:
                        raise
        st = self.d.stats()
        return st

    def main(self):
        a = self.a
        log(f"seed {a.seed}, {a.ops} ops, {a.volumes} volumes of {a.vol_size} bytes ({a.backend}),"
            f" {a.conns} conns/volume, depth <= {a.depth}, cache {a.cache}")
        t0 = time.time()
        self.setup()
        try:
            self.run_ops(a.ops)
            st = self.final_checks()
        except _Abort:
            for f in self.failures:
                print(f"[torture] FAIL (seed {a.seed}): {f}", file=sys.stderr)
            print(f"[torture] reproduce: {sys.argv[0]} {' '.join(self.repro_args())}", file=sys.stderr)
            return 1
        el = time.time() - t0
        cache = st["cache"]
        vols = {v["name"]: v for v in st["volumes"]}
        log(f"{self.completed} requests completed in {el:.1f} s ({self.completed / el:.0f}/s),"
            f" max {self.maxinflight} in flight; by kind: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.stats.items())))
        log(f"cache: evictions {cache['evictions']}, inserts {cache['inserts']},"
            f" dedup_hits {cache['dedup_hits']}; per volume hit bytes / insert races: "
            + ", ".join(f"{n} {vv['read_hit_bytes']}/{vv['insert_races']}" for n, vv in vols.items()))
        errors = sum(vv["errors"] for vv in vols.values())
        if errors != self.stats["fast_zero_refused"]:
            raise TestFailure(f"shoald counted {errors} error replies, the client saw"
                              f" {self.stats['fast_zero_refused']} (refused FAST_ZERO)")
        if a.ops >= 2000 and not a.no_evict_check:
            rlib.check(cache["evictions"] > 0, "the cache never evicted: the run did not stress it")
        self.d.stop()
        return 0

    def repro_args(self):
        a = self.a
        out = ["--seed", str(a.seed), "--ops", str(a.ops), "--backend", a.backend,
               "--volumes", str(a.volumes), "--vol-size", str(a.vol_size), "--cache", a.cache,
               "--conns", str(a.conns), "--depth", str(a.depth), "--hot", str(a.hot),
               "--api-pct", str(a.api_pct), "--huge-pct", str(a.huge_pct),
               "--pause-pct", str(a.pause_pct), "--trim-model", a.trim_model]
        return out


class _Abort(Exception):
    pass


def parse(argv, extend=None, default_ops=20000, doc=None):
    """The options; extend(p) adds a sibling script's own."""
    p = argparse.ArgumentParser(description=(doc or __doc__).split("\n\n")[0])
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from time)")
    p.add_argument("--ops", type=int, default=None, help=f"number of ops (default {default_ops})")
    p.add_argument("--long", action="store_true", help="1M ops on 64 MiB volumes")
    p.add_argument("--backend", choices=["mixed", "file", "nbd"], default="mixed")
    p.add_argument("--volumes", type=int, default=3)
    p.add_argument("--vol-size", type=int, default=None,
                   help="bytes per volume (default 40 MiB + 2560: an odd-sized tail; more than"
                   " the 32 MiB an NBD read or write may carry, so a whole-export trim or zero"
                   " is longer than any data request)")
    p.add_argument("--cache", default="1M", help="shoald -m (default 1M)")
    p.add_argument("--conns", type=int, default=3, help="connections per volume")
    p.add_argument("--hot", type=int, default=32 * 1024, help="bytes of the hot spot (default 32 KiB)")
    p.add_argument("--depth", type=int, default=12, help="max requests in flight per connection")
    p.add_argument("--threads", type=int, default=0, help="shoald --threads (default: its own)")
    p.add_argument("--api-pct", type=float, default=1.5, help="percent of ops that are API calls")
    p.add_argument("--huge-pct", type=float, default=1.5,
                   help="percent of trims and zeroes that are huge (up to the whole export)")
    p.add_argument("--pause-pct", type=float, default=0.3,
                   help="percent of ops that pause a connection's reading")
    p.add_argument("--pause-depth", type=int, default=48,
                   help="requests a paused connection may queue")
    p.add_argument("--trim-model", choices=["auto", "zero", "prev-or-zero", "any"], default="auto",
                   help="what a trim leaves (auto: zero where the file system punches holes)")
    p.add_argument("--op-timeout", type=float, default=60, help="seconds before a hang is declared")
    p.add_argument("--log-ring", type=int, default=100000, help="ops kept for failure reports")
    p.add_argument("--report-ops", type=int, default=80, help="ops printed per failure")
    p.add_argument("--no-evict-check", action="store_true")
    if extend:
        extend(p)
    a = p.parse_args(argv)
    if a.seed is None:
        a.seed = rlib.default_seed()
    if a.ops is None:
        a.ops = 1000000 if a.long else default_ops
    if a.vol_size is None:
        a.vol_size = (64 << 20 if a.long else 40 << 20) + 2560
    return a


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    rlib.run(lambda: Torture(args).main())
