#!/usr/bin/python3
"""Hand-made seeds for the NBD fuzz targets: requests that real clients
rarely send but the protocol allows, so every length check in the
transmission code starts reachable from the seed corpus.

    craft_seeds.py CORPUS_DIR

Writes CORPUS_DIR/fuzz_nbd/crafted-* (client flags and options, then
requests) and CORPUS_DIR/fuzz_nbd_transmit/crafted-* (requests only, after
the harness's canned handshake to "fuzz"). make_corpus.sh runs it; the
sizes below must match the exports in fuzz_nbd.c.

The requests are written without waiting for replies (the fuzz input is the
client's side of the stream only): large TRIMs, WRITE_ZEROES, CACHE and
BLOCK_STATUS up to and past the end of the 5 GiB export, READs and WRITEs
at and over the 32 MiB cap, offset+length wrapping 2^64, unaligned requests
on the 512-byte export, the odd-sized tails, and writes to the read-only
export.
"""
import os
import struct
import sys

# The harness's exports (fuzz_nbd.c).
EXPORTS = {
    "fuzz": (5 << 30) + (1 << 20) + 1000,
    "blk512": (40 << 20) + 3 * 512,
    "small": (1 << 20) + 1234,
    "ro": 64 * 1024 + 100,
}
MAX_PAYLOAD = 32 << 20
U32 = 0xFFFFFFFF

IHAVEOPT = b"IHAVEOPT"
REQ_MAGIC = 0x25609513
OPT_EXPORT_NAME, OPT_GO, OPT_STRUCTURED, OPT_SET_META = 1, 7, 8, 10
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_ZERO, CMD_BS = range(8)
F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE, F_FAST_ZERO = 1, 2, 4, 8, 16


def opt(code, data=b""):
    return IHAVEOPT + struct.pack(">II", code, len(data)) + data


def handshake(export, structured=True, meta=True):
    """Client flags, then STRUCTURED_REPLY, SET_META_CONTEXT, GO."""
    name = export.encode()
    out = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
    if structured:
        out += opt(OPT_STRUCTURED)
        if meta:
            q = b"base:allocation"
            out += opt(OPT_SET_META, struct.pack(">I", len(name)) + name +
                       struct.pack(">I", 1) + struct.pack(">I", len(q)) + q)
    out += opt(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    return out


class Requests:
    def __init__(self):
        self.data = b""
        self.handle = 0

    def req(self, cmd, offset=0, length=0, flags=0, payload=b""):
        self.handle += 1
        self.data += struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, self.handle,
                                 offset & (2**64 - 1), length & U32) + payload
        return self

    def read(self, off, ln, flags=0):
        return self.req(CMD_READ, off, ln, flags)

    def write(self, off, ln, flags=0, fill=b"\xa5"):
        # The payload follows; a header claiming more than is sent ends the
        # stream mid-payload, which is itself a case worth having.
        return self.req(CMD_WRITE, off, ln, flags, fill * min(ln, 16384))

    def trim(self, off, ln, flags=0):
        return self.req(CMD_TRIM, off, ln, flags)

    def zero(self, off, ln, flags=0):
        return self.req(CMD_ZERO, off, ln, flags)

    def cache(self, off, ln):
        return self.req(CMD_CACHE, off, ln)

    def bs(self, off, ln, flags=0):
        return self.req(CMD_BS, off, ln, flags)

    def flush(self):
        return self.req(CMD_FLUSH)

    def disc(self):
        return self.req(CMD_DISC)


def big_sets():
    """Request sequences for the 5 GiB export "fuzz"."""
    S = EXPORTS["fuzz"]
    sets = {}
    r = Requests()
    # TRIM past the 32 MiB the per-request state was once sized for; then
    # read it back (zero where the back end guarantees it).
    r.read(0, 65536).trim(0, 64 << 20).read(0, 65536).trim(MAX_PAYLOAD, MAX_PAYLOAD + 4096)
    r.trim(4096, U32).read(4096, 8192).flush().disc()
    sets["trim-large"] = r.data
    r = Requests()
    r.write(8 << 20, 8192).zero(0, 1 << 30).read(8 << 20, 8192)
    r.zero(0, U32 - 4095, F_NO_HOLE).zero(4096, U32, F_FAST_ZERO).zero(100, (256 << 20) + 7, F_FUA)
    r.read(0, 4096).disc()
    sets["zero-large"] = r.data
    r = Requests()
    # Up to the end exactly, one byte past it, wrapping 2^64.
    r.trim(S - (40 << 20), 40 << 20).zero(S - (40 << 20), 40 << 20).trim(S - (40 << 20), (40 << 20) + 1)
    r.zero(S - 1000, 1000).zero(S - 999, 1000).zero(S, 0).trim(S + 1, 0)
    r.trim(2**64 - 4096, 8192).zero(2**64 - 1, 2).read(2**64 - 4096, 4096)
    r.write(2**64 - 512, 1024).cache(2**64 - 4096, 4096).bs(2**64 - 4096, 8192).disc()
    sets["ranges-end"] = r.data
    r = Requests()
    r.cache(0, 64 << 20).cache(S - (64 << 20), 64 << 20).cache(S - 4096, 8192).cache(0, 0)
    r.read(S - 5000, 5000).read(S - 1, 1).read(S - 1, 2).disc()
    sets["cache"] = r.data
    r = Requests()
    r.bs(0, U32).bs(0, U32, F_REQ_ONE).bs(S - 8192, 8192).bs(S - 4096, 8192).bs(0, 0)
    r.zero(16 << 20, 1 << 20).bs(0, 64 << 20).trim(0, 8 << 20).bs(0, 64 << 20).disc()
    sets["block-status"] = r.data
    r = Requests()
    r.read(0, MAX_PAYLOAD).read(0, MAX_PAYLOAD + 1).read(S - MAX_PAYLOAD, MAX_PAYLOAD)
    r.read(100, MAX_PAYLOAD, F_DF).read(0, U32).write(0, MAX_PAYLOAD + 1)
    sets["read-write-cap"] = r.data
    r = Requests()
    r.write(MAX_PAYLOAD - 4096, 8192).write(S - 1000, 1000, F_FUA).read(S - 1000, 1000)
    r.write(S - 100, 200)
    sets["write-tail"] = r.data
    return sets


def other_sets():
    """(export, name, requests) for the smaller exports."""
    out = []
    S = EXPORTS["blk512"]
    r = Requests()
    r.zero(0, S).read(0, 4096).trim(0, S).write(512, 1024).read(100, 512).read(S - 100, 100)
    r.zero(512, 40 << 20, F_FUA).zero(0, 4096, F_FAST_ZERO).write(0, 4096, F_FUA)
    r.bs(0, S).trim(0, S + 512).read(0, MAX_PAYLOAD + 512).disc()
    out.append(("blk512", "blk512-fallbacks", r.data))
    S = EXPORTS["small"]
    r = Requests()
    r.read(0, S).trim(0, S).read(S - 1234, 1234).zero(S - 100, 100, F_NO_HOLE)
    r.write(S - 10, 10).read(S - 4096, 4096).zero(0, S, F_FAST_ZERO).bs(0, S).disc()
    out.append(("small", "small-tail", r.data))
    S = EXPORTS["ro"]
    r = Requests()
    r.read(0, S).trim(0, S).zero(0, 4096).write(0, 4096).cache(0, S).flush().disc()
    out.append(("ro", "ro-writes", r.data))
    return out


def main():
    root = sys.argv[1]
    nbd = os.path.join(root, "fuzz_nbd")
    tr = os.path.join(root, "fuzz_nbd_transmit")
    os.makedirs(nbd, exist_ok=True)
    os.makedirs(tr, exist_ok=True)
    n = 0
    for name, reqs in big_sets().items():
        open(os.path.join(tr, "crafted-" + name), "wb").write(reqs)
        open(os.path.join(nbd, "crafted-" + name), "wb").write(handshake("fuzz") + reqs)
        n += 2
    # Simple replies and no meta context: the same requests take the other
    # reply encoding.
    plain = Requests().trim(0, 64 << 20).zero(0, U32).read(0, 4096).bs(0, 4096).disc().data
    open(os.path.join(nbd, "crafted-simple-replies"), "wb").write(
        handshake("fuzz", structured=False) + plain)
    # The EXPORT_NAME path (no GO) with the default export.
    open(os.path.join(nbd, "crafted-export-name"), "wb").write(
        struct.pack(">I", 1) + opt(OPT_EXPORT_NAME) + plain)
    n += 2
    for export, name, reqs in other_sets():
        open(os.path.join(nbd, "crafted-" + name), "wb").write(handshake(export) + reqs)
        n += 1
    print(f"{n} crafted seeds written into {root}")


if __name__ == "__main__":
    main()
