"""Helpers for shoal's Python integration tests (run by /usr/bin/python3,
the interpreter python3-libnbd is installed for).

The Python twin of lib.sh: a private temp dir, a shoald started in the
foreground on a unix NBD socket and a free management port, with its API
token in TMP/token (the daemon creates it; every change needs it), readiness
by polling, and a clean stop that requires exit status 0 on SIGTERM.
"""
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from shoaltest import (NAME, TestFailure, check, check_no_sanitizer_report,  # noqa: E402,F401
                       free_port, log, print_log_tail, stop_daemon)

try:
    import nbd  # noqa: F401  (python3-libnbd)
except ImportError:
    print(f"[{NAME}] SKIP: python3-libnbd is not importable by {sys.executable}")
    sys.exit(SKIP)

SHOALD = os.environ.get("SHOALD")
if not SHOALD:
    print("SHOALD must point at the shoald binary", file=sys.stderr)
    sys.exit(1)

TMP = tempfile.mkdtemp(prefix=f"shoal-it-{NAME}.",
                       dir=os.environ.get("SHOAL_IT_TMP", "/tmp"))
# shoald keeps API changes in $STATE_DIRECTORY (else /var/lib/shoal): this
# test's own, for daemons started by hand (Shoald gives each its own).
os.environ["STATE_DIRECTORY"] = os.path.join(TMP, "state")
_daemons = []
_failed = [False]


class Shoald:
    """A shoald in the foreground: Shoald(["a=/path"], extra=["-r"]).

    Its API token file is TMP/token unless extra names another
    --http-token-file; stats() and api() send the token."""

    count = 0

    def __init__(self, volumes, extra=()):
        n = Shoald.count
        Shoald.count += 1
        self.sock = os.path.join(TMP, f"nbd{n}.sock")
        self.logpath = os.path.join(TMP, f"shoald{n}.log")
        extra = list(extra)
        self.token_file = os.path.join(TMP, "token")
        for i, a in enumerate(extra):
            if a == "--http-token-file" and i + 1 < len(extra):
                self.token_file = extra[i + 1]
            elif a.startswith("--http-token-file="):
                self.token_file = a.split("=", 1)[1]
        for _ in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            args = [SHOALD, "-f", "-l", "unix:" + self.sock,
                    "--http", f"127.0.0.1:{self.port}", "--http-token-file", os.path.join(TMP, "token"),
                    *extra, *volumes]
            self.logf = open(self.logpath, "ab")
            # Each daemon its own state dir: API changes never carry over
            # from one start to the next unless a test asks (--state-dir).
            env = dict(os.environ, STATE_DIRECTORY=os.path.join(TMP, f"state{n}"))
            self.proc = subprocess.Popen(args, stdout=self.logf, stderr=self.logf,
                                         stdin=subprocess.DEVNULL, env=env)
            _daemons.append(self)
            if self._wait_ready(30):
                return
            if self.proc.poll() is not None and b"already in use" in open(self.logpath, "rb").read():
                continue
            raise TestFailure(f"shoald did not become ready: {args}")
        raise TestFailure("shoald did not start after 3 attempts")

    def _wait_ready(self, secs):
        deadline = time.time() + secs
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if os.path.exists(self.sock):
                try:
                    self.stats()
                    return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def uri(self, vol):
        return f"nbd+unix:///{vol}?socket={self.sock}"

    @property
    def token(self):
        """The API token (read from the file the daemon created)."""
        with open(self.token_file) as f:
            return f.read().strip()

    def stats(self, path="/api/v1/stats"):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def api(self, method, path, body=None, timeout=30):
        """A change (or a GET) with the token. Returns the parsed JSON answer
        (None for an empty one); raises TestFailure on an HTTP error."""
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise TestFailure(f"{method} {path}: {e.code} {e.read()[:300]!r}")
        return json.loads(raw) if raw else None

    def vstats(self, vol):
        for v in self.stats()["volumes"]:
            if v["name"] == vol:
                return v
        raise TestFailure(f"volume {vol} not in /api/v1/stats")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Signal; require exit 0 within 10 s and no sanitizer report."""
        stop_daemon(self.proc, self.logpath, sig)

    def open(self, vol, meta=False):
        """A connected libnbd handle for a volume."""
        h = nbd.NBD()
        if meta:
            h.add_meta_context("base:allocation")
        h.connect_uri(self.uri(vol))
        return h


def recv_exact(s, n):
    """n bytes from socket s; EOFError if it closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_iscsi_pdu(s):
    """One iSCSI PDU from s (no digests): its 48-byte BHS and its data
    segment, the AHS and padding skipped."""
    bhs = recv_exact(s, 48)
    dlen = int.from_bytes(bhs[5:8], "big")
    ahs = bhs[4] * 4
    return bhs, recv_exact(s, ahs + dlen + (-dlen % 4))[ahs:ahs + dlen]


def _cleanup():
    for d in _daemons:
        if d.proc.poll() is None:
            d.proc.terminate()
            try:
                d.proc.wait(10)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()
    if _failed[0]:
        for d in _daemons:
            print_log_tail(d.logpath, 40)
        if os.environ.get("SHOAL_IT_KEEP") == "1":
            print(f"[{NAME}] kept {TMP}", file=sys.stderr)
            return
    shutil.rmtree(TMP, ignore_errors=True)


atexit.register(_cleanup)


def expect_error(fn, errnos, what):
    """Run fn(); it must raise nbd.Error with errnum in errnos."""
    try:
        fn()
    except nbd.Error as e:
        check(e.errnum in errnos,
              f"{what}: got errno {e.errnum} ({e.string}), expected one of {sorted(errnos)}")
        return e
    raise TestFailure(f"{what}: succeeded, expected an error")


def make_file(path, size, data=None):
    with open(path, "wb") as f:
        if data is not None:
            f.write(data)
        f.truncate(size)
    return path


def run(main):
    """Run a test's main(); map failures to exit 1 with a message."""
    try:
        main()
    except TestFailure as e:
        _failed[0] = True
        print(f"[{NAME}] FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        _failed[0] = True
        raise
    log("PASS")
