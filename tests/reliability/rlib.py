"""Helpers for shoal's reliability tests (torture, crash, faults), run by
/usr/bin/python3: python3-libnbd is installed for Debian's interpreter,
not for a python3 that may come first on PATH.

What it gives a test:
  - a private temp dir (TMP) removed at exit (kept with SHOAL_REL_KEEP=1 when
    the test failed);
  - daemons (shoald, nbdkit) started as our own children and always stopped
    at exit, by pid (SIGTERM/SIGINT of the test also runs the cleanup);
  - the management API (api_post / api_get) and readiness polling; every
    shoald gets --http-token-file with a token written here, and every API
    call carries it (Authorization: Bearer);
  - skip (exit 77) only when a tool is truly missing.
"""
import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from shoaltest import (NAME, SANITIZER_MARKERS, TestFailure, check,  # noqa: E402,F401
                       check_no_sanitizer_report, free_port, log, print_log_tail, stop_daemon)


def skip(msg):
    print(f"[{NAME}] SKIP: {msg}", flush=True)
    sys.exit(SKIP)


try:
    import nbd  # noqa: F401  (python3-libnbd)
except ImportError:
    skip(f"python3-libnbd is not importable by {sys.executable}")


def need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            skip(f"{t} is not installed")


def shoald_path():
    p = os.environ.get("SHOALD")
    if not p:
        here = os.path.dirname(os.path.abspath(__file__))
        for b in ("build-rel", "build"):
            cand = os.path.join(here, "..", "..", b, "src", "shoald")
            if os.access(cand, os.X_OK):
                p = os.path.abspath(cand)
                break
    if not p or not os.access(p, os.X_OK):
        print(f"[{NAME}] SHOALD must point at the shoald binary", file=sys.stderr)
        sys.exit(1)
    return p


def punch_zeroes(directory=None):
    """Does fallocate(PUNCH_HOLE) work, to the byte, on the file system of
    directory (default TMP)? Both shoald's file back end and nbdkit's file
    plugin trim with it, so a trim there reads back as zeros; where it does
    not work, their trims keep the data."""
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    path = os.path.join(directory or TMP, ".punch-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\xff" * 16384)
        os.fsync(fd)
        if libc.fallocate(fd, 0x01 | 0x02, 100, 9000) != 0:  # KEEP_SIZE | PUNCH_HOLE
            return False
        got = os.pread(fd, 16384, 0)
        return got == b"\xff" * 100 + bytes(9000) + b"\xff" * (16384 - 9100)
    finally:
        os.close(fd)
        os.unlink(path)


def sanitized():
    """Is shoald built with ASan or TSan? (Time bounds are looser then.)"""
    try:
        with open(shoald_path(), "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__tsan_init" in data


TMP = tempfile.mkdtemp(prefix=f"shoal-rel-{NAME}.", dir=os.environ.get("SHOAL_REL_TMP", "/tmp"))
_procs = []  # every child we started: (Popen, what)
_failed = [False]


def default_seed():
    """SHOAL_SEED if set, else one from the clock (printed by the caller)."""
    return int(os.environ.get("SHOAL_SEED", time.time_ns() % 1000000007))


def aio_events(h):
    """poll() events a libnbd handle waits for (0: nothing to wait on)."""
    import nbd
    import select
    d = h.aio_get_direction()
    return (select.POLLIN if d & nbd.AIO_DIRECTION_READ else 0) | \
        (select.POLLOUT if d & nbd.AIO_DIRECTION_WRITE else 0)


def _stop_proc(p, grace=5.0):
    if p.poll() is not None:
        return
    try:
        p.terminate()
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    except ProcessLookupError:
        pass


def _cleanup():
    for p, _ in reversed(_procs):
        _stop_proc(p)
    if os.environ.get("SHOAL_REL_KEEP") == "always":
        print(f"[{NAME}] kept {TMP}", file=sys.stderr)
        return
    if _failed[0]:
        for f in sorted(os.listdir(TMP)) if os.path.isdir(TMP) else []:
            if f.endswith(".log"):
                print_log_tail(os.path.join(TMP, f), 30)
        if os.environ.get("SHOAL_REL_KEEP") == "1":
            print(f"[{NAME}] kept {TMP}", file=sys.stderr)
            return
    shutil.rmtree(TMP, ignore_errors=True)


atexit.register(_cleanup)


def _on_signal(signum, _frame):
    _failed[0] = True
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def _connectable(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(1)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def token_file():
    """The API token of this test's daemons: TMP/token, mode 0600, written
    once. shoald reads it (--http-token-file); api calls send it."""
    path = os.path.join(TMP, "token")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24) + "\n")
    return path


def api_token():
    with open(token_file()) as f:
        return f.read().strip()


def auth_headers():
    return {"Authorization": "Bearer " + api_token()}


class Shoald:
    """shoald in the foreground on a unix socket with a free API port."""

    count = 0

    def __init__(self, volumes, extra=(), sock=None, env=None, cache="4M"):
        n = Shoald.count
        Shoald.count += 1
        self.sock = sock or os.path.join(TMP, f"nbd{n}.sock")
        self.logpath = os.path.join(TMP, f"shoald{n}.log")
        self.args_volumes = list(volumes)
        self.headers = auth_headers()
        for _ in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            args = [shoald_path(), "-f", "--state-dir", "off", "-l", "unix:" + self.sock, "--http",
                    f"127.0.0.1:{self.port}", "--http-token-file", token_file(),
                    "-m", cache, *extra, *volumes]
            logf = open(self.logpath, "ab")
            e = dict(os.environ)
            if env:
                e.update(env)
            self.proc = subprocess.Popen(args, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                         env=e)
            logf.close()
            _procs.append((self.proc, "shoald"))
            if self._wait_ready(30):
                return
            if self.proc.poll() is not None and b"already in use" in open(self.logpath, "rb").read():
                continue
            raise TestFailure(f"shoald did not become ready: {' '.join(args)}")
        raise TestFailure("shoald did not start after 3 attempts")

    @property
    def pid(self):
        return self.proc.pid

    def _wait_ready(self, secs):
        deadline = time.time() + secs
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if os.path.exists(self.sock) and _connectable(self.sock):
                try:
                    self.api_get("/api/v1/stats")
                    return True
                except OSError:
                    pass
            time.sleep(0.02)
        return False

    def uri(self, vol):
        return f"nbd+unix:///{vol}?socket={self.sock}"

    def api_get(self, path):
        req = urllib.request.Request(self.url + path, headers=self.headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def api_post(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **self.headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def stats(self):
        return self.api_get("/api/v1/stats")

    def vstats(self, vol):
        for v in self.stats()["volumes"]:
            if v["name"] == vol:
                return v
        raise TestFailure(f"volume {vol} not in /api/v1/stats")

    def alive(self):
        return self.proc.poll() is None

    def sanitizer_line(self):
        """The first line of a sanitizer report in shoald's log, or ''."""
        try:
            with open(self.logpath, errors="replace") as f:
                for line in f:
                    if any(m in line for m in SANITIZER_MARKERS):
                        return line.strip()
        except OSError:
            pass
        return ""

    def death_note(self, wait=2.0):
        """'' while shoald runs; else its exit status and the first line of a
        sanitizer report in its log, for failure messages. Called after a
        failure: gives a daemon that is aborting `wait` s to finish dying."""
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            return ""
        note = f"shoald exited with status {self.proc.returncode}"
        line = self.sanitizer_line()
        return note + (": " + line if line else "")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout=10):
        """SIGTERM; require exit 0 in time and no sanitizer report."""
        try:
            stop_daemon(self.proc, self.logpath, timeout=timeout)
        except TestFailure as e:
            line = self.sanitizer_line()
            raise TestFailure(f"{e}: {line}" if line else str(e)) from None

    def open(self, vol, name=None):
        h = nbd.NBD()
        if name:
            h.set_handle_name(name)
        h.connect_uri(self.uri(vol))
        return h


class Nbdkit:
    """nbdkit serving on a unix socket: Nbdkit(sock, ["file", path], filters=[...])."""

    count = 0

    def __init__(self, sock, plugin_args, filters=(), env=None, tag=None):
        n = Nbdkit.count
        Nbdkit.count += 1
        self.sock = sock
        self.logpath = os.path.join(TMP, f"nbdkit{n}{'-' + tag if tag else ''}.log")
        self.args = ["nbdkit", "-f", "--exit-with-parent", "-U", sock]
        for f in filters:
            self.args.append(f"--filter={f}")
        self.args += list(plugin_args)
        self.env = env
        self.start()

    def start(self):
        try:
            os.unlink(self.sock)
        except FileNotFoundError:
            pass
        logf = open(self.logpath, "ab")
        e = dict(os.environ)
        if self.env:
            e.update(self.env)
        self.proc = subprocess.Popen(self.args, stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, env=e)
        logf.close()
        _procs.append((self.proc, "nbdkit"))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure(f"nbdkit exited at start: {' '.join(self.args)}")
            if os.path.exists(self.sock):
                try:
                    h = nbd.NBD()
                    h.connect_uri(self.uri())
                    h.shutdown()
                    return
                except nbd.Error:
                    pass
            time.sleep(0.02)
        raise TestFailure(f"nbdkit did not come up: {' '.join(self.args)}")

    def uri(self, export=""):
        return f"nbd+unix:///{export}?socket={self.sock}"

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run(main):
    """Run a test's main(); map failures to exit 1 with a message."""
    try:
        rc = main()
    except TestFailure as e:
        _failed[0] = True
        print(f"[{NAME}] FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except SystemExit as e:
        if e.code not in (0, None, SKIP):
            _failed[0] = True
        raise
    except BaseException:
        _failed[0] = True
        raise
    if rc:
        _failed[0] = True
        sys.exit(rc)
    log("PASS")
