"""Processes and temp files of one benchmark run, and their cleanup.

Every server and client the harness starts goes through Procs.start: it runs
in its own session (so a Ctrl-C in the terminal reaches only the harness,
which then stops everything in order), gets PR_SET_PDEATHSIG so it dies with
the harness even if the harness is killed with SIGKILL, and is stopped by
Procs.close (SIGTERM, then SIGKILL after a grace period), which main() runs
in a finally block and at exit. Only processes started here are signalled,
each by its own pid / process group.
"""
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

_PR_SET_PDEATHSIG = 1


def _libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _child_setup():
    # Runs in the child between fork and exec.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class BenchError(Exception):
    """A step of the benchmark failed (a server did not start, a client
    failed); the message says which, and where its log is."""


def free_port():
    """A free loopback TCP port (bind to port 0; the kernel picks)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Procs:
    def __init__(self, keep=False):
        # Unix socket paths must stay short: keep the work dir directly in /tmp.
        self.dir = tempfile.mkdtemp(prefix="shoal-bench.", dir="/tmp")
        # RAM-backed scratch (nbdkit's cache filter keeps its cache file in
        # $TMPDIR; tmpfs makes that cache RAM, as shoal's is).
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.shm = tempfile.mkdtemp(prefix="shoal-bench.", dir=shm)
        self.keep = keep
        self.procs = []  # (name, Popen, logfile)
        self.closed = False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def sock_path(self, name):
        """A fresh unix socket path for a server called name (a stopped
        server may leave its socket file behind)."""
        p = self.path(name + ".sock")
        if os.path.exists(p):
            os.unlink(p)
        return p

    def start(self, name, argv, env=None, log=True, stdout=None):
        logpath = self.path("log", name + ".log") if log else os.devnull
        os.makedirs(self.path("log"), exist_ok=True)
        logf = open(logpath, "ab")
        full_env = dict(os.environ)
        full_env["TZ"] = "UTC"
        if env:
            full_env.update(env)
        try:
            p = subprocess.Popen(argv, stdout=stdout if stdout is not None else logf,
                                 stderr=logf, stdin=subprocess.DEVNULL, env=full_env,
                                 start_new_session=True, preexec_fn=_child_setup)
        except OSError as e:
            logf.close()
            raise BenchError("cannot start %s (%s): %s" % (name, argv[0], e))
        self.procs.append((name, p, logf))
        p.bench_name = name
        p.bench_log = logpath
        return p

    def log_tail(self, p, lines=20):
        try:
            with open(p.bench_log, "rb") as f:
                data = f.read()[-4000:].decode("utf-8", "replace")
            return "\n".join(data.splitlines()[-lines:])
        except OSError:
            return ""

    def wait_unix(self, p, path, timeout=20):
        """Wait until p listens on the unix socket at path."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise BenchError("%s exited (status %s) before listening:\n%s"
                                 % (p.bench_name, p.returncode, self.log_tail(p)))
            if os.path.exists(path):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(path)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.02)
        raise BenchError("%s did not listen on %s within %ds" % (p.bench_name, path, timeout))

    def wait_tcp(self, p, port, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise BenchError("%s exited (status %s):\n%s"
                                 % (p.bench_name, p.returncode, self.log_tail(p)))
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise BenchError("%s did not listen on port %d within %ds" % (p.bench_name, port, timeout))

    def stop(self, p, grace=5.0):
        """SIGTERM p's process group, then SIGKILL after grace seconds."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        for i, (n, q, f) in enumerate(self.procs):
            if q is p:
                f.close()
                del self.procs[i]
                break

    def run(self, name, argv, timeout=600, env=None, check=True):
        """Run a client to completion; returns (status, stdout text)."""
        p = self.start(name, argv, env=env, stdout=subprocess.PIPE)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p)
            raise BenchError("%s timed out after %ds" % (name, timeout))
        self.stop(p)
        text = out.decode("utf-8", "replace") if out else ""
        if check and p.returncode != 0:
            raise BenchError("%s failed (status %d):\n%s" % (name, p.returncode, self.log_tail(p)))
        return p.returncode, text

    def close(self):
        if self.closed:
            return
        self.closed = True
        # Clients first (they are the later entries), then servers.
        for name, p, f in reversed(list(self.procs)):
            self.stop(p, grace=3.0)
        if self.keep:
            print("bench: kept work dirs %s and %s" % (self.dir, self.shm), file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
            shutil.rmtree(self.shm, ignore_errors=True)


def install_signal_handlers():
    """Turn SIGINT, SIGTERM and SIGHUP into KeyboardInterrupt so the finally
    blocks (and Procs.close) run for all of them. SIGINT is set explicitly:
    a shell starts background jobs with it ignored, and Python would keep
    it so."""
    def handler(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)
