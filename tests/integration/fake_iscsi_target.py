"""A tiny iSCSI target for the tests of shoal's iSCSI back end: one LUN
(LUN 0) of 512-byte blocks kept in memory, a login that takes what
libiscsi offers, and the few commands the back end sends (TEST UNIT READY,
INQUIRY, READ CAPACITY(16), MODE SENSE(6), READ(16), WRITE(16),
SYNCHRONIZE CACHE, REPORT LUNS). It misbehaves on demand (`mode`), as a
broken upstream target could:

  "short"        READ(16): GOOD with half the data, and the U bit with the
                 residual count (an honest underflow)
  "short-silent" READ(16): GOOD with half the data and no residual flag
  "write-under"  WRITE(16): takes all the data, keeps only the first half,
                 and answers GOOD with the U bit and the residual count

Only 127.0.0.1. A thread per connection; start() returns the port."""
import socket
import struct
import threading

from itlib import recv_iscsi_pdu as _recv_pdu


def _pad(data):
    return data + b"\0" * (-len(data) % 4)


class FakeTarget:
    def __init__(self, disk, iqn):
        self.disk = bytearray(disk)
        self.iqn = iqn
        self.mode = "normal"
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def close(self):
        self.srv.close()

    def _serve(self, s):
        st = {"statsn": 1, "expcmdsn": 0}
        try:
            while True:
                bhs, data = _recv_pdu(s)
                self._handle(s, st, bhs, data)
        except (EOFError, OSError):
            pass
        finally:
            s.close()

    def _send(self, s, st, bhs, data=b"", status=True):
        bhs = bytearray(bhs)
        bhs[5:8] = len(data).to_bytes(3, "big")
        struct.pack_into(">I", bhs, 24, st["statsn"])
        if status:
            st["statsn"] += 1
        struct.pack_into(">II", bhs, 28, st["expcmdsn"], st["expcmdsn"] + 32)
        s.sendall(bytes(bhs) + _pad(data))

    def _handle(self, s, st, bhs, data):
        op = bhs[0] & 0x3f
        itt = bhs[16:20]
        cmdsn = struct.unpack(">I", bhs[24:28])[0]
        if op == 0x03:  # login
            st["expcmdsn"] = cmdsn
            csg, nsg, transit = (bhs[1] >> 2) & 3, bhs[1] & 3, bhs[1] & 0x80
            keys = dict(kv.split("=", 1) for kv in data.decode().split("\0") if "=" in kv)
            out = []
            if csg == 0:
                out += ["AuthMethod=None", "TargetPortalGroupTag=1"]
            ops = {"HeaderDigest": "None", "DataDigest": "None", "InitialR2T": "Yes",
                   "ImmediateData": "No", "MaxBurstLength": "16776192",
                   "FirstBurstLength": "262144", "MaxRecvDataSegmentLength": "262144",
                   "DefaultTime2Wait": "2", "DefaultTime2Retain": "0", "MaxOutstandingR2T": "1",
                   "DataPDUInOrder": "Yes", "DataSequenceInOrder": "Yes",
                   "ErrorRecoveryLevel": "0", "MaxConnections": "1"}
            out += [f"{k}={v}" for k, v in ops.items() if k in keys]
            flags = (0x80 if transit else 0) | (csg << 2) | (nsg if transit else 0)
            r = bytearray(48)
            r[0], r[1] = 0x23, flags
            r[8:14] = bhs[8:14]  # ISID
            r[14:16] = b"\0\1" if transit and nsg == 3 else b"\0\0"  # TSIH
            r[16:20] = itt
            self._send(s, st, r, "".join(k + "\0" for k in out).encode())
            return
        if op == 0x00:  # NOP-Out
            if itt != b"\xff\xff\xff\xff":
                r = bytearray(48)
                r[0], r[1], r[16:20], r[20:24] = 0x20, 0x80, itt, b"\xff\xff\xff\xff"
                self._send(s, st, r, data)
            return
        if op == 0x06:  # logout
            r = bytearray(48)
            r[0], r[1], r[16:20] = 0x26, 0x80, itt
            st["expcmdsn"] = cmdsn + 1
            self._send(s, st, r)
            return
        if op != 0x01:
            return
        if not bhs[0] & 0x40:
            st["expcmdsn"] = cmdsn + 1
        self._command(s, st, bhs, itt)

    def _respond(self, s, st, itt, status=0, sense=None, under=0):
        r = bytearray(48)
        r[0], r[1], r[3], r[16:20] = 0x21, 0x80, status, itt
        if under:
            r[1] |= 0x02
            struct.pack_into(">I", r, 44, under)
        data = b""
        if sense:
            key, asc = sense
            fixed = bytearray(18)
            fixed[0], fixed[2], fixed[7], fixed[12], fixed[13] = 0x70, key, 10, asc >> 8, asc & 0xff
            data = struct.pack(">H", 18) + bytes(fixed)
        self._send(s, st, r, data)

    def _data_in(self, s, st, itt, payload, edtl, under_flag):
        """Data-In PDUs, the last with status GOOD (and the U bit if asked)."""
        off, datasn = 0, 0
        while True:
            piece = payload[off:off + 8192]
            last = off + len(piece) >= len(payload)
            r = bytearray(48)
            r[0], r[1], r[16:20] = 0x25, 0x80 if last else 0, itt
            r[20:24] = b"\xff\xff\xff\xff"
            struct.pack_into(">I", r, 36, datasn)
            struct.pack_into(">I", r, 40, off)
            if last:
                r[1] |= 0x01  # S: status GOOD
                if under_flag and edtl > len(payload):
                    r[1] |= 0x02
                    struct.pack_into(">I", r, 44, edtl - len(payload))
            self._send(s, st, r, piece, status=last)
            off += len(piece)
            datasn += 1
            if last:
                return

    def _command(self, s, st, bhs, itt):
        cdb = bhs[32:48]
        edtl = struct.unpack(">I", bhs[20:24])[0]
        lun = bhs[8:16]
        blocks = len(self.disk) // 512
        op = cdb[0]
        if lun != bytes(8) and op != 0xa0:
            return self._respond(s, st, itt, 2, (5, 0x2500))
        if op in (0x00, 0x35, 0x91):  # TEST UNIT READY, SYNCHRONIZE CACHE
            return self._respond(s, st, itt)
        if op == 0x12:  # INQUIRY
            if cdb[1] & 1:
                if cdb[2] != 0:
                    return self._respond(s, st, itt, 2, (5, 0x2400))
                out = bytes([0, 0, 0, 1, 0])
            else:
                out = bytes([0, 0, 6, 2, 31, 0, 0, 0]) + b"SHOALFAK" + b"fake target     " + b"0001"
            alloc = cdb[3] << 8 | cdb[4]
            return self._data_in(s, st, itt, out[:alloc], edtl, True)
        if op == 0x9e and cdb[1] & 0x1f == 0x10:  # READ CAPACITY(16)
            out = struct.pack(">QI", blocks - 1, 512) + bytes(20)
            return self._data_in(s, st, itt, out, edtl, True)
        if op == 0x1a:  # MODE SENSE(6)
            return self._data_in(s, st, itt, bytes([3, 0, 0, 0])[:cdb[4]], edtl, True)
        if op == 0xa0:  # REPORT LUNS
            return self._data_in(s, st, itt, struct.pack(">II", 8, 0) + bytes(8), edtl, True)
        if op in (0x88, 0x8a):  # READ(16), WRITE(16)
            lba, n = struct.unpack(">QI", cdb[2:14])
            if lba + n > blocks:
                return self._respond(s, st, itt, 2, (5, 0x2100))
            if op == 0x88:
                with self.lock:
                    out = bytes(self.disk[lba * 512:(lba + n) * 512])
                    mode = self.mode
                if mode in ("short", "short-silent"):
                    out = out[:len(out) // 2]
                return self._data_in(s, st, itt, out, edtl, mode == "short")
            return self._write(s, st, itt, lba, n * 512)
        return self._respond(s, st, itt, 2, (5, 0x2000))

    def _write(self, s, st, itt, lba, length):
        r = bytearray(48)
        r[0], r[1], r[16:20] = 0x31, 0x80, itt
        r[20:24] = b"\0\0\0\x07"  # TTT
        struct.pack_into(">III", r, 36, 0, 0, length)  # R2TSN, offset, length
        self._send(s, st, r, status=False)
        got = bytearray(length)
        while True:
            bhs, data = _recv_pdu(s)
            if bhs[0] & 0x3f != 0x05:
                raise EOFError  # this fake handles one command at a time
            off = struct.unpack(">I", bhs[40:44])[0]
            got[off:off + len(data)] = data
            if bhs[1] & 0x80:
                break
        with self.lock:
            mode = self.mode
        keep = length // 2 if mode == "write-under" else length
        with self.lock:
            self.disk[lba * 512:lba * 512 + keep] = got[:keep]
        self._respond(s, st, itt, under=length - keep)
