"""What the Python test libraries share (tests/integration/itlib.py and
tests/reliability/rlib.py): the test's name in log lines, failures as
exceptions, a free TCP port, and the checks made when a daemon stops.
No side effects at import: each library keeps its own temp dir and cleanup.
"""
import os
import signal
import socket
import subprocess
import sys

NAME = os.path.splitext(os.path.basename(sys.argv[0]))[0]

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def log(msg):
    print(f"[{NAME}] {msg}", flush=True)


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_no_sanitizer_report(path):
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        check(marker not in text, f"sanitizer report in {os.path.basename(path)}")


def print_log_tail(path, n):
    """After a failure: the last n lines of a daemon's log, on stderr."""
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()[-n:]
    except OSError:
        return
    print(f"--- {os.path.basename(path)} (last {n} lines) ---", file=sys.stderr)
    print("\n".join(lines), file=sys.stderr)


def stop_daemon(proc, logpath, sig=signal.SIGTERM, timeout=10):
    """Signal a daemon we started; require exit 0 in time and a log without
    sanitizer reports."""
    check(proc.poll() is None, f"shoald died early (status {proc.returncode})")
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise TestFailure(f"shoald did not exit within {timeout} s of {sig.name}")
    check(rc == 0, f"shoald exited with status {rc} after {sig.name}")
    check_no_sanitizer_report(logpath)
