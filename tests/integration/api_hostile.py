#!/usr/bin/python3
"""Hostile clients of the management API, over raw sockets.

1. Connections that trickle a request head one byte at a time (more than
   the connection limit, and more than the gate's waiting list) must not
   lock a well-behaved client out: a GET answers within a few seconds, and
   every trickling connection is closed once the head deadline has passed
   (408 in the API's JSON error shape for those still waiting).
2. Requests libmicrohttpd would answer with its own HTML page (malformed
   request line, bare LF, folded or malformed header field, URI too long,
   header too large, unsupported version, HTTP/1.1 without Host, a transfer
   coding other than chunked, body too large) get the API's JSON error; a
   large but allowed head is still served, and a response closes its
   connection (a second, pipelined request is never answered).
3. Two different Content-Length values (and Content-Length with
   Transfer-Encoding) are refused with 400 and the POST that would add a
   volume adds nothing; the same value twice is a normal request.
4. More requests at once than the limit (held open by their unsent
   bodies) get 503 in the JSON shape; the API answers again once they
   close.
5. Over HTTPS (the head is encrypted, so connections go to libmicrohttpd
   at once): connections that trickle bytes are shut down at the head
   deadline, and an HTTPS GET is answered soon after.

Exits 77 after everything else passed when openssl (for the test's
certificate) is missing.
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402
from itlib import SHOALD, TMP, Shoald, check, free_port, log, make_file  # noqa: E402

LIMIT = 64          # MGMT_CONNECTION_LIMIT (src/mgmt/http.c)
WAITING = 128       # GATE_MAX_WAITING (src/mgmt/gate.h)
DEADLINE = 5.0      # GATE_HEAD_DEADLINE_MS
TRICKLERS = LIMIT + WAITING + 16


def connect(d, timeout=5):
    return socket.create_connection(("127.0.0.1", d.port), timeout=timeout)


def read_all(s, limit=1 << 20):
    """Everything until EOF (or a reset), as bytes."""
    out = b""
    while len(out) < limit:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            break
        if not b:
            break
        out += b
    return out


def parse(raw):
    """(status, {lower-case header: value}, body) of the first response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    check(sep, f"no complete response: {raw[:300]!r}")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    check(len(parts) >= 2 and parts[0] == "HTTP/1.1", f"status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", len(body)))
    return int(parts[1]), headers, body[:n]


def exchange(d, data, timeout=5):
    s = connect(d, timeout)
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        pass
    raw = read_all(s)
    s.close()
    return raw


def expect_json_error(raw, status, what):
    st, h, body = parse(raw)
    check(st == status, f"{what}: status {st}, expected {status}: {raw[:300]!r}")
    check(h.get("content-type", "").startswith("application/json"),
          f"{what}: Content-Type {h.get('content-type')!r}, not JSON: {raw[:300]!r}")
    try:
        j = json.loads(body)
    except ValueError:
        raise itlib.TestFailure(f"{what}: body is not JSON: {body[:300]!r}")
    check(isinstance(j, dict) and list(j) == ["error"] and isinstance(j["error"], str)
          and j["error"], f"{what}: not the API's error shape: {body[:300]!r}")
    return j["error"]


def get(d, path, extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n{extra}\r\n").encode()


def volume_names(d):
    st, _, body = parse(exchange(d, get(d, "/api/v1/volumes")))
    check(st == 200, f"GET /api/v1/volumes: {st}")
    j = json.loads(body)
    vols = j["volumes"] if isinstance(j, dict) else j
    return sorted(v["name"] for v in vols)


# ---- 1. trickling heads ---------------------------------------------------

def cpu_seconds(d):
    """User + system CPU time of shoald so far."""
    with open(f"/proc/{d.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_trickle(d):
    cpu0 = cpu_seconds(d)
    socks = []
    for i in range(TRICKLERS):
        s = connect(d)
        s.setblocking(False)
        s.send(b"G")
        socks.append(s)
    opened = time.monotonic()
    log(f"{TRICKLERS} connections trickle their request heads")

    def trickle():
        for s in socks:
            if s.fileno() >= 0:
                try:
                    s.send(b"E")
                except OSError:
                    pass

    time.sleep(1)
    trickle()
    t0 = time.monotonic()
    s = connect(d, timeout=4)
    s.sendall(get(d, "/api/v1/stats"))
    try:
        raw = read_all(s)
    except socket.timeout:
        raw = b""
    s.close()
    took = time.monotonic() - t0
    check(raw, f"GET /api/v1/stats got no answer in {took:.1f} s while {TRICKLERS} "
          "connections trickle")
    st, _, body = parse(raw)
    check(st == 200 and "volumes" in json.loads(body), f"GET /api/v1/stats: {raw[:200]!r}")
    check(took < 3, f"GET /api/v1/stats took {took:.1f} s")
    log(f"GET answered in {took:.2f} s")

    # Every trickler is closed by the deadline (plus slack), however many
    # bytes it still sends; those that waited to the end got a 408.
    closed = {}
    answers = {}
    while len(closed) < len(socks) and time.monotonic() < opened + DEADLINE + 4:
        trickle()
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    b = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    b = b""
                if b:
                    answers[i] = answers.get(i, b"") + b
                else:
                    closed[i] = time.monotonic() - opened
            time.sleep(0.05)
    open_left = [i for i in range(len(socks)) if i not in closed]
    check(not open_left, f"{len(open_left)} trickling connections still open "
          f"{DEADLINE + 4:.0f} s after they connected")
    late = max(closed.values())
    check(late < DEADLINE + 3, f"the last trickler was closed after {late:.1f} s")
    timed_out = 0
    for i, raw in answers.items():
        expect_json_error(raw, 408, f"trickler {i}")
        timed_out += 1
    # The first ones were dropped (the waiting list is full), the last
    # WAITING waited for the deadline.
    check(timed_out >= WAITING - 8, f"only {timed_out} tricklers got a 408")
    for s in socks:
        s.close()
    # Waiting for bytes that are there but not a whole head must not spin:
    # peeked bytes stay readable, so a level-triggered wait would wake at
    # once, again and again, for the whole deadline.
    cpu = cpu_seconds(d) - cpu0
    check(cpu < 2, f"shoald used {cpu:.1f} s of CPU while the tricklers waited")
    log(f"all {TRICKLERS} tricklers closed, {timed_out} with a 408, the last at {late:.1f} s; "
        f"shoald used {cpu:.2f} s of CPU meanwhile")
    st, _, _ = parse(exchange(d, get(d, "/api/v1/stats")))
    check(st == 200, "GET after the tricklers")


# ---- 2. JSON errors instead of libmicrohttpd's pages -----------------------

def test_errors(d):
    host = f"Host: 127.0.0.1:{d.port}\r\n"
    auth = f"Authorization: Bearer {d.token}\r\n"
    cases = [
        (b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        (b"GET  /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"\r\n", 400, "two spaces"),
        (b"GET /api/v1/stats HTTP/1.1\n" + host.encode() + b"\n", 400, "bare LF"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"X-A: 1\r\n folded\r\n\r\n",
         400, "obsolete line folding"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"X-A : 1\r\n\r\n", 400,
         "space before the colon"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"no colon\r\n\r\n", 400,
         "header line without a colon"),
        (b"GET /api/v1/stats HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + (host * 2).encode() + b"\r\n", 400, "two Hosts"),
        (b"GET /api/v1/stats HTTP/2.0\r\n" + host.encode() + b"\r\n", 505, "HTTP/2.0"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + host.encode() + b"\r\n", 414,
         "URI too long"),
        (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\n" + host.encode() + b"\r\n", 414,
         "URI longer than libmicrohttpd's buffer"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"X-A: " + b"b" * 9000 +
         b"\r\n\r\n", 431, "header too large"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() +
         b"".join(b"X-%d: %s\r\n" % (i, b"c" * 100) for i in range(400)) + b"\r\n", 431,
         "too many headers"),
        (b"POST /api/v1/volumes HTTP/1.1\r\n" + host.encode() + auth.encode() +
         b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "a coding but chunked"),
        (b"POST /api/v1/volumes HTTP/1.0\r\n" + auth.encode() +
         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "chunked in HTTP/1.0"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() +
         b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 400, "GET with chunks"),
        (b"POST /api/v1/volumes HTTP/1.1\r\n" + host.encode() + auth.encode() +
         b"Content-Length: 100000\r\n\r\n", 413, "body too large"),
        (b"POST /api/v1/volumes HTTP/1.1\r\n" + host.encode() + auth.encode() +
         b"Content-Length: 12x\r\n\r\n", 400, "Content-Length not a number"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"Content-Length: 5\r\n\r\nhello",
         400, "GET with a body"),
        (b"GET /api/v1/stats HTTP/1.1\r\n" + host.encode() + b"X-A: a\x01b\r\n\r\n", 400,
         "control character in a header"),
    ]
    failed = []
    for data, status, what in cases:
        try:
            msg = expect_json_error(exchange(d, data), status, what)
            log(f"{what}: {status} {msg!r}")
        except itlib.TestFailure as e:
            log(f"FAILED {e}")
            failed.append(what)
    check(not failed, f"{len(failed)} of {len(cases)} cases without the JSON error: {failed}")

    # A large head that is allowed is served by the API behind the gate.
    big = "".join(f"X-{i}: {'d' * 100}\r\n" for i in range(70))
    st, h, body = parse(exchange(d, get(d, "/api/v1/stats", big)))
    check(st == 200 and "volumes" in json.loads(body), f"7 KiB of headers: {st} {body[:200]!r}")
    check(h.get("connection", "").lower() == "close", f"Connection: {h.get('connection')!r}")

    # Two pipelined requests: one answer, then the connection closes (the
    # second would bypass the checks otherwise).
    raw = exchange(d, get(d, "/api/v1/stats") + get(d, "/api/v1/volumes"))
    check(raw.count(b"HTTP/1.1 ") == 1, f"pipelined requests: {raw.count(b'HTTP/1.1 ')} answers")
    parse(raw)


# ---- 3. conflicting Content-Length ---------------------------------------

def post_volume(d, name, backing, lengths, extra=""):
    body = json.dumps({"name": name, "backing": backing}).encode()
    cl = "".join(f"Content-Length: {n(len(body)) if callable(n) else n}\r\n" for n in lengths)
    head = (f"POST /api/v1/volumes HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
            f"Authorization: Bearer {d.token}\r\nContent-Type: application/json\r\n{cl}{extra}\r\n")
    # Trailing bytes: whatever a server takes as the body's end, there is
    # more to read, so a smuggled second request would have its chance.
    return exchange(d, head.encode() + body + b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")


def test_content_length(d):
    backing = make_file(os.path.join(TMP, "cl.img"), 1 << 20)
    before = volume_names(d)
    n = 0
    for lengths, extra, what in [
        ([lambda n: n, lambda n: n + 5], "", "length, then a longer one"),
        ([lambda n: n + 5, lambda n: n], "", "a longer length, then the length"),
        ([lambda n: n, lambda n: n - 3], "", "length, then a shorter one"),
        ([lambda n: n, lambda n: n], "Transfer-Encoding: chunked\r\n", "with Transfer-Encoding"),
        ([lambda n: f"{n}, {n + 5}"], "", "one field, two values"),
    ]:
        n += 1
        name = f"smuggled{n}"
        expect_json_error(post_volume(d, name, backing, lengths, extra), 400, what)
        after = volume_names(d)
        check(after == before, f"{what}: the volumes changed: {before} -> {after}")
        log(f"conflicting Content-Length ({what}): 400, nothing added")

    # The same length twice is one length (RFC 9110 section 8.6): served.
    st, _, body = parse(post_volume(d, "twice", backing, [lambda n: n, lambda n: f"0{n}"]))
    check(st == 201, f"the same Content-Length twice: {st} {body[:300]!r}")
    check(volume_names(d) == sorted(before + ["twice"]), "volume 'twice' was not added")


# ---- 4. the connection limit ---------------------------------------------

def test_limit(d):
    held = []
    head = (f"POST /api/v1/volumes HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
            f"Authorization: Bearer {d.token}\r\nContent-Length: 10\r\n\r\n").encode()
    # The body never comes: each holds a request slot. The slot of an
    # earlier test's request is given back just after its socket closes, so
    # a held request can be refused while that one still counts: one that
    # was answered is replaced until LIMIT are held and none answered.
    deadline = time.monotonic() + 10
    while True:
        while len(held) < LIMIT:
            s = connect(d)
            s.sendall(head)
            held.append(s)
        time.sleep(0.5)
        answered = []
        for s in held:
            s.setblocking(False)
            try:
                s.recv(1, socket.MSG_PEEK)  # data or the end: answered
                answered.append(s)
            except BlockingIOError:
                pass  # still waiting for its body: held
            except OSError:
                answered.append(s)
            s.settimeout(5)
        if not answered:
            break
        check(time.monotonic() < deadline, f"{len(answered)} of {LIMIT} held requests"
              " still answered after 10 s: some slot is never given back")
        log(f"{len(answered)} held request(s) answered while earlier ones closed: replaced")
        for s in answered:
            held.remove(s)
            s.close()
    t0 = time.monotonic()
    msg = expect_json_error(exchange(d, get(d, "/api/v1/stats")), 503, "over the limit")
    check(time.monotonic() - t0 < 2, "the 503 was slow")
    log(f"request {LIMIT + 1}: 503 {msg!r}")
    for s in held:
        s.close()
    deadline = time.monotonic() + 5
    while True:
        st, _, _ = parse(exchange(d, get(d, "/api/v1/stats")))
        if st == 200:
            break
        check(time.monotonic() < deadline, f"still {st} 5 s after the held requests closed")
        time.sleep(0.1)
    log("answers again once the held requests closed")


# ---- 5. HTTPS -------------------------------------------------------------

class TlsDaemon:
    """A shoald serving the API over HTTPS (itlib.Shoald polls plain HTTP)."""

    def __init__(self, pki, gold):
        self.port = free_port()
        self.logpath = os.path.join(TMP, "shoald-tls.log")
        self.proc = subprocess.Popen(
            [SHOALD, "-f", "-l", "unix:" + os.path.join(TMP, "tls.sock"), "-m", "16M",
             "--http", f"127.0.0.1:{self.port}", "--http-token-file", os.path.join(TMP, "token"),
             "--http-tls-certificates", pki, f"gold={gold}"],
            stdout=open(self.logpath, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, STATE_DIRECTORY=os.path.join(TMP, "state-tls")))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + 30
        while self.get(2) is None:
            check(self.proc.poll() is None, "shoald (HTTPS) exited at start")
            check(time.monotonic() < deadline, "shoald (HTTPS) did not become ready")
            time.sleep(0.1)

    def get(self, timeout):
        """GET /api/v1/stats over HTTPS: the parsed answer, None on failure."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as raw:
                with self.ctx.wrap_socket(raw) as s:
                    s.sendall(f"GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1:{self.port}"
                              "\r\n\r\n".encode())
                    out = read_all(s)
        except (OSError, ssl.SSLError):
            return None
        return parse(out) if b"\r\n\r\n" in out else None


def test_tls(gold):
    if not shutil.which("openssl"):
        return "openssl missing: HTTPS part not run"
    pki = os.path.join(TMP, "pki")
    os.mkdir(pki)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-keyout", os.path.join(pki, "server-key.pem"),
                    "-out", os.path.join(pki, "server-cert.pem")],
                   check=True, capture_output=True)
    d = TlsDaemon(pki, gold)
    socks = []
    for _ in range(LIMIT + 16):
        s = connect(d)
        s.setblocking(False)
        s.send(b"\x16")  # a TLS handshake record begins, and never ends
        socks.append(s)
    opened = time.monotonic()
    log(f"{len(socks)} connections trickle a TLS handshake")
    closed = set()
    answered = None
    while time.monotonic() < opened + DEADLINE + 5 and (len(closed) < len(socks) or not answered):
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.send(b"\x03")
                b = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if not b:
                closed.add(i)
        if answered is None:
            r = d.get(1)
            if r and r[0] == 200:
                answered = time.monotonic() - opened
        time.sleep(0.3)
    check(len(closed) == len(socks), f"{len(socks) - len(closed)} trickling HTTPS connections "
          f"still open {DEADLINE + 5:.0f} s after they connected")
    check(answered is not None and answered < DEADLINE + 3,
          f"no HTTPS answer within {DEADLINE + 3:.0f} s while connections trickle")
    for s in socks:
        s.close()
    log(f"HTTPS: all tricklers closed, a GET answered {answered:.1f} s after they connected")
    itlib.stop_daemon(d.proc, d.logpath)


def main():
    gold = make_file(os.path.join(TMP, "gold.img"), 1 << 20)
    d = Shoald([f"gold={gold}"], extra=["-m", "16M"])
    which = sys.argv[1:] or ["errors", "content-length", "limit", "trickle", "tls"]
    tests = {"errors": test_errors, "content-length": test_content_length,
             "limit": test_limit, "trickle": test_trickle}
    for name in which:
        if name in tests:
            tests[name](d)
            check(d.alive(), f"shoald died during {name}")
    d.stop()
    if "tls" in which:
        skipped = test_tls(gold)
        if skipped:
            log(f"SKIPPED: {skipped}")
            sys.exit(itlib.SKIP)


itlib.run(main)
