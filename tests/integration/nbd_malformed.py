#!/usr/bin/python3
"""Malformed handshakes and requests from raw sockets: each closes (or
errors) only that connection; a libnbd client connected before keeps
working, and the daemon stays up and exits cleanly."""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import TMP, Shoald, check, recv_exact  # noqa: E402

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_GO = 7
REP_ACK = 1
REP_SERVER = 2
REP_ERR_UNSUP = (1 << 31) | 1
CMD_READ = 0
CMD_DISC = 2

MiB = 1 << 20
SIZE = 4 * MiB


def closed_by_server(s, what, timeout=5.0):
    """The server must close the connection (EOF or reset) within timeout
    seconds, sending at most a little data (an error reply) first."""
    s.settimeout(timeout)
    got = 0
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            got += len(chunk)
            check(got < 65536, f"{what}: server keeps sending data")
    except ConnectionResetError:
        return
    except socket.timeout:
        raise itlib.TestFailure(f"{what}: connection still open after {timeout} s")


def send_bad(s, data):
    """Send hostile bytes; the server may already have closed (that is the
    point), so a broken pipe or reset here is not a failure."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def connect(d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.sock)
    return s


def greeting(s):
    magic, opt, flags = struct.unpack(">QQH", recv_exact(s, 18))
    check(magic == NBDMAGIC, f"bad server magic {magic:#x}")
    check(opt == IHAVEOPT, f"not newstyle: {opt:#x}")
    check(flags & 1, "server is not fixed newstyle")
    return flags


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def recv_opt_reply(s):
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    check(magic == REPLY_MAGIC, f"bad option reply magic {magic:#x}")
    return opt, rtype, recv_exact(s, length)


def handshake_export_name(s, name):
    """Old-style OPT_EXPORT_NAME entry into transmission."""
    greeting(s)
    s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))
    send_opt(s, OPT_EXPORT_NAME, name.encode())
    size, tflags = struct.unpack(">QH", recv_exact(s, 10))
    return size, tflags


def request(s, cmd, offset, length, handle=1, flags=0, magic=REQUEST_MAGIC):
    s.sendall(struct.pack(">IHHQQI", magic, flags, cmd, handle, offset, length))


def main():
    img = os.path.join(TMP, "a.img")
    data = os.urandom(SIZE)
    itlib.make_file(img, SIZE, data)
    d = Shoald([f"a={img}"], ["-m", "32M", "--handshake-timeout", "3s"])

    good = d.open("a")
    check(good.pread(4096, 0) == data[:4096], "good client: first read")

    cases = []

    def case(fn):
        cases.append(fn)
        return fn

    @case
    def garbage_instead_of_client_flags(s):
        greeting(s)
        send_bad(s, os.urandom(64))
        closed_by_server(s, "garbage after the greeting")

    @case
    def unknown_client_flags(s):
        greeting(s)
        send_bad(s, struct.pack(">I", 0xFFFF0000 | FLAG_C_FIXED_NEWSTYLE))
        closed_by_server(s, "unknown client flags")

    @case
    def bad_option_magic(s):
        greeting(s)
        s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE))
        send_bad(s, struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
        closed_by_server(s, "bad option magic")

    @case
    def huge_option_length(s):
        greeting(s)
        s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE))
        send_bad(s, struct.pack(">QII", IHAVEOPT, OPT_GO, 0xFFFFFFF0))
        send_bad(s, b"\0" * 4096)
        # An error reply is allowed before the close; the close is required
        # (the server cannot skip 4 GiB of option data it will never get).
        closed_by_server(s, "4 GiB option length")

    @case
    def truncated_greeting_reply(s):
        greeting(s)
        send_bad(s, b"\0\0")  # half of the client flags, then close
        s.shutdown(socket.SHUT_WR)
        closed_by_server(s, "half client flags")

    @case
    def garbage_from_the_start(s):
        send_bad(s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
        closed_by_server(s, "HTTP request on the NBD socket")

    @case
    def silent_client(s):
        greeting(s)
        closed_by_server(s, "client that never answers (handshake timeout 3s)", timeout=15)

    @case
    def unknown_option_then_abort(s):
        greeting(s)
        s.sendall(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))
        send_opt(s, 0x7777, b"abc")
        opt, rtype, _ = recv_opt_reply(s)
        check(opt == 0x7777 and rtype == REP_ERR_UNSUP,
              f"unknown option: reply {rtype:#x}, expected NBD_REP_ERR_UNSUP")
        send_opt(s, OPT_LIST)
        names = []
        while True:
            opt, rtype, payload = recv_opt_reply(s)
            if rtype == REP_ACK:
                break
            check(rtype == REP_SERVER, f"OPT_LIST reply type {rtype:#x}")
            (n,) = struct.unpack(">I", payload[:4])
            names.append(payload[4:4 + n].decode())
        check(names == ["a"], f"OPT_LIST returned {names}")
        send_opt(s, OPT_ABORT)
        try:
            opt, rtype, _ = recv_opt_reply(s)
            check(rtype == REP_ACK, f"OPT_ABORT reply {rtype:#x}")
        except EOFError:
            pass  # a server may close without the ack
        closed_by_server(s, "after OPT_ABORT")

    @case
    def bad_request_magic(s):
        size, _ = handshake_export_name(s, "a")
        check(size == SIZE, f"OPT_EXPORT_NAME size {size}")
        send_bad(s, struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 4096))
        closed_by_server(s, "bad request magic")

    @case
    def unknown_command(s):
        handshake_export_name(s, "a")
        request(s, 0x55, 0, 4096, handle=7)
        # EINVAL reply (simple or structured) or a close; then it must still
        # be sane: answer a read or close.
        s.settimeout(5)
        hdr = s.recv(16)
        if hdr:
            magic, err, handle = struct.unpack(">IIQ", recv_exact_prefix(s, hdr, 16))
            check(magic == SIMPLE_REPLY_MAGIC and err == 22 and handle == 7,
                  f"unknown command: reply magic {magic:#x} error {err} handle {handle}")
            request(s, CMD_READ, 0, 4096, handle=8)
            magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
            check(err == 0 and handle == 8, "read after unknown command")
            check(recv_exact(s, 4096) == data[:4096], "read data after unknown command")
            request(s, CMD_DISC, 0, 0)
        closed_by_server(s, "after NBD_CMD_DISC")

    @case
    def truncated_write_payload(s):
        handshake_export_name(s, "a")
        # WRITE of 1 MiB, only 1000 bytes sent, then the client goes away.
        request(s, 1, 0, MiB, handle=9)
        send_bad(s, b"\xee" * 1000)
        s.shutdown(socket.SHUT_WR)
        closed_by_server(s, "truncated write payload")

    @case
    def read_beyond_end_raw(s):
        handshake_export_name(s, "a")
        request(s, CMD_READ, SIZE - 100, 4096, handle=10)
        magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
        check(err == 22 and handle == 10, f"raw read beyond end: error {err}")
        request(s, CMD_READ, (1 << 64) - 4096, 4096, handle=11)
        magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
        check(err == 22 and handle == 11, f"raw read at 2^64-4096: error {err}")
        request(s, CMD_DISC, 0, 0)
        closed_by_server(s, "after NBD_CMD_DISC")

    for fn in cases:
        s = connect(d)
        try:
            fn(s)
        except (EOFError, ConnectionResetError, BrokenPipeError) as e:
            raise itlib.TestFailure(f"{fn.__name__}: unexpected close: {e}")
        finally:
            s.close()
        check(d.alive(), f"shoald died after {fn.__name__}")
        check(good.pread(4096, SIZE - 4096) == data[-4096:],
              f"good client broken after {fn.__name__}")

    # Many half-open connections at once, then the good client again.
    socks = [connect(d) for _ in range(50)]
    for s in socks:
        send_bad(s, b"\x00" * 7)
    for s in socks:
        s.close()
    check(good.pread(MiB, MiB) == data[MiB:2 * MiB], "good client after 50 half-open sockets")
    with open(img, "rb") as f:
        check(f.read() == data, "backing file changed by malformed traffic")
    good.shutdown()
    d.stop()


def recv_exact_prefix(s, prefix, n):
    return prefix + (recv_exact(s, n - len(prefix)) if len(prefix) < n else b"")


itlib.run(main)
