"""A small raw iSCSI initiator (RFC 7143) for shoal's reliability tests.

Why our own and not libiscsi: Debian has no Python binding of libiscsi,
and the torture checker must keep every connection, NBD and iSCSI, in one
process and one poll loop, so that requests of both protocols really
overlap and the checker sees each send and completion in one logical
clock. This speaks plain iSCSI over TCP: login without digests or
authentication, SCSI commands with several tasks in flight (one ITT each),
immediate data, unsolicited Data-Out (InitialR2T=No) and R2T-solicited
Data-Out, Data-In with the status in the last PDU, SCSI Response with
sense, NOP-In pings answered. Only what the tests need: ERL 0, LUN 0,
one connection per session.

Use: c = Conn(host, port, target); c.login(); c.submit(cdb, cb, data_out=b"",
data_in=N) queues a command (cb(task) on completion); drive with
c.want_write() / c.on_writable() / c.on_readable() from a poll loop, or
c.run(task) / c.sync(...) to wait for one command. Helpers build the CDBs
(read16, write16, ...) and parse sense data (Sense).
"""
import os
import select
import socket
import struct

# opcodes (initiator -> target, target -> initiator)
OP_NOP_OUT, OP_SCSI_CMD, OP_LOGIN_REQ, OP_DATA_OUT = 0x00, 0x01, 0x03, 0x05
OP_NOP_IN, OP_SCSI_RSP, OP_LOGIN_RSP, OP_DATA_IN = 0x20, 0x21, 0x23, 0x25
OP_R2T, OP_ASYNC, OP_REJECT, OP_LOGOUT_REQ, OP_LOGOUT_RSP = 0x31, 0x32, 0x3F, 0x06, 0x26
IMMEDIATE = 0x40
NO_TAG = 0xFFFFFFFF

GOOD, CHECK_CONDITION = 0x00, 0x02
SK_ILLEGAL_REQUEST, SK_MISCOMPARE = 0x05, 0x0E
LBA = 512


class IscsiError(Exception):
    pass


def pad4(n):
    return (4 - n % 4) % 4


def sn_lte(a, b):
    """Serial number a <= b (RFC 1982, 32 bits)."""
    return a == b or ((b - a) & 0xFFFFFFFF) < 0x80000000


class Sense:
    """Fixed (0x70/0x71) or descriptor (0x72/0x73) sense data."""

    def __init__(self, raw):
        self.raw = bytes(raw)
        self.key = self.asc = self.ascq = 0
        self.info = None
        if len(raw) < 2:
            return
        code = raw[0] & 0x7F
        if code in (0x70, 0x71) and len(raw) >= 14:
            self.key = raw[2] & 0x0F
            self.asc, self.ascq = raw[12], raw[13]
            if raw[0] & 0x80:
                self.info = struct.unpack(">I", raw[3:7])[0]
        elif code in (0x72, 0x73) and len(raw) >= 8:
            self.key = raw[1] & 0x0F
            self.asc, self.ascq = raw[2], raw[3]
            p, end = 8, min(len(raw), 8 + raw[7])
            while p + 2 <= end:
                dtype, dlen = raw[p], raw[p + 1]
                if dtype == 0x00 and dlen >= 10 and p + 12 <= end:
                    self.info = struct.unpack(">Q", raw[p + 4:p + 12])[0]
                p += 2 + dlen

    def __str__(self):
        info = f" info {self.info}" if self.info is not None else ""
        return f"sense key {self.key:#x} asc/ascq {self.asc:#04x}/{self.ascq:#04x}{info}"


class Task:
    __slots__ = ("itt", "cdb", "data_out", "data_in", "got_in", "cb", "status", "sense",
                 "resid", "done", "unsol_end", "user")

    def __init__(self, itt, cdb, data_out, data_in, cb):
        self.itt = itt
        self.cdb = cdb
        self.data_out = data_out
        self.data_in = bytearray(data_in) if data_in else None
        self.got_in = 0
        self.cb = cb
        self.status = None
        self.sense = None
        self.resid = 0
        self.done = False
        self.user = None

    def ok(self):
        return self.status == GOOD

    def describe(self):
        if self.status == GOOD:
            return "GOOD"
        s = f"status {self.status:#04x}" if self.status is not None else "no status"
        return s + (f", {self.sense}" if self.sense else "")


def _bhs(opcode, flags=0, dlen=0, lun=0, itt=0, rest=b""):
    h = bytearray(48)
    h[0] = opcode
    h[1] = flags
    h[4] = 0
    h[5:8] = dlen.to_bytes(3, "big")
    h[8:16] = lun.to_bytes(8, "big")
    h[16:20] = itt.to_bytes(4, "big")
    h[20:20 + len(rest)] = rest
    return h


class Conn:
    """One session, one connection, LUN 0 of `target`."""

    count = 0

    def __init__(self, host, port, target, immediate=True, initial_r2t=True,
                 first_burst=65536, max_burst=262144, my_mrdsl=262144, name=None):
        Conn.count += 1
        self.host, self.port, self.target = host, port, target
        self.want = {"ImmediateData": "Yes" if immediate else "No",
                     "InitialR2T": "Yes" if initial_r2t else "No",
                     "FirstBurstLength": str(first_burst), "MaxBurstLength": str(max_burst),
                     "MaxRecvDataSegmentLength": str(my_mrdsl)}
        self.name = name or f"iqn.2026-12.org.shoal.test:torture-{os.getpid()}-{Conn.count}"
        self.isid = bytes([0x80, 0x00, 0x12, 0x34]) + Conn.count.to_bytes(2, "big")
        self.sock = None
        self.tasks = {}
        self.next_itt = 1
        self.cmdsn = 1
        self.maxcmdsn = 1
        self.expstatsn = 0
        self.out = bytearray()
        self.inb = bytearray()
        self.backlog = []  # commands waiting for the CmdSN window
        self.closed = False

    def fileno(self):
        return self.sock.fileno()

    # -- login ---------------------------------------------------------------

    def _recv_pdu_blocking(self):
        while True:
            p = self._parse_one()
            if p:
                return p
            d = self.sock.recv(65536)
            if not d:
                raise IscsiError("connection closed by the target")
            self.inb += d

    def _login_pdu(self, csg, nsg, transit, keys, itt):
        data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys.items())
        flags = (0x80 if transit else 0) | (csg << 2) | nsg
        rest = bytearray(28)
        rest[0:2] = (0).to_bytes(2, "big")  # CID
        rest[4:8] = self.cmdsn.to_bytes(4, "big")
        rest[8:12] = self.expstatsn.to_bytes(4, "big")
        h = _bhs(OP_LOGIN_REQ | IMMEDIATE, flags, len(data), itt=itt, rest=rest)
        h[2], h[3] = 0, 0  # version max, min
        h[8:14] = self.isid
        h[14:16] = (0).to_bytes(2, "big")  # TSIH 0: a new session
        return bytes(h) + data + bytes(pad4(len(data)))

    def login(self, timeout=10):
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stages = [(0, 1, {"InitiatorName": self.name, "SessionType": "Normal",
                          "TargetName": self.target, "AuthMethod": "None"}),
                  (1, 3, {"HeaderDigest": "None", "DataDigest": "None", "ErrorRecoveryLevel": "0",
                          "MaxConnections": "1", "DataPDUInOrder": "Yes",
                          "DataSequenceInOrder": "Yes", "MaxOutstandingR2T": "1",
                          "DefaultTime2Wait": "0", "DefaultTime2Retain": "0", **self.want})]
        self.params = {}
        itt = 0
        for csg, nsg, keys in stages:
            while True:
                self.sock.sendall(self._login_pdu(csg, nsg, True, keys, itt))
                h, data = self._recv_pdu_blocking()
                if h[0] & 0x3F != OP_LOGIN_RSP:
                    raise IscsiError(f"login: opcode {h[0]:#x} instead of a Login Response")
                if h[36] != 0:
                    raise IscsiError(f"login to {self.target} refused: status class {h[36]:#x}"
                                     f" detail {h[37]:#x}")
                self.expstatsn = (int.from_bytes(h[24:28], "big") + 1) & 0xFFFFFFFF
                self.maxcmdsn = int.from_bytes(h[32:36], "big")
                for kv in bytes(data).split(b"\0"):
                    if b"=" in kv:
                        k, v = kv.decode().split("=", 1)
                        self.params[k] = v
                if h[1] & 0x80 and (h[1] & 3) == nsg:
                    break
                keys = {}  # the target wants another round in this stage
        self.tsih = int.from_bytes(h[14:16], "big")
        p = self.params
        # what we may send per PDU, and the negotiated bursts (RFC 7143 13)
        self.tgt_mrdsl = int(p.get("MaxRecvDataSegmentLength", "8192"))
        self.first_burst = min(int(p.get("FirstBurstLength", self.want["FirstBurstLength"])),
                               int(self.want["FirstBurstLength"]))
        self.immediate = p.get("ImmediateData", self.want["ImmediateData"]) == "Yes"
        self.initial_r2t = p.get("InitialR2T", self.want["InitialR2T"]) == "Yes"
        self.sock.setblocking(False)
        return self

    # -- commands ---------------------------------------------------------------

    def submit(self, cdb, cb=None, data_out=b"", data_in=0):
        """Queue a SCSI command; cb(task) runs when its status arrives."""
        assert not (data_out and data_in)
        itt = self.next_itt
        self.next_itt = (self.next_itt + 1) & 0x7FFFFFFF or 1
        t = Task(itt, bytes(cdb), bytes(data_out) if data_out else b"", data_in, cb)
        self.tasks[itt] = t
        self.backlog.append(t)
        self._flush_backlog()
        return t

    def _flush_backlog(self):
        while self.backlog and sn_lte(self.cmdsn, self.maxcmdsn):
            self._send_cmd(self.backlog.pop(0))

    def _send_cmd(self, t):
        edtl = len(t.data_out) if t.data_out else (len(t.data_in) if t.data_in is not None else 0)
        imm = b""
        unsol_end = 0
        if t.data_out:
            if self.immediate:
                imm = t.data_out[:min(self.first_burst, self.tgt_mrdsl)]
            unsol_end = len(imm)
            if not self.initial_r2t:
                unsol_end = min(len(t.data_out), self.first_burst)
        more_unsol = unsol_end > len(imm)
        flags = (0 if more_unsol else 0x80) | 0x01  # F, ATTR simple
        if t.data_out:
            flags |= 0x20
        elif t.data_in is not None:
            flags |= 0x40
        rest = bytearray(28)
        rest[0:4] = edtl.to_bytes(4, "big")
        rest[4:8] = self.cmdsn.to_bytes(4, "big")
        rest[8:12] = self.expstatsn.to_bytes(4, "big")
        rest[12:12 + len(t.cdb)] = t.cdb
        h = _bhs(OP_SCSI_CMD, flags, len(imm), itt=t.itt, rest=rest)
        self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        self.out += h
        self.out += imm
        self.out += bytes(pad4(len(imm)))
        if more_unsol:
            self._data_out(t, NO_TAG, len(imm), unsol_end - len(imm))

    def _data_out(self, t, ttt, off, length):
        """Data-Out PDUs for [off, off + length) of t's data, F on the last;
        DataSN counts from 0 in each sequence (per R2T, or the unsolicited one)."""
        sn = 0
        end = off + length
        while off < end:
            n = min(self.tgt_mrdsl, end - off)
            rest = bytearray(28)
            rest[0:4] = ttt.to_bytes(4, "big")
            rest[8:12] = self.expstatsn.to_bytes(4, "big")
            rest[16:20] = sn.to_bytes(4, "big")
            rest[20:24] = off.to_bytes(4, "big")
            h = _bhs(OP_DATA_OUT, 0x80 if off + n == end else 0, n, itt=t.itt, rest=rest)
            self.out += h
            self.out += t.data_out[off:off + n]
            self.out += bytes(pad4(n))
            off += n
            sn += 1

    # -- the poll loop's side ------------------------------------------------------

    def want_write(self):
        return bool(self.out)

    def events(self):
        return select.POLLIN | (select.POLLOUT if self.out else 0)

    def on_writable(self):
        while self.out:
            try:
                n = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                raise IscsiError(f"send to {self.target}: {e}") from None
            del self.out[:n]

    def on_readable(self):
        try:
            while True:
                d = self.sock.recv(1 << 20)
                if not d:
                    self.closed = True
                    raise IscsiError(f"{self.target}: the target closed the connection"
                                     f" with {len(self.tasks)} tasks open")
                self.inb += d
                if len(d) < (1 << 20):
                    break
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            p = self._parse_one()
            if not p:
                break
            self._handle(*p)

    def _parse_one(self):
        if len(self.inb) < 48:
            return None
        ahs = self.inb[4] * 4
        dlen = int.from_bytes(self.inb[5:8], "big")
        total = 48 + ahs + dlen + pad4(dlen)
        if len(self.inb) < total:
            return None
        h = bytes(self.inb[:48])
        data = memoryview(bytes(self.inb[48 + ahs:48 + ahs + dlen]))
        del self.inb[:total]
        return h, data

    def _sn_update(self, h, has_statsn):
        if has_statsn:
            self.expstatsn = (int.from_bytes(h[24:28], "big") + 1) & 0xFFFFFFFF
        mx = int.from_bytes(h[32:36], "big")
        if sn_lte(self.maxcmdsn, mx):
            self.maxcmdsn = mx
        self._flush_backlog()

    def _finish(self, t, status, sense, resid):
        t.status, t.sense, t.resid, t.done = status, sense, resid, True
        del self.tasks[t.itt]
        if t.cb:
            t.cb(t)

    def _handle(self, h, data):
        op = h[0] & 0x3F
        itt = int.from_bytes(h[16:20], "big")
        if op == OP_DATA_IN:
            t = self.tasks.get(itt)
            if t is None or t.data_in is None:
                raise IscsiError(f"Data-In for unknown or non-read task {itt:#x}")
            off = int.from_bytes(h[40:44], "big")
            if off != t.got_in or off + len(data) > len(t.data_in):
                raise IscsiError(f"Data-In at offset {off}, {len(data)} bytes, expected"
                                 f" offset {t.got_in} of {len(t.data_in)}")
            t.data_in[off:off + len(data)] = data
            t.got_in = off + len(data)
            if h[1] & 0x01:  # S: status in the last Data-In
                self._sn_update(h, True)
                self._finish(t, h[3], None, int.from_bytes(h[44:48], "big"))
            else:
                self._sn_update(h, False)
        elif op == OP_SCSI_RSP:
            t = self.tasks.get(itt)
            if t is None:
                raise IscsiError(f"SCSI Response for unknown task {itt:#x}")
            self._sn_update(h, True)
            sense = None
            if len(data) >= 2:
                sl = int.from_bytes(data[0:2], "big")
                sense = Sense(data[2:2 + sl])
            if h[2] != 0:
                raise IscsiError(f"task {itt:#x}: iSCSI response {h[2]:#x} (target failure)")
            self._finish(t, h[3], sense, int.from_bytes(h[44:48], "big"))
        elif op == OP_R2T:
            t = self.tasks.get(itt)
            if t is None or not t.data_out:
                raise IscsiError(f"R2T for unknown or non-write task {itt:#x}")
            self._sn_update(h, False)
            ttt = int.from_bytes(h[20:24], "big")
            off = int.from_bytes(h[40:44], "big")
            ln = int.from_bytes(h[44:48], "big")
            if off + ln > len(t.data_out):
                raise IscsiError(f"R2T for [{off}, +{ln}) past the {len(t.data_out)} bytes")
            self._data_out(t, ttt, off, ln)
        elif op == OP_NOP_IN:
            self._sn_update(h, itt == NO_TAG)
            ttt = int.from_bytes(h[20:24], "big")
            if ttt != NO_TAG:  # a ping from the target: answer it
                rest = bytearray(28)
                rest[0:4] = ttt.to_bytes(4, "big")
                rest[4:8] = self.cmdsn.to_bytes(4, "big")
                rest[8:12] = self.expstatsn.to_bytes(4, "big")
                self.out += _bhs(OP_NOP_OUT | IMMEDIATE, 0x80, 0, lun=int.from_bytes(h[8:16], "big"),
                                 itt=NO_TAG, rest=rest)
        elif op == OP_REJECT:
            raise IscsiError(f"Reject, reason {h[2]:#x}, of a PDU with opcode {data[0] & 0x3F:#x}"
                             if len(data) else f"Reject, reason {h[2]:#x}")
        elif op == OP_ASYNC:
            self._sn_update(h, True)
            raise IscsiError(f"Async Message, event {h[36]:#x}")
        else:
            raise IscsiError(f"unexpected PDU opcode {op:#x}")

    # -- waiting -----------------------------------------------------------------

    def run(self, task, timeout=30):
        """Drive this connection alone until `task` is done."""
        import time
        deadline = time.time() + timeout
        while not task.done:
            left = deadline - time.time()
            if left <= 0:
                raise IscsiError(f"{self.target}: no answer to CDB {task.cdb[0]:#x} in {timeout} s")
            p = select.poll()
            p.register(self.sock, self.events())
            for _, ev in p.poll(int(left * 1000) + 1):
                if ev & select.POLLOUT:
                    self.on_writable()
                if ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    self.on_readable()
        return task

    def sync(self, cdb, data_out=b"", data_in=0):
        return self.run(self.submit(cdb, None, data_out, data_in))

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # the two calls the torture's final phase makes on every connection
    def flush(self):
        t = self.sync(sync_cache16())
        if not t.ok():
            raise IscsiError(f"SYNCHRONIZE CACHE(16): {t.describe()}")

    def shutdown(self):
        self.close()


# -- CDBs ----------------------------------------------------------------------


def read16(lba, blocks, fua=False):
    return struct.pack(">BBQIBB", 0x88, 0x08 if fua else 0, lba, blocks, 0, 0)


def write16(lba, blocks, fua=False):
    return struct.pack(">BBQIBB", 0x8A, 0x08 if fua else 0, lba, blocks, 0, 0)


def sync_cache16(lba=0, blocks=0):
    return struct.pack(">BBQIBB", 0x91, 0, lba, blocks, 0, 0)


def write_same16(lba, blocks, unmap=False):
    return struct.pack(">BBQIBB", 0x93, 0x08 if unmap else 0, lba, blocks, 0, 0)


def compare_and_write(lba, blocks, fua=False):
    return struct.pack(">BBQBBBBBB", 0x89, 0x08 if fua else 0, lba, 0, 0, 0, blocks, 0, 0)


def unmap(ranges):
    """UNMAP CDB and its parameter list for [(lba, blocks), ...]."""
    desc = b"".join(struct.pack(">QII", lba, n, 0) for lba, n in ranges)
    plist = struct.pack(">HH4x", 6 + len(desc), len(desc)) + desc
    cdb = struct.pack(">BBIBHB", 0x42, 0, 0, 0, len(plist), 0)
    return cdb, plist


def inquiry(page=None, alloc=255):
    if page is None:
        return struct.pack(">BBBHB", 0x12, 0, 0, alloc, 0)
    return struct.pack(">BBBHB", 0x12, 1, page, alloc, 0)


def read_capacity16(alloc=32):
    return struct.pack(">BBQIBB", 0x9E, 0x10, 0, alloc, 0, 0)


def naa_designator(vpd83):
    """The 8-byte binary NAA designator of the logical unit in VPD page 0x83."""
    d = bytes(vpd83)
    end = 4 + int.from_bytes(d[2:4], "big")
    p = 4
    while p + 4 <= min(end, len(d)):
        code_set, piv_assoc_type, ln = d[p] & 0x0F, d[p + 1], d[p + 3]
        if code_set == 1 and (piv_assoc_type >> 4) & 3 == 0 and piv_assoc_type & 0x0F == 3 \
                and ln == 8:
            return d[p + 4:p + 12]
        p += 4 + ln
    raise IscsiError("VPD 0x83 has no 8-byte NAA designator of the logical unit")


def extended_copy(naas, segments):
    """EXTENDED COPY (LID1), list id usage 11b (no list id, nothing held):
    naas = [8-byte NAA, ...] (the CSCD list, one identification
    descriptor each), segments = [(src index, dst index, blocks, src lba,
    dst lba), ...] block-to-block. Returns (cdb, parameter list)."""
    tds = b""
    for naa in naas:
        td = bytearray(32)
        td[0] = 0xE4
        td[1] = 0x00  # LU designator, peripheral type 0 (block)
        td[4] = 0x01  # binary
        td[5] = 0x03  # association LU, type NAA
        td[7] = 8
        td[8:16] = naa
        td[29:32] = LBA.to_bytes(3, "big")
        tds += td
    segs = b"".join(struct.pack(">BBHHHHHQQ", 0x02, 0, 24, s, d, 0, n, sl, dl)
                    for s, d, n, sl, dl in segments)
    hdr = struct.pack(">BBHIII", 0, 0x18, len(tds), 0, len(segs), 0)
    plist = hdr + tds + segs
    cdb = struct.pack(">BB8xIBB", 0x83, 0x00, len(plist), 0, 0)
    return cdb, plist
