#!/usr/bin/python3
"""Seed corpus for fuzz_iscsi and fuzz_iscsi_ffp (see fuzz_iscsi.c): a few
well-formed initiator conversations, written as the raw bytes an initiator
sends. Run from anywhere; writes tests/fuzz/corpus/fuzz_iscsi{,_ffp}/."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = "iqn.2026-12.org.shoal:fuzz"
INITIATOR = "iqn.2026-12.org.shoal.fuzz:i"


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def bhs(op, flags, dlen, lun=0, itt=1, f20=0, f24=0, f28=0, rest=b"", immediate=False):
    h = bytes([op | (0x40 if immediate else 0), flags, 0, 0, 0]) + dlen.to_bytes(3, "big")
    h += struct.pack(">QIIII", lun, itt, f20, f24, f28) + rest.ljust(16, b"\0")[:16]
    return h


def login(keys, csg=1, nsg=3, transit=True, cmdsn=1):
    data = b"".join(k.encode() + b"\0" for k in keys)
    flags = (0x80 if transit else 0) | csg << 2 | nsg
    h = bytes([0x43, flags, 0, 0, 0]) + len(data).to_bytes(3, "big")
    h += b"\x80\0\0\0\0\x01" + struct.pack(">HIHHII", 0, 1, 0, 0, cmdsn, 0) + b"\0" * 16
    return h + pad(data)


def cmd(cdb, itt, cmdsn, edtl=0, read=False, write=False, data=b"", final=True):
    flags = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0)
    return bhs(0x01, flags, len(data), itt=itt, f20=edtl, f24=cmdsn, rest=cdb) + pad(data)


def data_out(itt, ttt, datasn, off, data, final=True):
    rest = struct.pack(">III", 0, datasn, off)
    return bhs(0x05, 0x80 if final else 0, len(data), itt=itt, f20=ttt, rest=rest) + pad(data)


def ffp(sn=1):
    """Full-feature PDUs of a normal session whose next CmdSN is sn."""
    out = []
    out.append(cmd(bytes([0x12, 0, 0, 0, 96, 0]), 10, sn, 96, read=True))            # INQUIRY
    out.append(cmd(bytes([0x12, 1, 0x83, 0, 255, 0]), 11, sn + 1, 255, read=True))   # VPD 0x83
    out.append(cmd(bytes([0x9e, 0x10]) + b"\0" * 8 + bytes([0, 0, 0, 32, 0, 0]), 12, sn + 2, 32,
                   read=True))                                                       # READ CAPACITY(16)
    out.append(cmd(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 16, 0]), 13, sn + 3, 8192, read=True))  # READ(10)
    out.append(cmd(bytes([0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0]), 14, sn + 4, 512, write=True,
                   data=b"\xab" * 512))                                              # WRITE(10), immediate
    out.append(cmd(bytes([0x2a, 0, 0, 0, 0, 16, 0, 0, 4, 0]), 15, sn + 5, 2048, write=True,
                   data=b"\x11" * 512, final=False))                                 # + unsolicited
    out.append(data_out(15, 0xffffffff, 0, 512, b"\x22" * 1536))
    out.append(bhs(0x00, 0x80, 4, itt=16, f20=0xffffffff, f24=sn + 6, immediate=True) + b"ping")
    out.append(bhs(0x02, 0x80 | 1, 0, itt=17, f20=99, f24=sn + 6, immediate=True))   # ABORT TASK
    out.append(bhs(0x04, 0x80, 16, itt=18, f20=0xffffffff, f24=sn + 6) + b"SendTargets=All\0")
    out.append(bhs(0x06, 0x80, 0, itt=19, f24=sn + 7))                               # logout
    return b"".join(out)


NORMAL = [f"InitiatorName={INITIATOR}", "SessionType=Normal", f"TargetName={TARGET}",
          "HeaderDigest=None", "DataDigest=None", "ImmediateData=Yes", "InitialR2T=No",
          "MaxRecvDataSegmentLength=8192", "FirstBurstLength=65536", "MaxBurstLength=262144",
          "MaxOutstandingR2T=2", "ErrorRecoveryLevel=0", "X-unknown=1"]
seeds = {
    "fuzz_iscsi": {
        "discovery": login([f"InitiatorName={INITIATOR}", "SessionType=Discovery"]) +
        bhs(0x04, 0x80, 16, itt=2, f20=0xffffffff, f24=1) + b"SendTargets=All\0" +
        bhs(0x06, 0x80, 0, itt=3, f24=2),
        "security-stage": login([f"InitiatorName={INITIATOR}", f"TargetName={TARGET}",
                                 "AuthMethod=None,CHAP"], csg=0, nsg=1) +
        login(NORMAL[3:], csg=1, nsg=3),
        "normal": login(NORMAL) + ffp(),
        "digests": login(NORMAL[:3] + ["HeaderDigest=CRC32C,None", "DataDigest=CRC32C"]),
        "unknown-target": login([f"InitiatorName={INITIATOR}", "TargetName=iqn.x:y"]),
    },
    "fuzz_iscsi_ffp": {
        "commands": ffp(),
        "r2t": cmd(bytes([0x2a, 0, 0, 0, 0, 0, 0, 0, 128, 0]), 20, 1, 65536, write=True) +
        data_out(20, 0xffffffff, 0, 0, b"\x33" * 4096) + data_out(20, 0, 0, 4096, b"\x44" * 512),
    },
}
for target, files in seeds.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, blob in files.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(blob)
print("seeds written")
