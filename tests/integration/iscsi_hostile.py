#!/usr/bin/python3
"""Hostile iSCSI initiators on raw sockets: garbage headers, a huge data
segment length, an unknown target, full-feature PDUs before login, bad
versions and missing keys, out-of-window CmdSN, a malformed AHS, unknown
opcodes, Data-Out out of sequence (the command fails), FirstBurstLength over
MaxBurstLength, a key offered twice, a login going back a stage, a command
beyond a closed CmdSN window, a text request in parts, ABORT TASK SET with
READs in flight, a LUN RESET that must reach another session's tasks (and
a target cold reset its connection). Each gets the answer RFC 7143 asks for
(a login status, a Reject, silence, a closed connection, or a TMF response
after the responses of the tasks it ends); a full window is opened again by
the very response that frees a slot, and a window kept full never has its
room overstated; the daemon stays up and the next client (libiscsi's
iscsi-inq) is served."""
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, check, free_port, log, recv_exact  # noqa: E402
from itlib import recv_iscsi_pdu as recv_pdu  # noqa: E402

IQN = "iqn.2026-12.org.shoal:"
INITIATOR = "iqn.2026-12.org.shoal.test:hostile"
MiB = 1 << 20


def closed(s, secs=5):
    """True when the peer closes (EOF or reset) within secs, reading and
    dropping anything it sends first."""
    s.settimeout(secs)
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def silent(s, secs=1.0):
    """True when nothing arrives within secs and the connection stays up."""
    s.settimeout(secs)
    try:
        s.recv(48, socket.MSG_PEEK)
    except socket.timeout:
        return True
    finally:
        s.settimeout(10)
    return False


def pdu(op, flags=0, dlen=None, data=b"", itt=1, lun=0, f20=0, cmdsn=0, f28=0,
        rest=b"", ahs=b"", immediate=False):
    d = len(data) if dlen is None else dlen
    bhs = bytes([op | (0x40 if immediate else 0), flags, 0, 0, len(ahs) // 4]) + d.to_bytes(3, "big")
    bhs += struct.pack(">QIIII", lun, itt, f20, cmdsn, f28) + rest.ljust(16, b"\0")[:16]
    return bhs + ahs + data + b"\0" * (-len(data) % 4)


def login_pdu(keys, csg=1, nsg=3, transit=True, vmin=0, isid=b"\x80\x00\x00\x00\x00\x01",
              tsih=0, cmdsn=1):
    data = b"".join(k.encode() + b"\0" for k in keys)
    flags = (0x80 if transit else 0) | (csg << 2) | nsg
    bhs = bytes([0x43, flags, 0, vmin, 0]) + len(data).to_bytes(3, "big")
    bhs += isid + struct.pack(">HIHHII", tsih, 1, 0, 0, cmdsn, 0) + b"\0" * 16
    return bhs + data + b"\0" * (-len(data) % 4)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.cmdsn = 1
        self.itt = 0x100

    def login(self, target, extra=(), isid=b"\x80\x00\x00\x00\x00\x01"):
        keys = [f"InitiatorName={INITIATOR}", "SessionType=Normal", f"TargetName={target}",
                "HeaderDigest=None", "DataDigest=None", *extra]
        self.s.sendall(login_pdu(keys, cmdsn=self.cmdsn, isid=isid))
        bhs, data = recv_pdu(self.s)
        check(bhs[0] & 0x3f == 0x23, f"login answer opcode 0x{bhs[0]:02x}")
        self.status = bhs[36] << 8 | bhs[37]
        self.expcmdsn, self.maxcmdsn = struct.unpack(">II", bhs[28:36])
        self.keys = dict(kv.split("=", 1) for kv in data.decode().split("\0") if "=" in kv)
        return self.status

    def tur(self, cmdsn=None):
        self.itt += 1
        sn = self.cmdsn if cmdsn is None else cmdsn
        if cmdsn is None:
            self.cmdsn += 1
        self.s.sendall(pdu(0x01, 0x80, itt=self.itt, cmdsn=sn, f20=0, f28=0))
        return self.itt


def expect_response(c, itt):
    bhs, _ = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x21, f"expected a SCSI Response, got opcode 0x{bhs[0]:02x}")
    check(struct.unpack(">I", bhs[16:20])[0] == itt, "response for another task")
    return bhs


def expect_reject(c, reason, what):
    bhs, data = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x3f, f"{what}: expected a Reject, got opcode 0x{bhs[0]:02x}")
    check(bhs[2] == reason, f"{what}: reject reason 0x{bhs[2]:02x}, expected 0x{reason:02x}")
    check(len(data) == 48, f"{what}: the Reject carries the rejected header")


def main():
    if not shutil.which("iscsi-inq"):
        print("[iscsi_hostile] SKIP: iscsi-inq is not installed (libiscsi-bin)")
        sys.exit(itlib.SKIP)
    img = os.path.join(TMP, "a.img")
    data = os.urandom(4 * MiB)
    with open(img, "wb") as f:
        f.write(data)
    port = free_port()
    d = Shoald([f"a={img}"], extra=["--iscsi", f"127.0.0.1:{port}", "-v"])
    target = IQN + "a"

    def healthy(what):
        check(d.alive(), f"shoald died after {what}")
        r = subprocess.run(["iscsi-inq", f"iscsi://127.0.0.1:{port}/{target}/0"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and "DIRECT_ACCESS" in r.stdout,
              f"a good initiator failed after {what}: {r.stdout} {r.stderr}")

    def case(name):
        log(name)
        return Conn(port)

    c = case("garbage header: closed")
    c.s.sendall(b"\xff" * 48)
    check(closed(c.s), "garbage header: connection stays open")
    healthy("a garbage header")

    c = case("huge DataSegmentLength in a login: closed")
    c.s.sendall(login_pdu([])[:5] + b"\xff\xff\xff" + login_pdu([])[8:48])
    check(closed(c.s), "huge DataSegmentLength: connection stays open")
    healthy("a huge DataSegmentLength")

    c = case("a SCSI command before login: closed")
    c.s.sendall(pdu(0x01, 0x80, itt=1, cmdsn=1))
    check(closed(c.s), "SCSI command before login: connection stays open")

    c = case("login to an unknown target: target not found")
    check(c.login(IQN + "nope") == 0x0203, f"unknown target: status 0x{c.status:04x}")
    check(closed(c.s), "refused login: connection stays open")

    c = case("login with version-min 1: unsupported version")
    c.s.sendall(login_pdu([f"InitiatorName={INITIATOR}", f"TargetName={target}"], vmin=1))
    bhs, _ = recv_pdu(c.s)
    check((bhs[36] << 8 | bhs[37]) == 0x0205, "version-min 1 not refused with 0x0205")

    c = case("login without InitiatorName: missing parameter")
    c.s.sendall(login_pdu([f"TargetName={target}"]))
    bhs, _ = recv_pdu(c.s)
    check((bhs[36] << 8 | bhs[37]) == 0x0207, "missing InitiatorName not refused with 0x0207")

    c = case("joining an unknown session (TSIH 999): session does not exist")
    c.s.sendall(login_pdu([f"InitiatorName={INITIATOR}", f"TargetName={target}"], tsih=999))
    bhs, _ = recv_pdu(c.s)
    check((bhs[36] << 8 | bhs[37]) == 0x020a, "unknown TSIH not refused with 0x020a")

    c = case("full feature phase: out-of-window CmdSN ignored, the next one served")
    check(c.login(target) == 0, f"login failed: 0x{c.status:04x}")
    check(c.keys.get("TargetPortalGroupTag") == "1", f"no TargetPortalGroupTag: {c.keys}")
    check(int(c.keys.get("MaxRecvDataSegmentLength", "0")) >= 512, "no MaxRecvDataSegmentLength")
    c.tur(cmdsn=c.maxcmdsn + 5)
    check(silent(c.s), "a command beyond MaxCmdSN was answered")
    c.tur(cmdsn=c.cmdsn - 1)
    check(silent(c.s), "a command below ExpCmdSN was answered")
    itt = c.tur()
    bhs = expect_response(c, itt)
    check(bhs[3] == 0, f"TEST UNIT READY status 0x{bhs[3]:02x}")

    log("a malformed AHS: Reject (invalid PDU field)")
    ahs = struct.pack(">HBB", 200, 1, 0)  # claims 200 bytes, has 1
    c.s.sendall(pdu(0x01, 0x80, itt=0x900, cmdsn=c.cmdsn, ahs=ahs))
    expect_reject(c, 0x09, "bad AHS")
    log("an unknown opcode: Reject (command not supported)")
    c.s.sendall(pdu(0x1f, 0x80, itt=0x901))
    expect_reject(c, 0x05, "opcode 0x1f")
    log("NOP-Out ping: echoed")
    ping = os.urandom(1000)
    c.s.sendall(pdu(0x00, 0x80, data=ping, itt=0x902, f20=0xffffffff, cmdsn=c.cmdsn,
                    immediate=True))
    bhs, echo = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x20 and echo == ping, "NOP-In does not echo the ping")
    log("a data segment over our MaxRecvDataSegmentLength: closed")
    mrdsl = int(c.keys["MaxRecvDataSegmentLength"])
    c.s.sendall(pdu(0x00, 0x80, dlen=mrdsl + 4, itt=0x903, f20=0xffffffff, immediate=True))
    check(closed(c.s), "oversized data segment: connection stays open")
    healthy("an oversized data segment")

    c = case("Data-Out with a wrong DataSN: the command fails, the session goes on")
    check(c.login(target, ["ImmediateData=No", "InitialR2T=Yes"]) == 0, "login failed")
    cdb = bytes([0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0])  # WRITE(10) LBA 8, 2 blocks
    c.s.sendall(pdu(0x01, 0x80 | 0x20, itt=0x77, f20=1024, cmdsn=c.cmdsn, rest=cdb))
    c.cmdsn += 1
    bhs, _ = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x31, f"expected an R2T, got opcode 0x{bhs[0]:02x}")
    ttt = struct.unpack(">I", bhs[20:24])[0]
    c.s.sendall(pdu(0x05, 0x80, data=b"x" * 1024, itt=0x77, f20=ttt,
                    rest=struct.pack(">III", 0, 5, 0)))  # DataSN 5, offset 0
    bhs, sense = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x21 and bhs[3] == 0x02, "no CHECK CONDITION for a wrong DataSN")
    check(len(sense) >= 16 and sense[4] & 0x0f == 0x0b, f"sense key not ABORTED COMMAND: {sense!r}")
    itt = c.tur()
    check(expect_response(c, itt)[3] == 0, "the session is unusable after a wrong DataSN")
    with open(img, "rb") as f:
        f.seek(8 * 512)
        check(f.read(1024) == data[8 * 512:10 * 512], "the failed write reached the disk")

    c = case("a command reusing the tag of a task in flight: Reject (task in progress)")
    check(c.login(target, ["ImmediateData=No", "InitialR2T=Yes"]) == 0, "login failed")
    # Two WRITEs wait for their data (R2T sent), so the tag check has to
    # look past one task in flight to find the second.
    ttts = {}
    for itt, lba in ((0x60, 16), (0x61, 24)):
        cdb = bytes([0x2a, 0, 0, 0, 0, lba, 0, 0, 2, 0])  # WRITE(10), 2 blocks
        c.s.sendall(pdu(0x01, 0x80 | 0x20, itt=itt, f20=1024, cmdsn=c.cmdsn, rest=cdb))
        c.cmdsn += 1
        bhs, _ = recv_pdu(c.s)
        check(bhs[0] & 0x3f == 0x31, f"expected an R2T, got opcode 0x{bhs[0]:02x}")
        ttts[itt] = struct.unpack(">I", bhs[20:24])[0]
    c.s.sendall(pdu(0x01, 0x80, itt=0x61, cmdsn=c.cmdsn, immediate=True))  # TEST UNIT READY
    expect_reject(c, 0x07, "a reused task tag")
    new = {0x60: os.urandom(1024), 0x61: os.urandom(1024)}
    for itt, lba in ((0x60, 16), (0x61, 24)):
        c.s.sendall(pdu(0x05, 0x80, data=new[itt], itt=itt, f20=ttts[itt],
                        rest=struct.pack(">III", 0, 0, 0)))  # DataSN 0, offset 0
        check(expect_response(c, itt)[3] == 0, f"WRITE 0x{itt:x} failed after the Reject")
        data = data[:lba * 512] + new[itt] + data[lba * 512 + 1024:]
    itt = c.tur()
    check(expect_response(c, itt)[3] == 0, "the session is unusable after a reused task tag")
    with open(img, "rb") as f:
        check(f.read() == data, "the two WRITEs did not land as sent")

    c = case("FirstBurstLength over MaxBurstLength: both answered as used, unsolicited data to it")
    check(c.login(target, ["InitialR2T=No", "FirstBurstLength=65536", "MaxBurstLength=1024"]) == 0,
          f"login failed: 0x{c.status:04x}")
    check(c.keys.get("FirstBurstLength") == "1024" and c.keys.get("MaxBurstLength") == "1024",
          f"burst answers {c.keys}: FirstBurstLength must not exceed MaxBurstLength")
    new = os.urandom(2048)
    cdb = bytes([0x2a, 0, 0, 0, 0, 40, 0, 0, 4, 0])  # WRITE(10) LBA 40, 4 blocks
    c.s.sendall(pdu(0x01, 0x20, data=new[:512], itt=0x80, f20=2048, cmdsn=c.cmdsn, rest=cdb))
    c.cmdsn += 1
    c.s.sendall(pdu(0x05, 0x80, data=new[512:1024], itt=0x80, f20=0xffffffff,
                    rest=struct.pack(">III", 0, 0, 512)))  # the rest of the first burst
    bhs, _ = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x31, f"expected an R2T after the first burst, got 0x{bhs[0]:02x}")
    r2t_off, r2t_len = struct.unpack(">II", bhs[40:48])
    check((r2t_off, r2t_len) == (1024, 1024), f"R2T for {r2t_off}+{r2t_len}, expected 1024+1024")
    c.s.sendall(pdu(0x05, 0x80, data=new[1024:], itt=0x80, f20=struct.unpack(">I", bhs[20:24])[0],
                    rest=struct.pack(">III", 0, 0, 1024)))
    check(expect_response(c, 0x80)[3] == 0, "the WRITE with unsolicited data failed")
    data = data[:40 * 512] + new + data[40 * 512 + 2048:]

    c = case("an operational key offered twice: Login reject (initiator error)")
    check(c.login(target, ["MaxBurstLength=65536", "MaxBurstLength=1024"]) == 0x0200,
          f"a key offered twice: status 0x{c.status:04x}")
    check(closed(c.s), "refused login: connection stays open")

    c = case("a login request back in a stage it left: invalid request")
    keys = [f"InitiatorName={INITIATOR}", f"TargetName={target}", "AuthMethod=None"]
    c.s.sendall(login_pdu(keys, csg=0, nsg=1))
    bhs, _ = recv_pdu(c.s)
    check((bhs[36] << 8 | bhs[37]) == 0 and bhs[1] == 0x81, "security stage not left")
    c.s.sendall(login_pdu([], csg=0, nsg=1))
    bhs, _ = recv_pdu(c.s)
    check((bhs[36] << 8 | bhs[37]) == 0x020b, f"back to security: status {bhs[36:38].hex()}")

    c = case("a full CmdSN window: the next command is ignored, not rejected nor consumed")
    check(c.login(target, ["ImmediateData=No", "InitialR2T=Yes"]) == 0, "login failed")
    window = c.maxcmdsn - c.expcmdsn + 1
    for i in range(window):  # WRITEs that wait for their data hold the window
        cdb = bytes([0x2a, 0, 0, 0, 0, 64 + i, 0, 0, 1, 0])
        c.s.sendall(pdu(0x01, 0x80 | 0x20, itt=0x200 + i, f20=512, cmdsn=c.cmdsn, rest=cdb))
        c.cmdsn += 1
        bhs, _ = recv_pdu(c.s)
        check(bhs[0] & 0x3f == 0x31, f"expected an R2T, got opcode 0x{bhs[0]:02x}")
        ttt = struct.unpack(">I", bhs[20:24])[0]
    check(struct.unpack(">I", bhs[32:36])[0] == c.cmdsn - 1, "MaxCmdSN does not close the window")
    c.s.sendall(pdu(0x01, 0x80, itt=0x300, cmdsn=c.cmdsn))  # TEST UNIT READY
    check(silent(c.s), "a command beyond MaxCmdSN was answered")
    new = os.urandom(512)
    c.s.sendall(pdu(0x05, 0x80, data=new, itt=0x200 + window - 1, f20=ttt,
                    rest=struct.pack(">III", 0, 0, 0)))
    bhs = expect_response(c, 0x200 + window - 1)
    check(bhs[3] == 0, "the last WRITE failed")
    data = data[:(63 + window) * 512] + new + data[(64 + window) * 512:]
    # The WRITE's own response opens its slot (RFC 7143: MaxCmdSN is the
    # window when the PDU is sent, and that command has left it): the
    # initiator sends the held-back CmdSN on the strength of it alone.
    check(struct.unpack(">I", bhs[32:36])[0] == c.cmdsn,
          f"the SCSI Response's MaxCmdSN {struct.unpack('>I', bhs[32:36])[0]} still counts the "
          f"command it answers (expected {c.cmdsn})")
    c.s.sendall(pdu(0x01, 0x80, itt=0x300, cmdsn=c.cmdsn))  # the same CmdSN, now in the window
    check(expect_response(c, 0x300)[3] == 0, "the command at ExpCmdSN failed once the window opened")

    c = case("discovery: SendTargets=All lists the target")
    keys = [f"InitiatorName={INITIATOR}", "SessionType=Discovery"]
    c.s.sendall(login_pdu(keys))
    bhs, _ = recv_pdu(c.s)
    check((bhs[36] << 8 | bhs[37]) == 0, "discovery login refused")
    text = b"SendTargets=All\0"
    c.s.sendall(pdu(0x04, 0x80, data=text, itt=5, f20=0xffffffff, cmdsn=1))
    bhs, reply = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x24, "no Text Response")
    check(f"TargetName={target}".encode() in reply, f"SendTargets answer: {reply!r}")
    log("SendTargets in a text request of many parts (C bit): gathered, then answered")
    parts = [text[i:i + 3] for i in range(0, len(text), 3)]
    ttt = 0xffffffff
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        c.s.sendall(pdu(0x04, 0x80 if last else 0x40, data=part, itt=7, f20=ttt, cmdsn=2 + i))
        bhs, reply = recv_pdu(c.s)
        check(bhs[0] & 0x3f == 0x24, f"part {i}: no Text Response (opcode 0x{bhs[0]:02x})")
        if not last:
            check(not reply and not bhs[1] & 0x80, f"part {i}: not an empty answer asking for more")
            ttt = struct.unpack(">I", bhs[20:24])[0]
            check(ttt != 0xffffffff, f"part {i}: no target transfer tag to continue with")
    check(f"TargetName={target}".encode() in reply, f"SendTargets in parts answered {reply!r}")
    log("a SCSI command in a discovery session: Reject")
    c.s.sendall(pdu(0x01, 0x80, itt=6, cmdsn=2 + len(parts)))
    expect_reject(c, 0x05, "SCSI command in discovery")

    log("50 half-open connections, then a good initiator")
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    for s in socks:
        s.sendall(b"\x43" * 20)
    for s in socks:
        s.close()
    healthy("50 half-open connections")
    with open(img, "rb") as f:
        check(f.read() == data, "the backing file changed")
    d.stop()
    idle_pings(img, target)
    tmf_after_responses(target)
    lun_reset_reaches_other_sessions(target)
    window_never_overstated()


def window_never_overstated():
    """MaxCmdSN never promises more room than the window has. The window
    is kept full of 4 KiB READs that miss (their responses go out from the
    sender thread while the reader takes the next command); every PDU's
    MaxCmdSN must leave room for the commands below its ExpCmdSN that are
    still unanswered. A command taken but not yet counted once let a PDU
    announce one slot too many: the command sent into it was ignored and
    the session hung (iscsi-test-cu's CompareAndWriteAsync under TSan)."""
    total = 6000
    log(f"{total} READs at a full CmdSN window: MaxCmdSN never past the room left, none ignored")
    img = os.path.join(TMP, "w.img")
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    port = free_port()
    # A read delay sends the misses to the workers: their responses go out
    # from the sender thread while the reader takes the next command.
    d = Shoald([f"w=fault:rdelay=20us:{img}"], extra=["--iscsi", f"127.0.0.1:{port}"])
    c = Conn(port)
    check(c.login(IQN + "w") == 0, f"login failed: 0x{c.status:04x}")
    window = c.maxcmdsn - c.expcmdsn + 1
    check(window > 1, f"a window of {window} at login")
    maxsn = c.maxcmdsn
    blocks = 64 * MiB // 4096
    order = random.sample(range(blocks), blocks)  # each 4 KiB once: misses
    outstanding = {}  # itt -> CmdSN, until the final response
    sent = done = 0
    c.s.settimeout(30)
    while done < total:
        burst = b""
        while sent < total and c.cmdsn <= maxsn:
            cdb = struct.pack(">BBIBHB", 0x28, 0, order[sent % blocks] * 8, 0, 8, 0)
            itt = 0x10000 + sent
            burst += pdu(0x01, 0xc0, itt=itt, f20=4096, cmdsn=c.cmdsn, rest=cdb)
            outstanding[itt] = c.cmdsn
            c.cmdsn += 1
            sent += 1
        if burst:
            c.s.sendall(burst)
        try:
            bhs, data = recv_pdu(c.s)
        except socket.timeout:
            check(False, f"no answer in 30 s with {len(outstanding)} READs outstanding "
                  f"(CmdSN {min(outstanding.values())}..{c.cmdsn - 1}, MaxCmdSN {maxsn}): "
                  f"a command inside the announced window was ignored")
        op, itt = bhs[0] & 0x3f, struct.unpack(">I", bhs[16:20])[0]
        exp, mx = struct.unpack(">II", bhs[28:36])
        check(op in (0x21, 0x25) and itt in outstanding, f"opcode 0x{op:02x} for tag 0x{itt:08x}")
        if op == 0x25:
            check(data == bytes(len(data)), "a READ of the sparse image returned non-zero bytes")
        if op == 0x21 or bhs[1] & 0x01:
            check(bhs[3] == 0, f"READ 0x{itt:08x}: status 0x{bhs[3]:02x}")
            del outstanding[itt]
            done += 1
        below = sum(1 for sn in outstanding.values() if sn < exp)
        check(mx <= exp + window - 1 - below,
              f"MaxCmdSN {mx} with ExpCmdSN {exp} and {below} commands below it unanswered: "
              f"{mx - (exp + window - 1 - below)} slot(s) more than a window of {window} has")
        maxsn = max(maxsn, mx)
    check(d.alive(), "shoald died")
    d.stop()


def idle_pings(img, target):
    """The reader waits for commands with the idle timeout in the socket
    (SO_RCVTIMEO): the timeout must still turn into pings and, unanswered,
    into a closed connection."""
    log("an idle session is pinged (NOP-In); commands go on; an unanswered ping ends it")
    port = free_port()
    d = Shoald([f"a={img}"], extra=["--iscsi", f"127.0.0.1:{port}", "--iscsi-nop-interval", "1s",
                                    "--iscsi-nop-timeout", "2s"])
    c = Conn(port)
    check(c.login(target) == 0, f"login failed: 0x{c.status:04x}")
    expect_response(c, c.tur())
    c.s.settimeout(5)
    bhs, _ = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x20, f"expected a NOP-In ping, got opcode 0x{bhs[0]:02x}")
    check(struct.unpack(">I", bhs[16:20])[0] == 0xffffffff, "the ping is not unsolicited")
    check(struct.unpack(">I", bhs[20:24])[0] != 0xffffffff, "the ping asks for no answer")
    expect_response(c, c.tur())
    check(closed(c.s, secs=8), "an unanswered ping did not end the connection")
    check(d.alive(), "shoald died after a NOP timeout")
    d.stop()


def tmf_after_responses(target):
    """READs that miss the cache finish on core workers and their responses
    go out from the connection's sender thread: an ABORT TASK SET that finds
    some of them done (not aborted) must let those responses out before its
    own, which concludes the task set (RFC 7143 4.2.3.3): a response after it
    could be taken for a new task reusing the tag."""
    log("ABORT TASK SET with READs in flight: no task's PDU after the TMF response")
    img = os.path.join(TMP, "tmf.img")
    with open(img, "wb") as f:
        f.write(os.urandom(32 * MiB))
    port = free_port()
    d = Shoald([f"a={img}"], extra=["--iscsi", f"127.0.0.1:{port}", "-m", "16M"])
    c = Conn(port)
    check(c.login(target, ["MaxRecvDataSegmentLength=8192"]) == 0, f"login failed: 0x{c.status:04x}")
    rng = random.Random(7)
    late = 0
    for rnd in range(10):
        for i in range(16):  # READ(10), 512 blocks (256 KiB) somewhere in 32 MiB
            lba = rng.randrange(0, 32 * MiB // 512 - 512)
            cdb = bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0, 2, 0, 0])
            c.s.sendall(pdu(0x01, 0x80 | 0x40, itt=rnd << 8 | i, f20=256 * 1024, cmdsn=c.cmdsn,
                            rest=cdb))
            c.cmdsn += 1
        c.s.sendall(pdu(0x02, 0x80 | 2, itt=0xf000 + rnd, f20=0xffffffff, cmdsn=c.cmdsn,
                        immediate=True))  # ABORT TASK SET
        while True:
            bhs, _ = recv_pdu(c.s)
            if bhs[0] & 0x3f == 0x22:
                check(bhs[2] == 0, f"ABORT TASK SET answered {bhs[2]}")
                break
        while not silent(c.s, 0.2):
            recv_pdu(c.s)
            late += 1
    check(late == 0, f"{late} PDUs of the aborted task set came after the TMF response")
    itt = c.tur()
    check(expect_response(c, itt)[3] == 0, "the session is unusable after ABORT TASK SET")
    d.stop()


def sense_of(data):
    """(key, asc, ascq) of a SCSI Response's sense data (fixed or descriptor)."""
    sense = data[2:2 + int.from_bytes(data[:2], "big")]
    if sense[0] & 0x7f in (0x72, 0x73):
        return sense[1] & 0x0f, sense[2], sense[3]
    return sense[2] & 0x0f, sense[12], sense[13]


def write_r2t(c, itt, lba, nblocks):
    """A WRITE(10) without immediate data: returns the R2T's transfer tag."""
    cdb = bytes([0x2a, 0]) + lba.to_bytes(4, "big") + bytes([0, 0, nblocks, 0])
    c.s.sendall(pdu(0x01, 0x80 | 0x20, itt=itt, f20=nblocks * 512, cmdsn=c.cmdsn, rest=cdb))
    c.cmdsn += 1
    bhs, _ = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x31, f"expected an R2T, got opcode 0x{bhs[0]:02x}")
    return struct.unpack(">I", bhs[20:24])[0]


def data_out(c, itt, ttt, data):
    c.s.sendall(pdu(0x05, 0x80, data=data, itt=itt, f20=ttt, rest=struct.pack(">III", 0, 0, 0)))


def tur_until_good(c):
    for _ in range(5):
        bhs, _ = recv_pdu_for(c, c.tur())
        if bhs[3] == 0:
            return
    check(False, "TEST UNIT READY never GOOD")


def recv_pdu_for(c, itt):
    bhs, data = recv_pdu(c.s)
    check(bhs[0] & 0x3f == 0x21 and struct.unpack(">I", bhs[16:20])[0] == itt,
          f"expected the response of task 0x{itt:x}, got opcode 0x{bhs[0]:02x} for task "
          f"0x{struct.unpack('>I', bhs[16:20])[0]:x}")
    return bhs, data


def third_party_tmf(a, b, img, fn, name, itt, run_lba, held_lba, b_sense, a_sense):
    """Session B has a WRITE at run_lba running in the slow back end and one
    at held_lba waiting for its data when session A sends TMF fn: A's
    response comes once the running WRITE is on the disk; B never hears of
    either task, its next command gets b_sense, A's gets a_sense (None:
    GOOD); the held WRITE's late data never lands."""
    with open(img, "rb") as f:
        before = f.read()
    running, held = os.urandom(4096), os.urandom(4096)
    ttt = write_r2t(b, itt, run_lba, 8)
    data_out(b, itt, ttt, running)  # runs: the back end takes 1 s
    held_ttt = write_r2t(b, itt + 1, held_lba, 8)  # its data stays with the initiator
    time.sleep(0.3)
    t0 = time.monotonic()
    a.s.sendall(pdu(0x02, 0x80 | fn, itt=0x50 + fn, f20=0xffffffff, cmdsn=a.cmdsn,
                    immediate=True))
    bhs, _ = recv_pdu(a.s)
    check(bhs[0] & 0x3f == 0x22 and bhs[2] == 0, f"{name} answered opcode 0x{bhs[0]:02x} "
          f"response {bhs[2]}")
    with open(img, "rb") as f:
        f.seek(run_lba * 512)
        check(f.read(4096) == running, f"the {name} response came before session B's running "
              f"WRITE was on the disk ({time.monotonic() - t0:.2f} s)")
    data_out(b, itt + 1, held_ttt, held)  # too late: the task is gone, the data dropped
    itt_b = b.tur()
    bhs, data = recv_pdu_for(b, itt_b)  # and nothing of the aborted tasks before it
    check(bhs[3] == 0x02 and sense_of(data) == b_sense,
          f"session B after {name}: status 0x{bhs[3]:02x}, sense {data[2:].hex()}")
    tur_until_good(b)
    itt_a = a.tur()
    bhs, data = recv_pdu_for(a, itt_a)
    if a_sense:
        check(bhs[3] == 0x02 and sense_of(data) == a_sense,
              f"session A after its {name}: status 0x{bhs[3]:02x}, sense {data[2:].hex()}")
    else:
        check(bhs[3] == 0, f"session A after its own {name}: status 0x{bhs[3]:02x}, "
              f"sense {data[2:].hex()}")
    check(silent(b.s, 1.5), f"session B got a PDU of a task {name} aborted")
    with open(img, "rb") as f:
        got = f.read()
    off = held_lba * 512
    check(got[off:off + 4096] == before[off:off + 4096],
          f"the WRITE {name} aborted while it waited for its data reached the disk")
    off = run_lba * 512
    check(got == before[:off] + running + before[off + 4096:],
          "the disk is not what it was with the running WRITE")
    # B's window is whole again: its two aborted tasks are gone.
    tur_until_good(b)


def lun_reset_reaches_other_sessions(target):
    """SAM-5 6.3.3: a LOGICAL UNIT RESET aborts the tasks of every I_T
    nexus, not only the sender's. Session B has a WRITE running in a slow
    back end and another waiting for its data when session A resets the
    LU. The control mode page says TAS=0, so B's tasks end silently (RFC
    7143 11.5.1, third-party tasks): B never gets their responses, its next
    command gets the unit attention (29h/03h BUS DEVICE RESET FUNCTION
    OCCURRED). The running WRITE cannot be recalled: A's TMF response waits
    until it is on the disk. The waiting one never lands, even when B sends
    its data after the reset. Then a TARGET COLD RESET from A ends B's
    connection too."""
    log("LUN RESET from session A: session B's tasks aborted silently, B gets the unit attention")
    img = os.path.join(TMP, "reset.img")
    orig = os.urandom(1 * MiB)
    with open(img, "wb") as f:
        f.write(orig)
    port = free_port()
    d = Shoald([f"a=fault:wdelay=1s:{img}"], extra=["--iscsi", f"127.0.0.1:{port}"])
    b = Conn(port)
    check(b.login(target, ["ImmediateData=No", "InitialR2T=Yes"], isid=b"\x80\0\0\0\0\x0b") == 0,
          f"login B failed: 0x{b.status:04x}")
    a = Conn(port)
    check(a.login(target, isid=b"\x80\0\0\0\0\x0a") == 0, f"login A failed: 0x{a.status:04x}")
    tur_until_good(b)
    tur_until_good(a)
    # LUN RESET: B gets the reset's attention, and so does A.
    third_party_tmf(a, b, img, 5, "LUN RESET", 0x10, 100, 200, (6, 0x29, 0x03), (6, 0x29, 0x03))
    log("CLEAR TASK SET from session A: B's tasks aborted silently, B alone gets 2Fh/00h")
    third_party_tmf(a, b, img, 4, "CLEAR TASK SET", 0x20, 300, 400, (6, 0x2f, 0x00), None)

    log("TARGET COLD RESET from session A: both connections end")
    a.s.sendall(pdu(0x02, 0x80 | 7, itt=0x51, f20=0xffffffff, cmdsn=a.cmdsn, immediate=True))
    bhs, _ = recv_pdu(a.s)
    check(bhs[0] & 0x3f == 0x22 and bhs[2] == 0, f"TARGET COLD RESET answered {bhs[2]}")
    check(closed(a.s), "TARGET COLD RESET: the issuing connection stays open")
    check(closed(b.s), "TARGET COLD RESET: the other session's connection stays open")
    check(d.alive(), "shoald died after the resets")
    d.stop()


itlib.run(main)
